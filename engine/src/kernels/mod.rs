//! CPU kernels: ternary × int8 and dense f16/f32 matrix products that reproduce bitnet.cpp.
//!
//! Each dot product has a scalar reference in [`scalar`] (`*_ref`) and SIMD versions for AVX2
//! (with AVX-VNNI's I2_S cores where present), AVX-512 (with VNNI where present) and NEON, chosen
//! at run time ([`Isa`]); every version returns
//! the same bits as its reference. [`CpuKernels`] runs them over output rows on a [`Team`] of threads and
//! applies the reference's epilogues.
//!
//! # I2_S accumulation: exact i32, not the reference's i16
//!
//! bitnet.cpp's AVX2 `ggml_vec_dot_i2_i8_s` adds `vpmaddubsw` products of 32 consecutive blocks
//! (4096 weights) in 16-bit lanes before widening, so a lane whose partial sum leaves
//! [−32768, 32767] wraps. Each lane sums 256 products `code · q` (`code` ∈ {0, 1, 2}), so wrapping
//! needs activations that are large and of one sign against mostly +1 weights over a whole group,
//! which normalized activations of a trained model do not produce. These kernels widen to i32 every
//! eight blocks (never overflowing) and so return the mathematically exact sum: on every input where
//! the reference does not wrap the results are bit-identical, and where it wraps the engine is right
//! and the reference is not. A conformance case built to wrap should be recorded as a known
//! reference defect rather than reproduced. `tests/kernels_i2s_accumulation.rs` builds such an input.
//!
//! # TL2: the reference's i16 tile sums, reproduced
//!
//! bitnet.cpp's generated TL2 kernels look each group of three weights up in a per-token table of
//! i16 sums and add them in i16 lanes over one K tile (`BK` columns, or 32 of the two-weight part)
//! before widening. A tile wraps only when `BK / 3 · 381` exceeds 32767 (`BK` ≥ 258); the kernels
//! here wrap exactly as the reference does, so every tiling gives the reference's bits
//! (`tests/kernels_lut.rs` builds a wrapping tile). The tables themselves follow the reference's
//! activation rounding, including its unfloored `127 / max |x|`.
//!
//! # TL1: the same, for pairs
//!
//! bitnet.cpp's generated TL1 kernels (ARM) look each pair of weights up in a per-token table of
//! i16 sums `a·q₀ + b·q₁` and add a K tile (`BK` columns, `BK / 2` pairs of at most 254) in i16
//! lanes, so a tile wraps only when `BK ≥ 260`; the kernels here wrap alike
//! (`tests/kernels_lut.rs`). Activations round as NEON's `vcvtnq_s32_f32` does, with the same
//! unfloored `127 / max |x|`. Where the reference leaves table entries 9..=15 unset (no valid
//! weight indexes them) the tables here hold zeros.
//!
//! # Float evaluation order
//!
//! Float results follow the reference's x86 code paths: TQ dot products keep eight lanes per block
//! and `hsum_float_8`; f16/f32 products follow `ggml_vec_dot_f16`/`_f32` for one token and
//! llamafile's tinyBLAS for two or more tokens, with the lane count of the reference build
//! ([`ReduceWidth`]) and its multiply-add contraction ([`FpContract`](crate::formats::FpContract)),
//! both carried by [`Numerics`].
//!
//! # Q8_0 and Q6_K embeddings and output heads
//!
//! Token embeddings and output heads stored as Q8_0 or Q6_K multiply through [`block_dots`]:
//! scalar kernels that follow the reference's AVX2 `ggml_vec_dot_q8_0_q8_0` (activations quantized
//! to Q8_0; llamafile's tinyBLAS, which takes Q8_0 for two or more tokens, gives the same bits) and
//! `ggml_vec_dot_q6_K_q8_K` (activations quantized to Q8_K, every token count). They have no SIMD
//! versions: each ISA runs the scalar code, so every ISA returns the same bits.

pub mod block_dots;
mod cpu;
mod dense;
mod error;
mod isa;
#[cfg(target_arch = "aarch64")]
mod neon;
mod reduce;
pub(crate) mod rows;
pub mod scalar;
mod simd_versions;
mod stream;
mod table;
mod team;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use cpu::{i2s_epilogue, CpuKernels, Numerics};
pub use dense::{round_to_f16, DenseMatrix};
pub use error::KernelError;
pub use isa::Isa;
pub use reduce::ReduceWidth;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) use rows::i2s_rows_kernel;
#[cfg(target_arch = "x86_64")]
pub(crate) use rows::i2s_rows_x4_in_pairs;
#[cfg(target_arch = "x86_64")]
pub(crate) use simd_versions::has_avx512;
pub(crate) use simd_versions::with_simd;
pub use stream::StreamPrefetch;
pub use table::{DotKernels, I2sQuadKernels, I2sRows, I2sRowsX4, SCALAR_QUADS};
pub use team::Team;

/// Asks the CPU to bring the cache line holding `value` into all its caches, for data about to
/// be read (the weight rows a product streams take [`StreamPrefetch`]); a hint only, and nothing
/// where the CPU has no such instruction.
#[inline]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE, which the prefetch is compiled for, is part of every x86-64 CPU; a prefetch
    // never faults.
    unsafe {
        x86::prefetch_line(std::ptr::from_ref(value));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// [`prefetch`] of every cache line that `values` covers.
pub fn prefetch_all<T>(values: &[T]) {
    let step = (64 / size_of::<T>().max(1)).max(1);
    values.iter().step_by(step).for_each(prefetch);
    if let Some(last) = values.last() {
        prefetch(last);
    }
}
