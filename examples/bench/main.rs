//! cargo run --release -p apihub-examples --example bench -- [--quick] [--json out.json]
//!     [--only direct,nginx,apihub-sqlite,apihub-postgres,scale-out] [--gateway-env NAME=VALUE]... [--binary PATH]
//!
//! The benchmark harness: how much APIHub adds to every request, next to a bare reverse proxy.
//!
//! It builds the `apihub` binary first (`cargo build [--release] -p apihub-server`, in the
//! profile the harness itself was built with; a debug build measures nothing worth reading),
//! then starts, each on a free port of 127.0.0.1 and inside one temporary directory:
//!
//! - the mock upstream (`apihub mock-upstream`: answers at once with usage, records nothing);
//! - nginx as a bare reverse proxy in front of it, when `nginx` is installed (Debian's package);
//! - a bare hyper reverse proxy (`hyper`: this harness again, with `--serve-bare-proxy`): the
//!   gateway's own parts, tokio and hyper's server and pooled client, with nothing between them,
//!   the floor for a gateway built on them (`floor.rs`);
//! - the gateway with everything on (admission: key, rate limits, quota; billing; usage log) on a
//!   temporary SQLite file, and on a fresh PostgreSQL database when `APIHUB_BENCH_POSTGRES_URL`
//!   names a server (for example `postgres://postgres@127.0.0.1:5432/postgres`). Each gateway
//!   gets an administrator, a funded user, a key whose limits are all set but too high to
//!   trigger, a price for the model, and 100,000 more keys made through the admin batch API.
//!
//! Through each target (direct to the mock, nginx, the bare hyper proxy, APIHub on SQLite, on
//! PostgreSQL) its own load generator (tokio and hyper, keep-alive connections) measures: one
//! client in a closed loop; 64 clients in a closed loop (the maximum throughput); an open loop at
//! 5,000 requests per second over 64 connections, each latency counted from the request's due
//! time; and streamed chat completions whose events the mock spaces 20 ms apart (time to first
//! byte, and whether the events still arrive spaced). For a gateway it records the peak RSS
//! (`VmHWM`) and then checks through the admin and stats APIs that the ledger's consume rows add
//! up to exactly what the usage log charged, and the ledger to the balance.
//!
//! With PostgreSQL it also runs several gateways on one database (`scale-out`, #12): 50 users,
//! each with a key and one keep-alive connection, through one gateway, then alternately through it
//! and a second gateway started on the same database; it reports what all users achieved together
//! (on one machine the two gateways share its cores: no target).
//!
//! `--only` measures the named targets alone (to try a change quickly: nginx and one gateway side
//! by side); `--gateway-env` sets a variable in the gateways' environment (to compare settings);
//! `--binary` runs a given `apihub` binary instead of building one (to compare two builds).
//!
//! It prints Markdown tables and, with `--json PATH`, writes everything as JSON. `--quick` runs
//! a few seconds in all with small counts, to prove the harness works (CI). The exit status is
//! non-zero when a request fails or the ledger does not add up, never because a performance
//! target is missed.

mod api;
mod floor;
mod load;
mod procs;
mod report;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use api::{Api, MODEL};
use load::RequestSpec;
use procs::Proc;
use report::{Run, TargetResult};

/// How long and how hard each phase runs.
struct Plan {
    quick: bool,
    c1_warmup: Duration,
    c1_window: Duration,
    concurrency: usize,
    many_warmup: Duration,
    many_window: Duration,
    rate: u64,
    rate_window: Duration,
    streams: usize,
    stream_concurrency: usize,
    stream_tokens: u64,
    chunk_delay_ms: u64,
    filler_keys: u32,
    /// Users of the scale-out phase (one connection each).
    scale_out_users: usize,
}

impl Plan {
    fn full() -> Self {
        Plan {
            quick: false,
            c1_warmup: Duration::from_millis(500),
            c1_window: Duration::from_secs(5),
            concurrency: 64,
            many_warmup: Duration::from_secs(1),
            many_window: Duration::from_secs(8),
            rate: 5000,
            rate_window: Duration::from_secs(8),
            streams: 64,
            stream_concurrency: 4,
            stream_tokens: 6,
            chunk_delay_ms: 20,
            filler_keys: 100_000,
            scale_out_users: 50,
        }
    }

    fn quick() -> Self {
        Plan {
            quick: true,
            c1_warmup: Duration::from_millis(50),
            c1_window: Duration::from_millis(300),
            many_warmup: Duration::from_millis(100),
            many_window: Duration::from_millis(500),
            rate: 1000,
            rate_window: Duration::from_millis(500),
            streams: 2,
            stream_concurrency: 2,
            stream_tokens: 4,
            chunk_delay_ms: 10,
            filler_keys: 1000,
            scale_out_users: 4,
            ..Plan::full()
        }
    }
}

const USAGE: &str =
    "usage: bench [--quick] [--json PATH] [--only TARGET,...] [--gateway-env NAME=VALUE]... [--binary PATH]
  (APIHUB_BENCH_POSTGRES_URL adds PostgreSQL; targets: direct, nginx, hyper, apihub-sqlite, apihub-postgres,
   scale-out)";

const TARGETS: [&str; 6] = ["direct", "nginx", "hyper", "apihub-sqlite", "apihub-postgres", "scale-out"];

struct Args {
    quick: bool,
    json: Option<PathBuf>,
    /// The targets to measure; all when empty.
    only: Vec<String>,
    gateway_env: Vec<(String, String)>,
    /// The `apihub` binary to run; built when absent.
    binary: Option<PathBuf>,
}

impl Args {
    fn wants(&self, target: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|name| name == target)
    }
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args { quick: false, json: None, only: Vec::new(), gateway_env: Vec::new(), binary: None };
    let mut given = std::env::args().skip(1);
    while let Some(arg) = given.next() {
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--json" => args.json = Some(given.next().context("--json needs a path")?.into()),
            "--only" => {
                for name in given.next().context("--only needs a list of targets")?.split(',') {
                    if !TARGETS.contains(&name) {
                        bail!("unknown target `{name}`\n{USAGE}");
                    }
                    args.only.push(name.to_owned());
                }
            }
            "--gateway-env" => {
                let pair = given.next().context("--gateway-env needs NAME=VALUE")?;
                let (name, value) = pair.split_once('=').context("--gateway-env needs NAME=VALUE")?;
                args.gateway_env.push((name.to_owned(), value.to_owned()));
            }
            "--binary" => args.binary = Some(given.next().context("--binary needs a path")?.into()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    // The `hyper` target: this program again, as the bare proxy (see `floor.rs`).
    let given: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, listen, upstream] = given.as_slice()
        && flag == "--serve-bare-proxy"
    {
        let serve = || -> anyhow::Result<()> { floor::serve(listen.parse()?, upstream.parse()?) };
        return match serve() {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("bare proxy: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<bool> {
    let args = args()?;
    let plan = if args.quick { Plan::quick() } else { Plan::full() };
    if cfg!(debug_assertions) && !plan.quick {
        eprintln!("bench: this is a debug build; run with --release for numbers worth reading");
    }
    let apihub = match &args.binary {
        Some(binary) => binary.clone(),
        None => procs::build_apihub()?,
    };
    let work = tempfile::Builder::new().prefix("apihub-bench-").tempdir()?;
    let started = Instant::now();
    let (_mock, mock) = procs::start_mock(&apihub, work.path())?;
    let mut run = Run {
        mode: if plan.quick { "quick" } else { "full" },
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        // Other work on the machine skews every number; say how busy it was.
        load_average: std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned(),
        concurrency: plan.concurrency,
        rate_per_second: plan.rate,
        targets: Vec::new(),
        scale_out: None,
        skipped: Vec::new(),
        goals: Vec::new(),
        failures: Vec::new(),
    };

    // Direct to the mock: the baseline. The mock takes any key.
    if args.wants("direct") {
        run.targets.push(measure("direct", mock, "ahg_direct_baseline", &plan, None, None).await);
    }

    match procs::nginx_binary() {
        _ if !args.wants("nginx") => {}
        None => run.skipped.push("nginx: not installed (apt-get install nginx-light)".into()),
        Some(nginx) => match procs::start_nginx(&nginx, &work.path().join("nginx"), mock) {
            Err(error) => run.skipped.push(format!("nginx: could not start: {error:#}")),
            Ok((mut proc, addr)) => {
                run.targets.push(measure("nginx", addr, "ahg_direct_baseline", &plan, Some(&proc), None).await);
                proc.stop(Duration::from_secs(5));
            }
        },
    }

    if args.wants("hyper") {
        match procs::start_bare_proxy(&work.path().join("hyper"), mock) {
            Err(error) => run.failures.push(format!("hyper: could not start: {error:#}")),
            Ok((mut proc, addr)) => {
                run.targets.push(measure("hyper", addr, "ahg_direct_baseline", &plan, Some(&proc), None).await);
                proc.stop(Duration::from_secs(5));
            }
        }
    }

    let gateway = Gateway { apihub: &apihub, upstream: mock, env: &args.gateway_env };
    if args.wants("apihub-sqlite") {
        let dir = work.path().join("sqlite");
        let sqlite = format!("sqlite://{}", dir.join("apihub.db").display());
        match bench_gateway(&gateway, "apihub-sqlite", &dir, &sqlite, &plan).await {
            Ok(result) => run.targets.push(result),
            Err(error) => run.failures.push(format!("apihub-sqlite: {error:#}")),
        }
    }

    match std::env::var("APIHUB_BENCH_POSTGRES_URL").ok().filter(|url| !url.is_empty()) {
        _ if !args.wants("apihub-postgres") => {}
        None => run.skipped.push("apihub-postgres: APIHUB_BENCH_POSTGRES_URL is not set".into()),
        Some(base) => {
            let database = procs::PgDatabase::create(&base).await?;
            let outcome =
                bench_gateway(&gateway, "apihub-postgres", &work.path().join("postgres"), &database.url, &plan).await;
            if let Err(error) = database.drop_database().await {
                eprintln!("bench: could not drop the benchmark database: {error:#}");
            }
            match outcome {
                Ok(result) => run.targets.push(result),
                Err(error) => run.failures.push(format!("apihub-postgres: {error:#}")),
            }
        }
    }

    match std::env::var("APIHUB_BENCH_POSTGRES_URL").ok().filter(|url| !url.is_empty()) {
        _ if !args.wants("scale-out") => {}
        None => run.skipped.push("scale-out: APIHUB_BENCH_POSTGRES_URL is not set".into()),
        Some(base) => {
            let database = procs::PgDatabase::create(&base).await?;
            let outcome = scale_out(&gateway, &work.path().join("scale-out"), &database.url, &plan).await;
            if let Err(error) = database.drop_database().await {
                eprintln!("bench: could not drop the scale-out database: {error:#}");
            }
            match outcome {
                Ok(result) => run.scale_out = Some(result),
                Err(error) => run.failures.push(format!("scale-out: {error:#}")),
            }
        }
    }

    run.finish();
    run.print();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "\n({} run in {seconds:.0} s on {} cores; load average before: {})",
        run.mode, run.cores, run.load_average
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&run)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(run.failures.is_empty())
}

/// What every gateway under test is started with.
struct Gateway<'a> {
    apihub: &'a Path,
    upstream: SocketAddr,
    /// `--gateway-env`.
    env: &'a [(String, String)],
}

/// Starts a gateway on `database_url`, provisions it, measures it, checks its ledger, stops it.
async fn bench_gateway(
    gateway: &Gateway<'_>,
    name: &str,
    dir: &Path,
    database_url: &str,
    plan: &Plan,
) -> anyhow::Result<TargetResult> {
    let (mut proc, addr) =
        procs::start_gateway(gateway.apihub, name, dir, database_url, gateway.upstream, gateway.env)?;
    let api = Api::new(addr);
    eprintln!("bench: {name}: provisioning (with {} filler keys)", plan.filler_keys);
    let begun = Instant::now();
    let tenant = api::provision(&api, plan.filler_keys).await.with_context(|| format!("{name}: provisioning"))?;
    let filler_seconds = begun.elapsed().as_secs_f64();
    let db = api::DbTransactions::of(addr, database_url);
    let mut result = measure(name, addr, &tenant.key, plan, Some(&proc), Some(&db)).await;
    result.filler_keys = plan.filler_keys;
    result.filler_seconds = filler_seconds;
    let (sent, succeeded) = result.sent_and_succeeded();
    eprintln!("bench: {name}: checking the ledger against the usage log ({sent} requests)");
    result.ledger = Some(api::check_ledger(&api, &tenant, sent, succeeded).await?);
    proc.stop(Duration::from_secs(10));
    Ok(result)
}

/// Several gateways on one PostgreSQL database: `plan.scale_out_users` users, each with a key and
/// one keep-alive connection, through one gateway, then alternately through it and a second one.
async fn scale_out(
    gateway: &Gateway<'_>,
    dir: &Path,
    database_url: &str,
    plan: &Plan,
) -> anyhow::Result<report::ScaleOut> {
    let start = |name: &str| {
        procs::start_gateway(gateway.apihub, name, &dir.join(name), database_url, gateway.upstream, gateway.env)
    };
    let (mut first, first_addr) = start("scale-out-1")?;
    let api = Api::new(first_addr);
    eprintln!("bench: scale-out: provisioning {} users", plan.scale_out_users);
    let tenant = api::provision(&api, 0).await.context("scale-out: provisioning")?;
    let keys = tenant.more_users(&api, plan.scale_out_users).await.context("scale-out: provisioning users")?;
    eprintln!("bench: scale-out: {} users through one gateway", keys.len());
    let one_gateway = users_load(&[first_addr], &keys, plan).await?;
    let (mut second, second_addr) = start("scale-out-2")?;
    eprintln!("bench: scale-out: {} users through two gateways", keys.len());
    let two_gateways = users_load(&[first_addr, second_addr], &keys, plan).await?;
    second.stop(Duration::from_secs(10));
    first.stop(Duration::from_secs(10));
    Ok(report::ScaleOut { users: keys.len(), one_gateway, two_gateways })
}

/// Each key's user in a closed loop of one connection, all at once, user `n` through
/// `addrs[n % addrs.len()]`.
async fn users_load(addrs: &[SocketAddr], keys: &[String], plan: &Plan) -> anyhow::Result<report::UsersLoad> {
    let loads = keys.iter().enumerate().map(|(n, key)| {
        let spec = RequestSpec::new(addrs[n % addrs.len()], "/v1/chat/completions", key, chat_body(), &[]);
        let (warmup, window) = (plan.many_warmup, plan.many_window);
        tokio::spawn(async move { load::closed_loop(&spec, 1, warmup, window).await })
    });
    let mut results = Vec::with_capacity(keys.len());
    for load in loads.collect::<Vec<_>>() {
        // A user's loop that died would otherwise vanish from the least and the sum.
        results.push(load.await.context("a user's load loop failed")?);
    }
    Ok(report::UsersLoad::of(&results))
}

/// The chat completion every closed loop sends.
fn chat_body() -> String {
    format!(
        r#"{{"model":"{MODEL}","max_tokens":16,"messages":[{{"role":"user","content":"Say hello to the benchmark."}}]}}"#
    )
}

/// Sets `phase`'s CPU time per request from the proxy's CPU time `before` it; returns the CPU
/// time now, for the next phase.
fn cpu_per_request(proc: Option<&Proc>, before: Option<f64>, phase: &mut load::LoadResult) -> Option<f64> {
    let now = proc.and_then(Proc::cpu_seconds);
    if let (Some(before), Some(now)) = (before, now)
        && phase.sent > 0
    {
        phase.cpu_us_per_request = Some((now - before) * 1e6 / phase.sent as f64);
    }
    now
}

/// Runs every load phase through `addr`; `proc` is the proxy whose memory is reported.
async fn measure(
    name: &str,
    addr: SocketAddr,
    key: &str,
    plan: &Plan,
    proc: Option<&Proc>,
    db: Option<&api::DbTransactions>,
) -> TargetResult {
    let spec = RequestSpec::new(addr, "/v1/chat/completions", key, chat_body(), &[]);
    eprintln!("bench: {name}: concurrency 1");
    let cpu = proc.and_then(Proc::cpu_seconds);
    let switches = proc.and_then(Proc::context_switches);
    let mut c1 = load::closed_loop(&spec, 1, plan.c1_warmup, plan.c1_window).await;
    let cpu = cpu_per_request(proc, cpu, &mut c1);
    if let (Some(before), Some(now)) = (switches, proc.and_then(Proc::context_switches))
        && c1.sent > 0
    {
        c1.switches_per_request = Some(now.saturating_sub(before) as f64 / c1.sent as f64);
    }
    eprintln!("bench: {name}: concurrency {}", plan.concurrency);
    let transactions = match db {
        Some(db) => db.transactions().await,
        None => None,
    };
    let metrics = proc.map(|_| api::Api::new(addr));
    let allocations = match &metrics {
        Some(api) => api.counter("apihub_allocations_total").await,
        None => None,
    };
    let threads_before = proc.map(Proc::cpu_seconds_by_thread);
    let server_before = match db {
        Some(db) => db.server_cpu_ticks().await,
        None => None,
    };
    let mut c64 = load::closed_loop(&spec, plan.concurrency, plan.many_warmup, plan.many_window).await;
    cpu_per_request(proc, cpu, &mut c64);
    let db_server_cpu_us_per_request = match (db, server_before) {
        (Some(db), Some(before)) if c64.sent > 0 => {
            db.server_cpu_ticks().await.map(|after| api::server_cpu_seconds(&before, &after) * 1e6 / c64.sent as f64)
        }
        _ => None,
    };
    let cpu_us_per_request_by_thread = match (proc, threads_before) {
        (Some(proc), Some(before)) if c64.sent > 0 => proc
            .cpu_seconds_by_thread()
            .into_iter()
            .map(|(name, now)| {
                let spent = now - before.get(&name).copied().unwrap_or(0.0);
                (name, spent * 1e6 / c64.sent as f64)
            })
            .filter(|(_, us)| *us > 0.0)
            .collect(),
        _ => Default::default(),
    };
    let db_transactions_per_request = match (db, transactions) {
        (Some(db), Some(before)) if c64.sent > 0 => {
            db.transactions().await.map(|after| after.saturating_sub(before) as f64 / c64.sent as f64)
        }
        _ => None,
    };
    let allocations_per_request = match (&metrics, allocations) {
        (Some(api), Some(before)) if c64.sent > 0 => api
            .counter("apihub_allocations_total")
            .await
            .map(|after| after.saturating_sub(before) as f64 / c64.sent as f64),
        _ => None,
    };
    eprintln!("bench: {name}: {} req/s, open loop", plan.rate);
    let rate = load::open_loop(&spec, plan.rate, plan.concurrency, plan.rate_window).await;
    eprintln!("bench: {name}: streams");
    let stream = format!(
        r#"{{"model":"{MODEL}","stream":true,"max_tokens":{},"messages":[{{"role":"user","content":"Stream to the benchmark."}}]}}"#,
        plan.stream_tokens
    );
    let delay = [("x-mock-chunk-delay-ms", plan.chunk_delay_ms.to_string())];
    let stream_spec = RequestSpec::new(addr, "/v1/chat/completions", key, stream, &delay);
    let streams = load::streams(&stream_spec, plan.stream_concurrency, plan.streams, plan.chunk_delay_ms).await;
    TargetResult {
        name: name.to_owned(),
        c1,
        c64,
        rate,
        streams,
        peak_rss_kib: proc.and_then(Proc::peak_rss_kib),
        filler_keys: 0,
        filler_seconds: 0.0,
        ledger: None,
        added: None,
        throughput_vs_nginx: None,
        db_transactions_per_request,
        allocations_per_request,
        cpu_us_per_request_by_thread,
        db_server_cpu_us_per_request,
    }
}
