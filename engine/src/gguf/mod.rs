//! GGUF container: type table, reader, validator and writer.
//!
//! Files are memory-mapped, or read once into memory backed by huge pages ([`Residency`]);
//! tensor data is handed out as zero-copy byte slices. Every malformed input yields a
//! [`GgufError`] that names the offset, key or tensor at fault.

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
use std::io::Read;
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

/// How an opened file's bytes are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Residency {
    /// Mapped from the file and paged in on first use.
    #[default]
    Mapped,
    /// Read once into anonymous memory advised for transparent huge pages (on Linux, where the
    /// system allows them; elsewhere, or when it does not, plain pages): a decode step, which
    /// streams every weight, then walks 2 MiB pages instead of 4 KiB ones.
    HugePages,
}

/// An opened GGUF file, memory-mapped or resident.
pub struct GgufFile {
    path: PathBuf,
    map: Option<Mmap>,
    residency: Residency,
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
        Self::open_with_report_in(path, Residency::Mapped)
    }

    /// [`GgufFile::open`] with the bytes held as `residency` says.
    pub fn open_in(path: impl AsRef<Path>, residency: Residency) -> Result<Self, GgufError> {
        let (file, mut issues) = Self::open_with_report_in(path, residency)?;
        match issues.is_empty() {
            true => Ok(file),
            false => Err(issues.swap_remove(0)),
        }
    }

    fn open_with_report_in(
        path: impl AsRef<Path>,
        residency: Residency,
    ) -> Result<(Self, Vec<GgufError>), GgufError> {
        let path = path.as_ref().to_path_buf();
        let io = |error| GgufError::Io {
            path: path.clone(),
            error,
        };
        let file = File::open(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let map = match (len, residency) {
            (0, _) => None,
            // SAFETY: the map is read-only and private to this process; like every mmap-based
            // model loader, we rely on the file not being truncated while it is open.
            (_, Residency::Mapped) => Some(unsafe { Mmap::map(&file) }.map_err(io)?),
            (_, Residency::HugePages) => Some(read_resident(&file, len).map_err(io)?),
        };
        let layout = Layout::parse(map.as_deref().unwrap_or(&[]))?;
        let issues = layout.validate();
        let file = Self {
            path,
            map,
            residency,
            layout,
        };
        Ok((file, issues))
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

    /// Calls `edit` on the whole file's bytes, writable, where they are resident (the memory is
    /// made writable for the call and read-only again after it); `None` where they are mapped
    /// from the file, whose pages are the system's cache of it.
    pub fn edit_resident<R>(
        &mut self,
        edit: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<Option<R>, GgufError> {
        if self.residency != Residency::HugePages {
            return Ok(None);
        }
        let Some(map) = self.map.take() else {
            return Ok(Some(edit(&mut [])));
        };
        let io = |error| GgufError::Io {
            path: self.path.clone(),
            error,
        };
        let mut writable = map.make_mut().map_err(io)?;
        let result = edit(&mut writable);
        self.map = Some(writable.make_read_only().map_err(io)?);
        Ok(Some(result))
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

/// The whole of `file` (`len` bytes) read into anonymous memory advised for huge pages.
fn read_resident(file: &File, len: u64) -> std::io::Result<Mmap> {
    let len = usize::try_from(len).map_err(std::io::Error::other)?;
    let mut memory = memmap2::MmapMut::map_anon(len)?;
    // Only a hint: a system without transparent huge pages refuses it, and plain pages serve.
    #[cfg(target_os = "linux")]
    let _ = memory.advise(memmap2::Advice::HugePage);
    let mut reader = file;
    reader.read_exact(&mut memory)?;
    memory.make_read_only()
}
