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
#[derive(Debug)]
pub struct IdleTimeout<B> {
    inner: B,
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        IdleTimeout { inner, timeout, timer: Box::pin(tokio::time::sleep(timeout)) }
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
                let deadline = Instant::now() + this.timeout;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => {
                ready!(this.timer.as_mut().poll(cx));
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

    fn tokio_stream_from<T>(
        mut receiver: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> + Unpin {
        Box::pin(futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx)))
    }
}
