//! Finding and parsing case files: `<root>/<kind>/**/*.yaml`, in sorted order. The models
//! file beside the kind folders (`models.yaml`) is read by [`crate::models`].
//!
//! A file that cannot be read or parsed yields one error and no cases, so the runner can turn
//! it into a single failing trial named after the file while every other file still runs.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::case::{Case, CaseKind, CaseParams, Entry, Location};
use crate::models::{CASE_PREFIX, MODELS_FILE};
use crate::yaml::{split_error, Outline};

/// What discovery found: the cases that parsed, and everything that went wrong.
#[derive(Debug, Default)]
pub struct Discovered {
    /// Parsed cases, sorted by file then line, ids unique.
    pub cases: Vec<Case>,
    /// Files that failed, duplicate ids, or the absence of any case.
    pub errors: Vec<DiscoveryError>,
}

/// A problem with the fixture tree, a case file, or the set of cases.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// A file or folder could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// The I/O failure.
        source: io::Error,
    },
    /// The YAML is malformed or does not fit the schema.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The case file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A case breaks a rule spanning several fields.
    #[error("{location}: {message}")]
    Invalid {
        /// The case.
        location: Location,
        /// What is wrong.
        message: String,
    },
    /// A case file holds no case.
    #[error("{path}: holds no case; a case file is a YAML list of cases")]
    Empty {
        /// The case file.
        path: PathBuf,
    },
    /// A folder holding YAML files is not named after a kind.
    #[error("{path}: folder holds case files but `{name}` is not a kind (kinds: {kinds})", kinds = CaseKind::names())]
    UnknownKind {
        /// The folder.
        path: PathBuf,
        /// Its name.
        name: String,
    },
    /// A YAML file sits directly in the fixtures root.
    #[error("{path}: case files belong in a folder named after their kind ({kinds})", kinds = CaseKind::names())]
    Misplaced {
        /// The file.
        path: PathBuf,
    },
    /// Two cases share an id.
    #[error("case id `{id}` is used twice: {first} and {second}")]
    DuplicateId {
        /// The id.
        id: String,
        /// Where it was first used (this case is kept).
        first: Location,
        /// Where it was used again (this case is dropped).
        second: Location,
    },
    /// Nothing was found at all.
    #[error("{root}: no case found")]
    NoCases {
        /// The fixtures root.
        root: PathBuf,
    },
}

impl DiscoveryError {
    /// The file (or folder) the error is about, to name its failing trial after.
    pub fn path(&self) -> &Path {
        match self {
            DiscoveryError::Read { path, .. }
            | DiscoveryError::Parse { path, .. }
            | DiscoveryError::Empty { path }
            | DiscoveryError::UnknownKind { path, .. }
            | DiscoveryError::Misplaced { path } => path,
            DiscoveryError::Invalid { location, .. } => &location.path,
            DiscoveryError::DuplicateId { second, .. } => &second.path,
            DiscoveryError::NoCases { root } => root,
        }
    }
}

/// Discovers every case under `root`.
pub fn discover(root: &Path) -> Discovered {
    let mut found = Discovered::default();
    let files = match case_files(root, &mut found.errors) {
        Ok(files) => files,
        Err(source) => {
            found.errors.push(DiscoveryError::Read {
                path: root.to_path_buf(),
                source,
            });
            return found;
        }
    };
    let mut cases = Vec::new();
    for (kind, path) in files {
        match fs::read_to_string(&path) {
            Ok(text) => match parse_case_file(kind, &path, &text) {
                Ok(parsed) => cases.extend(parsed),
                Err(err) => found.errors.push(err),
            },
            Err(source) => found.errors.push(DiscoveryError::Read { path, source }),
        }
    }
    let (cases, duplicates) = unique_ids(cases);
    found.cases = cases;
    found.errors.extend(duplicates);
    if found.cases.is_empty() {
        found.errors.push(DiscoveryError::NoCases {
            root: root.to_path_buf(),
        });
    }
    found
}

/// Parses one case file of `kind`; `path` goes into every location and message.
pub fn parse_case_file(
    kind: CaseKind,
    path: &Path,
    text: &str,
) -> Result<Vec<Case>, DiscoveryError> {
    match kind {
        CaseKind::Alignment => parse_entries(path, text, CaseParams::Alignment),
        CaseKind::Quantization => parse_entries(path, text, CaseParams::Quantization),
        CaseKind::Logits => parse_entries(path, text, CaseParams::Logits),
        CaseKind::Perplexity => parse_entries(path, text, CaseParams::Perplexity),
        CaseKind::TokenMatch => parse_entries(path, text, CaseParams::TokenMatch),
    }
}

fn parse_entries<P: DeserializeOwned>(
    path: &Path,
    text: &str,
    wrap: fn(P) -> CaseParams,
) -> Result<Vec<Case>, DiscoveryError> {
    let entries: Option<Vec<Entry<P>>> = serde_yaml::from_str(text).map_err(|err| {
        let (position, message) = split_error(&err);
        let (line, column) = position.unwrap_or((1, 1));
        DiscoveryError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    })?;
    let entries = entries.unwrap_or_default();
    if entries.is_empty() {
        return Err(DiscoveryError::Empty {
            path: path.to_path_buf(),
        });
    }
    let outline = Outline::parse(text).map_err(|message| DiscoveryError::Parse {
        path: path.to_path_buf(),
        line: 1,
        column: 1,
        message,
    })?;
    entries
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            let location = Location {
                path: path.to_path_buf(),
                line: outline.items().get(index).map_or(1, |item| item.line),
            };
            if entry.header.id.starts_with(CASE_PREFIX) {
                return Err(DiscoveryError::Invalid {
                    location,
                    message: format!(
                        "case id `{}`: ids starting with `{CASE_PREFIX}` belong to the lanes of                          the models file",
                        entry.header.id
                    ),
                });
            }
            Case::assemble(entry.header, wrap(entry.params), location.clone())
                .map_err(|message| DiscoveryError::Invalid { location, message })
        })
        .collect()
}

/// Keeps the first case of each id and reports every later one.
fn unique_ids(cases: Vec<Case>) -> (Vec<Case>, Vec<DiscoveryError>) {
    let mut seen: HashMap<String, Location> = HashMap::new();
    let mut kept = Vec::new();
    let mut errors = Vec::new();
    for case in cases {
        if let Some(first) = seen.get(&case.id) {
            errors.push(DiscoveryError::DuplicateId {
                id: case.id.clone(),
                first: first.clone(),
                second: case.location.clone(),
            });
        } else {
            seen.insert(case.id.clone(), case.location.clone());
            kept.push(case);
        }
    }
    (kept, errors)
}

/// Every case file under `root` with its kind, sorted; misplaced files become errors.
fn case_files(
    root: &Path,
    errors: &mut Vec<DiscoveryError>,
) -> io::Result<Vec<(CaseKind, PathBuf)>> {
    let mut files = Vec::new();
    for path in sorted_entries(root)? {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path.is_dir() {
            let mut yaml = Vec::new();
            collect_yaml(&path, &mut yaml, errors);
            match CaseKind::from_name(&name) {
                Some(kind) => files.extend(yaml.into_iter().map(|file| (kind, file))),
                None if !yaml.is_empty() => {
                    errors.push(DiscoveryError::UnknownKind { path, name });
                }
                None => {}
            }
        } else if is_yaml(&path) && name != MODELS_FILE {
            errors.push(DiscoveryError::Misplaced { path });
        }
    }
    Ok(files)
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>, errors: &mut Vec<DiscoveryError>) {
    let entries = match sorted_entries(dir) {
        Ok(entries) => entries,
        Err(source) => {
            errors.push(DiscoveryError::Read {
                path: dir.to_path_buf(),
                source,
            });
            return;
        }
    };
    for path in entries {
        if path.is_dir() {
            collect_yaml(&path, out, errors);
        } else if is_yaml(&path) {
            out.push(path);
        }
    }
}

/// Entries of `dir` sorted by name, hidden ones left out.
fn sorted_entries(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}

fn is_yaml(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext == "yaml" || ext == "yml")
}
