//! API keys: creation, the one-time secret, limits, pagination, ownership, batches and the admin
//! routes, on SQLite and PostgreSQL.

mod common;

use std::collections::HashSet;
use std::time::Instant;

use common::TestApp;
use http::{Method, StatusCode};
use serde_json::{Value, json};

/// Checks the whole-key format, `ahg_` + 12 base62 + `_` + 32 base62; returns (public id, secret).
#[track_caller]
fn split_key(key: &str) -> (&str, &str) {
    let rest = key.strip_prefix("ahg_").unwrap_or_else(|| panic!("no `ahg_` prefix: {key}"));
    let (public_id, secret) = rest.split_once('_').unwrap_or_else(|| panic!("no `_` separator: {key}"));
    let base62 = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric());
    assert!(public_id.len() == 12 && base62(public_id), "public id of {key}");
    assert!(secret.len() == 32 && base62(secret), "secret of {key}");
    (public_id, secret)
}

async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    app.post("/api/keys", token, body).await.expect(StatusCode::CREATED)
}

async fn put(app: &TestApp, path: &str, token: &str, body: Value) -> common::Reply {
    app.call(Method::PUT, path, Some(token), Some(body)).await
}

async fn delete(app: &TestApp, path: &str, token: &str) -> common::Reply {
    app.call(Method::DELETE, path, Some(token), None).await
}

async fn key_count(app: &TestApp, token: &str) -> u64 {
    app.get("/api/keys", token).await.expect(StatusCode::OK)["total"].as_u64().expect("total")
}

fn names(page: &Value) -> Vec<&str> {
    page["items"].as_array().expect("items").iter().map(|k| k["name"].as_str().expect("name")).collect()
}

/// Gives a key non-zero usage counters. Only the gateway (not yet built) moves them, so write them
/// straight into the row.
async fn seed_usage(app: &TestApp, key_id: i64) {
    let sql = format!(
        "UPDATE api_keys SET tokens_used = 1234, quota_used = 5500000, calls_total = 7, calls_succeeded = 6 \
         WHERE id = {key_id}"
    );
    app.execute(&sql).await;
}

async fn the_whole_key_is_shown_once(app: TestApp) {
    let (user_id, token) = app.user("alice").await;
    let created = create(&app, &token, json!({"name": "laptop"})).await;
    let key = created["key"].as_str().expect("key");
    let (public_id, secret) = split_key(key);
    assert_eq!(created["key_preview"], format!("ahg_{public_id}_…{}", &secret[28..]));
    assert_eq!(created["user_id"], user_id);
    assert_eq!(created["name"], "laptop");
    assert_eq!(created["status"], "active");

    let id = created["id"].as_i64().expect("id");
    for path in ["/api/keys".to_owned(), format!("/api/keys/{id}")] {
        let body = app.get(&path, &token).await.expect(StatusCode::OK);
        let text = body.to_string();
        assert!(!text.contains(secret), "{path} leaks the secret: {text}");
        assert!(!text.contains(key), "{path} leaks the key: {text}");
        assert!(text.contains(created["key_preview"].as_str().unwrap()), "{path} lacks the preview: {text}");
    }
    let one = app.get(&format!("/api/keys/{id}"), &token).await.expect(StatusCode::OK);
    assert!(one.get("key").is_none(), "{one}");

    // Two keys never share a secret or a public id.
    let other = create(&app, &token, json!({})).await;
    let (other_public, other_secret) = split_key(other["key"].as_str().unwrap());
    assert_ne!(other_public, public_id);
    assert_ne!(other_secret, secret);
}

async fn limits_round_trip(app: TestApp) {
    let (_, token) = app.user("alice").await;
    let defaults = create(&app, &token, json!({})).await;
    assert_eq!(defaults["name"], "default");
    for field in ["expires_at", "rate_limit", "rate_limit_day", "token_limit", "quota_limit", "remaining_calls"] {
        assert_eq!(defaults[field], Value::Null, "{field} defaults to unlimited");
    }
    assert_eq!(defaults["allowed_models"], json!([]));
    assert_eq!(defaults["discount_rate"], 1);
    for counter in ["tokens_used", "quota_used", "calls_total", "calls_succeeded"] {
        assert_eq!(defaults[counter], 0, "{counter}");
    }

    let expires_at = "2099-01-02T03:04:05Z";
    let created = create(
        &app,
        &token,
        json!({
            "name": "limited",
            "rate_limit": 60,
            "rate_limit_day": 1000,
            "token_limit": 50_000,
            "quota_limit": "12.5",
            "remaining_calls": 10,
            "allowed_models": ["gpt-4o", "gpt-4o", " claude-3 ", "gpt-4o-mini", "claude-3"],
            "expires_at": expires_at,
        }),
    )
    .await;
    let fetched = app.get(&format!("/api/keys/{}", created["id"]), &token).await.expect(StatusCode::OK);
    for key in [&created, &fetched] {
        assert_eq!(key["rate_limit"], 60);
        assert_eq!(key["rate_limit_day"], 1000);
        assert_eq!(key["token_limit"], 50_000);
        assert_eq!(key["quota_limit"], json!(12.5), "a decimal string comes back as a JSON number");
        assert_eq!(key["remaining_calls"], 10);
        assert_eq!(key["allowed_models"], json!(["gpt-4o", "claude-3", "gpt-4o-mini"]));
        let stored: chrono::DateTime<chrono::Utc> = serde_json::from_value(key["expires_at"].clone()).unwrap();
        assert_eq!(stored, expires_at.parse::<chrono::DateTime<chrono::Utc>>().unwrap());
    }

    // Refusals name the problem and create nothing.
    let before = key_count(&app, &token).await;
    let past = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let message = app
        .post("/api/keys", &token, json!({"expires_at": past}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    assert!(message.contains("expires_at"), "{message}");
    for bad in [
        json!({"token_limit": -1}),
        json!({"remaining_calls": -5}),
        json!({"quota_limit": "-0.5"}),
        json!({"rate_limit": 1_000_000_001}),
        json!({"quota_limit": "1.0000001"}),
        json!({"allowed_models": [""]}),
        json!({"name": "x".repeat(101)}),
    ] {
        app.post("/api/keys", &token, bad).await.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }
    assert_eq!(key_count(&app, &token).await, before);
}

async fn listing_is_paginated_newest_first(app: TestApp) {
    let (_, token) = app.user("alice").await;
    for i in 1..=5 {
        create(&app, &token, json!({"name": format!("k{i}")})).await;
    }
    let first = app.get("/api/keys?page=1&page_size=2", &token).await.expect(StatusCode::OK);
    assert_eq!(
        (first["total"].as_u64(), first["page"].as_u64(), first["page_size"].as_u64()),
        (Some(5), Some(1), Some(2))
    );
    assert_eq!(names(&first), ["k5", "k4"]);
    let last = app.get("/api/keys?page=3&page_size=2", &token).await.expect(StatusCode::OK);
    assert_eq!(names(&last), ["k1"]);
    let beyond = app.get("/api/keys?page=4&page_size=2", &token).await.expect(StatusCode::OK);
    assert_eq!((beyond["total"].as_u64(), names(&beyond).len()), (Some(5), 0));
    let default = app.get("/api/keys", &token).await.expect(StatusCode::OK);
    assert_eq!((default["page"].as_u64(), default["page_size"].as_u64()), (Some(1), Some(20)));
    assert_eq!(names(&default), ["k5", "k4", "k3", "k2", "k1"]);
    app.get("/api/keys?page_size=200", &token).await.expect(StatusCode::OK);

    for query in ["page_size=0", "page_size=201", "page=0", "page_size=-1"] {
        app.get(&format!("/api/keys?{query}"), &token)
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }
    // Someone else's listing holds none of them.
    let (_, bob) = app.user("bob").await;
    assert_eq!(key_count(&app, &bob).await, 0);
}

async fn discount_rate_is_for_administrators(app: TestApp) {
    let admin = app.admin_token().await;
    let (_, token) = app.user("alice").await;
    let message = app
        .post("/api/keys", &token, json!({"name": "cheap", "discount_rate": 0.5}))
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    assert!(message.contains("discount_rate"), "{message}");
    app.post("/api/keys/batch", &token, json!({"count": 2, "discount_rate": 0.5}))
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(key_count(&app, &token).await, 0);

    let created = create(&app, &token, json!({"name": "mine"})).await;
    let path = format!("/api/keys/{}", created["id"]);
    let before = app.get(&path, &token).await.expect(StatusCode::OK);
    let message = put(&app, &path, &token, json!({"name": "renamed", "discount_rate": 0.5}))
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    assert!(message.contains("discount_rate"), "{message}");
    assert_eq!(app.get(&path, &token).await.expect(StatusCode::OK), before);

    // An administrator may set it, on any key.
    let updated = put(&app, &path, &admin, json!({"discount_rate": "0.5"})).await.expect(StatusCode::OK);
    assert_eq!(updated["discount_rate"], 0.5);
    assert_eq!(app.get(&path, &token).await.expect(StatusCode::OK)["discount_rate"], 0.5);
    let own = create(&app, &admin, json!({"discount_rate": 0.7})).await;
    assert_eq!(own["discount_rate"], 0.7);
    // …but only within (0, 1].
    for rate in [json!(0), json!(1.5), json!(-0.1)] {
        put(&app, &path, &admin, json!({ "discount_rate": rate }))
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }

    // Fields a key does not have are refused by name, everywhere.
    let before = app.get(&path, &token).await.expect(StatusCode::OK);
    for (field, value) in [("token_balance", json!(1000)), ("user_id", json!(1)), ("role", json!("admin"))] {
        let mut body = json!({"name": "sneaky"});
        body[field] = value;
        let create_message = app
            .post("/api/keys", &token, body.clone())
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
        assert!(create_message.contains(field), "{create_message}");
        let update_message = put(&app, &path, &token, body.clone())
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
        assert!(update_message.contains(field), "{update_message}");
        body["count"] = json!(2);
        let batch_message = app
            .post("/api/keys/batch", &token, body)
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
        assert!(batch_message.contains(field), "{batch_message}");
    }
    assert_eq!(app.get(&path, &token).await.expect(StatusCode::OK), before);
    assert_eq!(key_count(&app, &token).await, 1);
}

async fn other_users_keys_are_not_found(app: TestApp) {
    let (_, alice) = app.user("alice").await;
    let (_, bob) = app.user("bob").await;
    let created = create(&app, &alice, json!({"name": "private", "rate_limit": 5})).await;
    let id = created["id"].as_i64().unwrap();
    let before = app.get(&format!("/api/keys/{id}"), &alice).await.expect(StatusCode::OK);

    for target in [id.to_string(), "999999".into()] {
        let path = format!("/api/keys/{target}");
        app.get(&path, &bob).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        put(&app, &path, &bob, json!({"name": "stolen", "rate_limit": null}))
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
        app.post(&format!("{path}/deactivate"), &bob, json!({})).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        app.post(&format!("{path}/reset-usage"), &bob, json!({}))
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
        delete(&app, &path, &bob).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    }
    assert_eq!(app.get(&format!("/api/keys/{id}"), &alice).await.expect(StatusCode::OK), before);

    // A key id that is not a number is a JSON 404 too.
    for path in ["/api/keys/abc", "/api/keys/1.5", "/api/keys/99999999999999999999"] {
        app.get(path, &alice).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        put(&app, path, &alice, json!({})).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        delete(&app, path, &alice).await.expect_error(StatusCode::NOT_FOUND, "not_found");
        app.post(&format!("{path}/deactivate"), &alice, json!({}))
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
    }
}

async fn update_clears_or_keeps_each_limit(app: TestApp) {
    let (_, token) = app.user("alice").await;
    let created = create(
        &app,
        &token,
        json!({"name": "k", "rate_limit": 10, "token_limit": 100, "quota_limit": 5, "expires_at": "2099-01-01T00:00:00Z", "allowed_models": ["a"]}),
    )
    .await;
    let path = format!("/api/keys/{}", created["id"]);

    let renamed = put(&app, &path, &token, json!({"name": "renamed", "rate_limit": null})).await.expect(StatusCode::OK);
    assert_eq!(renamed["name"], "renamed");
    assert_eq!(renamed["rate_limit"], Value::Null, "null clears");
    assert_eq!(renamed["token_limit"], 100, "absent keeps");
    assert_eq!(renamed["quota_limit"], 5);
    assert_eq!(renamed["allowed_models"], json!(["a"]));
    assert_eq!(renamed["expires_at"], created["expires_at"]);

    let cleared = put(&app, &path, &token, json!({"expires_at": null, "quota_limit": null, "allowed_models": []}))
        .await
        .expect(StatusCode::OK);
    assert_eq!((&cleared["expires_at"], &cleared["quota_limit"]), (&Value::Null, &Value::Null));
    assert_eq!(cleared["allowed_models"], json!([]));
    assert_eq!((&cleared["name"], &cleared["token_limit"]), (&json!("renamed"), &json!(100)));

    let set = put(&app, &path, &token, json!({"rate_limit_day": 7, "remaining_calls": 3, "quota_limit": "0.25"}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (&set["rate_limit_day"], &set["remaining_calls"], &set["quota_limit"]),
        (&json!(7), &json!(3), &json!(0.25))
    );

    let unchanged = app.get(&path, &token).await.expect(StatusCode::OK);
    for bad in [
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"status": "deleted"}),
        json!({"token_limit": -1}),
        json!({"expires_at": "2001-01-01T00:00:00Z"}),
        json!({"rate_limit": "fast"}),
    ] {
        put(&app, &path, &token, bad).await.expect_client_error();
    }
    assert_eq!(app.get(&path, &token).await.expect(StatusCode::OK), unchanged);
}

async fn deactivate_reset_and_delete(app: TestApp) {
    let (_, token) = app.user("alice").await;
    let id = create(&app, &token, json!({"name": "k"})).await["id"].as_i64().unwrap();
    let path = format!("/api/keys/{id}");

    let disabled = app.post(&format!("{path}/deactivate"), &token, json!({})).await.expect(StatusCode::OK);
    assert_eq!(disabled["status"], "disabled");
    assert_eq!(app.get(&path, &token).await.expect(StatusCode::OK)["status"], "disabled");
    let enabled = put(&app, &path, &token, json!({"status": "active"})).await.expect(StatusCode::OK);
    assert_eq!(enabled["status"], "active");

    seed_usage(&app, id).await;
    let used = app.get(&path, &token).await.expect(StatusCode::OK);
    assert_eq!(
        (&used["tokens_used"], &used["quota_used"], &used["calls_total"]),
        (&json!(1234), &json!(5.5), &json!(7))
    );
    let reset = app.post(&format!("{path}/reset-usage"), &token, json!({})).await.expect(StatusCode::OK);
    for counter in ["tokens_used", "quota_used", "calls_total", "calls_succeeded"] {
        assert_eq!(reset[counter], 0, "{counter}: {reset}");
    }
    assert_eq!(reset["name"], "k", "reset keeps the policy");
    assert_eq!(app.get(&path, &token).await.expect(StatusCode::OK)["tokens_used"], 0);

    let deleted = delete(&app, &path, &token).await;
    assert_eq!((deleted.status, &deleted.body), (StatusCode::NO_CONTENT, &Value::Null));
    app.get(&path, &token).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    delete(&app, &path, &token).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(key_count(&app, &token).await, 0);
}

async fn batch_count_is_bounded(app: TestApp) {
    let (_, token) = app.user("alice").await;
    for body in [json!({"count": 0}), json!({"count": 1001}), json!({"count": -1}), json!({"name_prefix": "x"})] {
        app.post("/api/keys/batch", &token, body)
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }
    assert_eq!(key_count(&app, &token).await, 0);
}

async fn a_batch_of_a_thousand(app: TestApp) {
    let (user_id, token) = app.user("alice").await;
    let started = Instant::now();
    let created = app
        .post("/api/keys/batch", &token, json!({"count": 1000, "name_prefix": "bulk", "rate_limit": 5}))
        .await
        .expect(StatusCode::CREATED);
    eprintln!("created 1000 keys in {:?}", started.elapsed());

    let batch_id = created["batch_id"].as_str().expect("batch_id");
    let keys = created["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1000);
    let distinct: HashSet<&str> = keys.iter().map(|k| split_key(k["key"].as_str().unwrap()).1).collect();
    assert_eq!(distinct.len(), 1000, "every secret differs");
    let expected: HashSet<String> = (1..=1000).map(|i| format!("bulk-{i}")).collect();
    let created_names: HashSet<String> = keys.iter().map(|k| k["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(created_names, expected);
    assert!(keys.iter().all(|k| k["batch_id"] == batch_id && k["rate_limit"] == 5 && k["user_id"] == user_id));

    let mut listed = HashSet::new();
    for page in 1..=5 {
        let body = app
            .get(&format!("/api/keys/batch/{batch_id}?page={page}&page_size=200"), &token)
            .await
            .expect(StatusCode::OK);
        assert_eq!(body["total"], 1000);
        for item in body["items"].as_array().unwrap() {
            assert!(item.get("key").is_none(), "a listing never carries the whole key");
            listed.insert(item["name"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(listed, expected);
    assert_eq!(key_count(&app, &token).await, 1000);

    let (_, bob) = app.user("bob").await;
    app.get(&format!("/api/keys/batch/{batch_id}"), &bob).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    app.get("/api/keys/batch/no-such-batch", &token).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    let admin = app.admin_token().await;
    assert_eq!(app.get(&format!("/api/keys/batch/{batch_id}"), &admin).await.expect(StatusCode::OK)["total"], 1000);
}

async fn admin_key_routes(app: TestApp) {
    let admin = app.admin_token().await;
    let (alice_id, alice) = app.user("alice").await;
    let (bob_id, bob) = app.user("bob").await;
    create(&app, &alice, json!({"name": "a1"})).await;
    create(&app, &alice, json!({"name": "a2"})).await;
    create(&app, &bob, json!({"name": "b1"})).await;

    let all = app.get("/api/keys/admin/all", &admin).await.expect(StatusCode::OK);
    assert_eq!(names(&all), ["b1", "a2", "a1"]);
    let alices = app.get(&format!("/api/keys/admin/all?user_id={alice_id}"), &admin).await.expect(StatusCode::OK);
    assert_eq!(names(&alices), ["a2", "a1"]);
    let alices = app.get(&format!("/api/keys/admin/user/{alice_id}"), &admin).await.expect(StatusCode::OK);
    assert_eq!(names(&alices), ["a2", "a1"]);
    assert!(alices["items"].as_array().unwrap().iter().all(|k| k["user_id"] == alice_id && k.get("key").is_none()));
    app.get("/api/keys/admin/user/999999", &admin).await.expect_error(StatusCode::NOT_FOUND, "not_found");

    let vip = app
        .post(&format!("/api/keys/admin/user/{bob_id}"), &admin, json!({"name": "vip", "discount_rate": 0.5}))
        .await
        .expect(StatusCode::CREATED);
    split_key(vip["key"].as_str().expect("the whole key, once"));
    assert_eq!((&vip["user_id"], &vip["discount_rate"]), (&json!(bob_id), &json!(0.5)));
    let bobs = app.get("/api/keys", &bob).await.expect(StatusCode::OK);
    assert_eq!(names(&bobs), ["vip", "b1"]);
    app.post("/api/keys/admin/user/999999", &admin, json!({})).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    app.post(&format!("/api/keys/admin/user/{bob_id}"), &admin, json!({"owner": 1}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");

    let batch = app
        .post(&format!("/api/keys/admin/user/{bob_id}/batch"), &admin, json!({"count": 3, "name_prefix": "gift"}))
        .await
        .expect(StatusCode::CREATED);
    let keys = batch["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| k["user_id"] == bob_id));
    let listed = app.get(&format!("/api/keys/batch/{}", batch["batch_id"].as_str().unwrap()), &bob).await;
    assert_eq!(names(&listed.expect(StatusCode::OK)), ["gift-3", "gift-2", "gift-1"]);
    app.post("/api/keys/admin/user/999999/batch", &admin, json!({"count": 1}))
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");

    // A normal user is refused on every admin route, and nothing is created.
    for path in [
        "/api/keys/admin/all".to_owned(),
        format!("/api/keys/admin/all?user_id={bob_id}"),
        format!("/api/keys/admin/user/{bob_id}"),
        format!("/api/keys/admin/user/{alice_id}"),
    ] {
        app.get(&path, &alice).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
    }
    for (path, body) in [
        (format!("/api/keys/admin/user/{alice_id}"), json!({"discount_rate": 0.1})),
        (format!("/api/keys/admin/user/{bob_id}"), json!({})),
        (format!("/api/keys/admin/user/{alice_id}/batch"), json!({"count": 5})),
    ] {
        app.post(&path, &alice, body).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
    }
    assert_eq!((key_count(&app, &alice).await, key_count(&app, &bob).await), (2, 5));
}

db_tests!(
    the_whole_key_is_shown_once,
    limits_round_trip,
    listing_is_paginated_newest_first,
    discount_rate_is_for_administrators,
    other_users_keys_are_not_found,
    update_clears_or_keeps_each_limit,
    deactivate_reset_and_delete,
    batch_count_is_bounded,
    a_batch_of_a_thousand,
    admin_key_routes,
);
