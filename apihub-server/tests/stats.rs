//! Usage statistics: sums per range, day and model, zero-filled days, range bounds, ownership and
//! the admin overview, on SQLite and PostgreSQL.

mod common;

use apihub_core::Money;
use chrono::{Duration, NaiveTime, Utc};
use common::{TestApp, at, usage_row as record};
use http::{Method, StatusCode};
use serde_json::{Value, json};

/// The fixed range most checks read: 2025-06-01 through 2025-06-03, whole UTC days.
const RANGE: &str = "from=2025-06-01&to=2025-06-03";

/// A JSON money field read exactly (through `Money`'s own parser, never a float) as decimal text.
#[track_caller]
fn money(m: &Value) -> String {
    assert!(m.is_number(), "money must be a JSON number: {m}");
    let exact: Money = serde_json::from_value(m.clone()).unwrap_or_else(|e| panic!("not money: {m}: {e}"));
    exact.to_string()
}

/// A summary's counters in order: requests, succeeded, prompt, completion and total tokens, raw
/// cost and charged.
#[track_caller]
fn counters(v: &Value) -> Value {
    json!([
        v["requests"],
        v["succeeded"],
        v["prompt_tokens"],
        v["completion_tokens"],
        v["total_tokens"],
        money(&v["raw_cost"]),
        money(&v["charged"])
    ])
}

fn zeros() -> Value {
    json!([0, 0, 0, 0, 0, "0", "0"])
}

/// `(date, counters)` of each day of a report.
fn days(report: &Value) -> Vec<(String, Value)> {
    let days = report["by_day"].as_array().expect("by_day");
    days.iter().map(|d| (d["date"].as_str().expect("date").to_owned(), counters(d))).collect()
}

/// `(model, counters)` of each model of a report, in the order sent.
fn models(report: &Value) -> Vec<(String, Value)> {
    let models = report["by_model"].as_array().expect("by_model");
    models.iter().map(|m| (m["model"].as_str().expect("model").to_owned(), counters(m))).collect()
}

/// A day's or a model's expected `(label, counters)`.
fn point(label: &str, counters: Value) -> (String, Value) {
    (label.to_owned(), counters)
}

/// Two users with keys (alice: k1, k2; bob: k3) and the administrator's token.
struct Seed {
    admin: String,
    alice: (i64, String),
    bob: (i64, String),
    k1: i64,
    k2: i64,
    k3: i64,
}

async fn create_key(app: &TestApp, token: &str) -> i64 {
    let key = app.post("/api/keys", token, json!({})).await.expect(StatusCode::CREATED);
    key["id"].as_i64().expect("key id")
}

async fn accounts(app: &TestApp) -> Seed {
    let admin = app.admin_token().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let (k1, k2, k3) =
        (create_key(app, &alice.1).await, create_key(app, &alice.1).await, create_key(app, &bob.1).await);
    Seed { admin, alice, bob, k1, k2, k3 }
}

/// [`accounts`] plus six requests in and around [`RANGE`], including both of its edges.
async fn seed(app: &TestApp) -> Seed {
    let s = accounts(app).await;
    let (alice, bob) = (s.alice.0, s.bob.0);
    let records = [
        record(at("2025-06-01T00:00:00Z"), alice, s.k1, "gpt-4o", (100, 50), "0.0015", "0.0012", 200),
        record(at("2025-06-01T23:59:59.999Z"), alice, s.k2, "claude-3", (10, 5), "0.000015", "0.000015", 200),
        record(at("2025-06-03T12:00:00Z"), alice, s.k1, "gpt-4o", (7, 0), "0", "0", 502),
        record(at("2025-06-03T13:00:00Z"), bob, s.k3, "claude-3", (1000, 2000), "1.5", "1.2", 200),
        // Just outside the range: the first instant after it, and the last one before it.
        record(at("2025-06-04T00:00:00Z"), alice, s.k2, "gpt-4o", (1, 1), "0.000002", "0.000001", 429),
        record(at("2025-05-31T23:59:59.999Z"), alice, s.k1, "gpt-4o", (5, 5), "0.1", "0.1", 200),
    ];
    app.state.store.record_usage(&records).await.expect("record usage");
    s
}

async fn my_usage_by_day_and_model(app: TestApp) {
    let s = seed(&app).await;
    let me = app.get(&format!("/api/stats/me?{RANGE}"), &s.alice.1).await.expect(StatusCode::OK);
    assert_eq!(me["from"], "2025-06-01T00:00:00Z");
    assert_eq!(me["to"], "2025-06-04T00:00:00Z", "a date `to` counts that whole day");
    assert_eq!(counters(&me["summary"]), json!([3, 2, 117, 55, 172, "0.001515", "0.001215"]));
    assert_eq!(
        days(&me),
        [
            point("2025-06-01", json!([2, 2, 110, 55, 165, "0.001515", "0.001215"])),
            point("2025-06-02", zeros()),
            point("2025-06-03", json!([1, 0, 7, 0, 7, "0", "0"])),
        ]
    );
    // Most charged first, although "claude-3" sorts first by name.
    assert_eq!(
        models(&me),
        [
            point("gpt-4o", json!([2, 1, 107, 50, 157, "0.0015", "0.0012"])),
            point("claude-3", json!([1, 1, 10, 5, 15, "0.000015", "0.000015"])),
        ]
    );

    let bob = app.get(&format!("/api/stats/me?{RANGE}"), &s.bob.1).await.expect(StatusCode::OK);
    assert_eq!(counters(&bob["summary"]), json!([1, 1, 1000, 2000, 3000, "1.5", "1.2"]));
    assert_eq!(
        days(&bob),
        [
            point("2025-06-01", zeros()),
            point("2025-06-02", zeros()),
            point("2025-06-03", json!([1, 1, 1000, 2000, 3000, "1.5", "1.2"])),
        ]
    );
}

async fn range_edges_are_exact(app: TestApp) {
    let s = seed(&app).await;
    let me = async |query: &str| app.get(&format!("/api/stats/me?{query}"), &s.alice.1).await.expect(StatusCode::OK);
    // An RFC 3339 `to` is exclusive: midnight itself is out, a millisecond later is in.
    let exclusive = me("from=2025-06-01T00:00:00Z&to=2025-06-04T00:00:00Z").await;
    assert_eq!(counters(&exclusive["summary"]), json!([3, 2, 117, 55, 172, "0.001515", "0.001215"]));
    assert_eq!(days(&exclusive).len(), 3);
    let one_more = me("from=2025-06-01&to=2025-06-04T00:00:00.001Z").await;
    assert_eq!(counters(&one_more["summary"]), json!([4, 2, 118, 56, 174, "0.001517", "0.001216"]));
    assert_eq!(days(&one_more).last(), Some(&point("2025-06-04", json!([1, 0, 1, 1, 2, "0.000002", "0.000001"]))));
    assert_eq!(models(&one_more)[0], point("gpt-4o", json!([3, 1, 108, 51, 159, "0.001502", "0.001201"])));
    // `from` is inclusive, to the millisecond; offsets are converted to UTC.
    let earlier = me("from=2025-05-31T23:59:59.999Z&to=2025-06-03").await;
    assert_eq!(counters(&earlier["summary"]), json!([4, 3, 122, 60, 182, "0.101515", "0.101215"]));
    assert_eq!(days(&earlier)[0], point("2025-05-31", json!([1, 1, 5, 5, 10, "0.1", "0.1"])));
    let shifted = me("from=2025-06-01T08:00:00%2B08:00&to=2025-06-03").await;
    assert_eq!(shifted["summary"], exclusive["summary"]);
    // A range with no requests is all zeros, every day present.
    let empty = me("from=2024-02-28&to=2024-03-01").await;
    assert_eq!(counters(&empty["summary"]), zeros());
    assert_eq!(
        days(&empty),
        [point("2024-02-28", zeros()), point("2024-02-29", zeros()), point("2024-03-01", zeros())]
    );
    assert_eq!(empty["by_model"], json!([]));
}

async fn key_stats_belong_to_the_owner(app: TestApp) {
    let s = seed(&app).await;
    let path = |key: i64| format!("/api/stats/keys/{key}?{RANGE}");
    let k1 = app.get(&path(s.k1), &s.alice.1).await.expect(StatusCode::OK);
    assert_eq!(counters(&k1["summary"]), json!([2, 1, 107, 50, 157, "0.0015", "0.0012"]));
    assert_eq!(
        days(&k1),
        [
            point("2025-06-01", json!([1, 1, 100, 50, 150, "0.0015", "0.0012"])),
            point("2025-06-02", zeros()),
            point("2025-06-03", json!([1, 0, 7, 0, 7, "0", "0"])),
        ]
    );
    assert_eq!(models(&k1), [point("gpt-4o", json!([2, 1, 107, 50, 157, "0.0015", "0.0012"]))]);
    let k2 = app.get(&path(s.k2), &s.alice.1).await.expect(StatusCode::OK);
    assert_eq!(counters(&k2["summary"]), json!([1, 1, 10, 5, 15, "0.000015", "0.000015"]));

    // Someone else's key does not exist for the caller; an administrator sees any key.
    app.get(&path(s.k1), &s.bob.1).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    app.get(&path(s.k3), &s.alice.1).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    app.get(&path(i64::from(i32::MAX)), &s.alice.1).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    let as_admin = app.get(&path(s.k1), &s.admin).await.expect(StatusCode::OK);
    assert_eq!(as_admin, k1);
    let k3 = app.get(&path(s.k3), &s.admin).await.expect(StatusCode::OK);
    assert_eq!(counters(&k3["summary"]), json!([1, 1, 1000, 2000, 3000, "1.5", "1.2"]));
    app.get(&path(i64::from(i32::MAX)), &s.admin).await.expect_error(StatusCode::NOT_FOUND, "not_found");
}

async fn admin_overview_and_user_stats(app: TestApp) {
    let s = seed(&app).await;
    let overview = app.get(&format!("/api/stats/admin/overview?{RANGE}"), &s.admin).await.expect(StatusCode::OK);
    assert_eq!((&overview["from"], &overview["to"]), (&json!("2025-06-01T00:00:00Z"), &json!("2025-06-04T00:00:00Z")));
    assert_eq!(counters(&overview["summary"]), json!([4, 3, 1117, 2055, 3172, "1.501515", "1.201215"]));
    assert_eq!(
        days(&overview),
        [
            point("2025-06-01", json!([2, 2, 110, 55, 165, "0.001515", "0.001215"])),
            point("2025-06-02", zeros()),
            point("2025-06-03", json!([2, 1, 1007, 2000, 3007, "1.5", "1.2"])),
        ]
    );
    assert_eq!(
        models(&overview),
        [
            point("claude-3", json!([2, 2, 1010, 2005, 3015, "1.500015", "1.200015"])),
            point("gpt-4o", json!([2, 1, 107, 50, 157, "0.0015", "0.0012"])),
        ]
    );
    let top: Vec<_> = overview["top_users"]
        .as_array()
        .expect("top_users")
        .iter()
        .map(|u| (u["user_id"].as_i64().unwrap(), u["username"].as_str().unwrap().to_owned(), counters(u)))
        .collect();
    assert_eq!(
        top,
        [
            (s.bob.0, "bob".to_owned(), json!([1, 1, 1000, 2000, 3000, "1.5", "1.2"])),
            (s.alice.0, "alice".to_owned(), json!([3, 2, 117, 55, 172, "0.001515", "0.001215"])),
        ]
    );
    assert_eq!(money(&overview["revenue"]), "0", "nothing was recharged in 2025");
    assert_eq!(counters(&overview["today"]), zeros());

    // One user's statistics are what that user sees of themselves.
    let alice =
        app.get(&format!("/api/stats/admin/users/{}?{RANGE}", s.alice.0), &s.admin).await.expect(StatusCode::OK);
    let own = app.get(&format!("/api/stats/me?{RANGE}"), &s.alice.1).await.expect(StatusCode::OK);
    assert_eq!(alice, own);
    app.get(&format!("/api/stats/admin/users/{}?{RANGE}", i32::MAX), &s.admin)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");

    // Administrators only; and everything needs a session.
    app.get("/api/stats/admin/overview", &s.alice.1).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
    app.get(&format!("/api/stats/admin/users/{}", s.alice.0), &s.alice.1)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    for path in ["/api/stats/me", "/api/stats/admin/overview", &format!("/api/stats/keys/{}", s.k1)] {
        app.call(Method::GET, path, None, None).await.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
}

async fn the_default_range_is_the_last_thirty_days(app: TestApp) {
    let s = accounts(&app).await;
    let now = Utc::now();
    let midnight = now.date_naive().and_time(NaiveTime::MIN).and_utc();
    let (alice, bob) = (s.alice.0, s.bob.0);
    let records = [
        record(now, alice, s.k1, "gpt-4o", (3, 4), "0.3", "0.25", 200),
        record(now, bob, s.k3, "claude-3", (1, 1), "0.000001", "0.000001", 500),
        record(midnight - Duration::milliseconds(1), alice, s.k2, "gpt-4o", (10, 10), "1", "1", 200),
        // The first instant before the default range, and a request long ago.
        record(midnight - Duration::days(29) - Duration::milliseconds(1), alice, s.k1, "gpt-4o", (9, 9), "9", "9", 200),
        record(midnight - Duration::days(40), alice, s.k1, "gpt-4o", (9, 9), "9", "9", 200),
    ];
    app.state.store.record_usage(&records).await.expect("record usage");
    // Revenue counts recharges only: not consumption, refunds or adjustments.
    app.recharge(&s.admin, alice, "100.5").await;
    app.recharge(&s.admin, bob, "20.000001").await;
    for (user, op, amount) in [(alice, "consume", "0.5"), (bob, "adjust", "3"), (alice, "refund", "0.25")] {
        app.post(&format!("/api/tokens/admin/user/{user}/{op}"), &s.admin, json!({"amount": amount}))
            .await
            .expect(StatusCode::OK);
    }

    let overview = app.get("/api/stats/admin/overview", &s.admin).await.expect(StatusCode::OK);
    let from = midnight - Duration::days(29);
    let to = midnight + Duration::days(1);
    assert_eq!(at(overview["from"].as_str().unwrap()), from);
    assert_eq!(at(overview["to"].as_str().unwrap()), to);
    assert_eq!(counters(&overview["summary"]), json!([3, 2, 14, 15, 29, "1.300001", "1.250001"]));
    assert_eq!(counters(&overview["today"]), json!([2, 1, 4, 5, 9, "0.300001", "0.250001"]));
    assert_eq!(money(&overview["revenue"]), "120.500001");
    let series = days(&overview);
    assert_eq!(series.len(), 30);
    assert_eq!(series[0].0, from.date_naive().to_string());
    assert_eq!(series[29], point(&midnight.date_naive().to_string(), json!([2, 1, 4, 5, 9, "0.300001", "0.250001"])));
    assert_eq!(series[28].1, json!([1, 1, 10, 10, 20, "1", "1"]));
    assert!(series[..28].iter().all(|(_, c)| *c == zeros()), "{series:?}");

    let me = app.get("/api/stats/me", &s.alice.1).await.expect(StatusCode::OK);
    assert_eq!(counters(&me["summary"]), json!([2, 2, 13, 14, 27, "1.3", "1.25"]));
    assert_eq!(days(&me).len(), 30);
    // Only `to`: the 30 days before it.
    let before = app.get("/api/stats/me?to=2025-06-30", &s.alice.1).await.expect(StatusCode::OK);
    assert_eq!((&before["from"], &before["to"]), (&json!("2025-06-01T00:00:00Z"), &json!("2025-07-01T00:00:00Z")));
}

async fn bad_ranges_are_refused(app: TestApp) {
    let s = accounts(&app).await;
    for query in [
        "from=2025-06-03&to=2025-06-01",
        "from=2025-06-01T00:00:00Z&to=2025-06-01T00:00:00Z",
        "from=2024-01-01&to=2025-06-01",
        "from=2020-01-01",
        "from=yesterday",
        "to=2025-02-30",
        "from=2025-06-01T00:00:00",
    ] {
        app.get(&format!("/api/stats/me?{query}"), &s.alice.1)
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }
    // 366 days is the longest range (2024 is a leap year).
    app.get("/api/stats/me?from=2024-01-01&to=2024-12-31", &s.alice.1).await.expect(StatusCode::OK);
    let too_long = "from=2024-01-01&to=2025-01-01";
    app.get(&format!("/api/stats/keys/{}?{too_long}", s.k1), &s.alice.1)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    app.get(&format!("/api/stats/admin/overview?{too_long}"), &s.admin)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    app.get(&format!("/api/stats/admin/users/{}?{too_long}", s.alice.0), &s.admin)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
}

db_tests!(
    my_usage_by_day_and_model,
    range_edges_are_exact,
    key_stats_belong_to_the_owner,
    admin_overview_and_user_stats,
    the_default_range_is_the_last_thirty_days,
    bad_ranges_are_refused,
);
