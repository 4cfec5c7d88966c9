//! Splitting text at special tokens before the vocabulary's own algorithm sees it.
//!
//! Control, unknown and user-defined tokens are matched as whole pieces of text, the way llama.cpp's
//! `tokenizer_st_partition` does: the longest token first, each claiming every occurrence left to right
//! in the text no longer token already claimed. A scan over a byte trie first finds which of them occur
//! at all, so a vocabulary with thousands of control tokens (Gemma has 6249) costs a pass over the text,
//! not one per token.

use std::ops::Range;

/// One token matched as a whole piece of text.
#[derive(Debug, Clone)]
pub(crate) struct Special {
    /// The token id.
    pub id: u32,
    /// The exact text that stands for it.
    pub text: String,
    /// A control (or unknown) token: matched only where the caller allows control tokens.
    pub control: bool,
    /// Whitespace right before the token is dropped (llama.cpp's `LSTRIP` attribute).
    pub lstrip: bool,
    /// Whitespace right after the token is dropped (llama.cpp's `RSTRIP` attribute).
    pub rstrip: bool,
}

/// A piece of partitioned text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Text for the vocabulary's algorithm.
    Text(Range<usize>),
    /// A special token.
    Token(u32),
}

/// Which control-token occurrences a caller accepts.
#[derive(Clone, Copy)]
pub(crate) enum Control<'a> {
    /// None: control-token text stays text (user input).
    Never,
    /// All of them (trusted text).
    Always,
    /// Those that overlap none of these byte ranges (a rendered prompt's message content).
    Outside(&'a [Range<usize>]),
}

impl Control<'_> {
    fn allows(&self, range: &Range<usize>) -> bool {
        match self {
            Self::Never => false,
            Self::Always => true,
            Self::Outside(spans) => !spans.iter().any(|s| s.start < range.end && range.start < s.end),
        }
    }
}

/// All special tokens of a vocabulary, in the order they claim text.
#[derive(Debug, Clone, Default)]
pub(crate) struct Specials {
    /// Longest text first; equal lengths by id.
    tokens: Vec<Special>,
    /// Byte trie over the token texts: `nodes[0]` is the root.
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// `(byte, child)`, sorted by byte.
    children: Vec<(u8, u32)>,
    /// Index into `tokens` of the token that ends here.
    token: Option<u32>,
}

impl Specials {
    /// Indexes `tokens` (texts must be non-empty).
    pub fn new(mut tokens: Vec<Special>) -> Self {
        tokens.retain(|t| !t.text.is_empty());
        tokens.sort_by(|a, b| b.text.len().cmp(&a.text.len()).then(a.id.cmp(&b.id)));
        let mut nodes = vec![Node::default()];
        for (index, token) in tokens.iter().enumerate() {
            let mut at = 0usize;
            for &byte in token.text.as_bytes() {
                at = match nodes[at].children.binary_search_by_key(&byte, |&(b, _)| b) {
                    Ok(i) => nodes[at].children[i].1 as usize,
                    Err(i) => {
                        nodes.push(Node::default());
                        let child = nodes.len() - 1;
                        nodes[at].children.insert(i, (byte, child as u32));
                        child
                    }
                };
            }
            // Two tokens with the same text: the first one (longest-first order, then by id) wins.
            nodes[at].token.get_or_insert(index as u32);
        }
        Self { tokens, nodes }
    }

    /// Splits `text` into special tokens and the text between them.
    pub fn split(&self, text: &str, control: Control<'_>) -> Vec<Piece> {
        if text.is_empty() {
            return Vec::new();
        }
        let mut pieces = vec![Piece::Text(0..text.len())];
        for token in self.occurring(text, control) {
            pieces = self.claim(text, pieces, token, control);
        }
        pieces
    }

    /// The tokens whose text occurs in `text` and that `control` may accept, in claiming order.
    fn occurring(&self, text: &str, control: Control<'_>) -> Vec<&Special> {
        let bytes = text.as_bytes();
        let mut found = vec![false; self.tokens.len()];
        for start in 0..bytes.len() {
            let mut at = 0usize;
            for &byte in &bytes[start..] {
                match self.nodes[at].children.binary_search_by_key(&byte, |&(b, _)| b) {
                    Ok(i) => at = self.nodes[at].children[i].1 as usize,
                    Err(_) => break,
                }
                if let Some(index) = self.nodes[at].token {
                    found[index as usize] = true;
                }
            }
        }
        let never = matches!(control, Control::Never);
        self.tokens.iter().zip(found).filter(|(t, f)| *f && !(never && t.control)).map(|(t, _)| t).collect()
    }

    /// Lets `token` claim its occurrences in the text pieces of `pieces`.
    fn claim(&self, text: &str, pieces: Vec<Piece>, token: &Special, control: Control<'_>) -> Vec<Piece> {
        let mut out = Vec::with_capacity(pieces.len());
        for piece in pieces {
            let Piece::Text(range) = piece else {
                out.push(piece);
                continue;
            };
            let (mut start, mut from) = (range.start, range.start);
            while let Some(offset) = text[from..range.end].find(token.text.as_str()) {
                let found = from + offset..from + offset + token.text.len();
                if token.control && !control.allows(&found) {
                    from = found.start + text[found.start..].chars().next().map_or(1, char::len_utf8);
                    continue;
                }
                let mut left = start..found.start;
                if token.lstrip {
                    left.end = start + text[left.clone()].trim_end_matches(is_c_space).len();
                }
                if !left.is_empty() {
                    out.push(Piece::Text(left));
                }
                out.push(Piece::Token(token.id));
                start = found.end;
                if token.rstrip {
                    start = range.end - text[start..range.end].trim_start_matches(is_c_space).len();
                }
                from = start;
            }
            if start < range.end {
                out.push(Piece::Text(start..range.end));
            }
        }
        out
    }
}

/// C's `isspace` in the "C" locale, which llama.cpp's strip attributes use.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0B' | '\x0C' | '\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn special(id: u32, text: &str, control: bool) -> Special {
        Special { id, text: text.into(), control, lstrip: false, rstrip: false }
    }

    /// One content span (a literal `[a..b]` reads like a mistake to clippy).
    fn spans(start: usize, end: usize) -> Vec<Range<usize>> {
        let span = start..end;
        vec![span]
    }

    fn show(text: &str, pieces: &[Piece]) -> String {
        let show = |p: &Piece| match p {
            Piece::Text(r) => format!("{:?}", &text[r.clone()]),
            Piece::Token(id) => format!("#{id}"),
        };
        pieces.iter().map(show).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn control_tokens_only_where_allowed_and_user_defined_always() {
        let s = Specials::new(vec![special(1, "<c>", true), special(2, "<u>", false)]);
        let text = "a<c>b<u>c";
        assert_eq!(show(text, &s.split(text, Control::Always)), r#""a" #1 "b" #2 "c""#);
        assert_eq!(show(text, &s.split(text, Control::Never)), r#""a<c>b" #2 "c""#);
        assert_eq!(show(text, &s.split(text, Control::Outside(&spans(0, 3)))), r#""a<c>b" #2 "c""#);
        assert_eq!(show(text, &s.split(text, Control::Outside(&spans(5, 6)))), r#""a" #1 "b" #2 "c""#);
    }

    #[test]
    fn longer_tokens_claim_text_first_even_to_the_right() {
        // llama.cpp's order: `bcd` claims before `ab`, although `ab` starts further left.
        let s = Specials::new(vec![special(1, "ab", true), special(2, "bcd", true)]);
        assert_eq!(show("abcd", &s.split("abcd", Control::Always)), r#""a" #2"#);
        assert_eq!(show("ab ab", &s.split("ab ab", Control::Always)), r#"#1 " " #1"#);
    }

    #[test]
    fn strip_attributes_drop_neighbouring_whitespace() {
        let mut end = special(1, "<e>", true);
        end.rstrip = true;
        let mut start = special(2, "<s>", true);
        start.lstrip = true;
        let s = Specials::new(vec![end, start]);
        let text = "a  <s>b<e> \n c";
        assert_eq!(show(text, &s.split(text, Control::Always)), r#""a" #2 "b" #1 "c""#);
    }
}
