//! Writing GGUF v3 files: metadata, tensor infos and aligned tensor data.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::error::GgufError;
use super::metadata::Metadata;
use super::parse::{DEFAULT_ALIGNMENT, MAGIC, MAX_ALIGNMENT, MAX_DIMS};
use super::types::GgmlType;
use super::value::Value;

/// Name, shape, type and data size of a tensor to be written.
pub(super) struct TensorDecl {
    pub(super) name: String,
    pub(super) dims: Vec<u64>,
    pub(super) ty: GgmlType,
    pub(super) len: u64,
}

impl TensorDecl {
    /// Checks a new tensor's shape against its type and the names already taken.
    pub(super) fn new<'a>(
        name: &str,
        ty: GgmlType,
        dims: &[u64],
        mut taken: impl Iterator<Item = &'a str>,
    ) -> Result<Self, GgufError> {
        let bad = |reason: String| GgufError::BadTensorForWrite {
            tensor: name.to_string(),
            reason,
        };
        if dims.is_empty() || dims.len() > MAX_DIMS as usize || dims.contains(&0) {
            return Err(bad(format!(
                "shape {dims:?} needs 1 to 4 non-zero dimensions"
            )));
        }
        if taken.any(|t| t == name) {
            return Err(bad("a tensor of this name was already added".into()));
        }
        let len = ty
            .tensor_bytes(dims)
            .map_err(|e| bad(format!("{ty} with shape {dims:?}: {e}")))?;
        Ok(TensorDecl {
            name: name.to_string(),
            dims: dims.to_vec(),
            ty,
            len,
        })
    }
}

struct PendingTensor {
    decl: TensorDecl,
    data: Vec<u8>,
}

/// Builds a GGUF file in memory and writes it out atomically.
pub struct GgufWriter {
    metadata: Metadata,
    tensors: Vec<PendingTensor>,
    alignment: u64,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// An empty file with the default alignment.
    pub fn new() -> Self {
        Self {
            metadata: Metadata::default(),
            tensors: Vec::new(),
            alignment: DEFAULT_ALIGNMENT,
        }
    }

    /// Sets a metadata key (replacing an earlier value). Setting `general.alignment` changes
    /// the alignment the writer uses.
    pub fn set(&mut self, key: &str, value: Value) -> Result<(), GgufError> {
        check_homogeneous(key, &value)?;
        if key == "general.alignment" {
            let a = value.as_i128().and_then(|v| u64::try_from(v).ok());
            match a {
                Some(a) if a.is_power_of_two() && a <= MAX_ALIGNMENT => self.alignment = a,
                _ => {
                    return Err(GgufError::BadAlignment {
                        value: a.unwrap_or(0),
                    })
                }
            }
        }
        self.metadata.set(key, value);
        Ok(())
    }

    /// Adds a tensor; `data` must be exactly the size type × shape implies.
    pub fn add_tensor(
        &mut self,
        name: &str,
        ty: GgmlType,
        dims: &[u64],
        data: Vec<u8>,
    ) -> Result<(), GgufError> {
        let decl = TensorDecl::new(
            name,
            ty,
            dims,
            self.tensors.iter().map(|t| t.decl.name.as_str()),
        )?;
        if data.len() as u64 != decl.len {
            return Err(GgufError::BadTensorForWrite {
                tensor: name.to_string(),
                reason: format!(
                    "{} bytes given, {ty} with shape {dims:?} takes {}",
                    data.len(),
                    decl.len
                ),
            });
        }
        self.tensors.push(PendingTensor { decl, data });
        Ok(())
    }

    /// The serialized file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out)
            .expect("writing to a Vec<u8> cannot fail");
        out
    }

    /// Writes the file to `path` through a temporary file and a rename, so a failure never
    /// leaves a half-written file behind.
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<(), GgufError> {
        let path = path.as_ref();
        let io = |error| GgufError::Io {
            path: path.to_path_buf(),
            error,
        };
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".partial");
        let tmp = path.with_file_name(tmp_name);
        let result = fs::File::create(&tmp).and_then(|f| {
            let mut w = io::BufWriter::new(f);
            self.write_to(&mut w)?;
            w.into_inner()
                .map_err(io::IntoInnerError::into_error)?
                .sync_all()
        });
        if let Err(e) = result.and_then(|()| fs::rename(&tmp, path)) {
            let _ = fs::remove_file(&tmp);
            return Err(io(e));
        }
        Ok(())
    }

    fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        let decls: Vec<&TensorDecl> = self.tensors.iter().map(|t| &t.decl).collect();
        w.write_all(&self.header_bytes(&decls))?;
        for t in &self.tensors {
            w.write_all(&t.data)?;
            w.write_all(&self.padding(t.data.len() as u64))?;
        }
        Ok(())
    }

    /// Zero bytes that pad `len` bytes to the alignment.
    pub(super) fn padding(&self, len: u64) -> Vec<u8> {
        vec![0u8; (len.next_multiple_of(self.alignment) - len) as usize]
    }

    /// Header, metadata and the infos of `tensors` (whose data follows in this order), padded to
    /// the alignment.
    pub(super) fn header_bytes(&self, tensors: &[&TensorDecl]) -> Vec<u8> {
        let mut header = Vec::new();
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&3u32.to_le_bytes());
        header.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in self.metadata.iter() {
            header.extend_from_slice(&encode_string(key));
            header.extend_from_slice(&value.value_type().id().to_le_bytes());
            header.extend_from_slice(&encode_value(value));
        }
        let mut offset = 0u64;
        for t in tensors {
            header.extend_from_slice(&encode_string(&t.name));
            header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                header.extend_from_slice(&d.to_le_bytes());
            }
            header.extend_from_slice(&t.ty.id().to_le_bytes());
            header.extend_from_slice(&offset.to_le_bytes());
            offset = (offset + t.len).next_multiple_of(self.alignment);
        }
        let pad = self.padding(header.len() as u64);
        header.extend_from_slice(&pad);
        header
    }
}

fn encode_string(s: &str) -> Vec<u8> {
    let mut out = (s.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

fn encode_value(v: &Value) -> Vec<u8> {
    match v {
        Value::U8(x) => x.to_le_bytes().to_vec(),
        Value::I8(x) => x.to_le_bytes().to_vec(),
        Value::U16(x) => x.to_le_bytes().to_vec(),
        Value::I16(x) => x.to_le_bytes().to_vec(),
        Value::U32(x) => x.to_le_bytes().to_vec(),
        Value::I32(x) => x.to_le_bytes().to_vec(),
        Value::F32(x) => x.to_le_bytes().to_vec(),
        Value::U64(x) => x.to_le_bytes().to_vec(),
        Value::I64(x) => x.to_le_bytes().to_vec(),
        Value::F64(x) => x.to_le_bytes().to_vec(),
        Value::Bool(x) => vec![u8::from(*x)],
        Value::String(s) => encode_string(s),
        Value::Array(a) => {
            let mut out = a.elem.id().to_le_bytes().to_vec();
            out.extend_from_slice(&(a.items.len() as u64).to_le_bytes());
            for item in &a.items {
                out.extend_from_slice(&encode_value(item));
            }
            out
        }
    }
}

fn check_homogeneous(key: &str, v: &Value) -> Result<(), GgufError> {
    let Value::Array(a) = v else {
        return Ok(());
    };
    for item in &a.items {
        if item.value_type() != a.elem {
            return Err(GgufError::WrongKeyType {
                key: key.to_string(),
                expected: "array items of the declared element type",
                found: item.value_type(),
            });
        }
        check_homogeneous(key, item)?;
    }
    Ok(())
}
