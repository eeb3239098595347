//! Two `apihub` processes on one PostgreSQL database and one Redis, with real HTTP traffic split
//! between them: credit, rate limits and key changes must hold across nodes exactly as on one.
//!
//! Needs `APIHUB_TEST_POSTGRES_URL` and `APIHUB_TEST_REDIS_URL` (`.ci/run` sets both); without
//! them the test is skipped locally and fails under CI. Each run gets a fresh database and a
//! Redis key prefix of its own, so runs never see each other's counters or messages.

mod common;

use std::time::{Duration, Instant};

use apihub_mock_upstream::{MockConfig, MockUpstream};
use common::process::{HttpClient, Node, Reply, api, login, send, service_url};
use http::{Method, StatusCode};
use serde_json::{Value, json};

const SECRET_KEY: &str = "scale-out-test-secret-0123456789abcdef";
const ADMIN_PASSWORD: &str = "scale-out-admin-password";
const UPSTREAM_KEY: &str = "sk-upstream-scale-out";
const MODEL: &str = "gpt-4o-mini";
/// Output tokens per request; at 1000 credits per million output tokens a request costs 0.01.
const TOKENS: u64 = 10;

/// Deletes this run's Redis keys when dropped.
struct RedisKeys {
    url: String,
    prefix: String,
}

impl Drop for RedisKeys {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else { return };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(1)) else { return };
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{}:*", self.prefix)).query(&mut conn).unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&keys).query(&mut conn);
        }
    }
}

/// One chat completion through the node at `base` that holds and costs exactly `TOKENS` output
/// tokens.
async fn chat(client: &HttpClient, base: &str, key: &str) -> Reply {
    let body = json!({"model": MODEL, "max_tokens": TOKENS, "messages": [{"role": "user", "content": "hi"}]});
    let bearer = format!("Bearer {key}");
    let tokens = TOKENS.to_string();
    let headers = [("authorization", bearer.as_str()), ("x-mock-output-tokens", tokens.as_str())];
    send(client, Method::POST, &format!("{base}/v1/chat/completions"), &headers, Some(&body)).await
}

/// `n` chat completions sent at once, alternating between the nodes; their statuses.
async fn burst(client: &HttpClient, nodes: [&Node; 2], key: &str, n: usize) -> Vec<StatusCode> {
    let calls = (0..n).map(|i| {
        let (client, base, key) = (client.clone(), nodes[i % 2].base.clone(), key.to_owned());
        tokio::spawn(async move { chat(&client, &base, &key).await.status })
    });
    let mut statuses = Vec::with_capacity(n);
    for call in calls.collect::<Vec<_>>() {
        statuses.push(call.await.expect("request task"));
    }
    statuses
}

/// Sums one metric's samples whose line starts with `series` across the nodes' `/metrics`.
async fn metric(client: &HttpClient, nodes: [&Node; 2], series: &str) -> f64 {
    let mut total = 0.0;
    for node in nodes {
        let reply = send(client, Method::GET, &node.url("/metrics"), &[], None).await;
        let text = reply.expect(StatusCode::OK);
        let text = text.as_str().expect("text");
        total += text
            .lines()
            .filter(|line| line.starts_with(series))
            .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum::<f64>();
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_share_credit_limits_and_key_changes() {
    let (Some(postgres), Some(redis_url)) =
        (service_url("APIHUB_TEST_POSTGRES_URL"), service_url("APIHUB_TEST_REDIS_URL"))
    else {
        return;
    };
    let database = common::PgDatabase::create(&postgres).await;
    let redis_keys =
        RedisKeys { url: redis_url.clone(), prefix: format!("apihub-scale-{}", uuid::Uuid::new_v4().simple()) };
    let mock = MockUpstream::start(MockConfig {
        api_key: Some(UPSTREAM_KEY.into()),
        record_requests: false,
        ..MockConfig::default()
    })
    .await
    .expect("mock upstream");
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("DATABASE_URL", database.url.clone()),
        ("REDIS_URL", redis_url.clone()),
        ("REDIS_KEY_PREFIX", redis_keys.prefix.clone()),
        ("SECRET_KEY", SECRET_KEY.to_owned()),
        ("ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
        ("UPSTREAM_URL", mock.url()),
        ("UPSTREAM_API_KEY", UPSTREAM_KEY.to_owned()),
        ("DB_MAX_CONNECTIONS", "8".to_owned()),
        ("UI_DIR", "no-ui".to_owned()),
    ];
    let client = common::process::client();
    // Both start at once on the empty database: one migrates and creates the administrator, and
    // the other must wait for it and then start normally.
    let (mut a, mut b) = (Node::start("a", dir.path(), &env), Node::start("b", dir.path(), &env));
    a.ready(&client).await;
    b.ready(&client).await;
    let nodes = [&a, &b];

    // Set up everything through node A. Only output is priced, so a request's hold (its output
    // cap, `max_tokens`) is exactly its charge, and a balance of 50 charges admits exactly 50.
    let admin = login(&client, &a, "admin", ADMIN_PASSWORD).await;
    let price = json!({"input_price": "0", "output_price": "1000"});
    api(&client, &a, Method::PUT, &format!("/api/admin/prices/{MODEL}"), &admin, Some(price))
        .await
        .expect(StatusCode::OK);
    let mut customers = Vec::new();
    for (name, credits, rate_limit) in
        [("alice", "0.5", Value::Null), ("bob", "100", json!(30)), ("carol", "100", Value::Null)]
    {
        let body = json!({"username": name, "password": "a-long-password"});
        let user = send(&client, Method::POST, &a.url("/api/auth/register"), &[], Some(&body)).await;
        let user_id = user.expect(StatusCode::CREATED)["id"].as_i64().unwrap();
        let recharge = json!({"amount": credits});
        api(&client, &a, Method::POST, &format!("/api/tokens/admin/user/{user_id}/recharge"), &admin, Some(recharge))
            .await
            .expect(StatusCode::OK);
        let token = login(&client, &a, name, "a-long-password").await;
        let key = json!({"name": "k", "rate_limit": rate_limit});
        let key = api(&client, &a, Method::POST, "/api/keys", &token, Some(key)).await.expect(StatusCode::CREATED);
        customers.push((user_id, token, key["id"].as_i64().unwrap(), key["key"].as_str().unwrap().to_owned()));
    }
    let [(alice_id, _, _, alice_key), (_, _, _, bob_key), (_, carol_token, carol_key_id, carol_key)] =
        <[_; 3]>::try_from(customers).unwrap();

    // Node B learns about the new price at once (published through Redis), not at its next reload.
    let started = Instant::now();
    while chat(&client, &b.base, &carol_key).await.status != StatusCode::OK {
        assert!(started.elapsed() < Duration::from_secs(2), "node B did not learn the price");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A metered route created through node A is served by node B at once (published through
    // Redis), not at its next reload: here, the mock's chat endpoint as a per-call route.
    let route = json!({
        "name": "chat-per-call", "path": "/api/chat", "price_per_call": "0",
        "upstream_url": format!("{}/v1/chat/completions", mock.url()), "upstream_key": UPSTREAM_KEY,
    });
    api(&client, &a, Method::POST, "/api/admin/routes", &admin, Some(route)).await.expect(StatusCode::CREATED);
    let (bearer, body) =
        (format!("Bearer {carol_key}"), json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}));
    let started = Instant::now();
    while send(&client, Method::POST, &b.url("/api/chat"), &[("authorization", &bearer)], Some(&body)).await.status
        != StatusCode::OK
    {
        assert!(started.elapsed() < Duration::from_secs(2), "node B did not learn the route");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // (a) 200 simultaneous requests against a key that can afford exactly 50.
    let statuses = burst(&client, nodes, &alice_key, 200).await;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    // OpenAI answers an exhausted balance with 429 `insufficient_quota`, and so does the gateway.
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((ok, refused), (50, 150), "statuses: {statuses:?}");
    // A charge settles as its response ends, a moment after the client has read it: the 50 holds
    // become 50 charges of 0.01, and nothing else.
    let started = Instant::now();
    loop {
        let path = format!("/api/tokens/admin/user/{alice_id}/balance");
        let balance = api(&client, &b, Method::GET, &path, &admin, None).await.expect(StatusCode::OK);
        if balance["total_consumed"].as_f64() == Some(0.5) {
            assert_eq!(balance["token_balance"].as_f64(), Some(0.0), "{balance}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "charges not settled: {balance}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // (b) A per-minute limit of 30 admits exactly 30 across both nodes. The window is the UTC
    // minute: start with at least 20 s of it left so that the burst cannot straddle two.
    let into_minute = chrono::Utc::now().timestamp_millis().rem_euclid(60_000) as u64;
    if into_minute > 40_000 {
        tokio::time::sleep(Duration::from_millis(60_000 - into_minute + 200)).await;
    }
    let statuses = burst(&client, nodes, &bob_key, 80).await;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let limited = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((ok, limited), (30, 50), "statuses: {statuses:?}");
    let refusal = chat(&client, &a.base, &bob_key).await;
    assert_eq!(refusal.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refusal.headers.contains_key("retry-after"));
    assert_eq!(refusal.headers["x-ratelimit-remaining-requests"], "0");

    // (c) A key disabled through node A is refused by node B within a second. Node B looks the key
    // up afresh just before (its cached entry is older than the cache's 1 s TTL), so it would
    // serve the disabled key for about a second more on its TTL alone: refusing it within half a
    // second shows the invalidation arrived through Redis.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    chat(&client, &b.base, &carol_key).await.expect(StatusCode::OK);
    api(&client, &a, Method::POST, &format!("/api/keys/{carol_key_id}/deactivate"), &carol_token, None)
        .await
        .expect(StatusCode::OK);
    let disabled_at = Instant::now();
    loop {
        let reply = chat(&client, &b.base, &carol_key).await;
        if reply.status == StatusCode::FORBIDDEN {
            break;
        }
        assert_eq!(reply.status, StatusCode::OK, "body: {}", reply.body);
        assert!(disabled_at.elapsed() < Duration::from_millis(500), "node B still serves the disabled key");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("node B refused the disabled key after {:?}", disabled_at.elapsed());

    // Both nodes report on /metrics: every forwarded request of (a) and (b) by model, once.
    let forwarded = format!("apihub_upstream_requests_total{{model=\"{MODEL}\",status=\"2xx\"}}");
    let started = Instant::now();
    loop {
        // 50 + 30, plus carol's requests (at least 2).
        let total = metric(&client, nodes, &forwarded).await;
        if total >= 82.0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "forwarded requests counted: {total}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metric(&client, nodes, "apihub_requests_total{status=\"4xx\"}").await >= 200.0);
    assert_eq!(metric(&client, nodes, "apihub_reservations_open").await, 0.0);
    assert!(metric(&client, nodes, "apihub_db_pool_max_connections").await >= 16.0);
    drop((a, b, mock, redis_keys, database));
}
