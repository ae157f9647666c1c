//! TL2: bitnet.cpp's x86 LUT format.
//!
//! The first `K3 = ne0 − ne0 % BK` columns go in groups of three weights: a 4-bit magnitude
//! `|9a + 3b + c|` (two per byte) plus one sign bit per group in separate sign blocks. The remaining
//! `ne0 % BK` columns go in pairs as a 4-bit `3a + b + 4`. Both parts use the tiled order of the
//! converter's `preprocess_weights_tl2`; the sections follow each other (magnitudes, signs, pairs).
//! ggml sizes the tensor as `round_up_32((ne0 − 256) · ne1 / 3 · 5 / 8 + 256 · ne1 / 2 · 4 / 8) + 32`,
//! with the f32 scale at the rounded-up offset.

use super::tl_layout::{
    get_nibble, pair_index, put_nibble, split_pair, swapped_row, tl_code, tl_scale,
};
use super::{
    check_packed, check_weights, read_f32, FormatError, Scales, Shape, TernaryFormat, Unpacked,
};

/// Rows per SIMD block (`bm`, fixed at 32 by the code generator).
const SIMD_ROWS: usize = 32;
/// Columns per inner block of the three-weight part (`by = 192 / bm`).
const INNER3: usize = 6;
/// Columns per K block of the two-weight part.
const TILE_COLS2: usize = 32;
/// Columns per inner block of the two-weight part.
const INNER2: usize = 4;

/// TL2 tiling, as passed to `codegen_tl2.py`: `BM` rows per tile and `BK` weights per K block
/// (`bm` is always 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tl2Tiling {
    /// `BM`: rows per tile.
    pub tile_rows: usize,
    /// `BK`: weights per K block of the three-weight part.
    pub tile_cols: usize,
}

impl Tl2Tiling {
    /// `BM` rows per tile and `BK` weights per K block.
    pub const fn new(tile_rows: usize, tile_cols: usize) -> Self {
        Tl2Tiling {
            tile_rows,
            tile_cols,
        }
    }
}

impl std::fmt::Display for Tl2Tiling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BM={} BK={} bm=32", self.tile_rows, self.tile_cols)
    }
}

/// The TL2 format with its tiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tl2 {
    /// The tiling the kernels were generated for.
    pub tiling: Tl2Tiling,
}

/// A checked TL2 geometry for one shape.
struct Geometry {
    tile_rows: usize,
    tile_cols: usize,
    three_cols: usize,
    two_cols: usize,
    magnitude_bytes: usize,
    sign_bytes: usize,
    scale_offset: usize,
}

/// Where the parts of one row-tile coordinate land.
struct RowPos {
    tile: usize,
    block: usize,
    r: usize,
}

impl Geometry {
    fn row(&self, m: usize) -> RowPos {
        let in_tile = m % self.tile_rows;
        RowPos {
            tile: m / self.tile_rows,
            block: in_tile / SIMD_ROWS,
            r: in_tile % SIMD_ROWS,
        }
    }

    fn blocks_per_tile(&self) -> usize {
        self.tile_rows / SIMD_ROWS
    }

    /// Byte and nibble of the magnitude of group `group` (columns `3·group..3·group + 3`).
    fn magnitude(&self, row: &RowPos, group: usize) -> (usize, bool) {
        let col = 3 * group;
        let (tile_k, in_k) = (col / self.tile_cols, col % self.tile_cols);
        let mut offset = row.tile * (self.three_cols / self.tile_cols) + tile_k;
        offset = offset * self.blocks_per_tile() + row.block;
        offset = offset * (self.tile_cols / INNER3) + in_k / INNER3;
        offset = offset * SIMD_ROWS + swapped_row(row.r);
        (offset, (in_k % INNER3) / 3 == 0)
    }

    /// Byte and bit of the sign of group `group`.
    fn sign(&self, row: &RowPos, group: usize) -> (usize, u32) {
        let col = 3 * group;
        let (tile_k, in_k) = (col / self.tile_cols, col % self.tile_cols);
        let group_in_tile = in_k / 3;
        let (sign_block, u) = (group_in_tile / 8, group_in_tile % 8);
        let bit = 15 - (2 * u + row.r / 16);
        let lane = row.r % 16;
        let mut offset = row.tile * (self.three_cols / self.tile_cols) + tile_k;
        offset = offset * self.blocks_per_tile() + row.block;
        offset = offset * (self.tile_cols / 24) + sign_block;
        offset = offset * 32 + 2 * lane + bit / 8;
        (self.magnitude_bytes + offset, (bit % 8) as u32)
    }

    /// Byte and nibble of pair `pair` of the two-weight part (columns `K3 + 2·pair`, `+ 1`).
    fn pair(&self, row: &RowPos, pair: usize) -> (usize, bool) {
        let col = 2 * pair;
        let (tile_k, in_k) = (col / TILE_COLS2, col % TILE_COLS2);
        let mut offset = row.tile * (self.two_cols / TILE_COLS2) + tile_k;
        offset = offset * self.blocks_per_tile() + row.block;
        offset = offset * (TILE_COLS2 / INNER2) + in_k / INNER2;
        offset = offset * SIMD_ROWS + swapped_row(row.r);
        (
            self.magnitude_bytes + self.sign_bytes + offset,
            (in_k % INNER2) / 2 == 0,
        )
    }
}

/// Packed TL2 weights of a known shape and tiling, for the kernels.
///
/// The kernels work on blocks of 32 rows: for each K tile, a block's magnitudes, signs and pairs are
/// contiguous runs of 32-byte vectors (one byte per row, rows 8..16 and 16..24 swapped).
#[derive(Debug, Clone, Copy)]
pub struct Tl2Matrix<'a> {
    packed: &'a [u8],
    shape: Shape,
    tiling: Tl2Tiling,
    three_cols: usize,
    magnitude_bytes: usize,
    sign_bytes: usize,
    scale: f32,
}

impl<'a> Tl2Matrix<'a> {
    /// Wraps packed bytes of the given shape, written with `tiling`.
    pub fn new(tiling: Tl2Tiling, packed: &'a [u8], shape: Shape) -> Result<Self, FormatError> {
        let format = Tl2::new(tiling);
        let g = format.geometry(shape)?;
        check_packed(&format, packed, shape)?;
        Ok(Tl2Matrix {
            packed,
            shape,
            tiling,
            three_cols: g.three_cols,
            magnitude_bytes: g.magnitude_bytes,
            sign_bytes: g.sign_bytes,
            scale: read_f32(packed, g.scale_offset),
        })
    }

    /// The shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The tiling.
    pub fn tiling(&self) -> Tl2Tiling {
        self.tiling
    }

    /// Columns of the three-weight part (`ne0 − ne0 % BK`); the rest go in pairs.
    pub fn three_cols(&self) -> usize {
        self.three_cols
    }

    /// The per-tensor weight scale.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// Number of 32-row blocks.
    pub fn blocks(&self) -> usize {
        self.shape.ne1 / SIMD_ROWS
    }

    /// Block `block` (rows `32·block..32·block + 32`).
    pub fn block(&self, block: usize) -> Tl2Block<'a> {
        let per_tile = self.tiling.tile_rows / SIMD_ROWS;
        let (tile, in_tile) = (block / per_tile, block % per_tile);
        let bk = self.tiling.tile_cols;
        let three_tiles = self.three_cols / bk;
        let two_tiles = (self.shape.ne0 - self.three_cols) / TILE_COLS2;
        let first = |tiles: usize| tile * tiles * per_tile + in_tile;
        Tl2Block {
            packed: self.packed,
            tile_cols: bk,
            three_tiles,
            two_tiles,
            magnitudes: (
                first(three_tiles) * bk / INNER3 * SIMD_ROWS,
                per_tile * bk / INNER3 * SIMD_ROWS,
            ),
            signs: (
                self.magnitude_bytes + first(three_tiles) * bk / 24 * SIMD_ROWS,
                per_tile * bk / 24 * SIMD_ROWS,
            ),
            pairs: (
                self.magnitude_bytes + self.sign_bytes + first(two_tiles) * PAIR_BLOCK_BYTES,
                per_tile * PAIR_BLOCK_BYTES,
            ),
        }
    }
}

/// Bytes of one 32-row block's pairs in one 32-column tile of the two-weight part.
const PAIR_BLOCK_BYTES: usize = TILE_COLS2 / INNER2 * SIMD_ROWS;

/// One 32-row block of a [`Tl2Matrix`]: per K tile, its 32-byte vectors of magnitudes (two groups
/// of three weights per byte, the first in the high nibble), of signs (per 8 groups: row `r`'s sign
/// of group `u` is bit `15 − 2u − r / 16` of little-endian u16 number `r % 16`) and of pairs.
#[derive(Debug, Clone, Copy)]
pub struct Tl2Block<'a> {
    packed: &'a [u8],
    tile_cols: usize,
    three_tiles: usize,
    two_tiles: usize,
    /// (offset of the first tile, stride between tiles) of each section.
    magnitudes: (usize, usize),
    signs: (usize, usize),
    pairs: (usize, usize),
}

impl<'a> Tl2Block<'a> {
    /// `BK`: columns per tile of the three-weight part.
    pub fn tile_cols(&self) -> usize {
        self.tile_cols
    }

    /// Tiles of the three-weight part.
    pub fn three_tiles(&self) -> usize {
        self.three_tiles
    }

    /// Tiles of 32 columns of the two-weight part.
    pub fn two_tiles(&self) -> usize {
        self.two_tiles
    }

    /// The `BK / 6` magnitude vectors of three-weight tile `tile`.
    pub fn magnitudes(&self, tile: usize) -> &'a [u8] {
        let (first, stride) = self.magnitudes;
        &self.packed[first + tile * stride..][..self.tile_cols / INNER3 * SIMD_ROWS]
    }

    /// The `BK / 24` sign vectors of three-weight tile `tile`.
    pub fn signs(&self, tile: usize) -> &'a [u8] {
        let (first, stride) = self.signs;
        &self.packed[first + tile * stride..][..self.tile_cols / 24 * SIMD_ROWS]
    }

    /// The 8 pair vectors of two-weight tile `tile`.
    pub fn pairs(&self, tile: usize) -> &'a [u8] {
        let (first, stride) = self.pairs;
        &self.packed[first + tile * stride..][..PAIR_BLOCK_BYTES]
    }
}

/// `9a + 3b + c` → its three codes, for |value| ≤ 13.
fn split_triple(value: i8) -> (i8, i8, i8) {
    let t = value + 13;
    (t / 9 - 1, (t / 3) % 3 - 1, t % 3 - 1)
}

impl Tl2 {
    /// TL2 with the given tiling.
    pub const fn new(tiling: Tl2Tiling) -> Self {
        Tl2 { tiling }
    }

    fn geometry(&self, shape: Shape) -> Result<Geometry, FormatError> {
        let t = self.tiling;
        let fail = |constraint: &'static str| FormatError::Tiling {
            format: "tl2",
            constraint,
            shape,
            tiling: t.to_string(),
        };
        if t.tile_rows == 0 || !t.tile_rows.is_multiple_of(SIMD_ROWS) {
            return Err(fail("BM % 32 == 0"));
        }
        if t.tile_cols == 0 || !t.tile_cols.is_multiple_of(24) {
            return Err(fail("BK % 24 == 0"));
        }
        if !shape.ne1.is_multiple_of(t.tile_rows) {
            return Err(fail("ne1 % BM == 0"));
        }
        let two_cols = shape.ne0 % t.tile_cols;
        if !two_cols.is_multiple_of(TILE_COLS2) {
            return Err(fail("ne0 % BK % 32 == 0"));
        }
        shape.elements()?;
        let three_cols = shape.ne0 - two_cols;
        let magnitude_bytes = shape.ne1 * three_cols / 6;
        let sign_bytes = shape.ne1 * three_cols / 24;
        let data = magnitude_bytes + sign_bytes + shape.ne1 * two_cols / 4;
        let nominal = ggml_nominal_bytes(shape).ok_or(FormatError::TooLarge { shape })?;
        if usize::try_from(nominal).map_or(true, |nominal| nominal < data) {
            return Err(fail(
                "packed codes fit ggml's size formula (ne0 % BK ≤ 256)",
            ));
        }
        Ok(Geometry {
            tile_rows: t.tile_rows,
            tile_cols: t.tile_cols,
            three_cols,
            two_cols,
            magnitude_bytes,
            sign_bytes,
            scale_offset: round_up_32(nominal as usize),
        })
    }
}

/// ggml's TL2 byte count before the scale: `(ne0 − 256) · ne1 / 3 · 5 / 8 + 256 · ne1 / 2 · 4 / 8`
/// in signed 64-bit arithmetic (C division truncates toward zero).
fn ggml_nominal_bytes(shape: Shape) -> Option<i64> {
    let k = i64::try_from(shape.ne0).ok()?;
    let m = i64::try_from(shape.ne1).ok()?;
    let three = (k - 256).checked_mul(m)? / 3 * 5 / 8;
    let two = 256i64.checked_mul(m)? / 2 * 4 / 8;
    three.checked_add(two)
}

fn round_up_32(n: usize) -> usize {
    n.div_ceil(32) * 32
}

impl TernaryFormat for Tl2 {
    fn name(&self) -> &'static str {
        "tl2"
    }

    fn ggml_type_id(&self) -> u32 {
        super::type_id::TL2
    }

    fn byte_size(&self, shape: Shape) -> Result<usize, FormatError> {
        Ok(self.geometry(shape)?.scale_offset + 32)
    }

    /// The converter's `transform_to_tl2`: scale = max |w|, codes = sign of w with |w| < 1e-6 → 0.
    fn quantize(&self, weights: &[f32], shape: Shape) -> Result<Vec<u8>, FormatError> {
        let g = self.geometry(shape)?;
        check_weights(weights, shape)?;
        let mut packed = vec![0u8; g.scale_offset + 32];
        for (m, row) in weights.chunks_exact(shape.ne0.max(1)).enumerate() {
            let pos = g.row(m);
            let (three, two) = row.split_at(g.three_cols);
            for (group, w) in three.chunks_exact(3).enumerate() {
                let value = 9 * tl_code(w[0]) + 3 * tl_code(w[1]) + tl_code(w[2]);
                let (byte, high) = g.magnitude(&pos, group);
                put_nibble(&mut packed[byte], value.unsigned_abs(), high);
                if value < 0 {
                    let (byte, bit) = g.sign(&pos, group);
                    packed[byte] |= 1 << bit;
                }
            }
            for (pair, w) in two.chunks_exact(2).enumerate() {
                let (byte, high) = g.pair(&pos, pair);
                put_nibble(
                    &mut packed[byte],
                    pair_index(tl_code(w[0]), tl_code(w[1])),
                    high,
                );
            }
        }
        packed[g.scale_offset..g.scale_offset + 4]
            .copy_from_slice(&tl_scale(weights).to_le_bytes());
        Ok(packed)
    }

    fn unpack(&self, packed: &[u8], shape: Shape) -> Result<Unpacked, FormatError> {
        let g = self.geometry(shape)?;
        check_packed(self, packed, shape)?;
        let invalid = |byte: usize, value: u8| FormatError::InvalidIndex {
            format: "tl2",
            byte,
            value,
        };
        let mut codes = vec![0i8; shape.elements()?];
        for (m, row) in codes.chunks_exact_mut(shape.ne0.max(1)).enumerate() {
            let pos = g.row(m);
            let (three, two) = row.split_at_mut(g.three_cols);
            for (group, out) in three.chunks_exact_mut(3).enumerate() {
                let (byte, high) = g.magnitude(&pos, group);
                let magnitude = get_nibble(packed[byte], high);
                if magnitude > 13 {
                    return Err(invalid(byte, magnitude));
                }
                let (sign_byte, bit) = g.sign(&pos, group);
                let negative = packed[sign_byte] >> bit & 1 == 1;
                let value = if negative {
                    -(magnitude as i8)
                } else {
                    magnitude as i8
                };
                (out[0], out[1], out[2]) = split_triple(value);
            }
            for (pair, out) in two.chunks_exact_mut(2).enumerate() {
                let (byte, high) = g.pair(&pos, pair);
                let index = get_nibble(packed[byte], high);
                (out[0], out[1]) = split_pair(index).ok_or(invalid(byte, index))?;
            }
        }
        Ok(Unpacked {
            codes,
            scales: Scales::PerTensor(read_f32(packed, g.scale_offset)),
        })
    }
}
