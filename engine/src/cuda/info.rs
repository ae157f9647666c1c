//! What a CUDA device is.

/// A CUDA device's name, compute capability and memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    /// The device ordinal.
    pub ordinal: usize,
    /// The device's name.
    pub name: String,
    /// Compute capability (major, minor).
    pub compute_capability: (i32, i32),
    /// Bytes of device memory.
    pub total_memory: u64,
    /// Bytes free when probed.
    pub free_memory: u64,
}

impl std::fmt::Display for GpuInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        write!(
            f,
            "CUDA device {} ({}, compute {}.{}, {:.1} of {:.1} GiB free)",
            self.ordinal,
            self.name,
            self.compute_capability.0,
            self.compute_capability.1,
            gib(self.free_memory),
            gib(self.total_memory)
        )
    }
}
