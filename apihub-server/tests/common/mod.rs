//! The integration-test harness: the real app on a temporary SQLite file or a fresh PostgreSQL
//! database, driven in-process with `oneshot` (no socket).
//!
//! [`db_tests!`] turns each listed `async fn(TestApp)` into two tests, `sqlite::name` and
//! `postgres::name`, so every body runs on both backends. PostgreSQL tests need
//! `APIHUB_TEST_POSTGRES_URL` (`.ci/run` sets it); without it they are skipped locally and fail
//! under CI, so they can never silently stop running there.
#![allow(dead_code, reason = "each test file uses a different part of the harness")]

use std::path::PathBuf;

use apihub_core::store::{UsageRecord, UsageSource};
use apihub_core::{DiscountRate, Money};
use apihub_server::app::{create_admin, init_state};
use apihub_server::config::{Config, Secret};
use apihub_server::db::{Db, DbUrl};
use apihub_server::state::AppState;
use axum::body::Body;
use chrono::{DateTime, Utc};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub mod epay;
pub mod gateway;
pub mod image_upstream;
mod pg;
pub mod process;

pub use pg::PgDatabase;

pub const ADMIN: &str = "root_admin";
pub const PASSWORD: &str = "correct-horse-battery";

/// Expands to a `sqlite` and a `postgres` module holding one test per listed body.
///
/// Each body takes a [`TestApp`]; with `fixture = path;` first, it takes what
/// `path(Backend) -> Option<Fixture>` makes instead (`None` skips, as for PostgreSQL when no
/// server is configured).
#[macro_export]
macro_rules! db_tests {
    ($($name:ident),* $(,)?) => {
        $crate::db_tests!(fixture = $crate::common::TestApp::on; $($name),*);
    };
    (fixture = $fixture:path; $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if let Some(fixture) = $fixture($crate::common::Backend::Sqlite).await {
                        super::$name(fixture).await;
                    }
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if let Some(fixture) = $fixture($crate::common::Backend::Postgres).await {
                        super::$name(fixture).await;
                    }
                }
            )*
        }
    };
}

/// The database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A response, with its JSON body parsed (or `Value::Null` for an empty body).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: http::HeaderMap,
}

impl Reply {
    /// Asserts the status, printing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.body);
        self.body
    }

    /// Asserts an error response of our JSON shape with this status and code.
    #[track_caller]
    pub fn expect_error(self, status: StatusCode, code: &str) -> String {
        let body = self.expect(status);
        assert_eq!(body["error"]["code"], code, "error body: {body}");
        body["error"]["message"].as_str().unwrap_or_default().to_owned()
    }
}

pub struct TestApp {
    pub app: apihub_server::App,
    pub state: AppState,
    _dir: tempfile::TempDir,
    postgres: Option<PgDatabase>,
}

impl TestApp {
    /// The app on a fresh SQLite file.
    pub async fn sqlite() -> TestApp {
        Self::sqlite_with(|_| {}).await
    }

    /// The app on a fresh SQLite file, with `configure` applied to the test settings.
    pub async fn sqlite_with(configure: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = DbUrl::Sqlite(dir.path().join("apihub.db").display().to_string());
        Self::start(url, dir, None, configure).await
    }

    /// The app on a fresh PostgreSQL database, or `None` (skip) when no server is configured
    /// outside CI.
    pub async fn postgres() -> Option<TestApp> {
        Self::postgres_with(|_| {}).await
    }

    /// [`TestApp::postgres`], with `configure` applied to the test settings.
    pub async fn postgres_with(configure: impl FnOnce(&mut Config)) -> Option<TestApp> {
        let Ok(base) = std::env::var("APIHUB_TEST_POSTGRES_URL") else {
            assert!(std::env::var_os("CI").is_none(), "APIHUB_TEST_POSTGRES_URL must be set in CI");
            eprintln!("skipping: APIHUB_TEST_POSTGRES_URL is not set");
            return None;
        };
        let database = PgDatabase::create(&base).await;
        let url = DbUrl::Postgres(database.url.clone());
        Some(Self::start(url, tempfile::tempdir().expect("temp dir"), Some(database), configure).await)
    }

    /// The app on `backend`, or `None` when it is skipped.
    pub async fn on(backend: Backend) -> Option<TestApp> {
        Self::on_with(backend, |_| {}).await
    }

    /// The app on `backend` with `configure` applied to the test settings, or `None` when it is
    /// skipped.
    pub async fn on_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> Option<TestApp> {
        match backend {
            Backend::Sqlite => Some(Self::sqlite_with(configure).await),
            Backend::Postgres => Self::postgres_with(configure).await,
        }
    }

    async fn start(
        database_url: DbUrl,
        dir: tempfile::TempDir,
        postgres: Option<PgDatabase>,
        configure: impl FnOnce(&mut Config),
    ) -> TestApp {
        let mut config = test_config(database_url, dir.path().to_path_buf());
        configure(&mut config);
        let state = init_state(config).await.expect("app state");
        create_admin(state.store.as_ref(), ADMIN, PASSWORD, None).await.expect("admin");
        TestApp { app: apihub_server::build_app(state.clone()), state, _dir: dir, postgres }
    }

    /// Runs `sql` (one statement or several) on a connection of the app's pool.
    pub async fn execute(&self, sql: &str) {
        use diesel_async::SimpleAsyncConnection;
        match &self.state.db {
            Db::Sqlite { pool, .. } => pool.get().await.expect("connection").batch_execute(sql).await,
            Db::Postgres { pool, .. } => pool.get().await.expect("connection").batch_execute(sql).await,
        }
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
    }

    /// Sends a request; `body` is sent as JSON when present.
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => builder.header("content-type", "application/json").body(Body::from(body.to_string())),
            None => builder.body(Body::empty()),
        }
        .expect("request");
        self.send(request).await
    }

    /// Sends a prepared request.
    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply { status, body, headers }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// Logs in and returns the session token.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let body = self
            .call(Method::POST, "/api/auth/login", None, Some(json!({"username": username, "password": password})))
            .await
            .expect(StatusCode::OK);
        body["access_token"].as_str().expect("token").to_owned()
    }

    pub async fn admin_token(&self) -> String {
        self.login(ADMIN, PASSWORD).await
    }

    /// Registers a user and logs in; returns (user id, session token).
    pub async fn user(&self, username: &str) -> (i64, String) {
        let body = self
            .call(Method::POST, "/api/auth/register", None, Some(json!({"username": username, "password": PASSWORD})))
            .await
            .expect(StatusCode::CREATED);
        (body["id"].as_i64().expect("id"), self.login(username, PASSWORD).await)
    }

    /// Recharges a user through the admin API.
    pub async fn recharge(&self, admin: &str, user_id: i64, amount: &str) {
        self.post(&format!("/api/tokens/admin/user/{user_id}/recharge"), admin, json!({"amount": amount}))
            .await
            .expect(StatusCode::OK);
    }
}

fn test_config(database_url: DbUrl, data_dir: PathBuf) -> Config {
    Config {
        app_name: "APIHub".into(),
        host: "127.0.0.1".into(),
        port: 0,
        database_url,
        data_dir,
        secret_key: Secret::new("test-secret-that-is-long-enough-0123456789"),
        access_token_expire_minutes: 60,
        upstream_url: "http://127.0.0.1:9".into(),
        upstream_api_key: None,
        upstream_timeout_secs: 5,
        upstream_connect_timeout_secs: 2,
        proxy_max_body_bytes: 1024 * 1024,
        default_max_output_tokens: 4096,
        admin_username: ADMIN.into(),
        admin_password: None,
        admin_email: None,
        max_body_bytes: 64 * 1024,
        db_max_connections: 8,
        login_limit_per_address: 30,
        limits: apihub_server::serve::Limits {
            max_connections: 256,
            header_read: std::time::Duration::from_secs(10),
            keep_alive: std::time::Duration::from_secs(60),
            shutdown_timeout: std::time::Duration::from_secs(10),
        },
        shutdown_readiness_delay_secs: 0,
        upstream_idle_timeout_secs: 300,
        upstream_max_attempts: 3,
        channel_probe_secs: 0,
        cors_allow_origins: Vec::new(),
        usage_log_retention_days: None,
        usage_log_max_queued: 100_000,
        budget_zone: Default::default(),
        currency: "CNY".into(),
        ui_dir: Some(PathBuf::from("no-ui-in-tests")),
        redis: None,
        epay: None,
    }
}

impl TestApp {
    /// Sends `body` as it is (malformed JSON, raw bytes, …) with an optional content type.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        if let Some(content_type) = content_type {
            builder = builder.header("content-type", content_type);
        }
        self.send(builder.body(body.into()).expect("request")).await
    }
}

impl Reply {
    /// Asserts a client error (4xx) in our JSON shape, `{"error": {"code", "message"}}`; returns the code.
    #[track_caller]
    pub fn expect_client_error(self) -> String {
        assert!(self.status.is_client_error(), "expected a 4xx, got {}; body: {}", self.status, self.body);
        assert_error_shape(&self.body);
        self.body["error"]["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// Asserts `body` is exactly `{"error": {"code": <non-empty string>, "message": <string>}}`.
#[track_caller]
pub fn assert_error_shape(body: &Value) {
    let error = body.get("error").and_then(Value::as_object);
    let ok = body.as_object().is_some_and(|o| o.len() == 1)
        && error.is_some_and(|e| {
            e.len() == 2
                && e.get("code").and_then(Value::as_str).is_some_and(|c| !c.is_empty())
                && e.get("message").is_some_and(Value::is_string)
        });
    assert!(ok, "not our error shape: {body}");
}

/// A time from its RFC 3339 text.
pub fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).expect("time").with_timezone(&Utc)
}

/// One usage row, as the billing layer writes it: full price, reported, 10 ms upstream latency.
#[allow(clippy::too_many_arguments, reason = "a table row")]
pub fn usage_row(
    created_at: DateTime<Utc>,
    user_id: i64,
    key_id: i64,
    model: &str,
    (prompt_tokens, completion_tokens): (i64, i64),
    raw_cost: &str,
    charged: &str,
    status: u16,
) -> UsageRecord {
    UsageRecord {
        request_id: uuid::Uuid::new_v4().to_string(),
        user_id,
        key_id,
        model: model.to_owned(),
        endpoint: "/v1/chat/completions".into(),
        route_id: None,
        stream: false,
        prompt_tokens,
        completion_tokens,
        cached_tokens: 0,
        raw_cost: Money::parse(raw_cost).expect("raw cost"),
        user_discount: DiscountRate::FULL_PRICE,
        key_discount: DiscountRate::FULL_PRICE,
        charged: Money::parse(charged).expect("charged"),
        overage: Money::ZERO,
        status,
        upstream_latency_ms: 10,
        first_byte_ms: Some(20),
        usage_source: UsageSource::Reported,
        created_at,
        channel: None,
        attempts: 1,
        cost: None,
    }
}
