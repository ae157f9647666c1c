//! AArch64 NEON dot products: the I2_S, TQ2_0 and TQ1_0 integer cores (the TQ float epilogue is
//! the scalar one, so the lanes are scaled exactly alike) and the f16/f32 dots, lane for lane in
//! the scalar references' order, and the TL1 table lookups as bitnet.cpp's generated TL1 kernels do
//! them; TL2 (an x86 format) uses the scalar reference.

use std::arch::aarch64::*;
use std::arch::asm;

use half::f16;

use super::i2s_rows_kernel;
use super::reduce::{hsum8_pairs, reduce_tiled, reduce_vec_dot, ReduceWidth};
use super::scalar;
use super::table::DotKernels;
use crate::formats::{
    BlockQ8K, FpContract, LutTable, Tl1Block, TQ1_0_BLOCK_BYTES, TQ2_0_BLOCK_BYTES,
};

static KERNELS: DotKernels = DotKernels {
    i2s_rows,
    i2s_rows_x4: None,
    i2s_quads: None,
    tq1: tq1_dot,
    tq2: tq2_dot,
    tl1: tl1_block_dot,
    tl2: scalar::tl2_block_dot_ref,
    f16_vec: f16_vec_dot,
    f32_vec: f32_vec_dot,
    f16_tiled: f16_tiled_dot,
    f32_tiled: f32_tiled_dot,
    f16_vec_x2: None,
    f16_rows_x4: None,
    f16_tiled_x4: None,
};

/// The NEON table, when the CPU supports it.
pub(crate) fn kernels() -> Option<&'static DotKernels> {
    std::arch::is_aarch64_feature_detected!("neon").then_some(&KERNELS)
}

fn tl1_block_dot(block: &Tl1Block, tables: &[LutTable], out: &mut [i32]) {
    assert!(
        tables.len() == block.tiles() * block.tile_cols() / 2 && out.len() == block.simd_rows(),
        "tl1 block/table length mismatch"
    );
    // SAFETY: the table holding this function exists only on CPUs with NEON (see `kernels`).
    unsafe { tl1_block_dot_neon(block, tables, out) }
}

/// Looks 16 rows' indices up in a pair's table and adds the i16 entries (rows 0..8, 8..16) to `acc`.
#[inline]
#[target_feature(enable = "neon")]
fn tl1_lookup(acc: &mut [int16x8_t; 2], table: &LutTable, indices: uint8x16_t) {
    // SAFETY: a table is 32 readable bytes: 16 low bytes, then 16 high bytes.
    let (low, high) = unsafe { (vld1q_u8(table.as_ptr()), vld1q_u8(table[16..].as_ptr())) };
    let rows = vzipq_u8(vqtbl1q_u8(low, indices), vqtbl1q_u8(high, indices));
    acc[0] = vaddq_s16(acc[0], vreinterpretq_s16_u8(rows.0));
    acc[1] = vaddq_s16(acc[1], vreinterpretq_s16_u8(rows.1));
}

/// TL1 one tile at a time, each 16-byte vector's high nibbles looked up in the first pair's
/// table and its low nibbles in the second's, summed in wrapping i16 lanes per row.
#[target_feature(enable = "neon")]
fn tl1_block_dot_neon(block: &Tl1Block, tables: &[LutTable], out: &mut [i32]) {
    let nibble = vdupq_n_u8(0x0f);
    let rows = block.simd_rows();
    let (inner_pairs, tile_pairs) = (128 / rows, block.tile_cols() / 2);
    let per_group = inner_pairs / 2;
    for (tile, tile_tables) in tables.chunks_exact(tile_pairs).enumerate() {
        let mut acc = [[vdupq_n_s16(0); 2]; 4];
        let (vectors, _) = block.tile(tile).as_chunks::<16>();
        for (v, vector) in vectors.iter().enumerate() {
            let (inner, within) = (v / 4, v % 4);
            let pair = inner * inner_pairs + 2 * (within % per_group);
            // SAFETY: `vector` is 16 readable bytes.
            let packed = unsafe { vld1q_u8(vector.as_ptr()) };
            let sums = &mut acc[within / per_group];
            tl1_lookup(sums, &tile_tables[pair], vshrq_n_u8::<4>(packed));
            tl1_lookup(sums, &tile_tables[pair + 1], vandq_u8(packed, nibble));
        }
        for (four, sum) in out.chunks_exact_mut(4).zip(
            acc.iter()
                .flatten()
                .flat_map(|s| [vmovl_s16(vget_low_s16(*s)), vmovl_high_s16(*s)]),
        ) {
            // SAFETY: `four` holds 4 i32.
            unsafe { vst1q_s32(four.as_mut_ptr(), vaddq_s32(vld1q_s32(four.as_ptr()), sum)) };
        }
    }
}

i2s_rows_kernel!(i2s_rows, i2s_rows_neon, i2s_dot_neon, "neon");

/// Multiplies 16 codes with 16 activations and adds the pairwise sums into `acc`.
#[inline]
#[target_feature(enable = "neon")]
fn accumulate(acc: int32x4_t, codes: uint8x16_t, act: &[i8]) -> int32x4_t {
    assert!(act.len() >= 16);
    // SAFETY: at least 16 readable int8 values (asserted).
    let a = unsafe { vld1q_s8(act.as_ptr()) };
    let c = vreinterpretq_s8_u8(codes);
    let acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(c), vget_low_s8(a)));
    vpadalq_s16(acc, vmull_high_s8(c, a))
}

#[target_feature(enable = "neon")]
fn i2s_dot_neon(codes: &[u8], act: &[i8]) -> i32 {
    let mask = vdupq_n_u8(3);
    let (code_blocks, _) = codes.as_chunks::<32>();
    let (act_blocks, _) = act.as_chunks::<128>();
    let mut acc = vdupq_n_s32(0);
    for (block, a) in code_blocks.iter().zip(act_blocks) {
        for half in 0..2 {
            // SAFETY: bytes 16·half..16·half + 16 of the 32-byte block are readable.
            let packed = unsafe { vld1q_u8(block[16 * half..].as_ptr()) };
            let offset = 16 * half;
            acc = accumulate(acc, vandq_u8(vshrq_n_u8::<6>(packed), mask), &a[offset..]);
            acc = accumulate(
                acc,
                vandq_u8(vshrq_n_u8::<4>(packed), mask),
                &a[32 + offset..],
            );
            acc = accumulate(
                acc,
                vandq_u8(vshrq_n_u8::<2>(packed), mask),
                &a[64 + offset..],
            );
            acc = accumulate(acc, vandq_u8(packed, mask), &a[96 + offset..]);
        }
    }
    vaddvq_s32(acc)
}

fn tq2_dot(row: &[u8], act: &[BlockQ8K], contract: FpContract) -> f32 {
    assert_eq!(
        row.len(),
        act.len() * TQ2_0_BLOCK_BYTES,
        "tq2_0 row/activation length mismatch"
    );
    let mut acc = [0f32; 8];
    let (blocks, _) = row.as_chunks::<TQ2_0_BLOCK_BYTES>();
    for (block, y) in blocks.iter().zip(act) {
        // SAFETY: the table holding this function exists only on CPUs with NEON (see `kernels`).
        let mut lanes = unsafe { tq2_block_lanes(block, y) };
        scalar::accumulate_block(&mut acc, &mut lanes, [block[64], block[65]], y, contract);
    }
    hsum8_pairs(&acc)
}

fn tq1_dot(row: &[u8], act: &[BlockQ8K], contract: FpContract) -> f32 {
    assert_eq!(
        row.len(),
        act.len() * TQ1_0_BLOCK_BYTES,
        "tq1_0 row/activation length mismatch"
    );
    let mut acc = [0f32; 8];
    let (blocks, _) = row.as_chunks::<TQ1_0_BLOCK_BYTES>();
    for (block, y) in blocks.iter().zip(act) {
        // SAFETY: the table holding this function exists only on CPUs with NEON (see `kernels`).
        let mut lanes = unsafe { tq1_block_lanes(block, y) };
        scalar::accumulate_block(&mut acc, &mut lanes, [block[52], block[53]], y, contract);
    }
    hsum8_pairs(&acc)
}

/// Adds Σ code · q of 32 consecutive weights into the eight i32 lanes, weight `m` feeding lane
/// `m / 4` (the x86 `maddubs` grouping the scalar reference defines).
#[inline]
#[target_feature(enable = "neon")]
fn accumulate_lanes(lanes: &mut [int32x4_t; 2], codes: [uint8x16_t; 2], q: &[i8]) {
    assert!(q.len() >= 32);
    for (half, &c) in codes.iter().enumerate() {
        // SAFETY: at least 32 readable int8 values (asserted).
        let a = unsafe { vld1q_s8(q[16 * half..].as_ptr()) };
        let c = vreinterpretq_s8_u8(c);
        let low = vpaddlq_s16(vmull_s8(vget_low_s8(c), vget_low_s8(a)));
        let high = vpaddlq_s16(vmull_high_s8(c, a));
        lanes[half] = vaddq_s32(lanes[half], vpaddq_s32(low, high));
    }
}

#[inline]
#[target_feature(enable = "neon")]
fn store_lanes(lanes: [int32x4_t; 2]) -> [i32; 8] {
    let mut out = [0i32; 8];
    // SAFETY: `out` has room for two vectors of four lanes.
    unsafe {
        vst1q_s32(out.as_mut_ptr(), lanes[0]);
        vst1q_s32(out[4..].as_mut_ptr(), lanes[1]);
    }
    out
}

#[target_feature(enable = "neon")]
fn tq2_block_lanes(block: &[u8; TQ2_0_BLOCK_BYTES], y: &BlockQ8K) -> [i32; 8] {
    let mask = vdupq_n_u8(3);
    let mut lanes = [vdupq_n_s32(0); 2];
    for half in 0..2 {
        // SAFETY: bytes 32·half..32·half + 32 of the block are readable.
        let packed = unsafe {
            [
                vld1q_u8(block[32 * half..].as_ptr()),
                vld1q_u8(block[32 * half + 16..].as_ptr()),
            ]
        };
        for l in 0..4 {
            let shift = vdupq_n_s8(-2 * l as i8);
            let codes = packed.map(|p| vandq_u8(vshlq_u8(p, shift), mask));
            accumulate_lanes(&mut lanes, codes, &y.qs[128 * half + 32 * l..]);
        }
    }
    store_lanes(lanes)
}

/// Trit `n` of every byte of `bytes`: `((byte · 3ⁿ mod 256) · 3) >> 8`.
#[inline]
#[target_feature(enable = "neon")]
fn trits(bytes: uint8x16_t, n: usize) -> uint8x16_t {
    const POW3: [u8; 5] = [1, 3, 9, 27, 81];
    let shifted = vmulq_u8(bytes, vdupq_n_u8(POW3[n]));
    let three = vdup_n_u8(3);
    let low = vshrn_n_u16::<8>(vmull_u8(vget_low_u8(shifted), three));
    let high = vshrn_n_u16::<8>(vmull_high_u8(shifted, vdupq_n_u8(3)));
    vcombine_u8(low, high)
}

#[target_feature(enable = "neon")]
fn tq1_block_lanes(block: &[u8; TQ1_0_BLOCK_BYTES], y: &BlockQ8K) -> [i32; 8] {
    let mut lanes = [vdupq_n_s32(0); 2];
    // SAFETY: bytes 0..48 of the 54-byte block are readable.
    let (q0, q1, q2) = unsafe {
        (
            vld1q_u8(block.as_ptr()),
            vld1q_u8(block[16..].as_ptr()),
            vld1q_u8(block[32..].as_ptr()),
        )
    };
    // qs[0..32]: trit n of byte m is weight 32n + m.
    for n in 0..5 {
        accumulate_lanes(&mut lanes, [trits(q0, n), trits(q1, n)], &y.qs[32 * n..]);
    }
    // qs[32..48]: trit n of byte m is weight 160 + 16n + m, so two trits fill 32 weights; the
    // fifth trit (weights 224..240) pairs with the qh trits (weights 240..256).
    for n in [0, 2] {
        accumulate_lanes(
            &mut lanes,
            [trits(q2, n), trits(q2, n + 1)],
            &y.qs[160 + 16 * n..],
        );
    }
    // qh: trit n of byte j is weight 240 + 4n + j.
    let mut qh = [0u8; 16];
    for (i, t) in qh.iter_mut().enumerate() {
        *t = crate::formats::trit(block[48 + i % 4], i / 4);
    }
    // SAFETY: `qh` holds 16 bytes.
    let qh = unsafe { vld1q_u8(qh.as_ptr()) };
    accumulate_lanes(&mut lanes, [trits(q2, 4), qh], &y.qs[224..]);
    store_lanes(lanes)
}

/// Float values that load as f32 lanes, four at a time.
trait FloatLanes: Copy {
    /// Lanes `at..at + 4` of `values`.
    ///
    /// # Safety
    /// `at + 4 <= values.len()`, on a CPU with NEON.
    unsafe fn quad(values: &[Self], at: usize) -> float32x4_t;
}

impl FloatLanes for f32 {
    #[inline]
    unsafe fn quad(values: &[f32], at: usize) -> float32x4_t {
        // SAFETY: the caller guarantees four readable values from `at`.
        unsafe { vld1q_f32(values.as_ptr().add(at)) }
    }
}

impl FloatLanes for f16 {
    #[inline]
    unsafe fn quad(values: &[f16], at: usize) -> float32x4_t {
        // SAFETY: the caller guarantees four readable values from `at`; f16 is 16 bits.
        let bits = unsafe { vld1_u16(values.as_ptr().add(at).cast()) };
        let widened: float32x4_t;
        // SAFETY: FCVTL (half to single, exact) is part of base AdvSIMD; it reads and writes
        // registers only.
        unsafe {
            asm!(
                "fcvtl {out:v}.4s, {bits:v}.4h",
                out = lateout(vreg) widened,
                bits = in(vreg) bits,
                options(pure, nomem, nostack),
            );
        }
        widened
    }
}

/// The four accumulators of `lanes` lanes of a one-token dot over the whole steps of `x · y`,
/// each lane a chain of fused multiply-adds in index order, as the scalar reference computes
/// them.
#[target_feature(enable = "neon")]
fn vec_dot_lanes<T: FloatLanes>(x: &[T], y: &[T], lanes: usize, whole: usize) -> [[f32; 16]; 4] {
    let quads = lanes / 4;
    let mut acc = [[vdupq_n_f32(0.0); 4]; 4];
    for i in (0..whole).step_by(4 * lanes) {
        for (j, accumulator) in acc.iter_mut().enumerate() {
            for (q, a) in accumulator[..quads].iter_mut().enumerate() {
                let at = i + j * lanes + 4 * q;
                // SAFETY: `at + 4 <= whole <= len` of both slices, and NEON is enabled.
                let (xv, yv) = unsafe { (T::quad(x, at), T::quad(y, at)) };
                *a = vfmaq_f32(*a, xv, yv);
            }
        }
    }
    let mut stored = [[0f32; 16]; 4];
    for (out, accumulator) in stored.iter_mut().zip(&acc) {
        for (q, &a) in accumulator[..quads].iter().enumerate() {
            // SAFETY: lanes `4q..4q + 4` of a 16-lane array (q < 4).
            unsafe { vst1q_f32(out[4 * q..].as_mut_ptr(), a) };
        }
    }
    stored
}

fn f16_vec_dot(x: &[f16], y: &[f16], width: ReduceWidth) -> f32 {
    assert_eq!(x.len(), y.len(), "f16 dot length mismatch");
    let lanes = width.lanes();
    let whole = x.len() - x.len() % (4 * lanes);
    // SAFETY: the table holding this function exists only on CPUs with NEON (see `kernels`).
    let acc = unsafe { vec_dot_lanes(x, y, lanes, whole) };
    let mut sum = f64::from(reduce_vec_dot(&acc, width));
    for (a, b) in x[whole..].iter().zip(&y[whole..]) {
        sum += f64::from(a.to_f32() * b.to_f32());
    }
    sum as f32
}

fn f32_vec_dot(x: &[f32], y: &[f32], width: ReduceWidth) -> f32 {
    assert_eq!(x.len(), y.len(), "f32 dot length mismatch");
    let lanes = width.lanes();
    let whole = x.len() - x.len() % (4 * lanes);
    // SAFETY: the table holding this function exists only on CPUs with NEON (see `kernels`).
    let acc = unsafe { vec_dot_lanes(x, y, lanes, whole) };
    let mut sum = reduce_vec_dot(&acc, width);
    for (&a, &b) in x[whole..].iter().zip(&y[whole..]) {
        sum += a * b;
    }
    sum
}

/// One accumulator of `lanes` lanes over `x · y` (a multiple of `lanes` long), fused
/// multiply-adds in index order, as the tiled scalar references compute it.
#[target_feature(enable = "neon")]
fn tiled_dot_lanes<T: FloatLanes>(x: &[T], y: &[f32], lanes: usize) -> [f32; 16] {
    let quads = lanes / 4;
    let mut acc = [vdupq_n_f32(0.0); 4];
    for i in (0..x.len()).step_by(lanes) {
        for (q, a) in acc[..quads].iter_mut().enumerate() {
            let at = i + 4 * q;
            // SAFETY: `at + 4 <= len` of both slices (a multiple of `lanes`), NEON enabled.
            let (xv, yv) = unsafe { (T::quad(x, at), f32::quad(y, at)) };
            *a = vfmaq_f32(*a, xv, yv);
        }
    }
    let mut stored = [0f32; 16];
    for (q, &a) in acc[..quads].iter().enumerate() {
        // SAFETY: lanes `4q..4q + 4` of a 16-lane array (q < 4).
        unsafe { vst1q_f32(stored[4 * q..].as_mut_ptr(), a) };
    }
    stored
}

fn tiled_dot<T: FloatLanes>(x: &[T], y: &[f32], width: ReduceWidth) -> f32 {
    let lanes = width.lanes();
    assert!(
        x.len() == y.len() && x.len().is_multiple_of(lanes),
        "tiled dot length mismatch"
    );
    // SAFETY: the table holding this function exists only on CPUs with NEON (see `kernels`).
    let acc = unsafe { tiled_dot_lanes(x, y, lanes) };
    reduce_tiled(&acc, width)
}

fn f16_tiled_dot(x: &[f16], y: &[f32], width: ReduceWidth) -> f32 {
    tiled_dot(x, y, width)
}

fn f32_tiled_dot(x: &[f32], y: &[f32], width: ReduceWidth) -> f32 {
    tiled_dot(x, y, width)
}
