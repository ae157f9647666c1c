//! Every way tokenizer metadata can be unusable, each naming the key at fault.

use crate::gguf::GgufError;

/// A tokenizer that cannot be built from a file's metadata.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Metadata(#[from] GgufError),
    #[error("missing key `{key}`")]
    MissingKey { key: &'static str },
    #[error(
        "unsupported tokenizer model {model:?} in `tokenizer.ggml.model` (supported: gpt2, llama)"
    )]
    UnsupportedModel { model: String },
    #[error(
        "unsupported pre-tokenizer {pre:?} in `tokenizer.ggml.pre` \
         (supported: default, gpt-2, llama3, llama-v3, llama-bpe)"
    )]
    UnsupportedPreTokenizer { pre: String },
    #[error("`tokenizer.ggml.tokens` is empty")]
    EmptyVocabulary,
    #[error("`{key}` has {found} entries, expected {expected} (one per token)")]
    LengthMismatch {
        key: &'static str,
        found: usize,
        expected: usize,
    },
    #[error("`{key}`[{index}]: {problem}")]
    BadEntry {
        key: &'static str,
        index: usize,
        problem: String,
    },
    #[error("`tokenizer.ggml.tokens` holds {text:?} twice, at ids {first} and {second}")]
    DuplicateToken {
        text: String,
        first: usize,
        second: usize,
    },
    #[error("`{key}` = {id} is not a token id (the vocabulary has {n_tokens} tokens)")]
    SpecialOutOfRange {
        key: String,
        id: u32,
        n_tokens: usize,
    },
}
