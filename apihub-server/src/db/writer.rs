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

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use apihub_core::store::StoreError;
use diesel::SqliteConnection;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel_async::sync_connection_wrapper::{SpawnBlocking, SyncConnectionWrapper};
use futures_util::future::BoxFuture;
use tokio::sync::{oneshot, watch};

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

/// When the caller of a queued operation learns its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// As soon as its statements have run, before the commit that follows at once (see
    /// [`SqliteWriter::batched`]). For the request path's holds, settlements and releases.
    Applied,
    /// Once its transaction has committed.
    Committed,
}

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
                    Some(error) => Err(E::from(StoreError::Unavailable(error.to_string()))),
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

/// Runs `task` to its end on a thread of its own, with a single-threaded runtime: a task that
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
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::sql_types::BigInt;
    use diesel_async::SimpleAsyncConnection;

    use super::*;

    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    /// A writer on a fresh file with a table `t`, and a path to open a second connection on.
    fn writer() -> (tempfile::TempDir, String, Arc<SqliteWriter>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("w.db").display().to_string();
        let mut conn = super::super::open_sqlite_sync(&path, "PRAGMA wal_autocheckpoint = 0;").expect("open");
        conn.batch_execute("CREATE TABLE t (v INTEGER NOT NULL UNIQUE)").expect("create");
        let open = {
            let path = path.clone();
            move || super::super::open_sqlite_sync(&path, "")
        };
        (dir, path, SqliteWriter::new(conn, open).expect("writer"))
    }

    /// Rows in `t`, read on a connection of its own (what the read pool sees).
    fn rows(path: &str) -> i64 {
        let mut conn = super::super::open_sqlite_sync(path, "").expect("open");
        diesel::RunQueryDsl::get_result::<Count>(diesel::sql_query("SELECT count(*) AS n FROM t"), &mut conn)
            .expect("count")
            .n
    }

    async fn exec(conn: &mut WriteConn, sql: &str) -> Result<(), StoreError> {
        conn.batch_execute(sql).await.map_err(|e| StoreError::Invalid(e.to_string()))
    }

    async fn insert(writer: &Arc<SqliteWriter>, answer: Answer, v: i64) -> Result<(), StoreError> {
        writer
            .batched(answer, async move |conn: &mut WriteConn| {
                exec(conn, &format!("INSERT INTO t (v) VALUES ({v})")).await
            })
            .await
    }

    #[tokio::test]
    async fn an_applied_operation_is_answered_before_its_commit_and_read_after_it() {
        let (_dir, path, writer) = writer();
        insert(&writer, Answer::Applied, 1).await.expect("insert");
        // Answered, and not yet committed: the commit is a task that has not run on this thread.
        assert_eq!(rows(&path), 0);
        writer.visible().await;
        assert_eq!(rows(&path), 1);
        // Nothing pending: no wait at all.
        writer.visible().await;
    }

    #[tokio::test]
    async fn a_committed_operation_is_answered_after_its_commit_with_what_was_applied_before() {
        let (_dir, path, writer) = writer();
        insert(&writer, Answer::Applied, 1).await.expect("insert");
        insert(&writer, Answer::Committed, 2).await.expect("insert");
        assert_eq!(rows(&path), 2);
    }

    #[tokio::test]
    async fn a_failed_operation_in_an_open_transaction_rolls_back_alone() {
        let (_dir, path, writer) = writer();
        insert(&writer, Answer::Applied, 1).await.expect("insert");
        let failed = writer
            .batched(Answer::Applied, async move |conn: &mut WriteConn| {
                exec(conn, "INSERT INTO t (v) VALUES (2)").await?;
                // The unique column refuses this one: the savepoint drops both inserts.
                exec(conn, "INSERT INTO t (v) VALUES (1)").await
            })
            .await;
        assert!(matches!(failed, Err(StoreError::Invalid(_))), "{failed:?}");
        insert(&writer, Answer::Applied, 3).await.expect("insert");
        writer.visible().await;
        assert_eq!(rows(&path), 2);
    }

    #[tokio::test]
    async fn a_failed_operation_alone_rolls_back_its_transaction() {
        let (_dir, path, writer) = writer();
        insert(&writer, Answer::Committed, 1).await.expect("insert");
        assert!(insert(&writer, Answer::Applied, 1).await.is_err());
        writer.visible().await;
        insert(&writer, Answer::Committed, 2).await.expect("insert after a rollback");
        assert_eq!(rows(&path), 2);
    }

    #[tokio::test]
    async fn an_account_transaction_commits_what_was_applied_first() {
        let (_dir, path, writer) = writer();
        insert(&writer, Answer::Applied, 1).await.expect("insert");
        writer
            .transaction(async |conn: &mut WriteConn| exec(conn, "INSERT INTO t (v) VALUES (2)").await)
            .await
            .expect("transaction");
        assert_eq!(rows(&path), 2);
    }

    /// Inserts `v` (applied) on a runtime of its own that then ends, its commit task unrun.
    fn applied_on_a_runtime_that_ends(writer: &Arc<SqliteWriter>, v: i64) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(insert(writer, Answer::Applied, v)).expect("insert");
    }

    #[test]
    fn operations_left_open_by_a_runtime_that_ends_are_committed_when_the_writer_drops() {
        let (_dir, path, writer) = writer();
        // The commit task goes with its runtime, then the writer's last handle.
        applied_on_a_runtime_that_ends(&writer, 1);
        assert_eq!(rows(&path), 0);
        drop(writer);
        assert_eq!(rows(&path), 1);
    }

    #[test]
    fn a_commit_task_lost_with_its_runtime_does_not_stop_later_commits() {
        let (_dir, path, writer) = writer();
        applied_on_a_runtime_that_ends(&writer, 1);
        let second = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        second.block_on(async {
            insert(&writer, Answer::Applied, 2).await.expect("insert");
            tokio::time::timeout(std::time::Duration::from_secs(5), writer.visible()).await.expect("committed");
        });
        assert_eq!(rows(&path), 2);
    }
}
