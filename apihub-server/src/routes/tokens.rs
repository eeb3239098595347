//! `/api/tokens/*`: the caller's credit: balance, ledger, affordability check.

use apihub_core::Money;
use apihub_core::ledger::TxType;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::views::{PageQuery, TransactionPage};
use crate::auth::CurrentUser;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Query};
use crate::state::AppState;

/// A balance and its running totals.
#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceView {
    pub user_id: i64,
    #[schema(value_type = f64, example = 100.5)]
    pub token_balance: Money,
    #[schema(value_type = f64)]
    pub total_recharged: Money,
    #[schema(value_type = f64)]
    pub total_consumed: Money,
    #[schema(value_type = f64)]
    pub discount_rate: apihub_core::DiscountRate,
}

impl From<&apihub_core::user::User> for BalanceView {
    fn from(u: &apihub_core::user::User) -> Self {
        BalanceView {
            user_id: u.id,
            token_balance: u.account.balance,
            total_recharged: u.account.total_recharged,
            total_consumed: u.account.total_consumed,
            discount_rate: u.discount_rate,
        }
    }
}

/// The caller's balance.
#[utoipa::path(get, path = "/api/tokens/balance", tag = "tokens", security(("bearer" = [])),
    responses((status = 200, body = BalanceView), (status = 401, body = ErrorBody)))]
pub async fn balance(CurrentUser(user): CurrentUser) -> Json<BalanceView> {
    Json((&user).into())
}

/// Filter for the ledger.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TxTypeQuery {
    /// `recharge`, `consume`, `refund` or `adjust`.
    #[param(value_type = Option<String>)]
    pub tx_type: Option<TxType>,
}

/// The caller's transactions, newest first.
#[utoipa::path(get, path = "/api/tokens/transactions", tag = "tokens", security(("bearer" = [])), params(TxTypeQuery, PageQuery),
    responses((status = 200, body = TransactionPage), (status = 422, body = ErrorBody)))]
pub async fn transactions(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(filter): Query<TxTypeQuery>,
    Query(page): Query<PageQuery>,
) -> Result<Json<TransactionPage>, ApiError> {
    Ok(Json(state.store.transactions(Some(user.id), filter.tx_type, page.request()?).await?.into()))
}

/// Body of `POST /api/tokens/check`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// The amount to check, in credits.
    #[schema(value_type = f64)]
    pub amount: Money,
}

/// Whether the balance covers an amount.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckResponse {
    pub sufficient: bool,
    #[schema(value_type = f64)]
    pub token_balance: Money,
    #[schema(value_type = f64)]
    pub amount: Money,
}

/// Check whether the caller's balance covers an amount.
#[utoipa::path(post, path = "/api/tokens/check", tag = "tokens", security(("bearer" = [])), request_body = CheckRequest,
    responses((status = 200, body = CheckResponse), (status = 422, body = ErrorBody)))]
pub async fn check(
    CurrentUser(user): CurrentUser,
    Json(req): Json<CheckRequest>,
) -> Result<Json<CheckResponse>, ApiError> {
    if req.amount.is_negative() {
        return Err(ApiError::Validation("amount must not be negative".into()));
    }
    Ok(Json(CheckResponse {
        sufficient: user.account.balance >= req.amount,
        token_balance: user.account.balance,
        amount: req.amount,
    }))
}
