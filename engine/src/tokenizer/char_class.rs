//! Per-code-point flags in llama.cpp's scheme: one general category (or "undefined" for unassigned
//! code points) plus a White_Space bit. Built once from the Unicode tables of `regex-syntax`.

use std::sync::OnceLock;

use regex_syntax::hir::{Class, HirKind};

/// The flags of one code point; the empty value stands for "outside the text being split".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CharFlags(u16);

const UNDEFINED: u16 = 0x0001;
const NUMBER: u16 = 0x0002;
const LETTER: u16 = 0x0004;
const SEPARATOR: u16 = 0x0008;
const MARK: u16 = 0x0010;
const PUNCTUATION: u16 = 0x0020;
const SYMBOL: u16 = 0x0040;
const CONTROL: u16 = 0x0080;
const WHITESPACE: u16 = 0x0100;

/// Unicode classes and the flag each contributes; unassigned code points get `UNDEFINED`.
const CLASSES: [(&str, u16); 10] = [
    (r"\p{L}", LETTER),
    (r"\p{N}", NUMBER),
    (r"\p{Z}", SEPARATOR),
    (r"\p{M}", MARK),
    (r"\p{P}", PUNCTUATION),
    (r"\p{S}", SYMBOL),
    (r"\p{Cc}", CONTROL),
    (r"\p{Cf}", CONTROL),
    (r"\p{Co}", CONTROL),
    (r"\p{White_Space}", WHITESPACE),
];

impl CharFlags {
    /// No flags: a position outside the current segment.
    pub(crate) const NONE: Self = Self(0);

    /// The flags of `c`.
    pub(crate) fn of(c: char) -> Self {
        let t = table();
        if let Some(&f) = t.ascii.get(c as usize) {
            return f;
        }
        let i = t.starts.partition_point(|&s| s <= c as u32);
        t.flags[i.saturating_sub(1)]
    }

    pub(crate) fn is_none(self) -> bool {
        self.0 == 0
    }
    pub(crate) fn is_letter(self) -> bool {
        self.0 & LETTER != 0
    }
    pub(crate) fn is_number(self) -> bool {
        self.0 & NUMBER != 0
    }
    pub(crate) fn is_punctuation(self) -> bool {
        self.0 & PUNCTUATION != 0
    }
    pub(crate) fn is_whitespace(self) -> bool {
        self.0 & WHITESPACE != 0
    }
}

struct FlagTable {
    ascii: [CharFlags; 128],
    /// Sorted range starts; range `i` runs up to `starts[i + 1]`.
    starts: Vec<u32>,
    flags: Vec<CharFlags>,
}

fn table() -> &'static FlagTable {
    static TABLE: OnceLock<FlagTable> = OnceLock::new();
    TABLE.get_or_init(build_table)
}

fn class_ranges(pattern: &str) -> Vec<(u32, u32)> {
    let Ok(hir) = regex_syntax::Parser::new().parse(pattern) else {
        return Vec::new();
    };
    match hir.kind() {
        HirKind::Class(Class::Unicode(class)) => class
            .ranges()
            .iter()
            .map(|r| (r.start() as u32, r.end() as u32))
            .collect(),
        _ => Vec::new(),
    }
}

fn build_table() -> FlagTable {
    let classes: Vec<(Vec<(u32, u32)>, u16)> = CLASSES
        .iter()
        .map(|&(pattern, flag)| (class_ranges(pattern), flag))
        .collect();
    let mut bounds: Vec<u32> = vec![0];
    for (ranges, _) in &classes {
        for &(lo, hi) in ranges {
            bounds.push(lo);
            bounds.push(hi + 1);
        }
    }
    bounds.sort_unstable();
    bounds.dedup();
    let flags_at = |cp: u32| -> u16 {
        let mut f = 0;
        for (ranges, flag) in &classes {
            let i = ranges.partition_point(|&(lo, _)| lo <= cp);
            if i > 0 && ranges[i - 1].1 >= cp {
                f |= flag;
            }
        }
        if f & !WHITESPACE == 0 {
            f |= UNDEFINED;
        }
        f
    };
    let mut starts = Vec::new();
    let mut flags: Vec<CharFlags> = Vec::new();
    for &start in &bounds {
        let f = CharFlags(flags_at(start));
        if flags.last() != Some(&f) {
            starts.push(start);
            flags.push(f);
        }
    }
    let mut ascii = [CharFlags::NONE; 128];
    for (cp, slot) in ascii.iter_mut().enumerate() {
        *slot = CharFlags(flags_at(cp as u32));
    }
    FlagTable {
        ascii,
        starts,
        flags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_match_unicode() {
        assert!(CharFlags::of('a').is_letter());
        assert!(CharFlags::of('ж').is_letter());
        assert!(CharFlags::of('我').is_letter());
        assert!(CharFlags::of('7').is_number());
        assert!(CharFlags::of('½').is_number());
        assert!(CharFlags::of('٣').is_number());
        assert!(CharFlags::of('!').is_punctuation());
        assert!(CharFlags::of('。').is_punctuation());
        assert!(!CharFlags::of('$').is_punctuation());
        for ws in [
            ' ', '\t', '\n', '\r', '\u{0b}', '\u{85}', '\u{a0}', '\u{3000}',
        ] {
            assert!(CharFlags::of(ws).is_whitespace(), "{ws:?}");
        }
        assert!(!CharFlags::of('\u{1c}').is_whitespace());
        let unassigned = CharFlags::of('\u{0378}');
        assert!(!unassigned.is_none() && !unassigned.is_letter());
        assert!(!CharFlags::of('\u{10FFFF}').is_none());
    }
}
