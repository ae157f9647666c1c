//! ggml's float-to-int rounding and the multiply-add contraction switch.

/// Whether `a * b + c` in the reference's C is evaluated as two roundings or one fused multiply-add.
///
/// The same C source gives either result depending on how it was compiled: GCC in its default GNU mode
/// (`-std=gnu11`, what llama.cpp's CMake selects) contracts a multiply feeding an add into an FMA, even
/// across an inlined helper; ISO mode (`-std=c11`), `-ffp-contract=off` and clang's default do not.
/// Every place where that changes a result takes this switch: I8_S and Q8_K activation rounding
/// (`nearest_int(x * s)`) and the TQ dot-product epilogue (`acc + lane · d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FpContract {
    /// Round the product, then the sum (ISO C, clang, `-ffp-contract=off`).
    #[default]
    Off,
    /// One rounding for `a * b + c` (GCC's default `-ffp-contract=fast` on an FMA machine).
    Fused,
}

impl FpContract {
    /// `a * b + c` under this contraction mode.
    #[inline(always)]
    pub fn mul_add(self, a: f32, b: f32, c: f32) -> f32 {
        match self {
            FpContract::Off => a * b + c,
            FpContract::Fused => a.mul_add(b, c),
        }
    }

    /// ggml's `nearest_int(a * b)` under this contraction mode.
    #[inline(always)]
    pub fn nearest_int_of_product(self, a: f32, b: f32) -> i32 {
        from_magic_sum(self.mul_add(a, b, ROUND_MAGIC))
    }
}

/// 1.5 · 2²³: adding it leaves the rounded integer in the low mantissa bits.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// ggml's `nearest_int`: rounds to nearest, ties to even, by adding 1.5 · 2²³ and reading the mantissa.
///
/// Exact for |x| ≤ 2²² − 1; outside that range (and for NaN or infinities) it returns the same bits
/// the reference computes, which are not a rounding of `x`.
#[inline]
pub fn nearest_int(x: f32) -> i32 {
    from_magic_sum(x + ROUND_MAGIC)
}

#[inline(always)]
fn from_magic_sum(sum: f32) -> i32 {
    (sum.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(-3.5), -4);
        assert_eq!(nearest_int(126.7), 127);
        assert_eq!(nearest_int(-127.49), -127);
    }

    #[test]
    fn nearest_int_of_nan_is_zero_as_in_the_reference() {
        assert_eq!(nearest_int(f32::NAN), 0);
    }

    #[test]
    fn fused_product_rounds_once() {
        // 2.5 + 2⁻²² rounds to 2.5 as an f32 product, then to 2; fused, the exact product rounds to 3.
        let a = 2.5f32 + f32::EPSILON * 2.0;
        let b = 1.0 - f32::EPSILON / 2.0;
        assert_eq!(FpContract::Off.nearest_int_of_product(a, b), 2);
        assert_eq!(FpContract::Fused.nearest_int_of_product(a, b), 3);
    }
}
