//! Writing settled debits: the batches (each consuming the lease it came from), the writing task
//! and the waits for it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, Weak};

use apihub_core::credit::CreditBook;
use apihub_core::store::StoreError;
use diesel_async::AsyncConnection;
use tokio::sync::Notify;

use super::{LeaseEngine, MAX_BATCH, MAX_PAUSE, READ_WAIT};
use crate::db::engine::WINDOW;
use crate::db::lease_writes::write_debits;

impl LeaseEngine {
    /// Waits until every debit settled so far is written (at once when none waits).
    pub(crate) async fn caught_up(&self) {
        let target = self.book().last_seq();
        if *self.written.borrow() >= target {
            return;
        }
        self.wake_now();
        let mut written = self.written.subscribe();
        let _ = tokio::time::timeout(READ_WAIT, written.wait_for(|written| *written >= target)).await;
    }

    /// Writes every debit queued so far.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let _order = self.order.lock().await;
        self.write_queued().await
    }

    pub(super) fn wake_now(&self) {
        self.urgent.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Writes the debits queued when it is called, retired books' first (the caller holds the
    /// order lock); a retired book with nothing open or queued goes.
    pub(super) async fn write_queued(&self) -> Result<(), StoreError> {
        let retired: Vec<(String, u64)> =
            self.retired().iter().map(|(node_id, old)| (node_id.clone(), old.last_seq())).collect();
        for (node_id, last) in retired {
            self.write_book(&node_id, last).await?;
        }
        self.retired().retain(|(_, old)| old.open_holds() > 0 || old.unwritten() > 0);
        let (node_id, last) = (self.node_id(), self.book().last_seq());
        self.write_book(&node_id, last).await
    }

    /// Runs `f` on the book whose leases carry `node_id`: this one, or a retired one (the node
    /// id changes only under the order lock, which the caller holds).
    fn book_under<T>(&self, node_id: &str, f: impl FnOnce(&mut CreditBook) -> T) -> Option<T> {
        if *self.node_id.lock().unwrap_or_else(PoisonError::into_inner) == node_id {
            return Some(f(&mut self.book()));
        }
        self.retired().iter_mut().find(|(id, _)| id == node_id).map(|(_, old)| f(old))
    }

    /// Writes the debits of the book under `node_id` queued up to `last`, in batches. A batch is
    /// recorded by its node id and first sequence number in its own transaction: one whose
    /// commit's acknowledgement was lost, written again, is found written and counts as such.
    async fn write_book(&self, node_id: &str, last: u64) -> Result<(), StoreError> {
        loop {
            let mut batch = self.book_under(node_id, |book| book.to_write(MAX_BATCH)).unwrap_or_default();
            batch.retain(|debit| debit.seq <= last);
            if batch.is_empty() {
                return Ok(());
            }
            let rows = batch.clone();
            let done = self
                .run(async |conn| conn.transaction(async |conn| write_debits(conn, node_id, &rows).await).await)
                .await
                .inspect_err(|error| {
                    tracing::error!(%error, debits = batch.len(), "writing settlements failed; they stay queued");
                })?;
            #[cfg(test)]
            if self.lose_commit_ack.swap(false, Ordering::AcqRel) {
                return Err(StoreError::Unavailable("the commit's acknowledgement was lost (test)".into()));
            }
            batch.retain(|debit| debit.seq <= done);
            self.book_under(node_id, |book| {
                book.written(&batch);
                book.clamp_leases(&batch);
            });
            if let Some(last) = batch.last() {
                self.written.send_if_modified(|written| {
                    let newer = *written < last.seq;
                    *written = (*written).max(last.seq);
                    newer
                });
            }
        }
    }
}

/// The writing task: waits for a first debit, lets the window fill (unless a reader waits), writes
/// the queue, and on failure tries again with a growing pause. Ends with the engine.
pub(super) async fn write_behind(engine: Weak<LeaseEngine>, wake: Arc<Notify>) {
    let mut pause = WINDOW;
    loop {
        let woken = wake.notified();
        let (pending, urgent) = match engine.upgrade() {
            Some(engine) => (engine.unwritten() > 0, engine.urgent.swap(false, Ordering::AcqRel)),
            None => return,
        };
        if !pending {
            let _ = tokio::time::timeout(WINDOW * 20, woken).await;
            continue;
        }
        if !urgent {
            let _ = tokio::time::timeout(pause, woken).await;
        }
        let Some(engine) = engine.upgrade() else { return };
        engine.urgent.store(false, Ordering::Release);
        let written = {
            let _order = engine.order.lock().await;
            engine.write_queued().await
        };
        match written {
            Ok(()) => pause = WINDOW,
            Err(_) => pause = (pause * 2).min(MAX_PAUSE),
        }
    }
}
