//! The per-row operations of the graphs against straightforward f64 formulas.

use bitnet_engine::formats::{FpContract, I8sActivations, Q8kActivations, QK_K};
use bitnet_engine::kernels::ReduceWidth;
use bitnet_engine::model::ops::{
    lane_sum, masked_softmax, relu_sqr_mul, rms_norm, rope, rope_angles, silu_mul, vec_expf,
    RopeKind,
};
use bitnet_engine::synth::SplitMix64;

fn values(seed: u64, n: usize, scale: f64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..n).map(|_| (rng.next_normal() * scale) as f32).collect()
}

fn assert_close(actual: &[f32], expected: &[f64], tol: f64) {
    assert_eq!(actual.len(), expected.len());
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let err = (f64::from(a) - e).abs();
        assert!(err <= tol * e.abs().max(1.0), "[{i}] {a} vs {e}");
    }
}

#[test]
fn rms_norm_matches_the_f64_formula() {
    let (width, eps) = (96, 1e-5);
    let x = values(1, 3 * width, 3.0);
    let w = values(2, width, 1.0);
    let expected: Vec<f64> = x
        .chunks(width)
        .flat_map(|row| {
            let mean = row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / width as f64;
            let inv = 1.0 / (mean + f64::from(eps)).sqrt();
            row.iter()
                .zip(&w)
                .map(move |(&v, &g)| f64::from(v) * inv * f64::from(g))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut actual = x.clone();
    rms_norm(&mut actual, width, &w, eps);
    assert_close(&actual, &expected, 1e-6);
}

fn rope_f64(
    x: &[f32],
    head_dim: usize,
    n_rot: usize,
    pos: usize,
    base: f64,
    kind: RopeKind,
) -> Vec<f64> {
    let mut out: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    for head in out.chunks_mut(head_dim) {
        for i in 0..n_rot / 2 {
            let theta = pos as f64 * base.powf(-2.0 * i as f64 / n_rot as f64);
            let (a, b) = match kind {
                RopeKind::Normal => (2 * i, 2 * i + 1),
                RopeKind::Neox => (i, i + n_rot / 2),
            };
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0 * theta.cos() - x1 * theta.sin();
            head[b] = x0 * theta.sin() + x1 * theta.cos();
        }
    }
    out
}

#[test]
fn rope_matches_the_f64_rotation_for_both_pairings() {
    let head_dim = 32;
    let x = values(3, 4 * head_dim, 1.0);
    for kind in [RopeKind::Normal, RopeKind::Neox] {
        for (pos, n_rot) in [(0, 32), (1, 32), (17, 32), (100, 16)] {
            let expected = rope_f64(&x, head_dim, n_rot, pos, 10000.0, kind);
            for contract in [FpContract::Off, FpContract::Fused] {
                let mut actual = x.clone();
                let angles = rope_angles(pos, n_rot, 10000.0);
                rope(&mut actual, head_dim, &angles, kind, contract);
                // The angle advances by repeated f32 multiplication: its error grows with the
                // position.
                assert_close(&actual, &expected, 2e-5 * (1 + pos) as f64);
            }
        }
    }
}

#[test]
fn rope_at_position_zero_is_the_identity() {
    let x = values(4, 64, 1.0);
    let mut y = x.clone();
    let angles = rope_angles(0, 64, 500000.0);
    rope(&mut y, 64, &angles, RopeKind::Neox, FpContract::Fused);
    assert_eq!(x, y);
}

#[test]
fn masked_softmax_matches_the_f64_formula_and_zeroes_the_mask() {
    let x = values(5, 40, 4.0);
    let (scale, valid) = (0.125f32, 29);
    let live: Vec<f64> = x[..valid]
        .iter()
        .map(|&v| f64::from(v) * f64::from(scale))
        .collect();
    let max = live.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = live.iter().map(|v| (v - max).exp()).sum();
    let mut expected: Vec<f64> = live.iter().map(|v| (v - max).exp() / sum).collect();
    expected.resize(x.len(), 0.0);
    for simd in [ReduceWidth::Lanes8, ReduceWidth::Lanes16] {
        let mut actual = x.clone();
        masked_softmax(&mut actual, scale, valid, simd);
        assert_close(&actual, &expected, 1e-6);
        let total: f64 = actual.iter().map(|&v| f64::from(v)).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}

#[test]
fn gated_activations_match_their_formulas() {
    let gate = values(6, 48, 2.0);
    let up = values(7, 48, 1.0);
    let mut silu = gate.clone();
    // Rows of 24: one full 16-lane vector and a tail that takes the library `expf`.
    silu_mul(&mut silu, &up, 24, ReduceWidth::Lanes16);
    let mut relu2 = gate.clone();
    relu_sqr_mul(&mut relu2, &up);
    let g = |i: usize| f64::from(gate[i]);
    let u = |i: usize| f64::from(up[i]);
    let silu_expected: Vec<f64> = (0..48)
        .map(|i| g(i) / (1.0 + (-g(i)).exp()) * u(i))
        .collect();
    let relu_expected: Vec<f64> = (0..48).map(|i| g(i).max(0.0).powi(2) * u(i)).collect();
    assert_close(&silu, &silu_expected, 1e-6);
    assert_close(&relu2, &relu_expected, 1e-6);
}

#[test]
fn vector_expf_is_within_two_ulps_and_saturates_like_the_reference() {
    for simd in [ReduceWidth::Lanes8, ReduceWidth::Lanes16] {
        for i in -2000..=800 {
            let x = i as f32 * 0.1;
            let (actual, exact) = (vec_expf(x, simd), f64::from(x).exp());
            if exact < 1e-37 {
                assert!(f64::from(actual) < 1e-36, "{simd:?} exp({x}) = {actual}");
                continue;
            }
            let rel = (f64::from(actual) - exact).abs() / exact;
            assert!(rel < 3e-7, "{simd:?} exp({x}) = {actual}, expected {exact}");
        }
        assert_eq!(vec_expf(f32::NEG_INFINITY, simd), 0.0);
        assert_eq!(vec_expf(200.0, simd), f32::INFINITY);
        assert_eq!(vec_expf(0.0, simd), 1.0);
    }
}

#[test]
fn lane_sums_follow_the_reduction_trees() {
    let x: Vec<f32> = (0..16).map(|i| 1.0 + i as f32 * 1e-8).collect();
    assert_eq!(lane_sum(&x[..8], ReduceWidth::Lanes8), 8.0);
    let ones = [1f32; 16];
    assert_eq!(lane_sum(&ones, ReduceWidth::Lanes16), 16.0);
    let mut big = [0f32; 16];
    big[0] = 1e8;
    big[8] = -1e8;
    big[1] = 1.0;
    assert_eq!(lane_sum(&big, ReduceWidth::Lanes16), 1.0);
}

/// Whether `v` lies within `tol` of a rounding tie `n + 0.5`, where f32 and f64 products may
/// round to different neighbours.
fn near_tie(v: f64, tol: f64) -> bool {
    ((v - v.floor()) - 0.5).abs() < tol
}

#[test]
fn i8s_activation_quantization_matches_the_f64_formula() {
    let k = 96;
    let mut x = values(8, 4 * k, 2.0);
    x[k + 5] = 0.0;
    x[2 * k..3 * k].fill(0.0);
    for contract in [FpContract::Off, FpContract::Fused] {
        let q = I8sActivations::quantize(&x, k, contract).unwrap();
        for (t, row) in x.chunks(k).enumerate() {
            let amax = row.iter().map(|&v| f64::from(v).abs()).fold(1e-5, f64::max);
            let scale = 127.0 / amax;
            assert!((f64::from(q.scales()[t]) - scale).abs() <= scale * 1e-7);
            let codes = q.token_codes(t);
            for (i, (&v, &code)) in row.iter().zip(codes).enumerate() {
                let exact = f64::from(v) * scale;
                let expected = exact.round().clamp(-128.0, 127.0);
                let diff = (f64::from(code) - expected).abs();
                assert!(
                    diff == 0.0 || (diff == 1.0 && near_tie(exact, 1e-4)),
                    "{contract:?} token {t} [{i}]: code {code}, f64 {exact}"
                );
                // Dequantized, each value is within half a step.
                let step = 1.0 / scale;
                assert!((f64::from(code) * step - f64::from(v)).abs() <= 0.5 * step + 1e-9);
            }
            let sum: i32 = codes.iter().map(|&c| i32::from(c)).sum();
            assert_eq!(q.sums()[t], sum);
        }
    }
}

#[test]
fn q8k_activation_quantization_matches_the_f64_formula() {
    let mut x = values(9, 3 * QK_K, 1.5);
    x[QK_K..2 * QK_K].fill(0.0);
    // A block whose largest magnitude is negative: the scale follows its sign.
    x[2 * QK_K + 17] = -9.0;
    let q = Q8kActivations::quantize(&x, QK_K, FpContract::Off).unwrap();
    for (block, values) in q.blocks().iter().zip(x.chunks(QK_K)) {
        let max = values
            .iter()
            .copied()
            .fold(0f32, |m, v| if v.abs() > m.abs() { v } else { m });
        if max == 0.0 {
            assert_eq!(block.d, 0.0);
            assert!(block.qs.iter().all(|&c| c == 0));
            continue;
        }
        let iscale = -127.0 / f64::from(max);
        assert!((f64::from(block.d) - 1.0 / iscale).abs() <= (1.0 / iscale).abs() * 1e-6);
        for (i, (&v, &code)) in values.iter().zip(&block.qs).enumerate() {
            let exact = f64::from(v) * iscale;
            let expected = exact.round().min(127.0);
            let diff = (f64::from(code) - expected).abs();
            assert!(
                diff == 0.0 || (diff == 1.0 && near_tie(exact, 1e-4)),
                "[{i}]: code {code}, f64 {exact}"
            );
        }
        for (g, sum) in block.bsums.iter().enumerate() {
            let expected: i16 = block.qs[g * 16..(g + 1) * 16]
                .iter()
                .map(|&c| i16::from(c))
                .sum();
            assert_eq!(*sum, expected);
        }
    }
}

/// RMSNorm with the sum of squares added in order, one f64 add at a time, as ggml adds it.
fn rms_norm_in_order(x: &mut [f32], width: usize, weight: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(width) {
        let sum = row.iter().fold(0.0, |sum, &v| sum + f64::from(v * v));
        let mean = (sum / width as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for (v, &w) in row.iter_mut().zip(weight) {
            *v = (*v * scale) * w;
        }
    }
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

proptest::proptest! {
    #[test]
    fn rms_norm_has_the_bits_of_the_sum_in_order(
        seed: u64,
        width in 1usize..3000,
        rows in 1usize..4,
        spread in 0i32..40,
    ) {
        // Values spread over 2^±spread, so the squares span up to 2^(4·spread).
        let mut rng = SplitMix64::new(seed);
        let x: Vec<f32> = (0..width * rows)
            .map(|_| {
                let exponent = (rng.next_normal() * f64::from(spread)).clamp(-60.0, 60.0);
                (rng.next_normal() * 2f64.powf(exponent)) as f32
            })
            .collect();
        let w = values(seed ^ 1, width, 1.0);
        let (mut actual, mut expected) = (x.clone(), x);
        rms_norm(&mut actual, width, &w, 1e-6);
        rms_norm_in_order(&mut expected, width, &w, 1e-6);
        proptest::prop_assert_eq!(bits(&actual), bits(&expected));
    }
}
