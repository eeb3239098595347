//! Periodic budgets: `/api/keys/{key_id}/budgets` (a key's, set by its owner or an
//! administrator), `/api/budgets` (the caller's own user-wide budgets, read only) and
//! `/api/admin/users/{user_id}/budgets` (a user's, set by an administrator).
//!
//! A `PUT` replaces the owner's budgets with the ones listed (at most one per period): a period
//! left out loses its budget, a period kept keeps its window's usage under the new limits.

use apihub_core::Money;
use apihub_core::budget::{self, BudgetLimits, BudgetOwner, BudgetSpec, BudgetState, Period};
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::keys::visible_key;
use super::views::whole;
use crate::auth::{AdminUser, CurrentUser};
use crate::db::from_millis;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path};
use crate::state::AppState;

/// The largest credit limit (as the key's lifetime `quota_limit`).
const MAX_CREDIT: Money = Money::from_micros(999_999_999_999_999);

/// One budget to set: a period and at least one limit.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetInput {
    /// `day`, `week` (from Monday) or `month`, in the gateway's `BUDGET_TIME_ZONE`.
    #[schema(value_type = String, example = "day")]
    pub period: PeriodName,
    /// Credits per window (exact decimal, at most six fractional digits).
    #[schema(value_type = Option<f64>, minimum = 0, maximum = 999_999_999.999_999)]
    pub credit_limit: Option<Money>,
    /// Tokens per window.
    #[serde(default, deserialize_with = "whole::option")]
    #[schema(minimum = 0)]
    pub token_limit: Option<i64>,
    /// Successful calls per window.
    #[serde(default, deserialize_with = "whole::option")]
    #[schema(minimum = 0)]
    pub call_limit: Option<i64>,
}

/// A period's name.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PeriodName {
    /// A calendar day.
    Day,
    /// An ISO week, from Monday.
    Week,
    /// A calendar month.
    Month,
}

impl From<PeriodName> for Period {
    fn from(name: PeriodName) -> Period {
        match name {
            PeriodName::Day => Period::Day,
            PeriodName::Week => Period::Week,
            PeriodName::Month => Period::Month,
        }
    }
}

/// Body of a budgets `PUT`: the owner's budgets, all of them (an empty list removes them).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetBudgetsRequest {
    /// At most one per period.
    #[schema(max_items = 3)]
    pub budgets: Vec<BudgetInput>,
}

/// A budget with its current window.
#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetView {
    /// `day`, `week` or `month`.
    #[schema(example = "day")]
    pub period: String,
    /// Credits per window; null = no credit limit.
    #[schema(value_type = Option<f64>)]
    pub credit_limit: Option<Money>,
    /// Tokens per window; null = no token limit.
    pub token_limit: Option<i64>,
    /// Successful calls per window; null = no call limit.
    pub call_limit: Option<i64>,
    /// Credits charged in the current window (settled requests).
    #[schema(value_type = f64)]
    pub credit_used: Money,
    /// Tokens used in the current window.
    pub tokens_used: i64,
    /// Successful calls in the current window.
    pub calls_used: i64,
    /// When the current window began.
    pub window_start: DateTime<Utc>,
    /// When it resets (the next window begins).
    pub resets_at: DateTime<Utc>,
}

/// An owner's budgets, and the time zone their windows follow.
#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetList {
    /// The IANA time zone of the windows (`BUDGET_TIME_ZONE`).
    #[schema(example = "UTC")]
    pub time_zone: String,
    /// One per period at most, shortest period first.
    pub budgets: Vec<BudgetView>,
}

impl From<BudgetState> for BudgetView {
    fn from(state: BudgetState) -> Self {
        let limits = state.budget.limits;
        BudgetView {
            period: state.budget.period.as_str().to_owned(),
            credit_limit: limits.credit,
            token_limit: limits.tokens,
            call_limit: limits.calls,
            credit_used: state.used.credit,
            tokens_used: state.used.tokens,
            calls_used: state.used.calls,
            window_start: from_millis(state.window.start),
            resets_at: from_millis(state.window.end),
        }
    }
}

fn specs(req: SetBudgetsRequest) -> Result<Vec<BudgetSpec>, ApiError> {
    let specs: Vec<BudgetSpec> = req
        .budgets
        .into_iter()
        .map(|input| BudgetSpec {
            period: input.period.into(),
            limits: BudgetLimits { credit: input.credit_limit, tokens: input.token_limit, calls: input.call_limit },
        })
        .collect();
    budget::validate(&specs).map_err(|e| ApiError::Validation(e.to_string()))?;
    if specs.iter().any(|s| s.limits.credit.is_some_and(|c| c > MAX_CREDIT)) {
        return Err(ApiError::Validation("credit_limit must be at most 999999999.999999".into()));
    }
    Ok(specs)
}

async fn list(state: &AppState, owner: BudgetOwner) -> Result<BudgetList, ApiError> {
    let mut budgets = state.budgets.budget_states(&[owner]).await?;
    budgets.sort_by_key(|b| b.budget.period);
    Ok(BudgetList {
        time_zone: state.budgets.zone().name().to_owned(),
        budgets: budgets.into_iter().map(BudgetView::from).collect(),
    })
}

async fn set(state: &AppState, owner: BudgetOwner, req: SetBudgetsRequest) -> Result<BudgetList, ApiError> {
    let specs = specs(req)?;
    state.budgets.set_budgets(owner, &specs).await?;
    state.invalidator.budgets().await;
    list(state, owner).await
}

/// A key's budgets, with their current windows' usage.
#[utoipa::path(get, path = "/api/keys/{key_id}/budgets", tag = "keys", security(("bearer" = [])), params(("key_id" = i64, Path)),
    responses((status = 200, body = BudgetList), (status = 404, body = ErrorBody)))]
pub async fn key_budgets(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(key_id): Path<i64>,
) -> Result<Json<BudgetList>, ApiError> {
    let key = visible_key(&state, &user, key_id).await?;
    Ok(Json(list(&state, BudgetOwner::Key(key.id)).await?))
}

/// Replace a key's budgets: credit, tokens and calls per day, week or month.
#[utoipa::path(put, path = "/api/keys/{key_id}/budgets", tag = "keys", security(("bearer" = [])), params(("key_id" = i64, Path)),
    request_body = SetBudgetsRequest,
    responses((status = 200, body = BudgetList), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_key_budgets(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(key_id): Path<i64>,
    Json(req): Json<SetBudgetsRequest>,
) -> Result<Json<BudgetList>, ApiError> {
    let key = visible_key(&state, &user, key_id).await?;
    Ok(Json(set(&state, BudgetOwner::Key(key.id), req).await?))
}

/// The caller's own budgets (across all of their keys; set by an administrator).
#[utoipa::path(get, path = "/api/budgets", tag = "tokens", security(("bearer" = [])),
    responses((status = 200, body = BudgetList)))]
pub async fn my_budgets(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<BudgetList>, ApiError> {
    Ok(Json(list(&state, BudgetOwner::User(user.id)).await?))
}

/// A user's budgets (across all of their keys).
#[utoipa::path(get, path = "/api/admin/users/{user_id}/budgets", tag = "admin", security(("bearer" = [])), params(("user_id" = i64, Path)),
    responses((status = 200, body = BudgetList), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn user_budgets(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(user_id): Path<i64>,
) -> Result<Json<BudgetList>, ApiError> {
    state.store.user(user_id).await?.ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Json(list(&state, BudgetOwner::User(user_id)).await?))
}

/// Replace a user's budgets (a cap across all of their keys).
#[utoipa::path(put, path = "/api/admin/users/{user_id}/budgets", tag = "admin", security(("bearer" = [])), params(("user_id" = i64, Path)),
    request_body = SetBudgetsRequest,
    responses((status = 200, body = BudgetList), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_user_budgets(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(user_id): Path<i64>,
    Json(req): Json<SetBudgetsRequest>,
) -> Result<Json<BudgetList>, ApiError> {
    state.store.user(user_id).await?.ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Json(set(&state, BudgetOwner::User(user_id), req).await?))
}
