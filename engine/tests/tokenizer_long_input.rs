//! Long inputs: whole corpora and pathological single words tokenize in linear-ish time.

mod tokenizer_support;

use std::time::Instant;

use bitnet_engine::tokenizer::Tokenizer;
use tokenizer_support::{data_dir, open_tokenizer};

/// Encodes `text`, checks the round trip, and returns the seconds taken.
fn timed_round_trip(tok: &Tokenizer, text: &str) -> f64 {
    let start = Instant::now();
    let ids = tok.encode(text, false, false);
    let secs = start.elapsed().as_secs_f64();
    let bytes: Vec<u8> = ids
        .iter()
        .flat_map(|&id| tok.token_to_piece(id, false))
        .collect();
    let expected = match tok.add_space_prefix() {
        true => format!(" {text}"),
        false => text.to_string(),
    };
    assert!(bytes == expected.as_bytes(), "round trip failed");
    secs
}

#[test]
fn corpora_and_long_words() {
    let wiki = std::fs::read_to_string(data_dir().join("corpora/wikitext-2-raw-test.txt")).unwrap();
    let long_words = [
        "a".repeat(200_000),
        "7".repeat(200_000),
        " ".repeat(200_000),
        "!?".repeat(100_000),
        "🦙".repeat(50_000),
    ];
    for name in ["ggml-vocab-gpt-2.gguf", "ggml-vocab-llama-spm.gguf"] {
        let tok = open_tokenizer(name);
        let secs = timed_round_trip(&tok, &wiki);
        eprintln!(
            "{name}: wikitext-2 test ({} bytes) in {secs:.3} s",
            wiki.len()
        );
        assert!(secs < 20.0, "{name}: wikitext took {secs:.1} s");
        for word in &long_words {
            let secs = timed_round_trip(&tok, word);
            assert!(
                secs < 10.0,
                "{name}: a {}-byte word took {secs:.1} s",
                word.len()
            );
        }
    }
}
