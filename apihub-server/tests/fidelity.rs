//! Clients should not notice they are not talking to the vendor, on SQLite and PostgreSQL: each
//! dialect's errors in its own shape and status, the model retrieval the OpenAI SDK does, CORS for
//! browser apps, gzip request bodies, and the seed's field names.

mod common;

use std::io::Write;

use apihub_mock_upstream::header;
use axum::body::Body;
use common::gateway::{Auth, Gateway, request};
use http::{Method, Request, StatusCode};
use serde_json::{Value, json};

const MODEL: &str = "gpt-4o-mini";
const GEMINI: &str = "gemini-2.0-flash";

fn chat() -> Value {
    json!({"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
}

fn claude() -> Value {
    json!({"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
}

fn gemini() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": 5}})
}

async fn each_dialect_refuses_in_its_own_shape(gw: Gateway) {
    gw.price(MODEL, "1", "1").await;
    gw.price(GEMINI, "1", "1").await;
    let poor = gw.customer("poor", "0", "1", json!({})).await;
    let gemini_path = format!("/v1beta/models/{GEMINI}:generateContent");

    // A wrong key.
    let openai = gw.post("/v1/chat/completions", Auth::Bearer("ahg_wrong"), &[], &chat()).await;
    openai.expect(StatusCode::UNAUTHORIZED);
    assert_eq!(openai.json()["error"]["code"], "invalid_api_key");
    let anthropic = gw.post("/v1/messages", Auth::XApiKey("ahg_wrong"), &[], &claude()).await;
    anthropic.expect(StatusCode::UNAUTHORIZED);
    assert_eq!(anthropic.json()["type"], "error");
    assert_eq!(anthropic.json()["error"]["type"], "authentication_error");
    assert!(anthropic.json()["error"]["message"].is_string());
    let google = gw.post(&gemini_path, Auth::GoogHeader("ahg_wrong"), &[], &gemini()).await;
    google.expect(StatusCode::BAD_REQUEST);
    assert_eq!(google.json()["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(google.json()["error"]["code"], 400);

    // No credit: what each vendor answers when the account has none.
    let openai = gw.post("/v1/chat/completions", Auth::Bearer(&poor.key), &[], &chat()).await;
    openai.expect(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(openai.json()["error"]["code"], "insufficient_quota");
    assert_eq!(openai.header("x-should-retry"), Some("false"));
    let anthropic = gw.post("/v1/messages", Auth::XApiKey(&poor.key), &[], &claude()).await;
    anthropic.expect(StatusCode::BAD_REQUEST);
    assert_eq!(anthropic.json()["error"]["type"], "invalid_request_error");
    let google = gw.post(&gemini_path, Auth::GoogHeader(&poor.key), &[], &gemini()).await;
    google.expect(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(google.json()["error"]["status"], "RESOURCE_EXHAUSTED");

    // An upstream's own error passes through untouched, in its own shape.
    let rich = gw.customer("rich", "10", "1", json!({})).await;
    let upstream = gw.post("/v1/messages", Auth::XApiKey(&rich.key), &[(header::STATUS, "529")], &claude()).await;
    upstream.expect(StatusCode::from_u16(529).unwrap());
    assert_eq!(upstream.json()["type"], "error", "{}", upstream.text());
    assert_eq!(gw.mock.stats().total(), 1, "no refusal reached the upstream");
}

async fn a_key_in_the_query_string_counts_on_the_gemini_routes_only(gw: Gateway) {
    gw.price(MODEL, "1", "1").await;
    gw.price(GEMINI, "1", "1").await;
    let ivy = gw.customer("ivy", "10", "1", json!({})).await;
    let openai = gw.post("/v1/chat/completions", Auth::Query(&ivy.key), &[], &chat()).await;
    openai.expect(StatusCode::UNAUTHORIZED);
    let anthropic = gw.post("/v1/messages", Auth::Query(&ivy.key), &[], &claude()).await;
    anthropic.expect(StatusCode::UNAUTHORIZED);
    let google =
        gw.post(&format!("/v1beta/models/{GEMINI}:generateContent"), Auth::Query(&ivy.key), &[], &gemini()).await;
    google.expect(StatusCode::OK);
    assert_eq!(gw.consumes(ivy.user_id).await.len(), 1, "only the Gemini call was served");
}

fn get(path: &str, key: &str, method: Method) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap()
}

async fn one_model_can_be_retrieved_as_the_openai_sdk_does(gw: Gateway) {
    gw.price(MODEL, "1", "1").await;
    let kim = gw.customer("kim", "10", "1", json!({})).await;
    let got = gw.send(get(&format!("/v1/models/{MODEL}"), &kim.key, Method::GET)).await;
    got.expect(StatusCode::OK);
    assert_eq!(got.json()["id"], MODEL);
    assert_eq!(got.json()["object"], "model");
    // Listed upstream but not priced here: not served, so not shown.
    let unpriced = gw.send(get("/v1/models/gpt-4o", &kim.key, Method::GET)).await;
    unpriced.expect(StatusCode::NOT_FOUND);
    assert_eq!(unpriced.json()["error"]["code"], "model_not_found");
    let head = gw.send(get(&format!("/v1/models/{MODEL}"), &kim.key, Method::HEAD)).await;
    head.expect(StatusCode::OK);
    let unauthenticated = gw.send(get(&format!("/v1/models/{MODEL}"), "ahg_wrong", Method::GET)).await;
    unauthenticated.expect(StatusCode::UNAUTHORIZED);
    let post = gw.post(&format!("/v1/models/{MODEL}"), Auth::Bearer(&kim.key), &[], &json!({})).await;
    post.expect(StatusCode::METHOD_NOT_ALLOWED);
}

/// Proxied requests skip the router (`routes/split.rs`); what the layers around it and the
/// router's proxy routes add must still be there: the request id and the count by status.
async fn proxied_answers_carry_their_request_id_and_are_counted(gw: Gateway) {
    gw.price(MODEL, "1", "1").await;
    let ola = gw.customer("ola", "10", "1", json!({})).await;
    let counted = |text: &str, class: &str| -> u64 {
        let sample = format!("apihub_requests_total{{status=\"{class}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(sample.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let metrics = || async {
        let scrape = gw.send(Request::get("/metrics").body(Body::empty()).unwrap()).await;
        scrape.expect(StatusCode::OK);
        String::from_utf8_lossy(&scrape.body).into_owned()
    };
    let before = metrics().await;

    let served = gw.post("/v1/chat/completions", Auth::Bearer(&ola.key), &[], &chat()).await;
    served.expect(StatusCode::OK);
    assert!(served.header("x-request-id").is_some_and(|id| id.len() == 36), "{:?}", served.headers);
    let given =
        gw.post("/v1/chat/completions", Auth::Bearer(&ola.key), &[("x-request-id", "client-chosen-1")], &chat()).await;
    given.expect(StatusCode::OK);
    assert_eq!(given.header("x-request-id"), Some("client-chosen-1"));
    let refused = gw.post("/v1/chat/completions", Auth::Bearer("ahg_wrong"), &[], &chat()).await;
    refused.expect(StatusCode::UNAUTHORIZED);
    assert!(refused.header("x-request-id").is_some());

    let after = metrics().await;
    assert_eq!(counted(&after, "2xx") - counted(&before, "2xx"), 2, "{after}");
    assert_eq!(counted(&after, "4xx") - counted(&before, "4xx"), 1, "{after}");
}

async fn browsers_may_call_from_the_configured_origins_only(gw: Gateway) {
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/v1/chat/completions")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .body(Body::empty())
            .unwrap()
    };
    // Off by default: no CORS headers at all.
    let closed = gw.send(preflight("https://app.example.com")).await;
    assert!(closed.header("access-control-allow-origin").is_none(), "{:?}", closed.headers);

    let gw = gw.reconfigure(|config| config.cors_allow_origins = vec!["https://app.example.com".into()]).await;
    let allowed = gw.send(preflight("https://app.example.com")).await;
    allowed.expect(StatusCode::OK);
    assert_eq!(allowed.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert!(allowed.header("access-control-allow-headers").is_some_and(|h| h.contains("authorization")));
    let other = gw.send(preflight("https://evil.example.com")).await;
    assert!(other.header("access-control-allow-origin").is_none());

    gw.price(MODEL, "1", "1").await;
    let lea = gw.customer("lea", "10", "1", json!({})).await;
    let mut call = request("/v1/chat/completions", Auth::Bearer(&lea.key), &[], &chat());
    call.headers_mut().insert("origin", "https://app.example.com".parse().unwrap());
    let got = gw.send(call).await;
    got.expect(StatusCode::OK);
    assert_eq!(got.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert!(got.header("access-control-expose-headers").is_some_and(|h| h.contains("x-request-id")));
}

async fn gzip_request_bodies_are_inflated_and_billed(gw: Gateway) {
    gw.price(MODEL, "1", "1").await;
    let max = gw.customer("max", "10", "1", json!({})).await;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(chat().to_string().as_bytes()).unwrap();
    let gzipped = encoder.finish().unwrap();
    let call = |body: Vec<u8>| {
        Request::builder()
            .method(Method::POST)
            .uri("/v1/chat/completions")
            .header("authorization", format!("Bearer {}", max.key))
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(Body::from(body))
            .unwrap()
    };
    let got = gw.send(call(gzipped)).await;
    got.expect(StatusCode::OK);
    let forwarded: Value = serde_json::from_slice(&gw.last_upstream_request().body).unwrap();
    assert_eq!(forwarded["model"], MODEL, "the upstream got the inflated JSON");
    assert_eq!(gw.consumes(max.user_id).await.len(), 1);
    let garbage = gw.send(call(b"not gzip at all".to_vec())).await;
    assert!(garbage.status.is_client_error(), "{}", garbage.status);
    assert_eq!(gw.consumes(max.user_id).await.len(), 1, "nothing billed for it");
}

async fn ledger_rows_carry_the_seed_field_name(gw: Gateway) {
    let nia = gw.customer("nia", "5", "1", json!({})).await;
    let path = format!("/api/tokens/admin/user/{}/balance", nia.user_id);
    let _ = gw.app.get(&path, &gw.admin).await.expect(StatusCode::OK);
    let token = gw.app.login("nia", common::PASSWORD).await;
    let rows = gw.app.get("/api/tokens/transactions", &token).await.expect(StatusCode::OK);
    let first = &rows["items"][0];
    assert_eq!(first["transaction_type"], "recharge", "{rows}");
    assert_eq!(first["tx_type"], "recharge", "the earlier name stays");
}

db_tests!(
    fixture = crate::common::gateway::Gateway::start;
    each_dialect_refuses_in_its_own_shape,
    a_key_in_the_query_string_counts_on_the_gemini_routes_only,
    one_model_can_be_retrieved_as_the_openai_sdk_does,
    proxied_answers_carry_their_request_id_and_are_counted,
    browsers_may_call_from_the_configured_origins_only,
    gzip_request_bodies_are_inflated_and_billed,
    ledger_rows_carry_the_seed_field_name,
);
