//! What the side-by-side kernel benchmarks share: seeded inputs and median timing.

use std::time::{Duration, Instant};

use anyhow::Result;

/// SplitMix64: the next value of `state`.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Ternary weights in 0.5 × {−1, 0, 1} and one token of activations in [−0.5, 0.5), seeded by
/// the shape.
pub fn inputs(rows: usize, k: usize) -> (Vec<f32>, Vec<f32>) {
    let mut s = (rows * 31 + k) as u64;
    let weights = (0..rows * k)
        .map(|_| [-0.5f32, 0.0, 0.5][(splitmix(&mut s) % 3) as usize])
        .collect();
    let x = (0..k)
        .map(|_| (splitmix(&mut s) >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
        .collect();
    (weights, x)
}

/// Wall time of one call.
pub fn time(f: &mut dyn FnMut() -> Result<()>) -> Result<Duration> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed())
}

/// The median of the samples.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The repetition count from the command line (the first number), or `default`.
pub fn reps(default: usize) -> usize {
    std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(default)
}
