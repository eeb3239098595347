//! `GET /metrics`: Prometheus' text format, counting `/v1` responses and reading the gauges.

mod common;

use common::TestApp;
use http::{Method, StatusCode};

db_tests!(metrics_count_proxy_responses_and_read_the_gauges);

async fn metrics_count_proxy_responses_and_read_the_gauges(app: TestApp) {
    // Two refusals (no key), then the scrape.
    for _ in 0..2 {
        app.call(Method::POST, "/v1/chat/completions", None, None).await.expect(StatusCode::UNAUTHORIZED);
    }
    let reply = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = reply.body.as_str().expect("text").to_owned();
    for line in [
        "# TYPE apihub_requests_total counter",
        "apihub_requests_total{status=\"4xx\"} 2",
        "apihub_requests_total{status=\"2xx\"} 0",
        "# TYPE apihub_upstream_latency_seconds histogram",
        "apihub_upstream_latency_seconds_count 0",
        "apihub_reservations_open 0",
        "apihub_usage_log_queue 0",
        "apihub_db_pool_max_connections 8",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
    }
    // The account API is not counted as proxy traffic.
    app.call(Method::GET, "/healthz", None, None).await.expect(StatusCode::OK);
    let again = app.call(Method::GET, "/metrics", None, None).await.body;
    assert!(again.as_str().unwrap().contains("apihub_requests_total{status=\"2xx\"} 0\n"));
}
