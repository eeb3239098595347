//! The per-request log: keyset pages and filters, ownership, the CSV and NDJSON exports, retention,
//! and the plans and timings of deep pages over a generated table, on SQLite and PostgreSQL.

mod common;

use std::time::{Duration, Instant};

use apihub_core::store::UsageRecord;
use apihub_server::db::Db;
use axum::body::Body;
use chrono::{DateTime, Utc};
use common::{Backend, TestApp, at, usage_row};
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// A usage row with 10 input, 20 output and 3 cached tokens, charged at its raw cost.
fn record(
    created_at: DateTime<Utc>,
    user_id: i64,
    key_id: i64,
    model: &str,
    status: u16,
    charged: &str,
) -> UsageRecord {
    let row = usage_row(created_at, user_id, key_id, model, (10, 20), charged, charged, status);
    UsageRecord { cached_tokens: 3, upstream_latency_ms: 12, ..row }
}

async fn create_key(app: &TestApp, token: &str, name: &str) -> i64 {
    let key = app.post("/api/keys", token, json!({"name": name})).await.expect(StatusCode::CREATED);
    key["id"].as_i64().expect("key id")
}

/// The request ids of a page's items, in order.
fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().expect("items").iter().map(|i| i["request_id"].as_str().expect("id").to_owned()).collect()
}

/// Every page of `path` (which has a query string), `limit` rows at a time, following the cursor.
async fn all_pages(app: &TestApp, token: &str, path: &str, limit: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}&limit={limit}&cursor={c}"),
            None => format!("{path}&limit={limit}"),
        };
        let page = app.get(&url, token).await.expect(StatusCode::OK);
        let got = ids(&page);
        assert!(got.len() <= limit as usize);
        out.extend(got);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return out,
        }
    }
}

async fn pages_follow_the_cursor_newest_first_and_filters_narrow(app: TestApp) {
    let admin = app.admin_token().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let (k1, k2) = (create_key(&app, &alice.1, "laptop").await, create_key(&app, &alice.1, "ci, \"nightly\"").await);
    let k3 = create_key(&app, &bob.1, "bob's").await;
    // Seven rows, three of them in the same millisecond (the id breaks the tie).
    let same = at("2025-06-02T10:00:00.123Z");
    let rows = [
        record(at("2025-06-01T00:00:00Z"), alice.0, k1, "gpt-4o", 200, "0.5"),
        record(same, alice.0, k1, "gpt-4o", 200, "0.000001"),
        record(same, alice.0, k2, "claude-3", 429, "0"),
        record(same, alice.0, k1, "gpt-4o", 502, "0"),
        record(at("2025-06-03T00:00:00Z"), bob.0, k3, "gpt-4o", 200, "1.25"),
        record(at("2025-06-04T00:00:00Z"), alice.0, k2, "gpt-4o", 499, "0.2"),
        record(at("2025-06-05T00:00:00Z"), alice.0, k1, "claude-3", 201, "0.3"),
    ];
    app.state.store.record_usage(&rows).await.expect("record usage");
    let id = |i: usize| rows[i].request_id.clone();

    // Alice's own rows, newest first; same-millisecond rows by id, newest first.
    let mine = vec![id(6), id(5), id(3), id(2), id(1), id(0)];
    for limit in [1, 2, 4, 200] {
        assert_eq!(all_pages(&app, &alice.1, "/api/usage/requests?", limit).await, mine, "limit {limit}");
    }
    let page = app.get("/api/usage/requests?limit=6", &alice.1).await.expect(StatusCode::OK);
    assert_eq!(page["next_cursor"], Value::Null, "the last page says so");
    let first = &page["items"][3];
    assert_eq!(first["key_name"], "ci, \"nightly\"");
    assert_eq!(
        (&first["status"], &first["model"], &first["username"]),
        (&json!(429), &json!("claude-3"), &json!("alice"))
    );
    let oldest = &page["items"][5];
    assert_eq!(
        (&oldest["charged"], &oldest["raw_cost"], &oldest["user_discount"]),
        (&json!(0.5), &json!(0.5), &json!(1))
    );
    assert_eq!((&oldest["prompt_tokens"], &oldest["cached_tokens"]), (&json!(10), &json!(3)));
    assert_eq!((&oldest["usage_source"], &oldest["created_at"]), (&json!("reported"), &json!("2025-06-01T00:00:00Z")));
    assert_eq!(oldest["key_name"], "laptop");

    // Filters, alone and together.
    let mine_where = async |query: &str| all_pages(&app, &alice.1, &format!("/api/usage/requests?{query}"), 2).await;
    assert_eq!(mine_where(&format!("key_id={k2}")).await, vec![id(5), id(2)]);
    assert_eq!(mine_where("model=claude-3").await, vec![id(6), id(2)]);
    assert_eq!(mine_where("status=ok").await, vec![id(6), id(1), id(0)]);
    assert_eq!(mine_where("status=error").await, vec![id(5), id(3), id(2)]);
    assert_eq!(mine_where("status=502").await, vec![id(3)]);
    assert_eq!(mine_where("from=2025-06-02&to=2025-06-03").await, vec![id(3), id(2), id(1)]);
    assert_eq!(mine_where("from=2025-06-02T10:00:00.124Z").await, vec![id(6), id(5)]);
    assert_eq!(mine_where(&format!("model=gpt-4o&status=ok&key_id={k1}")).await, vec![id(1), id(0)]);
    // Someone else's key lists nothing; the user_id of the admin listing is not the user's to set.
    assert_eq!(mine_where(&format!("key_id={k3}")).await, Vec::<String>::new());
    assert_eq!(mine_where(&format!("user_id={}", bob.0)).await, mine);

    // Administrators see everyone's, and may narrow to one user; users may not list everyone's.
    let everyone: Vec<String> = (0..7).rev().map(id).collect();
    assert_eq!(all_pages(&app, &admin, "/api/admin/usage/requests?", 3).await, everyone);
    assert_eq!(all_pages(&app, &admin, &format!("/api/admin/usage/requests?user_id={}", bob.0), 3).await, [id(4)]);
    app.get("/api/admin/usage/requests", &alice.1).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
    app.get("/api/admin/usage/requests/export", &alice.1).await.expect_error(StatusCode::FORBIDDEN, "forbidden");

    // Bad input is a clear 422.
    for query in ["limit=0", "limit=201", "cursor=abc", "cursor=1-", "status=2xx", "from=2025-13-01", "to=yesterday"] {
        let message = app
            .get(&format!("/api/usage/requests?{query}"), &alice.1)
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
        assert!(!message.is_empty(), "{query}");
    }
}

/// The whole body of a response, as its frames.
async fn frames(app: &TestApp, path: &str, token: &str) -> (http::response::Parts, Vec<axum::body::Bytes>) {
    let request = Request::get(path).header("authorization", format!("Bearer {token}")).body(Body::empty()).unwrap();
    let response = app.app.clone().oneshot(request).await.expect("infallible");
    let (parts, mut body) = response.into_parts();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("frame").into_data() {
            frames.push(data);
        }
    }
    (parts, frames)
}

async fn exports_are_quoted_csv_with_a_bom_or_ndjson(app: TestApp) {
    let alice = app.user("alice").await;
    let key = create_key(&app, &alice.1, "a \"quoted\", key").await;
    let rows = [
        record(at("2025-06-01T00:00:00Z"), alice.0, key, "=cmd|' /C calc'!A0", 200, "0.000001"),
        record(at("2025-06-02T00:00:00Z"), alice.0, key, "line\nbreak", 502, "0"),
    ];
    app.state.store.record_usage(&rows).await.expect("record usage");

    let (parts, body) = frames(&app, "/api/usage/requests/export?format=csv", &alice.1).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(parts.headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(parts.headers["content-disposition"], "attachment; filename=\"requests.csv\"");
    let text = String::from_utf8(body.concat()).expect("UTF-8");
    let text = text.strip_prefix('\u{feff}').expect("a UTF-8 byte order mark");
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert!(lines[0].starts_with("id,created_at,request_id,user_id,username,key_id,key_name,model,"));
    assert_eq!(lines.len(), 4, "a header, two rows and the final line break: {text:?}");
    assert!(lines[1].contains(",\"a \"\"quoted\"\", key\",\"line\nbreak\","), "{}", lines[1]);
    assert!(lines[1].contains(",502,") && lines[1].ends_with(",reported"));
    assert!(lines[2].contains(",\"'=cmd|' /C calc'!A0\","), "a formula is defused: {}", lines[2]);
    // Latency, then time to first byte.
    assert!(lines[2].contains(",0.000001,1,1,0.000001,0,12,20,reported"), "{}", lines[2]);

    let (parts, body) = frames(&app, "/api/usage/requests/export?format=ndjson&status=error", &alice.1).await;
    assert_eq!(parts.headers["content-type"], "application/x-ndjson");
    let text = String::from_utf8(body.concat()).expect("UTF-8");
    let items: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(items.len(), 1);
    assert_eq!(
        (&items[0]["request_id"], &items[0]["key_name"]),
        (&json!(rows[1].request_id), &json!("a \"quoted\", key"))
    );

    // Nothing to export: CSV is still its header.
    let (_, body) = frames(&app, "/api/usage/requests/export?model=none", &alice.1).await;
    assert!(String::from_utf8(body.concat()).unwrap().ends_with("usage_source\r\n"));
}

fn backend(app: &TestApp) -> Backend {
    match &app.state.db {
        Db::Sqlite { .. } => Backend::Sqlite,
        Db::Postgres { .. } => Backend::Postgres,
    }
}

/// Inserts `n` usage rows with SQL: row `i` (from 1) at `start_ms + i / 4` (four to a
/// millisecond), every tenth `alice`'s on `alice_key` and the others `bob`'s on `bob_key`, every
/// fiftieth a 502.
async fn generate(app: &TestApp, n: u64, start_ms: i64, (alice, alice_key): (i64, i64), (bob, bob_key): (i64, i64)) {
    let columns = "request_id, user_id, key_id, model, endpoint, stream, prompt_tokens, completion_tokens, \
        cached_tokens, raw_cost, user_discount_ppm, key_discount_ppm, charged, status, upstream_latency_ms, \
        usage_source, created_at, overage";
    let values = format!(
        "'gen-' || i, CASE WHEN i % 10 = 0 THEN {alice} ELSE {bob} END, \
         CASE WHEN i % 10 = 0 THEN {alice_key} ELSE {bob_key} END, \
         CASE WHEN i % 3 = 0 THEN 'claude-3' ELSE 'gpt-4o' END, '/v1/chat/completions', i % 7 = 0, \
         100, 200, 0, 3000, 1000000, 1000000, 3000, CASE WHEN i % 50 = 0 THEN 502 ELSE 200 END, 150, \
         'reported', {start_ms} + i / 4, 0"
    );
    let sql = match backend(app) {
        Backend::Sqlite => format!(
            "INSERT INTO usage_logs ({columns}) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
             WHERE i < {n}) SELECT {values} FROM n; ANALYZE;"
        ),
        Backend::Postgres => format!(
            "INSERT INTO usage_logs ({columns}) SELECT {values} FROM generate_series(1, {n}) AS i; ANALYZE usage_logs;"
        ),
    };
    app.execute(&sql).await;
}

#[derive(diesel::QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = diesel::sql_types::Text)]
    line: String,
}

#[derive(diesel::QueryableByName)]
struct SqlitePlanStep {
    #[diesel(sql_type = diesel::sql_types::Text)]
    detail: String,
}

/// The query plan of `query`, one line per step.
async fn plan(app: &TestApp, query: &str) -> String {
    let lines: Vec<PlanLine> = match &app.state.db {
        Db::Sqlite { pool, .. } => {
            let mut conn = pool.get().await.expect("connection");
            let steps: Vec<SqlitePlanStep> =
                diesel::sql_query(format!("EXPLAIN QUERY PLAN {query}")).load(&mut *conn).await.expect("plan");
            steps.into_iter().map(|s| PlanLine { line: s.detail }).collect()
        }
        Db::Postgres { pool, .. } => {
            let mut conn = pool.get().await.expect("connection");
            conn.batch_execute(
                "CREATE OR REPLACE FUNCTION plan_of(q text) RETURNS SETOF text LANGUAGE plpgsql AS \
                 $$ DECLARE l text; BEGIN FOR l IN EXECUTE 'EXPLAIN ' || q LOOP RETURN NEXT l; END LOOP; END $$;",
            )
            .await
            .expect("plan function");
            diesel::sql_query("SELECT plan_of($1) AS line")
                .bind::<diesel::sql_types::Text, _>(query)
                .load(&mut *conn)
                .await
                .expect("plan")
        }
    };
    lines.into_iter().map(|l| l.line).collect::<Vec<_>>().join("\n")
}

async fn timed(app: &TestApp, token: &str, path: &str) -> (Value, Duration) {
    let started = Instant::now();
    let page = app.get(path, token).await.expect(StatusCode::OK);
    (page, started.elapsed())
}

/// Rows of the generated table (one million; ten would make a CI run minutes longer).
const GENERATED: u64 = 1_000_000;

async fn a_deep_page_of_a_million_rows_is_an_index_range_scan(app: TestApp) {
    let admin = app.admin_token().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let (alice_key, bob_key) = (create_key(&app, &alice.1, "a").await, create_key(&app, &bob.1, "b").await);
    let start_ms = at("2025-01-01T00:00:00Z").timestamp_millis();
    let started = Instant::now();
    generate(&app, GENERATED, start_ms, (alice.0, alice_key), (bob.0, bob_key)).await;
    let generated = started.elapsed();

    // The store's page queries, by hand: a user's, a key's and everyone's, deep into the table.
    let (cursor_ms, cursor_id) = (start_ms + 1_000, 4_000);
    let deep = format!("created_at <= {cursor_ms} AND (created_at < {cursor_ms} OR id < {cursor_id})");
    let order = "ORDER BY created_at DESC, id DESC LIMIT 51";
    let (sqlite, postgres) = (backend(&app) == Backend::Sqlite, backend(&app) == Backend::Postgres);
    for (filter, index) in [
        (format!("user_id = {} AND ", alice.0), "usage_logs_user_time_id"),
        (format!("key_id = {bob_key} AND "), "usage_logs_key_time_id"),
        (String::new(), "usage_logs_time_id"),
    ] {
        let query = format!("SELECT id FROM usage_logs WHERE {filter}{deep} {order}");
        let plan = plan(&app, &query).await;
        // The planner may take another of the keyset indexes (PostgreSQL reads a key that has 90%
        // of the rows through the time index), never a sort of the matches.
        assert!(plan.contains(index) || plan.contains("_time_id"), "{query}\n{plan}");
        if sqlite {
            assert!(!plan.contains("TEMP B-TREE"), "no sort: {query}\n{plan}");
        }
        if postgres {
            assert!(plan.contains("Index") && !plan.contains("Sort"), "no sort: {query}\n{plan}");
        }
    }

    // Through the API: the first page, a deep page and a filtered deep page, each well within
    // a generous bound (timings are reported, not asserted tightly).
    let cursor = format!("{cursor_ms}-{cursor_id}");
    let mut report = vec![format!("generated {GENERATED} rows in {generated:.1?}")];
    for (who, token, path) in [
        ("user, first page", &alice.1, "/api/usage/requests?limit=50".to_owned()),
        ("user, deep page", &alice.1, format!("/api/usage/requests?limit=50&cursor={cursor}")),
        ("admin, first page", &admin, "/api/admin/usage/requests?limit=200".to_owned()),
        ("admin, deep page", &admin, format!("/api/admin/usage/requests?limit=200&cursor={cursor}")),
        (
            "admin, deep page of errors",
            &admin,
            format!("/api/admin/usage/requests?limit=50&status=error&cursor={cursor}"),
        ),
        (
            "admin, deep page of one key",
            &admin,
            format!("/api/admin/usage/requests?limit=50&key_id={bob_key}&cursor={cursor}"),
        ),
    ] {
        let (page, took) = timed(&app, token, &path).await;
        let items = page["items"].as_array().expect("items");
        assert!(!items.is_empty(), "{who}");
        assert!(took < Duration::from_secs(5), "{who} took {took:?}");
        report.push(format!("{who}: {} rows in {took:.1?}", items.len()));
    }
    eprintln!("{:?}: {}", backend(&app), report.join("; "));
}

async fn an_export_of_100000_rows_streams_in_bounded_chunks(app: TestApp) {
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let (alice_key, bob_key) = (create_key(&app, &alice.1, "a").await, create_key(&app, &bob.1, "b").await);
    // Every tenth row is alice's: 100,000 of 1,000,000.
    let start_ms = at("2025-01-01T00:00:00Z").timestamp_millis();
    generate(&app, 1_000_000, start_ms, (alice.0, alice_key), (bob.0, bob_key)).await;

    let started = Instant::now();
    let (parts, body) = frames(&app, "/api/usage/requests/export?format=csv", &alice.1).await;
    let took = started.elapsed();
    assert_eq!(parts.status, StatusCode::OK);
    let bytes: usize = body.iter().map(|f| f.len()).sum();
    let largest = body.iter().map(|f| f.len()).max().unwrap_or(0);
    let lines = body.iter().map(|f| f.iter().filter(|b| **b == b'\n').count()).sum::<usize>();
    assert_eq!(lines, 100_001, "a header and every row");
    assert!(body.len() >= 100, "streamed in chunks of 1,000 rows, not whole: {} chunks", body.len());
    assert!(largest < 512 * 1024, "each chunk is small: {largest} bytes");
    eprintln!(
        "{:?}: exported 100,000 rows ({bytes} bytes) in {} chunks of at most {largest} bytes in {took:.1?}",
        backend(&app),
        body.len()
    );
}

async fn retention_deletes_only_rows_older_than_the_limit(app: TestApp) {
    let alice = app.user("alice").await;
    let key = create_key(&app, &alice.1, "k").await;
    let now = Utc::now();
    let day = chrono::Duration::days(1);
    let rows: Vec<UsageRecord> = [40, 31, 30, 30, 29, 1, 0]
        .iter()
        .map(|days| record(now - day * *days - chrono::Duration::minutes(1), alice.0, key, "m", 200, "0"))
        .collect();
    app.state.store.record_usage(&rows).await.expect("record usage");
    let cutoff = now - day * 30;
    // Two rows a statement: the four rows older than 30 days take three statements.
    let deleted = apihub_server::retention::prune(app.state.request_log.as_ref(), cutoff, 2, Duration::ZERO)
        .await
        .expect("prune");
    assert_eq!(deleted, 4);
    let left = all_pages(&app, &alice.1, "/api/usage/requests?", 200).await;
    let kept: Vec<String> = rows[4..].iter().rev().map(|r| r.request_id.clone()).collect();
    assert_eq!(left, kept);
    // Nothing more to do.
    assert_eq!(
        apihub_server::retention::prune(app.state.request_log.as_ref(), cutoff, 2, Duration::ZERO).await.unwrap(),
        0
    );
}

db_tests!(
    pages_follow_the_cursor_newest_first_and_filters_narrow,
    exports_are_quoted_csv_with_a_bom_or_ndjson,
    a_deep_page_of_a_million_rows_is_an_index_range_scan,
    an_export_of_100000_rows_streams_in_bounded_chunks,
    retention_deletes_only_rows_older_than_the_limit,
);
