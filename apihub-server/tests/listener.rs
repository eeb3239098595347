//! The gateway's own listener, seen from outside the process: connections after a refusal,
//! readiness while draining, and the shutdown deadline.

mod common;

use std::time::{Duration, Instant};

use apihub_mock_upstream::{MockConfig, MockUpstream, header};
use common::process::{HttpClient, Node, api, funded_key, login, send};
use http::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ADMIN_PASSWORD: &str = "listener-admin-password";
const MODEL: &str = "gpt-4o-mini";

async fn gateway(mock: &MockUpstream, dir: &std::path::Path, extra: &[(&'static str, &str)]) -> (Node, HttpClient) {
    let mut env = vec![
        ("SECRET_KEY", "listener-test-secret-0123456789abcdefghij".to_owned()),
        ("ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
        ("UPSTREAM_URL", mock.url()),
        ("UI_DIR", "no-ui".to_owned()),
    ];
    env.extend(extra.iter().map(|(name, value)| (*name, (*value).to_owned())));
    let client = common::process::client();
    let mut node = Node::start("gateway", dir, &env);
    node.ready(&client).await;
    (node, client)
}

async fn priced_key(node: &Node, client: &HttpClient) -> String {
    let admin = login(client, node, "admin", ADMIN_PASSWORD).await;
    let price = json!({"input_price": "1", "output_price": "1"});
    api(client, node, Method::PUT, &format!("/api/admin/prices/{MODEL}"), &admin, Some(price))
        .await
        .expect(StatusCode::OK);
    funded_key(client, node, &admin, "alice", "100").await
}

fn terminate(node: &Node) {
    let status = std::process::Command::new("kill").arg("-TERM").arg(node.child.id().to_string()).status().unwrap();
    assert!(status.success());
}

/// Waits for the process to exit; how long it took.
async fn exited_within(node: &mut Node, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if node.child.try_wait().unwrap().is_some() {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "still running after {limit:?}:\n{}", node.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_sent_before_the_body_was_read_closes_the_connection_and_says_so() {
    let mock = MockUpstream::start(MockConfig { record_requests: false, ..MockConfig::default() }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (node, client) = gateway(&mock, dir.path(), &[]).await;
    let key = priced_key(&node, &client).await;

    // A client that sends its headers and waits before sending the body: the 401 comes first, and
    // says that this connection will not carry another request.
    let mut stream = tokio::net::TcpStream::connect(node.base.trim_start_matches("http://")).await.unwrap();
    let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ahg_wrong\r\n\
                Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).to_lowercase();
    assert!(answer.starts_with("http/1.1 401"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");

    // A keep-alive client alternating refused and served requests never writes into a closed
    // connection (`send` panics on any transport error).
    let body = json!({"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let url = node.url("/v1/chat/completions");
    for i in 0..100 {
        let bearer = if i % 2 == 0 { "Bearer ahg_not_a_key".to_owned() } else { format!("Bearer {key}") };
        let reply = send(&client, Method::POST, &url, &[("authorization", &bearer)], Some(&body)).await;
        let expected = if i % 2 == 0 { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
        assert_eq!(reply.status, expected, "request {i}: {}", reply.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigterm_readyz_answers_503_while_requests_are_still_served_for_the_delay() {
    let mock = MockUpstream::start(MockConfig { record_requests: false, ..MockConfig::default() }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut node, client) = gateway(&mock, dir.path(), &[("SHUTDOWN_READINESS_DELAY_SECS", "2")]).await;
    terminate(&node);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ready = send(&client, Method::GET, &node.url("/readyz"), &[], None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{}", ready.body);
    let health = send(&client, Method::GET, &node.url("/healthz"), &[], None).await;
    assert_eq!(health.status, StatusCode::OK, "still serving");
    let took = exited_within(&mut node, Duration::from_secs(10)).await;
    assert!(took >= Duration::from_millis(1_500), "the listener stayed open for the delay: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_past_its_deadline_for_a_stalled_stream() {
    let mock = MockUpstream::start(MockConfig { record_requests: false, ..MockConfig::default() }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = [("SHUTDOWN_READINESS_DELAY_SECS", "0"), ("SHUTDOWN_TIMEOUT_SECS", "1")];
    let (mut node, client) = gateway(&mock, dir.path(), &settings).await;
    let key = priced_key(&node, &client).await;
    // A stream whose upstream goes quiet after two events (its idle timeout is the default 300 s).
    let body =
        json!({"model": MODEL, "stream": true, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let (bearer, url) = (format!("Bearer {key}"), node.url("/v1/chat/completions"));
    let stalled = tokio::spawn(async move {
        let headers = [("authorization", bearer.as_str()), (header::STALL_AFTER, "2")];
        let request = common::process::request(Method::POST, &url, &headers, Some(&body));
        client.request(request).await.map(|response| response.status())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    terminate(&node);
    let took = exited_within(&mut node, Duration::from_secs(10)).await;
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(stalled.await.unwrap().unwrap(), StatusCode::OK, "the stream had started");
}
