//! `bitnet`: command-line access to the engine.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bitnet_runner::inspect::InspectReport;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bitnet", version, about = "BitNet b1.58 engine command line")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a GGUF file's header, hyper-parameters, tokenizer, tensors and validation report.
    Inspect {
        /// The GGUF file.
        file: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Inspect { file, json } => {
            let report = InspectReport::of(&file);
            if json {
                let text = serde_json::to_string_pretty(&report)
                    .context("serializing the inspect report")?;
                println!("{text}");
            } else {
                print!("{}", report.render());
            }
            Ok(if report.valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
