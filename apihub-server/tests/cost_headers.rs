//! The cost on every response, in front of the mock upstream, on SQLite and PostgreSQL: the
//! request id on every forwarded response, the charge (and, where the gateway knows it without a
//! database read, the balance) on non-streamed ones, each equal to the ledger; and the request log
//! listing exactly the requests made, with the ledger's charge for each.

mod common;

use apihub_core::Money;
use common::Backend;
use common::gateway::{Auth, Gateway};
use http::StatusCode;
use serde_json::{Value, json};

const MODEL: &str = "gpt-4o-mini";

fn chat(text: &str, stream: bool) -> Value {
    json!({"model": MODEL, "max_tokens": 7, "stream": stream, "messages": [{"role": "user", "content": text}]})
}

async fn cost_headers_equal_the_ledger_and_the_log_lists_every_request(gw: Gateway) {
    gw.price(MODEL, "1.234567", "9.876543").await;
    let alice = gw.customer("alice", "100", "0.85", json!({"discount_rate": "0.7"})).await;
    let token = gw.app.login("alice", common::PASSWORD).await;

    // Two non-streamed calls: each says its id and what it cost, and the charge is the ledger's.
    let mut made = Vec::new();
    for text in ["First, briefly.", "Second, a little longer than the first."] {
        let got = gw.post("/v1/chat/completions", Auth::Bearer(&alice.key), &[], &chat(text, false)).await;
        got.expect(StatusCode::OK);
        let id = got.header("x-apihub-request-id").expect("a request id").to_owned();
        let cost = Money::parse(got.header("x-apihub-cost").expect("a cost")).expect("a decimal");
        let consumes = gw.consumes(alice.user_id).await;
        let row = consumes.iter().find(|t| t.order_no.as_deref() == Some(id.as_str())).expect("its consume row");
        assert_eq!(Money::ZERO.checked_sub(cost), Some(row.amount), "the header is the consume row");
        assert!(cost.is_positive());
        match gw.backend {
            // The SQLite credit engine has the balance in memory.
            Backend::Sqlite => {
                let balance = Money::parse(got.header("x-apihub-balance").expect("a balance")).expect("a decimal");
                assert_eq!(balance, row.balance_after);
                assert_eq!(balance, gw.funds(alice.user_id).await.balance);
            }
            // A gateway holding credit leases knows its lease, not the balance: no header.
            Backend::Postgres => assert_eq!(got.header("x-apihub-balance"), None),
        }
        made.push((id, cost, 200));
    }

    // A stream says its id; its cost is known only after its headers went out.
    let got = gw.post("/v1/chat/completions", Auth::Bearer(&alice.key), &[], &chat("Stream it.", true)).await;
    got.expect(StatusCode::OK);
    let id = got.header("x-apihub-request-id").expect("a request id").to_owned();
    assert_eq!((got.header("x-apihub-cost"), got.header("x-apihub-balance")), (None, None));
    let consumes = gw.consumes(alice.user_id).await;
    let row = consumes.iter().find(|t| t.order_no.as_deref() == Some(id.as_str())).expect("its consume row");
    made.push((id, Money::ZERO.checked_sub(row.amount).expect("charge"), 200));

    // The upstream's own error passes through with the id, and costs nothing.
    let got =
        gw.post("/v1/chat/completions", Auth::Bearer(&alice.key), &[("x-mock-status", "503")], &chat("x", false)).await;
    got.expect(StatusCode::SERVICE_UNAVAILABLE);
    let id = got.header("x-apihub-request-id").expect("a request id").to_owned();
    assert_eq!(got.header("x-apihub-cost"), None);
    made.push((id, Money::ZERO, 503));
    // A model without a price is refused before anything is held or forwarded: not a request made.
    let refused = json!({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]});
    gw.post("/v1/chat/completions", Auth::Bearer(&alice.key), &[], &refused).await.expect(StatusCode::NOT_FOUND);

    // The log lists exactly the requests made, newest first, each with the ledger's charge.
    gw.app.state.usage_log.flush().await;
    let page = gw.app.get("/api/usage/requests?limit=200", &token).await.expect(StatusCode::OK);
    let listed: Vec<(String, Money, u64)> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            let charged: Money = serde_json::from_value(i["charged"].clone()).expect("money");
            (i["request_id"].as_str().expect("id").to_owned(), charged, i["status"].as_u64().expect("status"))
        })
        .collect();
    made.reverse();
    assert_eq!(listed, made);
    let first = &page["items"][3];
    assert_eq!(
        (&first["key_id"], &first["model"], &first["stream"]),
        (&json!(alice.key_id), &json!(MODEL), &json!(false))
    );
    assert_eq!((&first["user_discount"], &first["key_discount"]), (&json!(0.85), &json!(0.7)));
    assert_eq!(page["items"][1]["stream"], true);
}

db_tests!(fixture = crate::common::gateway::Gateway::start; cost_headers_equal_the_ledger_and_the_log_lists_every_request);
