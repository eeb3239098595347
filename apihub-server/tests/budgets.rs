//! Periodic budgets, on SQLite and PostgreSQL: a key's daily call budget under concurrency and
//! after its window, a user's monthly credit budget across their keys, limits changed with usage
//! kept, and the budgets API's refusals. (Across two gateways: `tests/leases.rs`.)

mod common;

use std::time::Duration;

use apihub_core::Money;
use apihub_server::db::SqlStore;
use common::gateway::{Auth, Gateway, Raw};
use futures::future::join_all;
use http::{Method, StatusCode};
use serde_json::{Value, json};

const MODEL: &str = "gpt-4o-mini";

/// A chat completion that costs exactly 0.01 at 0 / 1000 credits per million tokens: no input
/// price, and the mock reports the 10 output tokens the hold counted on.
async fn chat(gw: &Gateway, key: &str) -> Raw {
    let body = json!({"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    gw.post("/v1/chat/completions", Auth::Bearer(key), &[("x-mock-output-tokens", "10")], &body).await
}

async fn put_budgets(gw: &Gateway, path: &str, token: &str, budgets: Value) -> common::Reply {
    gw.app.call(Method::PUT, path, Some(token), Some(json!({ "budgets": budgets }))).await
}

/// Sends `n` requests at once, spread over `keys`; returns how many were served. Every refusal
/// must be the budget's: 429 `budget_exceeded` with a `Retry-After`.
async fn burst(gw: &Gateway, keys: &[&str], n: usize) -> usize {
    let replies = join_all((0..n).map(|i| chat(gw, keys[i % keys.len()]))).await;
    let mut served = 0;
    for reply in &replies {
        match reply.status {
            StatusCode::OK => served += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(reply.json()["error"]["code"], "budget_exceeded", "{}", reply.text());
                let retry: u64 = reply.header("retry-after").expect("Retry-After").parse().expect("seconds");
                assert!(retry >= 1);
            }
            other => panic!("unexpected {other}: {}", reply.text()),
        }
    }
    served
}

fn money(value: &Value) -> Money {
    serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("not money: {value}: {e}"))
}

async fn a_daily_call_budget_admits_exactly_its_calls_of_fifty_concurrent_requests_and_again_after_the_window(
    gw: Gateway,
) {
    gw.price(MODEL, "0", "1000").await;
    let alice = gw.customer("alice", "10", "1", json!({})).await;
    let path = format!("/api/keys/{}/budgets", alice.key_id);
    let set = put_budgets(&gw, &path, &gw.admin, json!([{"period": "day", "call_limit": 10}])).await;
    let set = set.expect(StatusCode::OK);
    assert_eq!(set["time_zone"], "UTC");
    assert_eq!(set["budgets"][0]["calls_used"], 0);

    assert_eq!(burst(&gw, &[&alice.key], 50).await, 10, "a budget of 10 calls a day admits 10");
    assert_eq!(burst(&gw, &[&alice.key], 5).await, 0, "and nothing more that day");
    gw.usage(alice.user_id).await;
    let view = gw.app.get(&path, &gw.admin).await.expect(StatusCode::OK);
    let day = &view["budgets"][0];
    assert_eq!((&day["calls_used"], money(&day["credit_used"])), (&json!(10), Money::parse("0.1").unwrap()));
    assert_eq!(gw.assert_settled(alice.user_id).await, Money::parse("9.9").unwrap());

    // The next day, the budget admits 10 again: nothing reset it, the window moved.
    SqlStore::new(gw.app.state.db.clone()).budget_defs().advance(Duration::from_secs(86_400));
    assert_eq!(burst(&gw, &[&alice.key], 20).await, 10);
    let view = gw.app.get(&path, &gw.admin).await.expect(StatusCode::OK);
    assert_eq!(view["budgets"][0]["calls_used"], 10);
    assert_ne!(view["budgets"][0]["window_start"], day["window_start"]);
    assert_eq!(gw.assert_settled(alice.user_id).await, Money::parse("9.8").unwrap());
}

async fn a_users_monthly_credit_budget_caps_all_of_their_keys_together(gw: Gateway) {
    gw.price(MODEL, "0", "1000").await;
    let alice = gw.customer("alice", "10", "1", json!({})).await;
    let (_, second) = gw.key(alice.user_id, json!({"name": "second"})).await;
    let path = format!("/api/admin/users/{}/budgets", alice.user_id);
    put_budgets(&gw, &path, &gw.admin, json!([{"period": "month", "credit_limit": "0.25"}]))
        .await
        .expect(StatusCode::OK);

    assert_eq!(burst(&gw, &[&alice.key, &second], 60).await, 25, "0.25 buys 25 requests at 0.01");
    gw.usage(alice.user_id).await;
    let own = gw.app.get("/api/budgets", &gw.app.login("alice", common::PASSWORD).await).await.expect(StatusCode::OK);
    let month = &own["budgets"][0];
    assert_eq!((&month["period"], money(&month["credit_used"])), (&json!("month"), Money::parse("0.25").unwrap()));
    assert_eq!(gw.assert_settled(alice.user_id).await, Money::parse("9.75").unwrap());
}

async fn changed_limits_keep_the_windows_usage_and_a_removed_budget_limits_nothing(gw: Gateway) {
    gw.price(MODEL, "0", "1000").await;
    let alice = gw.customer("alice", "10", "1", json!({})).await;
    let path = format!("/api/keys/{}/budgets", alice.key_id);
    let token = gw.app.login("alice", common::PASSWORD).await;
    // A key's owner may set its budgets.
    put_budgets(
        &gw,
        &path,
        &token,
        json!([{"period": "day", "call_limit": 2}, {"period": "week", "token_limit": 1000}]),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(burst(&gw, &[&alice.key], 4).await, 2);
    put_budgets(
        &gw,
        &path,
        &token,
        json!([{"period": "day", "call_limit": 3}, {"period": "week", "token_limit": 1000}]),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(burst(&gw, &[&alice.key], 4).await, 1, "two of three were used already");
    // The weekly token budget counted every token the three requests reported.
    let tokens: i64 = gw.usage(alice.user_id).await.iter().map(|u| u.prompt_tokens + u.completion_tokens).sum();
    let view = gw.app.get(&path, &token).await.expect(StatusCode::OK);
    let week = &view["budgets"][1];
    assert_eq!((&week["period"], &week["tokens_used"]), (&json!("week"), &json!(tokens)));
    put_budgets(&gw, &path, &token, json!([])).await.expect(StatusCode::OK);
    assert_eq!(burst(&gw, &[&alice.key], 4).await, 4);
    gw.assert_settled(alice.user_id).await;
}

async fn bad_budgets_are_refused_and_change_nothing(gw: Gateway) {
    let alice = gw.customer("alice", "10", "1", json!({})).await;
    let (bob_id, _) = gw.app.user("bob").await;
    let path = format!("/api/keys/{}/budgets", alice.key_id);
    let token = gw.app.login("alice", common::PASSWORD).await;
    for bad in [
        json!([{"period": "day", "call_limit": 1}, {"period": "day", "token_limit": 5}]),
        json!([{"period": "day"}]),
        json!([{"period": "day", "call_limit": -1}]),
        json!([{"period": "year", "call_limit": 1}]),
        json!([{"period": "day", "credit_limit": "0.0000001"}]),
        json!([{"period": "day", "call_limit": 1, "surprise": true}]),
    ] {
        let reply = put_budgets(&gw, &path, &token, bad.clone()).await;
        assert!(
            reply.status == StatusCode::UNPROCESSABLE_ENTITY || reply.status == StatusCode::BAD_REQUEST,
            "{bad}: {}",
            reply.body
        );
    }
    let view = gw.app.get(&path, &token).await.expect(StatusCode::OK);
    assert_eq!(view["budgets"], json!([]));
    // Someone else's key is not found; a user's own budgets are the administrator's to set.
    let bob = gw.app.login("bob", common::PASSWORD).await;
    gw.app.get(&path, &bob).await.expect(StatusCode::NOT_FOUND);
    put_budgets(&gw, &path, &bob, json!([])).await.expect(StatusCode::NOT_FOUND);
    let own = format!("/api/admin/users/{}/budgets", alice.user_id);
    put_budgets(&gw, &own, &token, json!([{"period": "day", "call_limit": 100}])).await.expect(StatusCode::FORBIDDEN);
    put_budgets(&gw, &format!("/api/admin/users/{}/budgets", bob_id + 1000), &gw.admin, json!([]))
        .await
        .expect(StatusCode::NOT_FOUND);
}

db_tests!(
    fixture = crate::common::gateway::Gateway::start;
    a_daily_call_budget_admits_exactly_its_calls_of_fifty_concurrent_requests_and_again_after_the_window,
    a_users_monthly_credit_budget_caps_all_of_their_keys_together,
    changed_limits_keep_the_windows_usage_and_a_removed_budget_limits_nothing,
    bad_budgets_are_refused_and_change_nothing,
);
