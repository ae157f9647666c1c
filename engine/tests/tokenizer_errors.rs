//! Malformed tokenizer metadata yields errors naming the key; odd but valid vocabularies work.

use bitnet_engine::gguf::{Array, Metadata, Value, ValueType};
use bitnet_engine::tokenizer::{TokenType, Tokenizer, TokenizerError};

fn strings(items: &[&str]) -> Value {
    Value::Array(Array {
        elem: ValueType::String,
        items: items.iter().map(|s| Value::String(s.to_string())).collect(),
    })
}

fn ints(items: &[i32]) -> Value {
    Value::Array(Array {
        elem: ValueType::I32,
        items: items.iter().map(|&v| Value::I32(v)).collect(),
    })
}

fn floats(items: &[f32]) -> Value {
    Value::Array(Array {
        elem: ValueType::F32,
        items: items.iter().map(|&v| Value::F32(v)).collect(),
    })
}

/// A tiny byte-level BPE vocabulary: `a`, `b`, `ab`, a space, a user-defined and a control token.
fn bpe() -> Metadata {
    let mut md = Metadata::default();
    md.set("tokenizer.ggml.model", Value::String("gpt2".into()));
    md.set("tokenizer.ggml.pre", Value::String("gpt-2".into()));
    md.set(
        "tokenizer.ggml.tokens",
        strings(&["a", "b", "ab", "\u{120}", "<tool>", "<eos>"]),
    );
    md.set("tokenizer.ggml.token_type", ints(&[1, 1, 1, 1, 4, 3]));
    md.set("tokenizer.ggml.merges", strings(&["a b"]));
    md.set("tokenizer.ggml.eos_token_id", Value::U32(5));
    md
}

/// A tiny SentencePiece vocabulary with byte fallback for `x`.
fn spm() -> Metadata {
    let mut md = Metadata::default();
    md.set("tokenizer.ggml.model", Value::String("llama".into()));
    md.set(
        "tokenizer.ggml.tokens",
        strings(&[
            "<unk>",
            "<s>",
            "</s>",
            "\u{2581}",
            "h",
            "i",
            "hi",
            "\u{2581}hi",
            "<0x78>",
        ]),
    );
    md.set(
        "tokenizer.ggml.token_type",
        ints(&[2, 3, 3, 1, 1, 1, 1, 1, 6]),
    );
    md.set(
        "tokenizer.ggml.scores",
        floats(&[0.0, 0.0, 0.0, -3.0, -2.0, -2.0, -1.0, -0.5, 0.0]),
    );
    md
}

fn error(md: &Metadata) -> String {
    Tokenizer::from_metadata(md).unwrap_err().to_string()
}

#[test]
fn tiny_vocabularies_work() {
    let tok = Tokenizer::from_metadata(&bpe()).unwrap();
    assert_eq!(tok.encode("ab a<tool>b", false, false), [2, 3, 0, 4, 1]);
    assert_eq!(tok.encode("a<eos>", true, false), [0]);
    assert_eq!(tok.encode("a<eos>", true, true), [0, 5]);
    assert_eq!(tok.token_type(4), Some(TokenType::UserDefined));

    let tok = Tokenizer::from_metadata(&spm()).unwrap();
    assert_eq!(tok.encode("hi hix", true, false), [1, 7, 7, 8]);
    assert_eq!(tok.decode(&[7, 7, 8], false, false), "hi hix");
    assert_eq!(tok.encode("hi?", false, false), [7, 0]);
}

#[test]
fn missing_model() {
    let mut md = bpe();
    md = strip(&md, "tokenizer.ggml.model");
    assert!(error(&md).contains("tokenizer.ggml.model"));
}

#[test]
fn unsupported_model_and_pre() {
    let mut md = bpe();
    md.set("tokenizer.ggml.model", Value::String("bert".into()));
    let e = Tokenizer::from_metadata(&md).unwrap_err();
    assert!(matches!(e, TokenizerError::UnsupportedModel { .. }));
    assert!(e.to_string().contains("tokenizer.ggml.model"));
    let mut md = bpe();
    md.set("tokenizer.ggml.pre", Value::String("qwen2".into()));
    assert!(error(&md).contains("tokenizer.ggml.pre"));
}

#[test]
fn missing_or_malformed_merges() {
    assert!(error(&strip(&bpe(), "tokenizer.ggml.merges")).contains("tokenizer.ggml.merges"));
    let mut md = bpe();
    md.set("tokenizer.ggml.merges", strings(&["a b", "ab"]));
    let e = error(&md);
    assert!(
        e.contains("tokenizer.ggml.merges") && e.contains("[1]"),
        "{e}"
    );
    let mut md = bpe();
    md.set("tokenizer.ggml.merges", ints(&[1]));
    assert!(error(&md).contains("tokenizer.ggml.merges"));
}

#[test]
fn malformed_tokens() {
    assert!(error(&strip(&bpe(), "tokenizer.ggml.tokens")).contains("tokenizer.ggml.tokens"));
    let mut md = bpe();
    md.set("tokenizer.ggml.tokens", strings(&[]));
    assert!(error(&md).contains("tokenizer.ggml.tokens"));
    let mut md = bpe();
    md.set("tokenizer.ggml.tokens", ints(&[1, 2]));
    assert!(error(&md).contains("tokenizer.ggml.tokens"));
    let mut md = bpe();
    md.set(
        "tokenizer.ggml.tokens",
        strings(&["a", "b", "a", "\u{120}", "<tool>", "<eos>"]),
    );
    let e = error(&md);
    assert!(e.contains("\"a\"") && e.contains("0 and 2"), "{e}");
}

#[test]
fn per_token_arrays_must_match_the_vocabulary() {
    let mut md = spm();
    md.set("tokenizer.ggml.scores", floats(&[0.0]));
    assert!(error(&md).contains("tokenizer.ggml.scores"));
    let mut md = spm();
    md.set("tokenizer.ggml.token_type", ints(&[1, 1]));
    assert!(error(&md).contains("tokenizer.ggml.token_type"));
    let mut md = spm();
    md.set("tokenizer.ggml.scores", ints(&[0; 9]));
    assert!(error(&md).contains("tokenizer.ggml.scores"));
}

#[test]
fn special_ids_must_be_tokens() {
    let mut md = spm();
    md.set("tokenizer.ggml.bos_token_id", Value::U32(9));
    let e = error(&md);
    assert!(
        e.contains("tokenizer.ggml.bos_token_id") && e.contains('9'),
        "{e}"
    );
    let mut md = spm();
    md.set("tokenizer.ggml.add_bos_token", Value::U32(1));
    assert!(error(&md).contains("tokenizer.ggml.add_bos_token"));
}

fn strip(md: &Metadata, key: &str) -> Metadata {
    let mut out = Metadata::default();
    for (k, v) in md.iter().filter(|(k, _)| *k != key) {
        out.set(k, v.clone());
    }
    out
}
