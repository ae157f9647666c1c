//! The CUDA backend against its CPU twins: kernels on random inputs, whole models on synthetic
//! files, device choice, memory limits and freeing.
//!
//! Tests that need a device are `#[ignore]`d with the reason; on a GPU machine run
//! `cargo test -p bitnet-engine --features cuda --test cuda -- --include-ignored`.
#![cfg(feature = "cuda")]

use bitnet_engine::cuda::{probe, CudaError, CudaOps};
use bitnet_engine::formats::{
    FpContract, I2s, I2sMatrix, I8sActivations, Q8kActivations, Shape, TernaryFormat, Tq1_0, Tq2_0,
    TqKind, TqMatrix,
};
use bitnet_engine::generation::{Sampler, SamplerConfig};
use bitnet_engine::gguf::GgmlType;
use bitnet_engine::kernels::{CpuKernels, DenseMatrix, Numerics, ReduceWidth};
use bitnet_engine::model::{
    argmax, ops, Device, DeviceError, DeviceStrategy, Model, ModelError, ModelOptions, Picked,
    Session,
};
use bitnet_engine::synth::{write_model, Arch, SplitMix64, SynthSpec, WeightFormat};
use half::f16;

const NEEDS_GPU: &str = "needs a CUDA device";

fn ops() -> CudaOps {
    CudaOps::new(0).expect("a CUDA device")
}

/// Normal values with a few outliers, so quantizers see a spread of magnitudes.
fn values(rng: &mut SplitMix64, n: usize, scale: f64) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let v = rng.next_normal() * scale;
            (if i % 97 == 5 { v * 8.0 } else { v }) as f32
        })
        .collect()
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

const CONTRACTS: [FpContract; 2] = [FpContract::Off, FpContract::Fused];

#[test]
#[ignore = "needs a CUDA device"]
fn activation_quantizers_match_the_cpu_bit_for_bit() {
    let gpu = ops();
    let mut rng = SplitMix64::new(1);
    for (k, tokens) in [(256, 1), (512, 3), (2560, 5), (6912, 2)] {
        let mut x = values(&mut rng, k * tokens, 1.5);
        let zero = (k + 3) % x.len();
        x[zero] = 0.0;
        for contract in CONTRACTS {
            let cpu = I8sActivations::quantize(&x, k, contract).unwrap();
            let dev = gpu.quantize_i8s(&x, k, contract).unwrap();
            assert_eq!(dev, cpu, "i8_s k {k} tokens {tokens} {contract:?}");
            let cpu = Q8kActivations::quantize(&x, k, contract).unwrap();
            let dev = gpu.quantize_q8k(&x, k, contract).unwrap();
            assert_eq!(dev, cpu, "q8_k k {k} tokens {tokens} {contract:?}");
        }
    }
    // An all-zero Q8_K block and a block whose largest magnitude appears twice with both signs.
    let mut x = vec![0f32; 512];
    x[300] = -2.0;
    x[400] = 2.0;
    let dev = gpu.quantize_q8k(&x, 512, FpContract::Off).unwrap();
    assert_eq!(
        dev,
        Q8kActivations::quantize(&x, 512, FpContract::Off).unwrap()
    );
}

#[test]
#[ignore = "needs a CUDA device"]
fn ternary_products_match_the_cpu_bit_for_bit() {
    let gpu = ops();
    let mut rng = SplitMix64::new(2);
    let formats: [(&dyn TernaryFormat, GgmlType); 3] = [
        (&I2s, GgmlType::I2_S),
        (&Tq1_0, GgmlType::TQ1_0),
        (&Tq2_0, GgmlType::TQ2_0),
    ];
    for (format, ty) in formats {
        for (k, rows, tokens) in [
            (256, 1, 1),
            (512, 7, 3),
            (2560, 33, 9),
            (1024, 5, 17),
            (2560, 33, 1),
            (6912, 9, 1),
            (768, 70, 1),
        ] {
            let shape = Shape::new(k, rows);
            let packed = format
                .quantize(&values(&mut rng, k * rows, 1.0), shape)
                .unwrap();
            let x = values(&mut rng, k * tokens, 2.0);
            for contract in CONTRACTS {
                let kernels = CpuKernels::best(1).unwrap().with_numerics(Numerics {
                    contract,
                    width: ReduceWidth::Lanes8,
                });
                let mut cpu = vec![0f32; rows * tokens];
                match ty {
                    GgmlType::I2_S => {
                        let w = I2sMatrix::new(&packed, shape).unwrap();
                        let a = I8sActivations::quantize(&x, k, contract).unwrap();
                        kernels.i2s_gemm(&w, &a, &mut cpu).unwrap();
                    }
                    _ => {
                        let kind = if ty == GgmlType::TQ1_0 {
                            TqKind::Tq1_0
                        } else {
                            TqKind::Tq2_0
                        };
                        let w = TqMatrix::new(kind, &packed, shape).unwrap();
                        let a = Q8kActivations::quantize(&x, k, contract).unwrap();
                        kernels.tq_gemm(&w, &a, &mut cpu).unwrap();
                    }
                }
                let dev = gpu
                    .matmul(ty, &packed, shape, &x, contract, ReduceWidth::Lanes8)
                    .unwrap();
                assert_eq!(
                    bits(&dev),
                    bits(&cpu),
                    "{ty} k {k} rows {rows} tokens {tokens} {contract:?}"
                );
            }
        }
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn dense_products_match_the_cpu_within_rounding() {
    let gpu = ops();
    let mut rng = SplitMix64::new(3);
    let kernels = CpuKernels::best(1).unwrap();
    let width = kernels.numerics().width;
    for (k, rows, tokens) in [(256, 9, 1), (520, 4, 2), (2560, 40, 11)] {
        let shape = Shape::new(k, rows);
        let w = values(&mut rng, k * rows, 0.05);
        let x = values(&mut rng, k * tokens, 1.0);
        let halves: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
        let mut cpu16 = vec![0f32; rows * tokens];
        kernels
            .f16_gemm(&DenseMatrix::new(&halves, shape).unwrap(), &x, &mut cpu16)
            .unwrap();
        let bytes16: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
        let dev16 = gpu
            .matmul(GgmlType::F16, &bytes16, shape, &x, FpContract::Fused, width)
            .unwrap();
        let mut cpu32 = vec![0f32; rows * tokens];
        kernels
            .f32_gemm(&DenseMatrix::new(&w, shape).unwrap(), &x, &mut cpu32)
            .unwrap();
        let bytes32: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
        let dev32 = gpu
            .matmul(GgmlType::F32, &bytes32, shape, &x, FpContract::Fused, width)
            .unwrap();
        for (name, dev, cpu) in [("f16", &dev16, &cpu16), ("f32", &dev32, &cpu32)] {
            let scale = cpu.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            for (i, (a, b)) in dev.iter().zip(cpu).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * scale,
                    "{name} k {k} tokens {tokens} [{i}]: {a} vs {b}"
                );
            }
        }
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn norms_gates_lookups_and_argmax_match_the_cpu() {
    let gpu = ops();
    let mut rng = SplitMix64::new(4);
    for width in [256, 2560, 6912] {
        let x = values(&mut rng, width * 3, 3.0);
        let weight = values(&mut rng, width, 1.0);
        let mut cpu = x.clone();
        ops::rms_norm(&mut cpu, width, &weight, 1e-5);
        let dev = gpu.rms_norm(&x, width, &weight, 1e-5).unwrap();
        for (i, (a, b)) in dev.iter().zip(&cpu).enumerate() {
            let ulps = (a.to_bits() as i64 - b.to_bits() as i64).abs();
            assert!(ulps <= 1, "rms_norm width {width} [{i}]: {a} vs {b}");
        }
        let up = values(&mut rng, width * 3, 1.0);
        for simd in [ReduceWidth::Lanes8, ReduceWidth::Lanes16] {
            let mut cpu = x.clone();
            ops::silu_mul(&mut cpu, &up, width, simd);
            let dev = gpu.silu_mul(&x, &up, width, simd).unwrap();
            assert_eq!(bits(&dev), bits(&cpu), "silu width {width} {simd:?}");
        }
        let mut cpu = x.clone();
        ops::relu_sqr_mul(&mut cpu, &up);
        assert_eq!(bits(&gpu.relu_sqr_mul(&x, &up).unwrap()), bits(&cpu));
    }
    let mut row = values(&mut rng, 128_256, 1.0);
    row[77_777] = 50.0;
    row[99_999] = 50.0;
    assert_eq!(gpu.argmax(&row).unwrap(), argmax(&row));
    assert_eq!(gpu.argmax(&row).unwrap(), 77_777);
    let table: Vec<f16> = values(&mut rng, 64 * 10, 1.0)
        .iter()
        .map(|&v| f16::from_f32(v))
        .collect();
    let looked_up = gpu.embed_f16(&table, 64, &[3, 9, 3]).unwrap();
    for (t, &token) in [3usize, 9, 3].iter().enumerate() {
        let expected: Vec<f32> = table[token * 64..(token + 1) * 64]
            .iter()
            .map(|h| h.to_f32())
            .collect();
        assert_eq!(looked_up[t * 64..(t + 1) * 64], expected[..]);
    }
    assert!(matches!(
        gpu.embed_f16(&table, 64, &[10]),
        Err(CudaError::Request(_))
    ));
}

fn load(path: &std::path::Path, device: DeviceStrategy) -> Model {
    let options = ModelOptions {
        device,
        ..ModelOptions::default()
    };
    Model::load(path, &options).unwrap()
}

/// Largest |Δ| between two logit sets, relative to the largest |logit|, and the share of rows
/// whose argmax agrees.
fn compare(gpu: &[f32], cpu: &[f32], n_vocab: usize) -> (f32, f64) {
    let scale = cpu.iter().fold(1f32, |m, v| m.max(v.abs()));
    let max_abs = gpu
        .iter()
        .zip(cpu)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    let rows = cpu.len() / n_vocab;
    let agree = (0..rows)
        .filter(|&r| {
            argmax(&gpu[r * n_vocab..(r + 1) * n_vocab])
                == argmax(&cpu[r * n_vocab..(r + 1) * n_vocab])
        })
        .count();
    (max_abs / scale, agree as f64 / rows as f64)
}

#[test]
#[ignore = "needs a CUDA device"]
fn whole_models_on_the_gpu_match_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = SplitMix64::new(5);
    // Models whose GPU logits differ from the CPU's in any bit (checked after all have run).
    let mut inexact = Vec::new();
    for arch in [Arch::Bitnet, Arch::BitnetB158, Arch::Llama] {
        for format in [
            WeightFormat::I2_S,
            WeightFormat::TQ1_0,
            WeightFormat::TQ2_0,
            WeightFormat::F16,
            WeightFormat::F32,
        ] {
            let spec = SynthSpec::tiny(arch, format);
            let path = dir.path().join(format!("{}-{format:?}.gguf", arch.name()));
            write_model(&spec, &path).unwrap();
            let cpu_model = load(&path, DeviceStrategy::ForceCpu);
            let gpu_model = load(&path, DeviceStrategy::ForceGpu);
            assert!(matches!(gpu_model.device().device, Device::Cuda(0)));
            let n_vocab = cpu_model.n_vocab();
            let prompt: Vec<u32> = (0..24)
                .map(|_| (rng.next_u64() % n_vocab as u64) as u32)
                .collect();
            // A prefill of 20 tokens, then four one-token steps, on each device.
            let mut cpu = Session::new(&cpu_model, 64);
            let mut gpu = Session::new(&gpu_model, 64);
            let mut cpu_logits = cpu.eval(&prompt[..20], true).unwrap().as_slice().to_vec();
            let mut gpu_logits = gpu.eval(&prompt[..20], true).unwrap().as_slice().to_vec();
            for &token in &prompt[20..] {
                cpu_logits.extend(cpu.eval(&[token], false).unwrap().as_slice());
                gpu_logits.extend(gpu.eval(&[token], false).unwrap().as_slice());
            }
            let (rel, agree) = compare(&gpu_logits, &cpu_logits, n_vocab);
            let exact = bits(&gpu_logits) == bits(&cpu_logits);
            println!(
                "{} {format:?}: max |Δ| / max |logit| = {rel:.3e}, argmax agreement {agree:.3}, \
                 bit-identical {exact}",
                arch.name()
            );
            if !exact {
                inexact.push(format!("{} {format:?}", arch.name()));
            }
            assert!(
                rel <= 2e-3,
                "{} {format:?}: relative max |Δ| {rel}",
                arch.name()
            );
            assert!(
                agree >= 0.9,
                "{} {format:?}: argmax agreement {agree}",
                arch.name()
            );
            let cpu_tokens = Session::new(&cpu_model, 64)
                .generate(&prompt[..8], 16)
                .unwrap();
            let gpu_tokens = Session::new(&gpu_model, 64)
                .generate(&prompt[..8], 16)
                .unwrap();
            let same = cpu_tokens
                .iter()
                .zip(&gpu_tokens)
                .take_while(|(a, b)| a == b)
                .count();
            println!("  greedy: {same} of 16 tokens before the first difference");
            assert!(
                same >= 8,
                "{} {format:?}: {cpu_tokens:?} vs {gpu_tokens:?}",
                arch.name()
            );
        }
    }
    assert!(
        inexact.is_empty(),
        "logits not bit-identical to the CPU's: {inexact:?}"
    );
}

#[test]
#[ignore = "needs a CUDA device"]
fn split_decode_attention_matches_the_cpu_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = SplitMix64::new(11);
    for (arch, format) in [
        (Arch::Bitnet, WeightFormat::I2_S),
        (Arch::BitnetB158, WeightFormat::I2_S),
        (Arch::Llama, WeightFormat::F16),
    ] {
        let mut spec = SynthSpec::tiny(arch, format);
        spec.n_ctx = 1024;
        let path = dir.path().join(format!("{}-{format:?}.gguf", arch.name()));
        write_model(&spec, &path).unwrap();
        let cpu_model = load(&path, DeviceStrategy::ForceCpu);
        let n_vocab = cpu_model.n_vocab() as u64;
        let prompt: Vec<u32> = (0..340)
            .map(|_| (rng.next_u64() % n_vocab) as u32)
            .collect();
        // A prefill of 300 tokens, then decode steps across two 32-cell boundaries of the cache.
        let decode = |model: &Model| {
            let mut session = Session::new(model, 1000);
            session.eval(&prompt[..300], false).unwrap();
            let mut logits = Vec::new();
            for &token in &prompt[300..] {
                logits.extend(session.eval(&[token], false).unwrap().as_slice());
            }
            bits(&logits)
        };
        let cpu = decode(&cpu_model);
        for split_from in [0, 352, usize::MAX] {
            let options = ModelOptions {
                device: DeviceStrategy::ForceGpu,
                gpu_split_attention_from: split_from,
                ..ModelOptions::default()
            };
            let gpu = decode(&Model::load(&path, &options).unwrap());
            let differing = gpu.iter().zip(&cpu).filter(|(a, b)| a != b).count();
            println!(
                "{} {format:?}, split from {split_from} cells: {differing} of {} logits differ",
                arch.name(),
                cpu.len()
            );
            assert_eq!(differing, 0, "{} {format:?}", arch.name());
        }
    }
}

/// Sampler settings that reach every narrowing of a device's pick.
fn sampler_configs() -> Vec<SamplerConfig> {
    let base = SamplerConfig::default();
    vec![
        base,
        SamplerConfig {
            repeat_penalty: 1.3,
            ..base
        },
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.1,
            ..base
        },
        SamplerConfig {
            temperature: 1.0,
            ..base
        },
        SamplerConfig {
            temperature: 0.7,
            top_p: 0.9,
            ..base
        },
        SamplerConfig {
            temperature: 1.5,
            min_p: 0.1,
            ..base
        },
        SamplerConfig {
            temperature: 1.0,
            top_k: 1,
            ..base
        },
    ]
}

/// A pick's kind, for the tally of what the device returned.
fn picked_kind(picked: &Picked) -> usize {
    match picked {
        Picked::Token(_) => 0,
        Picked::Candidates { .. } => 1,
        Picked::Logits(_) => 2,
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn picks_on_the_gpu_match_the_cpu_sampler() {
    let ops = ops();
    let mut rng = SplitMix64::new(17);
    let mut tally = [0usize; 3];
    for (c, config) in sampler_configs().into_iter().enumerate() {
        for n in [3, 1000, 32_000, 128_256] {
            let config = SamplerConfig {
                seed: (c * 7 + n) as u64,
                repeat_last_n: 64,
                ..config
            };
            let (mut cpu, mut gpu) = (Sampler::new(config).unwrap(), Sampler::new(config).unwrap());
            for step in 0..12 {
                let mut row: Vec<f32> = (0..n)
                    .map(|_| match rng.next_u64() % 50 {
                        0 => 2.0,
                        1 => -30.0,
                        _ => (rng.next_normal() * 3.0) as f32,
                    })
                    .collect();
                match step {
                    7 => row[n / 2] = f32::NEG_INFINITY,
                    9 => row[n - 1] = f32::NAN,
                    _ => {}
                }
                let expected = cpu.sample(&row);
                let got = gpu.sample_on(n, |request| {
                    let picked = ops
                        .pick(&row, request)
                        .map_err(Box::<dyn std::error::Error>::from)?;
                    tally[picked_kind(&picked)] += 1;
                    Ok::<_, Box<dyn std::error::Error>>(picked)
                });
                assert_eq!(
                    format!("{got:?}"),
                    format!("{expected:?}"),
                    "config {c}, n {n}, step {step}"
                );
                let token = expected.unwrap_or(0);
                cpu.accept(token);
                gpu.accept(token);
            }
        }
    }
    println!(
        "picks: {} tokens, {} candidate sets, {} whole rows from the device",
        tally[0], tally[1], tally[2]
    );
    // Only rows with a NaN or −∞ logit, or with too many candidates, come back whole.
    assert!(tally[2] * 4 < tally[0] + tally[1], "{tally:?}");
}

#[test]
#[ignore = "needs a CUDA device"]
fn sampled_generation_on_the_gpu_matches_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    for (arch, format) in [
        (Arch::Bitnet, WeightFormat::I2_S),
        (Arch::BitnetB158, WeightFormat::TQ2_0),
    ] {
        let path = dir.path().join(format!("{}-{format:?}.gguf", arch.name()));
        write_model(&SynthSpec::tiny(arch, format), &path).unwrap();
        let cpu_model = load(&path, DeviceStrategy::ForceCpu);
        let gpu_model = load(&path, DeviceStrategy::ForceGpu);
        let n_vocab = cpu_model.n_vocab();
        for (c, config) in sampler_configs().into_iter().enumerate() {
            let prompt = [1u32, 5, 9, 2];
            let run = |model: &Model| {
                let mut sampler = Sampler::new(config).unwrap();
                let mut session = Session::new(model, 64);
                let mut input = prompt.to_vec();
                let mut tokens = Vec::new();
                for _ in 0..24 {
                    let token = sampler
                        .sample_on(n_vocab, |request| {
                            session
                                .eval_pick(&input, request)
                                .map_err(Box::<dyn std::error::Error>::from)
                        })
                        .unwrap();
                    sampler.accept(token);
                    tokens.push(token);
                    input = vec![token];
                }
                tokens
            };
            let (cpu, gpu) = (run(&cpu_model), run(&gpu_model));
            println!("{} {format:?}, sampler {c}: {gpu:?}", arch.name());
            assert_eq!(gpu, cpu, "{} {format:?}, sampler {c}", arch.name());
        }
    }
}

fn tiny_model(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("tiny.gguf");
    write_model(&SynthSpec::tiny(Arch::Bitnet, WeightFormat::I2_S), &path).unwrap();
    path
}

#[test]
#[ignore = "needs a CUDA device"]
fn device_memory_is_returned_when_models_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    // About 16 MB of weights, so that a leak of one model per cycle stands far above the slack.
    let spec = SynthSpec {
        n_layer: 4,
        n_embd: 1024,
        n_ff: 4096,
        n_head: 8,
        n_head_kv: 8,
        ..SynthSpec::tiny(Arch::Bitnet, WeightFormat::I2_S)
    };
    let path = dir.path().join("wide.gguf");
    write_model(&spec, &path).unwrap();
    let cycle = || {
        let model = load(&path, DeviceStrategy::ForceGpu);
        let mut session = Session::new(&model, 128);
        session.eval(&[1, 2, 3, 4], false).unwrap();
    };
    let gpu = ops();
    let free = || {
        gpu.synchronize().unwrap();
        probe(0).unwrap().free_memory
    };
    cycle();
    let before = free();
    for _ in 0..8 {
        cycle();
    }
    let after = free();
    println!("free device memory: {before} before, {after} after 8 load/unload cycles");
    assert!(
        after + (4 << 20) >= before,
        "free memory fell from {before} to {after}"
    );
}

#[test]
#[ignore = "needs a CUDA device"]
fn the_gpu_memory_limit_is_enforced_and_auto_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_model(dir.path());
    let limited = |device| ModelOptions {
        device,
        gpu_memory_limit: Some(4096),
        ..ModelOptions::default()
    };
    let err = Model::load(&path, &limited(DeviceStrategy::ForceGpu))
        .err()
        .expect("a 4 KiB limit refuses the model");
    assert!(
        matches!(err, ModelError::Cuda(CudaError::OutOfMemory { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("GPU memory limit"), "{err}");
    let model = Model::load(&path, &limited(DeviceStrategy::Auto)).unwrap();
    assert_eq!(model.device().device, Device::Cpu);
    assert!(
        model.device().reason.contains("GPU memory limit"),
        "{}",
        model.device()
    );
    let auto = load(&path, DeviceStrategy::Auto);
    assert_eq!(auto.device().device, Device::Cuda(0), "{}", auto.device());
}

#[test]
#[ignore = "needs a CUDA device"]
fn block_quantized_embeddings_are_refused_by_the_gpu_and_auto_falls_back() {
    for (file, ty) in [
        ("tiny-bitnet-refq-i2_s-q8_0-embd.gguf", GgmlType::Q8_0),
        ("tiny-bitnet-refq-i2_s-q6k-embd.gguf", GgmlType::Q6_K),
    ] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/models")
            .join(file);
        let options = ModelOptions {
            device: DeviceStrategy::ForceGpu,
            ..ModelOptions::default()
        };
        match Model::load(&path, &options) {
            Err(ModelError::Cuda(CudaError::UnsupportedType {
                tensor,
                ty: refused,
            })) => {
                assert_eq!((tensor.as_str(), refused), ("token_embd.weight", ty));
            }
            other => panic!(
                "{file}: expected a typed refusal, got {:?}",
                other.map(|_| ())
            ),
        }
        let auto = load(&path, DeviceStrategy::Auto);
        assert_eq!(auto.device().device, Device::Cpu, "{file}");
        let reason = &auto.device().reason;
        assert!(
            reason.contains("token_embd.weight") && reason.contains(&ty.to_string()),
            "{file}: {reason}"
        );
        let logits = Session::new(&auto, 16).eval(&[1, 2, 3], true).unwrap();
        assert!(logits.as_slice().iter().all(|v| v.is_finite()), "{file}");
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn tl2_weights_are_refused_by_the_gpu_and_auto_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tl2.gguf");
    write_model(&SynthSpec::tiny(Arch::Bitnet, WeightFormat::TL2), &path).unwrap();
    let options = ModelOptions {
        device: DeviceStrategy::ForceGpu,
        ..ModelOptions::default()
    };
    match Model::load(&path, &options) {
        Err(ModelError::Cuda(CudaError::UnsupportedType { tensor, ty })) => {
            assert_eq!(
                (tensor.as_str(), ty),
                ("blk.0.attn_q.weight", GgmlType::TL2)
            );
        }
        other => panic!("expected a typed refusal, got {:?}", other.map(|_| ())),
    }
    let auto = load(&path, DeviceStrategy::Auto);
    assert_eq!(auto.device().device, Device::Cpu);
    let reason = &auto.device().reason;
    assert!(
        reason.contains("blk.0.attn_q.weight") && reason.contains("tl2"),
        "{reason}"
    );
    let logits = Session::new(&auto, 16).eval(&[1, 2, 3], true).unwrap();
    assert!(logits.as_slice().iter().all(|v| v.is_finite()));
}

/// Runs everywhere: a GPU strategy either gets the device the probe reports or fails with the
/// probe's reason.
#[test]
fn gpu_strategies_follow_the_probe() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_model(dir.path());
    let options = ModelOptions {
        device: DeviceStrategy::ForceGpu,
        ..ModelOptions::default()
    };
    match probe(0) {
        Ok(info) => {
            let model = Model::load(&path, &options).unwrap();
            assert_eq!(model.device().device, Device::Cuda(0));
            assert!(model.device().reason.contains(&info.name));
        }
        Err(reason) => {
            println!("no GPU here ({NEEDS_GPU}): {reason}");
            match Model::load(&path, &options) {
                Err(ModelError::Device(DeviceError::NoGpu { reason: why, .. })) => {
                    assert_eq!(why, reason.to_string())
                }
                other => panic!("expected a typed error, got {:?}", other.map(|_| ())),
            }
            let auto = load(&path, DeviceStrategy::Auto);
            assert_eq!(auto.device().device, Device::Cpu);
            assert!(auto.device().reason.contains(&reason.to_string()));
        }
    }
}
