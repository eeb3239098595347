//! API keys on SQL.

use apihub_core::DiscountRate;
use apihub_core::Money;
use apihub_core::key::SecretHash;
use apihub_core::policy::{ApiKey, KeyId, KeyPatch, KeyPolicy, KeyStatus, KeyUsage};
use apihub_core::store::{Detail, KeyQuery, KeyStore, NewKey, Page, PageRequest, StoreError};
use apihub_core::user::UserId;
use async_trait::async_trait;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::engine::Touched;
use super::schema::api_keys;
use super::{SqlStore, corrupt, from_millis, load_page, now_millis, with_conn, write_tx};

/// An `api_keys` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys)]
pub(crate) struct KeyRow {
    id: i64,
    user_id: i64,
    public_id: String,
    secret_hash: String,
    last4: String,
    name: String,
    status: String,
    expires_at: Option<i64>,
    rate_limit: Option<i32>,
    rate_limit_day: Option<i32>,
    token_limit: Option<i64>,
    quota_limit: Option<i64>,
    remaining_calls: Option<i64>,
    allowed_models: String,
    discount_ppm: i32,
    batch_id: Option<String>,
    tokens_used: i64,
    quota_used: i64,
    calls_total: i64,
    calls_succeeded: i64,
    created_at: i64,
    updated_at: i64,
    imported: bool,
}

/// The policy columns, written whole on insert and update.
#[derive(Insertable, AsChangeset)]
#[diesel(table_name = api_keys, treat_none_as_null = true, treat_none_as_default_value = false)]
struct PolicyColumns {
    name: String,
    status: &'static str,
    expires_at: Option<i64>,
    rate_limit: Option<i32>,
    rate_limit_day: Option<i32>,
    token_limit: Option<i64>,
    quota_limit: Option<i64>,
    remaining_calls: Option<i64>,
    allowed_models: String,
    discount_ppm: i32,
    updated_at: i64,
}

impl PolicyColumns {
    fn of(policy: &KeyPolicy, now: i64) -> Result<Self, StoreError> {
        let limit = |v: Option<u32>| {
            v.map(i32::try_from).transpose().map_err(|_| StoreError::Internal("rate limit out of range".into()))
        };
        Ok(PolicyColumns {
            name: policy.name.clone(),
            status: key_status_str(policy.status),
            expires_at: policy.expires_at.map(|t| t.timestamp_millis()),
            rate_limit: limit(policy.rate_limit)?,
            rate_limit_day: limit(policy.rate_limit_day)?,
            token_limit: policy.token_limit,
            quota_limit: policy.quota_limit.map(Money::micros),
            remaining_calls: policy.remaining_calls,
            allowed_models: serde_json::to_string(&policy.allowed_models)
                .map_err(|e| StoreError::Internal(Detail::caused_by(e)))?,
            discount_ppm: policy.discount_rate.ppm() as i32,
            updated_at: now,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = api_keys, treat_none_as_default_value = false)]
struct NewKeyRow {
    user_id: i64,
    public_id: String,
    secret_hash: String,
    last4: String,
    batch_id: Option<String>,
    created_at: i64,
    imported: bool,
    #[diesel(embed)]
    policy: PolicyColumns,
}

fn key_status_str(status: KeyStatus) -> &'static str {
    match status {
        KeyStatus::Active => "active",
        KeyStatus::Disabled => "disabled",
    }
}

impl KeyRow {
    fn into_domain(self) -> Result<ApiKey, StoreError> {
        let status = match self.status.as_str() {
            "active" => KeyStatus::Active,
            "disabled" => KeyStatus::Disabled,
            other => return Err(corrupt("key status", other)),
        };
        let limit =
            |v: Option<i32>| v.map(u32::try_from).transpose().map_err(|_| corrupt("rate limit", v.unwrap_or_default()));
        let discount_rate = u32::try_from(self.discount_ppm)
            .ok()
            .and_then(|ppm| DiscountRate::from_ppm(ppm).ok())
            .ok_or_else(|| corrupt("discount", self.discount_ppm))?;
        let allowed_models: Vec<String> =
            serde_json::from_str(&self.allowed_models).map_err(|_| corrupt("allowed_models", &self.allowed_models))?;
        let secret_hash = SecretHash::from_hex(&self.secret_hash).ok_or_else(|| corrupt("secret hash", "…"))?;
        Ok(ApiKey {
            id: self.id,
            user_id: self.user_id,
            public_id: self.public_id,
            secret_hash,
            last4: self.last4,
            policy: KeyPolicy {
                name: self.name,
                status,
                expires_at: self.expires_at.map(from_millis),
                rate_limit: limit(self.rate_limit)?,
                rate_limit_day: limit(self.rate_limit_day)?,
                token_limit: self.token_limit,
                quota_limit: self.quota_limit.map(Money::from_micros),
                remaining_calls: self.remaining_calls,
                allowed_models,
                discount_rate,
            },
            usage: KeyUsage {
                tokens_used: self.tokens_used,
                quota_used: Money::from_micros(self.quota_used),
                calls_total: self.calls_total,
                calls_succeeded: self.calls_succeeded,
            },
            batch_id: self.batch_id,
            imported: self.imported,
            created_at: from_millis(self.created_at),
            updated_at: from_millis(self.updated_at),
        })
    }
}

/// Applies the filters of a [`KeyQuery`] to a boxed `api_keys` query (used for rows and count).
macro_rules! filtered_keys {
    ($query:expr) => {{
        let query: &KeyQuery = $query;
        let mut q = api_keys::table.into_boxed();
        if let Some(user_id) = query.user_id {
            q = q.filter(api_keys::user_id.eq(user_id));
        }
        if let Some(batch_id) = query.batch_id.clone() {
            q = q.filter(api_keys::batch_id.eq(batch_id));
        }
        if let Some(status) = query.status {
            q = q.filter(api_keys::status.eq(key_status_str(status)));
        }
        q
    }};
}

impl SqlStore {
    /// Inserts keys, each for its owner, all or none.
    async fn insert_keys(&self, keys: Vec<(UserId, NewKey)>, imported: bool) -> Result<Vec<ApiKey>, StoreError> {
        let now = now_millis();
        let rows = keys
            .into_iter()
            .map(|(user_id, k)| {
                Ok(NewKeyRow {
                    user_id,
                    public_id: k.public_id,
                    secret_hash: k.secret_hash.to_hex(),
                    last4: k.last4,
                    batch_id: k.batch_id,
                    created_at: now,
                    imported,
                    policy: PolicyColumns::of(&k.policy, now)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // One statement per key inside one transaction: all or none, and portable (diesel's
        // multi-row insert on SQLite cannot return rows).
        let created: Vec<KeyRow> = write_tx!(self, |conn| {
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(
                    diesel::insert_into(api_keys::table)
                        .values(row)
                        .returning(KeyRow::as_returning())
                        .get_result(conn)
                        .await?,
                );
            }
            Ok(out)
        })?;
        rows_to_keys(created)
    }
}

fn rows_to_keys(rows: Vec<KeyRow>) -> Result<Vec<ApiKey>, StoreError> {
    rows.into_iter().map(KeyRow::into_domain).collect()
}

#[async_trait]
impl KeyStore for SqlStore {
    async fn create_keys(&self, user_id: UserId, keys: Vec<NewKey>) -> Result<Vec<ApiKey>, StoreError> {
        self.insert_keys(keys.into_iter().map(|key| (user_id, key)).collect(), false).await
    }

    async fn key(&self, id: KeyId) -> Result<Option<ApiKey>, StoreError> {
        let row: Option<KeyRow> = with_conn!(self, |conn| {
            Ok(api_keys::table.find(id).select(KeyRow::as_select()).first(conn).await.optional()?)
        })?;
        row.map(KeyRow::into_domain).transpose()
    }

    async fn key_by_public_id(&self, public_id: &str) -> Result<Option<ApiKey>, StoreError> {
        // Authentication: the key's counters may lag its unwritten settlements by one batch
        // window; the credit engine, not this snapshot, enforces its limits.
        let row: Option<KeyRow> = with_conn!(lagging self, |conn| {
            Ok(api_keys::table
                .filter(api_keys::public_id.eq(public_id))
                .select(KeyRow::as_select())
                .first(conn)
                .await
                .optional()?)
        })?;
        row.map(KeyRow::into_domain).transpose()
    }

    async fn list_keys(&self, query: &KeyQuery, page: PageRequest) -> Result<Page<ApiKey>, StoreError> {
        load_page!(self, page, filtered_keys!(query), api_keys::id.desc(), KeyRow)
    }

    async fn update_key(&self, id: KeyId, patch: &KeyPatch) -> Result<ApiKey, StoreError> {
        let write = async || {
            write_tx!(self, |conn| {
                let current = api_keys::table.find(id).select(KeyRow::as_select()).first(conn).await?;
                let mut policy = current.into_domain()?.policy;
                patch.apply_to(&mut policy);
                let columns = PolicyColumns::of(&policy, now_millis())?;
                Ok(diesel::update(api_keys::table.find(id))
                    .set(&columns)
                    .returning(KeyRow::as_returning())
                    .get_result(conn)
                    .await?)
            })
        };
        let row: KeyRow = self.account_write(None, write, |_| Touched::key(id)).await?;
        row.into_domain()
    }

    async fn delete_key(&self, id: KeyId) -> Result<(), StoreError> {
        let write =
            async || write_tx!(self, |conn| { Ok(diesel::delete(api_keys::table.find(id)).execute(conn).await?) });
        let deleted: usize =
            self.account_write(None, write, |_| Touched { deleted_keys: vec![id], ..Touched::default() }).await?;
        if deleted == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    async fn reset_key_usage(&self, id: KeyId) -> Result<ApiKey, StoreError> {
        let write = async || {
            write_tx!(self, |conn| {
                Ok(diesel::update(api_keys::table.find(id))
                    .set((
                        api_keys::tokens_used.eq(0),
                        api_keys::quota_used.eq(0),
                        api_keys::calls_total.eq(0),
                        api_keys::calls_succeeded.eq(0),
                        api_keys::updated_at.eq(now_millis()),
                    ))
                    .returning(KeyRow::as_returning())
                    .get_result(conn)
                    .await?)
            })
        };
        let row: KeyRow = self.account_write(None, write, |_| Touched::key(id)).await?;
        row.into_domain()
    }

    async fn import_keys(&self, keys: Vec<(UserId, NewKey)>) -> Result<Vec<ApiKey>, StoreError> {
        self.insert_keys(keys, true).await
    }
}
