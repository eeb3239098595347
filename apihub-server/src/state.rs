//! What every handler can reach.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use apihub_core::recharge::RechargeStore;
use apihub_core::redemption::RedemptionStore;
use apihub_core::request_log::RequestLogStore;
use apihub_core::route::RouteStore;
use apihub_core::stats::StatsStore;
use apihub_core::store::Store;
use apihub_tower::auth::KeyCache;
use apihub_tower::billing::SettlementBacklog;
use apihub_tower::rate_limit::RateLimiter;

use crate::auth::jwt::JwtKeys;
use crate::auth::password::PasswordPool;
use crate::auth::throttle::LoginThrottle;
use crate::config::Config;
use crate::db::Db;
use crate::metered::RouteTable;
use crate::metrics::Metrics;
use crate::proxy::UpstreamService;
use crate::proxy::prices::PriceCache;
use crate::proxy::usage_log::UsageLog;
use crate::scale::Invalidator;

/// Shared state: cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// All storage, behind core's traits.
    pub store: Arc<dyn Store>,
    /// Usage statistics, from the same storage.
    pub stats: Arc<dyn StatsStore>,
    /// The per-request log, from the same storage.
    pub request_log: Arc<dyn RequestLogStore>,
    /// Redemption codes, from the same storage.
    pub redemption: Arc<dyn RedemptionStore>,
    /// Online recharge orders, from the same storage.
    pub recharge: Arc<dyn RechargeStore>,
    /// Periodic budgets, from the same storage.
    pub budgets: Arc<dyn apihub_core::budget::BudgetStore>,
    /// Metered routes, from the same storage.
    pub routes: Arc<dyn RouteStore>,
    /// The metered routes being served; reloaded through `invalidator` after every change.
    pub route_table: Arc<RouteTable>,
    /// The pool, for readiness checks.
    pub db: Db,
    /// Session token keys.
    pub jwt: Arc<JwtKeys>,
    /// Settings.
    pub config: Arc<Config>,
    /// API-key lookups; invalidated (through `invalidator`) whenever a key or its owner changes.
    pub key_cache: Arc<KeyCache>,
    /// Refreshes `key_cache`, `prices` and `route_table` after a change, and with Redis every other node's too.
    pub invalidator: Invalidator,
    /// Per-key request counters: in process, or in Redis when shared by several gateways.
    pub rate_limiter: Arc<dyn RateLimiter>,
    /// Failed-login counters by username (in this process).
    pub login_throttle: Arc<LoginThrottle>,
    /// Failed-login counters by client address (in this process).
    pub address_throttle: Arc<LoginThrottle>,
    /// Password hashing: a few threads and a short queue, whatever the number of callers.
    pub passwords: PasswordPool,
    /// What `GET /metrics` reports.
    pub metrics: Arc<Metrics>,
    /// Model prices, as the billing layer reads them.
    pub prices: Arc<PriceCache>,
    /// The usage log writer.
    pub usage_log: UsageLog,
    /// The upstream client.
    pub upstream: UpstreamService,
    /// The upstream channels behind `upstream`, with their health.
    pub channels: Arc<crate::proxy::channels::ChannelTable>,
    /// Set when the gateway starts to shut down: `/readyz` answers 503 from then on.
    pub draining: Arc<AtomicBool>,
    /// Settlements the store could not write yet, retried until it can; drained at shutdown.
    pub settlements: Arc<SettlementBacklog>,
}
