//! cargo run -p apihub-examples --example axum_app
//!
//! The gateway stack mounted inside an existing axum application: the app keeps its own routes
//! and gains a metered `/v1/chat/completions` backed by an upstream (here, the project's mock).
//! The example serves on 127.0.0.1:3000 for a few seconds and calls itself once.

use std::time::Duration;

use apihub_core::policy::KeyPolicy;
use apihub_examples::{chat_prices, demo_store, forwarding_client};
use apihub_mock_upstream::{MockConfig, MockUpstream};
use apihub_tower::GatewayBuilder;
use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse;
use axum::routing::get;
use http::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let upstream = MockUpstream::start(MockConfig::default()).await?;
    let (store, _user_id, key) = demo_store(10, KeyPolicy::default()).await?;

    let forward = forwarding_client::<Body>(upstream.url());
    let metered = GatewayBuilder::new(store.clone(), store, chat_prices()).build().layer(forward);
    // axum wants an infallible service: turn an upstream failure into a 502.
    let metered = tower::service_fn(move |request: Request<Body>| {
        let metered = metered.clone();
        async move {
            Ok::<_, std::convert::Infallible>(match metered.oneshot(request).await {
                Ok(response) => response.into_response(),
                Err(_) => http::StatusCode::BAD_GATEWAY.into_response(),
            })
        }
    });

    let app =
        Router::new().route("/", get(|| async { "my existing app" })).route_service("/v1/chat/completions", metered);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let client = Client::builder(TokioExecutor::new()).build_http::<String>();
    let request = Request::post("http://127.0.0.1:3000/v1/chat/completions")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(r#"{"model":"gpt-4o-mini","max_tokens":5,"messages":[{"role":"user","content":"Hi"}]}"#.to_owned())?;
    let response = client.request(request).await?;
    println!("POST /v1/chat/completions through the app: {}", response.status());

    tokio::time::sleep(Duration::from_millis(200)).await;
    server.abort();
    Ok(())
}
