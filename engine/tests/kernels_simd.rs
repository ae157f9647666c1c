//! Every SIMD kernel against the scalar reference: equal integers, bit-identical floats.
//!
//! ISAs this CPU lacks are skipped, and each test says which.

use bitnet_engine::formats::{
    interleave_quads, BlockQ8K, FpContract, I2s, I2sLayout, I2sMatrix, I8sActivations,
    Q8kActivations, Shape, TernaryFormat, TqKind, TqMatrix, QK_K, TQ1_0_BLOCK_BYTES,
    TQ2_0_BLOCK_BYTES,
};
use bitnet_engine::kernels::{
    scalar, CpuKernels, DenseMatrix, Isa, Numerics, ReduceWidth, SCALAR_QUADS,
};
use half::f16;
use proptest::prelude::*;
use std::io::Write;
use std::sync::Once;

mod kernel_support;

use kernel_support::Rng;

/// The float draws of these tests.
trait FloatDraws {
    /// Values with tiny, large and zero ones among them.
    fn floats(&mut self, n: usize) -> Vec<f32>;
    /// [`FloatDraws::floats`] rounded to f16.
    fn halves(&mut self, n: usize) -> Vec<f16>;
}

impl FloatDraws for Rng {
    fn floats(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| match self.next() % 6 {
                0 => self.unit() * 1e-3,
                1 => self.unit() * 50.0,
                2 => 0.0,
                _ => self.unit(),
            })
            .collect()
    }

    fn halves(&mut self, n: usize) -> Vec<f16> {
        self.floats(n).into_iter().map(f16::from_f32).collect()
    }
}

/// The SIMD ISAs this CPU runs. The first call reports the skipped ones on stderr directly, past the
/// test harness's output capture, so the report shows in a normal run.
fn simd_isas() -> Vec<Isa> {
    static REPORT: Once = Once::new();
    REPORT.call_once(|| {
        let mut stderr = std::io::stderr().lock();
        for isa in Isa::ALL.into_iter().filter(|isa| !isa.is_supported()) {
            let _ = writeln!(
                stderr,
                "kernels_simd: {isa} is not supported by this CPU; its equality checks are skipped"
            );
        }
    });
    Isa::supported()
        .into_iter()
        .filter(|&isa| isa != Isa::Scalar)
        .collect()
}

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(40)
}

const CONTRACTS: [FpContract; 2] = [FpContract::Off, FpContract::Fused];
const WIDTHS: [ReduceWidth; 2] = [ReduceWidth::Lanes8, ReduceWidth::Lanes16];

/// Random Q8_K blocks: quantized activations, plus raw codes with inconsistent sums now and then.
fn q8k_blocks(rng: &mut Rng, blocks: usize) -> Vec<BlockQ8K> {
    let x = rng.floats(blocks * QK_K);
    let mut out = Q8kActivations::quantize(&x, QK_K, FpContract::Off)
        .unwrap()
        .blocks()
        .to_vec();
    if rng.next().is_multiple_of(3) {
        for block in &mut out {
            block.qs.iter_mut().for_each(|q| *q = rng.next() as i8);
            block
                .bsums
                .iter_mut()
                .for_each(|s| *s = (rng.next() % 4096) as i16 - 2048);
        }
    }
    out
}

/// Packed TQ rows with random codes and finite random fp16 scales.
fn tq_row(rng: &mut Rng, kind: TqKind, blocks: usize) -> Vec<u8> {
    let mut row = rng.bytes(blocks * kind.block_bytes());
    for block in row.chunks_mut(kind.block_bytes()) {
        let d = f16::from_f32(rng.unit() * 4.0).to_le_bytes();
        let len = block.len();
        block[len - 2..].copy_from_slice(&d);
    }
    row
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn i2s_dot_matches_scalar_and_exact_sum(seed: u64, blocks in 0usize..42) {
        let mut rng = Rng::new(seed);
        let codes = rng.bytes(blocks * 32);
        let act = rng.i8s(blocks * 128);
        let reference = scalar::i2s_dot_ref(&codes, &act);
        let mut exact = 0i64;
        for (b, block) in codes.chunks(32).enumerate() {
            for (j, &byte) in block.iter().enumerate() {
                for g in 0..4 {
                    exact += i64::from((byte >> (6 - 2 * g)) & 3) * i64::from(act[128 * b + 32 * g + j]);
                }
            }
        }
        prop_assert_eq!(i64::from(reference), exact);
        for isa in simd_isas() {
            let mut out = [0];
            (isa.dots().unwrap().i2s_rows)(&codes, &act, &mut out);
            prop_assert_eq!(out[0], reference, "{}", isa);
        }
    }

    #[test]
    fn i2s_four_token_row_runs_match_single_dots(seed: u64, blocks in 0usize..42, rows in 0usize..7) {
        let mut rng = Rng::new(seed);
        let width = blocks * 32;
        let codes = rng.bytes(rows * width);
        let acts: Vec<Vec<i8>> = (0..4).map(|_| rng.i8s(blocks * 128)).collect();
        let acts: [&[i8]; 4] = std::array::from_fn(|t| acts[t].as_slice());
        let reference: Vec<[i32; 4]> = (0..rows)
            .map(|r| acts.map(|act| scalar::i2s_dot_ref(&codes[r * width..(r + 1) * width], act)))
            .collect();
        let mut out = vec![[7; 4]; rows];
        scalar::i2s_rows_x4_ref(&codes, acts, &mut out);
        prop_assert_eq!(&out, &reference);
        for isa in simd_isas() {
            if let Some(rows_x4) = isa.dots().unwrap().i2s_rows_x4 {
                let mut out = vec![[7; 4]; rows];
                rows_x4(&codes, acts, &mut out);
                prop_assert_eq!(&out, &reference, "{}", isa);
            }
        }
    }

    #[test]
    fn i2s_runs_grouped_in_fours_match_the_rows_in_order(seed: u64, blocks in 0usize..42, rows in 0usize..11) {
        let mut rng = Rng::new(seed);
        let width = blocks * 32;
        let shape = Shape::new(blocks * 128, rows);
        let mut packed = rng.bytes(rows * width);
        packed.extend([0; 32]);
        let mut grouped = packed.clone();
        interleave_quads(&mut grouped, shape).unwrap();
        let (codes, grouped) = (&packed[..rows * width], &grouped[..rows * width]);
        let act = rng.i8s(blocks * 128);
        let acts: Vec<Vec<i8>> = (0..4).map(|_| rng.i8s(blocks * 128)).collect();
        let acts: [&[i8]; 4] = std::array::from_fn(|t| acts[t].as_slice());
        let mut one = vec![0; rows];
        scalar::i2s_rows_ref(codes, &act, &mut one);
        let mut four = vec![[0; 4]; rows];
        scalar::i2s_rows_x4_ref(codes, acts, &mut four);
        let tables = std::iter::once(("scalar".to_string(), SCALAR_QUADS)).chain(
            simd_isas().into_iter().filter_map(|isa| Some((isa.to_string(), isa.dots().unwrap().i2s_quads?))),
        );
        for (name, quads) in tables {
            let mut out = vec![7; rows];
            (quads.rows)(grouped, &act, &mut out);
            prop_assert_eq!(&out, &one, "{}", name);
            let mut out = vec![[7; 4]; rows];
            (quads.rows_x4)(grouped, acts, &mut out);
            prop_assert_eq!(&out, &four, "{}", name);
        }
    }

    #[test]
    fn i2s_row_runs_match_single_row_dots(seed: u64, blocks in 0usize..42, rows in 0usize..7) {
        let mut rng = Rng::new(seed);
        let codes = rng.bytes(rows * blocks * 32);
        let act = rng.i8s(blocks * 128);
        let width = blocks * 32;
        let reference: Vec<i32> = (0..rows)
            .map(|r| scalar::i2s_dot_ref(&codes[r * width..(r + 1) * width], &act))
            .collect();
        let mut out = vec![7; rows];
        scalar::i2s_rows_ref(&codes, &act, &mut out);
        prop_assert_eq!(&out, &reference);
        for isa in simd_isas() {
            let mut out = vec![7; rows];
            (isa.dots().unwrap().i2s_rows)(&codes, &act, &mut out);
            prop_assert_eq!(&out, &reference, "{}", isa);
        }
    }

    #[test]
    fn tq_dots_match_scalar_bit_for_bit(seed: u64, blocks in 0usize..12) {
        let mut rng = Rng::new(seed);
        let act = q8k_blocks(&mut rng, blocks);
        let tq1 = tq_row(&mut rng, TqKind::Tq1_0, blocks);
        let tq2 = tq_row(&mut rng, TqKind::Tq2_0, blocks);
        prop_assert_eq!(tq1.len(), blocks * TQ1_0_BLOCK_BYTES);
        prop_assert_eq!(tq2.len(), blocks * TQ2_0_BLOCK_BYTES);
        for contract in CONTRACTS {
            let r1 = scalar::tq1_dot_ref(&tq1, &act, contract);
            let r2 = scalar::tq2_dot_ref(&tq2, &act, contract);
            for isa in simd_isas() {
                let dots = isa.dots().unwrap();
                prop_assert_eq!((dots.tq1)(&tq1, &act, contract).to_bits(), r1.to_bits(), "{} {:?}", isa, contract);
                prop_assert_eq!((dots.tq2)(&tq2, &act, contract).to_bits(), r2.to_bits(), "{} {:?}", isa, contract);
            }
        }
    }

    #[test]
    fn float_dots_match_scalar_bit_for_bit(seed: u64, len in 0usize..300, lanes16 in 0usize..24) {
        let mut rng = Rng::new(seed);
        let (xh, yh) = (rng.halves(len), rng.halves(len));
        let (xf, yf) = (rng.floats(len), rng.floats(len));
        let tiled_len = 16 * lanes16;
        let (th, tf, ty) = (rng.halves(tiled_len), rng.floats(tiled_len), rng.floats(tiled_len));
        let xh2 = rng.halves(len);
        let tys: Vec<Vec<f32>> = (0..4).map(|_| rng.floats(tiled_len)).collect();
        for width in WIDTHS {
            let vec_h = scalar::f16_vec_dot_ref(&xh, &yh, width);
            let vec_f = scalar::f32_vec_dot_ref(&xf, &yf, width);
            let tiled_h = scalar::f16_tiled_dot_ref(&th, &ty, width);
            let tiled_f = scalar::f32_tiled_dot_ref(&tf, &ty, width);
            for isa in simd_isas() {
                let dots = isa.dots().unwrap();
                prop_assert_eq!((dots.f16_vec)(&xh, &yh, width).to_bits(), vec_h.to_bits(), "{} {:?}", isa, width);
                prop_assert_eq!((dots.f32_vec)(&xf, &yf, width).to_bits(), vec_f.to_bits(), "{} {:?}", isa, width);
                prop_assert_eq!((dots.f16_tiled)(&th, &ty, width).to_bits(), tiled_h.to_bits(), "{} {:?}", isa, width);
                prop_assert_eq!((dots.f32_tiled)(&tf, &ty, width).to_bits(), tiled_f.to_bits(), "{} {:?}", isa, width);
                // The interleaved forms give each product's own bits.
                if let Some(x2) = dots.f16_vec_x2 {
                    let pair = x2([&xh, &xh2], &yh, width).map(f32::to_bits);
                    let second = scalar::f16_vec_dot_ref(&xh2, &yh, width);
                    prop_assert_eq!(pair, [vec_h.to_bits(), second.to_bits()], "{} {:?}", isa, width);
                }
                if let Some(x4) = dots.f16_tiled_x4 {
                    let quad = x4(&th, std::array::from_fn(|t| tys[t].as_slice()), width).map(f32::to_bits);
                    let each = std::array::from_fn(|t| scalar::f16_tiled_dot_ref(&th, &tys[t], width).to_bits());
                    prop_assert_eq!(quad, each, "{} {:?}", isa, width);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn f16_rows_against_four_vectors_match_single_dots(seed: u64, len in 0usize..300, rows in 0usize..10) {
        let mut rng = Rng::new(seed);
        let matrix = rng.halves(len * rows);
        let w = DenseMatrix::new(&matrix, Shape::new(len, rows)).unwrap();
        let vectors: Vec<Vec<f16>> = (0..4).map(|_| rng.halves(len)).collect();
        let vectors: [&[f16]; 4] = std::array::from_fn(|v| vectors[v].as_slice());
        for width in WIDTHS {
            let expected: Vec<[u32; 4]> = (0..rows)
                .map(|r| vectors.map(|v| scalar::f16_vec_dot_ref(w.row(r), v, width).to_bits()))
                .collect();
            for isa in simd_isas() {
                if let Some(rows_x4) = isa.dots().unwrap().f16_rows_x4 {
                    let mut out = vec![[0f32; 4]; rows];
                    rows_x4(&w, vectors, &mut out, width);
                    let got: Vec<[u32; 4]> = out.iter().map(|o| o.map(f32::to_bits)).collect();
                    prop_assert_eq!(&got, &expected, "{} {:?}", isa, width);
                }
            }
        }
    }
}

/// The bits of `v`, every NaN as one.
fn bits_nan_as_one(v: f32) -> u32 {
    if v.is_nan() {
        f32::NAN.to_bits()
    } else {
        v.to_bits()
    }
}

/// A value of a masked attention row: signed zeros, values that cancel, and (past the live
/// cells) infinities and NaN.
fn masked_cell(rng: &mut Rng, special: bool) -> f16 {
    match rng.next() % 8 {
        0 => f16::NEG_ZERO,
        1 => f16::ZERO,
        2 if special => [f16::INFINITY, f16::NEG_INFINITY, f16::NAN][(rng.next() % 3) as usize],
        3 => f16::from_f32(-1.0),
        _ => f16::ONE,
    }
}

proptest! {
    #[test]
    fn f16_rows_against_masked_vectors_match_single_dots(seed: u64, len in 0usize..200, live in 0usize..200, rows in 1usize..9) {
        // Attention's `V · p`: past the live cells every vector is a signed zero, and the
        // rows may hold anything there; sums of ±1 reach zero often. NaN is any NaN: its sign
        // follows the order of a sum's operands, which no kernel promises.
        let mut rng = Rng::new(seed);
        let live = live.min(len);
        let matrix: Vec<f16> = (0..len * rows).map(|i| masked_cell(&mut rng, i % len.max(1) >= live)).collect();
        let w = DenseMatrix::new(&matrix, Shape::new(len, rows)).unwrap();
        let vectors: Vec<Vec<f16>> = (0..4)
            .map(|_| (0..len).map(|i| if i < live { masked_cell(&mut rng, false) } else { [f16::ZERO, f16::NEG_ZERO][(rng.next() % 2) as usize] }).collect())
            .collect();
        let vectors: [&[f16]; 4] = std::array::from_fn(|v| vectors[v].as_slice());
        for width in WIDTHS {
            let expected: Vec<[u32; 4]> = (0..rows)
                .map(|r| vectors.map(|v| bits_nan_as_one(scalar::f16_vec_dot_ref(w.row(r), v, width))))
                .collect();
            for isa in simd_isas() {
                if let Some(rows_x4) = isa.dots().unwrap().f16_rows_x4 {
                    let mut out = vec![[0f32; 4]; rows];
                    rows_x4(&w, vectors, &mut out, width);
                    let got: Vec<[u32; 4]> = out.iter().map(|o| o.map(bits_nan_as_one)).collect();
                    prop_assert_eq!(&got, &expected, "{} {:?}", isa, width);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn products_match_scalar_on_any_thread_count(seed: u64, rows in 1usize..70, blocks in 1usize..4, tokens in prop_oneof![1usize..10, 30usize..40]) {
        let mut rng = Rng::new(seed);
        let k = QK_K * blocks;
        let shape = Shape::new(k, rows);
        let weights = rng.floats(k * rows);
        let x = rng.floats(k * tokens);
        let i2s = I2s.quantize(&weights, shape).unwrap();
        let mut grouped = i2s.clone();
        interleave_quads(&mut grouped, shape).unwrap();
        let i2s = I2sMatrix::new(&i2s, shape).unwrap();
        let grouped = I2sMatrix::with_layout(&grouped, shape, I2sLayout::Quads).unwrap();
        let tq1 = TqKind::Tq1_0.format().quantize(&weights, shape).unwrap();
        let tq2 = TqKind::Tq2_0.format().quantize(&weights, shape).unwrap();
        let tq1 = TqMatrix::new(TqKind::Tq1_0, &tq1, shape).unwrap();
        let tq2 = TqMatrix::new(TqKind::Tq2_0, &tq2, shape).unwrap();
        let halves: Vec<f16> = weights.iter().map(|&w| f16::from_f32(w)).collect();
        let dense_h = DenseMatrix::new(&halves, shape).unwrap();
        let dense_f = DenseMatrix::new(&weights, shape).unwrap();
        for contract in CONTRACTS {
            for width in WIDTHS {
                let numerics = Numerics { contract, width };
                let i8s = I8sActivations::quantize(&x, k, contract).unwrap();
                let q8k = Q8kActivations::quantize(&x, k, contract).unwrap();
                let run = |kernels: &CpuKernels| {
                    let mut outs = vec![vec![0f32; rows * tokens]; 6];
                    kernels.i2s_gemm(&i2s, &i8s, &mut outs[0]).unwrap();
                    kernels.i2s_gemm(&grouped, &i8s, &mut outs[5]).unwrap();
                    kernels.tq_gemm(&tq1, &q8k, &mut outs[1]).unwrap();
                    kernels.tq_gemm(&tq2, &q8k, &mut outs[2]).unwrap();
                    kernels.f16_gemm(&dense_h, &x, &mut outs[3]).unwrap();
                    kernels.f32_gemm(&dense_f, &x, &mut outs[4]).unwrap();
                    outs.concat().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                };
                let reference = run(&CpuKernels::new(Isa::Scalar, 1).unwrap().with_numerics(numerics));
                let n = rows * tokens;
                prop_assert_eq!(&reference[5 * n..], &reference[..n], "rows grouped in fours");
                for isa in std::iter::once(Isa::Scalar).chain(simd_isas()) {
                    for threads in [1, 2] {
                        let kernels = CpuKernels::new(isa, threads).unwrap().with_numerics(numerics);
                        prop_assert_eq!(&run(&kernels), &reference, "{} threads={} {:?}", isa, threads, numerics);
                    }
                }
            }
        }
    }
}

#[test]
fn f16_tails_add_in_order() {
    // Past 64 zeros, a tail of 2^30 + 64 (halfway between two f32 values) and 29 products of
    // 2^-24, each too small to move that f64 sum: added in order they vanish and the f32 result
    // rounds to even (2^30); summed first they would round it up (2^30 + 128).
    let mut x = vec![f16::ZERO; 64];
    x.extend([f16::from_f32(32768.0), f16::from_f32(8.0)]);
    x.extend([f16::from_f32(2f32.powi(-12)); 29]);
    let expected = 2f32.powi(30);
    let vectors = [x.as_slice(); 4];
    let w = DenseMatrix::new(&x, Shape::new(x.len(), 1)).unwrap();
    for width in WIDTHS {
        assert_eq!(
            scalar::f16_vec_dot_ref(&x, &x, width),
            expected,
            "{width:?}"
        );
        for isa in simd_isas() {
            let dots = isa.dots().unwrap();
            assert_eq!((dots.f16_vec)(&x, &x, width), expected, "{isa} {width:?}");
            if let Some(x2) = dots.f16_vec_x2 {
                assert_eq!(x2([&x, &x], &x, width), [expected; 2], "{isa} {width:?}");
            }
            if let Some(rows_x4) = dots.f16_rows_x4 {
                let mut out = [[0f32; 4]];
                rows_x4(&w, vectors, &mut out, width);
                assert_eq!(out, [[expected; 4]], "{isa} {width:?}");
            }
        }
    }
}
