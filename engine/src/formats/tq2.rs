//! TQ2_0: ggml's 2-bit ternary blocks (256 weights, 64 code bytes, fp16 absmax scale).
//!
//! Weight `e` of a block lives in byte `32 · (e / 128) + e % 32`, bits `2 · ((e % 128) / 32)` (low
//! bits first). Code `q = round(x / d) + 1`, weight = `(q − 1) · d`.

use half::f16;

use super::{
    check_packed, check_weights, FormatError, Scales, Shape, TernaryFormat, Unpacked, QK_K,
};

/// Bytes per TQ2_0 block: 64 code bytes and an fp16 scale.
pub const TQ2_0_BLOCK_BYTES: usize = QK_K / 4 + 2;

/// The TQ2_0 format; rows must be a multiple of 256 weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub struct Tq2_0;

/// Byte index and shift of weight `e` (0..256) of a block.
#[inline]
pub(crate) fn tq2_position(e: usize) -> (usize, u32) {
    (32 * (e / 128) + e % 32, 2 * ((e % 128) / 32) as u32)
}

/// Checks a TQ shape and returns its block count.
pub(crate) fn tq_blocks(format: &'static str, shape: Shape) -> Result<usize, FormatError> {
    if !shape.ne0.is_multiple_of(QK_K) {
        return Err(FormatError::RowNotBlockAligned {
            format,
            ne0: shape.ne0,
            block: QK_K,
            shape,
        });
    }
    Ok(shape.elements()? / QK_K)
}

/// ggml's ternary block scale and its reciprocal: `d = max |x|` (a NaN resets the running max, as the
/// reference's `MAX` macro does), `id = 1 / d` or 0 when `d == 0`.
pub(crate) fn tq_block_scale(block: &[f32]) -> (f32, f32) {
    let d = block.iter().fold(0f32, |amax, &v| {
        let a = v.abs();
        if amax > a {
            amax
        } else {
            a
        }
    });
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    (d, id)
}

/// `lroundf(x · id) + 1`: the ternary code 0, 1 or 2 (round half away from zero).
#[inline]
pub(crate) fn tq_code(x: f32, id: f32) -> i32 {
    ((x * id).round() as i32).wrapping_add(1)
}

impl TernaryFormat for Tq2_0 {
    fn name(&self) -> &'static str {
        "tq2_0"
    }

    fn ggml_type_id(&self) -> u32 {
        super::type_id::TQ2_0
    }

    fn byte_size(&self, shape: Shape) -> Result<usize, FormatError> {
        Ok(tq_blocks(self.name(), shape)? * TQ2_0_BLOCK_BYTES)
    }

    /// `quantize_row_tq2_0_ref`: per block `d = max |x|`, code `round(x / d) + 1`.
    fn quantize(&self, weights: &[f32], shape: Shape) -> Result<Vec<u8>, FormatError> {
        let blocks = tq_blocks(self.name(), shape)?;
        check_weights(weights, shape)?;
        let mut packed = vec![0u8; blocks * TQ2_0_BLOCK_BYTES];
        for (x, out) in weights
            .chunks_exact(QK_K)
            .zip(packed.chunks_exact_mut(TQ2_0_BLOCK_BYTES))
        {
            let (d, id) = tq_block_scale(x);
            for (e, &v) in x.iter().enumerate() {
                let (byte, shift) = tq2_position(e);
                out[byte] |= ((tq_code(v, id) & 3) as u8) << shift;
            }
            out[QK_K / 4..].copy_from_slice(&f16::from_f32(d).to_le_bytes());
        }
        Ok(packed)
    }

    fn unpack(&self, packed: &[u8], shape: Shape) -> Result<Unpacked, FormatError> {
        let blocks = tq_blocks(self.name(), shape)?;
        check_packed(self, packed, shape)?;
        let mut codes = vec![0i8; blocks * QK_K];
        let mut scales = Vec::with_capacity(blocks);
        for (out, bytes) in codes
            .chunks_exact_mut(QK_K)
            .zip(packed.chunks_exact(TQ2_0_BLOCK_BYTES))
        {
            for (e, code) in out.iter_mut().enumerate() {
                let (byte, shift) = tq2_position(e);
                *code = ((bytes[byte] >> shift) & 3) as i8 - 1;
            }
            scales.push(f16::from_le_bytes([bytes[QK_K / 4], bytes[QK_K / 4 + 1]]).to_f32());
        }
        Ok(Unpacked {
            codes,
            scales: Scales::PerBlock {
                block: QK_K,
                scales,
            },
        })
    }
}
