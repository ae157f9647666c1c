//! Devices: probing, contexts, and the kernels compiled once per device.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::sys::{CUdevice_attribute, CUfunction_attribute};
use cudarc::driver::{CudaContext, CudaFunction, CudaStream, DriverError};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileError, CompileOptions};

use super::{CudaError, GpuInfo};

/// The kernels' CUDA C source.
const SOURCE: &str = include_str!("kernels.cu");

/// Describes device `ordinal`, or says why there is none. Never panics when the driver or
/// NVRTC is missing.
pub fn probe(ordinal: usize) -> Result<GpuInfo, CudaError> {
    Gpu::get(ordinal)?.info()
}

pub(crate) fn driver(during: &str) -> impl Fn(DriverError) -> CudaError + '_ {
    move |e| CudaError::Driver {
        during: during.to_string(),
        message: e.to_string(),
    }
}

/// The compiled kernels of one device.
pub(crate) struct Kernels {
    pub embed_f16: CudaFunction,
    pub embed_f32: CudaFunction,
    pub rms_norm: CudaFunction,
    pub rms_norm_quantize: CudaFunction,
    pub quantize_i8s: CudaFunction,
    pub quantize_q8k: CudaFunction,
    pub i2s_matmul: CudaFunction,
    pub i2s_gemv: CudaFunction,
    pub i2s_gemv_glu: CudaFunction,
    pub tq_matmul: CudaFunction,
    pub f16_matmul: CudaFunction,
    pub f32_matmul: CudaFunction,
    pub rope_store: CudaFunction,
    pub attention: CudaFunction,
    pub attention_scores: CudaFunction,
    pub attention_values: CudaFunction,
    pub silu_mul: CudaFunction,
    pub relu_sqr_mul: CudaFunction,
    pub argmax: CudaFunction,
    pub pick: CudaFunction,
}

/// A device's context and kernels, shared by every model on it.
pub(crate) struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub kernels: Kernels,
    /// Dynamic shared memory the attention kernels may use.
    pub attention_shared_limit: usize,
    /// Dynamic shared memory the I2_S kernel may use for staged activations.
    pub i2s_shared_limit: usize,
    ordinal: usize,
    name: String,
    compute_capability: (i32, i32),
}

impl Gpu {
    /// The device `ordinal`, its kernels compiled on first use and cached for the process.
    pub fn get(ordinal: usize) -> Result<Arc<Gpu>, CudaError> {
        static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<Gpu>>>> = OnceLock::new();
        let devices = DEVICES.get_or_init(Default::default);
        let mut devices = devices.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(gpu) = devices.get(&ordinal) {
            return Ok(gpu.clone());
        }
        let gpu = Arc::new(Gpu::open(ordinal)?);
        devices.insert(ordinal, gpu.clone());
        Ok(gpu)
    }

    fn open(ordinal: usize) -> Result<Gpu, CudaError> {
        // SAFETY: only tries to load the driver library; no driver function is called.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(CudaError::NoDriver);
        }
        let count = CudaContext::device_count().map_err(driver("counting devices"))?;
        let count = usize::try_from(count).unwrap_or(0);
        if ordinal >= count {
            return Err(CudaError::NoDevice { ordinal, count });
        }
        // SAFETY: only tries to load the NVRTC library.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(CudaError::NoNvrtc);
        }
        let ctx = CudaContext::new(ordinal).map_err(driver("creating the context"))?;
        // SAFETY: every buffer of this backend is allocated, used and freed on one stream (a
        // model's, shared by its sessions, or a `CudaOps`'s), so no cross-stream event tracking
        // is needed; it would add event records to every launch and to captured graphs.
        unsafe { ctx.disable_event_tracking() };
        let compute_capability = ctx
            .compute_capability()
            .map_err(driver("reading the compute capability"))?;
        let name = ctx.name().map_err(driver("reading the device name"))?;
        let arch = format!("compute_{}{}", compute_capability.0, compute_capability.1);
        let options = CompileOptions {
            fmad: Some(false),
            prec_div: Some(true),
            prec_sqrt: Some(true),
            ftz: Some(false),
            options: vec![format!("--gpu-architecture={arch}")],
            ..CompileOptions::default()
        };
        let ptx = compile_ptx_with_opts(SOURCE, options).map_err(|e| CudaError::Compile {
            arch: arch.clone(),
            log: compile_log(&e),
        })?;
        let module = ctx
            .load_module(ptx)
            .map_err(driver("loading the compiled kernels"))?;
        let load = |name: &str| {
            module
                .load_function(name)
                .map_err(driver(&format!("finding kernel `{name}`")))
        };
        let kernels = Kernels {
            embed_f16: load("embed_f16")?,
            embed_f32: load("embed_f32")?,
            rms_norm: load("rms_norm")?,
            rms_norm_quantize: load("rms_norm_quantize")?,
            quantize_i8s: load("quantize_i8s")?,
            quantize_q8k: load("quantize_q8k")?,
            i2s_matmul: load("i2s_matmul")?,
            i2s_gemv: load("i2s_gemv")?,
            i2s_gemv_glu: load("i2s_gemv_glu")?,
            tq_matmul: load("tq_matmul")?,
            f16_matmul: load("f16_matmul")?,
            f32_matmul: load("f32_matmul")?,
            rope_store: load("rope_store")?,
            attention: load("attention")?,
            attention_scores: load("attention_scores")?,
            attention_values: load("attention_values")?,
            silu_mul: load("silu_mul")?,
            relu_sqr_mul: load("relu_sqr_mul")?,
            argmax: load("argmax")?,
            pick: load("pick")?,
        };
        let optin = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
            .map_err(driver("reading the shared-memory limit"))?;
        // The split kernel's probabilities need no more than the whole one's.
        let attention_shared_limit = raise_shared_limit(&kernels.attention, optin)?
            .min(raise_shared_limit(&kernels.attention_values, optin)?);
        let i2s_shared_limit = raise_shared_limit(&kernels.i2s_matmul, optin)?;
        Ok(Gpu {
            ctx,
            kernels,
            attention_shared_limit,
            i2s_shared_limit,
            ordinal,
            name,
            compute_capability,
        })
    }

    /// A new stream on this device.
    pub fn stream(&self) -> Result<Arc<CudaStream>, CudaError> {
        self.ctx.new_stream().map_err(driver("creating a stream"))
    }

    /// The device's description, with the memory free now (frees still queued on a stream count
    /// as used).
    pub fn info(&self) -> Result<GpuInfo, CudaError> {
        let (free, total) = self
            .ctx
            .mem_get_info()
            .map_err(driver("reading the free device memory"))?;
        Ok(GpuInfo {
            ordinal: self.ordinal,
            name: self.name.clone(),
            compute_capability: self.compute_capability,
            total_memory: total as u64,
            free_memory: free as u64,
        })
    }
}

/// Lets `kernel` use all the dynamic shared memory a block may opt into (`optin` bytes, less
/// its static shared memory); returns that amount.
fn raise_shared_limit(kernel: &CudaFunction, optin: i32) -> Result<usize, CudaError> {
    let static_shared = kernel
        .shared_size_bytes()
        .map_err(driver("reading a kernel's shared memory"))?;
    let limit = (optin - static_shared).max(0);
    kernel
        .set_attribute(
            CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            limit,
        )
        .map_err(driver("raising a kernel's shared memory"))?;
    Ok(usize::try_from(limit).unwrap_or(0))
}

fn compile_log(error: &CompileError) -> String {
    match error {
        CompileError::CompileError { log, .. } => log.to_string_lossy().into_owned(),
        other => format!("{other:?}"),
    }
}
