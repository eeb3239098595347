use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use apihub_core::billing::{BillingError, HoldRequest, NewReservation, Settled, Settlement};
use apihub_core::pricing::{ModelPrice, cost, max_charge};
use apihub_core::store::{StoreError, UsageRecord, UsageSource};
use apihub_core::usage::{Endpoint, RequestInfo, openai};
use apihub_core::{DiscountRate, Money};
use bytes::Bytes;
use chrono::Utc;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tower::Service;

use super::body::Prefixed;
use super::meter::{CostQuote, Meter, Outcome};
use super::{BillingLayer, MeteredBody, Reservation, SettlementBacklog, UsageSink};
use crate::body::{BoxError, GatewayBody, GatewayError, gateway_body, into_gateway};
use crate::context::{AuthenticatedKey, RequestId, ServedBy, require_key};
use crate::quota::BufferedBody;

/// Reserves, forwards and settles; see the [module docs](crate::billing).
#[derive(Clone)]
pub struct Billing<S> {
    pub(super) inner: S,
    pub(super) layer: BillingLayer,
}

/// Everything needed to settle a request once its body ends.
pub(crate) struct Settle {
    /// When the request was forwarded (time to first byte counts from it).
    started: Instant,
    reservation: Reservation,
    price: ModelPrice,
    /// What the operator pays the upstream that answered, when known (see [`ServedBy`]).
    cost_price: Option<ModelPrice>,
    user_discount: DiscountRate,
    key_discount: DiscountRate,
    sink: Arc<dyn UsageSink>,
    record: UsageRecord,
    backlog: Arc<SettlementBacklog>,
    /// Where the charge goes once settled, for a response that waits for it.
    receipt: Option<Arc<OnceLock<Money>>>,
}

impl Settle {
    /// Bills what `meter` saw and returns the work that writes it.
    pub(crate) fn run(self, meter: &Meter, outcome: Outcome) -> impl Future<Output = ()> + Send + 'static {
        let bill = meter.bill(outcome, &self.price, self.user_discount, self.key_discount);
        // The operator's cost of the usage billed: full price, rounded once like the charge.
        let operator_cost = self.cost_price.map(|price| cost(&price, &bill.usage));
        let first_byte = meter.first_byte().map(|at| at.saturating_duration_since(self.started));
        async move {
            let Settle { reservation, sink, mut record, backlog, receipt, .. } = self;
            record.first_byte_ms = first_byte.map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX));
            if let Some(reported) = bill.implausible {
                tracing::warn!(
                    request = %record.request_id,
                    model = %record.model,
                    ?reported,
                    max = apihub_core::usage::MAX_REPORTED_TOKENS,
                    "the upstream reported an implausible usage; billed with each count clamped to the maximum"
                );
            }
            if !bill.billable {
                if let Err(error) = reservation.release().await {
                    tracing::error!(%error, request = %record.request_id, "releasing a reservation failed");
                }
                record.status = if outcome == Outcome::Completed { record.status } else { 499 };
                sink.record(record);
                if let Some(receipt) = receipt {
                    let _ = receipt.set(Money::ZERO);
                }
                return;
            }
            let settlement = Settlement {
                charge: bill.charge,
                tokens: i64::try_from(bill.usage.total_tokens()).unwrap_or(i64::MAX),
                success: outcome == Outcome::Completed,
                description: format!("{} via key {}", record.model, record.key_id),
            };
            let count = |v: Option<u64>| i64::try_from(v.unwrap_or(0)).unwrap_or(i64::MAX);
            record.prompt_tokens = count(bill.usage.input_tokens);
            record.completion_tokens = count(bill.usage.output_tokens);
            record.cached_tokens = count(bill.usage.cache_read_tokens);
            record.raw_cost = bill.raw_cost;
            record.cost = operator_cost;
            record.usage_source = bill.source;
            if outcome == Outcome::Aborted {
                record.status = 499;
            }
            let recorded = move |settled: Settled| {
                record.charged = settled.charged;
                record.overage = settled.overage;
                sink.record(record);
                if let Some(receipt) = receipt {
                    let _ = receipt.set(settled.charged);
                }
            };
            let mut reservation = reservation;
            match reservation.try_settle(&settlement).await {
                Ok(settled) => recorded(settled),
                // The store could not write it: the reservation stays open and the settlement is
                // retried on a task of its own until it is written, so the answered request is
                // billed exactly once; the client's response ends now.
                Err(BillingError::Store(error)) => {
                    tracing::error!(%error, reservation = ?reservation, "settling failed; retrying until written");
                    backlog.retry(reservation, settlement, recorded);
                }
                Err(error) => tracing::error!(%error, "settling a reservation failed"),
            }
        }
    }
}

/// A refused hold's response: [`reject`]'s error, and for a spent budget a `Retry-After` until
/// its window resets.
fn refused(error: BillingError) -> Response<GatewayBody> {
    let resets_at = match &error {
        BillingError::BudgetSpent { resets_at, .. } => Some(*resets_at),
        _ => None,
    };
    let mut response = reject(error).into_response();
    if let Some(resets_at) = resets_at {
        let seconds = (resets_at.saturating_sub(Utc::now().timestamp_millis()).saturating_add(999) / 1000).max(1);
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn reject(error: BillingError) -> GatewayError {
    match error {
        BillingError::InsufficientBalance { available, required } => GatewayError::new(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_quota",
            "insufficient_quota",
            format!(
                "insufficient balance: this request may cost up to {required} credits and {available} are available"
            ),
        ),
        BillingError::KeyLimit { limit } => crate::quota::key_limit_refusal(limit),
        BillingError::BudgetSpent { scope, period, limit, resets_at } => {
            let resets = chrono::DateTime::from_timestamp_millis(resets_at)
                .map_or_else(String::new, |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            GatewayError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                "budget_exceeded",
                format!("this {scope}'s {period} {limit} budget is spent; it resets at {resets}"),
            )
        }
        BillingError::NotOpen(_) | BillingError::Store(_) => {
            tracing::error!(%error, "reserving failed");
            GatewayError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                "service_unavailable",
                "billing is unavailable",
            )
        }
    }
}

/// The refusal of a request that reached billing with an authenticated key but without the
/// [`RequestInfo`] the quota layer leaves for a metered route: the quota layer did not run before
/// billing (the layers are out of order, or it is missing), so what the request asks for was
/// never read and it cannot be billed. A 503 `gateway_misconfigured`, logged as an error: the
/// client cannot change anything (a 4xx would tell it to), and a 500 would suggest a crash; under
/// [`GatewayBuilder`](crate::GatewayBuilder) this never happens (an unmetered path is a 404 from
/// the quota layer).
fn unread() -> GatewayError {
    tracing::error!(
        "refused a request billing cannot read: the quota layer must run before billing \
         (use GatewayBuilder, or the order key auth, rate limit, quota, billing)"
    );
    GatewayError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "api_error",
        "gateway_misconfigured",
        "this gateway cannot bill the request",
    )
}

fn upstream_failure(error: BoxError) -> GatewayError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
    let mut timed_out = false;
    while let Some(e) = cause {
        timed_out |= e.is::<tower::timeout::error::Elapsed>();
        cause = e.source();
    }
    if timed_out {
        GatewayError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "api_error",
            "upstream_timeout",
            "the upstream did not answer in time",
        )
    } else {
        tracing::warn!(%error, "upstream request failed");
        GatewayError::new(
            StatusCode::BAD_GATEWAY,
            "api_error",
            "upstream_unavailable",
            "the upstream could not be reached",
        )
    }
}

/// What the request asks for, checked: the model, its price and the hold.
struct Plan {
    info: RequestInfo,
    model: String,
    price: ModelPrice,
    hold: HoldRequest,
}

impl BillingLayer {
    fn plan(&self, identity: &AuthenticatedKey, info: RequestInfo) -> Result<Plan, GatewayError> {
        let model = info.model.clone().ok_or_else(|| {
            GatewayError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "model_required",
                "the request names no model",
            )
        })?;
        let price = self.shared.prices.price(&model).ok_or_else(|| {
            GatewayError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
                format!("the model `{model}` does not exist or is not available on this gateway"),
            )
        })?;
        // The hold is the expected cost of the prompt (its bytes ÷ 4 tokens, at the highest of the
        // input and cache prices) plus the whole output cap, discounted and rounded once. It is not
        // a worst case: usage above it is still billed at settlement.
        let output_cap = info.output_cap.unwrap_or(self.shared.config.default_output_cap);
        let amount = max_charge(
            &price,
            info.prompt_estimate,
            output_cap,
            identity.user_discount,
            identity.key.policy.discount_rate,
        );
        let tokens = i64::try_from(info.prompt_estimate.saturating_add(output_cap)).unwrap_or(i64::MAX);
        Ok(Plan { info, model, price, hold: HoldRequest { amount, tokens } })
    }
}

impl<S, B, ResBody> Service<Request<B>> for Billing<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError> + Send,
    B: From<Bytes> + Send + 'static,
    ResBody: Body<Data = Bytes> + Unpin + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<GatewayBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        // Fail closed: a request this layer cannot bill is refused, never forwarded for free.
        let admitted = require_key(&request, "billing")
            .cloned()
            .and_then(|identity| Ok((identity, request.extensions_mut().remove::<RequestInfo>().ok_or_else(unread)?)));
        Box::pin(async move {
            let (identity, info) = match admitted {
                Ok(admitted) => admitted,
                Err(rejection) => return Ok(rejection.into_response()),
            };
            let plan = match layer.plan(&identity, info) {
                Ok(plan) => plan,
                Err(rejection) => return Ok(rejection.into_response()),
            };
            let request_id = RequestId::of(&request);
            let reservation = NewReservation {
                user_id: identity.user_id,
                key_id: identity.key.id,
                request_id: request_id.0.clone(),
                hold: plan.hold,
            };
            if layer.shared.backlog.is_full() {
                // Settlements are waiting for the store: take no new holds until they are written.
                let error = StoreError::Unavailable("settlements are waiting to be written".into());
                return Ok(reject(BillingError::Store(error)).into_response());
            }
            let reservation = match layer.shared.store.reserve(&reservation).await {
                Ok(id) => Reservation::new(layer.shared.store.clone(), id, plan.hold),
                Err(error) => return Ok(refused(error)),
            };

            // A streaming OpenAI request that did not ask for usage is asked for it anyway, and the
            // extra usage chunk is removed from what the client sees.
            let mut strip_usage_chunk = false;
            if plan.info.stream
                && matches!(plan.info.endpoint, Endpoint::ChatCompletions | Endpoint::Completions)
                && let Some(BufferedBody(bytes)) = request.extensions().get::<BufferedBody>()
            {
                let rewritten = openai::include_usage(bytes);
                if rewritten.added {
                    let body = Bytes::from(rewritten.body.into_owned());
                    request.headers_mut().remove(header::CONTENT_LENGTH);
                    *request.body_mut() = B::from(body);
                    strip_usage_chunk = true;
                }
            }
            request.extensions_mut().insert(request_id.clone());
            // What billing read, for the upstream service (a gateway choosing among upstreams by model).
            request.extensions_mut().insert(plan.info.clone());

            let mut record = UsageRecord {
                request_id: request_id.0.clone(),
                user_id: identity.user_id,
                key_id: identity.key.id,
                model: plan.model.clone(),
                endpoint: request.uri().path().to_owned(),
                route_id: None,
                stream: plan.info.stream,
                prompt_tokens: 0,
                completion_tokens: 0,
                cached_tokens: 0,
                raw_cost: Money::ZERO,
                user_discount: identity.user_discount,
                key_discount: identity.key.policy.discount_rate,
                charged: Money::ZERO,
                overage: Money::ZERO,
                status: 0,
                upstream_latency_ms: 0,
                first_byte_ms: None,
                usage_source: UsageSource::Reported,
                created_at: Utc::now(),
                channel: None,
                attempts: 1,
                cost: None,
            };
            let started = Instant::now();
            let response = inner.call(request).await;
            let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
            let failed = |mut record: UsageRecord, status: StatusCode| {
                record.status = status.as_u16();
                record.upstream_latency_ms = latency_ms;
                layer.shared.sink.record(record);
            };
            let request_id_header = HeaderValue::from_str(&request_id.0).ok();
            let with_request_id = |mut response: Response<GatewayBody>| {
                if let Some(value) = request_id_header.clone() {
                    response.headers_mut().insert(REQUEST_ID, value);
                }
                response
            };
            let response = match response {
                Ok(response) => response,
                Err(error) => {
                    let rejection = upstream_failure(error.into());
                    release(reservation).await;
                    failed(record, rejection.status);
                    return Ok(with_request_id(rejection.into_response()));
                }
            };
            let mut cost_price = None;
            if let Some(served) = response.extensions().get::<ServedBy>() {
                record.channel = Some(served.upstream.clone());
                record.attempts = served.attempts;
                cost_price = served.cost_price;
            }
            let status = response.status();
            if !layer.shared.extractor.succeeded(&plan.info, status) {
                // The upstream's own error passes through, and costs nothing.
                release(reservation).await;
                failed(record, status);
                return Ok(with_request_id(into_gateway(response)));
            }
            let is_sse = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            // Only the dialects' streams are read as they pass; any other SSE body (a per-call
            // API's) is read whole by the extractor, like JSON, so it is billed like JSON too.
            // An OpenAI stream whose client asked for the usage chunk gets its cost in it.
            let client_usage_chunk =
                !strip_usage_chunk && matches!(plan.info.endpoint, Endpoint::ChatCompletions | Endpoint::Completions);
            let meter = if is_sse && reads_streams(plan.info.endpoint) {
                if client_usage_chunk {
                    let quote = CostQuote {
                        price: plan.price,
                        user: identity.user_discount,
                        key: identity.key.policy.discount_rate,
                    };
                    Meter::sse_with_cost(plan.info.endpoint, plan.info.prompt_estimate, quote)
                } else {
                    Meter::sse(plan.info.endpoint, plan.info.prompt_estimate, strip_usage_chunk)
                }
            } else {
                Meter::json(plan.info.clone(), layer.shared.extractor.clone(), layer.shared.config.max_metered_body)
            };
            // Only a body that is not a stream of events (not even a per-call API's) waits for
            // its cost: holding back a stream's events would hold back what it is for.
            let receipt = (!is_sse).then(|| Arc::new(OnceLock::new()));
            record.status = status.as_u16();
            record.upstream_latency_ms = latency_ms;
            let settle = Settle {
                started,
                reservation,
                price: plan.price,
                cost_price,
                user_discount: identity.user_discount,
                key_discount: identity.key.policy.discount_rate,
                sink: layer.shared.sink.clone(),
                record,
                backlog: layer.shared.backlog.clone(),
                receipt: receipt.clone(),
            };
            let (mut parts, body) = response.into_parts();
            if !meter.passes_through_unchanged() {
                parts.headers.remove(header::CONTENT_LENGTH);
            }
            if let Some(value) = request_id_header {
                parts.headers.insert(REQUEST_ID, value);
            }
            let body = MeteredBody::new(body, meter, settle);
            let Some(receipt) = receipt else {
                return Ok(Response::from_parts(parts, gateway_body(body)));
            };
            // A body that is not a stream (JSON) is read before its headers go out, and settled,
            // so that they can say what it cost; one above the metering limit (or cut short by
            // the upstream) goes out as it comes, without them.
            let body = match read_whole(body, layer.shared.config.max_metered_body).await {
                Ok(whole) => {
                    if let Some(charged) = receipt.get()
                        && let Ok(value) = HeaderValue::from_str(&charged.to_string())
                    {
                        parts.headers.insert(COST, value);
                        if let Some(balance) = layer.shared.store.known_balance(identity.user_id)
                            && let Ok(value) = HeaderValue::from_str(&balance.to_string())
                        {
                            parts.headers.insert(BALANCE, value);
                        }
                    }
                    gateway_body(Full::new(whole).map_err(|never| match never {}))
                }
                Err(prefixed) => gateway_body(prefixed),
            };
            Ok(Response::from_parts(parts, body))
        })
    }
}

/// The gateway's request id, on every response to a request that was forwarded (the usage
/// record's and the ledger row's `request_id`).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-apihub-request-id");
/// What a non-streamed response cost, in credits (the ledger's consume row).
pub const COST: HeaderName = HeaderName::from_static("x-apihub-cost");
/// The user's balance after that charge, in credits, where the store knows it without a round
/// trip ([`BillingStore::known_balance`](apihub_core::billing::BillingStore::known_balance)).
pub const BALANCE: HeaderName = HeaderName::from_static("x-apihub-balance");

/// Reads `body` to its end, when it ends within `limit` bytes; otherwise (or when it fails) the
/// bytes read so far followed by the rest of it, to send on as it comes.
async fn read_whole<B>(mut body: B, limit: usize) -> Result<Bytes, Prefixed<B>>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    let mut read: Vec<Bytes> = Vec::new();
    let mut size = 0usize;
    loop {
        match body.frame().await {
            None => return Ok(read.concat().into()),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    size = size.saturating_add(data.len());
                    read.push(data);
                }
                if size > limit {
                    return Err(Prefixed::new(read, Ok(body)));
                }
            }
            Some(Err(error)) => return Err(Prefixed::new(read, Err(error))),
        }
    }
}

/// Whether [`StreamUsage`](apihub_core::usage::StreamUsage) reads `endpoint`'s SSE events. It
/// reads none of an embeddings or image endpoint's: metered as a dialect stream, such a body would
/// never show output and would be served free.
fn reads_streams(endpoint: Endpoint) -> bool {
    !matches!(endpoint, Endpoint::Embeddings | Endpoint::ImageGenerations)
}

async fn release(reservation: Reservation) {
    if let Err(error) = reservation.release().await {
        tracing::error!(%error, "releasing a reservation failed");
    }
}
