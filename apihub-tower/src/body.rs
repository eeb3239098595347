//! The bodies the stack forwards and returns, and OpenAI-style error responses.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

/// A boxed error, as tower uses.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the gateway layers produce: the upstream's, metered, or a rejection.
pub type GatewayBody = UnsyncBoxBody<Bytes, BoxError>;

/// Boxes a body into a [`GatewayBody`].
pub fn gateway_body<B>(body: B) -> GatewayBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
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
        self.into_full_response().map(gateway_body)
    }

    /// [`into_response`](GatewayError::into_response) with the body unboxed.
    pub(crate) fn into_full_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body()));
        *response.status_mut() = self.status;
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response.extensions_mut().insert(self);
        response
    }
}

/// The request body the stack forwards upstream: the client's body, read whole by admission (a
/// request is read before it is judged), and rewritten by billing where it asks an OpenAI stream
/// for its usage. One frame; [`bytes`](ForwardedBody::bytes) reads it without polling.
#[derive(Debug, Clone, Default)]
pub struct ForwardedBody {
    data: Bytes,
}

impl ForwardedBody {
    /// A body of `data`.
    pub fn new(data: impl Into<Bytes>) -> Self {
        ForwardedBody { data: data.into() }
    }

    /// The bytes not yet polled (all of them, before the body is sent).
    pub fn bytes(&self) -> &Bytes {
        &self.data
    }

    /// The bytes, for a client that takes them whole (`reqwest::Body::from`, say).
    pub fn into_bytes(self) -> Bytes {
        self.data
    }
}

impl From<ForwardedBody> for Bytes {
    fn from(body: ForwardedBody) -> Bytes {
        body.data
    }
}

impl Body for ForwardedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let data = std::mem::take(&mut self.get_mut().data);
        Poll::Ready((!data.is_empty()).then(|| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.len() as u64)
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
    async fn a_forwarded_body_is_one_frame_of_its_bytes() {
        let body = ForwardedBody::new("hello");
        assert_eq!(body.size_hint().exact(), Some(5));
        assert_eq!(body.clone().collect().await.unwrap().to_bytes(), "hello");
        assert!(ForwardedBody::default().is_end_stream());
        assert_eq!(Bytes::from(body), "hello");
    }
}
