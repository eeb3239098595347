//! Upstream channels (see [`apihub_core::channel`]): the service the LLM proxy forwards through.
//!
//! For each request it picks the channels that serve the request's dialect and model, orders them
//! (priority, then weighted random, channels whose breaker is open last) and tries them in turn
//! while nothing has reached the client: a connect error, a timeout to the headers, a 5xx or a 429
//! moves on to the next, up to `UPSTREAM_MAX_ATTEMPTS`. It sits inside the billing layer, so a
//! request has one hold and at most one charge whatever the number of attempts; the channel that
//! answered and the attempts go into the usage row ([`ServedBy`]).
//!
//! With no channel stored, `UPSTREAM_URL` and `UPSTREAM_API_KEY` are the one channel, `default`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use apihub_core::channel::{Breaker, BreakerPolicy, BreakerState, ChannelId, ChannelSpec, ChannelStore, attempt_order};
use apihub_core::store::StoreError;
use apihub_core::usage::{Dialect, RequestInfo};
use apihub_tower::body::{BoxError, ForwardedBody};
use apihub_tower::context::ServedBy;
use apihub_tower::log_sample::LogSample;
use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use tower::{Service, ServiceExt};

use super::rename::{Rename, Renamed};
use super::upstream::{Upstream, UpstreamConfig};
use super::{UpstreamBody, UpstreamError};

/// Longest wait for a probe's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every channel shares: the fallback upstream and the timeouts.
#[derive(Debug, Clone)]
pub struct ChannelSettings {
    /// `UPSTREAM_URL` and `UPSTREAM_API_KEY`: the channel used when none is stored.
    pub fallback: ChannelSpec,
    /// Time to connect.
    pub connect_timeout: Duration,
    /// Time to the response headers, unless the channel sets its own.
    pub timeout: Duration,
    /// Longest wait for the next bytes of a response body.
    pub idle_timeout: Duration,
    /// Most channels tried for one request.
    pub max_attempts: usize,
    /// When a channel's breaker opens and for how long.
    pub breaker: BreakerPolicy,
}

/// A channel's health, kept across reloads of its definition.
#[derive(Debug, Default)]
struct Health {
    breaker: Mutex<Breaker>,
    answered: AtomicU64,
    failed: AtomicU64,
}

/// A channel ready to take requests.
struct Live {
    spec: ChannelSpec,
    upstream: Upstream,
    timeout: Duration,
    health: Arc<Health>,
}

/// A channel's state for `/metrics` and the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelStatus {
    /// Its id (`None`: the fallback from `UPSTREAM_URL`).
    pub id: Option<ChannelId>,
    /// Its name.
    pub name: String,
    /// Its breaker.
    pub state: BreakerState,
    /// Consecutive failures.
    pub consecutive_failures: u32,
    /// Attempts it answered (any status but 5xx and 429) since this node started.
    pub answered: u64,
    /// Attempts that failed (connect error, timeout, 5xx, 429) since this node started.
    pub failed: u64,
}

/// The channels in use, each with its id (`None`: the fallback).
type LiveChannels = Vec<(Option<ChannelId>, Arc<Live>)>;

/// The channels, rebuilt whole on every reload (health carried over by id).
pub struct ChannelTable {
    store: Arc<dyn ChannelStore>,
    settings: ChannelSettings,
    live: RwLock<Arc<LiveChannels>>,
    epoch: Instant,
}

impl ChannelTable {
    /// Loads the channels from `store`.
    pub async fn load(store: Arc<dyn ChannelStore>, settings: ChannelSettings) -> Result<Arc<Self>, StoreError> {
        let table = Arc::new(ChannelTable { store, settings, live: RwLock::default(), epoch: Instant::now() });
        table.reload().await?;
        Ok(table)
    }

    /// Reads the channels again. A stored channel this node cannot use is left out (and logged).
    pub async fn reload(&self) -> Result<(), StoreError> {
        let stored = self.store.channels().await?;
        let previous = self.current();
        let health_of = |id: Option<ChannelId>| {
            previous.iter().find(|(old, _)| *old == id).map(|(_, live)| live.health.clone()).unwrap_or_default()
        };
        let mut live = Vec::new();
        if stored.is_empty() {
            let spec = self.settings.fallback.clone();
            match self.build(spec, health_of(None)) {
                Ok(channel) => live.push((None, Arc::new(channel))),
                Err(error) => tracing::error!(%error, "UPSTREAM_URL cannot be used"),
            }
        }
        for channel in stored.into_iter().filter(|c| c.spec.enabled) {
            let id = channel.id;
            match self.build(channel.spec, health_of(Some(id))) {
                Ok(built) => live.push((Some(id), Arc::new(built))),
                Err(error) => tracing::error!(channel = id, %error, "a channel cannot be used; left out"),
            }
        }
        if let Ok(mut current) = self.live.write() {
            *current = Arc::new(live);
        }
        Ok(())
    }

    fn build(&self, spec: ChannelSpec, health: Arc<Health>) -> anyhow::Result<Live> {
        let settings = &self.settings;
        let upstream = Upstream::new(&UpstreamConfig {
            url: spec.base_url.clone(),
            api_key: spec.api_key.clone(),
            connect_timeout: settings.connect_timeout,
            idle_timeout: settings.idle_timeout,
        })?;
        let timeout = spec.timeout_secs.map_or(settings.timeout, |s| Duration::from_secs(u64::from(s)));
        Ok(Live { spec, upstream, timeout, health })
    }

    fn current(&self) -> Arc<LiveChannels> {
        self.live.read().map(|live| live.clone()).unwrap_or_default()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Where the channels are stored.
    pub fn store(&self) -> &Arc<dyn ChannelStore> {
        &self.store
    }

    /// Every channel in use and its health.
    pub fn statuses(&self) -> Vec<ChannelStatus> {
        self.current().iter().map(|(id, live)| self.status_of(*id, live)).collect()
    }

    /// A stored channel's health, when it is in use (enabled and loaded).
    pub fn status(&self, id: ChannelId) -> Option<ChannelStatus> {
        let live = self.current();
        live.iter().find(|(each, _)| *each == Some(id)).map(|(id, live)| self.status_of(*id, live))
    }

    fn status_of(&self, id: Option<ChannelId>, live: &Live) -> ChannelStatus {
        let breaker = live.health.breaker.lock().map(|b| b.clone()).unwrap_or_default();
        ChannelStatus {
            id,
            name: live.spec.name.clone(),
            state: breaker.state(self.now_ms()),
            consecutive_failures: breaker.failures(),
            answered: live.health.answered.load(Ordering::Relaxed),
            failed: live.health.failed.load(Ordering::Relaxed),
        }
    }

    /// Probes every channel in use with a free request (`GET /v1/models`, or `/v1beta/models` for
    /// a Gemini-only channel; never a paid call) and feeds the answers to their breakers: a dead
    /// channel opens before a client meets it, a recovered one closes without a client's request
    /// being its trial.
    pub async fn probe(&self) {
        let live = self.current();
        let probes = live.iter().map(|(_, live)| async move {
            let path = if live.spec.dialects == [Dialect::Gemini] { "/v1beta/models" } else { "/v1/models" };
            let request = Request::get(path).body(Body::empty());
            let ok = match request {
                Ok(request) => matches!(
                    tokio::time::timeout(live.timeout.min(PROBE_TIMEOUT), live.upstream.clone().oneshot(request)).await,
                    Ok(Ok(response)) if response.status().is_success()
                ),
                Err(_) => false,
            };
            if !ok {
                tracing::warn!(channel = %live.spec.name, "a channel failed its probe");
            }
            record(self, live, ok);
        });
        futures_util::future::join_all(probes).await;
    }

    /// The channels to try for a request in `dialect` for `model` (any model when `None`), in order.
    fn plan(&self, dialect: Dialect, model: Option<&str>) -> Vec<Arc<Live>> {
        let now = self.now_ms();
        let live = self.current();
        let serving: Vec<&Arc<Live>> = live
            .iter()
            .map(|(_, live)| live)
            .filter(|live| match model {
                Some(model) => live.spec.serves(dialect, model),
                None => live.spec.enabled && (live.spec.dialects.is_empty() || live.spec.dialects.contains(&dialect)),
            })
            .collect();
        if serving.len() <= 1 {
            // One channel (the usual set-up): nothing to order.
            return serving.into_iter().cloned().collect();
        }
        let candidates: Vec<(&ChannelSpec, bool)> = serving
            .iter()
            .map(|live| (&live.spec, live.health.breaker.lock().map(|b| b.allows(now)).unwrap_or(true)))
            .collect();
        let order = attempt_order(&candidates, |n| rand::random_range(0..n.max(1)));
        order.into_iter().take(self.settings.max_attempts.max(1)).map(|i| serving[i].clone()).collect()
    }

    /// The service the proxy forwards through.
    pub fn service(self: &Arc<Self>) -> Channels {
        Channels { table: self.clone() }
    }
}

/// No channel serves the request.
#[derive(Debug, thiserror::Error)]
#[error("no enabled channel serves `{0}`")]
pub struct NoChannel(String);

/// Forwards a request through the table's channels, with failover.
#[derive(Clone)]
pub struct Channels {
    table: Arc<ChannelTable>,
}

impl Service<Request<ForwardedBody>> for Channels {
    type Response = Response<UpstreamBody>;
    type Error = UpstreamError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ForwardedBody>) -> Self::Future {
        let table = self.table.clone();
        Box::pin(async move { forward(&table, request).await.map_err(UpstreamError) })
    }
}

/// Whether a channel's answer is a failure to move on from.
fn failed(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

async fn forward(table: &ChannelTable, request: Request<ForwardedBody>) -> Result<Response<UpstreamBody>, BoxError> {
    let (mut parts, body) = request.into_parts();
    // Copied for each attempt but the last, which takes them.
    let mut headers = std::mem::take(&mut parts.headers);
    // What the request is, borrowed from it: each attempt is built from the same parts.
    let path = parts.uri.path();
    let info = parts.extensions.get::<RequestInfo>();
    let dialect = info.map_or_else(|| super::dialect::of_path(path), |info| info.endpoint.dialect());
    let model = info.and_then(|info| info.model.as_deref());
    let plan = table.plan(dialect, model);
    if plan.is_empty() {
        return Err(Box::new(NoChannel(model.unwrap_or(path).to_owned())));
    }
    // Admission has read the body whole already (its size is bounded there).
    let body = body.into_bytes();
    let attempts = plan.len();
    let mut last_error: Option<BoxError> = None;
    for (n, live) in plan.iter().enumerate() {
        let last = n + 1 == attempts;
        let upstream_model = model.map(|m| live.spec.upstream_model(m));
        let rename = match (model, upstream_model) {
            (Some(public), Some(upstream)) => Rename::model(upstream, public),
            _ => None,
        };
        let headers = if last { std::mem::take(&mut headers) } else { headers.clone() };
        let attempt = build_request(&parts, headers, &body, rename.as_ref().and(model), upstream_model)?;
        if let Ok(mut breaker) = live.health.breaker.lock() {
            breaker.attempt(table.now_ms());
        }
        let sent = tokio::time::timeout(live.timeout, live.upstream.send(attempt)).await;
        let outcome = match sent {
            Ok(Ok(response)) if !failed(response.status()) || last => Ok(response),
            Ok(Ok(response)) => Err(format!("answered {}", response.status()).into()),
            Ok(Err(error)) => Err(error),
            // The billing layer answers tower's `Elapsed` with a 504.
            Err(_) => Err(Box::new(tower::timeout::error::Elapsed::new()) as BoxError),
        };
        match outcome {
            Ok(mut response) => {
                record(table, live, !failed(response.status()));
                response.extensions_mut().insert(ServedBy {
                    upstream: live.spec.name.clone(),
                    attempts: n as u32 + 1,
                    cost_price: model.and_then(|model| live.spec.cost_price(model)),
                });
                if rename.is_some() {
                    response.headers_mut().remove(header::CONTENT_LENGTH);
                }
                return Ok(response.map(|body| Renamed::new(body, rename)));
            }
            Err(error) => {
                record(table, live, false);
                static LOG: LogSample = LogSample::new();
                if let Some(skipped) = LOG.sample() {
                    tracing::warn!(channel = %live.spec.name, attempt = n + 1, %error, skipped, "a channel failed; trying the next");
                }
                last_error = Some(error);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| Box::new(NoChannel(path.to_owned()))))
}

fn record(table: &ChannelTable, live: &Live, ok: bool) {
    let counter = if ok { &live.health.answered } else { &live.health.failed };
    counter.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut breaker) = live.health.breaker.lock() {
        if ok {
            breaker.success();
        } else {
            breaker.failure(table.now_ms(), &table.settings.breaker);
        }
    }
}

/// One attempt's request: the client's (its `parts` with `headers`), with the model renamed for
/// the channel when it has an alias for it (`public` is then the client's name, `upstream` the
/// channel's).
fn build_request(
    parts: &http::request::Parts,
    headers: http::HeaderMap,
    body: &Bytes,
    public: Option<&str>,
    upstream: Option<&str>,
) -> Result<Request<Body>, BoxError> {
    let mut request = Request::builder().method(parts.method.clone()).uri(parts.uri.clone()).version(parts.version);
    if let Some(into) = request.headers_mut() {
        *into = headers;
    }
    let (Some(public), Some(upstream)) = (public, upstream) else {
        return Ok(request.body(Body::from(body.clone()))?);
    };
    // Gemini names the model in the path, the other dialects in the body.
    let path = parts.uri.path();
    let gemini_segment = format!("/models/{public}:");
    if path.contains(&gemini_segment) {
        let renamed = path.replacen(&gemini_segment, &format!("/models/{upstream}:"), 1);
        let path_and_query = match parts.uri.query() {
            Some(query) => format!("{renamed}?{query}"),
            None => renamed,
        };
        request = request.uri(path_and_query);
        return Ok(request.body(Body::from(body.clone()))?);
    }
    let mut json: serde_json::Value = serde_json::from_slice(body)?;
    if let Some(object) = json.as_object_mut() {
        object.insert("model".into(), serde_json::Value::String(upstream.to_owned()));
    }
    let body = serde_json::to_vec(&json)?;
    let mut request = request.body(Body::from(body))?;
    request.headers_mut().remove(header::CONTENT_LENGTH);
    Ok(request)
}
