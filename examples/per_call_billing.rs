//! cargo run -p apihub-examples --example per_call_billing
//!
//! Metering an API that is not an LLM: an image-render service billed per call. A custom
//! `UsageExtractor` says which requests are metered and what each used; the key's
//! `remaining_calls` counts successful calls down, and a fourth call on a three-call key is refused
//! before it reaches the service.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use apihub_core::Money;
use apihub_core::policy::KeyPolicy;
use apihub_core::pricing::ModelPrice;
use apihub_core::store::UserStore;
use apihub_core::usage::{Endpoint, RequestInfo, Usage};
use apihub_examples::demo_store;
use apihub_tower::extract::UsageExtractor;
use apihub_tower::{ForwardedBody, GatewayBuilder};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt};

/// `POST /render` is one image; any other path is refused (404), never forwarded unbilled.
struct RenderCalls;

impl UsageExtractor for RenderCalls {
    fn request(&self, path: &str, _body: &[u8]) -> Option<RequestInfo> {
        (path == "/render").then(|| RequestInfo {
            endpoint: Endpoint::ImageGenerations,
            model: Some("renderer-v1".into()),
            stream: false,
            output_cap: Some(1),
            prompt_estimate: 0,
        })
    }

    fn response(&self, _info: &RequestInfo, body: &[u8]) -> Usage {
        // The service answers {"url": …}; a body without one rendered nothing.
        let rendered =
            serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| v.get("url").cloned()).is_some();
        Usage { images: Some(u64::from(rendered)), ..Usage::default() }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (store, user_id, key) = demo_store(1, KeyPolicy { remaining_calls: Some(3), ..KeyPolicy::default() }).await?;
    let prices = Arc::new(HashMap::from([(
        "renderer-v1".to_owned(),
        ModelPrice { per_image: Some(Money::parse("0.05")?), ..ModelPrice::default() },
    )]));

    let render = tower::service_fn(|_request: Request<ForwardedBody>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(br#"{"url":"https://img.example/1.png"}"#))))
    });
    let gateway = GatewayBuilder::new(store.clone(), store.clone(), prices).extractor(Arc::new(RenderCalls)).build();
    let service = ServiceBuilder::new().layer(gateway).service(render);

    for call in 1..=4 {
        let request = Request::post("/render")
            .header("authorization", format!("Bearer {key}"))
            .body(Full::new(Bytes::from_static(b"{\"prompt\":\"a cat\"}")))?;
        let response = service.clone().oneshot(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        println!("call {call}: {status} {}", String::from_utf8_lossy(&body));
        // Three calls left on the key: the fourth is refused.
        if status.is_success() != (call <= 3) {
            return Err(format!("call {call} answered {status}").into());
        }
    }
    let user = store.user(user_id).await?.ok_or("user vanished")?;
    println!("balance: {} credits (1 credit, three renders at 0.05)", user.account.balance);
    if user.account.balance != Money::parse("0.85")? {
        return Err("three renders should cost 0.15".into());
    }
    Ok(())
}
