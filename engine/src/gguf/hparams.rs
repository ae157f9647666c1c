//! Typed views of the architecture hyper-parameters and tokenizer keys.

use serde::Serialize;

use super::error::GgufError;
use super::metadata::Metadata;
use super::value::{Value, ValueType};

/// `<arch>.*` hyper-parameters as llama.cpp reads them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelHparams {
    pub arch: String,
    pub vocab_size: Option<u32>,
    pub context_length: u32,
    pub embedding_length: u32,
    pub block_count: u32,
    pub feed_forward_length: u32,
    pub head_count: u32,
    /// Defaults to `head_count` when absent.
    pub head_count_kv: u32,
    /// Defaults to `embedding_length / head_count` when absent.
    pub rope_dimension_count: u32,
    pub rms_epsilon: f32,
    /// Defaults to 10000 when absent.
    pub rope_freq_base: f32,
    pub file_type: Option<u32>,
}

impl ModelHparams {
    /// Reads the hyper-parameters of `general.architecture`; missing or mistyped keys are errors.
    pub fn from_metadata(md: &Metadata) -> Result<Self, GgufError> {
        let arch = md.get_str("general.architecture")?.to_string();
        let key = |k: &str| format!("{arch}.{k}");
        let embedding_length = md.get_u32(&key("embedding_length"))?;
        let head_count = md.get_u32(&key("attention.head_count"))?;
        if head_count == 0 {
            return Err(GgufError::KeyOutOfRange {
                key: key("attention.head_count"),
                value: "0".into(),
                expected: "a head count ≥ 1",
            });
        }
        Ok(Self {
            vocab_size: md.get_opt_u32(&key("vocab_size"))?,
            context_length: md.get_u32(&key("context_length"))?,
            block_count: md.get_u32(&key("block_count"))?,
            feed_forward_length: md.get_u32(&key("feed_forward_length"))?,
            head_count_kv: md
                .get_opt_u32(&key("attention.head_count_kv"))?
                .unwrap_or(head_count),
            rope_dimension_count: md
                .get_opt_u32(&key("rope.dimension_count"))?
                .unwrap_or(embedding_length / head_count),
            rms_epsilon: md
                .get_opt_f32(&key("attention.layer_norm_rms_epsilon"))?
                .ok_or_else(|| GgufError::MissingKey {
                    key: key("attention.layer_norm_rms_epsilon"),
                })?,
            rope_freq_base: md.get_opt_f32(&key("rope.freq_base"))?.unwrap_or(10000.0),
            file_type: md.get_opt_u32("general.file_type")?,
            embedding_length,
            head_count,
            arch,
        })
    }
}

/// A summary of the `tokenizer.ggml.*` keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenizerMeta {
    /// `gpt2` (byte-level BPE) or `llama` (SentencePiece), as llama.cpp names them.
    pub model: String,
    /// The pre-tokenizer; `None` means llama.cpp's default split.
    pub pre: Option<String>,
    pub n_tokens: usize,
    pub n_merges: usize,
    pub has_scores: bool,
    pub has_token_types: bool,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub pad: Option<u32>,
    pub unk: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub has_chat_template: bool,
}

impl TokenizerMeta {
    /// Reads the tokenizer keys; `Ok(None)` when the file has no tokenizer.
    pub fn from_metadata(md: &Metadata) -> Result<Option<Self>, GgufError> {
        let Some(model) = md.get_opt_str("tokenizer.ggml.model")? else {
            return Ok(None);
        };
        let n_tokens = md.get_string_array("tokenizer.ggml.tokens")?.len();
        let n_merges = md
            .get_opt_array(
                "tokenizer.ggml.merges",
                ValueType::String,
                "array of string",
            )?
            .map_or(0, |a| a.items.len());
        let special = |name: &str| -> Result<Option<u32>, GgufError> {
            let k = format!("tokenizer.ggml.{name}_token_id");
            let id = md.get_opt_u32(&k)?;
            match id {
                Some(id) if id as usize >= n_tokens => Err(GgufError::KeyOutOfRange {
                    key: k,
                    value: id.to_string(),
                    expected: "a token id below the vocabulary size",
                }),
                _ => Ok(id),
            }
        };
        Ok(Some(Self {
            model: model.to_string(),
            pre: md.get_opt_str("tokenizer.ggml.pre")?.map(str::to_string),
            n_tokens,
            n_merges,
            has_scores: md.get("tokenizer.ggml.scores").is_some(),
            has_token_types: md.get("tokenizer.ggml.token_type").is_some(),
            bos: special("bos")?,
            eos: special("eos")?,
            eot: special("eot")?,
            pad: special("padding")?,
            unk: special("unknown")?,
            add_bos: md.get_opt_bool("tokenizer.ggml.add_bos_token")?,
            add_eos: md.get_opt_bool("tokenizer.ggml.add_eos_token")?,
            has_chat_template: md
                .get("tokenizer.chat_template")
                .and_then(Value::as_str)
                .is_some(),
        }))
    }
}
