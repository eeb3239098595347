//! `/api/keys/*`: a user's own API keys. Administrators may act on any key through these routes;
//! anyone else gets 404 for a key that is not theirs.

use std::collections::{BTreeMap, HashSet};

use apihub_core::key::GeneratedKey;
use apihub_core::policy::{ApiKey, KeyPatch, KeyPolicy, KeyStatus};
use apihub_core::store::{KeyQuery, NewKey};
use apihub_core::user::User;
use apihub_core::{DiscountRate, Money};
use axum::extract::State;
use chrono::{DateTime, Utc};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::views::names::ActiveStatus;
use super::views::{CreatedKey, KeyPage, KeyView, PageQuery, double_option, whole};
use crate::auth::CurrentUser;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

/// Most keys one batch may create.
pub const MAX_BATCH: u32 = 1000;
const MAX_NAME_LEN: usize = 100;
const MAX_MODELS: usize = 200;
const MAX_LIMIT: u32 = 1_000_000_000;

/// The limits a new key gets. Absent fields mean unlimited (or the default).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct KeyFields {
    /// Display name (at most 100 characters).
    #[schema(max_length = 100, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub name: Option<String>,
    /// After this instant the key is refused; must be in the future.
    pub expires_at: Option<DateTime<Utc>>,
    /// Requests per minute.
    #[serde(default, deserialize_with = "whole::option")]
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub rate_limit: Option<u32>,
    /// Requests per day.
    #[serde(default, deserialize_with = "whole::option")]
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub rate_limit_day: Option<u32>,
    /// Lifetime tokens.
    #[serde(default, deserialize_with = "whole::option")]
    #[schema(minimum = 0)]
    pub token_limit: Option<i64>,
    /// Lifetime credits (exact decimal, at most six fractional digits).
    #[schema(value_type = Option<f64>, minimum = 0, maximum = 999_999_999.999_999)]
    pub quota_limit: Option<Money>,
    /// Calls allowed; only successful calls count down.
    #[serde(default, deserialize_with = "whole::option")]
    #[schema(minimum = 0)]
    pub remaining_calls: Option<i64>,
    /// Models the key may call (at most 200); empty or absent = all.
    #[schema(max_items = 200)]
    pub allowed_models: Option<Vec<String>>,
    /// Administrators only: the key's discount, in (0, 1].
    #[schema(value_type = Option<f64>, exclusive_minimum = 0, maximum = 1)]
    pub discount_rate: Option<DiscountRate>,
}

/// Body of `POST /api/keys`: [`KeyFields`], and nothing else.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateKeyRequest {
    #[serde(flatten)]
    pub fields: KeyFields,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

/// Body of `POST /api/keys/batch`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct BatchCreateRequest {
    /// How many keys, 1 to 1000.
    #[serde(deserialize_with = "whole::required")]
    #[schema(minimum = 1, maximum = 1000)]
    pub count: u32,
    /// Names become `<prefix>-1`, `<prefix>-2`, …
    pub name_prefix: Option<String>,
    #[serde(flatten)]
    pub fields: KeyFields,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

/// The keys of a new batch, each shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchCreated {
    pub batch_id: String,
    pub keys: Vec<CreatedKey>,
}

/// Body of `PUT /api/keys/{key_id}`: only the fields to change; `null` clears a limit.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyRequest {
    #[schema(max_length = 100, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub name: Option<String>,
    #[schema(value_type = Option<ActiveStatus>, inline, example = "disabled")]
    pub status: Option<KeyStatus>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "whole::double_option")]
    #[schema(value_type = Option<u32>, minimum = 0, maximum = 1_000_000_000)]
    pub rate_limit: Option<Option<u32>>,
    #[serde(default, deserialize_with = "whole::double_option")]
    #[schema(value_type = Option<u32>, minimum = 0, maximum = 1_000_000_000)]
    pub rate_limit_day: Option<Option<u32>>,
    #[serde(default, deserialize_with = "whole::double_option")]
    #[schema(value_type = Option<i64>, minimum = 0)]
    pub token_limit: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<f64>, minimum = 0, maximum = 999_999_999.999_999)]
    pub quota_limit: Option<Option<Money>>,
    #[serde(default, deserialize_with = "whole::double_option")]
    #[schema(value_type = Option<i64>, minimum = 0)]
    pub remaining_calls: Option<Option<i64>>,
    #[schema(max_items = 200)]
    pub allowed_models: Option<Vec<String>>,
    /// Administrators only.
    #[schema(value_type = Option<f64>, exclusive_minimum = 0, maximum = 1)]
    pub discount_rate: Option<DiscountRate>,
}

/// Refuses fields a request type does not know, naming them.
pub(crate) fn reject_unknown(unknown: &BTreeMap<String, serde_json::Value>) -> Result<(), ApiError> {
    match unknown.keys().next() {
        None => Ok(()),
        Some(field) => Err(ApiError::Validation(format!("unknown field `{field}`"))),
    }
}

fn admin_only(field: &str, user: &User) -> Result<(), ApiError> {
    if user.is_admin() { Ok(()) } else { Err(ApiError::Forbidden(format!("only an administrator may set `{field}`"))) }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(ApiError::Validation(format!(
            "name must be at most {MAX_NAME_LEN} characters, without control characters"
        )));
    }
    Ok(())
}

fn check_limits(
    rate_limit: Option<u32>,
    rate_limit_day: Option<u32>,
    token_limit: Option<i64>,
    quota_limit: Option<Money>,
    remaining_calls: Option<i64>,
) -> Result<(), ApiError> {
    if rate_limit.is_some_and(|v| v > MAX_LIMIT) || rate_limit_day.is_some_and(|v| v > MAX_LIMIT) {
        return Err(ApiError::Validation(format!("rate limits must be at most {MAX_LIMIT}")));
    }
    if token_limit.is_some_and(|v| v < 0)
        || remaining_calls.is_some_and(|v| v < 0)
        || quota_limit.is_some_and(Money::is_negative)
    {
        return Err(ApiError::Validation("limits must not be negative".into()));
    }
    Ok(())
}

fn check_models(models: &[String]) -> Result<Vec<String>, ApiError> {
    if models.len() > MAX_MODELS {
        return Err(ApiError::Validation(format!("allowed_models holds at most {MAX_MODELS} models")));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(models.len());
    for model in models {
        let model = model.trim();
        if model.is_empty() || model.len() > 128 {
            return Err(ApiError::Validation("each allowed model must be 1 to 128 characters".into()));
        }
        if seen.insert(model.to_owned()) {
            out.push(model.to_owned());
        }
    }
    Ok(out)
}

fn check_expiry(expires_at: Option<DateTime<Utc>>) -> Result<(), ApiError> {
    if expires_at.is_some_and(|t| t <= Utc::now()) {
        return Err(ApiError::Validation("expires_at must be in the future".into()));
    }
    Ok(())
}

impl KeyFields {
    /// Validates the fields and builds a policy; `discount_rate` only from an administrator.
    pub(crate) fn into_policy(self, actor: &User, default_name: String) -> Result<KeyPolicy, ApiError> {
        if self.discount_rate.is_some() {
            admin_only("discount_rate", actor)?;
        }
        let name = self.name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()).unwrap_or(default_name);
        check_name(&name)?;
        check_limits(self.rate_limit, self.rate_limit_day, self.token_limit, self.quota_limit, self.remaining_calls)?;
        check_expiry(self.expires_at)?;
        Ok(KeyPolicy {
            name,
            status: KeyStatus::Active,
            expires_at: self.expires_at,
            rate_limit: self.rate_limit,
            rate_limit_day: self.rate_limit_day,
            token_limit: self.token_limit,
            quota_limit: self.quota_limit,
            remaining_calls: self.remaining_calls,
            allowed_models: check_models(self.allowed_models.as_deref().unwrap_or_default())?,
            discount_rate: self.discount_rate.unwrap_or(DiscountRate::FULL_PRICE),
        })
    }
}

impl UpdateKeyRequest {
    fn into_patch(self, actor: &User) -> Result<KeyPatch, ApiError> {
        if self.discount_rate.is_some() {
            admin_only("discount_rate", actor)?;
        }
        let name = self.name.map(|n| n.trim().to_owned());
        if let Some(name) = &name {
            if name.is_empty() {
                return Err(ApiError::Validation("name must not be empty".into()));
            }
            check_name(name)?;
        }
        check_limits(
            self.rate_limit.flatten(),
            self.rate_limit_day.flatten(),
            self.token_limit.flatten(),
            self.quota_limit.flatten(),
            self.remaining_calls.flatten(),
        )?;
        check_expiry(self.expires_at.flatten())?;
        Ok(KeyPatch {
            name,
            status: self.status,
            expires_at: self.expires_at,
            rate_limit: self.rate_limit,
            rate_limit_day: self.rate_limit_day,
            token_limit: self.token_limit,
            quota_limit: self.quota_limit,
            remaining_calls: self.remaining_calls,
            allowed_models: self.allowed_models.as_deref().map(check_models).transpose()?,
            discount_rate: self.discount_rate,
        })
    }
}

/// Generates and stores keys for `owner_id`; returns each with its whole key (shown once).
pub(crate) async fn issue_keys(
    state: &AppState,
    owner_id: i64,
    policies: Vec<KeyPolicy>,
    batch_id: Option<String>,
) -> Result<Vec<CreatedKey>, ApiError> {
    let mut plain = Vec::with_capacity(policies.len());
    let mut new = Vec::with_capacity(policies.len());
    for policy in policies {
        let generated = GeneratedKey::generate();
        new.push(NewKey {
            public_id: generated.public_id,
            secret_hash: generated.secret_hash,
            last4: generated.last4,
            policy,
            batch_id: batch_id.clone(),
        });
        plain.push(generated.plain);
    }
    let stored = state.store.create_keys(owner_id, new).await?;
    Ok(stored
        .into_iter()
        .zip(plain)
        .map(|(key, plain)| CreatedKey { key: plain.expose().to_owned(), info: key.into() })
        .collect())
}

/// Validates a batch request and issues its keys.
pub(crate) async fn issue_batch(
    state: &AppState,
    actor: &User,
    owner_id: i64,
    req: BatchCreateRequest,
) -> Result<BatchCreated, ApiError> {
    reject_unknown(&req.unknown)?;
    if req.count == 0 || req.count > MAX_BATCH {
        return Err(ApiError::Validation(format!("count must be between 1 and {MAX_BATCH}")));
    }
    let prefix = req.name_prefix.map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).unwrap_or_else(|| "key".into());
    check_name(&format!("{prefix}-{}", req.count))?;
    let template = KeyFields { name: Some(prefix.clone()), ..req.fields }.into_policy(actor, prefix.clone())?;
    let policies = (1..=req.count).map(|i| KeyPolicy { name: format!("{prefix}-{i}"), ..template.clone() }).collect();
    let batch_id = uuid::Uuid::new_v4().simple().to_string();
    let keys = issue_keys(state, owner_id, policies, Some(batch_id.clone())).await?;
    Ok(BatchCreated { batch_id, keys })
}

/// A key the caller may see: their own, or any for an administrator. Otherwise 404.
pub(crate) async fn visible_key(state: &AppState, user: &User, key_id: i64) -> Result<ApiKey, ApiError> {
    state
        .store
        .key(key_id)
        .await?
        .filter(|k| user.is_admin() || k.user_id == user.id)
        .ok_or_else(|| ApiError::not_found("key"))
}

/// Create a key. The whole key is in the response's `key` field, once.
#[utoipa::path(post, path = "/api/keys", tag = "keys", security(("bearer" = [])), request_body = CreateKeyRequest,
    responses((status = 201, body = CreatedKey), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_key(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Json(req): Json<CreateKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    reject_unknown(&req.unknown)?;
    let policy = req.fields.into_policy(&user, "default".into())?;
    let mut created = issue_keys(&state, user.id, vec![policy], None).await?;
    let key = created.pop().ok_or_else(|| ApiError::Internal("no key was created".into()))?;
    Ok((StatusCode::CREATED, Json(key)))
}

/// The caller's keys, newest first.
#[utoipa::path(get, path = "/api/keys", tag = "keys", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = KeyPage)))]
pub async fn list_keys(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(page): Query<PageQuery>,
) -> Result<Json<KeyPage>, ApiError> {
    let query = KeyQuery { user_id: Some(user.id), ..KeyQuery::default() };
    Ok(Json(state.store.list_keys(&query, page.request()?).await?.into()))
}

/// Create up to 1000 keys with the same limits; each whole key is shown once.
#[utoipa::path(post, path = "/api/keys/batch", tag = "keys", security(("bearer" = [])), request_body = BatchCreateRequest,
    responses((status = 201, body = BatchCreated), (status = 422, body = ErrorBody)))]
pub async fn create_batch(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Json(req): Json<BatchCreateRequest>,
) -> Result<(StatusCode, Json<BatchCreated>), ApiError> {
    let created = issue_batch(&state, &user, user.id, req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// The keys of one batch (without their secrets).
#[utoipa::path(get, path = "/api/keys/batch/{batch_id}", tag = "keys", security(("bearer" = [])), params(("batch_id" = String, Path), PageQuery),
    responses((status = 200, body = KeyPage), (status = 404, body = ErrorBody)))]
pub async fn get_batch(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(batch_id): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<Json<KeyPage>, ApiError> {
    // Batch ids are generated hex; anything with a NUL (which PostgreSQL cannot compare) is none.
    if batch_id.contains('\0') {
        return Err(ApiError::not_found("batch"));
    }
    let owner = if user.is_admin() { None } else { Some(user.id) };
    let query = KeyQuery { user_id: owner, batch_id: Some(batch_id), ..KeyQuery::default() };
    let found = state.store.list_keys(&query, page.request()?).await?;
    if found.total == 0 {
        return Err(ApiError::not_found("batch"));
    }
    Ok(Json(found.into()))
}

/// One key.
#[utoipa::path(get, path = "/api/keys/{key_id}", tag = "keys", security(("bearer" = [])), params(("key_id" = i64, Path)),
    responses((status = 200, body = KeyView), (status = 404, body = ErrorBody)))]
pub async fn get_key(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(key_id): Path<i64>,
) -> Result<Json<KeyView>, ApiError> {
    Ok(Json(visible_key(&state, &user, key_id).await?.into()))
}

/// Change a key's name, status or limits (`null` clears a limit).
#[utoipa::path(put, path = "/api/keys/{key_id}", tag = "keys", security(("bearer" = [])), params(("key_id" = i64, Path)),
    request_body = UpdateKeyRequest,
    responses((status = 200, body = KeyView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_key(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(key_id): Path<i64>,
    Json(req): Json<UpdateKeyRequest>,
) -> Result<Json<KeyView>, ApiError> {
    let key = visible_key(&state, &user, key_id).await?;
    let patch = req.into_patch(&user)?;
    let updated = state.store.update_key(key.id, &patch).await?;
    state.invalidator.key(&key.public_id).await;
    Ok(Json(updated.into()))
}

/// Delete a key; it stops working at once.
#[utoipa::path(delete, path = "/api/keys/{key_id}", tag = "keys", security(("bearer" = [])), params(("key_id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_key(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(key_id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let key = visible_key(&state, &user, key_id).await?;
    state.store.delete_key(key.id).await?;
    state.invalidator.key(&key.public_id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Disable a key (re-enable with `PUT {"status": "active"}`).
#[utoipa::path(post, path = "/api/keys/{key_id}/deactivate", tag = "keys", security(("bearer" = [])), params(("key_id" = i64, Path)),
    responses((status = 200, body = KeyView), (status = 404, body = ErrorBody)))]
pub async fn deactivate_key(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(key_id): Path<i64>,
) -> Result<Json<KeyView>, ApiError> {
    let key = visible_key(&state, &user, key_id).await?;
    let patch = KeyPatch { status: Some(KeyStatus::Disabled), ..KeyPatch::default() };
    let updated = state.store.update_key(key.id, &patch).await?;
    state.invalidator.key(&key.public_id).await;
    Ok(Json(updated.into()))
}

/// Zero a key's usage counters (tokens, credits, calls).
#[utoipa::path(post, path = "/api/keys/{key_id}/reset-usage", tag = "keys", security(("bearer" = [])), params(("key_id" = i64, Path)),
    responses((status = 200, body = KeyView), (status = 404, body = ErrorBody)))]
pub async fn reset_usage(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(key_id): Path<i64>,
) -> Result<Json<KeyView>, ApiError> {
    let key = visible_key(&state, &user, key_id).await?;
    let reset = state.store.reset_key_usage(key.id).await?;
    state.invalidator.key(&key.public_id).await;
    Ok(Json(reset.into()))
}
