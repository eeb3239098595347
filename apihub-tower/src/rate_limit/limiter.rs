use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use apihub_core::policy::KeyId;
use async_trait::async_trait;

use crate::body::BoxError;
use crate::clock::Clock;

const MINUTE_MS: u64 = 60_000;
const DAY_MS: u64 = 86_400_000;
const SHARDS: usize = 64;

/// A key's limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Requests per minute.
    pub per_minute: Option<u32>,
    /// Requests per day.
    pub per_day: Option<u32>,
}

/// Which window a number describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The current UTC minute.
    Minute,
    /// The current UTC day.
    Day,
}

impl Window {
    /// The window's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Window::Minute => "per-minute",
            Window::Day => "per-day",
        }
    }
}

/// The answer to one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted and counted. Describes the tighter window, when any limit is set.
    Allowed(Option<Allowance>),
    /// Refused: nothing was counted.
    Limited {
        /// The window that is full.
        window: Window,
        /// Its limit.
        limit: u32,
        /// Milliseconds until it resets.
        reset_in_ms: u64,
    },
}

/// What is left in a window after an admitted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// The window.
    pub window: Window,
    /// Its limit.
    pub limit: u32,
    /// Requests left in it.
    pub remaining: u32,
    /// Milliseconds until it resets.
    pub reset_in_ms: u64,
}

/// Counts requests per key; implementations must check and count in one atomic step.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Admits (and counts) or refuses (and counts nothing) one request of `key_id`.
    async fn check(&self, key_id: KeyId, limits: Limits) -> Result<Decision, BoxError>;
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    minute: (u64, u32),
    day: (u64, u32),
}

/// An in-process [`RateLimiter`]: counters in sharded maps, reading time from a [`Clock`].
pub struct LocalRateLimiter {
    clock: Arc<dyn Clock>,
    shards: Vec<Mutex<HashMap<KeyId, Counters>>>,
}

impl std::fmt::Debug for LocalRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRateLimiter").finish_non_exhaustive()
    }
}

impl LocalRateLimiter {
    /// A limiter reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        LocalRateLimiter { clock, shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }

    /// Checks and counts synchronously (the trait method wraps this).
    pub fn check_now(&self, key_id: KeyId, limits: Limits) -> Decision {
        let windows = Windows::at(self.clock.now_millis());
        let shard = &self.shards[(key_id.unsigned_abs() % SHARDS as u64) as usize];
        let Ok(mut map) = shard.lock() else {
            // A poisoned shard only means a panic elsewhere; its counters are still plain numbers.
            return Decision::Allowed(None);
        };
        if map.len() > 10_000 {
            map.retain(|_, c| c.day.0 == windows.day);
        }
        let counters = map.entry(key_id).or_default();
        if counters.minute.0 != windows.minute {
            counters.minute = (windows.minute, 0);
        }
        if counters.day.0 != windows.day {
            counters.day = (windows.day, 0);
        }
        if let Some(refusal) = windows.refusal(limits, counters.minute.1, counters.day.1) {
            return refusal;
        }
        counters.minute.1 += 1;
        counters.day.1 += 1;
        windows.admitted(limits, counters.minute.1, counters.day.1)
    }
}

/// The fixed windows (UTC minute, UTC day) one moment falls in: what a [`RateLimiter`] counts
/// under, and how it turns counts into a [`Decision`]. Shared by every implementation so that
/// they all answer alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// Minutes since the Unix epoch.
    pub minute: u64,
    /// Days since the Unix epoch.
    pub day: u64,
    /// Milliseconds until the minute ends.
    pub minute_reset_ms: u64,
    /// Milliseconds until the day ends.
    pub day_reset_ms: u64,
}

impl Windows {
    /// The windows at `now_millis` (Unix milliseconds).
    pub fn at(now_millis: u64) -> Self {
        let (minute, day) = (now_millis / MINUTE_MS, now_millis / DAY_MS);
        Windows {
            minute,
            day,
            minute_reset_ms: (minute + 1) * MINUTE_MS - now_millis,
            day_reset_ms: (day + 1) * DAY_MS - now_millis,
        }
    }

    /// The refusal when a window already holds its limit (`minute` and `day` are the counts
    /// before this request), or `None` when the request fits.
    pub fn refusal(&self, limits: Limits, minute: u32, day: u32) -> Option<Decision> {
        if let Some(limit) = limits.per_minute
            && minute >= limit
        {
            return Some(Decision::Limited { window: Window::Minute, limit, reset_in_ms: self.minute_reset_ms });
        }
        if let Some(limit) = limits.per_day
            && day >= limit
        {
            return Some(Decision::Limited { window: Window::Day, limit, reset_in_ms: self.day_reset_ms });
        }
        None
    }

    /// The answer to an admitted request, given the counts including it: the tighter window.
    pub fn admitted(&self, limits: Limits, minute: u32, day: u32) -> Decision {
        let minute_left = limits.per_minute.map(|l| Allowance {
            window: Window::Minute,
            limit: l,
            remaining: l.saturating_sub(minute),
            reset_in_ms: self.minute_reset_ms,
        });
        let day_left = limits.per_day.map(|l| Allowance {
            window: Window::Day,
            limit: l,
            remaining: l.saturating_sub(day),
            reset_in_ms: self.day_reset_ms,
        });
        Decision::Allowed(match (minute_left, day_left) {
            (Some(m), Some(d)) => Some(if d.remaining < m.remaining { d } else { m }),
            (m, d) => m.or(d),
        })
    }
}

#[async_trait]
impl RateLimiter for LocalRateLimiter {
    async fn check(&self, key_id: KeyId, limits: Limits) -> Result<Decision, BoxError> {
        Ok(self.check_now(key_id, limits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn windows_reset_on_the_clock() {
        let clock = ManualClock::at(10 * MINUTE_MS + 59_000);
        let limiter = LocalRateLimiter::new(Arc::new(clock.clone()));
        let limits = Limits { per_minute: Some(2), per_day: Some(3) };
        assert!(matches!(limiter.check_now(1, limits), Decision::Allowed(Some(a)) if a.remaining == 1));
        assert!(matches!(limiter.check_now(1, limits), Decision::Allowed(_)));
        assert_eq!(
            limiter.check_now(1, limits),
            Decision::Limited { window: Window::Minute, limit: 2, reset_in_ms: 1_000 }
        );
        // Other keys have their own counters.
        assert!(matches!(limiter.check_now(2, limits), Decision::Allowed(_)));
        clock.advance(1_000);
        assert!(
            matches!(limiter.check_now(1, limits), Decision::Allowed(Some(a)) if a.window == Window::Day && a.remaining == 0)
        );
        assert!(matches!(limiter.check_now(1, limits), Decision::Limited { window: Window::Day, .. }));
        clock.advance(DAY_MS);
        assert!(matches!(limiter.check_now(1, limits), Decision::Allowed(_)));
    }

    #[test]
    fn unlimited_keys_pass() {
        let limiter = LocalRateLimiter::new(Arc::new(ManualClock::at(0)));
        for _ in 0..1000 {
            assert_eq!(limiter.check_now(1, Limits::default()), Decision::Allowed(None));
        }
    }

    #[test]
    fn exactly_n_of_many_concurrent_requests_pass() {
        let limiter = Arc::new(LocalRateLimiter::new(Arc::new(ManualClock::at(0))));
        let limits = Limits { per_minute: Some(30), per_day: None };
        let admitted: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let limiter = limiter.clone();
                    scope.spawn(move || {
                        (0..25).filter(|_| matches!(limiter.check_now(7, limits), Decision::Allowed(_))).count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(admitted, 30);
    }
}
