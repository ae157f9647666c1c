//! AVX-512 dot products (F + BW, optionally VNNI).
//!
//! The I2_S core runs two blocks per 512-bit step (`vpmaddubsw`, or `vpdpbusd` with VNNI); the f16
//! and f32 products use 512-bit registers for the 16-lane reduction and the AVX2 code for 8 lanes.
//! TQ1_0/TQ2_0 keep the AVX2 code: their float result is defined by eight i32 lanes per block.
//! TL1 and TL2 keep the AVX2 code too: their tables are 128-bit shuffles.

use std::arch::x86_64::*;

use half::f16;

use super::avx2;
use crate::formats::{BlockQ8K, FpContract, TQ1_0_BLOCK_BYTES, TQ2_0_BLOCK_BYTES};
use crate::kernels::i2s_rows_kernel;
use crate::kernels::reduce::{reduce_tiled, reduce_vec_dot, ReduceWidth};
use crate::kernels::table::DotKernels;

/// Whether the CPU has AVX-512 F and BW, and the AVX2 set the 8-lane paths use.
pub(crate) fn is_supported() -> bool {
    avx2::is_supported()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
}

/// Whether the CPU also has AVX-512 VNNI.
pub(crate) fn is_supported_vnni() -> bool {
    is_supported() && is_x86_feature_detected!("avx512vnni")
}

static KERNELS: DotKernels = DotKernels {
    i2s_rows,
    i2s_rows_x4: None,
    tq1: tq1_dot,
    tq2: tq2_dot,
    tl1: avx2::tl1_block_dot,
    tl2: avx2::tl2_block_dot,
    f16_vec: f16_vec_dot,
    f32_vec: f32_vec_dot,
    f16_tiled: f16_tiled_dot,
    f32_tiled: f32_tiled_dot,
    f16_vec_x2: None,
    f16_tiled_x4: None,
};

static KERNELS_VNNI: DotKernels = DotKernels {
    i2s_rows: i2s_rows_vnni,
    ..KERNELS
};

/// The AVX-512 table, when the CPU supports it.
pub(crate) fn kernels() -> Option<&'static DotKernels> {
    is_supported().then_some(&KERNELS)
}

/// The AVX-512 VNNI table, when the CPU supports it.
pub(crate) fn kernels_vnni() -> Option<&'static DotKernels> {
    is_supported_vnni().then_some(&KERNELS_VNNI)
}

// The safe entry points below are only reachable through `KERNELS` / `KERNELS_VNNI`, which are
// handed out only after `is_supported()` / `is_supported_vnni()` confirmed the features.

i2s_rows_kernel!(
    i2s_rows,
    i2s_rows_avx512,
    i2s_dot_avx512,
    "avx512f,avx512bw,avx2"
);
i2s_rows_kernel!(
    i2s_rows_vnni,
    i2s_rows_avx512_vnni,
    i2s_dot_avx512_vnni,
    "avx512f,avx512bw,avx512vnni,avx2"
);

fn tq1_dot(row: &[u8], act: &[BlockQ8K], contract: FpContract) -> f32 {
    assert_eq!(
        row.len(),
        act.len() * TQ1_0_BLOCK_BYTES,
        "tq1_0 row/activation length mismatch"
    );
    // SAFETY: this table requires AVX2, FMA and F16C (`is_supported`).
    unsafe { avx2::tq1_dot_avx2(row, act, contract) }
}

fn tq2_dot(row: &[u8], act: &[BlockQ8K], contract: FpContract) -> f32 {
    assert_eq!(
        row.len(),
        act.len() * TQ2_0_BLOCK_BYTES,
        "tq2_0 row/activation length mismatch"
    );
    // SAFETY: this table requires AVX2, FMA and F16C (`is_supported`).
    unsafe { avx2::tq2_dot_avx2(row, act, contract) }
}

fn f16_vec_dot(x: &[f16], y: &[f16], width: ReduceWidth) -> f32 {
    assert_eq!(x.len(), y.len(), "f16 dot length mismatch");
    match width {
        // SAFETY: this table requires AVX2, FMA and F16C (`is_supported`).
        ReduceWidth::Lanes8 => unsafe { avx2::f16_vec_dot_avx2(x, y, width) },
        // SAFETY: this table requires AVX-512 F (`is_supported`).
        ReduceWidth::Lanes16 => unsafe { f16_vec_dot_avx512(x, y) },
    }
}

fn f32_vec_dot(x: &[f32], y: &[f32], width: ReduceWidth) -> f32 {
    assert_eq!(x.len(), y.len(), "f32 dot length mismatch");
    match width {
        // SAFETY: this table requires AVX2, FMA and F16C (`is_supported`).
        ReduceWidth::Lanes8 => unsafe { avx2::f32_vec_dot_avx2(x, y, width) },
        // SAFETY: this table requires AVX-512 F (`is_supported`).
        ReduceWidth::Lanes16 => unsafe { f32_vec_dot_avx512(x, y) },
    }
}

fn f16_tiled_dot(x: &[f16], y: &[f32], width: ReduceWidth) -> f32 {
    assert!(
        x.len() == y.len() && x.len().is_multiple_of(width.lanes()),
        "tiled f16 dot length mismatch"
    );
    match width {
        // SAFETY: this table requires AVX2, FMA and F16C (`is_supported`).
        ReduceWidth::Lanes8 => unsafe { avx2::f16_tiled_dot_avx2(x, y, width) },
        // SAFETY: this table requires AVX-512 F (`is_supported`).
        ReduceWidth::Lanes16 => unsafe { f16_tiled_dot_avx512(x, y) },
    }
}

fn f32_tiled_dot(x: &[f32], y: &[f32], width: ReduceWidth) -> f32 {
    assert!(
        x.len() == y.len() && x.len().is_multiple_of(width.lanes()),
        "tiled f32 dot length mismatch"
    );
    match width {
        // SAFETY: this table requires AVX2, FMA and F16C (`is_supported`).
        ReduceWidth::Lanes8 => unsafe { avx2::f32_tiled_dot_avx2(x, y, width) },
        // SAFETY: this table requires AVX-512 F (`is_supported`).
        ReduceWidth::Lanes16 => unsafe { f32_tiled_dot_avx512(x, y) },
    }
}

/// Two consecutive I2_S blocks (64 code bytes, 256 activations) as four (codes, activations) pairs:
/// the low 256 bits come from the first block, the high 256 bits from the second.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
fn i2s_block_pair(codes: &[u8; 64], act: &[i8; 256]) -> [(__m512i, __m512i); 4] {
    let mask = _mm512_set1_epi8(3);
    // SAFETY: `codes` is 64 readable bytes; `loadu` has no alignment requirement.
    let packed = unsafe { _mm512_loadu_si512(codes.as_ptr().cast()) };
    let codes = [
        _mm512_and_si512(_mm512_srli_epi16::<6>(packed), mask),
        _mm512_and_si512(_mm512_srli_epi16::<4>(packed), mask),
        _mm512_and_si512(_mm512_srli_epi16::<2>(packed), mask),
        _mm512_and_si512(packed, mask),
    ];
    let mut pairs = [(_mm512_setzero_si512(), _mm512_setzero_si512()); 4];
    for (g, (pair, c)) in pairs.iter_mut().zip(codes).enumerate() {
        let first = avx2::load_i8(&act[32 * g..]);
        let second = avx2::load_i8(&act[128 + 32 * g..]);
        *pair = (
            c,
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(first), second),
        );
    }
    pairs
}

/// The last block of an odd block count, through the AVX2 core.
#[inline]
#[target_feature(enable = "avx2")]
fn i2s_odd_tail(codes: &[u8], act: &[i8]) -> i32 {
    let blocks = act.len() / 128;
    if blocks.is_multiple_of(2) {
        return 0;
    }
    let last = blocks - 1;
    avx2::i2s_dot_avx2(&codes[32 * last..32 * blocks], &act[128 * last..])
}

#[target_feature(enable = "avx512f,avx512bw,avx2")]
fn i2s_dot_avx512(codes: &[u8], act: &[i8]) -> i32 {
    let ones = _mm512_set1_epi16(1);
    let (code_pairs, _) = codes[..act.len() / 4].as_chunks::<64>();
    let (act_pairs, _) = act.as_chunks::<256>();
    let mut total = _mm512_setzero_si512();
    // Two blocks per step, so half as many steps fit in i16 as in the AVX2 core.
    for (codes, act) in code_pairs
        .chunks(avx2::I16_SAFE_BLOCKS)
        .zip(act_pairs.chunks(avx2::I16_SAFE_BLOCKS))
    {
        let mut partial = _mm512_setzero_si512();
        for (c, a) in codes.iter().zip(act) {
            for (w, x) in i2s_block_pair(c, a) {
                partial = _mm512_add_epi16(partial, _mm512_maddubs_epi16(w, x));
            }
        }
        total = _mm512_add_epi32(total, _mm512_madd_epi16(partial, ones));
    }
    _mm512_reduce_add_epi32(total) + i2s_odd_tail(codes, act)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2")]
fn i2s_dot_avx512_vnni(codes: &[u8], act: &[i8]) -> i32 {
    let (code_pairs, _) = codes[..act.len() / 4].as_chunks::<64>();
    let (act_pairs, _) = act.as_chunks::<256>();
    let mut total = _mm512_setzero_si512();
    for (c, a) in code_pairs.iter().zip(act_pairs) {
        for (w, x) in i2s_block_pair(c, a) {
            total = _mm512_dpbusd_epi32(total, w, x);
        }
    }
    _mm512_reduce_add_epi32(total) + i2s_odd_tail(codes, act)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn load_f16x16(values: &[f16]) -> __m512 {
    assert!(values.len() >= 16);
    // SAFETY: at least 16 f16 = 32 readable bytes (asserted); `loadu` has no alignment requirement.
    _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(values.as_ptr().cast()) })
}

#[inline]
#[target_feature(enable = "avx512f")]
fn load_f32x16(values: &[f32]) -> __m512 {
    assert!(values.len() >= 16);
    // SAFETY: at least 16 readable f32 (asserted); `loadu` has no alignment requirement.
    unsafe { _mm512_loadu_ps(values.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx512f")]
fn store_f32x16(v: __m512) -> [f32; 16] {
    let mut out = [0f32; 16];
    // SAFETY: `out` has room for 16 f32; `storeu` has no alignment requirement.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), v) };
    out
}

#[target_feature(enable = "avx512f")]
fn f16_vec_dot_avx512(x: &[f16], y: &[f16]) -> f32 {
    let whole = x.len() - x.len() % 64;
    let mut acc = [_mm512_setzero_ps(); 4];
    for i in (0..whole).step_by(64) {
        for (j, a) in acc.iter_mut().enumerate() {
            let at = i + 16 * j;
            *a = _mm512_fmadd_ps(load_f16x16(&x[at..]), load_f16x16(&y[at..]), *a);
        }
    }
    let lanes = acc.map(|v| store_f32x16(v));
    let mut sum = f64::from(reduce_vec_dot(&lanes, ReduceWidth::Lanes16));
    for (a, b) in x[whole..].iter().zip(&y[whole..]) {
        sum += f64::from(a.to_f32() * b.to_f32());
    }
    sum as f32
}

#[target_feature(enable = "avx512f")]
fn f32_vec_dot_avx512(x: &[f32], y: &[f32]) -> f32 {
    let whole = x.len() - x.len() % 64;
    let mut acc = [_mm512_setzero_ps(); 4];
    for i in (0..whole).step_by(64) {
        for (j, a) in acc.iter_mut().enumerate() {
            let at = i + 16 * j;
            *a = _mm512_fmadd_ps(load_f32x16(&x[at..]), load_f32x16(&y[at..]), *a);
        }
    }
    let lanes = acc.map(|v| store_f32x16(v));
    let mut sum = reduce_vec_dot(&lanes, ReduceWidth::Lanes16);
    for (&a, &b) in x[whole..].iter().zip(&y[whole..]) {
        sum += a * b;
    }
    sum
}

#[target_feature(enable = "avx512f")]
fn f16_tiled_dot_avx512(x: &[f16], y: &[f32]) -> f32 {
    let mut acc = _mm512_setzero_ps();
    for i in (0..x.len()).step_by(16) {
        acc = _mm512_fmadd_ps(load_f16x16(&x[i..]), load_f32x16(&y[i..]), acc);
    }
    reduce_tiled(&store_f32x16(acc), ReduceWidth::Lanes16)
}

#[target_feature(enable = "avx512f")]
fn f32_tiled_dot_avx512(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = _mm512_setzero_ps();
    for i in (0..x.len()).step_by(16) {
        acc = _mm512_fmadd_ps(load_f32x16(&x[i..]), load_f32x16(&y[i..]), acc);
    }
    reduce_tiled(&store_f32x16(acc), ReduceWidth::Lanes16)
}
