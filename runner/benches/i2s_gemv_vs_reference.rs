//! I2_S × I8_S GEMV: the engine against bitnet.cpp's own kernel, measured in the same run.
//!
//! Engine and reference run alternately (A B A B …) on the same packed weights and quantized
//! activations, after checking that both produce identical outputs; each row of the table is the
//! median of the repetitions. The reference's matmul splits rows across a persistent thread
//! pool, so its multi-thread figure splits the rows over the engine's own team of threads, so
//! that no idle pool spins on the cores while the other side runs. On one thread both run on the
//! calling thread, as both engines do.
//!
//! `cargo bench -p bitnet-runner --bench i2s_gemv_vs_reference [-- REPS]`

mod support;

use anyhow::{ensure, Context, Result};
use bitnet_engine::formats::{FpContract, I2s, I2sMatrix, I8sActivations, Shape, TernaryFormat};
use bitnet_engine::kernels::{CpuKernels, Numerics};
use bitnet_ffi_cpp::{Backend, I8Activations};

/// (rows, K) of the BitNet-b1.58-2B-4T projections.
const SHAPES: [(usize, usize); 4] = [(2560, 2560), (640, 2560), (6912, 2560), (2560, 6912)];

struct Case {
    rows: usize,
    k: usize,
    packed: Vec<u8>,
    scale: f32,
    engine_acts: I8sActivations,
    ref_acts: I8Activations,
}

fn case(be: &Backend, rows: usize, k: usize) -> Result<Case> {
    let (weights, x) = support::inputs(rows, k);
    let shape = Shape { ne0: k, ne1: rows };
    let packed = I2s.quantize(&weights, shape)?;
    let engine_acts = I8sActivations::quantize(&x, k, FpContract::Fused)?;
    let ref_acts = be.quantize_i8_s(&x)?;
    ensure!(
        engine_acts.codes() == ref_acts.q.as_slice(),
        "engine and reference quantize the activations differently"
    );
    Ok(Case {
        rows,
        k,
        scale: I2sMatrix::new(&packed, shape)?.scale(),
        packed,
        engine_acts,
        ref_acts,
    })
}

fn engine_gemv(kernels: &CpuKernels, c: &Case, out: &mut [f32]) -> Result<()> {
    let w = I2sMatrix::new(
        &c.packed,
        Shape {
            ne0: c.k,
            ne1: c.rows,
        },
    )?;
    kernels.i2s_gemv(&w, &c.engine_acts, out)?;
    Ok(())
}

fn reference_gemv(be: &Backend, team: &CpuKernels, c: &Case, out: &mut [f32]) -> Result<()> {
    let row_bytes = c.k / 4;
    let chunks = team.map_row_chunks(out, 1, |first, chunk| {
        let w = &c.packed[first * row_bytes..(first + chunk.len()) * row_bytes];
        be.gemv_i2_i8_s(w, chunk.len(), &c.ref_acts, c.scale, chunk)
    });
    chunks.into_iter().try_for_each(|r| r.map_err(Into::into))
}

fn main() -> Result<()> {
    let reps = support::reps(41);
    let be = Backend::init().context("initialising the reference")?;
    println!("reference: {}", bitnet_ffi_cpp::reference_info());
    println!(
        "{:>12} {:>3} {:>10} {:>10} {:>9} {:>9} {:>7}",
        "rows×K", "thr", "engine µs", "ref µs", "eng GB/s", "ref GB/s", "ratio"
    );
    for (rows, k) in SHAPES {
        let c = case(&be, rows, k)?;
        for threads in [1usize, 2] {
            let kernels = CpuKernels::best(threads)?.with_numerics(Numerics::native());
            let (mut a, mut b) = (vec![0f32; rows], vec![0f32; rows]);
            engine_gemv(&kernels, &c, &mut a)?;
            reference_gemv(&be, &kernels, &c, &mut b)?;
            ensure!(a == b, "engine and reference outputs differ for {rows}×{k}");
            let (mut te, mut tr) = (Vec::new(), Vec::new());
            for _ in 0..reps {
                te.push(support::time(&mut || engine_gemv(&kernels, &c, &mut a))?);
                tr.push(support::time(&mut || {
                    reference_gemv(&be, &kernels, &c, &mut b)
                })?);
            }
            let (e, r) = (support::median(te), support::median(tr));
            let gb = (rows * k / 4) as f64 / 1e9;
            println!(
                "{:>12} {:>3} {:>10.1} {:>10.1} {:>9.2} {:>9.2} {:>6.2}×",
                format!("{rows}×{k}"),
                threads,
                e.as_secs_f64() * 1e6,
                r.as_secs_f64() * 1e6,
                gb / e.as_secs_f64(),
                gb / r.as_secs_f64(),
                r.as_secs_f64() / e.as_secs_f64()
            );
        }
    }
    println!("ratio = reference time / engine time (> 1: the engine is faster)");
    Ok(())
}
