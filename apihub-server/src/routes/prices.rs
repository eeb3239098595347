//! Model prices: anyone logged in may read them; administrators set and remove them. A model
//! without a price is refused by the gateway, never served for free.

use apihub_core::Money;
use apihub_core::pricing::ModelPrice;
use axum::extract::State;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{AdminUser, CurrentUser};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path};
use crate::state::AppState;

/// A model's price. Token prices are credits per 1,000,000 tokens.
#[derive(Debug, Serialize, ToSchema)]
pub struct PriceView {
    pub model: String,
    #[schema(value_type = f64, example = 2.5)]
    pub input_price: Money,
    #[schema(value_type = f64, example = 10)]
    pub output_price: Money,
    /// For cached input tokens; the input price when null.
    #[schema(value_type = Option<f64>)]
    pub cache_read_price: Option<Money>,
    /// For input tokens written to the cache; the input price when null.
    #[schema(value_type = Option<f64>)]
    pub cache_write_price: Option<Money>,
    /// Added once per call.
    #[schema(value_type = Option<f64>)]
    pub per_request_price: Option<Money>,
    /// Per generated image.
    #[schema(value_type = Option<f64>)]
    pub per_image_price: Option<Money>,
}

impl PriceView {
    fn of(model: String, p: ModelPrice) -> Self {
        PriceView {
            model,
            input_price: p.input,
            output_price: p.output,
            cache_read_price: p.cache_read,
            cache_write_price: p.cache_write,
            per_request_price: p.per_request,
            per_image_price: p.per_image,
        }
    }
}

/// Body of `PUT /api/admin/prices/{model}`, and a channel's cost price (what the operator pays it).
/// Token prices are credits per 1,000,000 tokens; none may be negative.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceRequest {
    #[schema(value_type = f64)]
    pub input_price: Money,
    #[schema(value_type = f64)]
    pub output_price: Money,
    #[schema(value_type = Option<f64>)]
    pub cache_read_price: Option<Money>,
    #[schema(value_type = Option<f64>)]
    pub cache_write_price: Option<Money>,
    #[schema(value_type = Option<f64>)]
    pub per_request_price: Option<Money>,
    #[schema(value_type = Option<f64>)]
    pub per_image_price: Option<Money>,
}

impl PriceRequest {
    /// The price, checked as every price is (see [`ModelPrice::validate`]).
    pub(crate) fn price(&self) -> Result<ModelPrice, ApiError> {
        let price = ModelPrice {
            input: self.input_price,
            output: self.output_price,
            cache_read: self.cache_read_price,
            cache_write: self.cache_write_price,
            per_request: self.per_request_price,
            per_image: self.per_image_price,
        };
        price.validate().map_err(|e| ApiError::Validation(e.to_string()))?;
        Ok(price)
    }

    /// A price as the API shows it.
    pub(crate) fn of(p: ModelPrice) -> Self {
        PriceRequest {
            input_price: p.input,
            output_price: p.output,
            cache_read_price: p.cache_read,
            cache_write_price: p.cache_write,
            per_request_price: p.per_request,
            per_image_price: p.per_image,
        }
    }
}

fn check_model(model: &str) -> Result<(), ApiError> {
    let ok = !model.is_empty() && model.len() <= 128 && model.chars().all(|c| c.is_ascii_graphic());
    if ok { Ok(()) } else { Err(ApiError::Validation("model must be 1 to 128 printable ASCII characters".into())) }
}

/// Every priced model.
#[utoipa::path(get, path = "/api/prices", tag = "prices", security(("bearer" = [])),
    responses((status = 200, body = [PriceView]), (status = 401, body = ErrorBody)))]
pub async fn list_prices(State(state): State<AppState>, _user: CurrentUser) -> Result<Json<Vec<PriceView>>, ApiError> {
    let prices = state.store.prices().await?;
    Ok(Json(prices.into_iter().map(|(model, price)| PriceView::of(model, price)).collect()))
}

/// Set a model's price (a `/` in the model name is sent as `%2F`).
#[utoipa::path(put, path = "/api/admin/prices/{model}", tag = "prices", security(("bearer" = [])), params(("model" = String, Path)),
    request_body = PriceRequest,
    responses((status = 200, body = PriceView), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_price(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(model): Path<String>,
    Json(req): Json<PriceRequest>,
) -> Result<Json<PriceView>, ApiError> {
    check_model(&model)?;
    let price = req.price()?;
    state.store.set_price(&model, &price).await?;
    state.invalidator.prices().await?;
    Ok(Json(PriceView::of(model, price)))
}

/// Remove a model's price: the gateway stops serving it.
#[utoipa::path(delete, path = "/api/admin/prices/{model}", tag = "prices", security(("bearer" = [])), params(("model" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_price(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(model): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_price(&model).await.map_err(|e| match e {
        apihub_core::store::StoreError::NotFound => ApiError::not_found("price"),
        other => other.into(),
    })?;
    state.invalidator.prices().await?;
    Ok(StatusCode::NO_CONTENT)
}
