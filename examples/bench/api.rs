//! The gateway's account API as the benchmark uses it: provisioning an administrator's world (a
//! funded user, a key with limits too high to trigger, a price, filler keys) and, afterwards,
//! checking that the ledger charged exactly what the usage log says.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use apihub_core::Money;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::procs::ADMIN_PASSWORD;

/// The model every benchmark request names.
pub const MODEL: &str = "gpt-4o-mini";

/// A small JSON client for one gateway.
pub struct Api {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Self {
        Api { client: Client::builder(TokioExecutor::new()).build_http(), base: format!("http://{addr}") }
    }

    /// Sends a request and returns the JSON answer; any status but 2xx is an error.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = Request::builder().method(method.clone()).uri(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(json) => {
                request = request.header("content-type", "application/json");
                Bytes::from(json.to_string())
            }
            None => Bytes::new(),
        };
        let response = self.client.request(request.body(Full::new(body))?).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("{method} {path}: {status}: {}", String::from_utf8_lossy(&bytes));
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).with_context(|| format!("{method} {path}: the answer is not JSON"))
    }

    /// A counter without labels from the gateway's `/metrics`, or `None` when it is not there.
    pub async fn counter(&self, name: &str) -> Option<u64> {
        let request = Request::get(format!("{}/metrics", self.base)).body(Full::new(Bytes::new())).ok()?;
        let response = self.client.request(request).await.ok()?;
        let text = response.into_body().collect().await.ok()?.to_bytes();
        let prefix = format!("{name} ");
        String::from_utf8_lossy(&text)
            .lines()
            .find_map(|line| line.strip_prefix(&prefix).and_then(|value| value.trim().parse().ok()))
    }

    async fn typed<T: for<'de> Deserialize<'de>>(&self, path: &str, token: &str) -> anyhow::Result<T> {
        let value = self.call(Method::GET, path, Some(token), None).await?;
        serde_json::from_value(value).with_context(|| format!("GET {path}: unexpected shape"))
    }

    async fn login(&self, username: &str, password: &str) -> anyhow::Result<String> {
        let body = json!({ "username": username, "password": password });
        let answer = self.call(Method::POST, "/api/auth/login", None, Some(body)).await?;
        answer["access_token"].as_str().map(str::to_owned).context("login answered no access_token")
    }

    /// Registers `username` and returns their user id.
    async fn register(&self, username: &str, password: &str) -> anyhow::Result<i64> {
        let body = json!({ "username": username, "password": password });
        let answer = self.call(Method::POST, "/api/auth/register", None, Some(body)).await?;
        answer["id"].as_i64().context("register answered no id")
    }
}

/// Who the benchmark is on one gateway.
pub struct Tenant {
    admin: String,
    user_id: i64,
    user_token: String,
    key_id: i64,
    /// The whole key the load sends.
    pub key: String,
}

/// The credit the benchmark user starts with.
const FUNDING: &str = "1000000";
/// Most keys one batch call may create.
const BATCH: u32 = 1000;

/// Prices the model, creates and funds user `bench`, gives them a key with every limit set (and
/// set too high to trigger), and creates `filler_keys` more keys for user `filler` in batches.
pub async fn provision(api: &Api, filler_keys: u32) -> anyhow::Result<Tenant> {
    let admin = api.login("admin", ADMIN_PASSWORD).await?;
    let price = json!({ "input_price": "0.15", "output_price": "0.6" });
    api.call(Method::PUT, &format!("/api/admin/prices/{MODEL}"), Some(&admin), Some(price)).await?;
    let limits = json!({
        "name": "bench",
        "rate_limit": 1_000_000_000,
        "rate_limit_day": 1_000_000_000,
        "token_limit": 1_000_000_000_000_i64,
        "quota_limit": FUNDING,
        "allowed_models": [MODEL],
    });
    let (user_id, key) = funded_user_with_key(api, &admin, "bench", limits).await?;
    let key_id = key["id"].as_i64().context("the new key has no id")?;
    let key = key["key"].as_str().context("the new key is not shown")?.to_owned();
    if filler_keys > 0 {
        let filler = api.register("filler", PASSWORD).await?;
        let mut left = filler_keys;
        while left > 0 {
            let count = left.min(BATCH);
            let batch = json!({ "count": count, "name_prefix": "filler", "rate_limit": 60 });
            let path = format!("/api/keys/admin/user/{filler}/batch");
            api.call(Method::POST, &path, Some(&admin), Some(batch)).await?;
            left -= count;
        }
    }
    let user_token = api.login("bench", PASSWORD).await?;
    Ok(Tenant { admin, user_id, user_token, key_id, key })
}

/// Every benchmark user's password.
const PASSWORD: &str = "bench-user-password";

/// Registers `username`, funds them with [`FUNDING`] and gives them a key with `limits`; returns
/// their user id and the new key as the API shows it (once).
async fn funded_user_with_key(api: &Api, admin: &str, username: &str, limits: Value) -> anyhow::Result<(i64, Value)> {
    let user_id = api.register(username, PASSWORD).await?;
    let funding = json!({ "amount": FUNDING, "order_no": format!("{username}-funding") });
    api.call(Method::POST, &format!("/api/tokens/admin/user/{user_id}/recharge"), Some(admin), Some(funding)).await?;
    let key = api.call(Method::POST, &format!("/api/keys/admin/user/{user_id}"), Some(admin), Some(limits)).await?;
    Ok((user_id, key))
}

impl Tenant {
    /// Registers `count` more users (`bench-1`, `bench-2`, …), each funded and given a key like
    /// the tenant's; returns their keys.
    pub async fn more_users(&self, api: &Api, count: usize) -> anyhow::Result<Vec<String>> {
        let mut keys = Vec::with_capacity(count);
        for n in 1..=count {
            let limits = json!({
                "name": "bench",
                "rate_limit": 1_000_000_000,
                "rate_limit_day": 1_000_000_000,
                "allowed_models": [MODEL],
            });
            let (_, key) = funded_user_with_key(api, &self.admin, &format!("bench-{n}"), limits).await?;
            keys.push(key["key"].as_str().context("the new key is not shown")?.to_owned());
        }
        Ok(keys)
    }
}

#[derive(Deserialize)]
struct Summary {
    requests: u64,
    succeeded: u64,
    charged: Money,
}

#[derive(Deserialize)]
struct Report {
    summary: Summary,
}

#[derive(Deserialize)]
struct Balance {
    token_balance: Money,
    total_consumed: Money,
}

#[derive(Deserialize)]
struct Tx {
    tx_type: String,
    amount: Money,
}

#[derive(Deserialize)]
struct TxPage {
    items: Vec<Tx>,
    total: u64,
}

#[derive(Deserialize)]
struct KeyInfo {
    quota_used: Money,
    calls_succeeded: i64,
}

/// What the ledger check found.
#[derive(Debug, Serialize)]
pub struct LedgerCheck {
    /// Usage-log rows (one per forwarded request) and their charges, from the stats API.
    pub usage_requests: u64,
    pub usage_succeeded: u64,
    pub usage_charged: Money,
    /// `consume` rows of the ledger and the credit they took.
    pub consume_rows: u64,
    pub consumed: Money,
    /// Every ledger row added up, and the balance.
    pub ledger_sum: Money,
    pub balance: Money,
    /// The key's own running totals.
    pub key_quota_used: Money,
    pub key_calls_succeeded: i64,
    /// What did not add up; empty when the check passed.
    pub problems: Vec<String>,
}

/// Waits until the usage log holds `sent` rows, then checks that consume transactions add up to
/// the usage log's charges, that the ledger adds up to the balance, and that the key's totals agree.
pub async fn check_ledger(api: &Api, tenant: &Tenant, sent: u64, succeeded: u64) -> anyhow::Result<LedgerCheck> {
    let stats_path = format!("/api/stats/admin/users/{}", tenant.user_id);
    // The usage log is written in batches off the request path: wait for the last batch.
    let deadline = Instant::now() + Duration::from_secs(30);
    let usage = loop {
        let report: Report = api.typed(&stats_path, &tenant.admin).await?;
        if report.summary.requests >= sent || Instant::now() > deadline {
            break report.summary;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let balance: Balance =
        api.typed(&format!("/api/tokens/admin/user/{}/balance", tenant.user_id), &tenant.admin).await?;
    let key: KeyInfo = api.typed(&format!("/api/keys/{}", tenant.key_id), &tenant.admin).await?;

    let (mut consume_rows, mut consumed, mut ledger_sum, mut seen) = (0u64, 0i64, 0i64, 0u64);
    for page in 1.. {
        let path = format!("/api/tokens/transactions?page={page}&page_size=200");
        let rows: TxPage = api.typed(&path, &tenant.user_token).await?;
        if rows.items.is_empty() {
            if seen != rows.total {
                bail!("the ledger listing ended after {seen} of {} rows", rows.total);
            }
            break;
        }
        for tx in rows.items {
            seen += 1;
            ledger_sum += tx.amount.micros();
            if tx.tx_type == "consume" {
                consume_rows += 1;
                consumed -= tx.amount.micros();
            }
        }
    }

    let mut check = LedgerCheck {
        usage_requests: usage.requests,
        usage_succeeded: usage.succeeded,
        usage_charged: usage.charged,
        consume_rows,
        consumed: Money::from_micros(consumed),
        ledger_sum: Money::from_micros(ledger_sum),
        balance: balance.token_balance,
        key_quota_used: key.quota_used,
        key_calls_succeeded: key.calls_succeeded,
        problems: Vec::new(),
    };
    let mut expect = |ok: bool, problem: String| {
        if !ok {
            check.problems.push(problem);
        }
    };
    expect(usage.requests == sent, format!("usage log has {} rows for {sent} requests sent", usage.requests));
    expect(
        usage.succeeded == succeeded,
        format!("usage log counts {} successes, the load saw {succeeded}", usage.succeeded),
    );
    expect(
        consumed == usage.charged.micros(),
        format!("consume rows total {}, usage log charged {}", check.consumed, usage.charged),
    );
    expect(
        consume_rows == usage.succeeded,
        format!("{consume_rows} consume rows for {} charged requests", usage.succeeded),
    );
    expect(
        ledger_sum == balance.token_balance.micros(),
        format!("ledger sums to {}, balance is {}", check.ledger_sum, balance.token_balance),
    );
    expect(
        balance.total_consumed == usage.charged,
        format!("total_consumed {} ≠ charged {}", balance.total_consumed, usage.charged),
    );
    expect(key.quota_used == usage.charged, format!("key quota_used {} ≠ charged {}", key.quota_used, usage.charged));
    expect(
        u64::try_from(key.calls_succeeded).ok() == Some(usage.succeeded),
        format!("key calls_succeeded {} ≠ {}", key.calls_succeeded, usage.succeeded),
    );
    Ok(check)
}

/// Where a gateway's database transactions are counted: its `/metrics` (SQLite's write
/// connection), or PostgreSQL's own statistics for the gateway's database.
pub enum DbTransactions {
    Metrics(Api),
    Postgres(String),
}

impl DbTransactions {
    /// The counter for the gateway at `addr` on `database_url`.
    pub fn of(addr: SocketAddr, database_url: &str) -> Self {
        if database_url.starts_with("postgres") {
            DbTransactions::Postgres(database_url.to_owned())
        } else {
            DbTransactions::Metrics(Api::new(addr))
        }
    }

    /// Transactions so far, or `None` when they cannot be read.
    pub async fn transactions(&self) -> Option<u64> {
        match self {
            DbTransactions::Metrics(api) => api.counter("apihub_db_write_transactions_total").await,
            DbTransactions::Postgres(url) => {
                use diesel::QueryableByName;
                use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
                #[derive(QueryableByName)]
                struct Committed {
                    #[diesel(sql_type = diesel::sql_types::BigInt)]
                    xact_commit: i64,
                }
                let mut conn = AsyncPgConnection::establish(url).await.ok()?;
                // Statistics reach pg_stat_database when a backend reports them (within a second
                // on an idle connection); wait for the gateway's to arrive.
                tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
                let rows: Vec<Committed> =
                    diesel::sql_query("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
                        .load(&mut conn)
                        .await
                        .ok()?;
                rows.into_iter().next().and_then(|row| u64::try_from(row.xact_commit).ok())
            }
        }
    }

    /// The PostgreSQL server's CPU time so far, in ticks by process id: every process
    /// `pg_stat_activity` lists (backends and background processes alike) that runs on this
    /// machine as `postgres` (`/proc/PID/comm`). `None` for SQLite, and when the server is
    /// elsewhere (none of its processes found here).
    pub async fn server_cpu_ticks(&self) -> Option<std::collections::BTreeMap<i32, u64>> {
        use diesel::QueryableByName;
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        #[derive(QueryableByName)]
        struct Pid {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            pid: i32,
        }
        let DbTransactions::Postgres(url) = self else { return None };
        let mut conn = AsyncPgConnection::establish(url).await.ok()?;
        let pids: Vec<Pid> = diesel::sql_query("SELECT pid FROM pg_stat_activity").load(&mut conn).await.ok()?;
        let local = |pid: i32| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            if comm.trim_end() != "postgres" {
                return None;
            }
            crate::procs::cpu_ticks(&pid.to_string())
        };
        let ticks: std::collections::BTreeMap<i32, u64> =
            pids.into_iter().filter_map(|Pid { pid }| Some((pid, local(pid)?))).collect();
        (!ticks.is_empty()).then_some(ticks)
    }
}

/// The server's CPU time between two [`DbTransactions::server_cpu_ticks`], in seconds: per
/// process there at the end, what it spent since the start (all of it for a process started
/// since; one that ended meanwhile is not counted).
pub fn server_cpu_seconds(
    before: &std::collections::BTreeMap<i32, u64>,
    after: &std::collections::BTreeMap<i32, u64>,
) -> f64 {
    let ticks: u64 = after.iter().map(|(pid, now)| now.saturating_sub(before.get(pid).copied().unwrap_or(0))).sum();
    ticks as f64 / 100.0
}
