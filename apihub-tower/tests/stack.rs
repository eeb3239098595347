//! The whole layer stack over an in-memory store and an in-process upstream.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use apihub_core::Money;
use apihub_core::billing::BillingStore;
use apihub_core::ledger::{LedgerOp, TxType};
use apihub_core::policy::KeyPolicy;
use apihub_core::pricing::ModelPrice;
use apihub_core::store::{KeyStore, LedgerStore, PageRequest, UserStore};
use apihub_tower::GatewayBuilder;
use apihub_tower::clock::ManualClock;
use apihub_tower::memory::MemoryStore;
use common::{chat, fixture, prices, read, upstream};
use http::StatusCode;
use http_body_util::BodyExt;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::test]
async fn a_call_is_billed_exactly_with_both_discounts() {
    let f = fixture(10, KeyPolicy::default()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let gateway = GatewayBuilder::new(f.store.clone(), f.store.clone(), prices()).usage_sink(f.records.clone()).build();
    let service = ServiceBuilder::new().layer(gateway).service(upstream(calls.clone()));
    let (status, body) = read(service.oneshot(chat(&f.key, "gpt-test")).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["usage"]["prompt_tokens"], 20, "the body passes through untouched");
    // raw = (20 × 1 + 500 × 2) / 1e6 = 0.00102; × 0.8 × 0.5 = 0.000408.
    let user = f.store.user(f.user_id).await.unwrap().unwrap();
    assert_eq!(user.account.balance, Money::parse("9.999592").unwrap());
    let funds = f.store.reserved_funds(f.user_id).await.unwrap();
    assert_eq!(funds.reserved, Money::ZERO, "the hold is gone");
    let records = f.records.0.lock().unwrap().clone();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].raw_cost, Money::parse("0.00102").unwrap());
    assert_eq!(records[0].charged, Money::parse("0.000408").unwrap());
    assert_eq!(records[0].prompt_tokens, 20);
    let page = f.store.transactions(Some(f.user_id), Some(TxType::Consume), PageRequest::default()).await.unwrap();
    assert_eq!(page.items[0].amount, Money::parse("-0.000408").unwrap());
    assert_eq!(page.items[0].order_no.as_deref(), Some(records[0].request_id.as_str()));
}

#[tokio::test]
async fn refusals_never_reach_the_upstream() {
    let f = fixture(10, KeyPolicy { allowed_models: vec!["gpt-test".into()], ..KeyPolicy::default() }).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let gateway = GatewayBuilder::new(f.store.clone(), f.store.clone(), prices()).build();
    let service = ServiceBuilder::new().layer(gateway).service(upstream(calls.clone()));
    // The key with its last character changed (to `x`, or `y` when it was an `x`).
    let (head, last) = f.key.split_at(f.key.len() - 1);
    let forged = format!("{head}{}", if last == "x" { "y" } else { "x" });
    let cases = [
        (chat("sk-not-ours", "gpt-test"), StatusCode::UNAUTHORIZED, "invalid_api_key"),
        (chat(&forged, "gpt-test"), StatusCode::UNAUTHORIZED, "invalid_api_key"),
        (chat(&f.key, "gpt-other"), StatusCode::FORBIDDEN, "model_not_allowed"),
    ];
    for (request, status, code) in cases {
        let (got, body) = read(service.clone().oneshot(request).await.unwrap()).await;
        assert_eq!((got, body["error"]["code"].as_str().unwrap()), (status, code));
    }
    // Allowed by the key, but unpriced: refused rather than served for free.
    let open = fixture(10, KeyPolicy::default()).await;
    let gateway = GatewayBuilder::new(open.store.clone(), open.store.clone(), prices()).build();
    let service = ServiceBuilder::new().layer(gateway).service(upstream(calls.clone()));
    let (status, body) = read(service.oneshot(chat(&open.key, "gpt-free")).await.unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (StatusCode::NOT_FOUND, "model_not_found"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn rate_limits_admit_exactly_n_on_a_paused_clock() {
    let f = fixture(100, KeyPolicy { rate_limit: Some(3), ..KeyPolicy::default() }).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let clock = ManualClock::at(1_000_000);
    let gateway =
        GatewayBuilder::new(f.store.clone(), f.store.clone(), prices()).clock(Arc::new(clock.clone())).build();
    let service = ServiceBuilder::new().layer(gateway).service(upstream(calls.clone()));
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let response = service.clone().oneshot(chat(&f.key, "gpt-test")).await.unwrap();
        statuses.push(response.status());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(response.headers()["x-ratelimit-remaining-requests"], "0");
            assert!(response.headers().contains_key("retry-after"));
        }
        read(response).await;
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 3);
    clock.advance(60_000);
    assert_eq!(service.oneshot(chat(&f.key, "gpt-test")).await.unwrap().status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_never_overspend() {
    // Output-only pricing and an upstream that uses the whole cap: each call holds exactly what it
    // is charged, 500 × 2 / 1e6 × 0.8 × 0.5 = 0.0004 credits, so 0.02 credits pay for exactly 50.
    let f = fixture(0, KeyPolicy::default()).await;
    f.store.apply(f.user_id, LedgerOp::new(TxType::Recharge, Money::parse("0.02").unwrap())).await.unwrap();
    let prices = Arc::new(HashMap::from([(
        "gpt-test".to_owned(),
        ModelPrice { output: Money::from_credits(2), ..ModelPrice::default() },
    )]));
    let calls = Arc::new(AtomicUsize::new(0));
    let gateway = GatewayBuilder::new(f.store.clone(), f.store.clone(), prices).build();
    let service = ServiceBuilder::new().layer(gateway).service(upstream(calls.clone()));
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let service = service.clone();
            let request = chat(&f.key, "gpt-test");
            tokio::spawn(async move { read(service.oneshot(request).await.unwrap()).await })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            StatusCode::OK => ok += 1,
            // OpenAI's convention for exhausted credit (see `apihub_tower::dialect`).
            StatusCode::TOO_MANY_REQUESTS => assert_eq!(body["error"]["code"], "insufficient_quota"),
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok, 50);
    assert_eq!(calls.load(Ordering::SeqCst), 50, "only admitted calls reached the upstream");
    let user = f.store.user(f.user_id).await.unwrap().unwrap();
    assert_eq!(user.account.balance, Money::ZERO);
    assert_eq!(f.store.reserved_funds(f.user_id).await.unwrap().reserved, Money::ZERO);
    let consumed = f
        .store
        .transactions(Some(f.user_id), Some(TxType::Consume), PageRequest { page: 1, page_size: 200 })
        .await
        .unwrap();
    assert_eq!(consumed.total, 50);
}

#[tokio::test]
async fn a_body_dropped_right_after_its_last_byte_is_billed_as_complete() {
    // A server that knows the content length stops polling once it has sent that many bytes and
    // drops the body without reading its end: that is still a complete response.
    let f = fixture(10, KeyPolicy::default()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let gateway = GatewayBuilder::new(f.store.clone(), f.store.clone(), prices()).usage_sink(f.records.clone()).build();
    let service = ServiceBuilder::new().layer(gateway).service(upstream(calls.clone()));
    let response = service.oneshot(chat(&f.key, "gpt-test")).await.unwrap();
    let mut body = response.into_body();
    let frame = body.frame().await.unwrap().unwrap();
    assert!(frame.is_data());
    drop(body);
    for _ in 0..100 {
        if !f.records.0.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let records = f.records.0.lock().unwrap().clone();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].usage_source, apihub_core::store::UsageSource::Reported);
    assert_eq!(records[0].status, 200);
    assert_eq!(records[0].charged, Money::parse("0.000408").unwrap());
    let key = f.store.list_keys(&Default::default(), PageRequest::default()).await.unwrap().items.remove(0);
    assert_eq!(key.usage.calls_succeeded, 1);
}

/// A billing store whose settlements fail while `down` is set, as a database that went away.
struct Outage {
    store: Arc<MemoryStore>,
    down: std::sync::atomic::AtomicBool,
    refused: AtomicUsize,
}

#[async_trait::async_trait]
impl BillingStore for Outage {
    async fn reserve(
        &self,
        new: &apihub_core::billing::NewReservation,
    ) -> Result<apihub_core::billing::ReservationId, apihub_core::billing::BillingError> {
        self.store.reserve(new).await
    }

    async fn settle(
        &self,
        id: apihub_core::billing::ReservationId,
        settlement: &apihub_core::billing::Settlement,
    ) -> Result<apihub_core::billing::Settled, apihub_core::billing::BillingError> {
        if self.down.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            let error = apihub_core::store::StoreError::Unavailable("the database went away".into());
            return Err(apihub_core::billing::BillingError::Store(error));
        }
        self.store.settle(id, settlement).await
    }

    async fn release(&self, id: apihub_core::billing::ReservationId) -> Result<(), apihub_core::billing::BillingError> {
        self.store.release(id).await
    }

    async fn release_stale(&self, age: std::time::Duration) -> Result<u64, apihub_core::billing::BillingError> {
        self.store.release_stale(age).await
    }

    async fn reserved_funds(
        &self,
        user_id: i64,
    ) -> Result<apihub_core::billing::UserFunds, apihub_core::billing::BillingError> {
        self.store.reserved_funds(user_id).await
    }
}

#[tokio::test]
async fn settlements_refused_by_the_store_are_retried_until_written_and_billed_once() {
    let f = fixture(10, KeyPolicy::default()).await;
    let outage = Arc::new(Outage { store: f.store.clone(), down: true.into(), refused: AtomicUsize::new(0) });
    let backlog = Arc::new(apihub_tower::billing::SettlementBacklog::default());
    let gateway = GatewayBuilder::new(f.store.clone(), outage.clone(), prices())
        .usage_sink(f.records.clone())
        .settlement_backlog(backlog.clone())
        .build();
    let service = ServiceBuilder::new().layer(gateway).service(upstream(Arc::new(AtomicUsize::new(0))));
    for _ in 0..5 {
        // The client is answered in full at once, although nothing could be written.
        let (status, body) = read(service.clone().oneshot(chat(&f.key, "gpt-test")).await.unwrap()).await;
        assert_eq!((status, body["usage"]["completion_tokens"].as_i64()), (StatusCode::OK, Some(500)));
    }
    assert_eq!(backlog.len(), 5);
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    assert!(outage.refused.load(Ordering::SeqCst) > 5, "retried while the store is down");
    let balance = f.store.user(f.user_id).await.unwrap().unwrap().account.balance;
    assert_eq!(balance, Money::from_credits(10), "nothing written yet");

    outage.down.store(false, Ordering::SeqCst);
    tokio::time::timeout(std::time::Duration::from_secs(10), backlog.drained()).await.expect("drained");
    // Five requests, five charges of 0.000408, each once; their holds are gone.
    let balance = f.store.user(f.user_id).await.unwrap().unwrap().account.balance;
    assert_eq!(balance, Money::parse("9.99796").unwrap());
    assert_eq!(f.store.reserved_funds(f.user_id).await.unwrap().reserved, Money::ZERO);
    let page = f.store.transactions(Some(f.user_id), Some(TxType::Consume), PageRequest::default()).await.unwrap();
    assert_eq!(page.items.len(), 5);
    let records = f.records.0.lock().unwrap().clone();
    assert_eq!(records.len(), 5);
    assert!(records.iter().all(|r| r.charged == Money::parse("0.000408").unwrap()));
}

/// A usage sink with no room left (its writer behind, its store away).
struct FullSink;

impl apihub_tower::billing::UsageSink for FullSink {
    fn record(&self, _record: apihub_core::store::UsageRecord) {
        panic!("a full sink was given a record");
    }

    fn is_full(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn a_full_usage_sink_refuses_requests_before_anything_is_held_or_forwarded() {
    let f = fixture(10, KeyPolicy::default()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let gateway =
        GatewayBuilder::new(f.store.clone(), f.store.clone(), prices()).usage_sink(Arc::new(FullSink)).build();
    let service = ServiceBuilder::new().layer(gateway).service(upstream(calls.clone()));
    let (status, body) = read(service.oneshot(chat(&f.key, "gpt-test")).await.unwrap()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("service_unavailable"))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing was forwarded");
    assert_eq!(f.store.reserved_funds(f.user_id).await.unwrap().reserved, Money::ZERO, "nothing is held");
    let balance = f.store.user(f.user_id).await.unwrap().unwrap().account.balance;
    assert_eq!(balance, Money::from_credits(10), "nothing was charged");
}
