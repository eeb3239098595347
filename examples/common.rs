//! Shared setup for the examples: an in-memory store with one funded user, one key and prices.

use std::collections::HashMap;
use std::sync::Arc;

use apihub_core::Money;
use apihub_core::key::GeneratedKey;
use apihub_core::ledger::{LedgerOp, TxType};
use apihub_core::policy::KeyPolicy;
use apihub_core::pricing::ModelPrice;
use apihub_core::store::{KeyStore, LedgerStore, NewKey, StoreError, UserStore};
use apihub_core::user::{NewUser, Role};
use apihub_tower::ForwardedBody;
use apihub_tower::memory::MemoryStore;

/// A store with user `demo` holding `credits`, and the whole key of one key with `policy`.
pub async fn demo_store(credits: i64, policy: KeyPolicy) -> Result<(Arc<MemoryStore>, i64, String), StoreError> {
    let store = Arc::new(MemoryStore::new());
    let user = store
        .create_user(NewUser { username: "demo".into(), email: None, password_hash: "-".into(), role: Role::User })
        .await?;
    store.apply(user.id, LedgerOp::new(TxType::Recharge, Money::from_credits(credits))).await?;
    let key = GeneratedKey::generate();
    let new = NewKey {
        public_id: key.public_id.clone(),
        secret_hash: key.secret_hash.clone(),
        last4: key.last4.clone(),
        policy,
        batch_id: None,
    };
    store.create_keys(user.id, vec![new]).await?;
    Ok((store, user.id, key.plain.expose().to_owned()))
}

/// One priced chat model: 0.15 credits per million input tokens, 0.60 per million output tokens.
pub fn chat_prices() -> Arc<HashMap<String, ModelPrice>> {
    let price = ModelPrice {
        input: Money::parse("0.15").unwrap_or_default(),
        output: Money::parse("0.6").unwrap_or_default(),
        ..ModelPrice::default()
    };
    Arc::new(HashMap::from([("gpt-4o-mini".to_owned(), price)]))
}

/// Why forwarding to the upstream failed.
#[derive(Debug)]
pub enum ForwardError {
    /// The upstream URL and path did not make a URI.
    Uri(http::uri::InvalidUri),
    /// The HTTP client failed.
    Client(hyper_util::client::legacy::Error),
}

impl std::fmt::Display for ForwardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardError::Uri(e) => write!(f, "bad upstream URI: {e}"),
            ForwardError::Client(e) => write!(f, "upstream request failed: {e}"),
        }
    }
}

impl std::error::Error for ForwardError {}

/// A plain hyper client that sends each request to `base` + its path, without the client's
/// credentials (`Authorization`, `x-api-key`, `x-goog-api-key`: admission already checked the
/// key; it must not reach the vendor).
pub fn forwarding_client(
    base: String,
) -> impl tower::Service<
    http::Request<ForwardedBody>,
    Response = http::Response<hyper::body::Incoming>,
    Error = ForwardError,
    Future: Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<ForwardedBody>();
    tower::service_fn(move |mut request: http::Request<ForwardedBody>| {
        let client = client.clone();
        let uri = format!("{base}{}", request.uri().path()).parse::<http::Uri>();
        async move {
            *request.uri_mut() = uri.map_err(ForwardError::Uri)?;
            for credential in ["authorization", "x-api-key", "x-goog-api-key"] {
                request.headers_mut().remove(credential);
            }
            client.request(request).await.map_err(ForwardError::Client)
        }
    })
}
