//! OpenAI's dialect: chat and legacy completions, embeddings, the Responses API, image generation.
//!
//! The `usage` object comes in two spellings, both read by one parser: chat, completions and
//! embeddings say `prompt_tokens` / `completion_tokens` with `prompt_tokens_details.cached_tokens`
//! and `completion_tokens_details.reasoning_tokens`; the Responses API and `gpt-image-1` say
//! `input_tokens` / `output_tokens` with `input_tokens_details` and `output_tokens_details`. Both
//! count cached tokens inside the prompt and reasoning tokens inside the output, as [`Usage`] does.
//! DeepSeek's `prompt_cache_hit_tokens` is read as the cached count when no other is given.
//!
//! A streamed chat completion reports usage only when the request sets
//! `stream_options.include_usage`. [`include_usage`] sets it, and [`is_usage_only_chunk`] finds
//! the extra chunk it makes the upstream send, to hide it from a client that did not ask:
//!
//! ```
//! use apihub_core::usage::SseEvent;
//! use apihub_core::usage::openai::{include_usage, is_usage_only_chunk};
//!
//! let request = include_usage(br#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#);
//! assert!(request.added);
//! let sent: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
//! assert_eq!(sent["stream_options"]["include_usage"], true);
//!
//! let data = r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3}}"#;
//! let last = SseEvent { event: None, data: data.into() };
//! assert!(is_usage_only_chunk(&last));
//! ```

use std::borrow::Cow;

use serde_json::Value;

use super::stream::{Seen, str_bytes};
use super::{Endpoint, SseEvent, Usage, count, event_type};

/// Reads an OpenAI `usage` object, in either spelling.
pub fn usage(usage: &Value) -> Usage {
    let either = |a: &str, b: &str| count(usage, a).or_else(|| count(usage, b));
    Usage {
        input_tokens: either("/prompt_tokens", "/input_tokens"),
        output_tokens: either("/completion_tokens", "/output_tokens"),
        cache_read_tokens: either("/prompt_tokens_details/cached_tokens", "/input_tokens_details/cached_tokens")
            .or_else(|| count(usage, "/prompt_cache_hit_tokens")),
        cache_write_tokens: None,
        reasoning_tokens: either(
            "/completion_tokens_details/reasoning_tokens",
            "/output_tokens_details/reasoning_tokens",
        ),
        images: None,
    }
}

/// The usage of a whole response body; for image generations, `images` counts the `data` entries.
pub(super) fn response_usage(endpoint: Endpoint, body: &Value) -> Usage {
    let mut reported = body.get("usage").map(usage).unwrap_or_default();
    if endpoint == Endpoint::ImageGenerations {
        reported.images = body.get("data").and_then(Value::as_array).and_then(|data| u64::try_from(data.len()).ok());
    }
    reported
}

/// One chat or completions chunk: a `usage` object replaces the previous one.
pub(super) fn push_chat(event: &SseEvent, reported: &mut Usage) -> Seen {
    if event.data.trim() == "[DONE]" {
        return Seen { finished: true, ..Seen::default() };
    }
    let Some(chunk) = event.json() else {
        return Seen::default();
    };
    if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
        *reported = usage(u);
    }
    let choices = chunk.get("choices").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    Seen {
        output: choices.iter().any(choice_has_output),
        output_bytes: choices.iter().map(choice_output_bytes).sum(),
        finished: false,
    }
}

/// Bytes of content in a streamed choice: its text, reasoning and refusal, and its tool calls'
/// names and arguments.
fn choice_output_bytes(choice: &Value) -> u64 {
    let Some(delta) = choice.get("delta") else {
        return str_bytes(choice.get("text")); // legacy completions
    };
    let text: u64 =
        ["content", "refusal", "reasoning_content", "reasoning"].iter().map(|f| str_bytes(delta.get(f))).sum();
    let calls = delta.get("tool_calls").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let call_bytes =
        |function: Option<&Value>| function.map_or(0, |f| str_bytes(f.get("name")) + str_bytes(f.get("arguments")));
    text + calls.iter().map(|call| call_bytes(call.get("function"))).sum::<u64>()
        + call_bytes(delta.get("function_call"))
}

/// Whether a streamed choice carries content: text, reasoning, a refusal, a tool call or audio.
fn choice_has_output(choice: &Value) -> bool {
    let text = |value: Option<&Value>| value.and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    let Some(delta) = choice.get("delta") else {
        return text(choice.get("text")); // legacy completions
    };
    ["content", "refusal", "reasoning_content", "reasoning"].iter().any(|field| text(delta.get(field)))
        || delta.get("tool_calls").and_then(Value::as_array).is_some_and(|calls| !calls.is_empty())
        || delta.get("function_call").is_some_and(Value::is_object)
        || delta.get("audio").is_some_and(Value::is_object)
}

/// One Responses API event: the closing event's `response.usage` is the usage.
pub(super) fn push_responses(event: &SseEvent, reported: &mut Usage) -> Seen {
    let Some(data) = event.json() else {
        return Seen::default();
    };
    match event_type(event, &data) {
        "response.completed" | "response.incomplete" | "response.failed" => {
            if let Some(u) = data.pointer("/response/usage").filter(|u| u.is_object()) {
                *reported = usage(u);
            }
            Seen { finished: true, ..Seen::default() }
        }
        // Text, reasoning, refusals, function-call arguments and audio all arrive as deltas.
        kind if kind.starts_with("response.") && kind.ends_with(".delta") => {
            Seen { output: true, output_bytes: str_bytes(data.get("delta")), finished: false }
        }
        _ => Seen::default(),
    }
}

/// A request body to send upstream, from [`include_usage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncludeUsage<'a> {
    /// The body to send: the client's, with `stream_options.include_usage` set when `added`.
    pub body: Cow<'a, [u8]>,
    /// The gateway set `include_usage` because the client did not: the usage-only chunk at the
    /// end of the stream (see [`is_usage_only_chunk`]) must not reach the client.
    pub added: bool,
}

/// Sets `stream_options.include_usage` on a streamed chat or completions request.
///
/// The body is left as it is when the request does not stream (OpenAI refuses `stream_options`
/// then), already asks for usage, or is not a JSON object. When `stream_options` is absent, the
/// field is spliced in after the opening brace and every other byte is kept as the client sent it.
pub fn include_usage(body: &[u8]) -> IncludeUsage<'_> {
    let unchanged = IncludeUsage { body: Cow::Borrowed(body), added: false };
    let Ok(Value::Object(mut request)) = serde_json::from_slice::<Value>(body) else {
        return unchanged;
    };
    if request.get("stream").and_then(Value::as_bool) != Some(true) {
        return unchanged;
    }
    match request.get("stream_options") {
        None => {
            // The body parsed as an object, so its first non-blank byte is this brace.
            let Some(brace) = body.iter().position(|&b| b == b'{') else {
                return unchanged;
            };
            let (head, tail) = body.split_at(brace + 1);
            let body = [head, br#""stream_options":{"include_usage":true},"#, tail].concat();
            IncludeUsage { body: Cow::Owned(body), added: true }
        }
        Some(Value::Object(options)) if options.get("include_usage") == Some(&Value::Bool(true)) => unchanged,
        Some(Value::Object(_) | Value::Null) => {
            let mut options = match request.remove("stream_options") {
                Some(Value::Object(options)) => options,
                _ => serde_json::Map::new(),
            };
            options.insert("include_usage".to_owned(), Value::Bool(true));
            request.insert("stream_options".to_owned(), Value::Object(options));
            match serde_json::to_vec(&request) {
                Ok(body) => IncludeUsage { body: Cow::Owned(body), added: true },
                Err(_) => unchanged,
            }
        }
        // Not an object: the upstream will refuse it as it stands.
        Some(_) => unchanged,
    }
}

/// Whether a streamed chat chunk is the usage-only one that `include_usage` adds: `choices`
/// empty and `usage` present.
pub fn is_usage_only_chunk(event: &SseEvent) -> bool {
    event.json().is_some_and(|chunk| {
        chunk.get("choices").and_then(Value::as_array).is_some_and(Vec::is_empty)
            && chunk.get("usage").is_some_and(Value::is_object)
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::stream;
    use super::*;
    use crate::usage::SseParser;

    fn from(endpoint: Endpoint, body: &[u8]) -> Usage {
        Usage::from_response(endpoint, body)
    }

    #[test]
    fn chat_completion_with_cache_and_reasoning() {
        let usage = from(Endpoint::ChatCompletions, include_bytes!("fixtures/openai_chat.json"));
        assert_eq!(
            usage,
            Usage {
                input_tokens: Some(1_843),
                output_tokens: Some(1_290),
                cache_read_tokens: Some(1_664),
                cache_write_tokens: None,
                reasoning_tokens: Some(1_024),
                images: None,
            }
        );
    }

    #[test]
    fn legacy_completion_and_embeddings() {
        let completion = from(Endpoint::Completions, include_bytes!("fixtures/openai_completions.json"));
        assert_eq!((completion.input_tokens, completion.output_tokens), (Some(5), Some(7)));
        assert_eq!(completion.cache_read_tokens, None);
        let embeddings = from(Endpoint::Embeddings, include_bytes!("fixtures/openai_embeddings.json"));
        assert_eq!(embeddings, Usage { input_tokens: Some(8), ..Usage::default() });
    }

    #[test]
    fn responses_api() {
        let usage = from(Endpoint::Responses, include_bytes!("fixtures/openai_responses.json"));
        assert_eq!(
            usage,
            Usage {
                input_tokens: Some(2_156),
                output_tokens: Some(334),
                cache_read_tokens: Some(1_920),
                reasoning_tokens: Some(192),
                ..Usage::default()
            }
        );
    }

    #[test]
    fn images_count_their_data_entries_and_keep_any_usage() {
        let dalle = from(Endpoint::ImageGenerations, include_bytes!("fixtures/openai_images.json"));
        assert_eq!(dalle, Usage { images: Some(2), ..Usage::default() });
        let gpt_image = from(Endpoint::ImageGenerations, include_bytes!("fixtures/openai_images_usage.json"));
        assert_eq!(
            gpt_image,
            Usage { input_tokens: Some(50), output_tokens: Some(4_160), images: Some(1), ..Usage::default() }
        );
        // `data` matters only for image generations.
        assert_eq!(from(Endpoint::ChatCompletions, include_bytes!("fixtures/openai_images.json")).images, None);
    }

    #[test]
    fn deepseek_cache_hits_count_as_cached() {
        let body = br#"{"usage":{"prompt_tokens":100,"completion_tokens":5,"prompt_cache_hit_tokens":64,"prompt_cache_miss_tokens":36}}"#;
        assert_eq!(from(Endpoint::ChatCompletions, body).cache_read_tokens, Some(64));
    }

    #[test]
    fn chat_stream_takes_the_usage_chunk() {
        let out = stream(Endpoint::ChatCompletions, [&include_bytes!("fixtures/openai_chat_stream.sse")[..]]);
        assert_eq!(
            out.usage(),
            Usage {
                input_tokens: Some(1_210),
                output_tokens: Some(12),
                cache_read_tokens: Some(1_152),
                reasoning_tokens: Some(0),
                ..Usage::default()
            }
        );
        assert!(out.produced_output());
        assert!(out.finished());
    }

    #[test]
    fn chat_stream_without_output_or_usage() {
        let role_only = concat!(
            r#"data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"finish_reason":null}],"usage":null}"#,
            "\n\n",
        );
        let out = stream(Endpoint::ChatCompletions, [role_only.as_bytes()]);
        assert!(out.usage().is_empty());
        assert!(!out.produced_output());
        assert!(!out.finished());
    }

    #[test]
    fn tool_calls_and_legacy_text_count_as_output() {
        let tool =
            r#"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]}}]}"#;
        let legacy = r#"data: {"choices":[{"index":0,"text":" world","finish_reason":null}]}"#;
        for (endpoint, line) in [(Endpoint::ChatCompletions, tool), (Endpoint::Completions, legacy)] {
            assert!(stream(endpoint, [format!("{line}\n\n").as_bytes()]).produced_output(), "{line}");
        }
    }

    #[test]
    fn responses_stream_takes_the_completed_usage() {
        let out = stream(Endpoint::Responses, [&include_bytes!("fixtures/openai_responses_stream.sse")[..]]);
        assert_eq!(
            out.usage(),
            Usage {
                input_tokens: Some(37),
                output_tokens: Some(11),
                cache_read_tokens: Some(0),
                reasoning_tokens: Some(0),
                ..Usage::default()
            }
        );
        assert!(out.produced_output());
        assert!(out.finished());
    }

    #[test]
    fn include_usage_is_added_only_when_needed() {
        let streaming = br#" {"model":"m","stream":true}"#;
        let added = include_usage(streaming);
        assert!(added.added);
        assert_eq!(&*added.body, br#" {"stream_options":{"include_usage":true},"model":"m","stream":true}"#);
        let parsed: Value = serde_json::from_slice(&added.body).unwrap();
        assert_eq!(parsed["stream_options"]["include_usage"], true);

        for body in [
            &br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#[..],
            br#"{"model":"m","stream":false}"#,
            br#"{"model":"m"}"#,
            br#"{"model":"m","stream":"true"}"#,
            br#"{"model":"m","stream":true,"stream_options":"x"}"#,
            b"not json",
            b"[1]",
        ] {
            let out = include_usage(body);
            assert!(!out.added, "{body:?}");
            assert!(matches!(out.body, Cow::Borrowed(b) if b == body));
        }
    }

    #[test]
    fn include_usage_overrides_a_false_or_null_and_keeps_other_options() {
        for (body, expected) in [
            (
                &br#"{"stream":true,"stream_options":{"include_usage":false,"x":1}}"#[..],
                serde_json::json!({"stream": true, "stream_options": {"include_usage": true, "x": 1}}),
            ),
            (
                br#"{"stream":true,"stream_options":null}"#,
                serde_json::json!({"stream": true, "stream_options": {"include_usage": true}}),
            ),
        ] {
            let out = include_usage(body);
            assert!(out.added);
            assert_eq!(serde_json::from_slice::<Value>(&out.body).unwrap(), expected);
        }
    }

    #[test]
    fn only_the_usage_chunk_is_filtered() {
        let mut parser = SseParser::new();
        let events = parser.push(include_bytes!("fixtures/openai_chat_stream.sse"));
        let filtered: Vec<_> = events.iter().filter(|e| is_usage_only_chunk(e)).collect();
        assert_eq!(filtered.len(), 1);
        assert!(filtered[0].data.contains("\"choices\":[]"));
        assert!(!is_usage_only_chunk(&SseEvent { event: None, data: "[DONE]".into() }));
        assert!(!is_usage_only_chunk(&SseEvent { event: None, data: r#"{"choices":[],"usage":null}"#.into() }));
    }
}
