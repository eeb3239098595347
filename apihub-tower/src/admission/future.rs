//! Admission's response future: identify the request, read its body, judge it, then forward it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use apihub_core::usage::Dialect;
use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Limited;
use pin_project_lite::pin_project;
use tower::Service;

use super::AdmissionBody;
use super::admit::{Identifying, Policies, Refusal, judge, unreadable};
use crate::body::{BoxError, ForwardedBody};
use crate::dialect::localize;
use crate::rate_limit::{Allowance, allowance_headers};

pin_project! {
    /// The response future of [`Admission`](super::Admission).
    pub struct ResponseFuture<S, B, F> {
        #[pin]
        state: State<B, F>,
        policies: Arc<Policies>,
        // The inner service, ready, until the request is admitted.
        inner: Option<S>,
        allowance: Option<Allowance>,
        // What refusals are answered in.
        dialect: Dialect,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<B, F> {
        // Who and how often, on the head; the body waits.
        Identifying { identifying: Identifying, body: Option<B> },
        // The body, read whole within the limit.
        Reading { #[pin] body: Limited<B>, read: Vec<Bytes>, parts: Option<Parts> },
        // Admitted: the inner service's call.
        Forwarding { #[pin] future: F },
    }
}

impl<S, B, F> ResponseFuture<S, B, F> {
    pub(super) fn new(identifying: Identifying, body: B, policies: Arc<Policies>, inner: S, dialect: Dialect) -> Self {
        ResponseFuture {
            state: State::Identifying { identifying, body: Some(body) },
            policies,
            inner: Some(inner),
            allowance: None,
            dialect,
        }
    }
}

impl<S, B, F> std::fmt::Debug for ResponseFuture<S, B, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Identifying { .. } => "identifying",
            State::Reading { .. } => "reading",
            State::Forwarding { .. } => "forwarding",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish_non_exhaustive()
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B, S::Future>
where
    S: Service<Request<ForwardedBody>, Response = Response<ResBody>>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<AdmissionBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let dialect = *this.dialect;
        let refused = |refusal: Refusal| {
            let response = (*refusal).map(AdmissionBody::refused);
            Poll::Ready(Ok(localize(dialect, response, AdmissionBody::refused)))
        };
        loop {
            match this.state.as_mut().project() {
                StateProj::Identifying { identifying, body } => {
                    let (parts, allowance) = match ready!(identifying.as_mut().poll(cx)) {
                        Ok(identified) => identified,
                        Err(refusal) => return refused(refusal),
                    };
                    *this.allowance = allowance;
                    // Moved out once: the state changes in this same step.
                    let Some(body) = body.take() else { return Poll::Pending };
                    let body = Limited::new(body, this.policies.max_body_bytes);
                    this.state.set(State::Reading { body, read: Vec::new(), parts: Some(parts) });
                }
                StateProj::Reading { mut body, read, parts } => {
                    match ready!(body.as_mut().poll_frame(cx)) {
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                read.push(data);
                            }
                            continue;
                        }
                        Some(Err(error)) => return refused(unreadable(&error, this.policies.max_body_bytes)),
                        None => {}
                    }
                    let Some(parts) = parts.take() else { return Poll::Pending };
                    // One chunk (the usual case) is taken as it is, several are joined.
                    let bytes = if read.len() == 1 { read.remove(0) } else { read.concat().into() };
                    let request = match judge(this.policies, parts, bytes) {
                        Ok(request) => request,
                        Err(refusal) => return refused(refusal),
                    };
                    let Some(mut inner) = this.inner.take() else { return Poll::Pending };
                    this.state.set(State::Forwarding { future: inner.call(request) });
                }
                StateProj::Forwarding { future } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(allowance) = this.allowance.take() {
                        allowance_headers(response.headers_mut(), &allowance);
                    }
                    // Billing's refusals too are answered in the route's dialect.
                    let response = response.map(AdmissionBody::admitted);
                    return Poll::Ready(Ok(localize(dialect, response, AdmissionBody::refused)));
                }
            }
        }
    }
}
