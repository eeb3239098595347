//! `/api/keys/admin/*`: every user's keys, for administrators.

use apihub_core::store::KeyQuery;
use apihub_core::user::UserId;
use axum::extract::State;
use http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;

use super::keys::{BatchCreateRequest, BatchCreated, CreateKeyRequest, issue_batch, issue_keys, reject_unknown};
use super::views::{CreatedKey, KeyPage, PageQuery};
use crate::auth::AdminUser;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

/// Filters for the list of all keys.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AllKeysQuery {
    /// Only this owner's keys.
    #[serde(default, deserialize_with = "super::views::whole::option")]
    pub user_id: Option<i64>,
    /// Only keys of this batch.
    pub batch_id: Option<String>,
}

async fn existing_user(state: &AppState, user_id: UserId) -> Result<(), ApiError> {
    state.store.user(user_id).await?.map(|_| ()).ok_or_else(|| ApiError::not_found("user"))
}

/// Every key, newest first.
#[utoipa::path(get, path = "/api/keys/admin/all", tag = "admin", security(("bearer" = [])), params(AllKeysQuery, PageQuery),
    responses((status = 200, body = KeyPage), (status = 403, body = ErrorBody)))]
pub async fn all_keys(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(filter): Query<AllKeysQuery>,
    Query(page): Query<PageQuery>,
) -> Result<Json<KeyPage>, ApiError> {
    if filter.batch_id.as_deref().is_some_and(|b| b.contains('\0')) {
        return Err(ApiError::Validation("batch_id must not contain NUL characters".into()));
    }
    let query = KeyQuery { user_id: filter.user_id, batch_id: filter.batch_id, ..KeyQuery::default() };
    Ok(Json(state.store.list_keys(&query, page.request()?).await?.into()))
}

/// One user's keys.
#[utoipa::path(get, path = "/api/keys/admin/user/{user_id}", tag = "admin", security(("bearer" = [])), params(("user_id" = i64, Path), PageQuery),
    responses((status = 200, body = KeyPage), (status = 404, body = ErrorBody)))]
pub async fn user_keys(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(user_id): Path<i64>,
    Query(page): Query<PageQuery>,
) -> Result<Json<KeyPage>, ApiError> {
    existing_user(&state, user_id).await?;
    let query = KeyQuery { user_id: Some(user_id), ..KeyQuery::default() };
    Ok(Json(state.store.list_keys(&query, page.request()?).await?.into()))
}

/// Create a key for a user (with any limits, including a discount).
#[utoipa::path(post, path = "/api/keys/admin/user/{user_id}", tag = "admin", security(("bearer" = [])), params(("user_id" = i64, Path)),
    request_body = CreateKeyRequest,
    responses((status = 201, body = CreatedKey), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_user_key(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(user_id): Path<i64>,
    Json(req): Json<CreateKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    reject_unknown(&req.unknown)?;
    existing_user(&state, user_id).await?;
    let policy = req.fields.into_policy(&admin, "default".into())?;
    let mut created = issue_keys(&state, user_id, vec![policy], None).await?;
    let key = created.pop().ok_or_else(|| ApiError::Internal("no key was created".into()))?;
    Ok((StatusCode::CREATED, Json(key)))
}

/// Create a batch of keys for a user.
#[utoipa::path(post, path = "/api/keys/admin/user/{user_id}/batch", tag = "admin", security(("bearer" = [])), params(("user_id" = i64, Path)),
    request_body = BatchCreateRequest,
    responses((status = 201, body = BatchCreated), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_user_batch(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(user_id): Path<i64>,
    Json(req): Json<BatchCreateRequest>,
) -> Result<(StatusCode, Json<BatchCreated>), ApiError> {
    existing_user(&state, user_id).await?;
    Ok((StatusCode::CREATED, Json(issue_batch(&state, &admin, user_id, req).await?)))
}
