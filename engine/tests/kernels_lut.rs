//! TL1 and TL2 lookup-table products: every ISA against the scalar reference, the scalar reference
//! against the exact product of the unpacked codes, and the reference's i16 tile sums where they
//! wrap.

use bitnet_engine::formats::{
    Shape, TernaryFormat, Tl1, Tl1Activations, Tl1Matrix, Tl1Tiling, Tl2, Tl2Activations,
    Tl2Matrix, Tl2Tiling,
};
use bitnet_engine::kernels::{scalar, CpuKernels, Isa};
use proptest::prelude::*;

mod kernel_support;

use kernel_support::Rng;

/// The weight and activation draws of these tests.
trait LutDraws {
    /// Weights in 0.5 × {−1, 0, 1}.
    fn ternary(&mut self, n: usize) -> Vec<f32>;
    /// Activations with zeros, tiny and large values, and now and then an all-zero token.
    fn activations(&mut self, k: usize, tokens: usize) -> Vec<f32>;
}

impl LutDraws for Rng {
    fn ternary(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| [-0.5f32, 0.0, 0.5][(self.next() % 3) as usize])
            .collect()
    }

    fn activations(&mut self, k: usize, tokens: usize) -> Vec<f32> {
        let mut x: Vec<f32> = (0..k * tokens)
            .map(|_| match self.next() % 6 {
                0 => 0.0,
                1 => self.unit() * 1e-4,
                2 => self.unit() * 300.0,
                _ => self.unit(),
            })
            .collect();
        if tokens > 1 && self.next().is_multiple_of(4) {
            x[..k].fill(0.0);
        }
        x
    }
}

/// A tiling and a shape that satisfies it: `rows = BM · n`, `cols = BK · a + 32 · b` with
/// `32 · b < BK`.
fn geometry() -> impl Strategy<Value = (Tl2Tiling, Shape)> {
    (1usize..5, 1usize..13, 1usize..3, 0usize..4, 0usize..9).prop_map(|(bm, bk, n, a, b)| {
        let tiling = Tl2Tiling {
            tile_rows: 32 * bm,
            tile_cols: 24 * bk,
        };
        let pairs = b % (1 + (24 * bk - 1) / 32);
        (tiling, Shape::new(24 * bk * a + 32 * pairs, 32 * bm * n))
    })
}

/// A TL1 tiling and a shape that satisfies it: `bm` 32 or 64, `BM = bm · a`, `BK` a multiple of
/// `256 / bm`, `rows = BM · n`, `cols = BK · t`.
fn tl1_geometry() -> impl Strategy<Value = (Tl1Tiling, Shape)> {
    (any::<bool>(), 1usize..4, 1usize..10, 1usize..3, 1usize..4).prop_map(|(wide, a, bk, n, t)| {
        let simd_rows = if wide { 64 } else { 32 };
        let tiling = Tl1Tiling::new(simd_rows * a, 256 / simd_rows * bk, simd_rows);
        (
            tiling,
            Shape::new(tiling.tile_cols * t, tiling.tile_rows * n),
        )
    })
}

/// Random packed bytes of a valid length (any nibble, invalid ones included) with a finite scale
/// at `scale_at` bytes from the end.
fn raw_packed(
    rng: &mut Rng,
    format: &dyn TernaryFormat,
    shape: Shape,
    scale_at: usize,
) -> Option<Vec<u8>> {
    let len = format.byte_size(shape).ok()?;
    let mut packed: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    packed[len - scale_at..len - scale_at + 4].copy_from_slice(&(rng.unit() * 2.0).to_le_bytes());
    Some(packed)
}

/// Checks `got` against the exact `Σ code · q / s · s_w` of each token and row, with the
/// reference's activation rounding (an all-zero token gives a zero of either sign).
fn check_exact(
    got: &[f32],
    codes: &[i8],
    x: &[f32],
    shape: Shape,
    w_scale: f32,
) -> Result<(), TestCaseError> {
    for (token, row_x) in x.chunks_exact(shape.ne0).enumerate() {
        let s = 127.0 / row_x.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (row, row_codes) in codes.chunks_exact(shape.ne0).enumerate() {
            let got = got[token * shape.ne1 + row];
            if s.is_infinite() {
                prop_assert_eq!(got, 0.0);
                continue;
            }
            let dot: i32 = row_codes
                .iter()
                .zip(row_x)
                .map(|(&c, &v)| i32::from(c) * (v * s).round_ties_even() as i32)
                .sum();
            let exact = dot as f32 / s * w_scale;
            prop_assert_eq!(
                got.to_bits(),
                exact.to_bits(),
                "token {} row {}",
                token,
                row
            );
        }
    }
    Ok(())
}

fn tl1_products(isa: Isa, threads: usize, w: &Tl1Matrix, x: &Tl1Activations) -> Vec<f32> {
    let mut out = vec![0f32; w.shape().ne1 * x.tokens()];
    CpuKernels::new(isa, threads)
        .unwrap()
        .tl1_gemm(w, x, &mut out)
        .unwrap();
    out
}
fn tl2_products(isa: Isa, threads: usize, w: &Tl2Matrix, x: &Tl2Activations) -> Vec<f32> {
    let mut out = vec![0f32; w.shape().ne1 * x.tokens()];
    CpuKernels::new(isa, threads)
        .unwrap()
        .tl2_gemm(w, x, &mut out)
        .unwrap();
    out
}

/// The bit patterns of `values`, so that equal results compare equal even where they are NaN
/// and `-0.0` differs from `0.0`.
fn bits(values: Vec<f32>) -> Vec<u32> {
    values.into_iter().map(f32::to_bits).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_isa_and_thread_count_matches_scalar((tiling, shape) in geometry(), seed: u64, tokens in 1usize..4) {
        let mut rng = Rng::new(seed);
        let format = Tl2::new(tiling);
        let packed = raw_packed(&mut rng, &format, shape, 32);
        prop_assume!(packed.is_some() && shape.ne0 > 0);
        let packed = packed.unwrap();
        let w = Tl2Matrix::new(tiling, &packed, shape).unwrap();
        let x = Tl2Activations::quantize(&rng.activations(shape.ne0, tokens), shape.ne0, w.three_cols()).unwrap();
        for b in 0..w.blocks() {
            let block = w.block(b);
            for token in 0..tokens {
                let reference = scalar::tl2_block_dot_ref(&block, x.three(token), x.two(token));
                for isa in Isa::supported() {
                    prop_assert_eq!((isa.dots().unwrap().tl2)(&block, x.three(token), x.two(token)), reference, "{}", isa);
                }
            }
        }
        let reference = bits(tl2_products(Isa::Scalar, 1, &w, &x));
        for isa in Isa::supported() {
            for threads in [1, 2, 3] {
                prop_assert_eq!(&bits(tl2_products(isa, threads, &w, &x)), &reference, "{} on {} threads", isa, threads);
            }
        }
    }

    #[test]
    fn products_are_the_exact_sums_of_the_unpacked_codes((tiling, shape) in geometry(), seed: u64) {
        let mut rng = Rng::new(seed);
        let format = Tl2::new(tiling);
        prop_assume!(format.byte_size(shape).is_ok() && shape.ne0 > 0);
        let weights = rng.ternary(shape.elements().unwrap());
        let packed = format.quantize(&weights, shape).unwrap();
        let codes = format.unpack(&packed, shape).unwrap().codes;
        let w = Tl2Matrix::new(tiling, &packed, shape).unwrap();
        let x = rng.activations(shape.ne0, 2);
        let acts = Tl2Activations::quantize(&x, shape.ne0, w.three_cols()).unwrap();
        check_exact(&tl2_products(Isa::Scalar, 1, &w, &acts), &codes, &x, shape, w.scale())?;
    }

    #[test]
    fn tl1_every_isa_and_thread_count_matches_scalar((tiling, shape) in tl1_geometry(), seed: u64, tokens in 1usize..4) {
        let mut rng = Rng::new(seed);
        let format = Tl1::new(tiling);
        let packed = raw_packed(&mut rng, &format, shape, 32).unwrap();
        let w = Tl1Matrix::new(tiling, &packed, shape).unwrap();
        let x = Tl1Activations::quantize(&rng.activations(shape.ne0, tokens), shape.ne0).unwrap();
        let rows = tiling.simd_rows;
        for b in 0..w.blocks() {
            let block = w.block(b);
            for token in 0..tokens {
                let mut reference = vec![7i32; rows];
                scalar::tl1_block_dot_ref(&block, x.tables(token), &mut reference);
                for isa in Isa::supported() {
                    let mut sums = vec![7i32; rows];
                    (isa.dots().unwrap().tl1)(&block, x.tables(token), &mut sums);
                    prop_assert_eq!(&sums, &reference, "{}", isa);
                }
            }
        }
        let reference = bits(tl1_products(Isa::Scalar, 1, &w, &x));
        for isa in Isa::supported() {
            for threads in [1, 2, 3] {
                prop_assert_eq!(&bits(tl1_products(isa, threads, &w, &x)), &reference, "{} on {} threads", isa, threads);
            }
        }
    }

    #[test]
    fn tl1_products_are_the_exact_sums_of_the_unpacked_codes((tiling, shape) in tl1_geometry(), seed: u64) {
        let mut rng = Rng::new(seed);
        let format = Tl1::new(tiling);
        let weights = rng.ternary(shape.elements().unwrap());
        let packed = format.quantize(&weights, shape).unwrap();
        let codes = format.unpack(&packed, shape).unwrap().codes;
        let w = Tl1Matrix::new(tiling, &packed, shape).unwrap();
        let x = rng.activations(shape.ne0, 2);
        let acts = Tl1Activations::quantize(&x, shape.ne0).unwrap();
        let got = tl1_products(Isa::Scalar, 1, &w, &acts);
        check_exact(&got, &codes, &x, shape, w.scale())?;
    }
}

/// A K tile of 288 columns (96 groups of up to 3 · 127) overflows the reference's i16 tile sum; the
/// kernels reproduce the wrap rather than the exact sum.
#[test]
fn tile_sums_wrap_in_i16_like_the_reference() {
    let tiling = Tl2Tiling {
        tile_rows: 32,
        tile_cols: 288,
    };
    let shape = Shape::new(288, 32);
    let packed = Tl2::new(tiling).quantize(&[1.0; 288 * 32], shape).unwrap();
    let w = Tl2Matrix::new(tiling, &packed, shape).unwrap();
    let x = Tl2Activations::quantize(&[2.0; 288], 288, 288).unwrap();
    let exact = 288 * 127;
    let wrapped = i32::from((exact as u32 as u16) as i16);
    assert_ne!(wrapped, exact);
    for isa in Isa::supported() {
        let sums = (isa.dots().unwrap().tl2)(&w.block(0), x.three(0), x.two(0));
        assert_eq!(sums, [wrapped; 32], "{isa}");
    }
}

/// A K tile of 272 columns (136 pairs of up to 2 · 127) overflows the reference's i16 tile sum; the
/// kernels reproduce the wrap rather than the exact sum.
#[test]
fn tl1_tile_sums_wrap_in_i16_like_the_reference() {
    for simd_rows in [32, 64] {
        let tiling = Tl1Tiling::new(simd_rows, 272, simd_rows);
        let shape = Shape::new(544, simd_rows);
        let packed = Tl1::new(tiling)
            .quantize(&vec![1.0; 544 * simd_rows], shape)
            .unwrap();
        let w = Tl1Matrix::new(tiling, &packed, shape).unwrap();
        let x = Tl1Activations::quantize(&[2.0; 544], 544).unwrap();
        let exact = 272 * 127;
        let wrapped = i32::from((exact as u32 as u16) as i16);
        assert_ne!(wrapped, exact);
        for isa in Isa::supported() {
            let mut sums = vec![0; simd_rows];
            (isa.dots().unwrap().tl1)(&w.block(0), x.tables(0), &mut sums);
            assert_eq!(sums, vec![2 * wrapped; simd_rows], "{isa}");
        }
    }
}
