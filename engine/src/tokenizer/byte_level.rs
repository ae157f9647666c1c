//! The GPT-2 byte-level alphabet: every byte gets a printable code point so that BPE tokens are text.

use std::sync::OnceLock;

/// Code points below this bound may stand for a byte.
const MAPPED_LIMIT: usize = 0x144;

struct ByteAlphabet {
    to_char: [char; 256],
    to_byte: [Option<u8>; MAPPED_LIMIT],
}

fn alphabet() -> &'static ByteAlphabet {
    static ALPHABET: OnceLock<ByteAlphabet> = OnceLock::new();
    ALPHABET.get_or_init(|| {
        let printable = |b: u8| matches!(b, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff);
        let mut to_char = ['\0'; 256];
        let mut to_byte = [None; MAPPED_LIMIT];
        let mut next_spare = 256u32;
        for b in 0..=255u8 {
            let cp = if printable(b) {
                u32::from(b)
            } else {
                next_spare += 1;
                next_spare - 1
            };
            let c = char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER);
            to_char[usize::from(b)] = c;
            if let Some(slot) = to_byte.get_mut(cp as usize) {
                *slot = Some(b);
            }
        }
        ByteAlphabet { to_char, to_byte }
    })
}

/// Appends the byte-level spelling of `bytes` to `out`.
pub(crate) fn encode_bytes(bytes: &[u8], out: &mut String) {
    let a = alphabet();
    out.extend(bytes.iter().map(|&b| a.to_char[usize::from(b)]));
}

/// The byte a byte-level character stands for, if any.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    alphabet().to_byte.get(c as usize).copied().flatten()
}

/// The byte-level character that stands for `b`.
pub fn byte_to_char(b: u8) -> char {
    alphabet().to_char[usize::from(b)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips() {
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
        assert_eq!(byte_to_char(b' '), '\u{120}');
        assert_eq!(byte_to_char(b'\n'), '\u{10a}');
        assert_eq!(byte_to_char(b'A'), 'A');
    }
}
