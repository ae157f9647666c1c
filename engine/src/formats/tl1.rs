//! TL1: bitnet.cpp's ARM LUT format. Pairs of weights become a 4-bit index `3a + b + 4`, two indices
//! per byte, in the tiled order of the converter's `process_tl1`; the f32 scale follows the codes at
//! byte `n / 4` (tensor bytes `n / 4 + 32`).

use super::tl_layout::{get_nibble, pair_index, put_nibble, split_pair, tl_code, tl_scale};
use super::{
    check_packed, check_weights, read_f32, FormatError, Scales, Shape, TernaryFormat, Unpacked,
};

/// TL1 tiling, as passed to `codegen_tl1.py`: `BM` rows per tile, `BK` weights per K block and `bm`
/// rows per SIMD block (32 or 64, which fixes `by = 256 / bm` weights per inner block).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tl1Tiling {
    /// `BM`: rows per tile.
    pub tile_rows: usize,
    /// `BK`: weights per K block.
    pub tile_cols: usize,
    /// `bm`: rows per SIMD block (32 or 64).
    pub simd_rows: usize,
}

impl Tl1Tiling {
    /// `BM` rows per tile, `BK` weights per K block and `bm` rows per SIMD block.
    pub const fn new(tile_rows: usize, tile_cols: usize, simd_rows: usize) -> Self {
        Tl1Tiling {
            tile_rows,
            tile_cols,
            simd_rows,
        }
    }
}

impl std::fmt::Display for Tl1Tiling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BM={} BK={} bm={}",
            self.tile_rows, self.tile_cols, self.simd_rows
        )
    }
}

/// The TL1 format with its tiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tl1 {
    /// The tiling the kernels were generated for.
    pub tiling: Tl1Tiling,
}

/// A checked TL1 geometry for one shape.
struct Geometry {
    k: usize,
    tile_rows: usize,
    tile_cols: usize,
    simd_rows: usize,
    inner: usize,
}

impl Geometry {
    /// Byte offset and nibble (high when `true`) of pair `pair` (columns `2·pair`, `2·pair + 1`) of row `m`.
    fn locate(&self, m: usize, pair: usize) -> (usize, bool) {
        let (tile_m, in_tile) = (m / self.tile_rows, m % self.tile_rows);
        let (block, r) = (in_tile / self.simd_rows, in_tile % self.simd_rows);
        let col = 2 * pair;
        let (tile_k, in_k) = (col / self.tile_cols, col % self.tile_cols);
        let (inner_block, in_inner) = (in_k / self.inner, in_k % self.inner);
        let pair_in_inner = in_inner / 2;
        let mut offset = tile_m * (self.k / self.tile_cols) + tile_k;
        offset = offset * (self.tile_rows / self.simd_rows) + block;
        offset = offset * (self.tile_cols / self.inner) + inner_block;
        offset = offset * (self.simd_rows / 16) + r / 16;
        offset = offset * (self.inner / 4) + pair_in_inner / 2;
        offset = offset * 16 + r % 16;
        (offset, pair_in_inner.is_multiple_of(2))
    }
}

impl Tl1 {
    /// TL1 with the given tiling.
    pub const fn new(tiling: Tl1Tiling) -> Self {
        Tl1 { tiling }
    }

    fn geometry(&self, shape: Shape) -> Result<Geometry, FormatError> {
        let t = self.tiling;
        let fail = |constraint: &'static str| FormatError::Tiling {
            format: "tl1",
            constraint,
            shape,
            tiling: t.to_string(),
        };
        if t.simd_rows != 32 && t.simd_rows != 64 {
            return Err(fail("bm ∈ {32, 64}"));
        }
        let inner = 256 / t.simd_rows;
        if t.tile_rows == 0 || !t.tile_rows.is_multiple_of(t.simd_rows) {
            return Err(fail("BM % bm == 0"));
        }
        if t.tile_cols == 0 || !t.tile_cols.is_multiple_of(inner) {
            return Err(fail("BK % (256 / bm) == 0"));
        }
        if !shape.ne1.is_multiple_of(t.tile_rows) {
            return Err(fail("ne1 % BM == 0"));
        }
        if !shape.ne0.is_multiple_of(t.tile_cols) {
            return Err(fail("ne0 % BK == 0"));
        }
        shape.elements()?;
        Ok(Geometry {
            k: shape.ne0,
            tile_rows: t.tile_rows,
            tile_cols: t.tile_cols,
            simd_rows: t.simd_rows,
            inner,
        })
    }
}

/// Packed TL1 weights of a known shape and tiling, for the kernels.
///
/// The kernels work on SIMD blocks of `bm` rows: for each K tile, a block's bytes are a contiguous
/// run of 16-byte vectors, each holding 16 rows of two consecutive pairs (the first in the high
/// nibbles); see [`Tl1Block`].
#[derive(Debug, Clone, Copy)]
pub struct Tl1Matrix<'a> {
    packed: &'a [u8],
    shape: Shape,
    tiling: Tl1Tiling,
    scale: f32,
}

impl<'a> Tl1Matrix<'a> {
    /// Wraps packed bytes of the given shape, written with `tiling`.
    pub fn new(tiling: Tl1Tiling, packed: &'a [u8], shape: Shape) -> Result<Self, FormatError> {
        let format = Tl1::new(tiling);
        format.geometry(shape)?;
        check_packed(&format, packed, shape)?;
        Ok(Tl1Matrix {
            packed,
            shape,
            tiling,
            scale: read_f32(packed, shape.elements()? / 4),
        })
    }

    /// The shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The tiling.
    pub fn tiling(&self) -> Tl1Tiling {
        self.tiling
    }

    /// The per-tensor weight scale.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// Number of SIMD blocks (`ne1 / bm`).
    pub fn blocks(&self) -> usize {
        self.shape.ne1 / self.tiling.simd_rows
    }

    /// Block `block` (rows `bm·block..bm·block + bm`).
    pub fn block(&self, block: usize) -> Tl1Block<'a> {
        let t = self.tiling;
        let per_tile = t.tile_rows / t.simd_rows;
        let (tile, in_tile) = (block / per_tile, block % per_tile);
        let tiles = self.shape.ne0 / t.tile_cols;
        let tile_bytes = t.tile_rows * t.tile_cols / 4;
        let block_bytes = t.simd_rows * t.tile_cols / 4;
        Tl1Block {
            packed: self.packed,
            simd_rows: t.simd_rows,
            tile_cols: t.tile_cols,
            tiles,
            first: tile * tiles * tile_bytes + in_tile * block_bytes,
            stride: tile_bytes,
        }
    }
}

/// One SIMD block of `bm` rows of a [`Tl1Matrix`]. Per K tile of `BK` columns its bytes are inner
/// blocks of `256 / bm` columns, each four 16-byte vectors; vector `v` of an inner block holds rows
/// `16·(v / (64 / bm))..+16` (one byte per row) of pairs `2·(v % (64 / bm))` (high nibble) and the
/// one after it (low nibble), pairs counted from the inner block's first column.
#[derive(Debug, Clone, Copy)]
pub struct Tl1Block<'a> {
    packed: &'a [u8],
    simd_rows: usize,
    tile_cols: usize,
    tiles: usize,
    first: usize,
    stride: usize,
}

impl<'a> Tl1Block<'a> {
    /// `bm`: rows of the block (32 or 64).
    pub fn simd_rows(&self) -> usize {
        self.simd_rows
    }

    /// `BK`: columns per K tile.
    pub fn tile_cols(&self) -> usize {
        self.tile_cols
    }

    /// K tiles (`ne0 / BK`).
    pub fn tiles(&self) -> usize {
        self.tiles
    }

    /// The `bm · BK / 4` bytes of K tile `tile`.
    pub fn tile(&self, tile: usize) -> &'a [u8] {
        &self.packed[self.first + tile * self.stride..][..self.simd_rows * self.tile_cols / 4]
    }
}

impl TernaryFormat for Tl1 {
    fn name(&self) -> &'static str {
        "tl1"
    }

    fn ggml_type_id(&self) -> u32 {
        super::type_id::TL1
    }

    fn byte_size(&self, shape: Shape) -> Result<usize, FormatError> {
        self.geometry(shape)?;
        Ok(shape.elements()? / 4 + 32)
    }

    /// The converter's `transform_to_tl1`: scale = max |w|, codes = sign of w with |w| < 1e-6 → 0.
    fn quantize(&self, weights: &[f32], shape: Shape) -> Result<Vec<u8>, FormatError> {
        let geometry = self.geometry(shape)?;
        check_weights(weights, shape)?;
        let n = shape.elements()?;
        let mut packed = vec![0u8; n / 4 + 32];
        for (m, row) in weights.chunks_exact(shape.ne0.max(1)).enumerate() {
            for (pair, w) in row.chunks_exact(2).enumerate() {
                let (offset, high) = geometry.locate(m, pair);
                put_nibble(
                    &mut packed[offset],
                    pair_index(tl_code(w[0]), tl_code(w[1])),
                    high,
                );
            }
        }
        packed[n / 4..n / 4 + 4].copy_from_slice(&tl_scale(weights).to_le_bytes());
        Ok(packed)
    }

    fn unpack(&self, packed: &[u8], shape: Shape) -> Result<Unpacked, FormatError> {
        let geometry = self.geometry(shape)?;
        check_packed(self, packed, shape)?;
        let n = shape.elements()?;
        let mut codes = vec![0i8; n];
        for (m, row) in codes.chunks_exact_mut(shape.ne0.max(1)).enumerate() {
            for (pair, out) in row.chunks_exact_mut(2).enumerate() {
                let (offset, high) = geometry.locate(m, pair);
                let index = get_nibble(packed[offset], high);
                let (a, b) = split_pair(index).ok_or(FormatError::InvalidIndex {
                    format: "tl1",
                    byte: offset,
                    value: index,
                })?;
                out[0] = a;
                out[1] = b;
            }
        }
        Ok(Unpacked {
            codes,
            scales: Scales::PerTensor(read_f32(packed, n / 4)),
        })
    }
}
