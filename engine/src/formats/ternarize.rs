//! Absmean ternarization of f32 master weights, as bitnet.cpp's converters do before packing.

/// The converters' per-tensor scale `s = 1 / max(mean |w|, 1e-5)`.
///
/// The mean is accumulated in f64 and rounded once to f32; PyTorch reduces in f32 with its own
/// summation order, so on large tensors its scale can differ in the last bit.
pub fn absmean_inverse_scale(weights: &[f32]) -> f32 {
    if weights.is_empty() {
        return 1.0 / 1e-5;
    }
    let sum: f64 = weights.iter().map(|&w| f64::from(w.abs())).sum();
    let mean = (sum / weights.len() as f64) as f32;
    1.0 / mean.max(1e-5)
}

/// Ternarizes a tensor: `round_half_even(w · s).clamp(−1, 1) / s` with `s` from
/// [`absmean_inverse_scale`]. Every output is −1/s, 0 or +1/s (zeros keep the sign of `w`).
pub fn ternarize(weights: &[f32]) -> Vec<f32> {
    let s = absmean_inverse_scale(weights);
    weights
        .iter()
        .map(|&w| (w * s).round_ties_even().clamp(-1.0, 1.0) / s)
        .collect()
}
