//! `bitnet`: command-line access to the engine.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bitnet_engine::model::DeviceStrategy;
use bitnet_runner::bench::{self, BenchArgs, WorkerArgs};
use bitnet_runner::generate_command::{self, GenerateArgs};
use bitnet_runner::inspect::InspectReport;
use bitnet_runner::models::{self, ModelsArgs};
use bitnet_runner::text_commands::{self, KernelConfigs};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bitnet", version, about = "BitNet b1.58 engine command line")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Throughput of the engine beside the linked bitnet.cpp reference, llama-bench style.
    Bench(BenchArgs),
    /// One side of `bitnet bench`, run by it in a child process.
    #[command(hide = true)]
    BenchWorker(WorkerArgs),
    /// Real models: list the declared ones, verify the files found, download into the cache.
    Models(ModelsArgs),
    /// Print a GGUF file's header, hyper-parameters, tokenizer, tensors and validation report.
    Inspect {
        /// The GGUF file.
        file: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Generation from a prompt (greedy or sampled), streamed as it is produced.
    Generate(GenerateArgs),
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
        /// Write each scored token's negative log-likelihood to this file, one per line.
        #[arg(long, value_name = "FILE")]
        nll_out: Option<PathBuf>,
        /// Where to run: auto, cpu, gpu or hybrid.
        #[arg(long, default_value = "auto")]
        device: DeviceStrategy,
        /// Kernel configs of TL1 and TL2 weights.
        #[command(flatten)]
        kernel_configs: KernelConfigs,
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
        Command::Bench(args) => {
            bench::run(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchWorker(args) => {
            bench::run_worker(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Models(args) => models::run(args),
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
        Command::Generate(args) => {
            generate_command::run(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Perplexity {
            model,
            file,
            ctx,
            chunks,
            threads,
            nll_out,
            device,
            kernel_configs,
        } => {
            text_commands::perplexity_of_file(
                &model,
                &file,
                (ctx, chunks),
                (threads, device),
                nll_out.as_deref(),
                &kernel_configs,
            )?;
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
