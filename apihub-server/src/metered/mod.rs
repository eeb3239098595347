//! Metered routes: any HTTP API behind the gateway's keys, limits and billing (see
//! [`apihub_core::route`]). Administrators manage them through `/api/admin/routes`.
//!
//! Each enabled route gets its own gateway stack (admission: key, rate limit, quota; billing; from
//! apihub-tower) around its own upstream, built when the routes are loaded: at start, after every
//! change made through this node, when another node announces one through Redis, and every ten
//! seconds. [`dispatch`] sits in front of the application: a request whose path is a route's is
//! served by it; any other goes on untouched. A route can never take the gateway's own paths
//! (the routes API refuses them).
//!
//! Before the stack, the request's body is read (within `PROXY_MAX_BODY_BYTES`), the client's key
//! is taken out of the route's key field (it then authenticates as `Authorization: Bearer`), and
//! the units, model and `stream` are checked: a bad value is a 400, nothing forwarded. Errors are
//! in OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`).

mod extract;
mod upstream;

use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use apihub_core::route::{CallError, MeteredRoute, RouteCall, RouteStore};
use apihub_core::store::{Store, StoreError};
use apihub_core::usage::Dialect;
use apihub_tower::GatewayBuilder;
use apihub_tower::auth::KeyCache;
use apihub_tower::billing::{SettlementBacklog, UsageSink};
use apihub_tower::body::GatewayError;
use apihub_tower::rate_limit::RateLimiter;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt};

use self::extract::{RouteExtractor, RoutePrice, RouteSink};
use self::upstream::{RouteClient, RouteUpstream};
use crate::metrics::Metrics;
use crate::proxy::dialect;

/// One route's gateway stack, boxed.
type RouteService = BoxCloneSyncService<Request<Body>, Response, Infallible>;

/// What every route's stack shares with the rest of the gateway.
#[derive(Clone)]
pub struct StackParts {
    /// Keys, credit and holds.
    pub store: Arc<dyn Store>,
    /// The key lookups the `/v1` proxy uses too (so invalidations reach both).
    pub key_cache: Arc<KeyCache>,
    /// Per-key request counters.
    pub rate_limiter: Arc<dyn RateLimiter>,
    /// Where usage records go.
    pub usage_log: Arc<dyn UsageSink>,
    /// What `GET /metrics` reports (each route's calls counted under its name).
    pub metrics: Arc<Metrics>,
    /// Settlements being retried.
    pub settlements: Arc<SettlementBacklog>,
    /// `PROXY_MAX_BODY_BYTES`.
    pub max_body_bytes: usize,
    /// `UPSTREAM_IDLE_TIMEOUT_SECS`.
    pub idle_timeout: Duration,
}

/// An enabled route, ready to serve.
struct Served {
    route: Arc<MeteredRoute>,
    service: RouteService,
}

/// The enabled routes, rebuilt whole on every reload.
pub struct RouteTable {
    store: Arc<dyn RouteStore>,
    parts: StackParts,
    client: RouteClient,
    served: RwLock<Arc<Vec<Served>>>,
}

impl RouteTable {
    /// Loads the routes from `store`.
    pub async fn load(store: Arc<dyn RouteStore>, parts: StackParts) -> Result<Self, StoreError> {
        let client = crate::proxy::upstream::pooled_client(Duration::from_secs(10));
        let table = RouteTable { store, parts, client, served: RwLock::new(Arc::default()) };
        table.reload().await?;
        Ok(table)
    }

    /// Reads the routes again and rebuilds their stacks. A stored route this node cannot use is
    /// left out (and logged): it answers 404, it is never served unbilled.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let routes = self.store.routes().await?;
        let served: Vec<Served> = routes
            .into_iter()
            .filter(|route| route.spec.enabled)
            .filter_map(|route| {
                let route = Arc::new(route);
                match self.build(route.clone()) {
                    Ok(service) => Some(Served { route, service }),
                    Err(error) => {
                        tracing::error!(route = route.id, %error, "a metered route cannot be served; left out");
                        None
                    }
                }
            })
            .collect();
        if let Ok(mut current) = self.served.write() {
            *current = Arc::new(served);
        }
        Ok(())
    }

    fn build(&self, route: Arc<MeteredRoute>) -> Result<RouteService, String> {
        let parts = &self.parts;
        let upstream = RouteUpstream::new(self.client.clone(), &route.spec, parts.idle_timeout)?;
        let gateway =
            GatewayBuilder::new(parts.store.clone(), parts.store.clone(), Arc::new(RoutePrice(route.spec.price())))
                .extractor(Arc::new(RouteExtractor(route.clone())))
                .usage_sink(Arc::new(RouteSink {
                    route_id: route.id,
                    route_name: route.spec.name.clone(),
                    metrics: parts.metrics.clone(),
                    inner: parts.usage_log.clone(),
                }))
                .key_cache(parts.key_cache.clone())
                .rate_limiter(parts.rate_limiter.clone())
                .max_body_bytes(parts.max_body_bytes)
                .settlement_backlog(parts.settlements.clone())
                .build();
        let stack = gateway.layer(upstream.into_service());
        let service = tower::service_fn(move |request: Request<Body>| {
            let call = stack.clone().oneshot(request);
            async move {
                // Billing answers an upstream failure itself (502, or 504 for a timeout).
                let response = call.await.unwrap_or_else(|never| match never {});
                Ok::<_, Infallible>(dialect::localize(Dialect::OpenAi, response.into_response()))
            }
        });
        Ok(BoxCloneSyncService::new(service))
    }

    /// Whether an enabled route serves `path` (then [`dispatch`] takes the request).
    pub fn claims(&self, path: &str) -> bool {
        self.served.read().is_ok_and(|served| serving(&served, path).next().is_some())
    }

    /// The enabled route serving `path`: the exact one, or else the longest prefix.
    fn find(&self, path: &str) -> Option<(Arc<MeteredRoute>, RouteService)> {
        let served = self.served.read().ok()?.clone();
        serving(&served, path)
            .max_by_key(|s| (!s.route.spec.prefix, s.route.spec.path.len()))
            .map(|s| (s.route.clone(), s.service.clone()))
    }
}

/// The enabled routes whose path matches `path`.
fn serving<'a>(served: &'a [Served], path: &'a str) -> impl Iterator<Item = &'a Served> {
    served.iter().filter(move |s| s.route.spec.matches(path))
}

/// Middleware: a request to a route's path is served by that route, any other goes on.
pub async fn dispatch(State(table): State<Arc<RouteTable>>, request: Request, next: Next) -> Response {
    match table.find(request.uri().path()) {
        Some((route, service)) => serve(&route, service, table.parts.max_body_bytes, request).await,
        None => next.run(request).await,
    }
}

/// A gateway error in OpenAI's shape.
fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    let kind = if status.is_server_error() { "api_error" } else { "invalid_request_error" };
    dialect::render(Dialect::OpenAi, &GatewayError::new(status, kind, code, message))
}

/// Checks the method and body, moves a key found in the body to the `Authorization` header, and
/// hands the request to the route's stack.
async fn serve(route: &MeteredRoute, service: RouteService, max_body: usize, request: Request) -> Response {
    let spec = &route.spec;
    if !spec.methods.iter().any(|m| m == request.method().as_str()) {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed");
    }
    let (mut parts, body) = request.into_parts();
    let bytes = match Limited::new(body, max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<LengthLimitError>() => {
            let message = format!("request body is larger than {max_body} bytes");
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, "request_too_large", message);
        }
        Err(_) => return refuse(StatusCode::BAD_REQUEST, "bad_body", "unreadable request body"),
    };
    let mut json = serde_json::from_slice::<Value>(&bytes).ok();
    let call = match RouteCall::read(spec, json.as_mut()) {
        Ok(call) => call,
        Err(error) => {
            let code = match error {
                CallError::Units { .. } => "invalid_units",
                CallError::Model(_) => "invalid_model",
                CallError::Stream => "stream_not_allowed",
                CallError::Key(_) => "invalid_api_key",
            };
            return refuse(StatusCode::BAD_REQUEST, code, error.to_string());
        }
    };
    let body = match (&spec.key_field, json) {
        // The key field is gone from the body: send what is left.
        (Some(_), Some(json)) if json.is_object() => Bytes::from(json.to_string()),
        _ => bytes,
    };
    if let Some(key) = call.key {
        let Ok(bearer) = HeaderValue::from_str(&format!("Bearer {key}")) else {
            return refuse(StatusCode::UNAUTHORIZED, "invalid_api_key", "malformed API key");
        };
        for name in ["x-api-key", "x-goog-api-key"] {
            parts.headers.remove(name);
        }
        parts.headers.insert(header::AUTHORIZATION, bearer);
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    service.oneshot(Request::from_parts(parts, Body::from(body))).await.unwrap_or_else(|never| match never {})
}
