//! The rate-limit answers: the headers every answer carries, and the refusal.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Response, StatusCode};
use http_body_util::Full;

use super::{Allowance, Window};
use crate::body::GatewayError;

fn seconds(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

fn put(headers: &mut HeaderMap, name: HeaderName, value: impl std::fmt::Display) {
    if let Some(value) = crate::header_value::display(value) {
        headers.insert(name, value);
    }
}

/// Puts `a` into `headers` as OpenAI's `x-ratelimit-*-requests` headers.
pub(crate) fn allowance_headers(headers: &mut HeaderMap, a: &Allowance) {
    put(headers, HeaderName::from_static("x-ratelimit-limit-requests"), a.limit);
    put(headers, HeaderName::from_static("x-ratelimit-remaining-requests"), a.remaining);
    put(headers, HeaderName::from_static("x-ratelimit-reset-requests"), format_args!("{}s", seconds(a.reset_in_ms)));
}

/// The 429 for a key that used up `limit` requests of `window`, with `Retry-After`.
pub(crate) fn limited(window: Window, limit: u32, reset_in_ms: u64) -> Response<Full<Bytes>> {
    let message = format!(
        "rate limit reached: {limit} requests {} for this key; retry in {}s",
        window.name(),
        seconds(reset_in_ms)
    );
    let mut response = GatewayError::new(StatusCode::TOO_MANY_REQUESTS, "requests", "rate_limit_exceeded", message)
        .into_full_response();
    let headers = response.headers_mut();
    put(headers, http::header::RETRY_AFTER, seconds(reset_in_ms));
    allowance_headers(headers, &Allowance { window, limit, remaining: 0, reset_in_ms });
    response
}
