//! Floods against the real binary: slow and idle connections at a low file limit, and logins with
//! a new username each time. Each is bounded (memory, descriptors) and leaves the probes answering.
//! These measure a process from outside; they are not timing tests of code paths, and their
//! bounds are generous (a probe is ~1 ms when healthy; the limit is 100 ms).

mod common;

use std::time::{Duration, Instant};

use apihub_mock_upstream::{MockConfig, MockUpstream};
use common::process::{HttpClient, Node, funded_key, login, open_files, proc_status_kb, send};
use http::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN_PASSWORD: &str = "abuse-admin-password";
const MODEL: &str = "gpt-4o-mini";

fn env(mock: &MockUpstream, extra: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("SECRET_KEY", "abuse-test-secret-0123456789abcdefghij".to_owned()),
        ("ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
        ("UPSTREAM_URL", mock.url()),
        ("UI_DIR", "no-ui".to_owned()),
    ];
    for (name, value) in extra {
        let name: &'static str = Box::leak(name.to_string().into_boxed_str());
        env.push((name, (*value).to_owned()));
    }
    env
}

/// A fresh connection's `GET /healthz`: status and time taken.
async fn probe_health(client: &HttpClient, node: &Node) -> (StatusCode, Duration) {
    let started = Instant::now();
    let reply = send(client, Method::GET, &node.url("/healthz"), &[("connection", "close")], None).await;
    (reply.status, started.elapsed())
}

/// A fresh connection's chat completion with `key`: status and time taken.
async fn probe_chat(client: &HttpClient, node: &Node, key: &str) -> (StatusCode, Duration) {
    let started = Instant::now();
    let bearer = format!("Bearer {key}");
    let body = json!({"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let headers = [("authorization", bearer.as_str()), ("connection", "close")];
    let reply = send(client, Method::POST, &node.url("/v1/chat/completions"), &headers, Some(&body)).await;
    (reply.status, started.elapsed())
}

/// Opens `n` connections that never finish a request: half send nothing at all, half start a
/// request and then send a header line now and then (slowloris).
async fn open_slow_connections(base: &str, n: usize) -> Vec<TcpStream> {
    let address = base.trim_start_matches("http://").to_owned();
    let mut streams = Vec::with_capacity(n);
    for i in 0..n {
        let Ok(mut stream) = TcpStream::connect(&address).await else { continue };
        if i % 2 == 1 {
            let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
        }
        streams.push(stream);
    }
    streams
}

/// Keeps the slowloris half alive: one more header line each.
async fn drip(streams: &mut [TcpStream]) {
    for stream in streams.iter_mut().skip(1).step_by(2) {
        let _ = stream.write_all(b"X-Slow: 1\r\n").await;
    }
}

/// How many of `streams` the server has closed (a read sees the end or an error), all checked at
/// once so that the check itself takes no longer than its 20 ms.
async fn closed_by_server(streams: &mut [TcpStream]) -> usize {
    let checks = streams.iter_mut().map(|stream| async move {
        let mut byte = [0u8; 1];
        matches!(tokio::time::timeout(Duration::from_millis(20), stream.read(&mut byte)).await, Ok(Ok(0) | Err(_)))
    });
    futures::future::join_all(checks).await.into_iter().filter(|closed| *closed).count()
}

async fn started_with_key(
    mock: &MockUpstream,
    dir: &std::path::Path,
    extra: &[(&str, &str)],
    max_files: Option<u32>,
) -> (Node, HttpClient, String) {
    let client = common::process::client();
    let mut node = Node::start_with_file_limit("gateway", dir, &env(mock, extra), max_files);
    node.ready(&client).await;
    let admin = login(&client, &node, "admin", ADMIN_PASSWORD).await;
    let price = json!({"input_price": "1", "output_price": "1"});
    let path = format!("/api/admin/prices/{MODEL}");
    common::process::api(&client, &node, Method::PUT, &path, &admin, Some(price)).await.expect(StatusCode::OK);
    let key = funded_key(&client, &node, &admin, "alice", "100").await;
    (node, client, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_slow_connections_at_1024_files_leave_the_probes_answering_within_100ms() {
    let mock = MockUpstream::start(MockConfig { record_requests: false, ..MockConfig::default() }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (node, client, key) = started_with_key(&mock, dir.path(), &[], Some(1024)).await;
    let pid = node.child.id();

    let mut streams = open_slow_connections(&node.base, 2_000).await;
    drip(&mut streams).await;
    let mut worst = Duration::ZERO;
    for round in 0..10 {
        let (health, took_health) = probe_health(&client, &node).await;
        let (chat, took_chat) = probe_chat(&client, &node, &key).await;
        assert_eq!((health, chat), (StatusCode::OK, StatusCode::OK), "round {round}");
        worst = worst.max(took_health).max(took_chat);
        drip(&mut streams).await;
    }
    let files = open_files(pid);
    eprintln!("slowest probe {worst:?}; gateway has {files} files open; {} slow connections made", streams.len());
    assert!(worst < Duration::from_millis(100), "a probe took {worst:?}");
    assert!(files < 1024, "{files} files open");
    assert!(closed_by_server(&mut streams).await > 1_000, "the oldest idle connections make room for new ones");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_requests_are_closed_after_their_timeouts() {
    let mock = MockUpstream::start(MockConfig { record_requests: false, ..MockConfig::default() }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let limits = [("KEEP_ALIVE_TIMEOUT_SECS", "2"), ("HEADER_READ_TIMEOUT_SECS", "1")];
    let (node, client, key) = started_with_key(&mock, dir.path(), &limits, None).await;

    let mut streams = open_slow_connections(&node.base, 100).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(closed_by_server(&mut streams).await, 0, "nothing is closed early");
    // The slowloris half keeps sending, but its headers never end: closed after 1 s of trying.
    drip(&mut streams).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let (mut idle, mut slow): (Vec<_>, Vec<_>) = streams.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let mut slow: Vec<TcpStream> = slow.drain(..).map(|(_, s)| s).collect();
    let mut idle: Vec<TcpStream> = idle.drain(..).map(|(_, s)| s).collect();
    assert_eq!(closed_by_server(&mut slow).await, 50, "slow headers are cut off");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(closed_by_server(&mut idle).await, 50, "idle connections are closed");
    let (status, _) = probe_chat(&client, &node, &key).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_logins_with_new_usernames_stay_under_200_mb() {
    let mock = MockUpstream::start(MockConfig { record_requests: false, ..MockConfig::default() }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // No per-address limit: the flood stands for many addresses, and only the pool bounds it.
    let (node, client, _key) = started_with_key(&mock, dir.path(), &[("LOGIN_LIMIT_PER_ADDRESS", "0")], None).await;
    let pid = node.child.id();
    let before_mb = proc_status_kb(pid, "VmRSS") / 1024;

    let flood: Vec<_> = (0..500)
        .map(|i| {
            let (client, url) = (client.clone(), node.url("/api/auth/login"));
            tokio::spawn(async move {
                let body = json!({"username": format!("nobody_{i}"), "password": "guess-guess-guess"});
                send(&client, Method::POST, &url, &[], Some(&body)).await.status
            })
        })
        .collect();
    // The probe answers while the flood is on (its bound is "answering", not a latency target:
    // the 500 connections of the flood arrive in the same instant on the same two cores).
    let mut worst_probe = Duration::ZERO;
    for _ in 0..5 {
        let (status, took) = probe_health(&client, &node).await;
        assert_eq!(status, StatusCode::OK);
        worst_probe = worst_probe.max(took);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut refused = 0;
    for login in flood {
        match login.await.unwrap() {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("login answered {other}"),
        }
    }
    let peak_mb = proc_status_kb(pid, "VmHWM") / 1024;
    let now_mb = proc_status_kb(pid, "VmRSS") / 1024;
    eprintln!(
        "RSS {before_mb} MB before, peak {peak_mb} MB, now {now_mb} MB; {refused} of 500 told to retry; slowest probe {worst_probe:?}"
    );
    assert!(peak_mb < 200, "peak RSS {peak_mb} MB");
    assert!(refused > 0, "the pool's queue is shorter than 500");
    assert!(worst_probe < Duration::from_secs(1), "a probe took {worst_probe:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_from_one_address_are_limited_whatever_the_usernames() {
    let mock = MockUpstream::start(MockConfig { record_requests: false, ..MockConfig::default() }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (node, client, _key) = started_with_key(&mock, dir.path(), &[("LOGIN_LIMIT_PER_ADDRESS", "10")], None).await;
    let mut statuses = Vec::new();
    for i in 0..15 {
        let body = json!({"username": format!("guess_{i}"), "password": "guess-guess-guess"});
        let reply = send(&client, Method::POST, &node.url("/api/auth/login"), &[], Some(&body)).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(reply.headers.contains_key("retry-after"));
        }
        statuses.push(reply.status);
    }
    let limited = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    // Setting up the test made one successful login from this address (given back), so the ten
    // failures allowed are ten of these.
    assert_eq!(limited, 5, "{statuses:?}");
    let refused = send(
        &client,
        Method::POST,
        &node.url("/api/auth/login"),
        &[],
        Some(&json!({"username": "alice", "password": "a-long-password"})),
    )
    .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "even the right password waits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_logs_a_few_lines_that_count_the_failures_not_one_per_request() {
    let mock = MockUpstream::start(MockConfig { record_requests: false, ..MockConfig::default() }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: every request fails to connect, at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let upstream = format!("http://127.0.0.1:{closed}");
    let (node, client, key) = started_with_key(&mock, dir.path(), &[("UPSTREAM_URL", &upstream)], None).await;
    let lines = |text: &str| node.log_text().lines().filter(|line| line.contains(text)).count();
    let failed = "upstream request failed";
    let before = lines(failed);

    let started = Instant::now();
    for _ in 0..300 {
        assert_eq!(probe_chat(&client, &node, &key).await.0, StatusCode::BAD_GATEWAY);
    }
    let took = started.elapsed();
    // One line at once, then at most one per 5 s (apihub_tower::log_sample::INTERVAL).
    let allowed = 1 + took.as_secs() as usize / 5 + 1;
    let written = lines(failed) - before;
    eprintln!("300 failed requests in {took:?} wrote {written} lines");
    assert!((1..=allowed).contains(&written), "{written} lines for 300 failures in {took:?}");

    // The next line, due once the interval has passed, tells how many were left out.
    tokio::time::sleep(Duration::from_millis(5_100)).await;
    assert_eq!(probe_chat(&client, &node, &key).await.0, StatusCode::BAD_GATEWAY);
    let log = node.log_text();
    let last = log.lines().rfind(|line| line.contains(failed)).unwrap_or_default();
    let skipped: usize = last
        .split("skipped=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {last:?}"));
    assert_eq!(skipped + lines(failed) - before, 301, "every failure is counted once: {last}");
}
