//! Tower layers for an LLM API-key gateway, generic over `apihub-core`'s storage traits:
//!
//! - [`admission`]: one middleware that admits a request or refuses it, in order: the key
//!   ([`auth`]: any SDK's header, a pluggable key format, a one-method [`KeyLookup`](auth::KeyLookup)
//!   behind a short cache), its rate limits ([`rate_limit`]: per minute and per day, exact under
//!   concurrency), and what the request asks for ([`quota`]: model, output cap);
//! - [`billing`]: reserves what a request is expected to cost, forwards it, and settles the exact
//!   charge from the usage the upstream reports, with user and key discounts.
//!
//! [`memory`] holds in-memory stores, so the stack runs with no database, and [`GatewayBuilder`]
//! assembles the two in their documented order. Billing answers an upstream failure itself (502,
//! or 504 for a timeout), so the whole stack is infallible and mounts in axum as it is; every
//! refusal is answered in the vendor shape of the request's route ([`dialect`]).
//!
//! The stack fails closed: nothing reaches the upstream unbilled. A path that is not a metered
//! route is refused (404), as is an unpriced model; the metered routes are the dialects'
//! standard paths, or those declared with [`GatewayBuilder::meter`]. Billing takes only the
//! request body admission forwards ([`ForwardedBody`]), and refuses a request without an
//! authenticated key or without what admission read of it, so it cannot be assembled to serve
//! requests free.
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::Arc;
//! use apihub_core::pricing::ModelPrice;
//! use apihub_core::usage::Endpoint;
//! use apihub_tower::GatewayBuilder;
//! use apihub_tower::memory::MemoryStore;
//!
//! let store = Arc::new(MemoryStore::new());
//! let prices = HashMap::from([("claude-sonnet-4".to_owned(), ModelPrice::default())]);
//! // An Anthropic upstream behind the app's own path.
//! let gateway = GatewayBuilder::new(store.clone(), store, Arc::new(prices))
//!     .meter("/api/llm/messages", Endpoint::Messages)
//!     .build();
//! # let _ = gateway;
//! ```
#![warn(missing_docs, missing_debug_implementations)]

pub mod admission;
pub mod auth;
pub mod billing;
pub mod body;
mod builder;
pub mod clock;
pub mod context;
pub mod dialect;
pub mod extract;
mod header_value;
pub mod log_sample;
pub mod memory;
pub mod quota;
pub mod rate_limit;
#[cfg(feature = "testkit")]
pub mod testkit;

/// The attribute the store traits (here and in `apihub-core`) are written with; implement them
/// under `#[async_trait]` without depending on the `async-trait` crate yourself.
pub use async_trait::async_trait;
pub use body::{BoxError, ForwardedBody, GatewayBody, GatewayError};
pub use builder::{GatewayBuilder, GatewayLayer};
/// Turns a closure into the upstream service (re-exported from `tower`, so that an application
/// needs no dependency of its own on it).
pub use tower::service_fn;

/// The crate README's example, compiled and run as a doctest so it cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
