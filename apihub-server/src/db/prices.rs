//! Model prices on SQL.

use apihub_core::Money;
use apihub_core::pricing::ModelPrice;
use apihub_core::store::{PriceStore, StoreError};
use async_trait::async_trait;
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;

use super::schema::model_prices;
use super::{SqlStore, now_millis, with_conn, write_tx};

/// A `model_prices` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = model_prices, treat_none_as_default_value = false)]
struct PriceRow {
    model: String,
    input_price: i64,
    output_price: i64,
    cache_read_price: Option<i64>,
    cache_write_price: Option<i64>,
    per_request_price: Option<i64>,
    per_image_price: Option<i64>,
    updated_at: i64,
}

impl PriceRow {
    fn into_domain(self) -> (String, ModelPrice) {
        let money = |v: Option<i64>| v.map(Money::from_micros);
        (
            self.model,
            ModelPrice {
                input: Money::from_micros(self.input_price),
                output: Money::from_micros(self.output_price),
                cache_read: money(self.cache_read_price),
                cache_write: money(self.cache_write_price),
                per_request: money(self.per_request_price),
                per_image: money(self.per_image_price),
            },
        )
    }
}

#[async_trait]
impl PriceStore for SqlStore {
    async fn prices(&self) -> Result<Vec<(String, ModelPrice)>, StoreError> {
        let rows: Vec<PriceRow> = with_conn!(self, |conn| {
            Ok(model_prices::table.order(model_prices::model.asc()).select(PriceRow::as_select()).load(conn).await?)
        })?;
        Ok(rows.into_iter().map(PriceRow::into_domain).collect())
    }

    async fn set_price(&self, model: &str, price: &ModelPrice) -> Result<(), StoreError> {
        let micros = |m: Option<Money>| m.map(Money::micros);
        let row = PriceRow {
            model: model.to_owned(),
            input_price: price.input.micros(),
            output_price: price.output.micros(),
            cache_read_price: micros(price.cache_read),
            cache_write_price: micros(price.cache_write),
            per_request_price: micros(price.per_request),
            per_image_price: micros(price.per_image),
            updated_at: now_millis(),
        };
        write_tx!(self, |conn| {
            diesel::insert_into(model_prices::table)
                .values(&row)
                .on_conflict(model_prices::model)
                .do_update()
                .set((
                    model_prices::input_price.eq(excluded(model_prices::input_price)),
                    model_prices::output_price.eq(excluded(model_prices::output_price)),
                    model_prices::cache_read_price.eq(excluded(model_prices::cache_read_price)),
                    model_prices::cache_write_price.eq(excluded(model_prices::cache_write_price)),
                    model_prices::per_request_price.eq(excluded(model_prices::per_request_price)),
                    model_prices::per_image_price.eq(excluded(model_prices::per_image_price)),
                    model_prices::updated_at.eq(excluded(model_prices::updated_at)),
                ))
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    async fn delete_price(&self, model: &str) -> Result<(), StoreError> {
        let deleted: usize = write_tx!(self, |conn| {
            Ok(diesel::delete(model_prices::table.filter(model_prices::model.eq(model))).execute(conn).await?)
        })?;
        if deleted == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }
}
