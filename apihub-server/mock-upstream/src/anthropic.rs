//! Anthropic's dialect: the Messages API.

use axum::body::Bytes;
use http::{HeaderMap, StatusCode};

use super::body::{Frames, Reply};
use super::request::{Call, Piece, Words, json_string};

/// The key in `x-api-key`.
pub(super) fn api_key(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-api-key")?.to_str().ok()
}

/// Anthropic's error body: `{"type":"error","error":{"type","message"}}`.
pub(super) fn error_body(status: StatusCode, message: &str) -> String {
    let kind = match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500.. => "api_error",
        _ => "invalid_request_error",
    };
    let message = json_string(message);
    format!(r#"{{"type":"error","error":{{"type":"{kind}","message":{message}}}}}"#)
}

/// `POST /v1/messages`.
pub(super) fn messages(call: &Call) -> Reply {
    let (id, model, words) = (call.id, &call.model, call.output_tokens);
    let (input, output) = (call.prompt_tokens, call.output_tokens);
    if !call.stream() {
        let mut out = String::with_capacity(320 + 12 * words as usize);
        put!(
            out,
            r#"{{"id":"msg_mock_{id}","type":"message","role":"assistant","model":{model},"content":[{{"type":"text","text":"{}"}}],"stop_reason":"end_turn","stop_sequence":null"#,
            Words(words)
        );
        if call.usage {
            put!(out, r#","usage":{{"input_tokens":{input},"output_tokens":{output}}}"#);
        }
        out.push('}');
        return Reply::Json(Bytes::from(out));
    }
    let mut frames = Frames::new(words, "\n");
    frames.open(Some("message_start"));
    put!(
        frames,
        r#"{{"type":"message_start","message":{{"id":"msg_mock_{id}","type":"message","role":"assistant","model":{model},"content":[],"stop_reason":null,"stop_sequence":null"#
    );
    if call.usage {
        // As Anthropic does, an early output count, replaced by message_delta's.
        put!(frames, r#","usage":{{"input_tokens":{input},"output_tokens":{}}}"#, output.min(1));
    }
    put!(frames, "}}}}");
    frames.close();
    frames.event(
        Some("content_block_start"),
        format_args!(r#"{{"type":"content_block_start","index":0,"content_block":{{"type":"text","text":""}}}}"#),
    );
    for i in 0..words {
        frames.event(
            Some("content_block_delta"),
            format_args!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"{}"}}}}"#,
                Piece(i)
            ),
        );
    }
    frames.event(Some("content_block_stop"), format_args!(r#"{{"type":"content_block_stop","index":0}}"#));
    frames.open(Some("message_delta"));
    put!(frames, r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn","stop_sequence":null}}"#);
    if call.usage {
        put!(frames, r#","usage":{{"output_tokens":{output}}}"#);
    }
    put!(frames, "}}");
    frames.close();
    frames.event(Some("message_stop"), format_args!(r#"{{"type":"message_stop"}}"#));
    Reply::Stream { content_type: "text/event-stream", frames }
}

#[cfg(test)]
mod tests {
    use apihub_core::usage::{Endpoint, Usage};

    use super::super::tests::{open_mock, post, start, tokens_of, words};
    use super::super::{MockConfig, header};
    use super::*;

    const MESSAGES: &str = r#"[{"role":"user","content":"Tell me a story about a lighthouse."}]"#;

    fn request(stream: bool) -> String {
        format!(r#"{{"model":"claude-sonnet-4","max_tokens":7,"stream":{stream},"messages":{MESSAGES}}}"#)
    }

    #[tokio::test]
    async fn a_message_reports_the_deterministic_usage() {
        let mock = open_mock().await;
        let got = post(&mock, "/v1/messages", &[], &request(false)).await;
        assert_eq!(got.status, 200);
        let expected = Usage { input_tokens: Some(tokens_of(MESSAGES)), output_tokens: Some(7), ..Usage::default() };
        assert_eq!(got.usage(Endpoint::Messages), expected);
        let json = got.json();
        assert_eq!((json["type"].as_str(), json["model"].as_str()), (Some("message"), Some("claude-sonnet-4")));
        assert_eq!(json["content"][0]["text"], words(7));
    }

    #[tokio::test]
    async fn the_stream_carries_input_first_and_cumulative_output_last() {
        let mock = open_mock().await;
        let got = post(&mock, "/v1/messages", &[], &request(true)).await;
        let events = got.events();
        let names: Vec<&str> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
        assert_eq!(names.len(), 7 + 5);
        assert_eq!(
            [names[0], names[1], names[2], names[9], names[10], names[11]],
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let data = got.event_data();
        assert_eq!(data[0]["message"]["usage"]["input_tokens"], tokens_of(MESSAGES));
        assert_eq!(data[10]["usage"]["output_tokens"], 7);
        let text: String = data.iter().filter_map(|e| e["delta"]["text"].as_str()).collect();
        assert_eq!(text, words(7));

        let stream = got.stream_usage(Endpoint::Messages);
        let expected = Usage { input_tokens: Some(tokens_of(MESSAGES)), output_tokens: Some(7), ..Usage::default() };
        assert_eq!(stream.usage(), expected);
        assert!(stream.produced_output() && stream.finished());
    }

    #[tokio::test]
    async fn no_usage_leaves_every_count_out() {
        let mock = open_mock().await;
        let got = post(&mock, "/v1/messages", &[(header::NO_USAGE, "1")], &request(true)).await;
        assert!(got.stream_usage(Endpoint::Messages).usage().is_empty());
        assert!(got.stream_usage(Endpoint::Messages).finished());
        let got = post(&mock, "/v1/messages", &[(header::NO_USAGE, "1")], &request(false)).await;
        assert!(got.usage(Endpoint::Messages).is_empty());
    }

    #[tokio::test]
    async fn errors_take_anthropic_shape_and_the_key_goes_in_x_api_key() {
        let mock = start(MockConfig { api_key: Some("sk-ant-up".into()), ..MockConfig::default() }).await;
        let key = ("x-api-key", "sk-ant-up");
        for (status, kind) in [(529, "overloaded_error"), (500, "api_error"), (429, "rate_limit_error")] {
            let got = post(&mock, "/v1/messages", &[key, (header::STATUS, &status.to_string())], &request(true)).await;
            assert_eq!(got.status.as_u16(), status);
            assert_eq!(got.header("content-type"), Some("application/json"));
            let json = got.json();
            assert_eq!((json["type"].as_str(), json["error"]["type"].as_str()), (Some("error"), Some(kind)));
        }
        for headers in [&[][..], &[("x-api-key", "sk-wrong")], &[("authorization", "Bearer sk-ant-up")]] {
            let got = post(&mock, "/v1/messages", headers, &request(false)).await;
            assert_eq!(got.status, StatusCode::UNAUTHORIZED, "{headers:?}");
            assert_eq!(got.json()["error"]["type"], "authentication_error");
        }
        assert_eq!(post(&mock, "/v1/messages", &[key], &request(false)).await.status, 200);
    }
}
