//! When generation ends, and stop strings found in the detokenized text as it streams.

use std::fmt;

/// What ends a generation (besides a full context, which always does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopConditions {
    /// The most tokens to generate.
    pub max_tokens: usize,
    /// Texts that end generation where they first appear; they and anything after them are
    /// left out of the output.
    pub stop_strings: Vec<String>,
    /// Whether an end-of-generation token (EOS, EOT, end-of-turn) ends generation.
    pub stop_at_eog: bool,
}

impl Default for StopConditions {
    /// 128 tokens, no stop strings, stop at end-of-generation tokens.
    fn default() -> Self {
        StopConditions {
            max_tokens: 128,
            stop_strings: Vec::new(),
            stop_at_eog: true,
        }
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    EndOfGeneration {
        /// The token.
        token: u32,
    },
    /// A stop string appeared in the text.
    StopString(String),
    /// `max_tokens` tokens were generated.
    MaxTokens,
    /// The context has no room for another token.
    ContextFull {
        /// The context length.
        n_ctx: usize,
    },
    /// The text callback asked to stop.
    Cancelled,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::EndOfGeneration { token } => {
                write!(f, "end-of-generation token {token}")
            }
            StopReason::StopString(s) => write!(f, "stop string {s:?}"),
            StopReason::MaxTokens => f.write_str("token limit"),
            StopReason::ContextFull { n_ctx } => write!(f, "context full ({n_ctx} tokens)"),
            StopReason::Cancelled => f.write_str("cancelled"),
        }
    }
}

/// The outcome of adding text to a [`StopMatcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scan {
    /// Text that can no longer be part of a stop string.
    Release(String),
    /// A stop string was found: the text before it, and the stop string.
    Stop(String, String),
}

/// Watches streamed text for stop strings. Text that could be the start of a stop string is
/// held back until the next piece decides it, so a stop string split over several tokens is
/// found and none of it is ever released.
#[derive(Debug, Clone)]
pub(crate) struct StopMatcher<'a> {
    stops: &'a [String],
    held: String,
}

impl<'a> StopMatcher<'a> {
    /// A matcher for `stops` (none of them empty).
    pub fn new(stops: &'a [String]) -> Self {
        StopMatcher {
            stops,
            held: String::new(),
        }
    }

    /// Adds a piece of text.
    pub fn push(&mut self, text: &str) -> Scan {
        self.held.push_str(text);
        let first = self
            .stops
            .iter()
            .filter_map(|stop| self.held.find(stop.as_str()).map(|at| (at, stop)))
            .min_by_key(|&(at, _)| at);
        if let Some((at, stop)) = first {
            let mut before = std::mem::take(&mut self.held);
            before.truncate(at);
            return Scan::Stop(before, stop.clone());
        }
        let keep = self.partial_stop_start();
        let rest = self.held.split_off(keep);
        Scan::Release(std::mem::replace(&mut self.held, rest))
    }

    /// The text still held back, released when generation ends for another reason.
    pub fn finish(self) -> String {
        self.held
    }

    /// Where the longest suffix of the held text that begins some stop string starts.
    fn partial_stop_start(&self) -> usize {
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        let from = self.held.len().saturating_sub(longest.saturating_sub(1));
        (from..self.held.len())
            .filter(|&i| self.held.is_char_boundary(i))
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|stop| stop.starts_with(tail))
            })
            .unwrap_or(self.held.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stops(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn text_without_a_stop_prefix_is_released_at_once() {
        let s = stops(&["END"]);
        let mut m = StopMatcher::new(&s);
        assert_eq!(m.push("hello "), Scan::Release("hello ".into()));
        assert_eq!(m.push("wor"), Scan::Release("wor".into()));
        assert_eq!(m.finish(), "");
    }

    #[test]
    fn a_stop_string_over_several_pieces_is_held_then_trimmed() {
        let s = stops(&["<|end|>"]);
        let mut m = StopMatcher::new(&s);
        assert_eq!(m.push("answer <|"), Scan::Release("answer ".into()));
        assert_eq!(m.push("en"), Scan::Release(String::new()));
        assert_eq!(
            m.push("d|> more"),
            Scan::Stop(String::new(), "<|end|>".into())
        );
    }

    #[test]
    fn a_false_start_is_released_when_it_stops_matching() {
        let s = stops(&["STOP"]);
        let mut m = StopMatcher::new(&s);
        assert_eq!(m.push("a ST"), Scan::Release("a ".into()));
        assert_eq!(m.push("ATE"), Scan::Release("STATE".into()));
        assert_eq!(m.push("ST"), Scan::Release(String::new()));
        assert_eq!(m.finish(), "ST");
    }

    #[test]
    fn the_earliest_of_several_stop_strings_wins() {
        let s = stops(&["world", "lo w"]);
        let mut m = StopMatcher::new(&s);
        assert_eq!(
            m.push("hello world"),
            Scan::Stop("hel".into(), "lo w".into())
        );
    }

    #[test]
    fn multibyte_text_is_split_on_character_boundaries() {
        let s = stops(&["é!"]);
        let mut m = StopMatcher::new(&s);
        assert_eq!(m.push("café"), Scan::Release("caf".into()));
        assert_eq!(m.push("s"), Scan::Release("és".into()));
        assert_eq!(m.push("é!x"), Scan::Stop(String::new(), "é!".into()));
    }
}
