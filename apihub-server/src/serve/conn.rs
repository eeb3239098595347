//! One client connection's state, shared by its task, its socket reads, the request in flight and
//! the accept loop (which may evict it).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// What a connection may do before it is closed.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From the first byte of a request to the end of its headers.
    pub header_read: Duration,
    /// Between requests, with nothing received.
    pub keep_alive: Duration,
}

/// A connection's state. Times are milliseconds since `epoch` (0: not set).
#[derive(Debug)]
pub struct Conn {
    epoch: Instant,
    /// Requests whose response has not ended.
    in_flight: AtomicUsize,
    /// When the connection last had nothing in flight.
    idle_since: AtomicU64,
    /// When the first byte of the next request arrived, while nothing was in flight.
    head_started: AtomicU64,
    /// Whether the current request's body was read to its end.
    body_read: AtomicBool,
    /// Asked to close by the accept loop (it needs the slot).
    evicted: AtomicBool,
    /// Evicted: the task closes the connection now. (Nothing else wakes it: its timer checks the
    /// deadline when it fires, so a request costs no wake-up and no timer.)
    pub wake: Notify,
}

impl Conn {
    pub fn new() -> Self {
        let conn = Conn {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            body_read: AtomicBool::new(true),
            evicted: AtomicBool::new(false),
            wake: Notify::new(),
        };
        conn.idle_since.store(conn.now(), Ordering::Relaxed);
        conn
    }

    /// Milliseconds since the connection opened, never 0.
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX).max(1)
    }

    fn at(&self, millis: u64) -> Instant {
        self.epoch + Duration::from_millis(millis)
    }

    /// When the connection must be closed unless something happens first; `None` while a request
    /// is in flight (the upstream's own timeouts bound those).
    pub fn deadline(&self, timeouts: &Timeouts) -> Option<Instant> {
        if self.evicted.load(Ordering::Acquire) {
            return Some(Instant::now());
        }
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        match self.head_started.load(Ordering::Acquire) {
            0 => Some(self.at(self.idle_since.load(Ordering::Acquire)) + timeouts.keep_alive),
            started => Some(self.at(started) + timeouts.header_read),
        }
    }

    /// Nothing in flight: the accept loop may close it to make room.
    pub fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && !self.evicted.load(Ordering::Acquire)
    }

    pub fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    /// Asks the connection's task to close it now.
    pub fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Bytes arrived from the client.
    fn received(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 && self.head_started.load(Ordering::Acquire) == 0 {
            self.head_started.store(self.now(), Ordering::Release);
        }
    }

    /// The request body reached its end (or there was none).
    pub fn body_done(&self) {
        self.body_read.store(true, Ordering::Release);
    }

    /// Whether the current request's body was read to its end: when not, the connection cannot be
    /// reused, and the response must say `Connection: close`.
    pub fn body_was_read(&self) -> bool {
        self.body_read.load(Ordering::Acquire)
    }
}

/// A request in flight on `conn`, until its response body ends or is dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Conn>);

impl InFlight {
    pub fn start(conn: &Arc<Conn>, body_empty: bool) -> Self {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        conn.head_started.store(0, Ordering::Release);
        conn.body_read.store(body_empty, Ordering::Release);
        InFlight(conn.clone())
    }

    pub fn conn(&self) -> &Conn {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let conn = &self.0;
        conn.idle_since.store(conn.now(), Ordering::Release);
        conn.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// The client's socket, noting when a request starts to arrive.
    pub struct Watched<T> {
        #[pin]
        pub io: T,
        pub conn: Arc<Conn>,
    }
}

impl<T: AsyncRead> AsyncRead for Watched<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let poll = this.io.poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.received();
        }
        poll
    }
}

impl<T: AsyncWrite> AsyncWrite for Watched<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }
}

pin_project_lite::pin_project! {
    /// The request body, noting when it has been read to its end.
    pub struct RequestBody {
        #[pin]
        pub inner: hyper::body::Incoming,
        pub conn: Arc<Conn>,
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        let poll = this.inner.poll_frame(cx);
        if matches!(poll, Poll::Ready(None)) {
            this.conn.body_done();
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// The response body, keeping its request in flight until it ends.
    pub struct ResponseBody {
        #[pin]
        pub inner: Body,
        pub in_flight: Option<InFlight>,
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let poll = this.inner.poll_frame(cx);
        if matches!(poll, Poll::Ready(None)) {
            this.in_flight.take();
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
