//! The application as one named service type ([`App`]): the layers around [`Split`], with the
//! two small pieces that let the type be written down (a panic's answer, and the body turned
//! back into axum's).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::Request;
use http_body::Body as HttpBody;
use pin_project_lite::pin_project;
use tower_http::catch_panic::{CatchPanic, ResponseForPanic};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::request_id::{PropagateRequestId, SetRequestId};
use tower_http::trace::Trace;

use super::TimeOrderedIds;
use super::split::Split;
use crate::error::ApiError;

/// The whole application: what [`super::build_app`] makes and `serve` serves.
pub type App = IntoAxum<
    SetRequestId<
        PropagateRequestId<Trace<CatchPanic<Split, Panicked>, SharedClassifier<ServerErrorsAsFailures>>>,
        TimeOrderedIds,
    >,
>;

/// A panic anywhere becomes a JSON 500.
#[derive(Debug, Clone, Copy)]
pub struct Panicked;

impl ResponseForPanic for Panicked {
    type ResponseBody = Body;

    fn response_for_panic(&mut self, _: Box<dyn std::any::Any + Send + 'static>) -> Response {
        ApiError::Internal("handler panicked".into()).into_response()
    }
}

/// Gives the layers' response body back as axum's (one box), as `Router::layer` would.
#[derive(Debug, Clone)]
pub struct IntoAxum<S>(pub S);

impl<S, B> tower::Service<Request<Body>> for IntoAxum<S>
where
    S: tower::Service<Request<Body>, Response = http::Response<B>>,
    B: HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = IntoAxumFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        IntoAxumFuture { inner: self.0.call(request) }
    }
}

pin_project! {
    /// [`IntoAxum`]'s future.
    pub struct IntoAxumFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, B, E> Future for IntoAxumFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    B: HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = ready!(self.project().inner.poll(cx))?;
        Poll::Ready(Ok(response.map(Body::new)))
    }
}
