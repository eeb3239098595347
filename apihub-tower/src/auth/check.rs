//! Checking a presented key: the header it comes in, its format, its record, its status.

use std::sync::Arc;

use apihub_core::policy::KeyStatus;
use apihub_core::usage::{Dialect, Endpoint};
use chrono::{TimeZone, Utc};
use http::{HeaderMap, Request, StatusCode, Uri};

use super::{KeyCache, KeyFormat};
use crate::body::GatewayError;
use crate::clock::Clock;
use crate::context::AuthenticatedKey;
use crate::log_sample::LogSample;

/// The key a client presented, from whichever header its SDK uses, or from the `key=` query
/// parameter on the Gemini routes only (where Google's SDKs and REST examples put it; anywhere
/// else a key in the URL would end up in access logs without any client needing it).
pub fn presented_key<B>(request: &Request<B>) -> Option<&str> {
    presented_in(request.headers(), request.uri())
}

/// [`presented_key`] from a request's parts.
pub(crate) fn presented_in<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<&'a str> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(auth) = header("authorization")
        && let Some(token) = auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("bearer "))
    {
        return Some(token.trim());
    }
    header("x-api-key").or_else(|| header("x-goog-api-key")).or_else(|| {
        let gemini = Endpoint::from_path(uri.path()).is_some_and(|e| e.dialect() == Dialect::Gemini)
            || uri.path().starts_with("/v1beta/");
        if !gemini {
            return None;
        }
        uri.query()?.split('&').find_map(|pair| pair.strip_prefix("key=")).filter(|k| !k.is_empty())
    })
}

fn unauthorized(message: &str) -> GatewayError {
    GatewayError::new(StatusCode::UNAUTHORIZED, "invalid_request_error", "invalid_api_key", message)
}

fn forbidden(code: &'static str, message: &str) -> GatewayError {
    GatewayError::new(StatusCode::FORBIDDEN, "permission_error", code, message)
}

/// The identity of the key `presented` (what [`presented_key`] read), or the refusal: 401 for a
/// missing, malformed, unknown or wrong key, 403 for one that is disabled, expired or whose owner
/// is disabled, 503 when the lookup fails.
pub(crate) async fn authenticate(
    cache: &KeyCache,
    format: &dyn KeyFormat,
    clock: &dyn Clock,
    presented: Option<&str>,
) -> Result<AuthenticatedKey, GatewayError> {
    let presented = presented.ok_or_else(|| {
        unauthorized("missing API key: send `Authorization: Bearer <key>` (or x-api-key / x-goog-api-key)")
    })?;
    // Malformed keys are refused here, before any lookup.
    let lookup_id = format.lookup_id(presented).ok_or_else(|| unauthorized("malformed API key"))?;
    let record = cache.get(&lookup_id).await.map_err(|e| {
        static LOG: LogSample = LogSample::new();
        if let Some(skipped) = LOG.sample() {
            tracing::error!(error = %e, skipped, "key lookup failed");
        }
        GatewayError::new(StatusCode::SERVICE_UNAVAILABLE, "api_error", "service_unavailable", "key lookup failed")
    })?;
    let record = record.ok_or_else(|| unauthorized("invalid API key"))?;
    if !format.verify(presented, &record) {
        return Err(unauthorized("invalid API key"));
    }
    if record.policy.status != KeyStatus::Active {
        return Err(forbidden("key_disabled", "this API key is disabled"));
    }
    let now = Utc.timestamp_millis_opt(clock.now_millis() as i64).single().unwrap_or_else(Utc::now);
    if record.policy.is_expired(now) {
        return Err(forbidden("key_expired", "this API key has expired"));
    }
    if !record.owner_active {
        return Err(forbidden("account_disabled", "the account that owns this API key is disabled"));
    }
    Ok(AuthenticatedKey { key: Arc::clone(&record) })
}
