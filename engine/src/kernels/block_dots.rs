//! Scalar dot products of ggml's Q8_0 and Q6_K weight rows, evaluated as the reference's x86 (AVX2)
//! kernels evaluate them.
//!
//! Both kernels compute exact integer sums in eight i32 lanes per block, where byte `j` of each
//! 32-value group feeds lane `j / 4`; each block then adds `lane · d` to eight float lanes with one
//! fused multiply-add (the kernels call `_mm256_fmadd_ps` themselves, so the build's contraction
//! mode does not matter), and `hsum_float_8` reduces the lanes at the end. The same code runs in
//! AVX-512 builds (ggml has no wider path for these types), so the lane count of the build does not
//! matter either.

use half::f16;

use super::reduce::hsum8_pairs;
use crate::formats::{q6k_code, q6k_d, q6k_scale, BlockQ8K, BlockQ8_0};
use crate::formats::{Q6_K_BLOCK_BYTES, Q8_0_BLOCK_BYTES, QK_K};

/// Values of one 256-bit register of codes: the group whose bytes `4l..4l + 4` feed lane `l`.
const GROUP: usize = 32;

/// One Q8_0 × Q8_0 product term as `_mm256_sign_epi8` and `_mm256_maddubs_epi16` form it:
/// `|w| · sign(a, w)`, where negating the activation −128 wraps back to −128 (so `w < 0, a = −128`
/// gives `|w| · −128`, not `|w| · 128`). Pairs of terms cannot saturate 16 bits: `|w| ≤ 128`.
#[inline]
fn signed_product(w: i8, a: i8) -> i32 {
    let signed = if w < 0 { a.wrapping_neg() } else { a };
    i32::from(w.unsigned_abs()) * i32::from(signed)
}

/// Adds one block's integer lanes, scaled by `d`, to the float lanes with fused multiply-adds.
#[inline]
fn accumulate(acc: &mut [f32; 8], lanes: &[i32; 8], d: f32) {
    for (a, &lane) in acc.iter_mut().zip(lanes) {
        *a = d.mul_add(lane as f32, *a);
    }
}

/// Q8_0 × Q8_0 dot product of one weight row (`act.len()` blocks of 34 bytes), as ggml's AVX2
/// `ggml_vec_dot_q8_0_q8_0` computes it: per block, eight i32 lanes of four products
/// `|w| · sign(a, w)` each (negating the activation −128 wraps to −128, as `_mm256_sign_epi8`
/// does), `acc = fma(d_w · d_a, lane, acc)`, then `hsum_float_8`.
///
/// llamafile's tinyBLAS (`tinyBLAS_Q0_AVX`), which the reference runs for two or more tokens, forms
/// the same lanes, the same `d_w · d_a` product and the same fused accumulation per output, and ends
/// with the same reduction tree, so this one function gives the reference's bits for any token count.
///
/// # Panics
/// If `row` does not hold `act.len()` blocks.
pub fn q8_0_dot_ref(row: &[u8], act: &[BlockQ8_0]) -> f32 {
    assert_eq!(
        row.len(),
        act.len() * Q8_0_BLOCK_BYTES,
        "q8_0 row/activation length mismatch"
    );
    let mut acc = [0f32; 8];
    for (block, y) in row.chunks_exact(Q8_0_BLOCK_BYTES).zip(act) {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32() * y.d.to_f32();
        let mut lanes = [0i32; 8];
        for (j, (&w, &a)) in block[2..].iter().zip(&y.qs).enumerate() {
            lanes[(j % GROUP) / 4] += signed_product(w as i8, a);
        }
        accumulate(&mut acc, &lanes, d);
    }
    hsum8_pairs(&acc)
}

/// Q6_K × Q8_K dot product of one weight row (`act.len()` super-blocks of 210 bytes), as ggml's AVX2
/// `ggml_vec_dot_q6_K_q8_K` computes it: per super-block, eight i32 lanes (value `e` feeds lane
/// `(e % 32) / 4`) of `scale · (q − 32) · a` (exact: the 16-bit intermediates cannot overflow),
/// `acc = fma(d_a · d_w, lane, acc)`, then `hsum_float_8`. The reference has no tinyBLAS path for
/// Q6_K, so every token count takes this product.
///
/// # Panics
/// If `row` does not hold `act.len()` blocks.
pub fn q6k_dot_ref(row: &[u8], act: &[BlockQ8K]) -> f32 {
    assert_eq!(
        row.len(),
        act.len() * Q6_K_BLOCK_BYTES,
        "q6_K row/activation length mismatch"
    );
    let mut acc = [0f32; 8];
    for (block, y) in row.chunks_exact(Q6_K_BLOCK_BYTES).zip(act) {
        let d = y.d * q6k_d(block).to_f32();
        let mut lanes = [0i32; 8];
        for e in 0..QK_K {
            let weight = i32::from(q6k_scale(block, e)) * i32::from(q6k_code(block, e));
            lanes[(e % GROUP) / 4] += weight * i32::from(y.qs[e]);
        }
        accumulate(&mut acc, &lanes, d);
    }
    hsum8_pairs(&acc)
}
