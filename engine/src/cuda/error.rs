//! Why the CUDA backend cannot serve a request.

use crate::gguf::GgmlType;

/// An error of the CUDA backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CudaError {
    /// The engine was compiled without the `cuda` feature.
    #[error(
        "this build has no GPU backend (built without CUDA support: the `cuda` feature is off)"
    )]
    NotBuilt,
    /// The CUDA driver library could not be loaded.
    #[error("no CUDA driver: libcuda could not be loaded (is the NVIDIA driver installed and on the library path?)")]
    NoDriver,
    /// NVRTC could not be loaded.
    #[error("NVRTC could not be loaded: libnvrtc from a CUDA toolkit must be on the library path to compile the kernels")]
    NoNvrtc,
    /// The driver reports no device with this ordinal.
    #[error("no CUDA device {ordinal}: the driver reports {count} device(s)")]
    NoDevice {
        /// The ordinal asked for.
        ordinal: usize,
        /// Devices present.
        count: usize,
    },
    /// A driver call failed.
    #[error("CUDA driver error while {during}: {message}")]
    Driver {
        /// What the backend was doing.
        during: String,
        /// The driver's message.
        message: String,
    },
    /// NVRTC rejected the kernels.
    #[error("NVRTC could not compile the kernels for {arch}: {log}")]
    Compile {
        /// The target architecture.
        arch: String,
        /// The compiler's log.
        log: String,
    },
    /// Not enough GPU memory, or more than the configured limit.
    #[error("the GPU needs {needed} bytes for {what}, but only {available} bytes are {within}")]
    OutOfMemory {
        /// What was being allocated.
        what: String,
        /// Bytes needed in all.
        needed: u64,
        /// Bytes that may be used.
        available: u64,
        /// Which bound applies: "free on the device" or "allowed by the GPU memory limit".
        within: &'static str,
    },
    /// A weight tensor of a type the GPU kernels do not multiply (the CPU engine may: Q8_0 and
    /// Q6_K embeddings and output heads and TL1 and TL2 weights run there).
    #[error("the CUDA backend does not support tensor `{tensor}` of type {ty}")]
    UnsupportedType {
        /// The tensor's name.
        tensor: String,
        /// Its type.
        ty: GgmlType,
    },
    /// A model or request the backend does not support.
    #[error("the CUDA backend does not support {0}")]
    Unsupported(String),
    /// A request that does not fit the session.
    #[error("invalid request: {0}")]
    Request(String),
}
