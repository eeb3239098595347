//! Periodic budgets: credit, tokens and calls per day, week or month, for a key or for a user (a
//! cap across all of the user's keys).
//!
//! A budget's usage is counted per **window**: the calendar day, ISO week (from Monday) or month
//! that contains the request, in the operator's time zone ([`BudgetZone`], UTC by default). A
//! window is named by its start; its end is the next window's start, so a window never resets
//! twice and never fails to reset, and nothing has to run at midnight: the window a request
//! counts in is computed from its time ([`window`]). Where a time zone skips or repeats local
//! midnight (a daylight-saving change), the window starts at the first instant of that local day.
//!
//! A request's hold is checked against every budget of its key and of its user, in the same
//! atomic step as the balance and the key's lifetime limits (see [`crate::credit::CreditBook`]):
//! used + held + this hold must stay within each limit. As with the key's lifetime limits, usage
//! the upstream reports above the hold is billed and counted, so a window may end above its limit
//! by at most one request's excess; the next request is then refused until the window ends.
//!
//! ```
//! use apihub_core::budget::{BudgetZone, Period, window};
//!
//! let zone = BudgetZone::parse("Asia/Shanghai").unwrap();
//! // 2026-12-03 18:30 UTC is 02:30 on the 4th in Shanghai: the day began at 16:00 UTC.
//! let now = 1_796_322_600_000; // 2026-12-03T18:30:00Z
//! let day = window(Period::Day, &zone, now);
//! assert_eq!(day.start, 1_796_313_600_000); // 2026-12-03T16:00:00Z
//! assert_eq!(day.end - day.start, 86_400_000);
//! ```

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Days, LocalResult, Months, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::money::Money;
use crate::policy::KeyId;
use crate::store::StoreError;
use crate::user::UserId;

/// A budget's numeric id.
pub type BudgetId = i64;

/// Most budgets one key or one user may have (one per period).
pub const MAX_BUDGETS: usize = 3;

/// How long a budget's window lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// A calendar day.
    Day,
    /// An ISO week, Monday to Sunday.
    Week,
    /// A calendar month.
    Month,
}

impl Period {
    /// Every period, shortest first.
    pub const ALL: [Period; 3] = [Period::Day, Period::Week, Period::Month];

    /// The name the API and the database use.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    /// The period a name stands for.
    pub fn parse(name: &str) -> Option<Period> {
        Period::ALL.into_iter().find(|period| period.as_str() == name)
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Period::Day => "daily",
            Period::Week => "weekly",
            Period::Month => "monthly",
        })
    }
}

/// Whose budget: a key's, or a user's across all of their keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetOwner {
    /// One key.
    Key(KeyId),
    /// A user, across their keys.
    User(UserId),
}

impl BudgetOwner {
    /// `key` or `user`, as refusals name it.
    pub fn scope(self) -> &'static str {
        match self {
            BudgetOwner::Key(_) => "key",
            BudgetOwner::User(_) => "user",
        }
    }
}

/// A budget's limits for one window: credit, tokens and successful calls, each optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetLimits {
    /// Credit charged (after discounts).
    pub credit: Option<Money>,
    /// Tokens used.
    pub tokens: Option<i64>,
    /// Successful calls.
    pub calls: Option<i64>,
}

impl BudgetLimits {
    /// The limits as the credit engine counts them: credit (micros), tokens, calls.
    pub fn as_array(&self) -> [Option<i64>; 3] {
        [self.credit.map(Money::micros), self.tokens, self.calls]
    }
}

/// What a window of a budget has used: credit, tokens and successful calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetUsage {
    /// Credit charged.
    pub credit: Money,
    /// Tokens used.
    pub tokens: i64,
    /// Successful calls.
    pub calls: i64,
}

/// A budget: a period and its limits, for a key or a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Its id.
    pub id: BudgetId,
    /// Whose.
    pub owner: BudgetOwner,
    /// How long a window lasts.
    pub period: Period,
    /// What a window allows.
    pub limits: BudgetLimits,
}

/// A budget to set (the API's input): one per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetSpec {
    /// How long a window lasts.
    pub period: Period,
    /// What a window allows.
    pub limits: BudgetLimits,
}

/// Why budgets were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// Two budgets for one period.
    #[error("there is more than one budget for the period `{0}`")]
    DuplicatePeriod(&'static str),
    /// A budget that limits nothing.
    #[error("the `{0}` budget sets no limit: give credit_limit, token_limit or call_limit")]
    Empty(&'static str),
    /// A negative limit.
    #[error("the `{0}` budget has a negative limit")]
    Negative(&'static str),
}

/// Checks the budgets one owner is to have: at most one per period, each limiting something,
/// nothing negative.
pub fn validate(specs: &[BudgetSpec]) -> Result<(), BudgetError> {
    for (i, spec) in specs.iter().enumerate() {
        let name = spec.period.as_str();
        if specs[..i].iter().any(|other| other.period == spec.period) {
            return Err(BudgetError::DuplicatePeriod(name));
        }
        let limits = spec.limits.as_array();
        if limits.iter().all(Option::is_none) {
            return Err(BudgetError::Empty(name));
        }
        if limits.iter().flatten().any(|limit| *limit < 0) {
            return Err(BudgetError::Negative(name));
        }
    }
    Ok(())
}

/// A budget with its current window's usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetState {
    /// The budget.
    pub budget: Budget,
    /// The current window.
    pub window: Window,
    /// What the current window has used (settled requests; open holds are not counted).
    pub used: BudgetUsage,
}

/// Where budgets are kept. The credit engine behind the [`crate::billing::BillingStore`] enforces
/// them; this is how they are set and shown.
#[async_trait]
pub trait BudgetStore: Send + Sync {
    /// The time zone windows follow.
    fn zone(&self) -> BudgetZone;
    /// The budgets of some owners, with their current windows' usage.
    async fn budget_states(&self, owners: &[BudgetOwner]) -> Result<Vec<BudgetState>, StoreError>;
    /// Replaces an owner's budgets with `specs` (checked with [`validate`]); a period kept keeps
    /// its current window's usage under the new limits.
    async fn set_budgets(&self, owner: BudgetOwner, specs: &[BudgetSpec]) -> Result<(), StoreError>;
}

/// A window: from `start` (included) to `end` (excluded), in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// Its first instant.
    pub start: i64,
    /// The next window's first instant (when this one resets).
    pub end: i64,
}

/// The time zone budgets' windows follow (an IANA name such as `Asia/Shanghai`; UTC by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetZone(Tz);

impl Default for BudgetZone {
    fn default() -> Self {
        BudgetZone(Tz::UTC)
    }
}

impl BudgetZone {
    /// The zone an IANA name stands for.
    pub fn parse(name: &str) -> Option<BudgetZone> {
        name.parse::<Tz>().ok().map(BudgetZone)
    }

    /// Its IANA name.
    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// The first instant of a local date (the earliest, where local midnight is repeated; the
    /// first that exists, where it is skipped).
    fn start_of(&self, date: NaiveDate) -> i64 {
        let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
        match self.0.from_local_datetime(&midnight) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.timestamp_millis(),
            // Midnight skipped: the day starts at the first local minute that exists.
            LocalResult::None => (1..=24 * 60)
                .find_map(|m| self.0.from_local_datetime(&(midnight + chrono::Duration::minutes(m))).earliest())
                .map_or_else(|| midnight.and_utc().timestamp_millis(), |t| t.timestamp_millis()),
        }
    }
}

/// The window of `period` that contains `now` (Unix milliseconds) in `zone`.
pub fn window(period: Period, zone: &BudgetZone, now: i64) -> Window {
    let instant = DateTime::<Utc>::from_timestamp_millis(now).unwrap_or_default();
    let today = instant.with_timezone(&zone.0).date_naive();
    let (first, next) = match period {
        Period::Day => (today, today.checked_add_days(Days::new(1))),
        Period::Week => {
            let monday = today - Days::new(u64::from(today.weekday().num_days_from_monday()));
            (monday, monday.checked_add_days(Days::new(7)))
        }
        Period::Month => {
            let first = today.with_day(1).unwrap_or(today);
            (first, first.checked_add_months(Months::new(1)))
        }
    };
    let start = zone.start_of(first);
    let end = next.map_or(i64::MAX, |next| zone.start_of(next));
    Window { start, end }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text).map(|t| t.timestamp_millis()).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn a_utc_day_week_and_month_start_at_midnight_and_end_at_the_next() {
        let zone = BudgetZone::default();
        let now = at("2026-12-03T18:30:00Z"); // a Thursday
        assert_eq!(
            window(Period::Day, &zone, now),
            Window { start: at("2026-12-03T00:00:00Z"), end: at("2026-12-04T00:00:00Z") }
        );
        assert_eq!(
            window(Period::Week, &zone, now),
            Window { start: at("2026-11-30T00:00:00Z"), end: at("2026-12-07T00:00:00Z") }
        );
        assert_eq!(
            window(Period::Month, &zone, now),
            Window { start: at("2026-12-01T00:00:00Z"), end: at("2027-01-01T00:00:00Z") }
        );
    }

    #[test]
    fn a_window_contains_its_start_and_not_its_end() {
        let zone = BudgetZone::parse("Europe/Berlin").unwrap();
        for period in Period::ALL {
            let w = window(period, &zone, at("2026-03-15T12:00:00Z"));
            assert_eq!(window(period, &zone, w.start), w);
            assert_eq!(window(period, &zone, w.end - 1), w);
            assert_eq!(window(period, &zone, w.end).start, w.end);
        }
    }

    #[test]
    fn a_daylight_saving_day_is_23_or_25_hours_long() {
        let zone = BudgetZone::parse("Europe/Berlin").unwrap();
        let spring = window(Period::Day, &zone, at("2026-03-29T12:00:00Z"));
        assert_eq!(spring.end - spring.start, 23 * 3_600_000);
        let autumn = window(Period::Day, &zone, at("2026-10-25T12:00:00Z"));
        assert_eq!(autumn.end - autumn.start, 25 * 3_600_000);
        assert_eq!(spring.start, at("2026-03-28T23:00:00Z"));
    }

    #[test]
    fn a_zone_whose_midnight_is_skipped_starts_the_day_at_its_first_instant() {
        // Santiago moved its clocks from 00:00 to 01:00 on 2026-09-06.
        let zone = BudgetZone::parse("America/Santiago").unwrap();
        let day = window(Period::Day, &zone, at("2026-09-06T12:00:00Z"));
        assert_eq!(day.start, at("2026-09-06T04:00:00Z"));
        assert_eq!(window(Period::Day, &zone, day.start - 1).end, day.start);
    }

    #[test]
    fn months_and_leap_years_have_their_own_lengths() {
        let zone = BudgetZone::default();
        let feb = window(Period::Month, &zone, at("2028-02-10T00:00:00Z"));
        assert_eq!(feb.end - feb.start, 29 * 86_400_000);
        let dec = window(Period::Month, &zone, at("2026-12-31T23:59:59Z"));
        assert_eq!(dec.end, at("2027-01-01T00:00:00Z"));
    }

    #[test]
    fn budgets_are_one_per_period_and_limit_something() {
        let day = |limits| BudgetSpec { period: Period::Day, limits };
        let calls = BudgetLimits { calls: Some(10), ..BudgetLimits::default() };
        assert_eq!(validate(&[day(calls)]), Ok(()));
        assert_eq!(validate(&[day(calls), day(calls)]), Err(BudgetError::DuplicatePeriod("day")));
        assert_eq!(validate(&[day(BudgetLimits::default())]), Err(BudgetError::Empty("day")));
        let negative = BudgetLimits { tokens: Some(-1), ..BudgetLimits::default() };
        assert_eq!(validate(&[day(negative)]), Err(BudgetError::Negative("day")));
        assert_eq!(BudgetZone::parse("Mars/Olympus"), None);
    }
}
