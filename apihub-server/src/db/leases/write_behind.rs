//! Writing settled debits: the batches (each consuming the lease it came from), the writing task
//! and the waits for it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, Weak};

use apihub_core::credit::{CreditBook, Debit};
use apihub_core::store::StoreError;
use diesel_async::AsyncConnection;
use tokio::sync::Notify;

use super::{LeaseEngine, MAX_BATCH, MAX_PAUSE, READ_WAIT, WRITER_BATCH};
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

    /// After a batch's write failed (it may have committed, its acknowledgement lost), writes
    /// the queue before a lease grows (the caller holds the order lock): the book then learns
    /// what that batch consumed of the lease before the growth enters it, in the order the
    /// database applied the two. Otherwise a growth does not wait for the queue: the debits
    /// consume the lease whenever they are written, so what they charged beyond it (overage)
    /// counts as lacking, and the growth covers it.
    pub(super) async fn settle_doubt(&self) -> Result<(), StoreError> {
        if self.unsure.load(Ordering::Acquire) { self.write_queued().await } else { Ok(()) }
    }

    pub(super) fn wake_now(&self) {
        self.urgent.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Writes the debits queued when it is called, retired books' first (the caller holds the
    /// order lock); a retired book with nothing open or queued goes.
    pub(super) async fn write_queued(&self) -> Result<(), StoreError> {
        let marks = self.queued_marks();
        while self.write_batch(&marks, MAX_BATCH).await? {}
        Ok(())
    }

    /// What is queued now: each book's node id (retired books' first) and its newest debit.
    fn queued_marks(&self) -> Vec<(String, u64)> {
        let mut marks: Vec<(String, u64)> =
            self.retired().iter().map(|(node_id, old)| (node_id.clone(), old.last_seq())).collect();
        marks.push((self.node_id(), self.book().last_seq()));
        marks
    }

    /// Writes one batch of at most `max` debits, the oldest of the first book among `marks` with
    /// debits queued up to its mark (the caller holds the order lock). `false`: none was left
    /// (and a retired book with nothing open or queued went).
    async fn write_batch(&self, marks: &[(String, u64)], max: usize) -> Result<bool, StoreError> {
        for (node_id, last) in marks {
            let mut batch = self.book_under(node_id, |book| book.to_write(max)).unwrap_or_default();
            batch.retain(|debit| debit.seq <= *last);
            if !batch.is_empty() {
                self.write_book(node_id, batch).await?;
                return Ok(true);
            }
        }
        self.retired().retain(|(_, old)| old.open_holds() > 0 || old.unwritten() > 0);
        Ok(false)
    }

    /// Runs `f` on the book whose leases carry `node_id`: this one, or a retired one (the node
    /// id changes only under the order lock, which the caller holds).
    fn book_under<T>(&self, node_id: &str, f: impl FnOnce(&mut CreditBook) -> T) -> Option<T> {
        if *self.node_id.lock().unwrap_or_else(PoisonError::into_inner) == node_id {
            return Some(f(&mut self.book()));
        }
        self.retired().iter_mut().find(|(id, _)| id == node_id).map(|(_, old)| f(old))
    }

    /// Writes `batch`, debits of the book under `node_id`. A batch is recorded by its node id and
    /// first sequence number in its own transaction: one whose commit's acknowledgement was lost,
    /// written again, is found written and counts as such.
    async fn write_book(&self, node_id: &str, mut batch: Vec<Debit>) -> Result<(), StoreError> {
        let written =
            self.run(async |conn| conn.transaction(async |conn| write_debits(conn, node_id, &batch).await).await).await;
        #[cfg(test)]
        let written = match written {
            Ok(_) if self.lose_commit_ack.swap(false, Ordering::AcqRel) => {
                Err(StoreError::Unavailable("the commit's acknowledgement was lost (test)".into()))
            }
            written => written,
        };
        self.unsure.store(written.is_err(), Ordering::Release);
        let done = written.inspect_err(|error| {
            tracing::error!(%error, debits = batch.len(), "writing settlements failed; they stay queued");
        })?;
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
        Ok(())
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
        // One batch at a time, the order lock let go between them: a lease's growth waits for
        // one batch at most, not for the whole queue.
        let written = async {
            let marks = engine.queued_marks();
            loop {
                let _order = engine.order.lock().await;
                if !engine.write_batch(&marks, WRITER_BATCH).await? {
                    return Ok::<(), StoreError>(());
                }
            }
        }
        .await;
        match written {
            Ok(()) => pause = WINDOW,
            Err(_) => pause = (pause * 2).min(MAX_PAUSE),
        }
    }
}
