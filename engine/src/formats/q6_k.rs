//! Q6_K: ggml's 6-bit super-blocks of 256 values (210 bytes): `ql[128]` (low four bits), `qh[64]`
//! (high two bits), sixteen int8 scales (one per 16 values), then the f16 super-block scale `d`.
//!
//! Value `e` lives in half `h = e / 128`; with `r = e % 128`, `k = r / 32` and `l = r % 32`, its low
//! bits are the low nibble (`k < 2`) or the high nibble (`k ≥ 2`) of `ql[64h + 32(k % 2) + l]` and its
//! high bits are bits `2k, 2k + 1` of `qh[32h + l]`. The six bits `q` give the code `q − 32`, and the
//! value is `(d · scales[e / 16]) · (q − 32)`, the product evaluated in that order.

use half::f16;

use super::block_rows::{block_bytes, block_matrix, BlockGeometry, BlockRows};
use super::{FormatError, Shape, QK_K};

/// Bytes per Q6_K super-block.
pub const Q6_K_BLOCK_BYTES: usize = QK_K / 2 + QK_K / 4 + QK_K / 16 + 2;

/// Offset of `qh` in a block.
const QH: usize = QK_K / 2;
/// Offset of the scales in a block.
const SCALES: usize = QH + QK_K / 4;
/// Offset of `d` in a block.
const D: usize = SCALES + QK_K / 16;

const GEOMETRY: BlockGeometry = BlockGeometry {
    name: "q6_K",
    values: QK_K,
    bytes: Q6_K_BLOCK_BYTES,
};

/// The code (`q − 32`, in −32..=31) of value `e` (0..256) of a Q6_K block.
///
/// # Panics
/// If `block` is shorter than [`Q6_K_BLOCK_BYTES`] or `e ≥ 256`.
#[inline]
pub fn q6k_code(block: &[u8], e: usize) -> i8 {
    let (half, r) = (e / 128, e % 128);
    let (k, l) = (r / 32, r % 32);
    let low = block[64 * half + 32 * (k % 2) + l];
    let nibble = if k < 2 { low & 0x0f } else { low >> 4 };
    let high = (block[QH + 32 * half + l] >> (2 * k)) & 3;
    (nibble | high << 4) as i8 - 32
}

/// The int8 scale of value `e` (0..256) of a Q6_K block.
///
/// # Panics
/// If `block` is shorter than [`Q6_K_BLOCK_BYTES`] or `e ≥ 256`.
#[inline]
pub fn q6k_scale(block: &[u8], e: usize) -> i8 {
    block[SCALES + e / 16] as i8
}

/// The super-block scale `d` of a Q6_K block.
///
/// # Panics
/// If `block` is shorter than [`Q6_K_BLOCK_BYTES`].
#[inline]
pub fn q6k_d(block: &[u8]) -> f16 {
    f16::from_le_bytes([block[D], block[D + 1]])
}

/// Dequantizes whole Q6_K blocks as `dequantize_row_q6_K` does: `(d · scale) · code`.
fn dequantize_blocks(blocks: &[u8]) -> Vec<f32> {
    let mut values = Vec::with_capacity(blocks.len() / Q6_K_BLOCK_BYTES * QK_K);
    for block in blocks.chunks_exact(Q6_K_BLOCK_BYTES) {
        let d = q6k_d(block).to_f32();
        values.extend(
            (0..QK_K).map(|e| d * f32::from(q6k_scale(block, e)) * f32::from(q6k_code(block, e))),
        );
    }
    values
}

/// The Q6_K weight format; rows must be a multiple of 256 values. Quantization is left to the
/// reference (`quantize_row_q6_K_ref`); the engine reads and multiplies what it writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub struct Q6_K;

impl Q6_K {
    /// Bytes a tensor of this shape occupies.
    pub fn byte_size(&self, shape: Shape) -> Result<usize, FormatError> {
        block_bytes(GEOMETRY, shape)
    }

    /// Dequantizes packed bytes into row-major f32 values (`dequantize_row_q6_K`).
    pub fn dequantize(&self, packed: &[u8], shape: Shape) -> Result<Vec<f32>, FormatError> {
        BlockRows::new(GEOMETRY, packed, shape)?;
        Ok(dequantize_blocks(packed))
    }
}

block_matrix! {
    /// Packed Q6_K weights of a known shape (`ne0` a multiple of 256).
    Q6KMatrix, GEOMETRY, dequantize_blocks
}
