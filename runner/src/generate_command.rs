//! `bitnet generate`: sampled or greedy generation, streamed to stdout, with a run summary on
//! stderr.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use bitnet_engine::generation::{
    generate, ChatMessage, ChatTemplate, GenerateOptions, Role, SamplerConfig, StopConditions,
};
use bitnet_engine::model::{DeviceStrategy, ModelOptions, Session};

use crate::text_commands::{load, KernelConfigs};

/// The options of `bitnet generate`.
#[derive(Debug, clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct GenerateArgs {
    /// The GGUF model.
    #[arg(short, long)]
    pub model: PathBuf,
    /// The prompt text (with --chat: the user message).
    #[arg(short, long)]
    pub prompt: String,
    /// Most tokens to generate.
    #[arg(short, long, default_value_t = 64)]
    pub n_predict: usize,
    /// Threads for the matrix products.
    #[arg(short, long, default_value_t = 1)]
    pub threads: usize,
    /// Context size (0: the model's training context).
    #[arg(short, long, default_value_t = 0)]
    pub ctx: usize,
    /// Keep the KV cache in f32 instead of f16.
    #[arg(long)]
    pub kv_f32: bool,
    /// Sampling temperature; 0 picks the most likely token (greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temp: f32,
    /// Sample among the K most likely tokens only (0: all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Sample among the most likely tokens whose probabilities reach P, in (0, 1].
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Drop tokens less likely than P times the most likely one, in [0, 1].
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    /// Penalty for tokens among the last --repeat-last-n (1: off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty looks at.
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Seed of the sampler (default: taken from the clock and printed on stderr).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where to run: auto, cpu, gpu or hybrid.
    #[arg(long, default_value = "auto")]
    pub device: DeviceStrategy,
    /// Stop when this text appears; it is not printed (repeatable).
    #[arg(long = "stop", value_name = "STR")]
    pub stop: Vec<String>,
    /// Apply the model's chat template, with the prompt as the user message.
    #[arg(long)]
    pub chat: bool,
    /// A system message for --chat.
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    /// The chat template to use instead of the model's own (bitnet, llama3).
    #[arg(long, requires = "chat")]
    pub chat_template: Option<ChatTemplate>,
    /// Kernel configs of TL1 and TL2 weights.
    #[command(flatten)]
    pub kernel_configs: KernelConfigs,
}

impl GenerateArgs {
    fn sampling(&self, seed: u64) -> SamplerConfig {
        SamplerConfig {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            seed,
        }
    }
}

/// Generates from the prompt, streaming text to stdout (the prompt first, unless --chat) and the
/// sampling settings, stop reason and run metrics to stderr.
pub fn run(args: GenerateArgs) -> Result<()> {
    let seed = args.seed.unwrap_or_else(clock_seed);
    let sampling = args.sampling(seed);
    sampling.validate().context("invalid sampling settings")?;
    if args.stop.iter().any(String::is_empty) {
        anyhow::bail!("--stop needs a non-empty string");
    }
    let options = args.kernel_configs.apply(ModelOptions {
        threads: args.threads,
        kv_f16: !args.kv_f32,
        device: args.device,
        ..ModelOptions::default()
    })?;
    let (model, tokenizer) = load(&args.model, &options)?;
    let prompt = match args.chat {
        true => chat_prompt(&args, &model)?,
        false => args.prompt.clone(),
    };
    let request = GenerateOptions {
        sampling,
        stop: StopConditions {
            max_tokens: args.n_predict,
            stop_strings: args.stop.clone(),
            stop_at_eog: true,
        },
        parse_special: args.chat,
    };
    let mut session = Session::new(&model, args.ctx);
    let mut out = std::io::stdout().lock();
    if !args.chat {
        write!(out, "{}", args.prompt).context("writing to stdout")?;
    }
    let mut write_error = None;
    let generation = generate(
        &mut session,
        &tokenizer,
        &prompt,
        &request,
        |piece| match out.write_all(piece.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                write_error = Some(e);
                ControlFlow::Break(())
            }
        },
    )
    .context("generating")?;
    if let Some(e) = write_error {
        return Err(e).context("writing to stdout");
    }
    writeln!(out).context("writing to stdout")?;
    eprintln!("sampling: {}", describe(&sampling));
    eprintln!("stopped: {}", generation.stop_reason);
    eprintln!("{}", generation.metrics);
    Ok(())
}

/// The prompt as a user message (after the system message, if any) in the chosen template.
fn chat_prompt(args: &GenerateArgs, model: &bitnet_engine::model::Model) -> Result<String> {
    let template = match args.chat_template {
        Some(t) => t,
        None => ChatTemplate::from_metadata(model.metadata()).with_context(|| {
            format!(
                "choosing the chat template of {} (--chat-template picks one)",
                args.model.display()
            )
        })?,
    };
    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(ChatMessage::new(Role::System, system.as_str()));
    }
    messages.push(ChatMessage::new(Role::User, args.prompt.as_str()));
    Ok(template.apply(&messages, true))
}

/// A seed from the clock, for runs that do not name one.
fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One line of sampling settings.
fn describe(s: &SamplerConfig) -> String {
    let penalty = match s.repeat_penalty {
        1.0 => String::new(),
        p => format!(", repeat penalty {p} over {} tokens", s.repeat_last_n),
    };
    if s.is_greedy() {
        return format!("greedy{penalty}");
    }
    format!(
        "temp {}, top-k {}, top-p {}, min-p {}{penalty}, seed {}",
        s.temperature, s.top_k, s.top_p, s.min_p, s.seed
    )
}
