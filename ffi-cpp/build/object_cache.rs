//! Reusing the compiled reference across build-script runs.
//!
//! Cargo gives each profile and feature set its own `OUT_DIR` (`cargo build`, `cargo test`
//! and `cargo clippy` each get one), but the reference is compiled with fixed flags, so its
//! objects are the same in all of them. They are kept once per target profile, beside the
//! build-script directories, in a directory named after everything that affects them.

use crate::sources::{fnv1a, FNV_OFFSET};

use std::fs;
use std::path::{Path, PathBuf};

const STAMP: &str = "stamp";

pub struct ObjectCache {
    dir: PathBuf,
    key: String,
}

impl ObjectCache {
    /// The cache for objects described by `key` (sources, compiler, flags).
    pub fn new(out_dir: &Path, key: String) -> Self {
        let build_dir = out_dir
            .parent()
            .and_then(Path::parent)
            .filter(|dir| dir.file_name().is_some_and(|name| name == "build"));
        let dir = match build_dir {
            Some(build) => build.join(format!(
                "bnref-reference-{:016x}",
                fnv1a(FNV_OFFSET, key.bytes())
            )),
            None => out_dir.join("reference-cache"),
        };
        Self { dir, key }
    }

    /// The cached objects, if a complete set for this key is there.
    pub fn load(&self) -> Option<Vec<PathBuf>> {
        let stamp = fs::read_to_string(self.dir.join(STAMP)).ok()?;
        let names = stamp.strip_prefix(&self.key)?;
        let objects = names
            .lines()
            .map(|name| self.dir.join(name))
            .collect::<Vec<_>>();
        (!objects.is_empty() && objects.iter().all(|o| o.is_file())).then_some(objects)
    }

    /// Moves freshly compiled `objects` (all in `staging`) into the cache and returns their
    /// new paths; keeps them in `staging` if the cache cannot take them.
    pub fn store(&self, staging: &Path, objects: Vec<PathBuf>) -> Result<Vec<PathBuf>, String> {
        let names = objects
            .iter()
            .map(|o| {
                o.strip_prefix(staging)
                    .map(|name| name.to_string_lossy().into_owned())
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| format!("an object was compiled outside {}", staging.display()))?;
        let stamp = format!(
            "{}{}",
            self.key,
            names.iter().map(|n| format!("{n}\n")).collect::<String>()
        );
        fs::write(staging.join(STAMP), stamp)
            .map_err(|e| format!("cannot write the object stamp: {e}"))?;
        if let Some(parent) = self.dir.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let _ = fs::remove_dir_all(&self.dir);
        match fs::rename(staging, &self.dir) {
            Ok(()) => Ok(names.iter().map(|n| self.dir.join(n)).collect()),
            Err(_) => Ok(objects),
        }
    }
}
