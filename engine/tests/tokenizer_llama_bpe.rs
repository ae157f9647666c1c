//! The LLaMA-3 vocabulary, rebuilt in memory from the `tiktoken` crate's ranks the way GGUF
//! converters lay it out, checked against llama.cpp's llama-bpe vectors.

mod tokenizer_support;

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

use bitnet_engine::gguf::{Array, Metadata, Value, ValueType};
use bitnet_engine::tokenizer::{byte_to_char, PreTokenizer, TokenType, Tokenizer};
use tokenizer_support::{check_vectors, data_dir};

const N_RANKS: u32 = 128_000;
const N_MERGES: usize = 280_147;

/// The byte-level spelling of a rank's bytes.
fn spell(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| byte_to_char(b)).collect()
}

/// Llama-3.0 special tokens 128000..128256.
fn special_names() -> Vec<String> {
    let mut reserved = 0..;
    (0..256)
        .map(|i| match i {
            0 => "<|begin_of_text|>".to_string(),
            1 => "<|end_of_text|>".to_string(),
            6 => "<|start_header_id|>".to_string(),
            7 => "<|end_header_id|>".to_string(),
            9 => "<|eot_id|>".to_string(),
            _ => format!(
                "<|reserved_special_token_{}|>",
                reserved.next().unwrap_or(0)
            ),
        })
        .collect()
}

/// Every split of each token into two tokens, per token ordered by the parts' ranks, tokens in
/// rank order: the merge list Hugging Face's tiktoken conversion writes.
fn merges_from_ranks(ranks: &[Vec<u8>]) -> Vec<String> {
    let index: HashMap<&[u8], usize> = ranks
        .iter()
        .enumerate()
        .map(|(r, b)| (b.as_slice(), r))
        .collect();
    let mut merges = Vec::new();
    for token in ranks {
        let mut local: Vec<(usize, usize, usize)> = (1..token.len())
            .filter_map(|i| {
                let l = *index.get(&token[..i])?;
                let r = *index.get(&token[i..])?;
                Some((l, r, i))
            })
            .collect();
        local.sort_unstable();
        merges.extend(
            local
                .into_iter()
                .map(|(_, _, i)| format!("{} {}", spell(&token[..i]), spell(&token[i..]))),
        );
    }
    merges
}

fn strings(items: impl IntoIterator<Item = String>) -> Value {
    Value::Array(Array {
        elem: ValueType::String,
        items: items.into_iter().map(Value::String).collect(),
    })
}

/// The LLaMA-3 tokenizer metadata with the given pre-tokenizer key (absent when `None`).
fn llama3_metadata(pre: Option<&str>) -> Metadata {
    static BASE: OnceLock<Metadata> = OnceLock::new();
    let mut md = BASE
        .get_or_init(|| {
            let enc = tiktoken::get_encoding("llama3").expect("tiktoken ships llama3");
            let ranks: Vec<Vec<u8>> = (0..N_RANKS).map(|id| enc.decode(&[id])).collect();
            let merges = merges_from_ranks(&ranks);
            assert_eq!(merges.len(), N_MERGES, "merge count of the LLaMA-3 vocab");
            let tokens = ranks.iter().map(|b| spell(b)).chain(special_names());
            let types = (0..N_RANKS + 256)
                .map(|id| Value::I32(if id < N_RANKS { 1 } else { 3 }))
                .collect();
            let mut md = Metadata::default();
            md.set("tokenizer.ggml.model", Value::String("gpt2".into()));
            md.set("tokenizer.ggml.tokens", strings(tokens));
            md.set(
                "tokenizer.ggml.token_type",
                Value::Array(Array {
                    elem: ValueType::I32,
                    items: types,
                }),
            );
            md.set("tokenizer.ggml.merges", strings(merges));
            md.set("tokenizer.ggml.bos_token_id", Value::U32(128_000));
            md.set("tokenizer.ggml.eos_token_id", Value::U32(128_001));
            md
        })
        .clone();
    if let Some(pre) = pre {
        md.set("tokenizer.ggml.pre", Value::String(pre.into()));
    }
    md
}

#[test]
fn llama_bpe_vectors_match_llama_cpp() {
    let tok = Tokenizer::from_metadata(&llama3_metadata(Some("llama-bpe"))).unwrap();
    assert_eq!(tok.pre_tokenizer(), Some(PreTokenizer::Llama3));
    assert_eq!(tok.n_tokens(), 128_256);
    assert!(tok.add_bos());
    let special = tok.special_tokens();
    assert_eq!(special.bos, Some(128_000));
    assert_eq!(special.eot, Some(128_009));
    assert!(tok.is_eog(128_001) && tok.is_eog(128_009) && !tok.is_eog(128_002));
    assert_eq!(check_vectors(&tok, "ggml-vocab-llama-bpe.gguf"), 46);
}

#[test]
fn special_tokens_parse_only_on_request() {
    let tok = Tokenizer::from_metadata(&llama3_metadata(Some("llama-bpe"))).unwrap();
    let text = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
    let parsed = tok.encode(text, true, true);
    assert_eq!(parsed[..2], [128_000, 128_006]);
    assert_eq!(parsed.last(), Some(&128_009));
    assert_eq!(tok.token_type(128_009), Some(TokenType::Control));
    let literal = tok.encode(text, false, false);
    assert!(literal.iter().all(|&id| id < N_RANKS));
    assert_eq!(tok.decode(&literal, false, false), text);
    assert_eq!(
        tok.decode(&parsed, false, true),
        format!("<|begin_of_text|>{text}")
    );
    assert_eq!(tok.decode(&parsed, true, false), "user\n\nHi");
}

#[test]
fn default_pre_tokenizer_is_what_bitnet_cpp_uses() {
    let default = Tokenizer::from_metadata(&llama3_metadata(None)).unwrap();
    let llama3 = Tokenizer::from_metadata(&llama3_metadata(Some("llama-bpe"))).unwrap();
    assert_eq!(default.pre_tokenizer(), Some(PreTokenizer::Default));
    assert!(
        !default.add_bos(),
        "BPE without a llama3 pre adds no BOS unless asked"
    );
    let text = "The year 2024 isn't over.";
    for tok in [&default, &llama3] {
        let ids = tok.encode(text, false, false);
        assert_eq!(tok.decode(&ids, false, false), text);
    }
    assert_ne!(
        default.encode(text, false, false),
        llama3.encode(text, false, false),
        "the default split cuts `'` and digit triples differently"
    );
}

#[test]
fn wikitext_tokenizes_in_reasonable_time() {
    let tok = Tokenizer::from_metadata(&llama3_metadata(Some("llama-bpe"))).unwrap();
    let text = std::fs::read_to_string(data_dir().join("corpora/wikitext-2-raw-test.txt")).unwrap();
    let start = Instant::now();
    let ids = tok.encode(&text, true, false);
    let elapsed = start.elapsed();
    eprintln!(
        "wikitext-2 test ({} bytes): {} tokens in {:.3} s",
        text.len(),
        ids.len(),
        elapsed.as_secs_f64()
    );
    assert_eq!(ids[0], 128_000);
    let pieces: Vec<u8> = ids[1..]
        .iter()
        .flat_map(|&id| tok.token_to_piece(id, false))
        .collect();
    assert_eq!(pieces, text.as_bytes());
    assert!(elapsed.as_secs_f64() < 20.0, "tokenizing took {elapsed:?}");
}
