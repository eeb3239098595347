//! How the gateway stack reads one route's calls: its units, model and success statuses, its
//! price, and the route id on each usage record.

use std::sync::Arc;

use apihub_core::pricing::ModelPrice;
use apihub_core::route::{MeteredRoute, RouteCall, RouteId};
use apihub_core::store::UsageRecord;
use apihub_core::usage::{Endpoint, RequestInfo, Usage};
use apihub_tower::billing::{PriceBook, UsageSink};
use apihub_tower::extract::UsageExtractor;
use serde_json::Value;

use crate::metrics::Metrics;

/// One route's calls: `units` images (so the per-unit price applies), the body's model or the
/// route's name, success as the route defines it.
pub(crate) struct RouteExtractor(pub(crate) Arc<MeteredRoute>);

impl UsageExtractor for RouteExtractor {
    fn request(&self, _path: &str, body: &[u8]) -> Option<RequestInfo> {
        let spec = &self.0.spec;
        let mut json = serde_json::from_slice::<Value>(body).ok();
        // Checked before the stack (a clear 400); refused here too, never billed at a guess.
        let call = RouteCall::read(spec, json.as_mut()).ok()?;
        Some(RequestInfo {
            endpoint: Endpoint::ImageGenerations,
            model: Some(call.model.unwrap_or_else(|| spec.name.clone())),
            stream: call.stream,
            output_cap: Some(call.units),
            prompt_estimate: 0,
        })
    }

    fn response(&self, info: &RequestInfo, _body: &[u8]) -> Usage {
        // A successful call used what it asked for.
        Usage { images: info.output_cap, ..Usage::default() }
    }

    fn succeeded(&self, _info: &RequestInfo, status: http::StatusCode) -> bool {
        self.0.spec.succeeded(status.as_u16())
    }
}

/// The route's price, whatever model the body names.
pub(crate) struct RoutePrice(pub(crate) ModelPrice);

impl PriceBook for RoutePrice {
    fn price(&self, _model: &str) -> Option<ModelPrice> {
        Some(self.0)
    }
}

/// Marks each usage record with its route, counts it in the metrics under the route's name (a
/// model named by the client's body must not make a metric label of its own), and passes it on.
pub(crate) struct RouteSink {
    pub(crate) route_id: RouteId,
    pub(crate) route_name: String,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) inner: Arc<dyn UsageSink>,
}

impl UsageSink for RouteSink {
    fn record(&self, mut record: UsageRecord) {
        record.route_id = Some(self.route_id);
        let model = std::mem::replace(&mut record.model, self.route_name.clone());
        self.metrics.count_usage(&record);
        record.model = model;
        self.inner.record(record);
    }

    fn is_full(&self) -> bool {
        self.inner.is_full()
    }
}
