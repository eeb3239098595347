//! A short-lived cache of key lookups, with explicit invalidation.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use apihub_core::policy::ApiKey;
pub use apihub_core::store::AuthStore;
use apihub_core::store::StoreError;
use apihub_core::user::{User, UserId};

use crate::clock::{Clock, SystemClock};

/// A cached lookup: the key and its owner.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// The key.
    pub key: Arc<ApiKey>,
    /// Its owner.
    pub user: Arc<User>,
    fetched_at: u64,
}

/// Caches `public id → (key, owner)` for at most `ttl_millis`.
///
/// The server calls [`KeyCache::invalidate_key`] / [`KeyCache::invalidate_user`] whenever it
/// changes a key or user, so on one node a change takes effect at once; the TTL (1 s by default)
/// bounds how long another node can serve a stale entry. Unknown keys are not cached, so the cache
/// only ever holds real keys.
pub struct KeyCache {
    store: Arc<dyn AuthStore>,
    clock: Arc<dyn Clock>,
    ttl_millis: u64,
    max_entries: usize,
    entries: RwLock<HashMap<String, KeyEntry>>,
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
    pub fn new(store: Arc<dyn AuthStore>) -> Self {
        Self::with_clock(store, Arc::new(SystemClock), Self::DEFAULT_TTL_MILLIS)
    }

    /// A cache with an explicit clock and TTL (0 disables caching).
    pub fn with_clock(store: Arc<dyn AuthStore>, clock: Arc<dyn Clock>, ttl_millis: u64) -> Self {
        KeyCache { store, clock, ttl_millis, max_entries: 100_000, entries: RwLock::new(HashMap::new()) }
    }

    /// The key with this public id and its owner, from the cache or the store.
    pub async fn get(&self, public_id: &str) -> Result<Option<KeyEntry>, StoreError> {
        let now = self.clock.now_millis();
        if let Ok(entries) = self.entries.read()
            && let Some(entry) = entries.get(public_id)
            && now.saturating_sub(entry.fetched_at) < self.ttl_millis
        {
            return Ok(Some(entry.clone()));
        }
        let Some(key) = self.store.key_by_public_id(public_id).await? else {
            return Ok(None);
        };
        let Some(user) = self.store.user(key.user_id).await? else {
            return Ok(None);
        };
        let entry = KeyEntry { key: Arc::new(key), user: Arc::new(user), fetched_at: now };
        if self.ttl_millis > 0
            && let Ok(mut entries) = self.entries.write()
        {
            if entries.len() >= self.max_entries {
                entries.clear();
            }
            entries.insert(public_id.to_owned(), entry.clone());
        }
        Ok(Some(entry))
    }

    /// Forgets one key (after an update or delete).
    pub fn invalidate_key(&self, public_id: &str) {
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(public_id);
        }
    }

    /// Forgets every key of a user (after a disable or discount change).
    pub fn invalidate_user(&self, user_id: UserId) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, e| e.user.id != user_id);
        }
    }

    /// Forgets everything.
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }
}
