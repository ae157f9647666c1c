//! A model's weights in device memory.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream};

use super::gpu::{driver, Gpu};
use super::launch::{I2sMatrixRef, I2S_GEMV_WEIGHTS};
use super::{CudaError, GpuInfo};
use crate::formats::{I2sMatrix, Scales, Shape, TernaryFormat, Tq1_0, Tq2_0, QK_K};
use crate::gguf::GgmlType;
use crate::model::{Linear, Model};

/// A weight matrix on the device, in the layout its kernel reads.
pub(crate) enum GpuWeights {
    /// I2_S codes repacked to one word per 16 weights (see `i2s_words`), and the per-tensor
    /// scale.
    I2s { codes: CudaSlice<u32>, scale: f32 },
    /// TQ1_0 or TQ2_0, repacked to TQ2_0 code bytes (64 per block) and f32 block scales.
    Tq {
        codes: CudaSlice<u8>,
        d: CudaSlice<f32>,
    },
    /// f16 values (as bits).
    F16(CudaSlice<u16>),
    /// f32 values.
    F32(CudaSlice<f32>),
}

/// A weight matrix's bytes as stored in a GGUF file.
pub(crate) struct Tensor<'a> {
    pub name: &'a str,
    pub ty: GgmlType,
    pub shape: Shape,
    pub data: &'a [u8],
}

/// A [`Linear`] on the device.
pub(crate) struct GpuLinear {
    pub weights: GpuWeights,
    pub rows: usize,
    pub k: usize,
    pub scale: Option<f32>,
}

impl GpuLinear {
    /// The matrix as the one-token I2_S kernels take it, when it is I2_S of a width they read.
    pub fn i2s_gemv_ref(&self) -> Option<I2sMatrixRef<'_>> {
        match &self.weights {
            GpuWeights::I2s { codes, scale } if self.k.is_multiple_of(I2S_GEMV_WEIGHTS) => {
                Some(I2sMatrixRef {
                    codes,
                    w_scale: *scale,
                    out_scale: self.scale,
                })
            }
            _ => None,
        }
    }

    /// Whether the GPU kernels multiply matrices of `ty`.
    fn supports(ty: GgmlType) -> bool {
        matches!(
            ty,
            GgmlType::I2_S | GgmlType::TQ1_0 | GgmlType::TQ2_0 | GgmlType::F16 | GgmlType::F32
        )
    }

    /// Bytes of device memory a matrix of `ty` and `shape` takes.
    fn device_bytes(ty: GgmlType, shape: Shape) -> u64 {
        let n = (shape.ne0 * shape.ne1) as u64;
        match ty {
            GgmlType::I2_S => n / 4,
            GgmlType::TQ1_0 | GgmlType::TQ2_0 => n / 4 + n / QK_K as u64 * 4,
            GgmlType::F16 => n * 2,
            _ => n * 4,
        }
    }

    fn upload(stream: &Arc<CudaStream>, linear: &Linear, file: &[u8]) -> Result<Self, CudaError> {
        let tensor = Tensor {
            name: linear.name(),
            ty: linear.ty(),
            shape: linear.shape(),
            data: linear.data(file),
        };
        Self::upload_tensor(stream, &tensor, linear.scale())
    }

    /// Uploads a matrix of any supported type, with an optional output scale.
    pub fn upload_tensor(
        stream: &Arc<CudaStream>,
        tensor: &Tensor<'_>,
        scale: Option<f32>,
    ) -> Result<Self, CudaError> {
        let (shape, data) = (tensor.shape, tensor.data);
        let unsupported = |e: &dyn std::fmt::Display| {
            CudaError::Unsupported(format!("tensor `{}`: {e}", tensor.name))
        };
        let weights = match tensor.ty {
            GgmlType::I2_S => {
                let m = I2sMatrix::new(data, shape).map_err(|e| unsupported(&e))?;
                GpuWeights::I2s {
                    codes: stream
                        .clone_htod(&i2s_words(m.codes()))
                        .map_err(driver("uploading I2_S codes"))?,
                    scale: m.scale(),
                }
            }
            ty @ (GgmlType::TQ1_0 | GgmlType::TQ2_0) => {
                let format: &dyn TernaryFormat = if ty == GgmlType::TQ1_0 {
                    &Tq1_0
                } else {
                    &Tq2_0
                };
                let unpacked = format.unpack(data, shape).map_err(|e| unsupported(&e))?;
                let Scales::PerBlock { scales, .. } = unpacked.scales else {
                    return Err(unsupported(&"per-tensor scales in a TQ format"));
                };
                GpuWeights::Tq {
                    codes: stream
                        .clone_htod(&tq2_codes(&unpacked.codes))
                        .map_err(driver("uploading TQ codes"))?,
                    d: stream
                        .clone_htod(&scales)
                        .map_err(driver("uploading TQ scales"))?,
                }
            }
            GgmlType::F16 => {
                let bits: Vec<u16> = data
                    .chunks_exact(2)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]))
                    .collect();
                GpuWeights::F16(
                    stream
                        .clone_htod(&bits)
                        .map_err(driver("uploading f16 values"))?,
                )
            }
            GgmlType::F32 => {
                let values: Vec<f32> = data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                GpuWeights::F32(
                    stream
                        .clone_htod(&values)
                        .map_err(driver("uploading f32 values"))?,
                )
            }
            ty => {
                return Err(CudaError::UnsupportedType {
                    tensor: tensor.name.to_string(),
                    ty,
                })
            }
        };
        Ok(GpuLinear {
            weights,
            rows: shape.ne1,
            k: shape.ne0,
            scale,
        })
    }
}

/// I2_S codes of the x86 layout (32 bytes per 128 weights, weight `32g + j` of a block at bits
/// `6 − 2g` of byte `j`) repacked to one `u32` per 16 weights: weight `16q + 4s + b` at bits
/// `8b + 2s` of word `q`, so that a shift and a mask give four consecutive codes as the bytes of
/// a `dp4a` operand. The raw 2-bit codes are kept (3 stays 3, as the CPU kernels compute).
fn i2s_words(codes: &[u8]) -> Vec<u32> {
    let code = |e: usize| {
        let (block, within) = (e / 128, e % 128);
        let byte = codes[block * 32 + within % 32];
        u32::from((byte >> (6 - 2 * (within / 32))) & 3)
    };
    (0..codes.len() / 4)
        .map(|q| {
            (0..16).fold(0u32, |word, i| {
                let (s, b) = (i / 4, i % 4);
                word | code(16 * q + i) << (8 * b + 2 * s)
            })
        })
        .collect()
}

/// Ternary codes (−1, 0, +1; +2 for the raw code 3) of whole 256-weight blocks, packed as TQ2_0
/// code bytes: weight `e` of a block at byte `32 · (e / 128) + e % 32`, bits `2 · ((e % 128) / 32)`.
fn tq2_codes(codes: &[i8]) -> Vec<u8> {
    let mut packed = vec![0u8; codes.len() / 4];
    for (block, out) in codes
        .chunks_exact(QK_K)
        .zip(packed.chunks_exact_mut(QK_K / 4))
    {
        for (e, &code) in block.iter().enumerate() {
            let byte = 32 * (e / 128) + e % 32;
            let shift = 2 * ((e % 128) / 32);
            out[byte] |= (((code + 1) as u8) & 3) << shift;
        }
    }
    packed
}

/// The tensors of one block on the device.
pub(crate) struct GpuLayer {
    pub attn_norm: CudaSlice<f32>,
    pub wq: GpuLinear,
    pub wk: GpuLinear,
    pub wv: GpuLinear,
    pub wo: GpuLinear,
    pub attn_sub_norm: Option<CudaSlice<f32>>,
    pub ffn_norm: CudaSlice<f32>,
    pub ffn_gate: GpuLinear,
    pub ffn_up: GpuLinear,
    pub ffn_down: GpuLinear,
    pub ffn_sub_norm: Option<CudaSlice<f32>>,
}

/// A model's weights on one CUDA device; freed when dropped.
pub struct CudaModel {
    pub(crate) gpu: Arc<Gpu>,
    pub(crate) stream: Arc<CudaStream>,
    pub(crate) token_embd: GpuLinear,
    /// `None`: the output projection is tied to `token_embd`.
    pub(crate) output: Option<GpuLinear>,
    pub(crate) output_norm: CudaSlice<f32>,
    pub(crate) layers: Vec<GpuLayer>,
    pub(crate) memory_limit: Option<u64>,
    weight_bytes: u64,
}

impl CudaModel {
    /// Uploads `model`'s weights to device `ordinal`, after checking that every weight matrix has a
    /// type the GPU kernels multiply (else [`CudaError::UnsupportedType`] names the first that does
    /// not) and that they and a KV cache of the training context fit in the device's free memory
    /// and in `memory_limit`.
    pub fn upload(
        model: &Model,
        ordinal: usize,
        memory_limit: Option<u64>,
    ) -> Result<Self, CudaError> {
        let linears = model.linears();
        if let Some(linear) = linears.iter().find(|l| !GpuLinear::supports(l.ty())) {
            return Err(CudaError::UnsupportedType {
                tensor: linear.name().to_string(),
                ty: linear.ty(),
            });
        }
        let gpu = Gpu::get(ordinal)?;
        let weight_bytes: u64 = linears
            .iter()
            .map(|l| GpuLinear::device_bytes(l.ty(), l.shape()))
            .sum::<u64>()
            + model.weight_memory().copied as u64;
        let kv = model
            .heads()
            .cache_bytes(model.layers.len(), model.n_ctx_train(), true) as u64;
        check_fits(
            &gpu.info()?,
            memory_limit,
            weight_bytes + kv,
            "the weights and a KV cache of the training context",
        )?;
        let stream = gpu.stream()?;
        let file = model.file.bytes();
        let linear = |l: &Linear| GpuLinear::upload(&stream, l, file);
        let vector = |v: &[f32]| {
            stream
                .clone_htod(v)
                .map_err(driver("uploading a norm vector"))
        };
        let tied = model.output.name() == model.token_embd.name();
        let layers = model
            .layers
            .iter()
            .map(|l| {
                Ok(GpuLayer {
                    attn_norm: vector(&l.attn_norm)?,
                    wq: linear(&l.wq)?,
                    wk: linear(&l.wk)?,
                    wv: linear(&l.wv)?,
                    wo: linear(&l.wo)?,
                    attn_sub_norm: l.attn_sub_norm.as_deref().map(vector).transpose()?,
                    ffn_norm: vector(&l.ffn_norm)?,
                    ffn_gate: linear(&l.ffn_gate)?,
                    ffn_up: linear(&l.ffn_up)?,
                    ffn_down: linear(&l.ffn_down)?,
                    ffn_sub_norm: l.ffn_sub_norm.as_deref().map(vector).transpose()?,
                })
            })
            .collect::<Result<Vec<_>, CudaError>>()?;
        let cuda = CudaModel {
            token_embd: linear(&model.token_embd)?,
            output: (!tied).then(|| linear(&model.output)).transpose()?,
            output_norm: vector(&model.output_norm)?,
            layers,
            memory_limit,
            weight_bytes,
            stream,
            gpu,
        };
        cuda.stream
            .synchronize()
            .map_err(driver("finishing the upload"))?;
        Ok(cuda)
    }

    /// Bytes of device memory the weights take.
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// The device, with its memory free now.
    pub fn device(&self) -> Result<GpuInfo, CudaError> {
        self.gpu.info()
    }

    pub(crate) fn output(&self) -> &GpuLinear {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }
}

/// Checks that `needed` bytes fit the device's free memory and the limit.
pub(crate) fn check_fits(
    info: &GpuInfo,
    limit: Option<u64>,
    needed: u64,
    what: &str,
) -> Result<(), CudaError> {
    if let Some(limit) = limit.filter(|&l| needed > l) {
        return Err(CudaError::OutOfMemory {
            what: what.to_string(),
            needed,
            available: limit,
            within: "allowed by the GPU memory limit",
        });
    }
    if needed > info.free_memory {
        return Err(CudaError::OutOfMemory {
            what: what.to_string(),
            needed,
            available: info.free_memory,
            within: "free on the device",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{I2s, TernaryFormat};
    use crate::synth::SplitMix64;

    #[test]
    fn repacked_i2s_words_hold_every_code_in_order() {
        let shape = Shape::new(384, 3);
        let mut rng = SplitMix64::new(9);
        let weights: Vec<f32> = (0..shape.ne0 * shape.ne1)
            .map(|_| (rng.next_u64() % 3) as f32 - 1.0)
            .collect();
        let packed = I2s.quantize(&weights, shape).unwrap();
        let m = I2sMatrix::new(&packed, shape).unwrap();
        let codes = I2s.unpack(&packed, shape).unwrap().codes;
        let words = i2s_words(m.codes());
        assert_eq!(words.len(), codes.len() / 16);
        for (e, &code) in codes.iter().enumerate() {
            let (q, s, b) = (e / 16, (e % 16) / 4, e % 4);
            let raw = (words[q] >> (8 * b + 2 * s)) & 3;
            assert_eq!(raw as i32 - 1, i32::from(code), "weight {e}");
        }
    }

    #[test]
    fn tq2_codes_follow_the_tq2_0_layout() {
        let codes: Vec<i8> = (0..512).map(|e| (e % 3) as i8 - 1).collect();
        let packed = tq2_codes(&codes);
        for (e, &code) in codes.iter().enumerate() {
            let (block, e) = (e / 256, e % 256);
            let byte = packed[block * 64 + 32 * (e / 128) + e % 32];
            let raw = (byte >> (2 * ((e % 128) / 32))) & 3;
            assert_eq!(i32::from(raw) - 1, i32::from(code));
        }
    }
}
