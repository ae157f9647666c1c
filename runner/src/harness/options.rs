//! The harness's own command-line flags, taken out before the rest reaches libtest-mimic.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use bitnet_conformance::models::MODELS_FILE;
use libtest_mimic::Arguments;

use crate::models::MODELS_FILE_VAR;

/// Where things are and what to write, besides libtest's own arguments.
#[derive(Debug, Clone)]
pub struct Options {
    /// The fixtures root (`<kind>/*.yaml`, `models/`, `snapshots/`).
    pub fixtures: PathBuf,
    /// The tolerance table.
    pub tolerances: PathBuf,
    /// The expected-failure list; absent when the file does not exist.
    pub xfails: PathBuf,
    /// External data (vocabularies, corpora, large models).
    pub data: PathBuf,
    /// Runs only this share of the trials.
    pub shard: Option<Shard>,
    /// Where to write the JSON receipt.
    pub report: Option<PathBuf>,
    /// Where to write JUnit XML.
    pub junit: Option<PathBuf>,
    /// The models file, when named (`--models-file`, `BITNET_MODELS_FILE`); otherwise
    /// `models.yaml` in the fixtures root, if there is one.
    pub models_file: Option<PathBuf>,
    /// Folders holding real model files (`--models`, repeatable; `BITNET_MODELS` adds more).
    pub models: Vec<PathBuf>,
    /// The download cache (`--cache`; else `BITNET_CACHE` or the user's cache folder).
    pub cache: Option<PathBuf>,
    /// Every trial that would be ignored fails instead, with the same reason
    /// (`--strict`, `BITNET_STRICT=1`).
    pub strict: bool,
    /// Runs cases that need `slow` (`--slow`, `BITNET_SLOW=1`).
    pub slow: bool,
    /// Filtering, listing, threads: libtest's own arguments.
    pub test: Arguments,
}

/// Trial `index` (0-based, in discovery order) belongs to shard `index % count + 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, from 1.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// Whether the trial at `position` belongs to this shard.
    pub fn holds(self, position: usize) -> bool {
        position % self.count + 1 == self.index
    }
}

impl FromStr for Shard {
    type Err = OptionsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || OptionsError::BadShard(s.to_string());
        let (index, count) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = index.parse().map_err(|_| bad())?;
        let count: usize = count.parse().map_err(|_| bad())?;
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// A flag of the harness that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// A flag that takes a value came last.
    #[error("{0} needs a value")]
    MissingValue(String),
    /// `--shard` is not `i/n` with 1 ≤ i ≤ n.
    #[error("--shard `{0}`: write i/n with 1 ≤ i ≤ n, e.g. 2/4")]
    BadShard(String),
}

impl Options {
    /// Parses `args` (program name first). Our flags come out wherever they stand; defaults
    /// come from the environment (`BITNET_FIXTURES`, `BITNET_DATA_DIR`, `BITNET_MODELS_FILE`,
    /// `BITNET_STRICT`, `BITNET_SLOW`), then the workspace.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, OptionsError> {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let workspace = manifest.parent().unwrap_or(manifest);
        let env_path = |name: &str| std::env::var_os(name).map(PathBuf::from);
        let mut options = Options {
            fixtures: env_path("BITNET_FIXTURES").unwrap_or_else(|| workspace.join("fixtures")),
            tolerances: workspace.join("tolerance.yaml"),
            xfails: workspace.join("xfail.yaml"),
            data: env_path("BITNET_DATA_DIR").unwrap_or_else(|| beside(workspace, "shared/data")),
            shard: None,
            report: None,
            junit: None,
            models_file: env_path(MODELS_FILE_VAR).filter(|p| !p.as_os_str().is_empty()),
            models: Vec::new(),
            cache: None,
            strict: env_flag("BITNET_STRICT"),
            slow: env_flag("BITNET_SLOW"),
            test: Arguments::default(),
        };
        let mut rest = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => {
                    (flag.to_string(), Some(value.to_string()))
                }
                _ => (arg.clone(), None),
            };
            match (flag.as_str(), &inline) {
                ("--strict", None) => {
                    options.strict = true;
                    continue;
                }
                ("--slow", None) => {
                    options.slow = true;
                    continue;
                }
                _ => {}
            }
            if !matches!(
                flag.as_str(),
                "--fixtures"
                    | "--tolerances"
                    | "--data"
                    | "--shard"
                    | "--report"
                    | "--junit"
                    | "--models-file"
                    | "--models"
                    | "--cache"
            ) {
                rest.push(arg);
                continue;
            }
            let value = match inline {
                Some(value) => value,
                None => args
                    .next()
                    .ok_or_else(|| OptionsError::MissingValue(flag.clone()))?,
            };
            match flag.as_str() {
                "--fixtures" => options.fixtures = value.into(),
                "--tolerances" => options.tolerances = value.into(),
                "--data" => options.data = value.into(),
                "--shard" => options.shard = Some(value.parse()?),
                "--report" => options.report = Some(value.into()),
                "--models-file" => options.models_file = Some(value.into()),
                "--models" => options.models.push(value.into()),
                "--cache" => options.cache = Some(value.into()),
                _ => options.junit = Some(value.into()),
            }
        }
        options.test = Arguments::from_iter(rest);
        Ok(options)
    }

    /// The models file to read and whether it was named (a named file must exist).
    pub fn models_file(&self) -> (PathBuf, bool) {
        match &self.models_file {
            Some(file) => (file.clone(), true),
            None => (self.fixtures.join(MODELS_FILE), false),
        }
    }
}

/// Whether the variable `name` is set to something other than empty, `0`, `false` or `no`.
fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|value| {
        let value = value.trim().to_ascii_lowercase();
        !matches!(value.as_str(), "" | "0" | "false" | "no")
    })
}

/// `name` in the folder that holds `workspace`.
fn beside(workspace: &Path, name: &str) -> PathBuf {
    workspace.parent().unwrap_or(workspace).join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Options {
        Options::parse(args.iter().map(|s| s.to_string())).unwrap()
    }

    #[test]
    fn own_flags_come_out_and_the_rest_reaches_libtest() {
        let options = parse(&[
            "conformance",
            "--shard",
            "2/3",
            "quantization/",
            "--report=r.json",
            "--exact",
            "--data",
            "/d",
        ]);
        assert_eq!(options.shard, Some(Shard { index: 2, count: 3 }));
        assert_eq!(options.report, Some(PathBuf::from("r.json")));
        assert_eq!(options.data, PathBuf::from("/d"));
        assert_eq!(options.test.filter.as_deref(), Some("quantization/"));
        assert!(options.test.exact);
    }

    #[test]
    fn model_flags_and_strict_mode() {
        let options = parse(&[
            "conformance",
            "--strict",
            "--models",
            "/m1",
            "--models=/m2",
            "--models-file",
            "/f/models.yaml",
            "--cache",
            "/c",
            "--slow",
            "real.",
        ]);
        assert!(options.strict && options.slow);
        assert_eq!(options.models, [PathBuf::from("/m1"), PathBuf::from("/m2")]);
        assert_eq!(options.cache, Some(PathBuf::from("/c")));
        assert_eq!(
            options.models_file(),
            (PathBuf::from("/f/models.yaml"), true)
        );
        assert_eq!(options.test.filter.as_deref(), Some("real."));
        let plain = parse(&["conformance", "--fixtures", "/fx"]);
        assert_eq!(
            plain.models_file().1,
            std::env::var_os(MODELS_FILE_VAR).is_some()
        );
    }

    #[test]
    fn shards_split_trials_round_robin() {
        let shard: Shard = "2/3".parse().unwrap();
        let held: Vec<usize> = (0..7).filter(|&i| shard.holds(i)).collect();
        assert_eq!(held, [1, 4]);
        assert!("0/3".parse::<Shard>().is_err());
        assert!("4/3".parse::<Shard>().is_err());
        assert!(Options::parse(["c".to_string(), "--junit".to_string()]).is_err());
    }
}
