//! Per-ISA tables of dot-product kernels.

use half::f16;

use super::dense::DenseMatrix;
use super::reduce::ReduceWidth;
use super::scalar;
use crate::formats::{BlockQ8K, FpContract, LutTable, Tl1Block, Tl2Block};

/// Σ code · a of consecutive I2_S rows (`out.len()` of them) against four tokens, decoding each
/// weight block once.
pub type I2sRowsX4 = fn(&[u8], [&[i8]; 4], &mut [[i32; 4]]);

/// Σ code · a of consecutive I2_S rows (`out.len()` of them, `act.len() / 4` bytes each) against
/// one token.
pub type I2sRows = fn(&[u8], &[i8], &mut [i32]);

/// Σ code · q of the 32 rows of one TL2 block against one token's tables.
pub type Tl2BlockDot = fn(&Tl2Block, &[LutTable], &[LutTable]) -> [i32; 32];

/// Σ code · q of the rows of one TL1 block against one token's pair tables, added to the output.
pub type Tl1BlockDot = fn(&Tl1Block, &[LutTable], &mut [i32]);

/// Two rows' one-token f16 dot products against one vector.
pub type F16VecX2 = fn([&[f16]; 2], &[f16], ReduceWidth) -> [f32; 2];
/// One-token f16 dot products of every row of a matrix against four vectors:
/// `out[row][v] = f16_vec(w.row(row), vectors[v])`.
pub type F16RowsX4 = fn(&DenseMatrix<'_, f16>, [&[f16]; 4], &mut [[f32; 4]], ReduceWidth);
/// One row's multi-token f16 × f32 dot products against four tokens.
pub type F16TiledX4 = fn(&[f16], [&[f32]; 4], ReduceWidth) -> [f32; 4];

/// The I2_S kernels over runs of rows in the
/// [`I2sLayout::Quads`](crate::formats::I2sLayout::Quads) layout, each run starting at a group
/// of four rows.
#[derive(Debug, Clone, Copy)]
pub struct I2sQuadKernels {
    /// One token ([`scalar::i2s_quad_rows_ref`]).
    pub rows: I2sRows,
    /// Four tokens ([`scalar::i2s_quad_rows_x4_ref`]).
    pub rows_x4: I2sRowsX4,
}

/// The scalar reference kernels over rows in the quads layout.
pub const SCALAR_QUADS: I2sQuadKernels = I2sQuadKernels {
    rows: scalar::i2s_quad_rows_ref,
    rows_x4: scalar::i2s_quad_rows_x4_ref,
};

/// The dot products of one ISA. Every entry computes exactly what its scalar `*_ref` counterpart in
/// [`scalar`](super::scalar) computes, with the same panics on mismatched lengths.
#[derive(Debug)]
pub struct DotKernels {
    /// Σ code · a of a run of consecutive rows against one token, in one call
    /// ([`scalar::i2s_rows_ref`]).
    pub i2s_rows: I2sRows,
    /// The same for four tokens at once, decoding each weight block once
    /// ([`scalar::i2s_rows_x4_ref`]); `None` where the ISA takes tokens one at a time.
    pub i2s_rows_x4: Option<I2sRowsX4>,
    /// The same products over rows grouped in fours, where this ISA reads those faster than
    /// rows one after another (a model on these kernels then groups its I2_S matrices so at
    /// load); `None` where it does not.
    pub i2s_quads: Option<I2sQuadKernels>,
    /// TQ1_0 × Q8_K over one row ([`scalar::tq1_dot_ref`]).
    pub tq1: fn(&[u8], &[BlockQ8K], FpContract) -> f32,
    /// TQ2_0 × Q8_K over one row ([`scalar::tq2_dot_ref`]).
    pub tq2: fn(&[u8], &[BlockQ8K], FpContract) -> f32,
    /// TL1 lookup-table products of one `bm`-row block ([`scalar::tl1_block_dot_ref`]).
    pub tl1: Tl1BlockDot,
    /// TL2 lookup-table products of one 32-row block ([`scalar::tl2_block_dot_ref`]).
    pub tl2: Tl2BlockDot,
    /// One-token f16 dot product ([`scalar::f16_vec_dot_ref`]).
    pub f16_vec: fn(&[f16], &[f16], ReduceWidth) -> f32,
    /// One-token f32 dot product ([`scalar::f32_vec_dot_ref`]).
    pub f32_vec: fn(&[f32], &[f32], ReduceWidth) -> f32,
    /// Multi-token f16 × f32 dot product ([`scalar::f16_tiled_dot_ref`]).
    pub f16_tiled: fn(&[f16], &[f32], ReduceWidth) -> f32,
    /// Multi-token f32 dot product ([`scalar::f32_tiled_dot_ref`]).
    pub f32_tiled: fn(&[f32], &[f32], ReduceWidth) -> f32,
    /// Two [`DotKernels::f16_vec`] products of two rows against one vector, in one call; `None`
    /// where the ISA takes rows one at a time.
    pub f16_vec_x2: Option<F16VecX2>,
    /// [`DotKernels::f16_vec`] products of every row of a matrix against four vectors, each row
    /// and vector widened once for all of them; `None` where the ISA takes rows one or two at a
    /// time.
    pub f16_rows_x4: Option<F16RowsX4>,
    /// Four [`DotKernels::f16_tiled`] products of one row against four tokens, in one call;
    /// `None` where the ISA takes tokens one at a time.
    pub f16_tiled_x4: Option<F16TiledX4>,
}

/// The scalar reference table.
pub(crate) static SCALAR: DotKernels = DotKernels {
    i2s_rows: scalar::i2s_rows_ref,
    i2s_rows_x4: Some(scalar::i2s_rows_x4_ref),
    i2s_quads: None,
    tq1: scalar::tq1_dot_ref,
    tq2: scalar::tq2_dot_ref,
    tl1: scalar::tl1_block_dot_ref,
    tl2: scalar::tl2_block_dot_ref,
    f16_vec: scalar::f16_vec_dot_ref,
    f32_vec: scalar::f32_vec_dot_ref,
    f16_tiled: scalar::f16_tiled_dot_ref,
    f32_tiled: scalar::f32_tiled_dot_ref,
    f16_vec_x2: None,
    f16_rows_x4: None,
    f16_tiled_x4: None,
};
