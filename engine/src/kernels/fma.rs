//! FMA code generation for the float loops outside the matrix kernels.
//!
//! `f32::mul_add` is always one rounding, but without the FMA target feature it compiles to a
//! call into libm. [`with_fma`] compiles a function body twice, once with FMA enabled, and picks
//! that copy at run time where the CPU has FMA: the same bits, without a call per value.

/// Defines a function whose body also runs compiled with FMA on x86-64 CPUs that have it.
macro_rules! with_fma {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "fma")]
                unsafe fn fused($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: this CPU has FMA, the one feature `fused` is compiled for.
                    return unsafe { fused($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

pub(crate) use with_fma;
