//! Accounts: password hashing, session tokens and the extractors that authenticate a request.

pub mod jwt;
pub mod password;
pub mod throttle;

use apihub_core::user::{User, UserStatus};
use axum::extract::FromRequestParts;
use http::request::Parts;

use crate::error::ApiError;
use crate::state::AppState;

/// The logged-in user behind a request (`Authorization: Bearer <session token>`).
///
/// The user is re-read on every request, so a disable, a role change or a password change (which
/// bumps the token version) takes effect at once.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub User);

/// A [`CurrentUser`] who is an administrator; anyone else gets 403.
#[derive(Debug, Clone)]
pub struct AdminUser(pub User);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let unauthorized = || ApiError::Unauthorized("missing, invalid or expired session token".into());
        let header =
            parts.headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or_else(unauthorized)?;
        let token =
            header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer ")).ok_or_else(unauthorized)?.trim();
        let (user_id, version) = state.jwt.verify(token).ok_or_else(unauthorized)?;
        let user = state.store.user(user_id).await?.ok_or_else(unauthorized)?;
        if user.token_version != version {
            return Err(unauthorized());
        }
        if user.status != UserStatus::Active {
            return Err(ApiError::Forbidden("this account is disabled".into()));
        }
        Ok(CurrentUser(user))
    }
}

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let CurrentUser(user) = CurrentUser::from_request_parts(parts, state).await?;
        if !user.is_admin() {
            return Err(ApiError::Forbidden("administrators only".into()));
        }
        Ok(AdminUser(user))
    }
}
