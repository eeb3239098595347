//! The proxy fixture: a [`TestApp`] whose `upstream_url` is a running [`MockUpstream`], with
//! `UPSTREAM_API_KEY` configured on both sides, and helpers to fund users, price models, issue
//! keys, call `/v1` as a client would and read back what was billed.
//!
//! Expected charges are computed here from first principles (micros, `i128`, half-up), not with
//! `apihub_core::pricing`, so a test checks the gateway's arithmetic instead of repeating it.

use apihub_core::Money;
use apihub_core::billing::{BillingStore, UserFunds};
use apihub_core::ledger::{Transaction, TxType};
use apihub_core::store::{PageRequest, UsageRecord};
use apihub_core::usage::{SseEvent, SseParser};
use apihub_mock_upstream::{MockConfig, MockUpstream, RecordedRequest};
use apihub_server::config::{Config, Secret};
use axum::body::{Body, Bytes};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{Backend, TestApp};

/// The key the gateway presents upstream; the mock refuses any other.
pub const UPSTREAM_KEY: &str = "sk-upstream-0123456789";

/// The gateway in front of a mock upstream, and an administrator's session.
pub struct Gateway {
    pub app: TestApp,
    pub mock: MockUpstream,
    pub backend: Backend,
    pub admin: String,
}

/// A user with a key, as a client of the gateway.
#[derive(Debug, Clone)]
pub struct Customer {
    pub user_id: i64,
    pub key_id: i64,
    /// The whole `ahg_…` key.
    pub key: String,
}

/// How a client presents its key.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    /// `Authorization: Bearer KEY` (OpenAI SDKs).
    Bearer(&'a str),
    /// `x-api-key: KEY` (Anthropic SDKs).
    XApiKey(&'a str),
    /// `x-goog-api-key: KEY` (Gemini SDKs).
    GoogHeader(&'a str),
    /// `?key=KEY` (Gemini REST).
    Query(&'a str),
    /// No key at all.
    None,
}

/// A response read to its end (or to the error that cut it short).
#[derive(Debug)]
pub struct Raw {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The error that broke the body, if one did.
    pub error: Option<String>,
}

impl Raw {
    #[track_caller]
    pub fn expect(&self, status: StatusCode) -> &Self {
        assert_eq!(self.status, status, "body: {}", self.text());
        self
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    /// The body's server-sent events.
    pub fn events(&self) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut events = parser.push(&self.body);
        events.extend(parser.finish());
        events
    }

    /// Bytes of generated text the stream carried (OpenAI `choices[].delta.content`, Anthropic
    /// `delta.text`, Gemini `candidates[].content.parts[].text`): what an unreported stream's
    /// output is estimated from.
    pub fn streamed_text_bytes(&self) -> usize {
        let len = |v: Option<&Value>| v.and_then(Value::as_str).map_or(0, str::len);
        let each = |v: Option<&Value>| v.and_then(Value::as_array).cloned().unwrap_or_default();
        self.events()
            .iter()
            .filter_map(|event| serde_json::from_str::<Value>(&event.data).ok())
            .map(|data| {
                let chat: usize = each(data.get("choices")).iter().map(|c| len(c.pointer("/delta/content"))).sum();
                let gemini: usize = each(data.get("candidates"))
                    .iter()
                    .flat_map(|c| each(c.pointer("/content/parts")))
                    .map(|part| len(part.get("text")))
                    .sum();
                chat + gemini + len(data.pointer("/delta/text"))
            })
            .sum()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Gateway {
    /// The gateway on `backend` in front of a fresh mock (for [`db_tests!`](crate::db_tests)).
    pub async fn start(backend: Backend) -> Option<Gateway> {
        let mock = MockUpstream::start(MockConfig { api_key: Some(UPSTREAM_KEY.into()), ..MockConfig::default() })
            .await
            .expect("mock upstream");
        let app = Self::app(backend, &mock.url(), |_| {}).await?;
        let admin = app.admin_token().await;
        Some(Gateway { app, mock, backend, admin })
    }

    /// A fresh app (and database) in front of the same mock, with `configure` applied to its
    /// settings after the upstream's (so it may point `upstream_url` elsewhere).
    pub async fn reconfigure(self, configure: impl FnOnce(&mut Config)) -> Gateway {
        let Gateway { app, mock, backend, .. } = self;
        drop(app);
        let app = Self::app(backend, &mock.url(), configure).await.expect("the backend is available");
        let admin = app.admin_token().await;
        Gateway { app, mock, backend, admin }
    }

    async fn app(backend: Backend, url: &str, configure: impl FnOnce(&mut Config)) -> Option<TestApp> {
        TestApp::on_with(backend, |config| {
            config.upstream_url = url.to_owned();
            config.upstream_api_key = Some(Secret::new(UPSTREAM_KEY));
            configure(config);
        })
        .await
    }

    /// Sets a model's price (credits per million input and output tokens).
    pub async fn price(&self, model: &str, input: &str, output: &str) {
        let path = format!("/api/admin/prices/{model}");
        let body = json!({"input_price": input, "output_price": output});
        self.app.call(Method::PUT, &path, Some(&self.admin), Some(body)).await.expect(StatusCode::OK);
    }

    /// Registers `name` with `balance` credits and the user discount rate `discount`, and has the
    /// administrator issue them a key with `fields` (limits, `allowed_models`, `discount_rate`).
    pub async fn customer(&self, name: &str, balance: &str, discount: &str, fields: Value) -> Customer {
        let (user_id, _) = self.app.user(name).await;
        if balance != "0" {
            self.app.recharge(&self.admin, user_id, balance).await;
        }
        if discount != "1" {
            let path = format!("/api/tokens/admin/user/{user_id}/discount");
            self.app.post(&path, &self.admin, json!({"discount_rate": discount})).await.expect(StatusCode::OK);
        }
        let (key_id, key) = self.key(user_id, fields).await;
        Customer { user_id, key_id, key }
    }

    /// Issues another key to `user_id`, as the administrator; returns (id, whole key).
    pub async fn key(&self, user_id: i64, fields: Value) -> (i64, String) {
        let path = format!("/api/keys/admin/user/{user_id}");
        let created = self.app.post(&path, &self.admin, fields).await.expect(StatusCode::CREATED);
        (created["id"].as_i64().expect("key id"), created["key"].as_str().expect("key").to_owned())
    }

    /// `GET /api/keys/{id}`, as the administrator.
    pub async fn key_view(&self, key_id: i64) -> Value {
        self.app.get(&format!("/api/keys/{key_id}"), &self.admin).await.expect(StatusCode::OK)
    }

    /// Sends a request to the gateway and reads the whole response.
    pub async fn send(&self, request: Request<Body>) -> Raw {
        send(&self.app, request).await
    }

    /// `POST path` with `body`, the key presented as `auth`, and extra headers (`x-mock-*`…).
    pub async fn post(&self, path: &str, auth: Auth<'_>, headers: &[(&str, &str)], body: &Value) -> Raw {
        self.send(request(path, auth, headers, body)).await
    }

    /// The user's balance and open holds.
    pub async fn funds(&self, user_id: i64) -> UserFunds {
        BillingStore::reserved_funds(self.app.state.store.as_ref(), user_id).await.expect("funds")
    }

    /// Asserts the ledger: each row consistent and never negative, and the rows summing to the
    /// balance. Returns the consume rows, newest first.
    pub async fn consumes(&self, user_id: i64) -> Vec<Transaction> {
        let page = PageRequest { page: 1, page_size: PageRequest::MAX_PAGE_SIZE };
        let rows = self.app.state.store.transactions(Some(user_id), None, page).await.expect("ledger");
        assert!(rows.total <= u64::from(PageRequest::MAX_PAGE_SIZE), "ledger larger than one page");
        for row in &rows.items {
            assert_eq!(row.balance_after, row.balance_before.checked_add(row.amount).unwrap(), "{row:?}");
            assert!(!row.balance_after.is_negative(), "negative balance: {row:?}");
        }
        let sum: Money = rows.items.iter().map(|t| t.amount).sum();
        assert_eq!(sum, self.funds(user_id).await.balance, "the balance must equal the sum of the ledger");
        rows.items.into_iter().filter(|t| t.tx_type == TxType::Consume).collect()
    }

    /// The user's usage records, newest first, once the usage log has written what it holds.
    pub async fn usage(&self, user_id: i64) -> Vec<UsageRecord> {
        self.app.state.usage_log.flush().await;
        let page = PageRequest { page: 1, page_size: PageRequest::MAX_PAGE_SIZE };
        self.app.state.store.usage(Some(user_id), page).await.expect("usage").items
    }

    /// Asserts that nothing is held for the user and the ledger adds up; returns the balance.
    pub async fn assert_settled(&self, user_id: i64) -> Money {
        let funds = self.funds(user_id).await;
        assert_eq!(funds.reserved, Money::ZERO, "an open reservation was left behind");
        self.consumes(user_id).await;
        funds.balance
    }

    /// [`Gateway::assert_settled`] once the hold is closed, for requests whose body broke: the
    /// client sees the error before the settlement is written.
    pub async fn eventually_settled(&self, user_id: i64) -> Money {
        eventually("the hold to close", || async { self.funds(user_id).await.reserved == Money::ZERO }).await;
        self.assert_settled(user_id).await
    }

    /// The last request the mock received.
    pub fn last_upstream_request(&self) -> RecordedRequest {
        self.mock.stats().last_request().expect("the mock received a request")
    }

    /// Sends `seen` to the mock again, directly, and returns the body it answers: what the
    /// gateway received for it, but for the request's sequence number in ids (see
    /// [`same_but_for_ids`]).
    pub async fn replay(&self, seen: &RecordedRequest) -> Bytes {
        let stream = tokio::net::TcpStream::connect(self.mock.addr()).await.expect("connect to the mock");
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(connection);
        let mut request = Request::builder().method(seen.method.clone()).uri(seen.uri.clone());
        *request.headers_mut().expect("headers") = seen.headers.clone();
        let request = request.body(Full::new(seen.body.clone())).expect("request");
        let response = sender.send_request(request).await.expect("the mock answers");
        response.into_body().collect().await.expect("body").to_bytes()
    }

    /// The sequence number the mock gave the last request it received.
    pub fn last_sequence(&self) -> u64 {
        self.mock.stats().total() - 1
    }
}

/// `replayed` with the ids of request `replayed_id` renamed to those of request `original_id`
/// (the mock numbers its answers: `chatcmpl-mock-7`, `msg_mock_7`, `"responseId":"mock-7"`).
pub fn same_but_for_ids(replayed: &[u8], replayed_id: u64, original_id: u64) -> String {
    let text = String::from_utf8(replayed.to_vec()).expect("UTF-8");
    text.replace(&format!("mock-{replayed_id}\""), &format!("mock-{original_id}\""))
        .replace(&format!("mock_{replayed_id}\""), &format!("mock_{original_id}\""))
}

/// Sends a request to `app` and reads the whole response.
pub async fn send(app: &TestApp, request: Request<Body>) -> Raw {
    send_router(app.app.clone(), request).await
}

/// [`send`] to a router of its own (for a task that outlives the borrow of the app).
pub async fn send_router(router: apihub_server::App, request: Request<Body>) -> Raw {
    let response = router.oneshot(request).await.expect("infallible");
    let (parts, mut body) = response.into_parts();
    let (mut bytes, mut error) = (Vec::new(), None);
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => bytes.extend(frame.into_data().unwrap_or_default()),
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    Raw { status: parts.status, headers: parts.headers, body: Bytes::from(bytes), error }
}

/// A `POST` to the gateway.
pub fn request(path: &str, auth: Auth<'_>, headers: &[(&str, &str)], body: &Value) -> Request<Body> {
    let uri = match auth {
        Auth::Query(key) => format!("{path}{}key={key}", if path.contains('?') { '&' } else { '?' }),
        _ => path.to_owned(),
    };
    let mut builder = Request::builder().method(Method::POST).uri(uri).header("content-type", "application/json");
    builder = match auth {
        Auth::Bearer(key) => builder.header("authorization", format!("Bearer {key}")),
        Auth::XApiKey(key) => builder.header("x-api-key", key),
        Auth::GoogHeader(key) => builder.header("x-goog-api-key", key),
        Auth::Query(_) | Auth::None => builder,
    };
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::from(body.to_string())).expect("request")
}

/// `n / d` rounded half up, for non-negative `n`.
fn half_up(n: i128, d: i128) -> i128 {
    assert!(n >= 0 && d > 0);
    (2 * n + d) / (2 * d)
}

fn micros(decimal: &str) -> i128 {
    i128::from(Money::parse(decimal).expect("decimal").micros())
}

/// A price, as the tests set it: credits per million input and output tokens.
#[derive(Debug, Clone, Copy)]
pub struct Price {
    pub input: &'static str,
    pub output: &'static str,
}

impl Price {
    /// The cost of `input` and `output` tokens before discounts, rounded once to the micro-credit.
    pub fn raw(&self, input: u64, output: u64) -> Money {
        let numerator = i128::from(input) * micros(self.input) + i128::from(output) * micros(self.output);
        Money::from_micros(i64::try_from(half_up(numerator, 1_000_000)).expect("fits"))
    }
}

/// `raw × user × key` (rates as decimals in (0, 1]), rounded once, half up.
pub fn discounted(raw: Money, user: &str, key: &str) -> Money {
    let numerator = i128::from(raw.micros()) * micros(user) * micros(key);
    Money::from_micros(i64::try_from(half_up(numerator, 1_000_000_000_000)).expect("fits"))
}

/// The mock's (and the gateway's estimate's) token count of `bytes` bytes: a quarter, rounded up.
pub fn quarter(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

/// Money from a JSON number or string (as the API shows it).
#[track_caller]
pub fn money(value: &Value) -> Money {
    serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("not money: {value}: {e}"))
}

/// Polls `check` every 20 ms for up to 5 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..250 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}
