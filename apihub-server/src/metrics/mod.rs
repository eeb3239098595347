//! What `GET /metrics` reports, in Prometheus' text format.
//!
//! Counters are plain atomics updated on the request path; gauges (open reservations, the usage
//! log's queue, the database pool) are read when scraped. Nothing is labelled per key or per
//! user, so the series count stays bounded: models are the only open-ended label, and only
//! models with a price are ever forwarded.
//!
//! | metric | type | what |
//! | --- | --- | --- |
//! | `apihub_requests_total{status}` | counter | every `/v1` response, by status class (`2xx`, `4xx`, …), refusals included |
//! | `apihub_upstream_requests_total{model,status}` | counter | forwarded requests, by model and the status the client got, counted when the response ends |
//! | `apihub_upstream_tokens_total{model,kind}` | counter | tokens billed (`kind` = `input` or `output`) |
//! | `apihub_charged_micros_total{model}` | counter | credit charged, in micro-units |
//! | `apihub_overage_micros_total{model}` | counter | the part of it above requests' holds |
//! | `apihub_upstream_latency_seconds` | histogram | time to the upstream's response headers (or its failure) |
//! | `apihub_reservations_open` | gauge | holds not yet settled or released, in the whole database |
//! | `apihub_usage_log_queue` | gauge | usage records waiting to be written by this node |
//! | `apihub_db_pool_connections{state}` | gauge | this node's pool: `in_use`, `idle` |
//! | `apihub_db_pool_max_connections`, `apihub_db_pool_waiting` | gauge | its size limit, and callers waiting for a connection |
//! | `apihub_db_write_transactions_total` | counter | write transactions begun on SQLite's write connection (not on PostgreSQL: see `pg_stat_database`) |
//! | `apihub_payment_notifications_total{result}` | counter | EPay notifications: `paid` (credited now), `repeated` (already paid), `refused` (forged, wrong amount, unknown order, …), `error` (storage failed; the provider retries) |
//!
//! ```
//! use apihub_server::metrics::{Gauges, Metrics};
//!
//! let metrics = Metrics::default();
//! metrics.count_response(http::StatusCode::TOO_MANY_REQUESTS);
//! let text = metrics.render(&Gauges::default());
//! assert!(text.contains("apihub_requests_total{status=\"4xx\"} 1\n"));
//! ```

pub mod allocations;
mod exposition;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use apihub_core::store::UsageRecord;
use apihub_tower::billing::UsageSink;
use http::StatusCode;

use exposition::Exposition;

/// Upper bounds of the latency histogram's buckets, in milliseconds.
const LATENCY_BUCKETS_MS: [u64; 14] =
    [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000];

/// Status classes `1xx` to `5xx`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn class(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

/// What became of a payment provider's notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notification {
    /// The order was paid and credited now.
    Paid,
    /// The order had been paid before; nothing changed.
    Repeated,
    /// A check failed; nothing changed.
    Refused,
    /// Storage failed; the provider will retry.
    Error,
}

impl Notification {
    const ALL: [Notification; 4] =
        [Notification::Paid, Notification::Repeated, Notification::Refused, Notification::Error];

    fn label(self) -> &'static str {
        match self {
            Notification::Paid => "paid",
            Notification::Repeated => "repeated",
            Notification::Refused => "refused",
            Notification::Error => "error",
        }
    }
}

/// Per-model counters of forwarded requests.
#[derive(Default)]
struct ModelCounters {
    by_class: [AtomicU64; 5],
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    charged_micros: AtomicU64,
    overage_micros: AtomicU64,
}

/// A cumulative histogram of milliseconds.
#[derive(Default)]
struct Histogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    sum_ms: AtomicU64,
}

impl Histogram {
    fn observe(&self, ms: u64) {
        let bucket = LATENCY_BUCKETS_MS.iter().position(|&le| ms <= le).unwrap_or(LATENCY_BUCKETS_MS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// The counters of one gateway process. Shared through [`AppState`](crate::state::AppState).
#[derive(Default)]
pub struct Metrics {
    responses: [AtomicU64; 5],
    models: RwLock<BTreeMap<String, Arc<ModelCounters>>>,
    upstream_latency: Histogram,
    notifications: [AtomicU64; 4],
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The values read at scrape time; `None` leaves a metric out (its source did not answer).
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Open reservations in the database.
    pub reservations_open: Option<i64>,
    /// Usage records not yet written.
    pub usage_log_queue: usize,
    /// The database pool.
    pub pool: Option<PoolGauges>,
    /// Write transactions begun by this node, where it counts them (SQLite).
    pub db_write_transactions: Option<u64>,
    /// Heap allocations so far, with the `count-allocations` feature.
    pub allocations: Option<u64>,
    /// The upstream channels in use and their health.
    pub channels: Vec<crate::proxy::channels::ChannelStatus>,
}

/// A connection pool's state.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolGauges {
    /// Connections lent out.
    pub in_use: usize,
    /// Connections open and free.
    pub idle: usize,
    /// Most connections the pool opens.
    pub max: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
}

impl Metrics {
    /// Counts one `/v1` response.
    pub fn count_response(&self, status: StatusCode) {
        self.responses[class(status.as_u16())].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one payment notification by what became of it.
    pub fn count_notification(&self, outcome: Notification) {
        self.notifications[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one forwarded request from its usage record.
    pub fn count_usage(&self, record: &UsageRecord) {
        let counters = self.model(&record.model);
        counters.by_class[class(record.status)].fetch_add(1, Ordering::Relaxed);
        let positive = |n: i64| u64::try_from(n).unwrap_or(0);
        counters.input_tokens.fetch_add(positive(record.prompt_tokens), Ordering::Relaxed);
        counters.output_tokens.fetch_add(positive(record.completion_tokens), Ordering::Relaxed);
        counters.charged_micros.fetch_add(positive(record.charged.micros()), Ordering::Relaxed);
        counters.overage_micros.fetch_add(positive(record.overage.micros()), Ordering::Relaxed);
        self.upstream_latency.observe(positive(record.upstream_latency_ms));
    }

    fn model(&self, model: &str) -> Arc<ModelCounters> {
        if let Ok(models) = self.models.read()
            && let Some(counters) = models.get(model)
        {
            return counters.clone();
        }
        match self.models.write() {
            Ok(mut models) => models.entry(model.to_owned()).or_default().clone(),
            // A poisoned lock only means a panic elsewhere; drop this count rather than panic too.
            Err(_) => Arc::default(),
        }
    }

    /// Wraps `sink` so that every usage record it receives is counted first.
    pub fn observe_usage<S: UsageSink + 'static>(self: &Arc<Self>, sink: S) -> Arc<dyn UsageSink> {
        Arc::new(ObservedUsage { metrics: self.clone(), sink })
    }

    /// The exposition text.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = Exposition::default();
        out.family(
            "apihub_requests_total",
            "counter",
            "Responses of the /v1 proxy by status class, refusals included.",
        );
        for (name, value) in CLASSES.iter().zip(&self.responses) {
            out.sample("apihub_requests_total", &[("status", name)], value.load(Ordering::Relaxed));
        }

        let models: Vec<(String, Arc<ModelCounters>)> = match self.models.read() {
            Ok(models) => models.iter().map(|(m, c)| (m.clone(), c.clone())).collect(),
            Err(_) => Vec::new(),
        };
        out.family(
            "apihub_upstream_requests_total",
            "counter",
            "Requests forwarded to the upstream by model and the status returned (502/504: the upstream failed or timed out), counted when the response ends.",
        );
        for (model, counters) in &models {
            for (name, value) in CLASSES.iter().zip(&counters.by_class) {
                let value = value.load(Ordering::Relaxed);
                if value > 0 {
                    out.sample("apihub_upstream_requests_total", &[("model", model), ("status", name)], value);
                }
            }
        }
        out.family("apihub_upstream_tokens_total", "counter", "Tokens billed, by model and kind (input, output).");
        for (model, counters) in &models {
            for (kind, value) in [("input", &counters.input_tokens), ("output", &counters.output_tokens)] {
                out.sample(
                    "apihub_upstream_tokens_total",
                    &[("model", model), ("kind", kind)],
                    value.load(Ordering::Relaxed),
                );
            }
        }
        out.family(
            "apihub_charged_micros_total",
            "counter",
            "Credit charged, in micro-units (1 credit = 1,000,000), by model.",
        );
        for (model, counters) in &models {
            out.sample(
                "apihub_charged_micros_total",
                &[("model", model)],
                counters.charged_micros.load(Ordering::Relaxed),
            );
        }
        out.family(
            "apihub_overage_micros_total",
            "counter",
            "Credit charged above requests' holds (usage the hold did not foresee), in micro-units, by model.",
        );
        for (model, counters) in &models {
            out.sample(
                "apihub_overage_micros_total",
                &[("model", model)],
                counters.overage_micros.load(Ordering::Relaxed),
            );
        }

        let name = "apihub_upstream_latency_seconds";
        out.family(
            name,
            "histogram",
            "Time from forwarding a request to the upstream's response headers, or its failure.",
        );
        let mut cumulative = 0;
        for (i, count) in self.upstream_latency.buckets.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = LATENCY_BUCKETS_MS.get(i).map_or_else(|| "+Inf".to_owned(), |&ms| exposition::seconds(ms));
            out.sample(&format!("{name}_bucket"), &[("le", &le)], cumulative);
        }
        out.sample(
            &format!("{name}_sum"),
            &[],
            exposition::seconds(self.upstream_latency.sum_ms.load(Ordering::Relaxed)),
        );
        out.sample(&format!("{name}_count"), &[], cumulative);

        out.family(
            "apihub_payment_notifications_total",
            "counter",
            "Payment provider notifications by result: paid, repeated (already paid), refused, error.",
        );
        for outcome in Notification::ALL {
            let value = self.notifications[outcome as usize].load(Ordering::Relaxed);
            out.sample("apihub_payment_notifications_total", &[("result", outcome.label())], value);
        }

        if let Some(open) = gauges.reservations_open {
            out.family(
                "apihub_reservations_open",
                "gauge",
                "Credit holds not yet settled or released, in the whole database.",
            );
            out.sample("apihub_reservations_open", &[], open);
        }
        out.family("apihub_usage_log_queue", "gauge", "Usage records waiting to be written by this node.");
        out.sample("apihub_usage_log_queue", &[], gauges.usage_log_queue);
        if let Some(pool) = gauges.pool {
            out.family("apihub_db_pool_connections", "gauge", "This node's database connections by state.");
            out.sample("apihub_db_pool_connections", &[("state", "in_use")], pool.in_use);
            out.sample("apihub_db_pool_connections", &[("state", "idle")], pool.idle);
            out.family("apihub_db_pool_max_connections", "gauge", "Most connections this node's pool opens.");
            out.sample("apihub_db_pool_max_connections", &[], pool.max);
            out.family("apihub_db_pool_waiting", "gauge", "Callers waiting for a database connection.");
            out.sample("apihub_db_pool_waiting", &[], pool.waiting);
        }
        if let Some(count) = gauges.db_write_transactions {
            out.family(
                "apihub_db_write_transactions_total",
                "counter",
                "Write transactions begun on this node's SQLite write connection.",
            );
            out.sample("apihub_db_write_transactions_total", &[], count);
        }
        if !gauges.channels.is_empty() {
            use apihub_core::channel::BreakerState;
            out.family(
                "apihub_channel_state",
                "gauge",
                "Each upstream channel's circuit breaker: 1 for its current state (closed, open, half_open).",
            );
            for channel in &gauges.channels {
                for (state, name) in [
                    (BreakerState::Closed, "closed"),
                    (BreakerState::Open, "open"),
                    (BreakerState::HalfOpen, "half_open"),
                ] {
                    let value = u64::from(channel.state == state);
                    out.sample("apihub_channel_state", &[("channel", &channel.name), ("state", name)], value);
                }
            }
            out.family(
                "apihub_channel_attempts_total",
                "counter",
                "Requests sent to each upstream channel by result: answered, or failed (connect error, timeout, 5xx, 429).",
            );
            for channel in &gauges.channels {
                out.sample(
                    "apihub_channel_attempts_total",
                    &[("channel", &channel.name), ("result", "answered")],
                    channel.answered,
                );
                out.sample(
                    "apihub_channel_attempts_total",
                    &[("channel", &channel.name), ("result", "failed")],
                    channel.failed,
                );
            }
        }
        if let Some(count) = gauges.allocations {
            out.family("apihub_allocations_total", "counter", "Heap allocations (count-allocations builds only).");
            out.sample("apihub_allocations_total", &[], count);
        }
        out.finish()
    }
}

/// A [`UsageSink`] that counts each record, then passes it on.
struct ObservedUsage<S> {
    metrics: Arc<Metrics>,
    sink: S,
}

impl<S: UsageSink> UsageSink for ObservedUsage<S> {
    fn record(&self, record: UsageRecord) {
        self.metrics.count_usage(&record);
        self.sink.record(record);
    }

    fn is_full(&self) -> bool {
        self.sink.is_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apihub_core::DiscountRate;
    use apihub_core::Money;
    use apihub_core::store::UsageSource;

    fn record(model: &str, status: u16, latency_ms: i64) -> UsageRecord {
        UsageRecord {
            request_id: "gw-1".into(),
            user_id: 1,
            key_id: 1,
            model: model.into(),
            endpoint: "/v1/chat/completions".into(),
            route_id: None,
            stream: false,
            prompt_tokens: 7,
            completion_tokens: 3,
            cached_tokens: 0,
            raw_cost: Money::from_micros(10),
            user_discount: DiscountRate::FULL_PRICE,
            key_discount: DiscountRate::FULL_PRICE,
            charged: Money::from_micros(10),
            overage: Money::ZERO,
            status,
            upstream_latency_ms: latency_ms,
            first_byte_ms: None,
            usage_source: UsageSource::Reported,
            created_at: chrono::Utc::now(),
            channel: None,
            attempts: 1,
            cost: None,
        }
    }

    #[test]
    fn renders_counters_histogram_and_gauges() {
        let metrics = Arc::new(Metrics::default());
        metrics.count_response(StatusCode::OK);
        metrics.count_response(StatusCode::OK);
        metrics.count_response(StatusCode::PAYMENT_REQUIRED);
        let sink = metrics.observe_usage(apihub_tower::billing::DiscardUsage);
        sink.record(record("gpt-4o", 200, 3));
        sink.record(record("gpt-4o", 502, 40));
        sink.record(record("a\"b\\c\nd", 200, 400_000));
        let gauges = Gauges {
            reservations_open: Some(4),
            usage_log_queue: 2,
            pool: Some(PoolGauges { in_use: 1, idle: 3, max: 16, waiting: 0 }),
            db_write_transactions: Some(7),
            allocations: None,
            channels: vec![crate::proxy::channels::ChannelStatus {
                id: Some(1),
                name: "backup".into(),
                state: apihub_core::channel::BreakerState::Open,
                consecutive_failures: 3,
                answered: 5,
                failed: 3,
            }],
        };
        let text = metrics.render(&gauges);
        for line in [
            "# TYPE apihub_requests_total counter",
            "apihub_requests_total{status=\"2xx\"} 2",
            "apihub_channel_state{channel=\"backup\",state=\"open\"} 1",
            "apihub_channel_state{channel=\"backup\",state=\"closed\"} 0",
            "apihub_channel_attempts_total{channel=\"backup\",result=\"failed\"} 3",
            "apihub_requests_total{status=\"4xx\"} 1",
            "apihub_requests_total{status=\"5xx\"} 0",
            "apihub_upstream_requests_total{model=\"gpt-4o\",status=\"2xx\"} 1",
            "apihub_upstream_requests_total{model=\"gpt-4o\",status=\"5xx\"} 1",
            "apihub_upstream_requests_total{model=\"a\\\"b\\\\c\\nd\",status=\"2xx\"} 1",
            "apihub_upstream_tokens_total{model=\"gpt-4o\",kind=\"input\"} 14",
            "apihub_charged_micros_total{model=\"gpt-4o\"} 20",
            "apihub_overage_micros_total{model=\"gpt-4o\"} 0",
            "apihub_db_write_transactions_total 7",
            "# TYPE apihub_upstream_latency_seconds histogram",
            "apihub_upstream_latency_seconds_bucket{le=\"0.005\"} 1",
            "apihub_upstream_latency_seconds_bucket{le=\"0.05\"} 2",
            "apihub_upstream_latency_seconds_bucket{le=\"300\"} 2",
            "apihub_upstream_latency_seconds_bucket{le=\"+Inf\"} 3",
            "apihub_upstream_latency_seconds_sum 400.043",
            "apihub_upstream_latency_seconds_count 3",
            "apihub_reservations_open 4",
            "apihub_usage_log_queue 2",
            "apihub_db_pool_connections{state=\"in_use\"} 1",
            "apihub_db_pool_max_connections 16",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
        }
        // No series repeats a family, and every sample line has a value.
        assert_eq!(text.matches("# TYPE apihub_requests_total ").count(), 1);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn unread_gauges_are_left_out() {
        let text = Metrics::default().render(&Gauges::default());
        assert!(!text.contains("apihub_reservations_open"));
        assert!(!text.contains("apihub_db_pool"));
        assert!(text.contains("apihub_upstream_latency_seconds_count 0\n"));
    }
}
