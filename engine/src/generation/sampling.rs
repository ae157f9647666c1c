//! Choosing the next token from a row of logits, with llama.cpp's samplers and their order:
//! repetition penalty, top-k, top-p, min-p, temperature, then a seeded draw.

use std::collections::VecDeque;

use rand::rngs::ChaCha8Rng;
use rand::{Rng, SeedableRng};

use crate::model::pick::{block_masses, pick_weight, row_mass, MASS_BLOCK};
use crate::model::{argmax, Narrowing, PickRequest, Picked};

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
        let unit = self.next_unit();
        self.sample_row(logits, unit)
    }

    /// [`Sampler::sample`] on a row that a device holds: `pick` runs the device's share of
    /// the [`PickRequest`] (for a row of `n_vocab` logits) and the host finishes, picking the
    /// token that [`Sampler::sample`] would pick on the whole row.
    pub fn sample_on<E: From<SamplingError>>(
        &mut self,
        n_vocab: usize,
        pick: impl FnOnce(&PickRequest) -> Result<Picked, E>,
    ) -> Result<u32, E> {
        let unit = self.next_unit();
        let request = self.request(n_vocab, unit);
        let token = match pick(&request)? {
            Picked::Token(token) => token,
            Picked::Logits(row) => self.sample_row(&row, unit)?,
            Picked::Candidates { candidates, mass } => {
                let candidates: Vec<Candidate> = candidates
                    .into_iter()
                    .map(|(token, logit)| Candidate { token, logit })
                    .collect();
                if candidates.is_empty() {
                    return Err(SamplingError::NoCandidates { n_vocab }.into());
                }
                if self.config.is_greedy() {
                    let logits: Vec<f32> = candidates.iter().map(|c| c.logit).collect();
                    candidates[argmax(&logits) as usize].token
                } else {
                    self.choose(candidates, n_vocab, mass, unit)
                }
            }
        };
        Ok(token)
    }

    /// The next draw from the random stream, taken before the row is looked at (a pick that
    /// fails has used it up). A greedy sampler never draws.
    fn next_unit(&mut self) -> f64 {
        if self.config.is_greedy() {
            return 0.0;
        }
        unit(&mut self.rng)
    }

    /// The device's share of a pick from a row of `n_vocab` logits: the first filter that
    /// [`Sampler::choose`] applies, or the whole draw when none applies.
    fn request(&self, n_vocab: usize, unit: f64) -> PickRequest {
        let c = self.config;
        let narrowing = if c.is_greedy() {
            Narrowing::AtLeast(0.0)
        } else if c.top_k > 0 && c.top_k < n_vocab {
            Narrowing::TopK(c.top_k)
        } else if c.top_p < 1.0 {
            Narrowing::TopP(c.top_p)
        } else if c.min_p > 0.0 {
            Narrowing::AtLeast(c.min_p.ln())
        } else {
            Narrowing::Draw {
                temperature: c.temperature,
                unit,
            }
        };
        PickRequest {
            penalty: c.repeat_penalty,
            penalized: self.penalized(),
            narrowing,
        }
    }

    /// The pick from a whole row with the draw `unit`.
    fn sample_row(&self, logits: &[f32], unit: f64) -> Result<u32, SamplingError> {
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
        let candidates: Vec<Candidate> = logits
            .iter()
            .enumerate()
            .filter(|(_, &logit)| logit > f32::NEG_INFINITY)
            .map(|(token, &logit)| Candidate {
                token: token as u32,
                logit,
            })
            .collect();
        let n = candidates.len();
        Ok(self.choose(candidates, n, None, unit))
    }

    /// The filters and the draw on `candidates`, in token order: all the finite candidates of a
    /// row (`row_len` of them), or a device's narrowing of them that holds every candidate the
    /// first active filter keeps, with the row's mass for top-p (`mass`).
    fn choose(
        &self,
        mut candidates: Vec<Candidate>,
        row_len: usize,
        mass: Option<f64>,
        unit: f64,
    ) -> u32 {
        let c = self.config;
        if c.top_k > 0 && c.top_k < row_len {
            top_k(&mut candidates, c.top_k);
        }
        top_p(&mut candidates, c.top_p, mass);
        min_p(&mut candidates, c.min_p);
        for candidate in &mut candidates {
            candidate.logit /= c.temperature;
        }
        draw(&candidates, unit)
    }

    /// The distinct recent tokens, ascending.
    fn penalized(&self) -> Vec<u32> {
        if self.config.repeat_penalty == 1.0 {
            return Vec::new();
        }
        let mut seen: Vec<u32> = self.recent.iter().copied().collect();
        seen.sort_unstable();
        seen.dedup();
        seen
    }

    /// llama.cpp's repetition penalty: each distinct recent token's logit is divided by the
    /// penalty when positive and multiplied by it otherwise.
    fn penalize(&self, logits: &mut [f32]) {
        let penalty = self.config.repeat_penalty;
        for token in self.penalized() {
            if let Some(logit) = logits.get_mut(token as usize) {
                if *logit <= 0.0 {
                    *logit *= penalty;
                } else {
                    *logit /= penalty;
                }
            }
        }
    }
}

/// Draws from the softmax of the candidates' logits, at `unit` of the way through their mass:
/// [`pick_weight`]s summed in runs of [`MASS_BLOCK`] ([`block_masses`]), the runs walked first,
/// then the weights of the run the draw falls in. Rounding can leave a sliver past the last
/// weight of a run or of the row: it belongs to the last candidate there with a weight.
/// `candidates` is not empty.
fn draw(candidates: &[Candidate], unit: f64) -> u32 {
    let max = candidates
        .iter()
        .map(|c| c.logit)
        .fold(f32::NEG_INFINITY, f32::max);
    let weight = |c: &Candidate| pick_weight(c.logit, max);
    let masses = block_masses(candidates.iter().map(weight));
    let total = masses.iter().fold(0.0, |t, m| t + m);
    let last_weighted =
        |run: &[Candidate]| run.iter().rev().find(|c| weight(c) > 0.0).map(|c| c.token);
    let mut target = unit * total;
    for (run, &mass) in candidates.chunks(MASS_BLOCK).zip(&masses) {
        if target < mass {
            for c in run {
                let w = f64::from(weight(c));
                if target < w {
                    return c.token;
                }
                target -= w;
            }
            return last_weighted(run).expect("a run with mass has a weight");
        }
        target -= mass;
    }
    // Only weights that are all NaN (logits divided into infinities) leave none: the first.
    last_weighted(candidates).unwrap_or(candidates[0].token)
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

/// Keeps the `k` (at least 1) most likely candidates, sorted.
fn top_k(candidates: &mut Vec<Candidate>, k: usize) {
    if k < candidates.len() {
        candidates.select_nth_unstable_by(k - 1, by_logit);
        candidates.truncate(k);
    }
    sort(candidates);
}

/// Keeps the shortest most-likely prefix whose probability reaches `p` (at least one token).
/// Probabilities are [`pick_weight`]s over the candidates' [`row_mass`] in their order on entry,
/// or over `mass` when a device has added it for the whole row.
fn top_p(candidates: &mut Vec<Candidate>, p: f32, mass: Option<f64>) {
    if p >= 1.0 {
        return;
    }
    let max = candidates
        .iter()
        .map(|c| c.logit)
        .fold(f32::NEG_INFINITY, f32::max);
    let mass = mass.unwrap_or_else(|| row_mass(candidates.iter().map(|c| c.logit), max));
    sort(candidates);
    let mut cumulative = 0.0;
    let mut keep = candidates.len();
    for (i, c) in candidates.iter().enumerate() {
        cumulative += f64::from(pick_weight(c.logit, max)) / mass;
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
        top_p(&mut c, 0.5, None);
        assert_eq!(tokens(&c), [1]);
        let mut c = candidates(&logits);
        top_p(&mut c, 0.79, None);
        assert_eq!(tokens(&c), [1, 2]);
        let mut c = candidates(&logits);
        top_p(&mut c, 0.81, None);
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

    /// The device's share of a pick as [`Narrowing`] states it, computed on the host the
    /// simplest way: what any device must be equivalent to.
    fn narrow(row: &[f32], request: &PickRequest) -> Picked {
        if row.iter().any(|l| l.is_nan() || *l == f32::INFINITY) {
            return Picked::Logits(row.to_vec());
        }
        let mut work = row.to_vec();
        for &t in &request.penalized {
            if let Some(l) = work.get_mut(t as usize) {
                *l = if *l <= 0.0 {
                    *l * request.penalty
                } else {
                    *l / request.penalty
                };
            }
        }
        if work.contains(&f32::NEG_INFINITY) {
            return Picked::Logits(row.to_vec());
        }
        let max = work.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sorted = work.clone();
        sorted.sort_unstable_by(|a, b| b.total_cmp(a));
        let keep_from = |bound: f32| {
            work.iter()
                .enumerate()
                .filter(|(_, l)| l.total_cmp(&bound).is_ge())
                .map(|(t, &l)| (t as u32, l))
                .collect()
        };
        let (candidates, mass) = match request.narrowing {
            Narrowing::TopK(k) => (keep_from(sorted[k - 1]), None),
            Narrowing::TopP(p) => {
                let mass = row_mass(work.iter().copied(), max);
                let mut cumulative = 0.0;
                let mut bound = sorted[sorted.len() - 1];
                for &l in &sorted {
                    cumulative += f64::from(pick_weight(l, max)) / mass;
                    if cumulative > f64::from(p) + 1e-6 {
                        bound = l;
                        break;
                    }
                }
                (keep_from(bound), Some(mass))
            }
            Narrowing::AtLeast(offset) => {
                let at_least = max + offset;
                let kept = work.iter().enumerate().filter(|(_, &l)| l >= at_least);
                (kept.map(|(t, &l)| (t as u32, l)).collect(), None)
            }
            Narrowing::Draw { temperature, unit } => {
                let all = candidates(&work)
                    .into_iter()
                    .map(|c| Candidate {
                        logit: c.logit / temperature,
                        ..c
                    })
                    .collect::<Vec<_>>();
                return Picked::Token(draw(&all, unit));
            }
        };
        Picked::Candidates { candidates, mass }
    }

    fn random_row(rng: &mut crate::synth::SplitMix64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| match rng.next_u64() % 50 {
                // Ties and a few extreme values.
                0 => 2.0,
                1 => -30.0,
                _ => (rng.next_normal() * 2.0) as f32,
            })
            .collect()
    }

    #[test]
    fn a_device_narrowing_picks_what_the_whole_row_picks() {
        let mut rng = crate::synth::SplitMix64::new(3);
        let configs = [
            SamplerConfig::default(),
            SamplerConfig {
                repeat_penalty: 1.3,
                ..SamplerConfig::default()
            },
            SamplerConfig {
                temperature: 0.8,
                top_k: 40,
                top_p: 0.95,
                min_p: 0.05,
                repeat_penalty: 1.1,
                ..SamplerConfig::default()
            },
            SamplerConfig {
                temperature: 1.0,
                ..SamplerConfig::default()
            },
            SamplerConfig {
                temperature: 0.7,
                top_p: 0.9,
                ..SamplerConfig::default()
            },
            SamplerConfig {
                temperature: 1.5,
                min_p: 0.1,
                ..SamplerConfig::default()
            },
            SamplerConfig {
                temperature: 1.0,
                top_k: 1000,
                ..SamplerConfig::default()
            },
        ];
        for (c, config) in configs.into_iter().enumerate() {
            for n in [3, 300, 1000] {
                let config = SamplerConfig {
                    seed: (c * 10 + n) as u64,
                    ..config
                };
                let (mut whole, mut narrowed) =
                    (Sampler::new(config).unwrap(), Sampler::new(config).unwrap());
                for step in 0..40 {
                    let mut row = random_row(&mut rng, n);
                    if step == 7 {
                        row[n / 2] = f32::NEG_INFINITY;
                    }
                    if step == 9 {
                        row[n - 1] = f32::NAN;
                    }
                    let expected = whole.sample(&row);
                    let got = narrowed
                        .sample_on(n, |request| Ok::<_, SamplingError>(narrow(&row, request)));
                    // Debug text, so that a NaN logit in an error compares equal.
                    assert_eq!(
                        format!("{got:?}"),
                        format!("{expected:?}"),
                        "config {c}, n {n}, step {step}"
                    );
                    let token = expected.unwrap_or(0);
                    whole.accept(token);
                    narrowed.accept(token);
                }
            }
        }
    }

    #[test]
    fn the_draw_lands_where_the_cumulative_weight_passes_the_target() {
        let mut rng = crate::synth::SplitMix64::new(9);
        let all = candidates(&random_row(&mut rng, 700));
        let max = all
            .iter()
            .map(|c| c.logit)
            .fold(f32::NEG_INFINITY, f32::max);
        let weights: Vec<f64> = all
            .iter()
            .map(|c| f64::from(pick_weight(c.logit, max)))
            .collect();
        let total: f64 = weights.iter().sum();
        for i in 0..200 {
            let unit = (i as f64 + 0.5) / 200.0;
            let target = unit * total;
            let mut cumulative = 0.0;
            let expected = weights
                .iter()
                .position(|w| {
                    cumulative += w;
                    cumulative > target
                })
                .unwrap();
            assert_eq!(draw(&all, unit), all[expected].token, "unit {unit}");
        }
        assert_eq!(draw(&all, 1.0 - f64::EPSILON), all[all.len() - 1].token);
    }

    #[test]
    fn a_temperature_that_overflows_the_logits_still_picks_a_token() {
        let mut s = Sampler::new(SamplerConfig {
            temperature: 1e-40,
            ..SamplerConfig::default()
        })
        .unwrap();
        assert_eq!(s.sample(&[3.0, 5.0, 4.0]), Ok(0));
    }
}
