//! [`KeyStore`] for [`MemoryStore`]: keys with unique public ids, created all or none.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::Utc;

use apihub_core::policy::{ApiKey, KeyId, KeyPatch, KeyUsage};
use apihub_core::store::{KeyQuery, KeyStore, NewKey, Page, PageRequest, StoreError};
use apihub_core::user::UserId;

use super::billing::KeyHolds;
use super::{MemoryStore, next_id, page_of};

/// A key with what [`ApiKey`] leaves out: what open reservations hold against it (the SQL store's
/// `*_reserved` columns).
pub(super) struct KeyRow {
    pub(super) key: ApiKey,
    pub(super) holds: KeyHolds,
}

impl MemoryStore {
    /// Inserts keys, each for its owner, all or none.
    fn insert_keys(&self, keys: Vec<(UserId, NewKey)>, imported: bool) -> Result<Vec<ApiKey>, StoreError> {
        let mut state = self.lock()?;
        if keys.iter().any(|(user_id, _)| !state.users.contains_key(user_id)) {
            return Err(StoreError::NotFound);
        }
        // Check every public id before inserting any: all or none.
        let mut taken: HashSet<&str> = state.keys.values().map(|row| row.key.public_id.as_str()).collect();
        if let Some((_, dup)) = keys.iter().find(|(_, key)| !taken.insert(key.public_id.as_str())) {
            return Err(StoreError::Conflict(format!("public id `{}` is taken", dup.public_id)));
        }
        let now = Utc::now();
        let mut created = Vec::with_capacity(keys.len());
        for (user_id, new) in keys {
            let key = ApiKey {
                id: next_id(&mut state.last_key_id),
                user_id,
                public_id: new.public_id,
                secret_hash: new.secret_hash,
                last4: new.last4,
                policy: new.policy,
                usage: KeyUsage::default(),
                batch_id: new.batch_id,
                imported,
                created_at: now,
                updated_at: now,
            };
            state.keys.insert(key.id, KeyRow { key: key.clone(), holds: KeyHolds::default() });
            created.push(key);
        }
        Ok(created)
    }

    /// Changes one key under the lock, stamps `updated_at` and returns the result.
    fn update_key_with(&self, id: KeyId, change: impl FnOnce(&mut ApiKey)) -> Result<ApiKey, StoreError> {
        let mut state = self.lock()?;
        let key = &mut state.keys.get_mut(&id).ok_or(StoreError::NotFound)?.key;
        change(key);
        key.updated_at = Utc::now();
        Ok(key.clone())
    }
}

/// Whether `key` passes `query`'s filters.
fn matches(key: &ApiKey, query: &KeyQuery) -> bool {
    query.user_id.is_none_or(|id| id == key.user_id)
        && query.batch_id.as_ref().is_none_or(|batch| key.batch_id.as_ref() == Some(batch))
        && query.status.is_none_or(|status| status == key.policy.status)
}

#[async_trait]
impl KeyStore for MemoryStore {
    async fn create_keys(&self, user_id: UserId, keys: Vec<NewKey>) -> Result<Vec<ApiKey>, StoreError> {
        self.insert_keys(keys.into_iter().map(|key| (user_id, key)).collect(), false)
    }

    async fn key(&self, id: KeyId) -> Result<Option<ApiKey>, StoreError> {
        Ok(self.lock()?.keys.get(&id).map(|row| row.key.clone()))
    }

    async fn key_by_public_id(&self, public_id: &str) -> Result<Option<ApiKey>, StoreError> {
        Ok(self.lock()?.keys.values().map(|row| &row.key).find(|key| key.public_id == public_id).cloned())
    }

    async fn list_keys(&self, query: &KeyQuery, page: PageRequest) -> Result<Page<ApiKey>, StoreError> {
        let state = self.lock()?;
        Ok(page_of(state.keys.values().rev().map(|row| &row.key).filter(|key| matches(key, query)), page))
    }

    async fn update_key(&self, id: KeyId, patch: &KeyPatch) -> Result<ApiKey, StoreError> {
        self.update_key_with(id, |key| patch.apply_to(&mut key.policy))
    }

    async fn delete_key(&self, id: KeyId) -> Result<(), StoreError> {
        self.lock()?.keys.remove(&id).map(drop).ok_or(StoreError::NotFound)
    }

    async fn reset_key_usage(&self, id: KeyId) -> Result<ApiKey, StoreError> {
        self.update_key_with(id, |key| key.usage = KeyUsage::default())
    }

    async fn import_keys(&self, keys: Vec<(UserId, NewKey)>) -> Result<Vec<ApiKey>, StoreError> {
        self.insert_keys(keys, true)
    }
}
