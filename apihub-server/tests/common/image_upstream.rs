//! A mock image-generation service on a real port, as the second seed fronts: `POST
//! /sdapi/generate` with `prompt`, `batch_size`…, answering `{"images": [...]}` (one per
//! `batch_size`), refusing any key but [`IMAGE_UPSTREAM_KEY`], and recording every request.
//! It can be told to fail (500) or to take its time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

/// The key the route sends upstream; the mock refuses any other.
pub const IMAGE_UPSTREAM_KEY: &str = "sk-image-upstream-0123";

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub uri: String,
    pub headers: HeaderMap,
    pub body: String,
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<SeenRequest>>,
    fail: AtomicBool,
    delay_ms: AtomicU64,
}

/// The running mock (stopped on drop).
pub struct ImageUpstream {
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ImageUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ImageUpstream {
    pub async fn start() -> ImageUpstream {
        let shared = Arc::new(Shared::default());
        let app =
            axum::Router::new().route("/sdapi/generate", axum::routing::post(generate)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ImageUpstream { addr, shared, task }
    }

    /// The URL a route forwards to.
    pub fn url(&self) -> String {
        format!("http://{}/sdapi/generate", self.addr)
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.shared.seen.lock().expect("lock").clone()
    }

    /// Answers 500 from now on (or again 200).
    pub fn fail(&self, fail: bool) {
        self.shared.fail.store(fail, Ordering::SeqCst);
    }

    /// Waits this long before answering.
    pub fn delay(&self, delay: Duration) {
        self.shared.delay_ms.store(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }
}

async fn generate(State(shared): State<Arc<Shared>>, uri: http::Uri, headers: HeaderMap, body: String) -> Response {
    shared.seen.lock().expect("lock").push(SeenRequest {
        uri: uri.to_string(),
        headers: headers.clone(),
        body: body.clone(),
    });
    let authorized =
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {IMAGE_UPSTREAM_KEY}"));
    if !authorized {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "bad upstream key"}))).into_response();
    }
    let delay = shared.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if shared.fail.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": "the GPU caught fire"}))).into_response();
    }
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let count = request.get("batch_size").and_then(Value::as_u64).unwrap_or(1);
    let images: Vec<String> = (0..count).map(|i| format!("aW1hZ2Ug{i}")).collect();
    Json(json!({"images": images, "seed": 42})).into_response()
}
