//! Turning tokens back into bytes: per-token pieces, whole-sequence decoding with llama.cpp's
//! space clean-up, and a streaming decoder that holds back incomplete UTF-8.

use super::byte_level::char_to_byte;
use super::vocab::TokenType;
use super::{Tokenizer, TokenizerModel};

impl Tokenizer {
    /// The bytes token `id` stands for; control and unknown tokens render only when `special`.
    /// Out-of-range ids and unused tokens give nothing.
    pub fn token_to_piece(&self, id: u32, special: bool) -> Vec<u8> {
        let (Some(text), Some(kind)) = (self.vocab.text(id), self.vocab.token_type(id)) else {
            return Vec::new();
        };
        match kind {
            TokenType::Control | TokenType::Unknown if !special => Vec::new(),
            TokenType::Control | TokenType::Unknown | TokenType::UserDefined => {
                text.as_bytes().to_vec()
            }
            TokenType::Normal => match self.model {
                TokenizerModel::Spm => text.replace('\u{2581}', " ").into_bytes(),
                TokenizerModel::Bpe => byte_level_bytes(text),
            },
            TokenType::Byte if self.model == TokenizerModel::Spm => {
                parse_byte_token(text).map(|b| vec![b]).unwrap_or_default()
            }
            TokenType::Byte | TokenType::Unused | TokenType::Undefined => Vec::new(),
        }
    }

    /// Decodes a sequence to bytes as llama.cpp's detokenizer does: drops the prefix space the
    /// SentencePiece encoder added (but keeps it when `remove_special` drops a leading BOS),
    /// optionally drops the added BOS/EOS, renders control tokens when `unparse_special`, and for
    /// BPE vocabularies tidies spaces before punctuation and contractions.
    pub fn decode_bytes(
        &self,
        ids: &[u32],
        remove_special: bool,
        unparse_special: bool,
    ) -> Vec<u8> {
        let mut ids = ids;
        let mut remove_space = self.add_space_prefix;
        if remove_special && self.add_bos {
            if let (Some(&first), Some(bos)) = (ids.first(), self.special.bos) {
                if first == bos {
                    remove_space = false;
                    ids = &ids[1..];
                }
            }
        }
        if remove_special && self.add_eos {
            if let (Some(&last), Some(eos)) = (ids.last(), self.special.eos) {
                if last == eos {
                    ids = &ids[..ids.len() - 1];
                }
            }
        }
        let mut out = Vec::new();
        for &id in ids {
            let piece = self.token_to_piece(id, unparse_special);
            let skip = usize::from(remove_space && piece.first() == Some(&b' '));
            out.extend_from_slice(&piece[skip..]);
            remove_space = false;
        }
        if self.clean_spaces {
            clean_spaces(&mut out);
        }
        out
    }

    /// [`Tokenizer::decode_bytes`] as text; invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids, remove_special, unparse_special))
            .into_owned()
    }

    /// A decoder for tokens arriving one at a time (rendering control tokens when `special`).
    pub fn stream_decoder(&self, special: bool) -> StreamDecoder<'_> {
        StreamDecoder {
            tokenizer: self,
            special,
            pending: Vec::new(),
            first: true,
        }
    }
}

/// Decodes tokens incrementally: text is released only once its UTF-8 sequences are complete,
/// so a character split across tokens comes out whole.
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    special: bool,
    pending: Vec<u8>,
    first: bool,
}

impl StreamDecoder<'_> {
    /// Adds one token; returns the text that is now complete (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        let piece = self.tokenizer.token_to_piece(id, self.special);
        let skip = usize::from(
            self.first && self.tokenizer.add_space_prefix && piece.first() == Some(&b' '),
        );
        self.first = false;
        self.pending.extend_from_slice(&piece[skip..]);
        let mut out = String::new();
        let mut done = 0;
        loop {
            match std::str::from_utf8(&self.pending[done..]) {
                Ok(s) => {
                    out.push_str(s);
                    done = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.pending[done..done + valid]));
                    done += valid;
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            done += bad;
                        }
                        None => break,
                    }
                }
            }
        }
        self.pending.drain(..done);
        out
    }

    /// Releases whatever is still held back; an incomplete sequence becomes U+FFFD.
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}

/// A byte-level token's bytes; characters outside the byte alphabet are spelled out in a marker.
fn byte_level_bytes(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                let hex: String = c
                    .encode_utf8(&mut buf)
                    .bytes()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                out.extend_from_slice(format!("[UNK_BYTE_0x{hex}{text}]").as_bytes());
            }
        }
    }
    out
}

/// The byte of a `<0xXX>` token.
fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

/// llama.cpp's three clean-up passes over detokenized BPE text, performed in place as it does:
/// drop the space before `? ! . ,`, drop both spaces around a lone `'`, and drop the space before
/// the contractions `'s 'm 're 've`.
fn clean_spaces(text: &mut Vec<u8>) {
    let n = text.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = text[i];
        if text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            total -= 1;
        }
        text[total] = x;
        total += 1;
    }
    let n = total;
    total = usize::from(n > 0);
    let mut i = 1;
    while i < n {
        let x = text[i];
        if x == b'\'' && i + 1 < n && text[i - 1] == b' ' && text[i + 1] == b' ' {
            total -= 1;
            i += 1;
            text[i] = 0;
        }
        text[total] = x;
        total += 1;
        i += 1;
    }
    let n = total;
    total = usize::from(n > 0);
    for i in 1..n {
        let x = text[i];
        if text[i - 1] == b' ' && x == b'\'' && i + 1 < n {
            let x1 = text[i + 1];
            let contraction = match x1 {
                b's' | b'm' => true,
                b't' | b'd' => false,
                _ => i + 2 < n && matches!((x1, text[i + 2]), (b'r', b'e') | (b'v', b'e')),
            };
            if contraction {
                total -= 1;
            }
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_up_passes() {
        let mut t = b"Hello , world ! It 's a ' b ' c we 're".to_vec();
        clean_spaces(&mut t);
        assert_eq!(
            String::from_utf8_lossy(&t),
            "Hello, world! It's a'b'c we're"
        );
    }

    #[test]
    fn byte_tokens() {
        assert_eq!(parse_byte_token("<0x0A>"), Some(10));
        assert_eq!(parse_byte_token("<0xZZ>"), None);
    }
}
