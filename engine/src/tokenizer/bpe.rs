//! Byte-level BPE: words are spelled in the byte alphabet, then adjacent symbols are merged by
//! merge rank (lowest first, leftmost on ties) until no ranked pair remains.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::gguf::{Metadata, ValueType};

use super::byte_level::encode_bytes;
use super::error::TokenizerError;
use super::fast_hash::FastMap;
use super::vocab::Vocab;

const MERGES: &str = "tokenizer.ggml.merges";

/// The merge table, with every string that takes part in a merge interned as a piece id.
#[derive(Debug, Clone)]
pub(crate) struct Merges {
    pieces: FastMap<String, u32>,
    /// (left piece, right piece) → (rank, merged piece).
    pairs: FastMap<(u32, u32), (u32, u32)>,
}

impl Merges {
    /// Reads `tokenizer.ggml.merges`: entries `"left right"`, rank = position; repeats keep the
    /// first rank.
    pub(crate) fn from_metadata(md: &Metadata) -> Result<Self, TokenizerError> {
        let list = md
            .get_opt_array(MERGES, ValueType::String, "array of string")?
            .ok_or(TokenizerError::MissingKey { key: MERGES })?;
        let mut merges = Self {
            pieces: FastMap::default(),
            pairs: FastMap::with_capacity_and_hasher(list.items.len(), Default::default()),
        };
        for (rank, item) in list.items.iter().enumerate() {
            let entry = item.as_str().unwrap_or_default();
            let split = entry.bytes().skip(1).position(|b| b == b' ').map(|i| i + 1);
            let Some(split) = split else {
                return Err(TokenizerError::BadEntry {
                    key: MERGES,
                    index: rank,
                    problem: format!("{entry:?} is not two pieces separated by a space"),
                });
            };
            let (left, right) = (&entry[..split], &entry[split + 1..]);
            let l = merges.intern(left);
            let r = merges.intern(right);
            let merged = merges.intern(&format!("{left}{right}"));
            merges.pairs.entry((l, r)).or_insert((rank as u32, merged));
        }
        Ok(merges)
    }

    fn intern(&mut self, piece: &str) -> u32 {
        let next = self.pieces.len() as u32;
        *self.pieces.entry(piece.to_string()).or_insert(next)
    }

    /// Tokenizes one pre-split word, appending ids to `out`. With `whole_words`, a word that is
    /// itself a token is emitted as is.
    pub(crate) fn tokenize_word(
        &self,
        vocab: &Vocab,
        word: &str,
        whole_words: bool,
        out: &mut Vec<u32>,
    ) {
        let mut spelled = String::with_capacity(word.len() * 2);
        encode_bytes(word.as_bytes(), &mut spelled);
        if whole_words {
            if let Some(id) = vocab.id(&spelled) {
                out.push(id);
                return;
            }
        }
        for sym in self.merge(&spelled) {
            emit_symbol(vocab, &spelled[sym.clone()], out);
        }
    }

    /// Runs the merges over the characters of `text`; returns the final symbols' byte ranges.
    fn merge(&self, text: &str) -> Vec<std::ops::Range<usize>> {
        let mut syms: Vec<Symbol> = text
            .char_indices()
            .map(|(start, c)| Symbol {
                start,
                len: c.len_utf8(),
                piece: self.pieces.get(&text[start..start + c.len_utf8()]).copied(),
            })
            .collect();
        let n = syms.len();
        let mut next: Vec<usize> = (1..=n).collect();
        let mut prev: Vec<Option<usize>> = (0..n).map(|i| i.checked_sub(1)).collect();
        let mut queue = BinaryHeap::new();
        for i in 1..n {
            self.push_pair(&syms, i - 1, i, &mut queue);
        }
        while let Some(Reverse(cand)) = queue.pop() {
            let (l, r) = (cand.left, cand.right);
            if syms[l].len != cand.left_len || syms[r].len != cand.right_len {
                continue;
            }
            syms[l].len += syms[r].len;
            syms[l].piece = Some(cand.merged);
            syms[r].len = 0;
            next[l] = next[r];
            if next[l] < n {
                prev[next[l]] = Some(l);
            }
            if let Some(before) = prev[l] {
                self.push_pair(&syms, before, l, &mut queue);
            }
            if next[l] < n {
                self.push_pair(&syms, l, next[l], &mut queue);
            }
        }
        syms.iter()
            .filter(|s| s.len > 0)
            .map(|s| s.start..s.start + s.len)
            .collect()
    }

    fn push_pair(
        &self,
        syms: &[Symbol],
        left: usize,
        right: usize,
        queue: &mut BinaryHeap<Reverse<Candidate>>,
    ) {
        let (Some(l), Some(r)) = (syms[left].piece, syms[right].piece) else {
            return;
        };
        if let Some(&(rank, merged)) = self.pairs.get(&(l, r)) {
            queue.push(Reverse(Candidate {
                rank,
                left,
                right,
                left_len: syms[left].len,
                right_len: syms[right].len,
                merged,
            }));
        }
    }
}

/// A symbol of the word being merged; `len` 0 marks one absorbed by its left neighbour.
struct Symbol {
    start: usize,
    len: usize,
    piece: Option<u32>,
}

/// A possible merge; ordered by rank, then by position.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    rank: u32,
    left: usize,
    right: usize,
    left_len: usize,
    right_len: usize,
    merged: u32,
}

/// A final symbol's token, or the tokens of its single-character bytes when it is not a token.
fn emit_symbol(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    if let Some(id) = vocab.id(text) {
        out.push(id);
        return;
    }
    let mut buf = [0u8; 4];
    out.extend(
        text.bytes()
            .filter(u8::is_ascii)
            .filter_map(|b| vocab.id(char::from(b).encode_utf8(&mut buf))),
    );
}
