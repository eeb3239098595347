use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;

use super::meter::{Meter, Outcome};
use super::service::Settle;
use crate::body::BoxError;

/// A response body that meters what passes through and settles the reservation when it ends.
///
/// Chunks are forwarded as they arrive (never buffered whole). At the end the settlement runs as
/// its own task, so it completes even if the client goes away, and the end of the body is
/// signalled only once the charge is written. Dropped early, the body settles what was observed
/// (or releases the hold when nothing was produced).
pub struct MeteredBody<B> {
    inner: B,
    meter: Meter,
    settle: Option<Settle>,
    settling: Option<JoinHandle<()>>,
    inner_done: bool,
}

impl<B> MeteredBody<B> {
    pub(super) fn new(inner: B, meter: Meter, settle: Settle) -> Self {
        MeteredBody { inner, meter, settle: Some(settle), settling: None, inner_done: false }
    }

    fn start_settle(&mut self, outcome: Outcome) -> Option<JoinHandle<()>> {
        let settle = self.settle.take()?;
        let work = settle.run(&self.meter, outcome);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => Some(runtime.spawn(work)),
            // Without a runtime the reservation's own drop logs it; the sweeper frees the hold.
            Err(_) => None,
        }
    }
}

impl<B> Body for MeteredBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.inner_done {
                if let Some(handle) = this.settling.as_mut() {
                    // A failed settlement is logged inside the task; the client's body still ends.
                    let _ = ready!(Pin::new(handle).poll(cx));
                    this.settling = None;
                }
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let mut out = this.meter.observe(data);
                        if this.inner.is_end_stream() {
                            // The last bytes of a body of known length: a server may stop polling
                            // (and drop this body) once it has sent them, so settle now.
                            this.inner_done = true;
                            if let Some(rest) = this.meter.flush() {
                                out = [out, rest].concat().into();
                            }
                            this.settling = this.start_settle(Outcome::Completed);
                        }
                        if out.is_empty() {
                            continue;
                        }
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Some(Err(error)) => {
                    this.inner_done = true;
                    // Do not wait: the client's stream is broken either way.
                    drop(this.start_settle(Outcome::Aborted));
                    return Poll::Ready(Some(Err(error.into())));
                }
                None => {
                    this.inner_done = true;
                    let rest = this.meter.flush();
                    this.settling = this.start_settle(Outcome::Completed);
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

impl<B> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        // The client went away (or the server dropped the body) before the end.
        drop(self.start_settle(Outcome::Aborted));
    }
}
