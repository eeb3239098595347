//! Response bodies: built whole into one buffer, then sent as slices of it, one frame per event,
//! with the delays, truncations and resets a [`Behaviour`] asks for.

use std::error::Error;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use hyper::body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::Behaviour;

/// A body written into one buffer, cut into frames: one per SSE event or JSON-array element.
#[derive(Debug)]
pub(super) struct Frames {
    text: String,
    /// Where each frame ends in `text`.
    ends: Vec<usize>,
    /// The SSE line end: `\n`, or `\r\n` as Gemini sends.
    newline: &'static str,
}

impl Frames {
    /// An empty body of about `frames` frames, SSE lines ending with `newline`.
    pub(super) fn new(frames: u64, newline: &'static str) -> Frames {
        let frames = usize::try_from(frames).unwrap_or(usize::MAX).saturating_add(4);
        Frames { text: String::with_capacity(frames.saturating_mul(192)), ends: Vec::with_capacity(frames), newline }
    }

    /// Starts an SSE event: its `event:` line when named, then `data: `. Write the data, then
    /// [`close`](Frames::close) it.
    pub(super) fn open(&mut self, event: Option<&str>) {
        if let Some(event) = event {
            put!(self.text, "event: {event}{}", self.newline);
        }
        self.text.push_str("data: ");
    }

    /// Ends an SSE event and its frame.
    pub(super) fn close(&mut self) {
        put!(self.text, "{0}{0}", self.newline);
        self.end_frame();
    }

    /// One whole SSE event.
    pub(super) fn event(&mut self, event: Option<&str>, data: fmt::Arguments<'_>) {
        self.open(event);
        put!(self.text, "{data}");
        self.close();
    }

    /// Ends the current frame, for bodies that are not SSE.
    pub(super) fn end_frame(&mut self) {
        self.ends.push(self.text.len());
    }
}

impl fmt::Write for Frames {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.text.push_str(s);
        Ok(())
    }
}

/// What an endpoint answers, before the behaviour is applied.
#[derive(Debug)]
pub(super) enum Reply {
    /// A whole JSON body.
    Json(Bytes),
    /// A body sent frame by frame.
    Stream {
        /// `text/event-stream`, or `application/json` for Gemini's streamed array.
        content_type: &'static str,
        frames: Frames,
    },
}

impl Reply {
    /// The response, with the delays, truncation or reset `behaviour` asks for.
    pub(super) fn into_response(self, behaviour: &Behaviour) -> Response {
        let cut = behaviour.cut();
        let (content_type, body) = match self {
            Reply::Json(json) => match cut {
                None => ("application/json", Body::from(json)),
                Some((after, reset)) => {
                    let ends = vec![after.min(json.len())];
                    ("application/json", Body::new(MockBody::new(json, ends, Duration::ZERO, reset, None)))
                }
            },
            Reply::Stream { content_type, frames } => {
                let Frames { text, mut ends, .. } = frames;
                let mut reset = false;
                if let Some((after, abort)) = cut {
                    ends.truncate(after);
                    reset = abort;
                }
                let body = MockBody::new(Bytes::from(text), ends, behaviour.chunk_delay, reset, behaviour.stall_after);
                (content_type, Body::new(body))
            }
        };
        let mut response = Response::new(body);
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if content_type == "text/event-stream" {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        }
        response
    }
}

/// An error response: `status` with a JSON body.
pub(super) fn error_response(status: StatusCode, json: String) -> Response {
    let mut response = Reply::Json(Bytes::from(json)).into_response(&Behaviour::default());
    *response.status_mut() = status;
    response
}

/// Slices of one buffer sent as frames, `delay` apart, then an end or an abort.
struct MockBody {
    bytes: Bytes,
    ends: std::vec::IntoIter<usize>,
    start: usize,
    delay: Duration,
    /// Armed after each frame when a delay is due before what follows.
    sleep: Option<Pin<Box<Sleep>>>,
    pausing: bool,
    /// Abort once the frames are sent.
    reset: bool,
    /// The frames were given a chance to reach the socket before the abort.
    flushed: bool,
    /// Frames left before the body stalls for ever.
    stall_after: Option<usize>,
}

impl MockBody {
    fn new(bytes: Bytes, ends: Vec<usize>, delay: Duration, reset: bool, stall_after: Option<usize>) -> MockBody {
        let ends = ends.into_iter();
        MockBody { bytes, ends, start: 0, delay, sleep: None, pausing: false, reset, flushed: false, stall_after }
    }
}

/// The error a reset body ends with: hyper then drops the connection mid-body.
#[derive(Debug)]
pub(super) struct Reset;

impl fmt::Display for Reset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the mock upstream reset the connection (x-mock-reset-after)")
    }
}

impl Error for Reset {}

impl hyper::body::Body for MockBody {
    type Data = Bytes;
    type Error = Reset;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Reset>>> {
        let this = self.get_mut();
        match &mut this.stall_after {
            Some(0) => return Poll::Pending, // and no wake-up: the upstream has gone quiet
            Some(left) => *left -= 1,
            None => {}
        }
        if this.pausing {
            if let Some(sleep) = &mut this.sleep {
                ready!(sleep.as_mut().poll(cx));
            }
            this.pausing = false;
        }
        let Some(end) = this.ends.next() else {
            if this.reset && !this.flushed {
                // Pending once, so that hyper flushes the head and the frames before the abort.
                this.flushed = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            return Poll::Ready(std::mem::take(&mut this.reset).then_some(Err(Reset)));
        };
        let frame = this.bytes.slice(this.start..end);
        this.start = end;
        if !this.delay.is_zero() && (this.ends.len() > 0 || this.reset) {
            let deadline = Instant::now() + this.delay;
            match &mut this.sleep {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => this.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            this.pausing = true;
        }
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.ends.len() == 0 && !self.reset
    }

    fn size_hint(&self) -> SizeHint {
        // Unknown: a body cut short must not promise a length.
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use apihub_core::usage::Endpoint;

    use super::super::tests::{open_mock, post, start, words};
    use super::super::{MockConfig, header};

    const STREAM: &str = r#"{"model":"m","stream":true,"max_tokens":4,"messages":[]}"#;
    const JSON: &str = r#"{"model":"m","max_tokens":4,"messages":[]}"#;

    #[tokio::test]
    async fn each_event_is_its_own_frame() {
        let mock = open_mock().await;
        // Far apart, so that no two frames arrive together.
        let got = post(&mock, "/v1/chat/completions", &[(header::CHUNK_DELAY_MS, "20")], STREAM).await;
        assert_eq!(got.chunks.len(), 7, "role, 4 words, finish, [DONE]");
        assert!(got.chunks.iter().all(|(_, chunk)| chunk.starts_with(b"data: ") && chunk.ends_with(b"\n\n")));
        assert_eq!(got.header("content-type"), Some("text/event-stream"));
        assert_eq!(got.header("cache-control"), Some("no-cache"));
    }

    #[tokio::test]
    async fn chunk_delay_spaces_the_events_and_can_be_configured() {
        let mock = open_mock().await;
        let got = post(&mock, "/v1/chat/completions", &[(header::CHUNK_DELAY_MS, "30")], STREAM).await;
        assert!(got.head_after < Duration::from_millis(25), "the first event is not delayed");
        let span = got.chunks.last().unwrap().0 - got.chunks[0].0;
        // 6 delays of 30 ms between 7 events, less some slack for a slow reader.
        assert!(span >= Duration::from_millis(150), "{span:?}");

        let behaviour = super::Behaviour { chunk_delay: Duration::from_millis(30), ..Default::default() };
        let mock = start(MockConfig { behaviour, ..MockConfig::default() }).await;
        let got = post(&mock, "/v1/chat/completions", &[], STREAM).await;
        let span = got.chunks.last().unwrap().0 - got.chunks[0].0;
        assert!(span >= Duration::from_millis(150), "{span:?}");
        let got = post(&mock, "/v1/chat/completions", &[(header::CHUNK_DELAY_MS, "0")], STREAM).await;
        assert!(got.chunks.last().unwrap().0 < Duration::from_millis(100));
    }

    #[tokio::test]
    async fn truncate_ends_the_stream_cleanly_without_usage_or_done() {
        let mock = open_mock().await;
        let body =
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"max_tokens":4,"messages":[]}"#;
        let got = post(&mock, "/v1/chat/completions", &[(header::TRUNCATE_AFTER, "3")], body).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.error, None);
        assert_eq!(got.events().len(), 3);
        let stream = got.stream_usage(Endpoint::ChatCompletions);
        assert!(stream.usage().is_empty());
        assert!(stream.produced_output());
        assert!(!stream.finished());
    }

    #[tokio::test]
    async fn reset_aborts_the_connection_mid_stream() {
        let mock = open_mock().await;
        let got = post(&mock, "/v1/messages", &[(header::RESET_AFTER, "2")], STREAM).await;
        assert_eq!(got.status, 200);
        assert!(got.error.is_some(), "the client sees the body fail");
        assert_eq!(got.events().len(), 2);
        let stream = got.stream_usage(Endpoint::Messages);
        assert_eq!(stream.usage().input_tokens, Some(1));
        assert!(!stream.finished());
        // Whatever the delay, the reset comes after the last event sent.
        let got =
            post(&mock, "/v1/messages", &[(header::RESET_AFTER, "0"), (header::CHUNK_DELAY_MS, "10")], STREAM).await;
        assert!(got.error.is_some());
        assert!(got.chunks.is_empty());
    }

    #[tokio::test]
    async fn a_json_body_is_cut_in_bytes() {
        let mock = open_mock().await;
        let whole = post(&mock, "/v1/chat/completions", &[], JSON).await;
        assert_eq!(whole.header("content-length"), Some(whole.body().len().to_string().as_str()));
        assert!(whole.text().contains(&words(4)));

        let truncated = post(&mock, "/v1/chat/completions", &[(header::TRUNCATE_AFTER, "10")], JSON).await;
        assert_eq!((truncated.status.as_u16(), truncated.error.as_deref()), (200, None));
        assert_eq!(truncated.body(), whole.body()[..10]);
        assert!(truncated.usage(Endpoint::ChatCompletions).is_empty());

        let reset = post(&mock, "/v1/chat/completions", &[(header::RESET_AFTER, "10")], JSON).await;
        assert!(reset.error.is_some());
        assert_eq!(reset.body(), whole.body()[..10]);

        let longer = post(&mock, "/v1/chat/completions", &[(header::TRUNCATE_AFTER, "100000")], JSON).await;
        assert_eq!(longer.json()["usage"], whole.json()["usage"], "a cut past the end changes nothing");
    }
}
