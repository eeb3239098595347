//! The usage log writer: records arrive on a channel from the billing layer (never blocking a
//! request) and are written in batches; at shutdown the channel is drained before exit. A batch
//! the database does not take is retried row by row, with a growing pause while the database is
//! away, so an outage loses no row; a row refused for what it holds is dropped and logged. While
//! `USAGE_LOG_MAX_QUEUED` rows wait, the log is full ([`UsageSink::is_full`]): billing takes no
//! new hold, so no request is forwarded without room for its row and the queue stays bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use apihub_core::store::{StoreError, UsageRecord, UsageStore};
use apihub_tower::billing::UsageSink;
use apihub_tower::log_sample::LogSample;
use tokio::sync::{Notify, mpsc, oneshot};

/// Most records written in one transaction. Each transaction writes every page it touched (the
/// table's and its four indexes') once, so a big batch costs much less per row than a small one;
/// nothing waits for it but the log itself.
const BATCH: usize = 1_000;
/// How long a partial batch waits for company.
const LINGER: Duration = Duration::from_millis(50);
/// Rounds of retries (about an hour at the longest pause) before rows that still fail are dropped.
const GIVE_UP_AFTER: u32 = 720;

enum Message {
    Record(Box<UsageRecord>),
    Flush(oneshot::Sender<()>),
}

/// What the senders and the writer share besides the channel.
#[derive(Default)]
struct Counts {
    /// Records sent and not yet written (or given up on).
    queued: AtomicUsize,
    /// Messages in the channel, not yet taken by the writer.
    unread: AtomicUsize,
    /// Cuts the writer's wait for company short: a full batch, or a flush, is waiting.
    hurry: Notify,
}

/// The sending side, shared by every request.
#[derive(Clone)]
pub struct UsageLog {
    tx: mpsc::UnboundedSender<Message>,
    counts: Arc<Counts>,
    /// Records queued at which the log is full.
    max_queued: usize,
}

impl UsageLog {
    /// Starts the writer ([`UsageLog::flush`] waits for what was sent before it). On SQLite the
    /// writer has a thread of its own (`own_thread`): its statements run on the calling thread,
    /// and on a runtime worker every batch would hold up the requests queued on that worker.
    /// It is full while `max_queued` records wait.
    pub fn start(store: Arc<dyn UsageStore>, own_thread: bool, max_queued: usize) -> UsageLog {
        let (tx, rx) = mpsc::unbounded_channel();
        let counts = Arc::new(Counts::default());
        let writer = write_batches(store, rx, counts.clone());
        if own_thread {
            crate::db::spawn_on_own_thread("apihub-usage-log", writer);
        } else {
            tokio::spawn(writer);
        }
        UsageLog { tx, counts, max_queued }
    }

    /// Records waiting to be written.
    pub fn queued(&self) -> usize {
        self.counts.queued.load(Ordering::Relaxed)
    }

    /// Waits until every record sent before this call is written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.send(Message::Flush(done)) {
            self.counts.hurry.notify_one();
            let _ = wait.await;
        }
    }

    fn send(&self, message: Message) -> bool {
        let unread = self.counts.unread.fetch_add(1, Ordering::AcqRel) + 1;
        if self.tx.send(message).is_err() {
            self.counts.unread.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        if unread == BATCH {
            self.counts.hurry.notify_one();
        }
        true
    }
}

impl UsageSink for UsageLog {
    fn record(&self, record: UsageRecord) {
        self.counts.queued.fetch_add(1, Ordering::Relaxed);
        if !self.send(Message::Record(Box::new(record))) {
            self.counts.queued.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("usage log writer is gone; a usage record was dropped");
        }
    }

    fn is_full(&self) -> bool {
        self.queued() >= self.max_queued
    }
}

/// The writer: waits for a first record, then lets the batch fill for [`LINGER`] without being
/// woken by each record that joins it (a wake-up per record, across threads, cost more than the
/// record's row), unless a full batch or a flush is waiting; writes; and ends when every sender is
/// gone and the channel is empty.
async fn write_batches(store: Arc<dyn UsageStore>, mut rx: mpsc::UnboundedReceiver<Message>, counts: Arc<Counts>) {
    let mut batch: Vec<UsageRecord> = Vec::with_capacity(BATCH);
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let take = |message: Message, batch: &mut Vec<UsageRecord>, waiting: &mut Vec<oneshot::Sender<()>>| {
        counts.unread.fetch_sub(1, Ordering::AcqRel);
        match message {
            Message::Record(record) => batch.push(*record),
            Message::Flush(done) => waiting.push(done),
        }
    };
    while let Some(first) = rx.recv().await {
        take(first, &mut batch, &mut waiting);
        if waiting.is_empty() && counts.unread.load(Ordering::Acquire) + 1 < BATCH {
            let _ = tokio::time::timeout(LINGER, counts.hurry.notified()).await;
        }
        while batch.len() < BATCH
            && let Ok(message) = rx.try_recv()
        {
            take(message, &mut batch, &mut waiting);
        }
        write(store.as_ref(), &mut batch, &counts.queued).await;
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
    write(store.as_ref(), &mut batch, &counts.queued).await;
}

/// Writes `batch` (retrying), empties it and takes its rows off the `queued` count.
async fn write(store: &dyn UsageStore, batch: &mut Vec<UsageRecord>, queued: &AtomicUsize) {
    let rows = batch.len();
    write_rows(store, batch).await;
    queued.fetch_sub(rows, Ordering::Relaxed);
}

async fn write_rows(store: &dyn UsageStore, batch: &mut Vec<UsageRecord>) {
    let mut pause = Duration::from_millis(200);
    let mut rounds = 0;
    while !batch.is_empty() {
        rounds += 1;
        if rounds > GIVE_UP_AFTER {
            tracing::error!(rows = batch.len(), "usage records failing for an hour were dropped");
            batch.clear();
            return;
        }
        match store.record_usage(batch).await {
            Ok(()) => batch.clear(),
            Err(error) => {
                tracing::warn!(%error, rows = batch.len(), "writing usage records failed; trying them one by one");
                // One by one: a row the database refuses for what it is (never to be written)
                // is dropped and logged; the others are written, or kept while the database is
                // away and tried again after a growing pause, so no row is lost to an outage.
                let mut kept = Vec::new();
                for record in batch.drain(..) {
                    match store.record_usage(std::slice::from_ref(&record)).await {
                        Ok(()) => {}
                        Err(StoreError::Unavailable(_) | StoreError::Internal(_)) => kept.push(record),
                        Err(error) => {
                            static LOG: LogSample = LogSample::new();
                            if let Some(skipped) = LOG.sample() {
                                tracing::error!(%error, request = %record.request_id, skipped, "a usage record was refused and dropped");
                            }
                        }
                    }
                }
                *batch = kept;
                if !batch.is_empty() {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
