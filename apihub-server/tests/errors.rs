//! Bad input never yields a 500: every refusal is a 4xx in our JSON shape, on SQLite and
//! PostgreSQL. Also the probes and the OpenAPI document.

mod common;

use std::collections::BTreeSet;

use common::{TestApp, assert_error_shape};
use http::{Method, StatusCode};
use serde_json::json;

const JSON: Option<&str> = Some("application/json");

/// The routes the router serves (at least these), as (method, OpenAPI path).
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/api/auth/register"),
    ("POST", "/api/auth/login"),
    ("GET", "/api/auth/me"),
    ("POST", "/api/auth/password"),
    ("GET", "/api/keys"),
    ("POST", "/api/keys"),
    ("POST", "/api/keys/batch"),
    ("GET", "/api/keys/batch/{batch_id}"),
    ("GET", "/api/keys/{key_id}"),
    ("PUT", "/api/keys/{key_id}"),
    ("DELETE", "/api/keys/{key_id}"),
    ("POST", "/api/keys/{key_id}/deactivate"),
    ("POST", "/api/keys/{key_id}/reset-usage"),
    ("GET", "/api/keys/admin/all"),
    ("GET", "/api/keys/admin/user/{user_id}"),
    ("POST", "/api/keys/admin/user/{user_id}"),
    ("POST", "/api/keys/admin/user/{user_id}/batch"),
    ("GET", "/api/tokens/balance"),
    ("GET", "/api/tokens/transactions"),
    ("POST", "/api/tokens/check"),
    ("GET", "/api/tokens/admin/user/{user_id}/balance"),
    ("POST", "/api/tokens/admin/user/{user_id}/recharge"),
    ("POST", "/api/tokens/admin/user/{user_id}/consume"),
    ("POST", "/api/tokens/admin/user/{user_id}/refund"),
    ("POST", "/api/tokens/admin/user/{user_id}/adjust"),
    ("POST", "/api/tokens/admin/user/{user_id}/discount"),
    ("GET", "/api/admin/users"),
    ("GET", "/api/admin/users/{user_id}"),
    ("POST", "/api/admin/users/{user_id}/disable"),
    ("POST", "/api/admin/users/{user_id}/enable"),
];

/// Replaces every `{param}` of an OpenAPI path with `value`.
fn fill(template: &str, value: &str) -> String {
    template.split('/').map(|part| if part.starts_with('{') { value } else { part }).collect::<Vec<_>>().join("/")
}

/// Whether a reply came from the router's fallbacks (no route, or no such method on a route).
fn unrouted(reply: &common::Reply) -> bool {
    reply.status == StatusCode::METHOD_NOT_ALLOWED
        || (reply.status == StatusCode::NOT_FOUND && reply.body["error"]["message"] == "no such route")
}

async fn malformed_requests_are_client_errors(app: TestApp) {
    let (_, token) = app.user("alice").await;
    let login =
        |content_type, body: &'static str| app.call_raw(Method::POST, "/api/auth/login", None, content_type, body);
    login(JSON, "{not json").await.expect_error(StatusCode::BAD_REQUEST, "bad_request");
    login(JSON, "").await.expect_error(StatusCode::BAD_REQUEST, "bad_request");
    login(JSON, r#"{"username": "alice", "password": "x"} trailing"#)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad_request");
    let valid = r#"{"username": "alice", "password": "correct-horse-battery"}"#;
    login(None, valid).await.expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    login(Some("text/plain"), valid).await.expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    login(Some("application/json; charset=utf-8"), valid).await.expect(StatusCode::OK);

    // The harness limits bodies to 64 KiB.
    let huge = json!({"name": "x".repeat(64 * 1024)}).to_string();
    app.call_raw(Method::POST, "/api/keys", Some(&token), JSON, huge.clone())
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    app.call_raw(Method::POST, "/api/auth/register", None, JSON, huge)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(app.get("/api/keys", &token).await.expect(StatusCode::OK)["total"], 0);
}

async fn unknown_routes_and_methods(app: TestApp) {
    let (_, token) = app.user("alice").await;
    for path in ["/api/nope", "/nope", "/api/keys/1/nope", "/api/tokens", "/api/admin/users/1/delete"] {
        let reply = app.get(path, &token).await;
        assert!(unrouted(&reply), "{path}: {reply:?}");
        reply.expect_error(StatusCode::NOT_FOUND, "not_found");
    }
    for (method, path) in [
        (Method::DELETE, "/api/auth/me"),
        (Method::GET, "/api/auth/login"),
        (Method::PUT, "/api/tokens/balance"),
        (Method::PATCH, "/api/keys/1"),
        (Method::DELETE, "/api/keys"),
        (Method::GET, "/api/tokens/admin/user/1/recharge"),
        (Method::POST, "/healthz"),
    ] {
        app.call(method, path, Some(&token), None)
            .await
            .expect_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    }
}

async fn bad_query_strings_are_422(app: TestApp) {
    let admin = app.admin_token().await;
    for path in [
        "/api/keys?page=abc",
        "/api/keys?page_size=-1",
        "/api/keys?page=99999999999999999999",
        "/api/tokens/transactions?page=abc",
        "/api/tokens/transactions?page_size=1.5",
        "/api/keys/admin/all?user_id=abc",
        "/api/keys/admin/all?page=abc",
        "/api/keys/admin/user/1?page=abc",
        "/api/keys/batch/some-batch?page=abc",
        "/api/admin/users?page=abc",
        "/api/admin/users?role=god",
        "/api/admin/users?status=asleep",
    ] {
        app.get(path, &admin).await.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }
}

/// Bodies no route accepts: wrong types, numbers out of every range, nesting, empties, arrays,
/// invalid text.
fn garbage_bodies() -> Vec<Vec<u8>> {
    let texts = [
        String::new(),
        "null".into(),
        "42".into(),
        "\"text\"".into(),
        "true".into(),
        "[]".into(),
        r#"[{"amount": 1, "count": 1}]"#.into(),
        r#"{"username": 1, "password": [], "current_password": {}, "amount": {}, "count": "many", "name": [], "discount_rate": "x"}"#.into(),
        r#"{"amount": 1e308, "count": 18446744073709551616, "rate_limit": 4294967296, "token_limit": 9223372036854775808, "discount_rate": -1e308}"#.into(),
        r#"{"amount": 1e400}"#.into(),
        r#"{"count": -0.5, "amount": -0, "discount_rate": 1e-300, "name": null}"#.into(),
        r#"{"a": {"b": [{"c": {"d": [null, true, {"e": "f"}]}}]}}"#.into(),
        format!("{}{}", "[".repeat(5000), "]".repeat(5000)),
        format!("{{\"name\": {}1{}}}", "{\"x\":".repeat(200), "}".repeat(200)),
        r#"{"username": "\ud800", "name": "\ud800"}"#.into(),
        r#"{"name": "ok""#.into(),
    ];
    let mut bodies: Vec<Vec<u8>> = texts.into_iter().map(String::into_bytes).collect();
    bodies.push(b"{\"name\": \"\xff\xfe\"}".to_vec());
    bodies
}

async fn garbage_bodies_never_cause_a_500(app: TestApp) {
    let admin = app.admin_token().await;
    let (user_id, token) = app.user("alice").await;
    let key_id = app.post("/api/keys", &token, json!({"name": "mine"})).await.expect(StatusCode::CREATED)["id"].clone();
    let routes = [
        (Method::POST, "/api/auth/register".to_owned()),
        (Method::POST, "/api/auth/login".to_owned()),
        (Method::POST, "/api/auth/password".to_owned()),
        (Method::POST, "/api/keys".to_owned()),
        (Method::POST, "/api/keys/batch".to_owned()),
        (Method::PUT, format!("/api/keys/{key_id}")),
        (Method::POST, "/api/tokens/check".to_owned()),
        (Method::POST, format!("/api/keys/admin/user/{user_id}")),
        (Method::POST, format!("/api/keys/admin/user/{user_id}/batch")),
        (Method::POST, format!("/api/tokens/admin/user/{user_id}/recharge")),
        (Method::POST, format!("/api/tokens/admin/user/{user_id}/consume")),
        (Method::POST, format!("/api/tokens/admin/user/{user_id}/refund")),
        (Method::POST, format!("/api/tokens/admin/user/{user_id}/adjust")),
        (Method::POST, format!("/api/tokens/admin/user/{user_id}/discount")),
    ];
    let key_before = app.get(&format!("/api/keys/{key_id}"), &token).await.expect(StatusCode::OK);
    let mut seen = BTreeSet::new();
    for (method, path) in &routes {
        for auth in [None, Some(token.as_str()), Some(admin.as_str())] {
            for body in garbage_bodies() {
                let shown = String::from_utf8_lossy(&body).chars().take(80).collect::<String>();
                let reply = app.call_raw(method.clone(), path, auth, JSON, body).await;
                assert!(
                    reply.status.is_client_error(),
                    "{method} {path} with {shown:?}: {} {}",
                    reply.status,
                    reply.body
                );
                assert_error_shape(&reply.body);
                seen.insert(reply.status.as_u16());
            }
        }
    }
    assert!(seen.is_superset(&BTreeSet::from([400, 401, 403, 422])), "statuses seen: {seen:?}");

    // Nothing was created or changed.
    assert_eq!(app.get(&format!("/api/keys/{key_id}"), &token).await.expect(StatusCode::OK), key_before);
    assert_eq!(app.get("/api/keys", &token).await.expect(StatusCode::OK)["total"], 1);
    assert_eq!(app.get("/api/keys", &admin).await.expect(StatusCode::OK)["total"], 0);
    assert_eq!(app.get("/api/admin/users", &admin).await.expect(StatusCode::OK)["total"], 2);
    let balance = app.get("/api/tokens/balance", &token).await.expect(StatusCode::OK);
    assert_eq!((&balance["token_balance"], &balance["discount_rate"]), (&json!(0), &json!(1)));
    assert_eq!(app.get("/api/tokens/transactions", &token).await.expect(StatusCode::OK)["total"], 0);
    app.login("alice", common::PASSWORD).await;
}

async fn odd_paths_are_client_errors(app: TestApp) {
    let admin = app.admin_token().await;
    for path in [
        "/api/keys/%00",
        "/api/keys/-1",
        "/api/keys/1e3",
        "/api/keys/%F0%9F%94%91",
        "/api/keys/99999999999999999999",
        "/api/keys/batch/%FF",
        "/api/keys/admin/user/abc",
        "/api/tokens/admin/user/abc/balance",
        "/api/tokens/admin/user/-5/balance",
        "/api/admin/users/0",
        "/api/admin/users/%20",
    ] {
        let reply = app.get(path, &admin).await;
        assert!(!reply.status.is_server_error(), "GET {path}: {reply:?}");
        if !reply.status.is_success() {
            reply.expect_client_error();
        }
    }
    app.post("/api/tokens/admin/user/abc/recharge", &admin, json!({"amount": 1}))
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}

/// PostgreSQL cannot store or compare text holding a NUL character (SQLite can): it is refused
/// before it reaches storage, with the same answer on both backends.
async fn nul_characters_are_refused_alike(app: TestApp) {
    let admin = app.admin_token().await;
    let (user_id, token) = app.user("alice").await;
    let nul = "a\u{0}b";
    let recharge = format!("/api/tokens/admin/user/{user_id}/recharge");
    let register = json!({"username": "bob", "password": common::PASSWORD, "email": "a\u{0}@b.c"});
    let cases = [
        (Method::POST, "/api/auth/register", None, Some(register), StatusCode::UNPROCESSABLE_ENTITY),
        (
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({"username": nul, "password": "x"})),
            StatusCode::UNAUTHORIZED,
        ),
        (Method::POST, "/api/keys", Some(&token), Some(json!({"name": nul})), StatusCode::UNPROCESSABLE_ENTITY),
        (
            Method::POST,
            "/api/keys/batch",
            Some(&token),
            Some(json!({"count": 1, "name_prefix": nul})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            &recharge,
            Some(&admin),
            Some(json!({"amount": 1, "description": nul})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            &recharge,
            Some(&admin),
            Some(json!({"amount": 1, "order_no": nul})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (Method::GET, "/api/admin/users?search=%00", Some(&admin), None, StatusCode::UNPROCESSABLE_ENTITY),
        (Method::GET, "/api/keys/admin/all?batch_id=%00", Some(&admin), None, StatusCode::UNPROCESSABLE_ENTITY),
        (Method::GET, "/api/keys/batch/%00", Some(&admin), None, StatusCode::NOT_FOUND),
        (Method::GET, "/api/admin/redemption-codes?batch_id=%00", Some(&admin), None, StatusCode::UNPROCESSABLE_ENTITY),
        (
            Method::GET,
            "/api/admin/recharge-orders?out_trade_no=%00",
            Some(&admin),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (Method::GET, "/api/tokens/recharge/orders/%00", Some(&token), None, StatusCode::NOT_FOUND),
    ];
    for (method, path, auth, body, status) in cases {
        let reply = app.call(method.clone(), path, auth.map(String::as_str), body).await;
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.body);
        reply.expect_client_error();
    }
    // Below the routes, a NUL that reaches PostgreSQL is the client's error (422), never a 500.
    match app.state.store.credentials(nul).await {
        Ok(found) => assert!(found.is_none() && matches!(app.state.db, apihub_server::db::Db::Sqlite { .. })),
        Err(error) => {
            assert!(matches!(error, apihub_core::store::StoreError::Invalid(_)), "{error:?}");
            let status = apihub_server::error::ApiError::from(error).status_code();
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        }
    }
    // A model name is stored JSON-encoded, so a NUL in it is harmless on both backends.
    app.post("/api/keys", &token, json!({"allowed_models": [nul]})).await.expect(StatusCode::CREATED);
    assert_eq!(app.get("/api/tokens/transactions", &token).await.expect(StatusCode::OK)["total"], 0);
    assert_eq!(app.get("/api/admin/users", &admin).await.expect(StatusCode::OK)["total"], 2);
}

async fn probes_and_documentation(app: TestApp) {
    let admin = app.admin_token().await;
    for probe in ["/healthz", "/readyz"] {
        let reply = app.call(Method::GET, probe, None, None).await;
        assert_eq!(reply.expect(StatusCode::OK), json!({"status": "ok"}));
    }

    let doc = app.call(Method::GET, "/api/openapi.json", None, None).await.expect(StatusCode::OK);
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys().filter(|m| !matches!(m.as_str(), "parameters" | "summary")) {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let served: BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    assert!(undocumented.is_empty(), "served but not documented: {undocumented:?}");

    // Every documented route is really routed (ids that exist nowhere, so nothing changes).
    for (method, template) in &documented {
        let path = fill(template, "999999");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let body = matches!(method, Method::POST | Method::PUT).then(|| json!({}));
        let reply = app.call(method.clone(), &path, Some(&admin), body).await;
        assert!(!unrouted(&reply), "{method} {path} is documented but not routed: {reply:?}");
        assert!(!reply.status.is_server_error(), "{method} {path}: {reply:?}");
    }

    let docs = app.call(Method::GET, "/docs/", None, None).await;
    assert_eq!(docs.status, StatusCode::OK);
    let content_type = docs.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(docs.body.as_str().is_some_and(|html| html.contains("swagger")), "{:?}", docs.body);
}

db_tests!(
    malformed_requests_are_client_errors,
    unknown_routes_and_methods,
    bad_query_strings_are_422,
    garbage_bodies_never_cause_a_500,
    odd_paths_are_client_errors,
    nul_characters_are_refused_alike,
    probes_and_documentation,
);
