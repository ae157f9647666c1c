//! `tolerance.yaml`: a default bound for every kind × metric, then ordered overrides.
//!
//! ```yaml
//! defaults:
//!   logits:
//!     max_abs: {max: 1.0e-4}          # value ≤ bound
//!     pearson: {min: 0.95}            # value ≥ bound
//!   quantization:
//!     dequantized: {rtol: 1.0e-5, atol: 0}   # |Δ| ≤ atol + rtol·|reference|, per element
//!     packed_bytes: exact
//! overrides:
//!   - match: {kind: logits, pair: engine-cuda~cpp}   # kind, pair, format, device, case
//!     bounds:
//!       max_abs: {max: 2.0e-3}
//!     reason: CUDA sums in another order
//! ```
//!
//! Every metric of every kind needs a default. For a (case, pair, metric) the last matching
//! override that sets the metric wins, else the default; the answer names its source.

mod file;
mod metric;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use metric::{Bound, BoundShape, Metric};

use crate::case::{BackendPair, Case, CaseKind, Device, QuantFormat};
use crate::yaml::{split_error, Outline};
use file::{check_override, ToleranceFile};

/// Where a bound came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum BoundSource {
    /// `defaults.<kind>.<metric>`.
    Default {
        /// The metric whose default applied.
        metric: Metric,
    },
    /// The `number`-th override (1-based) of the file.
    Override {
        /// Position in `overrides:`, from 1.
        number: usize,
        /// The tolerance file.
        path: PathBuf,
        /// Line where the override starts.
        line: usize,
        /// Its `reason:`.
        reason: String,
    },
    /// A fixed rule of the harness, not tunable.
    Policy {
        /// The rule, in words.
        rule: &'static str,
    },
}

impl fmt::Display for BoundSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoundSource::Default { metric } => write!(f, "defaults.{}.{metric}", metric.kind()),
            BoundSource::Override {
                number,
                path,
                line,
                reason,
            } => write!(
                f,
                "override #{number} ({}:{line}): {reason}",
                path.display()
            ),
            BoundSource::Policy { rule } => write!(f, "policy: {rule}"),
        }
    }
}

/// A bound together with its source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resolved {
    /// The bound.
    pub bound: Bound,
    /// Where it came from.
    pub source: BoundSource,
}

/// Which trials an override applies to; every given field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// The case kind.
    pub kind: Option<CaseKind>,
    /// The exact backend pair.
    pub pair: Option<BackendPair>,
    /// The quantization format (quantization cases only).
    pub format: Option<QuantFormat>,
    /// The pair's device: `cuda` when either side runs on CUDA.
    pub device: Option<Device>,
    /// The case id.
    pub case: Option<String>,
}

impl Match {
    /// Whether this matches `case` compared through `pair`.
    pub fn matches(&self, case: &Case, pair: BackendPair) -> bool {
        self.kind.is_none_or(|kind| kind == case.kind())
            && self.pair.is_none_or(|p| p == pair)
            && self.format.is_none_or(|f| case.format() == Some(f))
            && self.device.is_none_or(|d| d == pair.device())
            && self.case.as_ref().is_none_or(|id| *id == case.id)
    }

    fn is_empty(&self) -> bool {
        *self == Match::default()
    }
}

/// One entry of `overrides:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// 1-based position in the list.
    pub number: usize,
    /// Line where it starts.
    pub line: usize,
    /// Which trials it applies to.
    pub matcher: Match,
    /// The bounds it sets.
    pub bounds: BTreeMap<Metric, Bound>,
    /// Why the defaults do not fit these trials.
    pub reason: String,
}

/// A `tolerance.yaml` that is missing, malformed, or incomplete.
#[derive(Debug, thiserror::Error)]
pub enum ToleranceError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        source: io::Error,
    },
    /// The content is wrong at a line.
    #[error("{path}:{line}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// The loaded tolerance table.
#[derive(Debug, Clone, PartialEq)]
pub struct Tolerances {
    path: PathBuf,
    defaults: BTreeMap<Metric, Bound>,
    overrides: Vec<Override>,
}

impl Tolerances {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Tolerances, ToleranceError> {
        let text = std::fs::read_to_string(path).map_err(|source| ToleranceError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Tolerances::parse(path, &text)
    }

    /// Parses `text`; `path` is only used in messages and bound sources.
    pub fn parse(path: &Path, text: &str) -> Result<Tolerances, ToleranceError> {
        let invalid = |line: usize, message: String| ToleranceError::Invalid {
            path: path.to_path_buf(),
            line,
            message,
        };
        let file: ToleranceFile = serde_yaml::from_str(text).map_err(|err| {
            let (position, message) = split_error(&err);
            invalid(position.map_or(1, |(line, _)| line), message)
        })?;
        let outline = Outline::parse(text).map_err(|message| invalid(1, message))?;

        let defaults_line = outline.key_line("defaults").unwrap_or(1);
        let mut defaults = BTreeMap::new();
        for kind in CaseKind::ALL {
            let Some(table) = file.defaults.0.get(&kind) else {
                return Err(invalid(
                    defaults_line,
                    format!("defaults lacks kind `{kind}`"),
                ));
            };
            let kind_line = outline
                .get("defaults")
                .and_then(|n| n.key_line(kind.name()))
                .unwrap_or(defaults_line);
            for metric in Metric::of_kind(kind) {
                let bound = table.get(&metric).ok_or_else(|| {
                    invalid(kind_line, format!("defaults.{kind} lacks `{metric}`"))
                })?;
                defaults.insert(metric, *bound);
            }
        }

        let override_lines = outline.get("overrides").map(Outline::items).unwrap_or(&[]);
        let mut overrides = Vec::new();
        for (index, raw) in file.overrides.into_iter().enumerate() {
            let number = index + 1;
            let line = override_lines.get(index).map_or(1, |n| n.line);
            check_override(&raw)
                .map_err(|message| invalid(line, format!("override #{number}: {message}")))?;
            overrides.push(Override {
                number,
                line,
                matcher: raw.matcher,
                bounds: raw.bounds,
                reason: raw.reason.trim().to_string(),
            });
        }
        Ok(Tolerances {
            path: path.to_path_buf(),
            defaults,
            overrides,
        })
    }

    /// The bound for `metric` when `case` is compared through `pair`, and its source.
    pub fn resolve(&self, case: &Case, pair: BackendPair, metric: Metric) -> Resolved {
        let chosen = self.overrides.iter().rev().find_map(|o| {
            let bound = o.bounds.get(&metric)?;
            o.matcher.matches(case, pair).then_some((o, bound))
        });
        match chosen {
            Some((o, bound)) => Resolved {
                bound: *bound,
                source: BoundSource::Override {
                    number: o.number,
                    path: self.path.clone(),
                    line: o.line,
                    reason: o.reason.clone(),
                },
            },
            None => Resolved {
                bound: self.defaults[&metric],
                source: BoundSource::Default { metric },
            },
        }
    }

    /// The overrides, in file order.
    pub fn overrides(&self) -> &[Override] {
        &self.overrides
    }

    /// Overrides naming a case id that no case has: usually a renamed or deleted case.
    pub fn stale_overrides(&self, cases: &[Case]) -> Vec<ToleranceError> {
        self.overrides
            .iter()
            .filter_map(|o| {
                let id = o.matcher.case.as_ref()?;
                (!cases.iter().any(|c| c.id == *id)).then(|| ToleranceError::Invalid {
                    path: self.path.clone(),
                    line: o.line,
                    message: format!("override #{}: no case has id `{id}`", o.number),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::parse_case_file;

    /// A complete `defaults:` block giving every metric a recognisable bound.
    fn defaults_yaml() -> String {
        let mut text = String::from("defaults:\n");
        for kind in CaseKind::ALL {
            text.push_str(&format!("  {kind}:\n"));
            for metric in Metric::of_kind(kind) {
                let bound = match metric.shape() {
                    BoundShape::Max => "{max: 1.0}",
                    BoundShape::Min => "{min: 0.5}",
                    BoundShape::Close => "{rtol: 1.0e-5, atol: 0}",
                    BoundShape::Exact => "exact",
                };
                text.push_str(&format!("    {metric}: {bound}\n"));
            }
        }
        text
    }

    fn parse(text: &str) -> Result<Tolerances, ToleranceError> {
        Tolerances::parse(Path::new("tolerance.yaml"), text)
    }

    fn error_of(text: &str) -> (usize, String) {
        match parse(text).unwrap_err() {
            ToleranceError::Invalid { line, message, .. } => (line, message),
            other => panic!("unexpected {other}"),
        }
    }

    fn case(kind: CaseKind, text: &str) -> Case {
        parse_case_file(kind, Path::new("fixtures/x.yaml"), text)
            .unwrap()
            .remove(0)
    }

    fn logits_case(id: &str) -> Case {
        let text =
            format!("- id: {id}\n  backends: [engine-cpu~cpp]\n  model: m.gguf\n  prompts: [hi]\n");
        case(CaseKind::Logits, &text)
    }

    fn pair(text: &str) -> BackendPair {
        text.parse().unwrap()
    }

    #[test]
    fn defaults_apply_without_overrides() {
        let tolerances = parse(&defaults_yaml()).unwrap();
        let resolved =
            tolerances.resolve(&logits_case("a"), pair("engine-cpu~cpp"), Metric::MaxAbs);
        assert_eq!(resolved.bound, Bound::Max(1.0));
        assert_eq!(resolved.source.to_string(), "defaults.logits.max_abs");
        let resolved =
            tolerances.resolve(&logits_case("a"), pair("engine-cpu~cpp"), Metric::Pearson);
        assert_eq!(resolved.bound, Bound::Min(0.5));
    }

    #[test]
    fn last_matching_override_wins_and_names_itself() {
        let text = format!(
            "{}overrides:\n\
             \x20 - match: {{kind: logits}}\n\
             \x20   bounds: {{max_abs: {{max: 2.0}}}}\n\
             \x20   reason: first\n\
             \x20 - match: {{pair: engine-cuda~cpp}}\n\
             \x20   bounds: {{max_abs: {{max: 3.0}}}}\n\
             \x20   reason: cuda order\n\
             \x20 - match: {{case: b, device: cpu}}\n\
             \x20   bounds: {{max_abs: {{max: 4.0}}, nmse: {{max: 0.5}}}}\n\
             \x20   reason: case b is noisy\n",
            defaults_yaml()
        );
        let first_line = defaults_yaml().lines().count() + 2;
        let tolerances = parse(&text).unwrap();
        let (a, b) = (logits_case("a"), logits_case("b"));
        let cpu = pair("engine-cpu~cpp");
        let cuda = pair("engine-cuda~cpp");

        let r = tolerances.resolve(&a, cpu, Metric::MaxAbs);
        assert_eq!(r.bound, Bound::Max(2.0));
        assert_eq!(
            r.source.to_string(),
            format!("override #1 (tolerance.yaml:{first_line}): first")
        );
        let r = tolerances.resolve(&a, cuda, Metric::MaxAbs);
        assert_eq!(r.bound, Bound::Max(3.0));
        assert_eq!(
            r.source.to_string(),
            format!(
                "override #2 (tolerance.yaml:{}): cuda order",
                first_line + 3
            )
        );
        assert_eq!(
            tolerances.resolve(&b, cpu, Metric::MaxAbs).bound,
            Bound::Max(4.0)
        );
        // Override #3 needs a CPU pair, so #2 is the last match for b on CUDA.
        assert_eq!(
            tolerances.resolve(&b, cuda, Metric::MaxAbs).bound,
            Bound::Max(3.0)
        );
        // A matching override that does not set the metric leaves earlier choices alone.
        let r = tolerances.resolve(&a, cuda, Metric::Nmse);
        assert_eq!(r.source.to_string(), "defaults.logits.nmse");
        assert_eq!(
            tolerances.resolve(&b, cpu, Metric::Nmse).bound,
            Bound::Max(0.5)
        );
    }

    #[test]
    fn format_match_applies_to_quantization_cases_only() {
        let text = format!(
            "{}overrides:\n  - match: {{format: TQ2_0}}\n    bounds: {{dequantized: {{rtol: 1.0e-3, atol: 1.0e-6}}}}\n    reason: f16 scale\n",
            defaults_yaml()
        );
        let tolerances = parse(&text).unwrap();
        let quant = |format: &str| {
            case(
                CaseKind::Quantization,
                &format!(
                    "- id: q\n  backends: [engine-cpu~cpp]\n  format: {format}\n  \
                     shape: {{rows: 1, cols: 256}}\n  input: {{ternary: {{seed: 1}}}}\n"
                ),
            )
        };
        let cpu = pair("engine-cpu~cpp");
        assert_eq!(
            tolerances
                .resolve(&quant("TQ2_0"), cpu, Metric::Dequantized)
                .bound,
            Bound::Close {
                rtol: 1e-3,
                atol: 1e-6
            }
        );
        assert_eq!(
            tolerances
                .resolve(&quant("I2_S"), cpu, Metric::Dequantized)
                .source,
            BoundSource::Default {
                metric: Metric::Dequantized
            }
        );
    }

    #[test]
    fn unknown_metric_is_an_error_at_its_line() {
        let text = defaults_yaml().replace("    nmse:", "    nmsee:");
        let (line, message) = error_of(&text);
        let expected = defaults_yaml()
            .lines()
            .position(|l| l.contains("nmse:"))
            .unwrap()
            + 1;
        assert_eq!(line, expected);
        assert!(message.contains("unknown metric `nmsee`"), "{message}");
        assert!(message.contains("max_abs"), "{message}");
    }

    #[test]
    fn metric_under_the_wrong_kind_is_an_error() {
        let text = defaults_yaml().replace(
            "    tensor_table:",
            "    max_abs: {max: 1}\n    tensor_table:",
        );
        let (_, message) = error_of(&text);
        assert!(
            message.contains("metric `max_abs` belongs to logits, not alignment"),
            "{message}"
        );
    }

    #[test]
    fn bound_of_the_wrong_shape_is_an_error() {
        let text = defaults_yaml().replace("pearson: {min: 0.5}", "pearson: {max: 0.5}");
        let (line, message) = error_of(&text);
        let expected = defaults_yaml()
            .lines()
            .position(|l| l.contains("pearson:"))
            .unwrap()
            + 1;
        assert_eq!(line, expected);
        assert!(
            message.contains("`pearson` takes {min: <value>}"),
            "{message}"
        );
        let text = defaults_yaml().replace("packed_bytes: exact", "packed_bytes: loose");
        assert!(error_of(&text).1.contains("`loose` is not a bound"));
    }

    #[test]
    fn rtol_and_atol_travel_together() {
        let text = defaults_yaml().replace("dot: {rtol: 1.0e-5, atol: 0}", "dot: {rtol: 1.0e-5}");
        assert!(error_of(&text).1.contains("rtol and atol travel together"));
        let text =
            defaults_yaml().replace("dot: {rtol: 1.0e-5, atol: 0}", "dot: {rtol: -1, atol: 0}");
        assert!(error_of(&text).1.contains("not negative"));
    }

    #[test]
    fn missing_defaults_are_errors() {
        let text = defaults_yaml().replace("    kl_max: {max: 1.0}\n", "");
        let (line, message) = error_of(&text);
        let logits_line = defaults_yaml()
            .lines()
            .position(|l| l == "  logits:")
            .unwrap()
            + 1;
        assert_eq!(
            (line, message.as_str()),
            (logits_line, "defaults.logits lacks `kl_max`")
        );
        let (_, message) = error_of("defaults:\n  logits: {}\n");
        assert!(message.starts_with("defaults lacks kind"), "{message}");
    }

    #[test]
    fn unknown_keys_are_errors_with_lines() {
        let text = format!("{}extra: 1\n", defaults_yaml());
        let (line, message) = error_of(&text);
        assert_eq!(line, defaults_yaml().lines().count() + 1);
        assert!(message.contains("unknown field `extra`"), "{message}");
        let text = format!(
            "{}overrides:\n  - match: {{kind: logits, backend: cpp}}\n    bounds: {{}}\n    reason: x\n",
            defaults_yaml()
        );
        let (line, message) = error_of(&text);
        assert_eq!(line, defaults_yaml().lines().count() + 2);
        assert!(message.contains("unknown field `backend`"), "{message}");
    }

    #[test]
    fn overrides_need_reason_match_and_consistent_metrics() {
        let with = |body: &str| format!("{}overrides:\n  - {body}\n", defaults_yaml());
        let line = defaults_yaml().lines().count() + 2;
        let cases = [
            (
                "{match: {kind: logits}, bounds: {nmse: {max: 1}}, reason: '  '}",
                "override #1: `reason` must say why the defaults do not fit",
            ),
            (
                "{match: {}, bounds: {nmse: {max: 1}}, reason: r}",
                "override #1: `match` is empty: change the defaults instead",
            ),
            (
                "{match: {kind: logits}, bounds: {}, reason: r}",
                "override #1: `bounds` is empty",
            ),
            (
                "{match: {kind: quantization}, bounds: {nmse: {max: 1}}, reason: r}",
                "override #1: metric `nmse` belongs to logits, but the override matches kind quantization",
            ),
            (
                "{match: {kind: logits, format: I2_S}, bounds: {nmse: {max: 1}}, reason: r}",
                "override #1: `format` only applies to quantization cases, not logits",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(error_of(&with(body)), (line, want.to_string()), "{body}");
        }
        let (_, message) = error_of(&with("{match: {kind: logits}, bounds: {nmse: {max: 1}}}"));
        assert!(message.contains("missing field `reason`"), "{message}");
    }

    #[test]
    fn stale_case_overrides_are_reported() {
        let text = format!(
            "{}overrides:\n  - match: {{case: gone}}\n    bounds: {{nmse: {{max: 1}}}}\n    reason: r\n",
            defaults_yaml()
        );
        let tolerances = parse(&text).unwrap();
        let stale = tolerances.stale_overrides(&[logits_case("a")]);
        assert_eq!(stale.len(), 1);
        assert!(stale[0]
            .to_string()
            .ends_with("override #1: no case has id `gone`"));
        assert!(tolerances
            .stale_overrides(&[logits_case("gone")])
            .is_empty());
    }

    #[test]
    fn bounds_admit_values() {
        assert!(Bound::Max(1.0).admits(1.0));
        assert!(!Bound::Max(1.0).admits(1.5));
        assert!(!Bound::Max(1.0).admits(f64::NAN));
        assert!(Bound::Min(0.9).admits(0.95));
        assert!(!Bound::Min(0.9).admits(f64::NAN));
        assert!(Bound::Exact.admits(0.0));
        assert!(!Bound::Exact.admits(1.0));
        assert_eq!(Bound::Max(1e-4).to_string(), "≤ 1e-4");
        assert_eq!(
            Bound::Close {
                rtol: 1e-5,
                atol: 0.0
            }
            .to_string(),
            "|Δ| ≤ 0 + 1e-5·|reference| per element"
        );
    }

    #[test]
    fn metric_names_are_unique_and_round_trip() {
        for metric in Metric::ALL {
            assert_eq!(Metric::from_name(metric.name()), Some(*metric));
        }
        assert_eq!(Metric::of_kind(CaseKind::Logits).count(), 7);
    }
}
