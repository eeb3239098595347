//! What the proxy refuses, on SQLite and PostgreSQL: every refusal is answered by the gateway
//! without reaching the upstream and changes nothing; rate limits are exact; and 200 concurrent
//! requests against a balance that affords 50 let exactly 50 through.

mod common;

use apihub_core::Money;
use apihub_core::key::GeneratedKey;
use common::gateway::{Auth, Customer, Gateway, Raw, money, request};
use http::StatusCode;
use serde_json::{Value, json};
use tower::ServiceExt;

const MODEL: &str = "gpt-4o-mini";

fn chat(model: &str) -> Value {
    json!({"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "Hello"}]})
}

/// Asserts an OpenAI-shaped gateway error: `{"error": {"message", "type", "param", "code"}}`.
#[track_caller]
fn assert_refused(got: &Raw, status: StatusCode, code: &str) -> Value {
    got.expect(status);
    let body = got.json();
    let error = &body["error"];
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    if error["status"].is_string() {
        // A Gemini route: Google's shape, `code` the HTTP status and `status` the gRPC name.
        assert_eq!((&error["code"], &error["status"]), (&json!(status.as_u16()), &json!(code)), "{body}");
    } else {
        assert_eq!(error["code"], code, "{body}");
        assert!(error["type"].is_string() && error["param"].is_null(), "{body}");
    }
    body
}

/// Everything a refused request could have changed for a customer.
#[derive(Debug, PartialEq)]
struct Trace {
    upstream_calls: u64,
    balance: Money,
    reserved: Money,
    consumes: usize,
    usage_records: usize,
    key: (Value, Value, Value, Value),
}

async fn trace(gw: &Gateway, who: &Customer) -> Trace {
    let funds = gw.funds(who.user_id).await;
    let key = gw.key_view(who.key_id).await;
    Trace {
        upstream_calls: gw.mock.stats().total(),
        balance: funds.balance,
        reserved: funds.reserved,
        consumes: gw.consumes(who.user_id).await.len(),
        usage_records: gw.usage(who.user_id).await.len(),
        key: (
            key["tokens_used"].clone(),
            key["quota_used"].clone(),
            key["calls_total"].clone(),
            key["calls_succeeded"].clone(),
        ),
    }
}

async fn refusals_never_reach_the_upstream_and_change_nothing(gw: Gateway) {
    for model in [MODEL, "gpt-4o"] {
        gw.price(model, "1", "2").await;
    }
    let allowed = json!({"allowed_models": [MODEL, "unpriced-model"]});
    let frank = gw.customer("frank", "10", "1", allowed).await;
    let (disabled_key_id, disabled_key) = gw.key(frank.user_id, json!({})).await;
    let path = format!("/api/keys/{disabled_key_id}");
    gw.app
        .call(http::Method::PUT, &path, Some(&gw.admin), Some(json!({"status": "disabled"})))
        .await
        .expect(StatusCode::OK);
    let poor = gw.customer("poor", "0.000001", "1", json!({})).await;
    let gone = gw.customer("gone", "10", "1", json!({})).await;
    let path = format!("/api/admin/users/{}/disable", gone.user_id);
    gw.app.call(http::Method::POST, &path, Some(&gw.admin), None).await.expect(StatusCode::OK);

    let unknown = GeneratedKey::generate().plain.expose().to_owned();
    // Frank's key with another secret of the same shape.
    let last = frank.key.chars().last().unwrap();
    let wrong_secret = format!("{}{}", &frank.key[..frank.key.len() - 1], if last == 'a' { 'b' } else { 'a' });

    let before = [trace(&gw, &frank).await, trace(&gw, &poor).await, trace(&gw, &gone).await];
    let chat_path = "/v1/chat/completions";
    let cases: Vec<(&str, Raw, StatusCode, &str)> = vec![
        (
            "no key",
            gw.post(chat_path, Auth::None, &[], &chat(MODEL)).await,
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
        ),
        (
            "malformed key",
            gw.post(chat_path, Auth::Bearer("sk-not-ours"), &[], &chat(MODEL)).await,
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
        ),
        (
            "unknown key",
            gw.post(chat_path, Auth::Bearer(&unknown), &[], &chat(MODEL)).await,
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
        ),
        (
            "wrong secret",
            gw.post(chat_path, Auth::XApiKey(&wrong_secret), &[], &chat(MODEL)).await,
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
        ),
        (
            "disabled key",
            gw.post(chat_path, Auth::Bearer(&disabled_key), &[], &chat(MODEL)).await,
            StatusCode::FORBIDDEN,
            "key_disabled",
        ),
        (
            "disabled user",
            gw.post(chat_path, Auth::Bearer(&gone.key), &[], &chat(MODEL)).await,
            StatusCode::FORBIDDEN,
            "account_disabled",
        ),
        (
            "model not allowed",
            gw.post(chat_path, Auth::Bearer(&frank.key), &[], &chat("gpt-4o")).await,
            StatusCode::FORBIDDEN,
            "model_not_allowed",
        ),
        (
            "unpriced model",
            gw.post(chat_path, Auth::Bearer(&frank.key), &[], &chat("unpriced-model")).await,
            StatusCode::NOT_FOUND,
            "model_not_found",
        ),
        (
            "unmetered path",
            gw.post("/v1/files", Auth::Bearer(&frank.key), &[], &json!({"purpose": "batch"})).await,
            StatusCode::NOT_FOUND,
            "unknown_url",
        ),
        (
            "unmetered Gemini method",
            gw.post(&format!("/v1beta/models/{MODEL}:countTokens"), Auth::Query(&frank.key), &[], &json!({})).await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
        (
            "insufficient balance",
            gw.post(chat_path, Auth::Bearer(&poor.key), &[], &chat(MODEL)).await,
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
        ),
    ];
    for (case, got, status, code) in &cases {
        eprintln!("{case}");
        let body = assert_refused(got, *status, code);
        if *code == "insufficient_quota" {
            assert_eq!(body["error"]["type"], "insufficient_quota", "OpenAI's shape for an empty balance");
            assert_eq!(got.header("x-should-retry"), Some("false"), "an SDK must not retry it");
        }
    }
    let after = [trace(&gw, &frank).await, trace(&gw, &poor).await, trace(&gw, &gone).await];
    assert_eq!(before, after);
    assert_eq!(gw.mock.stats().total(), 0, "no refusal reached the upstream");
    for who in [&frank, &poor, &gone] {
        gw.assert_settled(who.user_id).await;
    }
}

async fn changes_to_keys_and_users_take_effect_at_once(gw: Gateway) {
    gw.price(MODEL, "1", "2").await;
    let grace = gw.customer("grace", "10", "1", json!({})).await;
    let body = chat(MODEL);
    let call = || gw.post("/v1/chat/completions", Auth::Bearer(&grace.key), &[], &body);
    let key_path = format!("/api/keys/{}", grace.key_id);
    let set_status = |status: &'static str| {
        gw.app.call(http::Method::PUT, &key_path, Some(&gw.admin), Some(json!({ "status": status })))
    };

    // The key is cached by the first call; disabling it through the API still stops the next one.
    call().await.expect(StatusCode::OK);
    set_status("disabled").await.expect(StatusCode::OK);
    assert_refused(&call().await, StatusCode::FORBIDDEN, "key_disabled");
    set_status("active").await.expect(StatusCode::OK);
    call().await.expect(StatusCode::OK);

    // So does disabling its owner, and enabling them again.
    let user = format!("/api/admin/users/{}", grace.user_id);
    gw.app.call(http::Method::POST, &format!("{user}/disable"), Some(&gw.admin), None).await.expect(StatusCode::OK);
    assert_refused(&call().await, StatusCode::FORBIDDEN, "account_disabled");
    gw.app.call(http::Method::POST, &format!("{user}/enable"), Some(&gw.admin), None).await.expect(StatusCode::OK);
    call().await.expect(StatusCode::OK);

    // A deleted key is unknown at once.
    gw.app.call(http::Method::DELETE, &key_path, Some(&gw.admin), None).await.expect(StatusCode::NO_CONTENT);
    assert_refused(&call().await, StatusCode::UNAUTHORIZED, "invalid_api_key");

    assert_eq!(gw.mock.stats().total(), 3);
    assert_eq!(gw.consumes(grace.user_id).await.len(), 3);
    gw.assert_settled(grace.user_id).await;
}

async fn rate_limits_admit_exactly_their_count(gw: Gateway) {
    gw.price(MODEL, "1", "2").await;
    let heidi = gw.customer("heidi", "10", "1", json!({"rate_limit": 3})).await;
    // Windows are aligned to the minute: start well inside one.
    let second = chrono::Utc::now().timestamp().rem_euclid(60);
    if second >= 50 {
        tokio::time::sleep(std::time::Duration::from_secs((61 - second) as u64)).await;
    }
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let got = gw.post("/v1/chat/completions", Auth::Bearer(&heidi.key), &[], &chat(MODEL)).await;
        if got.status == StatusCode::TOO_MANY_REQUESTS {
            assert_refused(&got, StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded");
            let retry: u64 = got.header("retry-after").expect("retry-after").parse().expect("seconds");
            assert!((1..=60).contains(&retry), "retry-after: {retry}");
            assert_eq!(got.header("x-ratelimit-remaining-requests"), Some("0"));
        } else {
            got.expect(StatusCode::OK);
        }
        statuses.push(got.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    assert_eq!(gw.mock.stats().total(), 3);
    assert_eq!(gw.consumes(heidi.user_id).await.len(), 3);
    gw.assert_settled(heidi.user_id).await;
}

async fn concurrent_requests_never_overspend(gw: Gateway) {
    // Only output is priced and the mock produces exactly max_tokens, so each request's hold
    // equals its charge: 10 tokens at 100,000 credits per million = 1 credit, and 50 credits buy
    // exactly 50 requests.
    gw.price(MODEL, "0", "100000").await;
    let ivan = gw.customer("ivan", "50", "1", json!({})).await;
    let body = json!({"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]});
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let app = gw.app.app.clone();
            let request = request("/v1/chat/completions", Auth::Bearer(&ivan.key), &[], &body);
            tokio::spawn(async move {
                let response = app.oneshot(request).await.expect("infallible");
                let status = response.status();
                let bytes = http_body_util::BodyExt::collect(response.into_body()).await.expect("body").to_bytes();
                (status, serde_json::from_slice::<Value>(&bytes).expect("JSON"))
            })
        })
        .collect();
    let (mut served, mut refused) = (0, 0);
    for task in tasks {
        let (status, body) = task.await.expect("task");
        match status {
            StatusCode::OK => {
                assert_eq!(body["usage"]["completion_tokens"], 10);
                served += 1;
            }
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(
                    (&body["error"]["code"], &body["error"]["type"]),
                    (&json!("insufficient_quota"), &json!("insufficient_quota"))
                );
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((served, refused), (50, 150));
    assert_eq!(gw.mock.stats().requests("/v1/chat/completions"), 50);

    let funds = gw.funds(ivan.user_id).await;
    assert_eq!((funds.balance, funds.reserved), (Money::ZERO, Money::ZERO));
    let consumes = gw.consumes(ivan.user_id).await;
    assert_eq!(consumes.len(), 50);
    assert!(consumes.iter().all(|t| t.amount == Money::from_credits(-1)), "{consumes:?}");
    let key = gw.key_view(ivan.key_id).await;
    assert_eq!((money(&key["quota_used"]), &key["calls_succeeded"]), (Money::from_credits(50), &json!(50)));
    assert_eq!(gw.usage(ivan.user_id).await.len(), 50);
}

db_tests!(
    fixture = crate::common::gateway::Gateway::start;
    refusals_never_reach_the_upstream_and_change_nothing,
    changes_to_keys_and_users_take_effect_at_once,
    rate_limits_admit_exactly_their_count,
    concurrent_requests_never_overspend,
);
