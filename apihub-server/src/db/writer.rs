//! SQLite's one writer: a single connection that runs statements where it is called, and a group
//! commit that applies the hot path's writes (holds, settlements, releases, the usage log) many to
//! one transaction.
//!
//! SQLite admits one writer at a time and answers in microseconds from its page cache, so a hop
//! to tokio's blocking pool per statement (what `SyncConnectionWrapper`'s default spawner does)
//! costs more than the statement. The write connection here uses [`Inline`] instead: every
//! statement runs at once on the calling thread, so a whole transaction runs without a single
//! suspension point and is driven to its end by [`run_now`].
//!
//! [`SqliteWriter::batched`] queues an owned operation; whoever finds no batch running becomes
//! the leader, takes every queued operation and runs them in one `BEGIN IMMEDIATE` transaction,
//! each inside its own savepoint, so an operation that fails or is refused rolls back alone and
//! the others still commit. Each caller learns its result once the commit is done. One commit
//! (and one write of each touched page to the WAL) then serves a whole queue of requests.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use apihub_core::store::StoreError;
use diesel::SqliteConnection;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel_async::sync_connection_wrapper::{SpawnBlocking, SyncConnectionWrapper};
use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

/// The write connection: statements run on the calling thread.
pub(crate) type WriteConn = SyncConnectionWrapper<SqliteConnection, Inline>;

/// Most operations in one group commit; more wait for the next one.
const MAX_BATCH: usize = 512;
/// Batches a request that became the leader runs before handing the queue to a task of its own.
const LEADER_BATCHES: usize = 4;
/// How often the WAL is copied back into the database file, off the write connection.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// A [`SpawnBlocking`] that runs the task at once, on the caller's thread.
pub(crate) struct Inline;

impl SpawnBlocking for Inline {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> BoxFuture<'a, Result<R, Box<dyn std::error::Error + Send + Sync + 'static>>>
    where
        R: Send + 'static,
    {
        Box::pin(std::future::ready(Ok(task())))
    }

    fn get_runtime() -> Self {
        Inline
    }
}

/// Polls `future` once: on [`WriteConn`] every query is ready at once, so a block of queries
/// finishes in one poll. `None` would mean the block awaited something else.
fn run_now<F: Future>(future: F) -> Option<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

fn suspended() -> StoreError {
    StoreError::Internal("a SQLite write suspended on the inline connection".into())
}

/// Runs `step` on the inner connection (begin, commit or roll back a transaction or savepoint).
fn raw<R: Send + 'static>(
    conn: &mut WriteConn,
    step: impl FnOnce(&mut SqliteConnection) -> diesel::QueryResult<R> + Send + 'static,
) -> Result<R, StoreError> {
    run_now(conn.spawn_blocking(step)).ok_or_else(suspended)?.map_err(|e| StoreError::Internal(e.to_string()))
}

/// Runs `body` in a transaction (or, inside one, a savepoint) opened by `begin`: committed when it
/// returns `Ok`, rolled back otherwise.
fn scoped<T, E>(
    conn: &mut WriteConn,
    begin: impl FnOnce(&mut SqliteConnection) -> diesel::QueryResult<()> + Send + 'static,
    body: impl AsyncFnOnce(&mut WriteConn) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<StoreError>,
{
    raw(conn, begin)?;
    let result = run_now(body(conn)).unwrap_or_else(|| Err(E::from(suspended())));
    match result {
        Ok(value) => {
            if let Err(error) = raw(conn, AnsiTransactionManager::commit_transaction) {
                // A failed COMMIT leaves the transaction open: end it before reporting.
                let _ = raw(conn, AnsiTransactionManager::rollback_transaction);
                return Err(E::from(error));
            }
            Ok(value)
        }
        Err(error) => {
            raw(conn, AnsiTransactionManager::rollback_transaction)?;
            Err(error)
        }
    }
}

/// One queued operation: runs (in a savepoint of its own unless it is `alone` in its transaction)
/// and returns whether it succeeded and what tells its caller the result once the commit is known
/// (`Some` error when the commit failed).
type Job = Box<dyn FnOnce(&mut WriteConn, bool) -> (bool, Tell) + Send>;
type Tell = Box<dyn FnOnce(Option<&StoreError>) + Send>;

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// A leader owns the queue; new jobs only join it.
    draining: bool,
}

/// The write connection and its group-commit queue.
pub struct SqliteWriter {
    conn: tokio::sync::Mutex<WriteConn>,
    queue: Mutex<Queue>,
    /// Operations in the last group commit: more than one means requests are queueing.
    last_batch: AtomicUsize,
}

impl SqliteWriter {
    /// Takes `conn` (opened with `wal_autocheckpoint = 0`) as the write connection and starts the
    /// thread that checkpoints the WAL on a connection of its own, opened by `open`, until the
    /// writer is dropped. A checkpoint's copying and `fsync` then never stall a write.
    pub(crate) fn new(
        conn: SqliteConnection,
        open: impl Fn() -> anyhow::Result<SqliteConnection> + Send + 'static,
    ) -> std::io::Result<Arc<Self>> {
        let writer = Arc::new(SqliteWriter {
            conn: tokio::sync::Mutex::new(WriteConn::with_runtime(conn, Inline)),
            queue: Mutex::new(Queue::default()),
            last_batch: AtomicUsize::new(0),
        });
        let alive = Arc::downgrade(&writer);
        std::thread::Builder::new().name("apihub-checkpoint".into()).spawn(move || checkpoint(&alive, &open))?;
        Ok(writer)
    }

    /// Runs `body` alone in one `BEGIN IMMEDIATE` transaction, after any batch already running.
    ///
    /// These are the account API's writes, some of them long (a batch of 1,000 keys) or waiting on
    /// another process's lock (up to the busy timeout): on a multi-threaded runtime the worker's
    /// other tasks move to a fresh thread meanwhile ([`tokio::task::block_in_place`]), so the
    /// proxy never stalls behind one.
    pub(crate) async fn transaction<T, E>(&self, body: impl AsyncFnOnce(&mut WriteConn) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let mut conn = self.conn.lock().await;
        let run = || scoped(&mut conn, |c| AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE"), body);
        match tokio::runtime::Handle::try_current().map(|handle| handle.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(run),
            _ => run(),
        }
    }

    /// Runs `op` in the next group commit and returns its result once that commit is done.
    pub(crate) async fn batched<T, E, F>(self: &Arc<Self>, op: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: AsyncFnOnce(&mut WriteConn) -> Result<T, E> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn: &mut WriteConn, alone: bool| {
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
                    Some(error) => Err(E::from(StoreError::Unavailable(error.to_string()))),
                };
                let _ = tx.send(result);
            });
            (ok, tell)
        });
        let lead = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.jobs.push(job);
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
    /// the commit; alone, an operation commits at once.
    fn lead(self: &Arc<Self>) {
        if self.last_batch.load(Ordering::Relaxed) <= 1
            && let Ok(mut conn) = self.conn.try_lock()
        {
            for _ in 0..LEADER_BATCHES {
                let Some(jobs) = self.take() else { return };
                self.run_batch(&mut conn, jobs);
            }
        }
        let writer = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::task::yield_now().await;
                let mut conn = writer.conn.lock().await;
                let Some(jobs) = writer.take() else { return };
                writer.run_batch(&mut conn, jobs);
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

    /// Runs `jobs` in one transaction and tells each its result once the commit is known.
    fn run_batch(&self, conn: &mut WriteConn, jobs: Vec<Job>) {
        self.last_batch.store(jobs.len(), Ordering::Relaxed);
        // An operation alone needs no savepoint: the transaction is its own.
        let alone = jobs.len() == 1;
        let mut failed_alone = false;
        let mut done = Vec::with_capacity(jobs.len());
        let committed: Result<(), StoreError> = scoped(
            conn,
            |c| AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE"),
            async |conn| {
                for job in jobs {
                    let (ok, tell) = job(conn, alone);
                    failed_alone |= alone && !ok;
                    done.push(tell);
                }
                // Rolls back the failed operation's transaction; it reports its own error.
                if failed_alone { Err(StoreError::Internal("rolled back".into())) } else { Ok(()) }
            },
        );
        let commit_error = committed.err().filter(|_| !failed_alone);
        if let Some(error) = &commit_error {
            tracing::error!(%error, operations = done.len(), "a SQLite group commit failed");
        }
        for tell in done {
            tell(commit_error.as_ref());
        }
    }
}

/// The checkpoint thread's loop: a passive checkpoint (it never waits for the writer or readers)
/// every [`CHECKPOINT_EVERY`] while the writer lives.
fn checkpoint(alive: &Weak<SqliteWriter>, open: &dyn Fn() -> anyhow::Result<SqliteConnection>) {
    use diesel::connection::SimpleConnection;
    let mut conn = match open() {
        Ok(conn) => conn,
        Err(error) => {
            tracing::error!(%error, "the WAL checkpoint thread could not open the database; SQLite's WAL will grow");
            return;
        }
    };
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        if alive.strong_count() == 0 {
            return;
        }
        if let Err(error) = conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
            tracing::warn!(%error, "checkpointing the SQLite WAL failed");
        }
    }
}
