//! Tensor shapes in ggml's dimension order.

use super::FormatError;

/// A 2-D weight shape: `ne0` weights per row (the input width K) and `ne1` rows (output features).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Weights per row (K).
    pub ne0: usize,
    /// Rows (output features).
    pub ne1: usize,
}

impl Shape {
    /// A shape of `ne1` rows of `ne0` weights.
    pub const fn new(ne0: usize, ne1: usize) -> Self {
        Shape { ne0, ne1 }
    }

    /// Number of weights, or an error when it overflows `usize`.
    pub fn elements(&self) -> Result<usize, FormatError> {
        self.ne0
            .checked_mul(self.ne1)
            .ok_or(FormatError::TooLarge { shape: *self })
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}, {}]", self.ne0, self.ne1)
    }
}
