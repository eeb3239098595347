use std::sync::Arc;

use apihub_core::billing::BillingStore;
use tower::Layer;

use super::{Billing, BillingConfig, PriceBook, UsageSink};
use crate::extract::{LlmExtractor, UsageExtractor};

/// Applies [`Billing`].
#[derive(Clone)]
pub struct BillingLayer {
    pub(super) store: Arc<dyn BillingStore>,
    pub(super) prices: Arc<dyn PriceBook>,
    pub(super) sink: Arc<dyn UsageSink>,
    pub(super) config: BillingConfig,
    pub(super) extractor: Arc<dyn UsageExtractor>,
}

impl BillingLayer {
    /// Bills against `store` at `prices`, sending usage records to `sink`.
    pub fn new(
        store: Arc<dyn BillingStore>,
        prices: Arc<dyn PriceBook>,
        sink: Arc<dyn UsageSink>,
        config: BillingConfig,
    ) -> Self {
        BillingLayer { store, prices, sink, config, extractor: Arc::new(LlmExtractor) }
    }

    /// Reads non-streamed responses with `extractor` instead of the LLM dialects.
    pub fn with_extractor(mut self, extractor: Arc<dyn UsageExtractor>) -> Self {
        self.extractor = extractor;
        self
    }
}

impl<S> Layer<S> for BillingLayer {
    type Service = Billing<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Billing { inner, layer: self.clone() }
    }
}
