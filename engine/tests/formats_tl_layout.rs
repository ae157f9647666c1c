//! TL1/TL2 byte layouts pinned against the reference converter.
//!
//! The expected lengths and FNV-1a hashes were produced by running the reference's own
//! `process_tl1` / `preprocess_three_weights_tl2` / `preprocess_two_weights_tl2` (from
//! `utils/convert-hf-to-gguf-bitnet.py`) on the deterministic code pattern below.

use bitnet_engine::formats::{Shape, TernaryFormat, Tl1, Tl1Tiling, Tl2, Tl2Tiling};

/// The code pattern: a small hash of (row, column) reduced to −1, 0, +1.
fn pattern(rows: usize, cols: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * cols);
    for m in 0..rows as u64 {
        for k in 0..cols as u64 {
            let mut h = m * 1_000_003 + k * 7_919;
            h ^= h >> 7;
            out.push((h % 3) as f32 - 1.0);
        }
    }
    out
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[test]
fn tl1_layout_matches_reference_converter() {
    // (rows M, cols K, BM, BK, bm, packed code bytes, hash)
    let cases = [
        (64, 32, 64, 32, 32, 512, 0xe9db_1bc8_cf8c_b573u64),
        (128, 64, 64, 16, 32, 2048, 0x8f1f_e837_c37d_5fc5),
        (128, 16, 128, 8, 64, 512, 0xf0dc_e89b_a97a_13f2),
    ];
    for (m, k, bm_tile, bk, bm, data_len, hash) in cases {
        let format = Tl1::new(Tl1Tiling {
            tile_rows: bm_tile,
            tile_cols: bk,
            simd_rows: bm,
        });
        let shape = Shape::new(k, m);
        let weights = pattern(m, k);
        let packed = format.quantize(&weights, shape).unwrap();
        assert_eq!(packed.len(), data_len + 32, "{shape}");
        assert_eq!(
            fnv1a(&packed[..data_len]),
            hash,
            "{shape} {}",
            format.tiling
        );
        assert_eq!(
            f32::from_le_bytes(packed[data_len..data_len + 4].try_into().unwrap()),
            1.0
        );
        assert_eq!(format.dequantize(&packed, shape).unwrap(), weights);
    }
}

#[test]
fn tl2_layout_matches_reference_converter() {
    // (rows M, cols K, BM, BK, packed code bytes, hash)
    let cases = [
        (64, 80, 32, 48, 1152, 0x0a69_64a6_5e22_f345u64),
        (64, 224, 64, 96, 3072, 0x32f8_a21c_0e86_18bb),
        (32, 96, 32, 96, 640, 0x33a1_aa0f_de90_435d),
    ];
    for (m, k, bm_tile, bk, data_len, hash) in cases {
        let format = Tl2::new(Tl2Tiling {
            tile_rows: bm_tile,
            tile_cols: bk,
        });
        let shape = Shape::new(k, m);
        let weights = pattern(m, k);
        let packed = format.quantize(&weights, shape).unwrap();
        assert_eq!(
            fnv1a(&packed[..data_len]),
            hash,
            "{shape} {}",
            format.tiling
        );
        assert_eq!(format.dequantize(&packed, shape).unwrap(), weights);
    }
}
