//! The response body every layer returns, and OpenAI-style error responses.

use std::any::Any;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

/// A boxed error, as tower uses.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the gateway layers produce: the upstream's, metered, or a rejection.
pub type GatewayBody = UnsyncBoxBody<Bytes, BoxError>;

/// Boxes a body into a [`GatewayBody`], without boxing one that already is.
pub fn gateway_body<B>(body: B) -> GatewayBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut slot = Some(body);
    if let Some(already) = (&mut slot as &mut dyn Any).downcast_mut::<Option<GatewayBody>>()
        && let Some(body) = already.take()
    {
        return body;
    }
    match slot {
        Some(body) => body.map_err(Into::into).boxed_unsync(),
        None => Full::new(Bytes::new()).map_err(|never| match never {}).boxed_unsync(),
    }
}

/// Maps a response's body into a [`GatewayBody`].
pub fn into_gateway<B>(response: Response<B>) -> Response<GatewayBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    response.map(gateway_body)
}

/// An OpenAI-style error: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    /// HTTP status.
    pub status: StatusCode,
    /// OpenAI's `type`, e.g. `invalid_request_error`.
    pub kind: &'static str,
    /// A stable code, e.g. `invalid_api_key`.
    pub code: &'static str,
    /// A human-readable message.
    pub message: String,
}

impl GatewayError {
    /// An error with the given parts.
    pub fn new(status: StatusCode, kind: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        GatewayError { status, kind, code, message: message.into() }
    }

    /// The JSON body.
    pub fn body(&self) -> Bytes {
        let value = serde_json::json!({
            "error": { "message": self.message, "type": self.kind, "param": null, "code": self.code }
        });
        Bytes::from(value.to_string())
    }

    /// The whole response. The error itself rides along as a response extension, so that a
    /// server fronting another vendor's dialect can answer in that vendor's shape instead.
    pub fn into_response(self) -> Response<GatewayBody> {
        let mut response = Response::new(gateway_body(Full::new(self.body())));
        *response.status_mut() = self.status;
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response.extensions_mut().insert(self);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_are_openai_shaped() {
        let response =
            GatewayError::new(StatusCode::UNAUTHORIZED, "invalid_request_error", "invalid_api_key", "bad key")
                .into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["error"]["code"], "invalid_api_key");
        assert_eq!(json["error"]["type"], "invalid_request_error");
    }

    #[tokio::test]
    async fn boxing_twice_is_boxing_once() {
        let once = gateway_body(Full::new(Bytes::from_static(b"x")));
        let twice = gateway_body(once);
        assert_eq!(twice.collect().await.unwrap().to_bytes(), "x");
    }
}
