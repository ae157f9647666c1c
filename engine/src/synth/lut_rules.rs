//! The TL1 and TL2 tilings the generator picks for each weight shape.

use super::SynthSpec;
use crate::formats::{Shape, TernaryFormat, Tl1, Tl1Tiling, Tl2, Tl2Tiling};
use crate::gguf::GgmlType;
use crate::model::{LutTiling, LutTilings, Tl1Tilings, Tl2Tilings};

/// `BM` values for TL1, largest first.
const TL1_TILE_ROWS: [usize; 4] = [256, 128, 64, 32];

/// The tiling of TL1 weights with `rows` rows and `cols` columns, after the pairs in bitnet.cpp's
/// preset kernel configs: `BM` the largest of 256, 128, 64 and 32 dividing `rows`; `bm` 32 when
/// `BM` is 256 or 32, else 64; `BK` the largest of 128 (64 when `bm` = 64) and its halves down
/// to `256 / bm` that divides `cols`. `None` when none fits.
pub fn tl1_tiling_rule(rows: usize, cols: usize) -> Option<Tl1Tiling> {
    GgmlType::TL1
        .tensor_bytes(&[cols as u64, rows as u64])
        .ok()?;
    let tile_rows = TL1_TILE_ROWS
        .into_iter()
        .find(|bm| rows.is_multiple_of(*bm))?;
    let simd_rows = if matches!(tile_rows, 256 | 32) {
        32
    } else {
        64
    };
    let preferred = if simd_rows == 32 { 128 } else { 64 };
    let shape = Shape::new(cols, rows);
    std::iter::successors(Some(preferred), |bk| Some(bk / 2))
        .take_while(|&bk| bk >= 256 / simd_rows)
        .map(|tile_cols| Tl1Tiling::new(tile_rows, tile_cols, simd_rows))
        .find(|&tiling| Tl1::new(tiling).byte_size(shape).is_ok())
}

/// The tilings of every block linear layer shape of `spec` (by [`tl1_tiling_rule`]); `None` when
/// a shape has none.
pub fn tl1_tilings_of(spec: &SynthSpec) -> Option<Tl1Tilings> {
    tilings_of(spec, tl1_tiling_rule)
}

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
    tilings_of(spec, tl2_tiling_rule)
}

fn tilings_of<T: LutTiling>(
    spec: &SynthSpec,
    rule: fn(usize, usize) -> Option<T>,
) -> Option<LutTilings<T>> {
    let mut table = LutTilings::new();
    for (rows, cols) in spec.linear_shapes() {
        table.insert(rows, cols, rule(rows, cols)?);
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

    #[test]
    fn the_tl1_rule_follows_the_preset_pairs() {
        assert_eq!(
            tl1_tiling_rule(1536, 4096),
            Some(Tl1Tiling::new(256, 128, 32))
        );
        assert_eq!(
            tl1_tiling_rule(128, 1536),
            Some(Tl1Tiling::new(128, 64, 64))
        );
        assert_eq!(tl1_tiling_rule(64, 36), Some(Tl1Tiling::new(64, 4, 64)));
        assert_eq!(tl1_tiling_rule(96, 24), Some(Tl1Tiling::new(32, 8, 32)));
        assert!(tl1_tiling_rule(48, 256).is_none());
        assert!(tl1_tiling_rule(32, 12).is_none());
    }
}
