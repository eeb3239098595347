//! An upstream that stops sending after its headers, on SQLite and PostgreSQL: the response ends
//! after `UPSTREAM_IDLE_TIMEOUT_SECS` instead of hanging, and what was delivered is billed.

mod common;

use std::time::{Duration, Instant};

use apihub_core::Money;
use apihub_core::store::UsageSource;
use apihub_mock_upstream::header;
use common::gateway::{Auth, Gateway};
use http::StatusCode;
use serde_json::json;

const MODEL: &str = "gpt-4o-mini";

async fn a_stream_that_stalls_ends_after_the_idle_timeout_and_bills_what_was_delivered(gw: Gateway) {
    let gw = gw.reconfigure(|config| config.upstream_idle_timeout_secs = 1).await;
    gw.price(MODEL, "1.5", "6").await;
    let zoe = gw.customer("zoe", "10", "1", json!({})).await;
    let body = json!({
        "model": MODEL, "stream": true, "max_tokens": 20, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Count to twenty."}],
    });
    // The role chunk and three words come at once, then the upstream goes quiet, connection open.
    let started = Instant::now();
    let got = gw.post("/v1/chat/completions", Auth::Bearer(&zoe.key), &[(header::STALL_AFTER, "4")], &body).await;
    let waited = started.elapsed();
    got.expect(StatusCode::OK);
    assert!(got.error.is_some(), "the client must see the stream end early: {}", got.text());
    assert!(waited >= Duration::from_secs(1) && waited < Duration::from_secs(10), "{waited:?}");
    assert_eq!(got.events().len(), 4, "what came before the stall was delivered: {}", got.text());

    // Billed once, by estimate from what was delivered, and no hold is left.
    let balance = gw.eventually_settled(zoe.user_id).await;
    assert!(balance < Money::from_credits(10), "what was delivered is billed: {balance}");
    let usage = gw.usage(zoe.user_id).await;
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].usage_source, UsageSource::Estimated);
    assert_eq!(gw.consumes(zoe.user_id).await.len(), 1);
}

db_tests!(
    fixture = crate::common::gateway::Gateway::start;
    a_stream_that_stalls_ends_after_the_idle_timeout_and_bills_what_was_delivered,
);
