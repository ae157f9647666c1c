//! The `bitnet` command line and the `conformance` harness: commands and backend adapters.
#![forbid(unsafe_code)]

pub mod backends;
pub mod fixtures_gen;
pub mod harness;
pub mod inspect;
pub mod text_commands;
