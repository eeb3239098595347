//! `/api/auth/*`: registration, login, the current user, password change.

use apihub_core::user::{NewUser, Role, UserStatus, validate_email, validate_password, validate_username};
use std::time::Instant;

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, State};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::views::UserView;
use crate::auth::CurrentUser;
use crate::auth::password::Busy;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Json;
use crate::state::AppState;

/// Registration form. Any other field (`role`, `token_balance`, …) is refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// 3–32 characters of `A-Z a-z 0-9 _ . -`.
    #[schema(pattern = r"^[A-Za-z0-9_.-]{3,32}$")]
    pub username: String,
    /// 8 to 256 characters.
    #[schema(min_length = 8, max_length = 256)]
    pub password: String,
    /// One `@` with text on both sides, printable ASCII without spaces; empty = none.
    #[schema(max_length = 254, pattern = r"^([!-?A-~]+@[!-?A-~]+)?$")]
    pub email: Option<String>,
}

/// Register a new account (role `user`, balance 0).
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = UserView), (status = 409, description = "username taken", body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, description = "too many password checks in progress (see `Retry-After`)", body = ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    Json(req): Json<RegisterRequest>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    validate_username(&req.username).map_err(|e| ApiError::Validation(e.to_string()))?;
    validate_password(&req.password).map_err(|e| ApiError::Validation(e.to_string()))?;
    let email = req.email.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty());
    if let Some(email) = &email {
        validate_email(email).map_err(|e| ApiError::Validation(e.to_string()))?;
        // PostgreSQL cannot store NUL; refuse every control character so both backends agree.
        if email.chars().any(char::is_control) {
            return Err(ApiError::Validation("email must not contain control characters".into()));
        }
    }
    let password_hash = state.passwords.hash(req.password).await.map_err(busy)??;
    let user =
        state.store.create_user(NewUser { username: req.username, email, password_hash, role: Role::User }).await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Login form.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

/// A session token.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: i64,
}

/// Log in with username and password.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorBody), (status = 403, description = "account disabled", body = ErrorBody),
        (status = 429, description = "too many failed attempts for this username or from this address, or too many logins in progress (see `Retry-After`)", body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Json(req): Json<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let invalid = || ApiError::Unauthorized("invalid username or password".into());
    // Bound the work an attacker can ask for before hashing. A name that could never have been
    // registered (too long, a NUL PostgreSQL cannot even compare) matches no one.
    if validate_username(&req.username).is_err() || req.password.len() > 1024 {
        return Err(invalid());
    }
    // Locked addresses and usernames are refused before any password work; every attempt counts
    // as it starts. The address counts first: guessing with a new username each time is bounded
    // by it (the connection's peer address; behind a proxy, that proxy's).
    let address = peer.map(|Extension(ConnectInfo(peer))| peer.ip().to_string());
    let now = Instant::now();
    if let Some(address) = &address {
        state.address_throttle.attempt(address, now).map_err(|wait| locked(wait, "from this address"))?;
    }
    state.login_throttle.attempt(&req.username, now).map_err(|wait| locked(wait, "for this account"))?;
    // A place for the password check first: when a flood fills the pool, the rest are refused
    // before they cost a database lookup.
    let admitted = state.passwords.admit().map_err(busy)?;
    let found = state.store.credentials(&req.username).await?;
    let (user, stored) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    // An unknown user costs one argon2 verification too, so timing does not reveal usernames.
    let verified = admitted.verify(req.password, stored).await.map_err(busy)?;
    let user = user.filter(|_| verified).ok_or_else(invalid)?;
    state.login_throttle.succeeded(&req.username);
    if let Some(address) = &address {
        state.address_throttle.refund(address);
    }
    if user.status != UserStatus::Active {
        return Err(ApiError::Forbidden("this account is disabled".into()));
    }
    let access_token = state.jwt.issue(&user)?;
    Ok(Json(TokenResponse { access_token, token_type: "bearer", expires_in: state.jwt.lifetime_secs() }))
}

/// The logged-in user.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody)))]
pub async fn me(CurrentUser(user): CurrentUser) -> Json<UserView> {
    Json(user.into())
}

/// Password change form.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    /// 8 to 256 characters.
    #[schema(min_length = 8, max_length = 256)]
    pub new_password: String,
}

/// Change the password; every earlier session token stops working.
#[utoipa::path(post, path = "/api/auth/password", tag = "auth", security(("bearer" = [])), request_body = ChangePasswordRequest,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, description = "too many password checks in progress (see `Retry-After`)", body = ErrorBody)))]
pub async fn change_password(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Json(req): Json<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    validate_password(&req.new_password).map_err(|e| ApiError::Validation(e.to_string()))?;
    let stored = state.store.credentials(&user.username).await?.map(|(_, hash)| hash);
    if !state.passwords.verify(req.current_password, stored).await.map_err(busy)? {
        return Err(ApiError::Unauthorized("current password is wrong".into()));
    }
    let hash = state.passwords.hash(req.new_password).await.map_err(busy)??;
    state.store.set_password(user.id, &hash).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The password pool is full: a flood of logins or registrations is in progress.
fn busy(_: Busy) -> ApiError {
    ApiError::TooManyRequests {
        message: "too many logins in progress; try again in a second".into(),
        retry_after_secs: 1,
    }
}

/// A throttle refused the attempt.
fn locked(wait: std::time::Duration, whose: &str) -> ApiError {
    let retry_after_secs = wait.as_secs().max(1);
    tracing::warn!(retry_after_secs, "login refused: too many failed attempts {whose}");
    ApiError::TooManyRequests {
        message: format!("too many failed logins {whose}; try again in {retry_after_secs} s"),
        retry_after_secs,
    }
}
