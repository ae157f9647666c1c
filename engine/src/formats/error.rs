//! Errors of the weight and activation formats.

use super::Shape;

/// Why a shape, a buffer or a tiling does not fit a format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// `ne0` is not a multiple of the format's block.
    #[error("{format}: ne0 = {ne0} is not a multiple of {block} (shape {shape})")]
    RowNotBlockAligned {
        /// The format's name.
        format: &'static str,
        /// The offending `ne0`.
        ne0: usize,
        /// The block length `ne0` must be a multiple of.
        block: usize,
        /// The whole shape.
        shape: Shape,
    },
    /// A tiling parameter breaks one of the format's block constraints.
    #[error("{format}: {constraint} does not hold for shape {shape} with tiling {tiling}")]
    Tiling {
        /// The format's name.
        format: &'static str,
        /// The constraint that failed, written as an equation.
        constraint: &'static str,
        /// The shape.
        shape: Shape,
        /// The tiling, as text.
        tiling: String,
    },
    /// The tensor is too large to address.
    #[error("shape {shape} is too large")]
    TooLarge {
        /// The shape.
        shape: Shape,
    },
    /// The number of f32 weights does not match the shape.
    #[error("expected {expected} weights, got {actual}")]
    WeightCount {
        /// Weights the shape holds.
        expected: usize,
        /// Weights given.
        actual: usize,
    },
    /// The packed buffer has the wrong length.
    #[error("{format}: expected {expected} packed bytes, got {actual}")]
    PackedSize {
        /// The format's name.
        format: &'static str,
        /// Bytes the shape needs.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// A packed LUT index that no ternary group produces.
    #[error("{format}: invalid packed index {value} at byte {byte}")]
    InvalidIndex {
        /// The format's name.
        format: &'static str,
        /// The byte offset.
        byte: usize,
        /// The index found.
        value: u8,
    },
    /// A row index past the last row of a matrix.
    #[error("{format}: row {row} is outside the matrix of {rows} rows")]
    RowOutOfRange {
        /// The format's name.
        format: &'static str,
        /// The row asked for.
        row: usize,
        /// Rows the matrix has.
        rows: usize,
    },
    /// The activation length is not a multiple of the row width.
    #[error("{format}: {len} activations are not a whole number of rows of {k}")]
    ActivationLength {
        /// The activation format's name.
        format: &'static str,
        /// Values given.
        len: usize,
        /// Row width.
        k: usize,
    },
}
