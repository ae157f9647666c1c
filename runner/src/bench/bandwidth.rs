//! Memory traffic of decoding, and the machine's memory read bandwidth to compare it with.

use std::fmt;
use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use bitnet_engine::gguf::TensorInfo;
use bitnet_engine::kernels::StreamPrefetch;
use serde::{Serialize, Serializer};
use zerocopy::FromBytes;

/// Bytes one decoded token streams from memory: every matrix of the blocks (the ternary
/// layers) and the whole output head (the tied embedding when there is no `output.weight`).
/// Norms, the one embedding row and the small KV cache of a short decode are left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DecodeTraffic {
    /// Bytes of the block matrices.
    pub block_weights: u64,
    /// Bytes of the output head.
    pub head: u64,
}

impl DecodeTraffic {
    /// The traffic of a model with these tensors; `None` when it has no output head.
    pub fn of_tensors(tensors: &[TensorInfo]) -> Option<DecodeTraffic> {
        let block_weights = tensors
            .iter()
            .filter(|t| t.name.starts_with("blk.") && t.dims.len() == 2)
            .map(|t| t.n_bytes)
            .sum();
        let named = |name: &str| tensors.iter().find(|t| t.name == name);
        let head = named("output.weight").or_else(|| named("token_embd.weight"))?;
        Some(DecodeTraffic {
            block_weights,
            head: head.n_bytes,
        })
    }

    /// Bytes per decoded token.
    pub fn per_token(&self) -> u64 {
        self.block_weights + self.head
    }
}

/// The read bandwidth a decode at `tokens_per_second` achieves.
pub fn achieved_bandwidth(bytes_per_token: u64, tokens_per_second: f64) -> f64 {
    bytes_per_token as f64 * tokens_per_second
}

/// `achieved` as a fraction of the `probed` memory read bandwidth.
pub fn fraction_of(achieved: f64, probed: f64) -> f64 {
    achieved / probed
}

/// What a read-bandwidth probe measured with some number of threads.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReadBandwidth {
    /// Threads that read concurrently.
    pub threads: usize,
    /// Bytes read per second over all the passes: the bandwidth the machine sustained.
    pub bytes_per_second: f64,
    /// Bytes read per second in each thread's fastest pass, summed over the threads: the
    /// bandwidth of the probe's best moments.
    pub peak_bytes_per_second: f64,
    /// Size of the buffer read in each pass.
    pub buffer_bytes: usize,
    /// Passes made (by each thread).
    pub passes: usize,
    /// Seconds the passes took.
    pub seconds: f64,
    /// How the passes read.
    pub method: ReadMethod,
}

impl ReadBandwidth {
    /// The probe of the two that sustained more, with the passes, time and peak of both.
    pub fn faster(self, other: ReadBandwidth) -> ReadBandwidth {
        let best = match other.bytes_per_second > self.bytes_per_second {
            true => other,
            false => self,
        };
        ReadBandwidth {
            peak_bytes_per_second: self.peak_bytes_per_second.max(other.peak_bytes_per_second),
            passes: self.passes + other.passes,
            seconds: self.seconds + other.seconds,
            ..best
        }
    }
}

/// How a probe's passes read the buffer: with plain loads, which leave the stream to the
/// hardware prefetcher, or asking for lines ahead each way the engine may stream its weights. Which
/// is fastest depends on the core, so the machine's read bandwidth is the best of them
/// ([`ProbeBuffer::read_best`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMethod {
    /// Plain loads.
    Loads,
    /// Loads with the lines asked for ahead this way.
    Prefetched(StreamPrefetch),
}

impl ReadMethod {
    /// Every method, plain loads first.
    pub fn all() -> impl Iterator<Item = ReadMethod> {
        std::iter::once(ReadMethod::Loads).chain(StreamPrefetch::ALL.map(ReadMethod::Prefetched))
    }
}

impl fmt::Display for ReadMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadMethod::Loads => write!(f, "plain loads"),
            ReadMethod::Prefetched(how) => write!(f, "loads with {how}"),
        }
    }
}

impl Serialize for ReadMethod {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A probe that read with every [`ReadMethod`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodsProbe {
    /// The method that sustained the most, with the passes, time and peak of all.
    #[serde(flatten)]
    pub best: ReadBandwidth,
    /// What each method sustained.
    pub by_method: Vec<MethodRate>,
}

/// What one read method sustained.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MethodRate {
    /// The method.
    pub method: ReadMethod,
    /// Bytes read per second over its passes.
    pub bytes_per_second: f64,
}

/// How long a probe reads.
#[derive(Debug, Clone, Copy)]
pub enum ProbeLength {
    /// This many passes over the buffer.
    Passes(usize),
    /// Passes until this much time has passed (at least one).
    Window(Duration),
}

/// A buffer (which should dwarf the last-level cache) that probes read, each of `threads`
/// threads summing its own contiguous part over and over.
pub struct ProbeBuffer {
    memory: Words,
}

impl ProbeBuffer {
    /// A buffer of `buffer_bytes`, every page backed.
    pub fn new(buffer_bytes: usize) -> Self {
        let mut memory = huge_page_words((buffer_bytes / 8).max(LANES));
        // Distinct non-zero words, so that every page is really backed and nothing is shared.
        for (i, w) in memory.words().iter_mut().enumerate() {
            *w = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        }
        ProbeBuffer { memory }
    }

    /// Reads the buffer with `threads` threads `passes` times with every [`ReadMethod`].
    pub fn read_best(&self, threads: usize, passes: usize) -> MethodsProbe {
        let probes: Vec<ReadBandwidth> = ReadMethod::all()
            .map(|method| self.read(threads, ProbeLength::Passes(passes), method))
            .collect();
        let by_method = probes
            .iter()
            .map(|p| MethodRate {
                method: p.method,
                bytes_per_second: p.bytes_per_second,
            })
            .collect();
        let best = probes
            .into_iter()
            .reduce(ReadBandwidth::faster)
            .expect("there is more than one read method");
        MethodsProbe { best, by_method }
    }

    /// Reads the buffer with `threads` threads for `length`, each pass by `method`.
    pub fn read(&self, threads: usize, length: ProbeLength, method: ReadMethod) -> ReadBandwidth {
        let buffer = self.memory.words_ref();
        let part = buffer.len().div_ceil(threads.max(1)).max(LANES);
        let start = Instant::now();
        let read = |chunk: &[u64]| {
            let (begin, mut passes, mut fastest) = (Instant::now(), 0, f64::INFINITY);
            loop {
                let pass = Instant::now();
                black_box(sum(chunk, method));
                fastest = fastest.min(pass.elapsed().as_secs_f64());
                passes += 1;
                let done = match length {
                    ProbeLength::Passes(n) => passes >= n,
                    ProbeLength::Window(window) => start.elapsed() >= window,
                };
                if done {
                    let bytes = (chunk.len() * 8) as f64;
                    let seconds = begin.elapsed().as_secs_f64();
                    return (passes, bytes * passes as f64 / seconds, bytes / fastest);
                }
            }
        };
        let per_thread: Vec<(usize, f64, f64)> = thread::scope(|s| {
            let readers: Vec<_> = buffer
                .chunks(part)
                .map(|chunk| s.spawn(move || read(chunk)))
                .collect();
            readers.into_iter().filter_map(|r| r.join().ok()).collect()
        });
        ReadBandwidth {
            threads: threads.max(1),
            bytes_per_second: per_thread.iter().map(|t| t.1).sum(),
            peak_bytes_per_second: per_thread.iter().map(|t| t.2).sum(),
            buffer_bytes: buffer.len() * 8,
            passes: per_thread.iter().map(|t| t.0).min().unwrap_or(0),
            seconds: start.elapsed().as_secs_f64(),
            method,
        }
    }
}

/// The probe's buffer: anonymous memory advised for transparent huge pages, as the engine reads
/// a model's weights, so that the probe reads the kind of pages a decode streams (plain heap
/// memory where the system refuses the mapping).
enum Words {
    Mapped(memmap2::MmapMut),
    Heap(Vec<u64>),
}

impl Words {
    fn words(&mut self) -> &mut [u64] {
        match self {
            Words::Mapped(map) => <[u64]>::mut_from_bytes(&mut map[..]).unwrap_or(&mut []),
            Words::Heap(words) => words,
        }
    }

    fn words_ref(&self) -> &[u64] {
        match self {
            Words::Mapped(map) => <[u64]>::ref_from_bytes(&map[..]).unwrap_or(&[]),
            Words::Heap(words) => words,
        }
    }
}

/// `words` zeroed words, on huge pages where the system allows them.
fn huge_page_words(words: usize) -> Words {
    let mapped = memmap2::MmapMut::map_anon(words * 8)
        .ok()
        .filter(|map| <[u64]>::ref_from_bytes(&map[..]).is_ok());
    match mapped {
        Some(map) => {
            // Only a hint: plain pages serve where the system has no transparent huge pages.
            #[cfg(target_os = "linux")]
            let _ = map.advise(memmap2::Advice::HugePage);
            Words::Mapped(map)
        }
        None => Words::Heap(vec![0; words]),
    }
}

/// Independent accumulators, so the sum is bound by loads rather than by one add chain: one
/// 64-byte cache line per step.
const LANES: usize = 8;

/// The sum of `words`, read by `method`.
fn sum(words: &[u64], method: ReadMethod) -> u64 {
    match method {
        ReadMethod::Loads => sum_asking(words, |_| {}),
        ReadMethod::Prefetched(how) => {
            let ahead = how.ahead() / 8;
            sum_asking(words, |i| {
                if let Some(word) = words.get(i + ahead) {
                    how.fetch(word);
                }
            })
        }
    }
}

/// The sum of `words`, calling `ask(i)` before the line of `words[i..]` is read.
#[inline(always)]
fn sum_asking(words: &[u64], ask: impl Fn(usize)) -> u64 {
    let mut acc = [0u64; LANES];
    let mut chunks = words.chunks_exact(LANES);
    for (i, chunk) in (&mut chunks).enumerate() {
        ask(i * LANES);
        for (a, &w) in acc.iter_mut().zip(chunk) {
            *a = a.wrapping_add(w);
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(0u64, |a, &w| a.wrapping_add(w));
    acc.iter().fold(tail, |a, &w| a.wrapping_add(w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitnet_engine::gguf::GgmlType;

    fn info(name: &str, dims: &[u64], n_bytes: u64) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dims: dims.to_vec(),
            ty: GgmlType::F32,
            offset: 0,
            file_offset: 0,
            n_bytes,
            info_offset: 0,
        }
    }

    #[test]
    fn traffic_counts_block_matrices_and_the_head_but_not_norms() {
        let tensors = [
            info("token_embd.weight", &[4, 10], 80),
            info("output_norm.weight", &[4], 16),
            info("blk.0.attn_norm.weight", &[4], 16),
            info("blk.0.attn_q.weight", &[4, 4], 36),
            info("blk.0.ffn_down.weight", &[8, 4], 40),
        ];
        let tied = DecodeTraffic::of_tensors(&tensors).unwrap();
        assert_eq!((tied.block_weights, tied.head), (76, 80));
        assert_eq!(tied.per_token(), 156);

        let mut untied = tensors.to_vec();
        untied.push(info("output.weight", &[4, 10], 160));
        assert_eq!(DecodeTraffic::of_tensors(&untied).unwrap().head, 160);
        assert_eq!(DecodeTraffic::of_tensors(&tensors[1..]), None);
    }

    #[test]
    fn bandwidth_arithmetic() {
        // 1.186 GB per token at 15.4 tokens/s is 18.26 GB/s: 60.9 % of a 30 GB/s probe.
        let achieved = achieved_bandwidth(1_186_000_000, 15.4);
        assert!((achieved - 18.2644e9).abs() < 1e3, "{achieved}");
        assert!((fraction_of(achieved, 30e9) - 0.608_813).abs() < 1e-6);
    }

    #[test]
    fn the_sum_covers_every_word() {
        let words: Vec<u64> = (1..=21).collect();
        for method in ReadMethod::all() {
            assert_eq!(sum(&words, method), 231, "{method}");
            assert_eq!(sum(&[], method), 0, "{method}");
        }
    }

    #[test]
    fn the_faster_probe_counts_with_the_passes_time_and_peak_of_both() {
        let probe = |sustained: f64, peak: f64, passes: usize, method| ReadBandwidth {
            threads: 2,
            bytes_per_second: sustained,
            peak_bytes_per_second: peak,
            buffer_bytes: 1 << 29,
            passes,
            seconds: passes as f64,
            method,
        };
        let (loads, l2) = (
            ReadMethod::Loads,
            ReadMethod::Prefetched(StreamPrefetch::L2),
        );
        let both = probe(60e9, 80e9, 5, l2);
        let slow = |passes| probe(40e9, 80e9, passes, loads);
        assert_eq!(slow(3).faster(probe(60e9, 65e9, 2, l2)), both);
        assert_eq!(probe(60e9, 65e9, 3, l2).faster(slow(2)), both);
    }

    #[test]
    fn a_probe_reports_what_it_read() {
        let buffer = ProbeBuffer::new(1 << 20);
        let nta = ReadMethod::Prefetched(StreamPrefetch::NonTemporal);
        let bw = buffer.read(2, ProbeLength::Passes(2), nta);
        assert_eq!((bw.threads, bw.buffer_bytes, bw.passes), (2, 1 << 20, 2));
        assert_eq!(bw.method, nta);
        assert!(bw.bytes_per_second.is_finite() && bw.bytes_per_second > 0.0);
        assert!(bw.peak_bytes_per_second >= bw.bytes_per_second);
        let window = buffer.read(2, ProbeLength::Window(Duration::from_millis(30)), nta);
        assert!(window.seconds >= 0.03 && window.passes >= 1, "{window:?}");
    }

    #[test]
    fn the_start_probe_reads_with_every_method_and_keeps_the_fastest() {
        let probe = ProbeBuffer::new(1 << 20).read_best(1, 2);
        assert_eq!(probe.best.passes, 2 * ReadMethod::all().count());
        let methods: Vec<ReadMethod> = probe.by_method.iter().map(|m| m.method).collect();
        assert_eq!(methods, ReadMethod::all().collect::<Vec<_>>());
        let fastest = probe
            .by_method
            .iter()
            .max_by(|a, b| a.bytes_per_second.total_cmp(&b.bytes_per_second))
            .unwrap();
        assert_eq!(
            (fastest.method, fastest.bytes_per_second),
            (probe.best.method, probe.best.bytes_per_second)
        );
        assert_eq!(
            ReadMethod::all().map(|m| m.to_string()).collect::<Vec<_>>(),
            [
                "plain loads",
                "loads with prefetchnta 8 KiB ahead",
                "loads with prefetcht1 2 KiB ahead"
            ]
        );
    }
}
