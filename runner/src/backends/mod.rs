//! Adapters that let the harness drive the engine, the C++ reference and fixed expectations
//! through the conformance [`Backend`] trait, and the detection of which of them this run has.

mod cpp;
mod engine;
mod expected;

use std::collections::BTreeMap;
use std::sync::Arc;

use bitnet_conformance::backend::Backend;
use bitnet_conformance::case::{BackendId, Capability, QuantFormat, Tiling};
use bitnet_conformance::trial::{Availability, Environment};
use bitnet_engine::formats::{FpContract, Tl1Tiling, Tl2Tiling};
use bitnet_engine::gguf::GgmlType;
use bitnet_engine::kernels::{Isa, Numerics, ReduceWidth};
use bitnet_ffi_cpp::ReferenceInfo;

pub use cpp::CppBackend;
pub use engine::EngineBackend;
pub use expected::ExpectedBackend;

/// Bytes of a packed tensor that both sides must agree on.
///
/// Policy for I2_S: a tensor is its `n / 4` code bytes, its f32 scale, then 28 padding bytes
/// that the reference's quantizer leaves uninitialised. Only the first `n / 4 + 4` bytes carry
/// information, so only those are compared; every other format is compared whole.
pub fn compared_packed_len(format: QuantFormat, elements: usize, packed_len: usize) -> usize {
    match format {
        QuantFormat::I2S => (elements / 4 + 4).min(packed_len),
        _ => packed_len,
    }
}

/// `types` refused for the same reason, as `Capabilities::refused_types` lists them.
pub fn refused(types: &[GgmlType], why: &str) -> BTreeMap<String, String> {
    types
        .iter()
        .map(|ty| (ty.to_string(), why.to_string()))
        .collect()
}

/// The engine's TL1 tiling for a case's `tiling` (`None` without `bmm`, which case parsing
/// requires of TL1).
pub fn tl1_tiling(tiling: Tiling) -> Option<Tl1Tiling> {
    tiling
        .bmm
        .map(|bmm| Tl1Tiling::new(tiling.bm, tiling.bk, bmm))
}

/// The engine's TL2 tiling for a case's `tiling`.
pub fn tl2_tiling(tiling: Tiling) -> Tl2Tiling {
    Tl2Tiling {
        tile_rows: tiling.bm,
        tile_cols: tiling.bk,
    }
}

/// The numerics the reference was compiled with, so the engine rounds activations the same way.
///
/// GCC in GNU mode contracts `x * s + magic` into an FMA on an FMA-capable target; clang, ISO C
/// mode and `-ffp-contract=off` do not.
pub fn reference_numerics(info: &ReferenceInfo) -> Numerics {
    let flags = info.c_flags;
    let gcc = !info.compiler.contains("clang");
    let iso = flags.split_whitespace().any(|f| f.starts_with("-std=c"));
    let no_contract = flags.contains("-ffp-contract=off");
    let fma = info.isa.to_ascii_lowercase().contains("fma");
    let contract = if gcc && !iso && !no_contract && fma {
        FpContract::Fused
    } else {
        FpContract::Off
    };
    // The lanes of the build, not of the CPU running it: a reference built for AVX2 reduces in
    // 8 lanes even on an AVX-512 machine.
    let width = if info.isa.to_ascii_lowercase().contains("avx512f") {
        ReduceWidth::Lanes16
    } else {
        ReduceWidth::Lanes8
    };
    Numerics { contract, width }
}

/// The capabilities an ISA provides towards cases' `needs`.
pub fn isa_capabilities(isa: Isa) -> Vec<Capability> {
    match isa {
        Isa::Scalar => Vec::new(),
        Isa::Avx2 | Isa::AvxVnni => vec![Capability::Avx2],
        Isa::Avx512 | Isa::Avx512Vnni => vec![Capability::Avx2, Capability::Avx512],
        Isa::Neon => vec![Capability::Neon],
    }
}

/// A backend ready to run, or why it is not.
type Detected = Result<Arc<dyn Backend>, String>;

/// The backends of this run, by id, with the environment trials are expanded against.
pub struct Backends {
    /// Backends ready to run.
    pub ready: BTreeMap<BackendId, Arc<dyn Backend>>,
    /// What the run offers, including why unavailable backends are unavailable.
    pub environment: Environment,
}

impl Backends {
    /// Detects every backend on this host: the engine at its best ISA, scalar and best SIMD
    /// ISA, and the C++ reference if it initialises.
    pub fn detect() -> Backends {
        let numerics = reference_numerics(&bitnet_ffi_cpp::reference_info());
        let mut results: Vec<(BackendId, Detected)> = vec![
            (
                BackendId::EngineCpu,
                engine_backend(BackendId::EngineCpu, Isa::best(), numerics),
            ),
            (
                BackendId::EngineScalar,
                engine_backend(BackendId::EngineScalar, Isa::Scalar, numerics),
            ),
        ];
        let simd = match Isa::best() {
            Isa::Scalar => {
                Err("this CPU has no SIMD instruction set the engine supports".to_string())
            }
            isa => engine_backend(BackendId::EngineSimd, isa, numerics),
        };
        results.push((BackendId::EngineSimd, simd));
        let cuda = EngineBackend::cuda(numerics)
            .map(|b| Arc::new(b) as Arc<dyn Backend>)
            .map_err(|e| format!("no CUDA device for the engine: {e}"));
        results.push((BackendId::EngineCuda, cuda));
        let cpp = CppBackend::init()
            .map(|b| Arc::new(b) as Arc<dyn Backend>)
            .map_err(|e| format!("the C++ reference failed to initialise: {e}"));
        results.push((BackendId::Cpp, cpp));

        let mut environment = Environment::default();
        environment
            .granted
            .extend(Isa::supported().into_iter().flat_map(isa_capabilities));
        let mut ready = BTreeMap::new();
        for (id, result) in results {
            let availability = match result {
                Ok(backend) => {
                    let caps = backend.capabilities().clone();
                    ready.insert(id, backend);
                    Availability::Available(caps)
                }
                Err(why) => Availability::Unavailable(why),
            };
            environment.backends.insert(id, availability);
        }
        Backends { ready, environment }
    }
}

fn engine_backend(id: BackendId, isa: Isa, numerics: Numerics) -> Detected {
    EngineBackend::new(id, isa, numerics)
        .map(|b| Arc::new(b) as Arc<dyn Backend>)
        .map_err(|e| format!("{isa} kernels are unavailable: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i2s_compares_codes_and_scale_only() {
        assert_eq!(compared_packed_len(QuantFormat::I2S, 512, 160), 132);
        assert_eq!(compared_packed_len(QuantFormat::Tq2_0, 512, 132), 132);
    }
}
