//! Online recharge through EPay, against the fake provider in `common/epay.rs` over real HTTP:
//! orders and their signed payment requests, notifications that credit exactly once (sent ten
//! times in a row and ten times at once), notifications that credit nothing, the return page's
//! order status, and administrators completing a stuck order by hand; on SQLite and PostgreSQL.

mod common;

use std::sync::Arc;

use common::TestApp;
use common::epay::{Delivery, EpayGateway, MERCHANT_KEY};
use futures::future::join_all;
use http::{Method, StatusCode};
use serde_json::{Value, json};

const ORDERS: &str = "/api/tokens/recharge/orders";
const ADMIN_ORDERS: &str = "/api/admin/recharge-orders";

async fn balance(app: &TestApp, token: &str) -> Value {
    app.get("/api/tokens/balance", token).await.expect(StatusCode::OK)["token_balance"].clone()
}

async fn order(app: &TestApp, token: &str, out_trade_no: &str) -> Value {
    app.get(&format!("{ORDERS}/{out_trade_no}"), token).await.expect(StatusCode::OK)
}

async fn transactions(app: &TestApp, token: &str) -> Value {
    app.get("/api/tokens/transactions", token).await.expect(StatusCode::OK)
}

async fn order_pay_and_credit(gw: EpayGateway) {
    let app = &gw.app;
    let (user_id, token) = app.user("alice").await;

    let options = app.get("/api/tokens/recharge/options", &token).await.expect(StatusCode::OK);
    assert_eq!(options["enabled"], true);
    assert_eq!(options["payment_types"], json!(["alipay", "wxpay", "qqpay"]));
    assert_eq!(options["currency"], "CNY", "the dashboard shows prices in it");
    assert_eq!((&options["min_amount"], &options["max_amount"]), (&json!(1), &json!(500)));

    let created = gw.order(&token, "10", "alipay").await;
    let view = &created["order"];
    let out_trade_no = view["out_trade_no"].as_str().expect("out_trade_no").to_owned();
    assert_eq!(
        (&view["status"], &view["amount"], &view["money"], &view["user_id"]),
        (&json!("pending"), &json!(10), &json!("10.00"), &json!(user_id))
    );
    let fields = &created["payment"]["fields"];
    assert_eq!(created["payment"]["url"], format!("{}/submit.php", gw.epay.url));
    assert_eq!(
        (&fields["pid"], &fields["type"], &fields["money"]),
        (&json!("1001"), &json!("alipay"), &json!("10.00"))
    );
    assert_eq!(fields["notify_url"], format!("{}/api/tokens/recharge/callback", gw.base));
    assert_eq!(fields["return_url"], format!("{}/recharge/result", gw.base));
    assert_eq!(fields["sign_type"], "MD5");

    // The browser posts the form to the provider, which checks our signature.
    let form = serde_json::from_value(fields.clone()).expect("string fields");
    let (status, page) = gw.epay.post_form(created["payment"]["url"].as_str().unwrap(), &form).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Pay 10.00"), "{page}");
    assert_eq!(order(app, &token, &out_trade_no).await["status"], "pending");
    assert_eq!(balance(app, &token).await, 0);

    // The provider notifies; the order is paid and credited, with its order number.
    let answer = gw.epay.deliver(&out_trade_no, &gw.epay.notification(&out_trade_no), Delivery::Get).await;
    assert_eq!(answer, "success");
    assert_eq!(balance(app, &token).await, 10);
    let paid = order(app, &token, &out_trade_no).await;
    assert_eq!(paid["status"], "paid");
    assert!(paid["trade_no"].as_str().is_some_and(|t| t.starts_with("2026112500")));
    assert!(paid["paid_at"].is_string());
    let txs = transactions(app, &token).await;
    assert_eq!(txs["total"], 1);
    let tx = &txs["items"][0];
    assert_eq!(
        (&tx["tx_type"], &tx["amount"], &tx["order_no"]),
        (&json!("recharge"), &json!(10), &json!(out_trade_no))
    );
    assert!(tx["description"].as_str().is_some_and(|d| d.contains("alipay")), "{tx}");

    let mine = app.get(ORDERS, &token).await.expect(StatusCode::OK);
    assert_eq!((&mine["total"], &mine["items"][0]["out_trade_no"]), (&json!(1), &json!(out_trade_no)));
    // Nobody else sees it.
    let (_, bob) = app.user("bob").await;
    app.get(&format!("{ORDERS}/{out_trade_no}"), &bob).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(app.get(ORDERS, &bob).await.expect(StatusCode::OK)["total"], 0);
    app.get(&format!("{ORDERS}/not-an-order"), &token).await.expect_error(StatusCode::NOT_FOUND, "not_found");
}

async fn a_notification_credits_exactly_once(gw: EpayGateway) {
    let app = &gw.app;
    let (_, token) = app.user("alice").await;

    // Ten times in a row, alternating GET and POST.
    let first = gw.order_and_open(&token, "25.5").await;
    let notification = gw.epay.notification(&first);
    for i in 0..10 {
        let how = if i % 2 == 0 { Delivery::Get } else { Delivery::Post };
        assert_eq!(gw.epay.deliver(&first, &notification, how).await, "success", "delivery {i}");
    }
    assert_eq!(balance(app, &token).await, 25.5);

    // Ten times at once.
    let second = gw.order_and_open(&token, "7").await;
    let notification = Arc::new(gw.epay.notification(&second));
    let gw = Arc::new(gw);
    let answers = join_all((0..10).map(|i| {
        let (gw, notification, second) = (gw.clone(), notification.clone(), second.clone());
        tokio::spawn(async move {
            let how = if i % 2 == 0 { Delivery::Post } else { Delivery::Get };
            gw.epay.deliver(&second, &notification, how).await
        })
    }))
    .await;
    for answer in answers {
        assert_eq!(answer.expect("task"), "success");
    }
    let app = &gw.app;
    assert_eq!(balance(app, &token).await, 32.5);
    let txs = transactions(app, &token).await;
    assert_eq!(txs["total"], 2, "one recharge per order: {txs}");
    let user = app.get("/api/auth/me", &token).await.expect(StatusCode::OK);
    assert_eq!(user["total_recharged"], 32.5);
    let metrics = app.call(Method::GET, "/metrics", None, None).await.expect(StatusCode::OK);
    let metrics = metrics.as_str().expect("text");
    assert!(metrics.contains("apihub_payment_notifications_total{result=\"paid\"} 2\n"), "{metrics}");
    assert!(metrics.contains("apihub_payment_notifications_total{result=\"repeated\"} 18\n"), "{metrics}");
}

async fn forged_and_wrong_notifications_credit_nothing(gw: EpayGateway) {
    let app = &gw.app;
    let (_, token) = app.user("alice").await;
    let no = gw.order_and_open(&token, "10").await;
    let epay = &gw.epay;

    let mut tampered = epay.notification(&no);
    for (k, v) in &mut tampered {
        if k == "money" {
            *v = "500.00".into();
        }
    }
    let wrong_key = epay.notification_with(&no, "not-the-merchant-key", |_| {});
    let wrong_amount = epay.notification_with(&no, MERCHANT_KEY, |p| set(p, "money", "1.00"));
    let sub_cent = epay.notification_with(&no, MERCHANT_KEY, |p| set(p, "money", "10.001"));
    let wrong_pid = epay.notification_with(&no, MERCHANT_KEY, |p| set(p, "pid", "2002"));
    let unpaid = epay.notification_with(&no, MERCHANT_KEY, |p| set(p, "trade_status", "WAIT_BUYER_PAY"));
    let unknown_order =
        epay.notification_with(&no, MERCHANT_KEY, |p| set(p, "out_trade_no", "epay20261125000000zzzzzzzzzz"));
    let mut doubled = epay.notification(&no);
    doubled.push(("money".into(), "500.00".into()));
    let unsigned: Vec<_> = epay.notification(&no).into_iter().filter(|(k, _)| k != "sign").collect();
    let garbage = vec![("%%%".to_owned(), "\u{0}".to_owned())];
    for (what, params) in [
        ("tampered money", &tampered),
        ("wrong key", &wrong_key),
        ("wrong amount", &wrong_amount),
        ("sub-cent amount", &sub_cent),
        ("another merchant", &wrong_pid),
        ("unpaid trade", &unpaid),
        ("unknown order", &unknown_order),
        ("doubled field", &doubled),
        ("no signature", &unsigned),
        ("garbage", &garbage),
    ] {
        for how in [Delivery::Get, Delivery::Post] {
            assert_eq!(epay.deliver(&no, params, how).await, "fail", "{what} ({how:?})");
        }
    }
    assert_eq!(balance(app, &token).await, 0);
    assert_eq!(order(app, &token, &no).await["status"], "pending");
    assert_eq!(transactions(app, &token).await["total"], 0);
    // Every refusal is counted for the operator's alerts (and logged with its reason).
    let metrics = app.call(Method::GET, "/metrics", None, None).await.expect(StatusCode::OK);
    let metrics = metrics.as_str().expect("text");
    assert!(metrics.contains("apihub_payment_notifications_total{result=\"refused\"} 20\n"), "{metrics}");
    assert!(metrics.contains("apihub_payment_notifications_total{result=\"paid\"} 0\n"), "{metrics}");

    // The genuine notification still works afterwards.
    assert_eq!(epay.deliver(&no, &epay.notification(&no), Delivery::Post).await, "success");
    assert_eq!(balance(app, &token).await, 10);
}

fn set(params: &mut [(String, String)], key: &str, value: &str) {
    for (k, v) in params.iter_mut() {
        if k == key {
            *v = value.into();
        }
    }
}

async fn administrators_list_and_complete_stuck_orders(gw: EpayGateway) {
    let app = &gw.app;
    let admin = app.admin_token().await;
    let (user_id, token) = app.user("alice").await;
    let stuck = gw.order_and_open(&token, "12").await;
    let paid = gw.order_and_open(&token, "3").await;
    assert_eq!(gw.epay.deliver(&paid, &gw.epay.notification(&paid), Delivery::Get).await, "success");

    let pending = app.get(&format!("{ADMIN_ORDERS}?status=pending"), &admin).await.expect(StatusCode::OK);
    assert_eq!((&pending["total"], &pending["items"][0]["out_trade_no"]), (&json!(1), &json!(stuck)));
    let by_user = app.get(&format!("{ADMIN_ORDERS}?user_id={user_id}"), &admin).await.expect(StatusCode::OK);
    assert_eq!(by_user["total"], 2);
    let by_no = app.get(&format!("{ADMIN_ORDERS}?out_trade_no={paid}"), &admin).await.expect(StatusCode::OK);
    assert_eq!((&by_no["total"], &by_no["items"][0]["status"]), (&json!(1), &json!("paid")));
    app.get(&format!("{ADMIN_ORDERS}?status=lost"), &admin)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    app.get(ADMIN_ORDERS, &token).await.expect_error(StatusCode::FORBIDDEN, "forbidden");

    let complete = format!("{ADMIN_ORDERS}/{stuck}/complete");
    app.post(&complete, &token, json!({"note": "me"})).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
    app.post(&complete, &admin, json!({"note": "  "}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    let done =
        app.post(&complete, &admin, json!({"note": "paid, seen in the provider console"})).await.expect(StatusCode::OK);
    assert_eq!(
        (&done["order"]["status"], &done["order"]["note"]),
        (&json!("paid"), &json!("paid, seen in the provider console"))
    );
    assert!(done["order"]["completed_by"].is_i64());
    assert_eq!(done["balance"]["token_balance"], 15);
    let description = done["transaction"]["description"].as_str().unwrap_or_default();
    assert!(description.contains("by hand") && description.contains("provider console"), "{description}");
    assert_eq!(done["transaction"]["order_no"], stuck);

    // Once paid, by hand or by notification, nothing credits it again.
    app.post(&complete, &admin, json!({"note": "again"})).await.expect_error(StatusCode::CONFLICT, "conflict");
    app.post(&format!("{ADMIN_ORDERS}/{paid}/complete"), &admin, json!({"note": "x"}))
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    assert_eq!(gw.epay.deliver(&stuck, &gw.epay.notification(&stuck), Delivery::Post).await, "success");
    app.post(&format!("{ADMIN_ORDERS}/epay20261125000000zzzzzzzzzz/complete"), &admin, json!({"note": "x"}))
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(balance(app, &token).await, 15);
    assert_eq!(transactions(app, &token).await["total"], 2);
}

async fn bad_orders_are_refused(gw: EpayGateway) {
    let app = &gw.app;
    let (_, token) = app.user("alice").await;
    let post = |body: Value| app.post("/api/tokens/recharge", &token, body);
    for (body, fragment) in [
        (json!({"amount": "0.5", "payment_type": "alipay"}), "between 1 and 500"),
        (json!({"amount": "501", "payment_type": "alipay"}), "between 1 and 500"),
        (json!({"amount": "5", "payment_type": "paypal"}), "alipay, wxpay, qqpay"),
        (json!({"amount": "-5", "payment_type": "alipay"}), "between"),
    ] {
        let message = post(body.clone()).await.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
        assert!(message.contains(fragment), "{body}: {message}");
    }
    post(json!({"amount": "5", "payment_type": "alipay", "user_id": 1}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    post(json!({"amount": "5"})).await.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    app.call(Method::POST, "/api/tokens/recharge", None, Some(json!({"amount": 5, "payment_type": "alipay"})))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(app.get(ORDERS, &token).await.expect(StatusCode::OK)["total"], 0);

    // Ten unpaid orders within the hour are the most one user may open.
    for _ in 0..10 {
        gw.order(&token, "5", "wxpay").await;
    }
    post(json!({"amount": "5", "payment_type": "wxpay"}))
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "too_many_requests");
    assert_eq!(app.get(ORDERS, &token).await.expect(StatusCode::OK)["total"], 10);

    // Online orders' numbers are reserved: an administrator's manual recharge cannot take one.
    let admin = app.admin_token().await;
    let (user_id, _) = app.user("bob").await;
    for order_no in ["epay20261125000000abcdefghij", "redeem-0123"] {
        app.post(
            &format!("/api/tokens/admin/user/{user_id}/recharge"),
            &admin,
            json!({"amount": 1, "order_no": order_no}),
        )
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }
}

async fn unconfigured_gateways_say_so(app: TestApp) {
    let (_, token) = app.user("alice").await;
    let options = app.get("/api/tokens/recharge/options", &token).await.expect(StatusCode::OK);
    assert_eq!((&options["enabled"], &options["payment_types"]), (&json!(false), &json!([])));
    let message = app
        .post("/api/tokens/recharge", &token, json!({"amount": 10, "payment_type": "alipay"}))
        .await
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, "not_configured");
    assert!(message.contains("EPAY_URL"), "{message}");
    let answer = app.call(Method::GET, "/api/tokens/recharge/callback?out_trade_no=x&sign=y", None, None).await;
    assert_eq!((answer.status, answer.body), (StatusCode::OK, json!("fail")));
}

mod with_epay {
    use super::*;

    db_tests!(fixture = crate::common::epay::EpayGateway::on;
        order_pay_and_credit,
        a_notification_credits_exactly_once,
        forged_and_wrong_notifications_credit_nothing,
        administrators_list_and_complete_stuck_orders,
        bad_orders_are_refused,
    );
}

db_tests!(unconfigured_gateways_say_so);
