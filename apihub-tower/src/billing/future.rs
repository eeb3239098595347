//! Billing's response future: reserve, forward, answer.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower::Service;

use super::answer::Answer;
use super::reserve::{Reserving, Ticket};
use crate::body::{BoxError, ForwardedBody, GatewayBody};

pin_project! {
    /// The response future of [`Billing`](super::Billing).
    pub struct ResponseFuture<S, F> {
        #[pin]
        state: State<F>,
        // The inner service, ready, until the hold is taken.
        inner: Option<S>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // Answered without forwarding (the upstream could not become ready).
        Answered { response: Option<Response<GatewayBody>> },
        // Planning the request and holding its expected cost.
        Reserving { reserving: Reserving },
        // The upstream's call, with the hold.
        Forwarding { #[pin] future: F, ticket: Option<Ticket>, started: Instant },
        // A body read whole, or a hold released, before the answer goes out.
        Answering { answering: Pin<Box<dyn Future<Output = Response<GatewayBody>> + Send>> },
    }
}

impl<S, F> ResponseFuture<S, F> {
    pub(super) fn reserving(reserving: Reserving, inner: S) -> Self {
        ResponseFuture { state: State::Reserving { reserving }, inner: Some(inner) }
    }

    pub(super) fn answered(response: Response<GatewayBody>) -> Self {
        ResponseFuture { state: State::Answered { response: Some(response) }, inner: None }
    }
}

impl<S, F> std::fmt::Debug for ResponseFuture<S, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Answered { .. } => "answered",
            State::Reserving { .. } => "reserving",
            State::Forwarding { .. } => "forwarding",
            State::Answering { .. } => "answering",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish_non_exhaustive()
    }
}

impl<S, ResBody> Future for ResponseFuture<S, S::Future>
where
    S: Service<Request<ForwardedBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Output = Result<Response<GatewayBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Answered { response } => {
                    // Set once, taken once: a second poll of a finished future waits forever.
                    return response.take().map_or(Poll::Pending, |response| Poll::Ready(Ok(response)));
                }
                StateProj::Reserving { reserving } => match ready!(reserving.as_mut().poll(cx)) {
                    Ok((request, ticket)) => {
                        let Some(mut inner) = this.inner.take() else { return Poll::Pending };
                        let future = inner.call(request);
                        this.state.set(State::Forwarding { future, ticket: Some(ticket), started: Instant::now() });
                    }
                    Err(refusal) => return Poll::Ready(Ok(refusal)),
                },
                StateProj::Forwarding { future, ticket, started } => {
                    let result = ready!(future.poll(cx)).map_err(Into::into);
                    let Some(ticket) = ticket.take() else { return Poll::Pending };
                    match ticket.answer(*started, result) {
                        Answer::Now(response) => return Poll::Ready(Ok(response)),
                        Answer::Later(answering) => this.state.set(State::Answering { answering }),
                    }
                }
                StateProj::Answering { answering } => return answering.as_mut().poll(cx).map(Ok),
            }
        }
    }
}
