//! The Rust engine as a backend: GGUF tensor tables and ternary quantization with its CPU
//! kernels at one instruction set.

use std::collections::BTreeSet;
use std::path::Path;

use bitnet_conformance::backend::{
    Backend, BackendError, BackendInfo, Capabilities, QuantOutput, QuantRequest, TensorInfo,
    TensorTable, TokenizeRequest,
};
use bitnet_conformance::case::{BackendId, CaseKind, Device, QuantFormat};
use bitnet_engine::formats::{
    I2s, I2sMatrix, I8sActivations, Q8kActivations, Shape, TernaryFormat, Tq1_0, Tq2_0, TqKind,
    TqMatrix,
};
use bitnet_engine::gguf::GgufFile;
use bitnet_engine::kernels::{CpuKernels, Isa, KernelError, Numerics};
use bitnet_engine::tokenizer::Tokenizer;

use super::{compared_packed_len, isa_capabilities};

/// The engine's kernels of one ISA, single-threaded so results never depend on scheduling.
pub struct EngineBackend {
    id: BackendId,
    kernels: CpuKernels,
    capabilities: Capabilities,
}

impl EngineBackend {
    /// The engine as backend `id`, on `isa`, rounding as `numerics` says.
    pub fn new(id: BackendId, isa: Isa, numerics: Numerics) -> Result<Self, KernelError> {
        let kernels = CpuKernels::new(isa, 1)?.with_numerics(numerics);
        let capabilities = Capabilities {
            kinds: BTreeSet::from([
                CaseKind::Alignment,
                CaseKind::Quantization,
                CaseKind::TokenMatch,
            ]),
            formats: BTreeSet::from([QuantFormat::I2S, QuantFormat::Tq1_0, QuantFormat::Tq2_0]),
            archs: BTreeSet::new(),
            device: Device::Cpu,
            features: isa_capabilities(isa).into_iter().collect(),
        };
        Ok(EngineBackend {
            id,
            kernels,
            capabilities,
        })
    }

    fn dots(
        &self,
        format: QuantFormat,
        packed: &[u8],
        shape: Shape,
        activations: &[f32],
    ) -> Result<Vec<f32>, BackendError> {
        let tokens = activations.len() / shape.ne0;
        let mut out = vec![0f32; shape.ne1 * tokens];
        let contract = self.kernels.numerics().contract;
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
            other => return Err(self.unsupported(&format!("{other} dot products"))),
        }
        Ok(out)
    }
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
        BackendInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            details: [
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
        let format: &dyn TernaryFormat = match request.format {
            QuantFormat::I2S => &I2s,
            QuantFormat::Tq1_0 => &Tq1_0,
            QuantFormat::Tq2_0 => &Tq2_0,
            other => return Err(self.unsupported(&format!("{other} quantization"))),
        };
        let packed = format.quantize(request.weights, shape).map_err(failed)?;
        let dequantized = format.dequantize(&packed, shape).map_err(failed)?;
        let dots = if request.activations.is_empty() {
            Vec::new()
        } else {
            self.dots(request.format, &packed, shape, request.activations)?
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

    fn tokenize(&self, request: &TokenizeRequest<'_>) -> Result<Vec<Vec<u32>>, BackendError> {
        let file = open(request.model)?;
        let tokenizer =
            Tokenizer::from_metadata(file.metadata()).map_err(|e| BackendError::Load {
                path: request.model.to_path_buf(),
                message: e.to_string(),
            })?;
        Ok(request
            .texts
            .iter()
            .map(|text| tokenizer.encode(text, request.add_special, request.parse_special))
            .collect())
    }
}

fn open(model: &Path) -> Result<GgufFile, BackendError> {
    GgufFile::open(model).map_err(|e| BackendError::Load {
        path: model.to_path_buf(),
        message: e.to_string(),
    })
}
