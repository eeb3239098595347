//! An incremental parser for `text/event-stream` bodies, as the WHATWG HTML standard defines them.

use serde_json::Value;

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `None` for the default type (`message`).
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

impl SseEvent {
    /// The data parsed as JSON; `None` when it is not JSON (such as OpenAI's `[DONE]`).
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.data).ok()
    }

    /// The event written back in the wire format, blank line included; [`SseParser`] reads it
    /// back as the same event.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.data.len() + 16);
        if let Some(event) = &self.event {
            out.push_str("event: ");
            out.push_str(event);
            out.push('\n');
        }
        for line in self.data.split('\n') {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
        out
    }
}

/// Reads events from a byte stream fed in chunks split anywhere: inside a line, between the `\r`
/// and `\n` of a line end, or inside a UTF-8 character.
///
/// Lines end with `\n`, `\r\n` or `\r`; comments (`:` lines) and the `id` and `retry` fields are
/// skipped; a leading byte-order mark is dropped; invalid UTF-8 becomes U+FFFD.
///
/// ```
/// use apihub_core::usage::SseParser;
///
/// let mut parser = SseParser::new();
/// assert!(parser.push(b"event: ping\r\ndata: {\"a\"").is_empty());
/// let events = parser.push(b":1}\r\n\r\n: a comment\n");
/// assert_eq!(events.len(), 1);
/// assert_eq!((events[0].event.as_deref(), events[0].data.as_str()), (Some("ping"), "{\"a\":1}"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct SseParser {
    /// Bytes of the line being read, not yet decoded: it may end inside a character.
    line: Vec<u8>,
    /// The last byte seen was a `\r`, so a `\n` right after it ends no further line.
    after_cr: bool,
    /// A first line has been read: a byte-order mark can no longer come.
    past_first_line: bool,
    /// The event type buffer.
    event: String,
    /// The data buffer: each data line followed by `\n`.
    data: String,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a chunk and returns the events it completed, in order.
    pub fn push(&mut self, mut chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while let Some((&first, rest)) = chunk.split_first() {
            if std::mem::take(&mut self.after_cr) && first == b'\n' {
                chunk = rest;
                continue;
            }
            let Some(end) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') else {
                self.line.extend_from_slice(chunk);
                break;
            };
            let (line, terminated) = chunk.split_at(end);
            self.line.extend_from_slice(line);
            self.after_cr = terminated.first() == Some(&b'\r');
            chunk = terminated.get(1..).unwrap_or_default();
            events.extend(self.end_line());
        }
        events
    }

    /// Ends the stream: returns the last event when the stream stopped before the blank line that
    /// should have closed it, and readies the parser for a new stream.
    ///
    /// The standard drops such an event; the gateway keeps it so a last usage report still counts.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if !self.line.is_empty() {
            // A non-empty line never completes an event by itself.
            let _ = self.end_line();
        }
        let event = self.dispatch();
        *self = Self::default();
        event
    }

    /// Interprets the line in `self.line`; an empty line completes an event.
    fn end_line(&mut self) -> Option<SseEvent> {
        let raw = std::mem::take(&mut self.line);
        let mut bytes = raw.as_slice();
        if !std::mem::replace(&mut self.past_first_line, true) {
            bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
        }
        let line = String::from_utf8_lossy(bytes);
        if line.is_empty() {
            return self.dispatch();
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            // Comments (empty field name), `id`, `retry` and unknown fields.
            _ => {}
        }
        None
    }

    /// Completes the buffered event, if it has data; resets the buffers either way.
    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        let mut data = std::mem::take(&mut self.data);
        // An empty buffer means no data line at all; otherwise it ends with the `\n` to drop.
        data.pop()?;
        Some(SseEvent { event: (!event.is_empty()).then_some(event), data })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::split;
    use super::*;
    use proptest::prelude::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut events: Vec<SseEvent> = chunks.iter().flat_map(|chunk| parser.push(chunk)).collect();
        events.extend(parser.finish());
        events
    }

    fn event(name: Option<&str>, data: &str) -> SseEvent {
        SseEvent { event: name.map(str::to_owned), data: data.to_owned() }
    }

    #[test]
    fn fields_follow_the_standard() {
        let stream =
            b"\xEF\xBB\xBFdata: a\ndata:b\ndata\n\nevent:x\nid: 7\nretry: 10\n: comment\nfoo: bar\ndata:  c\r\n\r\n";
        assert_eq!(parse_all(&[stream]), vec![event(None, "a\nb\n"), event(Some("x"), " c")]);
    }

    #[test]
    fn an_event_without_data_is_not_dispatched_and_its_type_is_forgotten() {
        assert_eq!(parse_all(&[b"event: ping\n\ndata: x\n\n"]), vec![event(None, "x")]);
        assert_eq!(parse_all(&[b"\n\n\r\n:keep-alive\n\n"]), vec![]);
    }

    #[test]
    fn every_line_ending_works_even_split_between_cr_and_lf() {
        let expected = vec![event(None, "1"), event(None, "2"), event(None, "3")];
        assert_eq!(parse_all(&[b"data: 1\n\ndata: 2\r\rdata: 3\r\n\r\n"]), expected);
        assert_eq!(parse_all(&[b"data: 1\r", b"\n\r", b"\ndata: 2\r", b"\r", b"data: 3\r\n\r", b"\n"]), expected);
        // A lone CR then LF is one line end; CR, CR is two.
        assert_eq!(parse_all(&[b"data: 1\r", b"\ndata: 2\r", b"\r"]), vec![event(None, "1\n2")]);
    }

    #[test]
    fn a_character_split_across_chunks_is_decoded_whole() {
        let text = "data: héllo 日本 🦀\n\n".as_bytes();
        let chunks: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(parse_all(&chunks), vec![event(None, "héllo 日本 🦀")]);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_refused() {
        assert_eq!(parse_all(&[b"data: a\xFFb\n\n"]), vec![event(None, "a\u{FFFD}b")]);
    }

    #[test]
    fn a_bom_is_dropped_only_at_the_start() {
        assert_eq!(parse_all(&[b"\xEF\xBB", b"\xBFdata: x\n\n"]), vec![event(None, "x")]);
        assert_eq!(parse_all(&[b"data: x\n\n\xEF\xBB\xBFdata: y\n\n"]), vec![event(None, "x")]);
    }

    #[test]
    fn finish_keeps_an_unterminated_last_event() {
        assert_eq!(parse_all(&[b"data: [DONE]"]), vec![event(None, "[DONE]")]);
        assert_eq!(parse_all(&[b"data: a\ndata: b\n"]), vec![event(None, "a\nb")]);
        let mut parser = SseParser::new();
        assert_eq!(parser.finish(), None);
        assert!(parser.push(b"event: x\ndata: 1").is_empty());
        assert_eq!(parser.finish(), Some(event(Some("x"), "1")));
        assert_eq!(parser.push(b"data: 2\n\n"), vec![event(None, "2")]);
    }

    fn arb_event() -> impl Strategy<Value = SseEvent> {
        let name = proptest::option::of("[a-z_.]{1,12}");
        let data = prop::collection::vec("[^\r\n]{0,12}", 1..4).prop_map(|lines| lines.join("\n"));
        (name, data).prop_map(|(event, data)| SseEvent { event, data })
    }

    proptest! {
        #[test]
        fn encode_then_parse_in_any_split_gives_the_events_back(
            events in prop::collection::vec(arb_event(), 0..6),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let wire: Vec<u8> = events.iter().flat_map(|e| e.encode().into_bytes()).collect();
            let chunks = split(&wire, &cuts);
            prop_assert_eq!(parse_all(&chunks), events);
        }

        #[test]
        fn arbitrary_bytes_never_panic(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            let _ = parse_all(&chunks);
        }
    }
}
