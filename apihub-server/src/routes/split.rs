//! The proxy's own way past the router. A proxied request is most of the gateway's traffic, and
//! the router costs it about a tenth of its CPU time (the profile at 64 connections): every
//! `Router::layer` boxes each route once more, and each box is cloned, an allocation, on every
//! request; the metered-route middleware boxes its future too. [`Split`] sends the requests the
//! router would hand to the proxy unchanged straight to it, and all others to the router.
//!
//! "Unchanged" is what [`Direct::takes`] checks: a `/v1/…` or `/v1beta/…` path that no metered
//! route claims, no `Content-Encoding` (the router's proxy routes inflate gzip bodies), and no
//! CORS configured (its layer answers preflights and adds `Vary` to every response). What the
//! router's proxy routes add besides, the count of responses by status, is done here too; the
//! layers around both (request ids, tracing, panics) are the same.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use http::{Request, header};
use pin_project_lite::pin_project;

use crate::metered::RouteTable;
use crate::metrics::Metrics;
use crate::proxy::{ProxyFuture, ProxyService};

/// The application: the proxy for what it takes (when it may take anything), the router for the
/// rest.
#[derive(Clone)]
pub struct Split {
    pub(super) router: Router,
    pub(super) direct: Option<Direct>,
}

/// What the proxy needs to answer without the router.
#[derive(Clone)]
pub struct Direct {
    pub(super) proxy: ProxyService,
    pub(super) routes: Arc<RouteTable>,
    pub(super) metrics: Arc<Metrics>,
}

impl Direct {
    /// Whether the router would give `request` to the proxy as it is (see the module's
    /// documentation).
    fn takes(&self, request: &Request<Body>) -> bool {
        let path = request.uri().path();
        crate::proxy::serves(path)
            && !request.headers().contains_key(header::CONTENT_ENCODING)
            && !self.routes.claims(path)
    }
}

impl tower::Service<Request<Body>> for Split {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The router is always ready, and the proxy answers every refusal itself.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Answer {
        match &self.direct {
            Some(direct) if direct.takes(&request) => {
                Answer::Direct { future: direct.proxy.answer(request), metrics: Some(direct.metrics.clone()) }
            }
            _ => Answer::Routed { future: tower::Service::call(&mut self.router, request) },
        }
    }
}

pin_project! {
    /// The proxy's answer, counted by status class when it comes, or the router's.
    #[project = AnswerProj]
    pub enum Answer {
        Direct { future: ProxyFuture, metrics: Option<Arc<Metrics>> },
        Routed { #[pin] future: <Router as tower::Service<Request<Body>>>::Future },
    }
}

impl Future for Answer {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AnswerProj::Direct { future, metrics } => {
                let response = ready!(future.as_mut().poll(cx));
                if let Some(metrics) = metrics.take() {
                    metrics.count_response(response.status());
                }
                Poll::Ready(Ok(response))
            }
            AnswerProj::Routed { future } => future.poll(cx),
        }
    }
}
