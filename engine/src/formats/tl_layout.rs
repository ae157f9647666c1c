//! Pieces shared by the TL1 and TL2 layouts of bitnet.cpp's LUT kernels.

/// The ternary code the TL converters assign: 0 when |w| < 1e-6 (compared in f32, as NumPy does on
/// f32 arrays), otherwise the sign of `w`. NaN maps to 0.
#[inline]
pub(crate) fn tl_code(w: f32) -> i8 {
    if w.abs() < 1e-6 || w.is_nan() {
        0
    } else if w > 0.0 {
        1
    } else {
        -1
    }
}

/// The per-tensor scale of the TL converters: max |w| in f32 (NaN ignored).
pub(crate) fn tl_scale(weights: &[f32]) -> f32 {
    weights.iter().fold(0f32, |max, &w| max.max(w.abs()))
}

/// The byte a row lands on inside a 32-byte SIMD row block: the converters swap the second and third
/// groups of eight rows.
#[inline]
pub(crate) fn swapped_row(r: usize) -> usize {
    match r / 8 {
        1 => r + 8,
        2 => r - 8,
        _ => r,
    }
}

/// The 4-bit index of a pair: `3a + b + 4`, 0..=8.
#[inline]
pub(crate) fn pair_index(a: i8, b: i8) -> u8 {
    (3 * a + b + 4) as u8
}

/// Splits a pair index back into its codes, or `None` for 9..=15.
#[inline]
pub(crate) fn split_pair(index: u8) -> Option<(i8, i8)> {
    (index <= 8).then(|| ((index / 3) as i8 - 1, (index % 3) as i8 - 1))
}

/// Writes a nibble: the high one when `high`.
#[inline]
pub(crate) fn put_nibble(byte: &mut u8, value: u8, high: bool) {
    if high {
        *byte |= value << 4;
    } else {
        *byte |= value & 0x0f;
    }
}

/// Reads a nibble: the high one when `high`.
#[inline]
pub(crate) fn get_nibble(byte: u8, high: bool) -> u8 {
    if high {
        byte >> 4
    } else {
        byte & 0x0f
    }
}
