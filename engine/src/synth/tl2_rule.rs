//! The TL2 tiling the generator picks for each weight shape.

use super::SynthSpec;
use crate::formats::{Shape, TernaryFormat, Tl2, Tl2Tiling};
use crate::gguf::GgmlType;
use crate::model::Tl2Tilings;

/// Preferred `BM` values, largest first.
const TILE_ROWS: [usize; 3] = [128, 64, 32];
/// Preferred `BK` values, tried before the other multiples of 24.
const PREFERRED_TILE_COLS: [usize; 2] = [96, 192];

/// The tiling of TL2 weights with `rows` rows and `cols` columns: `BM` the largest of 128, 64 and
/// 32 dividing `rows`; `BK` 96 if the shape accepts it (`cols % BK % 32 == 0` and
/// `cols % BK ≤ 256`), else 192, else the smallest multiple of 24 up to `cols` that fits. `None`
/// when no tiling fits or ggml cannot size the tensor (fewer than 256 columns, rows not a multiple
/// of 32, …).
pub fn tl2_tiling_rule(rows: usize, cols: usize) -> Option<Tl2Tiling> {
    GgmlType::TL2
        .tensor_bytes(&[cols as u64, rows as u64])
        .ok()?;
    let tile_rows = TILE_ROWS.into_iter().find(|bm| rows.is_multiple_of(*bm))?;
    let shape = Shape::new(cols, rows);
    let others = (1..=cols / 24).map(|n| 24 * n);
    PREFERRED_TILE_COLS
        .into_iter()
        .chain(others)
        .map(|tile_cols| Tl2Tiling {
            tile_rows,
            tile_cols,
        })
        .find(|&tiling| tiling.tile_cols <= cols && Tl2::new(tiling).byte_size(shape).is_ok())
}

/// The tilings of every block linear layer shape of `spec` (by [`tl2_tiling_rule`]); `None` when
/// a shape has none.
pub fn tl2_tilings_of(spec: &SynthSpec) -> Option<Tl2Tilings> {
    let mut table = Tl2Tilings::new();
    for (rows, cols) in spec.linear_shapes() {
        table.insert(rows, cols, tl2_tiling_rule(rows, cols)?);
    }
    Some(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_prefers_large_row_tiles_and_bk_96() {
        let t = tl2_tiling_rule(512, 256).unwrap();
        assert_eq!((t.tile_rows, t.tile_cols), (128, 96));
        let t = tl2_tiling_rule(96, 1536).unwrap();
        assert_eq!((t.tile_rows, t.tile_cols), (32, 96));
        assert_eq!(tl2_tiling_rule(64, 288).unwrap().tile_cols, 96);
        // 352 % 96 = 64 fits.
        assert_eq!(tl2_tiling_rule(64, 352).unwrap().tile_cols, 96);
        // 800 % 96 = 32 fits; 800 % 192 = 32 would too.
        assert_eq!(tl2_tiling_rule(64, 800).unwrap().tile_cols, 96);
        assert!(tl2_tiling_rule(48, 256).is_none());
        assert!(tl2_tiling_rule(64, 128).is_none());
        assert!(tl2_tiling_rule(64, 300).is_none());
    }
}
