//! A validated view of a TQ1_0 or TQ2_0 weight matrix for the kernels.

use super::{check_packed, FormatError, Shape, TernaryFormat, Tq1_0, Tq2_0, QK_K};
use super::{TQ1_0_BLOCK_BYTES, TQ2_0_BLOCK_BYTES};

/// Which ggml ternary block format a [`TqMatrix`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TqKind {
    /// TQ1_0 (1.6875 bits per weight).
    Tq1_0,
    /// TQ2_0 (2.0625 bits per weight).
    Tq2_0,
}

impl TqKind {
    /// Bytes per 256-weight block.
    pub const fn block_bytes(self) -> usize {
        match self {
            TqKind::Tq1_0 => TQ1_0_BLOCK_BYTES,
            TqKind::Tq2_0 => TQ2_0_BLOCK_BYTES,
        }
    }

    /// The format as a [`TernaryFormat`].
    pub fn format(self) -> &'static dyn TernaryFormat {
        match self {
            TqKind::Tq1_0 => &Tq1_0,
            TqKind::Tq2_0 => &Tq2_0,
        }
    }
}

/// Packed TQ1_0/TQ2_0 weights of a known shape.
#[derive(Debug, Clone, Copy)]
pub struct TqMatrix<'a> {
    kind: TqKind,
    packed: &'a [u8],
    shape: Shape,
}

impl<'a> TqMatrix<'a> {
    /// Wraps packed bytes of the given kind and shape.
    pub fn new(kind: TqKind, packed: &'a [u8], shape: Shape) -> Result<Self, FormatError> {
        check_packed(kind.format(), packed, shape)?;
        Ok(TqMatrix {
            kind,
            packed,
            shape,
        })
    }

    /// The block format.
    pub fn kind(&self) -> TqKind {
        self.kind
    }

    /// The shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The blocks of row `row`.
    pub fn row(&self, row: usize) -> &'a [u8] {
        let width = self.shape.ne0 / QK_K * self.kind.block_bytes();
        &self.packed[row * width..(row + 1) * width]
    }
}
