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
//! the others still commit. One commit (and one write of each touched page to the WAL) then
//! serves a whole queue of requests.
//!
//! The request path's operations are answered as soon as they have run ([`Answer::Applied`]):
//! the transaction stays open and a task of its own commits it right after, together with
//! whatever queued meanwhile, while the request goes on to the upstream. No commit then sits on
//! a request's path, and a read through the pool first waits for the commit of anything already
//! answered ([`SqliteWriter::visible`]), so nobody reads older than what they were told.
//!
//! [`run_now`]: inline::run_now

mod group_commit;
mod inline;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use apihub_core::store::StoreError;
use diesel::SqliteConnection;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use tokio::sync::watch;

pub(crate) use group_commit::Answer;
pub(crate) use inline::{Inline, direct};
use inline::{raw, scoped};

/// The write connection: statements run on the calling thread.
pub(crate) type WriteConn = SyncConnectionWrapper<SqliteConnection, Inline>;

/// Most operations in one group commit; more wait for the next one.
const MAX_BATCH: usize = 512;
/// Batches a request that became the leader runs before handing the queue to a task of its own.
const LEADER_BATCHES: usize = 4;
/// How often the WAL is copied back into the database file, off the write connection.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// One queued operation. `run` runs it (in a savepoint of its own unless it is `alone` in its
/// transaction) and returns whether it succeeded and what tells its caller the result (`Some`
/// error when the commit failed).
struct Job {
    answer: Answer,
    run: Run,
}
type Run = Box<dyn FnOnce(&mut WriteConn, bool) -> (bool, Tell) + Send>;
type Tell = Box<dyn FnOnce(Option<&StoreError>) + Send>;

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// A leader owns the queue; new jobs only join it.
    draining: bool,
}

/// The write connection and the transaction left open on it, if any.
struct Writing {
    conn: WriteConn,
    /// The sequence number of the transaction whose operations were answered and whose commit
    /// is still to come.
    open: Option<u64>,
}

/// The write connection and its group-commit queue.
pub struct SqliteWriter {
    writing: tokio::sync::Mutex<Writing>,
    queue: Mutex<Queue>,
    /// Operations in the last group commit: more than one means requests are queueing.
    last_batch: AtomicUsize,
    /// The newest transaction with an operation answered before its commit.
    answered: AtomicU64,
    /// The newest transaction that has ended (committed or rolled back). Transactions run one at
    /// a time on the connection, numbered from 1, so the next one is this plus one.
    ended: watch::Sender<u64>,
    /// A task to commit the open transaction is on its way.
    committing: AtomicBool,
    /// Write transactions begun on the connection (for `/metrics` and the benchmark).
    begun: AtomicU64,
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
            writing: tokio::sync::Mutex::new(Writing { conn: WriteConn::with_runtime(conn, Inline), open: None }),
            queue: Mutex::new(Queue::default()),
            last_batch: AtomicUsize::new(0),
            answered: AtomicU64::new(0),
            ended: watch::Sender::new(0),
            committing: AtomicBool::new(false),
            begun: AtomicU64::new(0),
        });
        let alive = Arc::downgrade(&writer);
        std::thread::Builder::new().name("apihub-checkpoint".into()).spawn(move || checkpoint(&alive, &open))?;
        Ok(writer)
    }

    /// Write transactions begun so far.
    pub fn transactions(&self) -> u64 {
        self.begun.load(Ordering::Relaxed)
    }

    /// Waits until every operation answered so far has committed (or failed to), so that a read
    /// on another connection sees what its caller was told. Immediate when nothing is pending.
    /// Every read through the store calls it; so must a caller reading the pool directly.
    pub async fn visible(&self) {
        let answered = self.answered.load(Ordering::Acquire);
        if *self.ended.borrow() >= answered {
            return;
        }
        let mut ended = self.ended.subscribe();
        let _ = ended.wait_for(|ended| *ended >= answered).await;
    }

    /// Runs `body` alone in one `BEGIN IMMEDIATE` transaction, after any batch already running
    /// (and after committing the operations it left open).
    ///
    /// These are the account API's writes, some of them long (a batch of 1,000 keys) or waiting on
    /// another process's lock (up to the busy timeout): on a multi-threaded runtime the worker's
    /// other tasks move to a fresh thread meanwhile ([`tokio::task::block_in_place`]), so the
    /// proxy never stalls behind one.
    pub(crate) async fn transaction<T, E>(&self, body: impl AsyncFnOnce(&mut WriteConn) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let mut writing = self.writing.lock().await;
        let run = || {
            writing.commit(&self.ended)?;
            self.begun.fetch_add(1, Ordering::Relaxed);
            scoped(&mut writing.conn, |c| AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE"), body)
        };
        match tokio::runtime::Handle::try_current().map(|handle| handle.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(run),
            _ => run(),
        }
    }
}

impl Writing {
    /// Commits the open transaction, if any, and marks it ended in `ended`.
    fn commit(&mut self, ended: &watch::Sender<u64>) -> Result<(), StoreError> {
        let Some(seq) = self.open.take() else { return Ok(()) };
        let committed = raw(&mut self.conn, AnsiTransactionManager::commit_transaction);
        if committed.is_err() {
            // A failed COMMIT leaves the transaction open: end it.
            let _ = raw(&mut self.conn, AnsiTransactionManager::rollback_transaction);
        }
        ended.send_replace(seq);
        if let Err(error) = &committed {
            tracing::error!(%error, "a SQLite group commit failed; the operations it held are lost");
        }
        committed
    }
}

impl Drop for SqliteWriter {
    fn drop(&mut self) {
        // A commit task dropped with its runtime leaves the last operations open: keep them.
        let _ = self.writing.get_mut().commit(&self.ended);
    }
}

/// Runs `task` to its end on a thread of its own, with a single-threaded runtime, below the
/// request-serving threads' priority ([`crate::priority`]): a task that
/// writes through [`SqliteWriter::transaction`] there blocks only itself. (On the server's
/// multi-threaded runtime the same write would go through `block_in_place`, which hands the
/// worker's queue to another thread on every write: under load, threads came and went and each
/// request queued there waited for the hand-over.) Falls back to the current runtime when the
/// thread cannot be made.
pub(crate) fn spawn_on_own_thread(name: &str, task: impl Future<Output = ()> + Send + 'static) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::warn!(%error, name, "no runtime of its own; running on the shared one");
            tokio::spawn(task);
            return;
        }
    };
    // Handed over once the thread runs, so that it is still here when the thread cannot be made.
    let (hand_over, handed) = std::sync::mpsc::channel();
    let started = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
        if let Ok(task) = handed.recv() {
            crate::priority::background();
            runtime.block_on(task);
        }
    });
    match started {
        Ok(_) => {
            let _ = hand_over.send(task);
        }
        Err(error) => {
            tracing::warn!(%error, name, "no thread of its own; running on the shared runtime");
            tokio::spawn(task);
        }
    }
}

/// The checkpoint thread's loop: a passive checkpoint (it never waits for the writer or readers)
/// every [`CHECKPOINT_EVERY`] while the writer lives.
fn checkpoint(alive: &Weak<SqliteWriter>, open: &dyn Fn() -> anyhow::Result<SqliteConnection>) {
    use diesel::connection::SimpleConnection;
    crate::priority::background();
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

#[cfg(test)]
mod tests;
