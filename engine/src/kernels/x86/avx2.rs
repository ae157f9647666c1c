//! AVX2 (+FMA, F16C) dot products.
//!
//! The I2_S core widens its i16 partial sums to i32 every [`I16_SAFE_BLOCKS`] blocks, so it is exact
//! for every input; see [`super::super::scalar::i2s_dot_ref`] and the crate's kernel docs for how
//! that differs from the reference's i16 accumulation.

use std::arch::x86_64::*;

use half::f16;

use super::{f16_tail_sums, prefetch_ahead};
use crate::formats::{
    BlockQ8K, FpContract, LutTable, Tl1Block, Tl2Block, TQ1_0_BLOCK_BYTES, TQ2_0_BLOCK_BYTES,
};
use crate::kernels::reduce::{hsum8_pairs, ReduceWidth};
use crate::kernels::rows::{check_rows, token_blocks};
use crate::kernels::table::DotKernels;
use crate::kernels::{i2s_rows_kernel, StreamPrefetch};

/// I2_S blocks summed in i16 before widening: a block adds at most 4 · 2 · 3 · 128 = 3072 per lane.
pub(crate) const I16_SAFE_BLOCKS: usize = 8;

/// Whether the CPU has AVX2, FMA and F16C.
pub(crate) fn is_supported() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// The AVX2 table, which narrower-featured tables extend.
pub(crate) const TABLE: DotKernels = DotKernels {
    i2s_rows,
    i2s_rows_x4: Some(i2s_rows_x4),
    i2s_quads: None,
    tq1: tq1_dot,
    tq2: tq2_dot,
    tl1: tl1_block_dot,
    tl2: tl2_block_dot,
    f16_vec: f16_vec_dot,
    f32_vec: f32_vec_dot,
    f16_tiled: f16_tiled_dot,
    f32_tiled: f32_tiled_dot,
    f16_vec_x2: Some(f16_vec_dot_x2),
    f16_rows_x4: None,
    f16_tiled_x4: Some(f16_tiled_dot_x4),
};

static KERNELS: DotKernels = TABLE;

/// The AVX2 table, when the CPU supports it.
pub(crate) fn kernels() -> Option<&'static DotKernels> {
    is_supported().then_some(&KERNELS)
}

// The safe entry points below are only reachable through `TABLE`, whose tables (`KERNELS` here,
// the AVX-VNNI one) are handed out only after `is_supported()` confirmed AVX2, FMA and F16C. They check lengths like the scalar references.

i2s_rows_kernel!(i2s_rows, i2s_rows_avx2, i2s_dot_avx2, "avx2");

pub(crate) fn i2s_rows_x4(codes: &[u8], acts: [&[i8]; 4], out: &mut [[i32; 4]]) {
    check_rows(codes, &acts, out.len());
    // SAFETY: the tables holding this function exist only on CPUs with AVX2.
    unsafe { i2s_rows_x4_avx2(codes, acts, out) }
}

fn tq1_dot(row: &[u8], act: &[BlockQ8K], contract: FpContract) -> f32 {
    assert_eq!(
        row.len(),
        act.len() * TQ1_0_BLOCK_BYTES,
        "tq1_0 row/activation length mismatch"
    );
    // SAFETY: the table holding this function exists only on CPUs with AVX2, FMA and F16C.
    unsafe { tq1_dot_avx2(row, act, contract) }
}

fn tq2_dot(row: &[u8], act: &[BlockQ8K], contract: FpContract) -> f32 {
    assert_eq!(
        row.len(),
        act.len() * TQ2_0_BLOCK_BYTES,
        "tq2_0 row/activation length mismatch"
    );
    // SAFETY: the table holding this function exists only on CPUs with AVX2, FMA and F16C.
    unsafe { tq2_dot_avx2(row, act, contract) }
}

pub(crate) fn tl2_block_dot(block: &Tl2Block, three: &[LutTable], two: &[LutTable]) -> [i32; 32] {
    assert!(
        three.len() == block.three_tiles() * (block.tile_cols() / 3)
            && two.len() == block.two_tiles() * 16,
        "tl2 block/table length mismatch"
    );
    // SAFETY: the tables holding this function exist only on CPUs with AVX2 (see `kernels` here and
    // in the AVX-512 module, whose support check includes this one's).
    unsafe { tl2_block_dot_avx2(block, three, two) }
}

fn f16_vec_dot(x: &[f16], y: &[f16], width: ReduceWidth) -> f32 {
    assert_eq!(x.len(), y.len(), "f16 dot length mismatch");
    // SAFETY: the table holding this function exists only on CPUs with AVX2, FMA and F16C.
    unsafe { f16_vec_dot_avx2(x, y, width) }
}

fn f16_vec_dot_x2(rows: [&[f16]; 2], y: &[f16], width: ReduceWidth) -> [f32; 2] {
    assert!(
        rows.iter().all(|r| r.len() == y.len()),
        "f16 dot length mismatch"
    );
    // SAFETY: the table holding this function exists only on CPUs with AVX2, FMA and F16C.
    unsafe { f16_vec_dot_x2_avx2(rows, y, width) }
}

fn f16_tiled_dot_x4(x: &[f16], ys: [&[f32]; 4], width: ReduceWidth) -> [f32; 4] {
    assert!(
        ys.iter().all(|y| y.len() == x.len()) && x.len().is_multiple_of(width.lanes()),
        "tiled f16 dot length mismatch"
    );
    // SAFETY: the table holding this function exists only on CPUs with AVX2, FMA and F16C.
    unsafe { f16_tiled_dot_x4_avx2(x, ys, width) }
}

fn f32_vec_dot(x: &[f32], y: &[f32], width: ReduceWidth) -> f32 {
    assert_eq!(x.len(), y.len(), "f32 dot length mismatch");
    // SAFETY: the table holding this function exists only on CPUs with AVX2, FMA and F16C.
    unsafe { f32_vec_dot_avx2(x, y, width) }
}

fn f16_tiled_dot(x: &[f16], y: &[f32], width: ReduceWidth) -> f32 {
    assert!(
        x.len() == y.len() && x.len().is_multiple_of(width.lanes()),
        "tiled f16 dot length mismatch"
    );
    // SAFETY: the table holding this function exists only on CPUs with AVX2, FMA and F16C.
    unsafe { f16_tiled_dot_avx2(x, y, width) }
}

fn f32_tiled_dot(x: &[f32], y: &[f32], width: ReduceWidth) -> f32 {
    assert!(
        x.len() == y.len() && x.len().is_multiple_of(width.lanes()),
        "tiled f32 dot length mismatch"
    );
    // SAFETY: the table holding this function exists only on CPUs with AVX2, FMA and F16C.
    unsafe { f32_tiled_dot_avx2(x, y, width) }
}

/// Loads 32 bytes from the start of `bytes`.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn load_u8(bytes: &[u8]) -> __m256i {
    assert!(bytes.len() >= 32);
    // SAFETY: at least 32 readable bytes (asserted); `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }
}

/// Loads 32 int8 values from the start of `values`.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn load_i8(values: &[i8]) -> __m256i {
    assert!(values.len() >= 32);
    // SAFETY: at least 32 readable bytes (asserted); `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(values.as_ptr().cast()) }
}

/// Loads 8 f16 values from the start of `values` and widens them to f32.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn load_f16(values: &[f16]) -> __m256 {
    assert!(values.len() >= 8);
    // SAFETY: at least 8 f16 = 16 readable bytes (asserted); `loadu` has no alignment requirement.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(values.as_ptr().cast()) })
}

/// Loads 8 f32 values from the start of `values`.
#[inline]
#[target_feature(enable = "avx2")]
fn load_f32(values: &[f32]) -> __m256 {
    assert!(values.len() >= 8);
    // SAFETY: at least 8 readable f32 (asserted); `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_ps(values.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx2")]
fn store_f32(v: __m256) -> [f32; 8] {
    let mut out = [0f32; 8];
    // SAFETY: `out` has room for 8 f32; `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
    out
}

#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn hsum_i32(v: __m256i) -> i32 {
    let sum = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let sum = _mm_add_epi32(sum, _mm_unpackhi_epi64(sum, sum));
    let sum = _mm_add_epi32(sum, _mm_shuffle_epi32::<0b10_11_00_01>(sum));
    _mm_cvtsi128_si32(sum)
}

/// The products of one 128-weight I2_S block with its activations, as i16 lanes.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn i2s_block_products(codes: &[u8], act: &[i8]) -> __m256i {
    let mask = _mm256_set1_epi8(3);
    let packed = load_u8(codes);
    let c0 = _mm256_and_si256(_mm256_srli_epi16::<6>(packed), mask);
    let c1 = _mm256_and_si256(_mm256_srli_epi16::<4>(packed), mask);
    let c2 = _mm256_and_si256(_mm256_srli_epi16::<2>(packed), mask);
    let c3 = _mm256_and_si256(packed, mask);
    let p0 = _mm256_maddubs_epi16(c0, load_i8(act));
    let p1 = _mm256_maddubs_epi16(c1, load_i8(&act[32..]));
    let p2 = _mm256_maddubs_epi16(c2, load_i8(&act[64..]));
    let p3 = _mm256_maddubs_epi16(c3, load_i8(&act[96..]));
    _mm256_add_epi16(_mm256_add_epi16(p0, p1), _mm256_add_epi16(p2, p3))
}

/// The four 32-code groups of one packed I2_S block, one code (0, 1, 2) per byte: byte `j` of
/// the block holds codes `j`, `j + 32`, `j + 64` and `j + 96` from the high bits down.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn i2s_block_codes(codes: &[u8; 32]) -> [__m256i; 4] {
    let mask = _mm256_set1_epi8(3);
    // SAFETY: `codes` is 32 readable bytes; `loadu` has no alignment requirement.
    let packed = unsafe { _mm256_loadu_si256(codes.as_ptr().cast()) };
    [
        _mm256_and_si256(_mm256_srli_epi16::<6>(packed), mask),
        _mm256_and_si256(_mm256_srli_epi16::<4>(packed), mask),
        _mm256_and_si256(_mm256_srli_epi16::<2>(packed), mask),
        _mm256_and_si256(packed, mask),
    ]
}

/// Loads the four 32-activation quarters of a 128-activation block.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn load_block_quarters(act: &[i8; 128]) -> [__m256i; 4] {
    let ptr = act.as_ptr();
    // SAFETY: `act` is 128 readable bytes and the loads read bytes 0..32, 32..64, 64..96 and
    // 96..128; `loadu` has no alignment requirement.
    unsafe {
        [
            _mm256_loadu_si256(ptr.cast()),
            _mm256_loadu_si256(ptr.add(32).cast()),
            _mm256_loadu_si256(ptr.add(64).cast()),
            _mm256_loadu_si256(ptr.add(96).cast()),
        ]
    }
}

/// The products of a block's decoded codes with one token's 128 activations, summed in i16
/// lanes (at most 4 · 2 · 3 · 128 = 3072 per lane, code 3 included).
#[inline]
#[target_feature(enable = "avx2")]
fn i2s_block_sum(codes: &[__m256i; 4], act: &[i8; 128]) -> __m256i {
    let [a0, a1, a2, a3] = load_block_quarters(act);
    let p0 = _mm256_maddubs_epi16(codes[0], a0);
    let p1 = _mm256_maddubs_epi16(codes[1], a1);
    let p2 = _mm256_maddubs_epi16(codes[2], a2);
    let p3 = _mm256_maddubs_epi16(codes[3], a3);
    _mm256_add_epi16(_mm256_add_epi16(p0, p1), _mm256_add_epi16(p2, p3))
}

/// Σ code · a of a run of rows against four tokens, the tokens' activation blocks split once
/// for the whole run.
#[target_feature(enable = "avx2")]
pub(crate) fn i2s_rows_x4_avx2(codes: &[u8], acts: [&[i8]; 4], out: &mut [[i32; 4]]) {
    let Some((width, blocks)) = token_blocks(acts, out) else {
        return;
    };
    for (o, row) in out.iter_mut().zip(codes.chunks_exact(width)) {
        *o = i2s_dot_x4_avx2(row, blocks);
    }
}

/// [`i2s_dot_avx2`] for four tokens: each block's codes are decoded once and multiplied with
/// every token, whose i16 partial sums widen to i32 every [`I16_SAFE_BLOCKS`] blocks as there.
#[inline]
#[target_feature(enable = "avx2")]
fn i2s_dot_x4_avx2(codes: &[u8], acts: [&[[i8; 128]]; 4]) -> [i32; 4] {
    let ones = _mm256_set1_epi16(1);
    let (code_blocks, _) = codes.as_chunks::<32>();
    let [a0, a1, a2, a3] = acts;
    let mut total = [_mm256_setzero_si256(); 4];
    let groups = code_blocks
        .chunks(I16_SAFE_BLOCKS)
        .zip(a0.chunks(I16_SAFE_BLOCKS))
        .zip(a1.chunks(I16_SAFE_BLOCKS))
        .zip(a2.chunks(I16_SAFE_BLOCKS))
        .zip(a3.chunks(I16_SAFE_BLOCKS));
    for ((((c, t0), t1), t2), t3) in groups {
        let mut partial = [_mm256_setzero_si256(); 4];
        let blocks = c.iter().zip(t0).zip(t1).zip(t2).zip(t3);
        for ((((c, t0), t1), t2), t3) in blocks {
            let codes = i2s_block_codes(c);
            partial[0] = _mm256_add_epi16(partial[0], i2s_block_sum(&codes, t0));
            partial[1] = _mm256_add_epi16(partial[1], i2s_block_sum(&codes, t1));
            partial[2] = _mm256_add_epi16(partial[2], i2s_block_sum(&codes, t2));
            partial[3] = _mm256_add_epi16(partial[3], i2s_block_sum(&codes, t3));
        }
        for (t, p) in total.iter_mut().zip(partial) {
            *t = _mm256_add_epi32(*t, _mm256_madd_epi16(p, ones));
        }
    }
    [
        hsum_i32(total[0]),
        hsum_i32(total[1]),
        hsum_i32(total[2]),
        hsum_i32(total[3]),
    ]
}

#[target_feature(enable = "avx2")]
pub(crate) fn i2s_dot_avx2(codes: &[u8], act: &[i8]) -> i32 {
    let how = StreamPrefetch::for_this_cpu();
    let ones = _mm256_set1_epi16(1);
    let (code_blocks, _) = codes.as_chunks::<32>();
    let (act_blocks, _) = act.as_chunks::<128>();
    let mut total = _mm256_setzero_si256();
    for (codes, act) in code_blocks
        .chunks(I16_SAFE_BLOCKS)
        .zip(act_blocks.chunks(I16_SAFE_BLOCKS))
    {
        let mut partial = _mm256_setzero_si256();
        for (c, a) in codes.iter().zip(act) {
            prefetch_ahead(how, c.as_ptr(), 32);
            partial = _mm256_add_epi16(partial, i2s_block_products(c, a));
        }
        total = _mm256_add_epi32(total, _mm256_madd_epi16(partial, ones));
    }
    hsum_i32(total)
}

/// Bytes → their TQ1 trit `((b · 3) >> 8)`: 1 from 86 up, 2 from 171 up.
#[inline]
#[target_feature(enable = "avx2")]
fn trits(q: __m256i) -> __m256i {
    let ge86 = _mm256_cmpeq_epi8(_mm256_max_epu8(q, _mm256_set1_epi8(86)), q);
    let ge171 = _mm256_cmpeq_epi8(_mm256_max_epu8(q, _mm256_set1_epi8(171u8 as i8)), q);
    _mm256_sub_epi8(_mm256_sub_epi8(_mm256_setzero_si256(), ge86), ge171)
}

#[inline]
#[target_feature(enable = "avx2")]
fn times3(q: __m256i) -> __m256i {
    _mm256_add_epi8(q, _mm256_add_epi8(q, q))
}

#[inline]
#[target_feature(enable = "avx2")]
fn times3_128(q: __m128i) -> __m128i {
    _mm_add_epi8(q, _mm_add_epi8(q, q))
}

/// Finishes a TQ block: subtract `bsums`, widen to 8 i32 lanes, scale by `d_a · d_w` into `acc`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tq_block_epilogue(
    sum: __m256i,
    d_w: [u8; 2],
    y: &BlockQ8K,
    acc: __m256,
    contract: FpContract,
) -> __m256 {
    // SAFETY: `bsums` is 16 i16 = 32 readable bytes; `loadu` has no alignment requirement.
    let bsums = unsafe { _mm256_loadu_si256(y.bsums.as_ptr().cast()) };
    let lanes = _mm256_madd_epi16(_mm256_sub_epi16(sum, bsums), _mm256_set1_epi16(1));
    let d = _mm256_set1_ps(y.d * f16::from_le_bytes(d_w).to_f32());
    let lanes = _mm256_cvtepi32_ps(lanes);
    match contract {
        FpContract::Off => _mm256_add_ps(_mm256_mul_ps(lanes, d), acc),
        FpContract::Fused => _mm256_fmadd_ps(lanes, d, acc),
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn tq2_dot_avx2(row: &[u8], act: &[BlockQ8K], contract: FpContract) -> f32 {
    let mask = _mm256_set1_epi8(3);
    let mut acc = _mm256_setzero_ps();
    let (blocks, _) = row.as_chunks::<TQ2_0_BLOCK_BYTES>();
    for (block, y) in blocks.iter().zip(act) {
        let mut sum = _mm256_setzero_si256();
        for half in 0..2 {
            let packed = load_u8(&block[32 * half..]);
            let codes = [
                _mm256_and_si256(packed, mask),
                _mm256_and_si256(_mm256_srli_epi16::<2>(packed), mask),
                _mm256_and_si256(_mm256_srli_epi16::<4>(packed), mask),
                _mm256_and_si256(_mm256_srli_epi16::<6>(packed), mask),
            ];
            for (l, c) in codes.into_iter().enumerate() {
                let q = load_i8(&y.qs[128 * half + 32 * l..]);
                sum = _mm256_add_epi16(sum, _mm256_maddubs_epi16(c, q));
            }
        }
        acc = tq_block_epilogue(sum, [block[64], block[65]], y, acc, contract);
    }
    hsum8_pairs(&store_f32(acc))
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn tq1_dot_avx2(row: &[u8], act: &[BlockQ8K], contract: FpContract) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let (blocks, _) = row.as_chunks::<TQ1_0_BLOCK_BYTES>();
    for (block, y) in blocks.iter().zip(act) {
        let mut sum = _mm256_setzero_si256();
        // qs[0..32]: trit n of byte m is weight 32n + m.
        let mut q = load_u8(block);
        for n in 0..5 {
            let t = trits(q);
            sum = _mm256_add_epi16(sum, _mm256_maddubs_epi16(t, load_i8(&y.qs[32 * n..])));
            q = times3(q);
        }
        // qs[32..48]: trit n of byte m is weight 160 + 16n + m; qh: trit n of byte j is 240 + 4n + j.
        // SAFETY: bytes 32..48 of the 54-byte block are readable; `loadu` has no alignment requirement.
        let p0 = unsafe { _mm_loadu_si128(block[32..48].as_ptr().cast()) };
        let p1 = times3_128(p0);
        let p2 = times3_128(p1);
        let p3 = times3_128(p2);
        let p4 = times3_128(p3);
        let qh = _mm_set1_epi32(i32::from_le_bytes([
            block[48], block[49], block[50], block[51],
        ]));
        let h1 = times3_128(qh);
        let h2 = times3_128(h1);
        let h3 = times3_128(h2);
        let h = _mm_blend_epi32::<0b1100>(
            _mm_blend_epi32::<0b0010>(qh, h1),
            _mm_blend_epi32::<0b1000>(h2, h3),
        );
        let tail = [
            _mm256_set_m128i(p1, p0),
            _mm256_set_m128i(p3, p2),
            _mm256_set_m128i(h, p4),
        ];
        for (i, v) in tail.into_iter().enumerate() {
            let t = trits(v);
            sum = _mm256_add_epi16(sum, _mm256_maddubs_epi16(t, load_i8(&y.qs[160 + 32 * i..])));
        }
        acc = tq_block_epilogue(sum, [block[52], block[53]], y, acc, contract);
    }
    hsum8_pairs(&store_f32(acc))
}

/// [`reduce_vec_dot`] of four accumulators of `width` lanes (16 as two registers), in
/// registers: `(a0 + a2) + (a1 + a3)` lane-wise, then `hsum8_hadd`'s two `hadd`s for 8 lanes or
/// `hsum16`'s halves and [`hsum8_pairs_ps`] for 16.
#[inline]
#[target_feature(enable = "avx2")]
fn reduce_accumulators(lo: [__m256; 4], hi: [__m256; 4], width: ReduceWidth) -> f32 {
    let pairs =
        |a: [__m256; 4]| _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[1], a[3]));
    let x = pairs(lo);
    if width == ReduceWidth::Lanes16 {
        return hsum8_pairs_ps(_mm256_add_ps(pairs(hi), x));
    }
    let t = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    let h = _mm_hadd_ps(t, t);
    _mm_cvtss_f32(_mm_hadd_ps(h, h))
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn f16_vec_dot_avx2(x: &[f16], y: &[f16], width: ReduceWidth) -> f32 {
    // One body per width, so that the 8-lane one carries no second set of accumulators.
    match width {
        ReduceWidth::Lanes8 => f16_vec_dot_lanes::<false>(x, y),
        ReduceWidth::Lanes16 => f16_vec_dot_lanes::<true>(x, y),
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn f16_vec_dot_lanes<const WIDE: bool>(x: &[f16], y: &[f16]) -> f32 {
    let how = StreamPrefetch::for_this_cpu();
    let (lanes, width) = if WIDE {
        (16, ReduceWidth::Lanes16)
    } else {
        (8, ReduceWidth::Lanes8)
    };
    let whole = x.len() - x.len() % (4 * lanes);
    let mut lo = [_mm256_setzero_ps(); 4];
    let mut hi = [_mm256_setzero_ps(); 4];
    for i in (0..whole).step_by(4 * lanes) {
        prefetch_ahead(how, x[i..].as_ptr(), 2 * 4 * lanes);
        for j in 0..4 {
            let at = i + j * lanes;
            lo[j] = _mm256_fmadd_ps(load_f16(&x[at..]), load_f16(&y[at..]), lo[j]);
            if WIDE {
                hi[j] = _mm256_fmadd_ps(load_f16(&x[at + 8..]), load_f16(&y[at + 8..]), hi[j]);
            }
        }
    }
    let sum = f64::from(reduce_accumulators(lo, hi, width));
    let [sum] = f16_tail_sums([sum], [&x[whole..]], &y[whole..]);
    sum as f32
}

/// [`f16_vec_dot_avx2`] of two rows against one vector, interleaved so that eight accumulator
/// chains hide the multiply-add latency; each result has the one-row kernel's bits.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn f16_vec_dot_x2_avx2(rows: [&[f16]; 2], y: &[f16], width: ReduceWidth) -> [f32; 2] {
    // One body per width, so that the 8-lane one keeps its eight accumulators in registers.
    match width {
        ReduceWidth::Lanes8 => f16_vec_dot_x2_lanes::<false>(rows, y),
        ReduceWidth::Lanes16 => f16_vec_dot_x2_lanes::<true>(rows, y),
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn f16_vec_dot_x2_lanes<const WIDE: bool>(rows: [&[f16]; 2], y: &[f16]) -> [f32; 2] {
    let (lanes, width) = if WIDE {
        (16, ReduceWidth::Lanes16)
    } else {
        (8, ReduceWidth::Lanes8)
    };
    let whole = y.len() - y.len() % (4 * lanes);
    let mut lo = [[_mm256_setzero_ps(); 4]; 2];
    let mut hi = [[_mm256_setzero_ps(); 4]; 2];
    for i in (0..whole).step_by(4 * lanes) {
        for j in 0..4 {
            let at = i + j * lanes;
            let y_lo = load_f16(&y[at..]);
            for (r, row) in rows.iter().enumerate() {
                lo[r][j] = _mm256_fmadd_ps(load_f16(&row[at..]), y_lo, lo[r][j]);
            }
            if WIDE {
                let y_hi = load_f16(&y[at + 8..]);
                for (r, row) in rows.iter().enumerate() {
                    hi[r][j] = _mm256_fmadd_ps(load_f16(&row[at + 8..]), y_hi, hi[r][j]);
                }
            }
        }
    }
    // Constant indices, so that the accumulators stay in registers through the loop.
    let sums = [
        f64::from(reduce_accumulators(lo[0], hi[0], width)),
        f64::from(reduce_accumulators(lo[1], hi[1], width)),
    ];
    let tails = [&rows[0][whole..], &rows[1][whole..]];
    f16_tail_sums(sums, tails, &y[whole..]).map(|sum| sum as f32)
}

/// [`f16_tiled_dot_avx2`] of one row against four tokens, interleaved: four single-accumulator
/// chains, each with the one-token kernel's bits.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn f16_tiled_dot_x4_avx2(x: &[f16], ys: [&[f32]; 4], width: ReduceWidth) -> [f32; 4] {
    let lanes = width.lanes();
    let mut lo = [_mm256_setzero_ps(); 4];
    let mut hi = [_mm256_setzero_ps(); 4];
    for i in (0..x.len()).step_by(lanes) {
        let x_lo = load_f16(&x[i..]);
        for (t, y) in ys.iter().enumerate() {
            lo[t] = _mm256_fmadd_ps(x_lo, load_f32(&y[i..]), lo[t]);
        }
        if lanes == 16 {
            let x_hi = load_f16(&x[i + 8..]);
            for (t, y) in ys.iter().enumerate() {
                hi[t] = _mm256_fmadd_ps(x_hi, load_f32(&y[i + 8..]), hi[t]);
            }
        }
    }
    // Constant indices, so that the accumulators stay in registers through the loop.
    [
        tiled_result(lo[0], hi[0], width),
        tiled_result(lo[1], hi[1], width),
        tiled_result(lo[2], hi[2], width),
        tiled_result(lo[3], hi[3], width),
    ]
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn f32_vec_dot_avx2(x: &[f32], y: &[f32], width: ReduceWidth) -> f32 {
    let lanes = width.lanes();
    let whole = x.len() - x.len() % (4 * lanes);
    let mut lo = [_mm256_setzero_ps(); 4];
    let mut hi = [_mm256_setzero_ps(); 4];
    for i in (0..whole).step_by(4 * lanes) {
        for j in 0..4 {
            let at = i + j * lanes;
            lo[j] = _mm256_fmadd_ps(load_f32(&x[at..]), load_f32(&y[at..]), lo[j]);
            if lanes == 16 {
                hi[j] = _mm256_fmadd_ps(load_f32(&x[at + 8..]), load_f32(&y[at + 8..]), hi[j]);
            }
        }
    }
    let mut sum = reduce_accumulators(lo, hi, width);
    for (&a, &b) in x[whole..].iter().zip(&y[whole..]) {
        sum += a * b;
    }
    sum
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn f16_tiled_dot_avx2(x: &[f16], y: &[f32], width: ReduceWidth) -> f32 {
    let lanes = width.lanes();
    let mut lo = _mm256_setzero_ps();
    let mut hi = _mm256_setzero_ps();
    for i in (0..x.len()).step_by(lanes) {
        lo = _mm256_fmadd_ps(load_f16(&x[i..]), load_f32(&y[i..]), lo);
        if lanes == 16 {
            hi = _mm256_fmadd_ps(load_f16(&x[i + 8..]), load_f32(&y[i + 8..]), hi);
        }
    }
    tiled_result(lo, hi, width)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn f32_tiled_dot_avx2(x: &[f32], y: &[f32], width: ReduceWidth) -> f32 {
    let lanes = width.lanes();
    let mut lo = _mm256_setzero_ps();
    let mut hi = _mm256_setzero_ps();
    for i in (0..x.len()).step_by(lanes) {
        lo = _mm256_fmadd_ps(load_f32(&x[i..]), load_f32(&y[i..]), lo);
        if lanes == 16 {
            hi = _mm256_fmadd_ps(load_f32(&x[i + 8..]), load_f32(&y[i + 8..]), hi);
        }
    }
    tiled_result(lo, hi, width)
}

/// [`hsum8_pairs`] in registers: `((x0 + x4) + (x2 + x6)) + ((x1 + x5) + (x3 + x7))`.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn hsum8_pairs_ps(x: __m256) -> f32 {
    let r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    let s = _mm_add_ps(r, _mm_movehl_ps(r, r));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
}

#[inline]
#[target_feature(enable = "avx2")]
fn tiled_result(lo: __m256, hi: __m256, width: ReduceWidth) -> f32 {
    match width {
        ReduceWidth::Lanes8 => hsum8_pairs_ps(lo),
        ReduceWidth::Lanes16 => hsum8_pairs_ps(_mm256_add_ps(hi, lo)),
    }
}

/// The i16 values of one table at the 32 rows' indices: rows 0..16 and rows 16..32.
#[inline]
#[target_feature(enable = "avx2")]
fn tl2_lookup(table: &LutTable, indices: __m256i) -> (__m256i, __m256i) {
    // SAFETY: a table is 32 readable bytes; `loadu` has no alignment requirement.
    let (lo, hi) = unsafe {
        (
            _mm_loadu_si128(table.as_ptr().cast()),
            _mm_loadu_si128(table[16..].as_ptr().cast()),
        )
    };
    let low = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(lo), indices);
    let high = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(hi), indices);
    (
        _mm256_unpacklo_epi8(low, high),
        _mm256_unpackhi_epi8(low, high),
    )
}

/// `value` negated in the i16 lanes where the bit `SHIFT` places at the top of `signs` is set.
#[inline]
#[target_feature(enable = "avx2")]
fn tl2_signed<const SHIFT: i32>(value: __m256i, signs: __m256i) -> __m256i {
    let mask = _mm256_srai_epi16::<15>(_mm256_slli_epi16::<SHIFT>(signs));
    _mm256_sub_epi16(_mm256_xor_si256(value, mask), mask)
}

/// Adds to the row sums the two groups `2v` and `2v + 1` of an 8-group sign block (`SHIFT = 4v`):
/// the high nibbles of `packed` index `tables[0]`, the low ones `tables[1]`.
#[inline]
#[target_feature(enable = "avx2")]
fn tl2_group_pair<const SHIFT: i32, const SHIFT1: i32, const SHIFT2: i32, const SHIFT3: i32>(
    sums: &mut (__m256i, __m256i),
    packed: __m256i,
    signs: __m256i,
    tables: &[LutTable],
) {
    let nibble = _mm256_set1_epi8(0x0f);
    let (low, high) = tl2_lookup(
        &tables[0],
        _mm256_and_si256(_mm256_srli_epi16::<4>(packed), nibble),
    );
    sums.0 = _mm256_add_epi16(sums.0, tl2_signed::<SHIFT>(low, signs));
    sums.1 = _mm256_add_epi16(sums.1, tl2_signed::<SHIFT1>(high, signs));
    let (low, high) = tl2_lookup(&tables[1], _mm256_and_si256(packed, nibble));
    sums.0 = _mm256_add_epi16(sums.0, tl2_signed::<SHIFT2>(low, signs));
    sums.1 = _mm256_add_epi16(sums.1, tl2_signed::<SHIFT3>(high, signs));
}

/// Adds a tile's i16 sums (rows 0..16 in `low`, 16..32 in `high`) to the i32 row totals.
#[inline]
#[target_feature(enable = "avx2")]
fn tl2_widen(total: &mut [__m256i; 4], low: __m256i, high: __m256i) {
    let halves = [
        _mm256_castsi256_si128(low),
        _mm256_extracti128_si256::<1>(low),
        _mm256_castsi256_si128(high),
        _mm256_extracti128_si256::<1>(high),
    ];
    for (t, h) in total.iter_mut().zip(halves) {
        *t = _mm256_add_epi32(*t, _mm256_cvtepi16_epi32(h));
    }
}

#[target_feature(enable = "avx2")]
fn tl2_block_dot_avx2(block: &Tl2Block, three: &[LutTable], two: &[LutTable]) -> [i32; 32] {
    let nibble = _mm256_set1_epi8(0x0f);
    let mut total = [_mm256_setzero_si256(); 4];
    let groups = block.tile_cols() / 3;
    for tile in 0..block.three_tiles() {
        let (magnitudes, signs) = (block.magnitudes(tile), block.signs(tile));
        let tables = &three[tile * groups..(tile + 1) * groups];
        let mut sums = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for (eight, tables) in tables.chunks_exact(8).enumerate() {
            let sign = load_u8(&signs[32 * eight..]);
            let packed = |v: usize| load_u8(&magnitudes[32 * (4 * eight + v)..]);
            tl2_group_pair::<0, 1, 2, 3>(&mut sums, packed(0), sign, &tables[0..2]);
            tl2_group_pair::<4, 5, 6, 7>(&mut sums, packed(1), sign, &tables[2..4]);
            tl2_group_pair::<8, 9, 10, 11>(&mut sums, packed(2), sign, &tables[4..6]);
            tl2_group_pair::<12, 13, 14, 15>(&mut sums, packed(3), sign, &tables[6..8]);
        }
        let (low, high) = sums;
        tl2_widen(&mut total, low, high);
    }
    for tile in 0..block.two_tiles() {
        let pairs = block.pairs(tile);
        let tables = &two[tile * 16..(tile + 1) * 16];
        let (mut low, mut high) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for (v, pair) in tables.chunks_exact(2).enumerate() {
            let packed = load_u8(&pairs[32 * v..]);
            let indices = [
                _mm256_and_si256(_mm256_srli_epi16::<4>(packed), nibble),
                _mm256_and_si256(packed, nibble),
            ];
            for (table, idx) in pair.iter().zip(indices) {
                let (rows_low, rows_high) = tl2_lookup(table, idx);
                low = _mm256_add_epi16(low, rows_low);
                high = _mm256_add_epi16(high, rows_high);
            }
        }
        tl2_widen(&mut total, low, high);
    }
    let mut out = [0i32; 32];
    for (chunk, t) in out.chunks_exact_mut(8).zip(total) {
        // SAFETY: `chunk` has room for 8 i32; `storeu` has no alignment requirement.
        unsafe { _mm256_storeu_si256(chunk.as_mut_ptr().cast(), t) };
    }
    out
}

pub(crate) fn tl1_block_dot(block: &Tl1Block, tables: &[LutTable], out: &mut [i32]) {
    assert!(
        tables.len() == block.tiles() * block.tile_cols() / 2 && out.len() == block.simd_rows(),
        "tl1 block/table length mismatch"
    );
    // SAFETY: the table holding this function exists only on CPUs with AVX2 (see `kernels`).
    unsafe { tl1_block_dot_avx2(block, tables, out) }
}

/// TL1 one tile at a time, two 16-row groups per register: the vectors of the same pairs for
/// groups `2j` (lane 0) and `2j + 1` (lane 1) are loaded together, their high nibbles index the
/// first pair's table and their low nibbles the second's (each table broadcast to both lanes),
/// and the looked-up low and high bytes interleave into i16 rows summed in wrapping i16 lanes.
#[target_feature(enable = "avx2")]
fn tl1_block_dot_avx2(block: &Tl1Block, tables: &[LutTable], out: &mut [i32]) {
    let nibble = _mm256_set1_epi8(0x0f);
    let rows = block.simd_rows();
    let (inner_pairs, tile_pairs) = (128 / rows, block.tile_cols() / 2);
    // Vectors per 16 rows of an inner block, and pairs of 16-row groups.
    let (per_group, group_pairs) = (inner_pairs / 2, rows / 32);
    let halves = |table: &LutTable| {
        // SAFETY: a table is 32 readable bytes: 16 low bytes, then 16 high bytes.
        unsafe {
            (
                _mm256_broadcastsi128_si256(_mm_loadu_si128(table.as_ptr().cast())),
                _mm256_broadcastsi128_si256(_mm_loadu_si128(table[16..].as_ptr().cast())),
            )
        }
    };
    for (tile, tile_tables) in tables.chunks_exact(tile_pairs).enumerate() {
        // Per pair of groups: rows 0..8 and 8..16 of each group (lane 0: the first group).
        let mut acc = [[_mm256_setzero_si256(); 2]; 2];
        let (vectors, _) = block.tile(tile).as_chunks::<16>();
        for (inner, quad) in vectors.chunks_exact(4).enumerate() {
            for sub in 0..per_group {
                let pair = inner * inner_pairs + 2 * sub;
                let (first, second) = (halves(&tile_tables[pair]), halves(&tile_tables[pair + 1]));
                for (j, sums) in acc.iter_mut().enumerate().take(group_pairs) {
                    let (a, b) = (
                        &quad[2 * j * per_group + sub],
                        &quad[(2 * j + 1) * per_group + sub],
                    );
                    // SAFETY: `a` and `b` are 16 readable bytes each.
                    let packed = unsafe {
                        _mm256_inserti128_si256::<1>(
                            _mm256_castsi128_si256(_mm_loadu_si128(a.as_ptr().cast())),
                            _mm_loadu_si128(b.as_ptr().cast()),
                        )
                    };
                    let indices = [
                        (
                            _mm256_and_si256(_mm256_srli_epi16::<4>(packed), nibble),
                            first,
                        ),
                        (_mm256_and_si256(packed, nibble), second),
                    ];
                    for (idx, (low, high)) in indices {
                        let (lo, hi) = (
                            _mm256_shuffle_epi8(low, idx),
                            _mm256_shuffle_epi8(high, idx),
                        );
                        sums[0] = _mm256_add_epi16(sums[0], _mm256_unpacklo_epi8(lo, hi));
                        sums[1] = _mm256_add_epi16(sums[1], _mm256_unpackhi_epi8(lo, hi));
                    }
                }
            }
        }
        for (j, sums) in acc.iter().enumerate().take(group_pairs) {
            for (half, sum) in sums.iter().enumerate() {
                let lanes = [
                    _mm256_castsi256_si128(*sum),
                    _mm256_extracti128_si256::<1>(*sum),
                ];
                for (lane, rows16) in lanes.into_iter().enumerate() {
                    let eight = &mut out[32 * j + 16 * lane + 8 * half..][..8];
                    // SAFETY: `eight` holds 8 i32; `loadu`/`storeu` have no alignment requirement.
                    unsafe {
                        let total = _mm256_loadu_si256(eight.as_ptr().cast());
                        let total = _mm256_add_epi32(total, _mm256_cvtepi16_epi32(rows16));
                        _mm256_storeu_si256(eight.as_mut_ptr().cast(), total);
                    }
                }
            }
        }
    }
}
