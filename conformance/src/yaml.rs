//! YAML source helpers: where each node of a document starts, and serde_yaml errors as
//! (line, column, message) so that messages can lead with `file:line`.

use saphyr_parser::{Event, Parser};

/// The shape of a YAML document with the line (1-based) where every node starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outline {
    pub line: usize,
    body: Body,
}

#[derive(Debug, Clone, PartialEq)]
enum Body {
    Scalar(String),
    Sequence(Vec<Outline>),
    Mapping(Vec<(Key, Outline)>),
    Empty,
}

#[derive(Debug, Clone, PartialEq)]
struct Key {
    text: String,
    line: usize,
}

impl Outline {
    /// Outlines the first document of `text`; an empty text is an empty outline at line 1.
    pub fn parse(text: &str) -> Result<Outline, String> {
        let mut parser = Parser::new_from_str(text);
        let mut stack: Vec<Frame> = Vec::new();
        let mut root = None;
        while let Some(next) = parser.next_event() {
            let (event, span) = next.map_err(|err| err.to_string())?;
            let line = span.start.line();
            let done = match event {
                Event::Scalar(value, ..) => Some(Outline {
                    line,
                    body: Body::Scalar(value.into_owned()),
                }),
                Event::Alias(_) => Some(Outline {
                    line,
                    body: Body::Empty,
                }),
                Event::SequenceStart(..) => {
                    stack.push(Frame::Sequence(line, Vec::new()));
                    None
                }
                Event::MappingStart(..) => {
                    stack.push(Frame::Mapping(line, Vec::new(), None));
                    None
                }
                Event::SequenceEnd | Event::MappingEnd => stack.pop().map(Frame::close),
                Event::DocumentEnd => break,
                _ => None,
            };
            if let Some(node) = done {
                match stack.last_mut() {
                    Some(frame) => frame.push(node),
                    None => {
                        root = Some(node);
                    }
                }
            }
        }
        Ok(root.unwrap_or(Outline {
            line: 1,
            body: Body::Empty,
        }))
    }

    /// The value under `key` when this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&Outline> {
        match &self.body {
            Body::Mapping(entries) => entries.iter().find(|(k, _)| k.text == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The line of `key` itself when this node is a mapping.
    pub fn key_line(&self, key: &str) -> Option<usize> {
        match &self.body {
            Body::Mapping(entries) => entries
                .iter()
                .find(|(k, _)| k.text == key)
                .map(|(k, _)| k.line),
            _ => None,
        }
    }

    /// The items when this node is a sequence; nothing otherwise.
    pub fn items(&self) -> &[Outline] {
        match &self.body {
            Body::Sequence(items) => items,
            _ => &[],
        }
    }
}

enum Frame {
    Sequence(usize, Vec<Outline>),
    Mapping(usize, Vec<(Key, Outline)>, Option<Key>),
}

impl Frame {
    fn push(&mut self, node: Outline) {
        match self {
            Frame::Sequence(_, items) => items.push(node),
            Frame::Mapping(_, entries, pending) => match pending.take() {
                Some(key) => entries.push((key, node)),
                None => {
                    let text = match node.body {
                        Body::Scalar(text) => text,
                        _ => String::new(),
                    };
                    *pending = Some(Key {
                        text,
                        line: node.line,
                    })
                }
            },
        }
    }

    fn close(self) -> Outline {
        match self {
            Frame::Sequence(line, items) => Outline {
                line,
                body: Body::Sequence(items),
            },
            Frame::Mapping(line, entries, _) => Outline {
                line,
                body: Body::Mapping(entries),
            },
        }
    }
}

/// A serde_yaml error split into its position (when it has one) and its bare message.
pub(crate) fn split_error(err: &serde_yaml::Error) -> (Option<(usize, usize)>, String) {
    let text = err.to_string();
    match err.location() {
        Some(loc) => {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            let message = text.strip_suffix(&suffix).unwrap_or(&text).to_string();
            (Some((loc.line(), loc.column())), message)
        }
        None => (None, text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_sequence_items_and_keys() {
        let text = "# header\n- id: a\n  x: 1\n\n- id: b\n  y:\n    - 1\n    - 2\n";
        let outline = Outline::parse(text).unwrap();
        let lines: Vec<_> = outline.items().iter().map(|n| n.line).collect();
        assert_eq!(lines, [2, 5]);
        assert_eq!(outline.items()[1].get("y").unwrap().items()[1].line, 8);
    }

    #[test]
    fn nested_mapping_lookup() {
        let text = "defaults:\n  logits:\n    max_abs: {max: 1}\noverrides:\n  - match: {}\n";
        let outline = Outline::parse(text).unwrap();
        let defaults = outline.get("defaults").unwrap();
        assert_eq!(defaults.get("logits").unwrap().line, 3);
        assert_eq!(defaults.key_line("logits"), Some(2));
        assert_eq!(outline.get("overrides").unwrap().items()[0].line, 5);
    }

    #[test]
    fn empty_text_is_an_empty_outline() {
        let outline = Outline::parse("").unwrap();
        assert!(outline.items().is_empty());
        assert!(outline.get("x").is_none());
    }

    #[test]
    fn serde_error_position_is_split_off() {
        let err = serde_yaml::from_str::<Vec<u32>>("- 1\n- x\n").unwrap_err();
        let (pos, message) = split_error(&err);
        assert_eq!(pos.map(|p| p.0), Some(2));
        assert!(!message.contains("at line"), "{message}");
    }
}
