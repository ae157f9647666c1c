//! Every way a GGUF file can be wrong, each naming where.

use std::path::PathBuf;

use super::types::{SizeError, TypeTable};
use super::value::ValueType;

/// A GGUF read, validation or write failure. Offsets are absolute byte offsets in the file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot access {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("not a GGUF file: magic at offset 0 is {found:?}, expected \"GGUF\"")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported GGUF version {version} at offset 4 (supported: 2, 3){hint}")]
    UnsupportedVersion { version: u32, hint: &'static str },
    #[error("file truncated: {what} at offset {offset} needs {needed} bytes, file has {file_len}")]
    Truncated {
        what: String,
        offset: u64,
        needed: u64,
        file_len: u64,
    },
    #[error(
        "{what} at offset {offset} is {count}, which cannot fit in the {remaining} bytes left"
    )]
    CountTooLarge {
        what: String,
        offset: u64,
        count: u64,
        remaining: u64,
    },
    #[error("{what} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { what: String, offset: u64 },
    #[error("metadata key `{key}`: unknown value type {type_id} at offset {offset}")]
    UnknownValueType {
        key: String,
        type_id: u32,
        offset: u64,
    },
    #[error("metadata key `{key}`: arrays nested deeper than {limit} at offset {offset}")]
    NestingTooDeep {
        key: String,
        limit: usize,
        offset: u64,
    },
    #[error("duplicate metadata key `{key}` at offset {offset}")]
    DuplicateKey { key: String, offset: u64 },
    #[error("duplicate tensor name `{name}` at offset {offset}")]
    DuplicateTensor { name: String, offset: u64 },
    #[error("tensor `{tensor}`: {n_dims} dimensions at offset {offset} (allowed: 1 to 4)")]
    BadDimCount {
        tensor: String,
        n_dims: u32,
        offset: u64,
    },
    #[error("tensor `{tensor}`: dimension {axis} is zero")]
    ZeroDim { tensor: String, axis: usize },
    #[error("tensor `{tensor}`: unknown type id {type_id} in the {table} type table ({reason})")]
    UnknownTensorType {
        tensor: String,
        type_id: u32,
        table: TypeTable,
        reason: String,
    },
    #[error("tensor `{tensor}` of type {ty} with shape {dims:?}: {source}")]
    TensorSize {
        tensor: String,
        ty: String,
        dims: Vec<u64>,
        #[source]
        source: SizeError,
    },
    #[error("metadata key `general.alignment` = {value} is not a power of two from 1 to 1048576")]
    BadAlignment { value: u64 },
    #[error("tensor `{tensor}`: data offset {offset} is not aligned to {alignment}")]
    MisalignedTensor {
        tensor: String,
        offset: u64,
        alignment: u64,
    },
    #[error("tensor `{tensor}`: data [{start}, {end}) lies outside the file ({file_len} bytes)")]
    TensorOutOfBounds {
        tensor: String,
        start: u64,
        end: u64,
        file_len: u64,
    },
    #[error("tensor `{tensor}`: data [{start}, {end}) overlaps tensor `{other}` [{other_start}, {other_end})")]
    TensorOverlap {
        tensor: String,
        start: u64,
        end: u64,
        other: String,
        other_start: u64,
        other_end: u64,
    },
    #[error("metadata key `{key}` is missing")]
    MissingKey { key: String },
    #[error("metadata key `{key}` has type {found}, expected {expected}")]
    WrongKeyType {
        key: String,
        expected: &'static str,
        found: ValueType,
    },
    #[error("metadata key `{key}` = {value} is out of range for {expected}")]
    KeyOutOfRange {
        key: String,
        value: String,
        expected: &'static str,
    },
    #[error("tensor `{0}` not found")]
    NoSuchTensor(String),
    #[error("cannot write tensor `{tensor}`: {reason}")]
    BadTensorForWrite { tensor: String, reason: String },
}
