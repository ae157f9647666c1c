//! The driver of `bitnet bench`: resolves the model, probes the memory bandwidth, starts one
//! worker per side for each test and thread count, alternates the sides and gathers the report.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bitnet_engine::gguf::{GgufFile, ModelHparams};
use bitnet_engine::kernels::Isa;
use bitnet_engine::model::{DeviceStrategy, SPLIT_ATTENTION_FROM};
use bitnet_engine::synth::Arch;
use bitnet_ffi_cpp::reference_info;

use super::bandwidth::{DecodeTraffic, ProbeBuffer, ProbeLength, ReadBandwidth, ReadMethod};
use super::machine::CpuInfo;
use super::report::{BenchReport, MachineSummary, ModelSummary, SideResult, TestResult, METHOD};
use super::steps::{per_token, StepTime};
use super::synthetic::{cache_dir, ensure_model, BenchShape};
use super::worker::Side;
use super::workload::{BenchTest, Reply, Request, REPLY_PREFIX};

/// The options of `bitnet bench`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["model", "shape"])))]
pub struct BenchArgs {
    /// A GGUF model to benchmark.
    #[arg(short, long)]
    pub model: Option<PathBuf>,
    /// A synthetic model with real shapes instead, generated into the cache on first use.
    #[arg(long, value_enum)]
    pub shape: Option<BenchShape>,
    /// Prompt lengths of the prefill tests (ppN), comma-separated; 0 runs none.
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "512"
    )]
    pub n_prompt: Vec<usize>,
    /// Decoded tokens of the generation tests (tgN), comma-separated; 0 runs none.
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub n_gen: Vec<usize>,
    /// Prompt tokens before the decodes of the generation tests, comma-separated: each
    /// generation test runs at each depth (named `tgN@dD` when D is not the usual 8).
    #[arg(
        short = 'd',
        long = "decode-depth",
        value_delimiter = ',',
        default_value = "8",
        value_parser = positive
    )]
    pub decode_depth: Vec<usize>,
    /// Thread counts, comma-separated (default: the CPUs available).
    #[arg(short, long, value_delimiter = ',', value_parser = positive)]
    pub threads: Vec<usize>,
    /// Repetitions of each test on each side.
    #[arg(short, long, default_value_t = 3, value_parser = positive)]
    pub reps: usize,
    /// Run the engine only; synthetic shapes then take the `bitnet-b1.58` graph, which the
    /// pinned reference does not know (side-by-side runs use `bitnet`).
    #[arg(long)]
    pub engine_only: bool,
    /// Print a JSON report instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Folder of the synthetic models (default: $BITNET_CACHE/synthetic, else the user's
    /// cache directory).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Buffer of the memory bandwidth probe, in MiB (much larger than the last-level cache).
    #[arg(long, default_value_t = 512, value_parser = positive)]
    pub probe_mib: usize,
    /// How long the memory probe reads before and after each decode run, in milliseconds:
    /// long enough that its rate, like a decode's, is sustained over many of a shared host's
    /// swings rather than caught in one of its fast moments (a pass of the buffer takes
    /// milliseconds; a decode run, seconds).
    #[arg(long, default_value_t = 1000, value_parser = positive)]
    pub probe_ms: usize,
    /// Also split the engine's decode time by step of its graph (CPU only): where a token's
    /// time goes, ms per token for each op, its share, and the rate at which its products read
    /// their weights against the run's probe.
    #[arg(long)]
    pub steps: bool,
    /// Where the engine runs, and how.
    #[command(flatten)]
    pub engine: EngineDevice,
}

/// Where the engine side runs, how it attends on a GPU, and how it holds the model file.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct EngineDevice {
    /// Where the engine runs: cpu, or gpu (a build with the `cuda` feature); the reference
    /// always runs on the CPU.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceStrategy,
    /// On a GPU, decode steps attending at least this many cache cells split attention across
    /// the context (0: always).
    #[arg(long, default_value_t = SPLIT_ATTENTION_FROM)]
    pub gpu_split_attention_from: usize,
    /// Map the model file instead of reading it into memory on huge pages (the engine's
    /// default), to measure what the huge pages are worth.
    #[arg(long)]
    pub mapped: bool,
    /// Instruction set of the engine's CPU kernels: scalar, avx2, avxvnni, avx512, avx512vnni
    /// or neon (default: the fastest this CPU has), to measure a narrower CPU's kernels on this
    /// one.
    #[arg(long)]
    pub isa: Option<Isa>,
}

fn positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Why a benchmark cannot run as asked.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Every test length is zero.
    #[error("nothing to run: every -p and -n value is 0")]
    NothingToRun,
    /// A test needs more positions than the model's context.
    #[error("{test} needs {needed} context positions; {model} has a context of {n_ctx}")]
    ContextTooShort {
        /// The test.
        test: String,
        /// Positions it needs.
        needed: usize,
        /// The model file.
        model: PathBuf,
        /// Its context length.
        n_ctx: usize,
    },
    /// The reference cannot load the model's architecture.
    #[error(
        "the reference does not load architecture `{arch}` (it knows {known}); \
         pass --engine-only to benchmark the engine alone"
    )]
    ArchNotInReference {
        /// The model's architecture.
        arch: String,
        /// Those the reference knows.
        known: String,
    },
    /// No folder to generate synthetic models into.
    #[error("no cache folder for the synthetic models: set BITNET_CACHE or pass --cache DIR")]
    NoCacheDir,
}

/// Passes of the memory probe at the start of each thread count, with each read method.
const PROBE_PASSES: usize = 10;

/// Runs the benchmark and prints the table, or the JSON report with `--json`.
pub fn run(args: BenchArgs) -> Result<()> {
    let tests = BenchTest::list(&args.n_prompt, &args.n_gen, &args.decode_depth);
    if tests.is_empty() {
        bail!(BenchError::NothingToRun);
    }
    let threads = if args.threads.is_empty() {
        vec![std::thread::available_parallelism().map_or(1, |n| n.get())]
    } else {
        args.threads.clone()
    };
    let (path, shape, generated_seconds) = match (&args.model, args.shape) {
        (Some(path), _) => (path.clone(), None, None),
        (None, Some(shape)) => {
            let arch = if args.engine_only {
                Arch::BitnetB158
            } else {
                Arch::Bitnet
            };
            let dir = cache_dir(args.cache.clone()).ok_or(BenchError::NoCacheDir)?;
            let model = ensure_model(shape, arch, &dir)?;
            let secs = model.generated_in.map(|d| d.as_secs_f64());
            (model.path, Some(shape.name()), secs)
        }
        (None, None) => bail!("pass --model FILE or --shape 2b4t|700m"),
    };
    let model = summarize(&path, shape, generated_seconds)?;
    for test in &tests {
        let n_ctx = model.n_ctx;
        if test.positions() > n_ctx {
            bail!(BenchError::ContextTooShort {
                test: test.name(),
                needed: test.positions(),
                model: path.clone(),
                n_ctx,
            });
        }
    }
    let reference = (!args.engine_only).then(reference_info);
    if let Some(info) = &reference {
        if !info
            .architectures
            .contains(&model.summary.architecture.as_str())
        {
            bail!(BenchError::ArchNotInReference {
                arch: model.summary.architecture.clone(),
                known: info.architectures.join(", "),
            });
        }
    }
    raise_stack_limit()?;
    let sides: &[Side] = if args.engine_only {
        &[Side::Engine]
    } else {
        &[Side::Engine, Side::Reference]
    };
    let mut probes = Vec::new();
    let mut results = Vec::new();
    for &n_threads in &threads {
        eprintln!("probing the memory read bandwidth with {n_threads} thread(s)");
        let probe = ProbeBuffer::new(args.probe_mib << 20).read_best(n_threads, PROBE_PASSES);
        for &test in &tests {
            results.push(run_test(
                &path,
                &Setup {
                    test,
                    threads: n_threads,
                    reps: args.reps,
                    engine: args.engine,
                    probe_bytes: args.probe_mib << 20,
                    probe_window: Duration::from_millis(args.probe_ms as u64),
                    probe_method: probe.best.method,
                    steps: args.steps,
                },
                sides,
                &model.summary.decode_traffic,
            )?);
        }
        probes.push(probe);
    }
    let report = BenchReport {
        model: model.summary,
        machine: MachineSummary {
            cpu: CpuInfo::detect(),
            memory_read_bandwidth: probes,
        },
        engine_version: env!("CARGO_PKG_VERSION"),
        reference,
        threads,
        reps: args.reps,
        method: METHOD,
        results,
    };
    if args.json {
        let text = serde_json::to_string_pretty(&report).context("encoding the report")?;
        println!("{text}");
    } else {
        print!("{}", report.render());
    }
    Ok(())
}

struct ModelFacts {
    summary: ModelSummary,
    n_ctx: usize,
}

fn summarize(
    path: &Path,
    shape: Option<&'static str>,
    generated_seconds: Option<f64>,
) -> Result<ModelFacts> {
    let file = GgufFile::open(path).with_context(|| format!("opening {}", path.display()))?;
    let hp = ModelHparams::from_metadata(file.metadata())
        .with_context(|| format!("hyper-parameters of {}", path.display()))?;
    let tensors = &file.layout().tensors;
    let decode_traffic = DecodeTraffic::of_tensors(tensors)
        .with_context(|| format!("{} has no output head", path.display()))?;
    let n_vocab = tensors
        .iter()
        .find(|t| t.name == "token_embd.weight")
        .and_then(|t| t.dims.get(1))
        .map_or(0, |&n| n as usize);
    Ok(ModelFacts {
        summary: ModelSummary {
            path: path.display().to_string(),
            shape,
            architecture: hp.arch.clone(),
            file_bytes: file.bytes().len() as u64,
            n_vocab,
            n_layer: hp.block_count,
            n_embd: hp.embedding_length,
            decode_traffic,
            generated_seconds,
        },
        n_ctx: hp.context_length as usize,
    })
}

/// One test at one thread count, repeated, with the engine's device and the buffer and read
/// method of the memory probe.
struct Setup {
    test: BenchTest,
    threads: usize,
    reps: usize,
    engine: EngineDevice,
    probe_bytes: usize,
    probe_window: Duration,
    probe_method: ReadMethod,
    steps: bool,
}

/// Runs `reps` repetitions of `test` on every side, alternating, each side in a fresh worker; a
/// decode test probes the memory read bandwidth for `probe_window` before the first run and
/// after every run, while the workers wait, by the method that read fastest at the start.
fn run_test(
    model: &Path,
    setup: &Setup,
    sides: &[Side],
    traffic: &DecodeTraffic,
) -> Result<TestResult> {
    let Setup {
        test,
        threads,
        reps,
        engine,
        probe_bytes,
        probe_window,
        probe_method,
        steps,
    } = *setup;
    // Only the engine's decode is split by step.
    let steps = steps && test.is_decode();
    let mut workers = sides
        .iter()
        .map(|&side| Worker::spawn(side, model, threads, engine, steps && side == Side::Engine))
        .collect::<Result<Vec<_>>>()?;
    let mut step_runs = vec![Vec::with_capacity(reps); sides.len()];
    let mut samples = vec![Vec::with_capacity(reps); sides.len()];
    // The host's memory may change speed between runs: each run is compared with the probes
    // right before and right after it.
    let buffer = test.is_decode().then(|| ProbeBuffer::new(probe_bytes));
    let probe_now = |buffer: &ProbeBuffer| {
        buffer.read(threads, ProbeLength::Window(probe_window), probe_method)
    };
    let mut before = buffer.as_ref().map(probe_now);
    let mut probe = before;
    let mut run_probes = vec![Vec::with_capacity(reps); sides.len()];
    for rep in 1..=reps {
        let mut line = format!("{} t={threads} rep {rep}/{reps}:", test.name());
        for (((worker, samples), run_probes), step_runs) in workers
            .iter_mut()
            .zip(&mut samples)
            .zip(&mut run_probes)
            .zip(&mut step_runs)
        {
            let (seconds, steps) = worker.run(test)?;
            step_runs.push(steps);
            let rate = test.timed_tokens() as f64 / seconds;
            samples.push(rate);
            line += &format!(" {} {rate:.2} t/s", worker.side.name());
            if let (Some(earlier), Some(buffer)) = (before, &buffer) {
                let after = probe_now(buffer);
                run_probes.push(earlier.faster(after));
                probe = probe.map(|p| p.faster(after));
                before = Some(after);
            }
        }
        eprintln!("{line}");
    }
    let mut results = Vec::new();
    for (((worker, samples), run_probes), step_runs) in workers
        .into_iter()
        .zip(&samples)
        .zip(&run_probes)
        .zip(&step_runs)
    {
        let (load_seconds, device) = (worker.load_seconds, worker.device.clone());
        let (peak_rss, peak_gpu) = worker.finish()?;
        // The CPU's bandwidth probe says nothing of a GPU's decode.
        let run_probes: &[ReadBandwidth] = if peak_gpu.is_none() { run_probes } else { &[] };
        let mut result =
            SideResult::new(test, samples, peak_rss, load_seconds, traffic, run_probes)
                .context("no repetitions")?;
        result.device = device;
        result.peak_gpu_bytes = peak_gpu;
        // The steps of the run whose bandwidth the table shows, else of every run.
        let shown = result
            .decode_runs
            .iter()
            .position(|b| Some(*b) == result.decode_bandwidth);
        result.decode_steps = match shown {
            Some(run) => per_token(&step_runs[run..=run], test.timed_tokens()),
            None => per_token(step_runs, reps * test.timed_tokens()),
        };
        results.push(result);
    }
    let mut results = results.into_iter();
    let engine = results.next().context("no engine result")?;
    Ok(TestResult::new(
        test,
        threads,
        engine,
        results.next(),
        probe,
    ))
}

/// A worker process: this executable's hidden `bench-worker` command.
struct Worker {
    side: Side,
    threads: usize,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    load_seconds: f64,
    device: String,
}

impl Worker {
    /// Starts a worker and waits until it has loaded the model and warmed up.
    fn spawn(
        side: Side,
        model: &Path,
        threads: usize,
        engine: EngineDevice,
        steps: bool,
    ) -> Result<Worker> {
        let exe = std::env::current_exe().context("locating the bitnet executable")?;
        let device = match side {
            Side::Engine => engine.device,
            Side::Reference => DeviceStrategy::ForceCpu,
        };
        let mut child = Command::new(exe)
            .arg("bench-worker")
            .args(["--side", side.name()])
            .arg("--model")
            .arg(model)
            .args(["--threads", &threads.to_string()])
            .args(["--device", device.name()])
            .arg("--gpu-split-attention-from")
            .arg(engine.gpu_split_attention_from.to_string())
            .args(engine.mapped.then_some("--mapped"))
            .args(steps.then_some("--steps"))
            .args(engine.isa.iter().flat_map(|isa| ["--isa", isa.name()]))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting the {} worker", side.name()))?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("worker stdout")?);
        let mut worker = Worker {
            side,
            threads,
            child,
            stdin,
            stdout,
            load_seconds: 0.0,
            device: String::new(),
        };
        match worker.read_reply("loading")? {
            Reply::Ready {
                load_seconds,
                device,
            } => {
                worker.load_seconds = load_seconds;
                worker.device = device;
            }
            other => bail!(worker.unexpected(&other, "loading")),
        }
        Ok(worker)
    }

    /// Runs one repetition; returns the seconds of its timed part and their split by step,
    /// when the worker times steps.
    fn run(&mut self, test: BenchTest) -> Result<(f64, Vec<StepTime>)> {
        let what = test.name();
        self.send(Request::Run(test), &what)?;
        match self.read_reply(&what)? {
            Reply::Timed { seconds, steps } if seconds > 0.0 => Ok((seconds, steps)),
            other => bail!(self.unexpected(&other, &what)),
        }
    }

    /// Asks the worker to exit; returns its peak resident set and peak device memory.
    fn finish(mut self) -> Result<(Option<u64>, Option<u64>)> {
        self.send(Request::Finish, "finishing")?;
        let peak = match self.read_reply("finishing")? {
            Reply::Finished {
                peak_rss_bytes,
                peak_gpu_bytes,
            } => (peak_rss_bytes, peak_gpu_bytes),
            other => bail!(self.unexpected(&other, "finishing")),
        };
        let status = self.child.wait().context("waiting for a worker")?;
        if !status.success() {
            bail!("{} exited with {status}", self.label());
        }
        Ok(peak)
    }

    fn send(&mut self, request: Request, what: &str) -> Result<()> {
        let line = serde_json::to_string(&request).context("encoding a request")?;
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| self.gone(what, &e.to_string()))
    }

    /// The next reply; other output of the worker is passed on to stderr.
    fn read_reply(&mut self, what: &str) -> Result<Reply> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .stdout
                .read_line(&mut line)
                .map_err(|e| self.gone(what, &e.to_string()))?;
            if n == 0 {
                bail!(self.gone(what, "its output ended"));
            }
            let Some(json) = line.trim_end().strip_prefix(REPLY_PREFIX) else {
                eprint!("{}: {line}", self.label());
                continue;
            };
            return match serde_json::from_str(json) {
                Ok(Reply::Failed { error }) => {
                    bail!("{} failed during {what}: {error}", self.label())
                }
                Ok(reply) => Ok(reply),
                Err(e) => bail!("{} sent a bad reply {json:?}: {e}", self.label()),
            };
        }
    }

    fn label(&self) -> String {
        format!(
            "the {} worker ({} thread(s))",
            self.side.name(),
            self.threads
        )
    }

    /// The error for a worker that stopped answering, with its exit status when it has one.
    fn gone(&mut self, what: &str, why: &str) -> anyhow::Error {
        let status = match self.child.wait() {
            Ok(status) => format!("; it exited with {status}"),
            Err(_) => String::new(),
        };
        anyhow::anyhow!("{} stopped during {what}: {why}{status}", self.label())
    }

    fn unexpected(&self, reply: &Reply, what: &str) -> anyhow::Error {
        anyhow::anyhow!("{} answered {reply:?} during {what}", self.label())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // On an error path the worker may still run: end it (our own child, by handle).
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Gives worker processes (which inherit it) a stack limit large enough that big prefill batches
/// do not depend on the usual 8 MiB: recent bitnet.cpp trees (`BITNET_CPP_DIR`) keep a
/// rows × tokens buffer on the stack of their compute threads, whose default size glibc takes
/// from this limit, and crash on pp512 at one thread without it.
#[cfg(unix)]
fn raise_stack_limit() -> Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
    const WANTED: u64 = 1 << 30;
    let (soft, hard) = getrlimit(Resource::RLIMIT_STACK).context("reading the stack limit")?;
    let target = WANTED.min(hard);
    // An unlimited stack would leave glibc's thread stacks at its small built-in default.
    if soft < target || soft == RLIM_INFINITY {
        setrlimit(Resource::RLIMIT_STACK, target, hard).context("raising the stack limit")?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn raise_stack_limit() -> Result<()> {
    Ok(())
}
