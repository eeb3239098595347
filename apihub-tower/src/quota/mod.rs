//! Quota: reads the request once (model, stream flag, output cap) and refuses what the
//! authenticated key may not do, before anything reaches the upstream or moves a counter.
//!
//! The body is buffered (up to a limit: 413 beyond it) and parsed into a
//! [`RequestInfo`](apihub_core::usage::RequestInfo), which goes into the request's extensions
//! with the raw bytes ([`BufferedBody`]) for the billing layer. Refusals: a request without an
//! authenticated key (401, see [`AuthenticatedKey`](crate::context::AuthenticatedKey)); a path
//! the [extractor](crate::extract) does not meter (404 `unknown_url`: nothing unmetered is
//! forwarded); (403) a model not on the key's allow-list, an expired key, a key whose
//! `remaining_calls`, `token_limit` or `quota_limit` is used up. These are fast checks against the key as authenticated; the billing layer's
//! reservation enforces the same limits atomically.
//!
//! ```
//! use apihub_tower::quota::QuotaLayer;
//! let _layer = QuotaLayer::new(16 * 1024 * 1024);
//! ```

mod layer;
mod service;

pub use layer::QuotaLayer;
pub(crate) use service::key_limit_refusal;
pub use service::{BufferedBody, Quota};
