//! What a key may do (its policy) and what it has done (its usage counters).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::discount::DiscountRate;
use crate::money::Money;
use crate::user::UserId;

/// A key's numeric id.
pub type KeyId = i64;

/// Whether a key may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Refused until re-activated.
    Disabled,
}

/// The limits an operator or user puts on a key. `None` means unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Display name.
    pub name: String,
    /// Active or disabled.
    pub status: KeyStatus,
    /// After this instant the key is refused.
    pub expires_at: Option<DateTime<Utc>>,
    /// Requests per minute.
    pub rate_limit: Option<u32>,
    /// Requests per day.
    pub rate_limit_day: Option<u32>,
    /// Lifetime tokens.
    pub token_limit: Option<i64>,
    /// Lifetime credits.
    pub quota_limit: Option<Money>,
    /// Calls left; only successful calls decrement it.
    pub remaining_calls: Option<i64>,
    /// Models the key may call; empty means all.
    pub allowed_models: Vec<String>,
    /// The key's discount, applied with the user's.
    pub discount_rate: DiscountRate,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        KeyPolicy {
            name: String::new(),
            status: KeyStatus::Active,
            expires_at: None,
            rate_limit: None,
            rate_limit_day: None,
            token_limit: None,
            quota_limit: None,
            remaining_calls: None,
            allowed_models: Vec::new(),
            discount_rate: DiscountRate::FULL_PRICE,
        }
    }
}

impl KeyPolicy {
    /// Whether `model` is on the allow-list (an empty list allows every model).
    pub fn allows_model(&self, model: &str) -> bool {
        self.allowed_models.is_empty() || self.allowed_models.iter().any(|m| m == model)
    }

    /// Whether the key has expired at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// What a key has consumed over its life (until a reset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyUsage {
    /// Tokens billed.
    pub tokens_used: i64,
    /// Credits charged.
    pub quota_used: Money,
    /// Calls made.
    pub calls_total: i64,
    /// Calls that succeeded.
    pub calls_succeeded: i64,
}

/// A key as stored: never the secret, only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Primary key.
    pub id: KeyId,
    /// Owner.
    pub user_id: UserId,
    /// The public part of the key, unique.
    pub public_id: String,
    /// SHA-256 of the secret.
    pub secret_hash: crate::key::SecretHash,
    /// Last four characters of the secret, for display.
    pub last4: String,
    /// Limits.
    pub policy: KeyPolicy,
    /// Counters.
    pub usage: KeyUsage,
    /// The batch that created it, if any.
    pub batch_id: Option<String>,
    /// Imported from another system with its own string (see [`ImportedKey`](crate::key::ImportedKey)).
    pub imported: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change of policy or counters.
    pub updated_at: DateTime<Utc>,
}

/// A change to a key's policy; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPatch {
    /// New name.
    pub name: Option<String>,
    /// New status.
    pub status: Option<KeyStatus>,
    /// New expiry.
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// New per-minute limit.
    pub rate_limit: Option<Option<u32>>,
    /// New per-day limit.
    pub rate_limit_day: Option<Option<u32>>,
    /// New token limit.
    pub token_limit: Option<Option<i64>>,
    /// New credit limit.
    pub quota_limit: Option<Option<Money>>,
    /// New call counter.
    pub remaining_calls: Option<Option<i64>>,
    /// New allow-list.
    pub allowed_models: Option<Vec<String>>,
    /// New discount (admins only; the server enforces who may set it).
    pub discount_rate: Option<DiscountRate>,
}

impl KeyPatch {
    /// Applies the patch to a policy.
    pub fn apply_to(&self, policy: &mut KeyPolicy) {
        if let Some(v) = &self.name {
            policy.name.clone_from(v);
        }
        if let Some(v) = self.status {
            policy.status = v;
        }
        if let Some(v) = self.expires_at {
            policy.expires_at = v;
        }
        if let Some(v) = self.rate_limit {
            policy.rate_limit = v;
        }
        if let Some(v) = self.rate_limit_day {
            policy.rate_limit_day = v;
        }
        if let Some(v) = self.token_limit {
            policy.token_limit = v;
        }
        if let Some(v) = self.quota_limit {
            policy.quota_limit = v;
        }
        if let Some(v) = self.remaining_calls {
            policy.remaining_calls = v;
        }
        if let Some(v) = &self.allowed_models {
            policy.allowed_models.clone_from(v);
        }
        if let Some(v) = self.discount_rate {
            policy.discount_rate = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_allow_list_allows_all() {
        let mut policy = KeyPolicy::default();
        assert!(policy.allows_model("gpt-4o"));
        policy.allowed_models = vec!["claude-sonnet".into()];
        assert!(!policy.allows_model("gpt-4o"));
        assert!(policy.allows_model("claude-sonnet"));
    }

    #[test]
    fn patch_sets_and_clears() {
        let mut policy = KeyPolicy { rate_limit: Some(10), ..KeyPolicy::default() };
        KeyPatch { rate_limit: Some(None), name: Some("n".into()), ..KeyPatch::default() }.apply_to(&mut policy);
        assert_eq!(policy.rate_limit, None);
        assert_eq!(policy.name, "n");
    }
}
