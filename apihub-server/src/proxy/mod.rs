//! The LLM proxy: `/v1/*` (OpenAI and Anthropic dialects) and `/v1beta/*` (Gemini), forwarded to
//! `UPSTREAM_URL` through apihub-tower's gateway stack (admission: key, rate limit,
//! quota; then billing).
//!
//! Only endpoints the gateway can meter are forwarded (see
//! [`Endpoint`](apihub_core::usage::Endpoint)); anything else under `/v1` is a 404, so no
//! upstream feature is ever served unbilled. `GET /v1/models` is answered here: the upstream's
//! list, filtered to what the key may use and what has a price. The gateway's own errors are in
//! the shape of the route's vendor ([`dialect`]).

pub mod channels;
mod connector;
pub mod dialect;
mod idle;
mod models;
pub mod prices;
pub(crate) mod rename;
pub mod upstream;
pub mod usage_log;

use std::convert::Infallible;
use std::time::Duration;

use apihub_core::usage::Endpoint;
use apihub_tower::billing::BillingConfig;
use apihub_tower::body::{BoxError, GatewayError};
use apihub_tower::{GatewayBuilder, GatewayLayer};
use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{Method, Request, StatusCode};
use tower::{Layer, ServiceBuilder, ServiceExt};

use crate::state::AppState;

/// What the proxy forwards through: the channels, each an upstream client behind a
/// time-to-headers timeout. A concrete type, not a boxed service: every layer of the metered
/// stack clones its inner service on every request, and a boxed one is an allocation each time.
pub type UpstreamService = channels::Channels;

/// The upstream's response body, ended when it stalls for `UPSTREAM_IDLE_TIMEOUT_SECS`, with the
/// model's public name given back where a channel knows it by another.
pub type UpstreamBody = rename::Renamed<idle::IdleTimeout<hyper::body::Incoming>>;

/// Why the upstream could not answer (its source may be a timeout's `Elapsed`).
#[derive(Debug)]
pub struct UpstreamError(pub BoxError);

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "upstream request failed: {}", self.0)
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

/// Loads the channels (`UPSTREAM_URL` when none is stored) and builds the service the proxy
/// forwards through.
pub async fn upstream_service(
    config: &crate::config::Config,
    store: std::sync::Arc<dyn apihub_core::channel::ChannelStore>,
) -> anyhow::Result<(UpstreamService, std::sync::Arc<channels::ChannelTable>)> {
    let mut fallback = apihub_core::channel::ChannelSpec::new("default", &config.upstream_url);
    fallback.api_key = config.upstream_api_key.as_ref().map(|k| k.expose().to_owned());
    // Checked here so that a wrong UPSTREAM_URL stops the start, as it always has.
    upstream::Upstream::new(&upstream::UpstreamConfig {
        url: fallback.base_url.clone(),
        api_key: fallback.api_key.clone(),
        connect_timeout: Duration::from_secs(config.upstream_connect_timeout_secs),
        idle_timeout: Duration::from_secs(config.upstream_idle_timeout_secs),
    })?;
    let settings = channels::ChannelSettings {
        fallback,
        connect_timeout: Duration::from_secs(config.upstream_connect_timeout_secs),
        // Time to the response headers; a stream may then run as long as it runs.
        timeout: Duration::from_secs(config.upstream_timeout_secs),
        idle_timeout: Duration::from_secs(config.upstream_idle_timeout_secs),
        max_attempts: config.upstream_max_attempts,
        breaker: apihub_core::channel::BreakerPolicy::default(),
    };
    let table = channels::ChannelTable::load(store, settings).await?;
    Ok((table.service(), table))
}

fn not_found(message: &str) -> GatewayError {
    GatewayError::new(StatusCode::NOT_FOUND, "invalid_request_error", "unknown_url", message)
}

/// The proxy itself: `/v1` and `/v1beta` requests in, responses in the route's dialect out (the
/// models list answered here, everything else through the metered stack). One per application,
/// shared by the router's routes and by the path that skips the router ([`crate::routes`]).
#[derive(Clone)]
pub struct ProxyService {
    metered: Metered,
    models: models::ModelsService,
}

impl ProxyService {
    /// The metered stack around the channels, with the state's stores, limits and usage log.
    pub fn new(state: &AppState) -> Self {
        let config = &state.config;
        let gateway = GatewayBuilder::new(state.store.clone(), state.store.clone(), state.prices.clone())
            .usage_sink(state.metrics.observe_usage(state.usage_log.clone()))
            .key_cache(state.key_cache.clone())
            .rate_limiter(state.rate_limiter.clone())
            .max_body_bytes(config.proxy_max_body_bytes)
            .settlement_backlog(state.settlements.clone())
            .billing_config(BillingConfig::default().with_default_output_cap(config.default_max_output_tokens))
            .build();
        ProxyService { metered: gateway.layer(state.upstream.clone()), models: models::service(state) }
    }

    /// Answers one request (never an error: refusals are responses in the route's dialect).
    pub fn answer(&self, request: Request<Body>) -> ProxyFuture {
        handle(self, request)
    }
}

/// What [`ProxyService::answer`] returns.
pub type ProxyFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>;

/// The proxy's path prefixes: [`router`] routes everything below them to it.
const PREFIXES: [&str; 2] = ["/v1/", "/v1beta/"];

/// Whether the `/v1` and `/v1beta` routes take `path`: what [`router`] routes to the proxy.
pub fn serves(path: &str) -> bool {
    PREFIXES.iter().any(|prefix| path.len() > prefix.len() && path.starts_with(prefix))
}

/// The `/v1` and `/v1beta` routes, with CORS and inflated request bodies.
pub fn router(state: &AppState, proxy: ProxyService) -> Router {
    let config = &state.config;
    let proxy = tower::service_fn(move |request: Request<Body>| {
        let future = proxy.answer(request);
        async move { Ok::<_, Infallible>(future.await) }
    });
    let routes = PREFIXES
        .iter()
        .fold(Router::new(), |routes, prefix| routes.route_service(&format!("{prefix}{{*path}}"), proxy.clone()));
    // Outermost first: browsers' preflights are answered before anything else (only for the
    // origins CORS_ALLOW_ORIGINS names), and gzip request bodies are inflated before the stack
    // reads them (its PROXY_MAX_BODY_BYTES limit then counts the inflated bytes).
    routes.layer(
        ServiceBuilder::new()
            .option_layer(cors(&config.cors_allow_origins))
            .layer(tower_http::decompression::RequestDecompressionLayer::new().gzip(true)),
    )
}

/// CORS for browser apps that hold a user's key: for `origins` (`*`: any), or none at all.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| http::HeaderValue::from_str(o).ok()))
    };
    let exposed = [
        "x-request-id",
        "retry-after",
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    ];
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::POST, Method::HEAD])
            // Mirrored, not `*`: browsers never let a wildcard cover `Authorization`.
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers(exposed.map(http::HeaderName::from_static))
            .max_age(Duration::from_secs(600)),
    )
}

/// The metered stack: admission (key, rate limit, quota) and billing around the upstream.
type Metered = <GatewayLayer as Layer<UpstreamService>>::Service;

/// Clones only the service that answers (the models list is a boxed service: its clone is an
/// allocation).
fn handle(proxy: &ProxyService, request: Request<Body>) -> ProxyFuture {
    let path = request.uri().path();
    let endpoint = Endpoint::from_path(path);
    let dialect = dialect::of(path, endpoint);
    let refuse = move |error: GatewayError| Box::pin(std::future::ready(dialect::render(dialect, &error)));
    let model_list = path == "/v1/models" || path == "/v1beta/models";
    // `/v1/models/{model}`, not a Gemini method (`/v1beta/models/{model}:countTokens`).
    let one_model = endpoint.is_none()
        && !path.contains(':')
        && (path.starts_with("/v1/models/") || path.starts_with("/v1beta/models/"));
    let (get, post) = (matches!(*request.method(), Method::GET | Method::HEAD), request.method() == Method::POST);
    if model_list || one_model {
        if !get {
            return refuse(method_not_allowed());
        }
        let models = proxy.models.clone();
        return Box::pin(async move {
            let response = models.oneshot(request).await.unwrap_or_else(|never| match never {});
            dialect::localize(dialect, response)
        });
    }
    if endpoint.is_none() {
        return refuse(not_found(&format!("`{path}` is not an endpoint this gateway serves")));
    }
    if !post {
        return refuse(method_not_allowed());
    }
    let call = proxy.metered.clone().oneshot(request);
    Box::pin(async move {
        // Billing answers an upstream failure itself (502, or 504 for a timeout).
        let response = call.await.unwrap_or_else(|never| match never {});
        dialect::localize(dialect, response.into_response())
    })
}

fn method_not_allowed() -> GatewayError {
    GatewayError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "method_not_allowed",
        "method not allowed",
    )
}
