//! What a generation run cost: times, throughput and memory.

use std::fmt;
use std::time::Duration;

use crate::model::{DeviceChoice, WeightMemory};

/// Timings and memory of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct RunMetrics {
    /// The device the model ran on, and why.
    pub device: DeviceChoice,
    /// Time to load the model.
    pub load: Duration,
    /// Time to tokenize the prompt.
    pub tokenize: Duration,
    /// Prompt tokens evaluated in the first batch.
    pub prefill_tokens: usize,
    /// Time of that batch.
    pub prefill: Duration,
    /// Tokens evaluated one at a time after it.
    pub decode_tokens: usize,
    /// Time of those evaluations and of sampling after the first token.
    pub decode: Duration,
    /// From the start of the request (tokenization included) to the first generated token.
    pub time_to_first_token: Option<Duration>,
    /// The process's peak resident set size (Linux `VmHWM`); `None` where it cannot be read.
    pub peak_rss_bytes: Option<u64>,
    /// Bytes of the session's KV cache.
    pub kv_cache_bytes: usize,
    /// Bytes of weights mapped from the file and copied to the heap.
    pub weights: WeightMemory,
}

impl RunMetrics {
    /// Prompt tokens per second.
    pub fn prefill_tokens_per_s(&self) -> f64 {
        per_second(self.prefill_tokens, self.prefill)
    }

    /// Decoded tokens per second.
    pub fn decode_tokens_per_s(&self) -> f64 {
        per_second(self.decode_tokens, self.decode)
    }
}

fn per_second(n: usize, time: Duration) -> f64 {
    if n == 0 || time.is_zero() {
        0.0
    } else {
        n as f64 / time.as_secs_f64()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl fmt::Display for RunMetrics {
    /// A llama.cpp-like summary, one quantity per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per_token = |n: usize, d: Duration| if n == 0 { 0.0 } else { ms(d) / n as f64 };
        writeln!(f, "device          = {}", self.device)?;
        writeln!(f, "load time       = {:10.2} ms", ms(self.load))?;
        writeln!(f, "tokenize time   = {:10.2} ms", ms(self.tokenize))?;
        writeln!(
            f,
            "prompt eval     = {:10.2} ms / {:5} tokens ({:8.2} ms per token, {:8.2} tokens per second)",
            ms(self.prefill),
            self.prefill_tokens,
            per_token(self.prefill_tokens, self.prefill),
            self.prefill_tokens_per_s()
        )?;
        writeln!(
            f,
            "eval            = {:10.2} ms / {:5} runs   ({:8.2} ms per token, {:8.2} tokens per second)",
            ms(self.decode),
            self.decode_tokens,
            per_token(self.decode_tokens, self.decode),
            self.decode_tokens_per_s()
        )?;
        match self.time_to_first_token {
            Some(t) => writeln!(f, "first token     = {:10.2} ms", ms(t))?,
            None => writeln!(f, "first token     =        n/a")?,
        }
        match self.peak_rss_bytes {
            Some(b) => writeln!(f, "peak RSS        = {:10.2} MiB", mib(b))?,
            None => writeln!(f, "peak RSS        =        n/a")?,
        }
        writeln!(
            f,
            "KV cache        = {:10.2} MiB",
            mib(self.kv_cache_bytes as u64)
        )?;
        write!(
            f,
            "weights         = {:10.2} MiB mapped, {:.2} MiB copied",
            mib(self.weights.mapped as u64),
            mib(self.weights.copied as u64)
        )
    }
}

/// The process's peak resident set size in bytes, from `VmHWM` in `/proc/self/status`.
#[cfg(target_os = "linux")]
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

/// The process's peak resident set size: not measured on this platform.
#[cfg(not(target_os = "linux"))]
pub fn peak_rss_bytes() -> Option<u64> {
    None
}

/// The `VmHWM:   1234 kB` line of a `/proc/<pid>/status` text, in bytes.
#[cfg(any(target_os = "linux", test))]
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut fields = line["VmHWM:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next()? {
        "kB" => value.checked_mul(1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_is_read_in_kibibytes() {
        let status = "Name:\tbitnet\nVmPeak:\t  9999 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(2048 * 1024));
        assert_eq!(parse_vm_hwm("VmRSS:\t 1000 kB\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM:\t 12 MB\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn peak_rss_is_measured_on_linux() {
        let rss = peak_rss_bytes().expect("VmHWM is readable");
        assert!(rss > 1024 * 1024, "{rss}");
    }

    #[test]
    fn rates_are_zero_without_tokens_or_time() {
        assert_eq!(per_second(0, Duration::from_secs(1)), 0.0);
        assert_eq!(per_second(5, Duration::ZERO), 0.0);
        assert_eq!(per_second(10, Duration::from_millis(500)), 20.0);
    }
}
