//! The harness's own command-line flags, taken out before the rest reaches libtest-mimic.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use libtest_mimic::Arguments;

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
    /// come from the environment (`BITNET_FIXTURES`, `BITNET_DATA_DIR`), then the workspace.
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
            if !matches!(
                flag.as_str(),
                "--fixtures" | "--tolerances" | "--data" | "--shard" | "--report" | "--junit"
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
                _ => options.junit = Some(value.into()),
            }
        }
        options.test = Arguments::from_iter(rest);
        Ok(options)
    }
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
    fn shards_split_trials_round_robin() {
        let shard: Shard = "2/3".parse().unwrap();
        let held: Vec<usize> = (0..7).filter(|&i| shard.holds(i)).collect();
        assert_eq!(held, [1, 4]);
        assert!("0/3".parse::<Shard>().is_err());
        assert!("4/3".parse::<Shard>().is_err());
        assert!(Options::parse(["c".to_string(), "--junit".to_string()]).is_err());
    }
}
