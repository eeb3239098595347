//! The admission steps: [`identify`] (who, how often) on the request's head, then [`judge`]
//! (what) once its body is read.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use apihub_core::usage::{Dialect, Endpoint};
use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::{Full, LengthLimitError};

use crate::auth::{KeyCache, KeyFormat, authenticate, presented_in};
use crate::body::{BoxError, ForwardedBody, GatewayError};
use crate::clock::Clock;
use crate::context::AuthenticatedKey;
use crate::extract::UsageExtractor;
use crate::log_sample::LogSample;
use crate::quota::{check, unknown_route};
use crate::rate_limit::{Allowance, Decision, Limits, RateLimiter, limited};

/// What every request of an [`Admission`](super::Admission) service reads.
#[derive(Clone)]
pub(super) struct Policies {
    pub(super) cache: Arc<KeyCache>,
    pub(super) format: Arc<dyn KeyFormat>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) limiter: Option<Arc<dyn RateLimiter>>,
    pub(super) max_body_bytes: usize,
    pub(super) extractor: Option<Arc<dyn UsageExtractor>>,
}

impl Policies {
    /// The dialect a request for `path` is refused in: the extractor's, when admission reads
    /// requests; else by the path alone.
    pub(super) fn dialect(&self, path: &str) -> Dialect {
        match &self.extractor {
            Some(extractor) => extractor.dialect(path),
            None => crate::dialect::of(path, Endpoint::from_path(path)),
        }
    }
}

/// A refusal, as it goes to the client (boxed: the admitted path is the one kept small).
pub(super) type Refusal = Box<Response<Full<Bytes>>>;

fn refuse(error: GatewayError) -> Refusal {
    Box::new(error.into_full_response())
}

/// What [`identify`] finds: the request's parts with its identity, and what its response must
/// say of the rate limit.
pub(super) type Identified = Result<(Parts, Option<Allowance>), Refusal>;

/// [`identify`], boxed: it awaits the key lookup and the rate limiter.
pub(super) type Identifying = Pin<Box<dyn Future<Output = Identified> + Send>>;

/// Who and how often: the first two admission steps, on the request's head (its body waits).
pub(super) async fn identify(policies: Arc<Policies>, mut parts: Parts) -> Identified {
    // Who: an identity the application put there for a user it signed in, or the presented key.
    let identity = match parts.extensions.get::<AuthenticatedKey>() {
        Some(identity) => identity.clone(),
        None => {
            let presented = presented_in(&parts.headers, &parts.uri);
            let identity = authenticate(&policies.cache, policies.format.as_ref(), policies.clock.as_ref(), presented)
                .await
                .map_err(refuse)?;
            parts.extensions.insert(identity.clone());
            identity
        }
    };

    // How often: a key without limits is not counted (and creates no state).
    let policy = &identity.key.policy;
    let limits = Limits { per_minute: policy.rate_limit, per_day: policy.rate_limit_day };
    let Some(limiter) = policies.limiter.as_ref().filter(|_| limits != Limits::default()) else {
        return Ok((parts, None));
    };
    match limiter.check(identity.key.key_id, limits).await {
        Ok(Decision::Allowed(allowance)) => Ok((parts, allowance)),
        Ok(Decision::Limited { window, limit, reset_in_ms }) => Err(Box::new(limited(window, limit, reset_in_ms))),
        Err(error) => {
            // Fail open: a limiter outage must not take the gateway down with it.
            static LOG: LogSample = LogSample::new();
            if let Some(skipped) = LOG.sample() {
                tracing::error!(%error, skipped, "rate limiter unavailable; admitting the request");
            }
            Ok((parts, None))
        }
    }
}

/// The refusal of a body that could not be read whole within `limit` bytes.
pub(super) fn unreadable(error: &BoxError, limit: usize) -> Refusal {
    let error = if error.is::<LengthLimitError>() {
        let message = format!("request body is larger than {limit} bytes");
        GatewayError::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", "request_too_large", message)
    } else {
        GatewayError::new(StatusCode::BAD_REQUEST, "invalid_request_error", "bad_body", "unreadable request body")
    };
    refuse(error)
}

/// What: the body read whole, then what it asks for against the key's policy (when admission
/// reads requests). The request to forward, or the refusal.
pub(super) fn judge(policies: &Policies, mut parts: Parts, bytes: Bytes) -> Result<Request<ForwardedBody>, Refusal> {
    if let Some(extractor) = &policies.extractor {
        let path = parts.uri.path_and_query().map_or_else(|| parts.uri.path(), |p| p.as_str());
        // A path the extractor does not meter is refused, never forwarded for free.
        let info = extractor.request(path, &bytes).ok_or_else(|| refuse(unknown_route(parts.uri.path())))?;
        // Identified before the body was read, so always there.
        if let Some(identity) = parts.extensions.get::<AuthenticatedKey>() {
            check(&identity.key, Some(&info)).map_err(refuse)?;
        }
        parts.extensions.insert(info);
    }
    Ok(Request::from_parts(parts, ForwardedBody::new(bytes)))
}
