//! The worker process of `bitnet bench`: loads one model on one side (engine or reference) with
//! one thread count, then times the tests the driver sends on stdin, so that each side's peak
//! memory is its own.

use std::hint::black_box;
use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bitnet_engine::cuda;
use bitnet_engine::gguf::Residency;
use bitnet_engine::model::{argmax, Device, DeviceStrategy, Model, ModelOptions, Session};
use bitnet_ffi_cpp::{Backend, ContextParams, ModelParams};

use super::driver::EngineDevice;
use super::machine::peak_rss_bytes;
use super::steps::{StepClock, StepTime};
use super::workload::{prompt_tokens, BenchTest, Reply, Request, DECODE_PROMPT, REPLY_PREFIX};

/// Which implementation a worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The Rust engine (on the device of `--device`).
    Engine,
    /// The linked bitnet.cpp reference.
    Reference,
}

impl Side {
    /// `engine` or `reference`.
    pub fn name(self) -> &'static str {
        match self {
            Side::Engine => "engine",
            Side::Reference => "reference",
        }
    }
}

/// The options of the hidden `bitnet bench-worker` command.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Which implementation to run.
    #[arg(long, value_enum)]
    pub side: Side,
    /// The GGUF model.
    #[arg(long)]
    pub model: PathBuf,
    /// Threads.
    #[arg(long)]
    pub threads: usize,
    /// Where the engine runs, and how.
    #[command(flatten)]
    pub engine: EngineDevice,
    /// Split the engine's decode time by step of its graph (CPU only).
    #[arg(long)]
    pub steps: bool,
}

/// Serves the driver on stdin/stdout until it asks to finish; a failure is reported to the
/// driver as well as returned.
pub fn run_worker(args: &WorkerArgs) -> Result<()> {
    let mut out = io::stdout().lock();
    let result = serve(args, io::stdin().lock(), &mut out);
    if let Err(e) = &result {
        // The driver may be gone already; the error is returned either way.
        let _ = reply(
            &mut out,
            &Reply::Failed {
                error: format!("{e:#}"),
            },
        );
    }
    result
}

fn serve(args: &WorkerArgs, input: impl BufRead, out: &mut impl Write) -> Result<()> {
    let start = Instant::now();
    let mut side: Box<dyn Timer> = match args.side {
        Side::Engine => Box::new(EngineTimer::load(args)?),
        Side::Reference => Box::new(ReferenceTimer::load(args)?),
    };
    // Page the weights in and touch both the batched and the single-token paths.
    side.time(BenchTest::Prefill(DECODE_PROMPT.min(side.n_ctx_train())))
        .context("warm-up prefill")?;
    side.time(BenchTest::decode(1)).context("warm-up decode")?;
    side.take_steps();
    reply(
        out,
        &Reply::Ready {
            load_seconds: start.elapsed().as_secs_f64(),
            device: side.device(),
        },
    )?;
    for line in input.lines() {
        let line = line.context("reading a request")?;
        let request: Request =
            serde_json::from_str(&line).with_context(|| format!("bad request {line:?}"))?;
        match request {
            Request::Run(test) => {
                let seconds = side
                    .time(test)
                    .with_context(|| format!("{} on the {}", test.name(), args.side.name()))?;
                let steps = side.take_steps();
                reply(out, &Reply::Timed { seconds, steps })?;
            }
            Request::Finish => {
                return reply(
                    out,
                    &Reply::Finished {
                        peak_rss_bytes: peak_rss_bytes(),
                        peak_gpu_bytes: side.peak_gpu_bytes(),
                    },
                );
            }
        }
    }
    bail!("the driver closed stdin without asking to finish")
}

fn reply(out: &mut impl Write, reply: &Reply) -> Result<()> {
    let json = serde_json::to_string(reply).context("encoding a reply")?;
    writeln!(out, "{REPLY_PREFIX}{json}")
        .and_then(|()| out.flush())
        .context("writing a reply to the driver")
}

/// Runs one repetition of a test in a fresh context and returns the seconds of its timed part.
trait Timer {
    fn time(&mut self, test: BenchTest) -> Result<f64>;
    fn n_ctx_train(&self) -> usize;
    /// Where this side runs.
    fn device(&self) -> String {
        "cpu".into()
    }
    /// The most device memory in use while a test ran, for a side on a GPU.
    fn peak_gpu_bytes(&self) -> Option<u64> {
        None
    }
    /// The decode steps timed since the last call, for a side that times them.
    fn take_steps(&mut self) -> Vec<StepTime> {
        Vec::new()
    }
}

struct EngineTimer {
    model: Model,
    /// Free device memory before the model was loaded, and the least seen since.
    gpu_free: Option<(u64, u64)>,
    /// Times the steps of each decode, when asked to.
    steps: Option<StepClock>,
}

impl EngineTimer {
    fn load(args: &WorkerArgs) -> Result<Self> {
        let options = ModelOptions {
            threads: args.threads,
            device: args.engine.device,
            gpu_split_attention_from: args.engine.gpu_split_attention_from,
            isa: args.engine.isa,
            residency: match args.engine.mapped {
                true => Residency::Mapped,
                false => Residency::HugePages,
            },
            ..ModelOptions::default()
        };
        let before = (args.engine.device != DeviceStrategy::ForceCpu)
            .then(|| cuda::probe(0).ok())
            .flatten()
            .map(|info| info.free_memory);
        let model = Model::load(&args.model, &options)
            .with_context(|| format!("loading {} in the engine", args.model.display()))?;
        let gpu_free = match model.device().device {
            Device::Cuda(_) => before.map(|b| (b, b)),
            _ => None,
        };
        if args.steps && model.device().device != Device::Cpu {
            bail!(
                "--steps times the steps of the CPU graph; the engine runs on {}",
                model.device()
            );
        }
        let steps = args.steps.then(StepClock::default);
        Ok(EngineTimer {
            model,
            gpu_free,
            steps,
        })
    }
}

impl Timer for EngineTimer {
    fn time(&mut self, test: BenchTest) -> Result<f64> {
        let n_vocab = self.model.n_vocab();
        let mut session = Session::new(&self.model, test.positions());
        let seconds = match test {
            BenchTest::Prefill(n) => {
                let tokens = prompt_tokens(n, n_vocab);
                let start = Instant::now();
                black_box(session.eval_greedy(&tokens)?);
                start.elapsed().as_secs_f64()
            }
            BenchTest::Decode { tokens: n, depth } => {
                let mut token = session.eval_greedy(&prompt_tokens(depth, n_vocab))?;
                let start = Instant::now();
                for _ in 0..n {
                    token = match &mut self.steps {
                        Some(clock) => clock.decode(&mut session, token)?,
                        None => session.eval_greedy(&[token])?,
                    };
                }
                start.elapsed().as_secs_f64()
            }
        };
        // Device memory in use while the session still holds its cache.
        let free = self
            .gpu_free
            .and_then(|_| cuda::probe(0).ok())
            .map(|info| info.free_memory);
        drop(session);
        if let (Some((_, least)), Some(free)) = (self.gpu_free.as_mut(), free) {
            *least = (*least).min(free);
        }
        Ok(seconds)
    }

    fn n_ctx_train(&self) -> usize {
        self.model.n_ctx_train()
    }

    fn device(&self) -> String {
        let choice = self.model.device();
        match choice.device {
            Device::Cpu => {
                let isa = self.model.isa();
                let prefetch = isa
                    .stream_prefetch()
                    .map(|how| format!(", weight rows asked for with {how}"))
                    .unwrap_or_default();
                format!("{choice}; {isa} kernels{prefetch}")
            }
            _ => choice.to_string(),
        }
    }

    fn peak_gpu_bytes(&self) -> Option<u64> {
        self.gpu_free
            .map(|(before, least)| before.saturating_sub(least))
    }

    fn take_steps(&mut self) -> Vec<StepTime> {
        self.steps.as_mut().map(StepClock::take).unwrap_or_default()
    }
}

struct ReferenceTimer {
    model: bitnet_ffi_cpp::Model,
    threads: u32,
}

impl ReferenceTimer {
    fn load(args: &WorkerArgs) -> Result<Self> {
        let backend = Backend::init().context("initialising the reference")?;
        let model = bitnet_ffi_cpp::Model::load(&backend, &args.model, &ModelParams::default())
            .with_context(|| format!("loading {} in the reference", args.model.display()))?;
        let threads = u32::try_from(args.threads).context("thread count")?;
        Ok(ReferenceTimer { model, threads })
    }
}

impl Timer for ReferenceTimer {
    fn time(&mut self, test: BenchTest) -> Result<f64> {
        let n_vocab = self.model.info().n_vocab as usize;
        let n_ctx = u32::try_from(test.positions()).context("context length")?;
        let mut ctx = self.model.new_context(&ContextParams {
            n_ctx,
            n_batch: n_ctx,
            n_threads: self.threads,
            capture: Vec::new(),
        })?;
        match test {
            BenchTest::Prefill(n) => {
                let tokens = prompt_tokens(n, n_vocab);
                let start = Instant::now();
                // One batch with the logits of the last token only, then a greedy pick.
                black_box(ctx.generate_greedy(&tokens, 1, false)?);
                Ok(start.elapsed().as_secs_f64())
            }
            BenchTest::Decode { tokens: n, depth } => {
                let logits = ctx.eval(&prompt_tokens(depth, n_vocab))?;
                let last = logits.n_tokens().saturating_sub(1);
                let mut token = logits.row(last).map(argmax).context("no logits")?;
                let start = Instant::now();
                for _ in 0..n {
                    let logits = ctx.eval(&[token])?;
                    token = logits.row(0).map(argmax).context("no logits")?;
                }
                Ok(start.elapsed().as_secs_f64())
            }
        }
    }

    fn n_ctx_train(&self) -> usize {
        self.model.info().n_ctx_train as usize
    }
}
