//! The element-wise and per-row operations of the graphs, with ggml's evaluation order.

pub use super::vec_math::{lane_sum, vec_expf};
use crate::formats::FpContract;
use crate::kernels::with_simd;
use crate::kernels::ReduceWidth;

/// How RoPE pairs the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeKind {
    /// Adjacent pairs `(2i, 2i+1)` (`llama`).
    Normal,
    /// Pairs `(i, i + n_rot/2)` (`bitnet`, `bitnet-b1.58`).
    Neox,
}

with_simd! {
    /// RMSNorm of each row of `x` (`width` values), multiplied by `weight`: squares in f32 summed
    /// in f64 in order, the mean rounded to f32, `x · (1 / sqrt(mean + eps))`, then `· weight`.
    pub fn rms_norm(x: &mut [f32], width: usize, weight: &[f32], eps: f32) {
        if width == 0 {
            return;
        }
        for row in x.chunks_exact_mut(width) {
            let mean = mean_of_squares(row);
            let scale = 1.0 / (mean + eps).sqrt();
            for (v, &w) in row.iter_mut().zip(weight) {
                *v = (*v * scale) * w;
            }
        }
    }
}

/// `(Σ (f64)(x·x)) / n` rounded to f32, the sum added in order as ggml adds it.
///
/// One ordered f64 chain waits on every add, so the squares are first summed 32 lanes at a
/// time. Both sums are within `2(n + 16)·ε` (relative) of each other, as every term is
/// non-negative; when every f64 in that interval around the lane sum gives the same f32 mean, so
/// does the ordered sum, and the lane sum stands. Otherwise (about one row in 10⁴) the ordered
/// chain runs.
#[inline(always)]
fn mean_of_squares(row: &[f32]) -> f32 {
    let n = row.len() as f64;
    let mean = |sum: f64| (sum / n) as f32;
    let sum = lane_sum_of_squares(row);
    let delta = 2.0 * (n + 16.0) * f64::EPSILON;
    if sum.is_finite() && mean(sum * (1.0 - delta)) == mean(sum * (1.0 + delta)) {
        return mean(sum);
    }
    mean(row.iter().fold(0.0, |sum, &v| sum + f64::from(v * v)))
}

/// The f64 sum of the f32 squares of `row`, 32 lanes at a time (four chains of eight, so that
/// no add waits on the one before), the lanes added as a tree.
#[inline(always)]
fn lane_sum_of_squares(row: &[f32]) -> f64 {
    let (chunks, rest) = row.as_chunks::<32>();
    let mut lanes = [0f64; 32];
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f64::from(v * v);
        }
    }
    for (lane, &v) in lanes.iter_mut().zip(rest) {
        *lane += f64::from(v * v);
    }
    let [a, b, c, d, e, f, g, h]: [f64; 8] =
        std::array::from_fn(|j| (lanes[j] + lanes[j + 8]) + (lanes[j + 16] + lanes[j + 24]));
    ((a + b) + (c + d)) + ((e + f) + (g + h))
}

with_simd! {
    /// Rotates the first `2 · cos_sin.len()` dimensions of each head (`head_dim` wide) of one
    /// token by the angles of its position ([`rope_angles`]); under [`FpContract::Fused`] each
    /// rotated value is one FMA over the rounded other product, as GCC contracts the reference's
    /// expression.
    ///
    /// # Panics
    /// If the angles rotate more dimensions than a head has.
    pub fn rope(
        x: &mut [f32],
        head_dim: usize,
        cos_sin: &[(f32, f32)],
        kind: RopeKind,
        contract: FpContract,
    ) {
        match contract {
            FpContract::Off => rotate_heads(x, head_dim, cos_sin, kind, |x0, x1, cos, sin| {
                (x0 * cos - x1 * sin, x0 * sin + x1 * cos)
            }),
            FpContract::Fused => rotate_heads(x, head_dim, cos_sin, kind, |x0, x1, cos, sin| {
                (x0.mul_add(cos, -(x1 * sin)), x0.mul_add(sin, x1 * cos))
            }),
        }
    }
}

/// Applies `rotate(x0, x1, cos, sin)` to every pair of rotated dimensions of each head, pairs
/// as `kind` makes them, in loops without branches or index checks, which vectorize.
///
/// # Panics
/// If the angles rotate more dimensions than a head has (the loader refuses such a model).
#[inline(always)]
fn rotate_heads(
    x: &mut [f32],
    head_dim: usize,
    cos_sin: &[(f32, f32)],
    kind: RopeKind,
    rotate: impl Fn(f32, f32, f32, f32) -> (f32, f32),
) {
    let n_rot = 2 * cos_sin.len();
    assert!(
        n_rot <= head_dim,
        "{n_rot} rotated dimensions in heads of {head_dim}"
    );
    for head in x.chunks_exact_mut(head_dim) {
        let rotated = &mut head[..n_rot];
        match kind {
            RopeKind::Normal => {
                for (pair, &(cos, sin)) in rotated.chunks_exact_mut(2).zip(cos_sin) {
                    (pair[0], pair[1]) = rotate(pair[0], pair[1], cos, sin);
                }
            }
            RopeKind::Neox => {
                let (first, second) = rotated.split_at_mut(n_rot / 2);
                for ((x0, x1), &(cos, sin)) in first.iter_mut().zip(second).zip(cos_sin) {
                    (*x0, *x1) = rotate(*x0, *x1, cos, sin);
                }
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

with_simd! {
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
        // The maximum in 16 lanes, then across them: the same value as in order.
        let mut maxima = [f32::NEG_INFINITY; 16];
        for chunk in row.chunks(16) {
            for (m, &v) in maxima.iter_mut().zip(chunk) {
                *m = m.max(v);
            }
        }
        let max = maxima.into_iter().fold(f32::NEG_INFINITY, f32::max);
        let lanes = simd.lanes();
        let full = row.len() / lanes * lanes;
        let mut sum = 0f64;
        in_each_width(simd, |simd| {
            for v in &mut row[..full] {
                *v = vec_expf(*v - max, simd);
            }
        });
        for vector in row[..full].chunks_exact(lanes) {
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

/// `body(simd)` with `simd` a constant in each of its copies, so that the loops of
/// [`vec_expf`] in `body` compile for one width each and vectorize.
#[inline(always)]
fn in_each_width(simd: ReduceWidth, mut body: impl FnMut(ReduceWidth)) {
    match simd {
        ReduceWidth::Lanes8 => body(ReduceWidth::Lanes8),
        ReduceWidth::Lanes16 => body(ReduceWidth::Lanes16),
    }
}

with_simd! {
    /// `silu(gate) · up` for rows of `width` values, into `gate`: SiLU as `x / (1 + exp(−x))` with
    /// [`vec_expf`] on whole vectors of `simd` lanes and `expf` on the tail of each row.
    pub fn silu_mul(gate: &mut [f32], up: &[f32], width: usize, simd: ReduceWidth) {
        let full = width / simd.lanes() * simd.lanes();
        for (row, up_row) in gate.chunks_exact_mut(width).zip(up.chunks_exact(width)) {
            let (vectors, tail) = row.split_at_mut(full);
            let (up_vectors, up_tail) = up_row.split_at(full);
            in_each_width(simd, |simd| silu_with(vectors, up_vectors, |x| vec_expf(x, simd)));
            silu_with(tail, up_tail, f32::exp);
        }
    }
}

/// `gate / (1 + exp(−gate)) · up`, element-wise, into `gate`.
#[inline(always)]
fn silu_with(gate: &mut [f32], up: &[f32], exp: impl Fn(f32) -> f32) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + exp(-*g)) * u;
    }
}

with_simd! {
    /// `relu(gate)² · up`, element-wise, into `gate`.
    pub fn relu_sqr_mul(gate: &mut [f32], up: &[f32]) {
        for (g, &u) in gate.iter_mut().zip(up) {
            let r = g.max(0.0);
            *g = r * r * u;
        }
    }
}

with_simd! {
    /// `a += b`, element-wise.
    pub fn add_assign(a: &mut [f32], b: &[f32]) {
        a.iter_mut().zip(b).for_each(|(x, &y)| *x += y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mean_of_squares_is_the_in_order_one_where_the_lane_sum_rounds_otherwise() {
        // Squares 16, 2^-20 and fourteen of 2^-50: in order every 2^-50 falls below half an f64
        // ulp of 16 and the mean is 1 + 2^-24, halfway between two f32 values, which rounds to 1;
        // in lanes the small squares meet each other first, survive, and round the mean up.
        let mut row = vec![4.0, 2f32.powi(-10)];
        row.extend([2f32.powi(-25); 14]);
        let lanes = (lane_sum_of_squares(&row) / 16.0) as f32;
        assert_eq!(lanes, 1.0 + f32::EPSILON);
        assert_eq!(mean_of_squares(&row), 1.0);
    }
}
