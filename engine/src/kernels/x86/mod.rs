//! x86-64 kernels, selected at run time by CPU feature detection.

pub(crate) mod avx2;
pub(crate) mod avx512;
