//! A [`RateLimiter`] whose counters live in Redis, so every gateway counts against the same ones.

use std::sync::{Arc, LazyLock};

use apihub_core::policy::KeyId;
use apihub_tower::body::BoxError;
use apihub_tower::clock::Clock;
use apihub_tower::rate_limit::{Decision, Limits, RateLimiter, Window, Windows};
use async_trait::async_trait;

use super::SharedRedis;

/// Checks both windows, then counts in both, as one atomic step: Redis runs a script to the end
/// before it serves any other command, so two gateways can never both take the last slot.
///
/// `KEYS`: the minute counter, the day counter. `ARGV`: the minute limit and the day limit (`-1`
/// for none), then how long each counter must outlive its window, in milliseconds. Answers
/// `{0, 1}` (minute full) or `{0, 2}` (day full), counting nothing; or `{1, minute, day}`, the
/// counts including this request. A counter gets its expiry when it is created, so keys never
/// pile up.
const CHECK_AND_COUNT: &str = r"
local minute = tonumber(redis.call('GET', KEYS[1]) or '0')
local day = tonumber(redis.call('GET', KEYS[2]) or '0')
local minute_limit = tonumber(ARGV[1])
local day_limit = tonumber(ARGV[2])
if minute_limit >= 0 and minute >= minute_limit then return {0, 1} end
if day_limit >= 0 and day >= day_limit then return {0, 2} end
minute = redis.call('INCR', KEYS[1])
if minute == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
day = redis.call('INCR', KEYS[2])
if day == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
return {1, minute, day}
";

/// The script, with its SHA-1 computed once: each check is an `EVALSHA`; after a Redis restart
/// (`NOSCRIPT`) the script is loaded again and the call retried.
static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(CHECK_AND_COUNT));

/// How long a counter outlives its window: room for clocks that differ a little between nodes.
const GRACE_MS: u64 = 60_000;

/// Per-key request counters in Redis, under `{prefix}:rl:{key_id}:m:{minute}` and
/// `{prefix}:rl:{key_id}:d:{day}`.
///
/// Windows are the UTC minute and day on this node's clock (keep the nodes' clocks in sync, as
/// NTP does), and answers are the same [`Decision`]s as
/// [`LocalRateLimiter`](apihub_tower::rate_limit::LocalRateLimiter)'s. An error (Redis
/// unreachable) goes back to the rate-limit layer, which admits the request and logs it.
#[derive(Clone)]
pub struct RedisRateLimiter {
    redis: SharedRedis,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter").field("prefix", &self.redis.prefix()).finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// Counts in `redis`, reading time from `clock`.
    pub fn new(redis: SharedRedis, clock: Arc<dyn Clock>) -> Self {
        RedisRateLimiter { redis, clock }
    }

    /// The two counters' names for `key_id` in `windows`.
    pub fn counter_keys(&self, key_id: KeyId, windows: &Windows) -> [String; 2] {
        let prefix = self.redis.prefix();
        [format!("{prefix}:rl:{key_id}:m:{}", windows.minute), format!("{prefix}:rl:{key_id}:d:{}", windows.day)]
    }
}

fn limit_arg(limit: Option<u32>) -> i64 {
    limit.map_or(-1, i64::from)
}

fn count(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key_id: KeyId, limits: Limits) -> Result<Decision, BoxError> {
        let windows = Windows::at(self.clock.now_millis());
        let [minute_key, day_key] = self.counter_keys(key_id, &windows);
        let answer: Vec<i64> = SCRIPT
            .key(minute_key)
            .key(day_key)
            .arg(limit_arg(limits.per_minute))
            .arg(limit_arg(limits.per_day))
            .arg(windows.minute_reset_ms + GRACE_MS)
            .arg(windows.day_reset_ms + GRACE_MS)
            .invoke_async(&mut self.redis.connection())
            .await?;
        match answer.as_slice() {
            [1, minute, day] => Ok(windows.admitted(limits, count(*minute), count(*day))),
            [0, which] => {
                let (window, limit, reset_in_ms) = match which {
                    1 => (Window::Minute, limits.per_minute, windows.minute_reset_ms),
                    _ => (Window::Day, limits.per_day, windows.day_reset_ms),
                };
                Ok(Decision::Limited { window, limit: limit.unwrap_or(0), reset_in_ms })
            }
            other => Err(format!("the rate-limit script answered {other:?}").into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::test_redis;
    use apihub_tower::clock::ManualClock;
    use apihub_tower::rate_limit::{Allowance, LocalRateLimiter};

    const MINUTE_MS: u64 = 60_000;

    #[tokio::test]
    async fn answers_like_the_local_limiter() {
        let Some(redis) = test_redis().await else { return };
        let start = 10 * MINUTE_MS + 59_000;
        let (redis_clock, local_clock) = (ManualClock::at(start), ManualClock::at(start));
        let shared = RedisRateLimiter::new(redis.clone(), Arc::new(redis_clock.clone()));
        let local = LocalRateLimiter::new(Arc::new(local_clock.clone()));
        let limits = Limits { per_minute: Some(2), per_day: Some(3) };
        let mut answers = Vec::new();
        for step in 0..6 {
            if step == 3 {
                // Into the next minute: the minute window resets, the day's count goes on.
                redis_clock.advance(1_000);
                local_clock.advance(1_000);
            }
            let (a, b) = (shared.check(1, limits).await.unwrap(), local.check_now(1, limits));
            assert_eq!(a, b, "step {step}");
            answers.push(a);
        }
        assert_eq!(
            answers[0],
            Decision::Allowed(Some(Allowance { window: Window::Minute, limit: 2, remaining: 1, reset_in_ms: 1_000 }))
        );
        assert_eq!(answers[2], Decision::Limited { window: Window::Minute, limit: 2, reset_in_ms: 1_000 });
        assert!(matches!(answers[3], Decision::Allowed(Some(a)) if a.window == Window::Day && a.remaining == 0));
        assert!(matches!(answers[4], Decision::Limited { window: Window::Day, limit: 3, .. }));
        // Other keys have their own counters; keys without limits count nothing visible.
        assert!(matches!(shared.check(2, limits).await.unwrap(), Decision::Allowed(Some(a)) if a.remaining == 1));
        assert_eq!(shared.check(3, Limits::default()).await.unwrap(), Decision::Allowed(None));
    }

    #[tokio::test]
    async fn counters_expire_after_their_window() {
        let Some(redis) = test_redis().await else { return };
        let clock = ManualClock::at(5 * MINUTE_MS + 30_000);
        let limiter = RedisRateLimiter::new(redis.clone(), Arc::new(clock.clone()));
        limiter.check(9, Limits { per_minute: Some(5), per_day: None }).await.unwrap();
        let [minute_key, day_key] = limiter.counter_keys(9, &Windows::at(clock.now_millis()));
        let mut conn = redis.connection();
        let minute_ttl: i64 = redis::cmd("PTTL").arg(&minute_key).query_async(&mut conn).await.unwrap();
        let day_ttl: i64 = redis::cmd("PTTL").arg(&day_key).query_async(&mut conn).await.unwrap();
        assert!((60_000..=90_000).contains(&minute_ttl), "minute counter expires in {minute_ttl} ms");
        assert!(day_ttl > 86_400_000 / 2, "day counter expires in {day_ttl} ms");
    }

    #[tokio::test]
    async fn exactly_n_of_many_concurrent_checks_pass() {
        let Some(redis) = test_redis().await else { return };
        let limiter = Arc::new(RedisRateLimiter::new((*redis).clone(), Arc::new(ManualClock::at(0))));
        let limits = Limits { per_minute: Some(30), per_day: None };
        let checks = (0..200).map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.check(7, limits).await.unwrap() })
        });
        let mut admitted = 0;
        for check in checks.collect::<Vec<_>>() {
            admitted += usize::from(matches!(check.await.unwrap(), Decision::Allowed(_)));
        }
        assert_eq!(admitted, 30);
    }

    #[tokio::test]
    async fn a_flushed_script_cache_is_refilled() {
        let Some(redis) = test_redis().await else { return };
        let limiter = RedisRateLimiter::new(redis.clone(), Arc::new(ManualClock::at(0)));
        let limits = Limits { per_minute: Some(3), per_day: None };
        limiter.check(4, limits).await.unwrap();
        redis::cmd("SCRIPT").arg("FLUSH").query_async::<()>(&mut redis.connection()).await.unwrap();
        assert!(matches!(limiter.check(4, limits).await.unwrap(), Decision::Allowed(Some(a)) if a.remaining == 1));
    }
}
