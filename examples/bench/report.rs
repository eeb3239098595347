//! What a run found: per target, the measurements and what they add over going direct; the
//! issue's targets, met or missed; printed as Markdown tables and written as JSON.

use serde::Serialize;

use crate::api::LedgerCheck;
use crate::load::{LoadResult, StreamResult};

/// Everything measured through one target.
#[derive(Debug, Serialize)]
pub struct TargetResult {
    /// `direct`, `nginx`, `hyper`, `apihub-sqlite` or `apihub-postgres`.
    pub name: String,
    /// One client, closed loop.
    pub c1: LoadResult,
    /// Many clients, closed loop: the maximum throughput.
    pub c64: LoadResult,
    /// The open loop at a fixed rate.
    pub rate: LoadResult,
    pub streams: StreamResult,
    /// Peak RSS of the proxy's process(es); none for `direct`.
    pub peak_rss_kib: Option<u64>,
    /// Keys in the gateway's database besides the benchmark's own.
    pub filler_keys: u32,
    /// How long creating them took, through the admin batch API.
    pub filler_seconds: f64,
    /// The ledger check, for a gateway.
    pub ledger: Option<LedgerCheck>,
    /// Filled in once `direct` and `nginx` are known.
    pub added: Option<Added>,
    /// Throughput at the high concurrency divided by nginx's.
    pub throughput_vs_nginx: Option<f64>,
    /// Database transactions per request during the high-concurrency phase, for a gateway:
    /// SQLite's write transactions (`apihub_db_write_transactions_total`), or every transaction
    /// PostgreSQL committed in the gateway's database (`pg_stat_database.xact_commit`).
    pub db_transactions_per_request: Option<f64>,
    /// Heap allocations per request during the high-concurrency phase (a gateway built with
    /// `count-allocations`, see `APIHUB_BENCH_COUNT_ALLOCATIONS`).
    pub allocations_per_request: Option<f64>,
    /// The proxy's CPU time per request during the high-concurrency phase, per thread name
    /// (warm-up included, as `c64.cpu_us_per_request`): the runtime's workers apart from the
    /// gateway's writer threads. Empty for `direct` and for a proxy with several processes.
    pub cpu_us_per_request_by_thread: std::collections::BTreeMap<String, f64>,
    /// The PostgreSQL server's CPU time per request during the high-concurrency phase (its
    /// processes on this machine, from `/proc`; warm-up included): what the database costs
    /// besides the gateway. `None` for other targets and for a server elsewhere.
    pub db_server_cpu_us_per_request: Option<f64>,
}

impl TargetResult {
    /// Requests sent through this target, and how many were answered 2xx.
    pub fn sent_and_succeeded(&self) -> (u64, u64) {
        let streams_ok = self.streams.streams - self.streams.errors;
        (
            self.c1.sent + self.c64.sent + self.rate.sent + self.streams.streams,
            self.c1.succeeded + self.c64.succeeded + self.rate.succeeded + streams_ok,
        )
    }

    fn errors(&self) -> u64 {
        self.c1.errors + self.c64.errors + self.rate.errors + self.streams.errors
    }
}

/// Latency a target adds over sending straight to the mock, in microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Added {
    pub c1_p50_us: f64,
    pub c1_p99_us: f64,
    pub rate_p50_us: f64,
    pub rate_p99_us: f64,
    pub ttfb_p50_us: f64,
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Run {
    pub mode: &'static str,
    pub cores: usize,
    /// `/proc/loadavg` when the run began.
    pub load_average: String,
    pub concurrency: usize,
    pub rate_per_second: u64,
    pub targets: Vec<TargetResult>,
    /// Several gateways on one PostgreSQL database, when it is measured.
    pub scale_out: Option<ScaleOut>,
    /// Targets that could not be measured, and why.
    pub skipped: Vec<String>,
    pub goals: Vec<Goal>,
    /// Failed requests and ledger mismatches: anything here makes the run exit non-zero.
    pub failures: Vec<String>,
}

/// Many users' traffic through one gateway, then split across two on the same PostgreSQL
/// database (on one machine they share its cores: reported, no target).
#[derive(Debug, Serialize)]
pub struct ScaleOut {
    /// Users, each with a key of its own and one keep-alive connection.
    pub users: usize,
    /// Through the first gateway alone.
    pub one_gateway: UsersLoad,
    /// Users alternately through the first and a second gateway.
    pub two_gateways: UsersLoad,
}

/// Every user's closed loop at once: what they achieved together.
#[derive(Debug, Serialize)]
pub struct UsersLoad {
    /// Completed requests per second, all users together.
    pub throughput: f64,
    /// The slowest user's p99.
    pub worst_p99_us: f64,
    /// The slowest single request of any user (a stall every user waits out shows here).
    pub slowest_us: f64,
    /// The least any one user achieved, in requests per second.
    pub least_throughput: f64,
    pub sent: u64,
    pub errors: u64,
    /// The first failure, when one failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl UsersLoad {
    pub fn of(results: &[LoadResult]) -> Self {
        UsersLoad {
            throughput: results.iter().map(|r| r.throughput).sum(),
            worst_p99_us: results.iter().map(|r| r.latency.p99_us).fold(0.0, f64::max),
            slowest_us: results.iter().map(|r| r.latency.max_us).fold(0.0, f64::max),
            least_throughput: results.iter().map(|r| r.throughput).reduce(f64::min).unwrap_or(0.0),
            sent: results.iter().map(|r| r.sent).sum(),
            errors: results.iter().map(|r| r.errors).sum(),
            first_error: results.iter().find_map(|r| r.first_error.clone()),
        }
    }
}

/// One of the performance targets (reported, never a failure).
#[derive(Debug, Serialize)]
pub struct Goal {
    pub goal: String,
    pub measured: String,
    pub met: bool,
}

impl Run {
    /// Fills in what each target adds over direct and its throughput against nginx, the goals
    /// and the failures.
    pub fn finish(&mut self) {
        let find = |name: &str| self.targets.iter().find(|t| t.name == name);
        let direct = find("direct").map(|d| (d.c1.latency, d.rate.latency, d.streams.ttfb));
        let nginx = find("nginx").map(|n| n.c64.throughput);
        for target in &mut self.targets {
            if let Some((c1, rate, ttfb)) = direct {
                target.added = Some(Added {
                    c1_p50_us: target.c1.latency.p50_us - c1.p50_us,
                    c1_p99_us: target.c1.latency.p99_us - c1.p99_us,
                    rate_p50_us: target.rate.latency.p50_us - rate.p50_us,
                    rate_p99_us: target.rate.latency.p99_us - rate.p99_us,
                    ttfb_p50_us: target.streams.ttfb.p50_us - ttfb.p50_us,
                });
            }
            target.throughput_vs_nginx = nginx.filter(|n| *n > 0.0).map(|n| target.c64.throughput / n);
        }
        self.goals = self.goals();
        if let Some(scale_out) = &self.scale_out {
            for (gateways, load) in [("one gateway", &scale_out.one_gateway), ("two gateways", &scale_out.two_gateways)]
            {
                if load.errors > 0 {
                    let first = load.first_error.clone().unwrap_or_default();
                    self.failures
                        .push(format!("scale-out, {gateways}: {} request(s) failed, first: {first}", load.errors));
                }
            }
        }
        for target in &self.targets {
            let errors = target.errors();
            if errors > 0 {
                let first = [&target.c1, &target.c64, &target.rate]
                    .iter()
                    .find_map(|r| r.first_error.clone())
                    .or_else(|| target.streams.first_error.clone())
                    .unwrap_or_default();
                self.failures.push(format!("{}: {errors} request(s) failed, first: {first}", target.name));
            }
            if let Some(ledger) = &target.ledger {
                for problem in &ledger.problems {
                    self.failures.push(format!("{}: ledger: {problem}", target.name));
                }
            }
        }
    }

    /// #11's targets for the SQLite gateway and #12's for one PostgreSQL gateway with one busy
    /// user: the throughput against nginx's and the transactions per request for both, the rest
    /// for SQLite.
    fn goals(&self) -> Vec<Goal> {
        let mut goals = Vec::new();
        let mut goal = |goal: String, measured: String, met: bool| goals.push(Goal { goal, measured, met });
        let find = |name: &str| self.targets.iter().find(|t| t.name == name);
        let c = self.concurrency;
        for (t, min_ratio) in [(find("apihub-sqlite"), 0.6), (find("apihub-postgres"), 0.5)] {
            let Some(t) = t else { continue };
            let name = &t.name;
            if let Some(ratio) = t.throughput_vs_nginx {
                let measured = format!("{ratio:.2} ×");
                goal(
                    format!("{name}: throughput at {c} connections ≥ {min_ratio} × nginx"),
                    measured,
                    ratio >= min_ratio,
                );
            }
            if let Some(tx) = t.db_transactions_per_request {
                let measured = format!("{tx:.3}");
                goal(
                    format!("{name}: ≤ 0.05 database transactions per request at {c} connections"),
                    measured,
                    tx <= 0.05,
                );
            }
        }
        let Some(t) = find("apihub-sqlite") else { return goals };
        let nginx_cpu = find("nginx").and_then(|n| n.c64.cpu_us_per_request);
        if let (Some(cpu), Some(nginx_cpu)) = (t.c64.cpu_us_per_request, nginx_cpu) {
            goal(
                format!("CPU per request at {c} connections within 2 × nginx's ({nginx_cpu:.1} µs)"),
                format!("{cpu:.1} µs ({:.2} ×)", cpu / nginx_cpu),
                cpu <= 2.0 * nginx_cpu,
            );
        }
        if let Some(added) = t.added {
            goal("added latency at concurrency 1, p50 ≤ 100 µs".into(), us(added.c1_p50_us), added.c1_p50_us <= 100.0);
            goal("added latency at concurrency 1, p99 ≤ 250 µs".into(), us(added.c1_p99_us), added.c1_p99_us <= 250.0);
            goal(
                "streaming adds ≤ 1 ms to the first byte (p50)".into(),
                us(added.ttfb_p50_us),
                added.ttfb_p50_us <= 1000.0,
            );
        }
        let p99 = t.rate.latency.p99_us;
        goal(format!("p99 at a fixed {} req/s ≤ 2 ms", self.rate_per_second), us(p99), p99 <= 2000.0);
        if let Some(kib) = t.peak_rss_kib {
            goal(
                format!("peak RSS < 150 MiB with {} filler keys, under load", t.filler_keys),
                mib(kib),
                kib < 150 * 1024,
            );
        }
        goals
    }

    /// The Markdown tables.
    pub fn print(&self) {
        let rows = |f: &dyn Fn(&TargetResult) -> Vec<String>| self.targets.iter().map(f).collect::<Vec<_>>();
        let added = |t: &TargetResult, f: fn(&Added) -> f64| {
            t.added.filter(|_| t.name != "direct").map_or("–".into(), |a| us_signed(f(&a)))
        };
        println!("\n### Concurrency 1 (closed loop, one keep-alive connection)\n");
        table(
            &["target", "req/s", "p50", "p99", "p99.9", "added p50", "added p99", "CPU/req", "switches/req"],
            rows(&|t| {
                let l = t.c1.latency;
                let switches = t.c1.switches_per_request.map_or("–".into(), |s| format!("{s:.1}"));
                vec![
                    t.name.clone(),
                    rps(t.c1.throughput),
                    us(l.p50_us),
                    us(l.p99_us),
                    us(l.p999_us),
                    added(t, |a| a.c1_p50_us),
                    added(t, |a| a.c1_p99_us),
                    cpu(&t.c1),
                    switches,
                ]
            }),
        );
        println!("\n### Concurrency {} (closed loop, maximum throughput)\n", self.concurrency);
        table(
            &["target", "req/s", "× nginx", "p50", "p99", "p99.9", "CPU/req", "DB tx/req", "allocs/req"],
            rows(&|t| {
                let l = t.c64.latency;
                let ratio = t.throughput_vs_nginx.map_or("–".into(), |r| format!("{r:.2}"));
                let tx = t.db_transactions_per_request.map_or("–".into(), |r| format!("{r:.3}"));
                let allocs = t.allocations_per_request.map_or("–".into(), |r| format!("{r:.0}"));
                vec![
                    t.name.clone(),
                    rps(t.c64.throughput),
                    ratio,
                    us(l.p50_us),
                    us(l.p99_us),
                    us(l.p999_us),
                    cpu(&t.c64),
                    tx,
                    allocs,
                ]
            }),
        );
        // Where a gateway's CPU time goes: its runtime's workers and each of its writer threads.
        for t in self.targets.iter().filter(|t| t.name.starts_with("apihub")) {
            let mut threads: Vec<(&String, &f64)> = t.cpu_us_per_request_by_thread.iter().collect();
            threads.sort_by(|a, b| b.1.total_cmp(a.1));
            let shown: Vec<String> =
                threads.iter().filter(|(_, us)| **us >= 0.05).map(|(name, us)| format!("{name} {us:.1} µs")).collect();
            if !shown.is_empty() {
                println!("\n{} CPU per request by thread: {}", t.name, shown.join(", "));
            }
            if let Some(server) = t.db_server_cpu_us_per_request {
                println!("\n{} CPU per request of the PostgreSQL server besides: {server:.1} µs", t.name);
            }
        }
        println!("\n### Fixed rate {} req/s (open loop, latency from the intended send time)\n", self.rate_per_second);
        table(
            &["target", "achieved req/s", "p50", "p99", "p99.9", "max", "added p99", "unsent"],
            rows(&|t| {
                let l = t.rate.latency;
                vec![
                    t.name.clone(),
                    rps(t.rate.throughput),
                    us(l.p50_us),
                    us(l.p99_us),
                    us(l.p999_us),
                    us(l.max_us),
                    added(t, |a| a.rate_p99_us),
                    t.rate.unsent.to_string(),
                ]
            }),
        );
        println!("\n### Streams, memory and the ledger\n");
        table(
            &["target", "TTFB p50", "added TTFB p50", "event gap (median)", "paced", "peak RSS", "errors", "ledger"],
            rows(&|t| {
                let s = &t.streams;
                let paced =
                    format!("{} ({:.0}% ≥ ½ delay)", if s.paced { "yes" } else { "NO" }, s.paced_share_min * 100.0);
                let gap = format!("{:.1} ms (delay {} ms)", s.gap_median_ms, s.chunk_delay_ms);
                let rss = t.peak_rss_kib.map_or("–".into(), mib);
                let ledger = match &t.ledger {
                    None => "–".into(),
                    Some(l) if l.problems.is_empty() => {
                        format!("exact ({} charges, {} credits)", l.consume_rows, l.usage_charged)
                    }
                    Some(l) => format!("MISMATCH ({} problems)", l.problems.len()),
                };
                vec![
                    t.name.clone(),
                    us(s.ttfb.p50_us),
                    added(t, |a| a.ttfb_p50_us),
                    gap,
                    paced,
                    rss,
                    t.errors().to_string(),
                    ledger,
                ]
            }),
        );
        if !self.goals.is_empty() {
            let quick = if self.mode == "quick" { "; a quick run proves nothing about them" } else { "" };
            println!(
                "\n### The issues' targets (APIHub on SQLite, then on PostgreSQL; reported, never a failure{quick})\n"
            );
            table(
                &["target", "measured", "met"],
                self.goals
                    .iter()
                    .map(|g| vec![g.goal.clone(), g.measured.clone(), if g.met { "yes" } else { "no" }.into()])
                    .collect(),
            );
        }
        if let Some(scale_out) = &self.scale_out {
            println!(
                "\n### Several gateways on one PostgreSQL database ({} users, one connection each; they share this machine's cores)\n",
                scale_out.users
            );
            table(
                &[
                    "gateways",
                    "req/s (all users)",
                    "least of one user",
                    "slowest user's p99",
                    "slowest request",
                    "requests",
                    "errors",
                ],
                [("1", &scale_out.one_gateway), ("2", &scale_out.two_gateways)]
                    .into_iter()
                    .map(|(gateways, load)| {
                        vec![
                            gateways.to_owned(),
                            rps(load.throughput),
                            rps(load.least_throughput),
                            us(load.worst_p99_us),
                            us(load.slowest_us),
                            load.sent.to_string(),
                            load.errors.to_string(),
                        ]
                    })
                    .collect(),
            );
        }
        for skipped in &self.skipped {
            println!("\nskipped: {skipped}");
        }
        for failure in &self.failures {
            println!("\nFAILED: {failure}");
        }
    }
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let cells: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count()))).collect();
        println!("| {} |", cells.join(" | "));
    };
    line(headers.iter().map(|h| (*h).to_owned()).collect());
    line(widths.iter().map(|w| "-".repeat(*w)).collect());
    rows.into_iter().for_each(line);
}

fn rps(value: f64) -> String {
    format!("{value:.0}")
}

fn us(value: f64) -> String {
    match value.abs() {
        v if v < 1000.0 => format!("{value:.0} µs"),
        v if v < 1_000_000.0 => format!("{:.2} ms", value / 1000.0),
        _ => format!("{:.2} s", value / 1_000_000.0),
    }
}

/// The proxy's CPU time per request, or `–` for `direct`.
fn cpu(phase: &LoadResult) -> String {
    phase.cpu_us_per_request.map_or("–".into(), |v| format!("{v:.0} µs"))
}

fn us_signed(value: f64) -> String {
    if value >= 0.0 { format!("+{}", us(value)) } else { us(value) }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
