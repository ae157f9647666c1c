//! A small GPT-2 style byte-level vocabulary.

/// Merges of the byte-level vocabulary, as `left right` pairs of byte-level symbols.
const MERGES: [&str; 8] = ["Ġ t", "h e", "i n", "e r", "Ġ a", "o n", "Ġt he", "r e"];

/// Tokens, merges and special ids of a byte-level vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteLevelVocab {
    /// Token texts: the 256 byte symbols, the merge results, then `bos` and `eos`.
    pub tokens: Vec<String>,
    /// `llama_token_type` of each token (1 normal, 3 control).
    pub token_types: Vec<i32>,
    /// Merges in priority order.
    pub merges: Vec<String>,
    /// Id of the begin-of-text token.
    pub bos: u32,
    /// Id of the end-of-text token.
    pub eos: u32,
}

/// GPT-2's byte-to-symbol map: printable Latin-1 bytes stand for themselves, the others map to
/// U+0100 onwards in byte order.
pub fn byte_symbol(byte: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
    if printable(byte) {
        return char::from(byte);
    }
    let rank = (0..byte).filter(|&b| !printable(b)).count() as u32;
    char::from_u32(256 + rank).expect("U+0100..U+0144 are valid scalar values")
}

/// The vocabulary: 256 byte tokens, 8 merges, `<|begin_of_text|>` and `<|end_of_text|>`.
pub fn byte_level_vocab() -> ByteLevelVocab {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_symbol(b).to_string()).collect();
    tokens.extend(MERGES.iter().map(|m| m.replace(' ', "")));
    let bos = tokens.len() as u32;
    tokens.push("<|begin_of_text|>".into());
    tokens.push("<|end_of_text|>".into());
    let mut token_types = vec![1; tokens.len()];
    token_types[bos as usize] = 3;
    token_types[bos as usize + 1] = 3;
    ByteLevelVocab {
        tokens,
        token_types,
        merges: MERGES.iter().map(|m| m.to_string()).collect(),
        bos,
        eos: bos + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_symbols_are_distinct_and_follow_gpt2() {
        assert_eq!(byte_symbol(b'a'), 'a');
        assert_eq!(byte_symbol(b' '), 'Ġ');
        assert_eq!(byte_symbol(b'\n'), 'Ċ');
        let mut all: Vec<char> = (0..=255u8).map(byte_symbol).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn merge_results_are_tokens() {
        let v = byte_level_vocab();
        for m in &v.merges {
            assert!(v.tokens.contains(&m.replace(' ', "")), "{m}");
        }
        assert_eq!(v.tokens[v.eos as usize], "<|end_of_text|>");
    }
}
