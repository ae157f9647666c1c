//! Where model files are looked for: folders given with `--models` or `BITNET_MODELS`, then
//! the download cache (`BITNET_CACHE`, else `bitnet/models` in the user's cache directory).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use bitnet_conformance::models::RealModel;

/// The variable listing model folders (separated like `PATH`).
pub const MODELS_VAR: &str = "BITNET_MODELS";
/// The variable naming the download cache.
pub const CACHE_VAR: &str = "BITNET_CACHE";

/// The folders searched for model files, and the download cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDirs {
    /// Searched in order before the cache.
    pub dirs: Vec<PathBuf>,
    /// Where downloads go; `None` when neither `BITNET_CACHE` nor a user cache directory is known.
    pub cache: Option<PathBuf>,
}

impl ModelDirs {
    /// `dirs` (from the command line) then the folders of `BITNET_MODELS`; the cache is
    /// `cache` when given, else `BITNET_CACHE`, else the user's cache directory.
    pub fn from_env(dirs: Vec<PathBuf>, cache: Option<PathBuf>) -> ModelDirs {
        ModelDirs::resolve(
            dirs,
            std::env::var_os(MODELS_VAR),
            cache.or_else(|| non_empty(std::env::var_os(CACHE_VAR))),
            dirs::cache_dir(),
        )
    }

    fn resolve(
        mut dirs: Vec<PathBuf>,
        listed: Option<OsString>,
        cache: Option<PathBuf>,
        user_cache: Option<PathBuf>,
    ) -> ModelDirs {
        if let Some(listed) = listed {
            dirs.extend(std::env::split_paths(&listed).filter(|p| !p.as_os_str().is_empty()));
        }
        ModelDirs {
            dirs,
            cache: cache.or_else(|| user_cache.map(|dir| dir.join("bitnet").join("models"))),
        }
    }

    /// Where the cache keeps `model`: `<cache>/<id>/<file name>`.
    pub fn cache_path(&self, model: &RealModel) -> Option<PathBuf> {
        Some(self.cache.as_ref()?.join(&model.id).join(model.file_name()))
    }

    /// Where `model` may lie below a model folder, in search order: the bare file name (for
    /// pinned models only: names like `ggml-model-i2_s.gguf` are shared, and only a digest
    /// tells such files apart), `<id>/<name>`, `<owner>/<repo>/<file>` and `<file>`.
    pub fn relative_paths(model: &RealModel) -> Vec<PathBuf> {
        let bare = model.is_pinned().then(|| PathBuf::from(model.file_name()));
        let mut paths: Vec<PathBuf> = Vec::new();
        for path in bare.into_iter().chain([
            Path::new(&model.id).join(model.file_name()),
            Path::new(&model.repo).join(&model.file),
            PathBuf::from(&model.file),
        ]) {
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
        paths
    }

    /// Every place `model` may lie: [`ModelDirs::relative_paths`] in each folder, then the cache.
    pub fn candidates(&self, model: &RealModel) -> Vec<PathBuf> {
        let relative = ModelDirs::relative_paths(model);
        self.dirs
            .iter()
            .flat_map(|dir| relative.iter().map(move |path| dir.join(path)))
            .chain(self.cache_path(model))
            .collect()
    }

    /// Where was looked, for messages.
    pub fn describe(&self) -> String {
        let dirs = if self.dirs.is_empty() {
            format!("no model folder given (--models DIR or {MODELS_VAR})")
        } else {
            let shown: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
            format!("model folders {}", shown.join(", "))
        };
        match &self.cache {
            Some(cache) => format!("{dirs}; cache {}", cache.display()),
            None => format!("{dirs}; no cache directory (set {CACHE_VAR})"),
        }
    }
}

fn non_empty(value: Option<OsString>) -> Option<PathBuf> {
    value.filter(|v| !v.is_empty()).map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitnet_conformance::models::parse_models;

    fn model() -> RealModel {
        let text = format!(
            "- id: m\n  repo: o/r\n  file: sub/m.gguf\n  sha256: {}\n  architecture: bitnet\n  \
             format: I2_S\n",
            "a".repeat(64)
        );
        let declared = parse_models(Path::new("models.yaml"), &text);
        declared.models.into_iter().next().unwrap()
    }

    #[test]
    fn flags_come_before_the_variable_and_the_cache_defaults_to_the_user_cache() {
        let listed = std::env::join_paths(["/b", "/c"]).unwrap();
        let dirs = ModelDirs::resolve(
            vec!["/a".into()],
            Some(listed),
            None,
            Some("/home/u/.cache".into()),
        );
        assert_eq!(
            dirs.dirs,
            [Path::new("/a"), Path::new("/b"), Path::new("/c")]
        );
        assert_eq!(
            dirs.cache,
            Some(PathBuf::from("/home/u/.cache/bitnet/models"))
        );
        let explicit = ModelDirs::resolve(vec![], None, Some("/x".into()), Some("/y".into()));
        assert_eq!(explicit.cache, Some(PathBuf::from("/x")));
        assert!(ModelDirs::resolve(vec![], None, None, None).cache.is_none());
    }

    #[test]
    fn candidates_cover_flat_per_id_and_hub_layouts_then_the_cache() {
        let dirs = ModelDirs {
            dirs: vec!["/d".into()],
            cache: Some("/cache".into()),
        };
        let expected: Vec<PathBuf> = [
            "/d/m.gguf",
            "/d/m/m.gguf",
            "/d/o/r/sub/m.gguf",
            "/d/sub/m.gguf",
            "/cache/m/m.gguf",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(dirs.candidates(&model()), expected);
        let unpinned = RealModel {
            sha256: None,
            ..model()
        };
        assert_eq!(dirs.candidates(&unpinned), expected[1..]);
        assert!(dirs.describe().contains("model folders /d; cache /cache"));
    }
}
