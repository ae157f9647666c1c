//! The conformance harness shared by the `conformance` binary and `cargo test`: discovery,
//! backends, one libtest-mimic trial per case × pair, then the summary table, the JSON receipt
//! and JUnit XML.

mod archs;
mod diagnose;
mod execute;
mod heartbeat;
mod junit;
mod options;
mod real;
mod receipt;
mod record;
mod snapshot;
mod summary;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bitnet_conformance::case::{Capability, Case};
use bitnet_conformance::discovery::discover;
use bitnet_conformance::tolerance::{ToleranceError, Tolerances};
use bitnet_conformance::trial::{expand_all, Trial};
use bitnet_conformance::verdict::Outcome;
use bitnet_conformance::xfail::{XfailError, Xfails};
use libtest_mimic::{Completion, Conclusion, Failed};

use crate::backends::Backends;
use crate::models::ModelDirs;

pub use execute::{execute, Executed, RunContext, TrialError};
pub use options::{Options, OptionsError, Shard};
pub use receipt::Receipt;
pub use record::{Record, Status};
pub use snapshot::{hex_sha256, Summary};

/// Why the harness could not run at all (a failing case is not an error).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The tolerance table is missing or malformed.
    #[error(transparent)]
    Tolerances(#[from] ToleranceError),
    /// The xfail list is malformed.
    #[error(transparent)]
    Xfails(#[from] XfailError),
    /// A report could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The report file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// The receipt could not be serialized.
    #[error("cannot serialize the receipt: {0}")]
    Json(#[from] serde_json::Error),
}

type Records = Arc<Mutex<Vec<Record>>>;

/// Runs the harness and returns libtest's conclusion; trials failing never make this an error.
pub fn run(mut options: Options) -> Result<Conclusion, HarnessError> {
    let started = Instant::now();
    let mut discovered = discover(&options.fixtures);
    let (models_file, named) = options.models_file();
    let model_dirs = ModelDirs::from_env(options.models.clone(), options.cache.clone());
    let real = real::prepare(&models_file, named, &model_dirs);
    discovered.cases.extend(real.cases);
    discovered.errors.extend(real.errors);
    let tolerances = Tolerances::load(&options.tolerances)?;
    let xfails = if options.xfails.exists() {
        Xfails::load(&options.xfails)?
    } else {
        Xfails::default()
    };
    for stale in tolerances.stale_overrides(&discovered.cases) {
        eprintln!("warning: {stale}");
    }

    let backends = Backends::detect();
    let mut environment = backends.environment;
    let data_present = options.data.is_dir();
    if data_present {
        environment.granted.insert(Capability::Data);
    }
    if options.slow {
        environment.granted.insert(Capability::Slow);
    }
    archs::read_model_headers(
        &mut environment,
        &discovered.cases,
        &options.fixtures,
        &options.data,
    );
    let mut trials = expand_all(discovered.cases, &environment);
    if !data_present {
        let why = format!(
            "data not found at {}: set BITNET_DATA_DIR or pass --data",
            options.data.display()
        );
        for trial in &mut trials {
            if trial.case.needs.contains(&Capability::Data) {
                trial.ignore = Some(why.clone());
            }
        }
    }
    for trial in &mut trials {
        if let Some(why) = real.missing.get(&trial.case.id) {
            trial.ignore = Some(match trial.ignore.take() {
                Some(also) => format!("{why}; also: {also}"),
                None => why.clone(),
            });
        }
    }
    if let Some(shard) = options.shard {
        trials = trials
            .into_iter()
            .enumerate()
            .filter(|(position, _)| shard.holds(*position))
            .map(|(_, trial)| trial)
            .collect();
    }

    let context = Arc::new(RunContext {
        backends: backends.ready,
        tolerances,
        xfails,
        fixtures: options.fixtures.clone(),
        data: options.data.clone(),
    });
    let records: Records = Arc::default();
    let mut tests = Vec::new();
    for error in &discovered.errors {
        let name = file_trial_name(&options.fixtures, error.path());
        let message = error.to_string();
        tests.push(failing_trial(name, "discovery", message, &records));
    }
    let names: Vec<&str> = trials.iter().map(|t| t.name.as_str()).collect();
    if options.shard.is_none() {
        for (name, xfail) in context.xfails.unknown(&names) {
            let message = format!(
                "{}: xfail entry `{name}` names no trial: remove it",
                xfail.location
            );
            tests.push(failing_trial(
                format!("xfail/{name}"),
                "xfail",
                message,
                &records,
            ));
        }
    }
    if options.test.ignored {
        trials.retain(|t| t.ignore.is_some());
        options.test.ignored = false;
        options.test.include_ignored = true;
    }
    let ignored = if options.strict {
        IgnoredTrials::FailStrict
    } else if options.test.include_ignored {
        IgnoredTrials::Fail
    } else {
        IgnoredTrials::Ignore
    };
    let cases: Vec<Arc<Case>> = trials.iter().map(|t| Arc::clone(&t.case)).collect();
    for trial in trials {
        tests.push(case_trial(trial, &context, &records, ignored));
    }

    let conclusion = libtest_mimic::run(&options.test, tests);
    if options.test.list {
        return Ok(conclusion);
    }
    let mut records = std::mem::take(&mut *records.lock().unwrap_or_else(|e| e.into_inner()));
    records.sort_by(|a, b| a.name.cmp(&b.name));
    println!("{}", summary::render(&records));
    let total = started.elapsed().as_secs_f64();
    println!("conformance finished in {total:.2}s");
    if let Some(path) = &options.junit {
        write(path, junit::render(&records, total))?;
    }
    if let Some(path) = &options.report {
        let cases: Vec<&Case> = cases.iter().map(|c| c.as_ref()).collect();
        let receipt = Receipt::new(
            &context,
            &environment,
            &options.tolerances,
            &cases,
            records,
            total,
        );
        write(path, serde_json::to_string_pretty(&receipt)?)?;
    }
    Ok(conclusion)
}

fn write(path: &Path, text: String) -> Result<(), HarnessError> {
    std::fs::write(path, text).map_err(|source| HarnessError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// A file's failing trial is named after the file, relative to the fixtures root.
fn file_trial_name(fixtures: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(fixtures).unwrap_or(path);
    format!("fixtures/{}", relative.display())
}

fn push(records: &Records, record: Record) {
    records
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(record);
}

fn failing_trial(
    name: String,
    kind: &'static str,
    message: String,
    records: &Records,
) -> libtest_mimic::Trial {
    let records = Arc::clone(records);
    libtest_mimic::Trial::test(name.clone(), move || {
        push(
            &records,
            Record {
                name,
                kind: kind.to_string(),
                pair: String::new(),
                status: Status::Failed(message.clone()),
                verdict: None,
                seconds: 0.0,
            },
        );
        Err(Failed::from(message))
    })
}

/// What becomes of a trial that cannot run here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IgnoredTrials {
    /// Reported as ignored, with its reason.
    Ignore,
    /// Failed: `--include-ignored` asked to run it.
    Fail,
    /// Failed: `--strict` (or `BITNET_STRICT=1`) allows nothing to be left out.
    FailStrict,
}

fn case_trial(
    trial: Trial,
    context: &Arc<RunContext>,
    records: &Records,
    ignored: IgnoredTrials,
) -> libtest_mimic::Trial {
    let context = Arc::clone(context);
    let records = Arc::clone(records);
    let name = trial.name.clone();
    libtest_mimic::Trial::ignorable_test(name, move || {
        let started = Instant::now();
        let (status, verdict, result) = match (&trial.ignore, ignored) {
            (Some(reason), IgnoredTrials::Ignore) => (
                Status::Ignored(reason.clone()),
                None,
                Ok(Completion::ignored_with(reason)),
            ),
            (Some(reason), IgnoredTrials::Fail) => {
                let message = format!("ignored trial cannot pass: {reason}");
                (Status::Failed(message.clone()), None, Err(message.into()))
            }
            (Some(reason), IgnoredTrials::FailStrict) => {
                let message = format!("strict mode: this trial would be ignored: {reason}");
                (Status::Failed(message.clone()), None, Err(message.into()))
            }
            (None, _) => {
                let _progress = heartbeat::Heartbeat::on_stderr(&trial.name);
                judge(&context, &trial.name, execute(&context, &trial))
            }
        };
        push(
            &records,
            Record {
                name: trial.name.clone(),
                kind: trial.case.kind().to_string(),
                pair: trial.pair.to_string(),
                status,
                verdict,
                seconds: started.elapsed().as_secs_f64(),
            },
        );
        result
    })
}

type Judged = (
    Status,
    Option<bitnet_conformance::verdict::Verdict>,
    Result<Completion, Failed>,
);

/// Turns what a trial produced into its status. A trial that could not produce a verdict is
/// an expected failure only when its xfail entry allows any check to fail.
fn judge(context: &RunContext, name: &str, result: Result<Executed, TrialError>) -> Judged {
    let executed = match result {
        Ok(executed) => executed,
        Err(error) => {
            let message = error.to_string();
            return match context.xfails.get(name) {
                Some(xfail) if xfail.checks.is_empty() => {
                    println!(
                        "{name}: expected failure ({}: {}): {message}",
                        xfail.location, xfail.reason
                    );
                    (
                        Status::ExpectedFailure(xfail.reason.clone()),
                        None,
                        Ok(Completion::Completed),
                    )
                }
                _ => (Status::Failed(message.clone()), None, Err(message.into())),
            };
        }
    };
    let message = executed.outcome.to_string();
    let (status, verdict) = match executed.outcome {
        Outcome::Passed(verdict) => (Status::Passed, Some(verdict)),
        Outcome::ExpectedFailure {
            verdict, reason, ..
        } => (Status::ExpectedFailure(reason), Some(verdict)),
        Outcome::Failed(verdict) | Outcome::UnexpectedPass { verdict, .. } => {
            (Status::Failed(message.clone()), Some(verdict))
        }
        Outcome::Unsupported { reason } => (Status::Failed(reason), None),
    };
    match (status, executed.snapshot) {
        (Status::Failed(message), Some(snapshot)) => {
            let message = format!("{message}\n{snapshot}");
            (
                Status::Failed(message.clone()),
                verdict,
                Err(message.into()),
            )
        }
        (Status::Failed(message), None) => (
            Status::Failed(message.clone()),
            verdict,
            Err(message.into()),
        ),
        (_, Some(snapshot)) => (
            Status::Failed(snapshot.clone()),
            verdict,
            Err(snapshot.into()),
        ),
        (status, None) => (status, verdict, Ok(Completion::Completed)),
    }
}
