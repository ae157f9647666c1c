//! `bitnet`: command-line access to the engine.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bitnet_runner::inspect::InspectReport;
use bitnet_runner::text_commands;
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
    /// Greedy generation from a prompt, streamed as it is produced.
    Generate {
        /// The GGUF model.
        #[arg(short, long)]
        model: PathBuf,
        /// The prompt text.
        #[arg(short, long)]
        prompt: String,
        /// Tokens to generate.
        #[arg(short, long, default_value_t = 64)]
        n_predict: usize,
        /// Threads for the matrix products.
        #[arg(short, long, default_value_t = 1)]
        threads: usize,
        /// Context size (0: the model's training context).
        #[arg(short, long, default_value_t = 0)]
        ctx: usize,
        /// Keep the KV cache in f32 instead of f16.
        #[arg(long)]
        kv_f32: bool,
    },
    /// Perplexity of a text file (llama-perplexity's protocol).
    Perplexity {
        /// The GGUF model.
        #[arg(short, long)]
        model: PathBuf,
        /// The text file.
        #[arg(short, long)]
        file: PathBuf,
        /// Tokens per chunk.
        #[arg(short, long, default_value_t = 512)]
        ctx: usize,
        /// Chunks to score (0: all).
        #[arg(long, default_value_t = 0)]
        chunks: usize,
        /// Threads for the matrix products.
        #[arg(short, long, default_value_t = 1)]
        threads: usize,
    },
    /// Token ids of a text with a GGUF file's tokenizer.
    Tokenize {
        /// A GGUF model or vocabulary file.
        #[arg(short, long)]
        model: PathBuf,
        /// The text.
        #[arg(short, long)]
        prompt: String,
        /// Do not add BOS/EOS as the tokenizer would.
        #[arg(long)]
        no_special: bool,
        /// Recognise special-token text such as `<|eot_id|>`.
        #[arg(long)]
        parse_special: bool,
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
        Command::Generate {
            model,
            prompt,
            n_predict,
            threads,
            ctx,
            kv_f32,
        } => {
            text_commands::generate(&model, &prompt, n_predict, threads, ctx, !kv_f32)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Perplexity {
            model,
            file,
            ctx,
            chunks,
            threads,
        } => {
            text_commands::perplexity_of_file(&model, &file, ctx, chunks, threads)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tokenize {
            model,
            prompt,
            no_special,
            parse_special,
        } => {
            text_commands::tokenize(&model, &prompt, !no_special, parse_special)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
