use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use apihub_core::key::PlainKey;
use apihub_core::policy::KeyStatus;
use apihub_core::usage::{Dialect, Endpoint};
use apihub_core::user::UserStatus;
use bytes::Bytes;
use chrono::{TimeZone, Utc};
use http::{Request, Response, StatusCode};
use http_body::Body;
use tower::Service;

use super::KeyCache;
use crate::body::{BoxError, GatewayBody, GatewayError, into_gateway};
use crate::clock::Clock;
use crate::context::AuthenticatedKey;

/// Authenticates the request's API key; see the [module docs](crate::auth).
#[derive(Clone)]
pub struct KeyAuth<S> {
    pub(super) inner: S,
    pub(super) cache: Arc<KeyCache>,
    pub(super) clock: Arc<dyn Clock>,
}

/// The key a client presented, from whichever header its SDK uses, or from the `key=` query
/// parameter on the Gemini routes only (where Google's SDKs and REST examples put it; anywhere
/// else a key in the URL would end up in access logs without any client needing it).
pub fn presented_key<B>(request: &Request<B>) -> Option<&str> {
    let headers = request.headers();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(auth) = header("authorization")
        && let Some(token) = auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("bearer "))
    {
        return Some(token.trim());
    }
    header("x-api-key").or_else(|| header("x-goog-api-key")).or_else(|| {
        let gemini = Endpoint::from_path(request.uri().path()).is_some_and(|e| e.dialect() == Dialect::Gemini)
            || request.uri().path().starts_with("/v1beta/");
        if !gemini {
            return None;
        }
        request.uri().query()?.split('&').find_map(|pair| pair.strip_prefix("key=")).filter(|k| !k.is_empty())
    })
}

fn unauthorized(message: &str) -> GatewayError {
    GatewayError::new(StatusCode::UNAUTHORIZED, "invalid_request_error", "invalid_api_key", message)
}

fn forbidden(code: &'static str, message: &str) -> GatewayError {
    GatewayError::new(StatusCode::FORBIDDEN, "permission_error", code, message)
}

impl<S> KeyAuth<S> {
    async fn authenticate(
        cache: &KeyCache,
        clock: &dyn Clock,
        presented: Result<PlainKey, GatewayError>,
    ) -> Result<AuthenticatedKey, GatewayError> {
        let key = presented?;
        let entry = cache.get(key.public_id()).await.map_err(|e| {
            tracing::error!(error = %e, "key lookup failed");
            GatewayError::new(StatusCode::SERVICE_UNAVAILABLE, "api_error", "service_unavailable", "key lookup failed")
        })?;
        let entry = entry.ok_or_else(|| unauthorized("invalid API key"))?;
        if !key.matches(&entry.key.secret_hash) {
            return Err(unauthorized("invalid API key"));
        }
        if entry.key.policy.status != KeyStatus::Active {
            return Err(forbidden("key_disabled", "this API key is disabled"));
        }
        let now = Utc.timestamp_millis_opt(clock.now_millis() as i64).single().unwrap_or_else(Utc::now);
        if entry.key.policy.is_expired(now) {
            return Err(forbidden("key_expired", "this API key has expired"));
        }
        if entry.user.status != UserStatus::Active {
            return Err(forbidden("account_disabled", "the account that owns this API key is disabled"));
        }
        Ok(AuthenticatedKey { key: entry.key.clone(), user_id: entry.user.id, user_discount: entry.user.discount_rate })
    }
}

impl<S, B, ResBody> Service<Request<B>> for KeyAuth<S>
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

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let cache = self.cache.clone();
        let clock = self.clock.clone();
        // Malformed keys are refused here, before any lookup.
        let presented = match presented_key(&request) {
            None => {
                Err(unauthorized("missing API key: send `Authorization: Bearer ahg_…` (or x-api-key / x-goog-api-key)"))
            }
            Some(text) => PlainKey::parse_any(text).map_err(|_| unauthorized("malformed API key")),
        };
        Box::pin(async move {
            match Self::authenticate(&cache, clock.as_ref(), presented).await {
                Ok(identity) => {
                    request.extensions_mut().insert(identity);
                    inner.call(request).await.map(into_gateway)
                }
                Err(rejection) => Ok(rejection.into_response()),
            }
        })
    }
}
