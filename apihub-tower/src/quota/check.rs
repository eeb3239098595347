//! The policy checks: a pure function of the key and what the request asks for.

use apihub_core::usage::RequestInfo;
use http::StatusCode;

use crate::auth::KeyRecord;
use crate::body::GatewayError;

fn refuse(code: &'static str, message: String) -> GatewayError {
    GatewayError::new(StatusCode::FORBIDDEN, "permission_error", code, message)
}

/// The refusal of a path that is not a metered route (see
/// [`UsageExtractor::request`](crate::extract::UsageExtractor::request)).
pub(crate) fn unknown_route(path: &str) -> GatewayError {
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
pub(crate) fn check(key: &KeyRecord, info: Option<&RequestInfo>) -> Result<(), GatewayError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use apihub_core::Money;
    use apihub_core::key::SecretHash;
    use apihub_core::policy::{KeyPolicy, KeyUsage};

    fn key(policy: KeyPolicy, usage: KeyUsage) -> KeyRecord {
        KeyRecord { policy, usage, ..KeyRecord::new(1, 1, SecretHash([0; 32])) }
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
