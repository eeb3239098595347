//! Key authentication: reads an `ahg_` key from the request, checks it, and puts an
//! [`AuthenticatedKey`](crate::context::AuthenticatedKey) into the request's extensions.
//!
//! The key is read from `Authorization: Bearer` (OpenAI clients), `x-api-key` (Anthropic) or
//! `x-goog-api-key` / `?key=` (Gemini). Missing, malformed, unknown or wrong keys get a 401;
//! a key that is known but disabled, expired or owned by a disabled user gets a 403. The
//! rejection never reaches the inner service.
//!
//! ```
//! use std::sync::Arc;
//! use apihub_tower::auth::{KeyAuthLayer, KeyCache};
//! use apihub_tower::memory::MemoryStore;
//! use tower::ServiceBuilder;
//!
//! let cache = Arc::new(KeyCache::new(Arc::new(MemoryStore::new())));
//! let _stack = ServiceBuilder::new().layer(KeyAuthLayer::new(cache)).service(tower::service_fn(
//!     |_req: http::Request<String>| async { Ok::<_, std::convert::Infallible>(http::Response::new(String::new())) },
//! ));
//! ```

mod cache;
mod layer;
mod service;

pub use cache::{AuthStore, KeyCache, KeyEntry};
pub use layer::KeyAuthLayer;
pub use service::{KeyAuth, presented_key};
