//! The Rust engine as a backend: GGUF tensor tables and ternary quantization with its CPU
//! kernels at one instruction set, and whole models (logits, perplexity, greedy generation) at
//! the best instruction set of this CPU; or, as `engine-cuda`, products and whole models on CUDA
//! device 0.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use bitnet_conformance::backend::{
    Backend, BackendError, BackendInfo, Capabilities, GenerateRequest, GraphTensor, LogitsRequest,
    PerplexityOutput, PerplexityRequest, PerplexityText, PromptLogits, QuantOutput, QuantRequest,
    TensorInfo, TensorTable, TokenizeRequest, TraceRequest,
};
use bitnet_conformance::case::Tiling;
use bitnet_conformance::case::{BackendId, Capability, CaseKind, Device, QuantFormat};
use bitnet_conformance::inputs::random_tokens;
use bitnet_engine::cuda::{CudaError, CudaOps};
use bitnet_engine::formats::{
    I2s, I2sMatrix, I8sActivations, Q8kActivations, Shape, TernaryFormat, Tl1, Tl1Activations,
    Tl1Matrix, Tl1Tiling, Tl2, Tl2Activations, Tl2Matrix, Tl2Tiling, Tq1_0, Tq2_0, TqKind,
    TqMatrix,
};
use bitnet_engine::gguf::{GgmlType, GgufFile};
use bitnet_engine::kernels::{CpuKernels, Isa, KernelError, Numerics};
use bitnet_engine::model::{perplexity, DeviceStrategy, Model, ModelOptions, Session};
use bitnet_engine::synth::Arch;
use bitnet_engine::tokenizer::Tokenizer;

use super::{compared_packed_len, isa_capabilities, refused, tl1_tiling, tl2_tiling};

/// The engine's kernels of one ISA, single-threaded so results never depend on scheduling, or
/// the engine on a CUDA device.
pub struct EngineBackend {
    id: BackendId,
    kernels: CpuKernels,
    cuda: Option<CudaOps>,
    capabilities: Capabilities,
}

impl EngineBackend {
    /// The engine as backend `id`, on `isa`, rounding as `numerics` says. Models always run on
    /// the best ISA, so only a backend on that ISA answers logits and perplexity cases.
    pub fn new(id: BackendId, isa: Isa, numerics: Numerics) -> Result<Self, KernelError> {
        let kernels = CpuKernels::new(isa, 1)?.with_numerics(numerics);
        let mut kinds = BTreeSet::from([
            CaseKind::Alignment,
            CaseKind::Quantization,
            CaseKind::TokenMatch,
        ]);
        if isa == Isa::best() {
            kinds.extend([CaseKind::Logits, CaseKind::Perplexity]);
        }
        let capabilities = Capabilities {
            kinds,
            formats: BTreeSet::from([
                QuantFormat::I2S,
                QuantFormat::Tq1_0,
                QuantFormat::Tq2_0,
                QuantFormat::Tl1,
                QuantFormat::Tl2,
            ]),
            archs: Arch::NAMES.iter().map(|arch| arch.to_string()).collect(),
            refused_types: BTreeMap::new(),
            device: Device::Cpu,
            // The engine's TL1 and TL2 kernels take any shape their tiling allows.
            features: isa_capabilities(isa)
                .into_iter()
                .chain([Capability::Tl1, Capability::Tl2])
                .collect(),
        };
        Ok(EngineBackend {
            id,
            kernels,
            cuda: None,
            capabilities,
        })
    }

    /// The engine on CUDA device 0 (`engine-cuda`), rounding as `numerics` says.
    pub fn cuda(numerics: Numerics) -> Result<Self, CudaError> {
        let ops = CudaOps::new(0)?;
        let kernels = CpuKernels::new(Isa::best(), 1)
            .map_err(|e| CudaError::Request(e.to_string()))?
            .with_numerics(numerics);
        let capabilities = Capabilities {
            kinds: BTreeSet::from([
                CaseKind::Quantization,
                CaseKind::Logits,
                CaseKind::Perplexity,
                CaseKind::TokenMatch,
            ]),
            formats: BTreeSet::from([QuantFormat::I2S, QuantFormat::Tq1_0, QuantFormat::Tq2_0]),
            archs: Arch::NAMES.iter().map(|arch| arch.to_string()).collect(),
            refused_types: refused(
                &[GgmlType::TL1, GgmlType::TL2, GgmlType::Q8_0, GgmlType::Q6_K],
                "the GPU kernels multiply I2_S, TQ1_0, TQ2_0, F16 and F32 only",
            ),
            device: Device::Cuda,
            features: BTreeSet::from([Capability::Cuda]),
        };
        Ok(EngineBackend {
            id: BackendId::EngineCuda,
            kernels,
            cuda: Some(ops),
            capabilities,
        })
    }

    fn dots(
        &self,
        format: QuantFormat,
        tiling: Option<Tiling>,
        packed: &[u8],
        shape: Shape,
        activations: &[f32],
    ) -> Result<Vec<f32>, BackendError> {
        let tokens = activations.len() / shape.ne0;
        let mut out = vec![0f32; shape.ne1 * tokens];
        let numerics = self.kernels.numerics();
        let contract = numerics.contract;
        if let Some(cuda) = &self.cuda {
            let ty = match format {
                QuantFormat::I2S => GgmlType::I2_S,
                QuantFormat::Tq1_0 => GgmlType::TQ1_0,
                QuantFormat::Tq2_0 => GgmlType::TQ2_0,
                other => return Err(self.unsupported(&format!("{other} dot products"))),
            };
            return cuda
                .matmul(ty, packed, shape, activations, contract, numerics.width)
                .map_err(failed);
        }
        match format {
            QuantFormat::I2S => {
                let w = I2sMatrix::new(packed, shape).map_err(failed)?;
                let x =
                    I8sActivations::quantize(activations, shape.ne0, contract).map_err(failed)?;
                self.kernels.i2s_gemm(&w, &x, &mut out).map_err(failed)?;
            }
            QuantFormat::Tq1_0 | QuantFormat::Tq2_0 => {
                let kind = if format == QuantFormat::Tq1_0 {
                    TqKind::Tq1_0
                } else {
                    TqKind::Tq2_0
                };
                let w = TqMatrix::new(kind, packed, shape).map_err(failed)?;
                let x =
                    Q8kActivations::quantize(activations, shape.ne0, contract).map_err(failed)?;
                self.kernels.tq_gemm(&w, &x, &mut out).map_err(failed)?;
            }
            QuantFormat::Tl1 => {
                let w =
                    Tl1Matrix::new(tl1_request_tiling(tiling)?, packed, shape).map_err(failed)?;
                let x = Tl1Activations::quantize(activations, shape.ne0).map_err(failed)?;
                self.kernels.tl1_gemm(&w, &x, &mut out).map_err(failed)?;
            }
            QuantFormat::Tl2 => {
                let w = Tl2Matrix::new(request_tiling(tiling)?, packed, shape).map_err(failed)?;
                let x = Tl2Activations::quantize(activations, shape.ne0, w.three_cols())
                    .map_err(failed)?;
                self.kernels.tl2_gemm(&w, &x, &mut out).map_err(failed)?;
            }
        }
        Ok(out)
    }

    /// Loads `path` as a model with this backend's device, thread count and numerics, and its
    /// tokenizer; unsupported off the best ISA, where models never run.
    fn load(&self, path: &Path) -> Result<(Model, Tokenizer), BackendError> {
        if self.kernels.isa() != Isa::best() {
            return Err(self.unsupported(&format!("models on {}", self.kernels.isa())));
        }
        let device = match self.cuda {
            Some(_) => DeviceStrategy::ForceGpu,
            None => DeviceStrategy::ForceCpu,
        };
        let options = ModelOptions {
            threads: self.kernels.threads(),
            kv_f16: true,
            numerics: self.kernels.numerics(),
            device,
            ..ModelOptions::default()
        };
        let model = Model::load(path, &options).map_err(|e| load_error(path, e))?;
        let tokenizer = tokenizer(path)?;
        Ok((model, tokenizer))
    }
}

/// The engine's TL1 tiling from a request's.
fn tl1_request_tiling(tiling: Option<Tiling>) -> Result<Tl1Tiling, BackendError> {
    tiling
        .and_then(tl1_tiling)
        .ok_or_else(|| BackendError::Failed("TL1 needs a tiling with bmm".into()))
}

/// The engine's TL2 tiling from a request's.
fn request_tiling(tiling: Option<Tiling>) -> Result<Tl2Tiling, BackendError> {
    tiling
        .map(tl2_tiling)
        .ok_or_else(|| BackendError::Failed("TL2 needs a tiling".into()))
}

fn failed(error: impl std::fmt::Display) -> BackendError {
    BackendError::Failed(error.to_string())
}

impl Backend for EngineBackend {
    fn id(&self) -> BackendId {
        self.id
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn info(&self) -> BackendInfo {
        let numerics = self.kernels.numerics();
        let device = match &self.cuda {
            Some(cuda) => cuda
                .info()
                .map_or_else(|e| e.to_string(), |i| i.to_string()),
            None => "cpu".to_string(),
        };
        BackendInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            details: [
                ("device".to_string(), device),
                ("isa".to_string(), self.kernels.isa().to_string()),
                ("threads".to_string(), self.kernels.threads().to_string()),
                (
                    "fp_contract".to_string(),
                    format!("{:?}", numerics.contract),
                ),
                ("reduce_width".to_string(), format!("{:?}", numerics.width)),
            ]
            .into(),
        }
    }

    fn tensor_table(&self, model: &Path) -> Result<TensorTable, BackendError> {
        let file = open(model)?;
        let layout = file.layout();
        Ok(TensorTable {
            alignment: layout.alignment,
            data_offset: layout.data_offset,
            file_size: layout.file_len,
            tensors: layout
                .tensors
                .iter()
                .map(|t| TensorInfo {
                    name: t.name.clone(),
                    ggml_type: t.ty.id(),
                    shape: t.dims.clone(),
                    offset: t.offset,
                    size: t.n_bytes,
                })
                .collect(),
        })
    }

    fn quantize(&self, request: &QuantRequest<'_>) -> Result<QuantOutput, BackendError> {
        let shape = Shape::new(request.shape.cols, request.shape.rows);
        let (tl1, tl2);
        let format: &dyn TernaryFormat = match request.format {
            QuantFormat::I2S => &I2s,
            QuantFormat::Tq1_0 => &Tq1_0,
            QuantFormat::Tq2_0 => &Tq2_0,
            QuantFormat::Tl1 if self.cuda.is_none() => {
                tl1 = Tl1::new(tl1_request_tiling(request.tiling)?);
                &tl1
            }
            QuantFormat::Tl2 if self.cuda.is_none() => {
                tl2 = Tl2::new(request_tiling(request.tiling)?);
                &tl2
            }
            other => return Err(self.unsupported(&format!("{other} quantization"))),
        };
        let packed = format.quantize(request.weights, shape).map_err(failed)?;
        let dequantized = format.dequantize(&packed, shape).map_err(failed)?;
        let dots = if request.activations.is_empty() {
            Vec::new()
        } else {
            self.dots(
                request.format,
                request.tiling,
                &packed,
                shape,
                request.activations,
            )?
        };
        let keep = compared_packed_len(request.format, request.weights.len(), packed.len());
        let mut packed = packed;
        packed.truncate(keep);
        Ok(QuantOutput {
            packed,
            dequantized,
            dots,
        })
    }

    fn logits(&self, request: &LogitsRequest<'_>) -> Result<Vec<PromptLogits>, BackendError> {
        let (model, tokenizer) = self.load(request.model)?;
        request
            .prompts
            .iter()
            .map(|prompt| {
                let tokens = tokenizer.encode(prompt, request.add_bos, false);
                let mut session = Session::new(&model, tokens.len().max(8));
                let logits = session.eval(&tokens, true).map_err(failed)?;
                Ok(PromptLogits {
                    vocab: logits.n_vocab(),
                    logits: logits.as_slice().to_vec(),
                    tokens,
                })
            })
            .collect()
    }

    fn trace(&self, request: &TraceRequest<'_>) -> Result<Vec<GraphTensor>, BackendError> {
        if self.cuda.is_some() {
            return Err(self.unsupported("graph traces (they run on the CPU)"));
        }
        let (model, tokenizer) = self.load(request.model)?;
        let tokens = tokenizer.encode(request.prompt, request.add_bos, false);
        let mut session = Session::new(&model, tokens.len().max(8));
        let mut traced = Vec::new();
        session
            .eval_traced(&tokens, &mut |op| {
                traced.push(GraphTensor {
                    name: op.graph_name(),
                    values: op.values.to_vec(),
                })
            })
            .map_err(failed)?;
        Ok(traced)
    }

    fn perplexity(
        &self,
        request: &PerplexityRequest<'_>,
    ) -> Result<PerplexityOutput, BackendError> {
        let (model, tokenizer) = self.load(request.model)?;
        let tokens = match request.text {
            PerplexityText::Text(text) => tokenizer.encode(text, true, false),
            PerplexityText::Random { seed, count } => {
                let vocab = u32::try_from(model.n_vocab()).map_err(failed)?;
                random_tokens(seed, count, vocab)
            }
        };
        let result = perplexity(&model, &tokens, request.ctx, request.chunks.unwrap_or(0))
            .map_err(failed)?;
        Ok(PerplexityOutput { nll: result.nll })
    }

    fn tokenize(&self, request: &TokenizeRequest<'_>) -> Result<Vec<Vec<u32>>, BackendError> {
        let tokenizer = tokenizer(request.model)?;
        Ok(request
            .texts
            .iter()
            .map(|text| tokenizer.encode(text, request.add_special, request.parse_special))
            .collect())
    }

    fn generate(&self, request: &GenerateRequest<'_>) -> Result<Vec<Vec<u32>>, BackendError> {
        let (model, tokenizer) = self.load(request.model)?;
        request
            .prompts
            .iter()
            .map(|prompt| {
                let tokens = tokenizer.encode(prompt, request.add_bos, false);
                let mut session = Session::new(&model, tokens.len() + request.tokens);
                session.generate(&tokens, request.tokens).map_err(failed)
            })
            .collect()
    }
}

fn tokenizer(model: &Path) -> Result<Tokenizer, BackendError> {
    let file = open(model)?;
    Tokenizer::from_metadata(file.metadata()).map_err(|e| load_error(model, e))
}

fn load_error(path: &Path, error: impl std::fmt::Display) -> BackendError {
    BackendError::Load {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}

fn open(model: &Path) -> Result<GgufFile, BackendError> {
    GgufFile::open(model).map_err(|e| load_error(model, e))
}
