//! x86-64 kernels, selected at run time by CPU feature detection.

pub(crate) mod avx2;
pub(crate) mod avx512;
pub(crate) mod avx_vnni;

use std::arch::x86_64::{
    _mm256_cvtph_ps, _mm256_mul_ps, _mm256_storeu_ps, _mm_loadu_si128, _mm_prefetch, _MM_HINT_NTA,
    _MM_HINT_T0, _MM_HINT_T1,
};

use half::f16;

use super::StreamPrefetch;

/// Blocks after which a one-token VNNI dot shifts its masked sums down and starts its
/// accumulators afresh: codes masked in place reach 192, so a block adds at most
/// `4 · 192 · 128` to an i32 lane, and 2^14 blocks stay far below 2^31.
pub(crate) const MASKED_SAFE_BLOCKS: usize = 1 << 14;

/// Fetches the `bytes` bytes (whole cache lines) `how.ahead()` past `at` into the cache the way
/// `how` names. Only a hint: addresses past the end of the row are never dereferenced.
#[inline]
#[target_feature(enable = "sse")]
pub(crate) fn prefetch_ahead<T>(how: StreamPrefetch, at: *const T, bytes: usize) {
    let ahead = at.cast::<i8>().wrapping_add(how.ahead());
    for offset in (0..bytes).step_by(64) {
        prefetch_line_as(how, ahead.wrapping_add(offset));
    }
}

/// Fetches the cache line holding `at` the way `how` names. Only a hint: `at` is never
/// dereferenced.
#[inline]
#[target_feature(enable = "sse")]
pub(crate) fn prefetch_line_as<T>(how: StreamPrefetch, at: *const T) {
    match how {
        StreamPrefetch::NonTemporal => _mm_prefetch::<_MM_HINT_NTA>(at.cast()),
        StreamPrefetch::L2 => _mm_prefetch::<_MM_HINT_T1>(at.cast()),
    }
}

/// Fetches the cache line holding `at` into the cache. Only a hint: `at` is never dereferenced.
#[inline]
#[target_feature(enable = "sse")]
pub(crate) fn prefetch_line<T>(at: *const T) {
    _mm_prefetch::<_MM_HINT_T0>(at.cast());
}

/// The tail of `ggml_vec_dot_f16` for `N` rows against one vector: each row's
/// `sum += (double)(x[i] · y[i])` in order over the elements past its vectors. The f32 products
/// are formed eight at a time; the rows' f64 add chains, which bound a short row, run side by
/// side.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(crate) fn f16_tail_sums<const N: usize>(
    mut sums: [f64; N],
    rows: [&[f16]; N],
    y: &[f16],
) -> [f64; N] {
    for start in (0..y.len()).step_by(8) {
        let n = (y.len() - start).min(8);
        let y8 = widen8(&y[start..start + n]);
        let products = rows.map(|row| {
            let mut out = [0f32; 8];
            // SAFETY: `out` has room for 8 f32; `storeu` has no alignment requirement.
            unsafe {
                _mm256_storeu_ps(
                    out.as_mut_ptr(),
                    _mm256_mul_ps(widen8(&row[start..start + n]), y8),
                )
            };
            out
        });
        for j in 0..n {
            for (sum, p) in sums.iter_mut().zip(&products) {
                *sum += f64::from(p[j]);
            }
        }
    }
    sums
}

/// Up to eight f16 values as f32 lanes, zeros past them.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn widen8(values: &[f16]) -> std::arch::x86_64::__m256 {
    let mut padded = [f16::ZERO; 8];
    padded[..values.len()].copy_from_slice(values);
    // SAFETY: `padded` is 8 f16 = 16 readable bytes; `loadu` has no alignment requirement.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(padded.as_ptr().cast()) })
}
