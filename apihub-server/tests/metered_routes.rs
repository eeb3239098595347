//! Metered routes end to end, on SQLite and PostgreSQL, in front of a mock image-generation
//! service on a real port (the second seed's use case): the key read from the JSON body and never
//! forwarded, unknown keys refused before the upstream, `remaining_calls` counted on success only
//! under concurrency, per-unit prices, site statistics per route, imported keys, and the routes
//! API refusing bad definitions.

mod common;

use apihub_core::Money;
use common::gateway::{Auth, Customer, Gateway, Raw, money, request};
use common::image_upstream::{IMAGE_UPSTREAM_KEY, ImageUpstream};
use http::{Method, StatusCode};
use serde_json::{Value, json};

/// The gateway (with its administrator) and the image service behind it.
struct Images {
    gw: Gateway,
    upstream: ImageUpstream,
}

impl Images {
    async fn on(backend: common::Backend) -> Option<Images> {
        let gw = Gateway::start(backend).await?;
        Some(Images { gw, upstream: ImageUpstream::start().await })
    }

    /// Creates a route with `fields` over the seed's defaults; returns its view.
    async fn route(&self, fields: Value) -> Value {
        let mut body = json!({
            "name": "image-generation",
            "path": "/api/generate",
            "upstream_url": self.upstream.url(),
            "upstream_key": IMAGE_UPSTREAM_KEY,
            "key_field": "apiKey",
            "price_per_call": "0.01",
        });
        for (name, value) in fields.as_object().expect("object") {
            body[name] = value.clone();
        }
        self.gw.app.post("/api/admin/routes", &self.gw.admin, body).await.expect(StatusCode::CREATED)
    }

    /// A user with 10 credits and a key with `fields`.
    async fn customer(&self, name: &str, fields: Value) -> Customer {
        self.gw.customer(name, "10", "1", fields).await
    }

    /// `POST /api/generate` as the seed's clients call it: the key in the body.
    async fn generate(&self, key: &str, extra: Value) -> Raw {
        let mut body = json!({"apiKey": key, "prompt": "a cat", "width": 512, "height": 512, "steps": 20});
        for (name, value) in extra.as_object().expect("object") {
            body[name] = value.clone();
        }
        self.gw.post("/api/generate", Auth::None, &[], &body).await
    }

    async fn balance(&self, user_id: i64) -> Money {
        self.gw.assert_settled(user_id).await
    }
}

/// Asserts an error in OpenAI's shape with this status and code.
#[track_caller]
fn assert_openai_error(raw: &Raw, status: StatusCode, code: &str) {
    raw.expect(status);
    let body = raw.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string() && body["error"].get("type").is_some(), "{body}");
}

async fn a_route_with_the_key_in_the_body_forwards_the_call_and_bills_it(t: Images) {
    let route = t.route(json!({})).await;
    assert_eq!(route["upstream_key_preview"], "…0123");
    assert!(!route.to_string().contains(IMAGE_UPSTREAM_KEY), "the upstream key is never shown: {route}");
    let alice = t.customer("alice", json!({"remaining_calls": 5})).await;

    let reply = t.generate(&alice.key, json!({"batch_size": 1})).await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.json()["images"].as_array().map(Vec::len), Some(1));

    assert_eq!(t.balance(alice.user_id).await, Money::parse("9.99").unwrap());
    let key = t.gw.key_view(alice.key_id).await;
    assert_eq!((key["remaining_calls"].as_i64(), key["calls_succeeded"].as_i64()), (Some(4), Some(1)));
    let usage = t.gw.usage(alice.user_id).await;
    assert_eq!(usage.len(), 1);
    assert_eq!(
        (usage[0].route_id, usage[0].status, usage[0].charged),
        (route["id"].as_i64(), 200, Money::parse("0.01").unwrap())
    );
    assert_eq!(usage[0].endpoint, "/api/generate");
}

async fn the_clients_key_never_reaches_the_upstream(t: Images) {
    t.route(json!({})).await;
    let alice = t.customer("alice", json!({})).await;
    t.generate(&alice.key, json!({})).await.expect(StatusCode::OK);
    // Also when the client sends it in every header a key can travel in.
    let body = json!({"apiKey": alice.key, "prompt": "a dog"});
    let headers = [("x-api-key", alice.key.as_str()), ("x-goog-api-key", alice.key.as_str())];
    t.gw.post("/api/generate", Auth::Bearer(&alice.key), &headers, &body).await.expect(StatusCode::OK);

    let seen = t.upstream.seen();
    assert_eq!(seen.len(), 2);
    for request in seen {
        for (name, value) in &request.headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            assert!(!value.contains(&alice.key), "the upstream saw {name}: {value}");
        }
        assert!(!request.body.contains(&alice.key) && !request.body.contains("apiKey"), "{}", request.body);
        assert_eq!(request.headers["authorization"], format!("Bearer {IMAGE_UPSTREAM_KEY}"));
        let body: Value = serde_json::from_str(&request.body).expect("JSON body");
        assert!(body["prompt"].is_string(), "the rest of the body is forwarded: {body}");
    }
}

async fn an_unknown_key_is_refused_and_the_upstream_never_called(t: Images) {
    t.route(json!({})).await;
    let alice = t.customer("alice", json!({})).await;
    // The key with its last character changed (to `x`, or `y` when it was an `x`).
    let (head, last) = alice.key.split_at(alice.key.len() - 1);
    let forged = format!("{head}{}", if last == "x" { "y" } else { "x" });
    for key in [forged.as_str(), "felix-not-a-key-at-all-0000", "short", ""] {
        let reply = t.generate(key, json!({})).await;
        assert_openai_error(&reply, StatusCode::UNAUTHORIZED, "invalid_api_key");
    }
    let no_key = t.gw.post("/api/generate", Auth::None, &[], &json!({"prompt": "a cat"})).await;
    assert_openai_error(&no_key, StatusCode::UNAUTHORIZED, "invalid_api_key");
    let not_a_string = t.generate("", json!({"apiKey": 7})).await;
    assert_openai_error(&not_a_string, StatusCode::BAD_REQUEST, "invalid_api_key");
    assert!(t.upstream.seen().is_empty(), "the upstream was called");
    assert_eq!(t.balance(alice.user_id).await, Money::from_credits(10));
}

async fn remaining_calls_admit_exactly_that_many_of_ten_concurrent_calls_and_failures_do_not_count(t: Images) {
    t.route(json!({})).await;
    let alice = t.customer("alice", json!({"remaining_calls": 3})).await;

    // The upstream fails: its 500 passes through, costs nothing and uses no call.
    t.upstream.fail(true);
    for _ in 0..2 {
        t.generate(&alice.key, json!({})).await.expect(StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(t.gw.key_view(alice.key_id).await["remaining_calls"], 3);
    assert_eq!(t.balance(alice.user_id).await, Money::from_credits(10));

    t.upstream.fail(false);
    t.upstream.delay(std::time::Duration::from_millis(300));
    let calls = (0..10).map(|_| {
        let router = t.gw.app.app.clone();
        let body = json!({"apiKey": alice.key, "prompt": "a cat"});
        tokio::spawn(common::gateway::send_router(router, request("/api/generate", Auth::None, &[], &body)))
    });
    let mut statuses = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        let reply = call.await.expect("task");
        if reply.status != StatusCode::OK {
            assert_openai_error(&reply, StatusCode::FORBIDDEN, "key_quota_exceeded");
        }
        statuses.push(reply.status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 3, "{statuses:?}");
    let key = t.gw.key_view(alice.key_id).await;
    assert_eq!((key["remaining_calls"].as_i64(), key["calls_succeeded"].as_i64()), (Some(0), Some(3)));
    assert_eq!(t.balance(alice.user_id).await, Money::parse("9.97").unwrap());
    assert_eq!(t.upstream.seen().len(), 2 + 3, "refused calls never reach the upstream");
    let refused = t.generate(&alice.key, json!({})).await;
    assert_openai_error(&refused, StatusCode::FORBIDDEN, "key_quota_exceeded");
}

async fn a_per_unit_price_charges_each_unit_asked_for(t: Images) {
    t.route(json!({"price_per_unit": "0.05", "units_pointer": "/batch_size", "max_units": 8})).await;
    let alice = t.customer("alice", json!({"discount_rate": "0.5"})).await;

    let reply = t.generate(&alice.key, json!({"batch_size": 4})).await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.json()["images"].as_array().map(Vec::len), Some(4));
    // (0.01 + 4 × 0.05) × 0.5 (the key's discount) = 0.105.
    assert_eq!(t.balance(alice.user_id).await, Money::parse("9.895").unwrap());
    let usage = t.gw.usage(alice.user_id).await;
    assert_eq!((usage[0].raw_cost, usage[0].charged), (Money::parse("0.21").unwrap(), Money::parse("0.105").unwrap()));

    for bad in [json!(0), json!(9), json!(-1), json!(2.5), json!("4")] {
        let reply = t.generate(&alice.key, json!({"batch_size": bad})).await;
        assert_openai_error(&reply, StatusCode::BAD_REQUEST, "invalid_units");
    }
    assert_eq!(t.upstream.seen().len(), 1);
    assert_eq!(t.balance(alice.user_id).await, Money::parse("9.895").unwrap());
}

async fn site_statistics_count_the_days_generations_per_route(t: Images) {
    let route = t.route(json!({})).await;
    let alice = t.customer("alice", json!({})).await;
    for _ in 0..3 {
        t.generate(&alice.key, json!({})).await.expect(StatusCode::OK);
    }
    t.upstream.fail(true);
    t.generate(&alice.key, json!({})).await.expect(StatusCode::INTERNAL_SERVER_ERROR);
    t.gw.usage(alice.user_id).await;

    let overview = t.gw.app.get("/api/stats/admin/overview", &t.gw.admin).await.expect(StatusCode::OK);
    assert_eq!((overview["today"]["requests"].as_u64(), overview["today"]["succeeded"].as_u64()), (Some(4), Some(3)));
    let today = overview["by_day"].as_array().and_then(|days| days.last()).expect("today");
    assert_eq!(today["succeeded"], 3);
    let by_route = overview["by_route"].as_array().expect("by_route");
    assert_eq!(by_route.len(), 1);
    assert_eq!((&by_route[0]["route_id"], &by_route[0]["name"]), (&route["id"], &json!("image-generation")));
    assert_eq!((by_route[0]["requests"].as_u64(), by_route[0]["succeeded"].as_u64()), (Some(4), Some(3)));
    assert_eq!(money(&by_route[0]["charged"]), Money::parse("0.03").unwrap());
}

async fn an_imported_key_authenticates_with_its_own_string_and_is_billed(t: Images) {
    t.route(json!({})).await;
    let (bob_id, _) = t.gw.app.user("bob").await;
    t.gw.app.recharge(&t.gw.admin, bob_id, "5").await;
    let old_key = "felix_0123456789abcdefXYZ9";
    let imported =
        t.gw.app
            .post(
                "/api/admin/keys/import",
                &t.gw.admin,
                json!({"keys": [{"key": old_key, "username": "bob", "name": "from felix", "remaining_calls": 2}]}),
            )
            .await
            .expect(StatusCode::CREATED);
    let view = &imported["keys"][0];
    assert_eq!((view["imported"].as_bool(), view["key_preview"].as_str()), (Some(true), Some("…XYZ9")));
    assert!(!imported.to_string().contains(old_key), "the key string is never shown back");

    t.generate(old_key, json!({})).await.expect(StatusCode::OK);
    assert_eq!(t.balance(bob_id).await, Money::parse("4.99").unwrap());
    let key = t.gw.key_view(view["id"].as_i64().expect("id")).await;
    assert_eq!(key["remaining_calls"], 1);
    // Its bearer form works on the LLM routes' header too; a near miss does not.
    let body = json!({"prompt": "a cat"});
    t.gw.post("/api/generate", Auth::Bearer(old_key), &[], &body).await.expect(StatusCode::OK);
    let near = t.generate("felix_0123456789abcdefXYZ8", json!({})).await;
    assert_openai_error(&near, StatusCode::UNAUTHORIZED, "invalid_api_key");

    // CSV, by user id.
    let csv = format!("key,user_id,name,remaining_calls\nfelix_second_key_0000000001,{bob_id},csv,7\n");
    let path = "/api/admin/keys/import/csv";
    let created =
        t.gw.app
            .call_raw(Method::POST, path, Some(&t.gw.admin), Some("text/csv"), csv)
            .await
            .expect(StatusCode::CREATED);
    assert_eq!(created["keys"][0]["remaining_calls"], 7);
    t.generate("felix_second_key_0000000001", json!({})).await.expect(StatusCode::OK);
}

async fn a_bad_import_is_refused_whole_and_nothing_is_stored(t: Images) {
    t.gw.app.user("bob").await;
    let import = |keys: Value| t.gw.app.post("/api/admin/keys/import", &t.gw.admin, json!({ "keys": keys }));
    let good = json!({"key": "felix_good_key_000000000001", "username": "bob"});
    let cases = [
        (json!([good, {"key": "short", "username": "bob"}]), StatusCode::UNPROCESSABLE_ENTITY),
        (json!([good, good]), StatusCode::UNPROCESSABLE_ENTITY),
        (json!([good, {"key": "ahg_looks_like_ours_0000000", "username": "bob"}]), StatusCode::UNPROCESSABLE_ENTITY),
        (json!([good, {"key": "felix_good_key_000000000002", "username": "nobody"}]), StatusCode::NOT_FOUND),
        (json!([good, {"key": "felix_good_key_000000000002"}]), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!([good, {"key": "felix_good_key_000000000002", "username": "bob", "remaining_calls": -1}]),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!([good, {"key": "felix_good_key_000000000002", "username": "bob", "colour": "red"}]),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!([]), StatusCode::UNPROCESSABLE_ENTITY),
    ];
    for (keys, status) in cases {
        let reply = import(keys.clone()).await;
        assert_eq!(reply.status, status, "{keys}: {}", reply.body);
        common::assert_error_shape(&reply.body);
    }
    let too_many: Vec<Value> =
        (0..1001).map(|i| json!({"key": format!("felix_many_keys_{i:010}"), "username": "bob"})).collect();
    assert_eq!(import(json!(too_many)).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    let all = t.gw.app.get("/api/keys/admin/all", &t.gw.admin).await.expect(StatusCode::OK);
    assert_eq!(all["total"], 0, "nothing was imported: {all}");

    import(json!([good])).await.expect(StatusCode::CREATED);
    let again = import(json!([{"key": "felix_good_key_000000000009", "username": "bob"}, good])).await;
    assert!(again.expect_error(StatusCode::CONFLICT, "conflict").contains("key #2"));
    let all = t.gw.app.get("/api/keys/admin/all", &t.gw.admin).await.expect(StatusCode::OK);
    assert_eq!(all["total"], 1);
}

async fn bad_route_definitions_are_refused_and_nothing_changes(t: Images) {
    let base =
        json!({"name": "r", "path": "/api/generate", "upstream_url": t.upstream.url(), "price_per_call": "0.01"});
    let with = |change: Value| {
        let mut body = base.clone();
        for (name, value) in change.as_object().expect("object") {
            body[name] = value.clone();
        }
        body
    };
    for (body, status) in [
        (
            json!({"name": "r", "path": "/api/generate", "upstream_url": t.upstream.url()}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (with(json!({"price_per_call": "-1"})), StatusCode::UNPROCESSABLE_ENTITY),
        (with(json!({"upstream_url": "https://images.example.com/generate"})), StatusCode::UNPROCESSABLE_ENTITY),
        (with(json!({"path": "/api/keys/x"})), StatusCode::UNPROCESSABLE_ENTITY),
        (with(json!({"path": "/api/admin/routes"})), StatusCode::UNPROCESSABLE_ENTITY),
        (with(json!({"path": "/v1/chat/completions"})), StatusCode::UNPROCESSABLE_ENTITY),
        (with(json!({"path": "/v1/"})), StatusCode::UNPROCESSABLE_ENTITY),
        (with(json!({"path": "/"})), StatusCode::UNPROCESSABLE_ENTITY),
        (with(json!({"path": "generate"})), StatusCode::UNPROCESSABLE_ENTITY),
        (with(json!({"methods": ["TRACE"]})), StatusCode::UNPROCESSABLE_ENTITY),
        (with(json!({"price_per_unit": "0.1"})), StatusCode::UNPROCESSABLE_ENTITY),
        (with(json!({"max_units": 0})), StatusCode::UNPROCESSABLE_ENTITY),
        (with(json!({"timeout_secs": 0})), StatusCode::UNPROCESSABLE_ENTITY),
        (with(json!({"success_statuses": [500]})), StatusCode::UNPROCESSABLE_ENTITY),
        (with(json!({"unknown_field": 1})), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let reply = t.gw.app.post("/api/admin/routes", &t.gw.admin, body.clone()).await;
        assert_eq!(reply.status, status, "{body}: {}", reply.body);
        common::assert_error_shape(&reply.body);
    }
    assert_eq!(t.gw.app.get("/api/admin/routes", &t.gw.admin).await.expect(StatusCode::OK), json!([]));
    let missing = t.gw.post("/api/generate", Auth::None, &[], &json!({})).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "no route: the app's own 404");

    t.gw.app.post("/api/admin/routes", &t.gw.admin, base.clone()).await.expect(StatusCode::CREATED);
    let twice = t.gw.app.post("/api/admin/routes", &t.gw.admin, base.clone()).await;
    twice.expect_error(StatusCode::CONFLICT, "conflict");
    let (_, user) = t.gw.app.user("mallory").await;
    let reply = t.gw.app.post("/api/admin/routes", &user, with(json!({"name": "s", "path": "/x"}))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

async fn a_route_can_be_changed_disabled_and_removed_at_once(t: Images) {
    let route = t.route(json!({})).await;
    let id = route["id"].as_i64().expect("id");
    let alice = t.customer("alice", json!({})).await;
    t.generate(&alice.key, json!({})).await.expect(StatusCode::OK);

    // A new price applies to the next call; the upstream key, not sent again, is kept.
    let path = format!("/api/admin/routes/{id}");
    let changed = json!({"name": "image-generation", "path": "/api/generate", "upstream_url": t.upstream.url(),
        "key_field": "apiKey", "price_per_call": "0.02"});
    let view = t.gw.app.call(Method::PUT, &path, Some(&t.gw.admin), Some(changed.clone())).await.expect(StatusCode::OK);
    assert_eq!(view["upstream_key_preview"], "…0123");
    t.generate(&alice.key, json!({})).await.expect(StatusCode::OK);
    assert_eq!(t.balance(alice.user_id).await, Money::parse("9.97").unwrap());

    let mut disabled = changed.clone();
    disabled["enabled"] = json!(false);
    t.gw.app.call(Method::PUT, &path, Some(&t.gw.admin), Some(disabled)).await.expect(StatusCode::OK);
    assert_eq!(t.generate(&alice.key, json!({})).await.status, StatusCode::NOT_FOUND);

    t.gw.app.call(Method::PUT, &path, Some(&t.gw.admin), Some(changed)).await.expect(StatusCode::OK);
    let wrong_method =
        t.gw.send(
            http::Request::get("/api/generate")
                .header("authorization", format!("Bearer {}", alice.key))
                .body(axum::body::Body::empty())
                .expect("request"),
        )
        .await;
    assert_openai_error(&wrong_method, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");

    t.gw.app.call(Method::DELETE, &path, Some(&t.gw.admin), None).await.expect(StatusCode::NO_CONTENT);
    assert_eq!(t.generate(&alice.key, json!({})).await.status, StatusCode::NOT_FOUND);
    t.gw.app
        .call(Method::DELETE, &path, Some(&t.gw.admin), None)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(t.upstream.seen().len(), 2);
}

db_tests!(
    fixture = crate::Images::on;
    a_route_with_the_key_in_the_body_forwards_the_call_and_bills_it,
    the_clients_key_never_reaches_the_upstream,
    an_unknown_key_is_refused_and_the_upstream_never_called,
    remaining_calls_admit_exactly_that_many_of_ten_concurrent_calls_and_failures_do_not_count,
    a_per_unit_price_charges_each_unit_asked_for,
    site_statistics_count_the_days_generations_per_route,
    an_imported_key_authenticates_with_its_own_string_and_is_billed,
    a_bad_import_is_refused_whole_and_nothing_is_stored,
    bad_route_definitions_are_refused_and_nothing_changes,
    a_route_can_be_changed_disabled_and_removed_at_once,
);
