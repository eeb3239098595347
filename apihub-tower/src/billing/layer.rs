use std::fmt;
use std::sync::Arc;

use apihub_core::billing::BillingStore;
use tower::Layer;

use super::{Billing, BillingConfig, PriceBook, SettlementBacklog, UsageSink};
use crate::extract::{LlmExtractor, UsageExtractor};

/// Applies [`Billing`].
#[derive(Clone)]
pub struct BillingLayer {
    /// One `Arc`: the service clones the layer on every request.
    pub(super) shared: Arc<Shared>,
}

/// What every request of a [`Billing`] service reads.
#[derive(Clone)]
pub(super) struct Shared {
    pub(super) store: Arc<dyn BillingStore>,
    pub(super) prices: Arc<dyn PriceBook>,
    pub(super) sink: Arc<dyn UsageSink>,
    pub(super) config: BillingConfig,
    pub(super) extractor: Arc<dyn UsageExtractor>,
    pub(super) backlog: Arc<SettlementBacklog>,
}

impl fmt::Debug for BillingLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BillingLayer")
            .field("config", &self.shared.config)
            .field("backlog", &self.shared.backlog)
            .finish_non_exhaustive()
    }
}

// `Billing`'s `Debug` sits here, beside the layer's, to keep `service.rs` to its request path.
impl<S: fmt::Debug> fmt::Debug for Billing<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Billing").field("inner", &self.inner).field("layer", &self.layer).finish()
    }
}

impl BillingLayer {
    /// Bills against `store` at `prices`, sending usage records to `sink`.
    pub fn new(
        store: Arc<dyn BillingStore>,
        prices: Arc<dyn PriceBook>,
        sink: Arc<dyn UsageSink>,
        config: BillingConfig,
    ) -> Self {
        let shared = Shared {
            store,
            prices,
            sink,
            config,
            extractor: Arc::new(LlmExtractor),
            backlog: Arc::new(SettlementBacklog::default()),
        };
        BillingLayer { shared: Arc::new(shared) }
    }

    /// Retries failed settlements in `backlog` (shared with whoever waits for it to drain).
    pub fn with_backlog(mut self, backlog: Arc<SettlementBacklog>) -> Self {
        Arc::make_mut(&mut self.shared).backlog = backlog;
        self
    }

    /// Settlements that failed and are being retried (see [`SettlementBacklog`]): a server waits
    /// for [`SettlementBacklog::drained`] before it exits.
    pub fn backlog(&self) -> Arc<SettlementBacklog> {
        self.shared.backlog.clone()
    }

    /// Reads non-streamed responses with `extractor` instead of the LLM dialects.
    pub fn with_extractor(mut self, extractor: Arc<dyn UsageExtractor>) -> Self {
        Arc::make_mut(&mut self.shared).extractor = extractor;
        self
    }
}

impl<S> Layer<S> for BillingLayer {
    type Service = Billing<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Billing { inner, layer: self.clone(), unready: None }
    }
}
