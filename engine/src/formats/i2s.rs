//! I2_S: bitnet.cpp's 2-bit ternary format with one f32 scale per tensor (x86 block layout).
//!
//! The flattened tensor is cut into blocks of 128 weights = 32 bytes. Byte `j` of a block holds weight
//! `j` in bits 7:6, `j + 32` in bits 5:4, `j + 64` in bits 3:2 and `j + 96` in bits 1:0. Codes are
//! 0 → −1, 1 → 0, 2 → +1. The f32 scale sits at byte `n / 4`, followed by padding up to `n / 4 + 32`.

use super::{
    check_packed, check_weights, read_f32, FormatError, Scales, Shape, TernaryFormat, Unpacked,
};

/// Weights per I2_S block.
pub const I2S_BLOCK: usize = 128;

/// Bytes after the packed codes: the f32 scale and padding.
const SCALE_TAIL: usize = 32;

/// The I2_S format. Rows must be a multiple of 128 weights: the reference packs whole 128-blocks of the
/// flattened tensor and its dot product reads `ne0 / 128` blocks per row, so anything else loses weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct I2s;

impl I2s {
    fn check_shape(shape: Shape) -> Result<usize, FormatError> {
        if !shape.ne0.is_multiple_of(I2S_BLOCK) {
            return Err(FormatError::RowNotBlockAligned {
                format: "i2_s",
                ne0: shape.ne0,
                block: I2S_BLOCK,
                shape,
            });
        }
        shape.elements()
    }
}

/// The 2-bit code of weight `j` (0..128) inside its block: byte index and shift.
#[inline]
fn position(j: usize) -> (usize, u32) {
    (j % 32, 6 - 2 * (j / 32) as u32)
}

impl TernaryFormat for I2s {
    fn name(&self) -> &'static str {
        "i2_s"
    }

    fn ggml_type_id(&self) -> u32 {
        super::type_id::I2_S
    }

    fn byte_size(&self, shape: Shape) -> Result<usize, FormatError> {
        let n = Self::check_shape(shape)?;
        Ok(n / 4 + SCALE_TAIL)
    }

    /// `quantize_i2_s`: the scale is max |w| (so the input should already be ternarized); a weight with
    /// |w| < 1e-6 becomes 0, any other weight its sign.
    fn quantize(&self, weights: &[f32], shape: Shape) -> Result<Vec<u8>, FormatError> {
        let n = Self::check_shape(shape)?;
        check_weights(weights, shape)?;
        let scale = weights
            .iter()
            .fold(0f64, |max, &w| max.max(f64::from(w).abs()));
        let mut packed = vec![0u8; n / 4 + SCALE_TAIL];
        for (block, out) in weights
            .chunks_exact(I2S_BLOCK)
            .zip(packed.chunks_exact_mut(I2S_BLOCK / 4))
        {
            for (j, &w) in block.iter().enumerate() {
                let w = f64::from(w);
                let code: u8 = if w.abs() < 1e-6 {
                    1
                } else if w * scale > 0.0 {
                    2
                } else {
                    0
                };
                let (byte, shift) = position(j);
                out[byte] |= code << shift;
            }
        }
        packed[n / 4..n / 4 + 4].copy_from_slice(&(scale as f32).to_le_bytes());
        Ok(packed)
    }

    fn unpack(&self, packed: &[u8], shape: Shape) -> Result<Unpacked, FormatError> {
        let n = Self::check_shape(shape)?;
        check_packed(self, packed, shape)?;
        let mut codes = vec![0i8; n];
        for (block, bytes) in codes
            .chunks_exact_mut(I2S_BLOCK)
            .zip(packed.chunks_exact(I2S_BLOCK / 4))
        {
            for (j, code) in block.iter_mut().enumerate() {
                let (byte, shift) = position(j);
                *code = ((bytes[byte] >> shift) & 3) as i8 - 1;
            }
        }
        Ok(Unpacked {
            codes,
            scales: Scales::PerTensor(read_f32(packed, n / 4)),
        })
    }
}

/// A validated view of an I2_S weight matrix for the kernels.
#[derive(Debug, Clone, Copy)]
pub struct I2sMatrix<'a> {
    packed: &'a [u8],
    shape: Shape,
    scale: f32,
}

impl<'a> I2sMatrix<'a> {
    /// Wraps packed I2_S bytes of the given shape.
    pub fn new(packed: &'a [u8], shape: Shape) -> Result<Self, FormatError> {
        let n = I2s::check_shape(shape)?;
        check_packed(&I2s, packed, shape)?;
        Ok(I2sMatrix {
            packed,
            shape,
            scale: read_f32(packed, n / 4),
        })
    }

    /// The shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The per-tensor weight scale.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// The packed codes of row `row` (`ne0 / 4` bytes).
    pub fn row(&self, row: usize) -> &'a [u8] {
        let width = self.shape.ne0 / 4;
        &self.packed[row * width..(row + 1) * width]
    }

    /// The packed codes of all rows (without the scale tail).
    pub fn codes(&self) -> &'a [u8] {
        &self.packed[..self.shape.ne0 * self.shape.ne1 / 4]
    }
}
