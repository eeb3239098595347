//! [`Billing`]: the service.

use std::convert::Infallible;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower::Service;

use super::refusal::upstream_failure;
use super::reserve::reserve;
use super::{BillingLayer, ResponseFuture};
use crate::body::{BoxError, ForwardedBody, GatewayBody};

/// Reserves, forwards and settles; see the [module docs](crate::billing).
pub struct Billing<S> {
    pub(super) inner: S,
    pub(super) layer: BillingLayer,
    /// Why the inner service could not become ready, for the next call to answer.
    pub(super) unready: Option<BoxError>,
}

impl<S: Clone> Clone for Billing<S> {
    fn clone(&self) -> Self {
        Billing { inner: self.inner.clone(), layer: self.layer.clone(), unready: None }
    }
}

impl<S, ResBody> Service<Request<ForwardedBody>> for Billing<S>
where
    S: Service<Request<ForwardedBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<GatewayBody>;
    /// Never an error: an upstream that fails is answered here (502, or 504 for a timeout).
    type Error = Infallible;
    type Future = ResponseFuture<S, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // An upstream that cannot take requests any more answers the next one with its error.
        if self.unready.is_none()
            && let Err(error) = ready!(self.inner.poll_ready(cx))
        {
            self.unready = Some(error.into());
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ForwardedBody>) -> Self::Future {
        if let Some(error) = self.unready.take() {
            return ResponseFuture::answered(upstream_failure(error).into_response());
        }
        // The service that was polled ready goes with the request; a clone stays for the next.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::reserving(Box::pin(reserve(self.layer.clone(), request)), inner)
    }
}
