//! Start-up: open storage, make sure an administrator exists, build the state.

use std::sync::Arc;
use std::time::Duration;

use apihub_core::recharge::RechargeStore;
use apihub_core::redemption::RedemptionStore;
use apihub_core::request_log::RequestLogStore;
use apihub_core::route::RouteStore;
use apihub_core::stats::StatsStore;
use apihub_core::store::Store;
use apihub_core::user::{NewUser, Role, validate_password, validate_username};
use apihub_tower::auth::KeyCache;
use apihub_tower::clock::SystemClock;
use apihub_tower::rate_limit::{LocalRateLimiter, RateLimiter};
use rand::Rng;
use rand::distr::Alphanumeric;

use crate::auth::jwt::JwtKeys;
use crate::auth::password::{self, PasswordPool};
use crate::auth::throttle::LoginThrottle;
use crate::config::Config;
use crate::db::leases::Nudge;
use crate::db::{Db, PoolOptions, SqlStore};
use crate::metered::{RouteTable, StackParts};
use crate::metrics::Metrics;
use crate::proxy::prices::PriceCache;
use crate::proxy::usage_log::UsageLog;
use crate::scale::{Invalidator, RedisRateLimiter, SharedRedis};
use crate::state::AppState;

/// A hold older than this is assumed orphaned (its process died) and released by the sweeper.
/// It must outlast the longest stream a client may keep open.
pub const STALE_HOLD: Duration = Duration::from_secs(2 * 60 * 60);

/// Opens the database (migrating it) and, with `REDIS_URL`, Redis, and builds the shared state,
/// including the usage log writer. Fails when either does not answer.
pub async fn init_state(config: Config) -> anyhow::Result<AppState> {
    let options = PoolOptions {
        max_connections: config.db_max_connections,
        budget_zone: config.budget_zone,
        ..PoolOptions::default()
    };
    let db = Db::connect(&config.database_url, &options).await?;
    let sql = Arc::new(SqlStore::new(db.clone()));
    let store: Arc<dyn Store> = sql.clone();
    let stats: Arc<dyn StatsStore> = sql.clone();
    let request_log: Arc<dyn RequestLogStore> = sql.clone();
    let redemption: Arc<dyn RedemptionStore> = sql.clone();
    let recharge: Arc<dyn RechargeStore> = sql.clone();
    let budgets: Arc<dyn apihub_core::budget::BudgetStore> = sql.clone();
    let jwt = Arc::new(JwtKeys::new(config.secret_key.expose().as_bytes(), config.access_token_expire_minutes));
    let key_cache = Arc::new(KeyCache::new(store.clone()));
    let prices = Arc::new(PriceCache::load(store.clone()).await?);
    let redis = match &config.redis {
        Some(redis_config) => {
            let redis = SharedRedis::connect(redis_config).await?;
            tracing::info!(address = %redis.address(), prefix = redis.prefix(), "rate limits and invalidations shared through Redis");
            Some(redis)
        }
        None => None,
    };
    let rate_limiter: Arc<dyn RateLimiter> = match &redis {
        Some(redis) => Arc::new(RedisRateLimiter::new(redis.clone(), Arc::new(SystemClock))),
        None => Arc::new(LocalRateLimiter::new(Arc::new(SystemClock))),
    };
    let metrics = Arc::new(Metrics::default());
    let usage_log = UsageLog::start(store.clone(), db.is_sqlite(), config.usage_log_max_queued);
    let settlements = Arc::<apihub_tower::billing::SettlementBacklog>::default();
    let routes: Arc<dyn RouteStore> = sql.clone();
    let parts = StackParts {
        store: store.clone(),
        key_cache: key_cache.clone(),
        rate_limiter: rate_limiter.clone(),
        usage_log: Arc::new(usage_log.clone()),
        metrics: metrics.clone(),
        settlements: settlements.clone(),
        max_body_bytes: config.proxy_max_body_bytes,
        idle_timeout: Duration::from_secs(config.upstream_idle_timeout_secs),
    };
    let route_table = Arc::new(RouteTable::load(routes.clone(), parts).await?);
    let (upstream, channels) = crate::proxy::upstream_service(&config, sql.clone()).await?;
    let invalidator = match redis {
        Some(redis) => Invalidator::shared(key_cache.clone(), prices.clone(), redis),
        None => Invalidator::local(key_cache.clone(), prices.clone()),
    }
    .with_routes(route_table.clone())
    .with_channels(channels.clone())
    .with_leases(sql.leases().cloned());
    // With Redis, a gateway refused credit that other gateways lease asks them for it.
    if let (Some(leases), Some(_)) = (sql.leases(), invalidator.channel()) {
        let (nudge, mut nudged) = tokio::sync::mpsc::channel(64);
        leases.nudge_with(nudge);
        let invalidator = invalidator.clone();
        tokio::spawn(async move {
            while let Some(nudge) = nudged.recv().await {
                let what = match nudge {
                    Nudge::User(user_id) => crate::scale::Invalidation::Leases(user_id),
                    Nudge::Key(public_id) => crate::scale::Invalidation::Key(public_id),
                };
                let _ = invalidator.invalidate(what).await;
            }
        });
    }
    let address_throttle = Arc::new(LoginThrottle::per_address(config.login_limit_per_address));
    Ok(AppState {
        store,
        stats,
        request_log,
        redemption,
        recharge,
        budgets,
        routes,
        route_table,
        db,
        jwt,
        config: Arc::new(config),
        key_cache,
        invalidator,
        rate_limiter,
        login_throttle: Arc::default(),
        address_throttle,
        passwords: PasswordPool::for_this_machine(),
        metrics,
        prices,
        usage_log,
        upstream,
        channels,
        settlements,
        draining: Arc::default(),
    })
}

/// Background upkeep for a serving gateway: releases orphaned holds, reloads prices, metered
/// routes and channels every few seconds (the bound for a change made on another node without
/// Redis), with `USAGE_LOG_RETENTION_DAYS` prunes expired usage rows and, with Redis, applies other
/// nodes' invalidations at once. Abort the handles at shutdown.
pub fn spawn_upkeep(state: &AppState) -> Vec<tokio::task::JoinHandle<()>> {
    let sweeper = tokio::spawn(apihub_tower::billing::sweep_stale_holds(
        state.store.clone(),
        Duration::from_secs(60),
        STALE_HOLD,
    ));
    let (prices, routes, channels) = (state.prices.clone(), state.route_table.clone(), state.channels.clone());
    let refresher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            if let Err(error) = prices.reload().await {
                tracing::warn!(%error, "reloading model prices failed");
            }
            if let Err(error) = routes.reload().await {
                tracing::warn!(%error, "reloading metered routes failed");
            }
            if let Err(error) = channels.reload().await {
                tracing::warn!(%error, "reloading channels failed");
            }
        }
    });
    let mut tasks = vec![sweeper, refresher];
    if state.config.channel_probe_secs > 0 {
        let (channels, every) = (state.channels.clone(), Duration::from_secs(state.config.channel_probe_secs));
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                channels.probe().await;
            }
        }));
    }
    if let Some(days) = state.config.usage_log_retention_days {
        tasks.push(crate::retention::spawn(state.request_log.clone(), days));
    }
    tasks.extend(state.invalidator.subscribe());
    tasks
}

/// What [`ensure_admin`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminBootstrap {
    /// An administrator existed; nothing changed.
    Existing,
    /// Created with the configured password.
    Created,
    /// Created with this generated password, which must be shown once.
    Generated(String),
}

/// Creates the first administrator from `ADMIN_*` when no administrator exists.
pub async fn ensure_admin(state: &AppState) -> anyhow::Result<AdminBootstrap> {
    if state.store.count_admins().await? > 0 {
        return Ok(AdminBootstrap::Existing);
    }
    let config = &state.config;
    let (password, generated) = match &config.admin_password {
        Some(p) => (p.expose().to_owned(), false),
        None => (rand::rng().sample_iter(Alphanumeric).take(20).map(char::from).collect::<String>(), true),
    };
    if let Err(error) =
        create_admin(state.store.as_ref(), &config.admin_username, &password, config.admin_email.clone()).await
    {
        // Another gateway starting at the same moment on the same database may have won the race.
        if state.store.count_admins().await? > 0 {
            return Ok(AdminBootstrap::Existing);
        }
        return Err(error);
    }
    Ok(if generated { AdminBootstrap::Generated(password) } else { AdminBootstrap::Created })
}

/// Creates an administrator account (used at first start and by `apihub admin create`).
pub async fn create_admin(
    store: &dyn Store,
    username: &str,
    password: &str,
    email: Option<String>,
) -> anyhow::Result<()> {
    validate_username(username).map_err(|e| anyhow::anyhow!("ADMIN_USERNAME: {e}"))?;
    validate_password(password).map_err(|e| anyhow::anyhow!("ADMIN_PASSWORD: {e}"))?;
    let password_hash = password::hash_blocking(password.to_owned()).await?;
    store.create_user(NewUser { username: username.to_owned(), email, password_hash, role: Role::Admin }).await?;
    Ok(())
}
