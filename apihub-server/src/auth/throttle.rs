//! Login throttling: after [`MAX_FAILURES`] attempts for one username within [`WINDOW`] without a
//! success, that username's logins are refused (429, with `Retry-After`) until [`LOCKOUT`] has
//! passed since the last attempt, before any password is checked. A second throttle of the same
//! kind counts attempts by client address ([`LoginThrottle::per_address`]), so that guessing with
//! a new username each time is bounded too. An attempt counts when it
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

/// How many failures a throttle tolerates, and for how long it remembers and locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Attempts tolerated within `window` without a success.
    pub max_failures: u32,
    /// How long failures are remembered.
    pub window: Duration,
    /// How long the name stays locked after its last failure.
    pub lockout: Duration,
}

impl ThrottlePolicy {
    /// Per username: [`MAX_FAILURES`] in [`WINDOW`], then locked for [`LOCKOUT`].
    pub const PER_USERNAME: ThrottlePolicy =
        ThrottlePolicy { max_failures: MAX_FAILURES, window: WINDOW, lockout: LOCKOUT };

    /// Per client address: `per_minute` failed logins a minute (whatever the usernames), then a
    /// minute's wait. Generous enough for an office behind one address; 0 turns it off.
    pub const fn per_address(per_minute: u32) -> ThrottlePolicy {
        ThrottlePolicy { max_failures: per_minute, window: Duration::from_secs(60), lockout: Duration::from_secs(60) }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    first: Instant,
    last: Instant,
}

impl Failures {
    fn expired(&self, policy: &ThrottlePolicy, now: Instant) -> bool {
        now.saturating_duration_since(self.first) >= policy.window
            && now.saturating_duration_since(self.last) >= policy.lockout
    }

    /// How long until this name may try again, when it is locked.
    fn locked_for(&self, policy: &ThrottlePolicy, now: Instant) -> Option<Duration> {
        if self.count < policy.max_failures {
            return None;
        }
        let left = policy.lockout.saturating_sub(now.saturating_duration_since(self.last));
        (!left.is_zero()).then_some(left)
    }
}

/// Failed-login counters by lowercased name (a username, or a client address).
#[derive(Debug)]
pub struct LoginThrottle {
    policy: ThrottlePolicy,
    failures: Mutex<HashMap<String, Failures>>,
}

impl Default for LoginThrottle {
    /// The per-username throttle.
    fn default() -> Self {
        Self::new(ThrottlePolicy::PER_USERNAME)
    }
}

impl LoginThrottle {
    /// A throttle with its own policy.
    pub fn new(policy: ThrottlePolicy) -> Self {
        LoginThrottle { policy, failures: Mutex::default() }
    }

    /// The per-address throttle: `per_minute` failed logins a minute from one address.
    pub fn per_address(per_minute: u32) -> Self {
        Self::new(ThrottlePolicy::per_address(per_minute))
    }

    /// Counts an attempt for `username`, or refuses it with how long to wait while the username
    /// is locked at `now`.
    pub fn attempt(&self, username: &str, now: Instant) -> Result<(), Duration> {
        let policy = &self.policy;
        if policy.max_failures == 0 {
            return Ok(()); // turned off
        }
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = username.to_lowercase();
        if let Some(wait) = failures.get(&key).and_then(|f| f.locked_for(policy, now)) {
            return Err(wait);
        }
        if !failures.contains_key(&key) && failures.len() >= MAX_TRACKED {
            failures.retain(|_, f| !f.expired(policy, now));
            if failures.len() >= MAX_TRACKED {
                return Ok(());
            }
        }
        let entry = failures.entry(key).or_insert(Failures { count: 0, first: now, last: now });
        if entry.expired(policy, now) {
            *entry = Failures { count: 0, first: now, last: now };
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        Ok(())
    }

    /// Gives back one attempt for `name` (a successful login from this address).
    pub fn refund(&self, name: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(entry) = failures.get_mut(&name.to_lowercase()) {
            entry.count = entry.count.saturating_sub(1);
        }
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
