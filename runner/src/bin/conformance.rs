//! Runs the conformance cases under `fixtures/` against every available backend pair.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use anyhow::Context;
use bitnet_runner::harness::{self, Options};

fn main() -> anyhow::Result<ExitCode> {
    let options = Options::parse(std::env::args()).context("reading the command line")?;
    let conclusion = harness::run(options).context("running the conformance harness")?;
    Ok(conclusion.exit_code())
}
