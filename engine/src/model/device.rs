//! Where a model runs: the requested strategy, the device it resolves to, and why.
//!
//! [`resolve_device`] is the one place that probes for a GPU (CUDA device 0); every caller
//! (load-time errors, the reason reported in run metrics) follows from its answer.

use std::fmt;
use std::str::FromStr;

use crate::cuda;

/// The device a caller asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeviceStrategy {
    /// A GPU when one is usable, otherwise the CPU.
    #[default]
    Auto,
    /// The CPU, even when a GPU is usable.
    ForceCpu,
    /// A GPU, or an error.
    ForceGpu,
    /// GPU compute with control (sampling, tokenization, scheduling) on the CPU, or an error.
    Hybrid,
}

impl DeviceStrategy {
    /// The name accepted by [`FromStr`]: `auto`, `cpu`, `gpu` or `hybrid`.
    pub fn name(self) -> &'static str {
        match self {
            DeviceStrategy::Auto => "auto",
            DeviceStrategy::ForceCpu => "cpu",
            DeviceStrategy::ForceGpu => "gpu",
            DeviceStrategy::Hybrid => "hybrid",
        }
    }
}

impl fmt::Display for DeviceStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DeviceStrategy {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(DeviceStrategy::Auto),
            "cpu" => Ok(DeviceStrategy::ForceCpu),
            "gpu" => Ok(DeviceStrategy::ForceGpu),
            "hybrid" => Ok(DeviceStrategy::Hybrid),
            other => Err(DeviceError::UnknownStrategy(other.to_string())),
        }
    }
}

/// A device that runs the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Device {
    /// The CPU kernels.
    Cpu,
    /// The CUDA backend on the device of this ordinal.
    Cuda(usize),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
        }
    }
}

/// The device a strategy resolved to, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceChoice {
    /// The strategy that was asked for.
    pub strategy: DeviceStrategy,
    /// The device that runs the model.
    pub device: Device,
    /// Why this device was chosen.
    pub reason: String,
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, chosen by `{}`: {}",
            self.device, self.strategy, self.reason
        )
    }
}

/// Why a device request cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The strategy needs a GPU and none can be used.
    #[error("device `{strategy}` needs a GPU, but {reason}")]
    NoGpu {
        /// The strategy asked for.
        strategy: DeviceStrategy,
        /// Why no GPU can be used.
        reason: String,
    },
    /// A GPU memory limit of zero bytes.
    #[error("the GPU memory limit must be at least one byte")]
    ZeroGpuMemoryLimit,
    /// A strategy name that [`DeviceStrategy::from_str`] does not know.
    #[error("unknown device `{0}` (expected auto, cpu, gpu or hybrid)")]
    UnknownStrategy(String),
}

/// Resolves `strategy` to a device of this build. `gpu_memory_limit` caps the bytes a GPU backend
/// may allocate; it is checked here and has no effect on the CPU.
pub fn resolve_device(
    strategy: DeviceStrategy,
    gpu_memory_limit: Option<u64>,
) -> Result<DeviceChoice, DeviceError> {
    if gpu_memory_limit == Some(0) {
        return Err(DeviceError::ZeroGpuMemoryLimit);
    }
    let cpu = |reason: String| DeviceChoice {
        strategy,
        device: Device::Cpu,
        reason,
    };
    if strategy == DeviceStrategy::ForceCpu {
        return Ok(cpu("requested".into()));
    }
    match cuda::probe(0) {
        Ok(info) => Ok(DeviceChoice {
            strategy,
            device: Device::Cuda(0),
            reason: info.to_string(),
        }),
        Err(e) if strategy == DeviceStrategy::Auto => Ok(cpu(format!("no usable GPU: {e}"))),
        Err(e) => Err(DeviceError::NoGpu {
            strategy,
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn auto_falls_back_to_the_cpu_and_says_why() {
        let choice = resolve_device(DeviceStrategy::Auto, None).unwrap();
        assert_eq!(choice.device, Device::Cpu);
        assert!(choice.reason.contains("without CUDA"), "{choice}");
        assert_eq!(
            resolve_device(DeviceStrategy::ForceCpu, Some(1 << 30))
                .unwrap()
                .device,
            Device::Cpu
        );
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn gpu_strategies_are_typed_errors_without_a_backend() {
        for strategy in [DeviceStrategy::ForceGpu, DeviceStrategy::Hybrid] {
            let err = resolve_device(strategy, None).unwrap_err();
            assert!(matches!(&err, DeviceError::NoGpu { strategy: s, .. } if *s == strategy));
            assert!(err.to_string().contains("built without CUDA support"));
        }
        assert_eq!(
            resolve_device(DeviceStrategy::Auto, Some(0)),
            Err(DeviceError::ZeroGpuMemoryLimit)
        );
    }

    #[test]
    fn names_round_trip() {
        for strategy in [
            DeviceStrategy::Auto,
            DeviceStrategy::ForceCpu,
            DeviceStrategy::ForceGpu,
            DeviceStrategy::Hybrid,
        ] {
            assert_eq!(strategy.name().parse::<DeviceStrategy>(), Ok(strategy));
        }
        assert_eq!(
            "tpu".parse::<DeviceStrategy>(),
            Err(DeviceError::UnknownStrategy("tpu".into()))
        );
    }
}
