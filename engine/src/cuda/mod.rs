//! The CUDA backend: the whole forward pass on an NVIDIA GPU.
//!
//! Kernels are CUDA C (`kernels.cu`) compiled at run time by
//! NVRTC for the device's compute capability and cached per device; the driver and NVRTC are
//! loaded dynamically, so a build with the `cuda` feature runs (and reports [`CudaError`]) on
//! machines without either. Each kernel has a CPU twin it is checked against ([`CudaOps`]): the
//! activation quantizers and the ternary integer cores return the CPU's bits, and the float steps
//! (RMSNorm, RoPE, the reference's `expf`, attention and the dense dots) follow the CPU's order of
//! evaluation, so whole models return the CPU engine's logits bit for bit. A decode step's
//! attention can be split across the context (flash-decoding) with the same bits, and a sampler's
//! pick runs its first filter, or the whole draw, on the device (`model::pick`).
//!
//! Without the `cuda` feature this module keeps its types, and every constructor returns
//! [`CudaError::NotBuilt`].

mod error;
mod info;

#[cfg(feature = "cuda")]
mod gpu;
#[cfg(feature = "cuda")]
mod launch;
#[cfg(feature = "cuda")]
mod ops;
#[cfg(feature = "cuda")]
mod pick;
#[cfg(feature = "cuda")]
mod session;
#[cfg(feature = "cuda")]
mod weights;

#[cfg(not(feature = "cuda"))]
mod stub;

pub use error::CudaError;
#[cfg(feature = "cuda")]
pub use gpu::probe;
pub use info::GpuInfo;
#[cfg(feature = "cuda")]
pub use ops::CudaOps;
#[cfg(feature = "cuda")]
pub use session::CudaSession;
#[cfg(feature = "cuda")]
pub use weights::CudaModel;

#[cfg(not(feature = "cuda"))]
pub use stub::{probe, CudaModel, CudaOps, CudaSession};
