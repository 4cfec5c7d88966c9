//! Incremental server-sent-events parser for OpenAI streams.
//!
//! Body frames arrive at arbitrary byte boundaries: a `data:` line may be split across two frames and one frame may
//! hold several events. [`SseParser`] buffers the unfinished line and emits an event's data only when the blank line
//! that ends it has arrived. Only `data` fields matter to OpenAI streams; comments (`:`), `event`, `id` and `retry`
//! lines are skipped.

/// One complete server-sent event, as far as an OpenAI client cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseEvent {
    /// The event's `data` payload (several `data:` lines joined with `\n`).
    Data(String),
    /// The `data: [DONE]` sentinel that ends an OpenAI stream.
    Done,
}

/// Turns body bytes into [`SseEvent`]s as they arrive.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes after the last complete line; kept as bytes so a UTF-8 sequence split across frames stays intact.
    partial_line: Vec<u8>,
    /// `data` lines of the event being read, not yet ended by a blank line.
    event_data: Option<String>,
}

impl SseParser {
    /// Feeds the next body frame and returns the events it completed, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.partial_line.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut consumed = 0;
        while let Some(newline) = self.partial_line[consumed..].iter().position(|&b| b == b'\n') {
            let line_end = consumed + newline;
            let line = self.partial_line[consumed..line_end]
                .strip_suffix(b"\r")
                .unwrap_or(&self.partial_line[consumed..line_end]);
            let line = String::from_utf8_lossy(line).into_owned();
            consumed = line_end + 1;
            if let Some(event) = self.accept_line(&line) {
                events.push(event);
            }
        }
        self.partial_line.drain(..consumed);
        events
    }

    /// Ends the stream: returns the last event if the body stopped without the blank line that should close it.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let last_line = String::from_utf8_lossy(&std::mem::take(&mut self.partial_line)).into_owned();
        if let Some(event) = self.accept_line(&last_line) {
            return Some(event);
        }
        self.accept_line("")
    }

    fn accept_line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let data = self.event_data.take()?;
            return Some(if data == "[DONE]" { SseEvent::Done } else { SseEvent::Data(data) });
        }
        let value = line.strip_prefix("data:")?;
        let value = value.strip_prefix(' ').unwrap_or(value);
        match &mut self.event_data {
            Some(data) => {
                data.push('\n');
                data.push_str(value);
            }
            None => self.event_data = Some(value.to_owned()),
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_frames(frames: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        let mut events: Vec<SseEvent> = frames.iter().flat_map(|frame| parser.push(frame)).collect();
        events.extend(parser.finish());
        events
    }

    fn data(text: &str) -> SseEvent {
        SseEvent::Data(text.to_owned())
    }

    #[test]
    fn data_line_split_across_two_frames() {
        let events = parse_frames(&[b"data: {\"a\"", b":1}\n\n"]);
        assert_eq!(events, [data("{\"a\":1}")]);
    }

    #[test]
    fn split_inside_the_field_name_and_before_the_blank_line() {
        let events = parse_frames(&[b"da", b"ta: x\n", b"\n", b"data: y\n\ndat", b"a: [DONE]\n\n"]);
        assert_eq!(events, [data("x"), data("y"), SseEvent::Done]);
    }

    #[test]
    fn two_events_in_one_frame_then_done() {
        let events = parse_frames(&[b"data: one\n\ndata: two\n\ndata: [DONE]\n\n"]);
        assert_eq!(events, [data("one"), data("two"), SseEvent::Done]);
    }

    #[test]
    fn every_single_byte_boundary_gives_the_same_events() {
        let stream =
            "data: {\"x\":\"h\u{e9}llo\"}\r\n\r\n: keep-alive\n\nevent: m\ndata: a\ndata: b\n\ndata: [DONE]\n\n";
        let whole = parse_frames(&[stream.as_bytes()]);
        assert_eq!(whole, [data("{\"x\":\"h\u{e9}llo\"}"), data("a\nb"), SseEvent::Done]);
        let bytes: Vec<&[u8]> = stream.as_bytes().chunks(1).collect();
        assert_eq!(parse_frames(&bytes), whole);
    }

    #[test]
    fn data_without_space_and_unterminated_last_event() {
        assert_eq!(parse_frames(&[b"data:tight\n\ndata: tail"]), [data("tight"), data("tail")]);
    }

    #[test]
    fn comments_and_blank_lines_alone_emit_nothing() {
        assert!(parse_frames(&[b": ping\n\n\n\nid: 3\n\n"]).is_empty());
    }
}
