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
#![warn(missing_docs)]

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

pub use builder::{GatewayBuilder, GatewayLayer};
