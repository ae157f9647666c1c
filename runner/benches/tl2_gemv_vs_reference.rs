//! TL2 GEMV: the engine's lookup-table kernels against the kernels bitnet.cpp's code generator
//! wrote for the same shapes, measured in the same run.
//!
//! Both sides build their tables from the f32 activations and multiply one token; engine and
//! reference run alternately (A B A B …) on the same packed weights after checking that their
//! outputs are bit-identical, and each row is the median of the repetitions. The reference
//! splits tiles over ggml's thread pool, which its kernel entry points do not expose, so it runs
//! on one thread; the engine's two-thread row is printed beside it without a ratio.
//!
//! `cargo bench -p bitnet-runner --bench tl2_gemv_vs_reference [-- REPS]`

mod support;

use anyhow::{bail, ensure, Result};
use bitnet_engine::formats::{Shape, TernaryFormat, Tl2, Tl2Activations, Tl2Matrix, Tl2Tiling};
use bitnet_engine::kernels::CpuKernels;
use bitnet_ffi_cpp::{tl2_gemm, tl2_shapes};

/// (rows, K) of the BitNet-b1.58-2B-4T projections.
const SHAPES: [(usize, usize); 4] = [(2560, 2560), (640, 2560), (6912, 2560), (2560, 6912)];

fn engine_gemv(kernels: &CpuKernels, w: &Tl2Matrix, x: &[f32], out: &mut [f32]) -> Result<()> {
    let acts = Tl2Activations::quantize(x, w.shape().ne0, w.three_cols())?;
    kernels.tl2_gemm(w, &acts, out)?;
    Ok(())
}

fn main() -> Result<()> {
    let reps = support::reps(41);
    let generated = tl2_shapes();
    if generated.is_empty() {
        bail!(
            "the reference was built without TL2 kernels: {}",
            bitnet_ffi_cpp::reference_info().tl2
        );
    }
    println!("reference: {}", bitnet_ffi_cpp::reference_info());
    println!(
        "{:>12} {:>3} {:>10} {:>10} {:>9} {:>9} {:>7}",
        "rows×K", "thr", "engine µs", "ref µs", "eng GB/s", "ref GB/s", "ratio"
    );
    for (rows, k) in SHAPES {
        let Some(kernel) = generated.iter().find(|s| (s.m, s.k) == (rows, k)) else {
            println!(
                "{:>12} no reference kernel was generated for this shape",
                format!("{rows}×{k}")
            );
            continue;
        };
        let tiling = Tl2Tiling {
            tile_rows: kernel.bm,
            tile_cols: kernel.bk,
        };
        let (weights, x) = support::inputs(rows, k);
        let shape = Shape::new(k, rows);
        let packed = Tl2::new(tiling).quantize(&weights, shape)?;
        let w = Tl2Matrix::new(tiling, &packed, shape)?;
        let weight_bytes = (rows * k * 5 / 24) as f64 / 1e9;
        for threads in [1usize, 2] {
            let kernels = CpuKernels::best(threads)?;
            let mut a = vec![0f32; rows];
            engine_gemv(&kernels, &w, &x, &mut a)?;
            let b = tl2_gemm(&packed, rows, k, &x, 1)?;
            ensure!(
                a.iter()
                    .map(|v| v.to_bits())
                    .eq(b.iter().map(|v| v.to_bits())),
                "engine and reference outputs differ for {rows}×{k}"
            );
            let (mut te, mut tr) = (Vec::new(), Vec::new());
            for _ in 0..reps {
                te.push(support::time(&mut || {
                    engine_gemv(&kernels, &w, &x, &mut a)
                })?);
                if threads == 1 {
                    tr.push(support::time(&mut || {
                        tl2_gemm(&packed, rows, k, &x, 1)
                            .map(drop)
                            .map_err(Into::into)
                    })?);
                }
            }
            let e = support::median(te).as_secs_f64();
            let label = format!("{rows}×{k}");
            if threads == 1 {
                let r = support::median(tr).as_secs_f64();
                println!(
                    "{label:>12} {threads:>3} {:>10.1} {:>10.1} {:>9.2} {:>9.2} {:>6.2}×",
                    e * 1e6,
                    r * 1e6,
                    weight_bytes / e,
                    weight_bytes / r,
                    r / e
                );
            } else {
                println!(
                    "{label:>12} {threads:>3} {:>10.1} {:>10} {:>9.2} {:>9} {:>7}",
                    e * 1e6,
                    "-",
                    weight_bytes / e,
                    "-",
                    "-"
                );
            }
        }
    }
    println!("GB/s counts the 5/24 bytes per weight of the three-weight part; ratio = reference time / engine time (> 1: the engine is faster)");
    Ok(())
}
