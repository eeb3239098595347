//! A short-lived cache of key lookups, with explicit invalidation.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use apihub_core::store::StoreError;
use apihub_core::user::UserId;

use crate::clock::{Clock, SystemClock};
use apihub_core::lookup::{KeyLookup, KeyRecord};

/// A cached lookup.
#[derive(Debug, Clone)]
struct Entry {
    record: Arc<KeyRecord>,
    fetched_at: u64,
}

/// Caches `lookup id → key record` for at most `ttl_millis`.
///
/// The server calls [`KeyCache::invalidate_key`] / [`KeyCache::invalidate_user`] whenever it
/// changes a key or user, so on one node a change takes effect at once; the TTL (1 s by default)
/// bounds how long another node can serve a stale entry. Unknown keys are not cached, so the cache
/// only ever holds real keys.
pub struct KeyCache {
    store: Arc<dyn KeyLookup>,
    clock: Arc<dyn Clock>,
    ttl_millis: u64,
    max_entries: usize,
    entries: RwLock<HashMap<String, Entry>>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache").field("ttl_millis", &self.ttl_millis).finish_non_exhaustive()
    }
}

impl KeyCache {
    /// Default time an entry is trusted.
    pub const DEFAULT_TTL_MILLIS: u64 = 1_000;

    /// A cache over `store` with the default TTL and the system clock.
    pub fn new(store: Arc<dyn KeyLookup>) -> Self {
        Self::with_clock(store, Arc::new(SystemClock), Self::DEFAULT_TTL_MILLIS)
    }

    /// A cache with an explicit clock and TTL (0 disables caching).
    pub fn with_clock(store: Arc<dyn KeyLookup>, clock: Arc<dyn Clock>, ttl_millis: u64) -> Self {
        KeyCache { store, clock, ttl_millis, max_entries: 100_000, entries: RwLock::new(HashMap::new()) }
    }

    /// The key with this lookup id (an `ahg_` key's public id), from the cache or the store.
    pub async fn get(&self, lookup_id: &str) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let now = self.clock.now_millis();
        if let Ok(entries) = self.entries.read()
            && let Some(entry) = entries.get(lookup_id)
            && now.saturating_sub(entry.fetched_at) < self.ttl_millis
        {
            return Ok(Some(entry.record.clone()));
        }
        let Some(record) = self.store.lookup(lookup_id).await? else {
            return Ok(None);
        };
        let record = Arc::new(record);
        if self.ttl_millis > 0
            && let Ok(mut entries) = self.entries.write()
        {
            if entries.len() >= self.max_entries {
                entries.clear();
            }
            entries.insert(lookup_id.to_owned(), Entry { record: record.clone(), fetched_at: now });
        }
        Ok(Some(record))
    }

    /// Forgets one key (after an update or delete), by its lookup id.
    pub fn invalidate_key(&self, lookup_id: &str) {
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(lookup_id);
        }
    }

    /// Forgets every key of a user (after a disable or discount change).
    pub fn invalidate_user(&self, user_id: UserId) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, e| e.record.user_id != user_id);
        }
    }

    /// Forgets everything.
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }
}
