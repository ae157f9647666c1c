//! x86-64 kernels, selected at run time by CPU feature detection.

pub(crate) mod avx2;
pub(crate) mod avx512;
pub(crate) mod avx_vnni;

use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};

/// How far ahead of its loads a one-token product fetches the weight row it streams: decode
/// waits on memory, and one thread keeps more lines in flight than the hardware prefetcher does
/// alone.
const PREFETCH_AHEAD: usize = 4096;

/// Fetches the `bytes` bytes (whole cache lines) [`PREFETCH_AHEAD`] past `at` into the cache.
/// Only a hint: addresses past the end of the row are never dereferenced.
#[inline]
#[target_feature(enable = "sse")]
pub(crate) fn prefetch_ahead<T>(at: *const T, bytes: usize) {
    let ahead = at.cast::<i8>().wrapping_add(PREFETCH_AHEAD);
    for offset in (0..bytes).step_by(64) {
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(offset));
    }
}
