//! Stop strings: found across token boundaries, never leaked, not even in part.

/// What to do after a piece of text went through the [`StopMatcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// Emit this text (maybe empty) and keep generating.
    Continue(String),
    /// Emit this text, the part before the stop string, and end generation.
    Stop(String),
}

/// Holds back any tail of the output that could still become a stop string.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
    matched: Option<usize>,
}

impl StopMatcher {
    /// A matcher for these stop strings (empty strings are ignored).
    pub fn new(stops: Vec<String>) -> Self {
        Self { stops: stops.into_iter().filter(|s| !s.is_empty()).collect(), held: String::new(), matched: None }
    }

    /// The stop string that ended the text, once [`StopOutcome::Stop`] was returned.
    pub fn matched(&self) -> Option<&str> {
        self.matched.map(|i| self.stops[i].as_str())
    }

    /// Feeds newly decoded text.
    pub fn push(&mut self, text: &str) -> StopOutcome {
        self.held.push_str(text);
        let first = self.stops.iter().enumerate().filter_map(|(i, s)| Some((self.held.find(s.as_str())?, i))).min();
        if let Some((at, i)) = first {
            self.matched = Some(i);
            self.held.truncate(at);
            return StopOutcome::Stop(std::mem::take(&mut self.held));
        }
        let keep = self.stops.iter().map(|s| partial_suffix(&self.held, s)).max().unwrap_or(0);
        let emit = self.held[..self.held.len() - keep].to_string();
        self.held.drain(..self.held.len() - keep);
        StopOutcome::Continue(emit)
    }

    /// Releases the held-back text once generation ended for another reason.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`: what must be held back
/// while `stop` may still follow.
pub fn partial_suffix(text: &str, stop: &str) -> usize {
    (1..stop.len()).rev().find(|&k| stop.is_char_boundary(k) && text.ends_with(&stop[..k])).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = Vec::new();
        for p in pieces {
            match m.push(p) {
                StopOutcome::Continue(t) => out.push(t),
                StopOutcome::Stop(t) => {
                    out.push(t);
                    return (out, true);
                }
            }
        }
        out.push(m.finish());
        (out, false)
    }

    #[test]
    fn holds_back_a_partial_match_then_releases_it() {
        assert_eq!(
            run(&["END"], &["abc E", "N", "d"]),
            (vec!["abc ".into(), "".into(), "ENd".into(), "".into()], false)
        );
    }

    #[test]
    fn stops_across_token_boundaries() {
        assert_eq!(run(&["END"], &["abc E", "N", "Dxyz"]), (vec!["abc ".into(), "".into(), "".into()], true));
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        assert_eq!(run(&["yz", "b"], &["a", "bxyz"]), (vec!["a".into(), "".into()], true));
        let mut m = StopMatcher::new(vec!["yz".into(), "".into(), "b".into()]);
        assert_eq!(m.matched(), None);
        assert_eq!(m.push("abxyz"), StopOutcome::Stop("a".into()));
        assert_eq!(m.matched(), Some("b"));
    }

    #[test]
    fn releases_held_text_at_the_end() {
        assert_eq!(run(&["\n\n"], &["a\n"]), (vec!["a".into(), "\n".into()], false));
    }

    #[test]
    fn multi_byte_stop_strings_are_split_on_char_boundaries() {
        assert_eq!(run(&["é!"], &["café"]), (vec!["caf".into(), "é".into()], false));
        assert_eq!(run(&["é!"], &["café", "!"]), (vec!["caf".into(), "".into()], true));
    }
}
