//! cargo run -p apihub-examples --example hyper_client
//!
//! The whole gateway stack (admission: key, rate limit, quota; then billing) around a plain hyper
//! client,
//! with in-memory stores: no database. It starts the project's mock upstream, sends one chat
//! completion through the stack and prints what it cost.

use apihub_core::policy::KeyPolicy;
use apihub_core::store::UserStore;
use apihub_examples::{chat_prices, demo_store, forwarding_client};
use apihub_mock_upstream::{MockConfig, MockUpstream};
use apihub_tower::GatewayBuilder;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let upstream = MockUpstream::start(MockConfig::default()).await?;
    let (store, user_id, key) = demo_store(10, KeyPolicy { rate_limit: Some(60), ..KeyPolicy::default() }).await?;

    // The upstream client: any `Service<Request<_>>` will do. This one points at the mock.
    let client = forwarding_client(upstream.url());

    let gateway = GatewayBuilder::new(store.clone(), store.clone(), chat_prices()).build();
    let service = ServiceBuilder::new().layer(gateway).service(client);

    let body = r#"{"model":"gpt-4o-mini","max_tokens":20,"messages":[{"role":"user","content":"Say hello"}]}"#;
    let request = Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))?;
    let response = service.oneshot(request).await?;
    let status = response.status();
    let text = response.into_body().collect().await?.to_bytes();
    println!("{status}: {}", String::from_utf8_lossy(&text));

    let user = store.user(user_id).await?.ok_or("user vanished")?;
    println!("balance after the call: {} credits (started with 10)", user.account.balance);
    if !status.is_success() || user.account.balance >= apihub_core::Money::from_credits(10) {
        return Err("the call did not go through, or was not charged".into());
    }
    Ok(())
}
