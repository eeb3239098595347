//! Log lines from the request path, sampled: at most one per [`INTERVAL`] from one place in the
//! code, each telling how many it stands for.
//!
//! A failure that happens to every request (the database away, Redis down, a layer mounted
//! without admission) would otherwise write one line per request: at thousands of requests per
//! second that buries everything else in the log, fills the disk and costs the CPU the gateway
//! needs to keep answering. The first failure is logged at once; later ones, at most one per
//! [`INTERVAL`], with `skipped`: how many lines were left out since the last one.
//!
//! ```
//! use apihub_tower::log_sample::LogSample;
//!
//! static LOOKUP_FAILED: LogSample = LogSample::new();
//! # let error = "database unavailable";
//! if let Some(skipped) = LOOKUP_FAILED.sample() {
//!     tracing::error!(%error, skipped, "key lookup failed");
//! }
//! ```

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The shortest time between two lines from one place.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// One place's sample; see the [module docs](self). Meant for a `static` at the call site.
#[derive(Debug)]
pub struct LogSample {
    /// When a line was last let through, in milliseconds since [`epoch`] plus one (0: never).
    last: AtomicU64,
    /// Lines left out since then.
    skipped: AtomicU64,
}

impl LogSample {
    /// A sample that has let nothing through yet.
    pub const fn new() -> LogSample {
        LogSample { last: AtomicU64::new(0), skipped: AtomicU64::new(0) }
    }

    /// `Some(skipped)` when this line is to be written (the lines left out before it), `None`
    /// when it is left out.
    pub fn sample(&self) -> Option<u64> {
        let now = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX).saturating_add(1);
        self.sample_at(now)
    }

    /// [`sample`](Self::sample) at `now` (milliseconds, at least 1).
    fn sample_at(&self, now: u64) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= INTERVAL.as_millis() as u64;
        // Of the threads that find the line due, one takes it; the others count as left out.
        if due && self.last.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            return Some(self.skipped.swap(0, Ordering::Relaxed));
        }
        self.skipped.fetch_add(1, Ordering::Relaxed);
        None
    }
}

impl Default for LogSample {
    fn default() -> LogSample {
        LogSample::new()
    }
}

/// The process's monotonic clock's zero (its first use).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: u64 = INTERVAL.as_millis() as u64;

    #[test]
    fn the_first_line_is_written_then_one_per_interval_with_the_count_left_out() {
        let sample = LogSample::new();
        assert_eq!(sample.sample_at(1), Some(0));
        assert_eq!(sample.sample_at(2), None);
        assert_eq!(sample.sample_at(STEP), None);
        assert_eq!(sample.sample_at(STEP + 1), Some(2));
        assert_eq!(sample.sample_at(STEP + 2), None);
        assert_eq!(sample.sample_at(10 * STEP), Some(1));
        assert_eq!(sample.sample_at(10 * STEP), None);
    }

    #[test]
    fn threads_racing_for_one_line_let_one_through_and_count_every_other() {
        let sample = LogSample::new();
        let written: Vec<Option<u64>> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8).map(|_| scope.spawn(|| sample.sample_at(7))).collect();
            threads.into_iter().map(|thread| thread.join().unwrap_or(None)).collect()
        });
        let lines: Vec<u64> = written.iter().flatten().copied().collect();
        assert_eq!(lines.len(), 1, "{written:?}");
        // A thread may count itself out before or after the line's count is taken.
        let later = sample.sample_at(7 + STEP).unwrap_or(u64::MAX);
        assert_eq!(lines[0] + later, 7);
    }

    #[test]
    fn the_real_clock_lets_the_first_line_through() {
        let sample = LogSample::new();
        assert_eq!(sample.sample(), Some(0));
        assert_eq!(sample.sample(), None);
    }
}
