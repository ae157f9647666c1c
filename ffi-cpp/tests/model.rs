//! Evaluation of a real model: the committed tiny `bitnet` I2_S fixture, or any
//! `bitnet`-architecture GGUF named by `BITNET_TEST_MODEL`.

mod common;

use bitnet_ffi_cpp::{
    quantize_model_file, reference_info, Backend, Context, ContextParams, FileType, GgmlType,
    GgufHeader, Logits, Model, ModelParams, QuantizeParams, RefError,
};
use std::thread;

fn load() -> Model {
    let be = Backend::init().expect("reference backend");
    Model::load(&be, common::test_model(), &ModelParams::default()).expect("load the test model")
}

fn context(model: &Model, n_ctx: u32) -> Context {
    let params = ContextParams {
        n_ctx,
        n_batch: n_ctx,
        n_threads: 2,
        ..ContextParams::default()
    };
    model.new_context(&params).expect("create a context")
}

/// Deterministic token ids inside the vocabulary (avoiding the first 3 special ids).
fn tokens(model: &Model, n: usize, seed: u64) -> Vec<u32> {
    let mut rng = common::Rng::new(seed);
    let n_vocab = u64::from(model.info().n_vocab);
    (0..n)
        .map(|_| (3 + rng.next_u64() % (n_vocab - 3)) as u32)
        .collect()
}

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
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

#[test]
fn logits_for_every_position_equal_those_of_each_prefix() {
    let model = load();
    let input = tokens(&model, 12, 1);
    let mut ctx = context(&model, 64);
    let all = ctx.eval(&input).unwrap();
    assert_eq!(
        (all.n_tokens(), all.n_vocab()),
        (12, model.info().n_vocab as usize)
    );
    assert!(
        all.as_slice().iter().all(|v| v.is_finite()),
        "non-finite logits"
    );
    assert_eq!(ctx.n_past(), 12);
    // Prefixes of two or more tokens take the same kernels as the whole batch, and every row
    // depends only on earlier tokens, so the rows agree bit for bit. (A one-token batch takes
    // other kernels; see the next test.)
    for i in 1..input.len() {
        ctx.reset();
        let prefix = ctx.eval(&input[..=i]).unwrap();
        let (a, b) = (all.row(i).unwrap(), prefix.row(i).unwrap());
        let first_difference = a
            .iter()
            .zip(b)
            .position(|(x, y)| x.to_bits() != y.to_bits());
        assert_eq!(first_difference, None, "position {i}");
    }
}

#[test]
fn incremental_decoding_stays_close_to_batched_evaluation() {
    // One-token batches take other kernels (dot products instead of tiled matmuls) and the
    // int8 activation rounding amplifies the last-bit differences, so only closeness holds.
    let model = load();
    let input = tokens(&model, 8, 1);
    let all = context(&model, 64).eval(&input).unwrap();
    let mut incremental = context(&model, 64);
    for (i, &token) in input.iter().enumerate() {
        let one: Logits = incremental.eval(&[token]).unwrap();
        let similarity = cosine(all.row(i).unwrap(), one.row(0).unwrap());
        assert!(
            similarity > 0.99,
            "position {i}: cosine similarity {similarity}"
        );
    }
    assert_eq!(incremental.n_past(), 8);
}

#[test]
fn attention_stays_causal() {
    let model = load();
    let mut ctx = context(&model, 64);
    let a = tokens(&model, 8, 2);
    let mut b = a.clone();
    b[5..].copy_from_slice(&tokens(&model, 3, 3));
    let la = ctx.eval(&a).unwrap();
    ctx.reset();
    let lb = ctx.eval(&b).unwrap();
    for i in 0..5 {
        let same = la
            .row(i)
            .unwrap()
            .iter()
            .zip(lb.row(i).unwrap())
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "position {i} saw a later token");
    }
}

#[test]
fn greedy_generation_follows_the_argmax() {
    let model = load();
    let mut ctx = context(&model, 64);
    let prompt = tokens(&model, 5, 4);
    let generated = ctx.generate_greedy(&prompt, 6, false).unwrap();
    assert_eq!(generated.len(), 6);
    let mut check = context(&model, 64);
    let mut logits = check
        .eval(&prompt)
        .unwrap()
        .row(prompt.len() - 1)
        .unwrap()
        .to_vec();
    for &token in &generated {
        assert_eq!(argmax(&logits), token);
        logits = check.eval(&[token]).unwrap().into_vec();
    }
    let too_long = ctx.generate_greedy(&prompt, 64, false);
    assert!(matches!(too_long, Err(RefError::InvalidArgument { .. })));
}

#[test]
fn perplexity_follows_the_llama_perplexity_protocol() {
    let model = load();
    let n_ctx = 32u32;
    let mut ctx = context(&model, n_ctx);
    let text =
        std::fs::read_to_string(common::data_dir().join("corpora/tinyshakespeare.txt")).unwrap();
    let all = model.tokenize(&text[..4000], true, false).unwrap();
    let result = ctx.perplexity(&all, Some(2)).unwrap();
    let first = (n_ctx / 2) as usize;
    let per_chunk = n_ctx as usize - 1 - first;
    assert_eq!((result.n_chunks, result.nll.len()), (2, 2 * per_chunk));
    let mean = result.nll.iter().sum::<f64>() / result.nll.len() as f64;
    assert!((result.ppl - mean.exp()).abs() < 1e-9 * result.ppl);
    assert!(result.ppl_err > 0.0 && result.ppl_err.is_finite());

    // The first scored NLL from plain logits, with the chunk's first token replaced by BOS.
    let mut chunk = all[..n_ctx as usize].to_vec();
    if model.info().add_bos {
        chunk[0] = model.info().bos.unwrap();
    }
    let logits = ctx.eval(&chunk).unwrap();
    let row = logits.row(first).unwrap();
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&l| f64::from((l - max).exp())).sum();
    let target = all[first + 1] as usize;
    let nll = -(f64::from(row[target] - max) - sum.ln());
    assert!(
        (nll - result.nll[0]).abs() < 1e-3,
        "{nll} vs {}",
        result.nll[0]
    );

    let short = ctx.perplexity(&all[..40], None);
    assert!(matches!(short, Err(RefError::InvalidArgument { .. })));
}

#[test]
fn named_intermediate_tensors_are_captured() {
    let model = load();
    let params = ContextParams {
        n_ctx: 32,
        n_batch: 32,
        n_threads: 2,
        capture: vec!["attn_norm-0".into(), "l_out-*".into(), "result_norm".into()],
    };
    let mut ctx = model.new_context(&params).unwrap();
    let plain = context(&model, 32).eval(&tokens(&model, 4, 5)).unwrap();
    let logits = ctx.eval(&tokens(&model, 4, 5)).unwrap();
    assert!(logits == plain, "capturing must not change the result");
    let captures = ctx.take_captures().unwrap();
    let n_embd = u64::from(model.info().n_embd);
    let names = captures.iter().map(|c| c.name.as_str()).collect::<Vec<_>>();
    assert!(
        names.contains(&"attn_norm-0") && names.contains(&"result_norm"),
        "{names:?}"
    );
    let layers = captures
        .iter()
        .filter(|c| c.name.starts_with("l_out-"))
        .count();
    assert_eq!(layers, model.info().n_layer as usize, "{names:?}");
    for capture in &captures {
        assert_eq!(capture.ne[0], n_embd, "{}", capture.name);
        let data = capture.data.as_ref().expect("f32 data");
        assert_eq!(data.len() as u64, capture.ne.iter().product::<u64>());
        assert!(data.iter().all(|v| v.is_finite()), "{}", capture.name);
    }
    assert!(ctx.take_captures().unwrap().is_empty());
}

#[test]
fn concurrent_contexts_on_one_model_agree() {
    let model = load();
    let input = tokens(&model, 10, 6);
    let expected = context(&model, 32).eval(&input).unwrap();
    let results = thread::scope(|scope| {
        let workers = (0..3)
            .map(|_| scope.spawn(|| context(&model, 32).eval(&input).unwrap()))
            .collect::<Vec<_>>();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .collect::<Vec<_>>()
    });
    for logits in results {
        assert!(
            logits == expected,
            "a concurrent context computed different logits"
        );
    }
    println!("{}", reference_info());
}

#[test]
fn model_quantize_writes_a_loadable_i2_s_file() {
    let be = Backend::init().unwrap();
    let input = common::test_model();
    let dir = common::scratch_dir("quantize-test-model");
    let output = dir.join("i2_s.gguf");
    let result = quantize_model_file(
        &be,
        &input,
        &output,
        &QuantizeParams::new(FileType::MOSTLY_I2_S),
    );
    let already_quantized = GgufHeader::read(&be, &input)
        .unwrap()
        .tensors
        .iter()
        .any(|t| ![GgmlType::F32, GgmlType::F16].contains(&t.ggml_type));
    match result {
        Ok(()) => {
            let header = GgufHeader::read(&be, &output).unwrap();
            assert!(header.tensors.iter().any(|t| t.ggml_type == GgmlType::I2_S));
            let model = Model::load(&be, &output, &ModelParams::default()).unwrap();
            let logits = context(&model, 32).eval(&tokens(&model, 4, 7)).unwrap();
            assert!(logits.as_slice().iter().all(|v| v.is_finite()));
        }
        // Other quantized types cannot be requantized (I2_S has no dequantizer).
        Err(RefError::Reference { .. }) if already_quantized => {}
        Err(e) => panic!("{e}"),
    }
    std::fs::remove_dir_all(dir).ok();
}
