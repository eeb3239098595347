//! A mock upstream LLM server speaking the OpenAI, Anthropic and Gemini dialects over real HTTP
//! and real SSE, for the gateway's end-to-end tests, benchmarks and browser tests.
//!
//! [`MockUpstream::start`] binds a port (`127.0.0.1:0` unless [`MockConfig::addr`] says
//! otherwise), serves from a background tokio task and stops when dropped: the port closes and
//! open connections, hanging ones included, are cut. [`MockUpstream::stats`] counts the requests
//! received per endpoint and keeps the last one's headers and body.
//!
//! # Endpoints
//!
//! | Dialect | Endpoint | Key header |
//! | --- | --- | --- |
//! | OpenAI | `POST /v1/chat/completions`, `/v1/completions`, `/v1/responses` (JSON, or SSE with `"stream": true`), `/v1/embeddings`, `/v1/images/generations`, `GET /v1/models` | `Authorization: Bearer KEY` |
//! | Anthropic | `POST /v1/messages` (JSON, or SSE with `"stream": true`) | `x-api-key: KEY` |
//! | Gemini | `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent` (SSE with `?alt=sse`, else a streamed JSON array); `/v1/models/...` too | `x-goog-api-key: KEY` or `?key=KEY` |
//!
//! When [`MockConfig::api_key`] is set, a request without that key in its dialect's header gets a
//! 401 in its dialect's error shape. Any other path gets an OpenAI-shaped 404.
//!
//! # Deterministic usage
//!
//! - **Prompt tokens**: the bytes of the request's prompt field, as sent, divided by 4 and rounded
//!   up (0 when absent): `messages` (chat, Anthropic), `prompt` (completions, images), `input`
//!   (embeddings, Responses) or `contents` (Gemini). Other fields, such as `stream_options` added
//!   by the gateway, do not count. [`prompt_tokens`] computes it.
//!   `x-mock-prompt-tokens` replaces the count in the report.
//! - **Output tokens**: `x-mock-output-tokens` if given, else the request's cap (`max_tokens`,
//!   `max_completion_tokens`, `max_output_tokens` or `generationConfig.maxOutputTokens`), else
//!   [`MockConfig::default_output_tokens`] (16). The text is that many words (`lorem ipsum ...`),
//!   streamed one word per content event. The text really is that long: to keep a large cap
//!   cheap, set `x-mock-output-tokens`. Embeddings report no output; images report `n` images.
//! - The response echoes the request's model (for Gemini, the one in the path).
//!
//! Streams follow the dialects: an OpenAI chat or completions stream sends a role chunk (chat
//! only), one chunk per word, a finish chunk, then a usage-only chunk (`choices: []`) only when
//! `stream_options.include_usage` is true, then `data: [DONE]`. Responses sends
//! `response.created`, `response.output_text.delta` per word and `response.completed` with usage.
//! Anthropic sends `message_start` (input usage), `content_block_start`, a delta per word,
//! `content_block_stop`, `message_delta` (cumulative output usage) and `message_stop`. Gemini sends
//! a chunk per word (`\r\n` line ends, as Google does), each with the prompt count; the last one
//! carries `finishReason` and the final counts.
//!
//! # Behaviour knobs
//!
//! [`Behaviour`] sets them for every response ([`MockConfig::behaviour`]); a request overrides
//! each with a header (names in [`header`]), so one mock serves many test cases. An unknown or
//! malformed `x-mock-*` header is refused with a 400.
//!
//! | Header | Effect |
//! | --- | --- |
//! | `x-mock-latency-ms: N` | wait N ms before answering |
//! | `x-mock-chunk-delay-ms: N` | wait N ms between streamed events |
//! | `x-mock-status: 503` | answer with that status and the dialect's error body (`200` clears a configured one) |
//! | `x-mock-no-usage: 1` | report no usage at all |
//! | `x-mock-output-tokens: N` | generate N output tokens whatever the cap |
//! | `x-mock-prompt-tokens: N` | report N prompt tokens whatever the prompt (any `u64`: for absurd reports) |
//! | `x-mock-truncate-after: N` | end the body cleanly after N events (or elements of Gemini's streamed array; of a plain JSON body, N bytes): no final usage, no `[DONE]` |
//! | `x-mock-reset-after: N` | send N events (elements, bytes) then abort the connection: the client sees a body error |
//! | `x-mock-hang: 1` | never answer (for timeout tests) |
//!
//! # Speed
//!
//! The hot path takes no lock: counting is two atomic additions, the request is read with borrowed
//! fields (the prompt is measured, not parsed), and a response is formatted straight into one
//! buffer then sent as slices of it. Recording the last request takes a mutex; turn
//! [`MockConfig::record_requests`] off for benchmarks. `apihub mock-upstream` runs it standalone.
//!
//! # Example
//!
//! ```
//! use apihub_core::usage::{Endpoint, Usage};
//! use apihub_mock_upstream::{MockConfig, MockUpstream};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let config = MockConfig { api_key: Some("sk-upstream".into()), ..MockConfig::default() };
//! let mock = MockUpstream::start(config).await?;
//!
//! // Any HTTP client will do; here, HTTP/1.1 by hand.
//! let body = r#"{"model":"gpt-4o-mini","max_tokens":3,"messages":[{"role":"user","content":"Hi"}]}"#;
//! let mut socket = tokio::net::TcpStream::connect(mock.addr()).await?;
//! let head = "POST /v1/chat/completions HTTP/1.1\r\nhost: mock\r\nauthorization: Bearer sk-upstream\r\n";
//! let head = format!("{head}content-length: {}\r\nconnection: close\r\n\r\n", body.len());
//! socket.write_all(format!("{head}{body}").as_bytes()).await?;
//! let mut response = String::new();
//! socket.read_to_string(&mut response).await?;
//!
//! assert!(response.starts_with("HTTP/1.1 200"));
//! let (_, json) = response.split_once("\r\n\r\n").unwrap();
//! let usage = Usage::from_response(Endpoint::ChatCompletions, json.as_bytes());
//! // `[{"role":"user","content":"Hi"}]` is 31 bytes: 8 tokens.
//! assert_eq!((usage.input_tokens, usage.output_tokens), (Some(8), Some(3)));
//! assert_eq!(mock.stats().requests("/v1/chat/completions"), 1);
//! let seen = mock.stats().last_request().unwrap();
//! assert_eq!(seen.header("authorization"), Some("Bearer sk-upstream"));
//! # Ok(())
//! # }
//! ```

/// Writes formatted text into a `String` or a [`body::Frames`]; writing to memory cannot fail.
macro_rules! put {
    ($out:expr, $($arg:tt)*) => {{
        use ::std::fmt::Write as _;
        let _ = $out.write_fmt(format_args!($($arg)*));
    }};
}

mod anthropic;
mod body;
mod config;
mod gemini;
mod openai;
mod request;
mod server;
mod stats;

pub use config::{Behaviour, MockConfig, header};
pub use request::prompt_tokens;
pub use server::MockUpstream;
pub use stats::{MockStats, RecordedRequest};

#[cfg(test)]
pub(crate) mod tests {
    //! A small HTTP/1.1 client over a fresh TCP connection per call, and helpers to read what it got.

    use std::time::{Duration, Instant};

    use apihub_core::usage::{Endpoint, SseEvent, SseParser, StreamUsage, Usage};
    use axum::body::Bytes;
    use http::{HeaderMap, Method, Request, StatusCode};
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;
    use serde_json::Value;

    use super::*;

    /// What the client received.
    #[derive(Debug)]
    pub(crate) struct Received {
        pub(crate) status: StatusCode,
        pub(crate) headers: HeaderMap,
        /// The body's data frames, each with its arrival time since the request was sent.
        pub(crate) chunks: Vec<(Duration, Bytes)>,
        /// The error that cut the body short, if one did.
        pub(crate) error: Option<String>,
        /// From sending the request to the response head.
        pub(crate) head_after: Duration,
    }

    impl Received {
        pub(crate) fn body(&self) -> Vec<u8> {
            self.chunks.iter().flat_map(|(_, chunk)| chunk.iter().copied()).collect()
        }

        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.body()).unwrap()
        }

        pub(crate) fn json(&self) -> Value {
            serde_json::from_slice(&self.body()).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
        }

        pub(crate) fn events(&self) -> Vec<SseEvent> {
            let mut parser = SseParser::new();
            let mut events = parser.push(&self.body());
            events.extend(parser.finish());
            events
        }

        /// The events' JSON data, `[DONE]` left out.
        pub(crate) fn event_data(&self) -> Vec<Value> {
            self.events().iter().filter_map(SseEvent::json).collect()
        }

        /// The usage the gateway would read, fed chunk by chunk as it arrived.
        pub(crate) fn stream_usage(&self, endpoint: Endpoint) -> StreamUsage {
            let mut parser = SseParser::new();
            let mut usage = StreamUsage::new(endpoint);
            for (_, chunk) in &self.chunks {
                parser.push(chunk).iter().for_each(|event| usage.push(event));
            }
            parser.finish().iter().for_each(|event| usage.push(event));
            usage
        }

        pub(crate) fn usage(&self, endpoint: Endpoint) -> Usage {
            Usage::from_response(endpoint, &self.body())
        }

        pub(crate) fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name).and_then(|v| v.to_str().ok())
        }
    }

    /// Sends one request on a new connection and reads the whole response.
    pub(crate) async fn send(
        mock: &MockUpstream,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Received {
        let stream = tokio::net::TcpStream::connect(mock.addr()).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        let mut request = Request::builder().method(method).uri(path).header("host", mock.addr().to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
        let start = Instant::now();
        let response = sender.send_request(request).await.unwrap();
        let head_after = start.elapsed();
        let (parts, mut body) = response.into_parts();
        let (mut chunks, mut error) = (Vec::new(), None);
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => chunks.extend(frame.into_data().ok().map(|data| (start.elapsed(), data))),
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            }
        }
        Received { status: parts.status, headers: parts.headers, chunks, error, head_after }
    }

    /// `POST path` with a JSON body.
    pub(crate) async fn post(mock: &MockUpstream, path: &str, headers: &[(&str, &str)], body: &str) -> Received {
        send(mock, Method::POST, path, headers, body).await
    }

    pub(crate) async fn start(config: MockConfig) -> MockUpstream {
        MockUpstream::start(config).await.unwrap()
    }

    /// A mock with no key and the default behaviour.
    pub(crate) async fn open_mock() -> MockUpstream {
        start(MockConfig::default()).await
    }

    /// `n` words of the mock's text, as one string.
    pub(crate) fn words(n: u64) -> String {
        request::Words(n).to_string()
    }

    /// The prompt tokens of a prompt field given as JSON text.
    pub(crate) fn tokens_of(prompt_json: &str) -> u64 {
        (prompt_json.len() as u64).div_ceil(4)
    }

    #[tokio::test]
    async fn unknown_paths_get_an_openai_404_and_are_counted() {
        let mock = open_mock().await;
        let got = post(&mock, "/v1/audio/speech", &[], "{}").await;
        assert_eq!(got.status, StatusCode::NOT_FOUND);
        assert!(got.json()["error"]["message"].is_string());
        let got = post(&mock, "/v1beta/models/gemini-2.5-flash:countTokens", &[], "{}").await;
        assert_eq!(got.status, StatusCode::NOT_FOUND);
        assert_eq!(mock.stats().total(), 2);
        assert_eq!(mock.stats().requests("/v1/audio/speech"), 2, "unknown paths share one count");
    }
}
