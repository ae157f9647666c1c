//! The generation loop on a synthetic model: greedy agreement, seeded repeats, each stop
//! condition, streaming, metrics, device choice and memory.

use std::ops::ControlFlow;
use std::path::Path;

use bitnet_engine::generation::{
    generate, GenerateOptions, Generation, GenerationError, SamplerConfig, StopConditions,
    StopReason,
};
use bitnet_engine::gguf::{GgufFile, Value};
use bitnet_engine::model::{Device, Model, ModelOptions, Session};
use bitnet_engine::synth::{build_model, write_model, Arch, SynthSpec, WeightFormat};
use bitnet_engine::tokenizer::Tokenizer;

const PROMPT: &str = "Hello world";

fn tiny(dir: &Path) -> (Model, Tokenizer) {
    let path = dir.join("tiny.gguf");
    write_model(&SynthSpec::tiny(Arch::Bitnet, WeightFormat::I2_S), &path).unwrap();
    load(&path)
}

fn load(path: &Path) -> (Model, Tokenizer) {
    let model = Model::load(path, &ModelOptions::default()).unwrap();
    let tokenizer = Tokenizer::from_metadata(model.metadata()).unwrap();
    (model, tokenizer)
}

fn options(sampling: SamplerConfig, max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        sampling,
        stop: StopConditions {
            max_tokens,
            ..StopConditions::default()
        },
        ..GenerateOptions::default()
    }
}

fn seeded(seed: u64) -> SamplerConfig {
    SamplerConfig {
        temperature: 0.9,
        top_k: 40,
        top_p: 0.95,
        min_p: 0.02,
        repeat_penalty: 1.1,
        seed,
        ..SamplerConfig::default()
    }
}

/// Runs a generation in a fresh session; returns it and the streamed pieces.
fn run(
    model: &Model,
    tokenizer: &Tokenizer,
    n_ctx: usize,
    options: &GenerateOptions,
) -> (Generation, Vec<String>) {
    let mut session = Session::new(model, n_ctx);
    let mut pieces = Vec::new();
    let g = generate(&mut session, tokenizer, PROMPT, options, |piece| {
        pieces.push(piece.to_string());
        ControlFlow::Continue(())
    })
    .unwrap();
    (g, pieces)
}

/// The text of `tokens` as the stream decoder renders it: pieces without control tokens, invalid
/// UTF-8 replaced.
fn rendered(tokenizer: &Tokenizer, tokens: &[u32]) -> String {
    let bytes: Vec<u8> = tokens
        .iter()
        .flat_map(|&t| tokenizer.token_to_piece(t, false))
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn greedy_generation_equals_the_session_argmax_loop() {
    let dir = tempfile::tempdir().unwrap();
    let (model, tokenizer) = tiny(dir.path());
    let (g, pieces) = run(
        &model,
        &tokenizer,
        64,
        &options(SamplerConfig::default(), 12),
    );
    let prompt = tokenizer.encode(PROMPT, true, false);
    assert_eq!(g.prompt_tokens, prompt);
    let expected = Session::new(&model, 64).generate(&prompt, 12).unwrap();
    assert_eq!(g.tokens, expected);
    assert_eq!(g.stop_reason, StopReason::MaxTokens);
    assert_eq!(pieces.concat(), g.text);
    assert_eq!(g.text, rendered(&tokenizer, &g.tokens));
}

#[test]
fn a_seed_repeats_its_tokens_and_another_seed_differs() {
    let dir = tempfile::tempdir().unwrap();
    let (model, tokenizer) = tiny(dir.path());
    let a = run(&model, &tokenizer, 64, &options(seeded(7), 24)).0;
    let b = run(&model, &tokenizer, 64, &options(seeded(7), 24)).0;
    let c = run(&model, &tokenizer, 64, &options(seeded(8), 24)).0;
    assert_eq!(a.tokens.len(), 24);
    assert_eq!((&a.tokens, &a.text), (&b.tokens, &b.text));
    assert_ne!(a.tokens, c.tokens);
}

#[test]
fn a_stop_string_over_several_tokens_ends_generation_and_is_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let (model, tokenizer) = tiny(dir.path());
    let free = run(&model, &tokenizer, 64, &options(seeded(3), 40)).0;
    // Three consecutive single-character ASCII tokens in the middle of the output.
    let chars: Vec<char> = free.text.chars().collect();
    let start = (10..chars.len() - 3)
        .find(|&i| chars[i..i + 3].iter().all(|c| c.is_ascii_graphic()))
        .expect("the seeded output has three printable ASCII characters in a row");
    let stop: String = chars[start..start + 3].iter().collect();
    let expected_text = &free.text[..free.text.find(&stop).unwrap()];

    let mut opts = options(seeded(3), 40);
    opts.stop.stop_strings = vec!["never appears \u{1F600}".into(), stop.clone()];
    let (g, pieces) = run(&model, &tokenizer, 64, &opts);
    assert_eq!(g.stop_reason, StopReason::StopString(stop.clone()));
    assert_eq!(g.text, expected_text);
    assert_eq!(pieces.concat(), g.text);
    assert!(!pieces.iter().any(|p| p.contains(&stop)));
    // Generation ran until the stop string's last token, and no further.
    assert!(rendered(&tokenizer, &g.tokens).ends_with(&stop));
    let last_piece = tokenizer.token_to_piece(*g.tokens.last().unwrap(), false);
    assert!(
        last_piece.len() < stop.len(),
        "the stop string spans tokens"
    );
    assert!(g.tokens.len() < free.tokens.len());
}

#[test]
fn an_end_of_generation_token_stops_without_text() {
    let dir = tempfile::tempdir().unwrap();
    let (model, tokenizer) = tiny(dir.path());
    let free = run(&model, &tokenizer, 64, &options(seeded(5), 12)).0;
    // The same model, with a token first sampled at position k ≥ 2 declared end-of-sequence.
    let k = (2..free.tokens.len())
        .find(|&k| !free.tokens[..k].contains(&free.tokens[k]))
        .expect("the seeded output has a new token after the second");
    let eos = free.tokens[k];
    let mut w = build_model(&SynthSpec::tiny(Arch::Bitnet, WeightFormat::I2_S)).unwrap();
    w.set("tokenizer.ggml.eos_token_id", Value::U32(eos))
        .unwrap();
    let path = dir.path().join("eos.gguf");
    w.write_file(&path).unwrap();
    let (model, tokenizer) = load(&path);
    let (g, _) = run(&model, &tokenizer, 64, &options(seeded(5), 12));
    assert_eq!(g.tokens, free.tokens[..=k]);
    assert_eq!(g.stop_reason, StopReason::EndOfGeneration { token: eos });
    assert_eq!(g.text, rendered(&tokenizer, &free.tokens[..k]));

    let mut opts = options(seeded(5), 12);
    opts.stop.stop_at_eog = false;
    let (g, _) = run(&model, &tokenizer, 64, &opts);
    assert_eq!(g.tokens, free.tokens);
}

#[test]
fn a_full_context_stops_generation_and_a_long_prompt_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (model, tokenizer) = tiny(dir.path());
    let n_prompt = tokenizer.encode(PROMPT, true, false).len();
    let (g, _) = run(
        &model,
        &tokenizer,
        n_prompt + 3,
        &options(SamplerConfig::default(), 100),
    );
    // Three tokens fill the context; a fourth comes from the last logits but is not evaluated.
    assert_eq!(g.tokens.len(), 4);
    assert_eq!(
        g.stop_reason,
        StopReason::ContextFull {
            n_ctx: n_prompt + 3
        }
    );

    let mut session = Session::new(&model, n_prompt - 1);
    let err = generate(
        &mut session,
        &tokenizer,
        PROMPT,
        &GenerateOptions::default(),
        |_| ControlFlow::Continue(()),
    )
    .unwrap_err();
    assert!(
        matches!(err, GenerationError::PromptTooLong { prompt_tokens, room, .. }
            if prompt_tokens == n_prompt && room == n_prompt - 1),
        "{err}"
    );
}

#[test]
fn bad_requests_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (model, tokenizer) = tiny(dir.path());
    let mut session = Session::new(&model, 64);
    let mut go = |prompt: &str, options: &GenerateOptions| {
        generate(&mut session, &tokenizer, prompt, options, |_| {
            ControlFlow::Continue(())
        })
        .unwrap_err()
    };
    let bad_temp = options(
        SamplerConfig {
            temperature: -1.0,
            ..SamplerConfig::default()
        },
        4,
    );
    assert!(matches!(
        go(PROMPT, &bad_temp),
        GenerationError::Sampling(_)
    ));
    let mut empty_stop = options(SamplerConfig::default(), 4);
    empty_stop.stop.stop_strings = vec![String::new()];
    assert!(matches!(
        go(PROMPT, &empty_stop),
        GenerationError::EmptyStopString
    ));
}

#[test]
fn the_callback_can_cancel_and_zero_tokens_evaluate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (model, tokenizer) = tiny(dir.path());
    let mut session = Session::new(&model, 64);
    let mut calls = 0;
    let g = generate(
        &mut session,
        &tokenizer,
        PROMPT,
        &options(seeded(1), 30),
        |_| {
            calls += 1;
            ControlFlow::Break(())
        },
    )
    .unwrap();
    assert_eq!(calls, 1);
    assert_eq!(g.stop_reason, StopReason::Cancelled);
    assert!(g.tokens.len() < 30);

    let mut session = Session::new(&model, 64);
    let g = generate(
        &mut session,
        &tokenizer,
        PROMPT,
        &options(seeded(1), 0),
        |_| ControlFlow::Continue(()),
    )
    .unwrap();
    assert!(g.tokens.is_empty() && g.text.is_empty());
    assert_eq!(g.stop_reason, StopReason::MaxTokens);
    assert_eq!(session.n_past(), 0);
}

#[test]
fn metrics_count_tokens_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (model, tokenizer) = tiny(dir.path());
    let (g, _) = run(
        &model,
        &tokenizer,
        40,
        &options(SamplerConfig::default(), 10),
    );
    let m = &g.metrics;
    assert_eq!(m.prefill_tokens, g.prompt_tokens.len());
    assert_eq!(m.decode_tokens, 9);
    assert!(m.prefill_tokens_per_s() > 0.0 && m.decode_tokens_per_s() > 0.0);
    let ttft = m.time_to_first_token.unwrap();
    assert!(ttft >= m.prefill + m.tokenize);
    assert_eq!(&m.device, model.device());
    if !cfg!(feature = "cuda") {
        assert_eq!(m.device.device, Device::Cpu);
        assert!(m.device.reason.contains("without CUDA"), "{}", m.device);
    }
    if cfg!(target_os = "linux") {
        assert!(m.peak_rss_bytes.unwrap() > 1 << 20);
    }
    // Two layers of keys and values, 4 KV heads of 64 dims, 40 positions padded to 64, in f16.
    assert_eq!(m.kv_cache_bytes, 2 * 2 * 4 * 64 * 64 * 2);
    let summary = m.to_string();
    for needle in ["prompt eval", "tokens per second", "KV cache", "peak RSS"] {
        assert!(summary.contains(needle), "{summary}");
    }
}

#[test]
fn weights_stay_mapped_and_only_norms_are_copied() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = tiny(dir.path());
    let file = GgufFile::open(dir.path().join("tiny.gguf")).unwrap();
    let tensor_bytes: u64 = file.layout().tensors.iter().map(|t| t.n_bytes).sum();
    let norm_values: usize = model.layers().iter().fold(256, |n, layer| {
        n + layer.attn_norm.len()
            + layer.ffn_norm.len()
            + layer.attn_sub_norm.as_ref().unwrap().len()
            + layer.ffn_sub_norm.as_ref().unwrap().len()
    });
    let memory = model.weight_memory();
    assert_eq!(memory.mapped as u64, tensor_bytes);
    assert_eq!(memory.copied, norm_values * 4);
    assert!(memory.copied * 20 < memory.mapped);
}

#[cfg(not(feature = "cuda"))]
#[test]
fn gpu_strategies_fail_to_load_without_a_gpu_backend() {
    use bitnet_engine::model::{DeviceError, DeviceStrategy, ModelError};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_model(&SynthSpec::tiny(Arch::Bitnet, WeightFormat::I2_S), &path).unwrap();
    for strategy in [DeviceStrategy::ForceGpu, DeviceStrategy::Hybrid] {
        let options = ModelOptions {
            device: strategy,
            ..ModelOptions::default()
        };
        let err = Model::load(&path, &options).err().unwrap();
        assert!(
            matches!(&err, ModelError::Device(DeviceError::NoGpu { strategy: s, .. }) if *s == strategy),
            "{err}"
        );
        assert!(err.to_string().contains("built without CUDA support"));
    }
    let cpu = Model::load(
        &path,
        &ModelOptions {
            device: DeviceStrategy::ForceCpu,
            ..ModelOptions::default()
        },
    )
    .unwrap();
    assert_eq!(cpu.device().device, Device::Cpu);
    assert_eq!(cpu.device().strategy, DeviceStrategy::ForceCpu);
}
