//! The engine's Q8_0 and Q6_K formats and products against the linked reference, bit for bit:
//! file quantization, activation quantization, dequantization (what `get_rows` returns for an
//! embedding row) and the dot products its `mul_mat` takes on this machine.

use bitnet_conformance::inputs::SeededRng;
use bitnet_engine::formats::{
    BlockQ8K, BlockQ8_0, Q6KMatrix, Q8_0Activations, Q8_0Matrix, Shape, Q6_K, Q6_K_BLOCK_BYTES,
    Q8_0, Q8_0_BLOCK_BYTES, QK8_0, QK_K,
};
use bitnet_engine::kernels::block_dots::{q6k_dot_ref, q8_0_dot_ref};
use bitnet_ffi_cpp::{Backend, GgmlType};
use half::f16;
use proptest::prelude::*;

/// Bytes of one `block_q8_K`: f32 `d`, 256 codes, sixteen i16 group sums.
const Q8_K_BLOCK_BYTES: usize = 4 + QK_K + 2 * (QK_K / 16);

fn backend() -> Backend {
    Backend::init().expect("reference backend")
}

/// Gaussian values times `2^exponent`, with every seventh block of 32 zeroed and, when `ties`,
/// rounded to halves of the block's quantization step (values the two roundings disagree on).
fn values(seed: u64, n: usize, exponent: i32, ties: bool) -> Vec<f32> {
    let mut rng = SeededRng::new(seed);
    let scale = 2f64.powi(exponent);
    let mut x: Vec<f32> = (0..n).map(|_| (rng.gaussian() * scale) as f32).collect();
    for (b, block) in x.chunks_mut(QK8_0).enumerate() {
        if b % 7 == 6 {
            block.fill(0.0);
        } else if ties {
            let step = 0.5f32.powi(3 - exponent);
            block
                .iter_mut()
                .for_each(|v| *v = (*v / step).round() * step);
            block[0] = 127.0 * 2.0 * step;
        }
    }
    x
}

/// Random bytes for `blocks` blocks of `block_bytes`, the f16 scale at `d_at` of each made finite.
fn raw_blocks(seed: u64, blocks: usize, block_bytes: usize, d_at: usize) -> Vec<u8> {
    let mut rng = SeededRng::new(seed);
    let mut bytes: Vec<u8> = (0..blocks * block_bytes)
        .map(|_| rng.next_u64() as u8)
        .collect();
    for block in bytes.chunks_exact_mut(block_bytes) {
        let d = f16::from_f32((rng.gaussian() * 0.05) as f32);
        block[d_at..d_at + 2].copy_from_slice(&d.to_le_bytes());
    }
    bytes
}

fn q8_0_blocks(bytes: &[u8]) -> Vec<BlockQ8_0> {
    bytes
        .chunks_exact(Q8_0_BLOCK_BYTES)
        .map(|block| BlockQ8_0::from_bytes(block.try_into().expect("whole blocks")))
        .collect()
}

/// The reference's Q8_K bytes as the engine's blocks.
fn q8k_blocks(bytes: &[u8]) -> Vec<BlockQ8K> {
    bytes
        .chunks_exact(Q8_K_BLOCK_BYTES)
        .map(|b| BlockQ8K {
            d: f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            qs: std::array::from_fn(|i| b[4 + i] as i8),
            bsums: std::array::from_fn(|g| {
                i16::from_le_bytes([b[4 + QK_K + 2 * g], b[5 + QK_K + 2 * g]])
            }),
        })
        .collect()
}

/// Asserts the same bits, or NaN on both sides.
fn assert_same_values(engine: &[f32], reference: &[f32]) {
    assert_eq!(engine.len(), reference.len());
    for (i, (a, b)) in engine.iter().zip(reference).enumerate() {
        assert!(
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            "value {i}: engine {a:e}, reference {b:e}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn q8_0_weights_pack_to_the_reference_bytes(
        seed: u64, rows in 1usize..5, blocks in 1usize..6, exponent in -12i32..12, ties: bool,
    ) {
        let shape = Shape::new(QK8_0 * blocks, rows);
        let x = values(seed, shape.ne0 * rows, exponent, ties);
        let engine = Q8_0.quantize(&x, shape).unwrap();
        let reference = backend().quantize(GgmlType::Q8_0, &x, shape.ne0).unwrap();
        prop_assert_eq!(engine, reference);
    }

    #[test]
    fn q8_0_activations_quantize_to_the_reference_bytes(
        seed: u64, blocks in 1usize..9, exponent in -12i32..12, ties: bool,
    ) {
        let k = QK8_0 * blocks;
        let x = values(seed, k, exponent, ties);
        let engine: Vec<u8> = Q8_0Activations::quantize(&x, k)
            .unwrap()
            .blocks()
            .iter()
            .flat_map(BlockQ8_0::to_bytes)
            .collect();
        let reference = backend().quantize_row(GgmlType::Q8_0, &x).unwrap();
        prop_assert_eq!(engine, reference);
    }

    #[test]
    fn q8_0_rows_dequantize_to_the_reference_values(seed: u64, rows in 1usize..4, blocks in 1usize..6) {
        let shape = Shape::new(QK8_0 * blocks, rows);
        let packed = raw_blocks(seed, rows * blocks, Q8_0_BLOCK_BYTES, 0);
        let w = Q8_0Matrix::new(&packed, shape).unwrap();
        let reference = backend()
            .dequantize(GgmlType::Q8_0, &packed, shape.ne0 * rows)
            .unwrap();
        for row in 0..rows {
            let expected = &reference[row * shape.ne0..(row + 1) * shape.ne0];
            assert_same_values(&w.dequantize_row(row).unwrap(), expected);
        }
    }

    #[test]
    fn q6k_rows_dequantize_to_the_reference_values(seed: u64, rows in 1usize..4, blocks in 1usize..3) {
        let shape = Shape::new(QK_K * blocks, rows);
        let packed = raw_blocks(seed, rows * blocks, Q6_K_BLOCK_BYTES, Q6_K_BLOCK_BYTES - 2);
        let w = Q6KMatrix::new(&packed, shape).unwrap();
        let reference = backend()
            .dequantize(GgmlType::Q6_K, &packed, shape.ne0 * rows)
            .unwrap();
        for row in 0..rows {
            let expected = &reference[row * shape.ne0..(row + 1) * shape.ne0];
            assert_same_values(&w.dequantize_row(row).unwrap(), expected);
        }
    }

    #[test]
    fn reference_quantized_q6k_dequantizes_to_the_reference_values(
        seed: u64, rows in 1usize..4, exponent in -12i32..12,
    ) {
        let be = backend();
        let shape = Shape::new(QK_K, rows);
        let x = values(seed, QK_K * rows, exponent, false);
        let packed = be.quantize(GgmlType::Q6_K, &x, QK_K).unwrap();
        let reference = be.dequantize(GgmlType::Q6_K, &packed, x.len()).unwrap();
        assert_same_values(&Q6_K.dequantize(&packed, shape).unwrap(), &reference);
    }

    #[test]
    fn q8_0_dot_matches_the_reference_vec_dot(
        seed: u64, blocks in 1usize..17, exponent in -8i32..8, raw_activations: bool,
    ) {
        let be = backend();
        let n = QK8_0 * blocks;
        let row = raw_blocks(seed, blocks, Q8_0_BLOCK_BYTES, 0);
        // Raw activation bytes reach codes the quantizer never writes (−128), where the kernel's
        // sign trick wraps.
        let y = if raw_activations {
            raw_blocks(seed ^ 0x5A5A, blocks, Q8_0_BLOCK_BYTES, 0)
        } else {
            be.quantize_row(GgmlType::Q8_0, &values(seed ^ 1, n, exponent, false)).unwrap()
        };
        let reference = be.vec_dot(GgmlType::Q8_0, n, &row, &y).unwrap();
        let engine = q8_0_dot_ref(&row, &q8_0_blocks(&y));
        prop_assert_eq!(engine.to_bits(), reference.to_bits(), "engine {:e}, reference {:e}", engine, reference);
    }

    #[test]
    fn q6k_dot_matches_the_reference_vec_dot(
        seed: u64, blocks in 1usize..5, exponent in -8i32..8, reference_weights: bool,
    ) {
        let be = backend();
        let n = QK_K * blocks;
        let row = if reference_weights {
            be.quantize(GgmlType::Q6_K, &values(seed, n, exponent, false), n).unwrap()
        } else {
            raw_blocks(seed, blocks, Q6_K_BLOCK_BYTES, Q6_K_BLOCK_BYTES - 2)
        };
        let y = be
            .quantize_row(GgmlType::Q8_K, &values(seed ^ 1, n, exponent, false))
            .unwrap();
        let reference = be.vec_dot(GgmlType::Q6_K, n, &row, &y).unwrap();
        let engine = q6k_dot_ref(&row, &q8k_blocks(&y));
        prop_assert_eq!(engine.to_bits(), reference.to_bits(), "engine {:e}, reference {:e}", engine, reference);
    }
}

#[test]
fn q8_0_activations_with_nan_and_infinities_match_the_reference() {
    let be = backend();
    let mut x: Vec<f32> = values(3, 4 * QK8_0, 0, false);
    x[5] = f32::NAN;
    x[QK8_0 + 17] = f32::INFINITY;
    x[2 * QK8_0 + 31] = f32::NAN;
    x[3 * QK8_0] = f32::NEG_INFINITY;
    x[3 * QK8_0 + 9] = f32::NAN;
    let engine: Vec<u8> = Q8_0Activations::quantize(&x, x.len())
        .unwrap()
        .blocks()
        .iter()
        .flat_map(BlockQ8_0::to_bytes)
        .collect();
    let reference = be.quantize_row(GgmlType::Q8_0, &x).unwrap();
    assert_eq!(engine, reference);
}
