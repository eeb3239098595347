//! `/api/admin/channels`: the upstream channels LLM requests go to, for administrators (see
//! [`crate::proxy::channels`]). Every change reloads the channels on this node and, through
//! Redis, on every other.

use std::collections::{BTreeMap, HashMap};

use apihub_core::channel::{BreakerState, Channel, ChannelId, ChannelSpec, dialect_name, dialect_named};
use apihub_core::store::StoreError;
use axum::extract::State;
use chrono::{DateTime, Utc};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::prices::PriceRequest;
use super::views::double_option;
use super::views::names::DialectName;
use crate::auth::AdminUser;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path};
use crate::proxy::channels::ChannelStatus;
use crate::state::AppState;

/// A channel's health on this node.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelHealth {
    /// `closed` (taking traffic), `open` (skipped until its back-off passes) or `half_open` (one
    /// trial request at a time).
    #[schema(example = "closed")]
    pub state: String,
    pub consecutive_failures: u32,
    /// Attempts it answered since this node started.
    pub answered: u64,
    /// Attempts that failed (connect error, timeout, 5xx, 429) since this node started.
    pub failed: u64,
}

/// A channel as the API shows it: never its key, only a preview.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelView {
    pub id: i64,
    pub name: String,
    pub base_url: String,
    /// `…` and the key's last four characters (only `…` for a key under 12 characters); null
    /// when the channel sends none.
    pub api_key_preview: Option<String>,
    /// Empty: all.
    #[schema(value_type = Vec<DialectName>)]
    pub dialects: Vec<String>,
    /// Public model names it serves; empty: any.
    pub models: Vec<String>,
    /// Public model name → the channel's name for it.
    pub aliases: BTreeMap<String, String>,
    pub priority: i32,
    pub weight: u32,
    pub enabled: bool,
    /// Seconds to the response headers; null: `UPSTREAM_TIMEOUT_SECS`.
    pub timeout_secs: Option<u32>,
    /// What the operator pays this channel, per public model name (statistics' cost and margin).
    pub cost_prices: BTreeMap<String, PriceRequest>,
    /// What the operator pays for a model `cost_prices` does not list; null: such a request's
    /// cost is unknown.
    pub default_cost_price: Option<PriceRequest>,
    /// Null while disabled (it takes no traffic) or until this node has loaded it.
    pub health: Option<ChannelHealth>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ChannelView {
    fn of(channel: Channel, status: Option<&ChannelStatus>) -> Self {
        let spec = channel.spec;
        let health = status.map(|status| ChannelHealth {
            state: match status.state {
                BreakerState::Closed => "closed",
                BreakerState::Open => "open",
                BreakerState::HalfOpen => "half_open",
            }
            .to_owned(),
            consecutive_failures: status.consecutive_failures,
            answered: status.answered,
            failed: status.failed,
        });
        ChannelView {
            id: channel.id,
            api_key_preview: spec.key_preview(),
            name: spec.name,
            base_url: spec.base_url,
            dialects: spec.dialects.iter().map(|d| dialect_name(*d).to_owned()).collect(),
            models: spec.models,
            aliases: spec.aliases,
            priority: spec.priority,
            weight: spec.weight,
            enabled: spec.enabled,
            timeout_secs: spec.timeout_secs,
            cost_prices: spec.cost_prices.into_iter().map(|(model, price)| (model, PriceRequest::of(price))).collect(),
            default_cost_price: spec.default_cost_price.map(PriceRequest::of),
            health,
            created_at: channel.created_at,
            updated_at: channel.updated_at,
        }
    }
}

/// Body of `POST /api/admin/channels` and `PUT /api/admin/channels/{channel_id}` (a whole
/// definition; on update an absent `api_key` keeps the stored one, `null` removes it).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelRequest {
    /// Unique, 1 to 64 characters.
    #[schema(example = "cliproxy-1")]
    pub name: String,
    /// Plain http:// base URL (put TLS termination in front of a remote upstream).
    #[schema(example = "http://127.0.0.1:8317")]
    pub base_url: String,
    /// The key sent upstream (never shown again).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub api_key: Option<Option<String>>,
    /// `openai`, `anthropic`, `gemini`; absent or empty: all.
    #[schema(value_type = Option<Vec<DialectName>>, example = json!(["openai"]))]
    pub dialects: Option<Vec<String>>,
    /// Public model names it serves (at most 500); absent or empty: any.
    pub models: Option<Vec<String>>,
    /// Public model name → the channel's name for it (at most 500).
    #[schema(example = json!({"gpt-4o": "gpt-4o-2024-11-20"}))]
    pub aliases: Option<BTreeMap<String, String>>,
    /// Higher is tried first, -1000 to 1000; default 0.
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: Option<i32>,
    /// Share of traffic inside its priority group, 1 to 1000; default 1.
    #[schema(minimum = 1, maximum = 1000)]
    pub weight: Option<u32>,
    /// Default true.
    pub enabled: Option<bool>,
    /// Seconds to the response headers, 1 to 3600; default `UPSTREAM_TIMEOUT_SECS`.
    #[schema(minimum = 1, maximum = 3600)]
    pub timeout_secs: Option<u32>,
    /// What the operator pays this channel, per public model name (at most 500; prices as a
    /// model's price, none negative); absent: none. Each request it answers records its cost.
    #[schema(example = json!({"gpt-4o": {"input_price": 2, "output_price": 8}}))]
    pub cost_prices: Option<BTreeMap<String, PriceRequest>>,
    /// What the operator pays for a model `cost_prices` does not list; absent or null: such a
    /// request's cost is unknown.
    pub default_cost_price: Option<PriceRequest>,
}

impl ChannelRequest {
    /// The definition, checked; `current_key` is kept when the request names no key.
    fn into_spec(self, current_key: Option<String>) -> Result<ChannelSpec, ApiError> {
        let dialects = self
            .dialects
            .unwrap_or_default()
            .iter()
            .map(|name| {
                dialect_named(name)
                    .ok_or_else(|| ApiError::Validation(format!("dialect `{name}` is not openai, anthropic or gemini")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut spec = ChannelSpec::new(&self.name, &self.base_url);
        spec.api_key = self.api_key.unwrap_or(current_key);
        spec.dialects = dialects;
        spec.models = self.models.unwrap_or_default();
        spec.aliases = self.aliases.unwrap_or_default();
        spec.priority = self.priority.unwrap_or(0);
        spec.weight = self.weight.unwrap_or(1);
        spec.enabled = self.enabled.unwrap_or(true);
        spec.timeout_secs = self.timeout_secs;
        spec.cost_prices = self
            .cost_prices
            .unwrap_or_default()
            .into_iter()
            .map(|(model, price)| {
                let price = price.price().map_err(|e| ApiError::Validation(format!("cost_prices `{model}`: {e}")))?;
                Ok((model, price))
            })
            .collect::<Result<_, ApiError>>()?;
        spec.default_cost_price = self
            .default_cost_price
            .map(|price| price.price().map_err(|e| ApiError::Validation(format!("default_cost_price: {e}"))))
            .transpose()?;
        spec.validate().map_err(|e| ApiError::Validation(e.to_string()))?;
        Ok(spec)
    }
}

fn stored(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict(_) => ApiError::Conflict("a channel with this name exists".into()),
        StoreError::NotFound => ApiError::not_found("channel"),
        other => other.into(),
    }
}

/// Every channel, with its health on this node.
#[utoipa::path(get, path = "/api/admin/channels", tag = "channels", security(("bearer" = [])),
    responses((status = 200, body = [ChannelView]), (status = 403, body = ErrorBody)))]
pub async fn list_channels(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> Result<Json<Vec<ChannelView>>, ApiError> {
    let statuses: HashMap<ChannelId, ChannelStatus> =
        state.channels.statuses().into_iter().filter_map(|status| Some((status.id?, status))).collect();
    let channels = state.channels.store().channels().await?;
    Ok(Json(
        channels
            .into_iter()
            .map(|c| {
                let status = statuses.get(&c.id);
                ChannelView::of(c, status)
            })
            .collect(),
    ))
}

/// Create a channel; it takes traffic at once on every node (with the first channel, `UPSTREAM_URL`
/// stops being used).
#[utoipa::path(post, path = "/api/admin/channels", tag = "channels", security(("bearer" = [])), request_body = ChannelRequest,
    responses((status = 201, body = ChannelView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_channel(
    State(state): State<AppState>,
    _admin: AdminUser,
    Json(req): Json<ChannelRequest>,
) -> Result<(StatusCode, Json<ChannelView>), ApiError> {
    let spec = req.into_spec(None)?;
    let channel = state.channels.store().create_channel(&spec).await.map_err(stored)?;
    state.invalidator.channels().await?;
    let status = state.channels.status(channel.id);
    Ok((StatusCode::CREATED, Json(ChannelView::of(channel, status.as_ref()))))
}

/// One channel.
#[utoipa::path(get, path = "/api/admin/channels/{channel_id}", tag = "channels", security(("bearer" = [])), params(("channel_id" = i64, Path)),
    responses((status = 200, body = ChannelView), (status = 404, body = ErrorBody)))]
pub async fn get_channel(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(channel_id): Path<i64>,
) -> Result<Json<ChannelView>, ApiError> {
    let channel = state.channels.store().channel(channel_id).await?.ok_or_else(|| ApiError::not_found("channel"))?;
    Ok(Json(ChannelView::of(channel, state.channels.status(channel_id).as_ref())))
}

/// Replace a channel's definition (an absent `api_key` keeps the stored one); its health is kept.
#[utoipa::path(put, path = "/api/admin/channels/{channel_id}", tag = "channels", security(("bearer" = [])), params(("channel_id" = i64, Path)),
    request_body = ChannelRequest,
    responses((status = 200, body = ChannelView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_channel(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(channel_id): Path<i64>,
    Json(req): Json<ChannelRequest>,
) -> Result<Json<ChannelView>, ApiError> {
    let store = state.channels.store();
    let current = store.channel(channel_id).await?.ok_or_else(|| ApiError::not_found("channel"))?;
    let spec = req.into_spec(current.spec.api_key)?;
    let channel = store.update_channel(channel_id, &spec).await.map_err(stored)?;
    state.invalidator.channels().await?;
    Ok(Json(ChannelView::of(channel, state.channels.status(channel_id).as_ref())))
}

/// Remove a channel (usage rows keep its name); with none left, `UPSTREAM_URL` is used again.
#[utoipa::path(delete, path = "/api/admin/channels/{channel_id}", tag = "channels", security(("bearer" = [])), params(("channel_id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_channel(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(channel_id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    state.channels.store().delete_channel(channel_id).await.map_err(stored)?;
    state.invalidator.channels().await?;
    Ok(StatusCode::NO_CONTENT)
}
