//! The second half of a billed request: answer it from what the upstream sent, with a metered
//! body that settles the charge when it ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use apihub_core::store::UsageRecord;
use apihub_core::usage::Endpoint;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, header};
use http_body::Body;
use http_body_util::{BodyExt, Full};

use super::body::Prefixed;
use super::meter::{CostQuote, Meter};
use super::refusal::upstream_failure;
use super::reserve::Ticket;
use super::settle::Settle;
use super::{MeteredBody, Reservation};
use crate::body::{BoxError, GatewayBody, gateway_body};
use crate::context::ServedBy;
use crate::log_sample::LogSample;

/// The gateway's request id, on every response to a request that was forwarded (the usage
/// record's and the ledger row's `request_id`).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-apihub-request-id");
/// What a non-streamed response cost, in credits (the ledger's consume row).
pub const COST: HeaderName = HeaderName::from_static("x-apihub-cost");
/// The user's balance after that charge, in credits, where the store knows it without a round
/// trip ([`BillingStore::known_balance`](apihub_core::billing::BillingStore::known_balance)).
pub const BALANCE: HeaderName = HeaderName::from_static("x-apihub-balance");

/// The answer to a forwarded request: ready (a stream, metered as it passes), or on its way (a
/// body read whole to be settled before its headers go out, a hold released first).
pub(super) enum Answer {
    Now(Response<GatewayBody>),
    Later(Pin<Box<dyn Future<Output = Response<GatewayBody>> + Send>>),
}

impl Ticket {
    /// Answers the request forwarded at `started` from what the upstream did.
    pub(super) fn answer<ResBody>(self, started: Instant, result: Result<Response<ResBody>, BoxError>) -> Answer
    where
        ResBody: Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        let Ticket { layer, identity, plan, reservation, mut record, request_id, strip_usage_chunk } = self;
        let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let request_id_header = HeaderValue::from_str(&request_id.0).ok();
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                let refusal = upstream_failure(error).into_response();
                return costs_nothing(&layer, refusal, request_id_header, reservation, record, latency_ms);
            }
        };
        let mut cost_price = None;
        if let Some(served) = response.extensions().get::<ServedBy>() {
            record.channel = Some(served.upstream.clone());
            record.attempts = served.attempts;
            cost_price = served.cost_price;
        }
        let status = response.status();
        let shared = &layer.shared;
        if !shared.extractor.succeeded(&plan.info, status) {
            // The upstream's own error passes through, and costs nothing.
            let response = response.map(gateway_body);
            return costs_nothing(&layer, response, request_id_header, reservation, record, latency_ms);
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
        let (user_discount, key_discount) = (identity.key.owner_discount, identity.key.policy.discount_rate);
        let meter = if is_sse && reads_streams(plan.info.endpoint) {
            if client_usage_chunk {
                let quote = CostQuote { price: plan.price, user: user_discount, key: key_discount };
                Meter::sse_with_cost(plan.info.endpoint, plan.info.prompt_estimate, quote)
            } else {
                Meter::sse(plan.info.endpoint, plan.info.prompt_estimate, strip_usage_chunk)
            }
        } else {
            Meter::json(plan.info.clone(), shared.extractor.clone(), shared.config.max_metered_body)
        };
        // Only a body that is not a stream of events (not even a per-call API's) waits for its
        // cost: holding back a stream's events would hold back what it is for.
        let receipt = (!is_sse).then(|| Arc::new(OnceLock::new()));
        record.status = status.as_u16();
        record.upstream_latency_ms = latency_ms;
        let settle = Settle {
            started,
            reservation,
            price: plan.price,
            cost_price,
            user_discount,
            key_discount,
            sink: shared.sink.clone(),
            record,
            backlog: shared.backlog.clone(),
            receipt: receipt.clone(),
        };
        let (mut parts, body) = response.into_parts();
        // Room for the headers the gateway adds (request id, cost, balance, rate limits) at once,
        // rather than growing the map as they come.
        parts.headers.reserve(6);
        if !meter.passes_through_unchanged() {
            parts.headers.remove(header::CONTENT_LENGTH);
        }
        if let Some(value) = request_id_header {
            parts.headers.insert(REQUEST_ID, value);
        }
        let body = gateway_body(MeteredBody::new(body, meter, settle));
        let Some(receipt) = receipt else {
            return Answer::Now(Response::from_parts(parts, body));
        };
        // A body that is not a stream (JSON) is read before its headers go out, and settled, so
        // that they can say what it cost; one above the metering limit (or cut short by the
        // upstream) goes out as it comes, without them.
        let (store, limit, user_id) = (shared.store.clone(), shared.config.max_metered_body, identity.key.user_id);
        Answer::Later(Box::pin(async move {
            let body = match read_whole(body, limit).await {
                Ok(whole) => {
                    if let Some(charged) = receipt.get()
                        && let Some(value) = crate::header_value::display(charged)
                    {
                        parts.headers.insert(COST, value);
                        if let Some(balance) = store.known_balance(user_id)
                            && let Some(value) = crate::header_value::display(balance)
                        {
                            parts.headers.insert(BALANCE, value);
                        }
                    }
                    gateway_body(Full::new(whole))
                }
                Err(prefixed) => gateway_body(prefixed),
            };
            Response::from_parts(parts, body)
        }))
    }
}

/// The answer to a request that failed: `response`, with its request id, once the hold is
/// released (before the client hears of it) and its usage record sent; it costs nothing.
fn costs_nothing(
    layer: &super::BillingLayer,
    mut response: Response<GatewayBody>,
    request_id_header: Option<HeaderValue>,
    reservation: Reservation,
    mut record: UsageRecord,
    latency_ms: i64,
) -> Answer {
    record.status = response.status().as_u16();
    record.upstream_latency_ms = latency_ms;
    if let Some(value) = request_id_header {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let shared = layer.shared.clone();
    Answer::Later(Box::pin(async move {
        release(reservation).await;
        shared.sink.record(record);
        response
    }))
}

/// Reads `body` to its end, when it ends within `limit` bytes; otherwise (or when it fails) the
/// bytes read so far followed by the rest of it, to send on as it comes.
async fn read_whole(mut body: GatewayBody, limit: usize) -> Result<Bytes, Prefixed<GatewayBody>> {
    // The usual body comes in one frame, kept apart: it is copied once, with no list to gather
    // frames in. `first` is set only while `read` is empty.
    let mut first: Option<Bytes> = None;
    let mut read: Vec<Bytes> = Vec::new();
    let mut size = 0usize;
    loop {
        match body.frame().await {
            // Copied into one buffer even when it came in one frame: a frame is a slice of the
            // upstream connection's read buffer, which hyper can reuse for the connection's next
            // response only once no such slice is alive; the client may take a while to read it.
            None => {
                return Ok(match first {
                    Some(only) => Bytes::copy_from_slice(&only),
                    None => read.concat().into(),
                });
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    size = size.saturating_add(data.len());
                    if first.is_none() && read.is_empty() {
                        first = Some(data);
                    } else {
                        read.extend(first.take());
                        read.push(data);
                    }
                }
                if size > limit {
                    return Err(Prefixed::new(first.into_iter().chain(read).collect(), Ok(body)));
                }
            }
            Some(Err(error)) => return Err(Prefixed::new(first.into_iter().chain(read).collect(), Err(error))),
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
        static LOG: LogSample = LogSample::new();
        if let Some(skipped) = LOG.sample() {
            tracing::error!(%error, skipped, "releasing a reservation failed");
        }
    }
}
