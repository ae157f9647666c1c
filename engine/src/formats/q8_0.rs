//! Q8_0: ggml's 8-bit blocks of 32 values, stored as an f16 scale `d` then 32 int8 codes
//! (34 bytes); value `j` of a block is `qs[j] · d`.
//!
//! ggml quantizes to Q8_0 in two ways, and both are reproduced here:
//! - weights written to a file (`quantize_row_q8_0_ref`): `d = amax / 127`, codes
//!   `roundf(x · (1 / d))`, rounding halves away from zero ([`BlockQ8_0::quantize`]);
//! - activations of a matrix product on x86 (the AVX2 `quantize_row_q8_0`): the same `d`, but codes
//!   `x · (127 / amax)` rounded half to even and saturated to int8
//!   ([`BlockQ8_0::quantize_activations`]).

use half::f16;

use super::block_rows::{block_bytes, block_matrix, BlockGeometry};
use super::{check_weights, FormatError, Shape};

/// Values per Q8_0 block (ggml's `QK8_0`).
pub const QK8_0: usize = 32;

/// Bytes per Q8_0 block: the f16 scale and 32 codes.
pub const Q8_0_BLOCK_BYTES: usize = 2 + QK8_0;

const GEOMETRY: BlockGeometry = BlockGeometry {
    name: "q8_0",
    values: QK8_0,
    bytes: Q8_0_BLOCK_BYTES,
};

/// One Q8_0 block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8_0 {
    /// The scale: value `j` is `qs[j] · d`.
    pub d: f16,
    /// The codes.
    pub qs: [i8; QK8_0],
}

impl BlockQ8_0 {
    /// Reads a block from its 34 stored bytes.
    pub fn from_bytes(bytes: &[u8; Q8_0_BLOCK_BYTES]) -> Self {
        BlockQ8_0 {
            d: f16::from_le_bytes([bytes[0], bytes[1]]),
            qs: std::array::from_fn(|j| bytes[2 + j] as i8),
        }
    }

    /// The 34 bytes ggml stores for this block.
    pub fn to_bytes(&self) -> [u8; Q8_0_BLOCK_BYTES] {
        let mut bytes = [0u8; Q8_0_BLOCK_BYTES];
        bytes[..2].copy_from_slice(&self.d.to_le_bytes());
        for (b, &q) in bytes[2..].iter_mut().zip(&self.qs) {
            *b = q as u8;
        }
        bytes
    }

    /// Quantizes 32 weights as ggml's file quantizer (`quantize_row_q8_0_ref`) does:
    /// `d = amax / 127` (a NaN replaces the running maximum, as ggml's `MAX` macro lets it),
    /// `q = roundf(x · id)` with `id = 1 / d`, or 0 when `d` is zero.
    pub fn quantize(x: &[f32; QK8_0]) -> Self {
        let amax = x
            .iter()
            .fold(0f32, |amax, &v| if amax > v.abs() { amax } else { v.abs() });
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        BlockQ8_0 {
            d: f16::from_f32(d),
            qs: x.map(|v| (v * id).round() as i8),
        }
    }

    /// Quantizes 32 activations as ggml's x86 `quantize_row_q8_0` does before a Q8_0 product:
    /// `amax` by the AVX max tree (`maxps` keeps its second operand unless the first is larger),
    /// `d = amax / 127`, `q = saturate_i8(round_half_even(x · (127 / amax)))`, 0 for all codes
    /// when `amax` is zero; a NaN product converts to −128 as `cvtps2dq` + `packs` make it.
    pub fn quantize_activations(x: &[f32; QK8_0]) -> Self {
        let amax = avx_abs_max(x);
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        BlockQ8_0 {
            d: f16::from_f32(amax / 127.0),
            qs: x.map(|v| saturate_to_i8((v * id).round_ties_even())),
        }
    }

    /// The block's values: `qs[j] · d`.
    pub fn dequantize(&self) -> [f32; QK8_0] {
        let d = self.d.to_f32();
        self.qs.map(|q| f32::from(q) * d)
    }
}

/// `_mm_max_ps(a, b)`: `a` when it is larger, otherwise `b` (also when either is NaN).
#[inline]
fn max_ps(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// The maximum of `|x|` over 32 values, reduced in the order of ggml's AVX `quantize_row_q8_0`:
/// eight lanes across four vectors, then the halves, then pairs.
fn avx_abs_max(x: &[f32; QK8_0]) -> f32 {
    let mut lanes: [f32; 8] = std::array::from_fn(|l| x[l].abs());
    for vector in x[8..].chunks_exact(8) {
        for (lane, v) in lanes.iter_mut().zip(vector) {
            *lane = max_ps(*lane, v.abs());
        }
    }
    let quad: [f32; 4] = std::array::from_fn(|i| max_ps(lanes[4 + i], lanes[i]));
    max_ps(max_ps(quad[0], quad[2]), max_ps(quad[1], quad[3]))
}

/// `cvtps2dq` of an already rounded value (NaN and out-of-range values give `i32::MIN`), then the
/// signed saturation of `packssdw` and `packsswb`.
#[inline]
fn saturate_to_i8(rounded: f32) -> i8 {
    const LIMIT: f32 = 2_147_483_648.0;
    let int = if rounded.is_nan() || !(-LIMIT..LIMIT).contains(&rounded) {
        i32::MIN
    } else {
        rounded as i32
    };
    int.clamp(i32::from(i8::MIN), i32::from(i8::MAX)) as i8
}

/// The Q8_0 weight format; rows must be a multiple of 32 values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub struct Q8_0;

impl Q8_0 {
    /// Bytes a tensor of this shape occupies.
    pub fn byte_size(&self, shape: Shape) -> Result<usize, FormatError> {
        block_bytes(GEOMETRY, shape)
    }

    /// Quantizes row-major f32 weights with ggml's file quantizer ([`BlockQ8_0::quantize`]).
    pub fn quantize(&self, weights: &[f32], shape: Shape) -> Result<Vec<u8>, FormatError> {
        let bytes = self.byte_size(shape)?;
        check_weights(weights, shape)?;
        let mut packed = Vec::with_capacity(bytes);
        for chunk in weights.as_chunks::<QK8_0>().0 {
            packed.extend_from_slice(&BlockQ8_0::quantize(chunk).to_bytes());
        }
        Ok(packed)
    }

    /// Dequantizes packed bytes into row-major f32 values (`dequantize_row_q8_0`).
    pub fn dequantize(&self, packed: &[u8], shape: Shape) -> Result<Vec<f32>, FormatError> {
        let matrix = Q8_0Matrix::new(packed, shape)?;
        let mut values = Vec::with_capacity(shape.elements()?);
        for row in 0..shape.ne1 {
            values.extend(matrix.dequantize_row(row)?);
        }
        Ok(values)
    }
}

/// Dequantizes whole Q8_0 blocks (as `dequantize_row_q8_0`).
fn dequantize_blocks(blocks: &[u8]) -> Vec<f32> {
    blocks
        .as_chunks::<Q8_0_BLOCK_BYTES>()
        .0
        .iter()
        .flat_map(|block| BlockQ8_0::from_bytes(block).dequantize())
        .collect()
}

block_matrix! {
    /// Packed Q8_0 weights of a known shape (`ne0` a multiple of 32).
    Q8_0Matrix, GEOMETRY, dequantize_blocks
}

/// Tokens of Q8_0 activations: `k / 32` blocks per token, quantized as
/// [`BlockQ8_0::quantize_activations`].
#[derive(Debug, Clone, PartialEq)]
pub struct Q8_0Activations {
    k: usize,
    blocks: Vec<BlockQ8_0>,
}

impl Q8_0Activations {
    /// Quantizes row-major f32 activations, `k` values per token (`k` a multiple of 32).
    pub fn quantize(x: &[f32], k: usize) -> Result<Self, FormatError> {
        if k == 0 || !k.is_multiple_of(QK8_0) || !x.len().is_multiple_of(k) {
            return Err(FormatError::ActivationLength {
                format: "q8_0",
                len: x.len(),
                k,
            });
        }
        let blocks = x
            .as_chunks::<QK8_0>()
            .0
            .iter()
            .map(BlockQ8_0::quantize_activations)
            .collect();
        Ok(Q8_0Activations { k, blocks })
    }

    /// Builds activations from blocks, `k / 32` per token.
    pub fn from_blocks(k: usize, blocks: Vec<BlockQ8_0>) -> Result<Self, FormatError> {
        if k == 0 || !k.is_multiple_of(QK8_0) || !blocks.len().is_multiple_of(k / QK8_0) {
            return Err(FormatError::ActivationLength {
                format: "q8_0",
                len: blocks.len() * QK8_0,
                k,
            });
        }
        Ok(Q8_0Activations { k, blocks })
    }

    /// Values per token.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of tokens.
    pub fn tokens(&self) -> usize {
        self.blocks.len() / (self.k / QK8_0)
    }

    /// All blocks, token-major.
    pub fn blocks(&self) -> &[BlockQ8_0] {
        &self.blocks
    }

    /// The blocks of one token.
    pub fn token_blocks(&self, token: usize) -> &[BlockQ8_0] {
        let per_token = self.k / QK8_0;
        &self.blocks[token * per_token..(token + 1) * per_token]
    }
}
