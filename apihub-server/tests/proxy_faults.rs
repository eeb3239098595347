//! The proxy when things go wrong, on SQLite and PostgreSQL: upstream errors, refused
//! connections, timeouts, streams reset or cut short, clients that go away. Each case ends with no
//! open reservation and a ledger that sums to the balance; what was produced is billed, what was
//! not costs nothing, and nothing costs more than its hold.

mod common;

use std::time::{Duration, Instant};

use apihub_core::Money;
use apihub_core::store::UsageSource;
use apihub_core::usage::MAX_REPORTED_TOKENS;
use apihub_mock_upstream::header;
use common::gateway::{Auth, Customer, Gateway, Price, eventually, quarter, request};
use http::StatusCode;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const MODEL: &str = "gpt-4o-mini";
const PRICE: Price = Price { input: "1.5", output: "6" };

fn chat(max_tokens: u64, stream: bool) -> Value {
    json!({
        "model": MODEL, "stream": stream, "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "Count to twenty."}],
    })
}

/// Sets the price and funds a customer with 10 credits at full price.
async fn customer(gw: &Gateway, name: &str) -> Customer {
    gw.price(MODEL, PRICE.input, PRICE.output).await;
    gw.customer(name, "10", "1", json!({})).await
}

/// An upper bound on what `body` may be charged when the upstream reports no more than the
/// request asked for: its bytes (rounded up to whole ÷4 tokens) each a token at the input price,
/// plus its whole output cap. (The gateway's own hold is smaller, bytes ÷ 4 tokens, and usage
/// above it is billed all the same.)
fn hold(price: Price, body: &Value, cap: u64) -> Money {
    price.raw(quarter(body.to_string().len()) * 4, cap)
}

/// Asserts that `who` was charged nothing at all.
async fn assert_free(gw: &Gateway, who: &Customer) {
    assert_eq!(gw.assert_settled(who.user_id).await, Money::from_credits(10));
    assert!(gw.consumes(who.user_id).await.is_empty());
    let key = gw.key_view(who.key_id).await;
    assert_eq!((&key["tokens_used"], &key["calls_succeeded"]), (&json!(0), &json!(0)), "{key}");
}

async fn upstream_errors_pass_through_and_cost_nothing(gw: Gateway) {
    let judy = customer(&gw, "judy").await;
    let claude = json!({"model": MODEL, "max_tokens": 5, "messages": []});
    for (path, body, status) in [
        ("/v1/chat/completions", chat(5, false), "500"),
        ("/v1/chat/completions", chat(5, true), "429"),
        ("/v1/messages", claude, "529"),
    ] {
        let got = gw.post(path, Auth::Bearer(&judy.key), &[(header::STATUS, status)], &body).await;
        assert_eq!(got.status.as_str(), status, "{}", got.text());
        let seen = gw.last_upstream_request();
        assert_eq!(got.body, gw.replay(&seen).await, "the upstream's own error body");
    }
    assert_free(&gw, &judy).await;
    let usage = gw.usage(judy.user_id).await;
    let statuses: Vec<_> = usage.iter().rev().map(|r| (r.status, r.charged)).collect();
    assert_eq!(statuses, [(500, Money::ZERO), (429, Money::ZERO), (529, Money::ZERO)]);
}

async fn a_refused_connection_is_a_502(gw: Gateway) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let gw = gw.reconfigure(|config| config.upstream_url = format!("http://{closed}")).await;
    let kim = customer(&gw, "kim").await;
    let got = gw.post("/v1/chat/completions", Auth::Bearer(&kim.key), &[], &chat(5, false)).await;
    got.expect(StatusCode::BAD_GATEWAY);
    assert_eq!(got.json()["error"]["code"], "upstream_unavailable");
    assert_free(&gw, &kim).await;
    assert_eq!(gw.usage(kim.user_id).await[0].status, 502);
}

/// The usage log's queue is bounded: while its rows cannot be written (here its table is away),
/// at most `USAGE_LOG_MAX_QUEUED` wait, and further requests are refused in the dialect's shape,
/// forwarded nowhere and charged nothing, until the rows are written; none is lost.
async fn a_usage_log_that_cannot_write_refuses_new_requests_once_full_and_loses_no_row(gw: Gateway) {
    let gw = gw.reconfigure(|config| config.usage_log_max_queued = 2).await;
    let lea = customer(&gw, "lea").await;
    gw.app.execute("ALTER TABLE usage_logs RENAME TO usage_logs_away").await;
    for _ in 0..2 {
        gw.post("/v1/chat/completions", Auth::Bearer(&lea.key), &[], &chat(5, false)).await.expect(StatusCode::OK);
    }
    let log = gw.app.state.usage_log.clone();
    eventually("both rows to be queued", || async { log.queued() == 2 }).await;
    let forwarded = gw.mock.stats().total();
    let balance = gw.assert_settled(lea.user_id).await;

    let refused = gw.post("/v1/chat/completions", Auth::Bearer(&lea.key), &[], &chat(5, false)).await;
    refused.expect(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.json()["error"]["code"], "service_unavailable", "{}", refused.text());
    assert_eq!(gw.mock.stats().total(), forwarded, "the refused request went nowhere");
    assert_eq!(gw.assert_settled(lea.user_id).await, balance, "and cost nothing");

    gw.app.execute("ALTER TABLE usage_logs_away RENAME TO usage_logs").await;
    eventually("the queued rows to be written", || async { log.queued() == 0 }).await;
    gw.post("/v1/chat/completions", Auth::Bearer(&lea.key), &[], &chat(5, false)).await.expect(StatusCode::OK);
    let usage = gw.usage(lea.user_id).await;
    assert_eq!(usage.len(), 3, "the two rows that waited, and the request after");
    assert_eq!(gw.consumes(lea.user_id).await.len(), 3);
}

async fn a_silent_upstream_is_a_504(gw: Gateway) {
    let gw = gw.reconfigure(|config| config.upstream_timeout_secs = 1).await;
    let leo = customer(&gw, "leo").await;
    let started = Instant::now();
    let got = gw.post("/v1/chat/completions", Auth::Bearer(&leo.key), &[(header::HANG, "1")], &chat(5, false)).await;
    got.expect(StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(got.json()["error"]["code"], "upstream_timeout");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(1) && waited < Duration::from_secs(4), "{waited:?}");
    assert_eq!(gw.mock.stats().total(), 1);
    assert_free(&gw, &leo).await;
    assert_eq!(gw.usage(leo.user_id).await[0].status, 504);
}

async fn a_stream_reset_midway_bills_what_was_produced(gw: Gateway) {
    let mia = customer(&gw, "mia").await;
    // The client asks for usage itself, so the stream passes through byte for byte and what the
    // client received is what the gateway metered. The reset comes before the usage chunk.
    let mut body = chat(20, true);
    body["stream_options"] = json!({"include_usage": true});
    let got = gw.post("/v1/chat/completions", Auth::Bearer(&mia.key), &[(header::RESET_AFTER, "4")], &body).await;
    got.expect(StatusCode::OK);
    assert!(got.error.is_some(), "the client must see the stream break");
    assert_eq!(got.events().len(), 4, "the role chunk and three words: {}", got.text());
    assert!(!got.text().contains("[DONE]"));

    // No usage was reported: the prompt is estimated from the request's bytes, the output from the
    // text the stream carried (not its SSE and JSON wrapping), and the charge is capped by the hold.
    let (input, output) = (quarter(body.to_string().len()), quarter(got.streamed_text_bytes()));
    assert!(output > 0);
    let estimate = PRICE.raw(input, output);
    let charge = estimate.min(hold(PRICE, &body, 20));
    assert!(charge.is_positive());
    assert_eq!(gw.eventually_settled(mia.user_id).await, Money::from_credits(10).checked_sub(charge).unwrap());
    let consumes = gw.consumes(mia.user_id).await;
    assert_eq!(consumes.len(), 1);
    assert_eq!(consumes[0].amount, Money::ZERO.checked_sub(charge).unwrap());
    let record = &gw.usage(mia.user_id).await[0];
    assert_eq!((record.prompt_tokens, record.completion_tokens), (input as i64, output as i64));
    assert_eq!((record.usage_source, record.raw_cost, record.charged), (UsageSource::Estimated, estimate, charge));
}

async fn dialects_that_report_usage_early_still_bill_a_cut_stream(gw: Gateway) {
    // Anthropic reports the input (and an early output count of 1) in message_start, Gemini the
    // prompt in every chunk: a stream cut after some text keeps its reported input and has its
    // output estimated (a quarter of the streamed text's bytes), not billed as if there were none.
    let price = Price { input: "6", output: "0.01" };
    let nina = gw.customer("nina", "10", "1", json!({})).await;
    let claude = json!({
        "model": "claude-sonnet-4", "stream": true, "max_tokens": 20,
        "messages": [{"role": "user", "content": "Hi"}],
    });
    let gemini =
        json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}], "generationConfig": {"maxOutputTokens": 20}});
    let cases = [
        // message_start, content_block_start and eight words.
        ("claude-sonnet-4", "/v1/messages", Auth::XApiKey(&nina.key), &claude, "messages", "10"),
        (
            "gemini-2.5-flash",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            Auth::GoogHeader(&nina.key),
            &gemini,
            "contents",
            "8",
        ),
    ];
    for (model, path, auth, body, prompt_field, after) in cases {
        gw.price(model, price.input, price.output).await;
        for knob in [header::RESET_AFTER, header::TRUNCATE_AFTER] {
            let before = gw.funds(nina.user_id).await.balance;
            let got = gw.post(path, auth, &[(knob, after)], body).await;
            got.expect(StatusCode::OK);
            assert_eq!(got.error.is_some(), knob == header::RESET_AFTER);
            let after = if knob == header::RESET_AFTER {
                gw.eventually_settled(nina.user_id).await
            } else {
                gw.assert_settled(nina.user_id).await
            };

            let (input, output) = (quarter(body[prompt_field].to_string().len()), quarter(got.streamed_text_bytes()));
            assert!(output > 0, "{path}: some text arrived");
            let charge = price.raw(input, output);
            assert!(charge < hold(price, body, 20), "{path}: the case is meant to stay under the hold");
            assert_eq!(before.checked_sub(after), Some(charge), "{path}, {knob}");
            let record = gw.usage(nina.user_id).await.remove(0);
            assert_eq!(
                (record.prompt_tokens, record.completion_tokens),
                (input as i64, output as i64),
                "{path}, {knob}"
            );
            assert_eq!((record.charged, record.usage_source), (charge, UsageSource::Estimated), "{path}, {knob}");
        }
    }
}

async fn a_truncated_stream_is_estimated_within_its_hold(gw: Gateway) {
    let olga = customer(&gw, "olga").await;
    let body = chat(20, true);
    let mut balance = Money::from_credits(10);
    // Priced by input only, the estimate (a quarter of the request's bytes) is below the hold (all
    // of them); priced by output only, the estimate (a quarter of the streamed text's bytes) is
    // below the hold too (20 tokens). Were the SSE and JSON wrapping counted, 3 events would be
    // estimated far above the hold.
    for (price, below_hold) in [(Price { input: "3", output: "0" }, true), (Price { input: "0", output: "7" }, true)] {
        gw.price(MODEL, price.input, price.output).await;
        let got =
            gw.post("/v1/chat/completions", Auth::Bearer(&olga.key), &[(header::TRUNCATE_AFTER, "3")], &body).await;
        got.expect(StatusCode::OK);
        assert!(got.error.is_none());
        assert_eq!(got.events().len(), 3, "{}", got.text());
        assert!(quarter(got.body.len()) > 20, "the wrapping alone would exceed the hold");
        let estimate = price.raw(quarter(body.to_string().len()), quarter(got.streamed_text_bytes()));
        let cap = hold(price, &body, 20);
        assert_eq!(estimate < cap, below_hold, "estimate {estimate}, hold {cap}");
        let charge = estimate.min(cap);
        balance = balance.checked_sub(charge).unwrap();
        assert_eq!(gw.assert_settled(olga.user_id).await, balance);
        let record = &gw.usage(olga.user_id).await[0];
        assert_eq!(
            (record.usage_source, record.raw_cost, record.charged, record.status),
            (UsageSource::Estimated, estimate, charge, 200)
        );
    }
    assert_eq!(gw.consumes(olga.user_id).await.len(), 2);
}

async fn a_stream_without_output_costs_nothing(gw: Gateway) {
    let pat = customer(&gw, "pat").await;
    let claude = json!({"model": MODEL, "stream": true, "max_tokens": 5, "messages": []});
    // Nothing at all; the role chunk alone; Anthropic's message_start and content_block_start.
    for (path, body, after) in [
        ("/v1/chat/completions", chat(5, true), "0"),
        ("/v1/chat/completions", chat(5, true), "1"),
        ("/v1/messages", claude.clone(), "2"),
    ] {
        for knob in [header::TRUNCATE_AFTER, header::RESET_AFTER] {
            let got = gw.post(path, Auth::Bearer(&pat.key), &[(knob, after)], &body).await;
            got.expect(StatusCode::OK);
            if knob == header::RESET_AFTER {
                assert!(got.error.is_some());
                gw.eventually_settled(pat.user_id).await;
            }
            assert_free(&gw, &pat).await;
        }
    }
    assert_eq!(gw.mock.stats().total(), 6);
}

async fn a_client_that_goes_away_frees_its_hold(gw: Gateway) {
    let quinn = customer(&gw, "quinn").await;
    let delay = [(header::CHUNK_DELAY_MS, "200")];
    let body = chat(50, true);
    let open = |request: http::Request<axum::body::Body>| {
        let app = gw.app.app.clone();
        async move {
            let response = app.oneshot(request).await.expect("infallible");
            assert_eq!(response.status(), StatusCode::OK);
            response.into_body()
        }
    };

    // Gone after the role chunk: nothing was produced, the hold is released.
    let mut stream = open(request("/v1/chat/completions", Auth::Bearer(&quinn.key), &delay, &body)).await;
    let first = stream.frame().await.expect("a frame").expect("data").into_data().expect("data");
    assert!(String::from_utf8_lossy(&first).contains("assistant"));
    assert!(gw.funds(quinn.user_id).await.reserved.is_positive(), "the hold is open while the stream runs");
    drop(stream);
    eventually("the hold to be released", || async { gw.funds(quinn.user_id).await.reserved == Money::ZERO }).await;
    assert_free(&gw, &quinn).await;

    // Gone after some text: what was produced is settled, within the hold.
    let mut stream = open(request("/v1/chat/completions", Auth::Bearer(&quinn.key), &delay, &body)).await;
    let mut received = Vec::new();
    while !String::from_utf8_lossy(&received).contains("ipsum") {
        received.extend(stream.frame().await.expect("a frame").expect("data").into_data().expect("data"));
    }
    drop(stream);
    eventually("the hold to be settled", || async { gw.funds(quinn.user_id).await.reserved == Money::ZERO }).await;
    let balance = gw.assert_settled(quinn.user_id).await;
    let charged = Money::from_credits(10).checked_sub(balance).unwrap();
    assert!(charged.is_positive() && charged <= hold(PRICE, &body, 50), "charged {charged}");
    let record = &gw.usage(quinn.user_id).await[0];
    assert_eq!((record.charged, record.status, record.usage_source), (charged, 499, UsageSource::Estimated));
    let key = gw.key_view(quinn.key_id).await;
    assert_eq!((&key["calls_total"], &key["calls_succeeded"]), (&json!(1), &json!(0)), "an aborted call is no success");
}

async fn an_absurd_usage_report_is_billed_clamped_and_every_stats_endpoint_still_answers(gw: Gateway) {
    // 0.001 credit per million input tokens: the clamped prompt (10⁹ tokens) costs 1 credit.
    gw.price(MODEL, "0.001", "0").await;
    let (user_id, token) = gw.app.user("rex").await;
    gw.app.recharge(&gw.admin, user_id, "10").await;
    let (key_id, key) = gw.key(user_id, json!({})).await;
    let absurd = i64::MAX.to_string();
    let max = i64::try_from(MAX_REPORTED_TOKENS).unwrap();
    for stream in [false, true] {
        let mut body = chat(5, stream);
        body["stream_options"] = json!({"include_usage": true});
        if !stream {
            body.as_object_mut().unwrap().remove("stream_options");
        }
        let got = gw.post("/v1/chat/completions", Auth::Bearer(&key), &[(header::PROMPT_TOKENS, &absurd)], &body).await;
        got.expect(StatusCode::OK);
        assert!(got.text().contains(&absurd), "the client gets the upstream's report as it was: {}", got.text());
    }
    // Both calls billed, clamped: no hold left open, a ledger that adds up.
    assert_eq!(gw.assert_settled(user_id).await, Money::from_credits(8));
    assert_eq!(gw.consumes(user_id).await.len(), 2);
    let usage = gw.usage(user_id).await;
    assert_eq!(usage.len(), 2);
    for record in &usage {
        assert_eq!((record.status, record.prompt_tokens, record.completion_tokens), (200, max, 5));
        assert_eq!((record.charged, record.usage_source), (Money::from_credits(1), UsageSource::Reported));
    }
    let view = gw.key_view(key_id).await;
    assert_eq!(view["tokens_used"], json!(2 * (max + 5)), "{view}");

    // A row written before usage was clamped (or any absurd one): the sums saturate, never fail.
    let mut old = usage[0].clone();
    old.request_id = "from-before-the-clamp".into();
    (old.prompt_tokens, old.completion_tokens) = (i64::MAX, i64::MAX);
    (old.raw_cost, old.charged) = (Money::from_micros(i64::MAX), Money::from_micros(i64::MAX));
    gw.app.state.store.record_usage(&[old]).await.expect("record");
    for (path, caller) in [
        ("/api/stats/me".to_owned(), &token),
        (format!("/api/stats/keys/{key_id}"), &token),
        ("/api/stats/admin/overview".to_owned(), &gw.admin),
        (format!("/api/stats/admin/users/{user_id}"), &gw.admin),
    ] {
        let stats = gw.app.get(&path, caller).await.expect(StatusCode::OK);
        assert!(stats.to_string().contains(&absurd), "{path}: the token sums saturate at i64::MAX: {stats}");
    }
}

/// An upstream whose chat stream carries one `data:` line of `line_mib` MiB between a first event
/// and `[DONE]`, sent a MiB at a time; returns its URL and the exact body it sends.
async fn upstream_with_a_huge_line(line_mib: usize) -> (String, Vec<u8>) {
    let head = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: ".as_slice();
    let tail = b"\n\ndata: [DONE]\n\n".as_slice();
    let piece = axum::body::Bytes::from(vec![b'x'; 1 << 20]);
    let chunks: Vec<axum::body::Bytes> = std::iter::once(axum::body::Bytes::from_static(head))
        .chain(std::iter::repeat_n(piece, line_mib))
        .chain(std::iter::once(axum::body::Bytes::from_static(tail)))
        .collect();
    let body: Vec<u8> = chunks.concat();
    let answer = move || {
        let chunks = chunks.clone();
        async move {
            let stream = futures::stream::iter(chunks.into_iter().map(Ok::<_, std::convert::Infallible>));
            ([(http::header::CONTENT_TYPE, "text/event-stream")], axum::body::Body::from_stream(stream))
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let upstream = axum::Router::new().route("/v1/chat/completions", axum::routing::post(answer));
    tokio::spawn(async move { axum::serve(listener, upstream).await });
    (url, body)
}

async fn a_huge_sse_line_reaches_the_client_unchanged_and_is_billed_as_estimated(gw: Gateway) {
    let line_mib = 24;
    let (url, sent) = upstream_with_a_huge_line(line_mib).await;
    let gw = gw.reconfigure(|config| config.upstream_url = url).await;
    let sam = customer(&gw, "sam").await;
    // Cheap output: 6 M tokens estimated cost well under the 10 credits.
    gw.price(MODEL, PRICE.input, "0.1").await;
    // The client does not ask for usage: the gateway would strip the usage chunk it asks for, and
    // must stop doing so (and holding events) past the line limit.
    let got = gw.post("/v1/chat/completions", Auth::Bearer(&sam.key), &[], &chat(5, true)).await;
    got.expect(StatusCode::OK);
    assert!(got.error.is_none());
    assert!(got.body == sent, "every byte as the upstream sent it ({} of {} bytes)", got.body.len(), sent.len());

    // No usage reported, most of the stream unparsed: billed by estimate, its skipped bytes as output.
    let balance = gw.assert_settled(sam.user_id).await;
    let record = &gw.usage(sam.user_id).await[0];
    assert_eq!((record.status, record.usage_source), (200, UsageSource::Estimated));
    assert!(record.completion_tokens >= (line_mib << 20) as i64 / 4, "{record:?}");
    assert_eq!(Money::from_credits(10).checked_sub(record.charged), Some(balance));
    assert!(record.charged.is_positive());
}

db_tests!(
    fixture = crate::common::gateway::Gateway::start;
    upstream_errors_pass_through_and_cost_nothing,
    a_refused_connection_is_a_502,
    a_usage_log_that_cannot_write_refuses_new_requests_once_full_and_loses_no_row,
    a_silent_upstream_is_a_504,
    a_stream_reset_midway_bills_what_was_produced,
    dialects_that_report_usage_early_still_bill_a_cut_stream,
    a_truncated_stream_is_estimated_within_its_hold,
    a_stream_without_output_costs_nothing,
    a_client_that_goes_away_frees_its_hold,
    an_absurd_usage_report_is_billed_clamped_and_every_stats_endpoint_still_answers,
    a_huge_sse_line_reaches_the_client_unchanged_and_is_billed_as_estimated,
);
