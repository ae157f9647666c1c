//! The engine's TL2 products against the reference's generated kernels where the reference's
//! arithmetic degenerates: an all-zero token (scale 127 / 0 = ∞, tables of converted NaNs) and
//! activations large enough to saturate, compared bit for bit, signs of zero included.

use bitnet_engine::formats::{Shape, TernaryFormat, Tl2, Tl2Activations, Tl2Matrix, Tl2Tiling};
use bitnet_engine::kernels::{CpuKernels, Isa};
use bitnet_ffi_cpp::{reference_info, tl2_gemm, tl2_shapes};

/// The smallest generated shape, or `None` (with the reason printed) where TL2 was not built.
fn generated() -> Option<(usize, usize, Tl2Tiling)> {
    let shape = tl2_shapes().into_iter().min_by_key(|s| s.m * s.k);
    if shape.is_none() {
        eprintln!("SKIPPED: TL2 {}", reference_info().tl2);
    }
    shape.map(|s| {
        (
            s.m,
            s.k,
            Tl2Tiling {
                tile_rows: s.bm,
                tile_cols: s.bk,
            },
        )
    })
}

fn compare(x: &[f32]) {
    let Some((m, k, tiling)) = generated() else {
        return;
    };
    let weights: Vec<f32> = (0..m * k)
        .map(|i| [-0.25f32, 0.0, 0.25][(i * 7 + i / k) % 3])
        .collect();
    let shape = Shape::new(k, m);
    let packed = Tl2::new(tiling).quantize(&weights, shape).unwrap();
    let tokens = x.len() / k;
    let reference = tl2_gemm(&packed, m, k, x, tokens).unwrap();
    let w = Tl2Matrix::new(tiling, &packed, shape).unwrap();
    let acts = Tl2Activations::quantize(x, k, w.three_cols()).unwrap();
    for isa in Isa::supported() {
        let mut out = vec![0f32; m * tokens];
        CpuKernels::new(isa, 1)
            .unwrap()
            .tl2_gemm(&w, &acts, &mut out)
            .unwrap();
        for (i, (e, r)) in out.iter().zip(&reference).enumerate() {
            assert_eq!(
                e.to_bits(),
                r.to_bits(),
                "{isa}: output {i}: engine {e}, reference {r}"
            );
        }
    }
}

#[test]
fn an_all_zero_token_gives_the_references_signed_zeros() {
    let Some((_, k, _)) = generated() else {
        return;
    };
    let mut x = vec![0f32; 2 * k];
    x[k..]
        .iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v = (i as f32 * 0.37).sin());
    compare(&x);
}

#[test]
fn extreme_activations_match_the_reference() {
    let Some((_, k, _)) = generated() else {
        return;
    };
    let x: Vec<f32> = (0..k)
        .map(|i| match i % 5 {
            0 => 3.0e38,
            1 => -3.0e38,
            2 => 1.0e-30,
            _ => (i as f32).cos(),
        })
        .collect();
    compare(&x);
}
