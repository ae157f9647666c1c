//! Synthetic benchmark models with real shapes, generated on demand into a cache folder and
//! reused while their spec is unchanged.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bitnet_engine::synth::{write_model_with_progress, Arch, SynthSpec};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::models::CACHE_VAR;

/// Bumped when the generator's output changes for an unchanged spec, so cached files are remade.
const GENERATOR_REVISION: u32 = 1;

/// A model shape to benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchShape {
    /// BitNet-b1.58-2B-4T (1.2 GB).
    #[value(name = "2b4t")]
    B2b4t,
    /// A 0.65 B-parameter model of the same family (250 MB), for quick runs.
    #[value(name = "700m")]
    M700,
}

impl BenchShape {
    /// `2b4t` or `700m`.
    pub fn name(self) -> &'static str {
        match self {
            BenchShape::B2b4t => "2b4t",
            BenchShape::M700 => "700m",
        }
    }

    /// The spec of this shape with the graph of `arch`.
    pub fn spec(self, arch: Arch) -> SynthSpec {
        match self {
            BenchShape::B2b4t => SynthSpec::bitnet_2b_4t(arch),
            BenchShape::M700 => SynthSpec::bitnet_700m(arch),
        }
    }
}

/// The cache folder: `dir` when given, else `$BITNET_CACHE/synthetic`, else `bitnet/bench` in
/// the user's cache directory.
pub fn cache_dir(dir: Option<PathBuf>) -> Option<PathBuf> {
    dir.or_else(|| {
        std::env::var_os(CACHE_VAR)
            .filter(|v| !v.is_empty())
            .map(|v| PathBuf::from(v).join("synthetic"))
    })
    .or_else(|| dirs::cache_dir().map(|d| d.join("bitnet").join("bench")))
}

/// The file name of a shape's model: shape, architecture and a hash of the whole spec.
pub fn file_name(shape: BenchShape, spec: &SynthSpec) -> String {
    let digest = Sha256::digest(format!("{GENERATOR_REVISION} {spec:?}"));
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{hash}.gguf", shape.name(), spec.arch.name())
}

/// A model file ready to load, and how long it took to generate (`None`: found in the cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticModel {
    /// The file.
    pub path: PathBuf,
    /// Generation time, when it was generated now.
    pub generated_in: Option<Duration>,
}

/// The model of `shape` with the graph of `arch` in `dir`, generated first if missing.
pub fn ensure_model(shape: BenchShape, arch: Arch, dir: &Path) -> Result<SyntheticModel> {
    let spec = shape.spec(arch);
    let path = dir.join(file_name(shape, &spec));
    if path.is_file() {
        return Ok(SyntheticModel {
            path,
            generated_in: None,
        });
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the model cache {}", dir.display()))?;
    eprintln!(
        "generating the {} model ({}) into {}",
        shape.name(),
        arch.name(),
        path.display()
    );
    let bar = progress_bar();
    let start = Instant::now();
    write_model_with_progress(&spec, &path, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .with_context(|| format!("generating {}", path.display()))?;
    bar.finish_and_clear();
    let elapsed = start.elapsed();
    eprintln!("generated in {:.1} s", elapsed.as_secs_f64());
    Ok(SyntheticModel {
        path,
        generated_in: Some(elapsed),
    })
}

/// A byte-count bar on stderr, hidden when stderr is not a terminal.
fn progress_bar() -> ProgressBar {
    use std::io::IsTerminal;
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(None, target);
    if let Ok(style) =
        ProgressStyle::with_template("[{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_follow_the_spec() {
        let a = BenchShape::M700.spec(Arch::Bitnet);
        let name = file_name(BenchShape::M700, &a);
        assert!(
            name.starts_with("700m-bitnet-") && name.ends_with(".gguf"),
            "{name}"
        );
        assert_eq!(name, file_name(BenchShape::M700, &a.clone()));
        let mut b = a.clone();
        b.seed += 1;
        assert_ne!(name, file_name(BenchShape::M700, &b));
        let c = BenchShape::M700.spec(Arch::BitnetB158);
        assert!(file_name(BenchShape::M700, &c).starts_with("700m-bitnet-b1.58-"));
    }

    #[test]
    fn an_explicit_cache_folder_wins() {
        let dir = PathBuf::from("some/where");
        assert_eq!(cache_dir(Some(dir.clone())), Some(dir));
    }
}
