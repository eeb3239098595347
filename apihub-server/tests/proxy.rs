//! The proxy end to end, in front of the mock upstream, on SQLite and PostgreSQL: each dialect
//! passed through and billed exactly from the usage it reports, the upstream key swapped in for the
//! client's, the usage chunk the gateway asks for hidden, and `GET /v1/models` filtered.
//!
//! Refusals, rate limits and concurrency are in `proxy_refusals.rs`; upstream faults, cut streams
//! and client disconnects in `proxy_faults.rs`.

mod common;

use apihub_core::Money;
use apihub_core::store::{UsageRecord, UsageSource};
use apihub_core::usage::SseEvent;
use apihub_mock_upstream::RecordedRequest;
use common::gateway::{Auth, Customer, Gateway, Price, UPSTREAM_KEY, discounted, money, quarter, same_but_for_ids};
use http::StatusCode;
use serde_json::{Value, json};

const CHAT_MODEL: &str = "gpt-4o-mini";
const CLAUDE: &str = "claude-sonnet-4";
const GEMINI: &str = "gemini-2.5-flash";
/// Prices with six decimals, so that every product needs rounding.
const PRICE: Price = Price { input: "1.234567", output: "9.876543" };

fn messages(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

/// Asserts that the client's key went nowhere near the upstream: no header, no query, no body.
#[track_caller]
fn assert_upstream_never_saw(seen: &RecordedRequest, client_key: &str) {
    for (name, value) in &seen.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(!value.contains(client_key) && !value.contains("ahg_"), "the upstream saw {name}: {value}");
    }
    assert!(!seen.uri.to_string().contains("ahg_"), "the upstream saw the key in {}", seen.uri);
    assert!(!String::from_utf8_lossy(&seen.body).contains("ahg_"));
}

/// Asserts the one consume row and the one usage record of a single billed request, and returns
/// the record.
async fn assert_billed_once(gw: &Gateway, who: &Customer, request_id: &str, charge: Money) -> UsageRecord {
    let consumes = gw.consumes(who.user_id).await;
    assert_eq!(consumes.len(), 1, "{consumes:?}");
    assert_eq!(consumes[0].amount, Money::ZERO.checked_sub(charge).unwrap());
    let order_no = consumes[0].order_no.as_deref().expect("an order number");
    assert!(order_no.starts_with("gw-"), "{order_no}");
    assert_eq!(order_no, request_id, "the consume row is named by the request id the client saw");
    let usage = gw.usage(who.user_id).await;
    assert_eq!(usage.len(), 1, "{usage:?}");
    assert_eq!(usage[0].request_id, request_id);
    assert_eq!(usage[0].charged, charge);
    usage[0].clone()
}

async fn openai_chat_is_passed_through_and_billed_exactly(gw: Gateway) {
    gw.price(CHAT_MODEL, PRICE.input, PRICE.output).await;
    let alice = gw.customer("alice", "100", "0.85", json!({"discount_rate": "0.7"})).await;
    let prompt = messages("Tell me about lighthouses, briefly.");
    let body = json!({"model": CHAT_MODEL, "max_tokens": 7, "messages": prompt});

    let got = gw.post("/v1/chat/completions", Auth::Bearer(&alice.key), &[], &body).await;
    got.expect(StatusCode::OK);
    let id = gw.last_sequence();

    // The upstream got the client's body as it was sent, under the gateway's key.
    let seen = gw.last_upstream_request();
    assert_eq!(seen.uri, "/v1/chat/completions");
    assert_eq!(seen.header("authorization"), Some(format!("Bearer {UPSTREAM_KEY}").as_str()));
    assert_upstream_never_saw(&seen, &alice.key);
    assert_eq!(seen.body, body.to_string());

    // The client got exactly what the upstream answered.
    let replayed = gw.replay(&seen).await;
    assert_eq!(got.text(), same_but_for_ids(&replayed, id + 1, id));
    assert_eq!(got.header("content-type"), Some("application/json"));

    // Billed from the mock's deterministic usage: prompt = ⌈bytes of `messages` ÷ 4⌉.
    let (input, output) = (quarter(prompt.to_string().len()), 7);
    assert_eq!(
        got.json()["usage"],
        json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output})
    );
    let raw = PRICE.raw(input, output);
    let charge = discounted(raw, "0.85", "0.7");
    assert!(charge.is_positive() && charge < raw);
    let funds = gw.funds(alice.user_id).await;
    assert_eq!((funds.balance, funds.reserved), (Money::from_credits(100).checked_sub(charge).unwrap(), Money::ZERO));

    let request_id = got.header("x-apihub-request-id").expect("a request id");
    let record = assert_billed_once(&gw, &alice, request_id, charge).await;
    assert_eq!((record.user_id, record.key_id), (alice.user_id, alice.key_id));
    assert_eq!(
        (record.model.as_str(), record.endpoint.as_str(), record.stream),
        (CHAT_MODEL, "/v1/chat/completions", false)
    );
    assert_eq!(
        (record.prompt_tokens, record.completion_tokens, record.cached_tokens),
        (input as i64, output as i64, 0)
    );
    assert_eq!((record.raw_cost, record.status, record.usage_source), (raw, 200, UsageSource::Reported));
    assert_eq!((record.user_discount.to_string(), record.key_discount.to_string()), ("0.85".into(), "0.7".into()));

    let key = gw.key_view(alice.key_id).await;
    assert_eq!(key["tokens_used"], input + output);
    assert_eq!(money(&key["quota_used"]), charge);
    assert_eq!((&key["calls_total"], &key["calls_succeeded"]), (&json!(1), &json!(1)));
}

/// The chat chunks of a stream that carry text, joined.
fn streamed_text(events: &[SseEvent]) -> String {
    events
        .iter()
        .filter_map(SseEvent::json)
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect()
}

fn is_usage_only(event: &SseEvent) -> bool {
    event.json().is_some_and(|c| c["choices"].as_array().is_some_and(Vec::is_empty) && c["usage"].is_object())
}

async fn openai_streams_hide_only_the_usage_chunk_the_gateway_asked_for(gw: Gateway) {
    gw.price(CHAT_MODEL, PRICE.input, PRICE.output).await;
    let bob = gw.customer("bob", "100", "0.9", json!({})).await;
    let prompt = messages("Stream me five words.");
    let (input, output) = (quarter(prompt.to_string().len()), 5);
    let charge = discounted(PRICE.raw(input, output), "0.9", "1");

    // Without stream_options: the gateway asks for usage, and the client never sees it.
    let body = json!({"model": CHAT_MODEL, "stream": true, "max_tokens": output, "messages": prompt});
    let got = gw.post("/v1/chat/completions", Auth::Bearer(&bob.key), &[], &body).await;
    got.expect(StatusCode::OK);
    assert_eq!(got.header("content-type"), Some("text/event-stream"));
    let id = gw.last_sequence();
    let seen = gw.last_upstream_request();
    assert_eq!(seen.json().expect("JSON")["stream_options"], json!({"include_usage": true}));
    assert_upstream_never_saw(&seen, &bob.key);

    let events = got.events();
    assert!(!events.iter().any(is_usage_only), "the usage chunk reached the client: {}", got.text());
    assert!(!got.text().contains("\"usage\""), "{}", got.text());
    assert_eq!(events.last().map(|e| e.data.as_str()), Some("[DONE]"));
    assert_eq!(streamed_text(&events), "lorem ipsum dolor sit amet");
    // Byte for byte the upstream's stream, less that one event.
    let replayed = same_but_for_ids(&gw.replay(&seen).await, id + 1, id);
    let upstream_events: Vec<&str> = replayed.split_inclusive("\n\n").collect();
    assert_eq!(upstream_events.iter().filter(|e| e.contains("\"usage\"")).count(), 1);
    let expected: String = upstream_events.into_iter().filter(|e| !e.contains("\"usage\"")).collect();
    assert_eq!(got.text(), expected);

    let request_id = got.header("x-apihub-request-id").expect("a request id");
    let record = assert_billed_once(&gw, &bob, request_id, charge).await;
    assert_eq!((record.prompt_tokens, record.completion_tokens), (input as i64, output as i64));
    assert_eq!((record.stream, record.usage_source, record.status), (true, UsageSource::Reported, 200));
    // The first event came after the headers: time to first byte is recorded, and not before them.
    assert!(record.first_byte_ms.is_some_and(|t| t >= record.upstream_latency_ms), "{record:?}");
    assert_eq!(gw.funds(bob.user_id).await.balance, Money::from_credits(100).checked_sub(charge).unwrap());

    // With stream_options.include_usage from the client: the client gets its usage chunk.
    let body = json!({
        "model": CHAT_MODEL, "stream": true, "max_tokens": output, "messages": prompt,
        "stream_options": {"include_usage": true},
    });
    let got = gw.post("/v1/chat/completions", Auth::Bearer(&bob.key), &[], &body).await;
    got.expect(StatusCode::OK);
    assert_eq!(gw.last_upstream_request().body, body.to_string(), "forwarded as it was");
    let events = got.events();
    let usage: Vec<Value> = events.iter().filter(|e| is_usage_only(e)).filter_map(SseEvent::json).collect();
    assert_eq!(usage.len(), 1, "{}", got.text());
    // Its usage as the upstream reported it, and what the request cost (the ledger's charge).
    let mut reported = usage[0]["usage"].clone();
    let cost = reported.as_object_mut().and_then(|u| u.remove("cost")).expect("usage.cost");
    assert_eq!(money(&cost), charge, "usage.cost is the charge");
    assert_eq!(reported, json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output}));
    assert!(got.text().contains("\"usage\":{\"cost\":"), "the cost leads the usage object: {}", got.text());
    assert_eq!(events.last().map(|e| e.data.as_str()), Some("[DONE]"));

    let twice = charge.checked_add(charge).unwrap();
    assert_eq!(gw.assert_settled(bob.user_id).await, Money::from_credits(100).checked_sub(twice).unwrap());
    assert_eq!(gw.consumes(bob.user_id).await.len(), 2);
    let key = gw.key_view(bob.key_id).await;
    assert_eq!((money(&key["quota_used"]), &key["calls_succeeded"]), (twice, &json!(2)));
}

async fn anthropic_messages_are_billed_exactly(gw: Gateway) {
    gw.price(CLAUDE, PRICE.input, PRICE.output).await;
    let carol = gw.customer("carol", "50", "0.8", json!({"discount_rate": "0.95"})).await;
    let prompt = messages("Write a haiku about the sea.");
    let (input, output) = (quarter(prompt.to_string().len()), 6);
    let charge = discounted(PRICE.raw(input, output), "0.8", "0.95");

    let body = json!({"model": CLAUDE, "max_tokens": output, "messages": prompt});
    let got = gw.post("/v1/messages", Auth::XApiKey(&carol.key), &[], &body).await;
    got.expect(StatusCode::OK);
    assert_eq!(got.json()["usage"], json!({"input_tokens": input, "output_tokens": output}));
    let seen = gw.last_upstream_request();
    assert_eq!(seen.header("x-api-key"), Some(UPSTREAM_KEY));
    assert_upstream_never_saw(&seen, &carol.key);
    let request_id = got.header("x-apihub-request-id").expect("a request id");
    assert_billed_once(&gw, &carol, request_id, charge).await;

    let body = json!({"model": CLAUDE, "stream": true, "max_tokens": output, "messages": prompt});
    let got = gw.post("/v1/messages", Auth::XApiKey(&carol.key), &[], &body).await;
    got.expect(StatusCode::OK);
    let names: Vec<_> = got.events().into_iter().filter_map(|e| e.event).collect();
    assert_eq!(
        (names.first().map(String::as_str), names.last().map(String::as_str)),
        (Some("message_start"), Some("message_stop"))
    );
    assert_eq!(gw.last_upstream_request().body, body.to_string(), "an Anthropic stream is forwarded as it was");

    let twice = charge.checked_add(charge).unwrap();
    assert_eq!(gw.assert_settled(carol.user_id).await, Money::from_credits(50).checked_sub(twice).unwrap());
    let usage = gw.usage(carol.user_id).await;
    assert_eq!(usage.len(), 2);
    let streamed = &usage[0];
    assert_eq!(
        (streamed.stream, streamed.prompt_tokens, streamed.completion_tokens),
        (true, input as i64, output as i64)
    );
    assert_eq!(
        (streamed.charged, streamed.usage_source, streamed.endpoint.as_str()),
        (charge, UsageSource::Reported, "/v1/messages")
    );
}

async fn gemini_generate_content_is_billed_exactly(gw: Gateway) {
    gw.price(GEMINI, PRICE.input, PRICE.output).await;
    let dave = gw.customer("dave", "20", "0.75", json!({})).await;
    let contents = json!([{"role": "user", "parts": [{"text": "Explain ownership in Rust."}]}]);
    let input = quarter(contents.to_string().len());
    let body = |output: u64| json!({"contents": contents, "generationConfig": {"maxOutputTokens": output}});
    let charge = |output: u64| discounted(PRICE.raw(input, output), "0.75", "1");
    let mut expected_balance = Money::from_credits(20);

    // generateContent with x-goog-api-key.
    let path = format!("/v1beta/models/{GEMINI}:generateContent");
    let got = gw.post(&path, Auth::GoogHeader(&dave.key), &[], &body(4)).await;
    got.expect(StatusCode::OK);
    assert_eq!(got.json()["usageMetadata"]["candidatesTokenCount"], 4);
    let seen = gw.last_upstream_request();
    assert_eq!(seen.header("x-goog-api-key"), Some(UPSTREAM_KEY));
    assert_upstream_never_saw(&seen, &dave.key);
    expected_balance = expected_balance.checked_sub(charge(4)).unwrap();
    assert_eq!(gw.funds(dave.user_id).await.balance, expected_balance);

    // streamGenerateContent?alt=sse with ?key=: the key is taken out of the query.
    let path = format!("/v1beta/models/{GEMINI}:streamGenerateContent?alt=sse");
    let got = gw.post(&path, Auth::Query(&dave.key), &[], &body(3)).await;
    got.expect(StatusCode::OK);
    assert_eq!(got.header("content-type"), Some("text/event-stream"));
    assert_eq!(got.events().len(), 3);
    let seen = gw.last_upstream_request();
    assert_eq!(seen.uri.to_string(), format!("/v1beta/models/{GEMINI}:streamGenerateContent?alt=sse"));
    assert_eq!(seen.header("x-goog-api-key"), Some(UPSTREAM_KEY));
    assert_upstream_never_saw(&seen, &dave.key);
    expected_balance = expected_balance.checked_sub(charge(3)).unwrap();
    assert_eq!(gw.funds(dave.user_id).await.balance, expected_balance);

    // streamGenerateContent without alt=sse: a JSON array, streamed.
    let path = format!("/v1beta/models/{GEMINI}:streamGenerateContent");
    let got = gw.post(&path, Auth::GoogHeader(&dave.key), &[], &body(2)).await;
    got.expect(StatusCode::OK);
    assert_eq!(got.json().as_array().map(Vec::len), Some(2));
    expected_balance = expected_balance.checked_sub(charge(2)).unwrap();

    assert_eq!(gw.assert_settled(dave.user_id).await, expected_balance);
    let usage = gw.usage(dave.user_id).await;
    let billed: Vec<_> = usage
        .iter()
        .rev()
        .map(|r| (r.stream, r.prompt_tokens, r.completion_tokens, r.charged, r.usage_source))
        .collect();
    assert_eq!(billed, [4, 3, 2].map(|n| (n != 4, input as i64, n as i64, charge(n), UsageSource::Reported)),);
    assert_eq!(gw.consumes(dave.user_id).await.len(), 3);
}

async fn models_lists_what_is_priced_and_allowed(gw: Gateway) {
    // The mock lists gpt-4o-mini, gpt-4o, text-embedding-3-small and gpt-image-1.
    for model in ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "not-upstream"] {
        gw.price(model, "1", "1").await;
    }
    let erin = gw.customer("erin", "1", "1", json!({})).await;
    let (_, narrow) = gw.key(erin.user_id, json!({"allowed_models": ["gpt-4o", "gpt-image-1", "claude-x"]})).await;
    let gateway = &gw;
    let models = |key: String| async move {
        let request = http::Request::get("/v1/models").header("authorization", format!("Bearer {key}"));
        let got = gateway.send(request.body(axum::body::Body::empty()).unwrap()).await;
        got.expect(StatusCode::OK);
        let list = got.json();
        list["data"].as_array().expect("data").iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(models(erin.key.clone()).await, ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]);
    assert_eq!(models(narrow).await, ["gpt-4o"]);
    assert_eq!(gw.mock.stats().requests("/v1/models"), 2);
    assert_eq!(gw.last_upstream_request().header("authorization"), Some(format!("Bearer {UPSTREAM_KEY}").as_str()));

    let anonymous = gw.send(http::Request::get("/v1/models").body(axum::body::Body::empty()).unwrap()).await;
    anonymous.expect(StatusCode::UNAUTHORIZED);
    assert_eq!(gw.mock.stats().requests("/v1/models"), 2, "an anonymous list never reaches the upstream");
    assert_eq!(gw.assert_settled(erin.user_id).await, Money::from_credits(1), "listing is free");
}

db_tests!(
    fixture = crate::common::gateway::Gateway::start;
    openai_chat_is_passed_through_and_billed_exactly,
    openai_streams_hide_only_the_usage_chunk_the_gateway_asked_for,
    anthropic_messages_are_billed_exactly,
    gemini_generate_content_is_billed_exactly,
    models_lists_what_is_priced_and_allowed,
);
