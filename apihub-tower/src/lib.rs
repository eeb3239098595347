//! Tower layers for an LLM API-key gateway, generic over `apihub-core`'s storage traits:
//!
//! - [`auth`]: API-key authentication (`ahg_` keys from any SDK's header), with a short cache;
//! - [`rate_limit`]: per-key requests per minute and per day, exact under concurrency;
//! - [`quota`]: reads the request (model, output cap) and refuses what the key may not do;
//! - [`billing`]: reserves the most a request can cost, forwards, and settles the exact charge
//!   from the usage the upstream reports, with user and key discounts.
//!
//! [`memory`] holds in-memory stores, so the stack runs with no database, and [`GatewayBuilder`]
//! assembles the layers in their documented order.
//!
//! The stack fails closed: nothing reaches the upstream unbilled. A path that is not a metered
//! route is refused (404), as is an unpriced model; the metered routes are the dialects'
//! standard paths, or those declared with [`GatewayBuilder::meter`]. Each layer after key
//! authentication refuses a request without an authenticated key, and billing one the quota layer
//! did not read, so layers assembled in another order refuse requests rather than serve them free.
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

pub mod auth;
pub mod billing;
pub mod body;
mod builder;
pub mod clock;
pub mod context;
pub mod extract;
pub mod memory;
pub mod quota;
pub mod rate_limit;
#[cfg(feature = "testkit")]
pub mod testkit;

/// The attribute the store traits (here and in `apihub-core`) are written with; implement them
/// under `#[async_trait]` without depending on the `async-trait` crate yourself.
pub use async_trait::async_trait;
pub use body::{BoxError, GatewayBody, GatewayError};
pub use builder::{GatewayBuilder, GatewayLayer};

/// The crate README's example, compiled and run as a doctest so it cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
