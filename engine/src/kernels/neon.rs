//! AArch64 NEON dot products: the I2_S integer core; the other entries use the scalar references.

use std::arch::aarch64::*;

use super::scalar;
use super::table::DotKernels;

static KERNELS: DotKernels = DotKernels {
    i2s: i2s_dot,
    tq1: scalar::tq1_dot_ref,
    tq2: scalar::tq2_dot_ref,
    f16_vec: scalar::f16_vec_dot_ref,
    f32_vec: scalar::f32_vec_dot_ref,
    f16_tiled: scalar::f16_tiled_dot_ref,
    f32_tiled: scalar::f32_tiled_dot_ref,
};

/// The NEON table, when the CPU supports it.
pub(crate) fn kernels() -> Option<&'static DotKernels> {
    std::arch::is_aarch64_feature_detected!("neon").then_some(&KERNELS)
}

fn i2s_dot(codes: &[u8], act: &[i8]) -> i32 {
    assert!(
        act.len().is_multiple_of(128) && codes.len() >= act.len() / 4,
        "i2_s row/activation length mismatch"
    );
    // SAFETY: the table holding this function exists only on CPUs with NEON (see `kernels`).
    unsafe { i2s_dot_neon(codes, act) }
}

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
