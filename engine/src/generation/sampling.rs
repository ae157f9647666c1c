//! Choosing the next token from a row of logits, with llama.cpp's samplers and their order:
//! repetition penalty, top-k, top-p, min-p, temperature, then a seeded draw.

use std::collections::VecDeque;

use rand::rngs::ChaCha8Rng;
use rand::{Rng, SeedableRng};

use crate::model::argmax;

/// How tokens are chosen. The default is greedy: every token is the most likely one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerConfig {
    /// Divides the logits before the draw; `0` picks the most likely token (greedy).
    pub temperature: f32,
    /// Keeps only the `top_k` most likely tokens (`0`: all).
    pub top_k: usize,
    /// Keeps the most likely tokens whose probabilities add up to at least `top_p`, in (0, 1]
    /// (`1`: all).
    pub top_p: f32,
    /// Keeps tokens at least `min_p` times as likely as the most likely one, in [0, 1] (`0`: all).
    pub min_p: f32,
    /// Divides positive logits (multiplies negative ones) of recently seen tokens; `1`: off.
    pub repeat_penalty: f32,
    /// How many of the latest tokens (prompt included) the repetition penalty looks at.
    pub repeat_last_n: usize,
    /// Seeds the ChaCha8 stream behind the draws: a seed gives the same tokens every run.
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    /// Checks every value; the error names the first one out of range.
    pub fn validate(&self) -> Result<(), SamplingError> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(SamplingError::Temperature(self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(SamplingError::TopP(self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(SamplingError::MinP(self.min_p));
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return Err(SamplingError::RepeatPenalty(self.repeat_penalty));
        }
        Ok(())
    }

    /// Whether tokens are picked by argmax (temperature 0).
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

/// Why a sampler cannot be built or cannot pick a token.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    /// A negative, infinite or NaN temperature.
    #[error("temperature must be a finite number ≥ 0, got {0}")]
    Temperature(f32),
    /// A top-p outside (0, 1].
    #[error("top-p must be in (0, 1], got {0}")]
    TopP(f32),
    /// A min-p outside [0, 1].
    #[error("min-p must be in [0, 1], got {0}")]
    MinP(f32),
    /// A repetition penalty that is not a finite positive number.
    #[error("repeat penalty must be a finite number > 0, got {0}")]
    RepeatPenalty(f32),
    /// A logit is NaN or +∞.
    #[error("logit of token {token} is {value}")]
    BadLogit {
        /// The token.
        token: u32,
        /// Its logit.
        value: f32,
    },
    /// No token has a finite logit (or the row is empty).
    #[error("no token can be sampled: all {n_vocab} logits are −∞")]
    NoCandidates {
        /// The row's length.
        n_vocab: usize,
    },
}

/// A token and its (transformed) logit.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    token: u32,
    logit: f32,
}

/// Picks tokens from logits as a [`SamplerConfig`] says, remembering recent tokens for the
/// repetition penalty.
#[derive(Debug)]
pub struct Sampler {
    config: SamplerConfig,
    rng: ChaCha8Rng,
    recent: VecDeque<u32>,
}

impl Sampler {
    /// A sampler with its random stream at the start of `config.seed`.
    pub fn new(config: SamplerConfig) -> Result<Self, SamplingError> {
        config.validate()?;
        Ok(Sampler {
            config,
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            recent: VecDeque::with_capacity(config.repeat_last_n),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Records a token of the context (prompt or generated) for the repetition penalty.
    pub fn accept(&mut self, token: u32) {
        if self.config.repeat_last_n == 0 {
            return;
        }
        if self.recent.len() == self.config.repeat_last_n {
            self.recent.pop_front();
        }
        self.recent.push_back(token);
    }

    /// Picks the next token from `logits` (one per vocabulary entry). Does not record it: call
    /// [`Sampler::accept`] with the token that is fed back.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32, SamplingError> {
        if let Some(token) = logits
            .iter()
            .position(|&l| l.is_nan() || l == f32::INFINITY)
        {
            return Err(SamplingError::BadLogit {
                token: token as u32,
                value: logits[token],
            });
        }
        let mut logits = logits.to_vec();
        self.penalize(&mut logits);
        if logits.iter().all(|&l| l == f32::NEG_INFINITY) {
            return Err(SamplingError::NoCandidates {
                n_vocab: logits.len(),
            });
        }
        if self.config.is_greedy() {
            return Ok(argmax(&logits));
        }
        let mut candidates: Vec<Candidate> = logits
            .iter()
            .enumerate()
            .filter(|(_, &logit)| logit > f32::NEG_INFINITY)
            .map(|(token, &logit)| Candidate {
                token: token as u32,
                logit,
            })
            .collect();
        let c = self.config;
        top_k(&mut candidates, c.top_k);
        top_p(&mut candidates, c.top_p);
        min_p(&mut candidates, c.min_p);
        for candidate in &mut candidates {
            candidate.logit /= c.temperature;
        }
        Ok(self.draw(&candidates))
    }

    /// llama.cpp's repetition penalty: each distinct recent token's logit is divided by the
    /// penalty when positive and multiplied by it otherwise.
    fn penalize(&self, logits: &mut [f32]) {
        let penalty = self.config.repeat_penalty;
        if penalty == 1.0 {
            return;
        }
        let mut seen: Vec<u32> = self.recent.iter().copied().collect();
        seen.sort_unstable();
        seen.dedup();
        for token in seen {
            if let Some(logit) = logits.get_mut(token as usize) {
                if *logit <= 0.0 {
                    *logit *= penalty;
                } else {
                    *logit /= penalty;
                }
            }
        }
    }

    /// Draws from the softmax of the candidates' logits.
    fn draw(&mut self, candidates: &[Candidate]) -> u32 {
        let max = candidates
            .iter()
            .map(|c| f64::from(c.logit))
            .fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = candidates
            .iter()
            .map(|c| (f64::from(c.logit) - max).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let mut target = unit(&mut self.rng) * total;
        for (candidate, w) in candidates.iter().zip(&weights) {
            if target < *w {
                return candidate.token;
            }
            target -= w;
        }
        // Rounding can leave a sliver past the last weight; it belongs to the last candidate.
        candidates[candidates.len() - 1].token
    }
}

/// A uniform value in `[0, 1)` from the top 53 bits of one 64-bit draw.
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Most likely first; equal logits by token id, so the order never depends on the sort.
fn by_logit(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.logit.total_cmp(&a.logit).then(a.token.cmp(&b.token))
}

fn sort(candidates: &mut [Candidate]) {
    candidates.sort_unstable_by(by_logit);
}

/// Keeps the `k` most likely candidates, sorted (`0`: all, unsorted).
fn top_k(candidates: &mut Vec<Candidate>, k: usize) {
    if k == 0 || k >= candidates.len() {
        return;
    }
    candidates.select_nth_unstable_by(k - 1, by_logit);
    candidates.truncate(k);
    sort(candidates);
}

/// Softmax of the candidates' logits, in f64.
fn probabilities(candidates: &[Candidate]) -> Vec<f64> {
    let max = candidates
        .iter()
        .map(|c| f64::from(c.logit))
        .fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = candidates
        .iter()
        .map(|c| (f64::from(c.logit) - max).exp())
        .collect();
    let total: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / total).collect()
}

/// Keeps the shortest most-likely prefix whose probability reaches `p` (at least one token).
fn top_p(candidates: &mut Vec<Candidate>, p: f32) {
    if p >= 1.0 {
        return;
    }
    sort(candidates);
    let mut cumulative = 0.0;
    let mut keep = candidates.len();
    for (i, prob) in probabilities(candidates).into_iter().enumerate() {
        cumulative += prob;
        if cumulative >= f64::from(p) {
            keep = i + 1;
            break;
        }
    }
    candidates.truncate(keep);
}

/// Keeps candidates whose probability is at least `p` times the largest: logits at least
/// `max + ln p`.
fn min_p(candidates: &mut Vec<Candidate>, p: f32) {
    if p <= 0.0 {
        return;
    }
    let max = candidates
        .iter()
        .map(|c| c.logit)
        .fold(f32::NEG_INFINITY, f32::max);
    let threshold = max + p.ln();
    candidates.retain(|c| c.logit >= threshold);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates(logits: &[f32]) -> Vec<Candidate> {
        logits
            .iter()
            .enumerate()
            .map(|(token, &logit)| Candidate {
                token: token as u32,
                logit,
            })
            .collect()
    }

    fn tokens(candidates: &[Candidate]) -> Vec<u32> {
        candidates.iter().map(|c| c.token).collect()
    }

    #[test]
    fn top_k_keeps_the_k_largest_in_order_with_ties_by_id() {
        let mut c = candidates(&[0.5, 3.0, 1.0, 3.0, -2.0]);
        top_k(&mut c, 3);
        assert_eq!(tokens(&c), [1, 3, 2]);
    }

    #[test]
    fn top_p_keeps_the_prefix_that_reaches_p() {
        // Probabilities 0.5, 0.3, 0.2 (as logits ln p).
        let logits = [0.2f32.ln(), 0.5f32.ln(), 0.3f32.ln()];
        let mut c = candidates(&logits);
        top_p(&mut c, 0.5);
        assert_eq!(tokens(&c), [1]);
        let mut c = candidates(&logits);
        top_p(&mut c, 0.79);
        assert_eq!(tokens(&c), [1, 2]);
        let mut c = candidates(&logits);
        top_p(&mut c, 0.81);
        assert_eq!(tokens(&c), [1, 2, 0]);
    }

    #[test]
    fn min_p_keeps_tokens_near_the_best() {
        let logits = [0.2f32.ln(), 0.5f32.ln(), 0.3f32.ln()];
        let mut c = candidates(&logits);
        min_p(&mut c, 0.5);
        assert_eq!(tokens(&c), [1, 2]);
        let mut c = candidates(&logits);
        min_p(&mut c, 1.0);
        assert_eq!(tokens(&c), [1]);
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_logits() {
        let mut s = Sampler::new(SamplerConfig {
            repeat_penalty: 2.0,
            repeat_last_n: 2,
            ..SamplerConfig::default()
        })
        .unwrap();
        for token in [0, 1, 2, 2] {
            s.accept(token);
        }
        // Only the last two tokens (2, 2) count, once each.
        let mut logits = [4.0, 4.0, 4.0, -1.0];
        s.penalize(&mut logits);
        assert_eq!(logits, [4.0, 4.0, 2.0, -1.0]);
        s.accept(3);
        let mut logits = [4.0, 4.0, 4.0, -1.0];
        s.penalize(&mut logits);
        assert_eq!(logits, [4.0, 4.0, 2.0, -2.0]);
    }
}
