use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::meter::{Meter, Outcome};
use super::settle::Settle;
use crate::body::BoxError;

pin_project! {
    /// A response body that meters what passes through and settles the reservation when it ends.
    ///
    /// Chunks are forwarded as they arrive (never buffered whole). At the end the body drives the
    /// settlement itself (no task hand-off on the way to the client) and signals its end only once
    /// the charge is written. Dropped before that, it hands the unfinished settlement to a task of
    /// its own, so it completes even if the client went away; dropped early, the body settles what
    /// was observed (or releases the hold when nothing was produced).
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        meter: Meter,
        settle: Option<Settle>,
        settling: Option<Settling>,
        inner_done: bool,
    }

    impl<B> PinnedDrop for MeteredBody<B> {
        fn drop(this: Pin<&mut Self>) {
            // The client went away (or the server dropped the body) before the end: finish what
            // was started, or settle what was observed.
            let this = this.project();
            let (settle, meter) = (this.settle, &*this.meter);
            if let Some(settling) = this.settling.take().or_else(|| start_settle(settle, meter, Outcome::Aborted)) {
                detach(settling);
            }
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for MeteredBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeteredBody").field("inner", &self.inner).field("meter", &self.meter).finish_non_exhaustive()
    }
}

type Settling = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs `work` to its end on a task of its own.
fn detach(work: impl Future<Output = ()> + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn(work)),
        // Without a runtime the reservation's own drop logs it; the sweeper frees the hold.
        Err(_) => drop(work),
    }
}

impl<B> MeteredBody<B> {
    pub(super) fn new(inner: B, meter: Meter, settle: Settle) -> Self {
        MeteredBody { inner, meter, settle: Some(settle), settling: None, inner_done: false }
    }
}

/// The settlement for `outcome`, to drive here (`None` once it has been started).
fn start_settle(settle: &mut Option<Settle>, meter: &Meter, outcome: Outcome) -> Option<Settling> {
    let settle = settle.take()?;
    Some(Box::pin(settle.run(meter, outcome)))
}

impl<B> Body for MeteredBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            if *this.inner_done {
                if let Some(settling) = this.settling.as_mut() {
                    // A failed settlement logs itself; the client's body still ends.
                    ready!(settling.as_mut().poll(cx));
                    *this.settling = None;
                }
                return Poll::Ready(None);
            }
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let mut out = this.meter.observe(data);
                        if this.inner.is_end_stream() {
                            // The last bytes of a body of known length: a server may stop polling
                            // (and drop this body) once it has sent them, so settle now.
                            *this.inner_done = true;
                            if let Some(rest) = this.meter.flush() {
                                out = [out, rest].concat().into();
                            }
                            *this.settling = start_settle(this.settle, this.meter, Outcome::Completed);
                        }
                        if out.is_empty() {
                            continue;
                        }
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Some(Err(error)) => {
                    *this.inner_done = true;
                    // Do not wait: the client's stream is broken either way.
                    if let Some(settling) = start_settle(this.settle, this.meter, Outcome::Aborted) {
                        detach(settling);
                    }
                    return Poll::Ready(Some(Err(error.into())));
                }
                None => {
                    *this.inner_done = true;
                    let rest = this.meter.flush();
                    *this.settling = start_settle(this.settle, this.meter, Outcome::Completed);
                    if let Some(rest) = rest.filter(|b| !b.is_empty()) {
                        return Poll::Ready(Some(Ok(Frame::data(rest))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner_done && self.settling.is_none() && self.settle.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        // Stripping may shorten an SSE stream, so only a JSON body keeps its exact length.
        if self.meter.passes_through_unchanged() { self.inner.size_hint() } else { SizeHint::default() }
    }
}

/// The bytes already read from a body, then the rest of it (or the error that cut it short).
pub(crate) struct Prefixed<B> {
    read: std::collections::VecDeque<Bytes>,
    rest: Option<Result<B, BoxError>>,
}

impl<B> Prefixed<B> {
    pub(crate) fn new(read: Vec<Bytes>, rest: Result<B, BoxError>) -> Self {
        Prefixed { read: read.into(), rest: Some(rest) }
    }
}

impl<B> Body for Prefixed<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(data) = self.read.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        match self.rest.as_mut() {
            None => Poll::Ready(None),
            Some(Ok(body)) => Pin::new(body).poll_frame(cx),
            Some(Err(_)) => match self.rest.take() {
                Some(Err(error)) => Poll::Ready(Some(Err(error))),
                _ => Poll::Ready(None),
            },
        }
    }
}
