//! The listener: HTTP/1 connections under a cap, idle and slow ones closed, a deadline at shutdown.
//!
//! `axum::serve` keeps every connection until the client goes away: idle keep-alive connections
//! and clients that send their headers a byte at a time (slowloris) hold a file descriptor each
//! forever, and past the process's file limit nothing is accepted at all. Here:
//!
//! - a connection with nothing in flight is closed after [`Limits::keep_alive`] without a byte,
//!   and a request's headers must arrive within [`Limits::header_read`] of its first byte;
//! - at most [`Limits::max_connections`] are open (the default stays below the file limit). When
//!   a new one arrives at the cap, the oldest connection with nothing in flight is closed to make
//!   room; when every connection is busy, new ones wait in the kernel's queue;
//! - a response sent before its request's body was read says `Connection: close` (the client
//!   would otherwise write its next request into a socket the server is about to close);
//! - at shutdown, no new connection is accepted, idle ones close at once, requests in flight get
//!   [`Limits::shutdown_timeout`] to finish (streams settle their charge as they end), and what is
//!   left after it is dropped.

mod coalesce;
mod conn;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::App;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{HeaderValue, Request, header};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tower::Service;

use self::conn::{Conn, InFlight, RequestBody, ResponseBody, Timeouts, Watched};

/// How many connections, for how long.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `MAX_CONNECTIONS`: open client connections at most.
    pub max_connections: usize,
    /// `HEADER_READ_TIMEOUT_SECS`: from a request's first byte to the end of its headers.
    pub header_read: Duration,
    /// `KEEP_ALIVE_TIMEOUT_SECS`: how long a connection with nothing in flight stays open.
    pub keep_alive: Duration,
    /// `SHUTDOWN_TIMEOUT_SECS`: how long requests in flight may take to finish at shutdown.
    pub shutdown_timeout: Duration,
}

impl Limits {
    /// The default cap: half the process's open-file limit less some for the database, the
    /// upstream and the log (each proxied connection may hold an upstream connection too),
    /// between 16 and 16,384.
    pub fn default_max_connections() -> usize {
        let files = open_file_limit().unwrap_or(1024);
        usize::try_from(files.saturating_sub(64) / 2).unwrap_or(usize::MAX).clamp(16, 16_384)
    }
}

/// The soft limit on open files (`ulimit -n`).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Open connections, oldest first.
#[derive(Default)]
struct Registry {
    open: Mutex<BTreeMap<u64, Arc<Conn>>>,
    /// A connection closed.
    closed: Notify,
}

impl Registry {
    fn open(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Closes the oldest idle connection; false when every one is busy.
    fn evict_oldest_idle(&self) -> bool {
        let open = self.open();
        match open.values().find(|conn| conn.is_idle()) {
            Some(conn) => {
                conn.evict();
                true
            }
            None => false,
        }
    }

    fn remove(&self, id: u64) {
        self.open().remove(&id);
        self.closed.notify_waiters();
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then drains within the deadline.
pub async fn serve(
    listener: TcpListener,
    app: App,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let registry = Arc::new(Registry::default());
    let (stop, stopping) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut next_id = 0u64;
    let mut accept_errors = 0u64;
    tokio::pin!(shutdown);
    loop {
        // At the cap, make room by closing the oldest idle connection; when all are busy, wait for
        // one to close (new ones queue in the kernel meanwhile).
        while registry.open().len() >= limits.max_connections && !registry.evict_oldest_idle() {
            let closed = registry.closed.notified();
            tokio::select! {
                () = closed => {}
                () = &mut shutdown => return drain(tasks, stop, limits).await,
            }
        }
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors or a connection reset while queued: wait a little
                    // instead of spinning, and say so (once in a while).
                    accept_errors += 1;
                    if accept_errors.is_power_of_two() {
                        tracing::warn!(%error, count = accept_errors, "accepting a connection failed");
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => return drain(tasks, stop, limits).await,
        };
        // Small SSE chunks must leave at once, not wait for Nagle.
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let conn = Arc::new(Conn::new());
        registry.open().insert(next_id, conn.clone());
        let (registry, app, stopping) = (registry.clone(), app.clone(), stopping.clone());
        let id = next_id;
        // Polled again at once when it wakes itself (see `coalesce`), instead of rescheduled.
        tasks.spawn(coalesce::Coalesced::new(async move {
            serve_connection(stream, peer, conn, app, limits, stopping).await;
            registry.remove(id);
        }));
        // Reap finished tasks so the set does not grow with every connection ever made.
        while tasks.try_join_next().is_some() {}
    }
}

/// Stops accepting, asks every connection to finish, and waits for them until the deadline.
async fn drain(mut tasks: JoinSet<()>, stop: watch::Sender<bool>, limits: Limits) -> std::io::Result<()> {
    let _ = stop.send(true);
    let all_done = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.shutdown_timeout, all_done).await.is_err() {
        tracing::warn!(
            left = tasks.len(),
            deadline_secs = limits.shutdown_timeout.as_secs(),
            "requests still in flight at the shutdown deadline are cut off"
        );
        tasks.shutdown().await;
    }
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    conn: Arc<Conn>,
    app: App,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
) {
    let timeouts = Timeouts { header_read: limits.header_read, keep_alive: limits.keep_alive };
    let io = TokioIo::new(Watched { io: stream, conn: conn.clone() });
    let service = {
        let conn = conn.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let in_flight = InFlight::start(&conn, request.body().is_end_stream());
            let mut request = request.map(|inner| Body::new(RequestBody { inner, conn: conn.clone() }));
            request.extensions_mut().insert(ConnectInfo(peer));
            let answer = app.clone().call(request);
            async move {
                let Ok(mut response) = answer.await;
                if !in_flight.conn().body_was_read() {
                    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, Infallible>(response.map(|inner| ResponseBody { inner, in_flight: Some(in_flight) }))
            }
        })
    };
    // hyper's own header timeout is off (it would arm a timer on every request): `Conn` keeps it.
    let connection = hyper::server::conn::http1::Builder::new().header_read_timeout(None).serve_connection(io, service);
    tokio::pin!(connection);
    let mut stopped = *stopping.borrow();
    if stopped {
        connection.as_mut().graceful_shutdown();
    }
    // One timer per connection, re-armed only when it fires (not on every request): it is never
    // later than the connection's real deadline, because a deadline that starts later is at
    // least `header_read` away from when it starts. (A timeout set to 0 is checked every 100 ms,
    // not in a busy loop.)
    let period = limits.header_read.min(limits.keep_alive).max(Duration::from_millis(100));
    let check = tokio::time::sleep(period);
    tokio::pin!(check);
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, %peer, "connection ended with an error");
                }
                return;
            }
            () = conn.wake.notified() => {
                if conn.is_evicted() {
                    return;
                }
            }
            () = check.as_mut() => {
                let now = std::time::Instant::now();
                let next = now + period;
                match conn.deadline(&timeouts) {
                    Some(at) if at <= now => return,
                    Some(at) => check.as_mut().reset(at.min(next).into()),
                    None => check.as_mut().reset(next.into()),
                }
            }
            _ = stopping.changed(), if !stopped => {
                stopped = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}
