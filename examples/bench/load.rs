//! The load generator: HTTP/1.1 keep-alive connections (one per simulated client), closed loops
//! at a fixed concurrency, an open loop at a fixed rate, and paced streams.
//!
//! Latencies go into HdrHistograms in nanoseconds. The open loop measures each request from the
//! instant it was *due*, not from when a connection was free to send it, so a server that stalls
//! is charged for the whole queue it caused (no coordinated omission).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::sync::Semaphore;

/// No single request may take longer than this; one that does counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One request, sent again and again: `POST path` with fixed headers and body.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    addr: SocketAddr,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl RequestSpec {
    /// A JSON `POST` to `addr` + `path`, with a bearer key and extra headers.
    pub fn new(addr: SocketAddr, path: &str, key: &str, body: String, extra: &[(&'static str, String)]) -> Self {
        let mut headers = HeaderMap::new();
        let value = |text: &str| HeaderValue::from_str(text).expect("header values are ASCII");
        headers.insert(HOST, value(&addr.to_string()));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(AUTHORIZATION, value(&format!("Bearer {key}")));
        for (name, text) in extra {
            headers.insert(HeaderName::from_static(name), value(text));
        }
        RequestSpec { addr, path: path.to_owned(), headers, body: Bytes::from(body) }
    }

    fn build(&self) -> Request<Full<Bytes>> {
        let mut request = Request::post(self.path.as_str()).body(Full::new(self.body.clone())).expect("a valid path");
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// One keep-alive connection, opened on first use and again after a failure.
struct Conn {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Self {
        Conn { addr, sender: None }
    }

    async fn ready(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            let stream = tokio::net::TcpStream::connect(self.addr).await.map_err(|e| format!("connect: {e}"))?;
            stream.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().expect("connected above");
        sender.ready().await.map_err(|e| format!("connection: {e}"))?;
        Ok(sender)
    }

    /// Sends the request and reads the whole answer, calling `on_data` at each body frame with
    /// its bytes. `Ok` only for a 2xx status whose body ended cleanly.
    async fn exchange(&mut self, spec: &RequestSpec, mut on_data: impl FnMut(&Bytes)) -> Result<(), String> {
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let sender = self.ready().await?;
            let response = sender.send_request(spec.build()).await.map_err(|e| format!("request: {e}"))?;
            let status = response.status();
            let mut body = response.into_body();
            let mut text = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| format!("body: {e}"))?;
                if let Ok(data) = frame.into_data() {
                    on_data(&data);
                    if !status.is_success() && text.len() < 300 {
                        text.extend_from_slice(&data);
                    }
                }
            }
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("{status}: {}", String::from_utf8_lossy(&text[..text.len().min(300)])))
            }
        })
        .await
        .unwrap_or_else(|_| Err(format!("no complete answer within {REQUEST_TIMEOUT:?}")));
        if outcome.is_err() {
            // Whatever state the connection is in, start afresh.
            self.sender = None;
        }
        outcome
    }

    async fn call(&mut self, spec: &RequestSpec) -> Result<(), String> {
        self.exchange(spec, |_| {}).await
    }
}

fn histogram() -> Histogram<u64> {
    // 1 ns to 100 s, three significant digits.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// Percentiles of a latency distribution, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Latency::default();
        }
        let us = |nanos: u64| nanos as f64 / 1000.0;
        Latency {
            p50_us: us(histogram.value_at_quantile(0.50)),
            p99_us: us(histogram.value_at_quantile(0.99)),
            p999_us: us(histogram.value_at_quantile(0.999)),
            max_us: us(histogram.max()),
            mean_us: histogram.mean() / 1000.0,
        }
    }
}

/// What one load phase measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadResult {
    /// Requests that completed with a 2xx inside the measured window.
    pub requests: u64,
    /// Requests that failed (any status other than 2xx, a transport error, a timeout), warm-up included.
    pub errors: u64,
    /// Requests sent in all, warm-up included (each gets one usage-log row on a gateway).
    pub sent: u64,
    /// Of those, the 2xx answers.
    pub succeeded: u64,
    /// Open loop only: requests left unsent because the target fell too far behind.
    pub unsent: u64,
    pub seconds: f64,
    /// Completed requests per second.
    pub throughput: f64,
    pub latency: Latency,
    /// The proxy's CPU time (user and system) per request sent, warm-up included, in µs; none
    /// for `direct`.
    pub cpu_us_per_request: Option<f64>,
    /// The proxy's context switches (voluntary and not, all its threads) per request sent,
    /// warm-up included; none for `direct`. At one connection a request needs about two (a
    /// worker sleeps while the upstream answers and while the client sends the next request):
    /// more means the runtime's workers wake each other.
    pub switches_per_request: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// One worker's tally, merged into a [`LoadResult`].
struct Tally {
    histogram: Histogram<u64>,
    measured: u64,
    sent: u64,
    unsent: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Self {
        Tally { histogram: histogram(), measured: 0, sent: 0, unsent: 0, errors: 0, first_error: None }
    }

    fn count(&mut self, outcome: Result<(), String>, latency: Option<Duration>) {
        self.sent += 1;
        match outcome {
            Ok(()) => {
                if let Some(latency) = latency {
                    self.measured += 1;
                    let _ = self.histogram.record(nanos(latency));
                }
            }
            Err(error) => {
                self.errors += 1;
                self.first_error.get_or_insert(error);
            }
        }
    }

    fn merge(tallies: Vec<Tally>, seconds: f64) -> LoadResult {
        let mut histogram = histogram();
        let mut result = LoadResult { seconds, ..LoadResult::default() };
        for tally in tallies {
            let _ = histogram.add(&tally.histogram);
            result.requests += tally.measured;
            result.sent += tally.sent;
            result.unsent += tally.unsent;
            result.errors += tally.errors;
            result.first_error = result.first_error.or(tally.first_error);
        }
        result.succeeded = result.sent - result.errors;
        result.throughput = if seconds > 0.0 { result.requests as f64 / seconds } else { 0.0 };
        result.latency = Latency::of(&histogram);
        result
    }
}

async fn join_all(handles: Vec<tokio::task::JoinHandle<Tally>>) -> Vec<Tally> {
    let mut tallies = Vec::with_capacity(handles.len());
    for handle in handles {
        tallies.push(handle.await.expect("a load worker panicked"));
    }
    tallies
}

/// `concurrency` clients, each sending its next request as soon as the last one is answered,
/// for `warmup` (not measured) and then `window`.
pub async fn closed_loop(spec: &RequestSpec, concurrency: usize, warmup: Duration, window: Duration) -> LoadResult {
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + window;
    let handles = (0..concurrency)
        .map(|_| {
            let spec = spec.clone();
            tokio::spawn(async move {
                let mut conn = Conn::new(spec.addr);
                let mut tally = Tally::new();
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        break tally;
                    }
                    let outcome = conn.call(&spec).await;
                    tally.count(outcome, (sent >= measure_from).then(|| sent.elapsed()));
                }
            })
        })
        .collect();
    Tally::merge(join_all(handles).await, window.as_secs_f64())
}

/// `rate` requests per second for `window`, whatever the answers do (an open loop), over
/// `connections` keep-alive connections. Each latency runs from the request's due time.
///
/// A target that cannot keep up falls ever further behind; once the phase has run twice its
/// window, requests still waiting are not sent (they are counted as `unsent`, and their wait so
/// far is recorded as their latency, a lower bound), so the phase ends in bounded time.
pub async fn open_loop(spec: &RequestSpec, rate: u64, connections: usize, window: Duration) -> LoadResult {
    let total = (rate as f64 * window.as_secs_f64()) as u64;
    let due = move |start: Instant, i: u64| start + Duration::from_nanos(i.saturating_mul(1_000_000_000) / rate);
    // Open the connections first, so that connecting is not measured.
    let mut conns = Vec::with_capacity(connections);
    let mut warm = Tally::new();
    for _ in 0..connections {
        let mut conn = Conn::new(spec.addr);
        warm.count(conn.call(spec).await, None);
        conns.push(conn);
    }
    let permits = Arc::new(Semaphore::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(5);
    let give_up = start + window * 2;
    // The pacer is a thread of its own: its sleeps are precise to tens of microseconds, where
    // tokio's timer rounds up to the millisecond. Each permit lets a free worker send one request.
    let pacer = {
        let permits = permits.clone();
        std::thread::spawn(move || {
            for i in 0..total {
                let at = due(start, i);
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                permits.add_permits(1);
            }
            // Wake every worker once more to see that nothing is left.
            permits.add_permits(connections);
        })
    };
    let handles = conns
        .into_iter()
        .map(|mut conn| {
            let (spec, permits, next) = (spec.clone(), permits.clone(), next.clone());
            tokio::spawn(async move {
                let mut tally = Tally::new();
                loop {
                    let Ok(permit) = permits.acquire().await else { break tally };
                    permit.forget();
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break tally;
                    }
                    if Instant::now() > give_up {
                        tally.unsent += 1;
                        let _ = tally.histogram.record(nanos(Instant::now().saturating_duration_since(due(start, i))));
                        continue;
                    }
                    let outcome = conn.call(&spec).await;
                    tally.count(outcome, Some(Instant::now().saturating_duration_since(due(start, i))));
                }
            })
        })
        .collect();
    let mut tallies = join_all(handles).await;
    let seconds = start.elapsed().as_secs_f64();
    let _ = tokio::task::spawn_blocking(move || pacer.join()).await;
    // The warm-up requests count as sent (and failed, if they did), not as measured.
    tallies.push(warm);
    Tally::merge(tallies, seconds)
}

/// What the streaming phase measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamResult {
    pub streams: u64,
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// From sending the request to the first byte of the body.
    pub ttfb: Latency,
    /// The delay the upstream was asked to put between events.
    pub chunk_delay_ms: u64,
    /// SSE events each stream delivered (fewest seen).
    pub events_min: u64,
    /// The median gap between consecutive events, over all streams, in milliseconds.
    pub gap_median_ms: f64,
    /// The share of gaps of at least half the configured delay, in the worst stream.
    pub paced_share_min: f64,
    /// True when every stream's events arrived spread out as sent (≥ 80% of gaps at least half
    /// the delay), not bunched together.
    pub paced: bool,
}

/// `count` streamed chat completions, `concurrency` at a time, each over `spec` (which asks the
/// mock for `chunk_delay_ms` between events): time to first byte and the spacing of events.
pub async fn streams(spec: &RequestSpec, concurrency: usize, count: usize, chunk_delay_ms: u64) -> StreamResult {
    struct One {
        ttfb: Option<Duration>,
        events: Vec<Duration>,
        outcome: Result<(), String>,
    }
    let next = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..concurrency)
        .map(|_| {
            let (spec, next) = (spec.clone(), next.clone());
            tokio::spawn(async move {
                let mut conn = Conn::new(spec.addr);
                let mut done = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < count as u64 {
                    // Connect first: the time to first byte is the request's, not the handshake's.
                    if let Err(error) = conn.ready().await {
                        done.push(One { ttfb: None, events: Vec::new(), outcome: Err(error) });
                        continue;
                    }
                    let sent = Instant::now();
                    let (mut ttfb, mut events, mut last) = (None, Vec::new(), 0u8);
                    let outcome = conn
                        .exchange(&spec, |data| {
                            let at = sent.elapsed();
                            ttfb.get_or_insert(at);
                            // An SSE event ends at a blank line; it may straddle two frames.
                            let mut previous = last;
                            for &byte in data.iter() {
                                if byte == b'\n' && previous == b'\n' {
                                    events.push(at);
                                }
                                previous = byte;
                            }
                            last = previous;
                        })
                        .await;
                    done.push(One { ttfb, events, outcome });
                }
                done
            })
        })
        .collect();
    let mut ttfb = histogram();
    let mut gaps: Vec<f64> = Vec::new();
    let delay = chunk_delay_ms as f64;
    let mut result = StreamResult { chunk_delay_ms, events_min: u64::MAX, paced_share_min: 1.0, ..Default::default() };
    for handle in handles {
        for one in handle.await.expect("a stream worker panicked") {
            result.streams += 1;
            if let Err(error) = one.outcome {
                result.errors += 1;
                result.first_error.get_or_insert(error);
                continue;
            }
            if let Some(first) = one.ttfb {
                let _ = ttfb.record(nanos(first));
            }
            result.events_min = result.events_min.min(one.events.len() as u64);
            let own: Vec<f64> = one.events.windows(2).map(|w| (w[1] - w[0]).as_secs_f64() * 1000.0).collect();
            let spread = own.iter().filter(|gap| **gap >= delay / 2.0).count();
            let share = if own.is_empty() { 0.0 } else { spread as f64 / own.len() as f64 };
            result.paced_share_min = result.paced_share_min.min(share);
            gaps.extend(own);
        }
    }
    if result.events_min == u64::MAX {
        result.events_min = 0;
    }
    gaps.sort_by(f64::total_cmp);
    result.gap_median_ms = gaps.get(gaps.len() / 2).copied().unwrap_or(0.0);
    result.ttfb = Latency::of(&ttfb);
    result.paced = result.streams > result.errors && result.paced_share_min >= 0.8;
    result
}
