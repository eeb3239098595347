//! An upstream body that gives up when the upstream stops sending: after `UPSTREAM_IDLE_TIMEOUT_SECS`
//! without a byte, the body ends with an error. The billing layer then settles what it observed,
//! and the client's stream ends instead of hanging (and holding shutdown back) for ever.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use apihub_tower::body::BoxError;
use apihub_tower::log_sample::LogSample;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The upstream sent nothing for the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("the upstream sent nothing for {0:?}")]
pub struct Idle(pub Duration);

/// `inner`, ending with [`Idle`] when no frame arrives for `timeout`.
///
/// One timer, re-armed only when it fires: a frame notes when it came, and a timer that fires
/// before `timeout` has passed since the last frame is set again for then. (Resetting it on every
/// frame moved it in the runtime's timer wheel, under the wheel's lock, each time; a body whose
/// frames are ready when polled never enters the wheel at all.)
#[derive(Debug)]
pub struct IdleTimeout<B> {
    inner: B,
    timeout: Duration,
    /// When the last frame came (at first: when the body began).
    last: Instant,
    /// Due no later than `last + timeout`.
    timer: Pin<Box<Sleep>>,
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        let last = Instant::now();
        IdleTimeout { inner, timeout, last, timer: Box::pin(tokio::time::sleep_until(last + timeout)) }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.last = Instant::now();
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => {
                loop {
                    ready!(this.timer.as_mut().poll(cx));
                    let deadline = this.last + this.timeout;
                    if deadline <= Instant::now() {
                        break;
                    }
                    // A frame came since it was set: due again `timeout` after that frame.
                    this.timer.as_mut().reset(deadline);
                }
                static LOG: LogSample = LogSample::new();
                if let Some(skipped) = LOG.sample() {
                    tracing::warn!(
                        timeout_secs = this.timeout.as_secs(),
                        skipped,
                        "the upstream stalled; ending the response"
                    );
                }
                Poll::Ready(Some(Err(Box::new(Idle(this.timeout)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test]
    async fn a_stalled_body_ends_with_an_error_after_the_timeout() {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        let stream = tokio_stream_from(receiver);
        let mut body = IdleTimeout::new(StreamBody::new(stream), Duration::from_millis(50));
        sender.send(Ok(Frame::data(Bytes::from_static(b"data: 1\n\n")))).await.unwrap();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "data: 1\n\n");
        // Nothing more, and the sender stays open: the upstream stalls.
        let error = body.frame().await.unwrap().unwrap_err();
        assert!(error.is::<Idle>(), "{error}");
        drop(sender);
    }

    #[tokio::test]
    async fn frames_within_the_timeout_keep_a_body_alive_however_long_it_runs() {
        let timeout = Duration::from_millis(400);
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        let mut body = IdleTimeout::new(StreamBody::new(tokio_stream_from(receiver)), timeout);
        let started = Instant::now();
        let upstream = tokio::spawn(async move {
            // Four frames 150 ms apart: 600 ms in all, longer than the timeout.
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_millis(150)).await;
                let _ = sender.send(Ok(Frame::data(Bytes::from_static(b"data: 1\n\n")))).await;
            }
            // Then it stalls with the stream open.
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(sender);
        });
        for _ in 0..4 {
            assert!(body.frame().await.unwrap().is_ok(), "each frame came within the timeout of the last");
        }
        let last = Instant::now();
        let error = body.frame().await.unwrap().unwrap_err();
        assert!(error.is::<Idle>(), "{error}");
        assert!(last.elapsed() >= timeout, "not before the timeout after the last frame");
        assert!(started.elapsed() < Duration::from_secs(10), "ended once stalled, not when the upstream gave up");
        upstream.abort();
    }

    fn tokio_stream_from<T>(
        mut receiver: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> + Unpin {
        Box::pin(futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx)))
    }
}
