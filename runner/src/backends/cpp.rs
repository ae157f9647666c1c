//! The C++ reference (bitnet.cpp through `bitnet-ffi-cpp`) as a backend.

use std::collections::BTreeSet;
use std::path::Path;

use bitnet_conformance::backend::{
    Backend, BackendError, BackendInfo, Capabilities, GenerateRequest, GraphTensor, LogitsRequest,
    PerplexityOutput, PerplexityRequest, PerplexityText, PromptLogits, QuantOutput, QuantRequest,
    TensorInfo, TensorTable, TokenizeRequest, TraceRequest,
};
use bitnet_conformance::case::{BackendId, Capability, CaseKind, Device, QuantFormat};
use bitnet_conformance::inputs::random_tokens;
use bitnet_conformance::localize::{FINAL_OPS, LAYER_OPS};
use bitnet_engine::formats::{Shape, TernaryFormat, Tl1, Tl2};
use bitnet_engine::gguf::GgmlType as ModelType;
use bitnet_ffi_cpp::{
    reference_info, tl1_reference_pack, tl2_gemm, tl2_reference_pack, tl2_shapes, Context,
    ContextParams, GgmlType, GgufHeader, Model, ModelParams, RefError,
};

use super::{compared_packed_len, refused, tl1_tiling, tl2_tiling};

/// The reference, initialised once per process.
pub struct CppBackend {
    reference: bitnet_ffi_cpp::Backend,
    capabilities: Capabilities,
}

impl CppBackend {
    /// Initialises the reference.
    pub fn init() -> Result<Self, RefError> {
        let reference = bitnet_ffi_cpp::Backend::init()?;
        // TL1 weights are packed by the reference converter's code; its TL1 kernels are ARM code.
        let mut formats = BTreeSet::from([
            QuantFormat::I2S,
            QuantFormat::Tq1_0,
            QuantFormat::Tq2_0,
            QuantFormat::Tl1,
        ]);
        let mut features = BTreeSet::from([Capability::Reference]);
        if !tl2_shapes().is_empty() {
            formats.insert(QuantFormat::Tl2);
            features.insert(Capability::Tl2);
        }
        let capabilities = Capabilities {
            kinds: CaseKind::ALL.into_iter().collect(),
            formats,
            archs: bitnet_ffi_cpp::reference_info()
                .architectures
                .iter()
                .map(|arch| arch.to_string())
                .collect(),
            // The LUT kernels are built beside the library for single products; its model
            // graph has no TL1 or TL2 matrix product and yields NaN for such weights.
            refused_types: refused(
                &[ModelType::TL1, ModelType::TL2],
                "the reference's model graph in this build has no LUT matrix product (its LUT \
                 kernels are built for single products only)",
            ),
            device: Device::Cpu,
            features,
        };
        Ok(CppBackend {
            reference,
            capabilities,
        })
    }

    fn load(&self, path: &Path, vocab_only: bool) -> Result<Model, BackendError> {
        let params = ModelParams {
            vocab_only,
            ..ModelParams::default()
        };
        Model::load(&self.reference, path, &params).map_err(|e| BackendError::Load {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    fn dots(
        &self,
        ty: GgmlType,
        packed: &[u8],
        request: &QuantRequest<'_>,
    ) -> Result<Vec<f32>, BackendError> {
        let (rows, cols) = (request.shape.rows, request.shape.cols);
        let mut out = Vec::with_capacity(request.activations.len() / cols * rows);
        for vector in request.activations.chunks_exact(cols) {
            if ty == GgmlType::I2_S {
                let codes = rows * cols / 4;
                let scale_bytes: [u8; 4] = packed[codes..codes + 4]
                    .try_into()
                    .map_err(|_| BackendError::Failed("I2_S tensor without a scale".into()))?;
                let scale = f32::from_le_bytes(scale_bytes);
                let acts = self.reference.quantize_i8_s(vector).map_err(failed)?;
                for row in packed[..codes].chunks_exact(cols / 4) {
                    let dot = self
                        .reference
                        .vec_dot_i2_i8_s(row, &acts, scale)
                        .map_err(failed)?;
                    out.push(dot.scaled);
                }
            } else {
                let y = self
                    .reference
                    .quantize_row(GgmlType::Q8_K, vector)
                    .map_err(failed)?;
                for row in packed.chunks_exact(packed.len() / rows) {
                    out.push(self.reference.vec_dot(ty, cols, row, &y).map_err(failed)?);
                }
            }
        }
        Ok(out)
    }

    /// TL1 and TL2 have no C quantizer: the bytes come from the reference converter's own
    /// packing code, the TL2 products from the kernels its code generator wrote for this shape and
    /// tiling. The reference has no LUT dequantizer either, so the engine's decoder reads its bytes
    /// (which are compared with the engine's, byte for byte). Its TL1 kernels are ARM NEON code,
    /// so TL1 products are unsupported here.
    fn quantize_lut(&self, request: &QuantRequest<'_>) -> Result<QuantOutput, BackendError> {
        let (m, k) = (request.shape.rows, request.shape.cols);
        let tiling = request
            .tiling
            .ok_or_else(|| BackendError::Failed(format!("{} needs a tiling", request.format)))?;
        let tokens = request.activations.len() / k;
        let decoded = |format: &dyn TernaryFormat, packed: &[u8]| {
            format.dequantize(packed, Shape::new(k, m)).map_err(|e| {
                BackendError::Failed(format!(
                    "decoding the reference's {} bytes: {e}",
                    request.format
                ))
            })
        };
        if request.format == QuantFormat::Tl1 {
            if tokens > 0 {
                return Err(self.unsupported(
                    "TL1 products (the reference's TL1 kernels are ARM NEON code, built on ARM only)",
                ));
            }
            let t = tl1_tiling(tiling)
                .ok_or_else(|| BackendError::Failed("TL1 needs a tiling with bmm".into()))?;
            let packed = tl1_reference_pack(
                request.weights,
                m,
                k,
                (t.tile_rows, t.tile_cols, t.simd_rows),
            )
            .map_err(failed)?;
            let dequantized = decoded(&Tl1::new(t), &packed)?;
            return Ok(QuantOutput {
                packed,
                dequantized,
                dots: Vec::new(),
            });
        }
        let generated = tl2_shapes();
        if !generated
            .iter()
            .any(|s| (s.m, s.k, s.bm, s.bk) == (m, k, tiling.bm, tiling.bk))
        {
            let list: Vec<String> = generated.iter().map(ToString::to_string).collect();
            return Err(self.unsupported(&format!(
                "TL2 {m}x{k} with {tiling}: the reference's kernels were generated for {}",
                list.join(", ")
            )));
        }
        let packed =
            tl2_reference_pack(request.weights, m, k, tiling.bm, tiling.bk).map_err(failed)?;
        let dequantized = decoded(&Tl2::new(tl2_tiling(tiling)), &packed)?;
        let dots = if tokens == 0 {
            Vec::new()
        } else {
            tl2_gemm(&packed, m, k, request.activations, tokens).map_err(failed)?
        };
        Ok(QuantOutput {
            packed,
            dequantized,
            dots,
        })
    }

    /// A context of `n_ctx` tokens on one thread: trials already run in parallel, and ggml's
    /// spinning thread pools starve each other when several contexts share the cores.
    fn context(&self, model: &Model, n_ctx: usize) -> Result<Context, BackendError> {
        self.capturing_context(model, n_ctx, Vec::new())
    }

    /// The prompt's tokens and a context that holds them, capturing `capture`.
    fn prompt_context(
        &self,
        model: &Model,
        prompt: &str,
        add_bos: bool,
        capture: Vec<String>,
    ) -> Result<(Vec<u32>, Context), BackendError> {
        let tokens = model.tokenize(prompt, add_bos, false).map_err(failed)?;
        let context = self.capturing_context(model, tokens.len().max(8), capture)?;
        Ok((tokens, context))
    }

    fn capturing_context(
        &self,
        model: &Model,
        n_ctx: usize,
        capture: Vec<String>,
    ) -> Result<Context, BackendError> {
        let n_ctx = u32::try_from(n_ctx)
            .map_err(|_| BackendError::Failed(format!("context of {n_ctx} tokens")))?;
        let params = ContextParams {
            n_ctx,
            n_batch: n_ctx,
            n_threads: 1,
            capture,
        };
        model.new_context(&params).map_err(failed)
    }
}

fn failed(error: RefError) -> BackendError {
    BackendError::Failed(error.to_string())
}

/// The reference has no I2_S dequantizer, so its bytes are decoded here by bitnet.cpp's x86
/// layout: blocks of 128 weights in 32 bytes, byte `j` holding weights `j`, `j + 32`, `j + 64`
/// and `j + 96` from the high bits down; codes 0, 1, 2 mean −1, 0, +1; then the f32 scale.
fn decode_i2s(packed: &[u8], n: usize) -> Result<Vec<f32>, BackendError> {
    let scale = packed
        .get(n / 4..n / 4 + 4)
        .and_then(|b| b.try_into().ok())
        .map(f32::from_le_bytes)
        .ok_or_else(|| BackendError::Failed(format!("I2_S tensor of {n} weights is too short")))?;
    let mut values = vec![0f32; n];
    for (block, bytes) in packed[..n / 4].chunks_exact(32).enumerate() {
        for (j, &byte) in bytes.iter().enumerate() {
            for group in 0..4 {
                let code = (byte >> (6 - 2 * group)) & 3;
                values[block * 128 + group * 32 + j] = (f32::from(code) - 1.0) * scale;
            }
        }
    }
    Ok(values)
}

fn ggml_type(format: QuantFormat) -> Option<GgmlType> {
    match format {
        QuantFormat::I2S => Some(GgmlType::I2_S),
        QuantFormat::Tq1_0 => Some(GgmlType::TQ1_0),
        QuantFormat::Tq2_0 => Some(GgmlType::TQ2_0),
        QuantFormat::Tl1 | QuantFormat::Tl2 => None,
    }
}

impl Backend for CppBackend {
    fn id(&self) -> BackendId {
        BackendId::Cpp
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn info(&self) -> BackendInfo {
        let info = reference_info();
        BackendInfo {
            version: info.version.to_string(),
            details: [
                ("source", info.source.to_string()),
                ("fingerprint", info.fingerprint.to_string()),
                ("compiler", info.compiler.to_string()),
                ("c_flags", info.c_flags.to_string()),
                ("cpp_flags", info.cpp_flags.to_string()),
                ("isa", info.isa.to_string()),
                ("system_info", info.system_info),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        }
    }

    fn tensor_table(&self, model: &Path) -> Result<TensorTable, BackendError> {
        let header = GgufHeader::read(&self.reference, model).map_err(|e| BackendError::Load {
            path: model.to_path_buf(),
            message: e.to_string(),
        })?;
        let file_size = std::fs::metadata(model)?.len();
        Ok(TensorTable {
            alignment: header.alignment,
            data_offset: header.data_offset,
            file_size,
            tensors: header
                .tensors
                .iter()
                .map(|t| TensorInfo {
                    name: t.name.clone(),
                    ggml_type: t.ggml_type.0,
                    shape: t.ne[..t.n_dims as usize].to_vec(),
                    offset: t.offset,
                    size: t.nbytes,
                })
                .collect(),
        })
    }

    fn quantize(&self, request: &QuantRequest<'_>) -> Result<QuantOutput, BackendError> {
        if matches!(request.format, QuantFormat::Tl1 | QuantFormat::Tl2) {
            return self.quantize_lut(request);
        }
        let ty = ggml_type(request.format)
            .ok_or_else(|| self.unsupported(&format!("{} quantization", request.format)))?;
        let n = request.weights.len();
        let packed = self
            .reference
            .quantize(ty, request.weights, request.shape.cols)
            .map_err(failed)?;
        let dequantized = if ty == GgmlType::I2_S {
            decode_i2s(&packed, n)?
        } else {
            self.reference.dequantize(ty, &packed, n).map_err(failed)?
        };
        let dots = self.dots(ty, &packed, request)?;
        let mut packed = packed;
        packed.truncate(compared_packed_len(request.format, n, packed.len()));
        Ok(QuantOutput {
            packed,
            dequantized,
            dots,
        })
    }

    fn logits(&self, request: &LogitsRequest<'_>) -> Result<Vec<PromptLogits>, BackendError> {
        let model = self.load(request.model, false)?;
        request
            .prompts
            .iter()
            .map(|prompt| {
                let (tokens, mut context) =
                    self.prompt_context(&model, prompt, request.add_bos, Vec::new())?;
                let logits = context.eval(&tokens).map_err(failed)?;
                Ok(PromptLogits {
                    vocab: logits.n_vocab(),
                    logits: logits.into_vec(),
                    tokens,
                })
            })
            .collect()
    }

    fn trace(&self, request: &TraceRequest<'_>) -> Result<Vec<GraphTensor>, BackendError> {
        let model = self.load(request.model, false)?;
        let patterns = LAYER_OPS
            .iter()
            .map(|op| format!("{op}-*"))
            .chain(FINAL_OPS.iter().map(|op| op.to_string()))
            .collect();
        let (tokens, mut context) =
            self.prompt_context(&model, request.prompt, request.add_bos, patterns)?;
        context.eval(&tokens).map_err(failed)?;
        // ggml names views of a tensor after it (`Qcur-0 (reshaped)`, `Vcur-0 (transposed)`):
        // they hold no new values, so only the computed tensors are kept.
        context
            .take_captures()
            .map_err(failed)?
            .into_iter()
            .filter(|capture| !capture.name.ends_with(')'))
            .map(|capture| match capture.data {
                Some(values) => Ok(GraphTensor {
                    name: capture.name,
                    values,
                }),
                None => Err(BackendError::Failed(format!(
                    "captured tensor `{}` has a type the reference cannot convert to f32",
                    capture.name
                ))),
            })
            .collect()
    }

    fn perplexity(
        &self,
        request: &PerplexityRequest<'_>,
    ) -> Result<PerplexityOutput, BackendError> {
        let model = self.load(request.model, false)?;
        let tokens = match request.text {
            PerplexityText::Text(text) => model.tokenize(text, true, false).map_err(failed)?,
            PerplexityText::Random { seed, count } => {
                random_tokens(seed, count, model.info().n_vocab)
            }
        };
        let mut context = self.context(&model, request.ctx)?;
        let result = context
            .perplexity(&tokens, request.chunks)
            .map_err(failed)?;
        Ok(PerplexityOutput { nll: result.nll })
    }

    fn tokenize(&self, request: &TokenizeRequest<'_>) -> Result<Vec<Vec<u32>>, BackendError> {
        let model = self.load(request.model, true)?;
        request
            .texts
            .iter()
            .map(|text| {
                model
                    .tokenize(text, request.add_special, request.parse_special)
                    .map_err(failed)
            })
            .collect()
    }

    fn generate(&self, request: &GenerateRequest<'_>) -> Result<Vec<Vec<u32>>, BackendError> {
        let model = self.load(request.model, false)?;
        request
            .prompts
            .iter()
            .map(|prompt| {
                let tokens = model
                    .tokenize(prompt, request.add_bos, false)
                    .map_err(failed)?;
                let mut context = self.context(&model, tokens.len() + request.tokens)?;
                context
                    .generate_greedy(&tokens, request.tokens, false)
                    .map_err(failed)
            })
            .collect()
    }
}
