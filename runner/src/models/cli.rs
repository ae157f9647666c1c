//! `bitnet models list|verify|download`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use bitnet_conformance::models::{load_models, Declared, RealModel};
use clap::{Args, Subcommand};

use super::digests::DigestCache;
use super::dirs::ModelDirs;
use super::download::{Hub, HubConfig};
use super::locate::{locate, Located};

/// The variable naming the models file.
pub const MODELS_FILE_VAR: &str = "BITNET_MODELS_FILE";

/// Arguments of `bitnet models`.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ModelsCommand,
    /// The models file [default: BITNET_MODELS_FILE, else fixtures/models.yaml of this checkout].
    #[arg(long, global = true, value_name = "FILE")]
    pub models_file: Option<PathBuf>,
    /// A folder holding model files; repeatable, searched before BITNET_MODELS and the cache.
    #[arg(long = "models", global = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// The download cache [default: BITNET_CACHE, else bitnet/models in the user cache folder].
    #[arg(long, global = true, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

/// A `bitnet models` subcommand.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Every declared model: what it is, whether it is pinned, and where it is on this machine.
    List,
    /// Re-hash the model files found on this machine and check them against their entries.
    Verify {
        /// Models to check (all when none is named); a named model that is missing fails.
        ids: Vec<String>,
    },
    /// Download models into the cache: resumable, verified, renamed into place only when whole.
    Download {
        /// Models to download.
        #[arg(required = true)]
        ids: Vec<String>,
        /// A hub to download from, instead of HF_ENDPOINT or the public hub; repeatable (tried in
        /// order). BITNET_HF_FALLBACKS lists more, comma-separated; HF_TOKEN is sent as a Bearer token.
        #[arg(long = "endpoint", value_name = "URL")]
        endpoints: Vec<String>,
    },
}

/// The models file used when none is named: `BITNET_MODELS_FILE`, else `models.yaml` in `fixtures`.
pub fn default_models_file(fixtures: &Path) -> PathBuf {
    std::env::var_os(MODELS_FILE_VAR)
        .filter(|v| !v.is_empty())
        .map_or_else(
            || fixtures.join(bitnet_conformance::models::MODELS_FILE),
            PathBuf::from,
        )
}

/// Runs a `bitnet models` subcommand.
pub fn run(args: ModelsArgs) -> anyhow::Result<ExitCode> {
    let workspace_fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let file = args
        .models_file
        .unwrap_or_else(|| default_models_file(&workspace_fixtures));
    if !file.is_file() {
        bail!(
            "no models file at {}: pass --models-file FILE or set {MODELS_FILE_VAR}",
            file.display()
        );
    }
    let declared = load_models(&file);
    if let Some(error) = declared.errors.first() {
        bail!(
            "{} problem(s) in the models file; the first: {error}",
            declared.errors.len()
        );
    }
    let dirs = ModelDirs::from_env(args.dirs, args.cache);
    match args.command {
        ModelsCommand::List => list(&declared, &dirs),
        ModelsCommand::Verify { ids } => verify(&declared, &dirs, &ids),
        ModelsCommand::Download { ids, endpoints } => {
            download(&declared, &dirs, &ids, HubConfig::from_env(endpoints))
        }
    }
}

fn select<'a>(declared: &'a Declared, ids: &[String]) -> anyhow::Result<Vec<&'a RealModel>> {
    if ids.is_empty() {
        return Ok(declared.models.iter().collect());
    }
    ids.iter()
        .map(|id| {
            declared.model(id).with_context(|| {
                let known: Vec<&str> = declared.models.iter().map(|m| m.id.as_str()).collect();
                format!("no model `{id}` is declared; known: {}", known.join(", "))
            })
        })
        .collect()
}

fn list(declared: &Declared, dirs: &ModelDirs) -> anyhow::Result<ExitCode> {
    let mut digests = DigestCache::open(dirs.cache.as_deref());
    println!("{}", dirs.describe());
    for model in &declared.models {
        let lanes: Vec<String> = declared
            .cases
            .iter()
            .filter(|case| case.id == model.case_id())
            .map(|case| case.kind().to_string())
            .collect();
        let size = model
            .size
            .map_or_else(|| "size ?".to_string(), |s| format!("{s} B"));
        let pinning = match &model.sha256 {
            Some(digest) => format!("sha256 {}", &digest.as_hex()[..12]),
            None => "UNPINNED (no sha256)".to_string(),
        };
        println!(
            "{}  {} {} {}/{}@{}  {size}  {pinning}  lanes: {}",
            model.id,
            model.architecture,
            model.format,
            model.repo,
            model.file,
            model.revision,
            if lanes.is_empty() {
                "none".to_string()
            } else {
                lanes.join(", ")
            }
        );
        println!("    {}", status_line(&locate(model, dirs, &mut digests)));
    }
    save(&mut digests);
    Ok(ExitCode::SUCCESS)
}

fn status_line(located: &Located) -> String {
    match located {
        Located::Found { path, pinned: true } => format!("verified: {}", path.display()),
        Located::Found {
            path,
            pinned: false,
        } => {
            format!("found, UNPINNED (not verified): {}", path.display())
        }
        Located::Missing(why) | Located::Mismatch(why) => why.clone(),
    }
}

fn verify(declared: &Declared, dirs: &ModelDirs, ids: &[String]) -> anyhow::Result<ExitCode> {
    let models = select(declared, ids)?;
    let mut fresh = DigestCache::default();
    let mut record = DigestCache::open(dirs.cache.as_deref());
    let mut failed = false;
    for model in models {
        let located = locate(model, dirs, &mut fresh);
        let verdict = match &located {
            Located::Found { path, pinned } => {
                if let Ok(digest) = fresh.digest(path) {
                    let _ = record.record(path, &digest);
                }
                if *pinned {
                    "ok"
                } else {
                    "UNPINNED"
                }
            }
            Located::Missing(_) if ids.is_empty() => "missing",
            Located::Missing(_) => {
                failed = true;
                "MISSING"
            }
            Located::Mismatch(_) => {
                failed = true;
                "MISMATCH"
            }
        };
        println!("{verdict:9} {}: {}", model.id, status_line(&located));
    }
    save(&mut record);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn download(
    declared: &Declared,
    dirs: &ModelDirs,
    ids: &[String],
    config: HubConfig,
) -> anyhow::Result<ExitCode> {
    let models = select(declared, ids)?;
    let hub = Hub::new(config);
    let mut digests = DigestCache::open(dirs.cache.as_deref());
    let mut failed = false;
    for model in models {
        match fetch(model, dirs, &hub, &mut digests) {
            Ok(message) => println!("{message}"),
            Err(error) => {
                failed = true;
                eprintln!("error: {}: {error:#}", model.id);
            }
        }
    }
    save(&mut digests);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Puts `model` into the cache unless a verified copy is there already.
fn fetch(
    model: &RealModel,
    dirs: &ModelDirs,
    hub: &Hub,
    digests: &mut DigestCache,
) -> anyhow::Result<String> {
    if let Some(how) = &model.convert {
        bail!(
            "`{}` is not downloaded: the repository `{}` publishes no GGUF file; {how}",
            model.id,
            model.repo
        );
    }
    let dest = dirs
        .cache_path(model)
        .context("no cache directory: set BITNET_CACHE or pass --cache DIR")?;
    if !model.is_pinned() {
        eprintln!(
            "warning: `{}` is UNPINNED: its entry ({}) declares no sha256, so the download \
             cannot be verified",
            model.id, model.location
        );
    }
    if dest.is_file() {
        let cached = ModelDirs {
            dirs: Vec::new(),
            cache: dirs.cache.clone(),
        };
        match locate(model, &cached, digests) {
            Located::Found { path, .. } => {
                return Ok(format!(
                    "{}: already in the cache: {}",
                    model.id,
                    path.display()
                ))
            }
            other => {
                eprintln!(
                    "{}: replacing the cached file: {}",
                    model.id,
                    status_line(&other)
                );
                fs::remove_file(&dest).with_context(|| format!("removing {}", dest.display()))?;
            }
        }
    }
    eprintln!(
        "{}: downloading {}/{}@{} from {}",
        model.id,
        model.repo,
        model.file,
        model.revision,
        hub.endpoints().join(", then ")
    );
    let downloaded = hub.download(model, &dest)?;
    digests
        .record(&downloaded.path, &downloaded.sha256)
        .with_context(|| format!("reading {}", downloaded.path.display()))?;
    let mut message = format!(
        "{}: downloaded {} ({} bytes, sha256 {})",
        model.id,
        downloaded.path.display(),
        downloaded.bytes,
        downloaded.sha256
    );
    if !model.is_pinned() {
        message.push_str(&format!(
            "\n    UNPINNED: once you trust this file, add `sha256: {}` and `size: {}` to the entry",
            downloaded.sha256, downloaded.bytes
        ));
    }
    Ok(message)
}

fn save(digests: &mut DigestCache) {
    if let Err(error) = digests.save() {
        eprintln!("warning: cannot record verified digests: {error}");
    }
}
