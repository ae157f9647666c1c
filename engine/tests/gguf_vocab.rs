//! The real vocab-only GGUF files written by llama.cpp's own tooling.

mod tokenizer_support;

use bitnet_engine::gguf::{GgufFile, ModelHparams, TokenizerMeta};
use tokenizer_support::data_dir;

fn open(name: &str) -> GgufFile {
    GgufFile::open(data_dir().join("vocab").join(name)).unwrap()
}

#[test]
fn gpt2_vocab() {
    let f = open("ggml-vocab-gpt-2.gguf");
    assert!(f.layout().tensors.is_empty());
    let t = TokenizerMeta::from_metadata(f.metadata()).unwrap().unwrap();
    assert_eq!(t.model, "gpt2");
    assert_eq!(t.n_tokens, 50257);
    assert_eq!(t.n_merges, 50000);
    assert_eq!(
        f.metadata().get_str("general.architecture").unwrap(),
        "gpt2"
    );
    let tokens = f
        .metadata()
        .get_string_array("tokenizer.ggml.tokens")
        .unwrap();
    assert_eq!(tokens[0], "!");
    assert!(ModelHparams::from_metadata(f.metadata()).is_err());
}

#[test]
fn spm_vocab() {
    let f = open("ggml-vocab-llama-spm.gguf");
    let t = TokenizerMeta::from_metadata(f.metadata()).unwrap().unwrap();
    assert_eq!(t.model, "llama");
    assert_eq!(t.n_tokens, 32000);
    assert!(t.has_scores && t.has_token_types);
    assert_eq!(t.bos, Some(1));
    assert_eq!(t.eos, Some(2));
    let h = ModelHparams::from_metadata(f.metadata()).unwrap();
    assert_eq!(h.arch, "llama");
    assert_eq!(h.embedding_length, 4096);
}
