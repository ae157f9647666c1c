//! I2_S: bitnet.cpp's 2-bit ternary format with one f32 scale per tensor (x86 block layout).
//!
//! The flattened tensor is cut into blocks of 128 weights = 32 bytes. Byte `j` of a block holds weight
//! `j` in bits 7:6, `j + 32` in bits 5:4, `j + 64` in bits 3:2 and `j + 96` in bits 1:0. Codes are
//! 0 → −1, 1 → 0, 2 → +1. The f32 scale sits at byte `n / 4`, followed by padding up to `n / 4 + 32`.

use std::borrow::Cow;

use super::{
    check_packed, check_weights, read_f32, FormatError, Scales, Shape, TernaryFormat, Unpacked,
};

/// Weights per I2_S block.
pub const I2S_BLOCK: usize = 128;

/// Bytes after the packed codes: the f32 scale and padding.
const SCALE_TAIL: usize = 32;

/// The I2_S format. Rows must be a multiple of 128 weights: the reference packs whole 128-blocks of the
/// flattened tensor and its dot product reads `ne0 / 128` blocks per row, so anything else loses weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct I2s;

impl I2s {
    fn check_shape(shape: Shape) -> Result<usize, FormatError> {
        if !shape.ne0.is_multiple_of(I2S_BLOCK) {
            return Err(FormatError::RowNotBlockAligned {
                format: "i2_s",
                ne0: shape.ne0,
                block: I2S_BLOCK,
                shape,
            });
        }
        shape.elements()
    }
}

/// The 2-bit code of weight `j` (0..128) inside its block: byte index and shift.
#[inline]
fn position(j: usize) -> (usize, u32) {
    (j % 32, 6 - 2 * (j / 32) as u32)
}

impl TernaryFormat for I2s {
    fn name(&self) -> &'static str {
        "i2_s"
    }

    fn ggml_type_id(&self) -> u32 {
        super::type_id::I2_S
    }

    fn byte_size(&self, shape: Shape) -> Result<usize, FormatError> {
        let n = Self::check_shape(shape)?;
        Ok(n / 4 + SCALE_TAIL)
    }

    /// `quantize_i2_s`: the scale is max |w| (so the input should already be ternarized); a weight with
    /// |w| < 1e-6 becomes 0, any other weight its sign.
    fn quantize(&self, weights: &[f32], shape: Shape) -> Result<Vec<u8>, FormatError> {
        let n = Self::check_shape(shape)?;
        check_weights(weights, shape)?;
        let scale = weights
            .iter()
            .fold(0f64, |max, &w| max.max(f64::from(w).abs()));
        let mut packed = vec![0u8; n / 4 + SCALE_TAIL];
        for (block, out) in weights
            .chunks_exact(I2S_BLOCK)
            .zip(packed.chunks_exact_mut(I2S_BLOCK / 4))
        {
            for (j, &w) in block.iter().enumerate() {
                let w = f64::from(w);
                let code: u8 = if w.abs() < 1e-6 {
                    1
                } else if w * scale > 0.0 {
                    2
                } else {
                    0
                };
                let (byte, shift) = position(j);
                out[byte] |= code << shift;
            }
        }
        packed[n / 4..n / 4 + 4].copy_from_slice(&(scale as f32).to_le_bytes());
        Ok(packed)
    }

    fn unpack(&self, packed: &[u8], shape: Shape) -> Result<Unpacked, FormatError> {
        let n = Self::check_shape(shape)?;
        check_packed(self, packed, shape)?;
        let mut codes = vec![0i8; n];
        for (block, bytes) in codes
            .chunks_exact_mut(I2S_BLOCK)
            .zip(packed.chunks_exact(I2S_BLOCK / 4))
        {
            for (j, code) in block.iter_mut().enumerate() {
                let (byte, shift) = position(j);
                *code = ((bytes[byte] >> shift) & 3) as i8 - 1;
            }
        }
        Ok(Unpacked {
            codes,
            scales: Scales::PerTensor(read_f32(packed, n / 4)),
        })
    }
}

/// How the rows of an I2_S matrix lie in memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum I2sLayout {
    /// Row after row, as files store them.
    #[default]
    Rows,
    /// Rows in groups of four whose 32-byte blocks alternate: block `b` of row `4q + i` (`i` <
    /// 4) sits at byte `4q · w + 128 · b + 32 · i` of the codes (`w` = `ne0 / 4` bytes per row),
    /// so a one-token product reads a group's four rows as one linear stream, which the
    /// hardware prefetchers follow; the last `ne1 % 4` rows stay row after row. A group spans
    /// the bytes of its four rows, so a run of whole groups is still one byte range
    /// ([`interleave_quads`]).
    Quads,
}

/// Rearranges the packed bytes of a matrix of `shape` (codes and scale tail) from
/// [`I2sLayout::Rows`] to [`I2sLayout::Quads`] in place; the scale tail stays as it is.
pub fn interleave_quads(packed: &mut [u8], shape: Shape) -> Result<(), FormatError> {
    check_packed(&I2s, packed, shape)?;
    regroup_quads(
        packed,
        shape.ne0 / I2S_BLOCK,
        shape.ne1,
        Regroup::Interleave,
    );
    Ok(())
}

/// The inverse of [`interleave_quads`]: from [`I2sLayout::Quads`] back to [`I2sLayout::Rows`].
pub fn deinterleave_quads(packed: &mut [u8], shape: Shape) -> Result<(), FormatError> {
    check_packed(&I2s, packed, shape)?;
    regroup_quads(
        packed,
        shape.ne0 / I2S_BLOCK,
        shape.ne1,
        Regroup::Deinterleave,
    );
    Ok(())
}

/// The codes of `rows` rows of `blocks` blocks each in the [`I2sLayout::Quads`] layout (a run
/// that starts at a group), row after row.
pub(crate) fn rows_of_quads(codes: &[u8], blocks: usize, rows: usize) -> Vec<u8> {
    let mut plain = codes.to_vec();
    regroup_quads(&mut plain, blocks, rows, Regroup::Deinterleave);
    plain
}

/// Which way [`regroup_quads`] moves the blocks.
#[derive(Clone, Copy)]
enum Regroup {
    Interleave,
    Deinterleave,
}

/// Moves the blocks of each group of four rows of `blocks` blocks at the start of `codes`
/// between the two layouts, through one group's worth of scratch.
fn regroup_quads(codes: &mut [u8], blocks: usize, rows: usize, way: Regroup) {
    let group_bytes = 4 * 32 * blocks;
    if group_bytes == 0 {
        return;
    }
    // The slots of block `b` of row `i` of a group in the file's order and grouped.
    let in_rows = |i: usize, b: usize| i * blocks + b;
    let grouped = |i: usize, b: usize| 4 * b + i;
    let mut group = vec![0u8; group_bytes];
    for quad in codes[..rows / 4 * group_bytes].chunks_exact_mut(group_bytes) {
        group.copy_from_slice(quad);
        let (from, _) = group.as_chunks::<32>();
        let (to, _) = quad.as_chunks_mut::<32>();
        for i in 0..4 {
            for b in 0..blocks {
                match way {
                    Regroup::Interleave => to[grouped(i, b)] = from[in_rows(i, b)],
                    Regroup::Deinterleave => to[in_rows(i, b)] = from[grouped(i, b)],
                }
            }
        }
    }
}

/// A validated view of an I2_S weight matrix for the kernels.
#[derive(Debug, Clone, Copy)]
pub struct I2sMatrix<'a> {
    packed: &'a [u8],
    shape: Shape,
    scale: f32,
    layout: I2sLayout,
}

impl<'a> I2sMatrix<'a> {
    /// Wraps packed I2_S bytes of the given shape, rows in the file's order.
    pub fn new(packed: &'a [u8], shape: Shape) -> Result<Self, FormatError> {
        Self::with_layout(packed, shape, I2sLayout::Rows)
    }

    /// Wraps packed I2_S bytes of the given shape whose rows lie as `layout` says.
    pub fn with_layout(
        packed: &'a [u8],
        shape: Shape,
        layout: I2sLayout,
    ) -> Result<Self, FormatError> {
        let n = I2s::check_shape(shape)?;
        let matrix = Self::with_known_scale(packed, shape, layout, 0.0)?;
        Ok(I2sMatrix {
            scale: read_f32(packed, n / 4),
            ..matrix
        })
    }

    /// [`I2sMatrix::with_layout`] with the weight scale the bytes end with already read (once,
    /// at load time: the line it lies on is rarely in the caches when a product starts).
    pub(crate) fn with_known_scale(
        packed: &'a [u8],
        shape: Shape,
        layout: I2sLayout,
        scale: f32,
    ) -> Result<Self, FormatError> {
        I2s::check_shape(shape)?;
        check_packed(&I2s, packed, shape)?;
        Ok(I2sMatrix {
            packed,
            shape,
            scale,
            layout,
        })
    }

    /// The shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The per-tensor weight scale.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// How the rows lie.
    pub fn layout(&self) -> I2sLayout {
        self.layout
    }

    /// The packed codes of row `row` (`ne0 / 4` bytes): borrowed where the row lies in one
    /// piece, gathered from its group where it does not.
    pub fn row(&self, row: usize) -> Cow<'a, [u8]> {
        let width = self.shape.ne0 / 4;
        let in_group = self.layout == I2sLayout::Quads && row < self.shape.ne1 / 4 * 4;
        if !in_group {
            return Cow::Borrowed(&self.packed[row * width..(row + 1) * width]);
        }
        let group = &self.packed[row / 4 * 4 * width..(row / 4 + 1) * 4 * width];
        let (blocks, _) = group.as_chunks::<32>();
        Cow::Owned(
            blocks
                .iter()
                .skip(row % 4)
                .step_by(4)
                .flatten()
                .copied()
                .collect(),
        )
    }

    /// The packed codes of all rows (without the scale tail).
    pub fn codes(&self) -> &'a [u8] {
        &self.packed[..self.shape.ne0 * self.shape.ne1 / 4]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packed bytes of a matrix whose code byte `j` of row `r` is `r · 64 + j % 64`, and scale 1.
    fn numbered(shape: Shape) -> Vec<u8> {
        let width = shape.ne0 / 4;
        let mut packed: Vec<u8> = (0..shape.ne1)
            .flat_map(|r| (0..width).map(move |j| (r * 64 + j % 64) as u8))
            .collect();
        packed.extend(1f32.to_le_bytes());
        packed.resize(packed.len() + SCALE_TAIL - 4, 0);
        packed
    }

    #[test]
    fn quads_alternate_the_blocks_of_four_rows_and_leave_the_last_rows_and_the_scale() {
        // Nine rows of three blocks: two groups, one row after them.
        let shape = Shape::new(3 * I2S_BLOCK, 9);
        let rows = numbered(shape);
        let mut quads = rows.clone();
        interleave_quads(&mut quads, shape).unwrap();
        let plain = I2sMatrix::new(&rows, shape).unwrap();
        let grouped = I2sMatrix::with_layout(&quads, shape, I2sLayout::Quads).unwrap();
        for r in 0..9 {
            assert_eq!(grouped.row(r), plain.row(r), "row {r}");
        }
        // Block 1 of row 6 (the third row of the second group) at 4·96 + 128 + 64.
        assert_eq!(&quads[4 * 96 + 128 + 64..][..32], &plain.row(6)[32..64]);
        assert_eq!(&quads[8 * 96..], &rows[8 * 96..]);
        assert_eq!(grouped.scale(), 1.0);
        deinterleave_quads(&mut quads, shape).unwrap();
        assert_eq!(quads, rows);
    }

    #[test]
    fn regrouping_checks_the_shape_and_the_length() {
        let shape = Shape::new(I2S_BLOCK, 4);
        let mut short = vec![0u8; 4 * 32];
        assert!(matches!(
            interleave_quads(&mut short, shape),
            Err(FormatError::PackedSize { .. })
        ));
        let mut any = numbered(shape);
        assert!(matches!(
            interleave_quads(&mut any, Shape::new(100, 4)),
            Err(FormatError::RowNotBlockAligned { .. })
        ));
    }
}
