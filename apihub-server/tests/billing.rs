//! Reservations (reserve → settle or release) on SQLite and PostgreSQL: exact accounting, key
//! limits, refusals that change nothing, stale holds, admin debits that respect holds, and real
//! concurrency.

mod common;

use std::sync::Arc;
use std::time::Duration;

use apihub_core::Money;
use apihub_core::billing::{BillingError, BillingStore, HoldRequest, NewReservation, Settlement, UserFunds};
use apihub_core::ledger::TxType;
use apihub_core::policy::KeyPatch;
use apihub_core::store::{PageRequest, StoreError};
use apihub_server::db::schema::{api_keys, transactions, users};
use apihub_server::db::{Db, SqlStore};
use common::TestApp;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use http::StatusCode;
use serde_json::{Value, json};

/// The store as the gateway will reach it (`Store` does not include `BillingStore` yet).
fn billing(app: &TestApp) -> Arc<SqlStore> {
    Arc::new(SqlStore::new(app.state.db.clone()))
}

fn credits(text: &str) -> Money {
    Money::parse(text).expect("amount")
}

fn hold(user_id: i64, key_id: i64, request_id: &str, amount: &str, tokens: i64) -> NewReservation {
    NewReservation {
        user_id,
        key_id,
        request_id: request_id.to_owned(),
        hold: HoldRequest { amount: credits(amount), tokens },
    }
}

fn charge(amount: &str, tokens: i64, success: bool) -> Settlement {
    Settlement { charge: credits(amount), tokens, success, description: "gpt-4o via test key".into() }
}

/// A user with `balance` credits and a key with the given limits; returns (user id, key id).
async fn funded_user(app: &TestApp, name: &str, balance: &str, limits: Value) -> (i64, i64) {
    let admin = app.admin_token().await;
    let (user_id, token) = app.user(name).await;
    if balance != "0" {
        app.recharge(&admin, user_id, balance).await;
    }
    let key = app.post("/api/keys", &token, limits).await.expect(StatusCode::CREATED);
    (user_id, key["id"].as_i64().expect("key id"))
}

/// Runs a diesel block on whichever backend the app uses.
macro_rules! on_conn {
    ($app:expr, |$conn:ident| $body:expr) => {
        // Settlements written (both engines write them behind the requests).
        {
            $app.state.db.flush().await.expect("settlements written");
            match &$app.state.db {
                Db::Sqlite { pool, .. } => {
                    let mut guard = pool.get().await.expect("connection");
                    let $conn = &mut *guard;
                    $body
                }
                Db::Postgres { pool, .. } => {
                    let mut guard = pool.get().await.expect("connection");
                    let $conn = &mut *guard;
                    $body
                }
            }
        }
    };
}

/// A key's counters and holds, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyState {
    tokens_used: i64,
    quota_used: i64,
    calls_total: i64,
    calls_succeeded: i64,
    remaining_calls: Option<i64>,
    tokens_reserved: i64,
    quota_reserved: i64,
    calls_reserved: i64,
}

/// Everything a reservation may touch for one user and key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    /// (token_balance, reserved, total_consumed)
    user: (i64, i64, i64),
    key: Option<KeyState>,
    open_reservations: i64,
    ledger_rows: i64,
}

async fn key_state(app: &TestApp, key_id: i64) -> Option<KeyState> {
    let row = on_conn!(app, |conn| {
        api_keys::table
            .find(key_id)
            .select((
                api_keys::tokens_used,
                api_keys::quota_used,
                api_keys::calls_total,
                api_keys::calls_succeeded,
                api_keys::remaining_calls,
            ))
            .first::<(i64, i64, i64, i64, Option<i64>)>(conn)
            .await
            .optional()
            .expect("key state")
    })?;
    let (tokens_used, quota_used, calls_total, calls_succeeded, remaining_calls) = row;
    // Holds live in the credit engine's memory on SQLite, in the key's row on PostgreSQL.
    let (tokens_reserved, quota_reserved, calls_reserved) = billing(app).key_holds(key_id).await.expect("holds");
    Some(KeyState {
        tokens_used,
        quota_used,
        calls_total,
        calls_succeeded,
        remaining_calls,
        tokens_reserved,
        quota_reserved,
        calls_reserved,
    })
}

async fn snapshot(app: &TestApp, user_id: i64, key_id: i64) -> Snapshot {
    let ((balance, total_consumed), ledger_rows) = on_conn!(app, |conn| {
        let user = users::table
            .find(user_id)
            .select((users::token_balance, users::total_consumed))
            .first::<(i64, i64)>(conn)
            .await
            .expect("user");
        let rows = transactions::table
            .filter(transactions::user_id.eq(user_id))
            .count()
            .get_result::<i64>(conn)
            .await
            .expect("transactions");
        (user, rows)
    });
    let reserved = billing(app).reserved_funds(user_id).await.expect("funds").reserved.micros();
    let open_reservations = billing(app).open_reservations().await.expect("open holds");
    let user = (balance, reserved, total_consumed);
    Snapshot { user, key: key_state(app, key_id).await, open_reservations, ledger_rows }
}

/// Asserts that the user's balance is the sum of their ledger rows; returns the consume rows.
async fn assert_ledger_sums(app: &TestApp, user_id: i64) -> Vec<apihub_core::ledger::Transaction> {
    let page = PageRequest { page: 1, page_size: PageRequest::MAX_PAGE_SIZE };
    let rows = app.state.store.transactions(Some(user_id), None, page).await.expect("ledger");
    assert!(rows.total <= u64::from(PageRequest::MAX_PAGE_SIZE), "ledger larger than one page");
    let sum: Money = rows.items.iter().map(|t| t.amount).sum();
    let user = app.state.store.user(user_id).await.expect("user").expect("exists");
    assert_eq!(sum, user.account.balance, "the balance must equal the sum of the ledger");
    for row in &rows.items {
        assert_eq!(row.balance_after, row.balance_before.checked_add(row.amount).unwrap(), "{row:?}");
    }
    rows.items.into_iter().filter(|t| t.tx_type == TxType::Consume).collect()
}

fn funds(balance: &str, reserved: &str) -> UserFunds {
    UserFunds { balance: credits(balance), reserved: credits(reserved) }
}

async fn reserve_settle_and_release(app: TestApp) {
    let store = billing(&app);
    let (user_id, key_id) = funded_user(&app, "alice", "10", json!({})).await;

    let id = store.reserve(&hold(user_id, key_id, "req-settle", "3", 100)).await.expect("reserve");
    assert_eq!(store.reserved_funds(user_id).await.unwrap(), funds("10", "3"));
    let key = key_state(&app, key_id).await.unwrap();
    assert_eq!((key.tokens_reserved, key.quota_reserved, key.calls_reserved), (100, 3_000_000, 1));

    let settled = store.settle(id, &charge("1.5", 60, true)).await.expect("settle");
    assert_eq!((settled.charged, settled.overage), (credits("1.5"), Money::ZERO));
    // The consume row: at once on PostgreSQL, written behind by SQLite's credit engine.
    let consumed = assert_ledger_sums(&app, user_id).await;
    let row = consumed.into_iter().next().expect("a consume row");
    assert_eq!(row.tx_type, TxType::Consume);
    assert_eq!(row.user_id, user_id);
    assert_eq!(row.amount, credits("-1.5"));
    assert_eq!((row.balance_before, row.balance_after), (credits("10"), credits("8.5")));
    assert_eq!(row.order_no.as_deref(), Some("req-settle"));
    assert_eq!(row.description.as_deref(), Some("gpt-4o via test key"));
    assert_eq!(store.reserved_funds(user_id).await.unwrap(), funds("8.5", "0"));
    let key = key_state(&app, key_id).await.unwrap();
    assert_eq!(
        key,
        KeyState {
            tokens_used: 60,
            quota_used: 1_500_000,
            calls_total: 1,
            calls_succeeded: 1,
            remaining_calls: None,
            tokens_reserved: 0,
            quota_reserved: 0,
            calls_reserved: 0,
        }
    );
    let user = app.state.store.user(user_id).await.unwrap().unwrap();
    assert_eq!(user.account.total_consumed, credits("1.5"));

    // A closed reservation stays closed.
    assert!(matches!(store.settle(id, &charge("1", 1, true)).await, Err(BillingError::NotOpen(n)) if n == id));
    assert!(matches!(store.release(id).await, Err(BillingError::NotOpen(n)) if n == id));

    // A release frees the hold and writes nothing.
    let before = snapshot(&app, user_id, key_id).await;
    let id = store.reserve(&hold(user_id, key_id, "req-release", "2", 50)).await.expect("reserve");
    assert_eq!(store.reserved_funds(user_id).await.unwrap(), funds("8.5", "2"));
    store.release(id).await.expect("release");
    assert_eq!(snapshot(&app, user_id, key_id).await, before);
    assert!(matches!(store.release(id).await, Err(BillingError::NotOpen(_))));
    assert!(matches!(store.settle(id, &charge("1", 1, true)).await, Err(BillingError::NotOpen(_))));

    // A failed call with a zero charge counts as a call, writes no row and charges nothing.
    let id = store.reserve(&hold(user_id, key_id, "req-failed", "1", 10)).await.expect("reserve");
    let settled = store.settle(id, &charge("0", 0, false)).await.expect("settle");
    assert_eq!(settled.charged, Money::ZERO);
    let key = key_state(&app, key_id).await.unwrap();
    assert_eq!((key.calls_total, key.calls_succeeded, key.calls_reserved), (2, 1, 0));

    // A zero hold (a free model) is a hold like any other.
    let id = store.reserve(&hold(user_id, key_id, "req-free", "0", 0)).await.expect("reserve");
    assert_eq!(store.settle(id, &charge("0", 0, true)).await.unwrap().charged, Money::ZERO);

    let consumed = assert_ledger_sums(&app, user_id).await;
    assert_eq!(consumed.len(), 1);
    assert_eq!(store.reserved_funds(user_id).await.unwrap(), funds("8.5", "0"));
}

async fn usage_above_the_hold_is_billed_even_below_a_zero_balance(app: TestApp) {
    let store = billing(&app);
    let (user_id, key_id) = funded_user(&app, "bob", "10", json!({"token_limit": 100})).await;
    let id = store.reserve(&hold(user_id, key_id, "req-over", "2", 10)).await.unwrap();
    let settled = store.settle(id, &charge("5", 90, true)).await.unwrap();
    assert_eq!((settled.charged, settled.overage), (credits("5"), credits("3")));
    assert_eq!(store.reserved_funds(user_id).await.unwrap(), funds("5", "0"));
    let key = key_state(&app, key_id).await.unwrap();
    // The key's counters agree with what was billed.
    assert_eq!((key.quota_used, key.tokens_used), (5_000_000, 90));

    // More than the user has left: the balance goes below zero by the excess, and nothing more
    // is served until the user tops up.
    let id = store.reserve(&hold(user_id, key_id, "req-deep", "1", 1)).await.unwrap();
    let settled = store.settle(id, &charge("7", 1, true)).await.unwrap();
    assert_eq!((settled.charged, settled.overage), (credits("7"), credits("6")));
    assert_eq!(store.reserved_funds(user_id).await.unwrap(), funds("-2", "0"));
    let refused = store.reserve(&hold(user_id, key_id, "req-after", "0.000001", 0)).await;
    assert!(matches!(refused, Err(BillingError::InsufficientBalance { .. })), "{refused:?}");
    let admin = app.admin_token().await;
    app.post(&format!("/api/tokens/admin/user/{user_id}/recharge"), &admin, json!({"amount": "3"}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(store.reserved_funds(user_id).await.unwrap(), funds("1", "0"));
    store.reserve(&hold(user_id, key_id, "req-topped-up", "1", 0)).await.expect("served again");

    // A negative charge is no charge.
    let id = store.reserve(&hold(user_id, key_id, "req-negative", "0", 0)).await.unwrap();
    let settled = store.settle(id, &charge("-1", 0, true)).await.unwrap();
    assert_eq!(settled.charged, Money::ZERO);
    let consumed = assert_ledger_sums(&app, user_id).await;
    assert_eq!(consumed.iter().map(|t| t.amount).sum::<Money>(), credits("-12"));
}

async fn refusals_name_the_rule_and_change_nothing(app: TestApp) {
    let store = billing(&app);

    // Balance: refused, with what is available once open holds are counted.
    let (user_id, key_id) = funded_user(&app, "carol", "5", json!({})).await;
    store.reserve(&hold(user_id, key_id, "req-c1", "3", 0)).await.unwrap();
    let before = snapshot(&app, user_id, key_id).await;
    match store.reserve(&hold(user_id, key_id, "req-c2", "2.000001", 0)).await {
        Err(BillingError::InsufficientBalance { available, required }) => {
            assert_eq!((available, required), (credits("2"), credits("2.000001")));
        }
        other => panic!("expected InsufficientBalance, got {other:?}"),
    }
    assert_eq!(snapshot(&app, user_id, key_id).await, before);
    store.reserve(&hold(user_id, key_id, "req-c3", "2", 0)).await.expect("exactly what is left");

    // Each key limit: the first hold fits, the next is refused by name and rolls back whole
    // (including the user's hold, which is taken first).
    let cases = [
        ("remaining_calls", json!({"remaining_calls": 1}), ("1", 0)),
        ("token_limit", json!({"token_limit": 100}), ("1", 60)),
        ("quota_limit", json!({"quota_limit": "1.5"}), ("1", 0)),
    ];
    for (i, (limit, limits, (amount, tokens))) in cases.into_iter().enumerate() {
        let (user_id, key_id) = funded_user(&app, &format!("limited{i}"), "100", limits).await;
        store.reserve(&hold(user_id, key_id, &format!("req-{limit}-1"), amount, tokens)).await.expect("first fits");
        let before = snapshot(&app, user_id, key_id).await;
        match store.reserve(&hold(user_id, key_id, &format!("req-{limit}-2"), amount, tokens)).await {
            Err(BillingError::KeyLimit { limit: named }) => assert_eq!(named, limit),
            other => panic!("expected KeyLimit {{ {limit} }}, got {other:?}"),
        }
        assert_eq!(snapshot(&app, user_id, key_id).await, before, "{limit}");
    }

    // Unknown user, unknown key, someone else's key: not found, nothing held.
    let (dave, dave_key) = funded_user(&app, "dave", "10", json!({})).await;
    let before = snapshot(&app, dave, dave_key).await;
    for (user, key) in [(dave, 999_999), (999_999, dave_key), (user_id, dave_key), (dave, key_id)] {
        let result = store.reserve(&hold(user, key, "req-nf", "1", 0)).await;
        assert!(matches!(result, Err(BillingError::Store(StoreError::NotFound))), "{user}/{key}: {result:?}");
    }
    assert_eq!(snapshot(&app, dave, dave_key).await, before);

    // One hold per request id.
    store.reserve(&hold(dave, dave_key, "req-dup", "1", 0)).await.unwrap();
    let before = snapshot(&app, dave, dave_key).await;
    let result = store.reserve(&hold(dave, dave_key, "req-dup", "1", 0)).await;
    assert!(matches!(result, Err(BillingError::Store(StoreError::Conflict(_)))), "{result:?}");
    assert_eq!(snapshot(&app, dave, dave_key).await, before);
}

async fn settling_survives_key_changes(app: TestApp) {
    let store = billing(&app);
    let (user_id, key_id) = funded_user(&app, "erin", "10", json!({"remaining_calls": 2})).await;

    // An administrator lowers `remaining_calls` below the calls in flight: settling still works,
    // and the counter stops at zero.
    let a = store.reserve(&hold(user_id, key_id, "req-e1", "1", 0)).await.unwrap();
    let b = store.reserve(&hold(user_id, key_id, "req-e2", "1", 0)).await.unwrap();
    let patch = KeyPatch { remaining_calls: Some(Some(1)), ..KeyPatch::default() };
    app.state.store.update_key(key_id, &patch).await.unwrap();
    store.settle(a, &charge("1", 5, true)).await.unwrap();
    store.settle(b, &charge("1", 5, true)).await.unwrap();
    let key = key_state(&app, key_id).await.unwrap();
    assert_eq!((key.remaining_calls, key.calls_succeeded, key.calls_reserved), (Some(0), 2, 0));

    // A key deleted while its request is in flight: the user is still charged, once.
    let patch = KeyPatch { remaining_calls: Some(None), ..KeyPatch::default() };
    app.state.store.update_key(key_id, &patch).await.unwrap();
    let c = store.reserve(&hold(user_id, key_id, "req-e3", "2", 0)).await.unwrap();
    app.state.store.delete_key(key_id).await.unwrap();
    let settled = store.settle(c, &charge("1.25", 5, true)).await.unwrap();
    assert_eq!(settled.charged, credits("1.25"));
    assert_eq!(store.reserved_funds(user_id).await.unwrap(), funds("6.75", "0"));
    assert_eq!(assert_ledger_sums(&app, user_id).await.len(), 3);
}

async fn no_sweep_takes_a_live_hold(app: TestApp) {
    let store = billing(&app);
    let (user_id, key_id) = funded_user(&app, "frank", "10", json!({"remaining_calls": 5})).await;
    let old = store.reserve(&hold(user_id, key_id, "req-old", "2", 10)).await.unwrap();
    let settled_old = store.reserve(&hold(user_id, key_id, "req-old-settled", "1", 10)).await.unwrap();
    store.settle(settled_old, &charge("1", 10, true)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let fresh = store.reserve(&hold(user_id, key_id, "req-fresh", "3", 20)).await.unwrap();

    // Holds live in the gateway's memory (on PostgreSQL, taken from its credit lease, which
    // expires by the database's clock when the gateway dies): no sweep ever takes a live
    // request's hold.
    assert_eq!(store.release_stale(Duration::from_millis(200)).await.unwrap(), 0);
    store.release(old).await.expect("still open");
    assert_eq!(store.reserved_funds(user_id).await.unwrap(), funds("9", "3"));
    let key = key_state(&app, key_id).await.unwrap();
    assert_eq!((key.tokens_reserved, key.quota_reserved, key.calls_reserved), (20, 3_000_000, 1));
    assert_eq!(store.release_stale(Duration::from_millis(200)).await.unwrap(), 0);

    store.settle(fresh, &charge("3", 20, true)).await.unwrap();
    assert_eq!(store.reserved_funds(user_id).await.unwrap(), funds("6", "0"));
    assert_eq!(key_state(&app, key_id).await.unwrap().remaining_calls, Some(3));
    assert_ledger_sums(&app, user_id).await;
}

async fn admin_debits_cannot_take_held_funds(app: TestApp) {
    let store = billing(&app);
    let admin = app.admin_token().await;
    let (user_id, key_id) = funded_user(&app, "grace", "10", json!({})).await;
    let id = store.reserve(&hold(user_id, key_id, "req-g", "8", 0)).await.unwrap();
    let path = |op: &str| format!("/api/tokens/admin/user/{user_id}/{op}");

    let before = snapshot(&app, user_id, key_id).await;
    let message = app
        .post(&path("consume"), &admin, json!({"amount": "3"}))
        .await
        .expect_error(StatusCode::PAYMENT_REQUIRED, "insufficient_balance");
    assert!(message.contains('2'), "the message names what is available: {message}");
    app.post(&path("adjust"), &admin, json!({"amount": "-2.5"}))
        .await
        .expect_error(StatusCode::PAYMENT_REQUIRED, "insufficient_balance");
    assert_eq!(snapshot(&app, user_id, key_id).await, before);

    // What is not held can be debited, and credits are never refused because of holds.
    app.post(&path("consume"), &admin, json!({"amount": "2"})).await.expect(StatusCode::OK);
    app.post(&path("recharge"), &admin, json!({"amount": "1"})).await.expect(StatusCode::OK);
    app.post(&path("adjust"), &admin, json!({"amount": "-1"})).await.expect(StatusCode::OK);
    assert_eq!(store.reserved_funds(user_id).await.unwrap(), funds("8", "8"));

    // The hold can still be settled in full.
    store.settle(id, &charge("8", 0, true)).await.unwrap();
    assert_eq!(store.reserved_funds(user_id).await.unwrap(), funds("0", "0"));
    assert_ledger_sums(&app, user_id).await;
}

async fn concurrent_reserves_never_overspend(app: TestApp) {
    let store = billing(&app);
    let (user_id, key_id) = funded_user(&app, "heidi", "50", json!({})).await;
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.reserve(&hold(user_id, key_id, &format!("req-h{i}"), "1", 10)).await })
        })
        .collect();
    let mut held = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(id) => held.push(id),
            Err(BillingError::InsufficientBalance { required, .. }) => {
                assert_eq!(required, credits("1"));
                refused += 1;
            }
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!((held.len(), refused), (50, 150));
    assert_eq!(store.reserved_funds(user_id).await.unwrap(), funds("50", "50"));

    let tasks: Vec<_> = held
        .into_iter()
        .map(|id| {
            let store = store.clone();
            tokio::spawn(async move { store.settle(id, &charge("1", 10, true)).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("task").expect("settle").charged, credits("1"));
    }
    assert_eq!(store.reserved_funds(user_id).await.unwrap(), funds("0", "0"));
    let consumed = assert_ledger_sums(&app, user_id).await;
    assert_eq!(consumed.len(), 50);
    let key = key_state(&app, key_id).await.unwrap();
    assert_eq!((key.calls_total, key.quota_used, key.tokens_used, key.calls_reserved), (50, 50_000_000, 500, 0));
}

async fn concurrent_calls_respect_remaining_calls(app: TestApp) {
    let store = billing(&app);
    let (user_id, key_id) = funded_user(&app, "ivan", "1000", json!({"remaining_calls": 30})).await;
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = store.reserve(&hold(user_id, key_id, &format!("req-i{i}"), "1", 10)).await?;
                store.settle(id, &charge("0.5", 10, true)).await
            })
        })
        .collect();
    let (mut succeeded, mut refused) = (0, 0);
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => succeeded += 1,
            Err(BillingError::KeyLimit { limit: "remaining_calls" }) => refused += 1,
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!((succeeded, refused), (30, 70));
    let key = key_state(&app, key_id).await.unwrap();
    assert_eq!((key.remaining_calls, key.calls_succeeded, key.calls_reserved), (Some(0), 30, 0));
    assert_eq!(store.reserved_funds(user_id).await.unwrap(), funds("985", "0"));
    assert_eq!(assert_ledger_sums(&app, user_id).await.len(), 30);
}

db_tests!(
    reserve_settle_and_release,
    usage_above_the_hold_is_billed_even_below_a_zero_balance,
    refusals_name_the_rule_and_change_nothing,
    settling_survives_key_changes,
    no_sweep_takes_a_live_hold,
    admin_debits_cannot_take_held_funds,
    concurrent_reserves_never_overspend,
    concurrent_calls_respect_remaining_calls,
    clients_that_go_away_mid_hold_leave_no_hold_open,
    admin_credits_racing_with_traffic_keep_the_ledger_equal_to_the_balance,
    concurrent_holds_never_exceed_a_key_limit,
);

/// A gateway on SQLite that dies with credit held (its memory gone, nothing settled) finds the
/// credit free at its next start: holds live in the process, never in the file.
#[tokio::test]
async fn credit_held_by_a_dead_sqlite_gateway_is_free_at_restart() {
    use apihub_core::key::GeneratedKey;
    use apihub_core::ledger::LedgerOp;
    use apihub_core::policy::KeyPolicy;
    use apihub_core::store::{KeyStore, LedgerStore, NewKey, UserStore};
    use apihub_core::user::{NewUser, Role};
    use apihub_server::db::{DbUrl, PoolOptions};

    let dir = tempfile::tempdir().expect("temp dir");
    let url = DbUrl::Sqlite(dir.path().join("apihub.db").display().to_string());
    let (user_id, key_id) = {
        let store = SqlStore::new(Db::connect(&url, &PoolOptions::default()).await.expect("db"));
        let new = NewUser { username: "zoe".into(), email: None, password_hash: "x".into(), role: Role::User };
        let user = store.create_user(new).await.expect("user");
        store.apply(user.id, LedgerOp::new(TxType::Recharge, credits("10"))).await.expect("recharge");
        let GeneratedKey { public_id, secret_hash, last4, .. } = GeneratedKey::generate();
        let key = NewKey { public_id, secret_hash, last4, policy: KeyPolicy::default(), batch_id: None };
        let key = store.create_keys(user.id, vec![key]).await.expect("key").remove(0);
        store.reserve(&hold(user.id, key.id, "req-z1", "10", 100)).await.expect("all of it held");
        assert!(store.reserve(&hold(user.id, key.id, "req-z2", "0.1", 1)).await.is_err());
        (user.id, key.id)
        // The store, its engine and its holds go away here, as with `kill -9`.
    };
    let store = SqlStore::new(Db::connect(&url, &PoolOptions::default()).await.expect("db again"));
    assert_eq!(store.reserved_funds(user_id).await.unwrap(), funds("10", "0"));
    store.reserve(&hold(user_id, key_id, "req-z3", "10", 100)).await.expect("the credit is free again");
}

async fn clients_that_go_away_mid_hold_leave_no_hold_open(app: TestApp) {
    let store = billing(&app);
    let (user_id, key_id) = funded_user(&app, "judy", "1000", json!({})).await;
    // 200 requests at once, each abandoned at a different moment: before, during or after its
    // hold (a client disconnecting while the gateway talks to the database).
    let tasks: Vec<_> = (0..200u64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let reserve = async {
                    let id = store.reserve(&hold(user_id, key_id, &format!("req-j{i}"), "1", 10)).await?;
                    store.release(id).await
                };
                let _ = tokio::time::timeout(Duration::from_micros(i * 37 % 3_000), reserve).await;
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    // Whatever a dropped request had taken is given back once its task finishes.
    let mut funds = store.reserved_funds(user_id).await.unwrap();
    for _ in 0..100 {
        if funds.reserved == Money::ZERO {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        funds = store.reserved_funds(user_id).await.unwrap();
    }
    assert_eq!(funds, UserFunds { balance: credits("1000"), reserved: Money::ZERO });
    let key = key_state(&app, key_id).await.unwrap();
    assert_eq!((key.tokens_reserved, key.quota_reserved, key.calls_reserved), (0, 0, 0));
    assert_eq!(store.open_reservations().await.unwrap(), 0);
}

async fn admin_credits_racing_with_traffic_keep_the_ledger_equal_to_the_balance(app: TestApp) {
    use apihub_core::ledger::LedgerOp;
    use apihub_core::store::LedgerStore;
    let store = billing(&app);
    let (user_id, key_id) = funded_user(&app, "kate", "20", json!({})).await;
    let traffic: Vec<_> = (0..100)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = store.reserve(&hold(user_id, key_id, &format!("req-k{i}"), "0.5", 10)).await?;
                // Some usage above the hold, too.
                let charged = if i % 10 == 0 { "0.75" } else { "0.25" };
                store.settle(id, &charge(charged, 10, true)).await.map(|s| s.charged)
            })
        })
        .collect();
    let admin: Vec<_> = (0..30)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let op = match i % 3 {
                    0 => LedgerOp::new(TxType::Recharge, credits("1")),
                    1 => LedgerOp::new(TxType::Consume, credits("0.5")),
                    _ => LedgerOp::new(TxType::Adjust, credits("0.1")),
                };
                store.apply(user_id, op).await.map(|applied| applied.transaction.amount)
            })
        })
        .collect();
    let mut expected = credits("20");
    for task in traffic {
        if let Ok(charged) = task.await.expect("task") {
            expected = expected.checked_sub(charged).unwrap();
        }
    }
    for task in admin {
        if let Ok(amount) = task.await.expect("task") {
            expected = expected.checked_add(amount).unwrap();
        }
    }
    assert_eq!(store.reserved_funds(user_id).await.unwrap(), UserFunds { balance: expected, reserved: Money::ZERO });
    assert_ledger_sums(&app, user_id).await;
    let user = app.state.store.user(user_id).await.unwrap().unwrap();
    assert_eq!(user.account.balance, expected);
}

/// SQLite locked by another process for a while: requests are still held and settled (in the
/// engine's memory), and every settlement is written once the lock is gone, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settlements_made_while_sqlite_is_locked_are_written_once_it_is_free() {
    use apihub_core::key::GeneratedKey;
    use apihub_core::ledger::LedgerOp;
    use apihub_core::policy::KeyPolicy;
    use apihub_core::store::{KeyStore, LedgerStore, NewKey, UserStore};
    use apihub_core::user::{NewUser, Role};
    use apihub_server::db::{DbUrl, PoolOptions};
    use diesel::connection::SimpleConnection;

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("apihub.db").display().to_string();
    let db = Db::connect(&DbUrl::Sqlite(path.clone()), &PoolOptions::default()).await.expect("db");
    let store = Arc::new(SqlStore::new(db.clone()));
    let new = NewUser { username: "lou".into(), email: None, password_hash: "x".into(), role: Role::User };
    let user = store.create_user(new).await.expect("user");
    store.apply(user.id, LedgerOp::new(TxType::Recharge, credits("10"))).await.expect("recharge");
    let GeneratedKey { public_id, secret_hash, last4, .. } = GeneratedKey::generate();
    let key = NewKey { public_id, secret_hash, last4, policy: KeyPolicy::default(), batch_id: None };
    let key = store.create_keys(user.id, vec![key]).await.expect("key").remove(0);

    // The engine has the user and key in memory once they have been used.
    let warm = store.reserve(&hold(user.id, key.id, "req-warm", "0", 0)).await.expect("loaded");
    store.release(warm).await.expect("released");
    // Another process takes the write lock and keeps it for 1.5 s.
    let (locked, is_locked) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let mut conn = diesel::SqliteConnection::establish(&path).expect("second connection");
        conn.batch_execute("BEGIN EXCLUSIVE").expect("lock");
        locked.send(()).expect("tell");
        std::thread::sleep(Duration::from_millis(1_500));
        conn.batch_execute("COMMIT").expect("unlock");
    });
    is_locked.recv().expect("locked");
    let started = std::time::Instant::now();
    for i in 0..50 {
        let id = store.reserve(&hold(user.id, key.id, &format!("req-l{i}"), "0.1", 10)).await.expect("held in memory");
        store.settle(id, &charge("0.1", 10, true)).await.expect("settled in memory");
    }
    assert!(started.elapsed() < Duration::from_millis(500), "served while the file is locked");
    assert_eq!(store.reserved_funds(user.id).await.unwrap(), funds("5", "0"));
    holder.join().expect("lock holder");
    db.flush().await.expect("written after the lock");
    let page = PageRequest { page: 1, page_size: PageRequest::MAX_PAGE_SIZE };
    let rows = store.transactions(Some(user.id), Some(TxType::Consume), page).await.expect("ledger");
    assert_eq!(rows.total, 50);
    let user = store.user(user.id).await.unwrap().unwrap();
    assert_eq!(user.account.balance, credits("5"));
    assert_eq!(store.reserved_funds(user.id).await.unwrap(), funds("5", "0"));
}

/// 200 requests at once against a key whose token limit, credit limit or remaining calls afford
/// 50: exactly 50 are held, whichever limit binds.
async fn concurrent_holds_never_exceed_a_key_limit(app: TestApp) {
    let store = billing(&app);
    let cases = [
        ("token_limit", json!({"token_limit": 500})),
        ("quota_limit", json!({"quota_limit": "50"})),
        ("remaining_calls", json!({"remaining_calls": 50})),
    ];
    for (i, (limit, limits)) in cases.into_iter().enumerate() {
        let (user_id, key_id) = funded_user(&app, &format!("mallory{i}"), "1000", limits).await;
        let tasks: Vec<_> = (0..200)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    let id = store.reserve(&hold(user_id, key_id, &format!("req-m{i}-{n}"), "1", 10)).await?;
                    store.settle(id, &charge("1", 10, true)).await
                })
            })
            .collect();
        let (mut succeeded, mut refused) = (0, 0);
        for task in tasks {
            match task.await.expect("task") {
                Ok(_) => succeeded += 1,
                Err(BillingError::KeyLimit { limit: named }) => {
                    assert_eq!(named, limit);
                    refused += 1;
                }
                Err(other) => panic!("{limit}: unexpected error: {other:?}"),
            }
        }
        assert_eq!((succeeded, refused), (50, 150), "{limit}");
        let key = key_state(&app, key_id).await.unwrap();
        assert_eq!((key.tokens_used, key.quota_used, key.calls_succeeded), (500, 50_000_000, 50), "{limit}");
        assert_eq!(store.reserved_funds(user_id).await.unwrap(), funds("950", "0"));
        assert_eq!(assert_ledger_sums(&app, user_id).await.len(), 50);
    }
}
