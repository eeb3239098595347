//! The whole gateway stack in one layer, in its documented order.

use std::fmt;
use std::sync::Arc;

use apihub_core::billing::BillingStore;
use apihub_core::usage::Endpoint;
use tower::{Layer, ServiceBuilder};

use crate::admission::{Admission, AdmissionLayer};
use crate::auth::{AhgKeys, KeyCache, KeyFormat, KeyLookup};
use crate::billing::{Billing, BillingConfig, BillingLayer, DiscardUsage, PriceBook, SettlementBacklog, UsageSink};
use crate::clock::{Clock, SystemClock};
use crate::extract::{LlmExtractor, MeteredRoutes, UsageExtractor};
use crate::rate_limit::{LocalRateLimiter, RateLimiter};

/// Builds a [`GatewayLayer`]: everything has a default but the stores and the prices.
///
/// The stack fails closed: a request to a path that is not a metered route is refused (404
/// `unknown_url`), as is a model without a price (404 `model_not_found`); neither reaches the
/// upstream. Without declarations the metered routes are the dialects' standard paths
/// (`/v1/chat/completions`, `/v1/messages`, `/v1beta/models/{model}:generateContent`…); a stack
/// mounted elsewhere declares each of its routes with [`meter`](GatewayBuilder::meter).
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Arc;
/// use apihub_core::pricing::ModelPrice;
/// use apihub_core::usage::Endpoint;
/// use apihub_tower::GatewayBuilder;
/// use apihub_tower::memory::MemoryStore;
///
/// let store = Arc::new(MemoryStore::new());
/// let prices = HashMap::from([("gpt-4o-mini".to_owned(), ModelPrice::default())]);
/// let gateway = GatewayBuilder::new(store.clone(), store, Arc::new(prices))
///     // Mounted at /llm/chat, speaking OpenAI's chat completions.
///     .meter("/llm/chat", Endpoint::ChatCompletions)
///     .build();
/// let _service = tower::ServiceBuilder::new().layer(gateway).service(tower::service_fn(
///     |_req: http::Request<String>| async { Ok::<_, std::convert::Infallible>(http::Response::new(String::new())) },
/// ));
/// ```
pub struct GatewayBuilder {
    keys: Arc<dyn KeyLookup>,
    key_format: Arc<dyn KeyFormat>,
    billing_store: Arc<dyn BillingStore>,
    prices: Arc<dyn PriceBook>,
    sink: Arc<dyn UsageSink>,
    clock: Arc<dyn Clock>,
    limiter: Option<Arc<dyn RateLimiter>>,
    cache: Option<Arc<KeyCache>>,
    max_body_bytes: usize,
    billing: BillingConfig,
    extractor: Arc<dyn UsageExtractor>,
    routes: Vec<(String, Endpoint)>,
    backlog: Option<Arc<SettlementBacklog>>,
}

impl fmt::Debug for GatewayBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayBuilder")
            .field("cache", &self.cache)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("billing", &self.billing)
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

impl GatewayBuilder {
    /// A builder over the stores that find keys and hold credit, and the price book.
    pub fn new(keys: Arc<dyn KeyLookup>, billing_store: Arc<dyn BillingStore>, prices: Arc<dyn PriceBook>) -> Self {
        GatewayBuilder {
            keys,
            key_format: Arc::new(AhgKeys),
            billing_store,
            prices,
            sink: Arc::new(DiscardUsage),
            clock: Arc::new(SystemClock),
            limiter: None,
            cache: None,
            max_body_bytes: 16 * 1024 * 1024,
            billing: BillingConfig::default(),
            extractor: Arc::new(LlmExtractor),
            routes: Vec::new(),
            backlog: None,
        }
    }

    /// Shares `backlog` (failed settlements being retried), so the caller can wait for it to
    /// drain at shutdown (default: one of the layer's own, see [`BillingLayer::backlog`]).
    pub fn settlement_backlog(mut self, backlog: Arc<SettlementBacklog>) -> Self {
        self.backlog = Some(backlog);
        self
    }

    /// Reads requests and responses with `extractor` (default: the LLM dialects at their
    /// standard paths). The paths it does not recognise are refused (404).
    pub fn extractor(mut self, extractor: Arc<dyn UsageExtractor>) -> Self {
        self.extractor = extractor;
        self
    }

    /// Meters requests to `path` as `endpoint`, in that endpoint's dialect (see
    /// [`MeteredRoutes`] for the path syntax, `{model}` for the Gemini endpoints). Once a route
    /// is declared, only declared routes are metered: every other path, the standard `/v1` ones
    /// included, is refused (404). The extractor (the LLM dialects, or the one given to
    /// [`extractor`](GatewayBuilder::extractor)) reads each declared route's requests as if they
    /// came to the endpoint's standard path.
    pub fn meter(mut self, path: impl Into<String>, endpoint: Endpoint) -> Self {
        self.routes.push((path.into(), endpoint));
        self
    }

    /// Reads presented keys with `format` (default: APIHub's `ahg_` keys, [`AhgKeys`]); e.g.
    /// [`HashedKeys`](crate::auth::HashedKeys) for an application's existing keys.
    pub fn key_format(mut self, format: Arc<dyn KeyFormat>) -> Self {
        self.key_format = format;
        self
    }

    /// Sends usage records to `sink` (default: dropped).
    pub fn usage_sink(mut self, sink: Arc<dyn UsageSink>) -> Self {
        self.sink = sink;
        self
    }

    /// Reads time from `clock` (rate-limit windows, key expiry, cache age).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Uses `limiter` (default: an in-process [`LocalRateLimiter`] on the builder's clock).
    pub fn rate_limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// Shares `cache` (so the caller can invalidate it; default: a 1 s cache on the auth store).
    pub fn key_cache(mut self, cache: Arc<KeyCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Largest request body accepted (default 16 MiB).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Billing settings.
    pub fn billing_config(mut self, config: BillingConfig) -> Self {
        self.billing = config;
        self
    }

    /// The layer.
    pub fn build(self) -> GatewayLayer {
        let cache = self.cache.unwrap_or_else(|| {
            Arc::new(KeyCache::with_clock(self.keys, self.clock.clone(), KeyCache::DEFAULT_TTL_MILLIS))
        });
        let limiter = self.limiter.unwrap_or_else(|| Arc::new(LocalRateLimiter::new(self.clock.clone())));
        let extractor = if self.routes.is_empty() {
            self.extractor
        } else {
            let routes = self
                .routes
                .into_iter()
                .fold(MeteredRoutes::new(self.extractor), |routes, (path, endpoint)| routes.route(path, endpoint));
            Arc::new(routes)
        };
        let mut billing = BillingLayer::new(self.billing_store, self.prices, self.sink, self.billing)
            .with_extractor(extractor.clone());
        if let Some(backlog) = self.backlog {
            billing = billing.with_backlog(backlog);
        }
        let admission = AdmissionLayer::new(cache)
            .key_format(self.key_format)
            .clock(self.clock)
            .rate_limiter(limiter)
            .max_body_bytes(self.max_body_bytes)
            .read_requests(extractor);
        GatewayLayer { admission, billing }
    }
}

/// Admission and billing around an upstream service.
#[derive(Debug, Clone)]
pub struct GatewayLayer {
    admission: AdmissionLayer,
    billing: BillingLayer,
}

impl GatewayLayer {
    /// The stack around `upstream`: [`Layer::layer`], without importing the trait.
    pub fn around<S>(&self, upstream: S) -> Admission<Billing<S>> {
        self.layer(upstream)
    }
}

impl<S> Layer<S> for GatewayLayer {
    type Service = Admission<Billing<S>>;

    fn layer(&self, upstream: S) -> Self::Service {
        ServiceBuilder::new()
            // Admission first: the key (nothing below sees an anonymous request, and no state is
            // created for a missing, malformed or unknown key), then its rate limits (the
            // cheapest refusal, before the body is read), then the body, read once, and what it
            // asks for against the key's policy, so a refused request never reaches billing.
            .layer(self.admission.clone())
            // Billing last, right around the upstream: the hold covers exactly the forwarded call,
            // and the response body it wraps is what the client receives. It answers upstream
            // failures itself, so the stack's error type is `Infallible`.
            .layer(self.billing.clone())
            .service(upstream)
    }
}
