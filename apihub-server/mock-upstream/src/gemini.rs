//! Google's Gemini dialect: `generateContent` and `streamGenerateContent`.

use std::fmt;

use apihub_core::usage::Endpoint;
use axum::body::Bytes;
use http::{HeaderMap, StatusCode};

use super::body::{Frames, Reply};
use super::request::{Call, Piece, Words, json_string};

/// The key in `x-goog-api-key`, or else in the `key` query parameter.
pub(super) fn api_key<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    if let Some(key) = headers.get("x-goog-api-key") {
        return key.to_str().ok();
    }
    query?.split('&').find_map(|pair| pair.strip_prefix("key="))
}

/// Google's error body: `{"error":{"code","message","status"}}`.
pub(super) fn error_body(status: StatusCode, message: &str) -> String {
    let name = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        500.. => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    };
    let (code, message) = (status.as_u16(), json_string(message));
    format!(r#"{{"error":{{"code":{code},"message":{message},"status":"{name}"}}}}"#)
}

/// One response object (a whole answer or one streamed chunk) of one candidate.
struct Chunk<'a, T> {
    call: &'a Call<'a>,
    text: T,
    /// The last one: it carries `finishReason` and the output count.
    last: bool,
}

impl<T: fmt::Display> fmt::Display for Chunk<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Chunk { call, ref text, last } = *self;
        write!(f, r#"{{"candidates":[{{"content":{{"parts":[{{"text":"{text}"}}],"role":"model"}}"#)?;
        if last {
            f.write_str(r#","finishReason":"STOP""#)?;
        }
        f.write_str(r#","index":0}]"#)?;
        if call.usage {
            let prompt = call.prompt_tokens;
            if last {
                let (output, total) = (call.output_tokens, call.total_tokens());
                write!(
                    f,
                    r#","usageMetadata":{{"promptTokenCount":{prompt},"candidatesTokenCount":{output},"totalTokenCount":{total}}}"#
                )?;
            } else {
                write!(f, r#","usageMetadata":{{"promptTokenCount":{prompt},"totalTokenCount":{prompt}}}"#)?;
            }
        }
        let (model, id) = (&call.model, call.id);
        write!(f, r#","modelVersion":{model},"responseId":"mock-{id}"}}"#)
    }
}

/// `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent`: SSE with
/// `?alt=sse`, else a JSON array streamed one element at a time.
pub(super) fn generate(call: &Call) -> Reply {
    let words = call.output_tokens;
    if call.endpoint == Endpoint::GenerateContent {
        return Reply::Json(Bytes::from(Chunk { call, text: Words(words), last: true }.to_string()));
    }
    let sse = call.query.is_some_and(|query| query.split('&').any(|pair| pair == "alt=sse"));
    // Google ends SSE lines with CRLF.
    let mut frames = Frames::new(words, "\r\n");
    // A chunk per word; without words, one empty last chunk.
    if words == 0 {
        push(&mut frames, sse, true, Chunk { call, text: "", last: true });
    }
    for i in 0..words {
        push(&mut frames, sse, i == 0, Chunk { call, text: Piece(i), last: i + 1 == words });
    }
    if !sse {
        put!(frames, "]");
        frames.end_frame();
    }
    let content_type = if sse { "text/event-stream" } else { "application/json" };
    Reply::Stream { content_type, frames }
}

/// Adds a chunk as an SSE event, or as the next element of a JSON array.
fn push(frames: &mut Frames, sse: bool, first: bool, chunk: impl fmt::Display) {
    if sse {
        frames.event(None, format_args!("{chunk}"));
    } else {
        let separator = if first { "[" } else { ",\r\n" };
        put!(frames, "{separator}{chunk}");
        frames.end_frame();
    }
}

#[cfg(test)]
mod tests {
    use apihub_core::usage::{Endpoint, Usage};

    use super::super::tests::{open_mock, post, start, tokens_of, words};
    use super::super::{MockConfig, header};
    use super::*;

    const CONTENTS: &str = r#"[{"role":"user","parts":[{"text":"Explain ownership in Rust."}]}]"#;

    fn request(max: u64) -> String {
        format!(r#"{{"contents":{CONTENTS},"generationConfig":{{"maxOutputTokens":{max}}}}}"#)
    }

    fn usage(output: u64) -> Usage {
        Usage { input_tokens: Some(tokens_of(CONTENTS)), output_tokens: Some(output), ..Usage::default() }
    }

    #[tokio::test]
    async fn generate_content_reports_the_deterministic_usage() {
        let mock = open_mock().await;
        let got = post(&mock, "/v1beta/models/gemini-2.5-flash:generateContent", &[], &request(9)).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.usage(Endpoint::GenerateContent), usage(9));
        let json = got.json();
        assert_eq!(json["modelVersion"], "gemini-2.5-flash");
        assert_eq!(json["candidates"][0]["content"]["parts"][0]["text"], words(9));
        assert_eq!(json["candidates"][0]["finishReason"], "STOP");
        let v1 = post(&mock, "/v1/models/gemini-2.0-flash:generateContent", &[], r#"{"contents":[]}"#).await;
        assert_eq!(v1.usage(Endpoint::GenerateContent).output_tokens, Some(16));
    }

    #[tokio::test]
    async fn the_sse_stream_carries_the_final_counts_last() {
        let mock = open_mock().await;
        let path = "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse";
        let got = post(&mock, path, &[], &request(5)).await;
        assert_eq!(got.header("content-type"), Some("text/event-stream"));
        assert!(got.text().contains("\r\n\r\n"));
        let data = got.event_data();
        assert_eq!(data.len(), 5);
        assert!(data[..4].iter().all(|c| c["usageMetadata"]["candidatesTokenCount"].is_null()));
        assert_eq!(data[4]["usageMetadata"]["candidatesTokenCount"], 5);
        assert_eq!(data[4]["candidates"][0]["finishReason"], "STOP");
        let text: String =
            data.iter().filter_map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str()).collect();
        assert_eq!(text, words(5));
        let stream = got.stream_usage(Endpoint::StreamGenerateContent);
        assert_eq!(stream.usage(), usage(5));
        assert!(stream.produced_output() && stream.finished());

        // Cut short, only the prompt is known.
        let cut = post(&mock, path, &[(header::TRUNCATE_AFTER, "2")], &request(5)).await;
        let stream = cut.stream_usage(Endpoint::StreamGenerateContent);
        assert_eq!(stream.usage(), Usage { input_tokens: Some(tokens_of(CONTENTS)), ..Usage::default() });
        assert!(!stream.finished());
    }

    #[tokio::test]
    async fn without_alt_sse_the_stream_is_a_json_array() {
        let mock = open_mock().await;
        let path = "/v1beta/models/gemini-2.5-pro:streamGenerateContent";
        let got = post(&mock, path, &[(header::CHUNK_DELAY_MS, "5")], &request(3)).await;
        assert_eq!(got.header("content-type"), Some("application/json"));
        assert_eq!(got.chunks.len(), 4, "3 elements, then the closing bracket");
        assert_eq!(got.json().as_array().unwrap().len(), 3);
        assert_eq!(got.usage(Endpoint::StreamGenerateContent), usage(3));
    }

    #[tokio::test]
    async fn zero_output_still_finishes() {
        let mock = open_mock().await;
        let path = "/v1beta/models/g:streamGenerateContent?alt=sse";
        let got = post(&mock, path, &[(header::OUTPUT_TOKENS, "0")], &request(5)).await;
        let stream = got.stream_usage(Endpoint::StreamGenerateContent);
        assert_eq!(stream.usage(), usage(0));
        assert!(stream.finished() && !stream.produced_output());
        let array = post(&mock, "/v1beta/models/g:streamGenerateContent", &[(header::OUTPUT_TOKENS, "0")], "{}").await;
        assert_eq!(array.json()[0]["candidates"][0]["content"]["parts"][0]["text"], "");
    }

    #[tokio::test]
    async fn the_key_goes_in_x_goog_api_key_or_the_query() {
        let mock = start(MockConfig { api_key: Some("AIza-up".into()), ..MockConfig::default() }).await;
        let path = "/v1beta/models/gemini-2.5-flash:generateContent";
        assert_eq!(post(&mock, path, &[("x-goog-api-key", "AIza-up")], &request(1)).await.status, 200);
        let query = format!("{path}?alt=json&key=AIza-up");
        assert_eq!(post(&mock, &query, &[], &request(1)).await.status, 200);
        for (path, headers) in
            [(path, &[][..]), (path, &[("authorization", "Bearer AIza-up")]), (&query, &[("x-goog-api-key", "wrong")])]
        {
            let got = post(&mock, path, headers, &request(1)).await;
            assert_eq!(got.status, StatusCode::UNAUTHORIZED);
            assert_eq!(got.json()["error"]["status"], "UNAUTHENTICATED");
        }
        let failed = post(&mock, path, &[("x-goog-api-key", "AIza-up"), (header::STATUS, "503")], &request(1)).await;
        assert_eq!(
            (failed.json()["error"]["code"].as_u64(), failed.json()["error"]["status"].as_str()),
            (Some(503), Some("UNAVAILABLE"))
        );
    }
}
