//! Usage statistics on SQL: aggregates over `usage_logs` (and `transactions`, for revenue).
//!
//! The sums are literal SQL because diesel types `SUM(bigint)` as `Numeric` (PostgreSQL's result
//! type); [`saturating_sum`] is one `BigInt` on both backends that never fails, stopping near
//! `i64`'s limits as the in-memory [`Summary`] sums do. Days are bucketed with integer division of
//! the stored Unix milliseconds, which both backends truncate alike; [`fill_days`] turns the
//! buckets into dates.

use std::collections::HashMap;

use apihub_core::Money;
use apihub_core::ledger::TxType;
use apihub_core::stats::{
    DayPoint, MILLIS_PER_DAY, MarginPoint, Margins, ModelPoint, RoutePoint, StatsFilter, StatsStore, Summary,
    TimeRange, UserPoint, fill_days,
};
use apihub_core::store::StoreError;
use async_trait::async_trait;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;

use super::schema::{metered_routes, transactions, usage_logs, users};
use super::{SqlStore, with_conn};

/// `SUM(column)` of a `BIGINT` column, as one `BIGINT` on both backends (0 for no rows), that
/// saturates instead of failing: SQLite's `SUM` raises "integer overflow" past `i64`, and
/// PostgreSQL's (a `numeric`) fails to convert back. One row with 2⁶³ − 1 tokens must not turn
/// every statistics endpoint into a 500.
///
/// Each value is split into `value / 10⁶` and `value % 10⁶` (both backends truncate toward zero
/// alike), so neither partial sum overflows before 10²⁴; the high part then takes the carry of the
/// low one, and the result is `high × 10⁶ + low`, or `±(2⁶³ − 1)` when `|high|` is above
/// [`SATURATED_HIGH`] (so the saturation starts within 10⁶ of the limit).
fn saturating_sum(column: &str) -> String {
    const SPLIT: i64 = 1_000_000;
    let low = format!("CAST(SUM({column} % {SPLIT}) AS BIGINT)");
    let high = format!("(CAST(SUM({column} / {SPLIT}) AS BIGINT) + {low} / {SPLIT})");
    format!(
        "CAST(COALESCE(CASE WHEN {high} > {SATURATED_HIGH} THEN {max} WHEN {high} < -{SATURATED_HIGH} THEN -{max} \
         ELSE {high} * {SPLIT} + {low} % {SPLIT} END, 0) AS BIGINT)",
        max = i64::MAX,
    )
}

/// The largest high part [`saturating_sum`] combines: `(i64::MAX / 10⁶) − 1`, so that
/// `high × 10⁶ + low` (with `|low| < 10⁶`) stays within `i64`.
const SATURATED_HIGH: i64 = i64::MAX / 1_000_000 - 1;

/// The SQL type of [`counters`], in [`Counters`] order.
type CounterTypes = (BigInt, BigInt, BigInt, BigInt, BigInt, BigInt);
/// One row of [`counters`]: requests, succeeded, prompt tokens, completion tokens, raw cost, charged.
type Counters = (i64, i64, i64, i64, i64, i64);

/// Every counter of a [`Summary`], aggregated over the selected `usage_logs` rows.
fn counters() -> String {
    format!(
        "COUNT(*), \
         CAST(COALESCE(SUM(CASE WHEN usage_logs.status BETWEEN 200 AND 299 THEN 1 ELSE 0 END), 0) AS BIGINT), \
         {}, {}, {}, {}",
        saturating_sum("usage_logs.prompt_tokens"),
        saturating_sum("usage_logs.completion_tokens"),
        saturating_sum("usage_logs.raw_cost"),
        charged(),
    )
}

/// Total charged, to rank groups by.
fn charged() -> String {
    saturating_sum("usage_logs.charged")
}

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

/// The SQL type of [`margin_counters`], in [`MarginCounters`] order.
type MarginTypes = (BigInt, BigInt, BigInt, BigInt, BigInt);
/// One row of [`margin_counters`]: requests, revenue, cost, uncosted requests, uncosted revenue.
type MarginCounters = (i64, i64, i64, i64, i64);

/// Every counter of [`Margins`], aggregated over the selected `usage_logs` rows (a NULL cost is
/// left out of the cost and counted as uncosted).
fn margin_counters() -> String {
    format!(
        "COUNT(*), {}, {}, \
         CAST(COALESCE(SUM(CASE WHEN usage_logs.cost IS NULL AND usage_logs.charged <> 0 THEN 1 ELSE 0 END), 0) AS BIGINT), \
         {}",
        charged(),
        saturating_sum("usage_logs.cost"),
        saturating_sum("(CASE WHEN usage_logs.cost IS NULL THEN usage_logs.charged ELSE 0 END)"),
    )
}

fn margins((requests, revenue, cost, uncosted_requests, uncosted_revenue): MarginCounters) -> Margins {
    Margins {
        requests: u64::try_from(requests).unwrap_or_default(),
        revenue: Money::from_micros(revenue),
        cost: Money::from_micros(cost),
        uncosted_requests: u64::try_from(uncosted_requests).unwrap_or_default(),
        uncosted_revenue: Money::from_micros(uncosted_revenue),
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
            Ok(filtered!(filter, usage_logs::table.select(sql::<CounterTypes>(&counters()))).get_result(conn).await?)
        })?;
        Ok(summary(row))
    }

    async fn usage_by_day(&self, filter: &StatsFilter) -> Result<Vec<DayPoint>, StoreError> {
        let rows: Vec<(i64, Counters)> = with_conn!(self, |conn| {
            let query = usage_logs::table
                .select((sql::<BigInt>(&day_bucket()), sql::<CounterTypes>(&counters())))
                .group_by(sql::<BigInt>(&day_bucket()));
            Ok(filtered!(filter, query).load(conn).await?)
        })?;
        Ok(fill_days(filter.from, filter.to, rows.into_iter().map(|(day, counters)| (day, summary(counters)))))
    }

    async fn usage_by_model(&self, filter: &StatsFilter) -> Result<Vec<ModelPoint>, StoreError> {
        let rows: Vec<(String, Counters)> = with_conn!(self, |conn| {
            let query = usage_logs::table
                .select((usage_logs::model, sql::<CounterTypes>(&counters())))
                .group_by(usage_logs::model);
            Ok(filtered!(filter, query)
                .order((sql::<BigInt>(&charged()).desc(), usage_logs::model.asc()))
                .load(conn)
                .await?)
        })?;
        Ok(rows.into_iter().map(|(model, counters)| ModelPoint { model, usage: summary(counters) }).collect())
    }

    async fn usage_by_route(&self, filter: &StatsFilter) -> Result<Vec<RoutePoint>, StoreError> {
        let (rows, names): (Vec<(Option<i64>, Counters)>, Vec<(i64, String)>) = with_conn!(self, |conn| {
            let query = usage_logs::table
                .filter(usage_logs::route_id.is_not_null())
                .select((usage_logs::route_id, sql::<CounterTypes>(&counters())))
                .group_by(usage_logs::route_id);
            let rows: Vec<(Option<i64>, Counters)> = filtered!(filter, query)
                .order((sql::<BigInt>(&charged()).desc(), usage_logs::route_id.asc()))
                .load(conn)
                .await?;
            let ids: Vec<i64> = rows.iter().filter_map(|(id, _)| *id).collect();
            let names = metered_routes::table
                .filter(metered_routes::id.eq_any(ids))
                .select((metered_routes::id, metered_routes::name))
                .load(conn)
                .await?;
            Ok((rows, names))
        })?;
        let mut names: HashMap<i64, String> = names.into_iter().collect();
        Ok(rows
            .into_iter()
            .filter_map(|(route_id, counters)| {
                let route_id = route_id?;
                Some(RoutePoint {
                    route_id,
                    name: names.remove(&route_id).unwrap_or_default(),
                    usage: summary(counters),
                })
            })
            .collect())
    }

    async fn top_users(&self, range: &TimeRange, limit: u32) -> Result<Vec<UserPoint>, StoreError> {
        let filter = StatsFilter::over(*range);
        let (rows, names): (Vec<(i64, Counters)>, Vec<(i64, String)>) = with_conn!(self, |conn| {
            let query = usage_logs::table
                .select((usage_logs::user_id, sql::<CounterTypes>(&counters())))
                .group_by(usage_logs::user_id);
            let rows: Vec<(i64, Counters)> = filtered!(&filter, query)
                .order((sql::<BigInt>(&charged()).desc(), usage_logs::user_id.asc()))
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
                .select(sql::<BigInt>(&saturating_sum("transactions.amount")))
                .get_result(conn)
                .await?)
        })?;
        Ok(Money::from_micros(micros))
    }

    async fn margins(&self, filter: &StatsFilter) -> Result<Vec<MarginPoint>, StoreError> {
        let rows: Vec<(String, Option<String>, MarginCounters)> = with_conn!(self, |conn| {
            let query = usage_logs::table
                .select((usage_logs::model, usage_logs::channel, sql::<MarginTypes>(&margin_counters())))
                .group_by((usage_logs::model, usage_logs::channel));
            Ok(filtered!(filter, query).load(conn).await?)
        })?;
        Ok(rows
            .into_iter()
            .map(|(model, channel, counters)| MarginPoint { model, channel, margins: margins(counters) })
            .collect())
    }
}
