use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use tower::Service;

use super::limiter::Allowance;
use super::{Decision, Limits, RateLimiter};
use crate::body::{BoxError, GatewayBody, GatewayError, into_gateway};
use crate::context::require_key;

/// Enforces the authenticated key's rate limits; see the [module docs](crate::rate_limit).
#[derive(Clone)]
pub struct RateLimit<S> {
    pub(super) inner: S,
    pub(super) limiter: Arc<dyn RateLimiter>,
}

fn seconds(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

fn put(headers: &mut HeaderMap, name: HeaderName, value: impl ToString) {
    if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
        headers.insert(name, value);
    }
}

fn allowance_headers(headers: &mut HeaderMap, a: &Allowance) {
    put(headers, HeaderName::from_static("x-ratelimit-limit-requests"), a.limit);
    put(headers, HeaderName::from_static("x-ratelimit-remaining-requests"), a.remaining);
    put(headers, HeaderName::from_static("x-ratelimit-reset-requests"), format!("{}s", seconds(a.reset_in_ms)));
}

impl<S, B, ResBody> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<GatewayBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limiter = self.limiter.clone();
        // No authenticated key: refused, never forwarded uncounted (see `require_key`).
        let key = require_key(&request, "rate limit")
            .map(|k| (k.key.id, Limits { per_minute: k.key.policy.rate_limit, per_day: k.key.policy.rate_limit_day }));
        Box::pin(async move {
            let (key_id, limits) = match key {
                Ok(key) => key,
                Err(rejection) => return Ok(rejection.into_response()),
            };
            // No limits: nothing to count (and no state is created).
            if limits == Limits::default() {
                return inner.call(request).await.map(into_gateway);
            }
            let decision = match limiter.check(key_id, limits).await {
                Ok(decision) => decision,
                Err(error) => {
                    // Fail open: a limiter outage must not take the gateway down with it.
                    tracing::error!(%error, "rate limiter unavailable; admitting the request");
                    Decision::Allowed(None)
                }
            };
            match decision {
                Decision::Allowed(allowance) => {
                    let mut response = inner.call(request).await.map(into_gateway)?;
                    if let Some(a) = allowance {
                        allowance_headers(response.headers_mut(), &a);
                    }
                    Ok(response)
                }
                Decision::Limited { window, limit, reset_in_ms } => {
                    let message = format!(
                        "rate limit reached: {limit} requests {} for this key; retry in {}s",
                        window.name(),
                        seconds(reset_in_ms)
                    );
                    let mut response =
                        GatewayError::new(StatusCode::TOO_MANY_REQUESTS, "requests", "rate_limit_exceeded", message)
                            .into_response();
                    let headers = response.headers_mut();
                    put(headers, http::header::RETRY_AFTER, seconds(reset_in_ms));
                    allowance_headers(headers, &Allowance { window, limit, remaining: 0, reset_in_ms });
                    Ok(response)
                }
            }
        })
    }
}
