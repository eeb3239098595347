//! Tests of the statistics: margins per model and channel, range checks, UTC days and their
//! indexes, and filled days against grouping by date.

use super::*;
use crate::DiscountRate;
use crate::store::UsageSource;
use chrono::TimeZone;
use proptest::prelude::*;

fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

fn record(created_at: DateTime<Utc>, status: u16, tokens: i64, charged: i64) -> UsageRecord {
    UsageRecord {
        request_id: "r".into(),
        user_id: 1,
        key_id: 1,
        model: "m".into(),
        endpoint: "/v1/chat/completions".into(),
        route_id: None,
        stream: false,
        prompt_tokens: tokens,
        completion_tokens: tokens / 2,
        cached_tokens: 0,
        raw_cost: Money::from_micros(charged * 2),
        user_discount: DiscountRate::FULL_PRICE,
        key_discount: DiscountRate::FULL_PRICE,
        charged: Money::from_micros(charged),
        overage: Money::ZERO,
        status,
        upstream_latency_ms: 1,
        first_byte_ms: None,
        usage_source: UsageSource::Reported,
        created_at,
        channel: None,
        attempts: 1,
        cost: None,
    }
}

#[test]
fn margins_add_up_per_model_and_per_channel_to_the_total() {
    let row = |model: &str, channel: Option<&str>, charged: i64, cost: Option<i64>| UsageRecord {
        model: model.into(),
        channel: channel.map(Into::into),
        cost: cost.map(Money::from_micros),
        ..record(at(2026, 1, 1, 0), 200, 10, charged)
    };
    let records = [
        row("a", Some("x"), 100, Some(60)),
        row("a", Some("y"), 50, Some(70)),
        row("b", Some("x"), 30, None),
        row("b", None, 0, None),
    ];
    let point = |r: &UsageRecord| MarginPoint { model: r.model.clone(), channel: r.channel.clone(), margins: r.into() };
    let report = MarginReport::of(records.iter().map(point));
    let margins = |requests, revenue, cost, uncosted_requests, uncosted_revenue| Margins {
        requests,
        revenue: Money::from_micros(revenue),
        cost: Money::from_micros(cost),
        uncosted_requests,
        uncosted_revenue: Money::from_micros(uncosted_revenue),
    };
    assert_eq!(report.total, margins(4, 180, 130, 1, 30));
    assert_eq!(report.total.margin(), Money::from_micros(50));
    assert_eq!(report.by_model, [("a".into(), margins(2, 150, 130, 0, 0)), ("b".into(), margins(2, 30, 0, 1, 30))]);
    assert_eq!(
        report.by_channel,
        [
            (Some("x".into()), margins(2, 130, 60, 1, 30)),
            (Some("y".into()), margins(1, 50, 70, 0, 0)),
            (None, margins(1, 0, 0, 0, 0)),
        ]
    );
    assert_eq!(report.by_channel[1].1.margin(), Money::from_micros(-20), "a margin can be negative");
}

#[test]
fn ranges_are_checked() {
    let from = at(2026, 1, 1, 0);
    assert_eq!(TimeRange::new(from, from), Err(RangeError::Empty));
    assert_eq!(TimeRange::new(from, from - Duration::seconds(1)), Err(RangeError::Empty));
    assert!(TimeRange::new(from, from + Duration::days(366)).is_ok());
    assert_eq!(TimeRange::new(from, from + Duration::days(366) + Duration::milliseconds(1)), Err(RangeError::TooLong));
}

#[test]
fn a_utc_day_is_midnight_to_midnight() {
    let day = TimeRange::utc_day(at(2026, 2, 28, 23) + Duration::minutes(59));
    assert_eq!((day.from(), day.to()), (at(2026, 2, 28, 0), at(2026, 3, 1, 0)));
}

#[test]
fn day_indexes_match_dates() {
    assert_eq!(day_index(DateTime::<Utc>::UNIX_EPOCH), 0);
    assert_eq!(date_of_day(0).unwrap().to_string(), "1970-01-01");
    let t = at(2026, 11, 25, 23) + Duration::milliseconds(3_599_999);
    assert_eq!(date_of_day(day_index(t)), Some(t.date_naive()));
    assert_eq!(day_index(t) + 1, day_index(t + Duration::milliseconds(1)));
}

#[test]
fn a_partial_last_day_is_included_and_an_exclusive_midnight_is_not() {
    let dates = |from, to| fill_days(from, to, []).iter().map(|d| d.date.to_string()).collect::<Vec<_>>();
    assert_eq!(dates(at(2026, 1, 1, 12), at(2026, 1, 2, 0)), ["2026-01-01"]);
    assert_eq!(dates(at(2026, 1, 1, 12), at(2026, 1, 2, 1)), ["2026-01-01", "2026-01-02"]);
    assert!(dates(at(2026, 1, 2, 0), at(2026, 1, 1, 0)).is_empty());
}

#[test]
fn success_is_2xx() {
    assert!(is_success(200) && is_success(299));
    assert!(!is_success(199) && !is_success(300) && !is_success(429) && !is_success(502));
}

proptest! {
    /// Bucketing by day index and filling gaps agrees with grouping records by their date.
    #[test]
    fn filled_days_match_grouping_by_date(
        start in 0i64..4_000_000_000_000,
        span in 1i64..(40 * MILLIS_PER_DAY),
        rows in proptest::collection::vec(
            (any::<u64>(), any::<u16>(), 0i64..1_000_000, 0i64..1_000_000_000),
            0..60,
        ),
    ) {
        let from = DateTime::from_timestamp_millis(start).unwrap();
        let to = from + Duration::milliseconds(span);
        let records: Vec<UsageRecord> = rows
            .iter()
            .map(|&(offset, status, tokens, charged)| {
                let created_at = from + Duration::milliseconds((offset % span as u64) as i64);
                record(created_at, status, tokens, charged)
            })
            .collect();
        // As SQL buckets them: truncating integer division of the stored milliseconds.
        let buckets =
            records.iter().map(|r| (r.created_at.timestamp_millis() / MILLIS_PER_DAY, Summary::from(r)));
        let days = fill_days(from, to, buckets);

        // Consecutive dates, from `from`'s date through the date of the last instant inside.
        prop_assert_eq!(days.first().map(|d| d.date), Some(from.date_naive()));
        prop_assert_eq!(days.last().map(|d| d.date), Some((to - Duration::milliseconds(1)).date_naive()));
        for pair in days.windows(2) {
            prop_assert_eq!(pair[0].date.succ_opt(), Some(pair[1].date));
        }
        // Each day holds exactly its records; together they hold all of them.
        for day in &days {
            let expected: Summary =
                records.iter().filter(|r| r.created_at.date_naive() == day.date).map(Summary::from).sum();
            prop_assert_eq!(day.usage, expected);
        }
        let total: Summary = days.iter().map(|d| d.usage).sum();
        prop_assert_eq!(total, records.iter().map(Summary::from).sum::<Summary>());
        prop_assert_eq!(total.requests, records.len() as u64);
    }
}
