//! Single kernels on host data: each uploads its inputs, runs on the device and copies the result
//! back, so every kernel can be set beside its CPU twin.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DeviceRepr, ValidAsZeroBits};
use half::f16;

use super::gpu::{driver, Gpu};
use super::launch::{argmax_index, Launcher};
use super::pick::PickBuffers;
use super::session::{Activations, Matmuls};
use super::weights::{GpuLinear, Tensor};
use super::{CudaError, GpuInfo};
use crate::formats::{
    BlockQ8K, FpContract, I8sActivations, Q8kActivations, Shape, TqKind, TqMatrix, QK_K,
};
use crate::gguf::GgmlType;
use crate::kernels::ReduceWidth;
use crate::model::{PickRequest, Picked};

/// The kernels of one device, on host inputs.
pub struct CudaOps {
    gpu: Arc<Gpu>,
    stream: Arc<CudaStream>,
}

impl CudaOps {
    /// The kernels of device `ordinal`.
    pub fn new(ordinal: usize) -> Result<Self, CudaError> {
        let gpu = Gpu::get(ordinal)?;
        let stream = gpu.stream()?;
        Ok(CudaOps { gpu, stream })
    }

    /// The device, with its memory free now.
    pub fn info(&self) -> Result<GpuInfo, CudaError> {
        self.gpu.info()
    }

    /// Waits for all work of the device's context, the memory frees of dropped models included.
    /// Not while another thread captures a graph on the device: a context-wide wait breaks the
    /// capture.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        self.gpu
            .ctx
            .synchronize()
            .map_err(driver("waiting for the device"))
    }

    fn launcher(&self) -> Launcher<'_> {
        Launcher {
            gpu: &self.gpu,
            stream: &self.stream,
        }
    }

    fn upload<T: DeviceRepr>(&self, values: &[T]) -> Result<CudaSlice<T>, CudaError> {
        self.stream
            .clone_htod(values)
            .map_err(driver("copying inputs to the device"))
    }

    fn zeros<T: DeviceRepr + ValidAsZeroBits>(&self, n: usize) -> Result<CudaSlice<T>, CudaError> {
        self.stream
            .alloc_zeros::<T>(n.max(1))
            .map_err(driver("allocating outputs"))
    }

    fn download<T: DeviceRepr + Default + Clone>(
        &self,
        values: &CudaSlice<T>,
        n: usize,
    ) -> Result<Vec<T>, CudaError> {
        let mut out = vec![T::default(); n];
        self.stream
            .memcpy_dtoh(&values.slice(..n), &mut out)
            .map_err(driver("copying results to the host"))?;
        Ok(out)
    }

    /// [`I8sActivations::quantize`] on the device.
    pub fn quantize_i8s(
        &self,
        x: &[f32],
        k: usize,
        contract: FpContract,
    ) -> Result<I8sActivations, CudaError> {
        let tokens = tokens_of(x.len(), k, 1)?;
        let input = self.upload(x)?;
        let (mut codes, mut scales, mut sums) = (
            self.zeros(x.len())?,
            self.zeros(tokens)?,
            self.zeros(tokens)?,
        );
        self.launcher().quantize_i8s(
            &input.slice(..),
            tokens,
            k,
            contract == FpContract::Fused,
            &mut codes.slice_mut(..),
            &mut scales.slice_mut(..),
            &mut sums.slice_mut(..),
        )?;
        I8sActivations::from_parts(
            k,
            self.download(&codes, x.len())?,
            self.download(&scales, tokens)?,
            self.download(&sums, tokens)?,
        )
        .map_err(|e| CudaError::Request(e.to_string()))
    }

    /// [`Q8kActivations::quantize`] on the device (the block sums are added on the host).
    pub fn quantize_q8k(
        &self,
        x: &[f32],
        k: usize,
        contract: FpContract,
    ) -> Result<Q8kActivations, CudaError> {
        tokens_of(x.len(), k, QK_K)?;
        let input = self.upload(x)?;
        let blocks = x.len() / QK_K;
        let (mut codes, mut d) = (self.zeros::<i8>(x.len())?, self.zeros::<f32>(blocks)?);
        self.launcher().quantize_q8k(
            &input.slice(..),
            x.len() / k,
            k,
            contract == FpContract::Fused,
            &mut codes.slice_mut(..),
            &mut d.slice_mut(..),
        )?;
        let codes = self.download(&codes, x.len())?;
        let d = self.download(&d, blocks)?;
        let blocks = codes
            .chunks_exact(QK_K)
            .zip(d)
            .map(|(qs, d)| {
                let mut block = BlockQ8K {
                    d,
                    qs: [0; QK_K],
                    bsums: [0; QK_K / 16],
                };
                block.qs.copy_from_slice(qs);
                for (sum, group) in block.bsums.iter_mut().zip(qs.chunks_exact(16)) {
                    *sum = group.iter().map(|&q| i16::from(q)).sum();
                }
                block
            })
            .collect();
        Q8kActivations::from_blocks(k, blocks).map_err(|e| CudaError::Request(e.to_string()))
    }

    /// `W · x` for each token of `x` with `W` in GGUF bytes of type `ty` (I2_S, TQ1_0, TQ2_0,
    /// F16 or F32), quantizing the activations as the CPU does for that type; `width` is the
    /// reference build's lane count (it decides when f16 products round the activations).
    pub fn matmul(
        &self,
        ty: GgmlType,
        packed: &[u8],
        shape: Shape,
        x: &[f32],
        contract: FpContract,
        width: ReduceWidth,
    ) -> Result<Vec<f32>, CudaError> {
        if ty == GgmlType::TQ1_0 || ty == GgmlType::TQ2_0 {
            let kind = if ty == GgmlType::TQ1_0 {
                TqKind::Tq1_0
            } else {
                TqKind::Tq2_0
            };
            TqMatrix::new(kind, packed, shape).map_err(|e| CudaError::Request(e.to_string()))?;
        }
        let tokens = tokens_of(x.len(), shape.ne0, 1)?;
        let tensor = Tensor {
            name: "matmul operand",
            ty,
            shape,
            data: packed,
        };
        let w = GpuLinear::upload_tensor(&self.stream, &tensor, None)?;
        let input = self.upload(x)?;
        let widest = x.len();
        let (mut codes, mut scale, mut sum, mut d) = (
            self.zeros::<i8>(widest)?,
            self.zeros::<f32>(tokens)?,
            self.zeros::<i32>(tokens)?,
            self.zeros::<f32>(widest.div_ceil(QK_K))?,
        );
        let mut act = Activations {
            codes: &mut codes,
            scale: &mut scale,
            sum: &mut sum,
            d: &mut d,
            held: None,
        };
        let mut out = self.zeros::<f32>(tokens * shape.ne1)?;
        let launcher = self.launcher();
        let matmuls = Matmuls {
            launcher: &launcher,
            fused: contract == FpContract::Fused,
            lanes: width.lanes(),
        };
        matmuls.apply(
            &w,
            &input.slice(..),
            &mut act,
            &mut out.slice_mut(..),
            (tokens, false),
        )?;
        self.download(&out, tokens * shape.ne1)
    }

    /// [`rms_norm`](crate::model::ops::rms_norm) of each row of `x` on the device.
    pub fn rms_norm(
        &self,
        x: &[f32],
        width: usize,
        weight: &[f32],
        eps: f32,
    ) -> Result<Vec<f32>, CudaError> {
        let rows = tokens_of(x.len(), width, 1)?;
        if weight.len() != width {
            return Err(CudaError::Request(format!(
                "{} norm weights for rows of {width}",
                weight.len()
            )));
        }
        let (input, w, mut out) = (self.upload(x)?, self.upload(weight)?, self.zeros(x.len())?);
        self.launcher().rms_norm(
            &input.slice(..),
            &w,
            &mut out.slice_mut(..),
            rows,
            width,
            eps,
        )?;
        self.download(&out, x.len())
    }

    /// [`silu_mul`](crate::model::ops::silu_mul) on the device.
    pub fn silu_mul(
        &self,
        gate: &[f32],
        up: &[f32],
        width: usize,
        simd: ReduceWidth,
    ) -> Result<Vec<f32>, CudaError> {
        tokens_of(gate.len(), width, 1)?;
        same_len(gate, up)?;
        let (mut g, u) = (self.upload(gate)?, self.upload(up)?);
        self.launcher().silu_mul(
            &mut g.slice_mut(..),
            &u.slice(..),
            width,
            simd.lanes(),
            gate.len(),
        )?;
        self.download(&g, gate.len())
    }

    /// [`relu_sqr_mul`](crate::model::ops::relu_sqr_mul) on the device.
    pub fn relu_sqr_mul(&self, gate: &[f32], up: &[f32]) -> Result<Vec<f32>, CudaError> {
        same_len(gate, up)?;
        let (mut g, u) = (self.upload(gate)?, self.upload(up)?);
        self.launcher()
            .relu_sqr_mul(&mut g.slice_mut(..), &u.slice(..), gate.len())?;
        self.download(&g, gate.len())
    }

    /// [`argmax`](crate::model::argmax) on the device.
    pub fn argmax(&self, row: &[f32]) -> Result<u32, CudaError> {
        if row.is_empty() {
            return Err(CudaError::Request("argmax of an empty row".into()));
        }
        let (input, mut best) = (self.upload(row)?, self.zeros::<u64>(1)?);
        self.launcher()
            .argmax(&input.slice(..), row.len(), &mut best)?;
        Ok(argmax_index(self.download(&best, 1)?[0]))
    }

    /// The device's share of a sampler's pick (`PickRequest`) from `row`.
    pub fn pick(&self, row: &[f32], request: &PickRequest) -> Result<Picked, CudaError> {
        let input = self.upload(row)?;
        let mut buffers = PickBuffers::new(&self.stream, row.len())?;
        buffers.pick(&self.launcher(), &input.slice(..), request)
    }

    /// Embedding lookup on the device: rows `tokens` of an f16 table of rows of `n_embd`, as f32.
    pub fn embed_f16(
        &self,
        table: &[f16],
        n_embd: usize,
        tokens: &[u32],
    ) -> Result<Vec<f32>, CudaError> {
        let rows = tokens_of(table.len(), n_embd, 1)?;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= rows) {
            return Err(CudaError::Request(format!(
                "token {bad} outside a table of {rows} rows"
            )));
        }
        let bits: Vec<u16> = table.iter().map(|v| v.to_bits()).collect();
        let n = tokens.len() * n_embd;
        let (table, ids, mut out) = (self.upload(&bits)?, self.upload(tokens)?, self.zeros(n)?);
        let kernel = &self.gpu.kernels.embed_f16;
        let geometry = (tokens.len(), n_embd);
        self.launcher().embed(
            kernel,
            &table,
            &ids.slice(..),
            &mut out.slice_mut(..),
            geometry,
        )?;
        self.download(&out, n)
    }
}

/// Tokens of `len` values in rows of `k` (a multiple of `multiple`), or why they do not fit.
fn tokens_of(len: usize, k: usize, multiple: usize) -> Result<usize, CudaError> {
    if k == 0 || !k.is_multiple_of(multiple) || !len.is_multiple_of(k) || len == 0 {
        return Err(CudaError::Request(format!(
            "{len} values do not form rows of {k} (a non-zero multiple of {multiple})"
        )));
    }
    Ok(len / k)
}

fn same_len(a: &[f32], b: &[f32]) -> Result<(), CudaError> {
    if a.len() == b.len() {
        Ok(())
    } else {
        Err(CudaError::Request(format!(
            "operands of {} and {} values",
            a.len(),
            b.len()
        )))
    }
}
