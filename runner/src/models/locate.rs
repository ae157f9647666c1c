//! Finding a declared model on this machine: by file name in the model folders and the cache,
//! then by size and sha256, then by the architecture its GGUF header declares.

use std::path::{Path, PathBuf};

use bitnet_conformance::models::{Architecture, RealModel};
use bitnet_engine::gguf::GgufFile;

use super::digests::DigestCache;
use super::dirs::ModelDirs;

/// Where a declared model stands on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    /// A file matching the entry; `pinned` is false when the entry declares no digest, so any
    /// file of that name was taken.
    Found {
        /// The file.
        path: PathBuf,
        /// Whether its sha256 was checked against the entry's.
        pinned: bool,
    },
    /// No file of that name anywhere; the text says where was looked and how to get it.
    Missing(String),
    /// Files of that name exist but none is the declared one; the text says why for each.
    Mismatch(String),
}

/// Looks for `model` in `dirs`, hashing candidates through `digests`.
pub fn locate(model: &RealModel, dirs: &ModelDirs, digests: &mut DigestCache) -> Located {
    let mut rejected = Vec::new();
    for path in dirs.candidates(model) {
        if !path.is_file() {
            continue;
        }
        match check(model, &path, digests) {
            Ok(()) => {
                return Located::Found {
                    path,
                    pinned: model.is_pinned(),
                }
            }
            Err(why) => rejected.push(format!("{}: {why}", path.display())),
        }
    }
    if rejected.is_empty() {
        Located::Missing(missing_reason(model, dirs))
    } else {
        Located::Mismatch(format!(
            "{}; files that are not the one declared at {}: {}",
            missing_reason(model, dirs),
            model.location,
            rejected.join("; ")
        ))
    }
}

/// The reason a lane of a missing model is not run: where was looked, and how to get the file.
pub fn missing_reason(model: &RealModel, dirs: &ModelDirs) -> String {
    let how = match &model.convert {
        Some(how) => format!(
            "the repository `{}` publishes no GGUF file: {how}; then pass --models DIR (or set \
             BITNET_MODELS) to the folder holding it",
            model.repo
        ),
        None => format!(
            "get it with `bitnet models download {}` (into the cache, where it is found), or \
             pass --models DIR (or set BITNET_MODELS) to a folder holding it",
            model.id
        ),
    };
    let looked: Vec<String> = ModelDirs::relative_paths(model)
        .iter()
        .map(|path| format!("`{}`", path.display()))
        .collect();
    format!(
        "model `{}` not found: looked for {} in {}; {how}",
        model.id,
        looked.join(", "),
        dirs.describe(),
    )
}

fn check(model: &RealModel, path: &Path, digests: &mut DigestCache) -> Result<(), String> {
    let size = path.metadata().map_err(|e| e.to_string())?.len();
    if let Some(expected) = model.size.filter(|&expected| expected != size) {
        return Err(format!("{size} bytes, the entry declares {expected}"));
    }
    if let Some(expected) = &model.sha256 {
        let actual = digests.digest(path).map_err(|e| e.to_string())?;
        if &actual != expected {
            return Err(format!("sha256 {actual}, the entry pins {expected}"));
        }
    }
    let file = GgufFile::open(path).map_err(|e| format!("not a readable GGUF file: {e}"))?;
    let declared = file
        .metadata()
        .get_str("general.architecture")
        .map_err(|e| format!("no general.architecture: {e}"))?;
    if !same_architecture(model.architecture, declared) {
        return Err(format!(
            "general.architecture is `{declared}`, the entry declares `{}`",
            model.architecture
        ));
    }
    Ok(())
}

/// Whether a file's `general.architecture` is the declared architecture (`bitnet-25` is the
/// older name of `bitnet-b1.58`).
fn same_architecture(declared: Architecture, in_file: &str) -> bool {
    in_file == declared.name() || (declared == Architecture::BitnetB158 && in_file == "bitnet-25")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitnet_conformance::models::parse_models;
    use std::fs;

    const TINY: &str = "tiny-bitnet-i2_s.gguf";
    const TINY_SHA: &str = "378d3fc5343c3cc03a5d6d94f91b5fc24fe060a81e646837088375734cc80761";

    fn tiny_model(extra: &str) -> RealModel {
        let text = format!(
            "- id: tiny\n  repo: o/r\n  file: {TINY}\n  architecture: bitnet\n  format: I2_S\n{extra}"
        );
        let declared = parse_models(Path::new("models.yaml"), &text);
        assert!(declared.errors.is_empty(), "{:?}", declared.errors);
        declared.models.into_iter().next().unwrap()
    }

    fn committed() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/models")
            .join(TINY)
    }

    #[test]
    fn finds_by_name_then_digest_then_architecture() {
        let root = tempfile::tempdir().unwrap();
        let (wrong, right) = (root.path().join("a"), root.path().join("b"));
        fs::create_dir_all(wrong.join("tiny")).unwrap();
        fs::create_dir_all(&right).unwrap();
        fs::write(wrong.join("tiny").join(TINY), b"not the model").unwrap();
        fs::copy(committed(), right.join(TINY)).unwrap();
        let dirs = ModelDirs {
            dirs: vec![wrong.clone(), right.clone()],
            cache: None,
        };
        let mut digests = DigestCache::default();
        let pinned = tiny_model(&format!("  sha256: {TINY_SHA}\n"));
        assert_eq!(
            locate(&pinned, &dirs, &mut digests),
            Located::Found {
                path: right.join(TINY),
                pinned: true
            }
        );

        let only_wrong = ModelDirs {
            dirs: vec![wrong.clone()],
            cache: None,
        };
        let Located::Mismatch(why) = locate(&pinned, &only_wrong, &mut digests) else {
            panic!("a wrong file was accepted");
        };
        assert!(why.contains("the entry pins 378d3fc5"), "{why}");

        let unpinned = tiny_model("");
        let Located::Mismatch(why) = locate(&unpinned, &only_wrong, &mut digests) else {
            panic!("a file that is not GGUF was accepted");
        };
        assert!(why.contains("not a readable GGUF file"), "{why}");

        let llama = RealModel {
            architecture: Architecture::Llama,
            ..pinned
        };
        let Located::Mismatch(why) = locate(&llama, &dirs, &mut digests) else {
            panic!("a bitnet file was accepted as llama");
        };
        assert!(why.contains("general.architecture is `bitnet`"), "{why}");
    }

    #[test]
    fn a_missing_model_says_where_and_how() {
        let dirs = ModelDirs {
            dirs: vec!["/nowhere".into()],
            cache: Some("/no-cache".into()),
        };
        let Located::Missing(why) = locate(&tiny_model(""), &dirs, &mut DigestCache::default())
        else {
            panic!("found a model that is not there");
        };
        assert!(
            why.contains("looked for `tiny/tiny-bitnet-i2_s.gguf`, `o/r/tiny-bitnet-i2_s.gguf`"),
            "{why}"
        );
        assert!(why.contains("/nowhere"), "{why}");
        assert!(why.contains("cache /no-cache"), "{why}");
        assert!(why.contains("`bitnet models download tiny`"), "{why}");
    }

    #[test]
    fn size_is_checked_before_hashing() {
        let root = tempfile::tempdir().unwrap();
        fs::copy(committed(), root.path().join(TINY)).unwrap();
        let dirs = ModelDirs {
            dirs: vec![root.path().to_path_buf()],
            cache: None,
        };
        let model = tiny_model("  size: 7\n");
        let Located::Mismatch(why) = locate(&model, &dirs, &mut DigestCache::default()) else {
            panic!("a file of another size was accepted");
        };
        assert!(why.contains("the entry declares 7"), "{why}");
        assert!(same_architecture(Architecture::BitnetB158, "bitnet-25"));
        assert!(!same_architecture(Architecture::Bitnet, "bitnet-25"));
    }
}
