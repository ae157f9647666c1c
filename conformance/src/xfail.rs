//! Expected failures, kept in one reviewed file and checked both ways: a listed trial that
//! fails as listed counts as success, and a listed trial that passes fails until its entry is
//! removed.
//!
//! ```yaml
//! - trial: logits/tiny-prompts::engine-cuda~cpp
//!   checks: [max_abs, nmse]      # optional: only these may fail
//!   reason: CUDA RMSNorm sums in f32 (issue 14)
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::case::Location;
use crate::verdict::{Check, Outcome, Verdict};
use crate::yaml::{split_error, Outline};

/// One expected failure.
#[derive(Debug, Clone, PartialEq)]
pub struct Xfail {
    /// Where the entry is written.
    pub location: Location,
    /// The checks allowed to fail; any failing check when empty.
    pub checks: Vec<Check>,
    /// Why the failure is accepted for now.
    pub reason: String,
}

/// The xfail list, by trial name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Xfails(BTreeMap<String, Xfail>);

/// An xfail file that cannot be read or is malformed.
#[derive(Debug, thiserror::Error)]
pub enum XfailError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    trial: String,
    #[serde(default)]
    checks: Vec<Check>,
    reason: String,
}

impl<'de> Deserialize<'de> for Check {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CheckName;
        impl Visitor<'_> for CheckName {
            type Value = Check;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a metric name, `finite`, `shape` or `tokens`")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Check, E> {
                Check::from_name(name).ok_or_else(|| {
                    E::custom(format!(
                        "unknown check `{name}`: use a metric name, `finite`, `shape` or `tokens`"
                    ))
                })
            }
        }
        deserializer.deserialize_str(CheckName)
    }
}

impl Xfails {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Xfails, XfailError> {
        let text = std::fs::read_to_string(path).map_err(|source| XfailError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Xfails::parse(path, &text)
    }

    /// Parses `text`, a YAML list of entries; an empty text lists nothing.
    pub fn parse(path: &Path, text: &str) -> Result<Xfails, XfailError> {
        let invalid = |line: usize, message: String| XfailError::Invalid {
            path: path.to_path_buf(),
            line,
            message,
        };
        let entries: Option<Vec<Entry>> = serde_yaml::from_str(text).map_err(|err| {
            let (position, message) = split_error(&err);
            invalid(position.map_or(1, |(line, _)| line), message)
        })?;
        let outline = Outline::parse(text).map_err(|message| invalid(1, message))?;
        let mut xfails = BTreeMap::new();
        for (index, entry) in entries.unwrap_or_default().into_iter().enumerate() {
            let line = outline.items().get(index).map_or(1, |n| n.line);
            if entry.reason.trim().is_empty() {
                return Err(invalid(
                    line,
                    "`reason` must say why the failure is accepted".into(),
                ));
            }
            let xfail = Xfail {
                location: Location {
                    path: path.to_path_buf(),
                    line,
                },
                checks: entry.checks,
                reason: entry.reason.trim().to_string(),
            };
            if let Some(first) = xfails.insert(entry.trial.clone(), xfail) {
                return Err(invalid(
                    line,
                    format!("`{}` is already listed at {}", entry.trial, first.location),
                ));
            }
        }
        Ok(Xfails(xfails))
    }

    /// The entry for `trial`, if listed.
    pub fn get(&self, trial: &str) -> Option<&Xfail> {
        self.0.get(trial)
    }

    /// The outcome of `verdict` once the list is taken into account. A listed trial whose
    /// failures include a check outside its `checks` stays a plain failure.
    pub fn judge(&self, verdict: Verdict) -> Outcome {
        let Some(xfail) = self.0.get(&verdict.trial) else {
            return Outcome::from(verdict);
        };
        if verdict.passed() {
            return Outcome::UnexpectedPass {
                verdict,
                xfail: xfail.location.clone(),
            };
        }
        let expected = |check: Check| xfail.checks.is_empty() || xfail.checks.contains(&check);
        if verdict.failures().all(|m| expected(m.check)) {
            Outcome::ExpectedFailure {
                verdict,
                xfail: xfail.location.clone(),
                reason: xfail.reason.clone(),
            }
        } else {
            Outcome::Failed(verdict)
        }
    }

    /// Entries naming no trial in `trials`: stale, and to be removed.
    pub fn unknown<'a>(&'a self, trials: &[&str]) -> Vec<(&'a str, &'a Xfail)> {
        self.0
            .iter()
            .filter(|(name, _)| !trials.contains(&name.as_str()))
            .map(|(name, xfail)| (name.as_str(), xfail))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::BackendPair;
    use crate::tolerance::{Bound, BoundSource, Metric};
    use crate::verdict::Measurement;

    const LIST: &str = "\
- trial: logits/a::engine-cuda~cpp
  checks: [max_abs]
  reason: known CUDA drift
- trial: logits/b::engine-cpu~cpp
  reason: anything may fail
";

    fn xfails() -> Xfails {
        Xfails::parse(Path::new("xfail.yaml"), LIST).unwrap()
    }

    fn verdict(trial: &str, failing: &[Metric]) -> Verdict {
        let measurements = [Metric::MaxAbs, Metric::Nmse]
            .into_iter()
            .map(|metric| Measurement {
                check: Check::Metric(metric),
                value: 1.0,
                bound: Bound::Max(0.5),
                source: BoundSource::Default { metric },
                passed: !failing.contains(&metric),
                detail: String::new(),
            })
            .collect();
        Verdict {
            diagnosis: Vec::new(),
            trial: trial.into(),
            location: Location {
                path: "fixtures/logits/a.yaml".into(),
                line: 1,
            },
            pair: "engine-cpu~cpp".parse::<BackendPair>().unwrap(),
            measurements,
        }
    }

    #[test]
    fn listed_failure_is_expected() {
        let outcome = xfails().judge(verdict("logits/a::engine-cuda~cpp", &[Metric::MaxAbs]));
        assert!(matches!(outcome, Outcome::ExpectedFailure { .. }));
        assert!(!outcome.is_failure());
        assert!(outcome
            .to_string()
            .starts_with("expected failure (xfail.yaml:1: known CUDA drift)"));
    }

    #[test]
    fn failure_outside_the_listed_checks_still_fails() {
        let outcome = xfails().judge(verdict(
            "logits/a::engine-cuda~cpp",
            &[Metric::MaxAbs, Metric::Nmse],
        ));
        assert!(matches!(outcome, Outcome::Failed(_)));
        let outcome = xfails().judge(verdict("logits/b::engine-cpu~cpp", &[Metric::Nmse]));
        assert!(matches!(outcome, Outcome::ExpectedFailure { .. }));
    }

    #[test]
    fn listed_pass_asks_to_remove_the_entry() {
        let outcome = xfails().judge(verdict("logits/b::engine-cpu~cpp", &[]));
        assert!(outcome.is_failure());
        assert_eq!(
            outcome.to_string(),
            "logits/b::engine-cpu~cpp: passed, but xfail.yaml:4 expects it to fail: remove the xfail"
        );
        let outcome = xfails().judge(verdict("logits/c::engine-cpu~cpp", &[]));
        assert!(matches!(outcome, Outcome::Passed(_)));
    }

    #[test]
    fn malformed_lists_are_errors_with_lines() {
        let parse = |text: &str| {
            Xfails::parse(Path::new("xfail.yaml"), text)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            parse("- trial: t\n  reason: ''\n"),
            "xfail.yaml:1: `reason` must say why the failure is accepted"
        );
        assert!(
            parse("- trial: t\n  checks: [max_abs, speed]\n  reason: r\n")
                .starts_with("xfail.yaml:2:")
        );
        assert!(parse("- trial: t\n  reason: r\n- trial: t\n  reason: s\n")
            .contains("xfail.yaml:3: `t` is already listed at xfail.yaml:1"));
        assert!(
            parse("- trial: t\n  reason: r\n  until: never\n").contains("unknown field `until`")
        );
        assert_eq!(
            Xfails::parse(Path::new("x"), "").unwrap(),
            Xfails::default()
        );
    }

    #[test]
    fn stale_entries_are_found() {
        let list = xfails();
        let stale = list.unknown(&["logits/a::engine-cuda~cpp"]);
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].0, "logits/b::engine-cpu~cpp");
    }
}
