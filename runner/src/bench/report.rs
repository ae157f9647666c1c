//! The results of a benchmark: the JSON report and the llama-bench-like table.

use bitnet_ffi_cpp::ReferenceInfo;
use serde::Serialize;

use super::bandwidth::{
    achieved_bandwidth, fraction_of, DecodeTraffic, MethodsProbe, ReadBandwidth,
};
use super::machine::CpuInfo;
use super::stats::Spread;
use super::steps::StepTime;
use super::workload::BenchTest;

/// Everything one `bitnet bench` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The model benchmarked.
    pub model: ModelSummary,
    /// The machine, with its probed memory read bandwidth.
    pub machine: MachineSummary,
    /// Version of the engine.
    pub engine_version: &'static str,
    /// The reference linked in (absent for `--engine-only`).
    pub reference: Option<ReferenceInfo>,
    /// Thread counts, in the order run.
    pub threads: Vec<usize>,
    /// Repetitions of each test on each side.
    pub reps: usize,
    /// How the tests are run.
    pub method: &'static str,
    /// One entry per test and thread count.
    pub results: Vec<TestResult>,
}

/// How the tests are run, for readers of the report.
pub const METHOD: &str = "ppN: one batch of N tokens in a fresh context, logits of the last only; \
     tgN: N single-token decodes after an untimed 8-token prompt. Each test and thread count runs \
     in fresh worker processes (one per side, loaded and warmed up before timing), alternating \
     engine and reference each repetition. Peak RSS is the worker's VmHWM (ru_maxrss off Linux). \
     Decode bandwidth (CPU sides) is the block matrices plus the whole output head per token, \
     times tokens/s, as a fraction of the read bandwidth that a probe sustained for one second \
     (reading as the fastest at the start of plain loads and loads that prefetch each way the \
     engine may stream its weights) just before or just after the run, whichever sustained more \
     (the machine's bandwidth drifts on shared hosts), and of that probe's peak (its threads' \
     fastest passes); a GPU side reports the most device memory in use while a test ran \
     instead.";

/// The model and its decode traffic.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    /// The file.
    pub path: String,
    /// The synthetic shape, when the model is one.
    pub shape: Option<&'static str>,
    /// `general.architecture`.
    pub architecture: String,
    /// Size of the file.
    pub file_bytes: u64,
    /// Vocabulary size.
    pub n_vocab: usize,
    /// Blocks.
    pub n_layer: u32,
    /// Width.
    pub n_embd: u32,
    /// Bytes one decoded token streams.
    pub decode_traffic: DecodeTraffic,
    /// Seconds spent generating the synthetic file in this run (absent when it was cached or
    /// given).
    pub generated_seconds: Option<f64>,
}

/// The machine.
#[derive(Debug, Clone, Serialize)]
pub struct MachineSummary {
    /// CPU model and flags.
    pub cpu: CpuInfo,
    /// The read bandwidth probe, once per thread count.
    pub memory_read_bandwidth: Vec<MethodsProbe>,
}

/// One test at one thread count, on each side.
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    /// `pp128`, `tg32`.
    pub test: String,
    /// The test.
    pub kind: BenchTest,
    /// Threads of both sides.
    pub threads: usize,
    /// The engine's figures.
    pub engine: SideResult,
    /// The reference's figures (absent for `--engine-only`).
    pub reference: Option<SideResult>,
    /// Median tokens/s of the engine over that of the reference.
    pub ratio: Option<f64>,
    /// The probe that sustained the most of those before and after each run of a decode test,
    /// with the peak of all of them (absent for prefill tests).
    pub probe: Option<ReadBandwidth>,
}

/// One side's figures for one test.
#[derive(Debug, Clone, Serialize)]
pub struct SideResult {
    /// Tokens per second of the repetitions.
    pub tokens_per_second: Spread,
    /// Peak resident set of the worker process that ran the test.
    pub peak_rss_bytes: Option<u64>,
    /// Seconds the worker took to load the model and warm up.
    pub load_seconds: f64,
    /// Memory read bandwidth of the run whose fraction of its probe is the median (the lower
    /// of the two middle ones for an even count; decode tests on the CPU only).
    pub decode_bandwidth: Option<Bandwidth>,
    /// Memory read bandwidth of each run, against the probe just before or just after it that
    /// sustained more (decode tests on the CPU only).
    pub decode_runs: Vec<Bandwidth>,
    /// Where the side ran, and why.
    pub device: String,
    /// Most device memory in use while the test ran (a side on a GPU).
    pub peak_gpu_bytes: Option<u64>,
    /// Seconds per decoded token by step of the graph, and the weight bytes each read, in the
    /// run whose bandwidth `decode_bandwidth` gives (`--steps`; the engine's decode on the CPU
    /// only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub decode_steps: Vec<StepTime>,
}

/// Achieved read bandwidth.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bandwidth {
    /// Bytes per second.
    pub bytes_per_second: f64,
    /// The read bandwidth the probe beside it sustained, in bytes per second.
    pub probe_bytes_per_second: f64,
    /// As a fraction of that probe.
    pub fraction_of_probe: f64,
    /// That probe's peak (its threads' fastest passes), in bytes per second.
    pub probe_peak_bytes_per_second: f64,
    /// As a fraction of that peak.
    pub fraction_of_peak: f64,
}

impl Bandwidth {
    /// The bandwidth of decoding at `tokens_per_second` with `traffic`, against `probe`.
    pub fn of_decode(
        traffic: &DecodeTraffic,
        tokens_per_second: f64,
        probe: &ReadBandwidth,
    ) -> Self {
        let bytes_per_second = achieved_bandwidth(traffic.per_token(), tokens_per_second);
        Bandwidth {
            bytes_per_second,
            probe_bytes_per_second: probe.bytes_per_second,
            fraction_of_probe: fraction_of(bytes_per_second, probe.bytes_per_second),
            probe_peak_bytes_per_second: probe.peak_bytes_per_second,
            fraction_of_peak: fraction_of(bytes_per_second, probe.peak_bytes_per_second),
        }
    }
}

impl SideResult {
    /// The figures of `samples` (tokens/s) for `test`, each run's decode bandwidth against its
    /// probe in `probes` (one per sample, or none).
    pub fn new(
        test: BenchTest,
        samples: &[f64],
        peak_rss_bytes: Option<u64>,
        load_seconds: f64,
        traffic: &DecodeTraffic,
        probes: &[ReadBandwidth],
    ) -> Option<SideResult> {
        let tokens_per_second = Spread::of(samples)?;
        let decode_runs: Vec<Bandwidth> = match test.is_decode() && probes.len() == samples.len() {
            true => samples
                .iter()
                .zip(probes)
                .map(|(&rate, probe)| Bandwidth::of_decode(traffic, rate, probe))
                .collect(),
            false => Vec::new(),
        };
        let mut by_fraction = decode_runs.clone();
        by_fraction.sort_by(|a, b| a.fraction_of_probe.total_cmp(&b.fraction_of_probe));
        let decode_bandwidth = by_fraction
            .len()
            .checked_sub(1)
            .map(|last| by_fraction[last / 2]);
        Some(SideResult {
            tokens_per_second,
            peak_rss_bytes,
            load_seconds,
            decode_bandwidth,
            decode_runs,
            device: "cpu".into(),
            peak_gpu_bytes: None,
            decode_steps: Vec::new(),
        })
    }
}

impl TestResult {
    /// The result of `test` at `threads`, with the ratio of the medians.
    pub fn new(
        test: BenchTest,
        threads: usize,
        engine: SideResult,
        reference: Option<SideResult>,
        probe: Option<ReadBandwidth>,
    ) -> Self {
        let ratio = reference
            .as_ref()
            .map(|r| engine.tokens_per_second.median / r.tokens_per_second.median);
        TestResult {
            test: test.name(),
            kind: test,
            threads,
            engine,
            reference,
            ratio,
            probe,
        }
    }
}

impl BenchReport {
    /// The report as text: a summary of model and machine, then one table row per result.
    pub fn render(&self) -> String {
        let m = &self.model;
        let t = &m.decode_traffic;
        let mut out = format!(
            "model: {} ({}{}), {}, {} layers, width {}, vocab {}\n",
            m.path,
            m.architecture,
            m.shape
                .map(|s| format!(", synthetic {s}"))
                .unwrap_or_default(),
            bytes(m.file_bytes as f64),
            m.n_layer,
            m.n_embd,
            m.n_vocab,
        );
        out += &format!(
            "decode streams {} per token: {} of block matrices + {} of output head\n",
            bytes(t.per_token() as f64),
            bytes(t.block_weights as f64),
            bytes(t.head as f64),
        );
        let cpu = &self.machine.cpu;
        out += &format!(
            "cpu: {} ({} logical; {})\n",
            cpu.model.as_deref().unwrap_or("unknown"),
            cpu.logical_cpus,
            cpu.kernel_flags().join(" "),
        );
        let probes: Vec<String> = self
            .machine
            .memory_read_bandwidth
            .iter()
            .map(|p| {
                let methods: Vec<String> = p
                    .by_method
                    .iter()
                    .map(|m| format!("{} {}/s", m.method, bytes(m.bytes_per_second)))
                    .collect();
                format!(
                    "{} thread(s) {}/s (peak {}/s; {}; each method: {})",
                    p.best.threads,
                    bytes(p.best.bytes_per_second),
                    bytes(p.best.peak_bytes_per_second),
                    p.best.method,
                    methods.join(", ")
                )
            })
            .collect();
        out += &format!(
            "memory read bandwidth (probe at the start, the fastest of plain loads and loads that \
             prefetch each way the engine may stream its weights): {}; decode tests probe for a \
             second before and after every run with that method, compare each run with the probe \
             beside it that sustained more (and with that probe's peak), and show the run with \
             the median fraction\n",
            probes.join(", ")
        );
        if let Some(first) = self.results.first() {
            out += &format!("engine device: {}\n", first.engine.device);
        }
        if let Some(r) = &self.reference {
            out += &format!("reference: {} ({})\n", r.version, r.isa);
        }
        out += &format!(
            "{} repetition(s) per side{}; t/s: median [min-max]\n\n",
            self.reps,
            if self.reference.is_some() {
                ", engine and reference alternated"
            } else {
                ""
            }
        );
        out += &self.table();
        for result in &self.results {
            out += &steps_table(result);
        }
        out
    }

    fn table(&self) -> String {
        let with_ref = self.reference.is_some();
        let mut header = vec!["test", "threads", "engine t/s"];
        if with_ref {
            header.extend(["reference t/s", "engine/ref"]);
        }
        let on_gpu = self
            .results
            .iter()
            .any(|r| r.engine.peak_gpu_bytes.is_some());
        header.push("engine RSS");
        if with_ref {
            header.push("reference RSS");
        }
        if on_gpu {
            header.push("engine GPU memory");
        }
        header.push("engine decode BW");
        if with_ref {
            header.push("reference decode BW");
        }
        let rows: Vec<Vec<String>> = self
            .results
            .iter()
            .map(|r| {
                let reference = r.reference.as_ref();
                let mut row = vec![r.test.clone(), r.threads.to_string(), rate(&r.engine)];
                if with_ref {
                    row.push(reference.map(rate).unwrap_or_default());
                    row.push(r.ratio.map(|x| format!("{x:.2}")).unwrap_or_default());
                }
                row.push(rss(&r.engine));
                if with_ref {
                    row.push(reference.map(rss).unwrap_or_default());
                }
                if on_gpu {
                    row.push(
                        r.engine
                            .peak_gpu_bytes
                            .map_or("n/a".into(), |b| bytes(b as f64)),
                    );
                }
                row.push(bw(&r.engine));
                if with_ref {
                    row.push(reference.map(bw).unwrap_or_default());
                }
                row
            })
            .collect();
        markdown_table(&header, &rows)
    }
}

/// The engine's decode time of `result` by step, when it was timed so, in the run the main
/// table shows: each step from the op before it to the op named, over every layer, with the
/// bandwidth of the weights its products read, against that run's probe.
fn steps_table(result: &TestResult) -> String {
    let steps = &result.engine.decode_steps;
    let total: f64 = steps.iter().map(|s| s.seconds).sum();
    if steps.is_empty() || total <= 0.0 {
        return String::new();
    }
    let probe = result
        .engine
        .decode_bandwidth
        .map(|b| b.probe_bytes_per_second);
    let rows: Vec<Vec<String>> = steps
        .iter()
        .map(|s| {
            let rate =
                (s.weight_bytes > 0.0 && s.seconds > 0.0).then(|| s.weight_bytes / s.seconds);
            vec![
                s.op.clone(),
                format!("{:.3}", s.seconds * 1e3),
                format!("{:.1}%", 100.0 * s.seconds / total),
                rate.map(|r| format!("{}/s", bytes(r))).unwrap_or_default(),
                rate.zip(probe)
                    .map(|(r, p)| format!("{:.0}%", 100.0 * r / p))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    format!(
        "\nengine {} at {} thread(s), the run shown above by step (from the op before to the op \
         named, every layer; {:.3} ms per token; weights read per second, and that against the \
         run's probe):\n\n{}",
        result.test,
        result.threads,
        total * 1e3,
        markdown_table(&["step", "ms/token", "share", "weights", "of probe"], &rows)
    )
}

fn rate(side: &SideResult) -> String {
    let s = &side.tokens_per_second;
    format!("{:.2} [{:.2}-{:.2}]", s.median, s.min, s.max)
}

fn rss(side: &SideResult) -> String {
    side.peak_rss_bytes
        .map(|b| bytes(b as f64))
        .unwrap_or_else(|| "n/a".into())
}

fn bw(side: &SideResult) -> String {
    side.decode_bandwidth
        .map(|b| {
            format!(
                "{}/s ({:.0}% of {}/s; {:.0}% of peak {}/s)",
                bytes(b.bytes_per_second),
                100.0 * b.fraction_of_probe,
                bytes(b.probe_bytes_per_second),
                100.0 * b.fraction_of_peak,
                bytes(b.probe_peak_bytes_per_second)
            )
        })
        .unwrap_or_default()
}

/// Decimal units, as bandwidths are quoted.
fn bytes(b: f64) -> String {
    match b {
        b if b >= 1e9 => format!("{:.2} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.1} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.1} kB", b / 1e3),
        b => format!("{b:.0} B"),
    }
}

/// A Markdown table with padded columns: text left-aligned in the first column, the rest
/// right-aligned.
fn markdown_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (text, &w))| match c {
                0 => format!(" {text:<w$} "),
                _ => format!(" {text:>w$} "),
            })
            .collect();
        format!("|{}|\n", padded.join("|"))
    };
    let mut out = line(header.to_vec());
    let rule: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(c, &w)| match c {
            0 => format!(":{}", "-".repeat(w + 1)),
            _ => format!("{}:", "-".repeat(w + 1)),
        })
        .collect();
    out += &format!("|{}|\n", rule.join("|"));
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::bandwidth::ReadMethod;

    fn probe(gb_per_second: f64) -> ReadBandwidth {
        ReadBandwidth {
            threads: 1,
            bytes_per_second: gb_per_second * 1e9,
            peak_bytes_per_second: gb_per_second * 1.25e9,
            buffer_bytes: 1 << 29,
            passes: 10,
            seconds: 1.0,
            method: ReadMethod::Loads,
        }
    }

    #[test]
    fn decode_results_carry_bandwidth_and_prefill_results_do_not() {
        let traffic = DecodeTraffic {
            block_weights: 521_000_000,
            head: 657_000_000,
        };
        let probes = [probe(30.0); 3];
        let tg = SideResult::new(
            BenchTest::decode(32),
            &[15.0, 16.0, 14.0],
            Some(1),
            0.5,
            &traffic,
            &probes,
        )
        .unwrap();
        let b = tg.decode_bandwidth.unwrap();
        assert!((b.bytes_per_second - 1.178e9 * 15.0).abs() < 1.0);
        assert!((b.fraction_of_probe - 1.178 * 15.0 / 30.0).abs() < 1e-9);
        assert_eq!(tg.decode_runs.len(), 3);
        let pp = SideResult::new(
            BenchTest::Prefill(8),
            &[30.0],
            None,
            0.5,
            &traffic,
            &probes[..1],
        )
        .unwrap();
        assert_eq!(pp.decode_bandwidth, None);
        assert!(pp.decode_runs.is_empty());
        assert!(SideResult::new(BenchTest::Prefill(8), &[], None, 0.5, &traffic, &[]).is_none());

        assert_eq!(
            bw(&tg),
            "17.67 GB/s (59% of 30.00 GB/s; 47% of peak 37.50 GB/s)"
        );
        let r = TestResult::new(BenchTest::Prefill(8), 2, pp.clone(), Some(tg), None);
        assert!((r.ratio.unwrap() - 2.0).abs() < 1e-12);
        assert_eq!(
            TestResult::new(BenchTest::Prefill(8), 2, pp, None, None).ratio,
            None
        );
    }

    #[test]
    fn a_decode_split_by_step_is_a_table_of_its_shares() {
        let traffic = DecodeTraffic {
            block_weights: 1,
            head: 1,
        };
        let mut tg =
            SideResult::new(BenchTest::decode(4), &[10.0], None, 0.5, &traffic, &[]).unwrap();
        let result =
            |side: &SideResult| TestResult::new(BenchTest::decode(4), 2, side.clone(), None, None);
        assert_eq!(steps_table(&result(&tg)), "");
        tg.decode_steps = [("Qcur", 0.025, 0.0), ("result_output", 0.075, 1.5e9)]
            .map(|(op, seconds, weight_bytes)| StepTime {
                op: op.into(),
                seconds,
                weight_bytes,
            })
            .to_vec();
        let table = steps_table(&result(&tg));
        assert!(table.contains("tg4 at 2 thread(s)") && table.contains("100.000 ms per token"));
        assert!(
            table.contains("| Qcur          |   25.000 | 25.0% |"),
            "{table}"
        );
        assert!(
            table.contains("| result_output |   75.000 | 75.0% | 20.00 GB/s |"),
            "{table}"
        );
        // Against the probe of the run shown, where the run had one.
        let steps = tg.decode_steps.clone();
        tg = SideResult::new(
            BenchTest::decode(4),
            &[10.0],
            None,
            0.5,
            &traffic,
            &[probe(40.0)],
        )
        .unwrap();
        tg.decode_steps = steps;
        let table = steps_table(&result(&tg));
        assert!(table.contains("| 20.00 GB/s |      50% |"), "{table}");
    }

    #[test]
    fn each_decode_run_counts_against_its_own_probe() {
        // The memory slows down after the first run: each run is a fraction of the probe beside
        // it, and the table shows the run with the median fraction (the lower middle one of an
        // even count), not the median rate against the fastest probe.
        let traffic = DecodeTraffic {
            block_weights: 500_000_000,
            head: 500_000_000,
        };
        let rates = [60.0, 38.0, 39.0];
        let probes = [probe(66.0), probe(40.0), probe(41.0)];
        let decode = |rates: &[f64], probes: &[ReadBandwidth]| {
            SideResult::new(BenchTest::decode(32), rates, None, 0.5, &traffic, probes).unwrap()
        };
        let tg = decode(&rates, &probes);
        let fractions: Vec<f64> = tg.decode_runs.iter().map(|b| b.fraction_of_probe).collect();
        let expected = [60.0 / 66.0, 38.0 / 40.0, 39.0 / 41.0];
        for (got, want) in fractions.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{fractions:?}");
        }
        assert_eq!(
            bw(&tg),
            "38.00 GB/s (95% of 40.00 GB/s; 76% of peak 50.00 GB/s)"
        );
        let even = decode(&rates[..2], &probes[..2]);
        assert_eq!(
            bw(&even),
            "60.00 GB/s (91% of 66.00 GB/s; 73% of peak 82.50 GB/s)"
        );
        // Without a probe per run there is no decode bandwidth.
        let unprobed = decode(&rates, &probes[..2]);
        assert_eq!(unprobed.decode_bandwidth, None);
    }

    #[test]
    fn tables_pad_their_columns() {
        let table = markdown_table(
            &["test", "t/s"],
            &[
                vec!["pp128".into(), "1.00".into()],
                vec!["tg8".into(), "123.45".into()],
            ],
        );
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "| test  |    t/s |");
        assert_eq!(lines[1], "|:------|-------:|");
        assert_eq!(lines[3], "| tg8   | 123.45 |");
        assert_eq!(bytes(1.186e9), "1.19 GB");
        assert_eq!(bytes(249.3e6), "249.3 MB");
    }
}
