//! What key authentication needs from storage: one lookup, returning a slim [`KeyRecord`].

use async_trait::async_trait;

use crate::DiscountRate;
use crate::key::SecretHash;
use crate::policy::{KeyId, KeyPolicy, KeyUsage};
use crate::store::{KeyStore, StoreError, UserStore};
use crate::user::{UserId, UserStatus};

/// A key as key authentication sees it: whose it is, what it may do, what it has used, and the
/// hash its presented form must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The key's id (what holds and usage records name).
    pub key_id: KeyId,
    /// Its owner.
    pub user_id: UserId,
    /// SHA-256 of what the key format verifies (the secret part of an `ahg_` key; the whole
    /// string for a key looked up by its hash).
    pub secret_hash: SecretHash,
    /// Limits, allowed models, status, expiry and the key's discount.
    pub policy: KeyPolicy,
    /// Counters as the store last saw them.
    pub usage: KeyUsage,
    /// Whether the owner may use the gateway (a disabled account's keys get a 403).
    pub owner_active: bool,
    /// The owner's discount.
    pub owner_discount: DiscountRate,
}

impl KeyRecord {
    /// A record for an active owner with no discount, the policy and counters at their defaults:
    /// adjust the fields an application keeps.
    pub fn new(key_id: KeyId, user_id: UserId, secret_hash: SecretHash) -> Self {
        KeyRecord {
            key_id,
            user_id,
            secret_hash,
            policy: KeyPolicy::default(),
            usage: KeyUsage::default(),
            owner_active: true,
            owner_discount: DiscountRate::FULL_PRICE,
        }
    }
}

/// Finds keys for authentication: the only storage key authentication (`apihub-tower`'s
/// admission) needs. Implement it over
/// an application's own table; stores that implement [`KeyStore`] and [`UserStore`] (the
/// in-memory store, the server's databases) have it already.
///
/// ```
/// use apihub_core::key::SecretHash;
/// use apihub_core::store::StoreError;
/// use apihub_core::async_trait;
/// use apihub_core::lookup::{KeyLookup, KeyRecord};
///
/// /// An application's keys: `(SHA-256 of the whole key, key id, owner id)`.
/// struct MyKeys(Vec<(SecretHash, i64, i64)>);
///
/// #[async_trait]
/// impl KeyLookup for MyKeys {
///     async fn lookup(&self, lookup_id: &str) -> Result<Option<KeyRecord>, StoreError> {
///         let found = self.0.iter().find(|(hash, _, _)| hash.to_hex() == lookup_id);
///         Ok(found.map(|(hash, key_id, owner)| KeyRecord::new(*key_id, *owner, hash.clone())))
///     }
/// }
/// ```
#[async_trait]
pub trait KeyLookup: Send + Sync {
    /// The key whose lookup id this is (an `ahg_` key's public id, or whatever the gateway's key
    /// format looks keys up by), or `None` for an unknown key (a 401).
    async fn lookup(&self, lookup_id: &str) -> Result<Option<KeyRecord>, StoreError>;
}

#[async_trait]
impl<T: KeyStore + UserStore + ?Sized> KeyLookup for T {
    async fn lookup(&self, public_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let Some(key) = self.key_by_public_id(public_id).await? else {
            return Ok(None);
        };
        let Some(user) = self.user(key.user_id).await? else {
            return Ok(None);
        };
        Ok(Some(KeyRecord {
            key_id: key.id,
            user_id: key.user_id,
            secret_hash: key.secret_hash,
            policy: key.policy,
            usage: key.usage,
            owner_active: user.status == UserStatus::Active,
            owner_discount: user.discount_rate,
        }))
    }
}
