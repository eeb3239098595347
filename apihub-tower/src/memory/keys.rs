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

#[cfg(test)]
mod tests {
    use apihub_core::Money;
    use apihub_core::key::GeneratedKey;
    use apihub_core::policy::{KeyPolicy, KeyStatus};
    use apihub_core::user::Role;

    use super::super::register;
    use super::*;

    fn new_key(public_id: &str, batch_id: Option<&str>) -> NewKey {
        let generated = GeneratedKey::generate();
        NewKey {
            public_id: public_id.into(),
            secret_hash: generated.secret_hash,
            last4: generated.last4,
            policy: KeyPolicy { name: public_id.into(), ..KeyPolicy::default() },
            batch_id: batch_id.map(Into::into),
        }
    }

    #[tokio::test]
    async fn keys_are_created_all_or_none() {
        let store = MemoryStore::new();
        let alice = register(&store, "alice", Role::User).await;
        let created = store.create_keys(alice.id, vec![new_key("a", None), new_key("b", None)]).await.unwrap();
        assert_eq!(created.iter().map(|k| (k.id, k.user_id)).collect::<Vec<_>>(), [(1, alice.id), (2, alice.id)]);
        assert_eq!(created[0].usage, KeyUsage::default());
        assert_eq!(created[0].created_at, created[0].updated_at);

        let clash_with_stored = store.create_keys(alice.id, vec![new_key("c", None), new_key("a", None)]).await;
        assert!(matches!(clash_with_stored, Err(StoreError::Conflict(_))));
        let clash_in_batch = store.create_keys(alice.id, vec![new_key("d", None), new_key("d", None)]).await;
        assert!(matches!(clash_in_batch, Err(StoreError::Conflict(_))));
        assert_eq!(store.key_by_public_id("c").await.unwrap(), None);
        assert_eq!(store.key_by_public_id("d").await.unwrap(), None);
        assert!(matches!(store.create_keys(99, vec![new_key("e", None)]).await, Err(StoreError::NotFound)));

        assert_eq!(store.key_by_public_id("b").await.unwrap(), Some(created[1].clone()));
        assert_eq!(store.key(1).await.unwrap(), Some(created[0].clone()));
        assert!(store.create_keys(alice.id, Vec::new()).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn listing_filters_and_pages_newest_first() {
        let store = MemoryStore::new();
        let alice = register(&store, "alice", Role::User).await;
        let bob = register(&store, "bob", Role::User).await;
        let batch: Vec<_> = (0..5).map(|i| new_key(&format!("batch{i}"), Some("b1"))).collect();
        store.create_keys(alice.id, batch).await.unwrap();
        store.create_keys(alice.id, vec![new_key("loose", None)]).await.unwrap();
        store.create_keys(bob.id, vec![new_key("bobs", Some("b1"))]).await.unwrap();
        let off = KeyPatch { status: Some(KeyStatus::Disabled), ..KeyPatch::default() };
        store.update_key(2, &off).await.unwrap();

        let all = store.list_keys(&KeyQuery::default(), PageRequest { page: 1, page_size: 3 }).await.unwrap();
        assert_eq!((all.total, all.items.iter().map(|k| k.id).collect::<Vec<_>>()), (7, vec![7, 6, 5]));
        let alices = KeyQuery { user_id: Some(alice.id), ..KeyQuery::default() };
        let page2 = store.list_keys(&alices, PageRequest { page: 2, page_size: 4 }).await.unwrap();
        assert_eq!((page2.total, page2.items.iter().map(|k| k.id).collect::<Vec<_>>()), (6, vec![2, 1]));
        let b1 = KeyQuery { batch_id: Some("b1".into()), ..KeyQuery::default() };
        assert_eq!(store.list_keys(&b1, PageRequest::default()).await.unwrap().total, 6);
        let alices_b1_disabled = KeyQuery { status: Some(KeyStatus::Disabled), ..b1.clone() };
        let found = store.list_keys(&alices_b1_disabled, PageRequest::default()).await.unwrap();
        assert_eq!((found.total, found.items[0].id), (1, 2));
    }

    #[tokio::test]
    async fn updates_apply_the_patch() {
        let store = MemoryStore::new();
        let alice = register(&store, "alice", Role::User).await;
        let key = store.create_keys(alice.id, vec![new_key("a", None)]).await.unwrap().remove(0);
        let patch = KeyPatch {
            name: Some("renamed".into()),
            quota_limit: Some(Some(Money::from_credits(3))),
            allowed_models: Some(vec!["gpt-4o".into()]),
            ..KeyPatch::default()
        };
        let updated = store.update_key(key.id, &patch).await.unwrap();
        let mut expected = key.policy.clone();
        patch.apply_to(&mut expected);
        assert_eq!(updated.policy, expected);
        assert!(updated.updated_at >= key.updated_at);
        assert_eq!(updated.created_at, key.created_at);
        assert_eq!(store.key(key.id).await.unwrap(), Some(updated));
        assert!(matches!(store.update_key(99, &patch).await, Err(StoreError::NotFound)));
    }

    #[tokio::test]
    async fn usage_resets_and_keys_delete() {
        let store = MemoryStore::new();
        let alice = register(&store, "alice", Role::User).await;
        let key = store.create_keys(alice.id, vec![new_key("a", None)]).await.unwrap().remove(0);
        let used = KeyUsage { tokens_used: 10, quota_used: Money::from_credits(1), calls_total: 3, calls_succeeded: 2 };
        store.lock().unwrap().keys.get_mut(&key.id).unwrap().key.usage = used;

        let reset = store.reset_key_usage(key.id).await.unwrap();
        assert_eq!(reset.usage, KeyUsage::default());
        assert_eq!(reset.policy, key.policy);
        assert!(matches!(store.reset_key_usage(99).await, Err(StoreError::NotFound)));

        store.delete_key(key.id).await.unwrap();
        assert_eq!(store.key(key.id).await.unwrap(), None);
        assert_eq!(store.key_by_public_id("a").await.unwrap(), None);
        assert!(matches!(store.delete_key(key.id).await, Err(StoreError::NotFound)));
        // A deleted key's id is not handed out again.
        assert_eq!(store.create_keys(alice.id, vec![new_key("a", None)]).await.unwrap()[0].id, 2);
    }
}
