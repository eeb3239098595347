//! A fake EPay (易支付) provider over real HTTP, and the fixture that puts a listening gateway in
//! front of it.
//!
//! The fake plays both of the provider's parts: its `submit.php` checks the merchant's signature
//! and `pid` as a real provider would and shows a payment page, remembering the order; "paying"
//! an order sends the signed notification a provider sends, over HTTP, to the `notify_url` the
//! order carried, and returns the gateway's plain-text answer.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use apihub_server::config::EpayConfig;
use apihub_server::epay;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::routing::get;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::{Backend, TestApp};

/// The merchant id the gateway is configured with.
pub const PID: &str = "1001";
/// The merchant key both sides sign with.
pub const MERCHANT_KEY: &str = "testkey123";

type HttpClient = Client<HttpConnector, Full<Bytes>>;
type Params = Vec<(String, String)>;
/// Submitted orders by `out_trade_no`: the fields as received.
type Orders = Arc<Mutex<HashMap<String, BTreeMap<String, String>>>>;

/// How the fake delivers a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// `GET notify_url?fields`.
    Get,
    /// `POST notify_url` with a form body.
    Post,
}

/// The fake provider.
pub struct FakeEpay {
    /// `http://127.0.0.1:port`.
    pub url: String,
    orders: Orders,
    client: HttpClient,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeEpay {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn submit(State(orders): State<Orders>, RawQuery(query): RawQuery, body: Bytes) -> (StatusCode, String) {
    let form = if body.is_empty() { query.unwrap_or_default().into_bytes() } else { body.to_vec() };
    let fields: BTreeMap<String, String> =
        form_urlencoded::parse(&form).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let signature = fields.get("sign").cloned().unwrap_or_default();
    let pairs: Params = fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if !epay::verify(&pairs, MERCHANT_KEY, &signature) {
        return (StatusCode::BAD_REQUEST, "签名错误 (signature error)".into());
    }
    if fields.get("pid").map(String::as_str) != Some(PID) {
        return (StatusCode::BAD_REQUEST, "商户不存在 (unknown merchant)".into());
    }
    for required in ["type", "out_trade_no", "notify_url", "return_url", "name", "money"] {
        if fields.get(required).is_none_or(String::is_empty) {
            return (StatusCode::BAD_REQUEST, format!("missing {required}"));
        }
    }
    let page = format!("<html><body><h1>Pay {} for {}</h1></body></html>", fields["money"], fields["name"]);
    orders.lock().expect("orders").insert(fields["out_trade_no"].clone(), fields);
    (StatusCode::OK, page)
}

impl FakeEpay {
    /// Starts the fake on a free port.
    pub async fn start() -> FakeEpay {
        let orders = Orders::default();
        let app = Router::new().route("/submit.php", get(submit).post(submit)).with_state(orders.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake EPay");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake EPay server");
        });
        FakeEpay { url, orders, client: Client::builder(TokioExecutor::new()).build_http(), server }
    }

    /// The settings a gateway needs to use this fake, with `public_url` as its own address.
    pub fn config(&self, public_url: &str) -> EpayConfig {
        let vars: HashMap<&str, String> = [
            ("EPAY_URL", self.url.clone()),
            ("EPAY_PID", PID.into()),
            ("EPAY_KEY", MERCHANT_KEY.into()),
            ("PUBLIC_URL", public_url.into()),
            ("EPAY_MIN_AMOUNT", "1".into()),
            ("EPAY_MAX_AMOUNT", "500".into()),
            ("EPAY_PAYMENT_TYPES", "alipay,wxpay,qqpay".into()),
        ]
        .into();
        EpayConfig::from_vars(|name| vars.get(name).cloned()).expect("EPay settings").expect("configured")
    }

    /// Opens a URL as the user's browser would; returns the status and the page.
    pub async fn open(&self, url: &str) -> (StatusCode, String) {
        self.send(Method::GET, url, None).await
    }

    /// Posts the payment form as the user's browser would.
    pub async fn post_form(&self, url: &str, fields: &BTreeMap<String, String>) -> (StatusCode, String) {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        self.send(Method::POST, url, Some(body)).await
    }

    /// What the gateway submitted for an order, if it reached the payment page.
    pub fn submitted(&self, out_trade_no: &str) -> Option<BTreeMap<String, String>> {
        self.orders.lock().expect("orders").get(out_trade_no).cloned()
    }

    /// The notification a provider sends once `out_trade_no` (which must have been submitted) is
    /// paid, signed with `key`; `edit` may change fields before signing.
    pub fn notification_with(&self, out_trade_no: &str, key: &str, edit: impl FnOnce(&mut Params)) -> Params {
        let order = self.submitted(out_trade_no).expect("the order reached the payment page");
        let mut params: Params = vec![
            ("pid".into(), order["pid"].clone()),
            ("trade_no".into(), format!("2026112500{}", &out_trade_no[out_trade_no.len() - 8..])),
            ("out_trade_no".into(), out_trade_no.into()),
            ("type".into(), order["type"].clone()),
            ("name".into(), order["name"].clone()),
            ("money".into(), order["money"].clone()),
            ("trade_status".into(), "TRADE_SUCCESS".into()),
            ("param".into(), String::new()),
        ];
        edit(&mut params);
        let signature = epay::sign(&params, key);
        params.push(("sign".into(), signature));
        params.push(("sign_type".into(), "MD5".into()));
        params
    }

    /// The genuine notification for a paid order.
    pub fn notification(&self, out_trade_no: &str) -> Params {
        self.notification_with(out_trade_no, MERCHANT_KEY, |_| {})
    }

    /// Sends `params` to the order's `notify_url`; returns the gateway's answer.
    pub async fn deliver(&self, out_trade_no: &str, params: &Params, how: Delivery) -> String {
        let notify_url = self.submitted(out_trade_no).expect("submitted order")["notify_url"].clone();
        self.deliver_to(&notify_url, params, how).await
    }

    /// Sends `params` to `notify_url`; returns the gateway's answer.
    pub async fn deliver_to(&self, notify_url: &str, params: &Params, how: Delivery) -> String {
        let form = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        let (status, body) = match how {
            Delivery::Get => self.send(Method::GET, &format!("{notify_url}?{form}"), None).await,
            Delivery::Post => self.send(Method::POST, notify_url, Some(form)).await,
        };
        assert_eq!(status, StatusCode::OK, "the notify URL answers 200 with a word: {body}");
        body
    }

    async fn send(&self, method: Method, url: &str, form: Option<String>) -> (StatusCode, String) {
        let mut request = Request::builder().method(method).uri(url);
        if form.is_some() {
            request = request.header("content-type", "application/x-www-form-urlencoded");
        }
        let request = request.body(Full::new(Bytes::from(form.unwrap_or_default()))).expect("request");
        let response = self.client.request(request).await.expect("HTTP request");
        let status = response.status();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// A gateway listening on a real port, configured with a [`FakeEpay`].
pub struct EpayGateway {
    pub app: TestApp,
    pub epay: FakeEpay,
    /// `http://127.0.0.1:port` of the gateway.
    pub base: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for EpayGateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl EpayGateway {
    /// The fixture on `backend`, or `None` when it is skipped.
    pub async fn on(backend: Backend) -> Option<EpayGateway> {
        let epay = FakeEpay::start().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the gateway");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let config = epay.config(&base);
        let app = TestApp::on_with(backend, |c| c.epay = Some(config)).await?;
        let router = app.app.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, axum::ServiceExt::<Request<axum::body::Body>>::into_make_service(router))
                .await
                .expect("gateway server");
        });
        Some(EpayGateway { app, epay, base, server })
    }

    /// A user creates an order; returns the whole response.
    pub async fn order(&self, token: &str, amount: &str, payment_type: &str) -> Value {
        let body = serde_json::json!({"amount": amount, "payment_type": payment_type});
        self.app.post("/api/tokens/recharge", token, body).await.expect(StatusCode::CREATED)
    }

    /// A user creates an order and opens its payment page; returns the order number.
    pub async fn order_and_open(&self, token: &str, amount: &str) -> String {
        let created = self.order(token, amount, "alipay").await;
        let (status, page) = self.epay.open(created["pay_url"].as_str().expect("pay_url")).await;
        assert_eq!(status, StatusCode::OK, "the provider accepts the signed request: {page}");
        created["order"]["out_trade_no"].as_str().expect("out_trade_no").to_owned()
    }
}
