//! The reference's ternary kernels against layouts and arithmetic written out independently.

mod common;

use bitnet_ffi_cpp::{Backend, GgmlType, I8Activations, RefError};
use common::Rng;
use half::f16;

const QK_K: usize = 256;

fn backend() -> Backend {
    Backend::init().expect("reference backend")
}

/// `rows` × `cols` ternary values and the same values times `scale`.
fn ternary_matrix(rng: &mut Rng, rows: usize, cols: usize, scale: f32) -> (Vec<i8>, Vec<f32>) {
    let trits = (0..rows * cols).map(|_| rng.trit()).collect::<Vec<_>>();
    let values = trits.iter().map(|&t| f32::from(t) * scale).collect();
    (trits, values)
}

/// I2_S as documented: blocks of 128 weights in 32 bytes, byte j holding weights j, j+32,
/// j+64, j+96 from the high bits down; code = trit + 1; one f32 scale at n/4; 32 bytes
/// reserved for it.
fn expected_i2_s(trits: &[i8], scale: f32) -> Vec<u8> {
    let n = trits.len();
    let mut bytes = vec![0u8; n / 4 + 32];
    for (i, &t) in trits.iter().enumerate() {
        let (block, j) = (i / 128, i % 128);
        let code = (t + 1) as u8;
        bytes[block * 32 + j % 32] |= code << (6 - 2 * (j / 32));
    }
    bytes[n / 4..n / 4 + 4].copy_from_slice(&scale.to_le_bytes());
    bytes
}

/// TQ2_0 as documented: per 256 values, qs[64] then f16 d; element e in byte
/// 32·(e/128) + e%32 at bits 2·((e%128)/32), low bits first.
fn expected_tq2_0(trits: &[i8], d: f32) -> Vec<u8> {
    let mut bytes = Vec::new();
    for block in trits.chunks(QK_K) {
        let mut qs = [0u8; 64];
        for (e, &t) in block.iter().enumerate() {
            qs[32 * (e / 128) + e % 32] |= ((t + 1) as u8) << (2 * ((e % 128) / 32));
        }
        bytes.extend_from_slice(&qs);
        bytes.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
    }
    bytes
}

/// Five (or four) trits, first most significant, stored as ceil(q·256/243).
fn pack_trits(trits: impl Iterator<Item = i8>) -> u8 {
    let q = trits.fold(0u16, |q, t| q * 3 + (t + 1) as u16);
    (q * 256).div_ceil(243) as u8
}

/// TQ1_0 as documented: per 256 values qs[48], qh[4], f16 d. qs[m] (m < 32) holds elements
/// m + 32n, qs[32 + m] holds 160 + m + 16n, qh[j] holds 240 + j + 4m plus a zero trit.
fn expected_tq1_0(trits: &[i8], d: f32) -> Vec<u8> {
    let mut bytes = Vec::new();
    for b in trits.chunks(QK_K) {
        for m in 0..32 {
            bytes.push(pack_trits((0..5).map(|n| b[m + 32 * n])));
        }
        for m in 0..16 {
            bytes.push(pack_trits((0..5).map(|n| b[160 + m + 16 * n])));
        }
        for j in 0..4 {
            bytes.push(pack_trits((0..4).map(|m| b[240 + j + 4 * m]).chain([-1])));
        }
        bytes.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
    }
    bytes
}

/// Trit n of a TQ1_0 byte, decoded the documented way.
fn tq1_trit(byte: u8, n: u32) -> i8 {
    let shifted = byte.wrapping_mul(3u8.pow(n));
    ((u16::from(shifted) * 3) >> 8) as i8 - 1
}

#[test]
fn i2_s_bytes_follow_the_documented_layout() {
    let be = backend();
    let mut rng = Rng::new(1);
    let (rows, cols, scale) = (3, 256, 0.375f32);
    let (trits, values) = ternary_matrix(&mut rng, rows, cols, scale);
    let bytes = be.quantize(GgmlType::I2_S, &values, cols).unwrap();
    assert_eq!(bytes.len(), rows * cols / 4 + 32);
    assert_eq!(bytes, expected_i2_s(&trits, scale));
    assert_eq!(
        be.tensor_nbytes(GgmlType::I2_S, [cols as u64, rows as u64, 1, 1])
            .unwrap(),
        bytes.len() as u64
    );
}

#[test]
fn i2_s_codes_follow_the_sign_only() {
    // The reference ternarizes by sign (|x| < 1e-6 is zero); it expects pre-ternarized input.
    let be = backend();
    let mut values = vec![0.0f32; 128];
    values[0] = 1.0;
    values[1] = 0.01;
    values[2] = -0.01;
    values[3] = 5e-7;
    let bytes = be.quantize(GgmlType::I2_S, &values, 128).unwrap();
    let code = |i: usize| (bytes[i % 32] >> (6 - 2 * (i / 32))) & 3;
    assert_eq!(
        [code(0), code(1), code(2), code(3), code(4)],
        [2, 2, 0, 1, 1]
    );
    assert_eq!(f32::from_le_bytes(bytes[32..36].try_into().unwrap()), 1.0);
}

#[test]
fn tq2_0_bytes_follow_the_documented_layout_and_dequantize_back() {
    let be = backend();
    let mut rng = Rng::new(2);
    let (trits, values) = ternary_matrix(&mut rng, 2, 2 * QK_K, 0.75);
    let bytes = be.quantize(GgmlType::TQ2_0, &values, 2 * QK_K).unwrap();
    assert_eq!(bytes, expected_tq2_0(&trits, 0.75));
    assert_eq!(
        be.dequantize(GgmlType::TQ2_0, &bytes, values.len())
            .unwrap(),
        values
    );
}

#[test]
fn tq1_0_bytes_follow_the_documented_layout_and_dequantize_back() {
    let be = backend();
    let mut rng = Rng::new(3);
    let (trits, values) = ternary_matrix(&mut rng, 3, QK_K, 1.5);
    let bytes = be.quantize(GgmlType::TQ1_0, &values, QK_K).unwrap();
    assert_eq!(bytes, expected_tq1_0(&trits, 1.5));
    for m in 0..32 {
        for n in 0..5 {
            assert_eq!(tq1_trit(bytes[m], n), trits[m + 32 * n as usize]);
        }
    }
    assert_eq!(
        be.dequantize(GgmlType::TQ1_0, &bytes, values.len())
            .unwrap(),
        values
    );
}

/// The activation quantization written out: amax in f64 floored at 1e-5, s = 127/amax as
/// f32, q = round-half-even(x·s) clamped to i8.
fn expected_i8_s(x: &[f32]) -> I8Activations {
    let amax = x.iter().fold(1e-5f64, |m, &v| m.max(f64::from(v.abs())));
    let scale = (127.0 / amax) as f32;
    let q = x
        .iter()
        .map(|&v| (v * scale).round_ties_even().clamp(-128.0, 127.0) as i8)
        .collect::<Vec<_>>();
    let sum = q.iter().map(|&v| i32::from(v)).sum();
    I8Activations { q, scale, sum }
}

#[test]
fn i8_s_activation_quantization_matches_its_definition() {
    let be = backend();
    let mut rng = Rng::new(4);
    let mut x = (0..512).map(|_| rng.uniform() * 3.0).collect::<Vec<_>>();
    x[7] = 0.5 / (127.0 / 3.0); // lands near a rounding tie
    assert_eq!(be.quantize_i8_s(&x).unwrap(), expected_i8_s(&x));
    let zeros = vec![0.0f32; 128];
    assert_eq!(be.quantize_i8_s(&zeros).unwrap(), expected_i8_s(&zeros));
}

#[test]
fn i2_s_dot_product_matches_the_scalar_formula() {
    let be = backend();
    let mut rng = Rng::new(5);
    for (rows, k) in [(1, 128), (4, 512), (2, 128 * 40)] {
        let w_scale = 0.625f32;
        let (trits, weights) = ternary_matrix(&mut rng, rows, k, w_scale);
        let packed = be.quantize(GgmlType::I2_S, &weights, k).unwrap();
        let stored_scale =
            f32::from_le_bytes(packed[rows * k / 4..rows * k / 4 + 4].try_into().unwrap());
        assert_eq!(stored_scale, w_scale);
        let x = (0..k).map(|_| rng.uniform()).collect::<Vec<_>>();
        let acts = be.quantize_i8_s(&x).unwrap();
        let mut gemv = vec![0f32; rows];
        be.gemv_i2_i8_s(&packed, rows, &acts, stored_scale, &mut gemv)
            .unwrap();
        for r in 0..rows {
            let row = &packed[r * k / 4..(r + 1) * k / 4];
            let dot = be.vec_dot_i2_i8_s(row, &acts, stored_scale).unwrap();
            assert_eq!(gemv[r], dot.scaled, "gemv row {r}");
            let codes_dot: i32 = trits[r * k..(r + 1) * k]
                .iter()
                .zip(&acts.q)
                .map(|(&t, &q)| i32::from(t + 1) * i32::from(q))
                .sum();
            assert_eq!(dot.raw, codes_dot as f32, "rows={rows} k={k} r={r}");
            let scaled = (codes_dot - acts.sum) as f32 / acts.scale * w_scale;
            assert_eq!(dot.scaled, scaled, "rows={rows} k={k} r={r}");
            let exact: f64 = weights[r * k..(r + 1) * k]
                .iter()
                .zip(&x)
                .map(|(&w, &v)| f64::from(w) * f64::from(v))
                .sum();
            let tolerance = 0.01 * f64::from(w_scale) * (k as f64).sqrt();
            assert!(
                (f64::from(dot.scaled) - exact).abs() < tolerance,
                "{} vs {exact}",
                dot.scaled
            );
        }
    }
}

/// Q8_K: f32 d, then 256 i8 quants, then 16 i16 block sums.
fn q8_k_block(bytes: &[u8], block: usize) -> (f32, &[u8]) {
    let b = &bytes[block * 292..(block + 1) * 292];
    (
        f32::from_le_bytes(b[0..4].try_into().unwrap()),
        &b[4..4 + QK_K],
    )
}

#[test]
fn tq_dot_products_with_q8_k_match_the_scalar_formula() {
    let be = backend();
    let mut rng = Rng::new(6);
    let n = 2 * QK_K;
    let x = (0..n).map(|_| rng.uniform() * 2.0).collect::<Vec<_>>();
    let q8 = be.quantize_row(GgmlType::Q8_K, &x).unwrap();
    assert_eq!(q8.len(), 2 * 292);
    for block in 0..2 {
        let (d, qs) = q8_k_block(&q8, block);
        for (j, &q) in qs.iter().enumerate() {
            let q = q as i8;
            assert!((-127..=127).contains(&q));
            assert!((f32::from(q) * d - x[block * QK_K + j]).abs() <= d.abs() * 0.5 + 1e-6);
        }
    }
    for ty in [GgmlType::TQ1_0, GgmlType::TQ2_0] {
        let (trits, weights) = ternary_matrix(&mut rng, 1, n, 0.5);
        let packed = be.quantize(ty, &weights, n).unwrap();
        let dot = be.vec_dot(ty, n, &packed, &q8).unwrap();
        let expected: f64 = (0..2)
            .map(|block| {
                let (d, qs) = q8_k_block(&q8, block);
                let isum: i32 = qs
                    .iter()
                    .zip(&trits[block * QK_K..(block + 1) * QK_K])
                    .map(|(&q, &t)| i32::from(q as i8) * i32::from(t))
                    .sum();
                f64::from(d) * 0.5 * f64::from(isum)
            })
            .sum();
        assert!(
            (f64::from(dot) - expected).abs() <= 1e-5 * expected.abs().max(1.0),
            "{ty}: {dot} vs {expected}"
        );
    }
}

#[test]
fn type_table_and_sizes_come_from_the_reference() {
    let be = backend();
    let i2 = be.type_info(GgmlType::I2_S).unwrap();
    assert_eq!(
        (i2.name.as_str(), i2.block_size, i2.type_size),
        ("i2_s", 1, 1)
    );
    assert_eq!(i2.vec_dot_type, GgmlType::I8_S);
    assert!(!i2.has_to_float);
    let tq2 = be.type_info(GgmlType::TQ2_0).unwrap();
    assert_eq!(
        (tq2.name.as_str(), tq2.block_size, tq2.type_size),
        ("tq2_0", 256, 66)
    );
    assert_eq!(tq2.vec_dot_type, GgmlType::Q8_K);
    let tq1 = be.type_info(GgmlType::TQ1_0).unwrap();
    assert_eq!((tq1.block_size, tq1.type_size), (256, 54));
    assert_eq!(
        be.tensor_nbytes(GgmlType::TQ2_0, [512, 3, 1, 1]).unwrap(),
        3 * 2 * 66
    );
    assert_eq!(
        be.tensor_nbytes(GgmlType::F16, [7, 5, 2, 1]).unwrap(),
        7 * 5 * 2 * 2
    );
    assert_eq!(
        be.tensor_nbytes(GgmlType::I2_S, [2560, 6912, 1, 1])
            .unwrap(),
        2560 * 6912 / 4 + 32
    );
}

fn expect_unsupported<T: std::fmt::Debug>(result: Result<T, RefError>) {
    assert!(
        matches!(result, Err(RefError::Unsupported { .. })),
        "expected Unsupported, got {result:?}"
    );
}

fn expect_invalid<T: std::fmt::Debug>(result: Result<T, RefError>) {
    assert!(
        matches!(result, Err(RefError::InvalidArgument { .. })),
        "expected InvalidArgument, got {result:?}"
    );
}

#[test]
fn bad_requests_are_errors() {
    let be = backend();
    expect_unsupported(be.type_info(GgmlType(4)));
    expect_invalid(be.type_info(GgmlType(99)));
    expect_invalid(be.type_info(GgmlType(u32::MAX)));
    expect_invalid(be.tensor_nbytes(GgmlType::TQ2_0, [100, 1, 1, 1]));
    expect_invalid(be.tensor_nbytes(GgmlType::F32, [0, 1, 1, 1]));
    expect_invalid(be.tensor_nbytes(GgmlType::F32, [u64::MAX, 1, 1, 1]));
    expect_invalid(be.tensor_nbytes(GgmlType::F32, [1 << 40, 1 << 40, 1, 1]));
    expect_unsupported(be.quantize(GgmlType::F16, &[0.0; 256], 256));
    expect_invalid(be.quantize(GgmlType::Q6_K, &[0.0; 128], 128));
    expect_invalid(be.quantize(GgmlType::I2_S, &[0.0; 100], 100));
    expect_invalid(be.quantize(GgmlType::TQ2_0, &[0.0; 300], 150));
    expect_invalid(be.quantize(GgmlType::TQ2_0, &[], 256));
    expect_unsupported(be.dequantize(GgmlType::I2_S, &[0; 64], 128));
    expect_invalid(be.dequantize(GgmlType::TQ2_0, &[0; 65], 256));
    expect_unsupported(be.quantize_row(GgmlType::I2_S, &[0.0; 128]));
    expect_invalid(be.quantize_row(GgmlType::Q8_K, &[0.0; 100]));
    expect_invalid(be.quantize_i8_s(&[]));
    let acts = be.quantize_i8_s(&[1.0; 128]).unwrap();
    expect_invalid(be.vec_dot_i2_i8_s(&[0; 31], &acts, 1.0));
    let short = be.quantize_i8_s(&[1.0; 100]).unwrap();
    expect_invalid(be.vec_dot_i2_i8_s(&[0; 64], &short, 1.0));
    expect_invalid(be.gemv_i2_i8_s(&[0; 63], 2, &acts, 1.0, &mut [0.0; 2]));
    expect_invalid(be.gemv_i2_i8_s(&[0; 64], 2, &acts, 1.0, &mut [0.0; 1]));
    expect_unsupported(be.vec_dot(GgmlType::I2_S, 128, &[0; 64], &[0; 128]));
    expect_invalid(be.vec_dot(GgmlType::TQ2_0, 256, &[0; 66], &[0; 100]));
}
