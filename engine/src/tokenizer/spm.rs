//! SentencePiece-style merging: adjacent symbols whose concatenation is a token are merged,
//! highest score first (leftmost on ties); leftovers fall back to byte tokens.
//!
//! No merge can join two neighbouring characters that are never adjacent inside a token, so the
//! text is cut there and each piece is merged on its own: the result is the same as merging the
//! whole text at once, with small queues instead of one as long as the text.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::fast_hash::FastSet;
use super::vocab::Vocab;

/// The pairs of characters that occur next to each other inside some token.
pub(crate) fn adjacent_pairs(vocab: &Vocab) -> FastSet<(char, char)> {
    let mut pairs = FastSet::default();
    for text in &vocab.texts {
        let mut chars = text.chars();
        let Some(mut prev) = chars.next() else {
            continue;
        };
        for c in chars {
            pairs.insert((prev, c));
            prev = c;
        }
    }
    pairs
}

/// Tokenizes already-escaped text (spaces written as U+2581), appending ids to `out`.
/// `pairs` is [`adjacent_pairs`] of the vocabulary. A byte with no byte token becomes `unk`
/// (llama.cpp would abort), or nothing when there is no unknown token.
pub(crate) fn tokenize(
    vocab: &Vocab,
    pairs: &FastSet<(char, char)>,
    text: &str,
    unk: Option<u32>,
    out: &mut Vec<u32>,
) {
    let mut start = 0;
    let mut prev = None;
    for (i, c) in text.char_indices() {
        if let Some(p) = prev {
            if !pairs.contains(&(p, c)) {
                tokenize_piece(vocab, &text[start..i], unk, out);
                start = i;
            }
        }
        prev = Some(c);
    }
    tokenize_piece(vocab, &text[start..], unk, out);
}

/// Merges one piece of text that may contain merges across any of its characters.
fn tokenize_piece(vocab: &Vocab, text: &str, unk: Option<u32>, out: &mut Vec<u32>) {
    let mut syms: Vec<(usize, usize)> = text
        .char_indices()
        .map(|(i, c)| (i, c.len_utf8()))
        .collect();
    let n = syms.len();
    let mut next: Vec<usize> = (1..=n).collect();
    let mut prev: Vec<Option<usize>> = (0..n).map(|i| i.checked_sub(1)).collect();
    let mut queue = BinaryHeap::new();
    let try_pair =
        |syms: &[(usize, usize)], left: usize, right: usize, queue: &mut BinaryHeap<Bigram>| {
            let (start, llen) = syms[left];
            let size = llen + syms[right].1;
            let Some(id) = text.get(start..start + size).and_then(|t| vocab.id(t)) else {
                return;
            };
            queue.push(Bigram {
                score: vocab.scores.get(id as usize).copied().unwrap_or(0.0),
                left,
                right,
                size,
            });
        };
    for i in 1..n {
        try_pair(&syms, i - 1, i, &mut queue);
    }
    while let Some(b) = queue.pop() {
        let (l, r) = (b.left, b.right);
        if syms[l].1 == 0 || syms[r].1 == 0 || syms[l].1 + syms[r].1 != b.size {
            continue;
        }
        syms[l].1 += syms[r].1;
        syms[r].1 = 0;
        next[l] = next[r];
        if next[l] < n {
            prev[next[l]] = Some(l);
        }
        if let Some(before) = prev[l] {
            try_pair(&syms, before, l, &mut queue);
        }
        if next[l] < n {
            try_pair(&syms, l, next[l], &mut queue);
        }
    }
    for &(start, len) in syms.iter().filter(|s| s.1 > 0) {
        let piece = &text[start..start + len];
        match vocab.id(piece) {
            Some(id) => out.push(id),
            None => out.extend(piece.bytes().filter_map(|b| byte_token(vocab, b).or(unk))),
        }
    }
}

/// The token for a raw byte: `<0xXX>`, else the byte itself as a one-character token.
pub(crate) fn byte_token(vocab: &Vocab, b: u8) -> Option<u32> {
    vocab.id(&format!("<0x{b:02X}>")).or_else(|| {
        b.is_ascii()
            .then(|| vocab.id(char::from(b).encode_utf8(&mut [0u8; 4])))
            .flatten()
    })
}

/// A candidate merge: higher score first, then the leftmost.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}
