//! Contracts of [`UsageStore`](apihub_core::store::UsageStore) and
//! [`PriceStore`](apihub_core::store::PriceStore): the request log and model prices.

use std::sync::Arc;

use apihub_core::pricing::ModelPrice;
use apihub_core::store::{Page, PageRequest, Store, StoreError, UsageRecord, UsageSource};
use apihub_core::user::UserId;
use apihub_core::{DiscountRate, Money};
use chrono::{DateTime, TimeDelta, Utc};

/// A usage record; times in whole milliseconds, the precision a database keeps.
fn record(request_id: &str, user_id: UserId, created_at: DateTime<Utc>) -> UsageRecord {
    UsageRecord {
        request_id: request_id.into(),
        user_id,
        key_id: 1,
        model: "gpt-4o".into(),
        endpoint: "/v1/chat/completions".into(),
        route_id: None,
        stream: true,
        prompt_tokens: 10,
        completion_tokens: 20,
        cached_tokens: 3,
        raw_cost: Money::from_micros(30),
        user_discount: DiscountRate::parse("0.8").unwrap_or(DiscountRate::FULL_PRICE),
        key_discount: DiscountRate::FULL_PRICE,
        charged: Money::from_micros(24),
        overage: Money::from_micros(4),
        status: 200,
        upstream_latency_ms: 120,
        first_byte_ms: Some(45),
        usage_source: UsageSource::Estimated,
        created_at,
        channel: Some("primary".into()),
        attempts: 2,
        cost: Some(Money::from_micros(12)),
    }
}

fn ids(page: &Page<UsageRecord>) -> Vec<&str> {
    page.items.iter().map(|r| r.request_id.as_str()).collect()
}

/// Records read back as written, latest written first (not sorted by when they began), for one
/// user or everyone, counted and paged.
pub async fn usage_records_list_latest_written_first(store: Arc<dyn Store>) {
    let t0 = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default();
    let at = |s| t0 + TimeDelta::seconds(s);
    // A long stream that began first is written after a short request that began later.
    let (short, stream) = (record("short", 1, at(2)), record("stream", 1, at(1)));
    store.record_usage(&[short.clone(), stream]).await.expect("record");
    store.record_usage(&[]).await.expect("record nothing");
    let batch = [record("bobs", 2, at(3)), record("r3", 1, at(3)), record("r4", 1, at(4))];
    store.record_usage(&batch).await.expect("record");

    let all = store.usage(None, PageRequest::default()).await.expect("list");
    assert_eq!(ids(&all), ["r4", "r3", "bobs", "stream", "short"]);
    assert_eq!(all.items[4], short);
    let alices = store.usage(Some(1), PageRequest { page: 2, page_size: 3 }).await.expect("list");
    assert_eq!((alices.total, ids(&alices)), (4, vec!["short"]));
    let nobody = store.usage(Some(9), PageRequest::default()).await.expect("list");
    assert_eq!((nobody.total, nobody.items.len()), (0, 0));
}

/// A batch of many records (more than a store writes in one statement, and not a multiple of it:
/// 255 is three statements of 64 rows and one of each smaller power of two) is written whole,
/// each record as it was, in order; so is one at a time after it.
pub async fn a_large_batch_of_usage_records_is_written_whole_and_in_order(store: Arc<dyn Store>) {
    let t0 = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default();
    let batch: Vec<UsageRecord> = (0..255_i64)
        .map(|n| {
            let mut r = record(&format!("req-{n:03}"), 1 + n % 3, t0 + TimeDelta::milliseconds(n));
            // Every other record has what a metered route's and an unrouted one's rows differ in.
            if n % 2 == 0 {
                (r.route_id, r.channel, r.cost, r.first_byte_ms) = (Some(n), None, None, None);
            }
            r.prompt_tokens = n;
            r.stream = n % 5 == 0;
            r
        })
        .collect();
    store.record_usage(&batch).await.expect("record");
    let last = record("req-last", 2, t0);
    store.record_usage(std::slice::from_ref(&last)).await.expect("record one");

    let all = store.usage(None, PageRequest { page: 1, page_size: 100 }).await.expect("list");
    assert_eq!(all.total, 256);
    assert_eq!(all.items[0], last);
    let mut read = Vec::new();
    for page in 1..=3 {
        read.extend(store.usage(None, PageRequest { page, page_size: 100 }).await.expect("list").items);
    }
    read.remove(0);
    read.reverse();
    assert_eq!(read, batch);
}

/// Setting a price inserts or replaces it; prices list by model name; deleting one that is not
/// there is not found.
pub async fn prices_are_set_replaced_listed_by_name_and_deleted(store: Arc<dyn Store>) {
    let price = ModelPrice {
        input: Money::from_micros(1_500_000),
        cache_read: Some(Money::from_micros(150_000)),
        per_request: Some(Money::from_micros(10)),
        ..ModelPrice::default()
    };
    store.set_price("b-model", &price).await.expect("set");
    store.set_price("a-model", &ModelPrice::default()).await.expect("set");
    let replaced = ModelPrice { output: Money::from_credits(2), cache_read: None, ..price };
    store.set_price("b-model", &replaced).await.expect("replace");
    let listed = store.prices().await.expect("list");
    assert_eq!(listed, [("a-model".to_owned(), ModelPrice::default()), ("b-model".to_owned(), replaced)]);

    store.delete_price("a-model").await.expect("delete");
    assert!(matches!(store.delete_price("a-model").await, Err(StoreError::NotFound)));
    assert_eq!(store.prices().await.expect("list").len(), 1);
}
