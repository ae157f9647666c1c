//! The float reduction trees of the reference's dot products, shared by every ISA.
//!
//! ggml's float dot products accumulate in SIMD lanes and reduce them in a fixed tree; the tree and
//! the lane count depend on the ISA the reference was compiled for. [`ReduceWidth`] names the two x86
//! builds, and the functions here evaluate their trees on lane values, so a scalar loop and a SIMD
//! kernel produce the same bits.

/// Lane layout of the reference build whose float dot products are reproduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ReduceWidth {
    /// 8 lanes: a reference built for AVX2 (+FMA, F16C).
    #[default]
    Lanes8,
    /// 16 lanes: a reference built for AVX-512F.
    Lanes16,
}

impl ReduceWidth {
    /// The layout of a reference compiled with `-march=native` on this machine.
    pub fn native() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return ReduceWidth::Lanes16;
            }
        }
        ReduceWidth::Lanes8
    }

    /// Lanes per accumulator.
    pub const fn lanes(self) -> usize {
        match self {
            ReduceWidth::Lanes8 => 8,
            ReduceWidth::Lanes16 => 16,
        }
    }
}

/// `hsum_float_8` of ggml-quants.c and tinyBLAS's `hsum(__m256)`:
/// `((x0 + x4) + (x2 + x6)) + ((x1 + x5) + (x3 + x7))`.
#[inline]
pub(crate) fn hsum8_pairs(x: &[f32]) -> f32 {
    let r = [x[4] + x[0], x[5] + x[1], x[6] + x[2], x[7] + x[3]];
    (r[0] + r[2]) + (r[1] + r[3])
}

/// ggml's AVX `GGML_F32x8_REDUCE` tail (two `hadd`s): `((x0 + x4) + (x1 + x5)) + ((x2 + x6) + (x3 + x7))`.
#[inline]
pub(crate) fn hsum8_hadd(x: &[f32]) -> f32 {
    let t = [x[0] + x[4], x[1] + x[5], x[2] + x[6], x[3] + x[7]];
    (t[0] + t[1]) + (t[2] + t[3])
}

/// GCC's `_mm512_reduce_add_ps`: halves of 8, then [`hsum8_pairs`].
#[inline]
pub(crate) fn hsum16(x: &[f32; 16]) -> f32 {
    let mut half = [0f32; 8];
    for (k, h) in half.iter_mut().enumerate() {
        *h = x[8 + k] + x[k];
    }
    hsum8_pairs(&half)
}

/// Reduces four accumulators of `lanes` values the way `GGML_F32_VEC_REDUCE` does
/// (`(a0 + a2) + (a1 + a3)` lane-wise, then the width's horizontal tree).
pub(crate) fn reduce_vec_dot(acc: &[[f32; 16]; 4], width: ReduceWidth) -> f32 {
    let mut x = [0f32; 16];
    for (l, v) in x.iter_mut().enumerate() {
        *v = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
    }
    match width {
        ReduceWidth::Lanes8 => hsum8_hadd(&x),
        ReduceWidth::Lanes16 => hsum16(&x),
    }
}

/// Reduces one tinyBLAS accumulator of `lanes` values (`hsum` of `__m256` or `__m512`).
pub(crate) fn reduce_tiled(acc: &[f32; 16], width: ReduceWidth) -> f32 {
    match width {
        ReduceWidth::Lanes8 => hsum8_pairs(acc),
        ReduceWidth::Lanes16 => hsum16(acc),
    }
}
