//! The CUDA backend's types in a build without the `cuda` feature: every constructor returns
//! [`CudaError::NotBuilt`], so no value of these types exists.

use half::f16;

use super::{CudaError, GpuInfo};
use crate::formats::{FpContract, I8sActivations, Q8kActivations, Shape};
use crate::gguf::GgmlType;
use crate::kernels::ReduceWidth;
use crate::model::{Model, PickRequest, Picked};

/// Describes a CUDA device; always [`CudaError::NotBuilt`] in this build.
pub fn probe(_ordinal: usize) -> Result<GpuInfo, CudaError> {
    Err(CudaError::NotBuilt)
}

/// A model's weights on a CUDA device (none in this build).
pub enum CudaModel {}

impl CudaModel {
    /// Always [`CudaError::NotBuilt`] in this build.
    pub fn upload(
        _model: &Model,
        _ordinal: usize,
        _memory_limit: Option<u64>,
    ) -> Result<Self, CudaError> {
        Err(CudaError::NotBuilt)
    }

    /// Bytes of device memory the weights take.
    pub fn weight_bytes(&self) -> u64 {
        match *self {}
    }

    /// The device.
    pub fn device(&self) -> Result<GpuInfo, CudaError> {
        match *self {}
    }
}

/// A context on a CUDA device (none in this build).
pub enum CudaSession {}

impl CudaSession {
    /// Always [`CudaError::NotBuilt`] in this build.
    pub fn new(_model: &Model, _cuda: &CudaModel, _n_ctx: usize) -> Result<Self, CudaError> {
        Err(CudaError::NotBuilt)
    }

    /// Bytes of the KV cache.
    pub fn kv_cache_bytes(&self) -> usize {
        match *self {}
    }

    /// Logits of a batch.
    pub fn eval(
        &mut self,
        _cuda: &CudaModel,
        _tokens: &[u32],
        _n_past: usize,
        _all_logits: bool,
    ) -> Result<Vec<f32>, CudaError> {
        match *self {}
    }

    /// A sampler's pick after a batch.
    pub fn eval_pick(
        &mut self,
        _cuda: &CudaModel,
        _tokens: &[u32],
        _n_past: usize,
        _request: &PickRequest,
    ) -> Result<Picked, CudaError> {
        match *self {}
    }

    /// The most likely next token after a batch.
    pub fn eval_argmax(
        &mut self,
        _cuda: &CudaModel,
        _tokens: &[u32],
        _n_past: usize,
    ) -> Result<u32, CudaError> {
        match *self {}
    }
}

/// Single kernels on a CUDA device (none in this build).
pub enum CudaOps {}

impl CudaOps {
    /// Always [`CudaError::NotBuilt`] in this build.
    pub fn new(_ordinal: usize) -> Result<Self, CudaError> {
        Err(CudaError::NotBuilt)
    }

    /// The device.
    pub fn info(&self) -> Result<GpuInfo, CudaError> {
        match *self {}
    }

    /// Waits for all work of the device.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        match *self {}
    }

    /// I8_S activation quantization.
    pub fn quantize_i8s(
        &self,
        _x: &[f32],
        _k: usize,
        _contract: FpContract,
    ) -> Result<I8sActivations, CudaError> {
        match *self {}
    }

    /// Q8_K activation quantization.
    pub fn quantize_q8k(
        &self,
        _x: &[f32],
        _k: usize,
        _contract: FpContract,
    ) -> Result<Q8kActivations, CudaError> {
        match *self {}
    }

    /// A matrix product.
    pub fn matmul(
        &self,
        _ty: GgmlType,
        _packed: &[u8],
        _shape: Shape,
        _x: &[f32],
        _contract: FpContract,
        _width: ReduceWidth,
    ) -> Result<Vec<f32>, CudaError> {
        match *self {}
    }

    /// RMSNorm.
    pub fn rms_norm(
        &self,
        _x: &[f32],
        _width: usize,
        _weight: &[f32],
        _eps: f32,
    ) -> Result<Vec<f32>, CudaError> {
        match *self {}
    }

    /// SiLU gate.
    pub fn silu_mul(
        &self,
        _gate: &[f32],
        _up: &[f32],
        _width: usize,
        _simd: ReduceWidth,
    ) -> Result<Vec<f32>, CudaError> {
        match *self {}
    }

    /// ReLU² gate.
    pub fn relu_sqr_mul(&self, _gate: &[f32], _up: &[f32]) -> Result<Vec<f32>, CudaError> {
        match *self {}
    }

    /// Argmax of a row.
    pub fn argmax(&self, _row: &[f32]) -> Result<u32, CudaError> {
        match *self {}
    }

    /// A sampler's pick from a row.
    pub fn pick(&self, _row: &[f32], _request: &PickRequest) -> Result<Picked, CudaError> {
        match *self {}
    }

    /// Embedding lookup.
    pub fn embed_f16(
        &self,
        _table: &[f16],
        _n_embd: usize,
        _tokens: &[u32],
    ) -> Result<Vec<f32>, CudaError> {
        match *self {}
    }
}
