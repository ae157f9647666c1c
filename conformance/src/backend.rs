//! The `Backend` trait the runner's adapters implement, with plain request and output types.
//!
//! A backend answers one method per case kind. Methods it does not implement answer
//! [`BackendError::Unsupported`], which the runner reports as an unsupported trial, not a pass.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::case::{BackendId, Capability, CaseKind, Device, QuantFormat, Shape, Tiling};

/// What a backend can do, so trials it cannot run are ignored with a reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Case kinds it answers.
    pub kinds: BTreeSet<CaseKind>,
    /// Packed formats it can quantize and multiply.
    pub formats: BTreeSet<QuantFormat>,
    /// Model architectures (`general.architecture`) it can run.
    pub archs: BTreeSet<String>,
    /// GGML tensor types (by name) its model graphs cannot multiply, each with why; a case
    /// that runs a model holding one is ignored with that reason.
    pub refused_types: BTreeMap<String, String>,
    /// Where it computes.
    pub device: Device,
    /// Capabilities it provides towards cases' `needs` (kernels, ISA, the reference itself).
    pub features: BTreeSet<Capability>,
}

/// Identification for receipts: enough to reproduce what ran.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct BackendInfo {
    /// Version or commit.
    pub version: String,
    /// Anything else that changes results: build flags, ISA, source, thread count.
    pub details: BTreeMap<String, String>,
}

/// Why a backend produced no output.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The backend cannot do this (format, shape, kind, architecture).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A model or data file could not be loaded.
    #[error("cannot load {path}: {message}")]
    Load {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The computation itself failed.
    #[error("{0}")]
    Failed(String),
    /// An I/O failure outside loading.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Quantize `weights`, dequantize the result, and multiply it with `activations`.
#[derive(Debug, Clone, Copy)]
pub struct QuantRequest<'a> {
    /// The packed format.
    pub format: QuantFormat,
    /// The weights' shape.
    pub shape: Shape,
    /// The LUT tiling (TL1/TL2).
    pub tiling: Option<Tiling>,
    /// `shape.rows × shape.cols` values, row-major.
    pub weights: &'a [f32],
    /// Vectors of `shape.cols` values, concatenated; may be empty.
    pub activations: &'a [f32],
}

/// What a quantization request produced.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QuantOutput {
    /// The packed tensor, exactly as it would be stored in a GGUF file.
    pub packed: Vec<u8>,
    /// The packed tensor dequantized, `rows × cols` values.
    pub dequantized: Vec<f32>,
    /// For each activation vector `v` and row `r`, at `v × rows + r`: the packed row times `v`,
    /// computed the way the backend's matmul does (activation quantization included).
    pub dots: Vec<f32>,
}

/// Evaluate prompts and return the logits at every position.
#[derive(Debug, Clone, Copy)]
pub struct LogitsRequest<'a> {
    /// The model file.
    pub model: &'a Path,
    /// Prompts, each from an empty context.
    pub prompts: &'a [String],
    /// Whether tokenization adds BOS.
    pub add_bos: bool,
}

/// Logits for one prompt.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PromptLogits {
    /// The prompt's token ids as the backend tokenized it.
    pub tokens: Vec<u32>,
    /// Vocabulary size (row width).
    pub vocab: usize,
    /// `tokens.len() × vocab` logits, row `i` predicting the token after position `i`.
    pub logits: Vec<f32>,
}

/// The tokens a perplexity request scores.
#[derive(Debug, Clone, Copy)]
pub enum PerplexityText<'a> {
    /// A text the backend tokenizes (with BOS).
    Text(&'a str),
    /// Token ids the backend draws with [`crate::inputs::random_tokens`] over its vocabulary.
    Random {
        /// Generator seed.
        seed: u64,
        /// Number of tokens.
        count: usize,
    },
}

/// Score a text the way llama-perplexity does.
#[derive(Debug, Clone, Copy)]
pub struct PerplexityRequest<'a> {
    /// The model file.
    pub model: &'a Path,
    /// What to score.
    pub text: PerplexityText<'a>,
    /// Context length per chunk.
    pub ctx: usize,
    /// Chunks to score; all that fit when `None`.
    pub chunks: Option<usize>,
}

/// Per-token negative log-likelihoods, in scoring order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PerplexityOutput {
    /// NLL of each scored token, nats.
    pub nll: Vec<f64>,
}

/// Tokenize texts.
#[derive(Debug, Clone, Copy)]
pub struct TokenizeRequest<'a> {
    /// The model or vocab-only GGUF file.
    pub model: &'a Path,
    /// The texts.
    pub texts: &'a [String],
    /// Whether BOS/EOS are added.
    pub add_special: bool,
    /// Whether special-token text becomes special tokens.
    pub parse_special: bool,
}

/// Generate greedily from prompts.
#[derive(Debug, Clone, Copy)]
pub struct GenerateRequest<'a> {
    /// The model file.
    pub model: &'a Path,
    /// Prompts, each from an empty context.
    pub prompts: &'a [String],
    /// Tokens to generate per prompt.
    pub tokens: usize,
    /// Whether tokenization adds BOS.
    pub add_bos: bool,
}

/// Trace one prompt through a model's graph (the divergence localizer).
#[derive(Debug, Clone, Copy)]
pub struct TraceRequest<'a> {
    /// The model file.
    pub model: &'a Path,
    /// The prompt.
    pub prompt: &'a str,
    /// Whether tokenization adds BOS.
    pub add_bos: bool,
}

/// One intermediate tensor of a model's graph, named as the reference's graph names it
/// (`attn_norm-0`, `Qcur-0`, `l_out-0`, `result_norm`, …), values in ggml order.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphTensor {
    /// The graph name, with `-<layer>` for per-layer tensors.
    pub name: String,
    /// The values, innermost axis first, positions outermost.
    pub values: Vec<f32>,
}

/// A GGUF file's tensor table as a backend parsed it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct TensorTable {
    /// `general.alignment` (32 when absent).
    pub alignment: u64,
    /// Byte offset of the tensor data section in the file.
    pub data_offset: u64,
    /// Size of the file in bytes.
    pub file_size: u64,
    /// Tensors in file order.
    pub tensors: Vec<TensorInfo>,
}

/// One tensor of a [`TensorTable`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// ggml type id.
    pub ggml_type: u32,
    /// Dimensions, ne0 first.
    pub shape: Vec<u64>,
    /// Offset from the start of the data section.
    pub offset: u64,
    /// Size in bytes by the backend's own size rule for the type.
    pub size: u64,
}

/// A backend the harness can compare. Object safe: the runner holds `Box<dyn Backend>`.
pub trait Backend: Send + Sync {
    /// Which backend this is.
    fn id(&self) -> BackendId;

    /// What it can do.
    fn capabilities(&self) -> &Capabilities;

    /// Version and build facts for receipts.
    fn info(&self) -> BackendInfo;

    /// Parses a GGUF file's tensor table.
    fn tensor_table(&self, model: &Path) -> Result<TensorTable, BackendError> {
        let _ = model;
        Err(self.unsupported("tensor tables"))
    }

    /// Quantizes, dequantizes and multiplies.
    fn quantize(&self, request: &QuantRequest<'_>) -> Result<QuantOutput, BackendError> {
        Err(self.unsupported(&format!("{} quantization", request.format)))
    }

    /// Per-position logits for each prompt.
    fn logits(&self, request: &LogitsRequest<'_>) -> Result<Vec<PromptLogits>, BackendError> {
        let _ = request;
        Err(self.unsupported("logits"))
    }

    /// Per-token NLLs over a text.
    fn perplexity(
        &self,
        request: &PerplexityRequest<'_>,
    ) -> Result<PerplexityOutput, BackendError> {
        let _ = request;
        Err(self.unsupported("perplexity"))
    }

    /// Token ids for each text.
    fn tokenize(&self, request: &TokenizeRequest<'_>) -> Result<Vec<Vec<u32>>, BackendError> {
        let _ = request;
        Err(self.unsupported("tokenization"))
    }

    /// Generated token ids (prompt excluded) for each prompt.
    fn generate(&self, request: &GenerateRequest<'_>) -> Result<Vec<Vec<u32>>, BackendError> {
        let _ = request;
        Err(self.unsupported("generation"))
    }

    /// The intermediate tensors of one prompt's evaluation, in the order they were computed.
    fn trace(&self, request: &TraceRequest<'_>) -> Result<Vec<GraphTensor>, BackendError> {
        let _ = request;
        Err(self.unsupported("graph traces"))
    }

    /// The error a method answers for what this backend does not do.
    fn unsupported(&self, what: &str) -> BackendError {
        BackendError::Unsupported(format!("{} does not do {what}", self.id()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tokenizer(Capabilities);

    impl Backend for Tokenizer {
        fn id(&self) -> BackendId {
            BackendId::EngineScalar
        }

        fn capabilities(&self) -> &Capabilities {
            &self.0
        }

        fn info(&self) -> BackendInfo {
            BackendInfo::default()
        }

        fn tokenize(&self, request: &TokenizeRequest<'_>) -> Result<Vec<Vec<u32>>, BackendError> {
            Ok(request
                .texts
                .iter()
                .map(|t| t.bytes().map(u32::from).collect())
                .collect())
        }
    }

    #[test]
    fn boxed_backend_answers_and_declines() {
        let backend: Box<dyn Backend> = Box::new(Tokenizer(Capabilities {
            kinds: [CaseKind::TokenMatch].into(),
            formats: BTreeSet::new(),
            archs: BTreeSet::new(),
            refused_types: BTreeMap::new(),
            device: Device::Cpu,
            features: BTreeSet::new(),
        }));
        let texts = ["ab".to_string()];
        let request = TokenizeRequest {
            model: Path::new("vocab.gguf"),
            texts: &texts,
            add_special: false,
            parse_special: false,
        };
        assert_eq!(backend.tokenize(&request).unwrap(), [vec![97, 98]]);
        let err = backend.logits(&LogitsRequest {
            model: Path::new("m.gguf"),
            prompts: &texts,
            add_bos: true,
        });
        let message = err.unwrap_err().to_string();
        assert_eq!(message, "unsupported: engine-scalar does not do logits");
    }
}
