//! Per-key rate limits: requests per minute and per day.
//!
//! Windows are fixed and aligned to the clock (each UTC minute, each UTC day), so a limit of N
//! admits exactly N requests per window however many arrive at once: the check and the increment
//! are one atomic step. A refused request gets a 429 with `Retry-After`; every answer carries
//! `x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests` and
//! `x-ratelimit-reset-requests` for the tighter window. Admission counts a request right after
//! its key is authenticated, before its body is read, so a key without limits creates no state
//! and a refusal costs nothing more.
//!
//! ```
//! use std::sync::Arc;
//! use apihub_tower::admission::AdmissionLayer;
//! use apihub_tower::auth::KeyCache;
//! use apihub_tower::clock::ManualClock;
//! use apihub_tower::memory::MemoryStore;
//! use apihub_tower::rate_limit::LocalRateLimiter;
//!
//! let limiter = Arc::new(LocalRateLimiter::new(Arc::new(ManualClock::at(0))));
//! let cache = Arc::new(KeyCache::new(Arc::new(MemoryStore::new())));
//! let _admission = AdmissionLayer::new(cache).rate_limiter(limiter);
//! ```

mod headers;
mod limiter;

pub(crate) use headers::{allowance_headers, limited};
pub use limiter::{Allowance, Decision, Limits, LocalRateLimiter, RateLimiter, Window, Windows};
