//! TL1 and TL2 tilings per weight shape: from bitnet.cpp's `kernel_config.ini` or from GGUF metadata.
//!
//! A TL1 or TL2 tensor's byte layout depends on the tiling (`BM`, `BK`, `bmm`) its kernels were
//! generated for, which a GGUF file from bitnet.cpp's converter does not record: the converter
//! reads it from `include/kernel_config.ini`, one section per shape with integer keys `m` (rows),
//! `k` (columns), `bm`, `bk` and `bmm` (keys are case-insensitive; other keys are ignored).
//!
//! Files written by this crate record the tiling of each shape in the metadata key
//! `bitnet.<format>.tiling.<m>_<k>` (`tl1` or `tl2`; `m` rows = `ne1`, `k` columns = `ne0`, in
//! decimal): an array of integers, `[BM, BK]` for TL2 (whose `bmm` is always 32) and
//! `[BM, BK, bmm]` for TL1 (written as u64; any integer type is read). bitnet.cpp ignores these
//! keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::formats::{Tl1Tiling, Tl2Tiling};
use crate::gguf::{Array, Metadata, Value, ValueType};

/// A lookup-table format's tiling, as a kernel config section and a metadata entry give it.
pub trait LutTiling: Copy + Eq + std::fmt::Debug {
    /// The format's name in metadata keys and messages (`tl1`, `tl2`).
    const FORMAT: &'static str;
    /// The `bmm` values its code generator accepts, in words.
    const SIMD_ROWS: &'static str;
    /// The layout of its metadata array, in words.
    const METADATA: &'static str;

    /// The tiling of a config section, or `None` when `bmm` is not one the generator accepts.
    fn from_section(bm: usize, bk: usize, bmm: usize) -> Option<Self>;

    /// The tiling a metadata array records, or `None` when it has the wrong length.
    fn from_numbers(numbers: &[usize]) -> Option<Self>;

    /// The metadata array of this tiling.
    fn numbers(&self) -> Vec<usize>;
}

impl LutTiling for Tl2Tiling {
    const FORMAT: &'static str = "tl2";
    const SIMD_ROWS: &'static str = "32";
    const METADATA: &'static str = "two integers [BM, BK]";

    fn from_section(bm: usize, bk: usize, bmm: usize) -> Option<Self> {
        (bmm == 32).then_some(Tl2Tiling::new(bm, bk))
    }

    fn from_numbers(numbers: &[usize]) -> Option<Self> {
        let [bm, bk] = <[usize; 2]>::try_from(numbers).ok()?;
        Some(Tl2Tiling::new(bm, bk))
    }

    fn numbers(&self) -> Vec<usize> {
        vec![self.tile_rows, self.tile_cols]
    }
}

impl LutTiling for Tl1Tiling {
    const FORMAT: &'static str = "tl1";
    const SIMD_ROWS: &'static str = "32 or 64";
    const METADATA: &'static str = "three integers [BM, BK, bmm]";

    fn from_section(bm: usize, bk: usize, bmm: usize) -> Option<Self> {
        matches!(bmm, 32 | 64).then_some(Tl1Tiling::new(bm, bk, bmm))
    }

    fn from_numbers(numbers: &[usize]) -> Option<Self> {
        let [bm, bk, bmm] = <[usize; 3]>::try_from(numbers).ok()?;
        Some(Tl1Tiling::new(bm, bk, bmm))
    }

    fn numbers(&self) -> Vec<usize> {
        vec![self.tile_rows, self.tile_cols, self.simd_rows]
    }
}

/// Why a tiling table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TilingConfigError {
    /// The ini file could not be read.
    #[error("reading {format} kernel config {path}: {source}")]
    Io {
        /// The format (`tl1`, `tl2`).
        format: &'static str,
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
    /// `bmm` is not a SIMD block height the format's code generator accepts.
    #[error("line {line}: section [{section}] has bmm = {bmm}; {format} kernels use bmm = {allowed} only")]
    UnsupportedBmm {
        /// The format (`tl1`, `tl2`).
        format: &'static str,
        /// The heights it accepts.
        allowed: &'static str,
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
    /// A `bitnet.<format>.tiling.*` metadata key is malformed.
    #[error("metadata key `{key}`: {reason}")]
    Metadata {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// Tilings by weight shape: `(m, k)` = (rows `ne1`, columns `ne0`) → tiling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LutTilings<T> {
    by_shape: BTreeMap<(usize, usize), T>,
}

/// TL1 tilings by weight shape.
pub type Tl1Tilings = LutTilings<Tl1Tiling>;
/// TL2 tilings by weight shape.
pub type Tl2Tilings = LutTilings<Tl2Tiling>;

/// The TL1 and TL2 tilings a model's weights are read with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelTilings {
    /// TL1 tilings.
    pub tl1: Tl1Tilings,
    /// TL2 tilings.
    pub tl2: Tl2Tilings,
}

impl ModelTilings {
    /// The tilings a file records, overridden by `tl1` and `tl2` shape by shape.
    pub fn resolve(
        metadata: &Metadata,
        tl1: &Tl1Tilings,
        tl2: &Tl2Tilings,
    ) -> Result<Self, TilingConfigError> {
        Ok(ModelTilings {
            tl1: Tl1Tilings::from_metadata(metadata)?.overridden_by(tl1),
            tl2: Tl2Tilings::from_metadata(metadata)?.overridden_by(tl2),
        })
    }
}

impl<T> Default for LutTilings<T> {
    fn default() -> Self {
        LutTilings {
            by_shape: BTreeMap::new(),
        }
    }
}

/// One section of the ini file while it is read.
struct Section {
    name: String,
    line: usize,
    keys: BTreeMap<String, (usize, usize)>,
}

impl Section {
    fn get(&self, key: &'static str) -> Result<(usize, usize), TilingConfigError> {
        self.keys
            .get(key)
            .copied()
            .ok_or_else(|| TilingConfigError::MissingKey {
                section: self.name.clone(),
                line: self.line,
                key,
            })
    }
}

impl<T: LutTiling> LutTilings<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the tiling of weights with `rows` rows and `cols` columns, replacing any earlier one.
    pub fn insert(&mut self, rows: usize, cols: usize, tiling: T) {
        self.by_shape.insert((rows, cols), tiling);
    }

    /// The tiling of weights with `rows` rows and `cols` columns.
    pub fn get(&self, rows: usize, cols: usize) -> Option<T> {
        self.by_shape.get(&(rows, cols)).copied()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.by_shape.is_empty()
    }

    /// Every `((rows, cols), tiling)`, by shape.
    pub fn iter(&self) -> impl Iterator<Item = ((usize, usize), T)> + '_ {
        self.by_shape
            .iter()
            .map(|(&shape, &tiling)| (shape, tiling))
    }

    /// This table with the entries of `over` added, replacing those of the same shape.
    pub fn overridden_by(mut self, over: &Self) -> Self {
        self.by_shape.extend(over.iter());
        self
    }

    /// Reads a `kernel_config.ini` file.
    pub fn from_ini_file(path: impl AsRef<Path>) -> Result<Self, TilingConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| TilingConfigError::Io {
            format: T::FORMAT,
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse_ini(&text)
    }

    /// Parses the text of a `kernel_config.ini` file: `[section]` headers, `key = value` (or
    /// `key: value`) lines, and blank or `#`/`;` comment lines.
    pub fn parse_ini(text: &str) -> Result<Self, TilingConfigError> {
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
                return Err(TilingConfigError::Syntax {
                    line,
                    text: trimmed.to_string(),
                });
            };
            let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
            if key.is_empty() {
                return Err(TilingConfigError::Syntax {
                    line,
                    text: trimmed.to_string(),
                });
            }
            let Some(section) = sections.last_mut() else {
                return Err(TilingConfigError::KeyOutsideSection { line, key });
            };
            if section.keys.contains_key(&key) {
                return Err(TilingConfigError::DuplicateKey {
                    line,
                    section: section.name.clone(),
                    key,
                });
            }
            if !matches!(key.as_str(), "m" | "k" | "bm" | "bk" | "bmm") {
                continue;
            }
            let number = value.parse().map_err(|_| TilingConfigError::BadValue {
                line,
                key: key.clone(),
                value: value.to_string(),
            })?;
            section.keys.insert(key, (number, line));
        }
        let mut table = Self::new();
        let mut first_lines = BTreeMap::new();
        for section in &sections {
            let (rows, _) = section.get("m")?;
            let (cols, _) = section.get("k")?;
            let (tile_rows, _) = section.get("bm")?;
            let (tile_cols, _) = section.get("bk")?;
            let (bmm, bmm_line) = section.get("bmm")?;
            let tiling = T::from_section(tile_rows, tile_cols, bmm).ok_or_else(|| {
                TilingConfigError::UnsupportedBmm {
                    format: T::FORMAT,
                    allowed: T::SIMD_ROWS,
                    line: bmm_line,
                    section: section.name.clone(),
                    bmm,
                }
            })?;
            if let Some(&first_line) = first_lines.get(&(rows, cols)) {
                return Err(TilingConfigError::DuplicateShape {
                    section: section.name.clone(),
                    line: section.line,
                    first_line,
                    rows,
                    cols,
                });
            }
            first_lines.insert((rows, cols), section.line);
            table.insert(rows, cols, tiling);
        }
        Ok(table)
    }

    /// The tilings recorded in a file's `bitnet.<format>.tiling.<m>_<k>` keys.
    pub fn from_metadata(metadata: &Metadata) -> Result<Self, TilingConfigError> {
        let mut table = Self::new();
        let prefix = Self::key_prefix();
        for (key, value) in metadata.iter() {
            let Some(shape) = key.strip_prefix(&prefix) else {
                continue;
            };
            let malformed = |reason: String| TilingConfigError::Metadata {
                key: key.to_string(),
                reason,
            };
            let (rows, cols) = shape
                .split_once('_')
                .and_then(|(m, k)| Some((m.parse().ok()?, k.parse().ok()?)))
                .ok_or_else(|| {
                    malformed("the key must end in `<m>_<k>`, two decimal numbers".into())
                })?;
            let numbers: Option<Vec<usize>> = value.as_array().and_then(|a| {
                a.items
                    .iter()
                    .map(|v| v.as_i128().and_then(|n| usize::try_from(n).ok()))
                    .collect()
            });
            let tiling = numbers
                .as_deref()
                .and_then(T::from_numbers)
                .ok_or_else(|| {
                    malformed(format!("the value must be an array of {}", T::METADATA))
                })?;
            table.insert(rows, cols, tiling);
        }
        Ok(table)
    }

    /// The `bitnet.<format>.tiling.<m>_<k>` metadata entries of this table, by shape.
    pub fn metadata_entries(&self) -> Vec<(String, Value)> {
        self.iter()
            .map(|((rows, cols), t)| {
                let items = t.numbers().into_iter().map(|n| Value::U64(n as u64));
                (
                    Self::key(rows, cols),
                    Value::Array(Array {
                        elem: ValueType::U64,
                        items: items.collect(),
                    }),
                )
            })
            .collect()
    }

    /// The metadata key recording the tiling of weights with `rows` rows and `cols` columns.
    pub fn key(rows: usize, cols: usize) -> String {
        format!("{}{rows}_{cols}", Self::key_prefix())
    }

    fn key_prefix() -> String {
        format!("bitnet.{}.tiling.", T::FORMAT)
    }
}
