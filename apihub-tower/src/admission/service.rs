//! [`Admission`]: the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower::Service;

use super::admit::{Policies, identify};
use super::{AdmissionBody, ResponseFuture};
use crate::body::{BoxError, ForwardedBody};

/// Admits requests for the inner service; see the [module docs](crate::admission).
#[derive(Clone)]
pub struct Admission<S> {
    pub(super) inner: S,
    pub(super) policies: Arc<Policies>,
}

impl<S: fmt::Debug> fmt::Debug for Admission<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<S, B, ResBody> Service<Request<B>> for Admission<S>
where
    S: Service<Request<ForwardedBody>, Response = Response<ResBody>> + Clone,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Response = Response<AdmissionBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The service that was polled ready goes with the request; a clone stays for the next.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let dialect = self.policies.dialect(request.uri().path());
        let (parts, body) = request.into_parts();
        let identifying = Box::pin(identify(self.policies.clone(), parts));
        ResponseFuture::new(identifying, body, self.policies.clone(), inner, dialect)
    }
}
