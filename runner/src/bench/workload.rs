//! The tests of a benchmark (llama-bench's `ppN` and `tgN`) and the messages that run them in a
//! worker process.

use serde::{Deserialize, Serialize};

use super::steps::StepTime;

/// Tokens evaluated, untimed, before the decodes of a `tgN` test unless a depth is asked for.
pub const DECODE_PROMPT: usize = 8;

/// One test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BenchTest {
    /// `ppN`: one batch of N prompt tokens evaluated in a fresh context (logits of the last).
    Prefill(usize),
    /// `tgN`: `tokens` single-token decodes after a prompt of `depth` tokens, evaluated
    /// untimed in one batch.
    Decode {
        /// Decodes timed.
        tokens: usize,
        /// Prompt tokens before them ([`DECODE_PROMPT`] unless asked otherwise).
        depth: usize,
    },
}

impl BenchTest {
    /// The tests of `-p` and `-n` lists, prefill first, each decode test at every depth of
    /// `depths`; zeros are skipped, as in llama-bench.
    pub fn list(prefill: &[usize], decode: &[usize], depths: &[usize]) -> Vec<BenchTest> {
        let pp = prefill
            .iter()
            .filter(|&&n| n > 0)
            .map(|&n| BenchTest::Prefill(n));
        let tg = decode.iter().filter(|&&n| n > 0).flat_map(|&tokens| {
            depths
                .iter()
                .map(move |&depth| BenchTest::Decode { tokens, depth })
        });
        pp.chain(tg).collect()
    }

    /// A decode test after the usual [`DECODE_PROMPT`].
    pub fn decode(tokens: usize) -> BenchTest {
        BenchTest::Decode {
            tokens,
            depth: DECODE_PROMPT,
        }
    }

    /// `pp128`, `tg32`, and `tg32@d4096` for a decode test after a prompt of other than
    /// [`DECODE_PROMPT`] tokens.
    pub fn name(self) -> String {
        match self {
            BenchTest::Prefill(n) => format!("pp{n}"),
            BenchTest::Decode { tokens, depth } if depth == DECODE_PROMPT => format!("tg{tokens}"),
            BenchTest::Decode { tokens, depth } => format!("tg{tokens}@d{depth}"),
        }
    }

    /// Tokens timed.
    pub fn timed_tokens(self) -> usize {
        match self {
            BenchTest::Prefill(n) | BenchTest::Decode { tokens: n, .. } => n,
        }
    }

    /// Context positions the test needs.
    pub fn positions(self) -> usize {
        match self {
            BenchTest::Prefill(n) => n,
            BenchTest::Decode { tokens, depth } => depth + tokens,
        }
    }

    /// Whether the test decodes one token at a time (and so streams every weight per token).
    pub fn is_decode(self) -> bool {
        matches!(self, BenchTest::Decode { .. })
    }
}

/// Deterministic prompt tokens: byte-level ids, present in any vocabulary of 256 or more.
pub fn prompt_tokens(n: usize, n_vocab: usize) -> Vec<u32> {
    let range = n_vocab.clamp(1, 256);
    (0..n).map(|i| ((i * 37 + 11) % range) as u32).collect()
}

/// What the driver asks of a worker, one JSON line each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Run one repetition of a test.
    Run(BenchTest),
    /// Report the peak memory and exit.
    Finish,
}

/// What a worker answers, one line each, after [`REPLY_PREFIX`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// Loaded and warmed up.
    Ready {
        /// Seconds from start to ready.
        load_seconds: f64,
        /// Where the side runs, and why.
        device: String,
    },
    /// One repetition ran.
    Timed {
        /// Seconds of the timed part.
        seconds: f64,
        /// Its time by step of the graph, when the worker was asked to time them.
        steps: Vec<StepTime>,
    },
    /// The worker's peak resident set, just before it exits.
    Finished {
        /// Bytes, when the system tells.
        peak_rss_bytes: Option<u64>,
        /// Most device memory in use while a test ran, for a side on a GPU.
        peak_gpu_bytes: Option<u64>,
    },
    /// The worker failed and exits.
    Failed {
        /// The error with its causes.
        error: String,
    },
}

/// Marks reply lines on a worker's stdout, so that stray output cannot be mistaken for one.
pub const REPLY_PREFIX: &str = "bitnet-bench-reply ";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tests_are_listed_prefill_first_without_zeros() {
        let tests = BenchTest::list(&[128, 0, 512], &[0, 32], &[DECODE_PROMPT, 4096]);
        let names: Vec<String> = tests.iter().map(|t| t.name()).collect();
        assert_eq!(names, ["pp128", "pp512", "tg32", "tg32@d4096"]);
        assert_eq!(tests[2].positions(), 40);
        assert_eq!(tests[3].positions(), 4128);
        assert_eq!(tests[3].timed_tokens(), 32);
        assert!(tests[2].is_decode() && !tests[0].is_decode());
    }

    #[test]
    fn prompt_tokens_stay_in_the_vocabulary() {
        assert!(prompt_tokens(1000, 300).iter().all(|&t| t < 256));
        assert!(prompt_tokens(50, 10).iter().all(|&t| t < 10));
        assert_eq!(prompt_tokens(3, 128_256), [11, 48, 85]);
    }

    #[test]
    fn messages_survive_a_json_line() {
        for r in [Request::Run(BenchTest::decode(8)), Request::Finish] {
            let line = serde_json::to_string(&r).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        }
        let reply = Reply::Finished {
            peak_rss_bytes: Some(5),
            peak_gpu_bytes: Some(7),
        };
        let line = serde_json::to_string(&reply).unwrap();
        assert_eq!(serde_json::from_str::<Reply>(&line).unwrap(), reply);
    }
}
