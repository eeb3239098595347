//! Several gateways behind one load balancer: what they share besides PostgreSQL.
//!
//! Balances and quotas need nothing here: every hold is a conditional `UPDATE` in the shared
//! database. Two things live in each process, though, and Redis (`REDIS_URL`) makes them shared:
//!
//! - **Rate limits.** [`RedisRateLimiter`] counts each key's requests per minute and per day in
//!   Redis with one atomic script per check, so a limit of N admits N across all nodes.
//! - **Invalidation.** Each node caches key lookups for a second and model prices until reloaded.
//!   An [`Invalidator`] refreshes a changed key, user or the prices locally and publishes it on
//!   `{prefix}:invalidate`; every node runs [`Invalidator::subscribe`] and refreshes its own, at
//!   once. If a node's subscription drops, it reconnects with backoff, then clears its whole key
//!   cache and reloads prices, since it may have missed messages.
//!
//! Without Redis, limits are counted in process (each node admits up to N) and an invalidation
//! reaches only the node that made it: the key cache's 1 s TTL bounds how long another node may
//! serve a changed key, and prices are reloaded every 10 s.
//!
//! ```no_run
//! use std::sync::Arc;
//! use apihub_server::config::RedisConfig;
//! use apihub_server::scale::{RedisRateLimiter, SharedRedis};
//! use apihub_tower::clock::SystemClock;
//!
//! # async fn start() -> anyhow::Result<()> {
//! // Refuses (with the address it tried) when Redis does not answer.
//! let redis = SharedRedis::connect(&RedisConfig::new("redis://127.0.0.1:6379")).await?;
//! let _limiter = RedisRateLimiter::new(redis, Arc::new(SystemClock));
//! # Ok(())
//! # }
//! ```

mod invalidation;
mod redis_limiter;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use invalidation::{Invalidation, Invalidator};
pub use redis_limiter::RedisRateLimiter;

use crate::config::RedisConfig;

/// How long start-up waits for Redis before refusing to start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One Redis, shared by the rate limiter and the invalidator: a self-healing connection for
/// commands, and the client that opens subscriber connections. Cheap to clone.
#[derive(Clone)]
pub struct SharedRedis {
    client: redis::Client,
    connection: ConnectionManager,
    prefix: Arc<str>,
}

impl std::fmt::Debug for SharedRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRedis").field("address", &self.address()).field("prefix", &self.prefix).finish()
    }
}

impl SharedRedis {
    /// Connects and checks that Redis answers; an error says which address failed (never the
    /// password).
    pub async fn connect(config: &RedisConfig) -> anyhow::Result<SharedRedis> {
        let client = redis::Client::open(config.url.expose()).context("REDIS_URL is not a valid Redis URL")?;
        let address = client.get_connection_info().addr().to_string();
        // A command waits at most this long, so an unreachable Redis costs each rate-limit check
        // a bounded delay (the layer then admits the request) instead of hanging it.
        let settings = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let connection =
            tokio::time::timeout(CONNECT_TIMEOUT, ConnectionManager::new_with_config(client.clone(), settings))
                .await
                .map_err(|_| {
                    anyhow::anyhow!("Redis at {address} (REDIS_URL) did not answer within {CONNECT_TIMEOUT:?}")
                })?
                .with_context(|| format!("cannot connect to Redis at {address} (REDIS_URL)"))?;
        let redis = SharedRedis { client, connection, prefix: Arc::from(config.key_prefix.as_str()) };
        redis::cmd("PING")
            .query_async::<()>(&mut redis.connection())
            .await
            .with_context(|| format!("Redis at {address} (REDIS_URL) does not answer commands"))?;
        Ok(redis)
    }

    /// A handle on the command connection (it reconnects by itself).
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// What every key and channel name starts with (`REDIS_KEY_PREFIX`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `host:port` (or the socket path), for messages.
    pub fn address(&self) -> String {
        self.client.get_connection_info().addr().to_string()
    }

    fn client(&self) -> &redis::Client {
        &self.client
    }
}

/// `APIHUB_TEST_REDIS_URL`, or `None` (skip) when it is unset outside CI.
#[cfg(test)]
pub(crate) fn test_redis_url() -> Option<String> {
    let Ok(url) = std::env::var("APIHUB_TEST_REDIS_URL") else {
        assert!(std::env::var_os("CI").is_none(), "APIHUB_TEST_REDIS_URL must be set in CI");
        eprintln!("skipping: APIHUB_TEST_REDIS_URL is not set");
        return None;
    };
    Some(url)
}

/// A Redis for one test, under a prefix of its own whose keys are deleted when it is dropped;
/// `None` (skip) when `APIHUB_TEST_REDIS_URL` is unset outside CI.
#[cfg(test)]
pub(crate) async fn test_redis() -> Option<TestRedis> {
    Some(TestRedis::connect(&test_redis_url()?).await)
}

#[cfg(test)]
pub(crate) struct TestRedis(SharedRedis, redis::Client);

#[cfg(test)]
impl TestRedis {
    /// Connects to `url` under a fresh prefix.
    pub(crate) async fn connect(url: &str) -> TestRedis {
        Self::connect_via(url, url).await
    }

    /// Connects to the Redis of `url` through `via` (a relay), under a fresh prefix; the keys are
    /// deleted through `url`.
    pub(crate) async fn connect_via(url: &str, via: &str) -> TestRedis {
        let key_prefix = format!("apihub-t-{}", uuid::Uuid::new_v4().simple());
        let config = RedisConfig { url: crate::config::Secret::new(via), key_prefix };
        let redis = SharedRedis::connect(&config).await.expect("connect to APIHUB_TEST_REDIS_URL");
        TestRedis(redis, redis::Client::open(url).expect("APIHUB_TEST_REDIS_URL"))
    }
}

/// A TCP relay to Redis whose connections can be cut, as a network failure would, or stalled,
/// as a partition would (connections are accepted and then nothing passes).
#[cfg(test)]
pub(crate) struct Relay {
    pub(crate) url: String,
    connections: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    stalled: Arc<std::sync::atomic::AtomicBool>,
    accept: tokio::task::JoinHandle<()>,
}

#[cfg(test)]
impl Relay {
    /// A relay to the Redis of `url` (which must name its port), and the URL that goes through it.
    pub(crate) async fn start(url: &str) -> Relay {
        use std::sync::atomic::Ordering;
        let target = redis::Client::open(url).unwrap().get_connection_info().addr().to_string();
        assert!(url.contains(&target), "APIHUB_TEST_REDIS_URL must name host and port: {url}");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_url = url.replacen(&target, &listener.local_addr().unwrap().to_string(), 1);
        let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (open, stall) = (connections.clone(), stalled.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let stall = stall.load(Ordering::Acquire);
                let target = target.clone();
                let relay = tokio::spawn(async move {
                    if stall {
                        // Accepted, then silence: the connection stays open until cut.
                        std::future::pending::<()>().await;
                    }
                    let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                open.lock().unwrap().push(relay.abort_handle());
            }
        });
        Relay { url: relay_url, connections, stalled, accept }
    }

    /// Drops every open connection (new ones are still relayed, or stalled).
    pub(crate) fn cut(&self) {
        self.connections.lock().unwrap().drain(..).for_each(|c| c.abort());
    }

    /// Cuts every connection and stalls the new ones: Redis is unreachable without a refusal.
    pub(crate) fn stall(&self) {
        self.stalled.store(true, std::sync::atomic::Ordering::Release);
        self.cut();
    }

    /// Relays again: stalled connections are cut, new ones reach Redis.
    pub(crate) fn resume(&self) {
        self.stalled.store(false, std::sync::atomic::Ordering::Release);
        self.cut();
    }
}

#[cfg(test)]
impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

#[cfg(test)]
impl std::ops::Deref for TestRedis {
    type Target = SharedRedis;

    fn deref(&self) -> &SharedRedis {
        &self.0
    }
}

#[cfg(test)]
impl Drop for TestRedis {
    fn drop(&mut self) {
        // Blocking, with timeouts: this may run on the test's (single) runtime thread.
        let timeout = Some(Duration::from_secs(1));
        let Ok(mut conn) = self.1.get_connection_with_timeout(Duration::from_secs(1)) else { return };
        let _ = (conn.set_read_timeout(timeout), conn.set_write_timeout(timeout));
        let pattern = format!("{}:*", self.0.prefix);
        let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(&mut conn).unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&keys).query(&mut conn);
        }
    }
}
