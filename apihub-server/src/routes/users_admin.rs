//! `/api/admin/users/*`: listing, searching, disabling and enabling accounts.

use apihub_core::store::UserQuery;
use apihub_core::user::{Role, UserStatus};
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;

use super::views::names::{ActiveStatus, RoleName};
use super::views::{PageQuery, UserPage, UserView};
use crate::auth::AdminUser;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

/// Filters for the user list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserFilter {
    /// Case-insensitive part of the username or email.
    #[param(max_length = 100, pattern = r"^[^\x00]*$")]
    pub search: Option<String>,
    /// `user` or `admin`.
    #[param(value_type = Option<RoleName>, inline)]
    pub role: Option<Role>,
    /// `active` or `disabled`.
    #[param(value_type = Option<ActiveStatus>, inline)]
    pub status: Option<UserStatus>,
}

/// Users, newest first.
#[utoipa::path(get, path = "/api/admin/users", tag = "admin", security(("bearer" = [])), params(UserFilter, PageQuery),
    responses((status = 200, body = UserPage), (status = 403, body = ErrorBody)))]
pub async fn list_users(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(filter): Query<UserFilter>,
    Query(page): Query<PageQuery>,
) -> Result<Json<UserPage>, ApiError> {
    if filter.search.as_deref().is_some_and(|s| s.chars().count() > 100 || s.contains('\0')) {
        return Err(ApiError::Validation("search must be at most 100 characters, without NUL".into()));
    }
    let query = UserQuery { search: filter.search, role: filter.role, status: filter.status };
    Ok(Json(state.store.list_users(&query, page.request()?).await?.into()))
}

/// One user.
#[utoipa::path(get, path = "/api/admin/users/{user_id}", tag = "admin", security(("bearer" = [])), params(("user_id" = i64, Path)),
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody)))]
pub async fn get_user(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(user_id): Path<i64>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(state.store.user(user_id).await?.ok_or_else(|| ApiError::not_found("user"))?.into()))
}

/// Disable a user: they cannot log in, their sessions end and their keys stop working.
#[utoipa::path(post, path = "/api/admin/users/{user_id}/disable", tag = "admin", security(("bearer" = [])), params(("user_id" = i64, Path)),
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn disable_user(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(user_id): Path<i64>,
) -> Result<Json<UserView>, ApiError> {
    if user_id == admin.id {
        return Err(ApiError::Conflict("administrators cannot disable themselves".into()));
    }
    let user = state.store.set_user_status(user_id, UserStatus::Disabled).await?;
    state.invalidator.user(user_id).await;
    Ok(Json(user.into()))
}

/// Enable a disabled user.
#[utoipa::path(post, path = "/api/admin/users/{user_id}/enable", tag = "admin", security(("bearer" = [])), params(("user_id" = i64, Path)),
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody)))]
pub async fn enable_user(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(user_id): Path<i64>,
) -> Result<Json<UserView>, ApiError> {
    let user = state.store.set_user_status(user_id, UserStatus::Active).await?;
    state.invalidator.user(user_id).await;
    Ok(Json(user.into()))
}
