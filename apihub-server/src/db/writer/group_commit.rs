//! The group commit: queued operations run many to one transaction by a leader, each in its own
//! savepoint, answered once applied or once committed; the commit follows on a task of its own.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use apihub_core::store::StoreError;
use diesel::SqliteConnection;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use tokio::sync::oneshot;

use super::inline::{raw, run_now, scoped, suspended};
use super::{Job, LEADER_BATCHES, MAX_BATCH, Run, SqliteWriter, Tell, WriteConn, Writing};

/// When the caller of a queued operation learns its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// As soon as its statements have run, before the commit that follows at once (see
    /// [`SqliteWriter::batched`]). For the request path's holds, settlements and releases.
    Applied,
    /// Once its transaction has committed.
    Committed,
}

impl SqliteWriter {
    /// Runs `op` in the next group commit and returns its result: at once when it has run, for
    /// [`Answer::Applied`], or once it has committed.
    ///
    /// An applied operation is already what every later write sees (they all go through this
    /// connection, in this transaction or after it), and a read through the pool waits for its
    /// commit ([`Self::visible`]); the commit follows on a task of its own, so the caller's
    /// request goes on meanwhile. Should that commit fail (a full disk, an I/O error), the
    /// operations answered early are lost together, and the failure is logged: a lost hold frees
    /// nothing it had not taken, a lost settlement leaves its request unbilled (and its hold to
    /// the stale-hold sweep, when the hold had committed before).
    pub(crate) async fn batched<T, E, F>(self: &Arc<Self>, answer: Answer, op: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: AsyncFnOnce(&mut WriteConn) -> Result<T, E> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let run: Run = Box::new(move |conn: &mut WriteConn, alone: bool| {
            if tx.is_closed() {
                // The caller is gone (its request was dropped while queued): nobody would learn of
                // a hold placed now, so it is not placed.
                return (true, Box::new(|_: Option<&StoreError>| {}) as Tell);
            }
            let result = if alone {
                run_now(op(conn)).unwrap_or_else(|| Err(E::from(suspended())))
            } else {
                scoped(conn, AnsiTransactionManager::begin_transaction, op)
            };
            let ok = result.is_ok();
            let tell: Tell = Box::new(move |commit: Option<&StoreError>| {
                let result = match commit {
                    None => result,
                    Some(error) => Err(E::from(StoreError::Unavailable(error.to_string().into()))),
                };
                let _ = tx.send(result);
            });
            (ok, tell)
        });
        let lead = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.jobs.push(Job { answer, run });
            !std::mem::replace(&mut queue.draining, true)
        };
        if lead {
            self.lead();
        }
        rx.await.unwrap_or_else(|_| Err(E::from(StoreError::Unavailable("the SQLite writer went away".into()))))
    }

    /// As the leader: runs a few batches here when the connection is free (never suspending, so a
    /// cancelled request cannot strand the queue), then leaves the rest to a task.
    ///
    /// Under load (the last commit served several operations) the batch waits for one turn of the
    /// scheduler instead, so the requests already runnable queue their operations first and share
    /// the commit; alone, an operation runs at once.
    fn lead(self: &Arc<Self>) {
        if self.last_batch.load(Ordering::Relaxed) <= 1
            && let Ok(mut writing) = self.writing.try_lock()
        {
            for _ in 0..LEADER_BATCHES {
                let Some(jobs) = self.take() else { return };
                self.run_batch(&mut writing, jobs);
            }
        }
        let writer = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::task::yield_now().await;
                let mut writing = writer.writing.lock().await;
                let Some(jobs) = writer.take() else { return };
                writer.run_batch(&mut writing, jobs);
            }
        });
    }

    /// The next batch, or `None` (and leadership given up) when the queue is empty.
    fn take(&self) -> Option<Vec<Job>> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.jobs.is_empty() {
            queue.draining = false;
            return None;
        }
        let n = queue.jobs.len().min(MAX_BATCH);
        Some(queue.jobs.drain(..n).collect())
    }

    /// Runs `jobs` in the open transaction (or a new one), answers the applied ones, and commits
    /// now when one waits for it, on a task of its own otherwise.
    fn run_batch(self: &Arc<Self>, writing: &mut Writing, jobs: Vec<Job>) {
        self.last_batch.store(jobs.len(), Ordering::Relaxed);
        let (seq, opened) = match writing.open {
            Some(seq) => (seq, false),
            None => {
                let begin =
                    |c: &mut SqliteConnection| AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE");
                if let Err(error) = raw(&mut writing.conn, begin) {
                    // Dropping the jobs tells their callers the writer went away.
                    tracing::error!(%error, operations = jobs.len(), "a SQLite write transaction could not begin");
                    return;
                }
                self.begun.fetch_add(1, Ordering::Relaxed);
                (*self.ended.borrow() + 1, true)
            }
        };
        writing.open = Some(seq);
        // An operation alone in a new transaction needs no savepoint: the transaction is its own.
        let alone = opened && jobs.len() == 1;
        let mut after_commit = Vec::new();
        for job in jobs {
            let (ok, tell) = (job.run)(&mut writing.conn, alone);
            if alone && !ok {
                // Its transaction rolls back whole; it reports its own error.
                writing.open = None;
                let _ = raw(&mut writing.conn, AnsiTransactionManager::rollback_transaction);
                self.ended.send_replace(seq);
                tell(None);
                return;
            }
            match job.answer {
                Answer::Applied => {
                    self.answered.fetch_max(seq, Ordering::AcqRel);
                    tell(None);
                }
                Answer::Committed => after_commit.push(tell),
            }
        }
        if after_commit.is_empty() {
            self.commit_soon();
            return;
        }
        let committed = writing.commit(&self.ended);
        for tell in after_commit {
            tell(committed.as_ref().err());
        }
    }

    /// Has the open transaction committed by a task of its own, after whatever already waits for
    /// the connection (which joins the transaction).
    fn commit_soon(self: &Arc<Self>) {
        if self.committing.swap(true, Ordering::AcqRel) {
            return;
        }
        /// Lets the next operation schedule a commit again, even if this task is dropped unrun
        /// (its runtime shutting down).
        struct Scheduled(Arc<SqliteWriter>);
        impl Drop for Scheduled {
            fn drop(&mut self) {
                self.0.committing.store(false, Ordering::Release);
            }
        }
        let scheduled = Scheduled(self.clone());
        tokio::spawn(async move {
            let writer = &scheduled.0;
            let mut writing = writer.writing.lock().await;
            // Cleared while the connection is ours: an operation run after this commit schedules
            // one of its own.
            writer.committing.store(false, Ordering::Release);
            let _ = writing.commit(&writer.ended);
        });
    }
}
