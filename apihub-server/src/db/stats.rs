//! Usage statistics on SQL: aggregates over `usage_logs` (and `transactions`, for revenue).
//!
//! The sums are literal SQL because diesel types `SUM(bigint)` as `Numeric` (PostgreSQL's result
//! type); `CAST(COALESCE(SUM(x), 0) AS BIGINT)` is one `BigInt` on both backends. Days are
//! bucketed with integer division of the stored Unix milliseconds, which both backends truncate
//! alike; [`fill_days`] turns the buckets into dates.

use std::collections::HashMap;

use apihub_core::Money;
use apihub_core::ledger::TxType;
use apihub_core::stats::{
    DayPoint, MILLIS_PER_DAY, ModelPoint, StatsFilter, StatsStore, Summary, TimeRange, UserPoint, fill_days,
};
use apihub_core::store::StoreError;
use async_trait::async_trait;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;

use super::schema::{transactions, usage_logs, users};
use super::{SqlStore, with_conn};

/// The SQL type of [`COUNTERS`], in [`Counters`] order.
type CounterTypes = (BigInt, BigInt, BigInt, BigInt, BigInt, BigInt);
/// One row of [`COUNTERS`]: requests, succeeded, prompt tokens, completion tokens, raw cost, charged.
type Counters = (i64, i64, i64, i64, i64, i64);

/// Every counter of a [`Summary`], aggregated over the selected `usage_logs` rows.
const COUNTERS: &str = "COUNT(*), \
    CAST(COALESCE(SUM(CASE WHEN usage_logs.status BETWEEN 200 AND 299 THEN 1 ELSE 0 END), 0) AS BIGINT), \
    CAST(COALESCE(SUM(usage_logs.prompt_tokens), 0) AS BIGINT), \
    CAST(COALESCE(SUM(usage_logs.completion_tokens), 0) AS BIGINT), \
    CAST(COALESCE(SUM(usage_logs.raw_cost), 0) AS BIGINT), \
    CAST(COALESCE(SUM(usage_logs.charged), 0) AS BIGINT)";

/// Total charged, to rank groups by.
const CHARGED: &str = "SUM(usage_logs.charged)";

/// The UTC day of a row, as days since 1970-01-01 (see [`apihub_core::stats::day_index`]).
fn day_bucket() -> String {
    format!("usage_logs.created_at / {MILLIS_PER_DAY}")
}

fn summary((requests, succeeded, prompt_tokens, completion_tokens, raw_cost, charged): Counters) -> Summary {
    Summary {
        requests: u64::try_from(requests).unwrap_or_default(),
        succeeded: u64::try_from(succeeded).unwrap_or_default(),
        prompt_tokens,
        completion_tokens,
        raw_cost: Money::from_micros(raw_cost),
        charged: Money::from_micros(charged),
    }
}

/// `$query` (a select on `usage_logs`, grouped or not) boxed and narrowed to the filter's rows.
macro_rules! filtered {
    ($filter:expr, $query:expr) => {{
        let filter: &StatsFilter = $filter;
        let mut q = $query
            .into_boxed()
            .filter(usage_logs::created_at.ge(filter.from.timestamp_millis()))
            .filter(usage_logs::created_at.lt(filter.to.timestamp_millis()));
        if let Some(user_id) = filter.user_id {
            q = q.filter(usage_logs::user_id.eq(user_id));
        }
        if let Some(key_id) = filter.key_id {
            q = q.filter(usage_logs::key_id.eq(key_id));
        }
        q
    }};
}

#[async_trait]
impl StatsStore for SqlStore {
    async fn usage_summary(&self, filter: &StatsFilter) -> Result<Summary, StoreError> {
        let row: Counters = with_conn!(self, |conn| {
            Ok(filtered!(filter, usage_logs::table.select(sql::<CounterTypes>(COUNTERS))).get_result(conn).await?)
        })?;
        Ok(summary(row))
    }

    async fn usage_by_day(&self, filter: &StatsFilter) -> Result<Vec<DayPoint>, StoreError> {
        let rows: Vec<(i64, Counters)> = with_conn!(self, |conn| {
            let query = usage_logs::table
                .select((sql::<BigInt>(&day_bucket()), sql::<CounterTypes>(COUNTERS)))
                .group_by(sql::<BigInt>(&day_bucket()));
            Ok(filtered!(filter, query).load(conn).await?)
        })?;
        Ok(fill_days(filter.from, filter.to, rows.into_iter().map(|(day, counters)| (day, summary(counters)))))
    }

    async fn usage_by_model(&self, filter: &StatsFilter) -> Result<Vec<ModelPoint>, StoreError> {
        let rows: Vec<(String, Counters)> = with_conn!(self, |conn| {
            let query = usage_logs::table
                .select((usage_logs::model, sql::<CounterTypes>(COUNTERS)))
                .group_by(usage_logs::model);
            Ok(filtered!(filter, query)
                .order((sql::<BigInt>(CHARGED).desc(), usage_logs::model.asc()))
                .load(conn)
                .await?)
        })?;
        Ok(rows.into_iter().map(|(model, counters)| ModelPoint { model, usage: summary(counters) }).collect())
    }

    async fn top_users(&self, range: &TimeRange, limit: u32) -> Result<Vec<UserPoint>, StoreError> {
        let filter = StatsFilter::over(*range);
        let (rows, names): (Vec<(i64, Counters)>, Vec<(i64, String)>) = with_conn!(self, |conn| {
            let query = usage_logs::table
                .select((usage_logs::user_id, sql::<CounterTypes>(COUNTERS)))
                .group_by(usage_logs::user_id);
            let rows: Vec<(i64, Counters)> = filtered!(&filter, query)
                .order((sql::<BigInt>(CHARGED).desc(), usage_logs::user_id.asc()))
                .limit(i64::from(limit))
                .load(conn)
                .await?;
            let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
            let names =
                users::table.filter(users::id.eq_any(ids)).select((users::id, users::username)).load(conn).await?;
            Ok((rows, names))
        })?;
        let mut names: HashMap<i64, String> = names.into_iter().collect();
        Ok(rows
            .into_iter()
            .map(|(user_id, counters)| UserPoint {
                user_id,
                username: names.remove(&user_id).unwrap_or_default(),
                usage: summary(counters),
            })
            .collect())
    }

    async fn recharge_total(&self, range: &TimeRange) -> Result<Money, StoreError> {
        let micros: i64 = with_conn!(self, |conn| {
            Ok(transactions::table
                .filter(transactions::tx_type.eq(TxType::Recharge.as_str()))
                .filter(transactions::amount.gt(0))
                .filter(transactions::created_at.ge(range.from().timestamp_millis()))
                .filter(transactions::created_at.lt(range.to().timestamp_millis()))
                .select(sql::<BigInt>("CAST(COALESCE(SUM(transactions.amount), 0) AS BIGINT)"))
                .get_result(conn)
                .await?)
        })?;
        Ok(Money::from_micros(micros))
    }
}
