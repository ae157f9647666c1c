//! Scalar reference kernels: plain loops that define every bit the SIMD kernels must reproduce.
//!
//! The integer cores are exact; the float parts follow the reference's x86 evaluation order (lane
//! assignment, reduction tree, fused or separate multiply-add) so that all ISAs agree bit for bit.

use half::f16;

use super::reduce::{hsum8_pairs, reduce_tiled, reduce_vec_dot, ReduceWidth};
use super::rows::check_rows;
use crate::formats::{lut_entry, swapped_row, tq1_element, trit, trits_in};
use crate::formats::{rows_of_quads, I2S_BLOCK};
use crate::formats::{BlockQ8K, FpContract, TQ1_0_BLOCK_BYTES, TQ2_0_BLOCK_BYTES};
use crate::formats::{LutTable, Tl1Block, Tl2Block};

/// Σ code · a over one I2_S row: `codes` holds `act.len() / 4` packed bytes in 128-weight blocks and
/// the raw 2-bit codes (0, 1, 2; 3 counts as 3) multiply the int8 activations. Exact in i32.
///
/// # Panics
/// If `act.len()` is not a multiple of 128 or `codes` is shorter than `act.len() / 4`.
pub fn i2s_dot_ref(codes: &[u8], act: &[i8]) -> i32 {
    assert!(
        act.len().is_multiple_of(128) && codes.len() >= act.len() / 4,
        "i2_s row/activation length mismatch"
    );
    let mut sum = 0i32;
    for (block, a) in codes.chunks_exact(32).zip(act.chunks_exact(128)) {
        for (j, &byte) in block.iter().enumerate() {
            for group in 0..4 {
                let code = i32::from((byte >> (6 - 2 * group)) & 3);
                sum += code * i32::from(a[32 * group + j]);
            }
        }
    }
    sum
}

/// [`i2s_dot_ref`] of each of `out.len()` consecutive rows (`act.len() / 4` bytes each) against one
/// token's activations.
///
/// # Panics
/// If `act.len()` is not a multiple of 128 or `codes` does not hold exactly `out.len()` rows.
pub fn i2s_rows_ref(codes: &[u8], act: &[i8], out: &mut [i32]) {
    check_rows(codes, &[act], out.len());
    match act.len() / 4 {
        0 => out.fill(0),
        width => {
            for (o, row) in out.iter_mut().zip(codes.chunks_exact(width)) {
                *o = i2s_dot_ref(row, act);
            }
        }
    }
}

/// [`i2s_dot_x4_ref`] of each of `out.len()` consecutive rows against four tokens' activations.
///
/// # Panics
/// As [`i2s_rows_ref`], for any of the tokens.
pub fn i2s_rows_x4_ref(codes: &[u8], acts: [&[i8]; 4], out: &mut [[i32; 4]]) {
    check_rows(codes, &acts, out.len());
    match acts[0].len() / 4 {
        0 => out.fill([0; 4]),
        width => {
            for (o, row) in out.iter_mut().zip(codes.chunks_exact(width)) {
                *o = i2s_dot_x4_ref(row, acts);
            }
        }
    }
}

/// [`i2s_rows_ref`] of a run of rows in the
/// [`I2sLayout::Quads`](crate::formats::I2sLayout::Quads) layout that starts at a group of four:
/// the run's rows put back in order first.
///
/// # Panics
/// As [`i2s_rows_ref`].
pub fn i2s_quad_rows_ref(codes: &[u8], act: &[i8], out: &mut [i32]) {
    check_rows(codes, &[act], out.len());
    let rows = rows_of_quads(codes, act.len() / I2S_BLOCK, out.len());
    i2s_rows_ref(&rows, act, out);
}

/// [`i2s_rows_x4_ref`] of a run of rows in the
/// [`I2sLayout::Quads`](crate::formats::I2sLayout::Quads) layout that starts at a group of four.
///
/// # Panics
/// As [`i2s_rows_ref`], for any of the tokens.
pub fn i2s_quad_rows_x4_ref(codes: &[u8], acts: [&[i8]; 4], out: &mut [[i32; 4]]) {
    check_rows(codes, &acts, out.len());
    let rows = rows_of_quads(codes, acts[0].len() / I2S_BLOCK, out.len());
    i2s_rows_x4_ref(&rows, acts, out);
}

/// [`i2s_dot_ref`] of one row against four tokens' activations.
///
/// # Panics
/// As [`i2s_dot_ref`], for any of the tokens.
pub fn i2s_dot_x4_ref(codes: &[u8], acts: [&[i8]; 4]) -> [i32; 4] {
    acts.map(|act| i2s_dot_ref(codes, act))
}

/// Σ code · q of the 32 rows of one TL2 block against one token's lookup tables, as bitnet.cpp's
/// generated TL2 kernels compute it: each group's magnitude picks a table entry, its sign bit negates
/// it, and each K tile (BK columns of the three-weight part, 32 of the two-weight part) is summed in
/// wrapping i16 before it is added to the row's i32 total.
///
/// # Panics
/// If the tables do not cover the block's columns.
pub fn tl2_block_dot_ref(block: &Tl2Block, three: &[LutTable], two: &[LutTable]) -> [i32; 32] {
    let groups = block.tile_cols() / 3;
    assert!(
        three.len() == block.three_tiles() * groups && two.len() == block.two_tiles() * 16,
        "tl2 block/table length mismatch"
    );
    let mut total = [0i32; 32];
    let nibble = |vectors: &[u8], index: usize, row: usize| {
        let byte = vectors[index / 2 * 32 + swapped_row(row)];
        if index.is_multiple_of(2) {
            byte >> 4
        } else {
            byte & 0x0f
        }
    };
    for tile in 0..block.three_tiles() {
        let (magnitudes, signs) = (block.magnitudes(tile), block.signs(tile));
        let tables = &three[tile * groups..(tile + 1) * groups];
        for (row, sum) in total.iter_mut().enumerate() {
            let mut acc = 0i16;
            for (group, table) in tables.iter().enumerate() {
                let value = lut_entry(table, nibble(magnitudes, group, row));
                let word = 32 * (group / 8) + 2 * (row % 16);
                let bits = u16::from_le_bytes([signs[word], signs[word + 1]]);
                let negative = bits >> (15 - 2 * (group % 8) - row / 16) & 1 == 1;
                acc = acc.wrapping_add(if negative {
                    value.wrapping_neg()
                } else {
                    value
                });
            }
            *sum = sum.wrapping_add(i32::from(acc));
        }
    }
    for tile in 0..block.two_tiles() {
        let pairs = block.pairs(tile);
        let tables = &two[tile * 16..(tile + 1) * 16];
        for (row, sum) in total.iter_mut().enumerate() {
            let acc = tables.iter().enumerate().fold(0i16, |acc, (pair, table)| {
                acc.wrapping_add(lut_entry(table, nibble(pairs, pair, row)))
            });
            *sum = sum.wrapping_add(i32::from(acc));
        }
    }
    total
}

/// Σ code · q of the `bm` rows of one TL1 block against one token's pair tables, added to `out`,
/// as bitnet.cpp's generated TL1 kernels compute it: each pair's 4-bit index picks a table entry,
/// and each K tile (`BK` columns) is summed in wrapping i16 before it is added to the row's i32
/// total.
///
/// # Panics
/// If the tables do not cover the block's columns or `out` does not hold one value per row.
pub fn tl1_block_dot_ref(block: &Tl1Block, tables: &[LutTable], out: &mut [i32]) {
    let (rows, tile_pairs) = (block.simd_rows(), block.tile_cols() / 2);
    assert!(
        tables.len() == block.tiles() * tile_pairs && out.len() == rows,
        "tl1 block/table length mismatch"
    );
    // Pairs per inner block, and 16-byte vectors per 16 rows of an inner block.
    let inner_pairs = 128 / rows;
    let per_group = inner_pairs / 2;
    for (tile, tile_tables) in tables.chunks_exact(tile_pairs).enumerate() {
        let mut acc = [0i16; 64];
        for (v, vector) in block.tile(tile).chunks_exact(16).enumerate() {
            let (inner, within) = (v / 4, v % 4);
            let pair = inner * inner_pairs + 2 * (within % per_group);
            let first_row = 16 * (within / per_group);
            for (j, &byte) in vector.iter().enumerate() {
                let high = lut_entry(&tile_tables[pair], byte >> 4);
                let low = lut_entry(&tile_tables[pair + 1], byte & 0x0f);
                let a = &mut acc[first_row + j];
                *a = a.wrapping_add(high).wrapping_add(low);
            }
        }
        for (o, &a) in out.iter_mut().zip(&acc) {
            *o = o.wrapping_add(i32::from(a));
        }
    }
}

/// Accumulates one block's eight i32 lanes into the float lanes: `acc += lane · (d_w · d_a)`.
/// Shared by the kernels that compute the integer lanes with SIMD, so every ISA scales alike.
pub(crate) fn accumulate_block(
    acc: &mut [f32; 8],
    lanes: &mut [i32; 8],
    block_d: [u8; 2],
    y: &BlockQ8K,
    contract: FpContract,
) {
    for (l, lane) in lanes.iter_mut().enumerate() {
        *lane -= i32::from(y.bsums[2 * l]) + i32::from(y.bsums[2 * l + 1]);
    }
    let d = y.d * f16::from_le_bytes(block_d).to_f32();
    for (a, &lane) in acc.iter_mut().zip(lanes.iter()) {
        *a = contract.mul_add(lane as f32, d, *a);
    }
}

/// TQ2_0 × Q8_K dot product of one row, as ggml's AVX2 `ggml_vec_dot_tq2_0_q8_K` evaluates it: per
/// block, eight i32 lanes (weight `e` feeds lane `(e % 32) / 4`) of Σ code · q minus the matching
/// `bsums`, scaled by `d_a · d_w` into eight float lanes, summed by `hsum_float_8` at the end.
///
/// # Panics
/// If `row` does not hold `act.len()` blocks.
pub fn tq2_dot_ref(row: &[u8], act: &[BlockQ8K], contract: FpContract) -> f32 {
    assert_eq!(
        row.len(),
        act.len() * TQ2_0_BLOCK_BYTES,
        "tq2_0 row/activation length mismatch"
    );
    let mut acc = [0f32; 8];
    for (block, y) in row.chunks_exact(TQ2_0_BLOCK_BYTES).zip(act) {
        let mut lanes = [0i32; 8];
        for half in 0..2 {
            for m in 0..32 {
                let byte = block[32 * half + m];
                for l in 0..4 {
                    let code = i32::from((byte >> (2 * l)) & 3);
                    lanes[m / 4] += code * i32::from(y.qs[128 * half + 32 * l + m]);
                }
            }
        }
        accumulate_block(&mut acc, &mut lanes, [block[64], block[65]], y, contract);
    }
    hsum8_pairs(&acc)
}

/// TQ1_0 × Q8_K dot product of one row, evaluated like [`tq2_dot_ref`] (ggml's AVX2
/// `ggml_vec_dot_tq1_0_q8_K` uses the same lanes and reduction).
///
/// # Panics
/// If `row` does not hold `act.len()` blocks.
pub fn tq1_dot_ref(row: &[u8], act: &[BlockQ8K], contract: FpContract) -> f32 {
    assert_eq!(
        row.len(),
        act.len() * TQ1_0_BLOCK_BYTES,
        "tq1_0 row/activation length mismatch"
    );
    let mut acc = [0f32; 8];
    for (block, y) in row.chunks_exact(TQ1_0_BLOCK_BYTES).zip(act) {
        let mut lanes = [0i32; 8];
        for (byte, &b) in block[..52].iter().enumerate() {
            for n in 0..trits_in(byte) {
                let e = tq1_element(byte, n);
                lanes[(e % 32) / 4] += i32::from(trit(b, n)) * i32::from(y.qs[e]);
            }
        }
        accumulate_block(&mut acc, &mut lanes, [block[52], block[53]], y, contract);
    }
    hsum8_pairs(&acc)
}

/// ggml's `ggml_vec_dot_f16` (the one-token path): `y` already rounded to f16; four accumulators
/// of `width` lanes with fused multiply-adds over whole steps of `4 · lanes`, the width's reduction,
/// then the tail added in f64.
///
/// # Panics
/// If the lengths differ.
pub fn f16_vec_dot_ref(x: &[f16], y: &[f16], width: ReduceWidth) -> f32 {
    assert_eq!(x.len(), y.len(), "f16 dot length mismatch");
    let lanes = width.lanes();
    let whole = x.len() - x.len() % (4 * lanes);
    let mut acc = [[0f32; 16]; 4];
    for i in (0..whole).step_by(4 * lanes) {
        for (j, accumulator) in acc.iter_mut().enumerate() {
            for (l, a) in accumulator[..lanes].iter_mut().enumerate() {
                let idx = i + j * lanes + l;
                *a = x[idx].to_f32().mul_add(y[idx].to_f32(), *a);
            }
        }
    }
    let mut sum = f64::from(reduce_vec_dot(&acc, width));
    for (a, b) in x[whole..].iter().zip(&y[whole..]) {
        sum += f64::from(a.to_f32() * b.to_f32());
    }
    sum as f32
}

/// ggml's `ggml_vec_dot_f32` (the one-token path): like [`f16_vec_dot_ref`] but the sum stays f32 and
/// the tail is added as `sum += x · y` with the product rounded first. (A GCC build in GNU mode
/// vectorizes part of that tail and fuses the rest, so for `ne0` not a multiple of `4 · lanes` it can
/// differ from this in the last bit; a clang or ISO-mode build does not.)
///
/// # Panics
/// If the lengths differ.
pub fn f32_vec_dot_ref(x: &[f32], y: &[f32], width: ReduceWidth) -> f32 {
    assert_eq!(x.len(), y.len(), "f32 dot length mismatch");
    let lanes = width.lanes();
    let whole = x.len() - x.len() % (4 * lanes);
    let mut acc = [[0f32; 16]; 4];
    for i in (0..whole).step_by(4 * lanes) {
        for (j, accumulator) in acc.iter_mut().enumerate() {
            for (l, a) in accumulator[..lanes].iter_mut().enumerate() {
                let idx = i + j * lanes + l;
                *a = x[idx].mul_add(y[idx], *a);
            }
        }
    }
    let mut sum = reduce_vec_dot(&acc, width);
    for (&a, &b) in x[whole..].iter().zip(&y[whole..]) {
        sum += a * b;
    }
    sum
}

/// The reference's multi-token f16 path (llamafile's tinyBLAS, f16 weights × f32 activations, no
/// rounding of the activations): one accumulator of `width` lanes with fused multiply-adds, then
/// `hsum`.
///
/// # Panics
/// If the lengths differ or are not a multiple of the width's lanes.
pub fn f16_tiled_dot_ref(x: &[f16], y: &[f32], width: ReduceWidth) -> f32 {
    let lanes = width.lanes();
    assert!(
        x.len() == y.len() && x.len().is_multiple_of(lanes),
        "tiled f16 dot length mismatch"
    );
    let mut acc = [0f32; 16];
    for (xs, ys) in x.chunks_exact(lanes).zip(y.chunks_exact(lanes)) {
        for ((a, xv), &yv) in acc.iter_mut().zip(xs).zip(ys) {
            *a = xv.to_f32().mul_add(yv, *a);
        }
    }
    reduce_tiled(&acc, width)
}

/// The reference's multi-token f32 path (tinyBLAS), evaluated like [`f16_tiled_dot_ref`].
///
/// # Panics
/// If the lengths differ or are not a multiple of the width's lanes.
pub fn f32_tiled_dot_ref(x: &[f32], y: &[f32], width: ReduceWidth) -> f32 {
    let lanes = width.lanes();
    assert!(
        x.len() == y.len() && x.len().is_multiple_of(lanes),
        "tiled f32 dot length mismatch"
    );
    let mut acc = [0f32; 16];
    for (xs, ys) in x.chunks_exact(lanes).zip(y.chunks_exact(lanes)) {
        for ((a, &xv), &yv) in acc.iter_mut().zip(xs).zip(ys) {
            *a = xv.mul_add(yv, *a);
        }
    }
    reduce_tiled(&acc, width)
}
