//! Upstream channels, on SQLite and PostgreSQL: failover before the first byte with one hold and
//! one charge, the circuit breaker, model aliases both ways, model routing, `UPSTREAM_URL` as the
//! channel when none is stored, the admin API, and cost prices with the margins they give.

mod common;

use std::time::Duration;

use apihub_core::Money;
use apihub_mock_upstream::{Behaviour, MockConfig, MockUpstream, header};
use common::gateway::{Auth, Gateway, Price, UPSTREAM_KEY, money};
use http::{Method, StatusCode};
use serde_json::{Value, json};

const MODEL: &str = "gpt-4o-mini";

fn chat(stream: bool) -> Value {
    json!({"model": MODEL, "stream": stream, "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]})
}

/// A mock upstream that answers every request with `status` (or normally with `None`).
async fn mock(status: Option<StatusCode>) -> MockUpstream {
    let behaviour = Behaviour { status, ..Behaviour::default() };
    MockUpstream::start(MockConfig { api_key: Some(UPSTREAM_KEY.into()), behaviour, ..MockConfig::default() })
        .await
        .expect("mock upstream")
}

/// A mock upstream that behaves as `behaviour`.
async fn mock_with(behaviour: Behaviour) -> MockUpstream {
    MockUpstream::start(MockConfig { api_key: Some(UPSTREAM_KEY.into()), behaviour, ..MockConfig::default() })
        .await
        .expect("mock upstream")
}

/// Asserts that every consume row of the ledger is a usage row's charge, and the other way round.
async fn assert_ledger_is_the_usage_log(gw: &Gateway, user_id: i64) {
    let mut ledger: Vec<Money> =
        gw.consumes(user_id).await.iter().map(|t| Money::ZERO.checked_sub(t.amount).unwrap()).collect();
    let mut usage: Vec<Money> =
        gw.usage(user_id).await.iter().map(|row| row.charged).filter(|charge| charge.is_positive()).collect();
    ledger.sort();
    usage.sort();
    assert_eq!(ledger, usage, "the ledger's charges are the usage log's");
}

/// Creates a channel as the administrator; returns its view.
async fn channel(gw: &Gateway, fields: Value) -> Value {
    gw.app.post("/api/admin/channels", &gw.admin, fields).await.expect(StatusCode::CREATED)
}

async fn a_failing_channel_fails_over_to_the_next_with_one_hold_and_one_charge(gw: Gateway) {
    gw.price(MODEL, "1.5", "6").await;
    let alice = gw.customer("alice", "10", "1", json!({})).await;
    let broken = mock(Some(StatusCode::INTERNAL_SERVER_ERROR)).await;
    channel(&gw, json!({"name": "primary", "base_url": broken.url(), "api_key": UPSTREAM_KEY, "priority": 10})).await;
    channel(&gw, json!({"name": "backup", "base_url": gw.mock.url(), "api_key": UPSTREAM_KEY})).await;

    for (n, stream) in [false, true, false].into_iter().enumerate() {
        let got = gw.post("/v1/chat/completions", Auth::Bearer(&alice.key), &[], &chat(stream)).await;
        got.expect(StatusCode::OK);
        assert_eq!(broken.stats().total(), n as u64 + 1, "the primary was tried first");
    }
    assert_eq!(gw.consumes(alice.user_id).await.len(), 3, "one charge per client request");
    let usage = gw.usage(alice.user_id).await;
    assert_eq!(usage.len(), 3, "one usage row per client request");
    for row in &usage {
        assert_eq!((row.channel.as_deref(), row.attempts, row.status), (Some("backup"), 2, 200), "{row:?}");
    }

    // Three failures in a row opened the primary's breaker: it is skipped, not tried first.
    gw.post("/v1/chat/completions", Auth::Bearer(&alice.key), &[], &chat(false)).await.expect(StatusCode::OK);
    assert_eq!(broken.stats().total(), 3, "an open channel is tried only after the healthy ones");
    let views = gw.app.get("/api/admin/channels", &gw.admin).await.expect(StatusCode::OK);
    let primary = views.as_array().unwrap().iter().find(|c| c["name"] == "primary").unwrap();
    assert_eq!(primary["health"]["state"], "open", "{primary}");
    let metrics = gw.app.call(Method::GET, "/metrics", None, None).await.body;
    let text = metrics.as_str().unwrap_or_default();
    assert!(text.contains("apihub_channel_state{channel=\"primary\",state=\"open\"} 1"), "{text}");
    assert!(text.contains("apihub_channel_attempts_total{channel=\"backup\",result=\"answered\"} 4"), "{text}");
    gw.assert_settled(alice.user_id).await;
}

async fn when_every_channel_fails_the_last_answer_passes_through_and_costs_nothing(gw: Gateway) {
    gw.price(MODEL, "1.5", "6").await;
    let bob = gw.customer("bob", "10", "1", json!({})).await;
    let (one, two) = (mock(Some(StatusCode::TOO_MANY_REQUESTS)).await, mock(Some(StatusCode::BAD_GATEWAY)).await);
    channel(&gw, json!({"name": "one", "base_url": one.url(), "api_key": UPSTREAM_KEY, "priority": 1})).await;
    channel(&gw, json!({"name": "two", "base_url": two.url(), "api_key": UPSTREAM_KEY})).await;
    let got = gw.post("/v1/chat/completions", Auth::Bearer(&bob.key), &[], &chat(false)).await;
    got.expect(StatusCode::BAD_GATEWAY);
    assert_eq!((one.stats().total(), two.stats().total()), (1, 1));
    assert!(gw.consumes(bob.user_id).await.is_empty(), "a failed request costs nothing");
    let usage = gw.usage(bob.user_id).await;
    assert_eq!((usage[0].channel.as_deref(), usage[0].attempts), (Some("two"), 2));
    gw.assert_settled(bob.user_id).await;
}

async fn an_alias_renames_the_model_upstream_and_back_for_the_client(gw: Gateway) {
    gw.price(MODEL, "1.5", "6").await;
    let carol = gw.customer("carol", "10", "1", json!({})).await;
    let aliases = json!({MODEL: "gpt-4o-mini-2024-07-18"});
    let fields = json!({"name": "dated", "base_url": gw.mock.url(), "api_key": UPSTREAM_KEY, "aliases": aliases});
    channel(&gw, fields).await;

    let got = gw.post("/v1/chat/completions", Auth::Bearer(&carol.key), &[], &chat(false)).await;
    assert_eq!(got.expect(StatusCode::OK).json()["model"], MODEL);
    let seen = gw.last_upstream_request().json().expect("a JSON body");
    assert_eq!(seen["model"], "gpt-4o-mini-2024-07-18", "the channel's name went upstream");

    let got = gw.post("/v1/chat/completions", Auth::Bearer(&carol.key), &[], &chat(true)).await;
    got.expect(StatusCode::OK);
    let text = got.text();
    assert!(!text.contains("2024-07-18"), "the stream shows only the public name: {text}");
    assert!(text.contains(&format!("\"model\":\"{MODEL}\"")), "{text}");
    let consumes = gw.consumes(carol.user_id).await;
    assert_eq!(consumes.len(), 2, "both billed at the public model's price");
    assert!(gw.usage(carol.user_id).await.iter().all(|row| row.model == MODEL));
}

async fn channels_serve_only_their_models_and_without_channels_the_upstream_url_does(gw: Gateway) {
    gw.price(MODEL, "1.5", "6").await;
    let dave = gw.customer("dave", "10", "1", json!({})).await;
    gw.post("/v1/chat/completions", Auth::Bearer(&dave.key), &[], &chat(false)).await.expect(StatusCode::OK);
    assert_eq!(gw.usage(dave.user_id).await[0].channel.as_deref(), Some("default"));

    let other = mock(None).await;
    let fields = json!({"name": "gpt-4o only", "base_url": other.url(), "api_key": UPSTREAM_KEY, "models": ["gpt-4o"]});
    let created = channel(&gw, fields).await;
    let got = gw.post("/v1/chat/completions", Auth::Bearer(&dave.key), &[], &chat(false)).await;
    got.expect(StatusCode::BAD_GATEWAY);
    assert_eq!(other.stats().total(), 0, "no channel serves the model: nothing is sent anywhere");
    let before = gw.mock.stats().total();

    let path = format!("/api/admin/channels/{}", created["id"]);
    gw.app.call(Method::DELETE, &path, Some(&gw.admin), None).await.expect(StatusCode::NO_CONTENT);
    gw.post("/v1/chat/completions", Auth::Bearer(&dave.key), &[], &chat(false)).await.expect(StatusCode::OK);
    assert_eq!(gw.mock.stats().total(), before + 1, "with no channel left, UPSTREAM_URL serves again");
    assert_eq!(gw.consumes(dave.user_id).await.len(), 2);
}

async fn the_admin_api_hides_keys_and_checks_definitions(gw: Gateway) {
    let fields = json!({"name": "main", "base_url": gw.mock.url(), "api_key": "sk-secret-upstream-9876",
        "dialects": ["openai", "anthropic"], "weight": 5, "timeout_secs": 30});
    let created = channel(&gw, fields.clone()).await;
    assert_eq!(created["api_key_preview"], "…9876");
    assert!(!created.to_string().contains("sk-secret"), "{created}");
    assert_eq!(created["dialects"], json!(["openai", "anthropic"]));
    gw.app.post("/api/admin/channels", &gw.admin, fields).await.expect_error(StatusCode::CONFLICT, "conflict");

    for bad in [
        json!({"name": "x", "base_url": "https://tls.example"}),
        json!({"name": "x", "base_url": gw.mock.url(), "weight": 0}),
        json!({"name": "x", "base_url": gw.mock.url(), "dialects": ["cohere"]}),
        json!({"name": "", "base_url": gw.mock.url()}),
    ] {
        gw.app.post("/api/admin/channels", &gw.admin, bad).await.expect(StatusCode::UNPROCESSABLE_ENTITY);
    }
    // An update without `api_key` keeps the key.
    let path = format!("/api/admin/channels/{}", created["id"]);
    let body = json!({"name": "main", "base_url": gw.mock.url(), "priority": 3});
    let updated = gw.app.call(Method::PUT, &path, Some(&gw.admin), Some(body)).await.expect(StatusCode::OK);
    assert_eq!((updated["api_key_preview"].clone(), updated["priority"].clone()), (json!("…9876"), json!(3)));

    let (_, user) = gw.app.user("erin").await;
    gw.app.get("/api/admin/channels", &user).await.expect(StatusCode::FORBIDDEN);
}

async fn weights_share_traffic_in_proportion(gw: Gateway) {
    gw.price(MODEL, "1.5", "6").await;
    let fay = gw.customer("fay", "100", "1", json!({})).await;
    let mocks = [mock(None).await, mock(None).await, mock(None).await];
    for (upstream, weight) in mocks.iter().zip([1, 3, 6]) {
        let fields = json!({"name": format!("w{weight}"), "base_url": upstream.url(), "api_key": UPSTREAM_KEY, "weight": weight});
        channel(&gw, fields).await;
    }
    const REQUESTS: u64 = 1_000;
    for _ in 0..REQUESTS {
        gw.post("/v1/chat/completions", Auth::Bearer(&fay.key), &[], &chat(false)).await.expect(StatusCode::OK);
    }
    let counts: Vec<u64> = mocks.iter().map(|m| m.stats().total()).collect();
    assert_eq!(counts.iter().sum::<u64>(), REQUESTS, "each request went to exactly one channel");
    // Expected 100, 300 and 600; 80 is more than 5 standard deviations for each.
    for (count, expected) in counts.iter().zip([100u64, 300, 600]) {
        assert!(count.abs_diff(expected) <= 80, "{counts:?} is not in proportion to the weights 1 : 3 : 6");
    }
    // Every request is the same and costs the same: the balance went down by exactly 1,000 of
    // them (the ledger is more than a page, so it is compared through the balance).
    let usage = gw.usage(fay.user_id).await;
    let each = usage[0].charged;
    assert!(each.is_positive() && usage.iter().all(|row| row.charged == each && row.attempts == 1));
    let charged = (0..REQUESTS).fold(Money::ZERO, |sum, _| sum.checked_add(each).unwrap());
    let funds = gw.funds(fay.user_id).await;
    assert_eq!(Money::from_credits(100).checked_sub(charged), Some(funds.balance), "one charge per request");
    assert_eq!(funds.reserved, Money::ZERO);
}

async fn refused_connections_and_timeouts_fail_over_and_a_stream_cut_after_its_first_byte_does_not(gw: Gateway) {
    gw.price(MODEL, "1.5", "6").await;
    let gus = gw.customer("gus", "10", "1", json!({})).await;
    // Nothing listens on a port that was just freed.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let slow = mock_with(Behaviour { latency: Duration::from_secs(5), ..Behaviour::default() }).await;
    let refused =
        json!({"name": "refused", "base_url": format!("http://{closed}"), "api_key": UPSTREAM_KEY, "priority": 3});
    let channel_ids = [
        channel(&gw, refused).await["id"].clone(),
        channel(
            &gw,
            json!({"name": "slow", "base_url": slow.url(), "api_key": UPSTREAM_KEY, "priority": 2, "timeout_secs": 1}),
        )
        .await["id"]
            .clone(),
    ];
    channel(&gw, json!({"name": "good", "base_url": gw.mock.url(), "api_key": UPSTREAM_KEY, "priority": 1})).await;

    let started = std::time::Instant::now();
    let got = gw.post("/v1/chat/completions", Auth::Bearer(&gus.key), &[], &chat(false)).await;
    got.expect(StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(4), "the slow channel was given up after its 1 s timeout");
    assert_eq!(slow.stats().total(), 1);
    let usage = gw.usage(gus.user_id).await;
    assert_eq!((usage[0].channel.as_deref(), usage[0].attempts), (Some("good"), 3));

    // Only `good` is left; a stream that breaks after its first bytes is not retried elsewhere:
    // the client keeps what it received and is billed for it.
    for id in channel_ids {
        gw.app.call(Method::DELETE, &format!("/api/admin/channels/{id}"), Some(&gw.admin), None).await;
    }
    let other = mock(None).await;
    channel(&gw, json!({"name": "other", "base_url": other.url(), "api_key": UPSTREAM_KEY})).await;
    let mut body = chat(true);
    body["max_tokens"] = json!(20);
    body["stream_options"] = json!({"include_usage": true});
    let (before_good, before_other) = (gw.mock.stats().total(), other.stats().total());
    let got = gw.post("/v1/chat/completions", Auth::Bearer(&gus.key), &[(header::RESET_AFTER, "4")], &body).await;
    got.expect(StatusCode::OK);
    assert!(got.error.is_some(), "the client sees the stream break");
    let tried = (gw.mock.stats().total() - before_good) + (other.stats().total() - before_other);
    assert_eq!(tried, 1, "no failover after the first byte");
    gw.eventually_settled(gus.user_id).await;
    let consumes = gw.consumes(gus.user_id).await;
    assert_eq!(consumes.len(), 2, "the cut stream is billed for what it carried");
    assert_ledger_is_the_usage_log(&gw, gus.user_id).await;
}

async fn probes_open_a_dead_channel_before_any_client_meets_it(gw: Gateway) {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    channel(&gw, json!({"name": "dead", "base_url": format!("http://{closed}"), "api_key": UPSTREAM_KEY})).await;
    channel(&gw, json!({"name": "alive", "base_url": gw.mock.url(), "api_key": UPSTREAM_KEY})).await;
    for _ in 0..3 {
        gw.app.state.channels.probe().await;
    }
    let views = gw.app.get("/api/admin/channels", &gw.admin).await.expect(StatusCode::OK);
    let health = |name: &str| views.as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()["health"].clone();
    assert_eq!((health("dead")["state"].clone(), health("dead")["failed"].clone()), (json!("open"), json!(3)));
    assert_eq!((health("alive")["state"].clone(), health("alive")["answered"].clone()), (json!("closed"), json!(3)));
    assert_eq!(gw.mock.stats().requests("/v1/models"), 3, "the probe is the free model list");
}

async fn margins_are_revenue_minus_the_cost_of_the_reported_usage_per_model_and_per_channel(gw: Gateway) {
    const OTHER: &str = "gpt-4o";
    gw.price(MODEL, "1.5", "6").await;
    gw.price(OTHER, "2.5", "10").await;
    let hal = gw.customer("hal", "100", "0.8", json!({})).await;
    // `cheap` has a cost price for MODEL and a default for anything else; `dear` one for MODEL
    // only, so what it answers for OTHER has no known cost.
    let cheap_prices =
        [(MODEL, Price { input: "0.15", output: "0.6" }), (OTHER, Price { input: "1.25", output: "3.3" })];
    let dear_price = Price { input: "1.3", output: "5.7" };
    let dear = mock(None).await;
    channel(
        &gw,
        json!({"name": "cheap", "base_url": gw.mock.url(), "api_key": UPSTREAM_KEY,
        "cost_prices": {MODEL: {"input_price": "0.15", "output_price": "0.6"}},
        "default_cost_price": {"input_price": "1.25", "output_price": "3.3"}}),
    )
    .await;
    channel(
        &gw,
        json!({"name": "dear", "base_url": dear.url(), "api_key": UPSTREAM_KEY,
        "cost_prices": {MODEL: {"input_price": "1.3", "output_price": "5.7"}}}),
    )
    .await;

    const REQUESTS: usize = 24;
    for n in 0..REQUESTS {
        let mut body = chat(n % 3 == 0);
        body["model"] = json!(if n % 2 == 0 { MODEL } else { OTHER });
        body["max_tokens"] = json!(5 + n * 7);
        body["messages"][0]["content"] = json!("Hi ".repeat(n + 1));
        gw.post("/v1/chat/completions", Auth::Bearer(&hal.key), &[], &body).await.expect(StatusCode::OK);
    }
    assert!(dear.stats().total() > 0 && dear.stats().total() < REQUESTS as u64, "both channels answered");
    gw.assert_settled(hal.user_id).await;
    assert_ledger_is_the_usage_log(&gw, hal.user_id).await;

    // Each row's cost, computed here from the usage reported and the answering channel's price.
    let usage = gw.usage(hal.user_id).await;
    assert_eq!(usage.len(), REQUESTS);
    let expected_cost = |row: &apihub_core::store::UsageRecord| {
        let price = match row.channel.as_deref() {
            Some("cheap") => cheap_prices.iter().find(|(model, _)| *model == row.model).map(|(_, price)| *price),
            Some("dear") => (row.model == MODEL).then_some(dear_price),
            other => panic!("answered by {other:?}"),
        };
        price.map(|p| p.raw(row.prompt_tokens as u64, row.completion_tokens as u64))
    };
    for row in &usage {
        assert!(row.charged.is_positive() && row.prompt_tokens > 0 && row.completion_tokens > 0, "{row:?}");
        assert_eq!(row.cost, expected_cost(row), "{row:?}");
    }

    let report = gw.app.get("/api/stats/admin/margins", &gw.admin).await.expect(StatusCode::OK);
    let sum = |rows: &mut dyn Iterator<Item = Money>| rows.fold(Money::ZERO, |a, b| a.checked_add(b).unwrap());
    let ledger = sum(&mut gw.consumes(hal.user_id).await.iter().map(|t| Money::ZERO.checked_sub(t.amount).unwrap()));
    let check = |view: &Value, rows: &[&apihub_core::store::UsageRecord]| {
        let revenue = sum(&mut rows.iter().map(|r| r.charged));
        let cost = sum(&mut rows.iter().filter_map(|r| expected_cost(r)));
        let uncosted = sum(&mut rows.iter().filter(|r| expected_cost(r).is_none()).map(|r| r.charged));
        assert_eq!(money(&view["revenue"]), revenue, "{view}");
        assert_eq!(money(&view["cost"]), cost, "{view}");
        assert_eq!(money(&view["margin"]), revenue.checked_sub(cost).unwrap(), "{view}");
        assert_eq!(money(&view["uncosted_revenue"]), uncosted, "{view}");
        assert_eq!(view["requests"], json!(rows.len()), "{view}");
    };
    let all: Vec<_> = usage.iter().collect();
    check(&report["total"], &all);
    assert_eq!(money(&report["total"]["revenue"]), ledger, "revenue is the ledger's consume total");
    for model in [MODEL, OTHER] {
        let view = report["by_model"].as_array().unwrap().iter().find(|v| v["model"] == model).unwrap();
        check(view, &usage.iter().filter(|r| r.model == model).collect::<Vec<_>>());
    }
    for name in ["cheap", "dear"] {
        let view = report["by_channel"].as_array().unwrap().iter().find(|v| v["channel"] == name).unwrap();
        check(view, &usage.iter().filter(|r| r.channel.as_deref() == Some(name)).collect::<Vec<_>>());
    }
    assert_eq!((report["by_model"].as_array().unwrap().len(), report["by_channel"].as_array().unwrap().len()), (2, 2));

    // The request log shows the cost to administrators only.
    let admin_log = gw.app.get("/api/admin/usage/requests?limit=200", &gw.admin).await.expect(StatusCode::OK);
    let costed = admin_log["items"].as_array().unwrap().iter().filter(|item| item.get("cost").is_some()).count();
    assert_eq!(costed, usage.iter().filter(|r| r.cost.is_some()).count());
    let hal_token = gw.app.login("hal", common::PASSWORD).await;
    let own_log = gw.app.get("/api/usage/requests?limit=200", &hal_token).await.expect(StatusCode::OK);
    assert_eq!(own_log["items"].as_array().unwrap().len(), REQUESTS);
    assert!(!own_log.to_string().contains("\"cost\""), "a user never sees the operator's cost: {own_log}");
    gw.app.get("/api/stats/admin/margins", &hal_token).await.expect(StatusCode::FORBIDDEN);
}

async fn bad_cost_prices_are_refused_and_change_nothing(gw: Gateway) {
    let fields = json!({"name": "priced", "base_url": gw.mock.url(),
        "cost_prices": {MODEL: {"input_price": "0.1", "output_price": "0.4", "per_request_price": "0.000002"}}});
    let created = channel(&gw, fields).await;
    assert_eq!(money(&created["cost_prices"][MODEL]["per_request_price"]), Money::from_micros(2));
    assert_eq!(created["default_cost_price"], Value::Null);
    let path = format!("/api/admin/channels/{}", created["id"]);
    let before = gw.app.get(&path, &gw.admin).await.expect(StatusCode::OK);

    let base = || json!({"name": "priced", "base_url": gw.mock.url()});
    let with = |field: &str, value: Value| {
        let mut body = base();
        body[field] = value;
        body
    };
    for bad in [
        with("cost_prices", json!({MODEL: {"input_price": "-0.1", "output_price": "0.4"}})),
        with("cost_prices", json!({MODEL: {"input_price": "0.1", "output_price": "0.4", "cache_read_price": "-1"}})),
        with("cost_prices", json!({"two words": {"input_price": "0.1", "output_price": "0.4"}})),
        with("cost_prices", json!({MODEL: {"input_price": "0.1"}})),
        with("cost_prices", json!({MODEL: {"input_price": "0.1", "output_price": "0.4", "discount": "1"}})),
        with("cost_prices", json!({MODEL: {"input_price": "0.0000001", "output_price": "0.4"}})),
        with("default_cost_price", json!({"input_price": "0.1", "output_price": "-0.4"})),
    ] {
        let got = gw.app.call(Method::PUT, &path, Some(&gw.admin), Some(bad.clone())).await;
        got.expect(StatusCode::UNPROCESSABLE_ENTITY);
        let mut named = bad;
        named["name"] = json!("another");
        gw.app.post("/api/admin/channels", &gw.admin, named).await.expect(StatusCode::UNPROCESSABLE_ENTITY);
    }
    assert_eq!(gw.app.get(&path, &gw.admin).await.expect(StatusCode::OK), before, "the channel is unchanged");
    let all = gw.app.get("/api/admin/channels", &gw.admin).await.expect(StatusCode::OK);
    assert_eq!(all.as_array().unwrap().len(), 1, "nothing was created");
}

db_tests!(
    fixture = crate::common::gateway::Gateway::start;
    a_failing_channel_fails_over_to_the_next_with_one_hold_and_one_charge,
    when_every_channel_fails_the_last_answer_passes_through_and_costs_nothing,
    an_alias_renames_the_model_upstream_and_back_for_the_client,
    channels_serve_only_their_models_and_without_channels_the_upstream_url_does,
    the_admin_api_hides_keys_and_checks_definitions,
    weights_share_traffic_in_proportion,
    refused_connections_and_timeouts_fail_over_and_a_stream_cut_after_its_first_byte_does_not,
    probes_open_a_dead_channel_before_any_client_meets_it,
    margins_are_revenue_minus_the_cost_of_the_reported_usage_per_model_and_per_channel,
    bad_cost_prices_are_refused_and_change_nothing,
);
