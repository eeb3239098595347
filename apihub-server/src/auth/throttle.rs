//! Login throttling: after [`MAX_FAILURES`] attempts for one username within [`WINDOW`] without a
//! success, that username's logins are refused (429, with `Retry-After`) until [`LOCKOUT`] has
//! passed since the last attempt, before any password is checked. An attempt counts when it
//! starts, so a burst of parallel guesses gets no more than a sequence would; a success clears
//! the count. Unknown usernames count like known ones, so the answers reveal nothing about which
//! accounts exist.
//!
//! The counters live in this process: with several gateways an attacker gets each node's
//! allowance, still a few guesses per quarter hour per account. Memory is bounded by
//! [`MAX_TRACKED`] names; expired entries are dropped first when the map is full.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use apihub_server::auth::throttle::{LoginThrottle, MAX_FAILURES};
//!
//! let throttle = LoginThrottle::default();
//! let now = Instant::now();
//! for _ in 0..MAX_FAILURES {
//!     assert!(throttle.attempt("alice", now).is_ok()); // … and the password was wrong
//! }
//! assert!(throttle.attempt("alice", now).is_err());
//! assert!(throttle.attempt("ALICE", now).is_err(), "usernames match case-insensitively");
//! assert!(throttle.attempt("bob", now).is_ok());
//! assert!(throttle.attempt("alice", now + Duration::from_secs(15 * 60)).is_ok());
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong passwords tolerated per username within [`WINDOW`].
pub const MAX_FAILURES: u32 = 5;
/// How long failures are remembered.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long a username stays locked after its last failure.
pub const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Most usernames tracked at once.
pub const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    first: Instant,
    last: Instant,
}

impl Failures {
    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.first) >= WINDOW && now.saturating_duration_since(self.last) >= LOCKOUT
    }

    /// How long until this username may try again, when it is locked.
    fn locked_for(&self, now: Instant) -> Option<Duration> {
        if self.count < MAX_FAILURES {
            return None;
        }
        let left = LOCKOUT.saturating_sub(now.saturating_duration_since(self.last));
        (!left.is_zero()).then_some(left)
    }
}

/// Failed-login counters by lowercased username.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, Failures>>,
}

impl LoginThrottle {
    /// Counts an attempt for `username`, or refuses it with how long to wait while the username
    /// is locked at `now`.
    pub fn attempt(&self, username: &str, now: Instant) -> Result<(), Duration> {
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = username.to_lowercase();
        if let Some(wait) = failures.get(&key).and_then(|f| f.locked_for(now)) {
            return Err(wait);
        }
        if !failures.contains_key(&key) && failures.len() >= MAX_TRACKED {
            failures.retain(|_, f| !f.expired(now));
            if failures.len() >= MAX_TRACKED {
                return Ok(());
            }
        }
        let entry = failures.entry(key).or_insert(Failures { count: 0, first: now, last: now });
        if entry.expired(now) {
            *entry = Failures { count: 0, first: now, last: now };
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        Ok(())
    }

    /// Forgets `username`'s attempts after a successful login.
    pub fn succeeded(&self, username: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        failures.remove(&username.to_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_attempts_are_forgotten_and_success_resets() {
        let throttle = LoginThrottle::default();
        let start = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            throttle.attempt("alice", start).unwrap();
        }
        // A window later, the count starts again.
        let later = start + WINDOW;
        for _ in 0..MAX_FAILURES - 1 {
            throttle.attempt("alice", later).unwrap();
        }
        throttle.succeeded("Alice");
        for _ in 0..MAX_FAILURES {
            throttle.attempt("alice", later).unwrap();
        }
        assert!(throttle.attempt("alice", later).is_err());
    }

    #[test]
    fn the_lock_lasts_from_the_last_attempt() {
        let throttle = LoginThrottle::default();
        let start = Instant::now();
        for i in 0..MAX_FAILURES {
            throttle.attempt("alice", start + Duration::from_secs(u64::from(i) * 60)).unwrap();
        }
        let last = start + Duration::from_secs(u64::from(MAX_FAILURES - 1) * 60);
        assert_eq!(throttle.attempt("alice", last + Duration::from_secs(60)), Err(LOCKOUT - Duration::from_secs(60)));
        assert!(throttle.attempt("alice", last + LOCKOUT).is_ok());
        assert!(throttle.attempt("alice", last + LOCKOUT).is_ok(), "a fresh window");
    }
}
