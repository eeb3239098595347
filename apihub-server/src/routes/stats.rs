//! `/api/stats/*`: usage statistics over a range of time. A user sees their own usage and their
//! own keys'; administrators see any user's, any key's and the whole site's.

use apihub_core::Money;
use apihub_core::stats::{
    DayPoint, MarginReport, Margins, ModelPoint, RoutePoint, StatsFilter, StatsStore, Summary, TimeRange, UserPoint,
};
use axum::extract::State;
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::keys::visible_key;
use crate::auth::{AdminUser, CurrentUser};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

/// Days covered when the query names no `from`.
const DEFAULT_DAYS: i64 = 30;
/// Users listed in the overview.
const TOP_USERS: u32 = 10;

/// `?from=&to=` on every statistics route. At most 366 days; `from` must be before `to`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// Start, inclusive: an RFC 3339 time, or a `YYYY-MM-DD` date (its UTC midnight).
    /// Default: 30 days before `to`.
    #[param(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$"
    )]
    pub from: Option<String>,
    /// End: an RFC 3339 time (exclusive), or a `YYYY-MM-DD` date (counted whole, to its end in UTC).
    /// Default: the end of today (UTC).
    #[param(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$"
    )]
    pub to: Option<String>,
}

impl RangeQuery {
    /// The range asked for, with defaults relative to `now`.
    fn range(&self, now: DateTime<Utc>) -> Result<TimeRange, ApiError> {
        let to = match &self.to {
            Some(text) => parse_bound(text, "to", true)?,
            None => TimeRange::utc_day(now).to(),
        };
        let from = match &self.from {
            Some(text) => parse_bound(text, "from", false)?,
            None => to - Duration::days(DEFAULT_DAYS),
        };
        TimeRange::new(from, to).map_err(|e| ApiError::Validation(e.to_string()))
    }
}

/// An RFC 3339 time, or a date: its UTC midnight, or for an `end` bound the next midnight.
pub(crate) fn parse_bound(text: &str, name: &str, end: bool) -> Result<DateTime<Utc>, ApiError> {
    let invalid = || ApiError::Validation(format!("`{name}` must be an RFC 3339 time or a YYYY-MM-DD date"));
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| invalid())?;
    let date = if end { date.succ_opt().ok_or_else(invalid)? } else { date };
    Ok(date.and_time(NaiveTime::MIN).and_utc())
}

/// Usage counters. Money fields are exact decimals of credits.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageSummary {
    /// Requests made.
    pub requests: u64,
    /// Requests answered with a 2xx status.
    pub succeeded: u64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Prompt plus completion tokens.
    pub total_tokens: i64,
    /// Cost before discounts.
    #[schema(value_type = f64)]
    pub raw_cost: Money,
    /// What was charged.
    #[schema(value_type = f64, example = 1.25)]
    pub charged: Money,
}

impl From<Summary> for UsageSummary {
    fn from(s: Summary) -> Self {
        UsageSummary {
            requests: s.requests,
            succeeded: s.succeeded,
            prompt_tokens: s.prompt_tokens,
            completion_tokens: s.completion_tokens,
            total_tokens: s.total_tokens(),
            raw_cost: s.raw_cost,
            charged: s.charged,
        }
    }
}

/// One UTC day's usage.
#[derive(Debug, Serialize, ToSchema)]
pub struct DayUsage {
    /// The UTC date, `YYYY-MM-DD`.
    pub date: NaiveDate,
    #[serde(flatten)]
    pub usage: UsageSummary,
}

impl From<DayPoint> for DayUsage {
    fn from(p: DayPoint) -> Self {
        DayUsage { date: p.date, usage: p.usage.into() }
    }
}

/// One model's usage.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelUsage {
    pub model: String,
    #[serde(flatten)]
    pub usage: UsageSummary,
}

impl From<ModelPoint> for ModelUsage {
    fn from(p: ModelPoint) -> Self {
        ModelUsage { model: p.model, usage: p.usage.into() }
    }
}

/// One metered route's usage.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteUsage {
    pub route_id: i64,
    /// Its name (empty if the route was removed since).
    pub name: String,
    #[serde(flatten)]
    pub usage: UsageSummary,
}

impl From<RoutePoint> for RouteUsage {
    fn from(p: RoutePoint) -> Self {
        RouteUsage { route_id: p.route_id, name: p.name, usage: p.usage.into() }
    }
}

/// One user's usage.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserUsage {
    pub user_id: i64,
    pub username: String,
    #[serde(flatten)]
    pub usage: UsageSummary,
}

impl From<UserPoint> for UserUsage {
    fn from(p: UserPoint) -> Self {
        UserUsage { user_id: p.user_id, username: p.username, usage: p.usage.into() }
    }
}

/// Usage over `[from, to)`: in all, per UTC day (every day, zeros included) and per model.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    pub from: DateTime<Utc>,
    /// Exclusive.
    pub to: DateTime<Utc>,
    pub summary: UsageSummary,
    /// Oldest first.
    pub by_day: Vec<DayUsage>,
    /// Most charged first.
    pub by_model: Vec<ModelUsage>,
}

/// The whole site's usage over `[from, to)`, with today's, the top users and the revenue.
#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    pub from: DateTime<Utc>,
    /// Exclusive.
    pub to: DateTime<Utc>,
    pub summary: UsageSummary,
    /// The current UTC day, whatever the range.
    pub today: UsageSummary,
    /// Oldest first.
    pub by_day: Vec<DayUsage>,
    /// Most charged first.
    pub by_model: Vec<ModelUsage>,
    /// Each metered route's calls, most charged first.
    pub by_route: Vec<RouteUsage>,
    /// The 10 users charged most in the range, most first.
    pub top_users: Vec<UserUsage>,
    /// Credit recharged in the range.
    #[schema(value_type = f64, example = 100.5)]
    pub revenue: Money,
}

/// Revenue, the operator's cost and the margin. Money fields are exact decimals of credits; the
/// margin is `revenue - cost` to the micro.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarginSummary {
    /// Requests made.
    pub requests: u64,
    /// What the requests were charged (each request's consume row in the ledger; an administrator's
    /// manual consume is not a request and is not counted).
    #[schema(value_type = f64, example = 12.5)]
    pub revenue: Money,
    /// What the operator pays: each request's cost at its channel's cost price, summed over the
    /// requests whose cost is known.
    #[schema(value_type = f64, example = 9.75)]
    pub cost: Money,
    /// `revenue - cost` (negative when the operator pays more than it charges).
    #[schema(value_type = f64, example = 2.75)]
    pub margin: Money,
    /// Charged requests whose cost is unknown (no cost price for the model on the channel that
    /// answered, or no channel: a metered route's call); their cost counts as zero.
    pub uncosted_requests: u64,
    /// What those requests were charged.
    #[schema(value_type = f64)]
    pub uncosted_revenue: Money,
}

impl From<Margins> for MarginSummary {
    fn from(m: Margins) -> Self {
        MarginSummary {
            requests: m.requests,
            revenue: m.revenue,
            cost: m.cost,
            margin: m.margin(),
            uncosted_requests: m.uncosted_requests,
            uncosted_revenue: m.uncosted_revenue,
        }
    }
}

/// One model's margins.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelMargins {
    pub model: String,
    #[serde(flatten)]
    pub margins: MarginSummary,
}

/// One channel's margins.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelMargins {
    /// The channel that answered (`default`: `UPSTREAM_URL`); null for requests no channel
    /// answered (a metered route's calls, failed requests).
    pub channel: Option<String>,
    #[serde(flatten)]
    pub margins: MarginSummary,
}

/// Revenue, cost and margin over `[from, to)`: in all, per model and per answering channel.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarginsReport {
    pub from: DateTime<Utc>,
    /// Exclusive.
    pub to: DateTime<Utc>,
    pub total: MarginSummary,
    /// Most revenue first.
    pub by_model: Vec<ModelMargins>,
    /// Most revenue first.
    pub by_channel: Vec<ChannelMargins>,
}

/// The summary, days and models of one filter, queried together.
async fn report(stats: &dyn StatsStore, filter: StatsFilter) -> Result<UsageReport, ApiError> {
    let (summary, by_day, by_model) =
        tokio::try_join!(stats.usage_summary(&filter), stats.usage_by_day(&filter), stats.usage_by_model(&filter))?;
    Ok(UsageReport {
        from: filter.from,
        to: filter.to,
        summary: summary.into(),
        by_day: by_day.into_iter().map(Into::into).collect(),
        by_model: by_model.into_iter().map(Into::into).collect(),
    })
}

/// The caller's usage.
#[utoipa::path(get, path = "/api/stats/me", tag = "stats", security(("bearer" = [])), params(RangeQuery),
    responses((status = 200, body = UsageReport), (status = 422, body = ErrorBody)))]
pub async fn my_stats(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(query): Query<RangeQuery>,
) -> Result<Json<UsageReport>, ApiError> {
    let range = query.range(Utc::now())?;
    let filter = StatsFilter { user_id: Some(user.id), ..StatsFilter::over(range) };
    Ok(Json(report(state.stats.as_ref(), filter).await?))
}

/// One key's usage: the caller's own key, or any key for an administrator.
#[utoipa::path(get, path = "/api/stats/keys/{key_id}", tag = "stats", security(("bearer" = [])),
    params(("key_id" = i64, Path), RangeQuery),
    responses((status = 200, body = UsageReport), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn key_stats(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(key_id): Path<i64>,
    Query(query): Query<RangeQuery>,
) -> Result<Json<UsageReport>, ApiError> {
    let key = visible_key(&state, &user, key_id).await?;
    let range = query.range(Utc::now())?;
    let filter = StatsFilter { key_id: Some(key.id), ..StatsFilter::over(range) };
    Ok(Json(report(state.stats.as_ref(), filter).await?))
}

/// The whole site's usage, today's, the top users and the revenue.
#[utoipa::path(get, path = "/api/stats/admin/overview", tag = "stats", security(("bearer" = [])), params(RangeQuery),
    responses((status = 200, body = Overview), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn admin_overview(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(query): Query<RangeQuery>,
) -> Result<Json<Overview>, ApiError> {
    let now = Utc::now();
    let range = query.range(now)?;
    let stats = state.stats.as_ref();
    let today = StatsFilter::over(TimeRange::utc_day(now));
    let (report, by_route, today, top_users, revenue) = tokio::try_join!(
        report(stats, StatsFilter::over(range)),
        async { stats.usage_by_route(&StatsFilter::over(range)).await.map_err(ApiError::from) },
        async { stats.usage_summary(&today).await.map_err(ApiError::from) },
        async { stats.top_users(&range, TOP_USERS).await.map_err(ApiError::from) },
        async { stats.recharge_total(&range).await.map_err(ApiError::from) },
    )?;
    Ok(Json(Overview {
        from: report.from,
        to: report.to,
        summary: report.summary,
        today: today.into(),
        by_day: report.by_day,
        by_model: report.by_model,
        by_route: by_route.into_iter().map(Into::into).collect(),
        top_users: top_users.into_iter().map(Into::into).collect(),
        revenue,
    }))
}

/// The whole site's revenue, the operator's cost (at the channels' cost prices) and the margin,
/// per model and per channel.
#[utoipa::path(get, path = "/api/stats/admin/margins", tag = "stats", security(("bearer" = [])), params(RangeQuery),
    responses((status = 200, body = MarginsReport), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn admin_margins(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(query): Query<RangeQuery>,
) -> Result<Json<MarginsReport>, ApiError> {
    let range = query.range(Utc::now())?;
    let report = MarginReport::of(state.stats.margins(&StatsFilter::over(range)).await?);
    Ok(Json(MarginsReport {
        from: range.from(),
        to: range.to(),
        total: report.total.into(),
        by_model: report
            .by_model
            .into_iter()
            .map(|(model, margins)| ModelMargins { model, margins: margins.into() })
            .collect(),
        by_channel: report
            .by_channel
            .into_iter()
            .map(|(channel, margins)| ChannelMargins { channel, margins: margins.into() })
            .collect(),
    }))
}

/// One user's usage.
#[utoipa::path(get, path = "/api/stats/admin/users/{user_id}", tag = "stats", security(("bearer" = [])),
    params(("user_id" = i64, Path), RangeQuery),
    responses((status = 200, body = UsageReport), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn admin_user_stats(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(user_id): Path<i64>,
    Query(query): Query<RangeQuery>,
) -> Result<Json<UsageReport>, ApiError> {
    let user = state.store.user(user_id).await?.ok_or_else(|| ApiError::not_found("user"))?;
    let range = query.range(Utc::now())?;
    let filter = StatsFilter { user_id: Some(user.id), ..StatsFilter::over(range) };
    Ok(Json(report(state.stats.as_ref(), filter).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn range(from: Option<&str>, to: Option<&str>) -> Result<(String, String), String> {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 17, 30, 0).unwrap();
        let query = RangeQuery { from: from.map(Into::into), to: to.map(Into::into) };
        query.range(now).map(|r| (r.from().to_rfc3339(), r.to().to_rfc3339())).map_err(|e| e.to_string())
    }

    #[test]
    fn the_default_is_thirty_whole_days_through_today() {
        let expected = ("2026-10-27T00:00:00+00:00".into(), "2026-11-26T00:00:00+00:00".into());
        assert_eq!(range(None, None), Ok(expected));
        let only_to = range(None, Some("2026-01-31")).unwrap();
        assert_eq!(only_to, ("2026-01-02T00:00:00+00:00".into(), "2026-02-01T00:00:00+00:00".into()));
    }

    #[test]
    fn dates_are_whole_utc_days_and_times_are_exact() {
        let dates = range(Some("2026-01-01"), Some("2026-01-01")).unwrap();
        assert_eq!(dates, ("2026-01-01T00:00:00+00:00".into(), "2026-01-02T00:00:00+00:00".into()));
        let times = range(Some("2026-01-01T08:00:00+08:00"), Some("2026-01-01T12:30:00Z")).unwrap();
        assert_eq!(times, ("2026-01-01T00:00:00+00:00".into(), "2026-01-01T12:30:00+00:00".into()));
    }

    #[test]
    fn bad_ranges_are_refused() {
        for (from, to) in [
            (Some("2026-01-02"), Some("2026-01-01")),
            (Some("2026-01-01T00:00:00Z"), Some("2026-01-01T00:00:00Z")),
            (Some("2025-01-01"), Some("2026-01-02")),
            (Some("yesterday"), None),
            (None, Some("2026-13-01")),
            (Some("2026-01-01T00:00:00"), None),
        ] {
            assert!(range(from, to).is_err(), "{from:?}..{to:?}");
        }
        // 366 days is the most.
        assert!(range(Some("2025-01-01"), Some("2026-01-01")).is_ok());
        assert!(range(Some("2024-01-01"), Some("2024-12-31")).is_ok());
    }
}
