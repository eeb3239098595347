//! Redemption codes: administrators generate, list and disable them (`/api/admin/redemption-codes`);
//! users redeem one into a recharge (`POST /api/tokens/redeem`).

use apihub_core::Money;
use apihub_core::redemption::{
    CodeFilter, CodeStatus, NewBatch, RedeemRefusal, RedemptionCode, generate_batch_id, generate_code,
};
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::tokens::BalanceView;
use super::views::names::ActiveStatus;
use super::views::{PageQuery, RedemptionCodePage, TransactionView, parse_filter};
use crate::auth::{AdminUser, CurrentUser};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

/// A redemption code, as administrators see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RedemptionCodeView {
    pub id: i64,
    /// The secret a user redeems.
    pub code: String,
    /// Credit granted.
    #[schema(value_type = f64)]
    pub amount: Money,
    pub name: String,
    pub expires_at: Option<DateTime<Utc>>,
    /// `active` or `disabled`.
    #[schema(example = "active")]
    pub status: String,
    pub batch_id: String,
    pub created_by: i64,
    pub redeemed_by: Option<i64>,
    pub redeemed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<RedemptionCode> for RedemptionCodeView {
    fn from(c: RedemptionCode) -> Self {
        RedemptionCodeView {
            id: c.id,
            code: c.code,
            amount: c.amount,
            name: c.name,
            expires_at: c.expires_at,
            status: c.status.as_str().to_owned(),
            batch_id: c.batch_id,
            created_by: c.created_by,
            redeemed_by: c.redeemed_by,
            redeemed_at: c.redeemed_at,
            created_at: c.created_at,
        }
    }
}

/// Body of `POST /api/admin/redemption-codes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCodesRequest {
    /// How many codes, 1 to 1000.
    #[serde(deserialize_with = "super::views::whole::required")]
    #[schema(minimum = 1, maximum = 1000)]
    pub count: u32,
    /// Credit per code, positive.
    #[schema(value_type = f64, example = 10, exclusive_minimum = 0, maximum = 999_999_999.999_999)]
    pub amount: Money,
    /// The batch's name: 1 to 100 characters (surrounding spaces aside), without NUL.
    #[schema(pattern = r"^\s*[^\s\x00][^\x00]*$", max_length = 100)]
    pub name: String,
    /// When the codes stop redeeming (in the future); never when absent.
    pub expires_at: Option<DateTime<Utc>>,
}

/// The generated batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedCodes {
    pub batch_id: String,
    pub codes: Vec<RedemptionCodeView>,
}

/// Generate a batch of redemption codes (128 random bits each).
#[utoipa::path(post, path = "/api/admin/redemption-codes", tag = "admin", security(("bearer" = [])), request_body = CreateCodesRequest,
    responses((status = 201, body = CreatedCodes), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_codes(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Json(req): Json<CreateCodesRequest>,
) -> Result<(http::StatusCode, Json<CreatedCodes>), ApiError> {
    let batch = NewBatch { count: req.count, amount: req.amount, name: req.name, expires_at: req.expires_at };
    batch.check().map_err(ApiError::Validation)?;
    if batch.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(ApiError::Validation("expires_at must be in the future".into()));
    }
    let batch_id = generate_batch_id();
    let codes: Vec<String> = (0..batch.count).map(|_| generate_code()).collect();
    let created = state.redemption.create_codes(admin.id, &batch, &batch_id, &codes).await?;
    tracing::info!(admin = admin.id, batch_id, count = batch.count, amount = %batch.amount, "redemption codes generated");
    Ok((
        http::StatusCode::CREATED,
        Json(CreatedCodes { batch_id, codes: created.into_iter().map(Into::into).collect() }),
    ))
}

/// `?status=&batch_id=&redeemed=` on the codes listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CodeQuery {
    #[param(value_type = Option<ActiveStatus>, inline)]
    pub status: Option<String>,
    /// Letters and digits.
    #[param(pattern = "^[A-Za-z0-9]*$")]
    pub batch_id: Option<String>,
    /// Only redeemed (`true`) or unredeemed (`false`) codes.
    pub redeemed: Option<bool>,
}

/// List redemption codes, newest first.
#[utoipa::path(get, path = "/api/admin/redemption-codes", tag = "admin", security(("bearer" = [])), params(CodeQuery, PageQuery),
    responses((status = 200, body = RedemptionCodePage), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_codes(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(query): Query<CodeQuery>,
    Query(page): Query<PageQuery>,
) -> Result<Json<RedemptionCodePage>, ApiError> {
    let status = parse_filter(query.status.as_deref(), CodeStatus::parse, "status must be `active` or `disabled`")?;
    // Batch ids are hex; anything else matches nothing and is refused alike on both backends.
    if query.batch_id.as_deref().is_some_and(|b| !b.bytes().all(|c| c.is_ascii_alphanumeric())) {
        return Err(ApiError::Validation("batch_id must be letters and digits".into()));
    }
    let filter = CodeFilter { status, batch_id: query.batch_id, redeemed: query.redeemed };
    Ok(Json(state.redemption.codes(&filter, page.request()?).await?.into()))
}

/// Disable a redemption code (a redeemed code keeps its credit).
#[utoipa::path(post, path = "/api/admin/redemption-codes/{id}/disable", tag = "admin", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = RedemptionCodeView), (status = 404, body = ErrorBody)))]
pub async fn disable_code(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(id): Path<i64>,
) -> Result<Json<RedemptionCodeView>, ApiError> {
    let code = state.redemption.disable_code(id).await?;
    tracing::info!(admin = admin.id, code_id = id, "redemption code disabled");
    Ok(Json(code.into()))
}

/// Body of `POST /api/tokens/redeem`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemRequest {
    pub code: String,
}

/// The recharge written and the balance after it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RedeemResponse {
    pub transaction: TransactionView,
    pub balance: BalanceView,
}

/// Redeem a code into a recharge of the caller's balance. Unknown codes are 404; used, disabled
/// and expired codes are 409; either way nothing changes.
#[utoipa::path(post, path = "/api/tokens/redeem", tag = "tokens", security(("bearer" = [])), request_body = RedeemRequest,
    responses((status = 200, body = RedeemResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn redeem(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Json(req): Json<RedeemRequest>,
) -> Result<Json<RedeemResponse>, ApiError> {
    let code = req.code.trim();
    // Codes are hex; anything else cannot exist (and keeps NUL away from PostgreSQL).
    if code.is_empty() || code.len() > 64 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiError::NotFound(RedeemRefusal::Unknown.to_string()));
    }
    match state.redemption.redeem(user.id, code, Utc::now()).await? {
        Ok(redeemed) => {
            tracing::info!(user_id = user.id, tx = redeemed.transaction.id, amount = %redeemed.transaction.amount, "redemption code redeemed");
            let user = state.store.user(user.id).await?.ok_or_else(|| ApiError::not_found("user"))?;
            Ok(Json(RedeemResponse {
                transaction: redeemed.transaction.into(),
                balance: BalanceView::load(&state, &user).await?,
            }))
        }
        Err(refusal @ RedeemRefusal::Unknown) => Err(ApiError::NotFound(refusal.to_string())),
        Err(refusal) => Err(ApiError::Conflict(refusal.to_string())),
    }
}
