//! Sampling: greedy limits, seeded determinism, the distributions each sampler leaves, and
//! rejected settings.

use bitnet_engine::generation::{Sampler, SamplerConfig, SamplingError};
use bitnet_engine::model::argmax;
use bitnet_engine::synth::SplitMix64;

fn logits(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..n).map(|_| (rng.next_normal() * 3.0) as f32).collect()
}

fn sampler(config: SamplerConfig) -> Sampler {
    Sampler::new(config).unwrap()
}

/// `config` at `temperature`, seeded.
fn sampled(temperature: f32, config: SamplerConfig) -> SamplerConfig {
    SamplerConfig {
        temperature,
        seed: 42,
        ..config
    }
}

/// Token frequencies over `draws` samples of one row.
fn frequencies(config: SamplerConfig, row: &[f32], draws: usize) -> Vec<f64> {
    let mut s = sampler(config);
    let mut counts = vec![0usize; row.len()];
    for _ in 0..draws {
        counts[s.sample(row).unwrap() as usize] += 1;
    }
    counts
        .into_iter()
        .map(|c| c as f64 / draws as f64)
        .collect()
}

/// `softmax(row / temperature)` over the tokens `keep` allows, zero elsewhere, in f64.
fn softmax(row: &[f32], temperature: f64, keep: impl Fn(usize) -> bool) -> Vec<f64> {
    let max = row.iter().map(|&l| f64::from(l)).fold(f64::MIN, f64::max);
    let e: Vec<f64> = row
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            if keep(i) {
                ((f64::from(l) - max) / temperature).exp()
            } else {
                0.0
            }
        })
        .collect();
    let total: f64 = e.iter().sum();
    e.into_iter().map(|v| v / total).collect()
}

/// Every frequency within five binomial standard errors of its probability.
fn assert_matches(freq: &[f64], expected: &[f64], draws: usize) {
    for (i, (&f, &p)) in freq.iter().zip(expected).enumerate() {
        let sigma = (p * (1.0 - p) / draws as f64).sqrt();
        assert!(
            (f - p).abs() <= 5.0 * sigma + 1e-9,
            "token {i}: frequency {f:.4}, probability {p:.4}"
        );
    }
}

#[test]
fn the_default_is_greedy_and_equals_argmax() {
    assert!(SamplerConfig::default().is_greedy());
    let mut s = sampler(SamplerConfig::default());
    for seed in 0..20 {
        let row = logits(seed, 300);
        assert_eq!(s.sample(&row).unwrap(), argmax(&row));
    }
}

#[test]
fn near_zero_temperature_equals_greedy() {
    let mut s = sampler(SamplerConfig {
        temperature: 1e-4,
        seed: 3,
        ..SamplerConfig::default()
    });
    for seed in 0..50 {
        let row = logits(seed, 300);
        assert_eq!(s.sample(&row).unwrap(), argmax(&row), "row {seed}");
    }
}

#[test]
fn top_k_of_one_equals_greedy_at_any_temperature() {
    let mut s = sampler(SamplerConfig {
        temperature: 5.0,
        top_k: 1,
        seed: 9,
        ..SamplerConfig::default()
    });
    for seed in 0..50 {
        let row = logits(seed, 300);
        assert_eq!(s.sample(&row).unwrap(), argmax(&row), "row {seed}");
    }
}

#[test]
fn a_seed_gives_the_same_tokens_and_another_seed_others() {
    let config = sampled(
        1.5,
        SamplerConfig {
            top_p: 0.95,
            ..SamplerConfig::default()
        },
    );
    let run = |config: SamplerConfig| {
        let mut s = sampler(config);
        (0..200)
            .map(|i| s.sample(&logits(i, 64)).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(config), run(config));
    assert_ne!(run(config), run(SamplerConfig { seed: 43, ..config }));
}

#[test]
fn plain_sampling_follows_the_softmax() {
    let row = [1.0f32, 2.0, 0.5, 3.0, -1.0, 2.5];
    let draws = 200_000;
    for temperature in [1.0f32, 0.5, 2.0] {
        let config = sampled(temperature, SamplerConfig::default());
        let expected = softmax(&row, f64::from(temperature), |_| true);
        assert_matches(&frequencies(config, &row, draws), &expected, draws);
    }
}

#[test]
fn top_k_renormalizes_over_the_k_best() {
    let row = [1.0f32, 2.0, 0.5, 3.0, -1.0, 2.5];
    let draws = 100_000;
    let config = sampled(
        1.0,
        SamplerConfig {
            top_k: 3,
            ..SamplerConfig::default()
        },
    );
    let expected = softmax(&row, 1.0, |i| [1, 3, 5].contains(&i));
    assert_matches(&frequencies(config, &row, draws), &expected, draws);
}

#[test]
fn top_p_keeps_the_smallest_prefix_reaching_p_before_temperature() {
    // Probabilities 0.4, 0.3, 0.2, 0.1: top-p 0.65 keeps the first two.
    let row: Vec<f32> = [0.4f32, 0.3, 0.2, 0.1].iter().map(|p| p.ln()).collect();
    let draws = 100_000;
    let config = sampled(
        2.0,
        SamplerConfig {
            top_p: 0.65,
            ..SamplerConfig::default()
        },
    );
    let expected = softmax(&row, 2.0, |i| i < 2);
    assert_matches(&frequencies(config, &row, draws), &expected, draws);
}

#[test]
fn min_p_drops_tokens_below_a_fraction_of_the_best() {
    // Relative to the best (0.4): 0.75, 0.5, 0.25. min-p 0.5 keeps three.
    let row: Vec<f32> = [0.4f32, 0.3, 0.2, 0.1].iter().map(|p| p.ln()).collect();
    let draws = 100_000;
    let config = sampled(
        1.0,
        SamplerConfig {
            min_p: 0.5,
            ..SamplerConfig::default()
        },
    );
    let expected = softmax(&row, 1.0, |i| i < 3);
    assert_matches(&frequencies(config, &row, draws), &expected, draws);
}

#[test]
fn repetition_penalty_applies_to_recent_context_tokens() {
    let row = [2.0f32, 1.9, -0.5, 1.0];
    let mut s = sampler(SamplerConfig {
        repeat_penalty: 2.5,
        repeat_last_n: 2,
        ..SamplerConfig::default()
    });
    assert_eq!(s.sample(&row).unwrap(), 0);
    // 2.0 / 2.5 < 1.9: token 0, once seen, loses to token 1.
    s.accept(0);
    assert_eq!(s.sample(&row).unwrap(), 1);
    s.accept(1);
    assert_eq!(s.sample(&row).unwrap(), 3);
    // Two newer tokens push token 0 out of the window.
    s.accept(2);
    s.accept(2);
    assert_eq!(s.sample(&row).unwrap(), 0);
}

#[test]
fn out_of_range_settings_are_typed_errors() {
    let bad = |config: SamplerConfig| Sampler::new(config).unwrap_err();
    let d = SamplerConfig::default();
    assert_eq!(
        bad(SamplerConfig {
            temperature: -0.1,
            ..d
        }),
        SamplingError::Temperature(-0.1)
    );
    assert!(matches!(
        bad(SamplerConfig {
            temperature: f32::NAN,
            ..d
        }),
        SamplingError::Temperature(_)
    ));
    for top_p in [0.0, -0.5, 1.01] {
        assert_eq!(
            bad(SamplerConfig { top_p, ..d }),
            SamplingError::TopP(top_p)
        );
    }
    for min_p in [-0.01, 1.5] {
        assert_eq!(
            bad(SamplerConfig { min_p, ..d }),
            SamplingError::MinP(min_p)
        );
    }
    for repeat_penalty in [0.0, -1.0, f32::INFINITY] {
        assert_eq!(
            bad(SamplerConfig {
                repeat_penalty,
                ..d
            }),
            SamplingError::RepeatPenalty(repeat_penalty)
        );
    }
    let message = bad(SamplerConfig { top_p: 2.0, ..d }).to_string();
    assert!(
        message.contains("top-p") && message.contains('2'),
        "{message}"
    );
}

#[test]
fn unusable_logits_are_typed_errors() {
    let mut s = sampler(sampled(1.0, SamplerConfig::default()));
    assert!(matches!(
        s.sample(&[0.0, f32::NAN, 1.0]),
        Err(SamplingError::BadLogit { token: 1, value }) if value.is_nan()
    ));
    assert_eq!(
        s.sample(&[0.0, 1.0, f32::INFINITY]),
        Err(SamplingError::BadLogit {
            token: 2,
            value: f32::INFINITY
        })
    );
    assert_eq!(
        s.sample(&[f32::NEG_INFINITY; 4]),
        Err(SamplingError::NoCandidates { n_vocab: 4 })
    );
    assert_eq!(
        s.sample(&[]),
        Err(SamplingError::NoCandidates { n_vocab: 0 })
    );
    // Masked tokens are never drawn.
    let row = [f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY, 0.0];
    for _ in 0..100 {
        assert!(matches!(s.sample(&row).unwrap(), 1 | 3));
    }
}
