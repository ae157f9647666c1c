//! AVX-512 dot products (F + BW, optionally VNNI).
//!
//! The I2_S core decodes each block's 32 code bytes into two 512-bit registers that line up with
//! its activations (`vpmaddubsw`, or `vpdpbusd` with VNNI, whose four-token form decodes a block
//! once for four tokens; its one-token form masks the codes in place and shifts the sums instead,
//! four rows at a time against each block's activations);
//! the f16 and f32 products use 512-bit registers for the 16-lane reduction and the AVX2 code for
//! 8 lanes.
//! TQ1_0/TQ2_0 keep the AVX2 code: their float result is defined by eight i32 lanes per block.
//! TL1 and TL2 keep the AVX2 code too: their tables are 128-bit shuffles.

use std::arch::x86_64::*;

use half::f16;

use super::{avx2, f16_tail_sums, prefetch_ahead, MASKED_SAFE_BLOCKS};
use crate::formats::{BlockQ8K, FpContract, TQ1_0_BLOCK_BYTES, TQ2_0_BLOCK_BYTES};
use crate::kernels::reduce::ReduceWidth;
use crate::kernels::table::{DotKernels, I2sQuadKernels};
use crate::kernels::DenseMatrix;
use crate::kernels::{i2s_rows_kernel, i2s_rows_x4_in_pairs, StreamPrefetch};

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
    i2s_rows_x4: Some(avx2::i2s_rows_x4),
    i2s_quads: None,
    tq1: tq1_dot,
    tq2: tq2_dot,
    tl1: avx2::tl1_block_dot,
    tl2: avx2::tl2_block_dot,
    f16_vec: f16_vec_dot,
    f32_vec: f32_vec_dot,
    f16_tiled: f16_tiled_dot,
    f32_tiled: f32_tiled_dot,
    f16_vec_x2: Some(f16_vec_dot_x2),
    f16_rows_x4: Some(f16_rows_x4),
    f16_tiled_x4: Some(f16_tiled_dot_x4),
};

static KERNELS_VNNI: DotKernels = DotKernels {
    i2s_rows: i2s_rows_vnni,
    i2s_rows_x4: Some(i2s_rows_x4_vnni),
    i2s_quads: Some(I2sQuadKernels {
        rows: i2s_quad_rows_vnni,
        rows_x4: i2s_quad_rows_x4_vnni,
    }),
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
fn i2s_rows_vnni(codes: &[u8], act: &[i8], out: &mut [i32]) {
    crate::kernels::rows::check_rows(codes, &[act], out.len());
    // SAFETY: only `KERNELS_VNNI` holds this function, and it is handed out only on CPUs with
    // the features `i2s_rows_avx512_vnni` is compiled for.
    unsafe { i2s_rows_avx512_vnni::<false>(codes, act, out) }
}

/// [`i2s_rows_vnni`] over rows in the quads layout.
fn i2s_quad_rows_vnni(codes: &[u8], act: &[i8], out: &mut [i32]) {
    crate::kernels::rows::check_rows(codes, &[act], out.len());
    // SAFETY: as in `i2s_rows_vnni`, through `KERNELS_VNNI` only.
    unsafe { i2s_rows_avx512_vnni::<true>(codes, act, out) }
}

/// The one-token rows four at a time ([`i2s_dot_x4_rows_avx512_vnni`]), each four one after
/// another or grouped (`GROUPED`, the quads layout), the last rows of a run that is not a
/// multiple of four one at a time.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2")]
fn i2s_rows_avx512_vnni<const GROUPED: bool>(codes: &[u8], act: &[i8], out: &mut [i32]) {
    let width = act.len() / 4;
    if width == 0 {
        out.fill(0);
        return;
    }
    let mut quads = out.chunks_exact_mut(4);
    let quad_codes = codes.chunks_exact(4 * width);
    let rest = quad_codes.remainder();
    for (o, quad) in (&mut quads).zip(quad_codes) {
        o.copy_from_slice(&i2s_dot_x4_rows_avx512_vnni::<GROUPED>(quad, act));
    }
    for (o, row) in quads
        .into_remainder()
        .iter_mut()
        .zip(rest.chunks_exact(width))
    {
        *o = i2s_dot_avx512_vnni(row, act);
    }
}

/// [`i2s_dot_avx512_vnni`] of the four rows `quad` against one token: each block's activations
/// are loaded once for the four rows, and the four rows' lanes are folded into one register
/// before the last horizontal adds. The rows lie one after another, read side by side (which
/// the hardware prefetchers do not follow), or grouped (`GROUPED`: block `b` of row `i` is the
/// group's block `4b + i`), read as one linear stream; either way the prefetch runs over `quad`
/// as one stream, a block's share of it per block.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2")]
fn i2s_dot_x4_rows_avx512_vnni<const GROUPED: bool>(quad: &[u8], act: &[i8]) -> [i32; 4] {
    let how = StreamPrefetch::for_this_cpu();
    let (act_blocks, _) = act.as_chunks::<128>();
    let (blocks, _) = quad.as_chunks::<32>();
    let n = act_blocks.len();
    // Row `i`'s blocks start at block `i · first` and lie `step` blocks apart.
    let (first, step) = match GROUPED {
        true => (1, 4),
        false => (n, 1),
    };
    let (r0, r1, r2, r3) = (
        blocks,
        &blocks[first..],
        &blocks[2 * first..],
        &blocks[3 * first..],
    );
    let masks = i2s_code_masks();
    let [first_shift, second_shift] = i2s_code_shifts();
    let mut total = [_mm512_setzero_si512(); 4];
    for start in (0..act_blocks.len()).step_by(MASKED_SAFE_BLOCKS) {
        let end = (start + MASKED_SAFE_BLOCKS).min(act_blocks.len());
        let mut sums = [[_mm512_setzero_si512(); 2]; 4];
        for b in start..end {
            let a = &act_blocks[b];
            prefetch_ahead(how, quad.as_ptr().wrapping_add(4 * 32 * b), 4 * 32);
            add_masked_block(&mut sums[0], &r0[step * b], a, masks);
            add_masked_block(&mut sums[1], &r1[step * b], a, masks);
            add_masked_block(&mut sums[2], &r2[step * b], a, masks);
            add_masked_block(&mut sums[3], &r3[step * b], a, masks);
        }
        for (total, pair) in total.iter_mut().zip(sums) {
            let first = _mm512_srav_epi32(pair[0], first_shift);
            let second = _mm512_srav_epi32(pair[1], second_shift);
            *total = _mm512_add_epi32(*total, _mm512_add_epi32(first, second));
        }
    }
    fold_x4_epi32(total)
}

/// The lane sums of four i32 accumulators, folded pairwise into one register first.
#[inline]
#[target_feature(enable = "avx512f")]
fn fold_x4_epi32(t: [__m512i; 4]) -> [i32; 4] {
    let ab = _mm512_add_epi32(
        _mm512_unpacklo_epi32(t[0], t[1]),
        _mm512_unpackhi_epi32(t[0], t[1]),
    );
    let cd = _mm512_add_epi32(
        _mm512_unpacklo_epi32(t[2], t[3]),
        _mm512_unpackhi_epi32(t[2], t[3]),
    );
    let abcd = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
    let half = _mm256_add_epi32(
        _mm512_castsi512_si256(abcd),
        _mm512_extracti64x4_epi64::<1>(abcd),
    );
    let quarter = _mm_add_epi32(
        _mm256_castsi256_si128(half),
        _mm256_extracti128_si256::<1>(half),
    );
    let mut out = [0i32; 4];
    // SAFETY: `out` is 16 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), quarter) };
    out
}

i2s_rows_x4_in_pairs!(
    i2s_rows_x4_vnni,
    i2s_rows_x4_avx512_vnni,
    i2s_dot_2x4_avx512_vnni,
    "avx512f,avx512bw,avx512vnni,avx2"
);

/// [`i2s_rows_x4_vnni`] over rows in the quads layout.
fn i2s_quad_rows_x4_vnni(codes: &[u8], acts: [&[i8]; 4], out: &mut [[i32; 4]]) {
    crate::kernels::rows::check_rows(codes, &acts, out.len());
    // SAFETY: only `KERNELS_VNNI` holds this function, and it is handed out only on CPUs with
    // the features `i2s_quad_rows_x4_avx512_vnni` is compiled for.
    unsafe { i2s_quad_rows_x4_avx512_vnni(codes, acts, out) }
}

/// Each group of four rows as two pairs ([`i2s_dot_2x4_blocks`], block `b` of row `i` the
/// group's block `4b + i`), the rows after the last group as [`i2s_rows_x4_avx512_vnni`] takes
/// them.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2")]
fn i2s_quad_rows_x4_avx512_vnni(codes: &[u8], acts: [&[i8]; 4], out: &mut [[i32; 4]]) {
    let Some((width, blocks)) = crate::kernels::rows::token_blocks(acts, out) else {
        return;
    };
    let grouped = out.len() / 4 * 4;
    let (group_codes, rest) = codes.split_at(grouped * width);
    let (group_out, rest_out) = out.split_at_mut(grouped);
    for (group, o) in group_codes
        .chunks_exact(4 * width)
        .zip(group_out.chunks_exact_mut(4))
    {
        let (b, _) = group.as_chunks::<32>();
        let [r0, r1] = i2s_dot_2x4_blocks::<4>([b, &b[1..]], blocks);
        let [r2, r3] = i2s_dot_2x4_blocks::<4>([&b[2..], &b[3..]], blocks);
        o.copy_from_slice(&[r0, r1, r2, r3]);
    }
    i2s_rows_x4_avx512_vnni(rest, acts, rest_out);
}

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

fn f16_vec_dot_x2(rows: [&[f16]; 2], y: &[f16], width: ReduceWidth) -> [f32; 2] {
    assert!(
        rows.iter().all(|row| row.len() == y.len()),
        "f16 dot length mismatch"
    );
    match width {
        // SAFETY: this table requires AVX2, FMA and F16C (`is_supported`).
        ReduceWidth::Lanes8 => unsafe { avx2::f16_vec_dot_x2_avx2(rows, y, width) },
        // SAFETY: this table requires AVX-512 F (`is_supported`).
        ReduceWidth::Lanes16 => unsafe { f16_vec_dot_x2_avx512(rows, y) },
    }
}

fn f16_rows_x4(
    w: &DenseMatrix<'_, f16>,
    vectors: [&[f16]; 4],
    out: &mut [[f32; 4]],
    width: ReduceWidth,
) {
    let n = w.shape().ne0;
    assert!(
        vectors.iter().all(|v| v.len() == n) && out.len() == w.shape().ne1,
        "f16 rows length mismatch"
    );
    match width {
        ReduceWidth::Lanes8 => {
            for (r, o) in out.iter_mut().enumerate() {
                let row = w.row(r);
                // SAFETY: this table requires AVX2, FMA and F16C (`is_supported`).
                let [a, b] =
                    unsafe { avx2::f16_vec_dot_x2_avx2([vectors[0], vectors[1]], row, width) };
                // SAFETY: as above.
                let [c, d] =
                    unsafe { avx2::f16_vec_dot_x2_avx2([vectors[2], vectors[3]], row, width) };
                *o = [a, b, c, d];
            }
        }
        // SAFETY: this table requires AVX-512 F and BW, AVX2 and F16C (`is_supported`).
        ReduceWidth::Lanes16 => unsafe { f16_rows_x4_avx512(w, vectors, out) },
    }
}

fn f16_tiled_dot_x4(x: &[f16], ys: [&[f32]; 4], width: ReduceWidth) -> [f32; 4] {
    assert!(
        ys.iter().all(|y| y.len() == x.len()) && x.len().is_multiple_of(width.lanes()),
        "tiled f16 dot length mismatch"
    );
    match width {
        // SAFETY: this table requires AVX2, FMA and F16C (`is_supported`).
        ReduceWidth::Lanes8 => unsafe { avx2::f16_tiled_dot_x4_avx2(x, ys, width) },
        // SAFETY: this table requires AVX-512 F (`is_supported`).
        ReduceWidth::Lanes16 => unsafe { f16_tiled_dot_x4_avx512(x, ys) },
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

/// One I2_S block's 128 codes, one per byte, as two registers that line up with activations
/// `0..64` and `64..128`: byte `j` of the block holds codes `j`, `j + 32`, `j + 64` and `j + 96`
/// from the high bits down, so both 256-bit halves hold the block's bytes, shifted by 6 and 4
/// for the first register and by 2 and 0 for the second.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
fn i2s_block_codes(codes: &[u8; 32]) -> [__m512i; 2] {
    let mask = _mm512_set1_epi8(3);
    // SAFETY: `codes` is 32 readable bytes; `loadu` has no alignment requirement.
    let bytes = unsafe { _mm256_loadu_si256(codes.as_ptr().cast()) };
    let packed = _mm512_broadcast_i64x4(bytes);
    let first = _mm512_set_epi64(4, 4, 4, 4, 6, 6, 6, 6);
    let second = _mm512_set_epi64(0, 0, 0, 0, 2, 2, 2, 2);
    [
        _mm512_and_si512(_mm512_srlv_epi64(packed, first), mask),
        _mm512_and_si512(_mm512_srlv_epi64(packed, second), mask),
    ]
}

/// One block's 128 activations as two 64-byte registers.
#[inline]
#[target_feature(enable = "avx512f")]
fn load_block_acts(act: &[i8; 128]) -> [__m512i; 2] {
    let ptr = act.as_ptr();
    // SAFETY: `act` is 128 readable bytes and the loads read bytes 0..64 and 64..128; `loadu`
    // has no alignment requirement.
    unsafe {
        [
            _mm512_loadu_si512(ptr.cast()),
            _mm512_loadu_si512(ptr.add(64).cast()),
        ]
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx2")]
fn i2s_dot_avx512(codes: &[u8], act: &[i8]) -> i32 {
    let ones = _mm512_set1_epi16(1);
    let (code_blocks, _) = codes.as_chunks::<32>();
    let (act_blocks, _) = act.as_chunks::<128>();
    let mut total = _mm512_setzero_si512();
    // A block adds at most 2 · 2 · 3 · 128 = 1536 per i16 lane, half the AVX2 core's bound.
    for (codes, act) in code_blocks
        .chunks(avx2::I16_SAFE_BLOCKS)
        .zip(act_blocks.chunks(avx2::I16_SAFE_BLOCKS))
    {
        let mut partial = _mm512_setzero_si512();
        for (c, a) in codes.iter().zip(act) {
            let [c0, c1] = i2s_block_codes(c);
            let [a0, a1] = load_block_acts(a);
            let sum = _mm512_add_epi16(_mm512_maddubs_epi16(c0, a0), _mm512_maddubs_epi16(c1, a1));
            partial = _mm512_add_epi16(partial, sum);
        }
        total = _mm512_add_epi32(total, _mm512_madd_epi16(partial, ones));
    }
    _mm512_reduce_add_epi32(total)
}

/// Masks that pick, from a block's 32 code bytes in both 256-bit halves, the codes lined up with
/// activations `0..64` (bits 7–6 in the lower half, 5–4 in the upper) and `64..128` (bits 3–2,
/// 1–0) without shifting them down: each code arrives multiplied by 64, 16, 4 or 1.
#[inline]
#[target_feature(enable = "avx512f")]
fn i2s_code_masks() -> [__m512i; 2] {
    let high = 0xC0C0_C0C0_C0C0_C0C0_u64 as i64;
    let mid_high = 0x3030_3030_3030_3030;
    let mid_low = 0x0C0C_0C0C_0C0C_0C0C;
    let low = 0x0303_0303_0303_0303;
    [
        _mm512_set_epi64(
            mid_high, mid_high, mid_high, mid_high, high, high, high, high,
        ),
        _mm512_set_epi64(low, low, low, low, mid_low, mid_low, mid_low, mid_low),
    ]
}

/// The lane shifts that divide sums of the codes picked by [`i2s_code_masks`] by their factors.
#[inline]
#[target_feature(enable = "avx512f")]
fn i2s_code_shifts() -> [__m512i; 2] {
    [
        _mm512_set_epi32(4, 4, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6),
        _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2),
    ]
}

/// One block's 32 code bytes in both halves of a register.
#[inline]
#[target_feature(enable = "avx512f")]
fn broadcast_block(codes: &[u8; 32]) -> __m512i {
    // SAFETY: `codes` is 32 readable bytes; `loadu` has no alignment requirement.
    _mm512_broadcast_i64x4(unsafe { _mm256_loadu_si256(codes.as_ptr().cast()) })
}

/// Adds one block's products to a pair of accumulators: its codes under the first mask against
/// its first 64 activations, under the second against the other 64.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2")]
fn add_masked_block(
    pair: &mut [__m512i; 2],
    codes: &[u8; 32],
    act: &[i8; 128],
    masks: [__m512i; 2],
) {
    let p = broadcast_block(codes);
    let [x0, x1] = load_block_acts(act);
    pair[0] = _mm512_dpbusd_epi32(pair[0], _mm512_and_si512(p, masks[0]), x0);
    pair[1] = _mm512_dpbusd_epi32(pair[1], _mm512_and_si512(p, masks[1]), x1);
}

/// The one-token VNNI dot. A block's codes are masked in place rather than shifted down (see
/// [`i2s_code_masks`]), so each lane of an accumulator sums products of one factor, which its
/// final exact shift removes: two register operations per block fewer than decoding first.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2")]
fn i2s_dot_avx512_vnni(codes: &[u8], act: &[i8]) -> i32 {
    let how = StreamPrefetch::for_this_cpu();
    let (code_blocks, _) = codes.as_chunks::<32>();
    let (act_blocks, _) = act.as_chunks::<128>();
    let masks = i2s_code_masks();
    let [first_shift, second_shift] = i2s_code_shifts();
    let mut total = _mm512_setzero_si512();
    for (code_blocks, act_blocks) in code_blocks
        .chunks(MASKED_SAFE_BLOCKS)
        .zip(act_blocks.chunks(MASKED_SAFE_BLOCKS))
    {
        // Four blocks per step into four pairs of accumulators: each `vpdpbusd` chain takes one
        // step of 128 code bytes, so the chains' latency does not bound the stream.
        let mut sums = [[_mm512_setzero_si512(); 2]; 4];
        let (code_quads, code_rest) = code_blocks.as_chunks::<4>();
        let (act_quads, act_rest) = act_blocks.as_chunks::<4>();
        for (c, a) in code_quads.iter().zip(act_quads) {
            prefetch_ahead(how, c.as_ptr(), 128);
            for ((pair, c), a) in sums.iter_mut().zip(c).zip(a) {
                add_masked_block(pair, c, a, masks);
            }
        }
        for ((pair, c), a) in sums.iter_mut().zip(code_rest).zip(act_rest) {
            add_masked_block(pair, c, a, masks);
        }
        let field = |f: usize| {
            _mm512_add_epi32(
                _mm512_add_epi32(sums[0][f], sums[1][f]),
                _mm512_add_epi32(sums[2][f], sums[3][f]),
            )
        };
        let first = _mm512_srav_epi32(field(0), first_shift);
        let second = _mm512_srav_epi32(field(1), second_shift);
        total = _mm512_add_epi32(total, _mm512_add_epi32(first, second));
    }
    _mm512_reduce_add_epi32(total)
}

/// Σ code · a of two rows against four tokens' 128-activation blocks.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2")]
fn i2s_dot_2x4_avx512_vnni(rows: [&[u8]; 2], acts: [&[[i8; 128]]; 4]) -> [[i32; 4]; 2] {
    i2s_dot_2x4_blocks::<1>(rows.map(|row| row.as_chunks::<32>().0), acts)
}

/// [`i2s_dot_2x4_avx512_vnni`] of two rows whose block `b` is `rows[j][STEP · b]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2")]
fn i2s_dot_2x4_blocks<const STEP: usize>(
    rows: [&[[u8; 32]]; 2],
    acts: [&[[i8; 128]]; 4],
) -> [[i32; 4]; 2] {
    let mut total = [[_mm512_setzero_si512(); 4]; 2];
    for b in 0..acts[0].len() {
        let [c00, c01] = i2s_block_codes(&rows[0][STEP * b]);
        let [c10, c11] = i2s_block_codes(&rows[1][STEP * b]);
        for t in 0..4 {
            let [x0, x1] = load_block_acts(&acts[t][b]);
            total[0][t] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(total[0][t], c00, x0), c01, x1);
            total[1][t] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(total[1][t], c10, x0), c11, x1);
        }
    }
    [reduce_x4_epi32(total[0]), reduce_x4_epi32(total[1])]
}

/// The lane sums of four i32 accumulators.
#[inline]
#[target_feature(enable = "avx512f")]
fn reduce_x4_epi32(total: [__m512i; 4]) -> [i32; 4] {
    [
        _mm512_reduce_add_epi32(total[0]),
        _mm512_reduce_add_epi32(total[1]),
        _mm512_reduce_add_epi32(total[2]),
        _mm512_reduce_add_epi32(total[3]),
    ]
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

/// `hsum16` in registers: the halves of 8 added, then
/// [`avx2::hsum8_pairs_ps`].
#[inline]
#[target_feature(enable = "avx512f,avx2")]
fn hsum16_ps(x: __m512) -> f32 {
    let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x)));
    avx2::hsum8_pairs_ps(_mm256_add_ps(_mm512_castps512_ps256(x), high))
}

/// `reduce_vec_dot` of four 16-lane accumulators in registers: `(a0 + a2) + (a1 + a3)`
/// lane-wise, then [`hsum16_ps`].
#[inline]
#[target_feature(enable = "avx512f,avx2")]
fn reduce_x4_ps(acc: [__m512; 4]) -> f32 {
    hsum16_ps(_mm512_add_ps(
        _mm512_add_ps(acc[0], acc[2]),
        _mm512_add_ps(acc[1], acc[3]),
    ))
}

#[target_feature(enable = "avx512f,avx2")]
fn f16_vec_dot_avx512(x: &[f16], y: &[f16]) -> f32 {
    let how = StreamPrefetch::for_this_cpu();
    let whole = x.len() - x.len() % 64;
    let mut acc = [_mm512_setzero_ps(); 4];
    for i in (0..whole).step_by(64) {
        prefetch_ahead(how, x[i..].as_ptr(), 128);
        for (j, a) in acc.iter_mut().enumerate() {
            let at = i + 16 * j;
            *a = _mm512_fmadd_ps(load_f16x16(&x[at..]), load_f16x16(&y[at..]), *a);
        }
    }
    let [sum] = f16_tail_sums([f64::from(reduce_x4_ps(acc))], [&x[whole..]], &y[whole..]);
    sum as f32
}

/// [`f16_vec_dot_avx512`] of two rows against one vector, interleaved so that eight
/// accumulator chains hide the multiply-add latency; each result has the one-row kernel's bits.
#[target_feature(enable = "avx512f,avx2")]
fn f16_vec_dot_x2_avx512(rows: [&[f16]; 2], y: &[f16]) -> [f32; 2] {
    let whole = y.len() - y.len() % 64;
    let mut acc = [[_mm512_setzero_ps(); 4]; 2];
    for i in (0..whole).step_by(64) {
        for j in 0..4 {
            let at = i + 16 * j;
            let y = load_f16x16(&y[at..]);
            for (a, row) in acc.iter_mut().zip(rows) {
                a[j] = _mm512_fmadd_ps(load_f16x16(&row[at..]), y, a[j]);
            }
        }
    }
    let sums = acc.map(|acc| f64::from(reduce_x4_ps(acc)));
    let tails = [&rows[0][whole..], &rows[1][whole..]];
    f16_tail_sums(sums, tails, &y[whole..]).map(|sum| sum as f32)
}

/// [`f16_vec_dot_avx512`] of every row of `w` against four vectors, each result with the one-row
/// kernel's bits. The vectors are widened once; each row is widened once for all four (sixteen
/// accumulator chains), whose four sums are reduced together; the f64 tails of four rows run side
/// by side, each row's four sums in one register.
#[target_feature(enable = "avx512f,avx512bw,avx2,f16c")]
fn f16_rows_x4_avx512(w: &DenseMatrix<'_, f16>, vectors: [&[f16]; 4], out: &mut [[f32; 4]]) {
    let n = w.shape().ne0;
    let whole = n - n % 64;
    let mut widened = vec![0f32; 4 * whole];
    for (v, wide) in vectors.iter().zip(widened.chunks_exact_mut(whole.max(1))) {
        for (v, wide) in v[..whole].chunks_exact(16).zip(wide.chunks_exact_mut(16)) {
            // SAFETY: both chunks hold 16 values; `loadu`/`storeu` have no alignment
            // requirement.
            unsafe {
                let x = _mm512_cvtph_ps(_mm256_loadu_si256(v.as_ptr().cast()));
                _mm512_storeu_ps(wide.as_mut_ptr(), x);
            }
        }
    }
    let wide: [&[f32]; 4] = std::array::from_fn(|k| &widened[k * whole..(k + 1) * whole]);
    // The vectors' tail elements, the four vectors' values of each element side by side, and
    // how many of them reach the last non-zero one.
    let tails = vectors.map(|v| widen_short(&v[whole..]));
    let mut tail = [[0f32; 4]; 64];
    for (j, t) in tail[..n - whole].iter_mut().enumerate() {
        *t = [tails[0][j], tails[1][j], tails[2][j], tails[3][j]];
    }
    let tail = &tail[..n - whole];
    let live = tail
        .iter()
        .rposition(|t| t.iter().any(|&v| v != 0.0))
        .map_or(0, |j| j + 1);
    for (quad, quad_out) in out.chunks_mut(4).enumerate() {
        let last = quad_out.len() - 1;
        let rows: [&[f16]; 4] = [0, 1, 2, 3].map(|k| w.row(4 * quad + k.min(last)));
        let [a, b] = f16_rows2_x4_sums([&rows[0][..whole], &rows[1][..whole]], wide);
        let [c, d] = f16_rows2_x4_sums([&rows[2][..whole], &rows[3][..whole]], wide);
        let sums = [a, b, c, d];
        let mut quad_sums = [[0f32; 4]; 4];
        if tail.is_empty() {
            for (values, s) in quad_sums.iter_mut().zip(sums) {
                // SAFETY: `values` has room for 4 f32; `storeu` has no alignment requirement.
                unsafe { _mm_storeu_ps(values.as_mut_ptr(), s) };
            }
        } else {
            let row_tails = [0, 1, 2, 3].map(|k| &rows[k][whole..]);
            quad_sums = f16_quad_tails(row_tails, sums, tail, live);
        }
        for (o, sums) in quad_out.iter_mut().zip(quad_sums) {
            *o = sums;
        }
    }
}

/// Up to 64 f16 values widened to f32, zeros past them.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,f16c")]
fn widen_short(values: &[f16]) -> [f32; 64] {
    assert!(values.len() <= 64);
    let mut out = [0f32; 64];
    for (values, out) in values.chunks(32).zip(out.chunks_exact_mut(32)) {
        let mask = u32::MAX >> (32 - values.len());
        // SAFETY: the mask selects the `values.len()` (at most 32) readable halves of `values`,
        // and a masked load does not touch the others; `out` holds 32 f32; `storeu` has no
        // alignment requirement.
        unsafe {
            let halves = _mm512_maskz_loadu_epi16(mask, values.as_ptr().cast());
            let low = _mm512_cvtph_ps(_mm512_castsi512_si256(halves));
            let high = _mm512_cvtph_ps(_mm512_extracti64x4_epi64::<1>(halves));
            _mm512_storeu_ps(out.as_mut_ptr(), low);
            _mm512_storeu_ps(out.as_mut_ptr().add(16), high);
        }
    }
    out
}

/// The f32 sums of two rows (whole vectors of 64) against four widened vectors each, as
/// [`f16_vec_dot_avx512`] reduces them, each row's four in one register. Each accumulator
/// `a_j` (the lanes at `16j` of every vector of 64) is summed over the vectors in order, as
/// there, but one `j` after another, in the order 0, 2, 1, 3 that `(a0 + a2) + (a1 + a3)` adds
/// them in: fewer registers stay live, so that both rows share each load of a vector.
#[inline]
#[target_feature(enable = "avx512f,avx2,f16c")]
fn f16_rows2_x4_sums(rows: [&[f16]; 2], wide: [&[f32]; 4]) -> [__m128; 2] {
    let n = rows[0].len();
    assert!(n.is_multiple_of(64) && rows[1].len() == n && wide.iter().all(|v| v.len() == n));
    let accumulate = |j: usize| {
        let mut acc = [[_mm512_setzero_ps(); 4]; 2];
        for i in (0..n).step_by(64) {
            let at = i + 16 * j;
            // SAFETY: `at + 16 <= n`, the length of both rows and of every vector (asserted);
            // `loadu` has no alignment requirement.
            let x = rows.map(|row| unsafe {
                _mm512_cvtph_ps(_mm256_loadu_si256(row.as_ptr().add(at).cast()))
            });
            for (k, v) in wide.iter().enumerate() {
                // SAFETY: as above.
                let y = unsafe { _mm512_loadu_ps(v.as_ptr().add(at)) };
                for (acc, x) in acc.iter_mut().zip(x) {
                    acc[k] = _mm512_fmadd_ps(x, y, acc[k]);
                }
            }
        }
        acc
    };
    let add = |a: [[__m512; 4]; 2], b: [[__m512; 4]; 2]| {
        std::array::from_fn::<_, 2, _>(|r| {
            std::array::from_fn::<_, 4, _>(|k| _mm512_add_ps(a[r][k], b[r][k]))
        })
    };
    let even = add(accumulate(0), accumulate(2));
    let odd = add(accumulate(1), accumulate(3));
    let sums = add(even, odd);
    [hsum16_ps_x4(sums[0]), hsum16_ps_x4(sums[1])]
}

/// [`hsum16_ps`] of four registers at once, lane `k` of the result with the bits of
/// `hsum16_ps(a[k])`: every sum pairs the same values in the same order, four registers' lanes
/// side by side.
#[inline]
#[target_feature(enable = "avx512f")]
fn hsum16_ps_x4(a: [__m512; 4]) -> __m128 {
    // Lanes `l` and `l + 8` of each set added: two sets' eight lanes to a register.
    let halves = |x: __m512, y: __m512| {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b01_00_01_00>(x, y),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(x, y),
        )
    };
    let (ab, cd) = (halves(a[0], a[1]), halves(a[2], a[3]));
    // Lanes `l` and `l + 4` of those: each set's four lanes in a quarter of one register.
    let quarters = _mm512_add_ps(
        _mm512_shuffle_f32x4::<0b10_00_10_00>(ab, cd),
        _mm512_shuffle_f32x4::<0b11_01_11_01>(ab, cd),
    );
    // Within each quarter, `(q0 + q2) + (q1 + q3)`, in lane 0.
    let pairs = _mm512_add_ps(quarters, _mm512_permute_ps::<0b11_10_11_10>(quarters));
    let sums = _mm512_add_ps(pairs, _mm512_permute_ps::<0b01>(pairs));
    let firsts = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    _mm512_castps512_ps128(_mm512_permutexvar_ps(firsts, sums))
}

/// Four rows' results from the f32 sums of their vector parts and their tail elements against
/// `tail` (the four vectors' values of each tail element side by side): `sum += (double)(x · y)`
/// in order, the rows' chains side by side. Past the vectors' last non-zero tail element (the
/// first `live` elements reach it) every product with a finite row value is a signed zero, which
/// leaves the sum as it is (no sum here is −0: they start at +0, and only −0 + −0 is −0); only a
/// row with a value that is not finite there adds the rest.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx2,f16c")]
fn f16_quad_tails(
    rows: [&[f16]; 4],
    sums: [__m128; 4],
    tail: &[[f32; 4]],
    live: usize,
) -> [[f32; 4]; 4] {
    let n = tail.len();
    let x = [
        widen_short(&rows[0][..n]),
        widen_short(&rows[1][..n]),
        widen_short(&rows[2][..n]),
        widen_short(&rows[3][..n]),
    ];
    let mut sums = [
        _mm256_cvtps_pd(sums[0]),
        _mm256_cvtps_pd(sums[1]),
        _mm256_cvtps_pd(sums[2]),
        _mm256_cvtps_pd(sums[3]),
    ];
    let add = |sum: &mut __m256d, x: f32, t: &[f32; 4]| {
        // SAFETY: `t` is 4 readable f32; `loadu` has no alignment requirement.
        let t = unsafe { _mm_loadu_ps(t.as_ptr()) };
        *sum = _mm256_add_pd(*sum, _mm256_cvtps_pd(_mm_mul_ps(_mm_set1_ps(x), t)));
    };
    for (j, t) in tail[..live].iter().enumerate() {
        for (sum, x) in sums.iter_mut().zip(&x) {
            add(sum, x[j], t);
        }
    }
    for (sum, x) in sums.iter_mut().zip(&x) {
        if !x[live..n].iter().all(|v| v.is_finite()) {
            for (j, t) in tail.iter().enumerate().skip(live) {
                add(sum, x[j], t);
            }
        }
    }
    let mut out = [[0f32; 4]; 4];
    for (values, s) in out.iter_mut().zip(sums) {
        // SAFETY: `values` has room for 4 f32; `storeu` has no alignment requirement.
        unsafe { _mm_storeu_ps(values.as_mut_ptr(), _mm256_cvtpd_ps(s)) };
    }
    out
}

#[target_feature(enable = "avx512f,avx2")]
fn f32_vec_dot_avx512(x: &[f32], y: &[f32]) -> f32 {
    let whole = x.len() - x.len() % 64;
    let mut acc = [_mm512_setzero_ps(); 4];
    for i in (0..whole).step_by(64) {
        for (j, a) in acc.iter_mut().enumerate() {
            let at = i + 16 * j;
            *a = _mm512_fmadd_ps(load_f32x16(&x[at..]), load_f32x16(&y[at..]), *a);
        }
    }
    let mut sum = reduce_x4_ps(acc);
    for (&a, &b) in x[whole..].iter().zip(&y[whole..]) {
        sum += a * b;
    }
    sum
}

#[target_feature(enable = "avx512f,avx2")]
fn f16_tiled_dot_avx512(x: &[f16], y: &[f32]) -> f32 {
    let mut acc = _mm512_setzero_ps();
    for i in (0..x.len()).step_by(16) {
        acc = _mm512_fmadd_ps(load_f16x16(&x[i..]), load_f32x16(&y[i..]), acc);
    }
    hsum16_ps(acc)
}

/// [`f16_tiled_dot_avx512`] of one row against four tokens, interleaved: four
/// single-accumulator chains, each with the one-token kernel's bits.
#[target_feature(enable = "avx512f,avx2")]
fn f16_tiled_dot_x4_avx512(x: &[f16], ys: [&[f32]; 4]) -> [f32; 4] {
    let mut acc = [_mm512_setzero_ps(); 4];
    for i in (0..x.len()).step_by(16) {
        let w = load_f16x16(&x[i..]);
        for (a, y) in acc.iter_mut().zip(ys) {
            *a = _mm512_fmadd_ps(w, load_f32x16(&y[i..]), *a);
        }
    }
    [
        hsum16_ps(acc[0]),
        hsum16_ps(acc[1]),
        hsum16_ps(acc[2]),
        hsum16_ps(acc[3]),
    ]
}

#[target_feature(enable = "avx512f,avx2")]
fn f32_tiled_dot_avx512(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = _mm512_setzero_ps();
    for i in (0..x.len()).step_by(16) {
        acc = _mm512_fmadd_ps(load_f32x16(&x[i..]), load_f32x16(&y[i..]), acc);
    }
    hsum16_ps(acc)
}
