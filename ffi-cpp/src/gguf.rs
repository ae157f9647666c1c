//! GGUF headers as the reference's own reader sees them.

use crate::backend::Backend;
use crate::bindings as sys;
use crate::convert::{owned_string, path_to_cstring};
use crate::error::{check, RefError};
use crate::types::GgmlType;

use std::mem::MaybeUninit;
use std::path::Path;
use std::ptr::{self, NonNull};

/// GGUF value type id of strings (`GGUF_TYPE_STRING`).
pub const GGUF_TYPE_STRING: i32 = 8;
/// GGUF value type id of arrays (`GGUF_TYPE_ARRAY`).
pub const GGUF_TYPE_ARRAY: i32 = 9;

/// The header of a GGUF file: metadata and tensor directory (no tensor data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufHeader {
    pub version: u32,
    pub alignment: u64,
    /// File offset of the tensor data section.
    pub data_offset: u64,
    pub metadata: Vec<GgufKv>,
    pub tensors: Vec<GgufTensor>,
}

/// One metadata entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufKv {
    pub key: String,
    /// GGUF value type id (`gguf_type`).
    pub value_type: i32,
    /// For arrays: element type id and element count.
    pub array: Option<(i32, u64)>,
    /// For strings: the value.
    pub string: Option<String>,
}

/// One entry of the tensor directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensor {
    pub name: String,
    pub ggml_type: GgmlType,
    /// Dimensions as ggml counts them (trailing 1s dropped, at least 1).
    pub n_dims: u32,
    pub ne: [u64; 4],
    /// Offset of the data relative to the data section.
    pub offset: u64,
    /// Size of the data by the reference's rule (`ggml_nbytes`).
    pub nbytes: u64,
}

impl GgufHeader {
    /// Reads the header of `path` with `gguf_init_from_file` (no_alloc). Malformed files are
    /// rejected by a structural check first, so they fail instead of aborting the process.
    pub fn read(_backend: &Backend, path: impl AsRef<Path>) -> Result<Self, RefError> {
        let file = GgufHandle::open(path.as_ref())?;
        let summary = file.summary()?;
        let metadata = (0..summary.n_kv)
            .map(|i| file.kv(i))
            .collect::<Result<_, _>>()?;
        let tensors = (0..summary.n_tensors)
            .map(|i| file.tensor(i))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            version: summary.version,
            alignment: summary.alignment,
            data_offset: summary.data_offset,
            metadata,
            tensors,
        })
    }

    /// The metadata entry named `key`.
    pub fn kv(&self, key: &str) -> Option<&GgufKv> {
        self.metadata.iter().find(|kv| kv.key == key)
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&GgufTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// An open `bnref_gguf`, freed on drop.
struct GgufHandle(NonNull<sys::bnref_gguf>);

impl GgufHandle {
    fn open(path: &Path) -> Result<Self, RefError> {
        const CALL: &str = "bnref_gguf_open";
        let c_path = path_to_cstring(CALL, path)?;
        let mut raw = ptr::null_mut();
        // SAFETY: `c_path` is a valid C string and `raw` a valid output location.
        check(CALL, unsafe {
            sys::bnref_gguf_open(c_path.as_ptr(), &mut raw)
        })?;
        NonNull::new(raw)
            .map(Self)
            .ok_or_else(|| RefError::Internal {
                call: CALL,
                message: "succeeded without a handle".into(),
            })
    }

    fn summary(&self) -> Result<sys::bnref_gguf_summary, RefError> {
        let mut out = MaybeUninit::uninit();
        // SAFETY: the handle is open and `out` is a valid place for the summary.
        check("bnref_gguf_summary_get", unsafe {
            sys::bnref_gguf_summary_get(self.0.as_ptr(), out.as_mut_ptr())
        })?;
        // SAFETY: on success the shim filled every field.
        Ok(unsafe { out.assume_init() })
    }

    fn kv(&self, index: i64) -> Result<GgufKv, RefError> {
        let mut out = MaybeUninit::<sys::bnref_gguf_kv>::uninit();
        // SAFETY: the handle is open and `out` is a valid place for one entry.
        check("bnref_gguf_kv_get", unsafe {
            sys::bnref_gguf_kv_get(self.0.as_ptr(), index, out.as_mut_ptr())
        })?;
        // SAFETY: on success the shim filled every field.
        let raw = unsafe { out.assume_init() };
        Ok(GgufKv {
            // SAFETY: the key and string value live as long as the handle, which is open.
            key: unsafe { owned_string(raw.key) },
            value_type: raw.value_type,
            array: (raw.array_len >= 0).then(|| (raw.array_type, raw.array_len.unsigned_abs())),
            // SAFETY: as above; NULL when the value is not a string.
            string: (!raw.str_value.is_null()).then(|| unsafe { owned_string(raw.str_value) }),
        })
    }

    fn tensor(&self, index: i64) -> Result<GgufTensor, RefError> {
        let mut out = MaybeUninit::<sys::bnref_gguf_tensor>::uninit();
        // SAFETY: the handle is open and `out` is a valid place for one tensor entry.
        check("bnref_gguf_tensor_get", unsafe {
            sys::bnref_gguf_tensor_get(self.0.as_ptr(), index, out.as_mut_ptr())
        })?;
        // SAFETY: on success the shim filled every field.
        let raw = unsafe { out.assume_init() };
        Ok(GgufTensor {
            // SAFETY: the name lives as long as the handle, which is open.
            name: unsafe { owned_string(raw.name) },
            ggml_type: GgmlType(raw.type_.unsigned_abs()),
            n_dims: raw.n_dims,
            ne: raw.ne.map(i64::unsigned_abs),
            offset: raw.offset,
            nbytes: raw.nbytes,
        })
    }
}

impl Drop for GgufHandle {
    fn drop(&mut self) {
        // SAFETY: the handle came from bnref_gguf_open and is freed exactly once.
        unsafe { sys::bnref_gguf_free(self.0.as_ptr()) }
    }
}
