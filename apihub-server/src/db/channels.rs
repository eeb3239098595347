//! Upstream channels on SQL.

use std::collections::BTreeMap;

use apihub_core::Money;
use apihub_core::channel::{Channel, ChannelId, ChannelSpec, ChannelStore, dialect_name, dialect_named};
use apihub_core::pricing::ModelPrice;
use apihub_core::store::{Detail, StoreError};
use async_trait::async_trait;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::channels;
use super::{SqlStore, corrupt, from_millis, now_millis, with_conn, write_tx};

/// A `channels` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = channels)]
struct ChannelRow {
    id: i64,
    created_at: i64,
    updated_at: i64,
    #[diesel(embed)]
    spec: SpecColumns,
}

/// The definition's columns, written whole on insert and update (lists and maps as JSON text).
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = channels, treat_none_as_null = true, treat_none_as_default_value = false)]
struct SpecColumns {
    name: String,
    base_url: String,
    api_key: Option<String>,
    dialects: String,
    models: String,
    aliases: String,
    priority: i32,
    weight: i32,
    enabled: bool,
    timeout_secs: Option<i32>,
    cost_prices: String,
    default_cost_price: Option<String>,
}

/// A cost price as JSON text: integer micro-units, as `model_prices` stores a price.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct StoredPrice {
    input: i64,
    output: i64,
    cache_read: Option<i64>,
    cache_write: Option<i64>,
    per_request: Option<i64>,
    per_image: Option<i64>,
}

impl StoredPrice {
    fn of(price: &ModelPrice) -> Self {
        let micros = |m: Option<Money>| m.map(Money::micros);
        StoredPrice {
            input: price.input.micros(),
            output: price.output.micros(),
            cache_read: micros(price.cache_read),
            cache_write: micros(price.cache_write),
            per_request: micros(price.per_request),
            per_image: micros(price.per_image),
        }
    }

    fn into_domain(self) -> ModelPrice {
        let money = |v: Option<i64>| v.map(Money::from_micros);
        ModelPrice {
            input: Money::from_micros(self.input),
            output: Money::from_micros(self.output),
            cache_read: money(self.cache_read),
            cache_write: money(self.cache_write),
            per_request: money(self.per_request),
            per_image: money(self.per_image),
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = channels)]
struct NewChannelRow {
    created_at: i64,
    updated_at: i64,
    #[diesel(embed)]
    spec: SpecColumns,
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Internal(Detail::caused_by(e)))
}

impl SpecColumns {
    fn of(spec: &ChannelSpec) -> Result<Self, StoreError> {
        let dialects: Vec<&str> = spec.dialects.iter().map(|d| dialect_name(*d)).collect();
        Ok(SpecColumns {
            name: spec.name.clone(),
            base_url: spec.base_url.clone(),
            api_key: spec.api_key.clone(),
            dialects: json(&dialects)?,
            models: json(&spec.models)?,
            aliases: json(&spec.aliases)?,
            cost_prices: json(
                &spec.cost_prices.iter().map(|(m, p)| (m, StoredPrice::of(p))).collect::<BTreeMap<_, _>>(),
            )?,
            default_cost_price: spec.default_cost_price.as_ref().map(|p| json(&StoredPrice::of(p))).transpose()?,
            priority: spec.priority,
            weight: i32::try_from(spec.weight).map_err(|_| StoreError::Invalid("weight".into()))?,
            enabled: spec.enabled,
            timeout_secs: spec
                .timeout_secs
                .map(i32::try_from)
                .transpose()
                .map_err(|_| StoreError::Invalid("timeout_secs".into()))?,
        })
    }

    fn into_domain(self) -> Result<ChannelSpec, StoreError> {
        let names: Vec<String> =
            serde_json::from_str(&self.dialects).map_err(|_| corrupt("channel dialects", &self.dialects))?;
        let dialects = names
            .iter()
            .map(|name| dialect_named(name).ok_or_else(|| corrupt("channel dialect", name)))
            .collect::<Result<_, _>>()?;
        let cost_prices: BTreeMap<String, StoredPrice> =
            serde_json::from_str(&self.cost_prices).map_err(|_| corrupt("channel cost prices", &self.cost_prices))?;
        let default_cost_price = match &self.default_cost_price {
            Some(text) => Some(
                serde_json::from_str::<StoredPrice>(text)
                    .map_err(|_| corrupt("channel default cost price", text))?
                    .into_domain(),
            ),
            None => None,
        };
        Ok(ChannelSpec {
            cost_prices: cost_prices.into_iter().map(|(model, price)| (model, price.into_domain())).collect(),
            default_cost_price,
            dialects,
            models: serde_json::from_str(&self.models).map_err(|_| corrupt("channel models", &self.models))?,
            aliases: serde_json::from_str(&self.aliases).map_err(|_| corrupt("channel aliases", &self.aliases))?,
            weight: u32::try_from(self.weight).map_err(|_| corrupt("channel weight", self.weight))?,
            timeout_secs: self
                .timeout_secs
                .map(u32::try_from)
                .transpose()
                .map_err(|_| corrupt("channel timeout", format!("{:?}", self.timeout_secs)))?,
            name: self.name,
            base_url: self.base_url,
            api_key: self.api_key,
            priority: self.priority,
            enabled: self.enabled,
        })
    }
}

impl ChannelRow {
    fn into_domain(self) -> Result<Channel, StoreError> {
        Ok(Channel {
            id: self.id,
            spec: self.spec.into_domain()?,
            created_at: from_millis(self.created_at),
            updated_at: from_millis(self.updated_at),
        })
    }
}

#[async_trait]
impl ChannelStore for SqlStore {
    async fn channels(&self) -> Result<Vec<Channel>, StoreError> {
        let rows: Vec<ChannelRow> = with_conn!(self, |conn| {
            Ok(channels::table.order(channels::id.asc()).select(ChannelRow::as_select()).load(conn).await?)
        })?;
        rows.into_iter().map(ChannelRow::into_domain).collect()
    }

    async fn channel(&self, id: ChannelId) -> Result<Option<Channel>, StoreError> {
        let row: Option<ChannelRow> = with_conn!(self, |conn| {
            Ok(channels::table.find(id).select(ChannelRow::as_select()).first(conn).await.optional()?)
        })?;
        row.map(ChannelRow::into_domain).transpose()
    }

    async fn create_channel(&self, spec: &ChannelSpec) -> Result<Channel, StoreError> {
        let now = now_millis();
        let row = NewChannelRow { created_at: now, updated_at: now, spec: SpecColumns::of(spec)? };
        let created: ChannelRow = write_tx!(self, |conn| {
            Ok(diesel::insert_into(channels::table)
                .values(&row)
                .returning(ChannelRow::as_returning())
                .get_result(conn)
                .await?)
        })?;
        created.into_domain()
    }

    async fn update_channel(&self, id: ChannelId, spec: &ChannelSpec) -> Result<Channel, StoreError> {
        let columns = SpecColumns::of(spec)?;
        let updated: ChannelRow = write_tx!(self, |conn| {
            Ok(diesel::update(channels::table.find(id))
                .set((&columns, channels::updated_at.eq(now_millis())))
                .returning(ChannelRow::as_returning())
                .get_result(conn)
                .await?)
        })?;
        updated.into_domain()
    }

    async fn delete_channel(&self, id: ChannelId) -> Result<(), StoreError> {
        let deleted: usize =
            write_tx!(self, |conn| { Ok(diesel::delete(channels::table.find(id)).execute(conn).await?) })?;
        if deleted == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }
}
