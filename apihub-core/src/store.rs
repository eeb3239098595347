//! Storage traits: object-safe and async, so a server can hold `Arc<dyn Store>`.
//!
//! The gateway server implements them with diesel on SQLite and PostgreSQL; `apihub-tower`
//! implements them in memory. Every method that moves credit is atomic: an implementation applies
//! the [`ledger`](crate::ledger) deltas with one conditional update and writes the row in the same
//! transaction, so concurrent callers can never overspend.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::discount::DiscountRate;
use crate::key::SecretHash;
use crate::ledger::{Applied, LedgerError, LedgerOp, Transaction, TxType};
use crate::money::Money;
use crate::policy::{ApiKey, KeyId, KeyPatch, KeyPolicy, KeyStatus};
use crate::user::{NewUser, Role, User, UserId, UserStatus};

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such row (or not visible to the caller).
    #[error("not found")]
    NotFound,
    /// A unique value is taken, or an order number was used for a different operation.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The ledger refused the operation; nothing changed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A value the database cannot store (PostgreSQL refuses NUL characters in text).
    #[error("invalid value: {0}")]
    Invalid(String),
    /// The database could not be reached (pool exhausted, connection refused).
    #[error("storage unavailable: {0}")]
    Unavailable(#[source] Detail),
    /// Anything else the database reported.
    #[error("storage error: {0}")]
    Internal(#[source] Detail),
}

/// What a storage failure says, with the error that caused it when there is one (a driver's,
/// a pool's), so that logs and callers can walk the whole chain of
/// [`source`](std::error::Error::source)s.
#[derive(Debug)]
pub struct Detail {
    message: String,
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Detail {
    /// A failure described by `error`, kept as its source.
    pub fn caused_by(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Detail { message: error.to_string(), cause: Some(Box::new(error)) }
    }

    /// What the failure says.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<String> for Detail {
    fn from(message: String) -> Self {
        Detail { message, cause: None }
    }
}

impl From<&str> for Detail {
    fn from(message: &str) -> Self {
        Detail::from(message.to_owned())
    }
}

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Detail {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|cause| cause as &(dyn std::error::Error + 'static))
    }
}

/// Which page of a listing, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Page number, from 1.
    pub page: u32,
    /// Rows per page, 1 to [`PageRequest::MAX_PAGE_SIZE`].
    pub page_size: u32,
}

impl PageRequest {
    /// Largest page size served.
    pub const MAX_PAGE_SIZE: u32 = 200;

    /// Rows to skip.
    pub fn offset(&self) -> i64 {
        i64::from(self.page.saturating_sub(1)) * i64::from(self.page_size)
    }

    /// Rows to return.
    pub fn limit(&self) -> i64 {
        i64::from(self.page_size)
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest { page: 1, page_size: 20 }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Rows matching in all.
    pub total: u64,
    /// The request that produced it.
    pub request: PageRequest,
}

impl<T> Page<T> {
    /// Maps the rows, keeping the counts.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), total: self.total, request: self.request }
    }
}

/// Filters for listing users.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    /// Case-insensitive substring of the username or email.
    pub search: Option<String>,
    /// Only this role.
    pub role: Option<Role>,
    /// Only this status.
    pub status: Option<UserStatus>,
}

/// Filters for listing keys.
#[derive(Debug, Clone, Default)]
pub struct KeyQuery {
    /// Only this owner's keys.
    pub user_id: Option<UserId>,
    /// Only keys of this batch.
    pub batch_id: Option<String>,
    /// Only keys with this status.
    pub status: Option<KeyStatus>,
}

/// A key to insert; the secret itself is never stored.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// Public id, unique.
    pub public_id: String,
    /// SHA-256 of the secret.
    pub secret_hash: SecretHash,
    /// Last four characters of the secret.
    pub last4: String,
    /// Limits.
    pub policy: KeyPolicy,
    /// The batch it belongs to.
    pub batch_id: Option<String>,
}

/// Users and their credentials.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Inserts a user; [`StoreError::Conflict`] when the username is taken.
    async fn create_user(&self, user: NewUser) -> Result<User, StoreError>;
    /// A user by id.
    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError>;
    /// A user and their password hash, by username (for login).
    async fn credentials(&self, username: &str) -> Result<Option<(User, String)>, StoreError>;
    /// Users matching `query`, newest first.
    async fn list_users(&self, query: &UserQuery, page: PageRequest) -> Result<Page<User>, StoreError>;
    /// Enables or disables a user; disabling revokes their session tokens.
    async fn set_user_status(&self, id: UserId, status: UserStatus) -> Result<User, StoreError>;
    /// Sets a user's discount rate.
    async fn set_user_discount(&self, id: UserId, rate: DiscountRate) -> Result<User, StoreError>;
    /// Replaces a password hash and revokes earlier session tokens.
    async fn set_password(&self, id: UserId, password_hash: &str) -> Result<User, StoreError>;
    /// How many administrators exist.
    async fn count_admins(&self) -> Result<u64, StoreError>;
}

/// API keys: policies and counters.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Inserts keys for a user, all or none.
    async fn create_keys(&self, user_id: UserId, keys: Vec<NewKey>) -> Result<Vec<ApiKey>, StoreError>;
    /// A key by id.
    async fn key(&self, id: KeyId) -> Result<Option<ApiKey>, StoreError>;
    /// A key by public id (for authentication).
    async fn key_by_public_id(&self, public_id: &str) -> Result<Option<ApiKey>, StoreError>;
    /// Keys matching `query`, newest first.
    async fn list_keys(&self, query: &KeyQuery, page: PageRequest) -> Result<Page<ApiKey>, StoreError>;
    /// Changes a key's policy.
    async fn update_key(&self, id: KeyId, patch: &KeyPatch) -> Result<ApiKey, StoreError>;
    /// Deletes a key.
    async fn delete_key(&self, id: KeyId) -> Result<(), StoreError>;
    /// Zeroes a key's usage counters.
    async fn reset_key_usage(&self, id: KeyId) -> Result<ApiKey, StoreError>;
    /// Inserts keys imported from another system (flagged `imported`), each for its owner, all or
    /// none: [`StoreError::Conflict`] when a public id is taken, [`StoreError::NotFound`] when an
    /// owner does not exist.
    async fn import_keys(&self, keys: Vec<(UserId, NewKey)>) -> Result<Vec<ApiKey>, StoreError>;
}

/// The credit ledger.
#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// Applies `op` to a user's account atomically with its row.
    ///
    /// With an order number the call is idempotent: the same user, kind and amount again returns
    /// the first row with `replayed = true`; anything else under that number is a conflict.
    async fn apply(&self, user_id: UserId, op: LedgerOp) -> Result<Applied, StoreError>;
    /// Ledger rows, newest first, for one user or (with `None`) everyone.
    async fn transactions(
        &self,
        user_id: Option<UserId>,
        tx_type: Option<TxType>,
        page: PageRequest,
    ) -> Result<Page<Transaction>, StoreError>;
}

/// Whether a request's token counts came from the upstream or were estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageSource {
    /// Reported by the upstream.
    Reported,
    /// Estimated by the gateway because the upstream reported nothing.
    Estimated,
}

/// One request through the gateway, as the usage log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    /// The gateway's request id.
    pub request_id: String,
    /// Whose request.
    pub user_id: UserId,
    /// With which key.
    pub key_id: KeyId,
    /// The model asked for.
    pub model: String,
    /// The path called, e.g. `/v1/chat/completions`.
    pub endpoint: String,
    /// The metered route it came through, if any (see [`route`](crate::route)).
    pub route_id: Option<crate::route::RouteId>,
    /// Whether the response streamed.
    pub stream: bool,
    /// Input tokens.
    pub prompt_tokens: i64,
    /// Output tokens.
    pub completion_tokens: i64,
    /// Input tokens served from cache.
    pub cached_tokens: i64,
    /// Cost before discounts.
    pub raw_cost: Money,
    /// The user's rate at the time.
    pub user_discount: DiscountRate,
    /// The key's rate at the time.
    pub key_discount: DiscountRate,
    /// What was charged.
    pub charged: Money,
    /// The part of the charge above the request's hold (usage the hold did not foresee).
    pub overage: Money,
    /// The HTTP status returned to the client.
    pub status: u16,
    /// Time spent waiting on the upstream, in milliseconds.
    pub upstream_latency_ms: i64,
    /// Time from forwarding the request to the first byte of the response body, in
    /// milliseconds (a stream's first event); `None` when no body byte arrived.
    pub first_byte_ms: Option<i64>,
    /// Reported or estimated.
    pub usage_source: UsageSource,
    /// When the request started.
    pub created_at: DateTime<Utc>,
    /// The upstream channel that answered, when the gateway has several (see
    /// [`channel`](crate::channel)).
    pub channel: Option<String>,
    /// Upstreams tried, the one that answered included (1 without failover).
    pub attempts: u32,
    /// What the operator pays for it: the answering channel's cost price for the model applied
    /// to the usage billed, with no discount; `None` when the channel has no cost price for it.
    pub cost: Option<Money>,
}

/// The per-request usage log.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Appends a batch of records.
    async fn record_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError>;
    /// Records for a user (or everyone), newest first.
    async fn usage(&self, user_id: Option<UserId>, page: PageRequest) -> Result<Page<UsageRecord>, StoreError>;
}

/// Model prices, keyed by model name.
#[async_trait]
pub trait PriceStore: Send + Sync {
    /// Every priced model, sorted by name.
    async fn prices(&self) -> Result<Vec<(String, crate::pricing::ModelPrice)>, StoreError>;
    /// Sets (inserts or replaces) a model's price.
    async fn set_price(&self, model: &str, price: &crate::pricing::ModelPrice) -> Result<(), StoreError>;
    /// Removes a model's price; [`StoreError::NotFound`] when it had none.
    async fn delete_price(&self, model: &str) -> Result<(), StoreError>;
}

/// Everything a gateway stores, as one object.
pub trait Store:
    AuthStore + crate::lookup::KeyLookup + LedgerStore + UsageStore + PriceStore + crate::billing::BillingStore
{
}

impl<T: AuthStore + LedgerStore + UsageStore + PriceStore + crate::billing::BillingStore> Store for T {}

/// What API-key authentication reads: keys and their owners.
pub trait AuthStore: KeyStore + UserStore {}

impl<T: KeyStore + UserStore + ?Sized> AuthStore for T {}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn a_storage_error_keeps_the_error_that_caused_it() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let error = StoreError::Unavailable(Detail::caused_by(refused));
        assert_eq!(error.to_string(), "storage unavailable: connection refused");
        let detail = error.source().expect("the detail");
        let cause = detail.source().expect("the driver's error");
        assert_eq!(
            cause.downcast_ref::<std::io::Error>().map(std::io::Error::kind),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
        assert!(StoreError::Internal("no cause".into()).source().and_then(Error::source).is_none());
    }
}
