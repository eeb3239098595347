//! The stack fails closed: each way of reaching the upstream without a bill is refused instead,
//! with a funded key, and neither the upstream nor the balance moves.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use apihub_core::Money;
use apihub_core::billing::BillingStore;
use apihub_core::policy::KeyPolicy;
use apihub_core::pricing::ModelPrice;
use apihub_core::store::{KeyStore, PageRequest, UserStore};
use apihub_core::usage::{Endpoint, RequestInfo, Usage};
use apihub_tower::admission::AdmissionLayer;
use apihub_tower::auth::KeyCache;
use apihub_tower::billing::{BillingConfig, BillingLayer, DiscardUsage};
use apihub_tower::clock::SystemClock;
use apihub_tower::extract::{LlmExtractor, UsageExtractor};
use apihub_tower::memory::MemoryStore;
use apihub_tower::rate_limit::LocalRateLimiter;
use apihub_tower::{ForwardedBody, GatewayBuilder};
use bytes::Bytes;
use common::{Fixture, chat, fixture, prices, read, upstream, upstream_answering};
use http::{Request, StatusCode};
use http_body_util::Full;
use tower::{ServiceBuilder, ServiceExt};

async fn balance(f: &Fixture) -> Money {
    f.store.user(f.user_id).await.unwrap().unwrap().account.balance
}

/// Admission with rate limits, reading LLM requests: all of it but billing.
fn admission(store: &Arc<MemoryStore>) -> AdmissionLayer {
    AdmissionLayer::new(Arc::new(KeyCache::new(store.clone())))
        .rate_limiter(Arc::new(LocalRateLimiter::new(Arc::new(SystemClock))))
        .read_requests(Arc::new(LlmExtractor))
}

fn billing(store: &Arc<MemoryStore>) -> BillingLayer {
    BillingLayer::new(store.clone(), prices(), Arc::new(DiscardUsage), BillingConfig::default())
}

/// `request` through `service` is refused with `status` and `code`.
async fn refused<S, ReqBody, ResBody>(service: S, request: Request<ReqBody>, status: StatusCode, code: &str, case: &str)
where
    S: tower::Service<Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Error: std::fmt::Debug,
    ResBody: http_body::Body<Data = Bytes>,
    ResBody::Error: std::fmt::Debug,
{
    let (got, body) = read(service.oneshot(request).await.unwrap()).await;
    assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{case}: {body}");
}

/// `path` with a chat completion for `model`, sent with `key`.
fn chat_at(path: &str, key: &str, model: &str) -> Request<Full<Bytes>> {
    let mut request = chat(key, model);
    *request.uri_mut() = path.parse().unwrap();
    request
}

/// A chat request as admission would forward it, built by hand instead.
fn forwarded(key: &str, model: &str) -> Request<ForwardedBody> {
    let (parts, _) = chat(key, model).into_parts();
    let body = format!(r#"{{"model":"{model}","max_tokens":500,"messages":[{{"role":"user","content":"hi"}}]}}"#);
    Request::from_parts(parts, ForwardedBody::new(body))
}

#[tokio::test]
async fn billing_without_admission_refuses_a_funded_key_and_calls_nothing() {
    let f = fixture(10, KeyPolicy::default()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    // Billing alone takes only admission's body; given one built by hand, nothing authenticated
    // the key, so nothing may be forwarded on its account.
    let alone = ServiceBuilder::new().layer(billing(&f.store)).service(upstream(calls.clone()));
    refused(alone, forwarded(&f.key, "gpt-test"), StatusCode::UNAUTHORIZED, "invalid_api_key", "billing alone").await;
    // Admission that authenticates the key but does not read requests: billing cannot price it.
    let unread = ServiceBuilder::new()
        .layer(AdmissionLayer::new(Arc::new(KeyCache::new(f.store.clone()))))
        .layer(billing(&f.store))
        .service(upstream(calls.clone()));
    let case = "admission without reading + billing";
    refused(unread, chat(&f.key, "gpt-test"), StatusCode::SERVICE_UNAVAILABLE, "gateway_misconfigured", case).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the upstream was never called");
    assert_eq!(balance(&f).await, Money::from_credits(10));
}

#[tokio::test]
async fn billing_outside_admission_refuses_rather_than_serves_free() {
    let f = fixture(10, KeyPolicy::default()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    // Billing outermost: it sees the request before anything authenticated or read it.
    let billing_first =
        ServiceBuilder::new().layer(billing(&f.store)).layer(admission(&f.store)).service(upstream(calls.clone()));
    let case = "billing before admission";
    refused(billing_first, forwarded(&f.key, "gpt-test"), StatusCode::UNAUTHORIZED, "invalid_api_key", case).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the upstream was never called");
    assert_eq!(balance(&f).await, Money::from_credits(10));
    assert_eq!(f.store.reserved_funds(f.user_id).await.unwrap().reserved, Money::ZERO);
}

#[tokio::test]
async fn a_stack_mounted_at_an_undeclared_path_refuses_it() {
    let f = fixture(10, KeyPolicy::default()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let gateway = GatewayBuilder::new(f.store.clone(), f.store.clone(), prices()).build();
    let service = ServiceBuilder::new().layer(gateway).service(upstream(calls.clone()));
    for path in ["/llm/chat", "/v1/chat/completions/", "/api/v1/chat/completions", "/v1/models"] {
        refused(service.clone(), chat_at(path, &f.key, "gpt-test"), StatusCode::NOT_FOUND, "unknown_url", path).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the upstream was never called");
    assert_eq!(balance(&f).await, Money::from_credits(10));
}

#[tokio::test]
async fn a_stack_mounted_at_a_declared_path_bills_it_and_refuses_the_rest() {
    let f = fixture(10, KeyPolicy::default()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let gateway = GatewayBuilder::new(f.store.clone(), f.store.clone(), prices())
        .meter("/llm/chat", Endpoint::ChatCompletions)
        .build();
    let service = ServiceBuilder::new().layer(gateway).service(upstream(calls.clone()));
    let (status, _) = read(service.clone().oneshot(chat_at("/llm/chat", &f.key, "gpt-test")).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    // (20 × 1 + 500 × 2) / 1e6 = 0.00102 credits, × 0.8 × 0.5.
    assert_eq!(balance(&f).await, Money::parse("9.999592").unwrap());
    // Once routes are declared, only they are metered: the standard path is not one of them.
    for path in ["/v1/chat/completions", "/llm/chat/", "/llm"] {
        refused(service.clone(), chat_at(path, &f.key, "gpt-test"), StatusCode::NOT_FOUND, "unknown_url", path).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(balance(&f).await, Money::parse("9.999592").unwrap());
}

#[tokio::test]
async fn an_unpriced_model_is_refused_at_a_declared_path() {
    let f = fixture(10, KeyPolicy::default()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let gateway = GatewayBuilder::new(f.store.clone(), f.store.clone(), prices())
        .meter("/llm/chat", Endpoint::ChatCompletions)
        .build();
    let service = ServiceBuilder::new().layer(gateway).service(upstream(calls.clone()));
    let request = chat_at("/llm/chat", &f.key, "gpt-unpriced");
    refused(service.clone(), request, StatusCode::NOT_FOUND, "model_not_found", "unpriced").await;
    let mut nameless = chat_at("/llm/chat", &f.key, "gpt-test");
    *nameless.body_mut() = Full::new(Bytes::from_static(br#"{"messages":[]}"#));
    refused(service, nameless, StatusCode::BAD_REQUEST, "model_required", "no model").await;
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the upstream was never called");
    assert_eq!(balance(&f).await, Money::from_credits(10));
}

/// `POST /render`: one image per call, whatever the body says.
struct Render;

impl UsageExtractor for Render {
    fn request(&self, path: &str, _body: &[u8]) -> Option<RequestInfo> {
        (path == "/render").then(|| RequestInfo {
            endpoint: Endpoint::ImageGenerations,
            model: Some("renderer".into()),
            stream: true,
            output_cap: Some(1),
            prompt_estimate: 0,
        })
    }

    fn response(&self, _info: &RequestInfo, _body: &[u8]) -> Usage {
        Usage { images: Some(1), ..Usage::default() }
    }
}

#[tokio::test]
async fn a_streaming_per_call_api_is_charged_per_call() {
    let f = fixture(1, KeyPolicy::default()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let prices = Arc::new(HashMap::from([(
        "renderer".to_owned(),
        ModelPrice { per_image: Some(Money::parse("0.05").unwrap()), ..ModelPrice::default() },
    )]));
    let gateway = GatewayBuilder::new(f.store.clone(), f.store.clone(), prices).extractor(Arc::new(Render)).build();
    let progress = "event: progress\ndata: {\"percent\":50}\n\nevent: done\ndata: {\"url\":\"https://img/1.png\"}\n\n";
    let service =
        ServiceBuilder::new().layer(gateway).service(upstream_answering(calls.clone(), "text/event-stream", progress));
    let request = chat_at("/render", &f.key, "renderer");
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    assert_eq!(body, progress.as_bytes(), "the stream passes through untouched");
    // 0.05 × 0.8 × 0.5.
    assert_eq!(balance(&f).await, Money::parse("0.98").unwrap());
    let key = f.store.list_keys(&Default::default(), PageRequest::default()).await.unwrap().items.remove(0);
    assert_eq!(key.usage.calls_succeeded, 1);
    // A path the extractor does not know is refused, not forwarded.
    refused(service, chat_at("/render/", &f.key, "renderer"), StatusCode::NOT_FOUND, "unknown_url", "/render/").await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
