//! The element-wise and per-row operations of the graphs, with ggml's evaluation order.

pub use super::vec_math::{lane_sum, vec_expf};
use crate::formats::FpContract;
use crate::kernels::with_fma;
use crate::kernels::ReduceWidth;

/// How RoPE pairs the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeKind {
    /// Adjacent pairs `(2i, 2i+1)` (`llama`).
    Normal,
    /// Pairs `(i, i + n_rot/2)` (`bitnet`, `bitnet-b1.58`).
    Neox,
}

/// RMSNorm of each row of `x` (`width` values), multiplied by `weight`: squares in f32 summed in
/// f64, the mean rounded to f32, `x · (1 / sqrt(mean + eps))`, then `· weight`.
pub fn rms_norm(x: &mut [f32], width: usize, weight: &[f32], eps: f32) {
    if width == 0 {
        return;
    }
    // Each row's f64 sum is one sequential chain; four rows at a time overlap their latencies.
    let mut quads = x.chunks_exact_mut(4 * width);
    for quad in &mut quads {
        let (a, rest) = quad.split_at_mut(width);
        let (b, rest) = rest.split_at_mut(width);
        let (c, d) = rest.split_at_mut(width);
        let mut sums = [0f64; 4];
        for (((&va, &vb), &vc), &vd) in a.iter().zip(&*b).zip(&*c).zip(&*d) {
            sums[0] += f64::from(va * va);
            sums[1] += f64::from(vb * vb);
            sums[2] += f64::from(vc * vc);
            sums[3] += f64::from(vd * vd);
        }
        for (row, sum) in [a, b, c, d].into_iter().zip(sums) {
            scale_row(row, sum, weight, eps);
        }
    }
    for row in quads.into_remainder().chunks_exact_mut(width) {
        let sum: f64 = row.iter().map(|&v| f64::from(v * v)).sum();
        scale_row(row, sum, weight, eps);
    }
}

/// One row of [`rms_norm`] from the f64 sum of its squares.
fn scale_row(row: &mut [f32], sum: f64, weight: &[f32], eps: f32) {
    let mean = (sum / row.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for (v, &w) in row.iter_mut().zip(weight) {
        *v = (*v * scale) * w;
    }
}

with_fma! {
    /// Rotates the first `n_rot` dimensions of each head (`head_dim` wide) of one token at position
    /// `pos`. Angles are `pos · base^(−2i/n_rot)`, the power advanced by repeated f32 multiplication as
    /// ggml does; under [`FpContract::Fused`] each rotated value is one FMA over the rounded other
    /// product, as GCC contracts the reference's expression.
    pub fn rope(
        x: &mut [f32],
        head_dim: usize,
        n_rot: usize,
        pos: usize,
        base: f32,
        kind: RopeKind,
        contract: FpContract,
    ) {
        let cos_sin = rope_angles(pos, n_rot, base);
        for head in x.chunks_exact_mut(head_dim) {
            for (i, &(cos, sin)) in cos_sin.iter().enumerate() {
                let (a, b) = match kind {
                    RopeKind::Normal => (2 * i, 2 * i + 1),
                    RopeKind::Neox => (i, i + n_rot / 2),
                };
                let (x0, x1) = (head[a], head[b]);
                (head[a], head[b]) = match contract {
                    FpContract::Off => (x0 * cos - x1 * sin, x0 * sin + x1 * cos),
                    FpContract::Fused => (x0.mul_add(cos, -(x1 * sin)), x0.mul_add(sin, x1 * cos)),
                };
            }
        }
    }
}

/// `(cos, sin)` of the `n_rot / 2` rotation angles at position `pos`: `pos · base^(−2i/n_rot)`, the
/// power advanced by repeated f32 multiplication as ggml does.
pub fn rope_angles(pos: usize, n_rot: usize, base: f32) -> Vec<(f32, f32)> {
    let theta_scale = base.powf(-2.0 / n_rot as f32);
    let mut cos_sin = Vec::with_capacity(n_rot / 2);
    let mut theta = pos as f32;
    for _ in 0..n_rot / 2 {
        cos_sin.push((theta.cos(), theta.sin()));
        theta *= theta_scale;
    }
    cos_sin
}

with_fma! {
    /// `softmax(row · scale)` with entries from `valid` on masked (`−inf`), as `ggml_soft_max_ext`:
    /// exponentials by [`vec_expf`] on whole vectors of `simd` lanes and by `expf` on the tail, their
    /// sum accumulated in f64 vector by vector, and every value scaled by the f32 inverse of the sum.
    pub fn masked_softmax(row: &mut [f32], scale: f32, valid: usize, simd: ReduceWidth) {
        for (i, v) in row.iter_mut().enumerate() {
            *v = if i < valid {
                *v * scale
            } else {
                f32::NEG_INFINITY
            };
        }
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lanes = simd.lanes();
        let full = row.len() / lanes * lanes;
        let mut sum = 0f64;
        for vector in row[..full].chunks_exact_mut(lanes) {
            vector
                .iter_mut()
                .for_each(|v| *v = vec_expf(*v - max, simd));
            sum += f64::from(lane_sum(vector, simd));
        }
        for v in &mut row[full..] {
            *v = (*v - max).exp();
            sum += f64::from(*v);
        }
        let inv = (1.0 / sum) as f32;
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

with_fma! {
    /// `silu(gate) · up` for rows of `width` values, into `gate`: SiLU as `x / (1 + exp(−x))` with
    /// [`vec_expf`] on whole vectors of `simd` lanes and `expf` on the tail of each row.
    pub fn silu_mul(gate: &mut [f32], up: &[f32], width: usize, simd: ReduceWidth) {
        let full = width / simd.lanes() * simd.lanes();
        for (row, up_row) in gate.chunks_exact_mut(width).zip(up.chunks_exact(width)) {
            for (i, (g, &u)) in row.iter_mut().zip(up_row).enumerate() {
                let e = if i < full {
                    vec_expf(-*g, simd)
                } else {
                    (-*g).exp()
                };
                *g = *g / (1.0 + e) * u;
            }
        }
    }
}

/// `relu(gate)² · up`, element-wise, into `gate`.
pub fn relu_sqr_mul(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        let r = g.max(0.0);
        *g = r * r * u;
    }
}

/// `a += b`, element-wise.
pub fn add_assign(a: &mut [f32], b: &[f32]) {
    a.iter_mut().zip(b).for_each(|(x, &y)| *x += y);
}
