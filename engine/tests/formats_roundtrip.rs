//! Property tests of the weight formats: pack/unpack round trips and dequantization error bounds.

use bitnet_engine::formats::{
    ternarize, FormatError, I2s, Scales, Shape, TernaryFormat, Tl1, Tl1Tiling, Tl2, Tl2Tiling,
    Tq1_0, Tq2_0, QK_K,
};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(48)
}

/// Row-major values of a shape, from a seed (a mix of magnitudes, exact zeros and ties).
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let unit = (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            match state % 7 {
                0 => 0.0,
                1 => unit * 1e-7,
                2 => ((state >> 8) % 5) as f32 * 0.25 - 0.5,
                _ => unit,
            }
        })
        .collect()
}

/// Ternary codes scaled by `scale`.
fn ternary(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    values(seed, n)
        .into_iter()
        .map(|v| match (v * 1000.0) as i32 % 3 {
            0 => 0.0,
            1 | -2 => scale,
            _ => -scale,
        })
        .collect()
}

/// Every format must reproduce ternary weights of one magnitude exactly and repack them identically.
fn assert_exact_round_trip(format: &dyn TernaryFormat, weights: &[f32], shape: Shape) {
    let packed = format.quantize(weights, shape).unwrap();
    assert_eq!(packed.len(), format.byte_size(shape).unwrap());
    let unpacked = format.unpack(&packed, shape).unwrap();
    assert!(unpacked.codes.iter().all(|c| (-1..=1).contains(c)));
    let restored = format.dequantize(&packed, shape).unwrap();
    assert_eq!(restored, weights, "{} {shape}", format.name());
    assert_eq!(format.quantize(&restored, shape).unwrap(), packed);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn i2s_round_trips_ternarized_weights(seed: u64, rows in 1usize..5, blocks in 1usize..5) {
        let shape = Shape::new(128 * blocks, rows);
        let master = values(seed, rows * 128 * blocks);
        let weights = ternarize(&master);
        assert_exact_round_trip(&I2s, &weights, shape);
    }

    #[test]
    fn i2s_codes_are_signs_and_scale_is_absmax(seed: u64, rows in 1usize..4, blocks in 1usize..3) {
        let shape = Shape::new(128 * blocks, rows);
        let weights = values(seed, rows * 128 * blocks);
        let unpacked = I2s.unpack(&I2s.quantize(&weights, shape).unwrap(), shape).unwrap();
        let absmax = weights.iter().fold(0f32, |m, w| m.max(w.abs()));
        prop_assert_eq!(unpacked.scales, Scales::PerTensor(absmax));
        for (code, w) in unpacked.codes.iter().zip(&weights) {
            let expected = if f64::from(w.abs()) < 1e-6 { 0 } else if *w > 0.0 { 1 } else { -1 };
            prop_assert_eq!(*code, expected);
        }
    }

    #[test]
    fn tq_formats_round_trip_and_agree(seed: u64, rows in 1usize..4, blocks in 1usize..3, scale in 0.01f32..10.0) {
        let shape = Shape::new(QK_K * blocks, rows);
        // The fp16 block scale must hold the magnitude exactly for the weights to come back bit for bit.
        let weights = ternary(seed, shape.ne0 * rows, half::f16::from_f32(scale).to_f32());
        let every_block_nonzero = weights.chunks(QK_K).all(|b| b.iter().any(|w| *w != 0.0));
        prop_assume!(every_block_nonzero);
        assert_exact_round_trip(&Tq1_0, &weights, shape);
        assert_exact_round_trip(&Tq2_0, &weights, shape);
    }

    #[test]
    fn tq_dequantization_error_is_within_half_a_step(seed: u64, rows in 1usize..4, blocks in 1usize..3) {
        let shape = Shape::new(QK_K * blocks, rows);
        let weights = values(seed, shape.ne0 * rows);
        let tq1 = Tq1_0.unpack(&Tq1_0.quantize(&weights, shape).unwrap(), shape).unwrap();
        let tq2 = Tq2_0.unpack(&Tq2_0.quantize(&weights, shape).unwrap(), shape).unwrap();
        prop_assert_eq!(&tq1.codes, &tq2.codes);
        let restored = tq2.to_f32();
        for (block, (w, r)) in weights.chunks(QK_K).zip(restored.chunks(QK_K)).enumerate() {
            let d = w.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d16 = tq2.scales.scale_of(block * QK_K);
            let bound = 0.5 * d + (d - d16).abs() + f32::EPSILON * d;
            for (a, b) in w.iter().zip(r) {
                prop_assert!((a - b).abs() <= bound, "block {block}: {a} vs {b}, bound {bound}");
            }
        }
    }

    #[test]
    fn tl1_round_trips_any_valid_tiling(
        seed: u64,
        wide in any::<bool>(),
        row_blocks in 1usize..3,
        row_tiles in 1usize..3,
        inner_blocks in 1usize..4,
        col_tiles in 1usize..4,
    ) {
        let simd_rows = if wide { 64 } else { 32 };
        let tiling = Tl1Tiling {
            tile_rows: simd_rows * row_blocks,
            tile_cols: 256 / simd_rows * inner_blocks,
            simd_rows,
        };
        let shape = Shape::new(tiling.tile_cols * col_tiles, tiling.tile_rows * row_tiles);
        let weights = ternary(seed, shape.ne0 * shape.ne1, 0.75);
        assert_exact_round_trip(&Tl1::new(tiling), &weights, shape);
    }

    #[test]
    fn tl2_round_trips_any_valid_tiling(
        seed: u64,
        row_blocks in 1usize..3,
        row_tiles in 1usize..3,
        col_groups in 1usize..5,
        col_tiles in 0usize..4,
        tail_blocks in 0usize..3,
    ) {
        let tiling = Tl2Tiling { tile_rows: 32 * row_blocks, tile_cols: 24 * col_groups };
        let tail = 32 * tail_blocks;
        prop_assume!(tail < tiling.tile_cols && col_tiles * tiling.tile_cols + tail > 0);
        let shape = Shape::new(tiling.tile_cols * col_tiles + tail, tiling.tile_rows * row_tiles);
        let weights = ternary(seed, shape.ne0 * shape.ne1, 1.5);
        assert_exact_round_trip(&Tl2::new(tiling), &weights, shape);
    }
}

#[test]
fn shapes_that_do_not_fit_are_errors() {
    let weights = vec![0.5f32; 200];
    let odd = Shape::new(100, 2);
    assert!(matches!(
        I2s.quantize(&weights, odd),
        Err(FormatError::RowNotBlockAligned { block: 128, .. })
    ));
    assert!(matches!(
        Tq1_0.byte_size(odd),
        Err(FormatError::RowNotBlockAligned { block: 256, .. })
    ));
    assert!(matches!(
        Tq2_0.unpack(&[0u8; 10], odd),
        Err(FormatError::RowNotBlockAligned { .. })
    ));
    assert!(matches!(
        I2s.quantize(&weights, Shape::new(128, 2)),
        Err(FormatError::WeightCount {
            expected: 256,
            actual: 200
        })
    ));
    assert!(matches!(
        I2s.unpack(&[0u8; 10], Shape::new(128, 1)),
        Err(FormatError::PackedSize {
            expected: 64,
            actual: 10,
            ..
        })
    ));
    assert!(matches!(
        I2s.byte_size(Shape::new(usize::MAX / 256 * 128, 128)),
        Err(FormatError::TooLarge { .. })
    ));
    let tl1 = Tl1::new(Tl1Tiling {
        tile_rows: 64,
        tile_cols: 32,
        simd_rows: 48,
    });
    assert!(matches!(
        tl1.byte_size(Shape::new(64, 64)),
        Err(FormatError::Tiling { .. })
    ));
    let tl2 = Tl2::new(Tl2Tiling {
        tile_rows: 32,
        tile_cols: 96,
    });
    assert!(matches!(
        tl2.byte_size(Shape::new(96 + 16, 32)),
        Err(FormatError::Tiling { .. })
    ));
    assert!(matches!(
        tl2.byte_size(Shape::new(96, 48)),
        Err(FormatError::Tiling { .. })
    ));
}

#[test]
fn invalid_lut_indices_are_errors() {
    let tl1 = Tl1::new(Tl1Tiling {
        tile_rows: 32,
        tile_cols: 8,
        simd_rows: 32,
    });
    let shape = Shape::new(8, 32);
    let mut packed = tl1.quantize(&[0.0; 256], shape).unwrap();
    packed[0] = 0xf4;
    assert!(matches!(
        tl1.unpack(&packed, shape),
        Err(FormatError::InvalidIndex { value: 15, .. })
    ));
    let tl2 = Tl2::new(Tl2Tiling {
        tile_rows: 32,
        tile_cols: 24,
    });
    let shape = Shape::new(24, 32);
    let mut packed = tl2.quantize(&[0.0; 768], shape).unwrap();
    packed[0] = 0xe0;
    assert!(matches!(
        tl2.unpack(&packed, shape),
        Err(FormatError::InvalidIndex { value: 14, .. })
    ));
}
