//! Matrix products: the reference's epilogues, its one-token / multi-token dispatch, output layout
//! and refusals of mismatched operands.

use bitnet_engine::formats::{
    FpContract, I2s, I2sMatrix, I8sActivations, Q8kActivations, Shape, TernaryFormat, TqKind,
    TqMatrix,
};
use bitnet_engine::kernels::{
    i2s_epilogue, scalar, CpuKernels, DenseMatrix, Isa, KernelError, Numerics, ReduceWidth, Team,
};
use half::f16;

fn pattern(n: usize, salt: u32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| {
            let h = i
                .wrapping_mul(2_654_435_761)
                .wrapping_add(salt.wrapping_mul(40_503))
                >> 16;
            (h % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn kernels() -> CpuKernels {
    CpuKernels::best(2).unwrap()
}

#[test]
fn i2s_gemv_applies_the_reference_epilogue() {
    let shape = Shape::new(256, 8);
    let weights: Vec<f32> = pattern(256 * 8, 1)
        .iter()
        .map(|v| (v * 1.5).round() * 0.25)
        .collect();
    let packed = I2s.quantize(&weights, shape).unwrap();
    let w = I2sMatrix::new(&packed, shape).unwrap();
    let x = I8sActivations::quantize(&pattern(256, 2), 256, FpContract::Off).unwrap();
    let mut out = vec![0f32; 8];
    kernels().i2s_gemv(&w, &x, &mut out).unwrap();
    for (row, &y) in out.iter().enumerate() {
        let dot = scalar::i2s_dot_ref(&w.row(row), x.codes());
        let expected = (dot as f32 - x.sums()[0] as f32) / x.scales()[0] * w.scale();
        assert_eq!(y.to_bits(), expected.to_bits());
        assert_eq!(y, i2s_epilogue(dot, x.sums()[0], x.scales()[0], w.scale()));
        // And it approximates the float product of the dequantized weights.
        let dequant = I2s.dequantize(&packed, shape).unwrap();
        let exact: f32 = dequant[row * 256..(row + 1) * 256]
            .iter()
            .zip(pattern(256, 2))
            .map(|(a, b)| a * b)
            .sum();
        assert!(
            (y - exact).abs() < 0.02 * (1.0 + exact.abs()),
            "row {row}: {y} vs {exact}"
        );
    }
}

#[test]
fn gemm_writes_token_major_and_equals_per_token_gemv() {
    let (k, rows, tokens) = (512, 37, 3);
    let shape = Shape::new(k, rows);
    let weights = pattern(k * rows, 3);
    let x = pattern(k * tokens, 4);
    let packed_i2s = I2s.quantize(&weights, shape).unwrap();
    let i2s = I2sMatrix::new(&packed_i2s, shape).unwrap();
    let packed_tq = TqKind::Tq2_0.format().quantize(&weights, shape).unwrap();
    let tq = TqMatrix::new(TqKind::Tq2_0, &packed_tq, shape).unwrap();
    let kernels = kernels();
    let all_i8 = I8sActivations::quantize(&x, k, FpContract::Off).unwrap();
    let all_q8 = Q8kActivations::quantize(&x, k, FpContract::Off).unwrap();
    let (mut gemm_i2s, mut gemm_tq) = (vec![0f32; rows * tokens], vec![0f32; rows * tokens]);
    kernels.i2s_gemm(&i2s, &all_i8, &mut gemm_i2s).unwrap();
    kernels.tq_gemm(&tq, &all_q8, &mut gemm_tq).unwrap();
    for t in 0..tokens {
        let token = &x[t * k..(t + 1) * k];
        let mut one = vec![0f32; rows];
        kernels
            .i2s_gemv(
                &i2s,
                &I8sActivations::quantize(token, k, FpContract::Off).unwrap(),
                &mut one,
            )
            .unwrap();
        assert_eq!(&gemm_i2s[t * rows..(t + 1) * rows], &one[..]);
        kernels
            .tq_gemv(
                &tq,
                &Q8kActivations::quantize(token, k, FpContract::Off).unwrap(),
                &mut one,
            )
            .unwrap();
        assert_eq!(&gemm_tq[t * rows..(t + 1) * rows], &one[..]);
    }
}

#[test]
fn f16_products_follow_the_reference_dispatch() {
    let (k, rows) = (96, 5);
    let shape = Shape::new(k, rows);
    let weights: Vec<f16> = pattern(k * rows, 5)
        .into_iter()
        .map(f16::from_f32)
        .collect();
    let w = DenseMatrix::new(&weights, shape).unwrap();
    let x = pattern(2 * k, 6);
    for width in [ReduceWidth::Lanes8, ReduceWidth::Lanes16] {
        let kernels = kernels().with_numerics(Numerics {
            contract: FpContract::Off,
            width,
        });
        // One token: activations rounded to f16, ggml_vec_dot_f16.
        let mut one = vec![0f32; rows];
        kernels.f16_gemv(&w, &x[..k], &mut one).unwrap();
        let rounded: Vec<f16> = x[..k].iter().map(|&v| f16::from_f32(v)).collect();
        for (row, &y) in one.iter().enumerate() {
            assert_eq!(
                y.to_bits(),
                scalar::f16_vec_dot_ref(w.row(row), &rounded, width).to_bits()
            );
        }
        // Two tokens: tinyBLAS on the f32 activations.
        let mut two = vec![0f32; 2 * rows];
        kernels.f16_gemm(&w, &x, &mut two).unwrap();
        for t in 0..2 {
            for row in 0..rows {
                let expected = scalar::f16_tiled_dot_ref(w.row(row), &x[t * k..(t + 1) * k], width);
                assert_eq!(two[t * rows + row].to_bits(), expected.to_bits());
            }
        }
    }
    // A width tinyBLAS refuses (ne0 % lanes ≠ 0) falls back to the rounded one-token dot per token.
    let (k, shape) = (20, Shape::new(20, 2));
    let weights: Vec<f16> = pattern(k * 2, 7).into_iter().map(f16::from_f32).collect();
    let w = DenseMatrix::new(&weights, shape).unwrap();
    let x = pattern(2 * k, 8);
    let mut out = vec![0f32; 4];
    kernels().f16_gemm(&w, &x, &mut out).unwrap();
    let rounded: Vec<f16> = x[k..].iter().map(|&v| f16::from_f32(v)).collect();
    let width = kernels().numerics().width;
    assert_eq!(
        out[3].to_bits(),
        scalar::f16_vec_dot_ref(w.row(1), &rounded, width).to_bits()
    );
}

#[test]
fn f32_products_follow_the_reference_dispatch() {
    let (k, rows) = (64, 3);
    let weights = pattern(k * rows, 9);
    let w = DenseMatrix::new(&weights, Shape::new(k, rows)).unwrap();
    let x = pattern(2 * k, 10);
    let kernels = kernels();
    let width = kernels.numerics().width;
    let mut one = vec![0f32; rows];
    kernels.f32_gemv(&w, &x[..k], &mut one).unwrap();
    assert_eq!(
        one[2].to_bits(),
        scalar::f32_vec_dot_ref(w.row(2), &x[..k], width).to_bits()
    );
    let mut two = vec![0f32; 2 * rows];
    kernels.f32_gemm(&w, &x, &mut two).unwrap();
    assert_eq!(
        two[rows + 2].to_bits(),
        scalar::f32_tiled_dot_ref(w.row(2), &x[k..], width).to_bits()
    );
}

#[test]
fn mismatched_operands_are_errors() {
    let shape = Shape::new(128, 4);
    let packed = I2s.quantize(&[0.5; 512], shape).unwrap();
    let w = I2sMatrix::new(&packed, shape).unwrap();
    let kernels = kernels();
    let x = I8sActivations::quantize(&[0.1; 256], 128, FpContract::Off).unwrap();
    let mut out = vec![0f32; 4];
    assert!(matches!(
        kernels.i2s_gemv(&w, &x, &mut out),
        Err(KernelError::Mismatch { .. })
    ));
    let mut out = vec![0f32; 7];
    assert!(matches!(
        kernels.i2s_gemm(&w, &x, &mut out),
        Err(KernelError::Mismatch {
            expected: 8,
            actual: 7,
            ..
        })
    ));
    let narrow = I8sActivations::quantize(&[0.1; 64], 64, FpContract::Off).unwrap();
    assert!(matches!(
        kernels.i2s_gemm(&w, &narrow, &mut out),
        Err(KernelError::Mismatch { .. })
    ));
    let dense = vec![0f32; 12];
    assert!(matches!(
        DenseMatrix::new(&dense, Shape::new(5, 2)),
        Err(KernelError::Mismatch { .. })
    ));
    let w = DenseMatrix::new(&dense, Shape::new(6, 2)).unwrap();
    assert!(matches!(
        kernels.f32_gemm(&w, &[0.0; 7], &mut [0.0; 2]),
        Err(KernelError::Mismatch { .. })
    ));
    assert!(matches!(
        I2sMatrix::new(&packed[..10], shape),
        Err(bitnet_engine::formats::FormatError::PackedSize { .. })
    ));
    for isa in Isa::ALL.into_iter().filter(|isa| !isa.is_supported()) {
        assert!(matches!(
            CpuKernels::new(isa, 1),
            Err(KernelError::IsaUnsupported { .. })
        ));
    }
}

#[test]
fn thread_count_and_isa_are_reported() {
    let kernels = CpuKernels::new(Isa::Scalar, 3).unwrap();
    assert_eq!((kernels.isa(), kernels.threads()), (Isa::Scalar, 3));
    assert_eq!(CpuKernels::new(Isa::Scalar, 0).unwrap().threads(), 1);
    assert!(Isa::best().is_supported());
    let team = std::sync::Arc::new(Team::new(2).unwrap());
    assert_eq!(
        CpuKernels::with_team(Isa::best(), team).unwrap().threads(),
        2
    );
}

#[test]
fn one_dispatch_over_several_matrices_equals_each_product_and_refuses_mismatches() {
    let k = 256;
    let shapes = [Shape::new(k, 37), Shape::new(k, 5), Shape::new(k, 70)];
    let packed: Vec<Vec<u8>> = shapes
        .iter()
        .enumerate()
        .map(|(i, &s)| I2s.quantize(&pattern(k * s.ne1, 10 + i as u32), s).unwrap())
        .collect();
    let ws: Vec<I2sMatrix> = packed
        .iter()
        .zip(shapes)
        .map(|(p, s)| I2sMatrix::new(p, s).unwrap())
        .collect();
    let x = I8sActivations::quantize(&pattern(k, 20), k, FpContract::Off).unwrap();
    for threads in [1, 3] {
        let kernels = CpuKernels::best(threads).unwrap();
        let mut outs: Vec<Vec<f32>> = shapes.iter().map(|s| vec![f32::NAN; s.ne1]).collect();
        let mut slices: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
        kernels.i2s_gemv_each(&ws, &x, &mut slices).unwrap();
        for (w, out) in ws.iter().zip(&outs) {
            let mut each = vec![0f32; w.shape().ne1];
            CpuKernels::new(Isa::Scalar, 1)
                .unwrap()
                .i2s_gemv(w, &x, &mut each)
                .unwrap();
            assert_eq!(out, &each, "{threads} threads");
        }
    }
    let kernels = kernels();
    let mut short = vec![0f32; 36];
    let mut fine = vec![0f32; 5];
    let err = kernels
        .i2s_gemv_each(&ws[..2], &x, &mut [&mut short, &mut fine])
        .unwrap_err();
    assert!(matches!(
        err,
        KernelError::Mismatch {
            expected: 37,
            actual: 36,
            ..
        }
    ));
    let err = kernels
        .i2s_gemv_each(&ws[..2], &x, &mut [&mut fine])
        .unwrap_err();
    assert!(matches!(
        err,
        KernelError::Mismatch {
            expected: 2,
            actual: 1,
            ..
        }
    ));
    let two = I8sActivations::quantize(&pattern(2 * k, 21), k, FpContract::Off).unwrap();
    let err = kernels
        .i2s_gemv_each(&ws[1..2], &two, &mut [&mut fine])
        .unwrap_err();
    assert!(matches!(
        err,
        KernelError::Mismatch {
            expected: 1,
            actual: 2,
            ..
        }
    ));
}

#[test]
fn one_token_products_in_many_chunks_are_those_of_one_thread() {
    // Large enough that each thread streams several chunks of its own run and takes some from
    // the back of the other's.
    let k = 256;
    let (f16_rows, i2s_rows) = (4099, 70_001);
    let dense: Vec<f16> = pattern(k * f16_rows, 30)
        .iter()
        .map(|&v| f16::from_f32(v))
        .collect();
    let w = DenseMatrix::new(&dense, Shape::new(k, f16_rows)).unwrap();
    let x = pattern(k, 31);
    let ternary: Vec<f32> = pattern(k * i2s_rows, 32)
        .iter()
        .map(|v| v.round())
        .collect();
    let packed = I2s.quantize(&ternary, Shape::new(k, i2s_rows)).unwrap();
    let t = I2sMatrix::new(&packed, Shape::new(k, i2s_rows)).unwrap();
    let a = I8sActivations::quantize(&x, k, FpContract::Off).unwrap();
    // Two parts of the same total rows in either order: a product of one shape never takes the
    // spans of the other.
    let parts: Vec<Vec<u8>> = [1000, 3000]
        .iter()
        .map(|&rows| {
            I2s.quantize(&ternary[..k * rows], Shape::new(k, rows))
                .unwrap()
        })
        .collect();
    let (small, big) = (
        I2sMatrix::new(&parts[0], Shape::new(k, 1000)).unwrap(),
        I2sMatrix::new(&parts[1], Shape::new(k, 3000)).unwrap(),
    );
    let run = |kernels: &CpuKernels| {
        let (mut dense_out, mut i2s_out) = (vec![f32::NAN; f16_rows], vec![f32::NAN; i2s_rows]);
        kernels.f16_gemv(&w, &x, &mut dense_out).unwrap();
        kernels.i2s_gemv(&t, &a, &mut i2s_out).unwrap();
        let mut each = Vec::new();
        for ws in [[small, big], [big, small]] {
            let mut outs = ws.map(|w| vec![f32::NAN; w.shape().ne1]);
            let mut slices = outs.each_mut().map(|o| o.as_mut_slice());
            kernels.i2s_gemv_each(&ws, &a, &mut slices).unwrap();
            each.push(outs);
        }
        (dense_out, i2s_out, each)
    };
    let serial = run(&CpuKernels::best(1).unwrap());
    for threads in [2, 3] {
        let kernels = CpuKernels::best(threads).unwrap();
        // The second time, the spans of every shape are those kept from the first.
        for time in 0..2 {
            assert!(run(&kernels) == serial, "{threads} threads, time {time}");
        }
    }
}
