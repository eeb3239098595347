//! `/api/tokens/admin/*`: administrators move credit and set discounts.

use apihub_core::ledger::{LedgerOp, TxType};
use apihub_core::{DiscountRate, Money};
use apihub_tower::context::RequestId;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::tokens::BalanceView;
use super::views::{TransactionView, UserView};
use crate::auth::AdminUser;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path};
use crate::state::AppState;

/// Body of the recharge, consume, refund and adjust routes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditRequest {
    /// Credits: positive, except for `adjust`, where the sign gives the direction.
    #[schema(value_type = f64, example = 100.5)]
    pub amount: Money,
    /// Makes the call idempotent: the same order number and amount again returns the first
    /// transaction; a different amount is a 409. A refund's order number names the consumed order.
    pub order_no: Option<String>,
    pub description: Option<String>,
}

/// The transaction written (or found again) and the balance after it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreditResponse {
    pub transaction: TransactionView,
    pub balance: BalanceView,
    /// True when this order number had been applied before and nothing changed now.
    pub replayed: bool,
}

async fn apply(
    state: &AppState,
    admin: &apihub_core::user::User,
    user_id: i64,
    tx_type: TxType,
    req: CreditRequest,
) -> Result<Json<CreditResponse>, ApiError> {
    // PostgreSQL cannot store NUL; refuse it so both backends agree.
    if req.description.as_deref().is_some_and(|d| d.contains('\0')) {
        return Err(ApiError::Validation("description must not contain NUL characters".into()));
    }
    let order_no = req.order_no.map(|o| o.trim().to_owned());
    // `gw-…` names the gateway's own consume rows, `redeem-…` redemptions and `epay…` online
    // orders; a manual operation may refund one, never take its name.
    let reserved = [RequestId::PREFIX, apihub_core::redemption::ORDER_PREFIX, apihub_core::recharge::ORDER_PREFIX];
    if let Some(prefix) = order_no.as_deref().and_then(|o| reserved.into_iter().find(|p| o.starts_with(p)))
        && tx_type != TxType::Refund
    {
        return Err(ApiError::Validation(format!("order numbers starting with `{prefix}` are reserved")));
    }
    let mut op = LedgerOp::new(tx_type, req.amount);
    op.order_no = order_no;
    op.description = req.description;
    let applied = state.store.apply(user_id, op).await?;
    if !applied.replayed {
        tracing::info!(admin = admin.id, user_id, tx = applied.transaction.id, kind = tx_type.as_str(), amount = %req.amount, "credit operation");
    }
    let user = state.store.user(user_id).await?.ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Json(CreditResponse {
        transaction: applied.transaction.into(),
        balance: BalanceView::load(state, &user).await?,
        replayed: applied.replayed,
    }))
}

/// A user's balance.
#[utoipa::path(get, path = "/api/tokens/admin/user/{user_id}/balance", tag = "admin", security(("bearer" = [])), params(("user_id" = i64, Path)),
    responses((status = 200, body = BalanceView), (status = 404, body = ErrorBody)))]
pub async fn user_balance(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(user_id): Path<i64>,
) -> Result<Json<BalanceView>, ApiError> {
    let user = state.store.user(user_id).await?.ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Json(BalanceView::load(&state, &user).await?))
}

/// Credit a user.
#[utoipa::path(post, path = "/api/tokens/admin/user/{user_id}/recharge", tag = "admin", security(("bearer" = [])), params(("user_id" = i64, Path)),
    request_body = CreditRequest,
    responses((status = 200, body = CreditResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn recharge(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(user_id): Path<i64>,
    Json(req): Json<CreditRequest>,
) -> Result<Json<CreditResponse>, ApiError> {
    apply(&state, &admin, user_id, TxType::Recharge, req).await
}

/// Debit a user; refused whole (402) when the balance does not cover it.
#[utoipa::path(post, path = "/api/tokens/admin/user/{user_id}/consume", tag = "admin", security(("bearer" = [])), params(("user_id" = i64, Path)),
    request_body = CreditRequest,
    responses((status = 200, body = CreditResponse), (status = 402, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn consume(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(user_id): Path<i64>,
    Json(req): Json<CreditRequest>,
) -> Result<Json<CreditResponse>, ApiError> {
    apply(&state, &admin, user_id, TxType::Consume, req).await
}

/// Give back consumed credit; never more than was consumed (for the order, when one is named).
#[utoipa::path(post, path = "/api/tokens/admin/user/{user_id}/refund", tag = "admin", security(("bearer" = [])), params(("user_id" = i64, Path)),
    request_body = CreditRequest,
    responses((status = 200, body = CreditResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn refund(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(user_id): Path<i64>,
    Json(req): Json<CreditRequest>,
) -> Result<Json<CreditResponse>, ApiError> {
    apply(&state, &admin, user_id, TxType::Refund, req).await
}

/// A signed correction; the balance never goes below zero.
#[utoipa::path(post, path = "/api/tokens/admin/user/{user_id}/adjust", tag = "admin", security(("bearer" = [])), params(("user_id" = i64, Path)),
    request_body = CreditRequest,
    responses((status = 200, body = CreditResponse), (status = 402, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn adjust(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(user_id): Path<i64>,
    Json(req): Json<CreditRequest>,
) -> Result<Json<CreditResponse>, ApiError> {
    apply(&state, &admin, user_id, TxType::Adjust, req).await
}

/// Body of the discount route.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscountRequest {
    /// In (0, 1]: 1 = full price, 0.8 = 20% off.
    #[schema(value_type = f64, example = 0.8, exclusive_minimum = 0, maximum = 1)]
    pub discount_rate: DiscountRate,
}

/// Set a user's discount rate.
#[utoipa::path(post, path = "/api/tokens/admin/user/{user_id}/discount", tag = "admin", security(("bearer" = [])), params(("user_id" = i64, Path)),
    request_body = DiscountRequest,
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_discount(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(user_id): Path<i64>,
    Json(req): Json<DiscountRequest>,
) -> Result<Json<UserView>, ApiError> {
    let user = state.store.set_user_discount(user_id, req.discount_rate).await?;
    state.invalidator.user(user_id).await;
    Ok(Json(user.into()))
}
