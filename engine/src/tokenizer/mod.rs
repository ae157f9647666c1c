//! Text ↔ token ids from GGUF tokenizer metadata alone, reproducing llama.cpp's tokenizers:
//! byte-level BPE (`gpt2`, with its pre-tokenizers) and SentencePiece-style (`llama`).

mod bpe;
mod byte_level;
mod char_class;
mod detokenize;
mod error;
mod fast_hash;
mod pre_split;
mod special_split;
mod spm;
mod vocab;

use crate::gguf::Metadata;

use bpe::Merges;
use special_split::Fragment;

pub use byte_level::byte_to_char;
pub use detokenize::StreamDecoder;
pub use error::TokenizerError;
pub use pre_split::PreTokenizer;
pub use vocab::TokenType;

/// Texts that mark an end-of-turn token when `tokenizer.ggml.eot_token_id` is absent.
const EOT_TEXTS: [&str; 7] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<EOT>",
    "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
];

/// Texts of tokens that end generation.
const EOG_TEXTS: [&str; 7] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
];

/// Longest word (in bytes) whose BPE result is reused within one `encode` call.
const MAX_REMEMBERED_WORD: usize = 64;

/// The tokenizer family (`tokenizer.ggml.model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerModel {
    /// `gpt2`: byte-level BPE with merges.
    Bpe,
    /// `llama`: SentencePiece-style merging by score, with byte fallback.
    Spm,
}

/// The special token ids; `None` where the vocabulary has none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub pad: Option<u32>,
    pub unk: Option<u32>,
}

/// A tokenizer built from `tokenizer.ggml.*` metadata.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    vocab: vocab::Vocab,
    model: TokenizerModel,
    pre: PreTokenizer,
    merges: Option<Merges>,
    /// For SentencePiece: character pairs found inside tokens (merges never join other pairs).
    spm_pairs: fast_hash::FastSet<(char, char)>,
    special: SpecialTokens,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    clean_spaces: bool,
    /// Control, user-defined and unknown tokens, longest text first: the split-out candidates.
    specials_by_length: Vec<u32>,
    eog: Vec<u32>,
}

impl Tokenizer {
    /// Builds the tokenizer llama.cpp would build from the same metadata. Where llama.cpp
    /// merely warns (a special token id outside the vocabulary) or aborts (duplicate token
    /// texts, malformed merges), this returns an error naming the key.
    pub fn from_metadata(md: &Metadata) -> Result<Self, TokenizerError> {
        let model_name =
            md.get_opt_str("tokenizer.ggml.model")?
                .ok_or(TokenizerError::MissingKey {
                    key: "tokenizer.ggml.model",
                })?;
        let model = match model_name {
            "gpt2" => TokenizerModel::Bpe,
            "llama" => TokenizerModel::Spm,
            other => {
                return Err(TokenizerError::UnsupportedModel {
                    model: other.to_string(),
                })
            }
        };
        let mut vocab = vocab::Vocab::from_metadata(md)?;
        let n = vocab.len();
        let (pre, merges) = match model {
            TokenizerModel::Bpe => (
                PreTokenizer::from_name(md.get_opt_str("tokenizer.ggml.pre")?)?,
                Some(Merges::from_metadata(md)?),
            ),
            TokenizerModel::Spm => (PreTokenizer::Default, None),
        };
        let in_range = |id: u32| (id as usize) < n;
        // llama.cpp's per-family defaults, overridden by the `*_token_id` keys.
        let mut special = match model {
            TokenizerModel::Spm => SpecialTokens {
                bos: Some(1).filter(|&i| in_range(i)),
                eos: Some(2).filter(|&i| in_range(i)),
                unk: Some(0),
                ..SpecialTokens::default()
            },
            TokenizerModel::Bpe => SpecialTokens {
                bos: Some(11).filter(|&i| in_range(i)),
                eos: Some(11).filter(|&i| in_range(i)),
                ..SpecialTokens::default()
            },
        };
        for (name, slot) in [
            ("bos", &mut special.bos),
            ("eos", &mut special.eos),
            ("eot", &mut special.eot),
            ("padding", &mut special.pad),
            ("unknown", &mut special.unk),
        ] {
            let key = format!("tokenizer.ggml.{name}_token_id");
            if let Some(id) = md.get_opt_u32(&key)? {
                if !in_range(id) {
                    return Err(TokenizerError::SpecialOutOfRange {
                        key,
                        id,
                        n_tokens: n,
                    });
                }
                *slot = Some(id);
            }
        }
        if special.eot.is_none() {
            special.eot = vocab.find_first(&EOT_TEXTS);
            special.eot.inspect(|&id| vocab.make_control(id));
        }
        let mut eog: Vec<u32> = EOG_TEXTS.iter().filter_map(|t| vocab.id(t)).collect();
        for &id in &eog {
            vocab.make_control(id);
        }
        eog.extend(special.eos.iter().chain(&special.eot));
        eog.sort_unstable();
        eog.dedup();

        let is_spm = model == TokenizerModel::Spm;
        let add_bos = md
            .get_opt_bool("tokenizer.ggml.add_bos_token")?
            .unwrap_or(is_spm || pre == PreTokenizer::Llama3);
        let add_eos = md
            .get_opt_bool("tokenizer.ggml.add_eos_token")?
            .unwrap_or(false);
        let add_space_prefix = md
            .get_opt_bool("tokenizer.ggml.add_space_prefix")?
            .unwrap_or(is_spm);

        let mut specials_by_length: Vec<u32> = (0..n as u32)
            .filter(|&id| {
                matches!(
                    vocab.token_type(id),
                    Some(TokenType::Control | TokenType::UserDefined | TokenType::Unknown)
                )
            })
            .collect();
        specials_by_length.sort_by_key(|&id| std::cmp::Reverse(vocab.texts[id as usize].len()));

        let spm_pairs = match model {
            TokenizerModel::Spm => spm::adjacent_pairs(&vocab),
            TokenizerModel::Bpe => fast_hash::FastSet::default(),
        };
        Ok(Self {
            vocab,
            model,
            pre,
            merges,
            spm_pairs,
            special,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces: !is_spm,
            specials_by_length,
            eog,
        })
    }

    /// The tokenizer family.
    pub fn model(&self) -> TokenizerModel {
        self.model
    }

    /// The BPE pre-tokenizer; `None` for SentencePiece vocabularies.
    pub fn pre_tokenizer(&self) -> Option<PreTokenizer> {
        (self.model == TokenizerModel::Bpe).then_some(self.pre)
    }

    /// The number of tokens.
    pub fn n_tokens(&self) -> usize {
        self.vocab.len()
    }

    /// The special token ids.
    pub fn special_tokens(&self) -> SpecialTokens {
        self.special
    }

    /// Whether `encode` with `add_special` starts with BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether `encode` with `add_special` ends with EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// Whether SentencePiece text gets a leading space.
    pub fn add_space_prefix(&self) -> bool {
        self.add_space_prefix
    }

    /// Whether `id` ends generation (EOS, EOT and end-of-turn look-alikes).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// A token's stored text.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.text(id)
    }

    /// A token's type (after end-of-turn tokens are promoted to control tokens).
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.vocab.token_type(id)
    }

    /// A token's score (0 when the file has none).
    pub fn token_score(&self, id: u32) -> Option<f32> {
        self.vocab.scores.get(id as usize).copied()
    }

    /// The id of the token with exactly this text.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.id(text)
    }

    /// Tokenizes `text`. `add_special` adds BOS/EOS as the vocabulary asks; `parse_special`
    /// also recognises control tokens written in the text (user-defined tokens always are).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let candidates: Vec<(u32, &str)> = self
            .specials_by_length
            .iter()
            .filter(|&&id| {
                parse_special || !self.vocab.token_type(id).is_some_and(TokenType::is_special)
            })
            .map(|&id| (id, self.vocab.texts[id as usize].as_str()))
            .collect();
        let fragments = special_split::partition(text, &candidates);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.extend(self.special.bos);
        }
        match &self.merges {
            Some(merges) => self.encode_bpe(merges, &fragments, &mut out),
            None => self.encode_spm(&fragments, &mut out),
        }
        if add_special && self.add_eos {
            out.extend(self.special.eos);
        }
        out
    }

    fn encode_bpe(&self, merges: &Merges, fragments: &[Fragment<'_>], out: &mut Vec<u32>) {
        let whole_words = self.pre == PreTokenizer::Llama3;
        // Words repeat a lot in running text; each distinct short word is merged once per call.
        let mut seen: fast_hash::FastMap<&str, std::ops::Range<usize>> = Default::default();
        for fragment in fragments {
            match *fragment {
                Fragment::Token(id) => out.push(id),
                Fragment::Text(text) => {
                    for word in self.pre.split(text) {
                        if let Some(earlier) = seen.get(word) {
                            out.extend_from_within(earlier.clone());
                            continue;
                        }
                        let start = out.len();
                        merges.tokenize_word(&self.vocab, word, whole_words, out);
                        if word.len() <= MAX_REMEMBERED_WORD {
                            seen.insert(word, start..out.len());
                        }
                    }
                }
            }
        }
    }

    fn encode_spm(&self, fragments: &[Fragment<'_>], out: &mut Vec<u32>) {
        let mut after_special = true;
        for fragment in fragments {
            match *fragment {
                Fragment::Token(id) => {
                    out.push(id);
                    after_special = true;
                }
                Fragment::Text(text) => {
                    let prefix = if self.add_space_prefix && after_special {
                        "\u{2581}"
                    } else {
                        ""
                    };
                    let escaped = format!("{prefix}{}", text.replace(' ', "\u{2581}"));
                    spm::tokenize(
                        &self.vocab,
                        &self.spm_pairs,
                        &escaped,
                        self.special.unk,
                        out,
                    );
                    after_special = false;
                }
            }
        }
    }
}
