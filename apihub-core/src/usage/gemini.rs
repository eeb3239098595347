//! Google's Gemini dialect: `generateContent` and `streamGenerateContent`.
//!
//! `usageMetadata.promptTokenCount` already includes `cachedContentTokenCount`, as
//! [`Usage::input_tokens`] does; `toolUsePromptTokenCount` (prompts the model's own tools made) is
//! added to the input. Thinking is reported apart: `thoughtsTokenCount` is not inside
//! `candidatesTokenCount`, and the billed output is their sum.
//!
//! A streamed response (`?alt=sse`) may carry `usageMetadata` on every chunk, each a running
//! total: the last one wins.
//!
//! ```
//! use apihub_core::usage::gemini;
//!
//! let usage = gemini::usage(&serde_json::json!({
//!     "promptTokenCount": 900, "cachedContentTokenCount": 512, "candidatesTokenCount": 60, "thoughtsTokenCount": 240
//! }));
//! assert_eq!((usage.input_tokens, usage.cache_read_tokens), (Some(900), Some(512)));
//! assert_eq!((usage.output_tokens, usage.reasoning_tokens), (Some(300), Some(240)));
//! ```

use serde_json::Value;

use super::stream::Seen;
use super::{SseEvent, Usage, count, sum_reported};

/// Reads a Gemini `usageMetadata` object into normalized counts.
pub fn usage(metadata: &Value) -> Usage {
    let thoughts = count(metadata, "/thoughtsTokenCount");
    Usage {
        input_tokens: sum_reported([count(metadata, "/promptTokenCount"), count(metadata, "/toolUsePromptTokenCount")]),
        output_tokens: sum_reported([count(metadata, "/candidatesTokenCount"), thoughts]),
        cache_read_tokens: count(metadata, "/cachedContentTokenCount"),
        cache_write_tokens: None,
        reasoning_tokens: thoughts,
        images: None,
    }
}

/// The usage of a whole response body: one object, or the array of chunks that
/// `streamGenerateContent` sends without `?alt=sse` (the last `usageMetadata` wins).
pub(super) fn response_usage(body: &Value) -> Usage {
    let metadata = match body {
        Value::Array(chunks) => chunks.iter().rev().find_map(metadata),
        body => metadata(body),
    };
    metadata.map(usage).unwrap_or_default()
}

fn metadata(chunk: &Value) -> Option<&Value> {
    chunk.get("usageMetadata").filter(|m| m.is_object())
}

/// One streamed chunk: its `usageMetadata`, if any, replaces the earlier one.
pub(super) fn push(event: &SseEvent, reported: &mut Usage) -> Seen {
    let Some(chunk) = event.json() else {
        return Seen::default();
    };
    if let Some(m) = metadata(&chunk) {
        *reported = usage(m);
    }
    let candidates = chunk.get("candidates").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let parts = || {
        candidates.iter().flat_map(|candidate| {
            candidate.pointer("/content/parts").and_then(Value::as_array).map_or(&[][..], Vec::as_slice)
        })
    };
    Seen {
        output: parts().any(part_has_output),
        output_bytes: parts().map(part_output_bytes).sum(),
        finished: candidates.iter().any(|candidate| candidate.get("finishReason").is_some_and(Value::is_string)),
    }
}

/// Bytes of content in a part: its text (thoughts included), or a function call's name and
/// arguments as JSON.
fn part_output_bytes(part: &Value) -> u64 {
    let call = part.get("functionCall").map_or(0, |call| {
        super::stream::str_bytes(call.get("name")) + call.get("args").map_or(0, |args| args.to_string().len() as u64)
    });
    super::stream::str_bytes(part.get("text")) + call
}

/// Whether a content part carries output: non-empty text (thoughts included), a function call,
/// inline data, code... anything but an empty text or a bare thought signature.
fn part_has_output(part: &Value) -> bool {
    let Some(part) = part.as_object() else {
        return false;
    };
    part.iter().any(|(key, value)| match key.as_str() {
        "text" => value.as_str().is_some_and(|text| !text.is_empty()),
        "thought" | "thoughtSignature" => false,
        _ => true,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::stream;
    use super::*;
    use crate::usage::Endpoint;

    #[test]
    fn generate_content_with_cache_and_thoughts() {
        let usage = Usage::from_response(Endpoint::GenerateContent, include_bytes!("fixtures/gemini_generate.json"));
        assert_eq!(
            usage,
            Usage {
                input_tokens: Some(10_483),
                output_tokens: Some(287 + 1_156),
                cache_read_tokens: Some(8_192),
                cache_write_tokens: None,
                reasoning_tokens: Some(1_156),
                images: None,
            }
        );
    }

    #[test]
    fn a_stream_read_whole_as_a_json_array_takes_the_last_metadata() {
        let body = br#"[{"usageMetadata":{"promptTokenCount":8,"totalTokenCount":8}},
            {"candidates":[]},
            {"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":20,"totalTokenCount":28}},
            {"candidates":[]}]"#;
        let usage = Usage::from_response(Endpoint::StreamGenerateContent, body);
        assert_eq!(usage, Usage { input_tokens: Some(8), output_tokens: Some(20), ..Usage::default() });
    }

    #[test]
    fn stream_takes_the_last_metadata() {
        let out = stream(Endpoint::StreamGenerateContent, [&include_bytes!("fixtures/gemini_stream.sse")[..]]);
        assert_eq!(
            out.usage(),
            Usage {
                input_tokens: Some(11),
                output_tokens: Some(112 + 688),
                reasoning_tokens: Some(688),
                ..Usage::default()
            }
        );
        assert!(out.produced_output());
        assert!(out.finished());
    }

    #[test]
    fn what_counts_as_output() {
        for (part, output) in [
            (r#"{"text":"Hi"}"#, true),
            (r#"{"text":"…","thought":true}"#, true),
            (r#"{"functionCall":{"name":"f","args":{}}}"#, true),
            (r#"{"inlineData":{"mimeType":"image/png","data":"iVBORw0KGgo="}}"#, true),
            (r#"{"text":""}"#, false),
            (r#"{"text":"","thoughtSignature":"CrsBAR/Mhbb"}"#, false),
            ("{}", false),
            ("7", false),
        ] {
            let chunk =
                format!(r#"data: {{"candidates":[{{"content":{{"parts":[{part}],"role":"model"}},"index":0}}]}}"#);
            let out = stream(Endpoint::StreamGenerateContent, [format!("{chunk}\r\n\r\n").as_bytes()]);
            assert_eq!(out.produced_output(), output, "{part}");
            assert!(!out.finished());
        }
    }
}
