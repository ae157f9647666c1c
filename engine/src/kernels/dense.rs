//! Dense (f16 / f32) weight matrices.

use super::error::{expect_len, KernelError};
use crate::formats::Shape;

/// A row-major dense matrix view: `shape.ne1` rows of `shape.ne0` values.
#[derive(Debug, Clone, Copy)]
pub struct DenseMatrix<'a, T> {
    data: &'a [T],
    shape: Shape,
}

impl<'a, T> DenseMatrix<'a, T> {
    /// Wraps `data`, which must hold exactly `ne0 · ne1` values.
    pub fn new(data: &'a [T], shape: Shape) -> Result<Self, KernelError> {
        expect_len("dense matrix values", shape.elements()?, data.len())?;
        Ok(DenseMatrix { data, shape })
    }

    /// The shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Row `row`.
    pub fn row(&self, row: usize) -> &'a [T] {
        &self.data[row * self.shape.ne0..(row + 1) * self.shape.ne0]
    }
}
