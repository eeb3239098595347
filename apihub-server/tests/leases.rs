//! Credit leases under faults, with two `apihub` processes on one PostgreSQL database: a gateway
//! killed with credit leased, a gateway whose clock is hours ahead (libfaketime), and a key's
//! limits sold exactly across both.
//!
//! Needs `APIHUB_TEST_POSTGRES_URL` (and, for the key's limits, `APIHUB_TEST_REDIS_URL`; `.ci/run`
//! sets both, and installs Debian's faketime); without them the tests are skipped locally and fail
//! under CI.

mod common;

use std::time::{Duration, Instant};

use apihub_mock_upstream::{MockConfig, MockUpstream};
use common::process::{HttpClient, Node, Reply, api, login, send, service_url};
use http::{Method, StatusCode};
use serde_json::{Value, json};

const SECRET_KEY: &str = "lease-test-secret-0123456789abcdef0123";
const ADMIN_PASSWORD: &str = "lease-admin-password";
const UPSTREAM_KEY: &str = "sk-upstream-leases";
const MODEL: &str = "gpt-4o-mini";
/// Output tokens per request; at 1000 credits per million output tokens a request costs 0.01.
const TOKENS: u64 = 10;
/// Debian's libfaketime.
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

async fn chat(client: &HttpClient, node: &Node, key: &str) -> Reply {
    let body = json!({"model": MODEL, "max_tokens": TOKENS, "messages": [{"role": "user", "content": "hi"}]});
    let bearer = format!("Bearer {key}");
    let tokens = TOKENS.to_string();
    let headers = [("authorization", bearer.as_str()), ("x-mock-output-tokens", tokens.as_str())];
    send(client, Method::POST, &node.url("/v1/chat/completions"), &headers, Some(&body)).await
}

/// A database, a mock upstream and the environment both gateways share.
struct Cluster {
    _database: common::PgDatabase,
    _mock: MockUpstream,
    env: Vec<(&'static str, String)>,
    dir: tempfile::TempDir,
    client: HttpClient,
}

impl Cluster {
    async fn new() -> Option<Cluster> {
        let postgres = service_url("APIHUB_TEST_POSTGRES_URL")?;
        let database = common::PgDatabase::create(&postgres).await;
        let mock = MockUpstream::start(MockConfig {
            api_key: Some(UPSTREAM_KEY.into()),
            record_requests: false,
            ..MockConfig::default()
        })
        .await
        .expect("mock upstream");
        let env = vec![
            ("DATABASE_URL", database.url.clone()),
            ("SECRET_KEY", SECRET_KEY.to_owned()),
            ("ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
            ("UPSTREAM_URL", mock.url()),
            ("UPSTREAM_API_KEY", UPSTREAM_KEY.to_owned()),
            ("DB_MAX_CONNECTIONS", "8".to_owned()),
            ("UI_DIR", "no-ui".to_owned()),
        ];
        let dir = tempfile::tempdir().expect("temporary folder");
        Some(Cluster { _database: database, _mock: mock, env, dir, client: common::process::client() })
    }

    async fn node(&self, name: &'static str, extra: &[(&'static str, String)]) -> Node {
        let env: Vec<_> = self.env.iter().cloned().chain(extra.iter().cloned()).collect();
        let mut node = Node::start(name, self.dir.path(), &env);
        node.ready(&self.client).await;
        node
    }

    /// Prices the model, and registers a customer with `credits`; returns (admin token, user id,
    /// API key).
    async fn customer(&self, node: &Node, credits: &str) -> (String, i64, String) {
        let client = &self.client;
        let admin = login(client, node, "admin", ADMIN_PASSWORD).await;
        let price = json!({"input_price": "0", "output_price": "1000"});
        api(client, node, Method::PUT, &format!("/api/admin/prices/{MODEL}"), &admin, Some(price))
            .await
            .expect(StatusCode::OK);
        let body = json!({"username": "lena", "password": "a-long-password"});
        let user = send(client, Method::POST, &node.url("/api/auth/register"), &[], Some(&body)).await;
        let user_id = user.expect(StatusCode::CREATED)["id"].as_i64().expect("user id");
        let recharge = json!({"amount": credits});
        api(client, node, Method::POST, &format!("/api/tokens/admin/user/{user_id}/recharge"), &admin, Some(recharge))
            .await
            .expect(StatusCode::OK);
        let token = login(client, node, "lena", "a-long-password").await;
        let key = api(client, node, Method::POST, "/api/keys", &token, Some(json!({"name": "k"}))).await;
        (admin, user_id, key.expect(StatusCode::CREATED)["key"].as_str().expect("key").to_owned())
    }

    async fn balance(&self, node: &Node, admin: &str, user_id: i64) -> Value {
        let path = format!("/api/tokens/admin/user/{user_id}/balance");
        api(&self.client, node, Method::GET, &path, admin, None).await.expect(StatusCode::OK)
    }
}

/// Sends chat completions through `node` one after another until one is refused; how many
/// were served.
async fn serve_until_refused(client: &HttpClient, node: &Node, key: &str) -> usize {
    let mut served = 0;
    loop {
        let reply = chat(client, node, key).await;
        match reply.status {
            StatusCode::OK => served += 1,
            StatusCode::TOO_MANY_REQUESTS => return served,
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_gateways_leased_credit_is_sold_by_the_other_within_thirty_seconds() {
    let Some(cluster) = Cluster::new().await else { return };
    let mut a = cluster.node("a", &[]).await;
    let (admin, user_id, key) = cluster.customer(&a, "1").await;
    // A serves ten requests (its lease grows past what they take) and dies at once: its lease
    // is not given back.
    for _ in 0..10 {
        chat(&cluster.client, &a, &key).await.expect(StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // its settlements written
    let leased = cluster.balance(&a, &admin, user_id).await;
    a.child.kill().expect("kill -9");
    let _ = a.child.wait();
    let killed_at = Instant::now();

    // B starts after A's death, and sells what is free at once; the rest only when A's lease
    // has expired (by the database's clock) and been freed.
    let b = cluster.node("b", &[]).await;
    let mut served = serve_until_refused(&cluster.client, &b, &key).await;
    assert!(served < 90, "A's lease was not held: B served {served} at once ({leased})");
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        served += serve_until_refused(&cluster.client, &b, &key).await;
        if served == 90 {
            break;
        }
        assert!(served < 90, "B oversold: {served}");
        assert!(killed_at.elapsed() < Duration::from_secs(30), "A's lease not freed after 30 s: B served {served}");
    }
    eprintln!("the other gateway sold the killed one's leased credit {:?} after the kill", killed_at.elapsed());
    // Exactly the customer's credit was sold: 100 charges of 0.01, a zero balance, nothing held.
    let balance = cluster.balance(&b, &admin, user_id).await;
    assert_eq!(balance["token_balance"].as_f64(), Some(0.0), "{balance}");
    assert_eq!(balance["total_consumed"].as_f64(), Some(1.0), "{balance}");
    assert_eq!(balance["reserved"].as_f64(), Some(0.0), "{balance}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_whose_clock_is_hours_ahead_frees_no_other_gateways_credit() {
    let Some(cluster) = Cluster::new().await else { return };
    assert!(std::path::Path::new(FAKETIME).exists(), "Debian's faketime is not installed ({FAKETIME})");
    let a = cluster.node("a", &[]).await;
    let (admin, user_id, key) = cluster.customer(&a, "0.5").await;
    // A leases the customer's credit and keeps its lease alive: a slow request holds part of
    // it (an idle lease would be given back within two seconds, and then there is nothing to
    // steal).
    chat(&cluster.client, &a, &key).await.expect(StatusCode::OK);
    let slow = {
        let (client, url, key) = (cluster.client.clone(), a.url("/v1/chat/completions"), key.clone());
        tokio::spawn(async move {
            let body = json!({"model": MODEL, "max_tokens": TOKENS, "messages": [{"role": "user", "content": "hi"}]});
            let bearer = format!("Bearer {key}");
            let headers =
                [("authorization", bearer.as_str()), ("x-mock-output-tokens", "10"), ("x-mock-latency-ms", "9000")];
            send(&client, Method::POST, &url, &headers, Some(&body)).await.status
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let skewed = [("LD_PRELOAD", FAKETIME.to_owned()), ("FAKETIME", "+3h".to_owned())];
    let b = cluster.node("b", &skewed).await;
    // B's clock really is ahead: its log is stamped three hours from now.
    let log = b.log_text();
    let stamp = log.split_whitespace().find_map(|word| chrono::DateTime::parse_from_rfc3339(word).ok());
    let ahead = stamp.map(|stamp| stamp.timestamp() - chrono::Utc::now().timestamp());
    assert!(ahead.is_some_and(|ahead| ahead > 10_000), "B's clock is not ahead ({ahead:?}):\n{log}");

    // Both sell at once for longer than B's first sweep of expired leases (5 s): credit for 50
    // requests buys exactly 50 (the one above, and 49 more), across both.
    let started = Instant::now();
    let mut served = 1;
    while started.elapsed() < Duration::from_secs(7) {
        let calls: Vec<_> = [&a, &b, &a, &b]
            .into_iter()
            .map(|node| {
                let (client, url, key) = (cluster.client.clone(), node.url(""), key.clone());
                tokio::spawn(async move {
                    let body =
                        json!({"model": MODEL, "max_tokens": TOKENS, "messages": [{"role": "user", "content": "hi"}]});
                    let bearer = format!("Bearer {key}");
                    let headers = [("authorization", bearer.as_str()), ("x-mock-output-tokens", "10")];
                    send(&client, Method::POST, &format!("{url}/v1/chat/completions"), &headers, Some(&body))
                        .await
                        .status
                })
            })
            .collect();
        for call in calls {
            match call.await.expect("request") {
                StatusCode::OK => served += 1,
                StatusCode::TOO_MANY_REQUESTS => {}
                other => panic!("unexpected {other}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    served += usize::from(slow.await.expect("slow request") == StatusCode::OK);
    assert_eq!(served, 50, "credit for 50 requests served {served}");
    let log = b.log_text();
    assert!(!log.contains("freed expired credit leases"), "B freed live leases:\n{log}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let balance = cluster.balance(&a, &admin, user_id).await;
    assert_eq!(balance["token_balance"].as_f64(), Some(0.0), "{balance}");
    assert_eq!(balance["total_consumed"].as_f64(), Some(0.5), "{balance}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_monthly_credit_budget_across_two_gateways_admits_exactly_its_amount() {
    let Some(cluster) = Cluster::new().await else { return };
    let a = cluster.node("a", &[]).await;
    let (admin, user_id, key) = cluster.customer(&a, "10").await;
    // B starts with the model's price (it has no Redis to hear of a change).
    let b = cluster.node("b", &[]).await;
    // 0.3 a month buys 30 requests at 0.01, whichever gateway serves them.
    let budgets = json!({"budgets": [{"period": "month", "credit_limit": "0.3"}]});
    api(&cluster.client, &a, Method::PUT, &format!("/api/admin/users/{user_id}/budgets"), &admin, Some(budgets))
        .await
        .expect(StatusCode::OK);
    let mut served = 0;
    for _ in 0..4 {
        let calls: Vec<_> = (0..24)
            .map(|i| {
                let (client, node_url, key) = (cluster.client.clone(), [&a, &b][i % 2].url(""), key.clone());
                tokio::spawn(async move {
                    let body =
                        json!({"model": MODEL, "max_tokens": TOKENS, "messages": [{"role": "user", "content": "hi"}]});
                    let bearer = format!("Bearer {key}");
                    let headers = [("authorization", bearer.as_str()), ("x-mock-output-tokens", "10")];
                    send(&client, Method::POST, &format!("{node_url}/v1/chat/completions"), &headers, Some(&body)).await
                })
            })
            .collect();
        for call in calls {
            let reply = call.await.expect("request");
            match reply.status {
                StatusCode::OK => served += 1,
                StatusCode::TOO_MANY_REQUESTS => assert_eq!(reply.body["error"]["code"], "budget_exceeded"),
                other => panic!("unexpected {other}: {}", reply.body),
            }
        }
    }
    assert_eq!(served, 30, "a budget of 0.3 served {served} requests of 0.01");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let balance = cluster.balance(&b, &admin, user_id).await;
    assert_eq!(balance["total_consumed"].as_f64(), Some(0.3), "{balance}");
    let path = format!("/api/admin/users/{user_id}/budgets");
    let view = api(&cluster.client, &b, Method::GET, &path, &admin, None).await.expect(StatusCode::OK);
    assert_eq!(view["budgets"][0]["credit_used"].as_f64(), Some(0.3), "{view}");
}

/// A fixed-offset time zone (`Etc/GMT±N`) in which it is now between 22:00 and 23:00, so that a
/// clock three hours ahead is already in the next day there.
fn zone_before_midnight() -> String {
    use chrono::Timelike;
    let hour = i64::from(chrono::Utc::now().hour());
    // Local = UTC + k, with (hour + k) mod 24 = 22 and k in -12..=11.
    let k = (22 - hour).rem_euclid(24);
    let k = if k > 11 { k - 24 } else { k };
    // `Etc/GMT-2` is UTC+2: the sign is inverted.
    match k {
        0 => "Etc/GMT".to_owned(),
        k if k > 0 => format!("Etc/GMT-{k}"),
        k => format!("Etc/GMT+{}", -k),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_whose_clock_is_hours_ahead_counts_budgets_in_the_databases_window() {
    let Some(cluster) = Cluster::new().await else { return };
    assert!(std::path::Path::new(FAKETIME).exists(), "Debian's faketime is not installed ({FAKETIME})");
    let zone = ("BUDGET_TIME_ZONE", zone_before_midnight());
    let a = cluster.node("a", std::slice::from_ref(&zone)).await;
    let (admin, user_id, key) = cluster.customer(&a, "1").await;
    let path = format!("/api/admin/users/{user_id}/budgets");
    let budgets = json!({"budgets": [{"period": "day", "call_limit": 100}]});
    let set = api(&cluster.client, &a, Method::PUT, &path, &admin, Some(budgets)).await.expect(StatusCode::OK);
    // B's clock says it is already tomorrow there; the database's clock says it is today.
    let skewed = [zone.clone(), ("LD_PRELOAD", FAKETIME.to_owned()), ("FAKETIME", "+3h".to_owned())];
    let b = cluster.node("b", &skewed).await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // B's first reading of the database's clock
    chat(&cluster.client, &b, &key).await.expect(StatusCode::OK);
    chat(&cluster.client, &a, &key).await.expect(StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await; // both settlements written
    for node in [&a, &b] {
        let view = api(&cluster.client, node, Method::GET, &path, &admin, None).await.expect(StatusCode::OK);
        let day = &view["budgets"][0];
        assert_eq!(day["window_start"], set["budgets"][0]["window_start"], "{}: {view}", node.url(""));
        assert_eq!(day["calls_used"], 2, "both requests counted in today's window: {view}");
    }
}

/// Issue #12: 200 simultaneous requests split across two gateways, against a key whose credit
/// limit, token limit or remaining calls afford exactly 50 (the user's balance affords 10,000):
/// exactly 50 are served, each gateway selling from its lease of the key's limit (and asking the
/// other, through Redis, for what is left in its lease), and the key's counters agree with what
/// was billed. The mock reports as many prompt tokens as the gateway
/// holds for, so that a hold is exactly its charge in tokens as in credit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_admit_exactly_what_a_keys_credit_limit_token_limit_or_remaining_calls_afford() {
    let Some(cluster) = Cluster::new().await else { return };
    let Some(redis_url) = service_url("APIHUB_TEST_REDIS_URL") else { return };
    // With Redis, a gateway refused what the other leases asks it for it (as for a user's credit).
    let prefix = format!("apihub-leases-{}", uuid::Uuid::new_v4().simple());
    let redis = [("REDIS_URL", redis_url), ("REDIS_KEY_PREFIX", prefix)];
    let a = cluster.node("a", &redis).await;
    let (admin, user_id, _) = cluster.customer(&a, "100").await;
    let b = cluster.node("b", &redis).await;
    let client = &cluster.client;
    let body = json!({"model": MODEL, "max_tokens": TOKENS, "messages": [{"role": "user", "content": "hi"}]});
    let prompt = apihub_core::usage::estimate_tokens(body.to_string().as_bytes());
    let per_request = prompt + TOKENS;

    let limits = [
        ("quota_limit", json!({"name": "credit", "quota_limit": "0.5"})),
        ("token_limit", json!({"name": "tokens", "token_limit": 50 * per_request})),
        ("remaining_calls", json!({"name": "calls", "remaining_calls": 50})),
    ];
    for (limit, fields) in limits {
        let path = format!("/api/keys/admin/user/{user_id}");
        let key = api(client, &a, Method::POST, &path, &admin, Some(fields)).await.expect(StatusCode::CREATED);
        let (key_id, key) = (key["id"].as_i64().expect("key id"), key["key"].as_str().expect("key").to_owned());
        let calls = (0..200).map(|i| {
            let (client, url, body) = (client.clone(), [&a, &b][i % 2].url("/v1/chat/completions"), body.clone());
            let (bearer, prompt, tokens) = (format!("Bearer {key}"), prompt.to_string(), TOKENS.to_string());
            tokio::spawn(async move {
                let headers = [
                    ("authorization", bearer.as_str()),
                    ("x-mock-prompt-tokens", prompt.as_str()),
                    ("x-mock-output-tokens", tokens.as_str()),
                ];
                send(&client, Method::POST, &url, &headers, Some(&body)).await.status
            })
        });
        let mut statuses = Vec::new();
        for call in calls.collect::<Vec<_>>() {
            statuses.push(call.await.expect("request task"));
        }
        let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        let refused = statuses.iter().filter(|s| **s == StatusCode::FORBIDDEN).count();
        assert_eq!((ok, refused), (50, 150), "{limit}: {statuses:?}");

        // The 50 charges settle as their responses end, a moment after the client read them.
        let started = Instant::now();
        loop {
            let row = api(client, &b, Method::GET, &format!("/api/keys/{key_id}"), &admin, None).await;
            let row = row.expect(StatusCode::OK);
            let settled = row["calls_succeeded"].as_i64() == Some(50);
            if settled {
                assert_eq!(row["quota_used"].as_f64(), Some(0.5), "{limit}: {row}");
                assert_eq!(row["tokens_used"].as_u64(), Some(50 * per_request), "{limit}: {row}");
                if limit == "remaining_calls" {
                    assert_eq!(row["remaining_calls"].as_i64(), Some(0), "{row}");
                }
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(5), "{limit}: charges not settled: {row}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let balance = cluster.balance(&a, &admin, user_id).await;
    assert_eq!(balance["total_consumed"].as_f64(), Some(1.5), "{balance}");
}
