//! A [`RateLimiter`] whose counters live in Redis, so every gateway counts against the same ones.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

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

/// The longest one check waits for Redis (a round trip on a LAN is well under a millisecond).
/// Past it the check fails, and admission admits the request: a Redis that does not
/// answer costs a request at most this much, not the connection's own timeouts (half a second).
pub const CALL_TIMEOUT: Duration = Duration::from_millis(100);

/// How long checks skip Redis after one failed, going straight to the fallback (admitted without
/// a check); the first check after it is a trial call, whose success resumes counting in Redis
/// and whose failure skips Redis for as long again. So while Redis is down, one check per back-off
/// waits up to [`CALL_TIMEOUT`], and every other one fails at once.
pub const BREAKER_BACKOFF: Duration = Duration::from_secs(1);

/// A circuit breaker on the Redis calls: closed (call Redis), open (skip it until a time), or
/// half-open (one trial call in flight, the others skip). Shared by the limiter's clones.
#[derive(Debug, Default)]
struct Breaker {
    /// When (on the limiter's clock, in ms) Redis may be tried again; 0 when closed.
    open_until: AtomicU64,
    /// A trial call is in flight.
    trial: AtomicBool,
}

/// What [`Breaker::enter`] lets a check do.
enum Pass<'a> {
    /// Call Redis.
    Call,
    /// Call Redis as the trial; the guard reports a trial dropped midway as a failure.
    Trial(TrialGuard<'a>),
    /// Do not call Redis.
    Skip,
}

/// Reopens the breaker when a trial call ends without an answer (its request went away).
struct TrialGuard<'a> {
    breaker: &'a Breaker,
    now_ms: u64,
    done: bool,
}

impl Drop for TrialGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.breaker.failed(self.now_ms);
        }
    }
}

impl Breaker {
    fn enter(&self, now_ms: u64) -> Pass<'_> {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Pass::Call;
        }
        if now_ms < until || self.trial.swap(true, Ordering::AcqRel) {
            return Pass::Skip;
        }
        Pass::Trial(TrialGuard { breaker: self, now_ms, done: false })
    }

    fn succeeded(&self) {
        self.open_until.store(0, Ordering::Release);
        self.trial.store(false, Ordering::Release);
    }

    fn failed(&self, now_ms: u64) {
        let backoff = u64::try_from(BREAKER_BACKOFF.as_millis()).unwrap_or(u64::MAX);
        self.open_until.store(now_ms.saturating_add(backoff).max(1), Ordering::Release);
        self.trial.store(false, Ordering::Release);
    }

    fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }
}

/// Per-key request counters in Redis, under `{prefix}:rl:{key_id}:m:{minute}` and
/// `{prefix}:rl:{key_id}:d:{day}`.
///
/// Windows are the UTC minute and day on this node's clock (keep the nodes' clocks in sync, as
/// NTP does), and answers are the same [`Decision`]s as
/// [`LocalRateLimiter`](apihub_tower::rate_limit::LocalRateLimiter)'s. An error (Redis
/// unreachable) goes back to admission, which admits the request and logs it.
///
/// While Redis is down that fallback comes at once: a check waits at most [`CALL_TIMEOUT`], and
/// after a failure the checks skip Redis for [`BREAKER_BACKOFF`] before one trial call.
#[derive(Clone)]
pub struct RedisRateLimiter {
    redis: SharedRedis,
    clock: Arc<dyn Clock>,
    breaker: Arc<Breaker>,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter").field("prefix", &self.redis.prefix()).finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// Counts in `redis`, reading time from `clock`.
    pub fn new(redis: SharedRedis, clock: Arc<dyn Clock>) -> Self {
        RedisRateLimiter { redis, clock, breaker: Arc::default() }
    }

    /// Whether checks skip Redis now (a call failed within the back-off, or a trial is pending).
    pub fn circuit_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// One check in Redis, bounded by [`CALL_TIMEOUT`].
    async fn call(&self, key_id: KeyId, limits: Limits, windows: &Windows) -> Result<Vec<i64>, BoxError> {
        let [minute_key, day_key] = self.counter_keys(key_id, windows);
        let mut connection = self.redis.connection();
        let mut invocation = SCRIPT.key(minute_key);
        invocation
            .key(day_key)
            .arg(limit_arg(limits.per_minute))
            .arg(limit_arg(limits.per_day))
            .arg(windows.minute_reset_ms + GRACE_MS)
            .arg(windows.day_reset_ms + GRACE_MS);
        match tokio::time::timeout(CALL_TIMEOUT, invocation.invoke_async(&mut connection)).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(format!("Redis did not answer within {CALL_TIMEOUT:?}").into()),
        }
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
        let now_ms = self.clock.now_millis();
        let windows = Windows::at(now_ms);
        let mut trial = match self.breaker.enter(now_ms) {
            Pass::Skip => {
                return Err(format!("Redis failed less than {BREAKER_BACKOFF:?} ago; not asked (circuit open)").into());
            }
            Pass::Call => None,
            Pass::Trial(guard) => Some(guard),
        };
        let answer = self.call(key_id, limits, &windows).await;
        if let Some(guard) = trial.as_mut() {
            guard.done = true;
        }
        let answer = match answer {
            Ok(answer) => {
                self.breaker.succeeded();
                answer
            }
            Err(error) => {
                self.breaker.failed(now_ms);
                return Err(error);
            }
        };
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
    use crate::scale::{Relay, TestRedis, test_redis, test_redis_url};
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
    async fn while_redis_is_unreachable_checks_fail_fast_then_a_trial_call_resumes_counting() {
        let Some(url) = test_redis_url() else { return };
        let relay = Relay::start(&url).await;
        let redis = TestRedis::connect_via(&url, &relay.url).await;
        let clock = ManualClock::at(0);
        let limiter = RedisRateLimiter::new(redis.clone(), Arc::new(clock.clone()));
        let limits = Limits { per_minute: Some(100), per_day: None };
        assert!(limiter.check(1, limits).await.is_ok());

        // Unreachable without a refusal: connections hang, the worst case. Each of 10 checks
        // fails (the layer then admits the request) well under the connection's own timeouts.
        relay.stall();
        let mut slowest = Duration::ZERO;
        for _ in 0..10 {
            let started = std::time::Instant::now();
            assert!(limiter.check(1, limits).await.is_err());
            slowest = slowest.max(started.elapsed());
        }
        assert!(slowest < Duration::from_millis(300), "slowest check took {slowest:?}");
        assert!(limiter.circuit_open());

        // Within the back-off Redis is not even asked; after it, a trial call is, and its failure
        // opens the circuit again.
        let back_off = u64::try_from(BREAKER_BACKOFF.as_millis()).unwrap();
        clock.advance(back_off);
        let started = std::time::Instant::now();
        assert!(limiter.check(1, limits).await.is_err());
        assert!(started.elapsed() >= CALL_TIMEOUT / 2, "the trial asked Redis");
        assert!(limiter.circuit_open());

        // Redis back: the first trial after the back-off closes the circuit (the connection may
        // need a few trials to heal).
        relay.resume();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            clock.advance(back_off);
            if limiter.check(1, limits).await.is_ok() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the limiter never went back to Redis");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!limiter.circuit_open());
        let counted = limiter.check(1, limits).await.unwrap();
        assert!(matches!(counted, Decision::Allowed(Some(a)) if a.remaining == 100 - 3), "{counted:?}");
    }

    #[test]
    fn a_trial_dropped_midway_opens_the_circuit_again() {
        let breaker = Breaker::default();
        breaker.failed(1_000);
        assert!(matches!(breaker.enter(1_500), Pass::Skip));
        let trial = breaker.enter(2_000);
        assert!(matches!(trial, Pass::Trial(_)));
        assert!(matches!(breaker.enter(2_000), Pass::Skip), "one trial at a time");
        drop(trial);
        assert!(matches!(breaker.enter(2_500), Pass::Skip), "the dropped trial counts as a failure");
        assert!(matches!(breaker.enter(3_000), Pass::Trial(_)));
        breaker.succeeded();
        assert!(matches!(breaker.enter(3_000), Pass::Call));
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
