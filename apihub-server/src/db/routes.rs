//! Metered routes on SQL.

use apihub_core::Money;
use apihub_core::route::{MeteredRoute, RouteId, RouteSpec, RouteStore};
use apihub_core::store::{Detail, StoreError};
use async_trait::async_trait;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::metered_routes;
use super::{SqlStore, corrupt, from_millis, now_millis, with_conn, write_tx};

/// A `metered_routes` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = metered_routes)]
struct RouteRow {
    id: i64,
    created_at: i64,
    updated_at: i64,
    #[diesel(embed)]
    spec: SpecColumns,
}

/// The definition's columns, written whole on insert and update.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = metered_routes, treat_none_as_null = true, treat_none_as_default_value = false)]
struct SpecColumns {
    name: String,
    path: String,
    prefix: bool,
    methods: String,
    upstream_url: String,
    upstream_key: Option<String>,
    upstream_key_header: String,
    price_per_call: i64,
    price_per_unit: Option<i64>,
    units_pointer: Option<String>,
    max_units: i64,
    key_field: Option<String>,
    model_pointer: Option<String>,
    success_statuses: String,
    timeout_secs: i32,
    allow_stream: bool,
    enabled: bool,
}

#[derive(Insertable)]
#[diesel(table_name = metered_routes)]
struct NewRouteRow {
    created_at: i64,
    updated_at: i64,
    #[diesel(embed)]
    spec: SpecColumns,
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Internal(Detail::caused_by(e)))
}

impl SpecColumns {
    fn of(spec: &RouteSpec) -> Result<Self, StoreError> {
        Ok(SpecColumns {
            name: spec.name.clone(),
            path: spec.path.clone(),
            prefix: spec.prefix,
            methods: json(&spec.methods)?,
            upstream_url: spec.upstream_url.clone(),
            upstream_key: spec.upstream_key.clone(),
            upstream_key_header: spec.upstream_key_header.clone(),
            price_per_call: spec.price_per_call.micros(),
            price_per_unit: spec.price_per_unit.map(Money::micros),
            units_pointer: spec.units_pointer.clone(),
            max_units: i64::try_from(spec.max_units).map_err(|_| StoreError::Invalid("max_units".into()))?,
            key_field: spec.key_field.clone(),
            model_pointer: spec.model_pointer.clone(),
            success_statuses: json(&spec.success_statuses)?,
            timeout_secs: i32::try_from(spec.timeout_secs).map_err(|_| StoreError::Invalid("timeout_secs".into()))?,
            allow_stream: spec.allow_stream,
            enabled: spec.enabled,
        })
    }

    fn into_domain(self) -> Result<RouteSpec, StoreError> {
        Ok(RouteSpec {
            methods: serde_json::from_str(&self.methods).map_err(|_| corrupt("route methods", &self.methods))?,
            success_statuses: serde_json::from_str(&self.success_statuses)
                .map_err(|_| corrupt("route success statuses", &self.success_statuses))?,
            max_units: u64::try_from(self.max_units).map_err(|_| corrupt("route max_units", self.max_units))?,
            timeout_secs: u32::try_from(self.timeout_secs).map_err(|_| corrupt("route timeout", self.timeout_secs))?,
            name: self.name,
            path: self.path,
            prefix: self.prefix,
            upstream_url: self.upstream_url,
            upstream_key: self.upstream_key,
            upstream_key_header: self.upstream_key_header,
            price_per_call: Money::from_micros(self.price_per_call),
            price_per_unit: self.price_per_unit.map(Money::from_micros),
            units_pointer: self.units_pointer,
            key_field: self.key_field,
            model_pointer: self.model_pointer,
            allow_stream: self.allow_stream,
            enabled: self.enabled,
        })
    }
}

impl RouteRow {
    fn into_domain(self) -> Result<MeteredRoute, StoreError> {
        Ok(MeteredRoute {
            id: self.id,
            spec: self.spec.into_domain()?,
            created_at: from_millis(self.created_at),
            updated_at: from_millis(self.updated_at),
        })
    }
}

#[async_trait]
impl RouteStore for SqlStore {
    async fn routes(&self) -> Result<Vec<MeteredRoute>, StoreError> {
        let rows: Vec<RouteRow> = with_conn!(self, |conn| {
            Ok(metered_routes::table.order(metered_routes::id.asc()).select(RouteRow::as_select()).load(conn).await?)
        })?;
        rows.into_iter().map(RouteRow::into_domain).collect()
    }

    async fn route(&self, id: RouteId) -> Result<Option<MeteredRoute>, StoreError> {
        let row: Option<RouteRow> = with_conn!(self, |conn| {
            Ok(metered_routes::table.find(id).select(RouteRow::as_select()).first(conn).await.optional()?)
        })?;
        row.map(RouteRow::into_domain).transpose()
    }

    async fn create_route(&self, spec: &RouteSpec) -> Result<MeteredRoute, StoreError> {
        let now = now_millis();
        let row = NewRouteRow { created_at: now, updated_at: now, spec: SpecColumns::of(spec)? };
        let created: RouteRow = write_tx!(self, |conn| {
            Ok(diesel::insert_into(metered_routes::table)
                .values(&row)
                .returning(RouteRow::as_returning())
                .get_result(conn)
                .await?)
        })?;
        created.into_domain()
    }

    async fn update_route(&self, id: RouteId, spec: &RouteSpec) -> Result<MeteredRoute, StoreError> {
        let columns = SpecColumns::of(spec)?;
        let updated: RouteRow = write_tx!(self, |conn| {
            Ok(diesel::update(metered_routes::table.find(id))
                .set((&columns, metered_routes::updated_at.eq(now_millis())))
                .returning(RouteRow::as_returning())
                .get_result(conn)
                .await?)
        })?;
        updated.into_domain()
    }

    async fn delete_route(&self, id: RouteId) -> Result<(), StoreError> {
        let deleted: usize =
            write_tx!(self, |conn| { Ok(diesel::delete(metered_routes::table.find(id)).execute(conn).await?) })?;
        if deleted == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }
}
