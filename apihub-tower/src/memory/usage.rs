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
