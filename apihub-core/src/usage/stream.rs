//! The usage of a streamed response, accumulated event by event.

use super::anthropic::Reported;
use super::{Endpoint, SseEvent, Usage, anthropic, gemini, openai};

/// Accumulates the usage a streamed response reports, one [`SseEvent`] at a time.
///
/// What each dialect sends, and what is kept:
/// - OpenAI chat and completions: one chunk with a `usage` object near the end (when the request
///   set `stream_options.include_usage`, see [`openai::include_usage`]), then `data: [DONE]`.
/// - OpenAI Responses: `response.usage` in the closing `response.completed` event (or
///   `response.incomplete` / `response.failed`).
/// - Anthropic: `message_start` carries the input and cache counts; `message_delta.usage` is
///   cumulative, so each field keeps its last value and nothing is summed.
/// - Gemini (`streamGenerateContent?alt=sse`): any chunk may carry `usageMetadata`; the last wins.
///
/// Embeddings and image generations are not streamed here: their usage stays empty.
#[derive(Debug, Clone)]
pub struct StreamUsage {
    state: State,
    produced_output: bool,
    output_bytes: u64,
    finished: bool,
}

#[derive(Debug, Clone)]
enum State {
    Chat(Usage),
    Responses(Usage),
    Anthropic(Reported),
    Gemini(Usage),
    NotStreamed,
}

/// What one event showed, besides usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Seen {
    /// The event carried generated content.
    pub(super) output: bool,
    /// Bytes of that content: text, reasoning and tool-call arguments, without the SSE and JSON
    /// wrapping around them.
    pub(super) output_bytes: u64,
    /// The event was the upstream's end-of-stream marker.
    pub(super) finished: bool,
}

/// The length of a JSON string, or 0: how every dialect counts an event's content bytes.
pub(super) fn str_bytes(value: Option<&serde_json::Value>) -> u64 {
    value.and_then(serde_json::Value::as_str).map_or(0, |s| s.len() as u64)
}

impl StreamUsage {
    /// An accumulator for a stream from `endpoint`, before any event.
    pub fn new(endpoint: Endpoint) -> Self {
        let state = match endpoint {
            Endpoint::ChatCompletions | Endpoint::Completions => State::Chat(Usage::default()),
            Endpoint::Responses => State::Responses(Usage::default()),
            Endpoint::Messages => State::Anthropic(Reported::default()),
            Endpoint::GenerateContent | Endpoint::StreamGenerateContent => State::Gemini(Usage::default()),
            Endpoint::Embeddings | Endpoint::ImageGenerations => State::NotStreamed,
        };
        StreamUsage { state, produced_output: false, output_bytes: 0, finished: false }
    }

    /// Takes one event into account. Events that are not JSON, or not understood, are ignored.
    pub fn push(&mut self, event: &SseEvent) {
        let seen = match &mut self.state {
            State::Chat(usage) => openai::push_chat(event, usage),
            State::Responses(usage) => openai::push_responses(event, usage),
            State::Anthropic(reported) => anthropic::push(event, reported),
            State::Gemini(usage) => gemini::push(event, usage),
            State::NotStreamed => Seen::default(),
        };
        self.produced_output |= seen.output;
        self.output_bytes = self.output_bytes.saturating_add(seen.output_bytes);
        self.finished |= seen.finished;
    }

    /// The usage reported so far; empty when the stream reported none.
    pub fn usage(&self) -> Usage {
        match &self.state {
            State::Chat(usage) | State::Responses(usage) | State::Gemini(usage) => *usage,
            State::Anthropic(reported) => reported.usage(),
            State::NotStreamed => Usage::default(),
        }
    }

    /// Whether any content was generated (text, reasoning, a tool call...). A stream that ended
    /// before any output can be charged nothing.
    pub fn produced_output(&self) -> bool {
        self.produced_output
    }

    /// Bytes of generated content seen so far (text, reasoning, tool-call arguments; not the SSE
    /// and JSON around them): what an estimate of output the upstream did not report counts.
    pub fn output_bytes(&self) -> u64 {
        self.output_bytes
    }

    /// Whether the upstream's end-of-stream marker arrived (`[DONE]`, `message_stop`,
    /// `response.completed`, a Gemini `finishReason`...): false for a stream cut short.
    pub fn finished(&self) -> bool {
        self.finished
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{split, stream};
    use super::*;
    use proptest::prelude::*;

    const FIXTURES: [(Endpoint, &[u8]); 6] = [
        (Endpoint::ChatCompletions, include_bytes!("fixtures/openai_chat_stream.sse")),
        (Endpoint::Responses, include_bytes!("fixtures/openai_responses_stream.sse")),
        (Endpoint::Messages, include_bytes!("fixtures/anthropic_messages_stream.sse")),
        (Endpoint::Messages, include_bytes!("fixtures/anthropic_thinking_tool_stream.sse")),
        (Endpoint::StreamGenerateContent, include_bytes!("fixtures/gemini_stream.sse")),
        (Endpoint::Messages, include_bytes!("fixtures/anthropic_overloaded_stream.sse")),
    ];

    fn outcome(stream: &StreamUsage) -> (Usage, bool, bool) {
        (stream.usage(), stream.produced_output(), stream.finished())
    }

    #[test]
    fn one_byte_at_a_time_gives_the_same_result_as_whole() {
        for (endpoint, body) in FIXTURES {
            let whole = outcome(&stream(endpoint, [body]));
            assert!(!whole.0.is_empty(), "{endpoint:?}");
            assert_eq!(outcome(&stream(endpoint, body.chunks(1))), whole, "{endpoint:?}");
        }
    }

    #[test]
    fn output_bytes_count_the_content_not_its_wrapping() {
        let cases: [(Endpoint, &str, u64); 4] = [
            (
                Endpoint::ChatCompletions,
                concat!(
                    "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n",
                    "data: {\"choices\":[{\"delta\":{\"content\":\"lo\",\"reasoning_content\":\"hm\"}}]}\n\n",
                    "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"}}]}}]}\n\n",
                    "data: [DONE]\n\n",
                ),
                3 + 2 + 2 + 1 + 7,
            ),
            (
                Endpoint::Responses,
                "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"abc\"}\n\n",
                3,
            ),
            (
                Endpoint::Messages,
                concat!(
                    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hmm\"}}\n\n",
                    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
                    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"x\\\"\"}}\n\n",
                ),
                3 + 2 + 4,
            ),
            (
                Endpoint::StreamGenerateContent,
                "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hey\"},{\"functionCall\":{\"name\":\"f\",\"args\":{\"a\":1}}}]}}]}\n\n",
                3 + 1 + 7,
            ),
        ];
        for (endpoint, body, expected) in cases {
            let usage = stream(endpoint, [body.as_bytes()]);
            assert!(usage.produced_output(), "{endpoint:?}");
            assert_eq!(usage.output_bytes(), expected, "{endpoint:?}");
            assert_eq!(stream(endpoint, body.as_bytes().chunks(1)).output_bytes(), expected, "{endpoint:?}");
        }
    }

    #[test]
    fn events_not_understood_are_ignored() {
        for endpoint in
            [Endpoint::ChatCompletions, Endpoint::Responses, Endpoint::Messages, Endpoint::StreamGenerateContent]
        {
            let body = b"data: not json\n\ndata: {\"choices\":7,\"usage\":[1]}\n\nevent: message_delta\ndata: []\n\n: ping\n\n";
            assert_eq!(outcome(&stream(endpoint, [&body[..]])), (Usage::default(), false, false), "{endpoint:?}");
        }
    }

    #[test]
    fn endpoints_that_do_not_stream_report_nothing() {
        for endpoint in [Endpoint::Embeddings, Endpoint::ImageGenerations] {
            let out = stream(endpoint, [&include_bytes!("fixtures/openai_chat_stream.sse")[..]]);
            assert_eq!(outcome(&out), (Usage::default(), false, false));
        }
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_result_as_whole(
            fixture in 0..FIXTURES.len(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
        ) {
            let (endpoint, body) = FIXTURES[fixture];
            let chunks = split(body, &cuts);
            prop_assert_eq!(outcome(&stream(endpoint, chunks)), outcome(&stream(endpoint, [body])));
        }
    }
}
