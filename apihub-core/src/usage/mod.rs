//! Token usage read from the requests, responses and SSE streams of the three dialects the gateway
//! speaks: OpenAI, Anthropic and Gemini.
//!
//! Every count in [`Usage`] is an `Option`: "not reported" is not zero. Counts are normalized at
//! extraction, so they mean the same thing whatever the dialect:
//! - [`Usage::input_tokens`] counts every prompt token, cache reads and writes included. OpenAI and
//!   Gemini already count cached tokens inside the prompt; Anthropic reports `input_tokens`,
//!   `cache_read_input_tokens` and `cache_creation_input_tokens` apart, and its parser adds them up.
//! - [`Usage::output_tokens`] counts every billed output token, reasoning included. OpenAI and
//!   Anthropic already count reasoning inside the output; Gemini reports `thoughtsTokenCount` apart
//!   from `candidatesTokenCount`, and its parser adds them up.
//!
//! [`pricing::cost`](crate::pricing::cost) relies on this: cache tokens are a part of the input,
//! billed once at their own price.
//!
//! Reading is total: a malformed body or event yields empty counts, never a panic.
//!
//! - [`RequestInfo::read`]: model, `stream`, output cap and a prompt estimate, for reservations.
//! - [`Usage::from_response`]: the usage of a whole (non-streamed) response body.
//! - [`SseParser`] and [`StreamUsage`]: the usage of a streamed response, fed chunk by chunk.
//! - [`openai::include_usage`] and [`openai::is_usage_only_chunk`]: ask an OpenAI upstream for
//!   usage on a stream whose client did not, and hide the extra chunk from that client.
//!
//! ```
//! use apihub_core::usage::{RequestInfo, SseParser, StreamUsage, Usage};
//!
//! let body = br#"{"model":"claude-sonnet-4","max_tokens":1024,"stream":true}"#;
//! let request = RequestInfo::read("/v1/messages", body).unwrap();
//! assert_eq!(request.model.as_deref(), Some("claude-sonnet-4"));
//! assert_eq!((request.stream, request.output_cap), (true, Some(1024)));
//!
//! let body = concat!(
//!     "event: message_start\n",
//!     r#"data: {"type":"message_start","message":{"usage":"#,
//!     r#"{"input_tokens":10,"cache_read_input_tokens":90,"output_tokens":1}}}"#,
//!     "\n\nevent: content_block_delta\n",
//!     r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
//!     "\n\nevent: message_delta\n",
//!     r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":5}}"#,
//!     "\n\n",
//! );
//! let mut parser = SseParser::new();
//! let mut stream = StreamUsage::new(request.endpoint);
//! // Chunks may split anywhere: inside a line, inside a UTF-8 character.
//! for chunk in body.as_bytes().chunks(7) {
//!     for event in parser.push(chunk) {
//!         stream.push(&event);
//!     }
//! }
//! let usage = stream.usage();
//! assert_eq!(usage.input_tokens, Some(100)); // 10 uncached + 90 read from the cache
//! assert_eq!(usage.cache_read_tokens, Some(90));
//! assert_eq!(usage.output_tokens, Some(5));
//! assert!(stream.produced_output());
//! assert_eq!(usage.images, None); // not reported, which is not zero
//! ```

mod endpoint;
mod request;
mod sparse;
mod sse;
mod stream;

pub mod anthropic;
pub mod gemini;
pub mod openai;

pub use endpoint::{Dialect, Endpoint, gemini_model};
pub use request::{BYTES_PER_TOKEN, RequestInfo, estimate_tokens};
pub use sse::{MAX_EVENT_BYTES, SseEvent, SseParser};
pub use stream::StreamUsage;

use serde_json::Value;
use sparse::Keep;

/// The largest count (of tokens, or of images) taken from an upstream's usage report: 10⁹, far
/// above any real call (the largest context windows are a few million tokens) and far below
/// `i64::MAX` (≈ 9.2 × 10¹⁸), so that the charge, a key's `tokens_used` and the usage sums stay
/// representable after billions of calls.
///
/// A larger count (an upstream bug, or an upstream reporting `prompt_tokens` = 2⁶³ − 1) is not
/// believed: [`Usage::clamped`] brings it down to this maximum, and [`Usage::exceeds_limits`]
/// tells the caller to log it.
pub const MAX_REPORTED_TOKENS: u64 = 1_000_000_000;

/// What one call used, as the upstream reported it. `None` means "not reported", not zero.
///
/// Cache tokens are a part of [`input_tokens`](Usage::input_tokens) and reasoning tokens a part of
/// [`output_tokens`](Usage::output_tokens), whatever the dialect (see the [module docs](self)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Usage {
    /// Every prompt token, cache reads and writes included.
    pub input_tokens: Option<u64>,
    /// Every billed output token, reasoning included.
    pub output_tokens: Option<u64>,
    /// Input tokens read from the prompt cache.
    pub cache_read_tokens: Option<u64>,
    /// Input tokens written to the prompt cache.
    pub cache_write_tokens: Option<u64>,
    /// Output tokens spent reasoning (thinking).
    pub reasoning_tokens: Option<u64>,
    /// Images generated.
    pub images: Option<u64>,
}

impl Usage {
    /// The usage reported in a whole response body of `endpoint`; empty when the body is not JSON
    /// or reports nothing.
    ///
    /// A Gemini body may also be the JSON array that `streamGenerateContent` sends without
    /// `?alt=sse`, once read to the end: its last `usageMetadata` counts.
    pub fn from_response(endpoint: Endpoint, body: &[u8]) -> Usage {
        // Only the usage (and an image answer's count of images) is read; the answer itself is
        // skipped unread.
        let fields = match endpoint.dialect() {
            Dialect::OpenAi => &[("usage", Keep::Whole), ("data", Keep::Length)][..],
            Dialect::Anthropic => &[("usage", Keep::Whole)][..],
            Dialect::Gemini => &[("usageMetadata", Keep::Whole)][..],
        };
        let Some(body) = sparse::parse(body, fields) else {
            return Usage::default();
        };
        match endpoint.dialect() {
            Dialect::OpenAi => openai::response_usage(endpoint, &body),
            Dialect::Anthropic => anthropic::response_usage(&body),
            Dialect::Gemini => gemini::response_usage(&body),
        }
    }

    /// Whether nothing at all was reported.
    pub fn is_empty(&self) -> bool {
        *self == Usage::default()
    }

    /// Input plus output tokens, counting unreported ones as zero.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens.unwrap_or(0).saturating_add(self.output_tokens.unwrap_or(0))
    }

    /// Every count, in field order.
    fn counts(&self) -> [Option<u64>; 6] {
        [
            self.input_tokens,
            self.output_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
            self.reasoning_tokens,
            self.images,
        ]
    }

    /// Whether a count is above [`MAX_REPORTED_TOKENS`]: a report not to be believed as it is.
    pub fn exceeds_limits(&self) -> bool {
        self.counts().into_iter().flatten().any(|count| count > MAX_REPORTED_TOKENS)
    }

    /// The usage with each count brought down to at most [`MAX_REPORTED_TOKENS`] (unreported
    /// counts stay unreported). What the gateway bills when an upstream reports more.
    pub fn clamped(self) -> Usage {
        let clamp = |count: Option<u64>| count.map(|count| count.min(MAX_REPORTED_TOKENS));
        let [input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, images] =
            self.counts().map(clamp);
        Usage { input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, images }
    }
}

/// A non-negative integer at `pointer` (object keys only, `/a/b`) in `value`; `None` when absent,
/// negative or not an integer. Walked key by key: `Value::pointer` allocates for every segment.
fn count(value: &Value, pointer: &str) -> Option<u64> {
    let keys = pointer.strip_prefix('/')?.split('/');
    keys.into_iter().try_fold(value, |value, key| value.get(key))?.as_u64()
}

/// The sum of the counts that were reported; `None` when none was.
fn sum_reported(parts: impl IntoIterator<Item = Option<u64>>) -> Option<u64> {
    parts.into_iter().flatten().reduce(u64::saturating_add)
}

/// The `type` of an event's JSON data, or else its SSE event name.
fn event_type<'a>(event: &'a SseEvent, data: &'a Value) -> &'a str {
    data.get("type").and_then(Value::as_str).or(event.event.as_deref()).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` through a parser into a [`StreamUsage`] for `endpoint`.
    pub(crate) fn stream<'a>(endpoint: Endpoint, chunks: impl IntoIterator<Item = &'a [u8]>) -> StreamUsage {
        let mut parser = SseParser::new();
        let mut stream = StreamUsage::new(endpoint);
        for chunk in chunks {
            for event in parser.push(chunk) {
                stream.push(&event);
            }
        }
        if let Some(event) = parser.finish() {
            stream.push(&event);
        }
        stream
    }

    /// Cuts `bytes` into chunks at the given indexes (as proptest draws them), in order.
    pub(crate) fn split<'a>(bytes: &'a [u8], cuts: &[proptest::sample::Index]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::with_capacity(cuts.len() + 1);
        let mut start = 0;
        for cut in cuts {
            chunks.push(&bytes[start..cut]);
            start = cut;
        }
        chunks.push(&bytes[start..]);
        chunks
    }

    #[test]
    fn malformed_bodies_report_nothing() {
        for endpoint in
            [Endpoint::ChatCompletions, Endpoint::Messages, Endpoint::GenerateContent, Endpoint::ImageGenerations]
        {
            for body in
                [&b""[..], b"{", b"null", b"[]", b"42", b"\"usage\"", b"{\"usage\":7}", b"{\"usage\":{\"x\":1}}"]
            {
                assert!(Usage::from_response(endpoint, body).is_empty(), "{endpoint:?} {body:?}");
            }
        }
    }

    #[test]
    fn negative_or_fractional_counts_are_not_reported() {
        let usage = Usage::from_response(
            Endpoint::ChatCompletions,
            br#"{"usage":{"prompt_tokens":-3,"completion_tokens":2.5,"total_tokens":"7"}}"#,
        );
        assert!(usage.is_empty());
    }

    #[test]
    fn absurd_counts_are_clamped_to_the_documented_maximum_and_flagged() {
        let body = br#"{"usage":{"prompt_tokens":9223372036854775807,"completion_tokens":18446744073709551615}}"#;
        let reported = Usage::from_response(Endpoint::ChatCompletions, body);
        assert!(reported.exceeds_limits());
        let clamped = reported.clamped();
        assert_eq!(clamped.input_tokens, Some(MAX_REPORTED_TOKENS));
        assert_eq!(clamped.output_tokens, Some(MAX_REPORTED_TOKENS));
        assert_eq!(clamped.images, None, "an unreported count stays unreported");
        assert!(!clamped.exceeds_limits());
        assert!(i64::try_from(clamped.total_tokens()).is_ok());

        let plausible = Usage { input_tokens: Some(MAX_REPORTED_TOKENS), images: Some(3), ..Usage::default() };
        assert!(!plausible.exceeds_limits());
        assert_eq!(plausible.clamped(), plausible);
    }

    #[test]
    fn total_tokens_counts_unreported_as_zero() {
        assert_eq!(Usage::default().total_tokens(), 0);
        assert_eq!(Usage { input_tokens: Some(3), ..Usage::default() }.total_tokens(), 3);
        assert_eq!(
            Usage { input_tokens: Some(u64::MAX), output_tokens: Some(1), ..Usage::default() }.total_tokens(),
            u64::MAX
        );
    }
}
