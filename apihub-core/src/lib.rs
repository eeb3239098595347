//! The pure domain of APIHub: money, discounts, API keys and their policies, ledger math and the
//! storage traits. No HTTP server and no SQL live here.
//!
//! ```
//! use apihub_core::{apply_discounts, DiscountRate, Money};
//!
//! let raw = Money::parse("1.25").unwrap();
//! let charged = apply_discounts(raw, DiscountRate::parse("0.8").unwrap(), DiscountRate::FULL_PRICE);
//! assert_eq!(charged.to_string(), "1");
//! ```
#![warn(missing_docs, missing_debug_implementations)]

pub mod billing;
pub mod budget;
pub mod channel;
pub mod credit;
pub mod decimal;
pub mod discount;
pub mod key;
pub mod ledger;
pub mod lookup;
pub mod money;
pub mod policy;
pub mod pricing;
pub mod recharge;
pub mod redemption;
pub mod request_log;
pub mod route;
pub mod stats;
pub mod store;
pub mod usage;
pub mod user;

/// The attribute the storage traits are written with; implement them under `#[async_trait]`
/// without depending on the `async-trait` crate yourself.
pub use async_trait::async_trait;
pub use discount::{DiscountRate, apply_discounts};
pub use money::Money;

/// The crate README's example, compiled and run as a doctest so it cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
