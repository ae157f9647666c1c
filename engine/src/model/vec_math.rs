//! The reference's vectorized `expf` (ggml's `ggml_v_expf`) evaluated one lane at a time.
//!
//! SiLU and softmax in the reference run this polynomial approximation, not the C library's
//! `expf`, on all full SIMD vectors; the AVX-512 and AVX2 builds differ in how they scale by
//! `2^n` and handle extreme inputs, so both are reproduced.

use crate::kernels::ReduceWidth;

const ROUND: f32 = 12_582_912.0; // 0x1.8p23
const LOG2_E: f32 = f32::from_bits(0x3fb8_aa3b); // 0x1.715476p+0
const LN2_HI: f32 = f32::from_bits(0x3f31_7200); // 0x1.62e4p-1
const LN2_LO: f32 = f32::from_bits(0x35bf_be8e); // 0x1.7f7d1cp-20
const P5: f32 = f32::from_bits(0x3c07_2010); // 0x1.0e4020p-7
const P4: f32 = f32::from_bits(0x3d2b_9f17); // 0x1.573e2ep-5
const P3: f32 = f32::from_bits(0x3e2a_af33); // 0x1.555e66p-3
const P2: f32 = f32::from_bits(0x3eff_fedb); // 0x1.fffdb6p-2
const P1: f32 = f32::from_bits(0x3f7f_fff6); // 0x1.ffffecp-1

/// `exp(x)` as one lane of the reference's `ggml_v_expf` for the build of `width`.
///
/// Every case is computed and the lane's one selected, without branches, so that a loop of
/// them vectorizes.
#[inline(always)]
pub fn vec_expf(x: f32, width: ReduceWidth) -> f32 {
    let z = x.mul_add(LOG2_E, ROUND);
    let n = z - ROUND;
    let b = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let u = b * b;
    let poly = P5.mul_add(b, P4).mul_add(u, P3.mul_add(b, P2));
    let (huge, tiny) = (n.abs() > 192.0, n <= 0.0);
    match width {
        ReduceWidth::Lanes16 => {
            let j = poly.mul_add(u, P1.mul_add(b, 1.0));
            // `scalef`: one rounding of j · 2^n (2^n exact in f64 for |n| ≤ 192). In that range
            // `z` lies in [2^23, 2^24), where its bits count in steps of 1, so they give `n` as
            // an integer without a float conversion (which would not vectorize).
            let n_bits = (z.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
            let n_in_range = if huge { 0 } else { n_bits };
            let scale = f64::from_bits(((i64::from(n_in_range) + 1023) as u64) << 52);
            let scaled = (f64::from(j) * scale) as f32;
            let saturated = if tiny { 0.0 } else { f32::INFINITY };
            if huge {
                saturated
            } else {
                scaled
            }
        }
        ReduceWidth::Lanes8 => {
            let j = poly.mul_add(u, P1 * b);
            let e = z.to_bits() << 23;
            let k = f32::from_bits(e.wrapping_add(1f32.to_bits()));
            let normal = j.mul_add(k, k);
            let g: u32 = if tiny { 0x8200_0000 } else { 0 };
            let s1 = f32::from_bits(g.wrapping_add(0x7f00_0000));
            let s2 = f32::from_bits(e.wrapping_sub(g));
            let extreme = if huge {
                s1 * s1
            } else {
                s2.mul_add(j, s2) * s1
            };
            if n.abs() <= 126.0 {
                normal
            } else {
                extreme
            }
        }
    }
}

/// The horizontal sum of one vector of `width` lanes, in the reference's reduction order.
#[inline(always)]
pub fn lane_sum(lanes: &[f32], width: ReduceWidth) -> f32 {
    let tree8 = |x: [f32; 8]| ((x[0] + x[4]) + (x[2] + x[6])) + ((x[1] + x[5]) + (x[3] + x[7]));
    match width {
        ReduceWidth::Lanes8 => tree8(std::array::from_fn(|k| lanes[k])),
        ReduceWidth::Lanes16 => tree8(std::array::from_fn(|k| lanes[k] + lanes[k + 8])),
    }
}
