//! The measurements behind every check, as plain functions over slices.
//!
//! Arguments always come as `(candidate, reference)`. Sums run in f64. Where a statistic is
//! undefined for constant inputs, the doc says what is returned instead.

/// One element of a float comparison, for reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloatPair {
    /// Flat index.
    pub index: usize,
    /// The candidate's value.
    pub candidate: f32,
    /// The reference's value.
    pub reference: f32,
}

/// Result of an exact element-wise comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExactDiff {
    /// Differing positions, counting every element one side has and the other lacks.
    pub mismatches: usize,
    /// The first differing position.
    pub first: Option<usize>,
    /// Length of the candidate.
    pub candidate_len: usize,
    /// Length of the reference.
    pub reference_len: usize,
}

/// Compares element by element for exact equality (bytes, ids, integer results).
pub fn compare_exact<T: PartialEq>(candidate: &[T], reference: &[T]) -> ExactDiff {
    let common = candidate.len().min(reference.len());
    let extra = candidate.len().max(reference.len()) - common;
    let mut mismatches = extra;
    let mut first = None;
    for (index, (c, r)) in candidate.iter().zip(reference).enumerate() {
        if c != r {
            mismatches += 1;
            first.get_or_insert(index);
        }
    }
    if first.is_none() && extra > 0 {
        first = Some(common);
    }
    ExactDiff {
        mismatches,
        first,
        candidate_len: candidate.len(),
        reference_len: reference.len(),
    }
}

/// Whether a pair breaks the NaN/Inf policy: NaN on either side, or an infinity on one side
/// that is not the same infinity on the other.
pub fn breaks_finite_policy(candidate: f32, reference: f32) -> bool {
    candidate.is_nan()
        || reference.is_nan()
        || ((candidate.is_infinite() || reference.is_infinite()) && candidate != reference)
}

/// Elements breaking the NaN/Inf policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FiniteReport {
    /// How many pairs break the policy.
    pub offending: usize,
    /// The first such pair.
    pub first: Option<FloatPair>,
}

/// Applies the NaN/Inf policy to two equally long slices.
pub fn check_finite(candidate: &[f32], reference: &[f32]) -> FiniteReport {
    let mut report = FiniteReport {
        offending: 0,
        first: None,
    };
    for (index, (&c, &r)) in candidate.iter().zip(reference).enumerate() {
        if breaks_finite_policy(c, r) {
            report.offending += 1;
            report.first.get_or_insert(FloatPair {
                index,
                candidate: c,
                reference: r,
            });
        }
    }
    report
}

/// Result of `|candidate − reference| ≤ atol + rtol·|reference|` element-wise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CloseReport {
    /// Elements outside the tolerance (policy breaks included).
    pub violations: usize,
    /// The violation with the largest |Δ| / allowed ratio (infinite for policy breaks).
    pub worst: Option<(FloatPair, f64)>,
}

/// Compares two equally long slices under rtol/atol (rtol relative to the reference), after
/// the NaN/Inf policy: equal infinities pass, any other non-finite pair is a violation.
pub fn compare_close(candidate: &[f32], reference: &[f32], rtol: f64, atol: f64) -> CloseReport {
    let mut report = CloseReport {
        violations: 0,
        worst: None,
    };
    for (index, (&c, &r)) in candidate.iter().zip(reference).enumerate() {
        let ratio = if breaks_finite_policy(c, r) {
            f64::INFINITY
        } else if c == r {
            continue;
        } else {
            let diff = (f64::from(c) - f64::from(r)).abs();
            let allowed = atol + rtol * f64::from(r).abs();
            if diff <= allowed {
                continue;
            }
            if allowed > 0.0 {
                diff / allowed
            } else {
                f64::INFINITY
            }
        };
        report.violations += 1;
        let pair = FloatPair {
            index,
            candidate: c,
            reference: r,
        };
        if report.worst.is_none_or(|(_, worst)| ratio > worst) {
            report.worst = Some((pair, ratio));
        }
    }
    report
}

/// The largest |candidate − reference| and where it is; `None` for empty input.
/// Equal values (equal infinities included) count as 0; a NaN difference as infinite.
pub fn max_abs_diff(candidate: &[f32], reference: &[f32]) -> Option<(usize, f64)> {
    max_by_element(candidate, reference, |c, r| (c - r).abs())
}

/// The largest |candidate − reference| / |reference| and where it is; `None` for empty input.
/// A zero reference gives 0 when the candidate is zero too, infinity otherwise.
pub fn max_rel_diff(candidate: &[f32], reference: &[f32]) -> Option<(usize, f64)> {
    max_by_element(candidate, reference, |c, r| {
        if r == 0.0 {
            f64::INFINITY
        } else {
            (c - r).abs() / r.abs()
        }
    })
}

fn max_by_element(
    candidate: &[f32],
    reference: &[f32],
    measure: impl Fn(f64, f64) -> f64,
) -> Option<(usize, f64)> {
    let mut best: Option<(usize, f64)> = None;
    for (index, (&c, &r)) in candidate.iter().zip(reference).enumerate() {
        let value = if c == r {
            0.0
        } else {
            let value = measure(f64::from(c), f64::from(r));
            if value.is_nan() {
                f64::INFINITY
            } else {
                value
            }
        };
        if best.is_none_or(|(_, top)| value > top) {
            best = Some((index, value));
        }
    }
    best
}

/// Normalized mean squared error Σ(c−r)² / Σr². A zero reference gives 0 when the candidate
/// equals it, infinity otherwise.
pub fn nmse(candidate: &[f32], reference: &[f32]) -> f64 {
    let (mut err, mut energy) = (0.0f64, 0.0f64);
    for (&c, &r) in candidate.iter().zip(reference) {
        let (c, r) = (f64::from(c), f64::from(r));
        err += (c - r).powi(2);
        energy += r * r;
    }
    ratio_or_limit(err, energy)
}

/// Relative root mean squared error √(Σ(x̂−x)² / Σx²) of `approx` against `exact`, e.g. a
/// quantization round trip. A zero `exact` gives 0 when `approx` is zero too, infinity otherwise.
pub fn relative_rmse(approx: &[f32], exact: &[f32]) -> f64 {
    nmse(approx, exact).sqrt()
}

fn ratio_or_limit(numerator: f64, denominator: f64) -> f64 {
    if numerator == 0.0 {
        0.0
    } else if denominator == 0.0 {
        f64::INFINITY
    } else {
        numerator / denominator
    }
}

/// Pearson correlation in f64. When a side is constant the correlation is undefined: this
/// returns 1 if both sides are identical and 0 otherwise.
pub fn pearson(candidate: &[f32], reference: &[f32]) -> f64 {
    let n = candidate.len().min(reference.len()) as f64;
    let mean = |xs: &[f32]| xs.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let (mc, mr) = (mean(candidate), mean(reference));
    let (mut cov, mut vc, mut vr) = (0.0f64, 0.0f64, 0.0f64);
    for (&c, &r) in candidate.iter().zip(reference) {
        let (dc, dr) = (f64::from(c) - mc, f64::from(r) - mr);
        cov += dc * dr;
        vc += dc * dc;
        vr += dr * dr;
    }
    if vc == 0.0 || vr == 0.0 {
        return identical_or_zero(candidate, reference);
    }
    (cov / (vc * vr).sqrt()).clamp(-1.0, 1.0)
}

/// Cosine similarity in f64. A zero vector gives 1 if both are zero and 0 otherwise.
pub fn cosine(candidate: &[f32], reference: &[f32]) -> f64 {
    let (mut dot, mut nc, mut nr) = (0.0f64, 0.0f64, 0.0f64);
    for (&c, &r) in candidate.iter().zip(reference) {
        let (c, r) = (f64::from(c), f64::from(r));
        dot += c * r;
        nc += c * c;
        nr += r * r;
    }
    if nc == 0.0 || nr == 0.0 {
        return identical_or_zero(candidate, reference);
    }
    (dot / (nc * nr).sqrt()).clamp(-1.0, 1.0)
}

fn identical_or_zero(candidate: &[f32], reference: &[f32]) -> f64 {
    if candidate == reference {
        1.0
    } else {
        0.0
    }
}

/// log-softmax of a logits row in f64, shifted by the row maximum for stability.
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits
        .iter()
        .map(|&x| f64::from(x))
        .fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = logits.iter().map(|&x| (f64::from(x) - max).exp()).sum();
    let log_sum = max + sum.ln();
    logits.iter().map(|&x| f64::from(x) - log_sum).collect()
}

/// KL(P_reference ‖ P_candidate) between the softmaxes of two logits rows, in nats.
/// Terms where the reference probability is 0 contribute nothing.
pub fn kl_divergence(candidate: &[f32], reference: &[f32]) -> f64 {
    let log_q = log_softmax(candidate);
    let log_p = log_softmax(reference);
    let kl: f64 = log_p
        .iter()
        .zip(&log_q)
        .filter(|(lp, _)| lp.is_finite())
        .map(|(&lp, &lq)| lp.exp() * (lp - lq))
        .sum();
    kl.max(0.0)
}

/// Index of the largest value, the first one on ties; `None` for an empty row.
pub fn argmax(row: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (index, &x) in row.iter().enumerate() {
        if best.is_none_or(|(_, top)| x > top) {
            best = Some((index, x));
        }
    }
    best.map(|(index, _)| index)
}

/// Fraction of rows (each `vocab` wide) whose argmax is the same on both sides; 1 for no rows.
pub fn top1_agreement(candidate: &[f32], reference: &[f32], vocab: usize) -> f64 {
    let rows = candidate.chunks(vocab).zip(reference.chunks(vocab));
    let (mut same, mut total) = (0usize, 0usize);
    for (c, r) in rows {
        total += 1;
        if argmax(c) == argmax(r) {
            same += 1;
        }
    }
    if total == 0 {
        1.0
    } else {
        same as f64 / total as f64
    }
}

/// exp(mean NLL); NaN for no tokens.
pub fn perplexity(nll: &[f64]) -> f64 {
    (nll.iter().sum::<f64>() / nll.len() as f64).exp()
}

/// Pearson correlation of two f64 series (per-token NLLs); same degenerate rule as [`pearson`].
pub fn pearson_f64(candidate: &[f64], reference: &[f64]) -> f64 {
    let n = candidate.len().min(reference.len()) as f64;
    let mc = candidate.iter().sum::<f64>() / n;
    let mr = reference.iter().sum::<f64>() / n;
    let (mut cov, mut vc, mut vr) = (0.0f64, 0.0f64, 0.0f64);
    for (&c, &r) in candidate.iter().zip(reference) {
        cov += (c - mc) * (r - mr);
        vc += (c - mc).powi(2);
        vr += (r - mr).powi(2);
    }
    if vc == 0.0 || vr == 0.0 {
        return if candidate == reference { 1.0 } else { 0.0 };
    }
    (cov / (vc * vr).sqrt()).clamp(-1.0, 1.0)
}

/// How many tokens of context a [`Divergence`] keeps.
pub const DIVERGENCE_CONTEXT: usize = 8;

/// Where two token sequences first differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// 0-based position of the first difference.
    pub step: usize,
    /// The candidate's token there (`None` when it ended).
    pub candidate: Option<u32>,
    /// The reference's token there (`None` when it ended).
    pub reference: Option<u32>,
    /// Up to [`DIVERGENCE_CONTEXT`] agreed tokens just before `step`.
    pub context: Vec<u32>,
}

/// Exact match of two token sequences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMatch {
    /// Length of the longer sequence.
    pub compared: usize,
    /// Tokens before the first difference.
    pub matched_prefix: usize,
    /// The first difference, if any.
    pub divergence: Option<Divergence>,
}

impl TokenMatch {
    /// matched_prefix / compared; 1 for two empty sequences.
    pub fn rate(&self) -> f64 {
        if self.compared == 0 {
            1.0
        } else {
            self.matched_prefix as f64 / self.compared as f64
        }
    }
}

/// Compares token sequences; after the first difference the rest is not compared, since the
/// sequences no longer share a context.
pub fn token_match(candidate: &[u32], reference: &[u32]) -> TokenMatch {
    let compared = candidate.len().max(reference.len());
    let matched_prefix = candidate
        .iter()
        .zip(reference)
        .take_while(|(c, r)| c == r)
        .count();
    let divergence = (matched_prefix < compared).then(|| Divergence {
        step: matched_prefix,
        candidate: candidate.get(matched_prefix).copied(),
        reference: reference.get(matched_prefix).copied(),
        context: reference[matched_prefix.saturating_sub(DIVERGENCE_CONTEXT)..matched_prefix]
            .to_vec(),
    });
    TokenMatch {
        compared,
        matched_prefix,
        divergence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn exact_counts_every_difference_and_length_gap() {
        let diff = compare_exact(&[1u8, 2, 3, 4], &[1, 9, 3, 8]);
        assert_eq!((diff.mismatches, diff.first), (2, Some(1)));
        let diff = compare_exact(&[1u8, 2], &[1, 2, 3]);
        assert_eq!((diff.mismatches, diff.first), (1, Some(2)));
        let diff = compare_exact::<u32>(&[5, 6], &[5, 6]);
        assert_eq!((diff.mismatches, diff.first), (0, None));
    }

    #[test]
    fn finite_policy() {
        let inf = f32::INFINITY;
        assert!(!breaks_finite_policy(inf, inf));
        assert!(!breaks_finite_policy(-inf, -inf));
        assert!(breaks_finite_policy(inf, -inf));
        assert!(breaks_finite_policy(inf, 1.0));
        assert!(breaks_finite_policy(1.0, f32::NAN));
        assert!(breaks_finite_policy(f32::NAN, f32::NAN));
        let report = check_finite(&[1.0, f32::NAN, inf, 2.0], &[1.0, 1.0, inf, -inf]);
        assert_eq!(report.offending, 2);
        assert_eq!(report.first.unwrap().index, 1);
    }

    #[test]
    fn close_uses_atol_plus_rtol_of_reference() {
        // allowed at index 1: 0.1 + 0.01·10 = 0.2; |Δ| = 0.3 → ratio 1.5.
        // allowed at index 2: 0.1 + 0.01·1 = 0.11; |Δ| ≈ 0.1 → inside.
        let report = compare_close(&[0.0, 10.3, 1.1], &[0.0, 10.0, 1.0], 0.01, 0.1);
        assert_eq!(report.violations, 1);
        let (pair, ratio) = report.worst.unwrap();
        assert_eq!(pair.index, 1);
        assert!((ratio - 1.5).abs() < 1e-5, "{ratio}");
    }

    #[test]
    fn close_with_zero_tolerance_is_exact_and_flags_nan() {
        let report = compare_close(&[1.0, -0.0, f32::NAN], &[1.0, 0.0, 1.0], 0.0, 0.0);
        assert_eq!(report.violations, 1);
        assert_eq!(report.worst.unwrap().0.index, 2);
        assert!(report.worst.unwrap().1.is_infinite());
        let report = compare_close(&[1.0, 2.0], &[1.0, 2.5], 0.0, 0.0);
        assert_eq!(report.violations, 1);
    }

    #[test]
    fn max_abs_and_rel_with_index() {
        let c = [1.0, 2.5, -3.0, 0.0];
        let r = [1.0, 2.0, -2.0, 0.0];
        assert_eq!(max_abs_diff(&c, &r), Some((2, 1.0)));
        assert_eq!(max_rel_diff(&c, &r), Some((2, 0.5)));
        assert_eq!(max_rel_diff(&[1.0], &[0.0]), Some((0, f64::INFINITY)));
        assert_eq!(max_abs_diff(&[], &[]), None);
        let inf = f32::INFINITY;
        assert_eq!(max_abs_diff(&[inf], &[inf]), Some((0, 0.0)));
    }

    #[test]
    fn nmse_by_hand() {
        // Σ(c−r)² = 1 + 4 = 5, Σr² = 1 + 4 + 9 = 14.
        assert!(close(nmse(&[2.0, 4.0, 3.0], &[1.0, 2.0, 3.0]), 5.0 / 14.0));
        assert_eq!(nmse(&[0.0], &[0.0]), 0.0);
        assert_eq!(nmse(&[1.0], &[0.0]), f64::INFINITY);
        assert!(close(
            relative_rmse(&[2.0, 4.0, 3.0], &[1.0, 2.0, 3.0]),
            (5.0f64 / 14.0).sqrt()
        ));
    }

    #[test]
    fn pearson_by_hand() {
        assert!(close(pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]), 1.0));
        assert!(close(pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0));
        // c = [1,2,3,4], r = [1,3,2,4]: cov = 4, var_c = var_r = 5 → 0.8.
        assert!(close(
            pearson(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]),
            0.8
        ));
        assert_eq!(pearson(&[2.0, 2.0], &[2.0, 2.0]), 1.0);
        assert_eq!(pearson(&[2.0, 2.0], &[1.0, 3.0]), 0.0);
        assert!(close(
            pearson_f64(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]),
            0.8
        ));
        assert_eq!(pearson_f64(&[1.0, 1.0], &[1.0, 1.0]), 1.0);
    }

    #[test]
    fn cosine_by_hand() {
        // [1,0]·[1,1] = 1, norms 1 and √2.
        assert!(close(cosine(&[1.0, 0.0], &[1.0, 1.0]), 1.0 / 2f64.sqrt()));
        assert!(close(cosine(&[1.0, 2.0], &[-1.0, -2.0]), -1.0));
        assert_eq!(cosine(&[0.0, 0.0], &[0.0, 0.0]), 1.0);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }

    #[test]
    fn log_softmax_is_stable() {
        let ls = log_softmax(&[1000.0, 1000.0]);
        assert!(close(ls[0], -(2f64.ln())));
        assert!(close(ls[1], -(2f64.ln())));
    }

    #[test]
    fn kl_by_hand() {
        // reference logits [0, ln 3] → p = [1/4, 3/4]; candidate [0, 0] → q = [1/2, 1/2].
        // KL = 1/4·ln(1/2) + 3/4·ln(3/2).
        let want = 0.25 * 0.5f64.ln() + 0.75 * 1.5f64.ln();
        let got = kl_divergence(&[0.0, 0.0], &[0.0, 3f32.ln()]);
        assert!((got - want).abs() < 1e-7, "{got} vs {want}");
        assert_eq!(kl_divergence(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]), 0.0);
        // Shifting all logits leaves the distribution and the divergence unchanged.
        assert!(kl_divergence(&[101.0, 102.0], &[1.0, 2.0]) < 1e-12);
        // A token impossible for the reference contributes nothing.
        let got = kl_divergence(&[0.0, 0.0], &[0.0, f32::NEG_INFINITY]);
        assert!(close(got, 2f64.ln()));
    }

    #[test]
    fn argmax_and_top1() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), Some(1));
        assert_eq!(argmax(&[]), None);
        let c = [0.0, 1.0, 5.0, 0.0, 0.0, 2.0];
        let r = [0.0, 2.0, 1.0, 0.0, 0.0, 3.0];
        assert!(close(top1_agreement(&c, &r, 3), 0.5));
        assert_eq!(top1_agreement(&[], &[], 3), 1.0);
    }

    #[test]
    fn perplexity_by_hand() {
        let nll = [2f64.ln(), 8f64.ln()];
        // exp(mean(ln 2, ln 8)) = exp(ln 4) = 4.
        assert!(close(perplexity(&nll), 4.0));
        assert!(perplexity(&[]).is_nan());
    }

    #[test]
    fn token_match_reports_first_divergence_with_context() {
        let m = token_match(&[1, 2, 3, 4, 9, 6], &[1, 2, 3, 4, 5, 6]);
        assert_eq!(m.matched_prefix, 4);
        assert!(close(m.rate(), 4.0 / 6.0));
        let d = m.divergence.unwrap();
        assert_eq!((d.step, d.candidate, d.reference), (4, Some(9), Some(5)));
        assert_eq!(d.context, [1, 2, 3, 4]);
        let m = token_match(&[1, 2], &[1, 2, 3]);
        assert_eq!(m.divergence.unwrap().candidate, None);
        let m = token_match(&[7; 3], &[7; 3]);
        assert_eq!((m.rate(), m.divergence), (1.0, None));
        let long: Vec<u32> = (0..20).collect();
        let d = token_match(&long[..15], &long).divergence.unwrap();
        assert_eq!(d.context, (7..15).collect::<Vec<_>>());
    }
}
