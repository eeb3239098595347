//! Online recharge through EPay (易支付): a user creates an order and is sent to the provider's
//! `submit.php` with signed fields; the provider's notification (`/api/tokens/recharge/callback`)
//! marks the order paid and credits the user once; administrators list orders and complete a
//! stuck one by hand.
//!
//! The callback trusts nothing but the signature: every refusal is logged with its reason and
//! answered `fail`, so the provider retries and an operator can see why.

use std::collections::BTreeMap;

use apihub_core::Money;
use apihub_core::recharge::{
    CompleteRefusal, Completed, Completion, MAX_RECENT_PENDING, NewOrder, OrderFilter, OrderStatus,
    PENDING_WINDOW_MINUTES, RechargeOrder, format_cents, generate_out_trade_no, is_out_trade_no,
};
use apihub_core::store::PageRequest;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::tokens::BalanceView;
use super::views::names::OrderStatusName;
use super::views::{PageQuery, RechargeOrderPage, TransactionView, parse_filter};
use crate::auth::{AdminUser, CurrentUser};
use crate::config::EpayConfig;
use crate::epay::{self, Merchant, check_notification};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::metrics::Notification;
use crate::state::AppState;

/// The callback's answer when the order is (now or already) paid.
pub const SUCCESS: &str = "success";
/// The callback's answer otherwise.
pub const FAIL: &str = "fail";

/// Longest note on an order completed by hand.
const MAX_NOTE_LEN: usize = 200;

/// A recharge order.
#[derive(Debug, Serialize, ToSchema)]
pub struct RechargeOrderView {
    pub id: i64,
    /// Our order number; also the recharge transaction's `order_no`.
    pub out_trade_no: String,
    pub user_id: i64,
    /// Credit bought.
    #[schema(value_type = f64, example = 10)]
    pub amount: Money,
    /// Money paid to the provider, with two decimals.
    #[schema(example = "10.00")]
    pub money: String,
    #[schema(example = "alipay")]
    pub payment_type: String,
    /// `pending` or `paid`.
    #[schema(example = "pending")]
    pub status: String,
    /// The provider's trade number, once notified.
    pub trade_no: Option<String>,
    /// The administrator who completed the order by hand.
    pub completed_by: Option<i64>,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
}

impl From<RechargeOrder> for RechargeOrderView {
    fn from(o: RechargeOrder) -> Self {
        RechargeOrderView {
            id: o.id,
            out_trade_no: o.out_trade_no,
            user_id: o.user_id,
            amount: o.amount,
            money: format_cents(o.money),
            payment_type: o.payment_type,
            status: o.status.as_str().to_owned(),
            trade_no: o.trade_no,
            completed_by: o.completed_by,
            note: o.note,
            created_at: o.created_at,
            paid_at: o.paid_at,
        }
    }
}

fn epay_config(state: &AppState) -> Result<&EpayConfig, ApiError> {
    state.config.epay.as_ref().ok_or_else(|| {
        ApiError::NotConfigured(
            "online recharge is not configured on this gateway (EPAY_URL, EPAY_PID, EPAY_KEY, PUBLIC_URL); \
             ask an administrator for credit or a redemption code"
                .into(),
        )
    })
}

/// What a user may buy online.
#[derive(Debug, Serialize, ToSchema)]
pub struct RechargeOptions {
    /// False when online payment is not configured; the other fields are then empty or zero.
    pub enabled: bool,
    #[schema(value_type = f64)]
    pub min_amount: Money,
    #[schema(value_type = f64)]
    pub max_amount: Money,
    /// Money to pay per credit.
    #[schema(value_type = f64)]
    pub price: Money,
    /// Accepted `payment_type` values.
    pub payment_types: Vec<String>,
    /// The currency payments are made in (`CURRENCY`, an ISO 4217 code such as `CNY`).
    #[schema(example = "CNY")]
    pub currency: String,
}

/// The recharge settings: bounds, price and payment methods.
#[utoipa::path(get, path = "/api/tokens/recharge/options", tag = "tokens", security(("bearer" = [])),
    responses((status = 200, body = RechargeOptions), (status = 401, body = ErrorBody)))]
pub async fn options(State(state): State<AppState>, _user: CurrentUser) -> Json<RechargeOptions> {
    Json(match &state.config.epay {
        Some(epay) => RechargeOptions {
            enabled: true,
            min_amount: epay.policy.min_amount,
            max_amount: epay.policy.max_amount,
            price: epay.policy.price,
            payment_types: epay.policy.payment_types.clone(),
            currency: state.config.currency.clone(),
        },
        None => RechargeOptions {
            enabled: false,
            min_amount: Money::ZERO,
            max_amount: Money::ZERO,
            price: Money::ZERO,
            payment_types: Vec::new(),
            currency: state.config.currency.clone(),
        },
    })
}

/// Body of `POST /api/tokens/recharge`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RechargeRequest {
    /// Credit to buy, within the configured bounds.
    #[schema(value_type = f64, example = 10)]
    pub amount: Money,
    /// One of the configured payment types (`alipay`, `wxpay`, `qqpay`, …).
    #[schema(example = "alipay")]
    pub payment_type: String,
}

/// How to send the user to the provider: post `fields` to `url` (or open `pay_url`).
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentForm {
    /// The provider's `submit.php`.
    pub url: String,
    /// Always `POST`.
    #[schema(example = "POST")]
    pub method: String,
    /// The signed form fields.
    pub fields: BTreeMap<String, String>,
}

/// A new order and where to pay it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedOrder {
    pub order: RechargeOrderView,
    pub payment: PaymentForm,
    /// The same request as a GET URL with the fields in its query string.
    pub pay_url: String,
}

/// Create a pending recharge order and the signed request that starts its payment.
#[utoipa::path(post, path = "/api/tokens/recharge", tag = "tokens", security(("bearer" = [])), request_body = RechargeRequest,
    responses((status = 201, body = CreatedOrder), (status = 422, body = ErrorBody), (status = 429, description = "too many unpaid orders lately", body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create_order(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Json(req): Json<RechargeRequest>,
) -> Result<(http::StatusCode, Json<CreatedOrder>), ApiError> {
    let epay = epay_config(&state)?;
    let money = epay.policy.quote(req.amount, &req.payment_type).map_err(ApiError::Validation)?;
    let recent = OrderFilter {
        user_id: Some(user.id),
        status: Some(OrderStatus::Pending),
        created_since: Some(Utc::now() - chrono::Duration::minutes(PENDING_WINDOW_MINUTES)),
        ..OrderFilter::default()
    };
    if state.recharge.orders(&recent, PageRequest { page: 1, page_size: 1 }).await?.total >= MAX_RECENT_PENDING {
        return Err(ApiError::TooManyRequests {
            message: format!(
                "{MAX_RECENT_PENDING} unpaid orders in the last {PENDING_WINDOW_MINUTES} minutes; pay one of them or try later"
            ),
            retry_after_secs: 60,
        });
    }
    let order = NewOrder {
        out_trade_no: generate_out_trade_no(Utc::now()),
        user_id: user.id,
        amount: req.amount,
        money,
        payment_type: req.payment_type,
    };
    let order = state.recharge.create_order(&order).await?;
    let name = format!("{} {} credits", state.config.app_name, order.amount);
    let signed = [
        ("pid", epay.pid.clone()),
        ("type", order.payment_type.clone()),
        ("out_trade_no", order.out_trade_no.clone()),
        ("notify_url", epay.notify_url()),
        ("return_url", epay.return_url()),
        ("name", name),
        ("money", format_cents(order.money)),
    ];
    let signature = epay::sign(&signed, epay.key.expose());
    let mut fields: BTreeMap<String, String> = signed.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    fields.insert(epay::SIGN_PARAM.into(), signature);
    fields.insert(epay::SIGN_TYPE_PARAM.into(), "MD5".into());
    let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(&fields).finish();
    let pay_url = format!("{}?{query}", epay.submit_url);
    tracing::info!(user_id = user.id, out_trade_no = order.out_trade_no, amount = %order.amount, money = %format_cents(order.money), "recharge order created");
    Ok((
        http::StatusCode::CREATED,
        Json(CreatedOrder {
            order: order.into(),
            payment: PaymentForm { url: epay.submit_url.clone(), method: "POST".into(), fields },
            pay_url,
        }),
    ))
}

/// The caller's recharge orders, newest first.
#[utoipa::path(get, path = "/api/tokens/recharge/orders", tag = "tokens", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = RechargeOrderPage), (status = 422, body = ErrorBody)))]
pub async fn my_orders(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(page): Query<PageQuery>,
) -> Result<Json<RechargeOrderPage>, ApiError> {
    let filter = OrderFilter { user_id: Some(user.id), ..OrderFilter::default() };
    Ok(Json(state.recharge.orders(&filter, page.request()?).await?.into()))
}

/// One of the caller's orders (what the return page shows).
#[utoipa::path(get, path = "/api/tokens/recharge/orders/{out_trade_no}", tag = "tokens", security(("bearer" = [])),
    params(("out_trade_no" = String, Path)),
    responses((status = 200, body = RechargeOrderView), (status = 404, body = ErrorBody)))]
pub async fn my_order(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(out_trade_no): Path<String>,
) -> Result<Json<RechargeOrderView>, ApiError> {
    let order = find_order(&state, &out_trade_no).await?.filter(|o| o.user_id == user.id);
    Ok(Json(order.ok_or_else(|| ApiError::not_found("order"))?.into()))
}

/// Looks an order up; a string that cannot be an order number is not looked up at all.
async fn find_order(state: &AppState, out_trade_no: &str) -> Result<Option<RechargeOrder>, ApiError> {
    if !is_out_trade_no(out_trade_no) {
        return Ok(None);
    }
    Ok(state.recharge.order(out_trade_no).await?)
}

/// The provider's notification, sent as a query string.
#[utoipa::path(get, path = "/api/tokens/recharge/callback", tag = "tokens",
    params(("pid" = String, Query), ("trade_no" = String, Query), ("out_trade_no" = String, Query), ("type" = String, Query),
        ("name" = String, Query), ("money" = String, Query), ("trade_status" = String, Query), ("sign" = String, Query), ("sign_type" = String, Query)),
    responses((status = 200, description = "`success` when the order is (now or already) paid, `fail` otherwise", body = String, content_type = "text/plain")))]
pub async fn callback_get(State(state): State<AppState>, RawQuery(query): RawQuery) -> &'static str {
    notify(&state, query.as_deref().unwrap_or_default().as_bytes()).await
}

/// The provider's notification, sent as a form body (`application/x-www-form-urlencoded`).
#[utoipa::path(post, path = "/api/tokens/recharge/callback", tag = "tokens",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "The same fields as the GET form"),
    responses((status = 200, description = "`success` when the order is (now or already) paid, `fail` otherwise", body = String, content_type = "text/plain")))]
pub async fn callback_post(State(state): State<AppState>, RawQuery(query): RawQuery, body: Bytes) -> &'static str {
    // Some providers post an empty body with the fields in the query string.
    let fields = if body.is_empty() { query.unwrap_or_default().into_bytes().into() } else { body };
    notify(&state, &fields).await
}

async fn notify(state: &AppState, form: &[u8]) -> &'static str {
    let outcome = settle_notification(state, form).await;
    state.metrics.count_notification(outcome);
    match outcome {
        Notification::Paid | Notification::Repeated => SUCCESS,
        Notification::Refused | Notification::Error => FAIL,
    }
}

/// Checks a notification and, when it holds, completes its order; logs every refusal.
async fn settle_notification(state: &AppState, form: &[u8]) -> Notification {
    let params: Vec<(String, String)> =
        form_urlencoded::parse(form).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let out_trade_no = params.iter().find(|(k, _)| k == "out_trade_no").map(|(_, v)| v.clone()).unwrap_or_default();
    let Some(epay) = state.config.epay.as_ref() else {
        tracing::warn!(out_trade_no, "EPay notification received, but online recharge is not configured");
        return Notification::Refused;
    };
    let merchant = Merchant { pid: &epay.pid, key: epay.key.expose() };
    let notice = match check_notification(&params, merchant) {
        Ok(notice) => notice,
        Err(refusal) => {
            tracing::warn!(out_trade_no, reason = %refusal, "EPay notification refused; nothing credited");
            return Notification::Refused;
        }
    };
    match state.recharge.complete(&notice.out_trade_no, &Completion::Notified(notice.clone())).await {
        Ok(Ok(Completed::Now { order, transaction, .. })) => {
            tracing::info!(out_trade_no, trade_no = notice.trade_no, user_id = order.user_id, tx = transaction.id, amount = %order.amount, "recharge order paid");
            Notification::Paid
        }
        Ok(Ok(Completed::Already(_))) => Notification::Repeated,
        Ok(Err(refusal)) => {
            tracing::warn!(out_trade_no, trade_no = notice.trade_no, reason = %refusal, "EPay notification refused; nothing credited");
            Notification::Refused
        }
        Err(error) => {
            tracing::error!(out_trade_no, %error, "EPay notification could not be applied; the provider will retry");
            Notification::Error
        }
    }
}

/// `?status=&user_id=&out_trade_no=` on the administrators' listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderQuery {
    #[param(value_type = Option<OrderStatusName>, inline)]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "super::views::whole::option")]
    pub user_id: Option<i64>,
    pub out_trade_no: Option<String>,
}

/// List every recharge order, newest first.
#[utoipa::path(get, path = "/api/admin/recharge-orders", tag = "admin", security(("bearer" = [])), params(OrderQuery, PageQuery),
    responses((status = 200, body = RechargeOrderPage), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn admin_orders(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(query): Query<OrderQuery>,
    Query(page): Query<PageQuery>,
) -> Result<Json<RechargeOrderPage>, ApiError> {
    let status = parse_filter(query.status.as_deref(), OrderStatus::parse, "status must be `pending` or `paid`")?;
    let out_trade_no = query.out_trade_no.map(|o| o.trim().to_owned()).filter(|o| !o.is_empty());
    if out_trade_no.as_deref().is_some_and(|o| !is_out_trade_no(o)) {
        return Err(ApiError::Validation("out_trade_no is not an order number of this gateway".into()));
    }
    let filter = OrderFilter { user_id: query.user_id, status, out_trade_no, created_since: None };
    Ok(Json(state.recharge.orders(&filter, page.request()?).await?.into()))
}

/// Body of `POST /api/admin/recharge-orders/{out_trade_no}/complete`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// Why (for example the provider's trade number seen in its console); kept on the order and
    /// in the ledger row. 1 to 200 characters (surrounding spaces aside), without NUL.
    #[schema(pattern = r"^\s*[^\s\x00][^\x00]*$", max_length = 200)]
    pub note: String,
}

/// The order, paid by hand, its recharge and the balance after it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompletedOrder {
    pub order: RechargeOrderView,
    pub transaction: TransactionView,
    pub balance: BalanceView,
}

/// Complete a pending order by hand: mark it paid and credit it, with a ledger row that says so.
/// A paid order is 409 and changes nothing.
#[utoipa::path(post, path = "/api/admin/recharge-orders/{out_trade_no}/complete", tag = "admin", security(("bearer" = [])),
    params(("out_trade_no" = String, Path)), request_body = CompleteRequest,
    responses((status = 200, body = CompletedOrder), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn complete_order(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(out_trade_no): Path<String>,
    Json(req): Json<CompleteRequest>,
) -> Result<Json<CompletedOrder>, ApiError> {
    let note = req.note.trim().to_owned();
    if note.is_empty() || note.chars().count() > MAX_NOTE_LEN || note.contains('\0') {
        return Err(ApiError::Validation(format!("note must be 1 to {MAX_NOTE_LEN} characters, without NUL")));
    }
    // The store answers an unknown order itself; a string that cannot be one is not looked up.
    if !is_out_trade_no(&out_trade_no) {
        return Err(ApiError::not_found("order"));
    }
    match state.recharge.complete(&out_trade_no, &Completion::ByHand { admin: admin.id, note }).await? {
        Ok(Completed::Now { order, transaction, .. }) => {
            tracing::info!(admin = admin.id, out_trade_no, user_id = order.user_id, tx = transaction.id, amount = %order.amount, "recharge order completed by hand");
            let user = state.store.user(order.user_id).await?.ok_or_else(|| ApiError::not_found("user"))?;
            Ok(Json(CompletedOrder {
                order: order.into(),
                transaction: transaction.into(),
                balance: BalanceView::load(&state, &user).await?,
            }))
        }
        Ok(Completed::Already(_)) => Err(ApiError::Conflict("this order is already paid".into())),
        Err(CompleteRefusal::UnknownOrder) => Err(ApiError::not_found("order")),
        Err(refusal @ CompleteRefusal::WrongMoney { .. }) => Err(ApiError::Internal(refusal.to_string())),
    }
}
