//! Exact agreement with llama.cpp's test-tokenizer-0 vectors for the GPT-2 and LLaMA SPM vocabs.

mod tokenizer_support;

use bitnet_engine::tokenizer::{PreTokenizer, TokenizerModel};
use tokenizer_support::{check_vectors, open_tokenizer};

#[test]
fn gpt2_vectors_match_llama_cpp() {
    let tok = open_tokenizer("ggml-vocab-gpt-2.gguf");
    assert_eq!(tok.model(), TokenizerModel::Bpe);
    assert_eq!(tok.pre_tokenizer(), Some(PreTokenizer::Gpt2));
    assert_eq!(check_vectors(&tok, "ggml-vocab-gpt-2.gguf"), 46);
}

#[test]
fn spm_vectors_match_llama_cpp() {
    let tok = open_tokenizer("ggml-vocab-llama-spm.gguf");
    assert_eq!(tok.model(), TokenizerModel::Spm);
    assert_eq!(check_vectors(&tok, "ggml-vocab-llama-spm.gguf"), 46);
}
