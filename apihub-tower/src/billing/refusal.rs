//! Billing's refusals: a hold the store refused, a request billing cannot read, an upstream that
//! failed.

use apihub_core::billing::BillingError;
use chrono::Utc;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{BoxError, GatewayBody, GatewayError};
use crate::log_sample::LogSample;

/// A refused hold's response: [`reject`]'s error, and for a spent budget a `Retry-After` until
/// its window resets.
pub(super) fn refused(error: BillingError) -> Response<GatewayBody> {
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

pub(super) fn reject(error: BillingError) -> GatewayError {
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
            static LOG: LogSample = LogSample::new();
            if let Some(skipped) = LOG.sample() {
                tracing::error!(%error, skipped, "reserving failed");
            }
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
/// [`RequestInfo`](apihub_core::usage::RequestInfo) admission leaves for a metered route:
/// admission did not read it ([`AdmissionLayer::read_requests`](crate::admission::AdmissionLayer::read_requests)
/// was not set), so what the request asks for is unknown and it cannot be billed. A 503
/// `gateway_misconfigured`, logged as an error: the client cannot change anything (a 4xx would
/// tell it to), and a 500 would suggest a crash; under [`GatewayBuilder`](crate::GatewayBuilder)
/// this never happens (an unmetered path is a 404 from admission).
pub(super) fn unread() -> GatewayError {
    static LOG: LogSample = LogSample::new();
    if let Some(skipped) = LOG.sample() {
        tracing::error!(
            skipped,
            "refused a request billing cannot read: admission must read requests before billing \
             (use GatewayBuilder, or AdmissionLayer::read_requests)"
        );
    }
    GatewayError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "api_error",
        "gateway_misconfigured",
        "this gateway cannot bill the request",
    )
}

pub(super) fn upstream_failure(error: BoxError) -> GatewayError {
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
        static LOG: LogSample = LogSample::new();
        if let Some(skipped) = LOG.sample() {
            tracing::warn!(%error, skipped, "upstream request failed");
        }
        GatewayError::new(
            StatusCode::BAD_GATEWAY,
            "api_error",
            "upstream_unavailable",
            "the upstream could not be reached",
        )
    }
}
