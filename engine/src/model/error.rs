//! Errors of model loading and evaluation.

use super::DeviceError;
use crate::formats::FormatError;
use crate::gguf::{GgmlType, GgufError};
use crate::kernels::KernelError;

/// Why a model could not be loaded or evaluated.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The requested device cannot be used.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The CUDA backend failed.
    #[error("CUDA: {0}")]
    Cuda(#[from] crate::cuda::CudaError),
    /// The file could not be read or lacks a key or tensor.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// `general.architecture` names a graph this engine does not implement.
    #[error("unsupported architecture `{0}` (supported: bitnet, bitnet-b1.58, llama)")]
    UnsupportedArch(String),
    /// A tensor has a type the forward pass cannot use.
    #[error("tensor `{tensor}` has type {ty}, which the forward pass does not support")]
    UnsupportedType {
        /// The tensor's name.
        tensor: String,
        /// Its type.
        ty: GgmlType,
    },
    /// A tensor has the wrong shape for the hyperparameters.
    #[error("tensor `{tensor}` has shape {actual:?}, expected {expected:?}")]
    Shape {
        /// The tensor's name.
        tensor: String,
        /// The shape the hyperparameters imply.
        expected: Vec<u64>,
        /// The shape in the file.
        actual: Vec<u64>,
    },
    /// Dense tensor data does not start on a multiple of its element size.
    #[error("tensor `{tensor}` ({ty}) is not aligned to its element size")]
    Misaligned {
        /// The tensor's name.
        tensor: String,
        /// Its type.
        ty: GgmlType,
    },
    /// The hyperparameters are inconsistent.
    #[error("invalid hyperparameters: {0}")]
    Hparams(String),
    /// Tensor data does not fit its format.
    #[error("tensor `{tensor}`: {source}")]
    Format {
        /// The tensor's name.
        tensor: String,
        /// The format's complaint.
        source: FormatError,
    },
    /// A TL1 or TL2 tiling table (options or file metadata) could not be read.
    #[error("lookup-table tilings: {0}")]
    TilingConfig(#[from] super::TilingConfigError),
    /// A TL1 or TL2 tensor's shape has no tiling in the options or in the file's metadata.
    #[error(
        "{format} tensor `{tensor}` ({rows} rows × {cols} columns) has no tiling: supply the \
         kernel_config.ini its kernels were generated with (a section with m = {rows}, k = {cols}) \
         through ModelOptions::{format}_tilings (`--{format}-config`), or record it in the file's \
         `bitnet.{format}.tiling.{rows}_{cols}` metadata key"
    )]
    MissingTiling {
        /// The format (`tl1`, `tl2`).
        format: &'static str,
        /// The tensor's name.
        tensor: String,
        /// Its rows (`ne1`, the ini's `m`).
        rows: usize,
        /// Its columns (`ne0`, the ini's `k`).
        cols: usize,
    },
    /// A kernel rejected its operands or could not start.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The batch would overflow the session's context.
    #[error("context full: {n_past} tokens cached + {requested} new > n_ctx {n_ctx}")]
    ContextFull {
        /// The context length.
        n_ctx: usize,
        /// Tokens already in the cache.
        n_past: usize,
        /// Tokens in the rejected batch.
        requested: usize,
    },
    /// A token id is outside the vocabulary.
    #[error("token id {token} is outside the vocabulary of {n_vocab}")]
    TokenOutOfRange {
        /// The token id.
        token: u32,
        /// The vocabulary size.
        n_vocab: usize,
    },
    /// An empty batch, or another request that cannot be served.
    #[error("invalid request: {0}")]
    Request(String),
}
