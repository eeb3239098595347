//! What the stack tests share: a funded user with a key over an in-memory store, prices, an
//! in-process upstream that counts its calls.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use apihub_core::Money;
use apihub_core::key::GeneratedKey;
use apihub_core::ledger::{LedgerOp, TxType};
use apihub_core::policy::KeyPolicy;
use apihub_core::pricing::ModelPrice;
use apihub_core::store::{KeyStore, LedgerStore, NewKey, UserStore};
use apihub_core::user::{NewUser, Role};
use apihub_core::{DiscountRate, store::UsageRecord};
use apihub_tower::ForwardedBody;
use apihub_tower::billing::UsageSink;
use apihub_tower::memory::MemoryStore;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::Service;

/// An upstream that answers every chat request with 20 prompt and 500 completion tokens.
pub fn upstream(
    calls: Arc<AtomicUsize>,
) -> impl Service<Request<ForwardedBody>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    let body = r#"{"id":"x","choices":[{"message":{"role":"assistant","content":"hi"}}],"usage":{"prompt_tokens":20,"completion_tokens":500}}"#;
    upstream_answering(calls, "application/json", body)
}

/// An upstream that answers every request with `body` as `content_type`, counting its calls.
pub fn upstream_answering(
    calls: Arc<AtomicUsize>,
    content_type: &'static str,
    body: &'static str,
) -> impl Service<Request<ForwardedBody>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    tower::service_fn(move |request: Request<ForwardedBody>| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            assert!(request.headers().get("authorization").is_some(), "the stack itself does not strip headers");
            let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
            response.headers_mut().insert("content-type", http::HeaderValue::from_static(content_type));
            Ok::<_, Infallible>(response)
        }
    })
}

#[derive(Default)]
pub struct Records(pub std::sync::Mutex<Vec<UsageRecord>>);

impl UsageSink for Records {
    fn record(&self, record: UsageRecord) {
        self.0.lock().unwrap().push(record);
    }
}

pub struct Fixture {
    pub store: Arc<MemoryStore>,
    pub user_id: i64,
    pub key: String,
    pub records: Arc<Records>,
}

/// A user with `credits`, a 0.8 discount, and one key with a 0.5 discount and `policy`.
pub async fn fixture(credits: i64, policy: KeyPolicy) -> Fixture {
    let store = Arc::new(MemoryStore::new());
    let user = store
        .create_user(NewUser { username: "u1".into(), email: None, password_hash: "x".into(), role: Role::User })
        .await
        .unwrap();
    store.set_user_discount(user.id, DiscountRate::parse("0.8").unwrap()).await.unwrap();
    if credits > 0 {
        store.apply(user.id, LedgerOp::new(TxType::Recharge, Money::from_credits(credits))).await.unwrap();
    }
    let generated = GeneratedKey::generate();
    let policy = KeyPolicy { discount_rate: DiscountRate::parse("0.5").unwrap(), ..policy };
    store
        .create_keys(
            user.id,
            vec![NewKey {
                public_id: generated.public_id.clone(),
                secret_hash: generated.secret_hash.clone(),
                last4: generated.last4.clone(),
                policy,
                batch_id: None,
            }],
        )
        .await
        .unwrap();
    Fixture { store, user_id: user.id, key: generated.plain.expose().to_owned(), records: Arc::default() }
}

pub fn prices() -> Arc<HashMap<String, ModelPrice>> {
    // 1 credit per million input tokens, 2 per million output tokens.
    Arc::new(HashMap::from([(
        "gpt-test".to_owned(),
        ModelPrice { input: Money::from_credits(1), output: Money::from_credits(2), ..ModelPrice::default() },
    )]))
}

pub fn chat(key: &str, model: &str) -> Request<Full<Bytes>> {
    Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(format!(
            r#"{{"model":"{model}","max_tokens":500,"messages":[{{"role":"user","content":"hi"}}]}}"#
        ))))
        .unwrap()
}

pub async fn read<B>(response: Response<B>) -> (StatusCode, serde_json::Value)
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}
