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

/// The most bytes of one event an [`SseParser`] holds: the line being read plus the data lines
/// before it in the same event (1 MiB).
///
/// Memory stays bounded whatever the upstream sends: a longer event (one 200 MB `data:` line, or
/// a million short data lines without the blank line that ends an event) is passed over unparsed
/// from the byte that exceeds the limit to the blank line that ends it, and never dispatched; its
/// bytes are counted in [`SseParser::skipped_bytes`], so that the caller knows the stream's usage
/// may be incomplete and bills it by estimate. Real events are far smaller: a token or a usage
/// report is a few hundred bytes.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// Reads events from a byte stream fed in chunks split anywhere: inside a line, between the `\r`
/// and `\n` of a line end, or inside a UTF-8 character.
///
/// Lines end with `\n`, `\r\n` or `\r`; comments (`:` lines) and the `id` and `retry` fields are
/// skipped; a leading byte-order mark is dropped; invalid UTF-8 becomes U+FFFD. An event longer
/// than [`MAX_EVENT_BYTES`] is skipped (see there): the parser never holds more.
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
    /// The line being read went past [`MAX_EVENT_BYTES`]: its bytes are passed over to its end.
    skipping_line: bool,
    /// The event being read went past [`MAX_EVENT_BYTES`]: it is dropped at its end.
    discarding_event: bool,
    /// Bytes passed over unparsed, over the parser's whole life.
    skipped: u64,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a chunk and returns the events it completed, in order.
    pub fn push(&mut self, mut chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while !chunk.is_empty() {
            let (event, read) = self.next_event(chunk);
            events.extend(event);
            chunk = &chunk[read..];
        }
        events
    }

    /// Reads `chunk` up to the end of the first event it completes; returns that event and how many
    /// bytes were read (all of `chunk` when it completed none). A caller that forwards the stream
    /// can so tell which bytes carried which event.
    ///
    /// ```
    /// use apihub_core::usage::SseParser;
    ///
    /// let mut parser = SseParser::new();
    /// let chunk = b"data: 1\r\n\r\ndata: 2\n";
    /// let (event, read) = parser.next_event(chunk);
    /// assert_eq!((event.unwrap().data.as_str(), read), ("1", 11));
    /// assert_eq!(parser.next_event(&chunk[11..]), (None, 8));
    /// ```
    pub fn next_event(&mut self, chunk: &[u8]) -> (Option<SseEvent>, usize) {
        let mut rest = chunk;
        while let Some((&first, after_first)) = rest.split_first() {
            if std::mem::take(&mut self.after_cr) && first == b'\n' {
                rest = after_first;
                continue;
            }
            let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                self.take_line_bytes(rest);
                rest = &[];
                break;
            };
            let (line, terminated) = rest.split_at(end);
            self.take_line_bytes(line);
            self.after_cr = terminated.first() == Some(&b'\r');
            rest = terminated.get(1..).unwrap_or_default();
            let event = if std::mem::take(&mut self.skipping_line) {
                // The rest of an overlong line: it ends here, uninterpreted.
                self.past_first_line = true;
                None
            } else {
                self.end_line()
            };
            if let Some(event) = event {
                // The `\n` of a `\r\n` that ended the event belongs to it, when it is already here.
                if self.after_cr && rest.first() == Some(&b'\n') {
                    self.after_cr = false;
                    rest = &rest[1..];
                }
                return (Some(event), chunk.len() - rest.len());
            }
        }
        (None, chunk.len() - rest.len())
    }

    /// Bytes passed over unparsed since the parser was made (events longer than
    /// [`MAX_EVENT_BYTES`]); 0 when every event was read. [`finish`](Self::finish) keeps the count.
    pub fn skipped_bytes(&self) -> u64 {
        self.skipped
    }

    /// Adds `bytes` to the line being read, or passes over them once the event is too long.
    fn take_line_bytes(&mut self, bytes: &[u8]) {
        if self.skipping_line {
            self.skipped = self.skipped.saturating_add(bytes.len() as u64);
        } else if self.line.len() + self.data.len() + bytes.len() > MAX_EVENT_BYTES {
            // Everything this event held is dropped, its memory freed.
            let held = self.line.len() + self.data.len() + bytes.len();
            self.skipped = self.skipped.saturating_add(held as u64);
            (self.line, self.data) = (Vec::new(), String::new());
            self.skipping_line = true;
            self.discarding_event = true;
        } else {
            self.line.extend_from_slice(bytes);
        }
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
        let event = if self.skipping_line { None } else { self.dispatch() };
        *self = Self { skipped: self.skipped, ..Self::default() };
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
            "data" if self.discarding_event => self.skipped = self.skipped.saturating_add(value.len() as u64 + 1),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            // Comments (empty field name), `id`, `retry` and unknown fields.
            _ => {}
        }
        None
    }

    /// Completes the buffered event, if it has data and was not too long; resets the buffers
    /// either way.
    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        let mut data = std::mem::take(&mut self.data);
        if std::mem::take(&mut self.discarding_event) {
            return None;
        }
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

    #[test]
    fn an_overlong_line_is_skipped_without_being_held_and_the_stream_goes_on() {
        let mut parser = SseParser::new();
        assert_eq!(parser.push(b"data: {\"a\":1}\n\ndata: "), vec![event(None, "{\"a\":1}")]);
        // 8 MiB of one line, fed in 64 KiB chunks: the parser never holds more than the limit.
        let piece = vec![b'x'; 64 << 10];
        for _ in 0..128 {
            assert!(parser.push(&piece).is_empty());
            // What it holds is within the limit; what it allocated, within a doubling of it.
            assert!(parser.line.len() + parser.data.len() <= MAX_EVENT_BYTES);
            assert!(parser.line.capacity() + parser.data.capacity() <= 2 * MAX_EVENT_BYTES);
        }
        assert!(parser.push(b"\ndata: more of the same event\n\n").is_empty(), "the overlong event is dropped");
        let skipped = parser.skipped_bytes();
        assert_eq!(skipped, "data: ".len() as u64 + 128 * (64 << 10) + "more of the same event\n".len() as u64);
        assert_eq!(parser.push(b"data: next\r\n\r\n"), vec![event(None, "next")]);
        assert_eq!(parser.finish(), None);
        assert_eq!(parser.skipped_bytes(), skipped, "finish keeps the count");
    }

    #[test]
    fn many_short_data_lines_cannot_make_an_event_longer_than_the_limit() {
        let mut parser = SseParser::new();
        let line = format!("data: {}\n", "y".repeat(1000));
        for _ in 0..2000 {
            assert!(parser.push(line.as_bytes()).is_empty());
            assert!(parser.data.len() + parser.line.len() <= MAX_EVENT_BYTES);
        }
        assert!(parser.skipped_bytes() > 0);
        assert_eq!(parser.push(b"\ndata: ok\n\n"), vec![event(None, "ok")]);
    }

    #[test]
    fn an_event_just_under_the_limit_is_read() {
        let data = "z".repeat(MAX_EVENT_BYTES - "data: ".len() - 1);
        let wire = format!("data: {data}\n\n");
        assert_eq!(parse_all(&[wire.as_bytes()]), vec![event(None, &data)]);
    }

    #[test]
    fn next_event_tells_which_bytes_carried_each_event() {
        let wire: &[u8] = b": hi\nevent: a\ndata: 1\r\n\r\ndata: 2\n\ndata: 3";
        let mut parser = SseParser::new();
        let (mut rest, mut pieces) = (wire, Vec::new());
        while !rest.is_empty() {
            let (event, read) = parser.next_event(rest);
            pieces.push((event.map(|e| e.data), String::from_utf8_lossy(&rest[..read]).into_owned()));
            rest = &rest[read..];
        }
        let expected = [(Some("1"), ": hi\nevent: a\ndata: 1\r\n\r\n"), (Some("2"), "data: 2\n\n"), (None, "data: 3")];
        let expected: Vec<_> = expected.iter().map(|(e, s)| (e.map(str::to_owned), (*s).to_owned())).collect();
        assert_eq!(pieces, expected);
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
