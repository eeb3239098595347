//! Credit: the admin operations, order-number idempotency, refusals that change nothing, the
//! discount, credit held by requests in flight, and the ledger under concurrency, on SQLite and
//! PostgreSQL.

mod common;

use std::sync::Arc;

use apihub_core::Money;
use apihub_core::billing::{HoldRequest, NewReservation};
use common::TestApp;
use futures::future::join_all;
use http::{Method, StatusCode};
use serde_json::{Value, json};

/// Reads a JSON money field exactly (through `Money`'s own parser, never a float sum).
#[track_caller]
fn money(value: &Value) -> Money {
    serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("not money: {value}: {e}"))
}

fn op_path(user_id: i64, op: &str) -> String {
    format!("/api/tokens/admin/user/{user_id}/{op}")
}

/// Every transaction of the caller, newest first.
async fn all_transactions(app: &TestApp, token: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    for page in 1.. {
        let body = app.get(&format!("/api/tokens/transactions?page={page}&page_size=200"), token).await;
        let items = body.expect(StatusCode::OK)["items"].as_array().expect("items").clone();
        if items.is_empty() {
            return rows;
        }
        rows.extend(items);
    }
    unreachable!()
}

/// Checks the ledger against the balance, as the user and the administrator see it: every row is
/// consistent, rows chain from one to the next, and the amounts sum to the balance. Returns
/// (balance view, transactions newest first).
async fn assert_ledger_consistent(app: &TestApp, admin: &str, user_id: i64, token: &str) -> (Value, Vec<Value>) {
    let own = app.get("/api/tokens/balance", token).await.expect(StatusCode::OK);
    let seen_by_admin =
        app.get(&format!("/api/tokens/admin/user/{user_id}/balance"), admin).await.expect(StatusCode::OK);
    assert_eq!(own, seen_by_admin);
    let rows = all_transactions(app, token).await;
    for row in &rows {
        let (before, amount, after) =
            (money(&row["balance_before"]), money(&row["amount"]), money(&row["balance_after"]));
        assert_eq!(before.checked_add(amount), Some(after), "row: {row}");
        assert!(!after.is_negative() && !before.is_negative(), "row: {row}");
        assert_eq!(row["user_id"], user_id);
    }
    for pair in rows.windows(2) {
        assert_eq!(pair[0]["balance_before"], pair[1]["balance_after"], "rows do not chain: {pair:?}");
    }
    let balance = money(&own["token_balance"]);
    assert_eq!(rows.iter().map(|r| money(&r["amount"])).sum::<Money>(), balance, "ledger sum vs balance");
    if let Some(newest) = rows.first() {
        assert_eq!(money(&newest["balance_after"]), balance);
    }
    (own, rows)
}

async fn admin_moves_credit(app: TestApp) {
    let admin = app.admin_token().await;
    let (user_id, token) = app.user("alice").await;

    let first = app
        .post(&op_path(user_id, "recharge"), &admin, json!({"amount": 100.5, "description": "welcome"}))
        .await
        .expect(StatusCode::OK);
    let tx = &first["transaction"];
    assert_eq!(
        (&tx["tx_type"], &tx["amount"], &tx["balance_before"], &tx["balance_after"]),
        (&json!("recharge"), &json!(100.5), &json!(0), &json!(100.5))
    );
    assert_eq!(
        (&tx["description"], &tx["user_id"], &first["replayed"]),
        (&json!("welcome"), &json!(user_id), &json!(false))
    );
    assert_eq!(first["balance"]["token_balance"], 100.5);

    let steps = [
        ("recharge", json!("0.000001"), json!(0.000001), json!(100.500001)),
        ("consume", json!("20.25"), json!(-20.25), json!(80.250001)),
        ("refund", json!(5), json!(5), json!(85.250001)),
        ("adjust", json!("-0.250001"), json!(-0.250001), json!(85)),
        ("adjust", json!(10), json!(10), json!(95)),
    ];
    for (op, amount, signed, after) in steps {
        let reply = app.post(&op_path(user_id, op), &admin, json!({ "amount": amount })).await.expect(StatusCode::OK);
        assert_eq!(reply["transaction"]["tx_type"], op);
        assert_eq!(reply["transaction"]["amount"], signed, "{op}: the amount is signed");
        assert_eq!(reply["transaction"]["balance_after"], after, "{op}");
        assert_eq!(reply["balance"]["token_balance"], after, "{op}");
    }

    let (balance, rows) = assert_ledger_consistent(&app, &admin, user_id, &token).await;
    assert_eq!(
        (&balance["token_balance"], &balance["total_recharged"], &balance["total_consumed"]),
        (&json!(95), &json!(100.500001), &json!(15.25))
    );
    assert_eq!(rows.len(), 6);
    assert_eq!(app.get("/api/auth/me", &token).await.expect(StatusCode::OK)["token_balance"], 95);

    let consumes = app.get("/api/tokens/transactions?tx_type=consume", &token).await.expect(StatusCode::OK);
    assert_eq!(consumes["total"], 1);
    assert_eq!(consumes["items"][0]["amount"], -20.25);
    let adjusts = app.get("/api/tokens/transactions?tx_type=adjust&page_size=1", &token).await.expect(StatusCode::OK);
    assert_eq!((&adjusts["total"], &adjusts["items"][0]["amount"]), (&json!(2), &json!(10)), "newest first");
    app.get("/api/tokens/transactions?tx_type=bonus", &token)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");

    // A user sees only their own ledger.
    let (_, bob) = app.user("bob").await;
    assert_eq!(app.get("/api/tokens/transactions", &bob).await.expect(StatusCode::OK)["total"], 0);
}

async fn order_numbers_make_operations_idempotent(app: TestApp) {
    let admin = app.admin_token().await;
    let (user_id, token) = app.user("alice").await;
    let recharge_path = op_path(user_id, "recharge");
    let recharge = |body| app.post(&recharge_path, &admin, body);

    let first = recharge(json!({"amount": 50, "order_no": "R-1"})).await.expect(StatusCode::OK);
    assert_eq!(first["replayed"], false);
    for again in [json!({"amount": 50, "order_no": "R-1"}), json!({"amount": "50.000000", "order_no": " R-1 "})] {
        let replay = recharge(again).await.expect(StatusCode::OK);
        assert_eq!(replay["replayed"], true);
        assert_eq!(replay["transaction"], first["transaction"], "a replay returns the first transaction");
        assert_eq!(replay["balance"]["token_balance"], 50);
    }
    recharge(json!({"amount": 51, "order_no": "R-1"})).await.expect_error(StatusCode::CONFLICT, "conflict");
    // An order number belongs to one user.
    let (bob_id, _) = app.user("bob").await;
    app.post(&op_path(bob_id, "recharge"), &admin, json!({"amount": 50, "order_no": "R-1"}))
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    let (balance, rows) = assert_ledger_consistent(&app, &admin, user_id, &token).await;
    assert_eq!((&balance["token_balance"], rows.len()), (&json!(50), 1));

    // A refund may name a consumed order, and is bounded by what that order consumed.
    let (consume_path, refund_path) = (op_path(user_id, "consume"), op_path(user_id, "refund"));
    let consume = |body| app.post(&consume_path, &admin, body);
    let refund = |body| app.post(&refund_path, &admin, body);
    consume(json!({"amount": 10, "order_no": "C-1"})).await.expect(StatusCode::OK);
    consume(json!({"amount": "4.5", "order_no": "C-2"})).await.expect(StatusCode::OK);
    let replay = consume(json!({"amount": 10, "order_no": "C-1"})).await.expect(StatusCode::OK);
    assert_eq!((&replay["replayed"], &replay["balance"]["token_balance"]), (&json!(true), &json!(35.5)));
    let snapshot = assert_ledger_consistent(&app, &admin, user_id, &token).await;
    for too_much in [
        json!({"amount": "10.000001", "order_no": "C-1"}),
        json!({"amount": 5, "order_no": "C-2"}),
        json!({"amount": 1, "order_no": "NO-SUCH-ORDER"}),
        json!({"amount": 1, "order_no": "R-1"}),
    ] {
        refund(too_much).await.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }
    assert_eq!(assert_ledger_consistent(&app, &admin, user_id, &token).await, snapshot, "refusals change nothing");
    let refunded = refund(json!({"amount": 10, "order_no": "C-1"})).await.expect(StatusCode::OK);
    assert_eq!(refunded["transaction"]["amount"], 10);
    assert_eq!(refund(json!({"amount": 10, "order_no": "C-1"})).await.expect(StatusCode::OK)["replayed"], true);
    refund(json!({"amount": 3, "order_no": "C-1"})).await.expect_error(StatusCode::CONFLICT, "conflict");

    // Without an order number a refund is bounded by the total consumed (now 4.5).
    let snapshot = assert_ledger_consistent(&app, &admin, user_id, &token).await;
    assert_eq!(snapshot.0["total_consumed"], 4.5);
    refund(json!({"amount": "4.500001"})).await.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    assert_eq!(assert_ledger_consistent(&app, &admin, user_id, &token).await, snapshot);
    refund(json!({"amount": "4.5"})).await.expect(StatusCode::OK);
    refund(json!({"amount": "0.000001"})).await.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");

    let (balance, rows) = assert_ledger_consistent(&app, &admin, user_id, &token).await;
    assert_eq!((&balance["token_balance"], &balance["total_consumed"], rows.len()), (&json!(50), &json!(0), 5));
}

async fn refusals_change_nothing(app: TestApp) {
    let admin = app.admin_token().await;
    let (user_id, token) = app.user("alice").await;
    app.recharge(&admin, user_id, "10").await;
    let snapshot = assert_ledger_consistent(&app, &admin, user_id, &token).await;

    let message = app
        .post(&op_path(user_id, "consume"), &admin, json!({"amount": "10.000001"}))
        .await
        .expect_error(StatusCode::PAYMENT_REQUIRED, "insufficient_balance");
    assert!(message.contains("insufficient"), "{message}");
    app.post(&op_path(user_id, "adjust"), &admin, json!({"amount": "-10.000001"}))
        .await
        .expect_error(StatusCode::PAYMENT_REQUIRED, "insufficient_balance");
    for (op, amount) in [("recharge", "0"), ("recharge", "-1"), ("consume", "0"), ("refund", "-1"), ("adjust", "0")] {
        app.post(&op_path(user_id, op), &admin, json!({ "amount": amount }))
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }

    // Amounts that are not exact decimals of at most six places, sent as raw JSON.
    for amount in
        ["1.0000001", "\"1.0000001\"", "\"abc\"", "1e400", "1e9", "\"1e3\"", "true", "null", "[1]", "{}", "\"\"", "NaN"]
    {
        let body = format!(r#"{{"amount": {amount}}}"#);
        for op in ["recharge", "consume", "refund", "adjust"] {
            let reply = app
                .call_raw(Method::POST, &op_path(user_id, op), Some(&admin), Some("application/json"), body.clone())
                .await;
            reply.expect_client_error();
        }
    }
    // Whitespace around an amount is as malformed as any stray character.
    for amount in [" 5", "5 ", " 5 ", "\t5"] {
        for op in ["recharge", "consume", "refund", "adjust"] {
            let message = app
                .post(&op_path(user_id, op), &admin, json!({ "amount": amount }))
                .await
                .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
            assert!(message.contains("not a plain decimal"), "{op} {amount:?}: {message}");
        }
    }
    for body in [
        json!({}),
        json!({"amount": 1, "order_no": "has space"}),
        json!({"amount": 1, "order_no": ""}),
        json!({"amount": 1, "order_no": "x".repeat(65)}),
        json!({"amount": 1, "description": "x".repeat(501)}),
        json!({"amount": 1, "user_id": user_id}),
    ] {
        app.post(&op_path(user_id, "recharge"), &admin, body)
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }
    assert_eq!(assert_ledger_consistent(&app, &admin, user_id, &token).await, snapshot);
}

async fn check_and_discount(app: TestApp) {
    let admin = app.admin_token().await;
    let (user_id, token) = app.user("alice").await;
    app.recharge(&admin, user_id, "10").await;

    let enough = app.post("/api/tokens/check", &token, json!({"amount": 10})).await.expect(StatusCode::OK);
    assert_eq!(enough, json!({"sufficient": true, "token_balance": 10, "available": 10, "amount": 10}));
    let short = app.post("/api/tokens/check", &token, json!({"amount": "10.000001"})).await.expect(StatusCode::OK);
    assert_eq!(short["sufficient"], false);
    for bad in [json!({"amount": -1}), json!({"amount": "abc"}), json!({}), json!({"amount": 1, "x": 1})] {
        app.post("/api/tokens/check", &token, bad)
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }

    let discount = op_path(user_id, "discount");
    for rate in [json!(0), json!(1.5), json!("abc"), json!(-0.5), json!(null)] {
        app.post(&discount, &admin, json!({ "discount_rate": rate }))
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }
    assert_eq!(app.get("/api/auth/me", &token).await.expect(StatusCode::OK)["discount_rate"], 1);
    let updated = app.post(&discount, &admin, json!({"discount_rate": 0.8})).await.expect(StatusCode::OK);
    assert_eq!((&updated["id"], &updated["discount_rate"]), (&json!(user_id), &json!(0.8)));
    assert_eq!(app.get("/api/auth/me", &token).await.expect(StatusCode::OK)["discount_rate"], 0.8);
    assert_eq!(app.get("/api/tokens/balance", &token).await.expect(StatusCode::OK)["discount_rate"], 0.8);

    // An unknown user is a 404 on every admin credit route.
    let missing = 999_999;
    app.get(&format!("/api/tokens/admin/user/{missing}/balance"), &admin)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    for op in ["recharge", "consume", "adjust"] {
        app.post(&op_path(missing, op), &admin, json!({"amount": 1}))
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
    }
    app.post(&op_path(missing, "discount"), &admin, json!({"discount_rate": 0.5}))
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}

async fn held_credit_shows_as_reserved_and_is_not_available(app: TestApp) {
    let admin = app.admin_token().await;
    let (user_id, token) = app.user("alice").await;
    app.recharge(&admin, user_id, "10").await;
    let key = app.post("/api/keys", &token, json!({})).await.expect(StatusCode::CREATED);
    let credits = |text: &str| Money::parse(text).expect("amount");
    // (token_balance, reserved, available), as the user and the administrator see them.
    let funds = |view: &Value| (money(&view["token_balance"]), money(&view["reserved"]), money(&view["available"]));
    let (view, _) = assert_ledger_consistent(&app, &admin, user_id, &token).await;
    assert_eq!(funds(&view), (credits("10"), credits("0"), credits("10")));

    // A request in flight holds 7.5: the balance stays, the hold shows, the rest is available.
    let hold = NewReservation {
        user_id,
        key_id: key["id"].as_i64().expect("key id"),
        request_id: "req-in-flight".into(),
        hold: HoldRequest { amount: credits("7.5"), tokens: 100 },
    };
    let id = app.state.store.reserve(&hold).await.expect("reserve");
    let (view, rows) = assert_ledger_consistent(&app, &admin, user_id, &token).await;
    assert_eq!(funds(&view), (credits("10"), credits("7.5"), credits("2.5")));
    assert_eq!(rows.len(), 1, "a hold is not a transaction");
    let check = app.post("/api/tokens/check", &token, json!({"amount": 3})).await.expect(StatusCode::OK);
    assert_eq!(check, json!({"sufficient": false, "token_balance": 10, "available": 2.5, "amount": 3}));
    let check = app.post("/api/tokens/check", &token, json!({"amount": 2.5})).await.expect(StatusCode::OK);
    assert_eq!(check["sufficient"], true);

    // Released, the hold is gone and all of the balance is available again.
    app.state.store.release(id).await.expect("release");
    let (view, rows) = assert_ledger_consistent(&app, &admin, user_id, &token).await;
    assert_eq!(funds(&view), (credits("10"), credits("0"), credits("10")));
    assert_eq!(rows.len(), 1);
    let check = app.post("/api/tokens/check", &token, json!({"amount": 3})).await.expect(StatusCode::OK);
    assert_eq!(check["sufficient"], true);
}

async fn admin_credit_routes_need_an_administrator(app: TestApp) {
    let admin = app.admin_token().await;
    let (user_id, token) = app.user("alice").await;
    let (bob_id, _) = app.user("bob").await;
    for target in [user_id, bob_id] {
        app.get(&format!("/api/tokens/admin/user/{target}/balance"), &token)
            .await
            .expect_error(StatusCode::FORBIDDEN, "forbidden");
        for op in ["recharge", "consume", "refund", "adjust"] {
            let path = op_path(target, op);
            app.post(&path, &token, json!({"amount": 100})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
            app.call(Method::POST, &path, None, Some(json!({"amount": 100})))
                .await
                .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
        }
        app.post(&op_path(target, "discount"), &token, json!({"discount_rate": 0.1}))
            .await
            .expect_error(StatusCode::FORBIDDEN, "forbidden");
    }
    let (balance, rows) = assert_ledger_consistent(&app, &admin, user_id, &token).await;
    assert_eq!((&balance["token_balance"], &balance["discount_rate"], rows.len()), (&json!(0), &json!(1), 0));
}

async fn concurrent_consumes_never_overspend(app: TestApp) {
    let admin = app.admin_token().await;
    let (user_id, token) = app.user("alice").await;
    app.recharge(&admin, user_id, "50").await;

    let app = Arc::new(app);
    let replies = join_all((0..200).map(|_| {
        let (app, admin) = (app.clone(), admin.clone());
        tokio::spawn(async move { app.post(&op_path(user_id, "consume"), &admin, json!({"amount": 1})).await })
    }))
    .await;

    let mut after_each = Vec::new();
    let mut refused = 0;
    for reply in replies {
        let reply = reply.expect("task");
        match reply.status {
            StatusCode::OK => after_each.push(money(&reply.body["transaction"]["balance_after"])),
            StatusCode::PAYMENT_REQUIRED => {
                reply.expect_error(StatusCode::PAYMENT_REQUIRED, "insufficient_balance");
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    assert_eq!((after_each.len(), refused), (50, 150));
    // Each success saw a different balance: 49, 48, …, 0.
    after_each.sort();
    assert_eq!(after_each, (0..50).map(Money::from_credits).collect::<Vec<_>>());

    let (balance, _) = assert_ledger_consistent(&app, &admin, user_id, &token).await;
    assert_eq!((&balance["token_balance"], &balance["total_consumed"]), (&json!(0), &json!(50)));
    let consumes = app.get("/api/tokens/transactions?tx_type=consume", &token).await.expect(StatusCode::OK);
    assert_eq!(consumes["total"], 50);
}

async fn concurrent_replays_apply_once(app: TestApp) {
    let admin = app.admin_token().await;
    let (user_id, token) = app.user("alice").await;

    let app = Arc::new(app);
    let replies = join_all((0..20).map(|_| {
        let (app, admin) = (app.clone(), admin.clone());
        tokio::spawn(async move {
            app.post(&op_path(user_id, "recharge"), &admin, json!({"amount": "7.5", "order_no": "PAY-42"})).await
        })
    }))
    .await;

    let bodies: Vec<Value> = replies.into_iter().map(|r| r.expect("task").expect(StatusCode::OK)).collect();
    assert_eq!(bodies.iter().filter(|b| b["replayed"] == false).count(), 1, "exactly one call applies");
    assert!(bodies.iter().all(|b| b["transaction"] == bodies[0]["transaction"]), "all name the same transaction");

    let (balance, rows) = assert_ledger_consistent(&app, &admin, user_id, &token).await;
    assert_eq!((&balance["token_balance"], &balance["total_recharged"], rows.len()), (&json!(7.5), &json!(7.5), 1));
}

db_tests!(
    admin_moves_credit,
    order_numbers_make_operations_idempotent,
    refusals_change_nothing,
    check_and_discount,
    held_credit_shows_as_reserved_and_is_not_available,
    admin_credit_routes_need_an_administrator,
    concurrent_consumes_never_overspend,
    concurrent_replays_apply_once,
);
