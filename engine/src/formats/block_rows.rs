//! A validated row-major matrix of fixed-size ggml blocks, shared by the Q8_0 and Q6_K views.

use super::{FormatError, Shape};

/// The geometry of a ggml block format: its name, values per block and bytes per block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockGeometry {
    pub name: &'static str,
    pub values: usize,
    pub bytes: usize,
}

/// Bytes of `shape` in blocks of `geometry`, or why the shape does not fit them.
pub(crate) fn block_bytes(geometry: BlockGeometry, shape: Shape) -> Result<usize, FormatError> {
    if shape.ne0 == 0 || !shape.ne0.is_multiple_of(geometry.values) {
        return Err(FormatError::RowNotBlockAligned {
            format: geometry.name,
            ne0: shape.ne0,
            block: geometry.values,
            shape,
        });
    }
    (shape.elements()? / geometry.values)
        .checked_mul(geometry.bytes)
        .ok_or(FormatError::TooLarge { shape })
}

/// Packed rows of whole blocks, checked once against the shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockRows<'a> {
    geometry: BlockGeometry,
    packed: &'a [u8],
    shape: Shape,
}

impl<'a> BlockRows<'a> {
    /// Wraps `packed`, which must hold exactly the blocks of `shape`.
    pub fn new(
        geometry: BlockGeometry,
        packed: &'a [u8],
        shape: Shape,
    ) -> Result<Self, FormatError> {
        let expected = block_bytes(geometry, shape)?;
        if packed.len() != expected {
            return Err(FormatError::PackedSize {
                format: geometry.name,
                expected,
                actual: packed.len(),
            });
        }
        Ok(BlockRows {
            geometry,
            packed,
            shape,
        })
    }

    /// The shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The blocks of row `row` (`row < ne1`).
    pub fn row(&self, row: usize) -> &'a [u8] {
        let width = self.shape.ne0 / self.geometry.values * self.geometry.bytes;
        &self.packed[row * width..(row + 1) * width]
    }

    /// The blocks of row `row`, or an error naming the row when it is past the last one.
    pub fn checked_row(&self, row: usize) -> Result<&'a [u8], FormatError> {
        if row < self.shape.ne1 {
            Ok(self.row(row))
        } else {
            Err(FormatError::RowOutOfRange {
                format: self.geometry.name,
                row,
                rows: self.shape.ne1,
            })
        }
    }
}

/// Defines a public view of packed rows of one block format: `$name::new` checks the bytes
/// against the shape once, `row` hands the kernels a row's blocks and `dequantize_row` decodes
/// one row with `$dequantize` (the reference's `get_rows`).
macro_rules! block_matrix {
    ($(#[$meta:meta])* $name:ident, $geometry:expr, $dequantize:path) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name<'a> {
            rows: $crate::formats::block_rows::BlockRows<'a>,
        }

        impl<'a> $name<'a> {
            /// Wraps packed bytes, which must hold exactly the blocks of `shape`.
            pub fn new(
                packed: &'a [u8],
                shape: $crate::formats::Shape,
            ) -> Result<Self, $crate::formats::FormatError> {
                Ok($name {
                    rows: $crate::formats::block_rows::BlockRows::new($geometry, packed, shape)?,
                })
            }

            /// The shape.
            pub fn shape(&self) -> $crate::formats::Shape {
                self.rows.shape()
            }

            /// The blocks of row `row` (`row < ne1`).
            pub fn row(&self, row: usize) -> &'a [u8] {
                self.rows.row(row)
            }

            /// Row `row` as f32, as the reference's `get_rows` dequantizes it.
            pub fn dequantize_row(&self, row: usize) -> Result<Vec<f32>, $crate::formats::FormatError> {
                Ok($dequantize(self.rows.checked_row(row)?))
            }
        }
    };
}

pub(crate) use block_matrix;
