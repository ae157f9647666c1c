//! TQ1_0: ggml's base-3 ternary blocks (256 weights in 48 + 4 bytes, fp16 absmax scale).
//!
//! Five codes share a byte as a base-3 number stored as `ceil(q · 256 / 243)`, most significant trit
//! first; trit `n` of byte `b` is `((b · 3ⁿ mod 256) · 3) >> 8`. Byte `m` of `qs[0..32]` holds weights
//! `m + 32n`, byte `m` of `qs[32..48]` weights `160 + m + 16n` (n = 0..5), and `qh[j]` four trits for
//! weights `240 + j + 4n` (n = 0..4) in its top positions.

use half::f16;

use super::tq2::{tq_block_scale, tq_blocks, tq_code};
use super::{
    check_packed, check_weights, FormatError, Scales, Shape, TernaryFormat, Unpacked, QK_K,
};

/// Bytes per TQ1_0 block: 48 + 4 code bytes and an fp16 scale.
pub const TQ1_0_BLOCK_BYTES: usize = 48 + 4 + 2;

/// The TQ1_0 format; rows must be a multiple of 256 weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub struct Tq1_0;

const POW3: [u8; 5] = [1, 3, 9, 27, 81];

/// Trit `n` (0 = most significant) of a packed byte: 0, 1 or 2.
#[inline]
pub(crate) fn trit(byte: u8, n: usize) -> u8 {
    let shifted = byte.wrapping_mul(POW3[n]);
    ((u16::from(shifted) * 3) >> 8) as u8
}

/// The weight (0..256) held by trit `n` of block byte `byte` (0..52).
#[inline]
pub(crate) fn tq1_element(byte: usize, n: usize) -> usize {
    match byte {
        0..32 => byte + 32 * n,
        32..48 => 160 + (byte - 32) + 16 * n,
        _ => 240 + (byte - 48) + 4 * n,
    }
}

/// Trits per byte: five in `qs`, four in `qh`.
#[inline]
pub(crate) fn trits_in(byte: usize) -> usize {
    if byte < 48 {
        5
    } else {
        4
    }
}

/// Packs base-3 digits (most significant first) the way the reference does.
fn pack_trits(codes: impl Iterator<Item = i32>, pad_to_five: bool) -> u8 {
    let mut q = codes.fold(0u8, |q, xi| q.wrapping_mul(3).wrapping_add(xi as u8));
    if pad_to_five {
        q = q.wrapping_mul(3);
    }
    (u16::from(q) * 256).div_ceil(243) as u8
}

impl TernaryFormat for Tq1_0 {
    fn name(&self) -> &'static str {
        "tq1_0"
    }

    fn ggml_type_id(&self) -> u32 {
        super::type_id::TQ1_0
    }

    fn byte_size(&self, shape: Shape) -> Result<usize, FormatError> {
        Ok(tq_blocks(self.name(), shape)? * TQ1_0_BLOCK_BYTES)
    }

    /// `quantize_row_tq1_0_ref`: per block `d = max |x|`, code `round(x / d) + 1`.
    fn quantize(&self, weights: &[f32], shape: Shape) -> Result<Vec<u8>, FormatError> {
        let blocks = tq_blocks(self.name(), shape)?;
        check_weights(weights, shape)?;
        let mut packed = vec![0u8; blocks * TQ1_0_BLOCK_BYTES];
        for (x, out) in weights
            .chunks_exact(QK_K)
            .zip(packed.chunks_exact_mut(TQ1_0_BLOCK_BYTES))
        {
            let (d, id) = tq_block_scale(x);
            for (byte, slot) in out[..52].iter_mut().enumerate() {
                let trits = trits_in(byte);
                let codes = (0..trits).map(|n| tq_code(x[tq1_element(byte, n)], id));
                *slot = pack_trits(codes, trits == 4);
            }
            out[52..].copy_from_slice(&f16::from_f32(d).to_le_bytes());
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
            .zip(packed.chunks_exact(TQ1_0_BLOCK_BYTES))
        {
            for (byte, &b) in bytes[..52].iter().enumerate() {
                for n in 0..trits_in(byte) {
                    out[tq1_element(byte, n)] = trit(b, n) as i8 - 1;
                }
            }
            scales.push(f16::from_le_bytes([bytes[52], bytes[53]]).to_f32());
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
