//! The token table: texts, types and scores, with lookup by text.

use crate::gguf::{Metadata, ValueType};

use super::error::TokenizerError;
use super::fast_hash::FastMap;

const TOKENS: &str = "tokenizer.ggml.tokens";
const SCORES: &str = "tokenizer.ggml.scores";
const TOKEN_TYPES: &str = "tokenizer.ggml.token_type";

/// A token's type as stored in `tokenizer.ggml.token_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    /// Type 0, or any value outside the known range.
    Undefined,
    /// Ordinary text (type 1; the default when the file has no types).
    Normal,
    /// The unknown-token marker (type 2).
    Unknown,
    /// Control tokens such as BOS/EOS (type 3).
    Control,
    /// User-defined tokens, always split out of text before tokenizing (type 4).
    UserDefined,
    /// Unused slots (type 5).
    Unused,
    /// SentencePiece byte tokens `<0xXX>` (type 6).
    Byte,
}

impl TokenType {
    fn from_code(code: i128) -> Self {
        match code {
            1 => Self::Normal,
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => Self::Undefined,
        }
    }

    /// Control and unknown tokens: rendered only on request, matched in text only on request.
    pub fn is_special(self) -> bool {
        matches!(self, Self::Control | Self::Unknown)
    }
}

/// Token texts, types and scores, indexed by id.
#[derive(Debug, Clone)]
pub(crate) struct Vocab {
    pub(crate) texts: Vec<String>,
    pub(crate) types: Vec<TokenType>,
    pub(crate) scores: Vec<f32>,
    ids: FastMap<String, u32>,
}

impl Vocab {
    /// Reads tokens (required), scores and token types (optional) from the metadata.
    pub(crate) fn from_metadata(md: &Metadata) -> Result<Self, TokenizerError> {
        let raw = md.get_string_array(TOKENS)?;
        if raw.is_empty() {
            return Err(TokenizerError::EmptyVocabulary);
        }
        let n = raw.len();
        let texts: Vec<String> = raw
            .iter()
            .enumerate()
            .map(|(i, t)| match t.is_empty() {
                true => format!("[EMPTY_{i}]"),
                false => (*t).to_string(),
            })
            .collect();
        let mut ids = FastMap::with_capacity_and_hasher(n, Default::default());
        for (i, t) in texts.iter().enumerate() {
            if let Some(first) = ids.insert(t.clone(), i as u32) {
                return Err(TokenizerError::DuplicateToken {
                    text: t.clone(),
                    first: first as usize,
                    second: i,
                });
            }
        }
        let scores = match md.get_opt_array(SCORES, ValueType::F32, "array of float32")? {
            None => vec![0.0; n],
            Some(a) => {
                check_len(SCORES, a.items.len(), n)?;
                a.items
                    .iter()
                    .map(|v| v.as_f64().unwrap_or(0.0) as f32)
                    .collect()
            }
        };
        let types = match md.get_opt_array(TOKEN_TYPES, ValueType::I32, "array of int32")? {
            None => vec![TokenType::Normal; n],
            Some(a) => {
                check_len(TOKEN_TYPES, a.items.len(), n)?;
                a.items
                    .iter()
                    .map(|v| TokenType::from_code(v.as_i128().unwrap_or(0)))
                    .collect()
            }
        };
        Ok(Self {
            texts,
            types,
            scores,
            ids,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.texts.len()
    }

    pub(crate) fn id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    pub(crate) fn text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }

    pub(crate) fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// The id of the first of `candidates` present in the vocabulary.
    pub(crate) fn find_first(&self, candidates: &[&str]) -> Option<u32> {
        candidates.iter().find_map(|c| self.id(c))
    }

    /// Marks `id` as a control token.
    pub(crate) fn make_control(&mut self, id: u32) {
        if let Some(t) = self.types.get_mut(id as usize) {
            *t = TokenType::Control;
        }
    }
}

fn check_len(key: &'static str, found: usize, expected: usize) -> Result<(), TokenizerError> {
    match found == expected {
        true => Ok(()),
        false => Err(TokenizerError::LengthMismatch {
            key,
            found,
            expected,
        }),
    }
}
