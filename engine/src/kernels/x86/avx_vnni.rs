//! AVX-VNNI I2_S cores: the AVX2 table with `vpdpbusd` on 256-bit registers, for CPUs that have
//! VNNI without AVX-512 (Intel's hybrid client cores among them).
//!
//! `vpdpbusd` adds four u8 × i8 products to an i32 lane without saturating, so these cores are
//! exact for every input and need no i16 stage; everything but the I2_S rows is the AVX2 table.

use std::arch::x86_64::*;

use super::avx2::{self, i2s_block_codes, is_supported as avx2_supported, load_block_quarters};
use super::{prefetch_ahead, MASKED_SAFE_BLOCKS};
use crate::kernels::table::DotKernels;
use crate::kernels::{i2s_rows_kernel, i2s_rows_x4_in_pairs, StreamPrefetch};

/// Whether the CPU has AVX-VNNI beside the AVX2 set of the rest of the table.
pub(crate) fn is_supported() -> bool {
    avx2_supported() && is_x86_feature_detected!("avxvnni")
}

static KERNELS: DotKernels = DotKernels {
    i2s_rows,
    i2s_rows_x4: Some(i2s_rows_x4),
    ..avx2::TABLE
};

/// The AVX-VNNI table, when the CPU supports it.
pub(crate) fn kernels() -> Option<&'static DotKernels> {
    is_supported().then_some(&KERNELS)
}

// The safe entry points below are only reachable through `KERNELS`, which `kernels()` hands out
// only after `is_supported()` confirmed AVX2, FMA, F16C and AVX-VNNI.

i2s_rows_kernel!(
    i2s_rows,
    i2s_rows_avx_vnni,
    i2s_dot_avx_vnni,
    "avx2,avxvnni"
);

i2s_rows_x4_in_pairs!(
    i2s_rows_x4,
    i2s_rows_x4_avx_vnni,
    i2s_dot_2x4_avx_vnni,
    "avx2,avxvnni"
);

/// Σ code · a of one row against one token: two blocks per step into eight accumulators, so
/// `vpdpbusd`'s latency overlaps. Each quarter's codes are masked in place (bits 7–6, 5–4, 3–2,
/// 1–0) rather than shifted down, so they arrive multiplied by 64, 16, 4 or 1, and each
/// accumulator's sum is shifted back once at the end.
#[target_feature(enable = "avx2,avxvnni")]
fn i2s_dot_avx_vnni(codes: &[u8], act: &[i8]) -> i32 {
    let how = StreamPrefetch::for_this_cpu();
    let (code_blocks, _) = codes.as_chunks::<32>();
    let (act_blocks, _) = act.as_chunks::<128>();
    let masks = [0xC0_u8, 0x30, 0x0C, 0x03].map(|m| _mm256_set1_epi8(m as i8));
    let shifts = [6, 4, 2, 0].map(|s| _mm_cvtsi32_si128(s));
    let mut sum = _mm256_setzero_si256();
    for (code_blocks, act_blocks) in code_blocks
        .chunks(MASKED_SAFE_BLOCKS)
        .zip(act_blocks.chunks(MASKED_SAFE_BLOCKS))
    {
        let mut total = [_mm256_setzero_si256(); 8];
        let (code_pairs, code_rest) = code_blocks.as_chunks::<2>();
        let (act_pairs, act_rest) = act_blocks.as_chunks::<2>();
        for (c, a) in code_pairs.iter().zip(act_pairs) {
            prefetch_ahead(how, c.as_ptr(), 64);
            for half in 0..2 {
                let packed = load_block(&c[half]);
                let acts = load_block_quarters(&a[half]);
                for j in 0..4 {
                    let acc = &mut total[4 * half + j];
                    let codes = _mm256_and_si256(packed, masks[j]);
                    *acc = _mm256_dpbusd_avx_epi32(*acc, codes, acts[j]);
                }
            }
        }
        for (c, a) in code_rest.iter().zip(act_rest) {
            let (packed, acts) = (load_block(c), load_block_quarters(a));
            for j in 0..4 {
                let codes = _mm256_and_si256(packed, masks[j]);
                total[j] = _mm256_dpbusd_avx_epi32(total[j], codes, acts[j]);
            }
        }
        for j in 0..4 {
            let quarter = _mm256_add_epi32(total[j], total[4 + j]);
            sum = _mm256_add_epi32(sum, _mm256_sra_epi32(quarter, shifts[j]));
        }
    }
    avx2::hsum_i32(sum)
}

/// One block's 32 code bytes.
#[inline]
#[target_feature(enable = "avx2")]
fn load_block(codes: &[u8; 32]) -> __m256i {
    // SAFETY: `codes` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(codes.as_ptr().cast()) }
}

/// Σ code · a of two rows against four tokens' 128-activation blocks, one 32-code quarter of a
/// block at a time so that the eight accumulators stay in registers.
#[inline]
#[target_feature(enable = "avx2,avxvnni")]
fn i2s_dot_2x4_avx_vnni(rows: [&[u8]; 2], acts: [&[[i8; 128]]; 4]) -> [[i32; 4]; 2] {
    let (first, _) = rows[0].as_chunks::<32>();
    let (second, _) = rows[1].as_chunks::<32>();
    let mut total = [[_mm256_setzero_si256(); 4]; 2];
    for (b, (c0, c1)) in first.iter().zip(second).enumerate() {
        let (c0, c1) = (i2s_block_codes(c0), i2s_block_codes(c1));
        for j in 0..4 {
            for t in 0..4 {
                // SAFETY: the quarter `32 j..32 j + 32` of a 128-byte block is readable;
                // `loadu` has no alignment requirement.
                let x = unsafe { _mm256_loadu_si256(acts[t][b].as_ptr().add(32 * j).cast()) };
                total[0][t] = _mm256_dpbusd_avx_epi32(total[0][t], c0[j], x);
                total[1][t] = _mm256_dpbusd_avx_epi32(total[1][t], c1[j], x);
            }
        }
    }
    total.map(|row| row.map(|acc| avx2::hsum_i32(acc)))
}
