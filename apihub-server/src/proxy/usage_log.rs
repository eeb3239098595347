//! The usage log writer: records arrive on a channel from the billing layer (never blocking a
//! request) and are written in batches; at shutdown the channel is drained before exit. A batch
//! the database does not take is retried row by row, with a growing pause while the database is
//! away, so an outage loses no row; a row refused for what it holds is dropped and logged.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use apihub_core::store::{StoreError, UsageRecord, UsageStore};
use apihub_tower::billing::UsageSink;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Most records written in one statement batch (on SQLite a batch runs inside a group commit of
/// the request path's writes, so a big one would hold up the holds behind it).
const BATCH: usize = 100;
/// How long a partial batch waits for company.
const LINGER: Duration = Duration::from_millis(20);
/// Rounds of retries (about an hour at the longest pause) before rows that still fail are dropped.
const GIVE_UP_AFTER: u32 = 720;

enum Message {
    Record(Box<UsageRecord>),
    Flush(oneshot::Sender<()>),
}

/// The sending side, shared by every request.
#[derive(Clone)]
pub struct UsageLog {
    tx: mpsc::UnboundedSender<Message>,
    /// Records sent and not yet written (or given up on).
    queued: Arc<AtomicUsize>,
}

impl UsageLog {
    /// Starts the writer; returns the log and the writer task (await it after dropping every
    /// [`UsageLog`] to be sure every record is written).
    pub fn start(store: Arc<dyn UsageStore>) -> (UsageLog, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        (UsageLog { tx, queued: queued.clone() }, tokio::spawn(write_batches(store, rx, queued)))
    }

    /// Records waiting to be written.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Waits until every record sent before this call is written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

impl UsageSink for UsageLog {
    fn record(&self, record: UsageRecord) {
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(Message::Record(Box::new(record))).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("usage log writer is gone; a usage record was dropped");
        }
    }
}

async fn write_batches(store: Arc<dyn UsageStore>, mut rx: mpsc::UnboundedReceiver<Message>, queued: Arc<AtomicUsize>) {
    let mut batch: Vec<UsageRecord> = Vec::with_capacity(BATCH);
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let take =
            |message: Message, batch: &mut Vec<UsageRecord>, waiting: &mut Vec<oneshot::Sender<()>>| match message {
                Message::Record(record) => batch.push(*record),
                Message::Flush(done) => waiting.push(done),
            };
        take(first, &mut batch, &mut waiting);
        let linger = tokio::time::sleep(LINGER);
        tokio::pin!(linger);
        while batch.len() < BATCH && waiting.is_empty() {
            tokio::select! {
                message = rx.recv() => match message {
                    Some(message) => take(message, &mut batch, &mut waiting),
                    None => break,
                },
                () = &mut linger => break,
            }
        }
        write(store.as_ref(), &mut batch, &queued).await;
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
    write(store.as_ref(), &mut batch, &queued).await;
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
                            tracing::error!(%error, request = %record.request_id, "a usage record was refused and dropped");
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
