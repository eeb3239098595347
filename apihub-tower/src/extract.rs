//! How the layers read what a request asks for and what a response used.
//!
//! The default, [`LlmExtractor`], understands the OpenAI, Anthropic and Gemini dialects (see
//! [`apihub_core::usage`]) at their standard paths (`/v1/chat/completions`, `/v1/messages`,
//! `/v1beta/models/{model}:generateContent`…). A stack mounted elsewhere declares its metered
//! routes ([`MeteredRoutes`], or [`GatewayBuilder::meter`](crate::GatewayBuilder::meter)). A
//! service that meters another kind of API implements [`UsageExtractor`] for it and hands it to
//! the [`GatewayBuilder`](crate::GatewayBuilder).
//!
//! The stack fails closed: a request whose path the extractor does not recognise is refused with
//! a 404 `unknown_url` from admission, never forwarded unmetered. Routes that must stay free
//! (a model list, a health check) are served outside the stack.
//!
//! ```
//! use apihub_core::usage::{Endpoint, RequestInfo, Usage};
//! use apihub_tower::extract::UsageExtractor;
//!
//! /// A render API billed per call: one "image" per request, whatever the body says.
//! struct PerCall;
//!
//! impl UsageExtractor for PerCall {
//!     fn request(&self, path: &str, _body: &[u8]) -> Option<RequestInfo> {
//!         (path == "/render").then(|| RequestInfo {
//!             endpoint: Endpoint::ImageGenerations,
//!             model: Some("renderer".into()),
//!             stream: false,
//!             output_cap: Some(1),
//!             prompt_estimate: 0,
//!         })
//!     }
//!
//!     fn response(&self, _info: &RequestInfo, _body: &[u8]) -> Usage {
//!         Usage { images: Some(1), ..Usage::default() }
//!     }
//! }
//! assert!(PerCall.request("/render", b"{}").is_some());
//! ```

use std::sync::Arc;

use apihub_core::usage::{Dialect, Endpoint, RequestInfo, Usage};

/// Reads requests and responses for the quota and billing layers.
pub trait UsageExtractor: Send + Sync + 'static {
    /// What a request to `path` (with its query string) with `body` asks for; `None` when `path`
    /// is not a metered route, which the stack refuses (404) rather than forward for free.
    fn request(&self, path: &str, body: &[u8]) -> Option<RequestInfo>;

    /// The usage a complete response body reports (empty when it reports none; the billing layer
    /// then estimates). Every response comes here whole, but an SSE stream from an endpoint whose
    /// events the dialect readers know (chat, completions, responses, messages, Gemini), which
    /// [`StreamUsage`](apihub_core::usage::StreamUsage) reads as it passes.
    fn response(&self, info: &RequestInfo, body: &[u8]) -> Usage;

    /// Whether the upstream's `status` is a success, billed; any other status passes through to
    /// the client and costs nothing (default: any 2xx).
    fn succeeded(&self, _info: &RequestInfo, status: http::StatusCode) -> bool {
        status.is_success()
    }

    /// The dialect refusals to a request for `path` are answered in (default: the standard
    /// endpoint's at that path, or by its prefix; see [`dialect::of`](crate::dialect::of)).
    fn dialect(&self, path: &str) -> Dialect {
        crate::dialect::of(path, Endpoint::from_path(path))
    }
}

/// The LLM dialects: OpenAI, Anthropic and Gemini.
#[derive(Debug, Clone, Copy, Default)]
pub struct LlmExtractor;

impl UsageExtractor for LlmExtractor {
    fn request(&self, path: &str, body: &[u8]) -> Option<RequestInfo> {
        RequestInfo::read(path, body)
    }

    fn response(&self, info: &RequestInfo, body: &[u8]) -> Usage {
        Usage::from_response(info.endpoint, body)
    }
}

/// Declared metered routes: each path is read as one [`Endpoint`] (and so in its dialect), by an
/// inner extractor ([`LlmExtractor`] unless told otherwise) that sees the endpoint's standard
/// path. Only declared paths are metered; any other is refused.
///
/// A path is matched exactly, without its query string (which is passed on): `/llm/chat` is not
/// `/llm/chat/`. For the Gemini endpoints, whose model is in the path, the declared path names
/// that segment `{model}` (a segment without `/`); a Gemini route without it names no model,
/// and its requests are refused.
///
/// ```
/// use apihub_core::usage::Endpoint;
/// use apihub_tower::extract::{MeteredRoutes, UsageExtractor};
///
/// let routes = MeteredRoutes::default()
///     .route("/llm/chat", Endpoint::ChatCompletions)
///     .route("/llm/gemini/{model}:generateContent", Endpoint::GenerateContent);
/// let chat = routes.request("/llm/chat", br#"{"model":"gpt-4o-mini"}"#).unwrap();
/// assert_eq!((chat.endpoint, chat.model.as_deref()), (Endpoint::ChatCompletions, Some("gpt-4o-mini")));
/// let gemini = routes.request("/llm/gemini/gemini-2.5-flash:generateContent?alt=json", b"{}").unwrap();
/// assert_eq!(gemini.model.as_deref(), Some("gemini-2.5-flash"));
/// // Undeclared paths, the standard ones included, are not metered routes.
/// assert!(routes.request("/llm/chat/", b"{}").is_none());
/// assert!(routes.request("/v1/chat/completions", b"{}").is_none());
/// ```
#[derive(Clone)]
pub struct MeteredRoutes {
    routes: Vec<(String, Endpoint)>,
    inner: Arc<dyn UsageExtractor>,
}

impl Default for MeteredRoutes {
    fn default() -> Self {
        MeteredRoutes::new(Arc::new(LlmExtractor))
    }
}

impl std::fmt::Debug for MeteredRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredRoutes").field("routes", &self.routes).finish_non_exhaustive()
    }
}

impl MeteredRoutes {
    /// No routes yet, read by `inner` once declared.
    pub fn new(inner: Arc<dyn UsageExtractor>) -> Self {
        MeteredRoutes { routes: Vec::new(), inner }
    }

    /// Meters `path` as `endpoint`.
    pub fn route(mut self, path: impl Into<String>, endpoint: Endpoint) -> Self {
        self.routes.push((path.into(), endpoint));
        self
    }

    /// Whether no route is declared (then nothing is metered, and every request is refused).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The declared route `bare` (a path without its query string) matches: the model segment
    /// (empty for a route without one) and the endpoint.
    fn matched<'a>(&self, bare: &'a str) -> Option<(&'a str, Endpoint)> {
        self.routes.iter().find_map(|(pattern, endpoint)| {
            let model = match pattern.split_once("{model}") {
                None => (pattern == bare).then_some(""),
                Some((prefix, suffix)) => bare
                    .strip_prefix(prefix)
                    .and_then(|rest| rest.strip_suffix(suffix))
                    .filter(|model| !model.is_empty() && !model.contains('/')),
            }?;
            Some((model, *endpoint))
        })
    }

    /// The standard path of the route `path` matches, with `path`'s query string.
    fn standard_path(&self, path: &str) -> Option<String> {
        let (bare, query) = path.split_once('?').map_or((path, None), |(bare, query)| (bare, Some(query)));
        let (model, endpoint) = self.matched(bare)?;
        let mut standard = match endpoint {
            Endpoint::ChatCompletions => "/v1/chat/completions".to_owned(),
            Endpoint::Completions => "/v1/completions".to_owned(),
            Endpoint::Embeddings => "/v1/embeddings".to_owned(),
            Endpoint::Responses => "/v1/responses".to_owned(),
            Endpoint::ImageGenerations => "/v1/images/generations".to_owned(),
            Endpoint::Messages => "/v1/messages".to_owned(),
            Endpoint::GenerateContent => format!("/v1beta/models/{model}:generateContent"),
            Endpoint::StreamGenerateContent => format!("/v1beta/models/{model}:streamGenerateContent"),
        };
        if let Some(query) = query {
            standard.push('?');
            standard.push_str(query);
        }
        Some(standard)
    }
}

impl UsageExtractor for MeteredRoutes {
    fn request(&self, path: &str, body: &[u8]) -> Option<RequestInfo> {
        self.inner.request(&self.standard_path(path)?, body)
    }

    fn response(&self, info: &RequestInfo, body: &[u8]) -> Usage {
        self.inner.response(info, body)
    }

    fn succeeded(&self, info: &RequestInfo, status: http::StatusCode) -> bool {
        self.inner.succeeded(info, status)
    }

    fn dialect(&self, path: &str) -> Dialect {
        let bare = path.split_once('?').map_or(path, |(bare, _)| bare);
        self.matched(bare).map_or_else(|| self.inner.dialect(path), |(_, endpoint)| endpoint.dialect())
    }
}
