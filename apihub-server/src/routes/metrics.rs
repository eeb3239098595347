//! `GET /metrics`: the gateway's counters and gauges for Prometheus (see [`crate::metrics`]).

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;

use crate::db::SqlStore;
use crate::metrics::Gauges;
use crate::state::AppState;

/// The content type of Prometheus' text format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus metrics: requests by status and model, upstream latency, open reservations, the
/// usage log's queue and the database pool. No label names a key or a user.
pub async fn metrics(State(state): State<AppState>) -> Response {
    // Read before counting, so the count's own connection is not in it.
    let pool = state.db.pool_status();
    let reservations_open =
        match tokio::time::timeout(Duration::from_secs(2), SqlStore::new(state.db.clone()).open_reservations()).await {
            Ok(Ok(open)) => Some(open),
            Ok(Err(error)) => {
                tracing::warn!(%error, "counting open reservations for /metrics failed");
                None
            }
            Err(_) => {
                tracing::warn!("counting open reservations for /metrics timed out");
                None
            }
        };
    let gauges = Gauges {
        reservations_open,
        usage_log_queue: state.usage_log.queued(),
        pool: Some(pool),
        db_write_transactions: state.db.write_transactions(),
        allocations: crate::metrics::allocations::allocations(),
        channels: state.channels.statuses(),
    };
    ([(CONTENT_TYPE, TEXT_FORMAT)], state.metrics.render(&gauges)).into_response()
}
