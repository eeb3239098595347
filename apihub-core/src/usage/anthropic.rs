//! Anthropic's dialect: the Messages API.
//!
//! Anthropic reports `input_tokens` *apart from* `cache_read_input_tokens` and
//! `cache_creation_input_tokens`: the three add up to the whole prompt. [`Usage::input_tokens`]
//! is that sum, so that it means the same as in the other dialects and cache tokens are billed
//! once, at their own prices. `output_tokens` already includes extended thinking, which is not
//! reported apart (`reasoning_tokens` stays `None`).
//!
//! In a stream, `message_start` carries the input and cache counts (and an early output count);
//! `message_delta.usage` is cumulative: each field it carries replaces the earlier value.
//!
//! ```
//! use apihub_core::usage::anthropic;
//!
//! let usage = anthropic::usage(&serde_json::json!({
//!     "input_tokens": 12, "cache_read_input_tokens": 2000, "cache_creation_input_tokens": 300, "output_tokens": 80
//! }));
//! assert_eq!(usage.input_tokens, Some(2312));
//! assert_eq!((usage.cache_read_tokens, usage.cache_write_tokens), (Some(2000), Some(300)));
//! ```

use serde_json::Value;

use super::stream::Seen;
use super::{SseEvent, Usage, count, event_type, sum_reported};

/// Reads an Anthropic `usage` object into normalized counts.
pub fn usage(usage: &Value) -> Usage {
    Reported::read(usage).usage()
}

/// Anthropic's counts as reported, before normalization.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Reported {
    input: Option<u64>,
    output: Option<u64>,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
}

impl Reported {
    fn read(usage: &Value) -> Self {
        Reported {
            input: count(usage, "/input_tokens"),
            output: count(usage, "/output_tokens"),
            cache_read: count(usage, "/cache_read_input_tokens"),
            cache_write: count(usage, "/cache_creation_input_tokens"),
        }
    }

    /// Takes a later, cumulative report: each field it carries replaces the earlier value.
    fn update(&mut self, later: Reported) {
        self.input = later.input.or(self.input);
        self.output = later.output.or(self.output);
        self.cache_read = later.cache_read.or(self.cache_read);
        self.cache_write = later.cache_write.or(self.cache_write);
    }

    /// The normalized usage: cache reads and writes counted inside the input.
    pub(super) fn usage(self) -> Usage {
        Usage {
            input_tokens: sum_reported([self.input, self.cache_read, self.cache_write]),
            output_tokens: self.output,
            cache_read_tokens: self.cache_read,
            cache_write_tokens: self.cache_write,
            reasoning_tokens: None,
            images: None,
        }
    }
}

/// The usage of a whole response body.
pub(super) fn response_usage(body: &Value) -> Usage {
    body.get("usage").map(usage).unwrap_or_default()
}

/// One stream event.
pub(super) fn push(event: &SseEvent, reported: &mut Reported) -> Seen {
    let Some(data) = event.json() else {
        return Seen::default();
    };
    let usage = match event_type(event, &data) {
        "message_start" => data.pointer("/message/usage"),
        "message_delta" => data.get("usage"),
        // Text, thinking and tool-input deltas.
        "content_block_delta" => {
            let delta = data.get("delta");
            let field = |name: &str| super::stream::str_bytes(delta.and_then(|d| d.get(name)));
            let output_bytes = field("text") + field("thinking") + field("partial_json");
            return Seen { output: true, output_bytes, finished: false };
        }
        "message_stop" => return Seen { finished: true, ..Seen::default() },
        _ => None,
    };
    if let Some(usage) = usage.filter(|u| u.is_object()) {
        reported.update(Reported::read(usage));
    }
    Seen::default()
}

#[cfg(test)]
mod tests {
    use super::super::tests::stream;
    use super::*;
    use crate::usage::Endpoint;

    #[test]
    fn message_with_cache_reads_and_writes() {
        let usage = Usage::from_response(Endpoint::Messages, include_bytes!("fixtures/anthropic_messages.json"));
        assert_eq!(
            usage,
            Usage {
                input_tokens: Some(14 + 4_987 + 1_523),
                output_tokens: Some(393),
                cache_read_tokens: Some(4_987),
                cache_write_tokens: Some(1_523),
                reasoning_tokens: None,
                images: None,
            }
        );
    }

    #[test]
    fn without_cache_fields_the_input_is_as_reported() {
        let usage = usage(&serde_json::json!({"input_tokens": 25, "output_tokens": 3}));
        assert_eq!(usage, Usage { input_tokens: Some(25), output_tokens: Some(3), ..Usage::default() });
    }

    #[test]
    fn stream_keeps_input_from_message_start_and_output_from_the_last_delta() {
        let out = stream(Endpoint::Messages, [&include_bytes!("fixtures/anthropic_messages_stream.sse")[..]]);
        assert_eq!(
            out.usage(),
            Usage {
                input_tokens: Some(472 + 2_048),
                output_tokens: Some(15),
                cache_read_tokens: Some(2_048),
                cache_write_tokens: Some(0),
                ..Usage::default()
            }
        );
        assert!(out.produced_output());
        assert!(out.finished());
    }

    #[test]
    fn cumulative_deltas_are_not_summed() {
        // Two message_delta events (cumulative: 40 then 121) and fields repeated in the deltas.
        let out = stream(Endpoint::Messages, [&include_bytes!("fixtures/anthropic_thinking_tool_stream.sse")[..]]);
        assert_eq!(
            out.usage(),
            Usage {
                input_tokens: Some(1_320 + 2_195), // uncached + written, nothing read
                output_tokens: Some(121),
                cache_read_tokens: Some(0),
                cache_write_tokens: Some(2_195),
                ..Usage::default()
            }
        );
        assert!(out.produced_output());
        assert!(out.finished());
    }

    #[test]
    fn a_stream_that_fails_before_output_reports_its_input_only() {
        let out = stream(Endpoint::Messages, [&include_bytes!("fixtures/anthropic_overloaded_stream.sse")[..]]);
        assert_eq!(out.usage().input_tokens, Some(3_012));
        assert!(!out.produced_output());
        assert!(!out.finished());
    }
}
