//! SentencePiece (`tokenizer.ggml.model = "llama"`) as llama.cpp runs it: Llama 2, Mistral, Phi-3, Gemma.
//!
//! The text (spaces already written as U+2581 "▁") starts as one symbol per character. Every adjacent
//! pair whose concatenation is a vocabulary entry is a candidate merge, ranked by that entry's score
//! (`tokenizer.ggml.scores`; ties go to the leftmost pair). The best candidate merges, the merged
//! symbol's new pairs join the queue, and candidates whose symbols changed since are skipped when they
//! come up. A symbol that is no vocabulary entry in the end (a character the vocabulary lacks) becomes
//! one `<0xNN>` byte token per UTF-8 byte, or the unknown token where the vocabulary has no byte tokens.
//! The queue makes this O(n log n) in the characters of the text, so 100k-token prompts stay cheap.
//!
//! A long text is encoded in chunks ([`Spm::cut`]): after a character that ends every vocabulary entry it
//! appears in, no merge can ever join what comes before with what comes after, so the two halves encode
//! to exactly the tokens of the whole.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};

/// The SentencePiece vocabulary: what merges may form and how much each is worth.
#[derive(Debug, Clone)]
pub(crate) struct Spm {
    /// `tokenizer.ggml.scores`, indexed by id (missing scores are 0).
    scores: Vec<f32>,
    /// The id of each byte's `<0xNN>` token, else of the single-character token for an ASCII byte.
    byte_ids: Vec<Option<u32>>,
    /// What a byte with no token becomes.
    unknown: Option<u32>,
    /// Characters that some vocabulary entry has before its last character: a merge may join them to
    /// what follows, so text is never cut right after one.
    joinable: HashSet<char>,
}

/// One symbol: a byte range of the text, linked to its live neighbours.
#[derive(Debug, Clone, Copy)]
struct Symbol {
    start: usize,
    /// Length in bytes; 0 once merged into its left neighbour.
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of `left` with the symbol after it, `len` bytes in all when it was queued.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl Ord for Candidate {
    /// Higher scores first; among equal scores the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

impl Spm {
    /// Reads the byte tokens out of `ids` (the vocabulary's text -> id map).
    pub fn new(ids: &HashMap<String, u32>, scores: Vec<f32>, unknown: Option<u32>) -> Self {
        let byte_ids = (0..=255u8)
            .map(|b| {
                let ascii = char::from(b).is_ascii().then(|| char::from(b).to_string());
                ids.get(&format!("<0x{b:02X}>")).or_else(|| ids.get(&ascii?)).copied()
            })
            .collect();
        let mut joinable = HashSet::new();
        for text in ids.keys() {
            let mut chars = text.chars();
            chars.next_back();
            joinable.extend(chars);
        }
        Self { scores, byte_ids, unknown, joinable }
    }

    /// The first place at or after byte `from` where `text` (spaces not yet escaped) can be cut without
    /// changing its tokens: right after a character no merge joins to the next; `None` if there is none.
    pub fn cut(&self, text: &str, from: usize) -> Option<usize> {
        let from = (from..text.len()).find(|&i| text.is_char_boundary(i))?;
        text[from..].char_indices().map(|(i, c)| (from + i + c.len_utf8(), c)).find_map(|(end, c)| {
            let escaped = if c == ' ' { '\u{2581}' } else { c };
            (end < text.len() && !self.joinable.contains(&escaped)).then_some(end)
        })
    }

    /// Appends the ids of `text`, whose spaces are already escaped as "▁", to `out`.
    pub fn encode(&self, ids: &HashMap<String, u32>, text: &str, out: &mut Vec<u32>) {
        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        for (start, c) in text.char_indices() {
            let index = symbols.len();
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: index.checked_sub(1),
                next: (start + c.len_utf8() < text.len()).then_some(index + 1),
            });
        }
        let mut queue = BinaryHeap::new();
        let candidate = |symbols: &[Symbol], left: Option<usize>, right: Option<usize>| {
            let (left, right) = (left?, right?);
            let len = symbols[left].len + symbols[right].len;
            let id = *ids.get(&text[symbols[left].start..symbols[left].start + len])?;
            Some(Candidate { score: self.score(id), left, right, len })
        };
        for left in 1..symbols.len() {
            queue.extend(candidate(&symbols, Some(left - 1), Some(left)));
        }
        while let Some(Candidate { left, right, len, .. }) = queue.pop() {
            let (l, r) = (symbols[left], symbols[right]);
            if l.len == 0 || r.len == 0 || l.len + r.len != len {
                continue; // one side changed since this pair was queued
            }
            symbols[left].len = len;
            symbols[left].next = r.next;
            symbols[right].len = 0;
            if let Some(next) = r.next {
                symbols[next].prev = Some(left);
            }
            queue.extend(candidate(&symbols, l.prev, Some(left)));
            queue.extend(candidate(&symbols, Some(left), r.next));
        }
        let mut at = (!symbols.is_empty()).then_some(0);
        while let Some(index) = at {
            let symbol = symbols[index];
            let piece = &text[symbol.start..symbol.start + symbol.len];
            match ids.get(piece) {
                Some(&id) => out.push(id),
                None => out.extend(piece.bytes().filter_map(|b| self.byte_ids[b as usize].or(self.unknown))),
            }
            at = symbol.next;
        }
    }

    fn score(&self, id: u32) -> f32 {
        self.scores.get(id as usize).copied().unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vocabulary from `(text, score)` pairs, ids in order.
    fn vocab(entries: &[(&str, f32)]) -> (HashMap<String, u32>, Vec<f32>) {
        let ids = entries.iter().enumerate().map(|(i, (t, _))| (t.to_string(), i as u32)).collect();
        (ids, entries.iter().map(|&(_, s)| s).collect())
    }

    fn encode(entries: &[(&str, f32)], unknown: Option<u32>, text: &str) -> Vec<u32> {
        let (ids, scores) = vocab(entries);
        let spm = Spm::new(&ids, scores, unknown);
        let mut out = Vec::new();
        spm.encode(&ids, text, &mut out);
        out
    }

    #[test]
    fn merges_follow_scores_not_position() {
        // "abc": `bc` outscores `ab`, so it merges first and `ab` never forms.
        let entries = [("a", 0.0), ("b", 0.0), ("c", 0.0), ("ab", -2.0), ("bc", -1.0)];
        assert_eq!(encode(&entries, None, "abc"), [0, 4]);
        let entries = [("a", 0.0), ("b", 0.0), ("c", 0.0), ("ab", -1.0), ("bc", -2.0)];
        assert_eq!(encode(&entries, None, "abc"), [3, 2]);
    }

    #[test]
    fn equal_scores_merge_leftmost_first() {
        let entries = [("a", 0.0), ("aa", -1.0)];
        assert_eq!(encode(&entries, None, "aaa"), [1, 0]);
    }

    #[test]
    fn merged_symbols_merge_again() {
        let entries = [("▁", 0.0), ("h", 0.0), ("i", 0.0), ("hi", -1.0), ("▁hi", -0.5), ("▁hi▁", -3.0)];
        assert_eq!(encode(&entries, None, "▁hi▁"), [5]);
        assert_eq!(encode(&entries, None, "▁hi"), [4]);
    }

    #[test]
    fn missing_characters_fall_back_to_bytes_then_unknown() {
        let mut entries: Vec<(String, f32)> = vec![("<unk>".into(), 0.0), ("a".into(), 0.0)];
        entries.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>"), 0.0)));
        let entries: Vec<(&str, f32)> = entries.iter().map(|(t, s)| (t.as_str(), *s)).collect();
        // "é" is C3 A9: two byte tokens at ids 2 + 0xC3 and 2 + 0xA9.
        assert_eq!(encode(&entries, Some(0), "aé"), [1, 2 + 0xC3, 2 + 0xA9]);
        // Without byte tokens every byte of a missing character is the unknown token.
        assert_eq!(encode(&[("<unk>", 0.0), ("a", 0.0)], Some(0), "éa"), [0, 0, 1]);
        assert_eq!(encode(&[("<unk>", 0.0), ("a", 0.0)], None, "éa"), [1]);
    }

    #[test]
    fn cuts_only_after_characters_that_end_every_entry_and_keep_the_tokens() {
        let entries = [("a", 0.0), ("b", 0.0), ("\n", 0.0), ("▁", 0.0), ("ab", -1.0), ("▁a", -0.5), ("b▁", -2.0)];
        let (ids, scores) = vocab(&entries);
        let spm = Spm::new(&ids, scores, None);
        // `a` and `▁` start entries, `b` ends `ab` but starts `b▁`; only `\n` ends everything it is in.
        assert_eq!(spm.cut("ab ab\nab", 0), Some(6));
        assert_eq!(spm.cut("ab ab\nab", 7), None);
        assert_eq!(spm.cut("ab\n", 0), None, "no cut at the very end");
        let text = "ab a\nb\n\nab ba\n";
        let escaped = |t: &str| t.replace(' ', "▁");
        let mut whole = Vec::new();
        spm.encode(&ids, &escaped(text), &mut whole);
        let (mut pieces, mut start) = (Vec::new(), 0);
        while let Some(end) = spm.cut(text, start + 1) {
            spm.encode(&ids, &escaped(&text[start..end]), &mut pieces);
            start = end;
        }
        spm.encode(&ids, &escaped(&text[start..]), &mut pieces);
        assert_eq!(pieces, whole);
    }

    #[test]
    fn empty_text_gives_no_tokens() {
        assert!(encode(&[("a", 0.0)], None, "").is_empty());
    }
}
