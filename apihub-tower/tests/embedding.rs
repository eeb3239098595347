//! What an embedding application brings of its own: its key table and key format, and users it
//! signed in itself.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use apihub_core::Money;
use apihub_core::key::SecretHash;
use apihub_core::lookup::{KeyLookup, KeyRecord};
use apihub_core::policy::KeyPolicy;
use apihub_core::store::{KeyStore, StoreError, UserStore};
use apihub_tower::auth::HashedKeys;
use apihub_tower::context::AuthenticatedKey;
use apihub_tower::{GatewayBuilder, async_trait};
use common::{Fixture, chat, fixture, prices, read, upstream};
use http::StatusCode;
use tower::{Layer, ServiceExt};

async fn balance(f: &Fixture) -> Money {
    f.store.user(f.user_id).await.unwrap().unwrap().account.balance
}

/// The fixture's key as the in-memory store knows it.
async fn record(f: &Fixture) -> KeyRecord {
    let public_id = &f.key[4..16];
    KeyLookup::lookup(f.store.as_ref(), public_id).await.unwrap().expect("the fixture's key")
}

/// An application's key table: SHA-256 of each key → the record it stands for.
struct AppKeys(HashMap<String, KeyRecord>);

#[async_trait]
impl KeyLookup for AppKeys {
    async fn lookup(&self, lookup_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.0.get(lookup_id).cloned())
    }
}

#[tokio::test]
async fn an_applications_own_keys_authenticate_through_its_key_lookup_and_are_billed() {
    let f = fixture(10, KeyPolicy::default()).await;
    let app_key = "sk-live-5f0c7a91d2e84b3c";
    let hash = SecretHash::of(app_key);
    let key = KeyRecord { secret_hash: hash.clone(), ..record(&f).await };
    let keys = AppKeys(HashMap::from([(hash.to_hex(), key)]));
    let calls = Arc::new(AtomicUsize::new(0));
    let service = GatewayBuilder::new(Arc::new(keys), f.store.clone(), prices())
        .key_format(Arc::new(HashedKeys::default()))
        .build()
        .layer(upstream(calls.clone()));

    let (status, _) = read(service.clone().oneshot(chat(app_key, "gpt-test")).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    // (20 × 1 + 500 × 2) / 1e6 × 0.8 × 0.5, as for an `ahg_` key.
    assert_eq!(balance(&f).await, Money::parse("9.999592").unwrap());
    // The gateway's own key format is not this gateway's: unknown here.
    let (status, body) = read(service.clone().oneshot(chat(&f.key, "gpt-test")).await.unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_api_key")));
    let (status, _) = read(service.oneshot(chat("short", "gpt-test")).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "malformed for the format: refused before any lookup");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_user_the_application_signed_in_is_metered_without_a_key() {
    let f = fixture(10, KeyPolicy::default()).await;
    let identity = AuthenticatedKey::new(record(&f).await);
    let calls = Arc::new(AtomicUsize::new(0));
    let gateway =
        GatewayBuilder::new(f.store.clone(), f.store.clone(), prices()).build().layer(upstream(calls.clone()));
    // The application's session middleware, outside the stack: it knows the user from its cookie.
    let signed_in = tower::service_fn(move |mut request: http::Request<_>| {
        request.extensions_mut().insert(identity.clone());
        gateway.clone().oneshot(request)
    });

    let mut request = chat("not-a-key", "gpt-test");
    request.headers_mut().insert("authorization", "Session 7c1e".parse().unwrap());
    let (status, _) = read(signed_in.oneshot(request).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(balance(&f).await, Money::parse("9.999592").unwrap());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Counted against the key the application chose for the user.
    let key = f.store.key_by_public_id(&f.key[4..16]).await.unwrap().unwrap();
    assert_eq!(key.usage.tokens_used, 520);
}

#[tokio::test]
async fn refusals_on_a_declared_anthropic_route_are_in_anthropics_shape() {
    let f = fixture(10, KeyPolicy { allowed_models: vec!["gpt-test".into()], ..KeyPolicy::default() }).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let service = GatewayBuilder::new(f.store.clone(), f.store.clone(), prices())
        .meter("/api/llm/messages", apihub_core::usage::Endpoint::Messages)
        .build()
        .layer(upstream(calls.clone()));
    let messages = |key: &str, model: &str| {
        let mut request = chat(key, model);
        *request.uri_mut() = "/api/llm/messages".parse().unwrap();
        request
    };
    // A bad key (admission) and a model the key may not use (admission, after reading).
    let (status, body) = read(service.clone().oneshot(messages("sk-not-ours", "gpt-test")).await.unwrap()).await;
    assert_eq!(
        (status, body["type"].as_str(), body["error"]["type"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("error"), Some("authentication_error"))
    );
    let (status, body) = read(service.clone().oneshot(messages(&f.key, "claude-x")).await.unwrap()).await;
    assert_eq!((status, body["error"]["type"].as_str()), (StatusCode::FORBIDDEN, Some("permission_error")));
    // An undeclared path of the same stack: OpenAI's shape, the default.
    let mut other = chat(&f.key, "gpt-test");
    *other.uri_mut() = "/api/llm/other".parse().unwrap();
    let (status, body) = read(service.oneshot(other).await.unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("unknown_url")));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}
