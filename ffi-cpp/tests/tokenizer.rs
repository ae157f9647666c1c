//! The reference tokenizer against llama.cpp's test-tokenizer-0 vectors.

mod common;

use bitnet_ffi_cpp::{Backend, ContextParams, Model, ModelParams, RefError, VocabType};
use std::thread;

const SEPARATOR: &str = "\n__ggml_vocab_test__\n";

fn vocab_model(file: &str) -> Model {
    let be = Backend::init().expect("reference backend");
    let params = ModelParams {
        vocab_only: true,
        ..ModelParams::default()
    };
    Model::load(&be, common::vocab_file(file), &params).expect("load vocab-only model")
}

/// The strings of `<file>.inp` (each followed by the separator) and the ids of `<file>.out`.
fn vectors(file: &str) -> Vec<(String, Vec<u32>)> {
    let inp = std::fs::read_to_string(common::vocab_file(&format!("{file}.inp"))).unwrap();
    let out = std::fs::read_to_string(common::vocab_file(&format!("{file}.out"))).unwrap();
    let mut texts = inp.split(SEPARATOR).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        texts.pop().as_deref(),
        Some(""),
        "{file}.inp must end with the separator"
    );
    let ids = out
        .lines()
        .map(|line| {
            line.split_whitespace()
                .map(|id| id.parse().unwrap())
                .collect::<Vec<u32>>()
        })
        .collect::<Vec<_>>();
    assert_eq!(
        texts.len(),
        ids.len(),
        "{file}: .inp and .out disagree on the count"
    );
    texts.into_iter().zip(ids).collect()
}

/// Tokenizes every vector and lists the mismatches.
fn mismatches(model: &Model, vectors: &[(String, Vec<u32>)]) -> Vec<String> {
    vectors
        .iter()
        .filter_map(|(text, expected)| {
            let got = model.tokenize(text, false, false).unwrap();
            (&got != expected).then(|| format!("{text:?}: expected {expected:?}, got {got:?}"))
        })
        .collect()
}

fn check_vocab(file: &str, vocab_type: VocabType, n_vocab: u32) {
    let model = vocab_model(file);
    assert_eq!(model.info().vocab_type, vocab_type);
    assert_eq!(model.info().n_vocab, n_vocab);
    let vectors = vectors(file);
    assert_eq!(vectors.len(), 46);
    let failures = mismatches(&model, &vectors);
    assert!(failures.is_empty(), "{file}:\n{}", failures.join("\n"));
}

#[test]
fn gpt2_vocab_matches_the_reference_vectors() {
    check_vocab("ggml-vocab-gpt-2.gguf", VocabType::BPE, 50257);
}

#[test]
fn llama_spm_vocab_matches_the_reference_vectors() {
    check_vocab("ggml-vocab-llama-spm.gguf", VocabType::SPM, 32000);
}

#[test]
fn pieces_and_detokenization_rebuild_the_text() {
    let model = vocab_model("ggml-vocab-gpt-2.gguf");
    let text = "Hello world, this is a test of the reference tokenizer.";
    let tokens = model.tokenize(text, false, false).unwrap();
    assert_eq!(
        model.detokenize(&tokens, false, false).unwrap(),
        text.as_bytes()
    );
    let pieces = tokens
        .iter()
        .flat_map(|&t| model.token_to_piece(t, false).unwrap())
        .collect::<Vec<u8>>();
    assert_eq!(pieces, text.as_bytes());
    let long = vec!["word"; 5000].join(" ");
    let long_tokens = model.tokenize(&long, false, false).unwrap();
    assert_eq!(long_tokens.len(), 5000);
    assert_eq!(
        model.detokenize(&long_tokens, false, false).unwrap(),
        long.as_bytes()
    );
    // Pieces longer than the first buffer guess take the retry path.
    let longest = (0..model.info().n_vocab)
        .map(|t| model.token_to_piece(t, true).unwrap().len())
        .max()
        .unwrap();
    assert!(longest > 64, "longest piece has {longest} bytes");
}

#[test]
fn special_tokens_and_metadata() {
    let model = vocab_model("ggml-vocab-llama-spm.gguf");
    let info = model.info().clone();
    assert_eq!(info.bos, Some(1));
    assert!(info.add_bos && info.vocab_only);
    let tokens = model.tokenize("Hello", true, false).unwrap();
    assert_eq!(tokens.first(), Some(&1));
    assert_eq!(model.tokenize("", false, false).unwrap(), Vec::<u32>::new());
    assert_eq!(model.token_to_piece(1, false).unwrap(), b"");
    assert_eq!(model.token_to_piece(1, true).unwrap(), b"<s>");
    assert_eq!(model.meta("tokenizer.ggml.model").unwrap(), "llama");
    assert!(matches!(
        model.meta("no.such.key"),
        Err(RefError::InvalidArgument { .. })
    ));
}

#[test]
fn bad_requests_are_errors() {
    let model = vocab_model("ggml-vocab-gpt-2.gguf");
    let invalid = |r: Result<Vec<u8>, RefError>| matches!(r, Err(RefError::InvalidArgument { .. }));
    assert!(invalid(model.token_to_piece(50257, false)));
    assert!(invalid(model.token_to_piece(u32::MAX, false)));
    assert!(invalid(model.detokenize(&[1, 2, 99_999], false, false)));
    assert!(matches!(
        model.new_context(&ContextParams::default()),
        Err(RefError::InvalidArgument { .. })
    ));
    let be = Backend::init().unwrap();
    let missing = Model::load(
        &be,
        common::data_dir().join("vocab/none.gguf"),
        &ModelParams::default(),
    );
    assert!(matches!(missing, Err(RefError::Io { .. })));
    let not_gguf = Model::load(
        &be,
        common::vocab_file("ggml-vocab-gpt-2.gguf.inp"),
        &ModelParams::default(),
    );
    assert!(matches!(not_gguf, Err(RefError::Format { .. })));
}

#[test]
fn concurrent_tokenization_on_one_model() {
    let model = vocab_model("ggml-vocab-gpt-2.gguf");
    let vectors = vectors("ggml-vocab-gpt-2.gguf");
    let failures = thread::scope(|scope| {
        let workers = (0..4)
            .map(|_| {
                let model = model.clone();
                let vectors = &vectors;
                scope.spawn(move || {
                    (0..5)
                        .flat_map(|_| mismatches(&model, vectors))
                        .collect::<Vec<_>>()
                })
            })
            .collect::<Vec<_>>();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
