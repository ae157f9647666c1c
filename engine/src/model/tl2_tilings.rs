//! TL2 tilings per weight shape: from bitnet.cpp's `kernel_config.ini` or from GGUF metadata.
//!
//! A TL2 tensor's byte layout depends on the tiling (`BM`, `BK`) its kernels were generated for,
//! which a GGUF file from bitnet.cpp's converter does not record: the converter reads it from
//! `include/kernel_config.ini`, one section per shape with integer keys `m` (rows), `k` (columns),
//! `bm`, `bk` and `bmm` (keys are case-insensitive; other keys are ignored).
//!
//! Files written by this crate record the tiling of each TL2 shape in the metadata key
//! `bitnet.tl2.tiling.<m>_<k>` (`m` rows = `ne1`, `k` columns = `ne0`, in decimal), an array of two
//! integers `[BM, BK]` (written as u64; any integer type is read); bitnet.cpp ignores these keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::formats::Tl2Tiling;
use crate::gguf::{Array, Metadata, Value, ValueType};

/// The metadata key prefix of the recorded tilings.
pub const TL2_TILING_KEY_PREFIX: &str = "bitnet.tl2.tiling.";

/// The `bmm` (rows per SIMD block) the TL2 kernels and this engine's layout use.
const SIMD_ROWS: usize = 32;

/// Why a TL2 tiling table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Tl2ConfigError {
    /// The ini file could not be read.
    #[error("reading TL2 kernel config {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is neither a section header, a `key = value` pair, a comment nor blank.
    #[error("line {line}: expected `[section]` or `key = value`, found `{text}`")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// A key appears before the first section header.
    #[error("line {line}: key `{key}` is outside any section")]
    KeyOutsideSection {
        /// 1-based line number.
        line: usize,
        /// The key.
        key: String,
    },
    /// A key appears twice in one section.
    #[error("line {line}: key `{key}` repeats in section [{section}]")]
    DuplicateKey {
        /// 1-based line number of the repetition.
        line: usize,
        /// The section.
        section: String,
        /// The key.
        key: String,
    },
    /// A required key is missing from a section.
    #[error("section [{section}] (line {line}) lacks key `{key}`")]
    MissingKey {
        /// The section.
        section: String,
        /// 1-based line number of the section header.
        line: usize,
        /// The missing key (`m`, `k`, `bm`, `bk` or `bmm`).
        key: &'static str,
    },
    /// A value is not a non-negative integer.
    #[error("line {line}: `{key}` = `{value}` is not a non-negative integer")]
    BadValue {
        /// 1-based line number.
        line: usize,
        /// The key.
        key: String,
        /// The value as written.
        value: String,
    },
    /// `bmm` is not 32, the only SIMD block height bitnet.cpp's TL2 code generator accepts.
    #[error("line {line}: section [{section}] has bmm = {bmm}; TL2 kernels use bmm = 32 only")]
    UnsupportedBmm {
        /// 1-based line number of the `bmm` key.
        line: usize,
        /// The section.
        section: String,
        /// The value.
        bmm: usize,
    },
    /// Two sections give a tiling for the same shape.
    #[error("section [{section}] (line {line}) repeats shape m = {rows}, k = {cols} of line {first_line}")]
    DuplicateShape {
        /// The repeating section.
        section: String,
        /// 1-based line number of its header.
        line: usize,
        /// 1-based line number of the first section with this shape.
        first_line: usize,
        /// `m`.
        rows: usize,
        /// `k`.
        cols: usize,
    },
    /// A `bitnet.tl2.tiling.*` metadata key is malformed.
    #[error("metadata key `{key}`: {reason}")]
    Metadata {
        /// The key.
        key: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// TL2 tilings by weight shape: `(m, k)` = (rows `ne1`, columns `ne0`) → [`Tl2Tiling`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tl2Tilings {
    by_shape: BTreeMap<(usize, usize), Tl2Tiling>,
}

/// One section of the ini file while it is read.
struct Section {
    name: String,
    line: usize,
    keys: BTreeMap<String, (usize, usize)>,
}

impl Section {
    fn get(&self, key: &'static str) -> Result<(usize, usize), Tl2ConfigError> {
        self.keys
            .get(key)
            .copied()
            .ok_or_else(|| Tl2ConfigError::MissingKey {
                section: self.name.clone(),
                line: self.line,
                key,
            })
    }
}

impl Tl2Tilings {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the tiling of weights with `rows` rows and `cols` columns, replacing any earlier one.
    pub fn insert(&mut self, rows: usize, cols: usize, tiling: Tl2Tiling) {
        self.by_shape.insert((rows, cols), tiling);
    }

    /// The tiling of weights with `rows` rows and `cols` columns.
    pub fn get(&self, rows: usize, cols: usize) -> Option<Tl2Tiling> {
        self.by_shape.get(&(rows, cols)).copied()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.by_shape.is_empty()
    }

    /// Every `((rows, cols), tiling)`, by shape.
    pub fn iter(&self) -> impl Iterator<Item = ((usize, usize), Tl2Tiling)> + '_ {
        self.by_shape
            .iter()
            .map(|(&shape, &tiling)| (shape, tiling))
    }

    /// This table with the entries of `over` added, replacing those of the same shape.
    pub fn overridden_by(mut self, over: &Tl2Tilings) -> Self {
        self.by_shape.extend(over.iter());
        self
    }

    /// Reads a `kernel_config.ini` file.
    pub fn from_ini_file(path: impl AsRef<Path>) -> Result<Self, Tl2ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Tl2ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse_ini(&text)
    }

    /// Parses the text of a `kernel_config.ini` file: `[section]` headers, `key = value` (or
    /// `key: value`) lines, and blank or `#`/`;` comment lines.
    pub fn parse_ini(text: &str) -> Result<Self, Tl2ConfigError> {
        let mut sections: Vec<Section> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            if let Some(name) = trimmed
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
            {
                sections.push(Section {
                    name: name.trim().to_string(),
                    line,
                    keys: BTreeMap::new(),
                });
                continue;
            }
            let Some((key, value)) = trimmed.split_once(['=', ':']) else {
                return Err(Tl2ConfigError::Syntax {
                    line,
                    text: trimmed.to_string(),
                });
            };
            let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
            if key.is_empty() {
                return Err(Tl2ConfigError::Syntax {
                    line,
                    text: trimmed.to_string(),
                });
            }
            let Some(section) = sections.last_mut() else {
                return Err(Tl2ConfigError::KeyOutsideSection { line, key });
            };
            if section.keys.contains_key(&key) {
                return Err(Tl2ConfigError::DuplicateKey {
                    line,
                    section: section.name.clone(),
                    key,
                });
            }
            if !matches!(key.as_str(), "m" | "k" | "bm" | "bk" | "bmm") {
                continue;
            }
            let number = value.parse().map_err(|_| Tl2ConfigError::BadValue {
                line,
                key: key.clone(),
                value: value.to_string(),
            })?;
            section.keys.insert(key, (number, line));
        }
        let mut table = Tl2Tilings::new();
        let mut first_lines = BTreeMap::new();
        for section in &sections {
            let (rows, _) = section.get("m")?;
            let (cols, _) = section.get("k")?;
            let (tile_rows, _) = section.get("bm")?;
            let (tile_cols, _) = section.get("bk")?;
            let (bmm, bmm_line) = section.get("bmm")?;
            if bmm != SIMD_ROWS {
                return Err(Tl2ConfigError::UnsupportedBmm {
                    line: bmm_line,
                    section: section.name.clone(),
                    bmm,
                });
            }
            if let Some(&first_line) = first_lines.get(&(rows, cols)) {
                return Err(Tl2ConfigError::DuplicateShape {
                    section: section.name.clone(),
                    line: section.line,
                    first_line,
                    rows,
                    cols,
                });
            }
            first_lines.insert((rows, cols), section.line);
            table.insert(rows, cols, Tl2Tiling::new(tile_rows, tile_cols));
        }
        Ok(table)
    }

    /// The tilings recorded in a file's `bitnet.tl2.tiling.<m>_<k>` keys.
    pub fn from_metadata(metadata: &Metadata) -> Result<Self, Tl2ConfigError> {
        let mut table = Tl2Tilings::new();
        for (key, value) in metadata.iter() {
            let Some(shape) = key.strip_prefix(TL2_TILING_KEY_PREFIX) else {
                continue;
            };
            let malformed = |reason| Tl2ConfigError::Metadata {
                key: key.to_string(),
                reason,
            };
            let (rows, cols) = shape
                .split_once('_')
                .and_then(|(m, k)| Some((m.parse().ok()?, k.parse().ok()?)))
                .ok_or_else(|| malformed("the key must end in `<m>_<k>`, two decimal numbers"))?;
            let numbers: Option<Vec<usize>> = value.as_array().and_then(|a| {
                a.items
                    .iter()
                    .map(|v| v.as_i128().and_then(|n| usize::try_from(n).ok()))
                    .collect()
            });
            let [tile_rows, tile_cols] = numbers
                .as_deref()
                .and_then(|n| <[usize; 2]>::try_from(n).ok())
                .ok_or_else(|| malformed("the value must be an array of two integers [BM, BK]"))?;
            table.insert(rows, cols, Tl2Tiling::new(tile_rows, tile_cols));
        }
        Ok(table)
    }

    /// The `bitnet.tl2.tiling.<m>_<k>` metadata entries of this table, by shape.
    pub fn metadata_entries(&self) -> Vec<(String, Value)> {
        self.iter()
            .map(|((rows, cols), t)| {
                (
                    tl2_tiling_key(rows, cols),
                    Value::Array(Array {
                        elem: ValueType::U64,
                        items: vec![
                            Value::U64(t.tile_rows as u64),
                            Value::U64(t.tile_cols as u64),
                        ],
                    }),
                )
            })
            .collect()
    }
}

/// The metadata key recording the tiling of TL2 weights with `rows` rows and `cols` columns.
pub fn tl2_tiling_key(rows: usize, cols: usize) -> String {
    format!("{TL2_TILING_KEY_PREFIX}{rows}_{cols}")
}
