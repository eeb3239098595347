//! Registration, login, sessions and password changes, on SQLite and PostgreSQL.

mod common;

use apihub_server::auth::jwt::Claims;
use common::{PASSWORD, TestApp};
use http::{Method, StatusCode};
use serde_json::json;

async fn register_login_and_me(app: TestApp) {
    let reply = app
        .call(
            Method::POST,
            "/api/auth/register",
            None,
            Some(json!({"username": "alice", "password": PASSWORD, "email": "a@example.com"})),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(reply["role"], "user");
    assert_eq!(reply["token_balance"], 0);
    assert!(reply.get("password_hash").is_none());

    let login = app
        .call(Method::POST, "/api/auth/login", None, Some(json!({"username": "alice", "password": PASSWORD})))
        .await
        .expect(StatusCode::OK);
    assert_eq!(login["token_type"], "bearer");
    assert_eq!(login["expires_in"], 3600);
    let token = login["access_token"].as_str().unwrap();
    let me = app.get("/api/auth/me", token).await.expect(StatusCode::OK);
    assert_eq!(me["username"], "alice");
    assert_eq!(me["email"], "a@example.com");
    assert_eq!(me["discount_rate"], 1);
}

async fn registration_is_validated(app: TestApp) {
    let register = |body| app.call(Method::POST, "/api/auth/register", None, Some(body));
    register(json!({"username": "ab", "password": PASSWORD}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    register(json!({"username": "bad name", "password": PASSWORD}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    register(json!({"username": "carol", "password": "short"}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    register(json!({"username": "carol", "password": PASSWORD, "email": "nope"}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    // Fields a user does not own are refused by name, and nothing is created.
    for field in ["role", "token_balance", "discount_rate"] {
        let mut body = json!({"username": "mallory", "password": PASSWORD});
        body[field] = json!(if field == "role" { json!("admin") } else { json!(1000) });
        let message = register(body).await.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
        assert!(message.contains(field), "{message}");
    }
    app.call(Method::POST, "/api/auth/login", None, Some(json!({"username": "mallory", "password": PASSWORD})))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");

    register(json!({"username": "carol", "password": PASSWORD})).await.expect(StatusCode::CREATED);
    // Usernames are unique regardless of case.
    register(json!({"username": "Carol", "password": PASSWORD})).await.expect_error(StatusCode::CONFLICT, "conflict");
}

async fn bad_logins_are_refused(app: TestApp) {
    app.user("dave").await;
    let login =
        |u: &str, p: &str| app.call(Method::POST, "/api/auth/login", None, Some(json!({"username": u, "password": p})));
    let wrong = login("dave", "wrong-password").await.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let unknown = login("nobody", "wrong-password").await.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(wrong, unknown, "an unknown user and a wrong password must look the same");
    // Login is case-insensitive on the username, like uniqueness.
    login("DAVE", PASSWORD).await.expect(StatusCode::OK);
}

/// Five attempts without a success lock a username (even a parallel burst gets no more); the
/// right password is refused too until the lock ends; other accounts are untouched.
async fn repeated_failures_lock_the_username(app: TestApp) {
    app.user("frank").await;
    app.user("heidi").await;
    let app = std::sync::Arc::new(app);
    let attempts = (0..12).map(|_| {
        let app = app.clone();
        tokio::spawn(async move {
            let body = json!({"username": "frank", "password": "wrong-password"});
            app.call(Method::POST, "/api/auth/login", None, Some(body)).await.status
        })
    });
    let mut statuses = Vec::new();
    for attempt in attempts.collect::<Vec<_>>() {
        statuses.push(attempt.await.expect("task"));
    }
    let unauthorized = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    assert_eq!(unauthorized, 5, "{statuses:?}");
    assert!(statuses.iter().all(|s| [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS].contains(s)));

    let body = json!({"username": "FRANK", "password": PASSWORD});
    let locked = app.call(Method::POST, "/api/auth/login", None, Some(body)).await;
    let retry_after: u64 = locked.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    let message = locked.expect_error(StatusCode::TOO_MANY_REQUESTS, "too_many_requests");
    assert!(message.contains("try again"), "{message}");
    app.login("heidi", PASSWORD).await;
}

async fn session_tokens_are_checked(app: TestApp) {
    let (user_id, token) = app.user("erin").await;
    app.call(Method::GET, "/api/auth/me", None, None).await.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.get("/api/auth/me", "not-a-jwt").await.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // A tampered payload breaks the signature.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1].replace_range(2..4, "xx");
    app.get("/api/auth/me", &parts.join(".")).await.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // An expired token, validly signed, is refused.
    let now = chrono::Utc::now().timestamp();
    let expired = app
        .state
        .jwt
        .sign(&Claims {
            sub: user_id.to_string(),
            ver: 0,
            role: apihub_core::user::Role::User,
            iat: now - 120,
            exp: now - 60,
        })
        .unwrap();
    app.get("/api/auth/me", &expired).await.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

async fn password_change_revokes_sessions(app: TestApp) {
    let (_, token) = app.user("frank").await;
    app.post(
        "/api/auth/password",
        &token,
        json!({"current_password": "wrong-one!", "new_password": "another-password"}),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.post("/api/auth/password", &token, json!({"current_password": PASSWORD, "new_password": "another-password"}))
        .await
        .expect(StatusCode::NO_CONTENT);
    app.get("/api/auth/me", &token).await.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let fresh = app.login("frank", "another-password").await;
    app.get("/api/auth/me", &fresh).await.expect(StatusCode::OK);
}

async fn disabling_a_user_ends_their_sessions(app: TestApp) {
    let admin = app.admin_token().await;
    let (user_id, token) = app.user("grace").await;
    app.post(&format!("/api/admin/users/{user_id}/disable"), &admin, json!({})).await.expect(StatusCode::OK);
    app.get("/api/auth/me", &token).await.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.call(Method::POST, "/api/auth/login", None, Some(json!({"username": "grace", "password": PASSWORD})))
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    app.post(&format!("/api/admin/users/{user_id}/enable"), &admin, json!({})).await.expect(StatusCode::OK);
    app.login("grace", PASSWORD).await;
}

db_tests!(
    register_login_and_me,
    registration_is_validated,
    bad_logins_are_refused,
    repeated_failures_lock_the_username,
    session_tokens_are_checked,
    password_change_revokes_sessions,
    disabling_a_user_ends_their_sessions,
);
