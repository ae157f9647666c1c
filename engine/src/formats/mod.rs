//! Ternary weight formats, ggml's Q8_0 and Q6_K block formats, and activation quantization.
//!
//! Every weight format implements [`TernaryFormat`]: byte size, quantization of f32 weights into the
//! packed bytes bitnet.cpp stores, unpacking back to ternary codes and dequantization. Layouts and
//! rounding rules follow bitnet.cpp (and its llama.cpp fork) exactly, so packed bytes can be compared
//! bit for bit with the reference.
//!
//! Token embeddings and output heads may also be stored as [`Q8_0`] or [`Q6_K`] (as
//! `llama_model_quantize` writes them with a token-embedding or output type): their views
//! ([`Q8_0Matrix`], [`Q6KMatrix`]) dequantize rows exactly as ggml does, and [`Q8_0Activations`]
//! quantizes the activations of a Q8_0 product as ggml's x86 code does (Q6_K products take
//! [`Q8kActivations`]).
//!
//! Activations are quantized by [`I8sActivations`] (per-token int8 for I2_S), [`Q8kActivations`]
//! (256-value blocks for TQ1_0/TQ2_0), [`Tl1Activations`] and [`Tl2Activations`] (per-token lookup
//! tables for TL1 and TL2); [`ternarize`] turns f32 master weights into the absmean
//! ternary values the converters pack.
//!
//! Shapes use ggml's order: `ne0` is the number of weights per row (the input width K), `ne1` the number
//! of rows (output features). Tensors are stored row-major.

mod activation;
mod block_rows;
mod error;
mod i2s;
mod lut_table;
mod q6_k;
mod q8_0;
mod rounding;
mod shape;
mod ternarize;
mod tl1;
mod tl1_lut;
mod tl2;
mod tl2_lut;
mod tl_layout;
mod tq1;
mod tq2;
mod tq_matrix;

pub use activation::{BlockQ8K, I8sActivations, Q8kActivations, RowQuantizer, QK_K};
pub use error::FormatError;
pub(crate) use i2s::rows_of_quads;
pub use i2s::{deinterleave_quads, interleave_quads, I2s, I2sLayout, I2sMatrix, I2S_BLOCK};
pub use lut_table::{lut_entry, LutTable};
pub use q6_k::{q6k_code, q6k_d, q6k_scale, Q6KMatrix, Q6_K, Q6_K_BLOCK_BYTES};
pub use q8_0::{BlockQ8_0, Q8_0Activations, Q8_0Matrix, Q8_0, Q8_0_BLOCK_BYTES, QK8_0};
pub use rounding::{nearest_int, FpContract};
pub use shape::Shape;
pub use ternarize::{absmean_inverse_scale, ternarize};
pub use tl1::{Tl1, Tl1Block, Tl1Matrix, Tl1Tiling};
pub use tl1_lut::Tl1Activations;
pub use tl2::{Tl2, Tl2Block, Tl2Matrix, Tl2Tiling};
pub use tl2_lut::Tl2Activations;
pub use tq1::{Tq1_0, TQ1_0_BLOCK_BYTES};
pub use tq2::{Tq2_0, TQ2_0_BLOCK_BYTES};
pub use tq_matrix::{TqKind, TqMatrix};

pub(crate) use tl_layout::swapped_row;
pub(crate) use tq1::{tq1_element, trit, trits_in};

/// ggml type ids of the formats in bitnet.cpp's llama.cpp fork.
pub mod type_id {
    /// `GGML_TYPE_Q8_0`.
    pub const Q8_0: u32 = 8;
    /// `GGML_TYPE_Q6_K`.
    pub const Q6_K: u32 = 14;
    /// `GGML_TYPE_Q8_K`.
    pub const Q8_K: u32 = 15;
    /// `GGML_TYPE_TQ1_0`.
    pub const TQ1_0: u32 = 34;
    /// `GGML_TYPE_TQ2_0`.
    pub const TQ2_0: u32 = 35;
    /// `GGML_TYPE_I2_S`.
    pub const I2_S: u32 = 36;
    /// `GGML_TYPE_I8_S`.
    pub const I8_S: u32 = 37;
    /// `GGML_TYPE_TL1`.
    pub const TL1: u32 = 38;
    /// `GGML_TYPE_TL2`.
    pub const TL2: u32 = 39;
}

/// Scales that turn unpacked codes back into weights.
#[derive(Debug, Clone, PartialEq)]
pub enum Scales {
    /// One scale for the whole tensor (I2_S, TL1, TL2).
    PerTensor(f32),
    /// One scale per block of `block` consecutive weights of the flattened tensor (TQ1_0, TQ2_0).
    PerBlock {
        /// Weights per block.
        block: usize,
        /// The scale of each block, in order.
        scales: Vec<f32>,
    },
}

impl Scales {
    /// The scale that applies to weight `index` of the flattened tensor.
    pub fn scale_of(&self, index: usize) -> f32 {
        match self {
            Scales::PerTensor(scale) => *scale,
            Scales::PerBlock { block, scales } => scales[index / block],
        }
    }
}

/// A tensor unpacked into ternary codes and scales: weight `i` is `codes[i] as f32 * scale_of(i)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Unpacked {
    /// Row-major codes. Valid data only holds −1, 0 and +1; formats whose 2-bit code 3 has a meaning
    /// in the reference arithmetic (I2_S, TQ2_0) unpack it as +2, the value their kernels compute with.
    pub codes: Vec<i8>,
    /// The scales.
    pub scales: Scales,
}

impl Unpacked {
    /// The weights, computed as the reference dequantizes: `code as f32 * scale`.
    pub fn to_f32(&self) -> Vec<f32> {
        self.codes
            .iter()
            .enumerate()
            .map(|(i, &code)| f32::from(code) * self.scales.scale_of(i))
            .collect()
    }
}

/// A packed ternary weight format.
pub trait TernaryFormat {
    /// The reference's type name (`"i2_s"`, `"tq2_0"`, ...).
    fn name(&self) -> &'static str;

    /// The ggml type id in bitnet.cpp's type table.
    fn ggml_type_id(&self) -> u32;

    /// Bytes a tensor of this shape occupies (as ggml's `ggml_nbytes` reports it), or why the shape
    /// does not fit the format.
    fn byte_size(&self, shape: Shape) -> Result<usize, FormatError>;

    /// Quantizes row-major f32 weights with the reference's rules and packs them.
    fn quantize(&self, weights: &[f32], shape: Shape) -> Result<Vec<u8>, FormatError>;

    /// Unpacks packed bytes into codes and scales.
    fn unpack(&self, packed: &[u8], shape: Shape) -> Result<Unpacked, FormatError>;

    /// Dequantizes packed bytes into row-major f32 weights.
    fn dequantize(&self, packed: &[u8], shape: Shape) -> Result<Vec<f32>, FormatError> {
        Ok(self.unpack(packed, shape)?.to_f32())
    }
}

/// Checks that `weights` holds exactly `shape.len()` values.
fn check_weights(weights: &[f32], shape: Shape) -> Result<(), FormatError> {
    let expected = shape.elements()?;
    if weights.len() == expected {
        Ok(())
    } else {
        Err(FormatError::WeightCount {
            expected,
            actual: weights.len(),
        })
    }
}

/// Checks that `packed` holds exactly the bytes `format` needs for `shape`.
fn check_packed<F: TernaryFormat + ?Sized>(
    format: &F,
    packed: &[u8],
    shape: Shape,
) -> Result<(), FormatError> {
    let expected = format.byte_size(shape)?;
    if packed.len() == expected {
        Ok(())
    } else {
        Err(FormatError::PackedSize {
            format: format.name(),
            expected,
            actual: packed.len(),
        })
    }
}

/// Reads a little-endian f32 at `offset`.
fn read_f32(bytes: &[u8], offset: usize) -> f32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[offset..offset + 4]);
    f32::from_le_bytes(raw)
}
