//! OpenAI's dialect: chat and legacy completions, the Responses API, embeddings, image generation
//! and the model list.

use std::fmt;

use axum::body::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, StatusCode};
use serde_json::value::RawValue;

use super::body::{Frames, Reply};
use super::request::{Call, Piece, Words, json_string};

/// The `created` time of every object: fixed, so that answers are reproducible.
const CREATED: u64 = 1_700_000_000;

const SSE: &str = "text/event-stream";

/// The key in `Authorization: Bearer KEY`.
pub(super) fn api_key(headers: &HeaderMap) -> Option<&str> {
    headers.get(AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

/// OpenAI's error body: `{"error":{"message","type","param","code"}}`.
pub(super) fn error_body(status: StatusCode, message: &str) -> String {
    let (kind, code) = match status.as_u16() {
        401 => ("invalid_request_error", r#""invalid_api_key""#),
        403 => ("permission_error", "null"),
        404 => ("invalid_request_error", r#""not_found""#),
        429 => ("rate_limit_error", r#""rate_limit_exceeded""#),
        500.. => ("server_error", "null"),
        _ => ("invalid_request_error", "null"),
    };
    let message = json_string(message);
    format!(r#"{{"error":{{"message":{message},"type":"{kind}","param":null,"code":{code}}}}}"#)
}

/// The fields every chat or completions object starts with.
#[derive(Clone, Copy)]
struct Head<'a> {
    call: &'a Call<'a>,
    prefix: &'static str,
    object: &'static str,
}

impl fmt::Display for Head<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Head { call, prefix, object } = *self;
        let (id, model) = (call.id, &call.model);
        write!(f, r#""id":"{prefix}-mock-{id}","object":"{object}","created":{CREATED},"model":{model}"#)
    }
}

/// A chat or completions `usage` object.
struct ChatUsage<'a>(&'a Call<'a>);

impl fmt::Display for ChatUsage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (prompt, completion, total) = (self.0.prompt_tokens, self.0.output_tokens, self.0.total_tokens());
        write!(f, r#"{{"prompt_tokens":{prompt},"completion_tokens":{completion},"total_tokens":{total}}}"#)
    }
}

/// One chat chunk: `delta` and `finish_reason` (JSON) of its only choice.
struct ChatChunk<'a, D> {
    head: Head<'a>,
    delta: D,
    finish: &'static str,
}

impl<D: fmt::Display> fmt::Display for ChatChunk<'_, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ChatChunk { head, delta, finish } = self;
        write!(f, r#"{{{head},"choices":[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}]}}"#)
    }
}

/// A chat delta with content.
struct Content<T>(T);

impl<T: fmt::Display> fmt::Display for Content<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, r#"{{"content":"{}"}}"#, self.0)
    }
}

/// A completions object without its closing brace: `text` and `finish_reason` (JSON) of its only
/// choice.
struct Completion<'a, T> {
    head: Head<'a>,
    text: T,
    finish: &'static str,
}

impl<T: fmt::Display> fmt::Display for Completion<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Completion { head, text, finish } = self;
        write!(f, r#"{{{head},"choices":[{{"text":"{text}","index":0,"logprobs":null,"finish_reason":{finish}}}]"#)
    }
}

/// `POST /v1/chat/completions`.
pub(super) fn chat(call: &Call) -> Reply {
    let words = call.output_tokens;
    if !call.stream() {
        let head = Head { call, prefix: "chatcmpl", object: "chat.completion" };
        let mut out = String::with_capacity(320 + 12 * words as usize);
        put!(
            out,
            r#"{{{head},"choices":[{{"index":0,"message":{{"role":"assistant","content":"{}","refusal":null}},"logprobs":null,"finish_reason":"stop"}}]"#,
            Words(words)
        );
        return json_with_usage(out, call);
    }
    let head = Head { call, prefix: "chatcmpl", object: "chat.completion.chunk" };
    let mut frames = Frames::new(words, "\n");
    let role = r#"{"role":"assistant","content":""}"#;
    frames.event(None, format_args!("{}", ChatChunk { head, delta: role, finish: "null" }));
    for i in 0..words {
        let delta = Content(Piece(i));
        frames.event(None, format_args!("{}", ChatChunk { head, delta, finish: "null" }));
    }
    frames.event(None, format_args!("{}", ChatChunk { head, delta: "{}", finish: r#""stop""# }));
    end_stream(frames, call, head)
}

/// `POST /v1/completions` (legacy).
pub(super) fn completions(call: &Call) -> Reply {
    let words = call.output_tokens;
    let head = Head { call, prefix: "cmpl", object: "text_completion" };
    if !call.stream() {
        return json_with_usage(Completion { head, text: Words(words), finish: r#""stop""# }.to_string(), call);
    }
    let mut frames = Frames::new(words, "\n");
    for i in 0..words {
        frames.event(None, format_args!("{}}}", Completion { head, text: Piece(i), finish: "null" }));
    }
    frames.event(None, format_args!("{}}}", Completion { head, text: "", finish: r#""stop""# }));
    end_stream(frames, call, head)
}

/// Closes a chat or completions object, with its usage unless the behaviour drops it.
fn json_with_usage(mut out: String, call: &Call) -> Reply {
    if call.usage {
        put!(out, r#","usage":{}"#, ChatUsage(call));
    }
    out.push('}');
    Reply::Json(Bytes::from(out))
}

/// Ends a chat or completions stream: the usage-only chunk when the request asked for it, then
/// `[DONE]`.
fn end_stream(mut frames: Frames, call: &Call, head: Head<'_>) -> Reply {
    if call.include_usage() {
        frames.event(None, format_args!(r#"{{{head},"choices":[],"usage":{}}}"#, ChatUsage(call)));
    }
    frames.event(None, format_args!("[DONE]"));
    Reply::Stream { content_type: SSE, frames }
}

/// `POST /v1/embeddings`: one embedding per input, of `dimensions` values (8 by default).
pub(super) fn embeddings(call: &Call) -> Reply {
    let (inputs, dimensions) = (inputs(call.ask.input), call.ask.dimensions.unwrap_or(8));
    let mut out = String::with_capacity(128 + inputs * (64 + 8 * dimensions as usize));
    out.push_str(r#"{"object":"list","data":["#);
    for index in 0..inputs {
        let comma = if index == 0 { "" } else { "," };
        put!(out, r#"{comma}{{"object":"embedding","index":{index},"embedding":["#);
        for value in 0..dimensions {
            let comma = if value == 0 { "" } else { "," };
            put!(out, "{comma}{}", (value % 16) as f64 / 16.0);
        }
        out.push_str("]}");
    }
    put!(out, r#"],"model":{}"#, call.model);
    if call.usage {
        put!(out, r#","usage":{{"prompt_tokens":{0},"total_tokens":{0}}}"#, call.prompt_tokens);
    }
    out.push('}');
    Reply::Json(Bytes::from(out))
}

/// How many embeddings `input` asks for: one per string or token array in an array, else one.
fn inputs(input: Option<&RawValue>) -> usize {
    let Some(Ok(items)) = input.map(|input| serde_json::from_str::<Vec<&RawValue>>(input.get())) else {
        return 1;
    };
    // An array of numbers is one input given as tokens.
    let tokens = items.first().is_some_and(|item| item.get().starts_with(|c: char| c == '-' || c.is_ascii_digit()));
    if tokens { 1 } else { items.len() }
}

/// A 1×1 transparent PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

/// `POST /v1/images/generations`: `n` images (1 by default), without usage, as DALL·E answers.
pub(super) fn images(call: &Call) -> Reply {
    let n = call.ask.n.unwrap_or(1);
    let mut out = String::with_capacity(64 + (PNG.len() + 16) * n as usize);
    put!(out, r#"{{"created":{CREATED},"data":["#);
    for i in 0..n {
        let comma = if i == 0 { "" } else { "," };
        put!(out, r#"{comma}{{"b64_json":"{PNG}"}}"#);
    }
    out.push_str("]}");
    Reply::Json(Bytes::from(out))
}

/// A Responses API `response` object.
struct ResponseObject<'a> {
    call: &'a Call<'a>,
    /// `completed` with its output and usage, or `in_progress` without.
    completed: bool,
}

impl fmt::Display for ResponseObject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ResponseObject { call, completed } = *self;
        let (id, model) = (call.id, &call.model);
        let status = if completed { "completed" } else { "in_progress" };
        write!(
            f,
            r#"{{"id":"resp_mock_{id}","object":"response","created_at":{CREATED},"status":"{status}","model":{model},"output":["#
        )?;
        if completed {
            let text = Words(call.output_tokens);
            write!(
                f,
                r#"{{"id":"msg_mock_{id}","type":"message","status":"completed","role":"assistant","content":[{{"type":"output_text","text":"{text}","annotations":[]}}]}}"#
            )?;
        }
        f.write_str(r#"],"usage":"#)?;
        if completed && call.usage {
            let (input, output, total) = (call.prompt_tokens, call.output_tokens, call.total_tokens());
            write!(f, r#"{{"input_tokens":{input},"output_tokens":{output},"total_tokens":{total}}}}}"#)
        } else {
            f.write_str("null}")
        }
    }
}

/// `POST /v1/responses`. Its stream always reports usage, in `response.completed`.
pub(super) fn responses(call: &Call) -> Reply {
    let words = call.output_tokens;
    if !call.stream() {
        return Reply::Json(Bytes::from(ResponseObject { call, completed: true }.to_string()));
    }
    let mut frames = Frames::new(words, "\n");
    let created = ResponseObject { call, completed: false };
    frames.event(
        Some("response.created"),
        format_args!(r#"{{"type":"response.created","sequence_number":0,"response":{created}}}"#),
    );
    let id = call.id;
    for i in 0..words {
        frames.event(
            Some("response.output_text.delta"),
            format_args!(
                r#"{{"type":"response.output_text.delta","sequence_number":{},"item_id":"msg_mock_{id}","output_index":0,"content_index":0,"delta":"{}"}}"#,
                i + 1,
                Piece(i)
            ),
        );
    }
    let completed = ResponseObject { call, completed: true };
    frames.event(
        Some("response.completed"),
        format_args!(r#"{{"type":"response.completed","sequence_number":{},"response":{completed}}}"#, words + 1),
    );
    Reply::Stream { content_type: SSE, frames }
}

/// The body of `GET /v1/models`, built once.
pub(super) fn models_body(models: &[String]) -> Bytes {
    let mut out = String::from(r#"{"object":"list","data":["#);
    for (i, model) in models.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        let id = json_string(model);
        put!(out, r#"{comma}{{"id":{id},"object":"model","created":{CREATED},"owned_by":"apihub-mock"}}"#);
    }
    out.push_str("]}");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use apihub_core::usage::openai::is_usage_only_chunk;
    use apihub_core::usage::{Endpoint, Usage};
    use http::Method;

    use super::super::tests::{open_mock, post, send, start, tokens_of, words};
    use super::super::{MockConfig, header};
    use super::*;

    const MESSAGES: &str = r#"[{"role":"user","content":"Say something short."}]"#;

    fn usage(input: u64, output: u64) -> Usage {
        Usage { input_tokens: Some(input), output_tokens: Some(output), ..Usage::default() }
    }

    #[tokio::test]
    async fn chat_completion_reports_the_deterministic_usage() {
        let mock = open_mock().await;
        let body = format!(r#"{{"model":"gpt-4o-mini","max_tokens":5,"messages":{MESSAGES}}}"#);
        let got = post(&mock, "/v1/chat/completions", &[], &body).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.usage(Endpoint::ChatCompletions), usage(tokens_of(MESSAGES), 5));
        let json = got.json();
        assert_eq!(json["model"], "gpt-4o-mini");
        assert_eq!(json["object"], "chat.completion");
        assert_eq!(json["choices"][0]["message"]["content"], words(5));
        assert_eq!(json["usage"]["total_tokens"], tokens_of(MESSAGES) + 5);

        let default = post(&mock, "/v1/chat/completions", &[], r#"{"model":"o3","messages":[]}"#).await;
        assert_eq!(default.usage(Endpoint::ChatCompletions), usage(1, 16));
        assert_eq!(default.json()["model"], "o3");
    }

    #[tokio::test]
    async fn chat_stream_without_include_usage_reports_none() {
        let mock = open_mock().await;
        let body = format!(r#"{{"model":"gpt-4o","stream":true,"max_tokens":3,"messages":{MESSAGES}}}"#);
        let got = post(&mock, "/v1/chat/completions", &[], &body).await;
        let events = got.events();
        assert_eq!(events.len(), 6, "role, 3 words, finish, [DONE]");
        assert_eq!(events.last().unwrap().data, "[DONE]");
        let chunks = got.event_data();
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
        assert!(chunks.iter().all(|chunk| chunk["object"] == "chat.completion.chunk" && chunk["model"] == "gpt-4o"));
        let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
        assert_eq!(text, words(3));
        let stream = got.stream_usage(Endpoint::ChatCompletions);
        assert!(stream.usage().is_empty());
        assert!(stream.produced_output() && stream.finished());
    }

    #[tokio::test]
    async fn chat_stream_with_include_usage_ends_with_a_usage_only_chunk() {
        let mock = open_mock().await;
        let body = format!(
            r#"{{"model":"gpt-4o","stream":true,"stream_options":{{"include_usage":true}},"max_completion_tokens":3,"messages":{MESSAGES}}}"#
        );
        let got = post(&mock, "/v1/chat/completions", &[], &body).await;
        let events = got.events();
        assert_eq!(events.len(), 7, "role, 3 words, finish, usage, [DONE]");
        assert!(is_usage_only_chunk(&events[5]));
        assert_eq!(events.iter().filter(|e| is_usage_only_chunk(e)).count(), 1);
        let stream = got.stream_usage(Endpoint::ChatCompletions);
        assert_eq!(stream.usage(), usage(tokens_of(MESSAGES), 3));
        assert!(stream.finished());

        let off = body.replace(r#""include_usage":true"#, r#""include_usage":false"#);
        assert_eq!(post(&mock, "/v1/chat/completions", &[], &off).await.events().len(), 6);
        let dropped = post(&mock, "/v1/chat/completions", &[(header::NO_USAGE, "1")], &body).await;
        assert_eq!(dropped.events().len(), 6);
        assert!(dropped.stream_usage(Endpoint::ChatCompletions).usage().is_empty());
    }

    #[tokio::test]
    async fn legacy_completions_answer_and_stream() {
        let mock = open_mock().await;
        let got =
            post(&mock, "/v1/completions", &[], r#"{"model":"gpt-3.5-turbo-instruct","prompt":"Say","max_tokens":4}"#)
                .await;
        assert_eq!(got.usage(Endpoint::Completions), usage(2, 4));
        assert_eq!(got.json()["choices"][0]["text"], words(4));
        assert_eq!(got.json()["object"], "text_completion");

        let body = r#"{"model":"gpt-3.5-turbo-instruct","prompt":"Say","max_tokens":4,"stream":true,"stream_options":{"include_usage":true}}"#;
        let got = post(&mock, "/v1/completions", &[], body).await;
        assert_eq!(got.events().len(), 7, "4 words, finish, usage, [DONE]");
        let text: String = got.event_data().iter().filter_map(|c| c["choices"][0]["text"].as_str()).collect();
        assert_eq!(text, words(4));
        let stream = got.stream_usage(Endpoint::Completions);
        assert_eq!(stream.usage(), usage(2, 4));
        assert!(stream.produced_output() && stream.finished());
    }

    #[tokio::test]
    async fn embeddings_count_their_inputs_and_report_prompt_tokens_only() {
        let mock = open_mock().await;
        let got =
            post(&mock, "/v1/embeddings", &[], r#"{"model":"text-embedding-3-small","input":"hello there"}"#).await;
        assert_eq!(got.usage(Endpoint::Embeddings), Usage { input_tokens: Some(4), ..Usage::default() });
        let json = got.json();
        assert_eq!(json["data"].as_array().unwrap().len(), 1);
        assert_eq!(json["data"][0]["embedding"].as_array().unwrap().len(), 8);
        assert_eq!(json["model"], "text-embedding-3-small");

        let batch = r#"{"model":"e","input":["a","b","c"],"dimensions":32}"#;
        let json = post(&mock, "/v1/embeddings", &[], batch).await.json();
        assert_eq!(json["data"].as_array().unwrap().len(), 3);
        assert_eq!(json["data"][2]["index"], 2);
        assert_eq!(json["data"][2]["embedding"].as_array().unwrap().len(), 32);
        let tokens = post(&mock, "/v1/embeddings", &[], r#"{"model":"e","input":[1,2,3]}"#).await.json();
        assert_eq!(tokens["data"].as_array().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn images_return_n_pictures() {
        let mock = open_mock().await;
        let got = post(&mock, "/v1/images/generations", &[], r#"{"model":"dall-e-3","prompt":"a cat","n":3}"#).await;
        assert_eq!(got.usage(Endpoint::ImageGenerations), Usage { images: Some(3), ..Usage::default() });
        let one = post(&mock, "/v1/images/generations", &[], r#"{"model":"gpt-image-1","prompt":"a cat"}"#).await;
        assert_eq!(one.usage(Endpoint::ImageGenerations).images, Some(1));
        assert!(one.json()["data"][0]["b64_json"].is_string());
    }

    #[tokio::test]
    async fn responses_answer_and_stream_with_usage() {
        let mock = open_mock().await;
        let body = r#"{"model":"gpt-4.1","input":"Hi there","max_output_tokens":6}"#;
        let got = post(&mock, "/v1/responses", &[], body).await;
        assert_eq!(got.usage(Endpoint::Responses), usage(3, 6));
        let json = got.json();
        assert_eq!((json["status"].as_str(), json["model"].as_str()), (Some("completed"), Some("gpt-4.1")));
        assert_eq!(json["output"][0]["content"][0]["text"], words(6));

        let stream_body = r#"{"model":"gpt-4.1","input":"Hi there","max_output_tokens":6,"stream":true}"#;
        let got = post(&mock, "/v1/responses", &[], stream_body).await;
        let events = got.events();
        let names: Vec<&str> = events.iter().filter_map(|e| e.event.as_deref()).collect();
        assert_eq!(names.len(), 8);
        assert_eq!(
            (names[0], names[1], names[7]),
            ("response.created", "response.output_text.delta", "response.completed")
        );
        let deltas: String = got.event_data().iter().filter_map(|e| e["delta"].as_str()).collect();
        assert_eq!(deltas, words(6));
        assert!(got.event_data()[0]["response"]["usage"].is_null());
        let stream = got.stream_usage(Endpoint::Responses);
        assert_eq!(stream.usage(), usage(3, 6));
        assert!(stream.produced_output() && stream.finished());

        let none = post(&mock, "/v1/responses", &[(header::NO_USAGE, "true")], stream_body).await;
        assert!(none.stream_usage(Endpoint::Responses).usage().is_empty());
        assert!(post(&mock, "/v1/responses", &[(header::NO_USAGE, "1")], body).await.json()["usage"].is_null());
    }

    #[tokio::test]
    async fn models_lists_the_configured_ids() {
        let models = vec!["gpt-4o".to_owned(), "we\"ird".to_owned()];
        let mock = start(MockConfig { models, ..MockConfig::default() }).await;
        let json = send(&mock, Method::GET, "/v1/models", &[], "").await.json();
        assert_eq!(json["object"], "list");
        let ids: Vec<&str> = json["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["gpt-4o", "we\"ird"]);
        assert_eq!(json["data"][0]["object"], "model");
    }

    #[tokio::test]
    async fn no_usage_drops_the_usage_object() {
        let mock = open_mock().await;
        let got =
            post(&mock, "/v1/chat/completions", &[(header::NO_USAGE, "1")], r#"{"model":"m","messages":[]}"#).await;
        assert!(got.json().get("usage").is_none());
        assert!(got.usage(Endpoint::ChatCompletions).is_empty());
        let got = post(&mock, "/v1/embeddings", &[(header::NO_USAGE, "1")], r#"{"model":"m","input":"x"}"#).await;
        assert!(got.usage(Endpoint::Embeddings).is_empty());
    }

    #[tokio::test]
    async fn errors_take_openai_shape() {
        let mock = open_mock().await;
        for (status, kind) in [(500, "server_error"), (429, "rate_limit_error"), (400, "invalid_request_error")] {
            let got = post(&mock, "/v1/chat/completions", &[(header::STATUS, &status.to_string())], "{}").await;
            assert_eq!(got.status.as_u16(), status);
            let json = got.json();
            assert_eq!(json["error"]["type"], kind);
            assert!(json["error"]["message"].is_string());
        }
        let bad = post(&mock, "/v1/chat/completions", &[], r#"{"model":"m","stream":"yes"}"#).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(bad.json()["error"]["message"].as_str().unwrap().contains("expected a boolean"));
        let no_model = post(&mock, "/v1/chat/completions", &[], r#"{"messages":[]}"#).await;
        assert_eq!(no_model.status, StatusCode::BAD_REQUEST);
    }
}
