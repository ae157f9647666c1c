//! GGUF container: type table, reader, validator and writer.
//!
//! Files are memory-mapped; tensor data is handed out as zero-copy byte slices. Every malformed
//! input yields a [`GgufError`] that names the offset, key or tensor at fault.

mod cursor;
mod error;
mod hparams;
mod metadata;
mod parse;
mod stream_writer;
mod types;
mod validate;
mod value;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

pub use error::GgufError;
pub use hparams::{ModelHparams, TokenizerMeta};
pub use metadata::Metadata;
pub use parse::{
    Layout, TensorInfo, DEFAULT_ALIGNMENT, MAGIC, MAX_ALIGNMENT, MAX_ARRAY_DEPTH, MAX_DIMS,
};
pub use stream_writer::{GgufDataSink, GgufStreamWriter};
pub use types::{GgmlType, SizeError, SizeRule, TypeTable, TypeTableChoice};
pub use value::{Array, Value, ValueType};
pub use writer::GgufWriter;

/// An opened, memory-mapped GGUF file.
pub struct GgufFile {
    path: PathBuf,
    map: Option<Mmap>,
    layout: Layout,
}

impl GgufFile {
    /// Opens and fully validates a file; the first problem found is the error.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let (file, mut issues) = Self::open_with_report(path)?;
        match issues.is_empty() {
            true => Ok(file),
            false => Err(issues.swap_remove(0)),
        }
    }

    /// Opens a structurally sound file and returns every tensor-data problem beside it.
    pub fn open_with_report(path: impl AsRef<Path>) -> Result<(Self, Vec<GgufError>), GgufError> {
        let path = path.as_ref().to_path_buf();
        let io = |error| GgufError::Io {
            path: path.clone(),
            error,
        };
        let file = File::open(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let map = if len == 0 {
            None
        } else {
            // SAFETY: the map is read-only and private to this process; like every mmap-based
            // model loader, we rely on the file not being truncated while it is open.
            Some(unsafe { Mmap::map(&file) }.map_err(io)?)
        };
        let layout = Layout::parse(map.as_deref().unwrap_or(&[]))?;
        let issues = layout.validate();
        Ok((Self { path, map, layout }, issues))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Header, metadata and tensor infos.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.layout.metadata
    }

    /// The whole file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// A tensor's info by name.
    pub fn tensor_info(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.layout
            .tensor(name)
            .ok_or_else(|| GgufError::NoSuchTensor(name.to_string()))
    }

    /// A tensor's data, zero-copy from the map.
    pub fn tensor_data(&self, info: &TensorInfo) -> Result<&[u8], GgufError> {
        let bytes = self.bytes();
        let out_of_bounds = || GgufError::TensorOutOfBounds {
            tensor: info.name.clone(),
            start: info.file_offset,
            end: info.file_offset.saturating_add(info.n_bytes),
            file_len: bytes.len() as u64,
        };
        let start = usize::try_from(info.file_offset).map_err(|_| out_of_bounds())?;
        let len = usize::try_from(info.n_bytes).map_err(|_| out_of_bounds())?;
        let end = start.checked_add(len).ok_or_else(out_of_bounds)?;
        bytes.get(start..end).ok_or_else(out_of_bounds)
    }

    /// A tensor's data by name.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8], GgufError> {
        self.tensor_data(self.tensor_info(name)?)
    }
}
