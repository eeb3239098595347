//! The stack's refusals in each vendor's shape and status conventions, so that every official
//! SDK raises its own exception class with the message (upstream errors pass through untouched):
//!
//! | | OpenAI | Anthropic (`/v1/messages`) | Gemini (`/v1beta/...`, `:generateContent`) |
//! | --- | --- | --- | --- |
//! | shape | `{"error": {"message", "type", "param", "code"}}` | `{"type": "error", "error": {"type", "message"}}` | `{"error": {"code", "message", "status"}}` |
//! | credit exhausted | 429 `insufficient_quota` | 400 `invalid_request_error` | 429 `RESOURCE_EXHAUSTED` |
//! | bad key | 401 `invalid_api_key` | 401 `authentication_error` | 400 `INVALID_ARGUMENT` |
//!
//! Credit refusals also carry `x-should-retry: false`: the OpenAI and Anthropic SDKs otherwise
//! retry a 429, which cannot succeed before the user tops up. Admission answers every refusal of
//! the stack (its own and billing's) in the dialect of the request's route: a declared route's
//! endpoint's ([`GatewayBuilder::meter`](crate::GatewayBuilder::meter)), else the path's
//! ([`of`]). The [`GatewayError`] stays in the response's extensions.

use apihub_core::usage::{Dialect, Endpoint};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::json;

use crate::body::GatewayError;

/// The dialect a path speaks, for its errors: its endpoint's, or by prefix for paths that are not
/// metered endpoints (a model list, unknown paths).
pub fn of(path: &str, endpoint: Option<Endpoint>) -> Dialect {
    match endpoint {
        Some(endpoint) => endpoint.dialect(),
        None if path.starts_with("/v1beta/") || path == "/v1beta" => Dialect::Gemini,
        // A Gemini method the gateway does not meter, on the `/v1` prefix Google also serves.
        None if path.starts_with("/v1/models/") && path.contains(':') => Dialect::Gemini,
        None if path.starts_with("/v1/messages") => Dialect::Anthropic,
        None => Dialect::OpenAi,
    }
}

/// `error`, answered in `dialect`'s shape (the error itself in the response's extensions).
pub fn render(dialect: Dialect, error: &GatewayError) -> Response<Full<Bytes>> {
    let credit = error.code == "insufficient_quota" && error.status == StatusCode::PAYMENT_REQUIRED;
    let (status, body) = match dialect {
        Dialect::OpenAi => {
            let status = if credit { StatusCode::TOO_MANY_REQUESTS } else { error.status };
            let body =
                json!({"error": {"message": error.message, "type": error.kind, "param": null, "code": error.code}});
            (status, body)
        }
        Dialect::Anthropic => {
            let status = if credit { StatusCode::BAD_REQUEST } else { error.status };
            let kind = match status.as_u16() {
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                503 | 529 => "overloaded_error",
                500..=599 => "api_error",
                _ => "invalid_request_error",
            };
            (status, json!({"type": "error", "error": {"type": kind, "message": error.message}}))
        }
        Dialect::Gemini => {
            let status = match error.status {
                StatusCode::PAYMENT_REQUIRED => StatusCode::TOO_MANY_REQUESTS,
                // Google answers an unknown or invalid key with 400 INVALID_ARGUMENT.
                StatusCode::UNAUTHORIZED => StatusCode::BAD_REQUEST,
                other => other,
            };
            let grpc = match status.as_u16() {
                400 | 413 | 422 => "INVALID_ARGUMENT",
                403 => "PERMISSION_DENIED",
                404 => "NOT_FOUND",
                405 => "UNIMPLEMENTED",
                429 => "RESOURCE_EXHAUSTED",
                503 => "UNAVAILABLE",
                504 => "DEADLINE_EXCEEDED",
                _ => "INTERNAL",
            };
            (status, json!({"error": {"code": status.as_u16(), "message": error.message, "status": grpc}}))
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if credit {
        response.headers_mut().insert("x-should-retry", HeaderValue::from_static("false"));
    }
    response.extensions_mut().insert(error.clone());
    response
}

/// `response` with a gateway error in it re-rendered for `dialect` (its body made by `body`),
/// keeping its other headers (`Retry-After`, the rate-limit headers); any other response as it is.
pub fn localize<B>(dialect: Dialect, response: Response<B>, body: impl FnOnce(Full<Bytes>) -> B) -> Response<B> {
    let Some(error) = response.extensions().get::<GatewayError>() else { return response };
    let (rendered, full) = render(dialect, error).into_parts();
    let (mut parts, _) = response.into_parts();
    parts.status = rendered.status;
    for (name, value) in &rendered.headers {
        parts.headers.insert(name, value.clone());
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, body(full))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of_path(path: &str) -> Dialect {
        of(path, Endpoint::from_path(path))
    }

    #[test]
    fn paths_speak_their_dialect() {
        assert_eq!(of_path("/v1/chat/completions"), Dialect::OpenAi);
        assert_eq!(of_path("/v1/models/gpt-4o"), Dialect::OpenAi);
        assert_eq!(of_path("/v1/messages"), Dialect::Anthropic);
        assert_eq!(of_path("/v1/messages/count_tokens"), Dialect::Anthropic);
        assert_eq!(of_path("/v1beta/models"), Dialect::Gemini);
        assert_eq!(of_path("/v1beta/models/gemini-2.0-flash:streamGenerateContent"), Dialect::Gemini);
        assert_eq!(of_path("/v1/models/gemini-2.0-flash:generateContent"), Dialect::Gemini);
        assert_eq!(of_path("/v1/models/gemini-2.0-flash:countTokens"), Dialect::Gemini);
    }

    #[test]
    fn exhausted_credit_follows_each_vendor() {
        let error =
            GatewayError::new(StatusCode::PAYMENT_REQUIRED, "insufficient_quota", "insufficient_quota", "no credit");
        let statuses = [Dialect::OpenAi, Dialect::Anthropic, Dialect::Gemini].map(|d| render(d, &error).status());
        assert_eq!(statuses, [StatusCode::TOO_MANY_REQUESTS, StatusCode::BAD_REQUEST, StatusCode::TOO_MANY_REQUESTS]);
        assert_eq!(render(Dialect::OpenAi, &error).headers()["x-should-retry"], "false");
    }
}
