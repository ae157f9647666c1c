//! Parsing the GGUF header, metadata and tensor infos into a [`Layout`].

use std::collections::HashMap;

use serde::Serialize;

use super::cursor::Cursor;
use super::error::GgufError;
use super::metadata::Metadata;
use super::types::{GgmlType, TypeTableChoice};
use super::value::{Array, Value, ValueType};

/// The four magic bytes at the start of every GGUF file.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment used when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Largest `general.alignment` accepted (real files use 32).
pub const MAX_ALIGNMENT: u64 = 1 << 20;
/// Deepest array-of-array nesting accepted (real files use at most 2).
pub const MAX_ARRAY_DEPTH: usize = 8;
/// Most dimensions a ggml tensor can have.
pub const MAX_DIMS: u32 = 4;

/// One tensor's header entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorInfo {
    pub name: String,
    /// Shape, ne0 (the contiguous axis) first.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset relative to the start of the data section, as stored.
    pub offset: u64,
    /// Absolute offset of the data in the file.
    pub file_offset: u64,
    /// Data size in bytes implied by type × shape.
    pub n_bytes: u64,
    /// Absolute offset of this tensor info in the header.
    pub info_offset: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// Everything in a GGUF file except the tensor bytes.
#[derive(Debug, Clone, Serialize)]
pub struct Layout {
    pub version: u32,
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    pub type_table: TypeTableChoice,
    pub file_len: u64,
}

struct RawTensor {
    name: String,
    dims: Vec<u64>,
    type_id: u32,
    offset: u64,
    info_offset: u64,
}

impl Layout {
    /// Parses the header of `bytes` (a whole file). Structural errors stop parsing; tensor-data
    /// checks are left to [`Layout::validate`].
    pub fn parse(bytes: &[u8]) -> Result<Self, GgufError> {
        let mut c = Cursor::new(bytes);
        let magic: [u8; 4] = c.array("magic")?;
        if magic != MAGIC {
            return Err(GgufError::BadMagic { found: magic });
        }
        let version = c.u32("version")?;
        if version != 2 && version != 3 {
            let hint = if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
                " — this is a big-endian GGUF, only little-endian files are supported"
            } else if version == 1 {
                " — GGUF v1 (32-bit counts) is obsolete"
            } else {
                ""
            };
            return Err(GgufError::UnsupportedVersion { version, hint });
        }
        const MIN_TENSOR_INFO: u64 = 8 + 4 + 8 + 4 + 8;
        let n_tensors = c.count(MIN_TENSOR_INFO, "tensor count")?;
        let n_kv = c.count(8 + 4 + 1, "metadata count")?;

        let mut metadata = Metadata::default();
        for _ in 0..n_kv {
            let key_offset = c.pos();
            let key = c.string("metadata key")?;
            let type_offset = c.pos();
            let type_id = c.u32(&format!("type of metadata key `{key}`"))?;
            let ty = ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
                key: key.clone(),
                type_id,
                offset: type_offset,
            })?;
            let value = read_value(&mut c, ty, &key, 0)?;
            if !metadata.insert(key.clone(), value) {
                return Err(GgufError::DuplicateKey {
                    key,
                    offset: key_offset,
                });
            }
        }

        let alignment = match metadata.get_opt_u64("general.alignment")? {
            None => DEFAULT_ALIGNMENT,
            Some(a) if !a.is_power_of_two() || a > MAX_ALIGNMENT => {
                return Err(GgufError::BadAlignment { value: a })
            }
            Some(a) => a,
        };

        let mut raw = Vec::with_capacity(n_tensors as usize);
        let mut seen: HashMap<String, ()> = HashMap::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let info_offset = c.pos();
            let name = c.string("tensor name")?;
            if seen.insert(name.clone(), ()).is_some() {
                return Err(GgufError::DuplicateTensor {
                    name,
                    offset: info_offset,
                });
            }
            let dims_offset = c.pos();
            let n_dims = c.u32(&format!("dimension count of tensor `{name}`"))?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(GgufError::BadDimCount {
                    tensor: name,
                    n_dims,
                    offset: dims_offset,
                });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for axis in 0..n_dims as usize {
                let d = c.u64(&format!("dimension {axis} of tensor `{name}`"))?;
                if d == 0 {
                    return Err(GgufError::ZeroDim { tensor: name, axis });
                }
                dims.push(d);
            }
            let type_id = c.u32(&format!("type of tensor `{name}`"))?;
            let offset = c.u64(&format!("data offset of tensor `{name}`"))?;
            raw.push(RawTensor {
                name,
                dims,
                type_id,
                offset,
                info_offset,
            });
        }

        let header_end = c.pos();
        let data_offset = header_end.div_ceil(alignment) * alignment;
        let type_ids: Vec<u32> = raw.iter().map(|t| t.type_id).collect();
        let type_table = TypeTableChoice::decide(
            metadata.get("general.architecture").and_then(Value::as_str),
            metadata.get_opt_u32("general.file_type").ok().flatten(),
            &type_ids,
        );
        let tensors = raw
            .into_iter()
            .map(|t| resolve_tensor(t, &type_table, data_offset))
            .collect::<Result<Vec<_>, _>>()?;

        Ok(Self {
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            type_table,
            file_len: bytes.len() as u64,
        })
    }

    /// Finds a tensor by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

fn resolve_tensor(
    t: RawTensor,
    choice: &TypeTableChoice,
    data_offset: u64,
) -> Result<TensorInfo, GgufError> {
    let ty =
        GgmlType::from_id(t.type_id, choice.table).ok_or_else(|| GgufError::UnknownTensorType {
            tensor: t.name.clone(),
            type_id: t.type_id,
            table: choice.table,
            reason: choice.reason.clone(),
        })?;
    let n_bytes = ty
        .tensor_bytes(&t.dims)
        .map_err(|source| GgufError::TensorSize {
            tensor: t.name.clone(),
            ty: ty.name().to_string(),
            dims: t.dims.clone(),
            source,
        })?;
    Ok(TensorInfo {
        file_offset: data_offset.saturating_add(t.offset),
        name: t.name,
        dims: t.dims,
        ty,
        offset: t.offset,
        n_bytes,
        info_offset: t.info_offset,
    })
}

fn read_value(
    c: &mut Cursor<'_>,
    ty: ValueType,
    key: &str,
    depth: usize,
) -> Result<Value, GgufError> {
    let what = || format!("value of metadata key `{key}`");
    Ok(match ty {
        ValueType::U8 => Value::U8(c.u8(&what())?),
        ValueType::I8 => Value::I8(c.i8(&what())?),
        ValueType::U16 => Value::U16(c.u16(&what())?),
        ValueType::I16 => Value::I16(c.i16(&what())?),
        ValueType::U32 => Value::U32(c.u32(&what())?),
        ValueType::I32 => Value::I32(c.i32(&what())?),
        ValueType::F32 => Value::F32(c.f32(&what())?),
        ValueType::U64 => Value::U64(c.u64(&what())?),
        ValueType::I64 => Value::I64(c.i64(&what())?),
        ValueType::F64 => Value::F64(c.f64(&what())?),
        ValueType::Bool => {
            let offset = c.pos();
            match c.u8(&what())? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                other => {
                    return Err(GgufError::KeyOutOfRange {
                        key: key.to_string(),
                        value: format!("{other} (byte at offset {offset})"),
                        expected: "bool (0 or 1)",
                    })
                }
            }
        }
        ValueType::String => Value::String(c.string(&what())?),
        ValueType::Array => {
            let offset = c.pos();
            if depth >= MAX_ARRAY_DEPTH {
                return Err(GgufError::NestingTooDeep {
                    key: key.to_string(),
                    limit: MAX_ARRAY_DEPTH,
                    offset,
                });
            }
            let type_id = c.u32(&format!("element type of array `{key}`"))?;
            let elem = ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
                key: key.to_string(),
                type_id,
                offset,
            })?;
            let n = c.count(elem.min_encoded_len(), &format!("length of array `{key}`"))?;
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                items.push(read_value(c, elem, key, depth + 1)?);
            }
            Value::Array(Array { elem, items })
        }
    })
}
