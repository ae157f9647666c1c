//! Cutting special tokens out of text before tokenizing, longest token text first.

/// A piece of input: text still to tokenize, or a token already found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

/// Splits every occurrence of each `(id, text)` out of `text`, in the order given.
pub(crate) fn partition<'t>(text: &'t str, specials: &[(u32, &str)]) -> Vec<Fragment<'t>> {
    let mut fragments = Vec::new();
    if !text.is_empty() {
        fragments.push(Fragment::Text(text));
    }
    for &(id, needle) in specials {
        if needle.is_empty() {
            continue;
        }
        let mut next = Vec::with_capacity(fragments.len());
        for fragment in fragments {
            let Fragment::Text(mut rest) = fragment else {
                next.push(fragment);
                continue;
            };
            while let Some(at) = rest.find(needle) {
                if at > 0 {
                    next.push(Fragment::Text(&rest[..at]));
                }
                next.push(Fragment::Token(id));
                rest = &rest[at + needle.len()..];
            }
            if !rest.is_empty() {
                next.push(Fragment::Text(rest));
            }
        }
        fragments = next;
    }
    fragments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_longest_first() {
        let f = partition("a<s>b<s><s>", &[(7, "<s><s>"), (5, "<s>")]);
        assert_eq!(
            f,
            [
                Fragment::Text("a"),
                Fragment::Token(5),
                Fragment::Text("b"),
                Fragment::Token(7)
            ]
        );
    }
}
