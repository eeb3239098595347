use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use apihub_core::policy::ApiKey;
use apihub_core::usage::RequestInfo;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tower::Service;

use crate::body::{BoxError, GatewayBody, GatewayError, into_gateway};
use crate::context::require_key;
use crate::extract::UsageExtractor;

/// The request body as received, kept in extensions so a layer inside can rewrite it.
#[derive(Debug, Clone)]
pub struct BufferedBody(pub Bytes);

/// Checks the request against its key's policy; see the [module docs](crate::quota).
#[derive(Clone)]
pub struct Quota<S> {
    pub(super) inner: S,
    pub(super) max_body_bytes: usize,
    pub(super) extractor: Arc<dyn UsageExtractor>,
}

fn refuse(code: &'static str, message: String) -> GatewayError {
    GatewayError::new(StatusCode::FORBIDDEN, "permission_error", code, message)
}

/// The refusal of a path that is not a metered route (see [`UsageExtractor::request`]).
fn unknown_route(path: &str) -> GatewayError {
    GatewayError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "unknown_url",
        format!("`{path}` is not a metered endpoint of this gateway"),
    )
}

/// The one refusal for a key limit (`remaining_calls`, `token_limit` or `quota_limit`), whether
/// this layer sees it used up or the billing store refuses the hold: the same status, type, code
/// and message on every backend.
pub(crate) fn key_limit_refusal(limit: &str) -> GatewayError {
    let message = match limit {
        "remaining_calls" => "this API key has no calls left".to_owned(),
        "token_limit" => "this request would exceed the API key's token limit".to_owned(),
        "quota_limit" => "this request would exceed the API key's credit limit".to_owned(),
        other => format!("this request would exceed the API key's {other}"),
    };
    GatewayError::new(StatusCode::FORBIDDEN, "insufficient_quota", "key_quota_exceeded", message)
}

/// The policy checks, as a pure function of the key and the request.
pub(crate) fn check(key: &ApiKey, info: Option<&RequestInfo>) -> Result<(), GatewayError> {
    let policy = &key.policy;
    if let Some(model) = info.and_then(|i| i.model.as_deref())
        && !policy.allows_model(model)
    {
        return Err(refuse("model_not_allowed", format!("this API key may not use the model `{model}`")));
    }
    if policy.remaining_calls.is_some_and(|left| left <= 0) {
        return Err(key_limit_refusal("remaining_calls"));
    }
    if policy.token_limit.is_some_and(|limit| key.usage.tokens_used >= limit) {
        return Err(key_limit_refusal("token_limit"));
    }
    if policy.quota_limit.is_some_and(|limit| key.usage.quota_used >= limit) {
        return Err(key_limit_refusal("quota_limit"));
    }
    Ok(())
}

impl<S, B, ResBody> Service<Request<B>> for Quota<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    B: Body<Data = Bytes> + From<Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
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
        let limit = self.max_body_bytes;
        let extractor = self.extractor.clone();
        // No authenticated key: refused before the body is read (see `require_key`).
        let identity = require_key(&request, "quota").cloned();
        Box::pin(async move {
            let identity = match identity {
                Ok(identity) => identity,
                Err(rejection) => return Ok(rejection.into_response()),
            };
            let (mut parts, body) = request.into_parts();
            let bytes = match Limited::new(body, limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) => {
                    let rejection = if error.is::<LengthLimitError>() {
                        GatewayError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "invalid_request_error",
                            "request_too_large",
                            format!("request body is larger than {limit} bytes"),
                        )
                    } else {
                        GatewayError::new(
                            StatusCode::BAD_REQUEST,
                            "invalid_request_error",
                            "bad_body",
                            "unreadable request body",
                        )
                    };
                    return Ok(rejection.into_response());
                }
            };
            let path = parts.uri.path_and_query().map_or_else(|| parts.uri.path(), |p| p.as_str());
            // A path the extractor does not meter is refused, never forwarded for free.
            let Some(info) = extractor.request(path, &bytes) else {
                return Ok(unknown_route(parts.uri.path()).into_response());
            };
            if let Err(rejection) = check(&identity.key, Some(&info)) {
                return Ok(rejection.into_response());
            }
            parts.extensions.insert(info);
            parts.extensions.insert(BufferedBody(bytes.clone()));
            inner.call(Request::from_parts(parts, B::from(bytes))).await.map(into_gateway)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apihub_core::Money;
    use apihub_core::key::SecretHash;
    use apihub_core::policy::{KeyPolicy, KeyUsage};
    use chrono::Utc;

    fn key(policy: KeyPolicy, usage: KeyUsage) -> ApiKey {
        ApiKey {
            id: 1,
            user_id: 1,
            public_id: "p".into(),
            secret_hash: SecretHash([0; 32]),
            last4: "abcd".into(),
            policy,
            usage,
            batch_id: None,
            imported: false,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn info(model: &str) -> RequestInfo {
        RequestInfo::read("/v1/chat/completions", format!(r#"{{"model":"{model}"}}"#).as_bytes()).unwrap()
    }

    #[test]
    fn allow_list_and_limits() {
        let policy = KeyPolicy { allowed_models: vec!["gpt-4o".into()], ..KeyPolicy::default() };
        assert!(check(&key(policy.clone(), KeyUsage::default()), Some(&info("gpt-4o"))).is_ok());
        assert_eq!(check(&key(policy, KeyUsage::default()), Some(&info("o3"))).unwrap_err().code, "model_not_allowed");
        let calls = KeyPolicy { remaining_calls: Some(0), ..KeyPolicy::default() };
        assert!(check(&key(calls, KeyUsage::default()), None).is_err());
        let quota = KeyPolicy { quota_limit: Some(Money::from_credits(1)), ..KeyPolicy::default() };
        let used = KeyUsage { quota_used: Money::from_credits(1), ..KeyUsage::default() };
        assert!(check(&key(quota, used), None).is_err());
        let tokens = KeyPolicy { token_limit: Some(10), ..KeyPolicy::default() };
        assert!(check(&key(tokens, KeyUsage { tokens_used: 9, ..KeyUsage::default() }), None).is_ok());
    }
}
