//! Q8_0 and Q6_K: block layouts written out independently of the engine, the two Q8_0 quantizers'
//! rounding rules, the dot products' integer cores and float order, the matrix products and the
//! refusals of malformed operands. (The same functions against the linked reference, bit for bit:
//! `runner/tests/block_quant_vs_reference.rs`.)

use bitnet_engine::formats::{
    q6k_code, BlockQ8K, BlockQ8_0, FormatError, FpContract, Q6KMatrix, Q8_0Activations, Q8_0Matrix,
    Q8kActivations, Shape, Q6_K, Q6_K_BLOCK_BYTES, Q8_0, QK8_0, QK_K,
};
use bitnet_engine::kernels::block_dots::{q6k_dot_ref, q8_0_dot_ref};
use bitnet_engine::kernels::{CpuKernels, Isa, KernelError};
use half::f16;
use proptest::prelude::*;

/// A Q6_K block packed from its documented layout: six-bit codes `q` (0..64) of value `e` split
/// into `ql` nibbles and `qh` bit pairs, sixteen scales, then `d`.
fn pack_q6k(q: &[u8; QK_K], scales: &[i8; 16], d: f16) -> Vec<u8> {
    let mut block = vec![0u8; Q6_K_BLOCK_BYTES];
    for (e, &code) in q.iter().enumerate() {
        let (half, r) = (e / 128, e % 128);
        let (k, l) = (r / 32, r % 32);
        let low = 64 * half + 32 * (k % 2) + l;
        block[low] |= if k < 2 {
            code & 0x0f
        } else {
            (code & 0x0f) << 4
        };
        block[128 + 32 * half + l] |= (code >> 4) << (2 * k);
    }
    for (b, &s) in block[192..208].iter_mut().zip(scales) {
        *b = s as u8;
    }
    block[208..].copy_from_slice(&d.to_le_bytes());
    block
}

/// Deterministic bytes.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// `n` Q6_K blocks with random codes and scales and a finite `d`.
fn q6k_blocks(n: usize, seed: u64) -> Vec<u8> {
    let raw = bytes(n * (QK_K + 16 + 1), seed);
    raw.chunks_exact(QK_K + 16 + 1)
        .enumerate()
        .flat_map(|(i, chunk)| {
            let q = std::array::from_fn(|e| chunk[e] & 63);
            let scales = std::array::from_fn(|s| chunk[QK_K + s] as i8);
            let d = f16::from_f32((f32::from(chunk[QK_K]) + 1.0) * 1e-3 * (i + 1) as f32);
            pack_q6k(&q, &scales, d)
        })
        .collect()
}

fn values(n: usize, seed: u64) -> Vec<f32> {
    bytes(n * 2, seed)
        .chunks_exact(2)
        .map(|b| (f32::from(u16::from_le_bytes([b[0], b[1]])) - 32768.0) / 9000.0)
        .collect()
}

#[test]
fn q6k_codes_scales_and_values_follow_the_documented_layout() {
    let q: [u8; QK_K] = std::array::from_fn(|e| ((e * 7 + 3) % 64) as u8);
    let scales: [i8; 16] = std::array::from_fn(|s| (s as i8 - 8) * 9);
    let d = f16::from_f32(0.013);
    let block = pack_q6k(&q, &scales, d);
    let values = Q6_K.dequantize(&block, Shape::new(QK_K, 1)).unwrap();
    for e in 0..QK_K {
        assert_eq!(q6k_code(&block, e), q[e] as i8 - 32, "code of value {e}");
        let expected = d.to_f32() * f32::from(scales[e / 16]) * f32::from(q[e] as i8 - 32);
        assert_eq!(values[e].to_bits(), expected.to_bits(), "value {e}");
    }
}

#[test]
fn q8_0_blocks_store_the_scale_then_the_codes() {
    let mut x = [0f32; QK8_0];
    x[3] = -2.54;
    x[7] = 1.27;
    let block = BlockQ8_0::quantize(&x);
    let bytes = block.to_bytes();
    assert_eq!(
        f16::from_le_bytes([bytes[0], bytes[1]]),
        f16::from_f32(0.02)
    );
    assert_eq!(bytes[2 + 3] as i8, -127);
    assert_eq!(bytes[2 + 7] as i8, 64);
    assert_eq!(BlockQ8_0::from_bytes(&bytes), block);
    let values = Q8_0.dequantize(&bytes, Shape::new(QK8_0, 1)).unwrap();
    assert_eq!(values[3], -127.0 * f16::from_f32(0.02).to_f32());
}

#[test]
fn the_two_q8_0_quantizers_round_halves_differently() {
    // amax 127 gives d = 1: 2.5 rounds away from zero in the file quantizer and to even for
    // activations; -0.5 likewise.
    let mut x = [0f32; QK8_0];
    x[0] = 127.0;
    x[1] = 2.5;
    x[2] = -0.5;
    x[3] = 3.5;
    let file = BlockQ8_0::quantize(&x);
    let acts = BlockQ8_0::quantize_activations(&x);
    assert_eq!(file.d, acts.d);
    assert_eq!(&file.qs[..4], &[127, 3, -1, 4]);
    assert_eq!(&acts.qs[..4], &[127, 2, 0, 4]);
}

#[test]
fn q8_0_activations_saturate_and_send_nan_to_the_minimum() {
    let mut x = [1f32; QK8_0];
    x[5] = f32::NAN;
    let block = BlockQ8_0::quantize_activations(&x);
    // `maxps` returns its second operand when the first is NaN, so the NaN of the first vector
    // gives way to the next vector's value and the maximum stays 1.
    assert_eq!(block.d, f16::from_f32(1.0 / 127.0));
    assert_eq!(block.qs[5], -128);
    assert_eq!(block.qs[0], 127);
    let zero = BlockQ8_0::quantize_activations(&[0.0; QK8_0]);
    assert_eq!((zero.d, zero.qs), (f16::ZERO, [0; QK8_0]));
}

#[test]
fn q8_0_dot_wraps_the_negated_minimum_as_the_reference_kernel_does() {
    let d = f16::from_f32(1.0);
    let mut row = d.to_le_bytes().to_vec();
    row.extend((0..QK8_0).map(|j| if j == 0 { (-3i8) as u8 } else { 0 }));
    let mut act = BlockQ8_0 { d, qs: [0; QK8_0] };
    act.qs[0] = -128;
    // |−3| · sign(−128, −3) = 3 · −128: the sign flip of −128 wraps.
    assert_eq!(q8_0_dot_ref(&row, &[act]), -384.0);
    act.qs[0] = 127;
    assert_eq!(q8_0_dot_ref(&row, &[act]), -381.0);
}

#[test]
fn q8_0_dot_sums_lanes_of_four_codes_per_block_with_fused_scaling() {
    // One block with weight d 1 and a scale product of 1/3: lane l holds codes 4l..4l+4, each
    // lane is scaled with one rounding and the lanes are reduced by hsum_float_8's tree.
    let third = f16::from_f32(1.0 / 3.0);
    let mut row = f16::ONE.to_le_bytes().to_vec();
    row.extend((0..QK8_0).map(|j| (j as i8 - 16) as u8));
    let act = BlockQ8_0 {
        d: third,
        qs: std::array::from_fn(|j| (31 - j as i8) * 3),
    };
    let d = third.to_f32();
    let lanes: [f32; 8] = std::array::from_fn(|l| {
        let sum: i32 = (4 * l..4 * l + 4)
            .map(|j| (j as i32 - 16) * i32::from(act.qs[j]))
            .sum();
        d.mul_add(sum as f32, 0.0)
    });
    let pairs = [
        lanes[4] + lanes[0],
        lanes[5] + lanes[1],
        lanes[6] + lanes[2],
        lanes[7] + lanes[3],
    ];
    let expected = (pairs[0] + pairs[2]) + (pairs[1] + pairs[3]);
    assert_eq!(q8_0_dot_ref(&row, &[act]).to_bits(), expected.to_bits());
}

#[test]
fn q6k_dot_approximates_the_dequantized_product() {
    let row = q6k_blocks(2, 5);
    let x = values(2 * QK_K, 6);
    let acts = Q8kActivations::quantize(&x, 2 * QK_K, FpContract::Off).unwrap();
    let dot = q6k_dot_ref(&row, acts.blocks());
    let dequantized = Q6_K.dequantize(&row, Shape::new(2 * QK_K, 1)).unwrap();
    let approx: f32 = acts
        .blocks()
        .iter()
        .enumerate()
        .flat_map(|(b, y)| (0..QK_K).map(move |e| (b, e, y)))
        .map(|(b, e, y)| dequantized[b * QK_K + e] * y.d * f32::from(y.qs[e]))
        .sum();
    assert!(
        (dot - approx).abs() <= 1e-3 * (1.0 + approx.abs()),
        "{dot} vs {approx}"
    );
}

#[test]
fn matrices_refuse_misshapen_bytes_and_rows() {
    assert!(matches!(
        Q8_0Matrix::new(&[0; 34], Shape::new(16, 1)),
        Err(FormatError::RowNotBlockAligned { block: 32, .. })
    ));
    assert!(matches!(
        Q8_0Matrix::new(&[0; 33], Shape::new(32, 1)),
        Err(FormatError::PackedSize {
            expected: 34,
            actual: 33,
            ..
        })
    ));
    assert!(matches!(
        Q6KMatrix::new(&[0; Q6_K_BLOCK_BYTES], Shape::new(128, 2)),
        Err(FormatError::RowNotBlockAligned { block: 256, .. })
    ));
    let w = Q6KMatrix::new(&[0; Q6_K_BLOCK_BYTES], Shape::new(QK_K, 1)).unwrap();
    assert_eq!(
        w.dequantize_row(1).unwrap_err(),
        FormatError::RowOutOfRange {
            format: "q6_K",
            row: 1,
            rows: 1
        }
    );
    assert!(matches!(
        Q8_0Activations::quantize(&[0.0; 48], 48),
        Err(FormatError::ActivationLength { .. })
    ));
}

#[test]
fn gemms_refuse_mismatched_operands() {
    let kernels = CpuKernels::new(Isa::Scalar, 1).unwrap();
    let packed = vec![0u8; 2 * 34 * 3];
    let w = Q8_0Matrix::new(&packed, Shape::new(64, 3)).unwrap();
    let x = Q8_0Activations::quantize(&[0.5; 32], 32).unwrap();
    assert!(matches!(
        kernels.q8_0_gemm(&w, &x, &mut [0.0; 3]),
        Err(KernelError::Mismatch {
            expected: 64,
            actual: 32,
            ..
        })
    ));
    let x = Q8_0Activations::quantize(&[0.5; 64], 64).unwrap();
    assert!(matches!(
        kernels.q8_0_gemm(&w, &x, &mut [0.0; 4]),
        Err(KernelError::Mismatch { .. })
    ));
    let blocks = q6k_blocks(1, 1);
    let w = Q6KMatrix::new(&blocks, Shape::new(QK_K, 1)).unwrap();
    let x = Q8kActivations::from_blocks(
        2 * QK_K,
        vec![BlockQ8K::quantize(&[1.0; QK_K], FpContract::Off); 2],
    )
    .unwrap();
    assert!(kernels.q6k_gemm(&w, &x, &mut [0.0; 1]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn q8_0_gemm_is_the_row_dot_for_every_token_and_thread_count(
        seed: u64, rows in 1usize..9, blocks in 1usize..4, tokens in 1usize..6,
    ) {
        let k = QK8_0 * blocks;
        let shape = Shape::new(k, rows);
        let packed = Q8_0.quantize(&values(k * rows, seed), shape).unwrap();
        let w = Q8_0Matrix::new(&packed, shape).unwrap();
        let x = Q8_0Activations::quantize(&values(k * tokens, seed ^ 1), k).unwrap();
        let mut one = vec![0f32; rows * tokens];
        let mut four = vec![0f32; rows * tokens];
        CpuKernels::new(Isa::Scalar, 1).unwrap().q8_0_gemm(&w, &x, &mut one).unwrap();
        CpuKernels::best(4).unwrap().q8_0_gemm(&w, &x, &mut four).unwrap();
        for token in 0..tokens {
            for row in 0..rows {
                let expected = q8_0_dot_ref(w.row(row), x.token_blocks(token));
                prop_assert_eq!(one[token * rows + row].to_bits(), expected.to_bits());
                prop_assert_eq!(four[token * rows + row].to_bits(), expected.to_bits());
            }
        }
    }

    #[test]
    fn q6k_gemm_is_the_row_dot_for_every_token_and_thread_count(
        seed: u64, rows in 1usize..6, blocks in 1usize..3, tokens in 1usize..4,
    ) {
        let k = QK_K * blocks;
        let packed = q6k_blocks(rows * blocks, seed);
        let w = Q6KMatrix::new(&packed, Shape::new(k, rows)).unwrap();
        let x = Q8kActivations::quantize(&values(k * tokens, seed ^ 1), k, FpContract::Fused)
            .unwrap();
        let mut one = vec![0f32; rows * tokens];
        let mut four = vec![0f32; rows * tokens];
        CpuKernels::new(Isa::Scalar, 1).unwrap().q6k_gemm(&w, &x, &mut one).unwrap();
        CpuKernels::best(4).unwrap().q6k_gemm(&w, &x, &mut four).unwrap();
        for token in 0..tokens {
            for row in 0..rows {
                let expected = q6k_dot_ref(w.row(row), x.token_blocks(token));
                prop_assert_eq!(one[token * rows + row].to_bits(), expected.to_bits());
                prop_assert_eq!(four[token * rows + row].to_bits(), expected.to_bits());
            }
        }
    }

    #[test]
    fn q8_0_round_trip_error_is_within_half_a_step(seed: u64, blocks in 1usize..6) {
        let shape = Shape::new(QK8_0 * blocks, 1);
        let x = values(shape.ne0, seed);
        let packed = Q8_0.quantize(&x, shape).unwrap();
        let back = Q8_0.dequantize(&packed, shape).unwrap();
        for (chunk, restored) in x.chunks(QK8_0).zip(back.chunks(QK8_0)) {
            let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (a, b) in chunk.iter().zip(restored) {
                prop_assert!((a - b).abs() <= amax / 127.0 * 0.51 + amax * 1e-3);
            }
        }
    }
}
