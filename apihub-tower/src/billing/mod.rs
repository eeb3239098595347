//! Billing: hold what a request is expected to cost, forward it, settle the exact charge.
//!
//! For each authenticated request to a metered endpoint:
//! 1. the model's price comes from the [`PriceBook`] (a model with no price is refused, never
//!    served for free);
//! 2. the hold is what the request is expected to cost — the prompt estimate (bytes ÷ 4 tokens)
//!    plus the output cap (`max_tokens` and friends, or [`BillingConfig::default_output_cap`]) —
//!    with the user's and key's discounts applied, rounded once
//!    ([`max_charge`](apihub_core::pricing::max_charge)). It is reserved atomically against the
//!    balance and the key's quotas: 402 `insufficient_quota` (answered in the route's dialect by
//!    admission: a 429 for OpenAI's, see [`crate::dialect`]) or 403 `key_quota_exceeded` when it
//!    does not fit, and nothing is forwarded;
//! 3. the response is passed through chunk by chunk while a [`meter`] reads its usage (JSON
//!    `usage`, or the dialect's SSE events; the SSE body of an endpoint whose events no dialect
//!    reader knows, such as a per-call API's, is read whole by the extractor, like JSON);
//! 4. when the body ends the charge — `cost(price, usage) × user rate × key rate`, rounded once
//!    ([`charge`](apihub_core::pricing::charge)) — is settled, all of it even above the hold (the
//!    excess is the record's `overage`), and a usage record goes to the [`UsageSink`]. A
//!    settlement the store cannot write is retried until it is ([`SettlementBacklog`]), and the
//!    holds a stopped process left open are freed by [`sweep_stale_holds`];
//! 5. every forwarded request's response carries its request id ([`REQUEST_ID`]). A body that
//!    is not an event stream (JSON) is read, and settled, before its headers go out, which then carry the charge ([`COST`]) and, where the store knows it without a
//!    round trip, the balance after it ([`BALANCE`]); one larger than
//!    [`BillingConfig::max_metered_body`] goes out as it comes, without them.
//!
//! Billing fails closed: a request without an authenticated key (401, see
//! [`AuthenticatedKey`](crate::context::AuthenticatedKey)) or that admission did not read
//! (503 `gateway_misconfigured`: admission reads no requests) is refused, logged as an error,
//! and never forwarded; and billing takes only the body admission forwards
//! ([`ForwardedBody`](crate::body::ForwardedBody)), so no assembly of the two serves requests
//! unbilled. So is a model with no price (404 `model_not_found`) or a request that names none
//! (400 `model_required`).
//!
//! An upstream error status, a connection failure or a timeout releases the hold (502/504 for the
//! latter two) and costs nothing. A stream that ends before any output costs nothing. When the
//! upstream reports no usage, the charge is estimated (prompt bytes ÷ 4 plus output bytes ÷ 4
//! tokens, where a stream's output bytes are its generated text, reasoning and tool-call
//! arguments without the SSE and JSON around them, and a JSON body's are the whole body, plus,
//! for an image endpoint read whole, the images asked for),
//! recorded as `usage_source = estimated`; so is the output
//! of a stream cut short after reporting only part of its usage (the input, an early output
//! count), never below what was reported. The [`Reservation`] itself releases on drop, so a
//! client disconnect or a panic frees its hold too.
//!
//! Two limits keep a misbehaving upstream from costing memory or corrupting the accounts:
//! - an SSE event longer than [`MAX_EVENT_BYTES`](apihub_core::usage::MAX_EVENT_BYTES) (1 MiB; a
//!   200 MB `data:` line, say) is passed through to the client unchanged but not parsed, so the
//!   meter never holds more than that limit per stream. The bill is then `usage_source =
//!   estimated`: its bytes count as output in the estimate above, unless the upstream went on to
//!   report its final usage and end the stream, whose counts are then billed as reported;
//! - a reported count above [`MAX_REPORTED_TOKENS`](apihub_core::usage::MAX_REPORTED_TOKENS) (10⁹)
//!   is billed at that maximum, and logged as a warning with the report as it came.
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::Arc;
//! use apihub_core::pricing::ModelPrice;
//! use apihub_tower::billing::{BillingConfig, BillingLayer, DiscardUsage};
//! use apihub_tower::memory::MemoryStore;
//!
//! let prices: HashMap<String, ModelPrice> = HashMap::from([("gpt-4o-mini".into(), ModelPrice::default())]);
//! let _layer = BillingLayer::new(Arc::new(MemoryStore::new()), Arc::new(prices), Arc::new(DiscardUsage), BillingConfig::default());
//! ```

mod answer;
mod backlog;
mod body;
mod future;
mod layer;
pub mod meter;
mod plan;
mod refusal;
mod reservation;
mod reserve;
mod service;
mod settle;
mod sweeper;

use std::collections::HashMap;

use apihub_core::pricing::ModelPrice;
use apihub_core::store::UsageRecord;

pub use answer::{BALANCE, COST, REQUEST_ID};
pub use backlog::SettlementBacklog;
pub use body::MeteredBody;
pub use future::ResponseFuture;
pub use layer::BillingLayer;
pub use reservation::Reservation;
pub use service::Billing;
pub use sweeper::sweep_stale_holds;

/// Where prices come from.
pub trait PriceBook: Send + Sync {
    /// The price of `model`, or `None` when it may not be served.
    fn price(&self, model: &str) -> Option<ModelPrice>;
}

impl PriceBook for HashMap<String, ModelPrice> {
    fn price(&self, model: &str) -> Option<ModelPrice> {
        self.get(model).copied()
    }
}

/// Where usage records go (a server batches them into its usage log).
pub trait UsageSink: Send + Sync {
    /// Takes one record; must not block.
    fn record(&self, record: UsageRecord);

    /// Whether the sink holds as many records as it may (its writer is behind, its store away).
    /// While it is full no new hold is taken, so no request is forwarded without room for its
    /// record. Never full by default.
    fn is_full(&self) -> bool {
        false
    }
}

/// A sink that drops records.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiscardUsage;

impl UsageSink for DiscardUsage {
    fn record(&self, _record: UsageRecord) {}
}

/// Billing settings: start from [`BillingConfig::default`] and change what differs.
///
/// ```
/// use apihub_tower::billing::BillingConfig;
///
/// let config = BillingConfig::default().with_default_output_cap(1024);
/// assert_eq!(config.default_output_cap, 1024);
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct BillingConfig {
    /// Output tokens (or images) held for a request that sets no cap.
    pub default_output_cap: u64,
    /// Most bytes of a non-streamed response kept to read its usage.
    pub max_metered_body: usize,
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig { default_output_cap: 4096, max_metered_body: 16 * 1024 * 1024 }
    }
}

impl BillingConfig {
    /// Holds `tokens` output tokens (or images) for a request that sets no cap.
    pub fn with_default_output_cap(mut self, tokens: u64) -> Self {
        self.default_output_cap = tokens;
        self
    }

    /// Keeps at most `bytes` of a non-streamed response to read its usage.
    pub fn with_max_metered_body(mut self, bytes: usize) -> Self {
        self.max_metered_body = bytes;
        self
    }
}
