//! Per-key rate limits: requests per minute and per day.
//!
//! Windows are fixed and aligned to the clock (each UTC minute, each UTC day), so a limit of N
//! admits exactly N requests per window however many arrive at once: the check and the increment
//! are one atomic step. A refused request gets a 429 with `Retry-After`; every answer carries
//! `x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests` and
//! `x-ratelimit-reset-requests` for the tighter window. The layer runs after key authentication:
//! a request without an authenticated key is refused (401) and creates no state.
//!
//! ```
//! use std::sync::Arc;
//! use apihub_tower::clock::ManualClock;
//! use apihub_tower::rate_limit::{LocalRateLimiter, RateLimitLayer};
//!
//! let limiter = Arc::new(LocalRateLimiter::new(Arc::new(ManualClock::at(0))));
//! let _layer = RateLimitLayer::new(limiter);
//! ```

mod layer;
mod limiter;
mod service;

pub use layer::RateLimitLayer;
pub use limiter::{Allowance, Decision, Limits, LocalRateLimiter, RateLimiter, Window, Windows};
pub use service::RateLimit;
