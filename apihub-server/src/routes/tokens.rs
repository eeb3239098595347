//! `/api/tokens/*`: the caller's credit: balance, ledger, affordability check.

use apihub_core::Money;
use apihub_core::billing::UserFunds;
use apihub_core::ledger::TxType;
use apihub_core::user::User;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::views::names::TxTypeName;
use super::views::{PageQuery, TransactionPage};
use crate::auth::CurrentUser;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Query};
use crate::state::AppState;

/// A balance, what requests in flight hold against it, and the running totals.
#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceView {
    pub user_id: i64,
    /// The ledger balance: the sum of the user's transactions.
    #[schema(value_type = f64, example = 100.5)]
    pub token_balance: Money,
    /// Credit held by requests in flight: the most each can cost, held when it is forwarded and
    /// settled or released when it ends. Not a transaction; `token_balance` still includes it.
    #[schema(value_type = f64, example = 0.5)]
    pub reserved: Money,
    /// What new requests can spend: `token_balance - reserved`, never below 0.
    #[schema(value_type = f64, example = 100)]
    pub available: Money,
    #[schema(value_type = f64)]
    pub total_recharged: Money,
    #[schema(value_type = f64)]
    pub total_consumed: Money,
    #[schema(value_type = f64)]
    pub discount_rate: apihub_core::DiscountRate,
}

impl BalanceView {
    /// Reads `user`'s balance and holds from the billing store, so the balance, the holds and
    /// what is available come from one read and agree.
    pub async fn load(state: &AppState, user: &User) -> Result<BalanceView, ApiError> {
        Ok(BalanceView::new(user, state.store.reserved_funds(user.id).await?))
    }

    /// `user`'s totals and discount, with the balance and holds in `funds`.
    fn new(user: &User, funds: UserFunds) -> BalanceView {
        BalanceView {
            user_id: user.id,
            token_balance: funds.balance,
            reserved: funds.reserved,
            available: funds.available(),
            total_recharged: user.account.total_recharged,
            total_consumed: user.account.total_consumed,
            discount_rate: user.discount_rate,
        }
    }
}

/// The caller's balance, the credit held by their requests in flight, and what is available.
#[utoipa::path(get, path = "/api/tokens/balance", tag = "tokens", security(("bearer" = [])),
    responses((status = 200, body = BalanceView), (status = 401, body = ErrorBody)))]
pub async fn balance(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<BalanceView>, ApiError> {
    Ok(Json(BalanceView::load(&state, &user).await?))
}

/// Filter for the ledger.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TxTypeQuery {
    /// `recharge`, `consume`, `refund` or `adjust`.
    #[param(value_type = Option<TxTypeName>, inline)]
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
    #[schema(value_type = f64, minimum = -999_999_999.999_999, maximum = 999_999_999.999_999)]
    pub amount: Money,
}

/// Whether the available credit covers an amount.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckResponse {
    /// `available >= amount`.
    pub sufficient: bool,
    #[schema(value_type = f64)]
    pub token_balance: Money,
    /// The balance less what requests in flight hold, never below 0: what was compared.
    #[schema(value_type = f64)]
    pub available: Money,
    #[schema(value_type = f64)]
    pub amount: Money,
}

/// Check whether the caller's available credit covers an amount.
///
/// Available is the balance less what requests in flight hold, never below 0: what the gateway
/// can still reserve for a new request.
#[utoipa::path(post, path = "/api/tokens/check", tag = "tokens", security(("bearer" = [])), request_body = CheckRequest,
    responses((status = 200, body = CheckResponse), (status = 422, body = ErrorBody)))]
pub async fn check(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Json(req): Json<CheckRequest>,
) -> Result<Json<CheckResponse>, ApiError> {
    if req.amount.is_negative() {
        return Err(ApiError::Validation("amount must not be negative".into()));
    }
    let funds = state.store.reserved_funds(user.id).await?;
    Ok(Json(CheckResponse {
        sufficient: funds.available() >= req.amount,
        token_balance: funds.balance,
        available: funds.available(),
        amount: req.amount,
    }))
}
