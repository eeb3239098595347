//! [`UsageStore`] for [`MemoryStore`]: an append-only request log, listed latest written first
//! (as the SQL store orders by id), not sorted by `created_at`.

use async_trait::async_trait;

use apihub_core::store::{Page, PageRequest, StoreError, UsageRecord, UsageStore};
use apihub_core::user::UserId;

use super::{MemoryStore, page_of};

#[async_trait]
impl UsageStore for MemoryStore {
    async fn record_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        self.lock()?.usage.extend_from_slice(records);
        Ok(())
    }

    async fn usage(&self, user_id: Option<UserId>, page: PageRequest) -> Result<Page<UsageRecord>, StoreError> {
        let state = self.lock()?;
        let rows = state.usage.iter().rev().filter(|record| user_id.is_none_or(|id| id == record.user_id));
        Ok(page_of(rows, page))
    }
}

#[cfg(test)]
mod tests {
    use apihub_core::store::UsageSource;
    use apihub_core::{DiscountRate, Money};
    use chrono::{DateTime, TimeDelta, Utc};

    use super::*;

    fn record(request_id: &str, user_id: UserId, created_at: DateTime<Utc>) -> UsageRecord {
        UsageRecord {
            request_id: request_id.into(),
            user_id,
            key_id: 1,
            model: "gpt-4o".into(),
            endpoint: "/v1/chat/completions".into(),
            route_id: None,
            stream: false,
            prompt_tokens: 10,
            completion_tokens: 20,
            cached_tokens: 0,
            raw_cost: Money::from_micros(30),
            user_discount: DiscountRate::FULL_PRICE,
            key_discount: DiscountRate::FULL_PRICE,
            charged: Money::from_micros(30),
            overage: Money::ZERO,
            status: 200,
            upstream_latency_ms: 120,
            first_byte_ms: None,
            usage_source: UsageSource::Reported,
            created_at,
            channel: None,
            attempts: 1,
            cost: None,
        }
    }

    fn ids(page: &Page<UsageRecord>) -> Vec<&str> {
        page.items.iter().map(|r| r.request_id.as_str()).collect()
    }

    #[tokio::test]
    async fn records_list_latest_written_first() {
        let store = MemoryStore::new();
        let t0 = Utc::now();
        let at = |s| t0 + TimeDelta::seconds(s);
        // A long stream that began first is written after a short request that began later.
        store.record_usage(&[record("short", 1, at(2)), record("stream", 1, at(1))]).await.unwrap();
        store.record_usage(&[]).await.unwrap();
        store.record_usage(&[record("bobs", 2, at(3)), record("r3", 1, at(3)), record("r4", 1, at(4))]).await.unwrap();

        let all = store.usage(None, PageRequest::default()).await.unwrap();
        assert_eq!(ids(&all), ["r4", "r3", "bobs", "stream", "short"]);
        assert_eq!(all.items[4], record("short", 1, at(2)));
        let alices = store.usage(Some(1), PageRequest { page: 2, page_size: 3 }).await.unwrap();
        assert_eq!((alices.total, ids(&alices)), (4, vec!["short"]));
        let nobody = store.usage(Some(9), PageRequest::default()).await.unwrap();
        assert_eq!((nobody.total, nobody.items.len()), (0, 0));
    }
}
