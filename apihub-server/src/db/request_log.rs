//! The per-request log on SQL: keyset pages over `usage_logs` and batched pruning.
//!
//! A page is `WHERE created_at <= c AND (created_at < c OR id < i) ORDER BY created_at DESC, id
//! DESC LIMIT n`: the first condition is an index range on `(…, created_at, id)` (see the
//! `request_log` migration), the second drops the rows of the cursor's own millisecond up to and
//! including its row. Names (user, key, route) are read afterwards for the page's ids only.

use std::collections::HashMap;

use apihub_core::request_log::{Cursor, RequestEntry, RequestFilter, RequestLogStore, StatusFilter};
use apihub_core::store::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::{api_keys, metered_routes, usage_logs, users};
use super::usage::UsageRow;
use super::{SqlStore, write_tx};

/// A page's rows and the names they refer to.
type Loaded = (Vec<(i64, UsageRow)>, Vec<(i64, String)>, Vec<(i64, String)>, Vec<(i64, String)>);

#[async_trait]
impl RequestLogStore for SqlStore {
    async fn requests(
        &self,
        filter: &RequestFilter,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<RequestEntry>, StoreError> {
        let (rows, user_names, key_names, route_names): Loaded = super::with_conn!(self, |conn| {
            let mut q = usage_logs::table.into_boxed();
            if let Some(user_id) = filter.user_id {
                q = q.filter(usage_logs::user_id.eq(user_id));
            }
            if let Some(key_id) = filter.key_id {
                q = q.filter(usage_logs::key_id.eq(key_id));
            }
            if let Some(model) = &filter.model {
                q = q.filter(usage_logs::model.eq(model.clone()));
            }
            q = match filter.status {
                None => q,
                Some(StatusFilter::Exact(status)) => q.filter(usage_logs::status.eq(i32::from(status))),
                Some(StatusFilter::Ok) => q.filter(usage_logs::status.between(200, 299)),
                Some(StatusFilter::Error) => q.filter(usage_logs::status.not_between(200, 299)),
            };
            if let Some(from) = filter.from {
                q = q.filter(usage_logs::created_at.ge(from.timestamp_millis()));
            }
            if let Some(to) = filter.to {
                q = q.filter(usage_logs::created_at.lt(to.timestamp_millis()));
            }
            if let Some(Cursor { created_at_ms, id }) = after {
                q = q
                    .filter(usage_logs::created_at.le(created_at_ms))
                    .filter(usage_logs::created_at.lt(created_at_ms).or(usage_logs::id.lt(id)));
            }
            let rows: Vec<(i64, UsageRow)> = q
                .order((usage_logs::created_at.desc(), usage_logs::id.desc()))
                .limit(i64::from(limit))
                .select((usage_logs::id, UsageRow::as_select()))
                .load(conn)
                .await?;
            let ids = |of: fn(&UsageRow) -> Option<i64>| {
                let mut ids: Vec<i64> = rows.iter().filter_map(|(_, row)| of(row)).collect();
                ids.sort_unstable();
                ids.dedup();
                ids
            };
            let user_names = users::table
                .filter(users::id.eq_any(ids(|r| Some(r.user_id))))
                .select((users::id, users::username))
                .load(conn)
                .await?;
            let key_names = api_keys::table
                .filter(api_keys::id.eq_any(ids(|r| Some(r.key_id))))
                .select((api_keys::id, api_keys::name))
                .load(conn)
                .await?;
            let route_names = metered_routes::table
                .filter(metered_routes::id.eq_any(ids(|r| r.route_id)))
                .select((metered_routes::id, metered_routes::name))
                .load(conn)
                .await?;
            Ok((rows, user_names, key_names, route_names))
        })?;
        let (user_names, key_names, route_names): (HashMap<_, _>, HashMap<_, _>, HashMap<_, _>) =
            (user_names.into_iter().collect(), key_names.into_iter().collect(), route_names.into_iter().collect());
        rows.into_iter()
            .map(|(id, row)| {
                let record = row.into_domain()?;
                Ok(RequestEntry {
                    id,
                    username: user_names.get(&record.user_id).cloned().unwrap_or_default(),
                    key_name: key_names.get(&record.key_id).cloned().unwrap_or_default(),
                    route_name: record.route_id.map(|route| route_names.get(&route).cloned().unwrap_or_default()),
                    record,
                })
            })
            .collect()
    }

    async fn prune_requests(&self, before: DateTime<Utc>, batch: u32) -> Result<u64, StoreError> {
        let before = before.timestamp_millis();
        let deleted = write_tx!(self, |conn| {
            let oldest: Vec<i64> = usage_logs::table
                .filter(usage_logs::created_at.lt(before))
                .order(usage_logs::created_at.asc())
                .limit(i64::from(batch))
                .select(usage_logs::id)
                .load(conn)
                .await?;
            Ok(diesel::delete(usage_logs::table.filter(usage_logs::id.eq_any(oldest))).execute(conn).await?)
        })?;
        Ok(deleted as u64)
    }
}
