//! GEMV / GEMM throughput of the CPU kernels on BitNet-b1.58-2B-4T shapes, per format, ISA and
//! thread count. Throughput is reported in bytes of packed weights per call.

use std::time::Duration;

use bitnet_engine::formats::{
    FpContract, I2s, I2sMatrix, I8sActivations, Q8kActivations, Shape, TernaryFormat, Tl1,
    Tl1Activations, Tl1Matrix, Tl1Tiling, TqKind, TqMatrix,
};
use bitnet_engine::kernels::{CpuKernels, DenseMatrix, Isa};
use bitnet_engine::synth::tl1_tiling_rule;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::f16;

/// (rows, K) of the 2B-4T projections: q/o, k/v, up/gate, down.
const SHAPES: [(usize, usize); 4] = [(2560, 2560), (640, 2560), (6912, 2560), (2560, 6912)];
/// Tokens of the GEMM runs.
const GEMM_TOKENS: usize = 8;
const THREADS: [usize; 2] = [1, 2];

fn values(n: usize, salt: u64) -> Vec<f32> {
    let mut state = salt.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// Packed weights of every benchmarked format for one shape.
struct Weights {
    shape: Shape,
    i2s: Vec<u8>,
    tq1: Vec<u8>,
    tq2: Vec<u8>,
    tl1: (Tl1Tiling, Vec<u8>),
    f16: Vec<f16>,
}

impl Weights {
    fn new(rows: usize, k: usize) -> Self {
        let shape = Shape::new(k, rows);
        let master = values(rows * k, 1);
        let ternary: Vec<f32> = master.iter().map(|v| (v * 1.4).round()).collect();
        let tl1_tiling = tl1_tiling_rule(rows, k).expect("a tl1 tiling");
        Weights {
            shape,
            i2s: I2s.quantize(&ternary, shape).expect("i2_s shape"),
            tq1: TqKind::Tq1_0
                .format()
                .quantize(&ternary, shape)
                .expect("tq1_0 shape"),
            tq2: TqKind::Tq2_0
                .format()
                .quantize(&ternary, shape)
                .expect("tq2_0 shape"),
            tl1: (
                tl1_tiling,
                Tl1::new(tl1_tiling)
                    .quantize(&ternary, shape)
                    .expect("tl1 shape"),
            ),
            f16: master.iter().map(|&v| f16::from_f32(v)).collect(),
        }
    }
}

fn bench_products(c: &mut Criterion) {
    let configs: Vec<(Isa, usize)> = Isa::supported()
        .into_iter()
        .flat_map(|isa| THREADS.map(|threads| (isa, threads)))
        .collect();
    for (rows, k) in SHAPES {
        let weights = Weights::new(rows, k);
        for tokens in [1, GEMM_TOKENS] {
            let op = if tokens == 1 { "gemv" } else { "gemm8" };
            let x = values(k * tokens, 2);
            let i8s = I8sActivations::quantize(&x, k, FpContract::Off).expect("i8_s");
            let q8k = Q8kActivations::quantize(&x, k, FpContract::Off).expect("q8_K");
            let i2s = I2sMatrix::new(&weights.i2s, weights.shape).expect("i2_s matrix");
            let tq1 =
                TqMatrix::new(TqKind::Tq1_0, &weights.tq1, weights.shape).expect("tq1_0 matrix");
            let tq2 =
                TqMatrix::new(TqKind::Tq2_0, &weights.tq2, weights.shape).expect("tq2_0 matrix");
            let tl1 =
                Tl1Matrix::new(weights.tl1.0, &weights.tl1.1, weights.shape).expect("tl1 matrix");
            let tl1_acts = Tl1Activations::quantize(&x, k).expect("tl1 tables");
            let dense = DenseMatrix::new(&weights.f16, weights.shape).expect("f16 matrix");
            let mut out = vec![0f32; rows * tokens];
            let formats: [(&str, usize); 5] = [
                ("i2_s", weights.i2s.len()),
                ("tq1_0", weights.tq1.len()),
                ("tq2_0", weights.tq2.len()),
                ("tl1", weights.tl1.1.len()),
                ("f16", weights.f16.len() * 2),
            ];
            for (format, bytes) in formats {
                let mut group = c.benchmark_group(format!("{op}/{format}/{rows}x{k}"));
                group.throughput(Throughput::Bytes(bytes as u64));
                for &(isa, threads) in &configs {
                    let kernels = CpuKernels::new(isa, threads).expect("kernels");
                    let id = BenchmarkId::from_parameter(format!("{isa}-t{threads}"));
                    group.bench_function(id, |b| {
                        b.iter(|| match format {
                            "i2_s" => kernels.i2s_gemm(&i2s, &i8s, &mut out),
                            "tq1_0" => kernels.tq_gemm(&tq1, &q8k, &mut out),
                            "tq2_0" => kernels.tq_gemm(&tq2, &q8k, &mut out),
                            "tl1" => kernels.tl1_gemm(&tl1, &tl1_acts, &mut out),
                            _ => kernels.f16_gemm(&dense, &x, &mut out),
                        })
                    });
                }
                group.finish();
            }
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(800));
    targets = bench_products
}
criterion_main!(benches);
