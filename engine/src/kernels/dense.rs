//! Dense (f16 / f32) weight matrices.

use half::f16;
use half::slice::HalfFloatSliceExt;

use super::error::{expect_len, KernelError};
use crate::formats::Shape;

/// `values` rounded to f16 (to nearest, ties to even, as `GGML_FP32_TO_FP16`), eight at a time
/// where the CPU converts in hardware.
pub fn round_to_f16(values: &[f32]) -> Vec<f16> {
    let mut rounded = vec![f16::ZERO; values.len()];
    rounded.convert_from_f32_slice(values);
    rounded
}

/// A row-major dense matrix view: `shape.ne1` rows of `shape.ne0` values, each row `stride`
/// values after the previous one.
#[derive(Debug, Clone, Copy)]
pub struct DenseMatrix<'a, T> {
    data: &'a [T],
    shape: Shape,
    stride: usize,
}

impl<'a, T> DenseMatrix<'a, T> {
    /// Wraps `data`, which must hold exactly `ne0 · ne1` values.
    pub fn new(data: &'a [T], shape: Shape) -> Result<Self, KernelError> {
        expect_len("dense matrix values", shape.elements()?, data.len())?;
        Ok(DenseMatrix {
            data,
            shape,
            stride: shape.ne0,
        })
    }

    /// Rows of `shape.ne0` values that start `stride` values apart in `data` (the first
    /// `shape.ne0` of each `stride`), which must hold exactly the rows' span.
    pub fn strided(data: &'a [T], shape: Shape, stride: usize) -> Result<Self, KernelError> {
        if stride < shape.ne0 {
            return Err(KernelError::Mismatch {
                what: "dense matrix row stride (at least the row length)",
                expected: shape.ne0,
                actual: stride,
            });
        }
        let span = match shape.ne1 {
            0 => 0,
            rows => (rows - 1) * stride + shape.ne0,
        };
        expect_len("strided dense matrix values", span, data.len())?;
        Ok(DenseMatrix {
            data,
            shape,
            stride,
        })
    }

    /// The shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Row `row`.
    pub fn row(&self, row: usize) -> &'a [T] {
        let start = row * self.stride;
        &self.data[start..start + self.shape.ne0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_rows_skip_the_gap_and_bad_strides_or_spans_are_errors() {
        let data: Vec<u32> = (0..10).collect();
        let m = DenseMatrix::strided(&data, Shape::new(2, 3), 4).unwrap();
        assert_eq!(
            (0..3).map(|r| m.row(r).to_vec()).collect::<Vec<_>>(),
            [vec![0, 1], vec![4, 5], vec![8, 9]]
        );
        assert!(DenseMatrix::strided(&data, Shape::new(5, 2), 4).is_err());
        assert!(DenseMatrix::strided(&data[..9], Shape::new(2, 3), 4).is_err());
        let packed = DenseMatrix::new(&data[..6], Shape::new(2, 3)).unwrap();
        assert_eq!(packed.row(2), [4, 5]);
    }
}
