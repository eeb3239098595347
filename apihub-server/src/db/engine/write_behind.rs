//! Writing the queue of settled debits: the waits for it, the batches, and the writing task.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use apihub_core::credit::Debit;
use apihub_core::store::StoreError;
use tokio::sync::Notify;

use super::batch::{ConsumeRow, write_debits};
use super::{Engine, MAX_BATCH, MAX_PAUSE, READ_WAIT, WINDOW};
use crate::db::TxError;

impl Engine {
    /// Waits until every debit settled so far is written (at once when none waits).
    pub(crate) async fn caught_up(&self) {
        let target = self.book().last_seq();
        if *self.written.borrow() >= target {
            return;
        }
        self.wake_now();
        let mut written = self.written.subscribe();
        // Bounded: while the database refuses writes, a read goes ahead (and sees the balance
        // without the settlements still queued) rather than hang.
        let _ = tokio::time::timeout(READ_WAIT, written.wait_for(|written| *written >= target)).await;
    }

    /// Writes every debit queued so far (shutdown, tests).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let mut order = self.order.lock().await;
        self.write_queued(&mut order).await
    }

    /// Writes the debits queued when it is called, not those settled meanwhile (under load the
    /// queue never empties, and the order lock must not be held for ever), through the buffers
    /// kept under the order lock, which the caller holds.
    pub(super) async fn write_queued(&self, scratch: &mut Scratch) -> Result<(), StoreError> {
        let last = self.book().last_seq();
        loop {
            self.book().to_write_into(MAX_BATCH, &mut scratch.batch);
            scratch.batch.retain(|debit| debit.seq <= last);
            if scratch.batch.is_empty() {
                return Ok(());
            }
            let written = self.write(&scratch.batch, &mut scratch.rows).await;
            // After every batch, failed ones included: the buffers keep no request's text.
            scratch.batch.clear();
            scratch.rows.clear();
            written?;
        }
    }

    pub(super) fn wake_now(&self) {
        self.urgent.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Writes `batch` (the oldest queued debits) in one transaction, then marks it written.
    /// The caller holds the order lock. Unlike PostgreSQL's (`lease_writes`), this write needs
    /// no batch record: the transaction commits in this process, on the calling thread, and a
    /// failed `COMMIT` is rolled back before it is reported, so a batch reported failed was
    /// never written, and nothing awaits between the commit and marking the batch written.
    async fn write(&self, batch: &[Debit], rows: &mut Vec<ConsumeRow>) -> Result<(), StoreError> {
        self.writer
            .transaction(async |conn| -> Result<(), TxError> { write_debits(conn, batch, rows).await })
            .await
            .map_err(|e| {
                tracing::error!(error = %e.0, debits = batch.len(), "writing settlements failed; they stay queued");
                e.0
            })?;
        {
            let mut book = self.book();
            book.written(batch);
            book.forget_ended_meters(self.budgets.now());
        }
        if let Some(last) = batch.last() {
            self.written.send_replace(last.seq);
        }
        Ok(())
    }
}

/// The batch writer's buffers, kept under the order lock from one batch to the next. A window's
/// thousands of debits and ledger rows, allocated anew for each batch, were handed back to the
/// system when freed and faulted in again by the next batch. Emptied after every batch, so they
/// keep no request's text; what stays is their capacity, at most [`MAX_BATCH`] debits and rows.
#[derive(Default)]
pub(super) struct Scratch {
    batch: Vec<Debit>,
    rows: Vec<ConsumeRow>,
}

/// The writing task: waits for a first debit, lets the window fill (unless a reader waits), writes
/// the queue, and on failure tries again with a growing pause. Ends with the engine.
pub(super) async fn write_behind(engine: Weak<Engine>, wake: Arc<Notify>) {
    let mut pause = WINDOW;
    loop {
        let woken = wake.notified();
        let (pending, urgent) = match engine.upgrade() {
            Some(engine) => (engine.book().unwritten() > 0, engine.urgent.swap(false, Ordering::AcqRel)),
            None => return,
        };
        if !pending {
            // Re-checked now and then: the engine may have gone meanwhile.
            let _ = tokio::time::timeout(WINDOW * 20, woken).await;
            continue;
        }
        if !urgent {
            // Let the window fill; a reader waiting cuts it short.
            let _ = tokio::time::timeout(pause, woken).await;
        }
        let Some(engine) = engine.upgrade() else { return };
        engine.urgent.store(false, Ordering::Release);
        match engine.flush().await {
            Ok(()) => pause = WINDOW,
            Err(_) => pause = (pause * 2).min(MAX_PAUSE),
        }
    }
}
