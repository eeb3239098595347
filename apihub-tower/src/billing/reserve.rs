//! The first half of a billed request: plan it and hold what it is expected to cost.

use std::future::Future;
use std::pin::Pin;

use apihub_core::Money;
use apihub_core::billing::{BillingError, NewReservation};
use apihub_core::store::{StoreError, UsageRecord, UsageSource};
use apihub_core::usage::{Endpoint, RequestInfo, openai};
use chrono::Utc;
use http::{Request, Response, header};

use super::plan::Plan;
use super::refusal::{refused, reject, unread};
use super::{BillingLayer, Reservation};
use crate::body::{ForwardedBody, GatewayBody};
use crate::context::{AuthenticatedKey, RequestId, require_key};

/// What a forwarded request carries to its answer: the hold, and what the usage record and the
/// settlement need.
pub(super) struct Ticket {
    pub(super) layer: BillingLayer,
    pub(super) identity: AuthenticatedKey,
    pub(super) plan: Plan,
    pub(super) reservation: Reservation,
    pub(super) record: UsageRecord,
    pub(super) request_id: RequestId,
    /// Whether billing asked an OpenAI stream for its usage chunk (the client did not), so the
    /// chunk is taken out of what the client sees.
    pub(super) strip_usage_chunk: bool,
}

/// [`reserve`]'s outcome: the request to forward with its ticket, or the refusal.
pub(super) type Reserved = Result<(Request<ForwardedBody>, Ticket), Response<GatewayBody>>;

/// [`reserve`], boxed: it awaits the billing store.
pub(super) type Reserving = Pin<Box<dyn Future<Output = Reserved> + Send>>;

/// Plans `request` and holds its expected cost. Fails closed: a request without an authenticated
/// key or without what admission read of it is refused, never forwarded for free.
pub(super) async fn reserve(layer: BillingLayer, mut request: Request<ForwardedBody>) -> Reserved {
    let identity = require_key(&request, "billing").map_err(|e| e.into_response())?.clone();
    let info = request.extensions_mut().remove::<RequestInfo>().ok_or_else(|| unread().into_response())?;
    let plan = layer.plan(&identity, info).map_err(|e| e.into_response())?;
    let request_id = RequestId::of(&request);
    let new = NewReservation {
        user_id: identity.key.user_id,
        key_id: identity.key.key_id,
        request_id: request_id.0.clone(),
        hold: plan.hold,
    };
    let shared = &layer.shared;
    if shared.backlog.is_full() {
        // Settlements are waiting for the store: take no new holds until they are written.
        let error = StoreError::Unavailable("settlements are waiting to be written".into());
        return Err(reject(BillingError::Store(error)).into_response());
    }
    if shared.sink.is_full() {
        // As many usage records as the sink may hold wait for its store: none more until they
        // are written.
        let error = StoreError::Unavailable("usage records are waiting to be written".into());
        return Err(reject(BillingError::Store(error)).into_response());
    }
    let reservation = match shared.store.reserve(&new).await {
        Ok(id) => Reservation::new(shared.store.clone(), id, plan.hold),
        Err(error) => return Err(refused(error)),
    };

    // A streaming OpenAI request that did not ask for usage is asked for it anyway, and the extra
    // usage chunk is removed from what the client sees.
    let mut strip_usage_chunk = false;
    if plan.info.stream && matches!(plan.info.endpoint, Endpoint::ChatCompletions | Endpoint::Completions) {
        let rewritten = openai::include_usage(request.body().bytes());
        if rewritten.added {
            let body = ForwardedBody::new(rewritten.body.into_owned());
            request.headers_mut().remove(header::CONTENT_LENGTH);
            *request.body_mut() = body;
            strip_usage_chunk = true;
        }
    }
    request.extensions_mut().insert(request_id.clone());
    // What billing read, for the upstream service (a gateway choosing among upstreams by model).
    request.extensions_mut().insert(plan.info.clone());

    let record = UsageRecord {
        request_id: request_id.0.clone(),
        user_id: identity.key.user_id,
        key_id: identity.key.key_id,
        model: plan.model.clone(),
        endpoint: request.uri().path().to_owned(),
        route_id: None,
        stream: plan.info.stream,
        prompt_tokens: 0,
        completion_tokens: 0,
        cached_tokens: 0,
        raw_cost: Money::ZERO,
        user_discount: identity.key.owner_discount,
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
    let ticket = Ticket { layer, identity, plan, reservation, record, request_id, strip_usage_chunk };
    Ok((request, ticket))
}
