//! Decoding: exact round trips, llama.cpp's detokenizer conventions, streaming of split UTF-8,
//! special-token parsing.

mod tokenizer_support;

use bitnet_engine::tokenizer::{TokenType, Tokenizer};
use proptest::prelude::*;
use tokenizer_support::{open_tokenizer, vectors};

fn pieces(tok: &Tokenizer, ids: &[u32]) -> Vec<u8> {
    ids.iter()
        .flat_map(|&id| tok.token_to_piece(id, false))
        .collect()
}

#[test]
fn gpt2_pieces_give_back_every_vector() {
    let tok = open_tokenizer("ggml-vocab-gpt-2.gguf");
    for (text, ids) in vectors("ggml-vocab-gpt-2.gguf") {
        assert_eq!(pieces(&tok, &ids), text.as_bytes(), "{text:?}");
    }
}

#[test]
fn spm_decode_gives_back_every_vector() {
    let tok = open_tokenizer("ggml-vocab-llama-spm.gguf");
    for (text, ids) in vectors("ggml-vocab-llama-spm.gguf") {
        assert_eq!(tok.decode(&ids, false, false), text, "{text:?}");
    }
}

#[test]
fn spm_adds_bos_and_space_prefix() {
    let tok = open_tokenizer("ggml-vocab-llama-spm.gguf");
    assert!(tok.add_bos() && !tok.add_eos() && tok.add_space_prefix());
    let ids = tok.encode("Hello world", true, false);
    assert_eq!(ids[0], 1);
    assert_eq!(tok.token_text(ids[1]), Some("\u{2581}Hello"));
    assert_eq!(tok.decode(&ids[1..], false, false), "Hello world");
    // llama.cpp keeps the prefix space when it drops a leading BOS.
    assert_eq!(tok.decode(&ids, true, false), " Hello world");
    assert_eq!(tok.decode(&ids, false, true), "<s> Hello world");
    assert_eq!(tok.encode("", true, false), [1]);
    assert!(tok.encode("", false, false).is_empty());
}

#[test]
fn spm_parse_special() {
    let tok = open_tokenizer("ggml-vocab-llama-spm.gguf");
    assert_eq!(tok.token_type(2), Some(TokenType::Control));
    let parsed = tok.encode("Hi</s>", false, true);
    assert_eq!(parsed.last(), Some(&2));
    assert_eq!(parsed.len(), 2);
    let literal = tok.encode("Hi</s>", false, false);
    assert!(!literal.contains(&2));
    assert_eq!(tok.decode(&literal, false, false), "Hi</s>");
    assert_eq!(tok.decode(&parsed, false, false), "Hi");
}

#[test]
fn gpt2_decode_tidies_spaces_like_llama_cpp() {
    let tok = open_tokenizer("ggml-vocab-gpt-2.gguf");
    let ids = tok.encode("Hello , world ! It 's fine", false, false);
    assert_eq!(tok.decode(&ids, false, false), "Hello, world! It's fine");
    let ids = tok.encode("plain text\nwith lines", false, false);
    assert_eq!(tok.decode(&ids, false, false), "plain text\nwith lines");
}

#[test]
fn gpt2_endoftext_is_control() {
    let tok = open_tokenizer("ggml-vocab-gpt-2.gguf");
    let eot = tok.token_id("<|endoftext|>").unwrap();
    assert_eq!(tok.special_tokens().eot, Some(eot));
    assert!(tok.is_eog(eot));
    assert_eq!(tok.encode("a<|endoftext|>", false, true).last(), Some(&eot));
    assert!(!tok.encode("a<|endoftext|>", false, false).contains(&eot));
    assert!(tok.token_to_piece(eot, false).is_empty());
    assert_eq!(tok.token_to_piece(eot, true), b"<|endoftext|>");
    assert!(tok.token_to_piece(u32::MAX, true).is_empty());
}

/// Streams `ids`, checking that nothing but whole characters is ever released.
fn stream(tok: &Tokenizer, ids: &[u32]) -> (String, usize) {
    let mut dec = tok.stream_decoder(false);
    let mut out = String::new();
    let mut held_back = 0;
    for &id in ids {
        let part = dec.push(id);
        held_back += usize::from(part.is_empty());
        out.push_str(&part);
    }
    out.push_str(&dec.finish());
    (out, held_back)
}

#[test]
fn streaming_holds_back_partial_utf8() {
    let text = "llama 🦙 and 我 plus é";
    for name in ["ggml-vocab-gpt-2.gguf", "ggml-vocab-llama-spm.gguf"] {
        let tok = open_tokenizer(name);
        let ids = tok.encode(text, false, false);
        let lone: Vec<Vec<u8>> = ids
            .iter()
            .map(|&id| tok.token_to_piece(id, false))
            .collect();
        assert!(
            lone.iter().any(|p| std::str::from_utf8(p).is_err()),
            "{name}: the text should split a character across tokens"
        );
        let (out, held_back) = stream(&tok, &ids);
        assert_eq!(out, text, "{name}");
        assert!(held_back > 0, "{name}");
        assert!(!out.contains('\u{FFFD}'));
    }
}

#[test]
fn streaming_flushes_incomplete_tail_as_replacement() {
    let tok = open_tokenizer("ggml-vocab-llama-spm.gguf");
    let ids = tok.encode("🦙", false, false);
    let mut dec = tok.stream_decoder(false);
    let mut out: String = ids[..ids.len() - 1]
        .iter()
        .map(|&id| dec.push(id))
        .collect();
    out.push_str(&dec.finish());
    assert!(out.ends_with('\u{FFFD}'), "{out:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn gpt2_round_trips_any_text(text in "\\PC{0,40}|[ \\t\\n'0-9a-z.!]{0,40}") {
        let tok = gpt2();
        let ids = tok.encode(&text, false, false);
        prop_assert_eq!(pieces(tok, &ids), text.as_bytes());
    }

    #[test]
    fn spm_round_trips_any_text(text in "\\PC{0,40}|[ \\t\\n'0-9a-z.!]{0,40}") {
        let tok = spm();
        let ids = tok.encode(&text, false, false);
        prop_assert_eq!(tok.decode(&ids, false, false), text);
    }

    #[test]
    fn special_parsing_never_panics(text in "(<s>|</s>|<unk>|<\\|endoftext\\|>|\\PC){0,20}") {
        for tok in [gpt2(), spm()] {
            let ids = tok.encode(&text, true, true);
            prop_assert!(ids.iter().all(|&id| (id as usize) < tok.n_tokens()));
            let _ = tok.decode(&ids, true, true);
        }
    }
}

fn gpt2() -> &'static Tokenizer {
    static TOK: std::sync::OnceLock<Tokenizer> = std::sync::OnceLock::new();
    TOK.get_or_init(|| open_tokenizer("ggml-vocab-gpt-2.gguf"))
}

fn spm() -> &'static Tokenizer {
    static TOK: std::sync::OnceLock<Tokenizer> = std::sync::OnceLock::new();
    TOK.get_or_init(|| open_tokenizer("ggml-vocab-llama-spm.gguf"))
}
