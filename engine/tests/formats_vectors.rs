//! Small fixed vectors that pin each format's byte layout and rounding, worked out by hand from the
//! reference's definitions (and, for the contraction cases, checked against reference builds).

use bitnet_engine::formats::{
    BlockQ8K, FpContract, I2s, I8sActivations, Q8kActivations, Scales, Shape, TernaryFormat, Tq1_0,
    Tq2_0, QK_K,
};

#[test]
fn i2s_block_layout() {
    // Weight 0 = +1 (bits 7:6 of byte 0), weight 32 = −1 (bits 5:4), all others 0.
    let mut weights = vec![0f32; 256];
    weights[0] = 1.0;
    weights[32] = -1.0;
    weights[128 + 127] = 1.0; // second block, byte 31, bits 1:0
    let packed = I2s.quantize(&weights, Shape::new(128, 2)).unwrap();
    assert_eq!(packed.len(), 256 / 4 + 32);
    assert_eq!(packed[0], 0b10_00_01_01);
    assert!(packed[1..32].iter().all(|&b| b == 0x55));
    assert_eq!(packed[32 + 31], 0b01_01_01_10);
    assert_eq!(&packed[64..68], &1.0f32.to_le_bytes());
    assert!(packed[68..].iter().all(|&b| b == 0));
}

#[test]
fn i2s_zero_threshold_is_one_millionth_in_f64() {
    let mut weights = vec![0f32; 128];
    weights[0] = 0.5;
    weights[1] = 9.9e-7;
    weights[2] = -1.1e-6;
    let unpacked = I2s
        .unpack(
            &I2s.quantize(&weights, Shape::new(128, 1)).unwrap(),
            Shape::new(128, 1),
        )
        .unwrap();
    assert_eq!(&unpacked.codes[..3], &[1, 0, -1]);
    assert_eq!(unpacked.scales, Scales::PerTensor(0.5));
}

#[test]
fn tq2_block_layout() {
    let mut weights = vec![0f32; QK_K];
    weights[0] = 1.0; // byte 0, bits 1:0 → code 2
    weights[32] = -1.0; // byte 0, bits 3:2 → code 0
    weights[200] = 0.6; // byte 32 + 8, bits 5:4 → round(0.6) + 1 = 2
    let packed = Tq2_0.quantize(&weights, Shape::new(QK_K, 1)).unwrap();
    assert_eq!(packed.len(), 66);
    assert_eq!(packed[0], 0b01_01_00_10);
    assert_eq!(packed[40], 0b01_10_01_01);
    assert_eq!(packed.iter().take(64).filter(|&&b| b != 0x55).count(), 2);
    assert_eq!(&packed[64..], &half::f16::from_f32(1.0).to_le_bytes());
}

#[test]
fn tq1_block_layout() {
    let mut weights = vec![0f32; QK_K];
    weights[0] = 1.0; // byte 0, most significant trit
    weights[240 + 3 + 4 * 2] = -1.0; // qh[3], third trit
    let packed = Tq1_0.quantize(&weights, Shape::new(QK_K, 1)).unwrap();
    assert_eq!(packed.len(), 54);
    // Five zero codes (1,1,1,1,1) = 121 → ceil(121 · 256 / 243) = 128; with the first trit 2: 202 → 213.
    assert_eq!(packed[0], 213);
    assert!(packed[1..48].iter().all(|&b| b == 128));
    // Four trits, then ×3: (1,1,1,1) → 120 → 127; (1,1,0,1) → 37 · 3 = 111 → 117.
    assert_eq!(&packed[48..52], &[127, 127, 127, 117]);
    assert_eq!(&packed[52..], &half::f16::from_f32(1.0).to_le_bytes());
    let codes = Tq1_0.unpack(&packed, Shape::new(QK_K, 1)).unwrap().codes;
    assert_eq!(codes[0], 1);
    assert_eq!(codes[251], -1);
    assert_eq!(codes.iter().filter(|&&c| c != 0).count(), 2);
}

#[test]
fn i8s_quantization() {
    // amax = 2 → s = 63.5; 63.5 → 64 (ties to even), −31.75 → −32, 15.875 → 16, 127.
    let x = [1.0f32, -0.5, 0.25, 0.0, 2.0];
    let q = I8sActivations::quantize(&x, 5, FpContract::Off).unwrap();
    assert_eq!(q.codes(), &[64, -32, 16, 0, 127]);
    assert_eq!(q.scales(), &[63.5]);
    assert_eq!(q.sums(), &[175]);
    // amax is floored at 1e-5.
    let tiny = I8sActivations::quantize(&[0.0, 1e-6], 2, FpContract::Off).unwrap();
    assert_eq!(tiny.scales(), &[(127.0f64 / 1e-5) as f32]);
    assert_eq!(tiny.codes(), &[0, 13]);
}

#[test]
fn i8s_rounding_depends_on_contraction_like_the_reference_builds() {
    // x · s with s = (127 / 3) as f32 lands just below 7.5 exactly but rounds to 7.5 as an f32
    // product: a reference compiled without contraction gives 8, a GCC GNU-mode build (FMA) gives 7.
    let x = f32::from_bits(0x3e35_6ad6);
    let off = I8sActivations::quantize(&[3.0, x], 2, FpContract::Off).unwrap();
    let fused = I8sActivations::quantize(&[3.0, x], 2, FpContract::Fused).unwrap();
    assert_eq!(off.codes(), &[127, 8]);
    assert_eq!(fused.codes(), &[127, 7]);
}

#[test]
fn q8k_uses_the_signed_maximum() {
    let mut x = [0f32; QK_K];
    x[0] = 1.0;
    x[1] = -1.0;
    x[5] = -2.0; // largest magnitude, negative: iscale = −127 / −2 = 63.5
    x[17] = 0.5;
    let block = BlockQ8K::quantize(&x, FpContract::Off);
    assert_eq!(block.d, 1.0 / 63.5);
    assert_eq!(&block.qs[..6], &[64, -64, 0, 0, 0, -127]);
    assert_eq!(block.qs[17], 32);
    assert_eq!(block.bsums[0], 64 - 64 - 127);
    assert_eq!(block.bsums[1], 32);
    let zero = BlockQ8K::quantize(&[0.0; QK_K], FpContract::Off);
    assert_eq!((zero.d, zero.qs, zero.bsums), (0.0, [0; QK_K], [0; 16]));
    let tokens = Q8kActivations::quantize(&[0.25; 2 * QK_K], QK_K, FpContract::Off).unwrap();
    assert_eq!(tokens.tokens(), 2);
    assert_eq!(tokens.token_blocks(1)[0].qs[0], -127);
}
