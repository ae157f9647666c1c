//! What happened to each trial, collected for the summary, the receipt and JUnit.

use bitnet_conformance::tolerance::Bound;
use bitnet_conformance::verdict::{Check, Measurement, Verdict};
use serde::Serialize;

/// How a trial ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum Status {
    /// Every check passed.
    Passed,
    /// Failed as the xfail list expects.
    ExpectedFailure(String),
    /// At least one check failed, or the trial could not run.
    Failed(String),
    /// Not run, with the reason.
    Ignored(String),
}

/// One trial's record.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// `kind/case-id::candidate~reference`, or the name of a failing file.
    pub name: String,
    /// The case kind, or what failed before any case (`discovery`, `xfail`).
    pub kind: String,
    /// `candidate~reference`, empty for file failures.
    pub pair: String,
    /// The outcome.
    #[serde(flatten)]
    pub status: Status,
    /// Every measurement with its bound and source, when the trial got that far.
    pub verdict: Option<Verdict>,
    /// Wall time of the trial.
    pub seconds: f64,
}

impl Record {
    /// The measurement closest to (or furthest past) its bound.
    pub fn worst(&self) -> Option<(f64, &Measurement)> {
        self.verdict
            .as_ref()?
            .measurements
            .iter()
            .filter(|m| matches!(m.check, Check::Metric(_)))
            .map(|m| (bound_use(m), m))
            .max_by(|a, b| a.0.total_cmp(&b.0))
    }
}

/// How much of its bound a measurement uses: 0 is perfect, above 1 fails.
pub fn bound_use(m: &Measurement) -> f64 {
    match m.bound {
        Bound::Max(limit) if limit > 0.0 => m.value / limit,
        Bound::Min(limit) if limit < 1.0 => ((1.0 - m.value) / (1.0 - limit)).max(0.0),
        Bound::Max(_) | Bound::Min(_) | Bound::Close { .. } | Bound::Exact => {
            if m.passed {
                0.0
            } else {
                f64::INFINITY
            }
        }
    }
}

/// A measured value for people: integers as such, others with four significant digits.
pub fn show_value(x: f64) -> String {
    if x.is_finite() && x == x.trunc() && x.abs() < 1e15 {
        format!("{x}")
    } else if (1e-3..1e4).contains(&x.abs()) {
        format!("{x:.4}")
    } else {
        format!("{x:.3e}")
    }
}
