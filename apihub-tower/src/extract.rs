//! How the layers read what a request asks for and what a response used.
//!
//! The default, [`LlmExtractor`], understands the OpenAI, Anthropic and Gemini dialects (see
//! [`apihub_core::usage`]). A service that meters another kind of API implements
//! [`UsageExtractor`] for it and hands it to the [`GatewayBuilder`](crate::GatewayBuilder).
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

use apihub_core::usage::{RequestInfo, Usage};

/// Reads requests and responses for the quota and billing layers.
pub trait UsageExtractor: Send + Sync + 'static {
    /// What a request to `path` with `body` asks for; `None` leaves it unmetered.
    fn request(&self, path: &str, body: &[u8]) -> Option<RequestInfo>;

    /// The usage a complete, non-streamed response body reports (empty when it reports none;
    /// the billing layer then estimates).
    fn response(&self, info: &RequestInfo, body: &[u8]) -> Usage;
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
