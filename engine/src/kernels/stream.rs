//! How the one-token products ask for the weight rows they stream, ahead of their loads.

use std::fmt;
use std::sync::LazyLock;

/// How a one-token product asks for the weight rows it streams, a fixed distance ahead of its
/// loads: decode waits on memory, and one thread keeps more lines in flight than the hardware
/// prefetcher does alone. Which way is fastest depends on the core, so each CPU takes the one
/// measured best on its kind ([`StreamPrefetch::for_this_cpu`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamPrefetch {
    /// `prefetchnta` 8 KiB ahead, so that a row read once per token does not push the KV cache
    /// and the activations out of the last-level cache. On AMD Zen 4,
    /// `bitnet bench --shape 2b4t -n 96 -t 1,2 --engine-only` decoded 5 % faster with 8 KiB than
    /// with 4 KiB, and no faster with 16 KiB.
    NonTemporal,
    /// `prefetcht1` (into L2) 2 KiB ahead. An Intel core fills a non-temporal prefetch into L1
    /// only, where its few fill buffers bound a stream: on a Xeon with AVX-512 VNNI the probe of
    /// `bitnet bench --shape 2b4t -n 64 -t 1,2 --engine-only` read 5.3 GB/s on one core with
    /// `prefetchnta` 8 KiB ahead against 16–17 GB/s with plain loads or this, and decode ran
    /// 1.75× faster at 1 thread and 1.65× at 2 than with `prefetchnta`; `prefetcht0` ½–4 KiB
    /// ahead, `prefetcht1` 1, 4 or 8 KiB ahead and no prefetch were all slower at 1 thread or
    /// at 2, and none faster at either.
    L2,
}

/// The way this CPU takes, found once.
static THIS_CPU: LazyLock<StreamPrefetch> = LazyLock::new(|| match is_intel() {
    true => StreamPrefetch::L2,
    false => StreamPrefetch::NonTemporal,
});

impl StreamPrefetch {
    /// Every way, for probes that compare them.
    pub const ALL: [StreamPrefetch; 2] = [StreamPrefetch::NonTemporal, StreamPrefetch::L2];

    /// The way the one-token products take on this CPU: [`StreamPrefetch::L2`] on Intel cores,
    /// [`StreamPrefetch::NonTemporal`] on every other.
    #[inline]
    pub fn for_this_cpu() -> StreamPrefetch {
        *THIS_CPU
    }

    /// How many bytes past the load the line asked for lies.
    pub const fn ahead(self) -> usize {
        match self {
            StreamPrefetch::NonTemporal => 8192,
            StreamPrefetch::L2 => 2048,
        }
    }

    /// Asks for the cache line holding `value` this way; a hint only, and nothing where the CPU
    /// has no such instruction.
    #[inline]
    pub fn fetch<T>(self, value: &T) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: SSE, which the prefetches are compiled for, is part of every x86-64 CPU; a
        // prefetch never faults.
        unsafe {
            super::x86::prefetch_line_as(self, std::ptr::from_ref(value));
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = value;
    }
}

impl fmt::Display for StreamPrefetch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let instruction = match self {
            StreamPrefetch::NonTemporal => "prefetchnta",
            StreamPrefetch::L2 => "prefetcht1",
        };
        write!(f, "{instruction} {} KiB ahead", self.ahead() / 1024)
    }
}

#[cfg(target_arch = "x86_64")]
fn is_intel() -> bool {
    let id = std::arch::x86_64::__cpuid(0);
    let vendor = [id.ebx, id.edx, id.ecx].map(u32::to_le_bytes);
    vendor.concat() == b"GenuineIntel"
}

#[cfg(not(target_arch = "x86_64"))]
fn is_intel() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_way_names_its_instruction_and_distance() {
        assert_eq!(
            StreamPrefetch::NonTemporal.to_string(),
            "prefetchnta 8 KiB ahead"
        );
        assert_eq!(StreamPrefetch::L2.to_string(), "prefetcht1 2 KiB ahead");
        assert!(StreamPrefetch::ALL.contains(&StreamPrefetch::for_this_cpu()));
    }
}
