//! The I2_S integer core is exact in i32; the reference's AVX2 kernel sums 32 blocks in wrapping i16
//! lanes. This builds an input where the two differ and shows which one the engine computes.

use bitnet_engine::formats::{FpContract, I2s, I2sMatrix, I8sActivations, Shape, TernaryFormat};
use bitnet_engine::kernels::{scalar, CpuKernels, Isa};

/// A model of the reference's AVX2 `ggml_vec_dot_i2_i8_s`: for each run of up to 32 blocks, sixteen
/// i16 lanes (lane `l` takes bytes `2l` and `2l + 1` of every 32-byte code group) add with wrapping,
/// then widen to i32.
fn reference_i16_dot(codes: &[u8], act: &[i8]) -> i32 {
    let blocks = act.len() / 128;
    let mut total = 0i32;
    for first in (0..blocks).step_by(32) {
        let mut lanes = [0i16; 16];
        for block in first..blocks.min(first + 32) {
            for group in 0..4 {
                for j in 0..32 {
                    let code = i16::from((codes[32 * block + j] >> (6 - 2 * group)) & 3);
                    let product = code * i16::from(act[128 * block + 32 * group + j]);
                    lanes[j / 2] = lanes[j / 2].wrapping_add(product);
                }
            }
        }
        total += lanes.iter().map(|&l| i32::from(l)).sum::<i32>();
    }
    total
}

#[test]
fn extreme_input_wraps_in_the_reference_but_not_here() {
    // 4096 weights of +1 against 4096 equal activations (all quantize to 127): every i16 lane of the
    // reference collects 256 products of 2 · 127 = 65024, which wraps to −512.
    let k = 4096;
    let shape = Shape::new(k, 1);
    let packed = I2s.quantize(&vec![1.0; k], shape).unwrap();
    let w = I2sMatrix::new(&packed, shape).unwrap();
    let x = I8sActivations::quantize(&vec![1.0; k], k, FpContract::Off).unwrap();
    assert!(x.codes().iter().all(|&q| q == 127));

    let exact = 2 * 127 * k as i32;
    assert_eq!(reference_i16_dot(&w.row(0), x.codes()), 16 * -512);
    assert_eq!(scalar::i2s_dot_ref(&w.row(0), x.codes()), exact);
    for isa in Isa::supported() {
        let mut dot = [0];
        (isa.dots().unwrap().i2s_rows)(&w.row(0), x.codes(), &mut dot);
        assert_eq!(dot[0], exact, "{isa}");
        let mut out = [0f32];
        CpuKernels::new(isa, 1)
            .unwrap()
            .i2s_gemv(&w, &x, &mut out)
            .unwrap();
        // Σ(+1 · 1.0) over 4096 weights; the reference's wrapped sum would give −4160.5.
        assert_eq!(out[0], 4096.0, "{isa}");
    }
}

#[test]
fn ordinary_inputs_agree_with_the_reference_model() {
    let k = 128 * 70;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let weights: Vec<f32> = (0..k).map(|_| (next() % 3) as f32 - 1.0).collect();
    let x: Vec<f32> = (0..k)
        .map(|_| (next() % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let shape = Shape::new(k, 1);
    let packed = I2s.quantize(&weights, shape).unwrap();
    let w = I2sMatrix::new(&packed, shape).unwrap();
    let x = I8sActivations::quantize(&x, k, FpContract::Off).unwrap();
    assert_eq!(
        scalar::i2s_dot_ref(&w.row(0), x.codes()),
        reference_i16_dot(&w.row(0), x.codes())
    );
}

#[test]
fn a_row_of_millions_of_extreme_products_stays_exact() {
    // Codes of 3 against activations of −128 in every position: the largest product magnitude a
    // lane can collect, over more blocks than any kernel sums before widening or shifting. Five
    // rows, so that kernels which take rows in groups see a whole group and a row left over.
    let (blocks, rows) = (24_000, 5);
    let codes = vec![0xFF; rows * blocks * 32];
    let act = vec![-128i8; blocks * 128];
    let exact = -3 * 128 * (blocks as i64 * 128);
    assert_eq!(
        i64::from(scalar::i2s_dot_ref(&codes[..blocks * 32], &act)),
        exact
    );
    for isa in Isa::supported() {
        let mut dots = [0; 5];
        (isa.dots().unwrap().i2s_rows)(&codes, &act, &mut dots);
        assert!(
            dots.iter().all(|&d| i64::from(d) == exact),
            "{isa}: {dots:?}"
        );
    }
}
