//! Real-model lanes in a run: the models file's cases, pointed at the files found on this
//! machine. Lanes of a model that is not here — no file of its name, or only files that are not
//! the declared one — are ignored (failing under `--strict`) with where was looked, what was
//! rejected and how to get the file.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use bitnet_conformance::case::{Case, FileRef, Origin};
use bitnet_conformance::discovery::DiscoveryError;
use bitnet_conformance::models::load_models;

use crate::models::{locate, DigestCache, Located, ModelDirs};

/// The lanes of the declared real models, ready to expand into trials.
#[derive(Debug, Default)]
pub struct RealLanes {
    /// Every lane as a case; those whose model was found load it from where it was found.
    pub cases: Vec<Case>,
    /// Why the lanes of a model that is not here cannot run, by case id.
    pub missing: BTreeMap<String, String>,
    /// Problems with the models file itself.
    pub errors: Vec<DiscoveryError>,
}

/// Reads the models file at `file` and looks for each model in `dirs`. A file that does not
/// exist declares nothing, unless it was named explicitly (`explicit`).
pub fn prepare(file: &Path, explicit: bool, dirs: &ModelDirs) -> RealLanes {
    let mut lanes = RealLanes::default();
    if !file.exists() {
        if explicit {
            lanes.errors.push(DiscoveryError::Read {
                path: file.to_path_buf(),
                source: io::Error::new(io::ErrorKind::NotFound, "no such models file"),
            });
        }
        return lanes;
    }
    let declared = load_models(file);
    lanes.errors = declared.errors;
    let mut digests = DigestCache::open(dirs.cache.as_deref());
    let located: BTreeMap<&str, Located> = declared
        .models
        .iter()
        .map(|model| (model.id.as_str(), locate(model, dirs, &mut digests)))
        .collect();
    if let Err(error) = digests.save() {
        eprintln!("warning: cannot record verified digests: {error}");
    }
    for (id, found) in &located {
        if let Located::Found {
            path,
            pinned: false,
        } = found
        {
            eprintln!(
                "warning: model `{id}` is UNPINNED (its entry declares no sha256): {} was \
                 taken on its name alone",
                path.display()
            );
        }
    }
    for mut case in declared.cases {
        let Origin::RealModel { model, .. } = &case.origin else {
            continue;
        };
        match located.get(model.as_str()) {
            Some(Located::Found { path, .. }) => {
                if let Some(file) = case.model_mut() {
                    // Verified by `locate` (digests are remembered), so not hashed again.
                    *file = FileRef {
                        path: path.clone(),
                        sha256: None,
                        root: None,
                    };
                }
            }
            Some(Located::Missing(why) | Located::Mismatch(why)) => {
                lanes.missing.insert(case.id.clone(), why.clone());
            }
            None => {}
        }
        lanes.cases.push(case);
    }
    lanes
}
