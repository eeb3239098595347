//! cargo run -p apihub-examples --example axum_app
//!
//! The gateway inside an existing axum application, as an embedder writes it:
//! - mounted at the app's own path, `/api/llm/chat`, declared with `meter` (OpenAI's chat
//!   dialect); every other path under the stack is refused, never forwarded free;
//! - forwarding with reqwest;
//! - authenticating the app's own API keys (`sk-app-…`, kept as SHA-256 in the app's table)
//!   through a small `KeyLookup`, while credit is held in the in-memory store;
//! - no `HandleError`: billing answers upstream failures itself, so the stack is infallible and
//!   `route_service` takes it as it is.
//!
//! It serves on a free local port for a moment and calls itself: with the app's key (200, and
//! the cost in `x-apihub-cost`), with an unknown key (401), at an undeclared path (404).

use std::collections::HashMap;
use std::sync::Arc;

use apihub_core::key::SecretHash;
use apihub_core::lookup::{KeyLookup, KeyRecord};
use apihub_core::policy::{KeyId, KeyPolicy};
use apihub_core::store::{KeyStore, StoreError};
use apihub_core::usage::Endpoint;
use apihub_core::user::UserId;
use apihub_examples::{chat_prices, demo_store};
use apihub_mock_upstream::{MockConfig, MockUpstream};
use apihub_tower::auth::HashedKeys;
use apihub_tower::{BoxError, ForwardedBody, GatewayBuilder, async_trait, service_fn};
use axum::Router;
use axum::http::{Request, Response, StatusCode};
use axum::routing::get;

/// The app's own keys table: the SHA-256 of each key (hex), and whose key it is.
struct AppKeys {
    rows: HashMap<String, (KeyId, UserId)>,
}

#[async_trait]
impl KeyLookup for AppKeys {
    /// `lookup_id` is what `HashedKeys` looks keys up by: the SHA-256 of the presented key.
    async fn lookup(&self, lookup_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let Some(&(key_id, user_id)) = self.rows.get(lookup_id) else {
            return Ok(None);
        };
        let hash = SecretHash::from_hex(lookup_id).ok_or_else(|| StoreError::Invalid("not a SHA-256".into()))?;
        // Defaults: an active owner, no discount, no limits; an app sets what it keeps.
        Ok(Some(KeyRecord::new(key_id, user_id, hash)))
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let upstream_server = MockUpstream::start(MockConfig::default()).await?;
    // Credit lives in the in-memory store: a user with 10 credits and one key row for counters.
    let (store, user_id, ahg_key) = demo_store(10, KeyPolicy::default()).await?;
    let public_id = &ahg_key[4..16];
    let key_id = store.key_by_public_id(public_id).await?.ok_or("the demo key vanished")?.id;
    // The app's own key for that user, as its table holds it.
    let app_key = "sk-app-7f3a9c2e51d04b86a1e0";
    let keys = AppKeys { rows: HashMap::from([(SecretHash::of(app_key).to_hex(), (key_id, user_id))]) };

    // The upstream: reqwest, sending the body admission read to the vendor's chat endpoint.
    let client = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", upstream_server.url());
    let upstream = service_fn(move |request: Request<ForwardedBody>| {
        let sent =
            client.post(url.as_str()).header("content-type", "application/json").body(request.into_body().into_bytes());
        async move { Ok::<_, reqwest::Error>(Response::from(sent.send().await?)) }
    });

    let metered = GatewayBuilder::new(Arc::new(keys), store.clone(), chat_prices())
        .key_format(Arc::new(HashedKeys::default()))
        .meter("/api/llm/chat", Endpoint::ChatCompletions)
        .build()
        .around(upstream);
    let app = Router::new()
        .route("/", get(|| async { "my existing app" }))
        .route_service("/api/llm/chat", metered.clone())
        .route_service("/api/llm/other", metered);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let chat = r#"{"model":"gpt-4o-mini","max_tokens":5,"messages":[{"role":"user","content":"Hi"}]}"#;
    let client = reqwest::Client::new();
    let calls = [
        ("/api/llm/chat", app_key, StatusCode::OK),
        ("/api/llm/chat", "sk-app-unknown-000000000", StatusCode::UNAUTHORIZED),
        ("/api/llm/other", app_key, StatusCode::NOT_FOUND),
    ];
    for (path, key, expected) in calls {
        let response = client.post(format!("{base}{path}")).bearer_auth(key).body(chat).send().await?;
        let cost = response.headers().get("x-apihub-cost").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
        println!("POST {path} with {}…: {} (cost {cost})", &key[..10], response.status());
        if response.status() != expected {
            return Err(format!("expected {expected} for {path}").into());
        }
    }
    let balance = apihub_core::store::UserStore::user(store.as_ref(), user_id).await?.ok_or("user vanished")?;
    println!("balance: {} credits", balance.account.balance);
    if balance.account.balance >= apihub_core::Money::from_credits(10) {
        return Err("the call was not charged".into());
    }
    server.abort();
    Ok(())
}
