//! Usage statistics: what the usage log adds up to over a range of time.
//!
//! A storage layer aggregates in SQL and buckets days by integer division of the stored Unix
//! milliseconds ([`day_index`]); this module turns those buckets into a gap-free daily series
//! ([`fill_days`]) and holds the plain types and the [`StatsStore`] trait. Money stays in integer
//! micros throughout.
//!
//! ```
//! use apihub_core::stats::{Summary, TimeRange, day_index, fill_days};
//! use apihub_core::Money;
//! use chrono::{TimeZone, Utc};
//!
//! let from = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
//! let to = Utc.with_ymd_and_hms(2026, 1, 4, 0, 0, 0).unwrap();
//! let range = TimeRange::new(from, to).unwrap();
//! let busy = Summary { requests: 2, succeeded: 1, charged: Money::from_micros(5), ..Summary::default() };
//! let days = fill_days(range.from(), range.to(), [(day_index(from), busy)]);
//! let dates: Vec<String> = days.iter().map(|d| d.date.to_string()).collect();
//! assert_eq!(dates, ["2026-01-01", "2026-01-02", "2026-01-03"]);
//! assert_eq!((days[0].usage, days[1].usage), (busy, Summary::default()));
//! ```

use std::collections::BTreeMap;
use std::iter::Sum;
use std::ops::{Add, AddAssign};

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::money::Money;
use crate::policy::KeyId;
use crate::store::{StoreError, UsageRecord};
use crate::user::UserId;

/// Milliseconds in a UTC day: the divisor that buckets stored timestamps into days.
pub const MILLIS_PER_DAY: i64 = 86_400_000;

/// Whether an HTTP status counts as a successful request (2xx).
pub fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// The UTC day `at` falls in, as days since 1970-01-01: what SQL computes as `created_at / 86400000`
/// (the two agree for every instant from 1970 on, which is all the usage log holds).
pub fn day_index(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis().div_euclid(MILLIS_PER_DAY)
}

/// The date of a [`day_index`], or `None` outside chrono's range.
pub fn date_of_day(index: i64) -> Option<NaiveDate> {
    DateTime::<Utc>::UNIX_EPOCH.date_naive().checked_add_signed(Duration::try_days(index)?)
}

/// Why a [`TimeRange`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RangeError {
    /// `from` is not before `to`.
    #[error("`from` must be before `to`")]
    Empty,
    /// The range spans more than [`TimeRange::MAX_DAYS`].
    #[error("a range spans at most {} days", TimeRange::MAX_DAYS)]
    TooLong,
}

/// A half-open span of time `[from, to)`, non-empty and at most [`TimeRange::MAX_DAYS`] long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

impl TimeRange {
    /// The longest range served, in days.
    pub const MAX_DAYS: i64 = 366;

    /// `[from, to)`, checked.
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Self, RangeError> {
        if from >= to {
            return Err(RangeError::Empty);
        }
        if to - from > Duration::days(Self::MAX_DAYS) {
            return Err(RangeError::TooLong);
        }
        Ok(TimeRange { from, to })
    }

    /// The whole UTC day that contains `at`.
    pub fn utc_day(at: DateTime<Utc>) -> Self {
        let from = at.date_naive().and_time(chrono::NaiveTime::MIN).and_utc();
        TimeRange { from, to: from + Duration::days(1) }
    }

    /// The first instant inside.
    pub fn from(&self) -> DateTime<Utc> {
        self.from
    }

    /// The first instant after (exclusive).
    pub fn to(&self) -> DateTime<Utc> {
        self.to
    }
}

/// Which usage rows to aggregate: `from <= created_at < to`, optionally one user's or one key's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsFilter {
    /// Only this user's requests.
    pub user_id: Option<UserId>,
    /// Only requests made with this key.
    pub key_id: Option<KeyId>,
    /// The first instant counted.
    pub from: DateTime<Utc>,
    /// The first instant not counted (exclusive).
    pub to: DateTime<Utc>,
}

impl StatsFilter {
    /// Everyone's usage over `range`; narrow it with struct-update syntax.
    pub fn over(range: TimeRange) -> Self {
        StatsFilter { user_id: None, key_id: None, from: range.from, to: range.to }
    }
}

/// Usage counters over some set of requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Requests made.
    pub requests: u64,
    /// Requests answered with a 2xx status.
    pub succeeded: u64,
    /// Input tokens.
    pub prompt_tokens: i64,
    /// Output tokens.
    pub completion_tokens: i64,
    /// Cost before discounts.
    pub raw_cost: Money,
    /// What was charged.
    pub charged: Money,
}

impl Summary {
    /// Input plus output tokens.
    pub fn total_tokens(&self) -> i64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

impl From<&UsageRecord> for Summary {
    fn from(r: &UsageRecord) -> Self {
        Summary {
            requests: 1,
            succeeded: u64::from(is_success(r.status)),
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            raw_cost: r.raw_cost,
            charged: r.charged,
        }
    }
}

impl AddAssign for Summary {
    fn add_assign(&mut self, other: Summary) {
        let money = |a: Money, b: Money| Money::from_micros(a.micros().saturating_add(b.micros()));
        self.requests = self.requests.saturating_add(other.requests);
        self.succeeded = self.succeeded.saturating_add(other.succeeded);
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(other.completion_tokens);
        self.raw_cost = money(self.raw_cost, other.raw_cost);
        self.charged = money(self.charged, other.charged);
    }
}

impl Add for Summary {
    type Output = Summary;

    fn add(mut self, other: Summary) -> Summary {
        self += other;
        self
    }
}

impl Sum for Summary {
    fn sum<I: Iterator<Item = Summary>>(iter: I) -> Summary {
        iter.fold(Summary::default(), Add::add)
    }
}

/// One UTC day's usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayPoint {
    /// The day (UTC); serializes as `YYYY-MM-DD`.
    pub date: NaiveDate,
    /// Its counters.
    pub usage: Summary,
}

/// One model's usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPoint {
    /// The model asked for.
    pub model: String,
    /// Its counters.
    pub usage: Summary,
}

/// One metered route's usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePoint {
    /// The route.
    pub route_id: crate::route::RouteId,
    /// Its name (empty if the route is gone).
    pub name: String,
    /// Its counters.
    pub usage: Summary,
}

/// One user's usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPoint {
    /// The user.
    pub user_id: UserId,
    /// Their login name (empty if the account is gone).
    pub username: String,
    /// Their counters.
    pub usage: Summary,
}

/// Revenue, the operator's cost and the margin over some set of requests: for administrators only
/// (users never see what the operator pays).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Margins {
    /// Requests made.
    pub requests: u64,
    /// What the requests were charged (each one the ledger's consume row for that request).
    pub revenue: Money,
    /// What the operator pays, summed over the requests whose cost is known.
    pub cost: Money,
    /// Charged requests whose cost is unknown (their channel had no cost price for the model, or
    /// no channel answered them: a metered route's call).
    pub uncosted_requests: u64,
    /// What those were charged: the part of the revenue whose cost is counted as zero.
    pub uncosted_revenue: Money,
}

impl Margins {
    /// Revenue minus cost, exact to the micro (saturating only near `Money`'s limits).
    pub fn margin(&self) -> Money {
        Money::from_micros(self.revenue.micros().saturating_sub(self.cost.micros()))
    }
}

impl From<&UsageRecord> for Margins {
    fn from(r: &UsageRecord) -> Self {
        let uncosted = r.cost.is_none() && r.charged != Money::ZERO;
        Margins {
            requests: 1,
            revenue: r.charged,
            cost: r.cost.unwrap_or(Money::ZERO),
            uncosted_requests: u64::from(uncosted),
            uncosted_revenue: if r.cost.is_none() { r.charged } else { Money::ZERO },
        }
    }
}

impl AddAssign for Margins {
    fn add_assign(&mut self, other: Margins) {
        let money = |a: Money, b: Money| Money::from_micros(a.micros().saturating_add(b.micros()));
        self.requests = self.requests.saturating_add(other.requests);
        self.revenue = money(self.revenue, other.revenue);
        self.cost = money(self.cost, other.cost);
        self.uncosted_requests = self.uncosted_requests.saturating_add(other.uncosted_requests);
        self.uncosted_revenue = money(self.uncosted_revenue, other.uncosted_revenue);
    }
}

/// The margins of one model answered by one channel: what a store aggregates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarginPoint {
    /// The model asked for.
    pub model: String,
    /// The channel that answered (`None`: a metered route's call, or a request no channel answered).
    pub channel: Option<String>,
    /// Its counters.
    pub margins: Margins,
}

/// Margins in all, per model and per channel, each list with the most revenue first (then by name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarginReport {
    /// Every request.
    pub total: Margins,
    /// Per model asked for.
    pub by_model: Vec<(String, Margins)>,
    /// Per answering channel (`None`: no channel).
    pub by_channel: Vec<(Option<String>, Margins)>,
}

impl MarginReport {
    /// Adds the (model, channel) points up per model, per channel and in all: integer sums, so
    /// each list adds up to the total exactly.
    pub fn of(points: impl IntoIterator<Item = MarginPoint>) -> Self {
        let mut total = Margins::default();
        let mut by_model = BTreeMap::<String, Margins>::new();
        let mut by_channel = BTreeMap::<Option<String>, Margins>::new();
        for point in points {
            total += point.margins;
            *by_model.entry(point.model).or_default() += point.margins;
            *by_channel.entry(point.channel).or_default() += point.margins;
        }
        fn ranked<K: Ord>(groups: BTreeMap<K, Margins>) -> Vec<(K, Margins)> {
            let mut list: Vec<(K, Margins)> = groups.into_iter().collect();
            // Stable: equal revenues stay in name order.
            list.sort_by_key(|(_, margins)| std::cmp::Reverse(margins.revenue));
            list
        }
        MarginReport { total, by_model: ranked(by_model), by_channel: ranked(by_channel) }
    }
}

/// Every UTC date that `[from, to)` touches, oldest first, each with its bucket's counters or zeros.
///
/// `buckets` are keyed by [`day_index`]; duplicates add up and keys outside the range are dropped.
pub fn fill_days(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    buckets: impl IntoIterator<Item = (i64, Summary)>,
) -> Vec<DayPoint> {
    if from >= to {
        return Vec::new();
    }
    let mut by_day = BTreeMap::<i64, Summary>::new();
    for (day, usage) in buckets {
        *by_day.entry(day).or_default() += usage;
    }
    let last = day_index(to - Duration::milliseconds(1));
    (day_index(from)..=last)
        .filter_map(|day| {
            let usage = by_day.get(&day).copied().unwrap_or_default();
            date_of_day(day).map(|date| DayPoint { date, usage })
        })
        .collect()
}

/// Aggregates over the usage log (and the ledger, for revenue).
#[async_trait]
pub trait StatsStore: Send + Sync {
    /// Counters over every row the filter selects.
    async fn usage_summary(&self, filter: &StatsFilter) -> Result<Summary, StoreError>;
    /// One point per UTC date the range touches, oldest first, zeros on days without requests.
    async fn usage_by_day(&self, filter: &StatsFilter) -> Result<Vec<DayPoint>, StoreError>;
    /// One point per model used, most charged first (then by model name).
    async fn usage_by_model(&self, filter: &StatsFilter) -> Result<Vec<ModelPoint>, StoreError>;
    /// One point per metered route used, most charged first (then by route id).
    async fn usage_by_route(&self, filter: &StatsFilter) -> Result<Vec<RoutePoint>, StoreError>;
    /// The `limit` users charged most over `range`, most charged first (then by user id).
    async fn top_users(&self, range: &TimeRange, limit: u32) -> Result<Vec<UserPoint>, StoreError>;
    /// Credit recharged over `range`: the sum of positive `recharge` ledger rows.
    async fn recharge_total(&self, range: &TimeRange) -> Result<Money, StoreError>;
    /// Revenue and cost per (model, answering channel) over the rows the filter selects, in any
    /// order (see [`MarginReport::of`]).
    async fn margins(&self, filter: &StatsFilter) -> Result<Vec<MarginPoint>, StoreError>;
}

#[cfg(test)]
mod tests;
