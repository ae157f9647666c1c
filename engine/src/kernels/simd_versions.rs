//! Wide-vector code generation for the float loops outside the matrix kernels.
//!
//! The crate is compiled for baseline x86-64 (SSE2), where `f32::mul_add` is a call into libm
//! and the loops vectorize four lanes wide. [`with_simd`] compiles a function body three times:
//! for AVX-512, for AVX2 with FMA and for the baseline, and runs the widest copy the CPU has.
//! Every copy computes the same bits: the compiler only vectorizes what it may without changing
//! a result (no reassociation, no contraction), and `mul_add` is one rounding in all of them.

/// Defines a function whose body also runs compiled for AVX-512 or AVX2 with FMA on x86-64 CPUs
/// that have them.
macro_rules! with_simd {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if $crate::kernels::has_avx512() {
                    // SAFETY: this CPU has every feature `avx512` is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: this CPU has AVX2 and FMA, the features `avx2` is compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

pub(crate) use with_simd;

/// Whether this CPU has the AVX-512 subsets (F, BW, DQ, VL) that [`with_simd`] compiles for.
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
}
