//! Verdicts: every measurement of a trial against its bound, failures collected, never cut
//! short at the first.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::case::{BackendPair, Case, Location};
use crate::tolerance::{Bound, BoundSource, Metric, Resolved, Tolerances};
use crate::trial::trial_name;

/// What a measurement checked: a tunable metric, or a fixed rule of the harness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// A metric bounded in `tolerance.yaml`.
    Metric(Metric),
    /// NaN on either side, or an infinity not matched by the same infinity.
    Finite,
    /// Outputs that cannot be compared element by element (counts, lengths, widths).
    Shape,
    /// Inputs the two sides tokenized differently, so only the agreeing prefix is compared.
    Tokens,
}

impl Check {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Check::Metric(metric) => metric.name(),
            Check::Finite => "finite",
            Check::Shape => "shape",
            Check::Tokens => "tokens",
        }
    }
}

impl Check {
    /// The check called `name`: a metric name, `finite`, `shape` or `tokens`.
    pub fn from_name(name: &str) -> Option<Check> {
        match name {
            "finite" => Some(Check::Finite),
            "shape" => Some(Check::Shape),
            "tokens" => Some(Check::Tokens),
            _ => Metric::from_name(name).map(Check::Metric),
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Check {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// One measured value against its bound.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measurement {
    /// What was measured.
    pub check: Check,
    /// The value; for `Close`/`Exact` bounds, the number of elements outside the bound.
    pub value: f64,
    /// The bound it was held to.
    pub bound: Bound,
    /// Where the bound came from.
    pub source: BoundSource,
    /// Whether the value is within the bound.
    pub passed: bool,
    /// Worst elements, first divergence, or other context; may be empty.
    pub detail: String,
}

/// All measurements of one trial.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// `kind/case-id::candidate~reference`.
    pub trial: String,
    /// Where the case is written.
    pub location: Location,
    /// The compared backends.
    pub pair: BackendPair,
    /// Every measurement, in the order they were taken.
    pub measurements: Vec<Measurement>,
    /// What diagnostics run after a failure found (e.g. the divergence localizer's first
    /// divergent op); informative only, never a check.
    pub diagnosis: Vec<String>,
}

impl Verdict {
    /// Whether every measurement passed.
    pub fn passed(&self) -> bool {
        self.measurements.iter().all(|m| m.passed)
    }

    /// The measurements that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Measurement> {
        self.measurements.iter().filter(|m| !m.passed)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.measurements.len();
        let failed = self.failures().count();
        if failed == 0 {
            return write!(
                f,
                "{}: all {total} checks passed ({})",
                self.trial, self.location
            );
        }
        writeln!(f, "{}: {failed} of {total} checks failed", self.trial)?;
        writeln!(
            f,
            "  case {}, candidate {}, reference {}",
            self.location, self.pair.candidate, self.pair.reference
        )?;
        for m in self.failures() {
            writeln!(
                f,
                "  ✗ {} = {}, bound {} [{}]",
                m.check,
                number(m.value),
                m.bound,
                m.source
            )?;
            for line in m.detail.lines() {
                writeln!(f, "      {line}")?;
            }
        }
        for finding in &self.diagnosis {
            writeln!(f, "  → {finding}")?;
        }
        write!(
            f,
            "  bounds live in tolerance.yaml: loosen one only through an override with a reason"
        )
    }
}

/// How a trial ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every check passed.
    Passed(Verdict),
    /// At least one check failed.
    Failed(Verdict),
    /// Failed as the xfail list expects; counts as success.
    ExpectedFailure {
        /// The failing verdict.
        verdict: Verdict,
        /// The xfail entry that expects it.
        xfail: Location,
        /// The entry's reason.
        reason: String,
    },
    /// Listed as an expected failure but passed; counts as a failure until the entry goes.
    UnexpectedPass {
        /// The passing verdict.
        verdict: Verdict,
        /// The xfail entry to remove.
        xfail: Location,
    },
    /// Not run, and so not passed: a need is unmet or a backend cannot do the case.
    Unsupported {
        /// Why, in words.
        reason: String,
    },
}

impl Outcome {
    /// Whether the runner must report this trial as failed.
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Failed(_) | Outcome::UnexpectedPass { .. })
    }
}

impl From<Verdict> for Outcome {
    fn from(verdict: Verdict) -> Outcome {
        if verdict.passed() {
            Outcome::Passed(verdict)
        } else {
            Outcome::Failed(verdict)
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Passed(verdict) | Outcome::Failed(verdict) => verdict.fmt(f),
            Outcome::ExpectedFailure {
                verdict,
                xfail,
                reason,
            } => write!(f, "expected failure ({xfail}: {reason})\n{verdict}"),
            Outcome::UnexpectedPass { verdict, xfail } => write!(
                f,
                "{}: passed, but {xfail} expects it to fail: remove the xfail",
                verdict.trial
            ),
            Outcome::Unsupported { reason } => write!(f, "unsupported: {reason}"),
        }
    }
}

/// Collects the measurements of one trial, resolving each metric's bound.
pub struct VerdictBuilder<'a> {
    case: &'a Case,
    pair: BackendPair,
    tolerances: &'a Tolerances,
    measurements: Vec<Measurement>,
}

impl<'a> VerdictBuilder<'a> {
    /// Starts a verdict for `case` compared through `pair`.
    pub fn new(case: &'a Case, pair: BackendPair, tolerances: &'a Tolerances) -> Self {
        VerdictBuilder {
            case,
            pair,
            tolerances,
            measurements: Vec::new(),
        }
    }

    /// The bound that applies to `metric` in this trial.
    pub fn resolve(&self, metric: Metric) -> Resolved {
        self.tolerances.resolve(self.case, self.pair, metric)
    }

    /// Records `value` for `metric` against its resolved bound.
    pub fn metric(&mut self, metric: Metric, value: f64, detail: impl Into<String>) {
        let resolved = self.resolve(metric);
        self.push(Check::Metric(metric), value, resolved, detail.into());
    }

    /// Records a fixed-rule check that fails when `violations` is not zero.
    pub fn policy(
        &mut self,
        check: Check,
        rule: &'static str,
        violations: usize,
        detail: impl Into<String>,
    ) {
        let resolved = Resolved {
            bound: Bound::Exact,
            source: BoundSource::Policy { rule },
        };
        self.push(check, violations as f64, resolved, detail.into());
    }

    fn push(&mut self, check: Check, value: f64, resolved: Resolved, detail: String) {
        self.measurements.push(Measurement {
            check,
            value,
            passed: resolved.bound.admits(value),
            bound: resolved.bound,
            source: resolved.source,
            detail,
        });
    }

    /// The finished verdict.
    pub fn finish(self) -> Verdict {
        Verdict {
            diagnosis: Vec::new(),
            trial: trial_name(self.case, self.pair),
            location: self.case.location.clone(),
            pair: self.pair,
            measurements: self.measurements,
        }
    }
}

/// A number for people: integers as such, moderate values with up to 6 decimals, others in
/// scientific notation.
pub(crate) fn number(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x == x.trunc() && x.abs() < 1e15 {
        return format!("{x}");
    }
    let abs = x.abs();
    if (1e-3..1e6).contains(&abs) {
        let text = format!("{x:.6}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        let text = format!("{x:.3e}");
        match text.split_once('e') {
            Some((mantissa, exponent)) => {
                let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
                format!("{mantissa}e{exponent}")
            }
            None => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(0.0), "0");
        assert_eq!(number(12.0), "12");
        assert_eq!(number(0.95), "0.95");
        assert_eq!(number(1e-4), "1e-4");
        assert_eq!(number(3.2e-7), "3.2e-7");
        assert_eq!(number(0.123456789), "0.123457");
        assert_eq!(number(f64::INFINITY), "inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(2.5e9), "2500000000");
        assert_eq!(number(2.5e20), "2.5e20");
    }
}
