//! Settlements the store could not write, retried until it can: a request answered with usage is
//! billed exactly once, even across a database outage.
//!
//! A settlement that fails with a storage error leaves its reservation open (the store's
//! transaction rolled back), so it can be tried again with the same reservation id; a store
//! closes a reservation at most once ([`BillingError::NotOpen`] for a second try, which is what a
//! retry sees when an earlier attempt did commit but its answer was lost). The retries run on a
//! task of their own with a growing pause, so the client's response ends at once. The backlog is
//! bounded: while it is full, new holds are refused (503), so an outage cannot queue without
//! limit. [`SettlementBacklog::drained`] waits until it is empty (a server calls it at shutdown).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use apihub_core::billing::{BillingError, Settled, Settlement};
use tokio::sync::Notify;

use super::Reservation;
use crate::log_sample::LogSample;

/// First pause before a settlement is tried again; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// Longest pause between two tries.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Failed settlements being retried: the store failed, the reservation stays open and the
/// settlement is tried again on a task of its own, with a growing pause, until it is written.
#[derive(Debug)]
pub struct SettlementBacklog {
    pending: AtomicUsize,
    limit: usize,
    emptied: Notify,
}

impl Default for SettlementBacklog {
    fn default() -> Self {
        SettlementBacklog::new(SettlementBacklog::DEFAULT_LIMIT)
    }
}

impl SettlementBacklog {
    /// Settlements retried at once before new holds are refused.
    pub const DEFAULT_LIMIT: usize = 10_000;

    /// A backlog that refuses new holds once `limit` settlements wait.
    pub fn new(limit: usize) -> Self {
        SettlementBacklog { pending: AtomicUsize::new(0), limit, emptied: Notify::new() }
    }

    /// Settlements waiting to be written.
    pub fn len(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Whether none wait.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether new holds must wait for the backlog to shrink.
    pub fn is_full(&self) -> bool {
        self.len() >= self.limit
    }

    /// Waits until every failed settlement has been written.
    pub async fn drained(&self) {
        loop {
            let emptied = self.emptied.notified();
            if self.is_empty() {
                return;
            }
            emptied.await;
        }
    }

    /// Tries `settlement` again and again until the store writes it (or finds the reservation
    /// already closed), then hands the result to `then`.
    pub(crate) fn retry(
        self: &Arc<Self>,
        mut reservation: Reservation,
        settlement: Settlement,
        then: impl FnOnce(Settled) + Send + 'static,
    ) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime (shutdown): the reservation's drop leaves the hold to the sweeper.
            tracing::error!(reservation = ?reservation, "a failed settlement cannot be retried without a runtime");
            return;
        };
        self.pending.fetch_add(1, Ordering::AcqRel);
        let backlog = self.clone();
        runtime.spawn(async move {
            let mut pause = FIRST_PAUSE;
            loop {
                tokio::time::sleep(pause).await;
                match reservation.try_settle(&settlement).await {
                    Ok(settled) => {
                        tracing::info!(reservation = ?reservation, "a settlement that had failed is written");
                        then(settled);
                        break;
                    }
                    Err(BillingError::NotOpen(id)) => {
                        tracing::warn!(reservation = id, "a retried settlement found its reservation closed");
                        break;
                    }
                    Err(error) => {
                        static LOG: LogSample = LogSample::new();
                        if let Some(skipped) = LOG.sample() {
                            tracing::warn!(%error, reservation = ?reservation, skipped, "settling failed again; retrying");
                        }
                        pause = (pause * 2).min(MAX_PAUSE);
                    }
                }
            }
            if backlog.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                backlog.emptied.notify_waiters();
            }
        });
    }
}
