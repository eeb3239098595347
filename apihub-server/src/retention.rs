//! `USAGE_LOG_RETENTION_DAYS`: usage rows older than the limit are deleted by a background task,
//! a small batch per statement with a pause between, so the request path's writes (which share
//! SQLite's one write connection, and PostgreSQL's table) are never held up for long.

use std::sync::Arc;
use std::time::Duration;

use apihub_core::request_log::RequestLogStore;
use apihub_core::store::StoreError;
use chrono::{DateTime, Utc};

/// Rows deleted per statement.
pub const BATCH: u32 = 5_000;
/// The pause between two batches.
pub const PAUSE: Duration = Duration::from_millis(200);
/// How often the task looks for expired rows.
pub const EVERY: Duration = Duration::from_secs(60 * 60);

/// Deletes every row created before `before`, `batch` rows per statement with `pause` between;
/// returns how many were deleted.
pub async fn prune(
    store: &dyn RequestLogStore,
    before: DateTime<Utc>,
    batch: u32,
    pause: Duration,
) -> Result<u64, StoreError> {
    let mut deleted = 0;
    loop {
        let n = store.prune_requests(before, batch).await?;
        deleted += n;
        if n < u64::from(batch) {
            return Ok(deleted);
        }
        tokio::time::sleep(pause).await;
    }
}

/// Prunes rows older than `days` days at start and then every [`EVERY`]. Abort it at shutdown.
pub fn spawn(store: Arc<dyn RequestLogStore>, days: u32) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            let before = Utc::now() - chrono::Duration::days(i64::from(days));
            match prune(store.as_ref(), before, BATCH, PAUSE).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, days, "pruned expired usage rows"),
                Err(error) => tracing::warn!(%error, "pruning expired usage rows failed"),
            }
        }
    })
}
