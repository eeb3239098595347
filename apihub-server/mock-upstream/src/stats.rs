//! What the mock saw: requests counted per endpoint, and the last request kept whole.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use apihub_core::usage::{Dialect, Endpoint};
use axum::body::Bytes;
use http::request::Parts;
use http::{HeaderMap, Method, Uri};

/// What a request was routed to, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// One of the endpoints whose usage the gateway reads.
    Api(Endpoint),
    /// `GET /v1/models`.
    Models,
    /// Any other path.
    Unknown,
}

const ROUTES: usize = 10;

impl Route {
    /// The route of a request path; its query is ignored, and Gemini paths count per method
    /// whatever the model.
    pub(super) fn of_path(path: &str) -> Route {
        if path.split_once('?').map_or(path, |(path, _)| path) == "/v1/models" {
            return Route::Models;
        }
        Endpoint::from_path(path).map_or(Route::Unknown, Route::Api)
    }

    /// The dialect its answers and errors speak; OpenAI's for paths that name none.
    pub(super) fn dialect(self) -> Dialect {
        match self {
            Route::Api(endpoint) => endpoint.dialect(),
            Route::Models | Route::Unknown => Dialect::OpenAi,
        }
    }

    fn slot(self) -> usize {
        match self {
            Route::Api(Endpoint::ChatCompletions) => 0,
            Route::Api(Endpoint::Completions) => 1,
            Route::Api(Endpoint::Embeddings) => 2,
            Route::Api(Endpoint::Responses) => 3,
            Route::Api(Endpoint::ImageGenerations) => 4,
            Route::Api(Endpoint::Messages) => 5,
            Route::Api(Endpoint::GenerateContent) => 6,
            Route::Api(Endpoint::StreamGenerateContent) => 7,
            Route::Models => 8,
            Route::Unknown => 9,
        }
    }
}

/// Counts of the requests a mock received, and the last one; a cheap handle to clone.
///
/// Every request is counted when it arrives, before any check: refused, failed and hanging ones
/// too.
#[derive(Debug, Clone, Default)]
pub struct MockStats {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    total: AtomicU64,
    per_route: [AtomicU64; ROUTES],
    last: Mutex<Option<RecordedRequest>>,
}

/// A request as the mock received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Its method.
    pub method: Method,
    /// Its path and query.
    pub uri: Uri,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

impl RecordedRequest {
    /// A header's value, when present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The body parsed as JSON; `None` when it is not JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

impl MockStats {
    /// Every request received.
    pub fn total(&self) -> u64 {
        self.inner.total.load(Ordering::Relaxed)
    }

    /// The requests received for the endpoint `path` names, such as `"/v1/chat/completions"`.
    /// The query is ignored; Gemini requests count per method whatever the model
    /// (`/v1beta/models/any:generateContent`), and paths that name no endpoint share one count.
    pub fn requests(&self, path: &str) -> u64 {
        self.inner.per_route[Route::of_path(path).slot()].load(Ordering::Relaxed)
    }

    /// The last request received, when [`MockConfig::record_requests`](super::MockConfig) is on.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.inner.last.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Counts a request to `route`; returns its sequence number, from 0.
    pub(super) fn count(&self, route: Route) -> u64 {
        self.inner.per_route[route.slot()].fetch_add(1, Ordering::Relaxed);
        self.inner.total.fetch_add(1, Ordering::Relaxed)
    }

    /// Keeps a request as the last one.
    pub(super) fn record(&self, parts: &Parts, body: &Bytes) {
        let request = RecordedRequest {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            body: body.clone(),
        };
        *self.inner.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(request);
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::super::tests::{open_mock, post, send, start};
    use super::super::{MockConfig, header};
    use super::*;

    #[test]
    fn paths_map_to_routes() {
        assert_eq!(Route::of_path("/v1/models?limit=3"), Route::Models);
        assert_eq!(Route::of_path("/v1/messages"), Route::Api(Endpoint::Messages));
        assert_eq!(
            Route::of_path("/v1/models/gemini-2.5-pro:streamGenerateContent?alt=sse"),
            Route::Api(Endpoint::StreamGenerateContent)
        );
        assert_eq!(Route::of_path("/v1/models/gpt-4o"), Route::Unknown);
        let slots: std::collections::HashSet<usize> = [
            Endpoint::ChatCompletions,
            Endpoint::Completions,
            Endpoint::Embeddings,
            Endpoint::Responses,
            Endpoint::ImageGenerations,
            Endpoint::Messages,
            Endpoint::GenerateContent,
            Endpoint::StreamGenerateContent,
        ]
        .map(|e| Route::Api(e).slot())
        .into_iter()
        .chain([Route::Models.slot(), Route::Unknown.slot()])
        .collect();
        assert_eq!(slots, (0..ROUTES).collect());
    }

    #[tokio::test]
    async fn requests_are_counted_per_endpoint_even_when_refused() {
        let mock = start(MockConfig { api_key: Some("sk-up".into()), ..MockConfig::default() }).await;
        let chat = r#"{"model":"m","messages":[]}"#;
        for _ in 0..3 {
            assert_eq!(
                post(&mock, "/v1/chat/completions", &[("authorization", "Bearer sk-up")], chat).await.status,
                200
            );
        }
        assert_eq!(post(&mock, "/v1/chat/completions", &[], chat).await.status, StatusCode::UNAUTHORIZED);
        let failed = post(&mock, "/v1/messages", &[("x-api-key", "sk-up"), (header::STATUS, "500")], chat).await;
        assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
        let gemini = [("x-goog-api-key", "sk-up")];
        post(&mock, "/v1beta/models/a:generateContent", &gemini, "{}").await;
        post(&mock, "/v1beta/models/b:generateContent", &gemini, "{}").await;
        send(&mock, http::Method::GET, "/v1/models", &[("authorization", "Bearer sk-up")], "").await;

        let stats = mock.stats();
        assert_eq!(stats.requests("/v1/chat/completions"), 4);
        assert_eq!(stats.requests("/v1/messages"), 1);
        assert_eq!(stats.requests("/v1beta/models/any:generateContent"), 2);
        assert_eq!(stats.requests("/v1beta/models/any:streamGenerateContent"), 0);
        assert_eq!(stats.requests("/v1/models"), 1);
        assert_eq!(stats.total(), 8);
    }

    #[tokio::test]
    async fn the_last_request_is_kept_whole() {
        let mock = open_mock().await;
        assert!(mock.stats().last_request().is_none());
        let body = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
        post(&mock, "/v1/chat/completions?x=1", &[("authorization", "Bearer client-key")], body).await;
        let seen = mock.stats().last_request().unwrap();
        assert_eq!((seen.method.as_str(), seen.uri.to_string().as_str()), ("POST", "/v1/chat/completions?x=1"));
        assert_eq!(seen.header("authorization"), Some("Bearer client-key"));
        assert_eq!(seen.header("x-api-key"), None);
        assert_eq!(&seen.body[..], body.as_bytes());
        assert_eq!(seen.json().unwrap()["stream_options"]["include_usage"], true);
    }

    #[tokio::test]
    async fn recording_can_be_turned_off() {
        let mock = start(MockConfig { record_requests: false, ..MockConfig::default() }).await;
        post(&mock, "/v1/chat/completions", &[], r#"{"model":"m"}"#).await;
        assert_eq!(mock.stats().total(), 1);
        assert!(mock.stats().last_request().is_none());
    }
}
