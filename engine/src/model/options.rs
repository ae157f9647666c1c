//! How a model is run.

use super::{DeviceStrategy, Tl1Tilings, Tl2Tilings};
use crate::formats::FpContract;
use crate::gguf::Residency;
use crate::kernels::{Isa, Numerics, ReduceWidth};

/// Run-time choices of a loaded model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelOptions {
    /// Threads of the matrix products (0 or 1: the calling thread).
    pub threads: usize,
    /// The CPU kernels' instruction set (`None`: the fastest this CPU has); one the CPU lacks
    /// is refused at load time.
    pub isa: Option<Isa>,
    /// How the model file's bytes are held: resident on huge pages by default, which decodes
    /// faster (`bitnet bench` measures it); mapped keeps them evictable page cache instead.
    pub residency: Residency,
    /// Store the KV cache as f16 (the reference default) instead of f32.
    pub kv_f16: bool,
    /// Numerics of the kernels and of activation quantization.
    pub numerics: Numerics,
    /// Which device runs the model.
    pub device: DeviceStrategy,
    /// The most bytes a GPU backend may allocate (`None`: no limit); unused on the CPU.
    pub gpu_memory_limit: Option<u64>,
    /// On a GPU, a decode step that attends at least this many cache cells splits attention
    /// across the context (flash-decoding) instead of one block per head; both give the same
    /// bits. `0`: always split; `usize::MAX`: never.
    pub gpu_split_attention_from: usize,
    /// TL1 tilings by weight shape (from a `kernel_config.ini`); they take precedence over the
    /// tilings a file records in its `bitnet.tl1.tiling.*` metadata.
    pub tl1_tilings: Tl1Tilings,
    /// TL2 tilings by weight shape (from a `kernel_config.ini`); they take precedence over the
    /// tilings a file records in its `bitnet.tl2.tiling.*` metadata.
    pub tl2_tilings: Tl2Tilings,
}

/// The default [`ModelOptions::gpu_split_attention_from`]: every decode step splits, which
/// `bitnet bench --decode-depth 8,4000` measured faster at both depths on an H200.
pub const SPLIT_ATTENTION_FROM: usize = 0;

impl Default for ModelOptions {
    /// One thread on the fastest kernels, the file resident on huge pages, F16 KV cache, automatic device choice, no TL1 or TL2 tilings beyond the file's, and the numerics of a GCC `-O3 -march=native` reference build on
    /// this CPU, which contracts `x·s + magic` into an FMA where the CPU has one.
    fn default() -> Self {
        ModelOptions {
            threads: 1,
            isa: None,
            residency: Residency::HugePages,
            kv_f16: true,
            numerics: Numerics {
                contract: native_gcc_contract(),
                width: ReduceWidth::native(),
            },
            device: DeviceStrategy::Auto,
            gpu_memory_limit: None,
            gpu_split_attention_from: SPLIT_ATTENTION_FROM,
            tl1_tilings: Tl1Tilings::default(),
            tl2_tilings: Tl2Tilings::default(),
        }
    }
}

/// The contraction a GCC build for this CPU performs.
fn native_gcc_contract() -> FpContract {
    if cfg!(target_arch = "aarch64") {
        return FpContract::Fused;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        return FpContract::Fused;
    }
    FpContract::Off
}
