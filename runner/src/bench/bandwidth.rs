//! Memory traffic of decoding, and the machine's memory read bandwidth to compare it with.

use std::hint::black_box;
use std::thread;
use std::time::Instant;

use bitnet_engine::gguf::TensorInfo;
use bitnet_engine::kernels::prefetch_streaming;
use serde::Serialize;
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

/// The best read bandwidth a probe measured with some number of threads.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReadBandwidth {
    /// Threads that read concurrently.
    pub threads: usize,
    /// Bytes read per second in the fastest pass.
    pub bytes_per_second: f64,
    /// Size of the buffer read in each pass.
    pub buffer_bytes: usize,
    /// Passes made.
    pub passes: usize,
}

impl ReadBandwidth {
    /// The faster of two probes, with the passes of both.
    pub fn faster(self, other: ReadBandwidth) -> ReadBandwidth {
        let passes = self.passes + other.passes;
        let best = match other.bytes_per_second > self.bytes_per_second {
            true => other,
            false => self,
        };
        ReadBandwidth { passes, ..best }
    }
}

/// Sums a buffer of `buffer_bytes` (which should dwarf the last-level cache) with `threads`
/// threads, each over its own contiguous part, `passes` times; returns the fastest pass.
pub fn probe_read_bandwidth(threads: usize, buffer_bytes: usize, passes: usize) -> ReadBandwidth {
    let threads = threads.max(1);
    let words = (buffer_bytes / 8).max(threads * LANES);
    let mut memory = huge_page_words(words);
    // Distinct non-zero words, so that every page is really backed and nothing is shared.
    for (i, w) in memory.words().iter_mut().enumerate() {
        *w = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    }
    let buffer: &[u64] = memory.words();
    let part = words.div_ceil(threads);
    let mut best = f64::INFINITY;
    for _ in 0..passes.max(1) {
        let start = Instant::now();
        thread::scope(|s| {
            for chunk in buffer.chunks(part) {
                s.spawn(move || black_box(sum(chunk)));
            }
        });
        best = best.min(start.elapsed().as_secs_f64());
    }
    ReadBandwidth {
        threads,
        bytes_per_second: (words * 8) as f64 / best,
        buffer_bytes: words * 8,
        passes: passes.max(1),
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

/// How far ahead of its loads the probe asks for lines (non-temporal), as the engine's one-token
/// products do, so that the probe is not slower than a kernel that prefetches.
const PREFETCH_AHEAD_WORDS: usize = 8192 / 8;

fn sum(words: &[u64]) -> u64 {
    let mut acc = [0u64; LANES];
    let mut chunks = words.chunks_exact(LANES);
    for (i, chunk) in (&mut chunks).enumerate() {
        if let Some(ahead) = words.get(i * LANES + PREFETCH_AHEAD_WORDS) {
            prefetch_streaming(ahead);
        }
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
        assert_eq!(sum(&words), 231);
        assert_eq!(sum(&[]), 0);
    }

    #[test]
    fn the_faster_probe_counts_with_the_passes_of_both() {
        let probe = |bytes_per_second: f64, passes: usize| ReadBandwidth {
            threads: 2,
            bytes_per_second,
            buffer_bytes: 1 << 29,
            passes,
        };
        assert_eq!(probe(40e9, 3).faster(probe(60e9, 2)), probe(60e9, 5));
        assert_eq!(probe(60e9, 3).faster(probe(40e9, 2)), probe(60e9, 5));
    }

    #[test]
    fn a_probe_reports_what_it_read() {
        let bw = probe_read_bandwidth(2, 1 << 20, 2);
        assert_eq!((bw.threads, bw.buffer_bytes, bw.passes), (2, 1 << 20, 2));
        assert!(bw.bytes_per_second.is_finite() && bw.bytes_per_second > 0.0);
    }
}
