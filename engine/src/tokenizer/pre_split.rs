//! Pre-tokenizers: how byte-level BPE cuts text into words before merging, as llama.cpp does it.
//!
//! llama.cpp runs its hand-written GPT-2 and LLaMA-3 splitters and, for the default pre-tokenizer,
//! a chain of category-based regexes; each stage refines the segments of the previous one.

use super::char_class::CharFlags;
use super::error::TokenizerError;

/// The word-splitting rules selected by `tokenizer.ggml.pre`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// llama.cpp's fallback (key absent or `default`): punctuation runs, the GPT-2 rules, digit
    /// runs, then groups of three ASCII digits.
    Default,
    /// The GPT-2 rules (`gpt-2`).
    Gpt2,
    /// The LLaMA-3 rules (`llama3`, `llama-v3`, `llama-bpe`).
    Llama3,
}

impl PreTokenizer {
    /// Maps a `tokenizer.ggml.pre` value (absent = default).
    pub fn from_name(name: Option<&str>) -> Result<Self, TokenizerError> {
        match name {
            None | Some("default") => Ok(Self::Default),
            Some("gpt-2") => Ok(Self::Gpt2),
            Some("llama3" | "llama-v3" | "llama-bpe") => Ok(Self::Llama3),
            Some(other) => Err(TokenizerError::UnsupportedPreTokenizer {
                pre: other.to_string(),
            }),
        }
    }

    /// Cuts `text` into words; concatenated, the words give back `text`.
    pub fn split(self, text: &str) -> Vec<&str> {
        let chars = Chars::new(text);
        let whole = vec![(0, chars.len())];
        let segments = match self {
            Self::Gpt2 => gpt2(&chars, &whole),
            Self::Llama3 => llama3(&chars, &whole),
            Self::Default => {
                let s = runs(&chars, &whole, is_default_punctuation);
                let s = gpt2(&chars, &s);
                let s = runs(&chars, &s, is_default_digit);
                digit_triples(&chars, &s)
            }
        };
        segments
            .iter()
            .map(|&(s, e)| &text[chars.offsets[s]..chars.offsets[e]])
            .collect()
    }
}

/// The text as code points with their flags and byte offsets (one more offset than code points).
struct Chars {
    chars: Vec<char>,
    flags: Vec<CharFlags>,
    offsets: Vec<usize>,
}

impl Chars {
    fn new(text: &str) -> Self {
        let mut chars = Vec::with_capacity(text.len());
        let mut offsets = Vec::with_capacity(text.len() + 1);
        for (i, c) in text.char_indices() {
            chars.push(c);
            offsets.push(i);
        }
        offsets.push(text.len());
        let flags = chars.iter().map(|&c| CharFlags::of(c)).collect();
        Self {
            chars,
            flags,
            offsets,
        }
    }

    fn len(&self) -> usize {
        self.chars.len()
    }
}

/// Index ranges `[start, end)` of code points.
type Segments = Vec<(usize, usize)>;

/// One segment's view: positions outside it read as absent.
struct Window<'a> {
    chars: &'a Chars,
    start: usize,
    end: usize,
}

impl Window<'_> {
    fn char(&self, pos: usize) -> Option<char> {
        (self.start..self.end)
            .contains(&pos)
            .then(|| self.chars.chars[pos])
    }

    fn flags(&self, pos: usize) -> CharFlags {
        match (self.start..self.end).contains(&pos) {
            true => self.chars.flags[pos],
            false => CharFlags::NONE,
        }
    }

    fn is_other(&self, pos: usize) -> bool {
        let f = self.flags(pos);
        !(f.is_whitespace() || f.is_letter() || f.is_number() || f.is_none())
    }
}

/// Collects the pieces of one segment; each cut ends the piece that began at the previous cut.
struct Cutter<'a> {
    out: &'a mut Segments,
    prev: usize,
}

impl Cutter<'_> {
    fn cut(&mut self, end: usize) {
        if end > self.prev {
            self.out.push((self.prev, end));
        }
        self.prev = end;
    }
}

/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
fn gpt2(chars: &Chars, segments: &Segments) -> Segments {
    let mut out = Vec::with_capacity(segments.len());
    for &(start, end) in segments {
        let w = Window { chars, start, end };
        let mut cutter = Cutter {
            out: &mut out,
            prev: start,
        };
        let mut pos = start;
        while pos < end {
            let c = chars.chars[pos];
            if let Some(len) = contraction(&w, pos, false) {
                pos += len;
                cutter.cut(pos);
                continue;
            }
            let lead = usize::from(c == ' ');
            let f2 = w.flags(pos + lead);
            if f2.is_letter() {
                pos += lead;
                while w.flags(pos).is_letter() {
                    pos += 1;
                }
                cutter.cut(pos);
                continue;
            }
            if f2.is_number() {
                pos += lead;
                while w.flags(pos).is_number() {
                    pos += 1;
                }
                cutter.cut(pos);
                continue;
            }
            if w.is_other(pos + lead) {
                pos += lead;
                while w.is_other(pos) {
                    pos += 1;
                }
                cutter.cut(pos);
                continue;
            }
            pos = whitespace_end(&w, pos);
            cutter.cut(pos);
        }
    }
    out
}

/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
fn llama3(chars: &Chars, segments: &Segments) -> Segments {
    let is_newline = |c: Option<char>| matches!(c, Some('\r' | '\n'));
    let mut out = Vec::with_capacity(segments.len());
    for &(start, end) in segments {
        let w = Window { chars, start, end };
        let mut cutter = Cutter {
            out: &mut out,
            prev: start,
        };
        let mut pos = start;
        while pos < end {
            let c = chars.chars[pos];
            let f = chars.flags[pos];
            if let Some(len) = contraction(&w, pos, true) {
                pos += len;
                cutter.cut(pos);
                continue;
            }
            if !(c == '\r' || c == '\n' || f.is_number())
                && (f.is_letter() || w.flags(pos + 1).is_letter())
            {
                pos += 1;
                while w.flags(pos).is_letter() {
                    pos += 1;
                }
                cutter.cut(pos);
                continue;
            }
            if f.is_number() {
                let mut group = pos;
                while w.flags(pos).is_number() {
                    pos += 1;
                    if pos - group >= 3 {
                        cutter.cut(pos);
                        group = pos;
                    }
                }
                cutter.cut(pos);
                continue;
            }
            let lead = usize::from(c == ' ');
            let f2 = w.flags(pos + lead);
            if !(f2.is_whitespace() || f2.is_letter() || f2.is_number() || f.is_none()) {
                pos += lead;
                while w.is_other(pos) {
                    pos += 1;
                }
                while is_newline(w.char(pos)) {
                    pos += 1;
                }
                cutter.cut(pos);
                continue;
            }
            let mut n = 0;
            let mut after_last_newline = None;
            while w.flags(pos + n).is_whitespace() {
                if is_newline(w.char(pos + n)) {
                    after_last_newline = Some(pos + n + 1);
                }
                n += 1;
            }
            pos = match after_last_newline {
                Some(p) => p,
                None => whitespace_end(&w, pos),
            };
            cutter.cut(pos);
        }
    }
    out
}

/// Length of an English contraction (`'s`, `'re`, …) at `pos`, if one starts there.
fn contraction(w: &Window<'_>, pos: usize, any_case: bool) -> Option<usize> {
    if w.char(pos) != Some('\'') {
        return None;
    }
    let at = |p: usize| {
        w.char(p)
            .map(|c| if any_case { c.to_ascii_lowercase() } else { c })
    };
    let next = at(pos + 1)?;
    if matches!(next, 's' | 't' | 'm' | 'd') {
        return Some(2);
    }
    match (next, at(pos + 2)?) {
        ('r', 'e') | ('v', 'e') | ('l', 'l') => Some(3),
        _ => None,
    }
}

/// `\s+(?!\S)|\s+`, or a single code point when no whitespace starts at `pos`.
fn whitespace_end(w: &Window<'_>, pos: usize) -> usize {
    let mut n = 0;
    while w.flags(pos + n).is_whitespace() {
        n += 1;
    }
    match n {
        0 => pos + 1,
        1 => pos + 1,
        _ if w.char(pos + n).is_some() => pos + n - 1,
        _ => pos + n,
    }
}

/// `[\p{P}\$\+<=>\^~\|]+` as llama.cpp evaluates it: ASCII by the listed set, others by category.
fn is_default_punctuation(c: char, f: CharFlags) -> bool {
    match c.is_ascii() {
        true => matches!(
            c,
            '!'..='#' | '%'..='*' | ','..='/' | ':'..=';' | '?'..='@' | '['..=']' | '_' | '{' | '}'
                | '$' | '+' | '<' | '=' | '>' | '^' | '~' | '|'
        ),
        false => !f.is_whitespace() && f.is_punctuation(),
    }
}

/// `\p{N}+` as llama.cpp evaluates it: ASCII digits, other code points by category.
fn is_default_digit(c: char, f: CharFlags) -> bool {
    match c.is_ascii() {
        true => c.is_ascii_digit(),
        false => !f.is_whitespace() && f.is_number(),
    }
}

/// Splits every segment into maximal runs of code points that do and do not satisfy `pred`.
fn runs(chars: &Chars, segments: &Segments, pred: fn(char, CharFlags) -> bool) -> Segments {
    let mut out = Vec::with_capacity(segments.len());
    for &(start, end) in segments {
        let mut run_start = start;
        for pos in start + 1..end {
            let here = pred(chars.chars[pos], chars.flags[pos]);
            let before = pred(chars.chars[pos - 1], chars.flags[pos - 1]);
            if here != before {
                out.push((run_start, pos));
                run_start = pos;
            }
        }
        if run_start < end {
            out.push((run_start, end));
        }
    }
    out
}

/// `[0-9][0-9][0-9]`: cuts out leftmost, non-overlapping groups of three ASCII digits.
fn digit_triples(chars: &Chars, segments: &Segments) -> Segments {
    let mut out = Vec::with_capacity(segments.len());
    for &(start, end) in segments {
        let mut cutter = Cutter {
            out: &mut out,
            prev: start,
        };
        let mut pos = start;
        while pos + 3 <= end {
            if chars.chars[pos..pos + 3].iter().all(char::is_ascii_digit) {
                cutter.cut(pos);
                cutter.cut(pos + 3);
                pos += 3;
            } else {
                pos += 1;
            }
        }
        cutter.cut(end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_words() {
        let words = PreTokenizer::Gpt2.split("Hello world's  3.14\n\n  x");
        assert_eq!(
            words,
            ["Hello", " world", "'s", " ", " 3", ".", "14", "\n\n ", " x"]
        );
    }

    #[test]
    fn llama3_words() {
        let words = PreTokenizer::Llama3.split("I'VE 12345 ok!\n\nyes");
        assert_eq!(words, ["I", "'VE", " ", "123", "45", " ok", "!\n\n", "yes"]);
    }

    #[test]
    fn default_words() {
        let words = PreTokenizer::Default.split("a+b 1234567 don't");
        assert_eq!(
            words,
            ["a", "+", "b", " ", "123", "456", "7", " don", "'", "t"]
        );
    }

    #[test]
    fn unknown_name_is_an_error() {
        let e = PreTokenizer::from_name(Some("qwen2")).unwrap_err();
        assert!(e.to_string().contains("tokenizer.ggml.pre"));
    }
}
