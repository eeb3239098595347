//! Redemption codes: generation, listing and disabling by administrators, redemption by users,
//! refusals that change nothing, and one code redeemed from 20 concurrent requests credits once,
//! on SQLite and PostgreSQL.

mod common;

use std::sync::Arc;

use common::TestApp;
use futures::future::join_all;
use http::StatusCode;
use serde_json::{Value, json};

const CODES: &str = "/api/admin/redemption-codes";
const REDEEM: &str = "/api/tokens/redeem";

async fn generate(app: &TestApp, admin: &str, body: Value) -> Value {
    app.post(CODES, admin, body).await.expect(StatusCode::CREATED)
}

async fn balance(app: &TestApp, token: &str) -> Value {
    app.get("/api/tokens/balance", token).await.expect(StatusCode::OK)["token_balance"].clone()
}

async fn generate_list_redeem_disable(app: TestApp) {
    let admin = app.admin_token().await;
    let (user_id, token) = app.user("alice").await;

    let batch = generate(&app, &admin, json!({"count": 3, "amount": "12.5", "name": "launch"})).await;
    let codes = batch["codes"].as_array().expect("codes").clone();
    assert_eq!(codes.len(), 3);
    let batch_id = batch["batch_id"].as_str().expect("batch id").to_owned();
    for code in &codes {
        let text = code["code"].as_str().expect("code");
        assert!(text.len() >= 24, "at least 96 bits: {text}");
        assert_eq!(
            (&code["status"], &code["amount"], &code["batch_id"]),
            (&json!("active"), &json!(12.5), &json!(batch_id))
        );
        assert!(code["redeemed_by"].is_null());
    }
    let first = codes[0]["code"].as_str().unwrap();

    let redeemed = app.post(REDEEM, &token, json!({"code": first})).await.expect(StatusCode::OK);
    let tx = &redeemed["transaction"];
    assert_eq!((&tx["tx_type"], &tx["amount"], &tx["user_id"]), (&json!("recharge"), &json!(12.5), &json!(user_id)));
    assert_eq!(tx["order_no"], format!("redeem-{first}"));
    assert_eq!(redeemed["balance"]["token_balance"], 12.5);
    assert_eq!(redeemed["balance"]["total_recharged"], 12.5);
    let txs = app.get("/api/tokens/transactions", &token).await.expect(StatusCode::OK);
    assert_eq!(txs["total"], 1);

    // Listing and filters.
    let all = app.get(&format!("{CODES}?batch_id={batch_id}"), &admin).await.expect(StatusCode::OK);
    assert_eq!(all["total"], 3);
    let used = app.get(&format!("{CODES}?redeemed=true"), &admin).await.expect(StatusCode::OK);
    assert_eq!(used["total"], 1);
    assert_eq!(used["items"][0]["redeemed_by"], user_id);
    assert!(used["items"][0]["redeemed_at"].is_string());
    let unused = app.get(&format!("{CODES}?redeemed=false&page_size=1"), &admin).await.expect(StatusCode::OK);
    assert_eq!((&unused["total"], unused["items"].as_array().unwrap().len()), (&json!(2), 1));

    // Disable one; it no longer redeems and shows up under the filter.
    let id = codes[1]["id"].as_i64().unwrap();
    let disabled = app.post(&format!("{CODES}/{id}/disable"), &admin, json!({})).await.expect(StatusCode::OK);
    assert_eq!(disabled["status"], "disabled");
    let listed = app.get(&format!("{CODES}?status=disabled"), &admin).await.expect(StatusCode::OK);
    assert_eq!((&listed["total"], &listed["items"][0]["id"]), (&json!(1), &json!(id)));
    app.get(&format!("{CODES}?status=bogus"), &admin)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    app.post(&format!("{CODES}/999999/disable"), &admin, json!({})).await.expect(StatusCode::NOT_FOUND);

    // The third code still works, for another user.
    let (_, bob) = app.user("bob").await;
    let third = codes[2]["code"].as_str().unwrap();
    app.post(REDEEM, &bob, json!({"code": third})).await.expect(StatusCode::OK);
    assert_eq!(balance(&app, &bob).await, 12.5);
}

async fn refusals_change_nothing(app: TestApp) {
    let admin = app.admin_token().await;
    let (_, token) = app.user("alice").await;
    let (_, bob) = app.user("bob").await;

    let batch = generate(&app, &admin, json!({"count": 2, "amount": 5, "name": "x"})).await;
    let (used, disabled) = (batch["codes"][0]["code"].as_str().unwrap(), &batch["codes"][1]);
    app.post(REDEEM, &bob, json!({"code": used})).await.expect(StatusCode::OK);
    app.post(&format!("{CODES}/{}/disable", disabled["id"]), &admin, json!({})).await.expect(StatusCode::OK);
    // An expiry in the past is refused at generation; one that passes afterwards stops the code.
    let past = json!({"count": 1, "amount": 5, "name": "old", "expires_at": "2020-01-01T00:00:00Z"});
    app.post(CODES, &admin, past).await.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    let expired = generate(&app, &admin, json!({"count": 1, "amount": 5, "name": "old", "expires_at": soon})).await;
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;

    app.post(REDEEM, &token, json!({"code": "0123456789abcdef0123456789abcdef"})).await.expect(StatusCode::NOT_FOUND);
    app.post(REDEEM, &token, json!({"code": "x'; DROP TABLE users; --"})).await.expect(StatusCode::NOT_FOUND);
    app.post(REDEEM, &token, json!({"code": used})).await.expect(StatusCode::CONFLICT);
    app.post(REDEEM, &token, json!({"code": disabled["code"]})).await.expect(StatusCode::CONFLICT);
    app.post(REDEEM, &token, json!({"code": expired["codes"][0]["code"]})).await.expect(StatusCode::CONFLICT);
    assert_eq!(balance(&app, &token).await, 0);
    let txs = app.get("/api/tokens/transactions", &token).await.expect(StatusCode::OK);
    assert_eq!(txs["total"], 0);

    // Bad batches and non-administrators.
    for body in [
        json!({"count": 0, "amount": 1, "name": "x"}),
        json!({"count": 1001, "amount": 1, "name": "x"}),
        json!({"count": 1, "amount": 0, "name": "x"}),
        json!({"count": 1, "amount": -1, "name": "x"}),
        json!({"count": 1, "amount": 1, "name": " "}),
    ] {
        app.post(CODES, &admin, body).await.expect(StatusCode::UNPROCESSABLE_ENTITY);
    }
    app.post(CODES, &token, json!({"count": 1, "amount": 1, "name": "x"})).await.expect(StatusCode::FORBIDDEN);
    app.get(CODES, &token).await.expect(StatusCode::FORBIDDEN);
}

async fn concurrent_redemptions_credit_once(app: TestApp) {
    let admin = app.admin_token().await;
    let batch = generate(&app, &admin, json!({"count": 1, "amount": 7, "name": "race"})).await;
    let code = batch["codes"][0]["code"].as_str().unwrap().to_owned();
    let mut tokens = Vec::new();
    for i in 0..4 {
        tokens.push(app.user(&format!("user{i}")).await.1);
    }

    let app = Arc::new(app);
    let replies = join_all((0..20).map(|i| {
        let (app, token, code) = (app.clone(), tokens[i % tokens.len()].clone(), code.clone());
        tokio::spawn(async move { app.post(REDEEM, &token, json!({"code": code})).await })
    }))
    .await;
    let mut ok = 0;
    for reply in replies {
        let reply = reply.expect("task");
        match reply.status {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    assert_eq!(ok, 1);
    let mut credited = Vec::new();
    for token in &tokens {
        credited.push(balance(&app, token).await);
        let txs = app.get("/api/tokens/transactions", token).await.expect(StatusCode::OK);
        assert!(txs["total"] == 0 || txs["total"] == 1);
    }
    assert_eq!(credited.iter().filter(|b| **b == json!(7)).count(), 1, "{credited:?}");
    assert_eq!(credited.iter().filter(|b| **b == json!(0)).count(), 3, "{credited:?}");
}

db_tests!(generate_list_redeem_disable, refusals_change_nothing, concurrent_redemptions_credit_once);
