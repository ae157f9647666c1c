//! Synthetic models: generation, loading, evaluation, generation and perplexity in the engine.

use std::path::{Path, PathBuf};

use bitnet_engine::formats::I2sLayout;
use bitnet_engine::gguf::{GgufFile, Residency};
use bitnet_engine::kernels::{CpuKernels, Isa, KernelError};
use bitnet_engine::model::{perplexity, Model, ModelError, ModelOptions, Session};
use bitnet_engine::synth::{build_model, write_model, Arch, SynthSpec, VocabSource, WeightFormat};

fn write(dir: &Path, spec: &SynthSpec) -> PathBuf {
    let path = dir.join(format!(
        "{}-{:?}-{}.gguf",
        spec.arch.name(),
        spec.format,
        spec.seed
    ));
    write_model(spec, &path).unwrap();
    path
}

fn load(path: &Path) -> Model {
    Model::load(path, &ModelOptions::default()).unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot = |x: &[f32], y: &[f32]| {
        x.iter()
            .zip(y)
            .map(|(&p, &q)| f64::from(p) * f64::from(q))
            .sum::<f64>()
    };
    dot(a, b) / (dot(a, a) * dot(b, b)).sqrt()
}

const PROMPT: [u32; 7] = [264, 72, 101, 108, 108, 111, 32];

#[test]
fn the_same_spec_gives_the_same_bytes_and_another_seed_other_weights() {
    let spec = SynthSpec::tiny(Arch::Bitnet, WeightFormat::I2_S);
    let a = build_model(&spec).unwrap().to_bytes();
    assert_eq!(a, build_model(&spec).unwrap().to_bytes());
    let other = SynthSpec { seed: 7, ..spec };
    assert_ne!(a, build_model(&other).unwrap().to_bytes());
}

#[test]
fn a_byte_level_i2s_model_is_smaller_than_a_megabyte() {
    let bytes = build_model(&SynthSpec::tiny(Arch::Bitnet, WeightFormat::I2_S))
        .unwrap()
        .to_bytes();
    assert!(bytes.len() < 1 << 20, "{} bytes", bytes.len());
}

#[test]
fn written_files_carry_the_architecture_keys_and_tensors() {
    let dir = tempfile::tempdir().unwrap();
    for arch in Arch::ALL {
        let path = write(dir.path(), &SynthSpec::tiny(arch, WeightFormat::TQ2_0));
        let file = GgufFile::open(&path).unwrap();
        let md = file.metadata();
        assert_eq!(md.get_str("general.architecture").unwrap(), arch.name());
        assert_eq!(
            md.get_u32(&format!("{}.block_count", arch.name())).unwrap(),
            2
        );
        assert_eq!(md.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
        assert!(file.tensor_info("blk.1.ffn_down.weight").is_ok());
        assert_eq!(
            file.tensor_info("blk.0.attn_sub_norm.weight").is_ok(),
            arch != Arch::Llama
        );
    }
}

#[test]
fn a_gguf_vocabulary_is_copied() {
    let dir = tempfile::tempdir().unwrap();
    // A byte-level model serves as the vocabulary file of a second model.
    let source = write(dir.path(), &SynthSpec::tiny(Arch::Llama, WeightFormat::F16));
    std::fs::copy(&source, dir.path().join("vocab.gguf")).unwrap();
    let spec = SynthSpec {
        vocab: VocabSource::Gguf(dir.path().join("vocab.gguf")),
        seed: 9,
        ..SynthSpec::tiny(Arch::Bitnet, WeightFormat::I2_S)
    };
    let model = load(&write(dir.path(), &spec));
    assert_eq!(model.n_vocab(), 266);
}

#[test]
fn invalid_specs_are_rejected() {
    let spec = SynthSpec {
        n_embd: 192,
        ..SynthSpec::tiny(Arch::Bitnet, WeightFormat::TQ2_0)
    };
    assert!(build_model(&spec).is_err());
    let spec = SynthSpec {
        n_head_kv: 3,
        ..SynthSpec::tiny(Arch::Bitnet, WeightFormat::I2_S)
    };
    assert!(build_model(&spec).is_err());
}

#[test]
fn every_arch_and_format_loads_evaluates_and_generates() {
    let dir = tempfile::tempdir().unwrap();
    for arch in Arch::ALL {
        for format in WeightFormat::ALL {
            let path = write(dir.path(), &SynthSpec::tiny(arch, format));
            let model = load(&path);
            assert_eq!(model.arch(), arch);
            let mut session = Session::new(&model, 32);
            let logits = session.eval(&PROMPT, true).unwrap();
            assert_eq!((logits.n_rows(), logits.n_vocab()), (PROMPT.len(), 266));
            let last = logits.row(PROMPT.len() - 1).unwrap();
            assert!(last.iter().all(|v| v.is_finite()), "{arch:?} {format:?}");
            let mean = last.iter().sum::<f32>() / last.len() as f32;
            let spread = last.iter().map(|v| (v - mean).abs()).fold(0f32, f32::max);
            assert!(spread > 1.0, "{arch:?} {format:?}: flat logits");
            session.clear();
            let generated = session.generate(&PROMPT, 5).unwrap();
            assert_eq!(generated.len(), 5);
            assert!(generated.iter().all(|&t| (t as usize) < model.n_vocab()));
            assert_eq!(session.n_past(), PROMPT.len() + 4);
        }
    }
}

#[test]
fn formats_holding_the_same_ternary_weights_agree() {
    let dir = tempfile::tempdir().unwrap();
    let last_row = |format| {
        let model = load(&write(dir.path(), &SynthSpec::tiny(Arch::Bitnet, format)));
        let mut session = Session::new(&model, 32);
        session.eval(&PROMPT, false).unwrap().as_slice().to_vec()
    };
    let tq1 = last_row(WeightFormat::TQ1_0);
    let tq2 = last_row(WeightFormat::TQ2_0);
    // TQ1_0 and TQ2_0 store the same codes and block scales and share the Q8_K dot products.
    assert_eq!(tq1, tq2);
    let f32_row = last_row(WeightFormat::F32);
    let i2s = last_row(WeightFormat::I2_S);
    for other in [&tq2, &i2s] {
        let max = f32_row
            .iter()
            .zip(other.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max < 0.5, "activation quantization moved a logit by {max}");
    }
}

#[test]
fn all_position_logits_equal_incremental_decode() {
    let dir = tempfile::tempdir().unwrap();
    for (arch, format) in [
        (Arch::Bitnet, WeightFormat::I2_S),
        (Arch::BitnetB158, WeightFormat::TQ2_0),
        (Arch::Llama, WeightFormat::F16),
    ] {
        let model = load(&write(dir.path(), &SynthSpec::tiny(arch, format)));
        let mut batch = Session::new(&model, 32);
        let all = batch.eval(&PROMPT, true).unwrap();
        let mut step = Session::new(&model, 32);
        for (i, &token) in PROMPT.iter().enumerate() {
            let one = step.eval(&[token], true).unwrap();
            let (a, b) = (all.row(i).unwrap(), one.row(0).unwrap());
            // One-token batches take the GEMV paths (f16-rounded operands for the head and the
            // attention values), and int8 activation rounding amplifies the difference a little.
            let similarity = cosine(a, b);
            assert!(
                similarity > 0.999,
                "{arch:?} {format:?} position {i}: cosine {similarity}"
            );
        }
    }
}

#[test]
fn last_logits_are_the_last_row_of_all_logits() {
    let dir = tempfile::tempdir().unwrap();
    let model = load(&write(
        dir.path(),
        &SynthSpec::tiny(Arch::Bitnet, WeightFormat::I2_S),
    ));
    let all = Session::new(&model, 32).eval(&PROMPT, true).unwrap();
    let last = Session::new(&model, 32).eval(&PROMPT, false).unwrap();
    assert_eq!(last.n_rows(), 1);
    let full = all.row(PROMPT.len() - 1).unwrap();
    let max = full
        .iter()
        .zip(last.row(0).unwrap())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max < 0.05, "{max}");
}

#[test]
fn the_context_limit_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = load(&write(
        dir.path(),
        &SynthSpec::tiny(Arch::Bitnet, WeightFormat::I2_S),
    ));
    let mut session = Session::new(&model, 8);
    session.eval(&PROMPT, false).unwrap();
    let err = session.eval(&[1, 2], false).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::ContextFull {
                n_ctx: 8,
                n_past: 7,
                requested: 2
            }
        ),
        "{err}"
    );
    session.eval(&[1], false).unwrap();
    assert!(session.eval(&[1], false).is_err());
    assert!(session.eval(&[], false).is_err());
    assert!(matches!(
        Session::new(&model, 8).eval(&[266], false),
        Err(ModelError::TokenOutOfRange { token: 266, .. })
    ));
}

#[test]
fn perplexity_scores_the_second_half_of_each_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let model = load(&write(
        dir.path(),
        &SynthSpec::tiny(Arch::Bitnet, WeightFormat::I2_S),
    ));
    let text: Vec<u32> = (0..80u32).map(|i| (i * 31 + 7) % 256).collect();
    let result = perplexity(&model, &text, 32, 0).unwrap();
    assert_eq!(result.nll.len(), 2 * 15);
    assert!(result.nll.iter().all(|v| v.is_finite() && *v > 0.0));
    let mean = result.nll.iter().sum::<f64>() / result.nll.len() as f64;
    assert!((result.ppl - mean.exp()).abs() < 1e-9);
    assert!(result.ppl > 1.0 && result.ppl_err > 0.0);
    let one = perplexity(&model, &text, 32, 1).unwrap();
    assert_eq!(one.nll[..], result.nll[..15]);
    assert!(perplexity(&model, &text[..20], 32, 0).is_err());
}

#[test]
fn an_unknown_architecture_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        &SynthSpec::tiny(Arch::Bitnet, WeightFormat::I2_S),
    );
    let bytes = std::fs::read(&path).unwrap();
    let needle = b"\x06\x00\x00\x00\x00\x00\x00\x00bitnet";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    let mut patched = bytes.clone();
    patched[at + 8..at + 14].copy_from_slice(b"bitnot");
    let other = dir.path().join("bitnot.gguf");
    std::fs::write(&other, patched).unwrap();
    let err = Model::load(&other, &ModelOptions::default()).err().unwrap();
    assert!(
        matches!(err, ModelError::UnsupportedArch(ref a) if a == "bitnot"),
        "{err}"
    );
}

#[test]
fn an_f32_kv_cache_changes_the_logits_only_slightly() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        &SynthSpec::tiny(Arch::Bitnet, WeightFormat::TQ2_0),
    );
    let f16_cache = load(&path);
    let f32_cache = Model::load(
        &path,
        &ModelOptions {
            kv_f16: false,
            ..ModelOptions::default()
        },
    )
    .unwrap();
    let a = Session::new(&f16_cache, 32).eval(&PROMPT, true).unwrap();
    let b = Session::new(&f32_cache, 32).eval(&PROMPT, true).unwrap();
    assert_ne!(a, b);
    for i in 0..PROMPT.len() {
        let similarity = cosine(a.row(i).unwrap(), b.row(i).unwrap());
        assert!(similarity > 0.999, "position {i}: cosine {similarity}");
    }
}

#[test]
fn several_threads_give_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    // Long enough that every row-wise step and the I2_S products split their tokens over the
    // threads; each architecture's FFN activation and sub-norms take part.
    let prompt: Vec<u32> = (0..48).map(|i| 32 + (i * 37) % 90).collect();
    for arch in [Arch::BitnetB158, Arch::Bitnet, Arch::Llama] {
        let path = write(dir.path(), &SynthSpec::tiny(arch, WeightFormat::I2_S));
        let one = load(&path);
        let expected = Session::new(&one, 64).eval(&prompt, true).unwrap();
        for threads in [2, 3] {
            let options = ModelOptions {
                threads,
                ..ModelOptions::default()
            };
            let many = Model::load(&path, &options).unwrap();
            let logits = Session::new(&many, 64).eval(&prompt, true).unwrap();
            assert_eq!(logits, expected, "{arch:?} on {threads} threads");
        }
    }
}

#[test]
fn rows_grouped_in_fours_give_the_logits_of_the_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let prompt: Vec<u32> = (0..40).map(|i| 32 + (i * 37) % 90).collect();
    for arch in [Arch::BitnetB158, Arch::Llama] {
        let path = write(dir.path(), &SynthSpec::tiny(arch, WeightFormat::I2_S));
        let mapped = ModelOptions {
            residency: Residency::Mapped,
            ..ModelOptions::default()
        };
        let in_order = Model::load(&path, &mapped).unwrap();
        assert_eq!(in_order.i2s_layout(), I2sLayout::Rows);
        let mut session = Session::new(&in_order, 48);
        let expected = session.eval(&prompt, true).unwrap();
        let next = session.eval(&[7], true).unwrap();
        for threads in [1, 2] {
            let options = ModelOptions {
                threads,
                ..ModelOptions::default()
            };
            let resident = Model::load(&path, &options).unwrap();
            let kernels = CpuKernels::new(resident.isa(), 1).unwrap();
            assert_eq!(resident.i2s_layout(), kernels.preferred_i2s_layout());
            let mut session = Session::new(&resident, 48);
            assert_eq!(session.eval(&prompt, true).unwrap(), expected, "{arch:?}");
            assert_eq!(session.eval(&[7], true).unwrap(), next, "{arch:?}");
        }
    }
}

#[test]
fn every_instruction_set_gives_the_same_logits_and_one_the_cpu_lacks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        &SynthSpec::tiny(Arch::BitnetB158, WeightFormat::I2_S),
    );
    let prompt: Vec<u32> = (0..24).map(|i| 32 + (i * 37) % 90).collect();
    let expected = Session::new(&load(&path), 32).eval(&prompt, true).unwrap();
    for isa in Isa::supported() {
        let options = ModelOptions {
            isa: Some(isa),
            ..ModelOptions::default()
        };
        let model = Model::load(&path, &options).unwrap();
        assert_eq!(model.isa(), isa);
        let logits = Session::new(&model, 32).eval(&prompt, true).unwrap();
        assert_eq!(logits, expected, "{isa}");
    }
    let lacking = Isa::ALL
        .into_iter()
        .find(|isa| !isa.is_supported())
        .unwrap();
    let options = ModelOptions {
        isa: Some(lacking),
        ..ModelOptions::default()
    };
    match Model::load(&path, &options) {
        Err(ModelError::Kernel(KernelError::IsaUnsupported { isa })) => assert_eq!(isa, lacking),
        Err(other) => panic!("{lacking}: {other}"),
        Ok(_) => panic!("{lacking} loaded on a CPU without it"),
    }
}
