//! The processes under test: the `apihub` binary (built by cargo first), the mock upstream, the
//! gateway on SQLite or a fresh PostgreSQL database, nginx as a bare reverse proxy, and the bare
//! hyper proxy of `floor.rs`. Each
//! listens on a free port of 127.0.0.1, logs into the run's temporary directory, and is stopped
//! when dropped.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A child process, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, mut command: Command, log: PathBuf) -> anyhow::Result<Proc> {
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        command.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        let child = command.spawn().with_context(|| format!("starting {name}"))?;
        Ok(Proc { name: name.to_owned(), child, log })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory (`VmHWM`) of the process plus that of its children (nginx's workers),
    /// in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self.pid();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let pids = std::iter::once(pid.to_string()).chain(children.split_whitespace().map(str::to_owned));
        pids.map(|pid| vm_hwm_kib(&pid)).sum()
    }

    /// CPU time (user and system) the process and its children (nginx's workers) have used so
    /// far, from `/proc/PID/stat` (in `USER_HZ` ticks, 100 a second on Linux: 10 ms resolution).
    pub fn cpu_seconds(&self) -> Option<f64> {
        let pid = self.pid();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let pids = std::iter::once(pid.to_string()).chain(children.split_whitespace().map(str::to_owned));
        pids.map(|pid| cpu_ticks(&pid)).sum::<Option<u64>>().map(|ticks| ticks as f64 / 100.0)
    }

    /// CPU time of the process's threads so far, in seconds, added up per thread name (the
    /// runtime's workers share one; the gateway names its writer threads), from
    /// `/proc/PID/task/*/stat`; threads that ended are not counted. Children are left out.
    pub fn cpu_seconds_by_thread(&self) -> std::collections::BTreeMap<String, f64> {
        let mut by_name = std::collections::BTreeMap::new();
        let Ok(threads) = self.threads() else { return by_name };
        for path in threads {
            let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default().trim().to_owned();
            let ticks = std::fs::read_to_string(path.join("stat")).ok().and_then(|stat| stat_ticks(&stat));
            if let Some(ticks) = ticks {
                *by_name.entry(name).or_insert(0.0) += ticks as f64 / 100.0;
            }
        }
        by_name
    }

    /// Context switches of the process's threads so far, voluntary and not, from
    /// `/proc/PID/task/*/status`; threads that ended are not counted. Children are left out.
    pub fn context_switches(&self) -> Option<u64> {
        let mut switches = 0;
        for path in self.threads().ok()? {
            let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
            for line in status.lines() {
                let count = line
                    .strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"));
                switches += count.and_then(|count| count.trim().parse::<u64>().ok()).unwrap_or(0);
            }
        }
        Some(switches)
    }

    /// The process's threads' directories, `/proc/PID/task/TID` (an error once it has ended).
    fn threads(&self) -> std::io::Result<impl Iterator<Item = std::path::PathBuf>> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.pid()))?;
        Ok(tasks.flatten().map(|task| task.path()))
    }

    /// The last lines of the process's output, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}):\n{}", self.name, self.log_tail());
        }
        Ok(())
    }

    /// Waits until `addr` accepts connections.
    fn wait_listening(&mut self, addr: SocketAddr) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            self.ensure_running()?;
            if Instant::now() > deadline {
                bail!("{} did not listen on {addr} within 30 s:\n{}", self.name, self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// SIGTERM, then waits up to `grace` (a gateway drains and flushes its usage log) before SIGKILL.
    pub fn stop(&mut self, grace: Duration) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

fn vm_hwm_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `utime + stime` of one process, in ticks: fields 14 and 15 of its `stat`, counted after the
/// command name (which may hold spaces, so the split starts after its closing parenthesis).
pub fn cpu_ticks(pid: &str) -> Option<u64> {
    stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `utime + stime` from the text of a `stat` file (a process's or a thread's).
fn stat_ticks(stat: &str) -> Option<u64> {
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A free port on 127.0.0.1 (free when asked; taken by the process it is given to).
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Builds the `apihub` binary with cargo, in the profile this harness was built with, and
/// returns its path (beside this example's own directory in the target directory).
/// `APIHUB_BENCH_COUNT_ALLOCATIONS=1`: build the gateway with its allocation counter and report
/// allocations per request (the count costs an atomic add per allocation: time such a run apart).
pub fn count_allocations() -> bool {
    std::env::var_os("APIHUB_BENCH_COUNT_ALLOCATIONS").is_some_and(|v| !v.is_empty() && v != "0")
}

pub fn build_apihub() -> anyhow::Result<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("the examples crate has a parent")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace).args(["build", "-p", "apihub-server", "--bin", "apihub"]);
    if count_allocations() {
        command.args(["--features", "count-allocations"]);
    }
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    eprintln!("bench: building the gateway ({command:?})");
    let status = command.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build -p apihub-server failed ({status})");
    }
    // target/<profile>/examples/bench → target/<profile>/apihub
    let exe = std::env::current_exe()?;
    let profile_dir = exe.parent().and_then(Path::parent).context("the harness runs from target/<profile>/examples")?;
    let binary = profile_dir.join("apihub");
    if !binary.is_file() {
        bail!("{} not found after building", binary.display());
    }
    Ok(binary)
}

/// `apihub mock-upstream`: answers at once, with usage, recording nothing.
pub fn start_mock(apihub: &Path, dir: &Path) -> anyhow::Result<(Proc, SocketAddr)> {
    let addr = free_addr()?;
    let mut command = Command::new(apihub);
    command.current_dir(dir).env("RUST_LOG", "warn");
    command.args(["mock-upstream", "--host", "127.0.0.1", "--port", &addr.port().to_string()]);
    let mut proc = Proc::spawn("the mock upstream", command, dir.join("mock.log"))?;
    proc.wait_listening(addr)?;
    Ok((proc, addr))
}

/// Where nginx is, if it is installed.
pub fn nginx_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
}

/// nginx as a bare reverse proxy in front of `upstream`: keep-alive on both sides, no buffering
/// (as a streaming LLM proxy must be), no access log. Its prefix, config and logs live in `dir`.
pub fn start_nginx(nginx: &Path, dir: &Path, upstream: SocketAddr) -> anyhow::Result<(Proc, SocketAddr)> {
    std::fs::create_dir_all(dir)?;
    let addr = free_addr()?;
    let prefix = dir.display();
    // Run as root, nginx would hand its workers to `nobody`, who cannot enter the temporary directory.
    let user = if is_root() { "user root;\n" } else { "" };
    let config = format!(
        "{user}worker_processes auto;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 10000000;
    upstream mock {{
        server {upstream};
        keepalive 256;
        keepalive_requests 10000000;
    }}
    server {{
        listen {addr};
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_buffering off;
        }}
    }}
}}
"
    );
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config)?;
    let mut command = Command::new(nginx);
    command.current_dir(dir);
    command.arg("-p").arg(dir).arg("-c").arg(&conf).arg("-e").arg(dir.join("error.log"));
    command.args(["-g", "daemon off;"]);
    let mut proc = Proc::spawn("nginx", command, dir.join("stdout.log"))?;
    proc.wait_listening(addr)?;
    Ok((proc, addr))
}

/// The bare hyper proxy of `floor.rs` in front of `upstream`: this harness's own binary again.
pub fn start_bare_proxy(dir: &Path, upstream: SocketAddr) -> anyhow::Result<(Proc, SocketAddr)> {
    std::fs::create_dir_all(dir)?;
    let addr = free_addr()?;
    let mut command = Command::new(std::env::current_exe().context("finding the harness's own binary")?);
    command.current_dir(dir).args(["--serve-bare-proxy", &addr.to_string(), &upstream.to_string()]);
    let mut proc = Proc::spawn("the bare hyper proxy", command, dir.join("stdout.log"))?;
    proc.wait_listening(addr)?;
    Ok((proc, addr))
}

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find(|line| line.starts_with("Uid:")).and_then(|line| line.split_whitespace().nth(1)) == Some("0")
}

/// The gateway's administrator login in every benchmark database.
pub const ADMIN_PASSWORD: &str = "bench-admin-password";

/// `apihub serve` on `database_url` with defaults for everything else (auth, rate limits, quota
/// and billing all on), forwarding to `upstream`, with `extra` variables on top. Its data
/// directory is `dir`.
pub fn start_gateway(
    apihub: &Path,
    name: &str,
    dir: &Path,
    database_url: &str,
    upstream: SocketAddr,
    extra: &[(String, String)],
) -> anyhow::Result<(Proc, SocketAddr)> {
    std::fs::create_dir_all(dir)?;
    let addr = free_addr()?;
    let mut command = Command::new(apihub);
    // Only what is set here: no `.env` (the working directory is the temporary one), no stray variables.
    command.current_dir(dir).env_clear().arg("serve");
    command.env("PATH", std::env::var_os("PATH").unwrap_or_default());
    command.envs([
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", addr.port().to_string()),
        ("DATABASE_URL", database_url.to_owned()),
        ("DATA_DIR", dir.display().to_string()),
        ("UPSTREAM_URL", format!("http://{upstream}")),
        ("ADMIN_USERNAME", "admin".to_owned()),
        ("ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
        ("UI_DIR", dir.join("no-ui").display().to_string()),
        // Stopped by the harness, not behind a load balancer: drain at once.
        ("SHUTDOWN_READINESS_DELAY_SECS", "0".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ]);
    command.envs(extra.iter().map(|(name, value)| (name, value)));
    let mut proc = Proc::spawn(name, command, dir.join("gateway.log"))?;
    proc.wait_listening(addr)?;
    Ok((proc, addr))
}

/// A fresh PostgreSQL database on the server `base` names, dropped afterwards.
pub struct PgDatabase {
    base: String,
    name: String,
    /// Its URL.
    pub url: String,
}

impl PgDatabase {
    /// Creates `apihub_bench_<pid>_<time>` on the server of `base` (a URL naming any database).
    pub async fn create(base: &str) -> anyhow::Result<PgDatabase> {
        use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
        let name = format!("apihub_bench_{}_{stamp}", std::process::id());
        let mut conn = AsyncPgConnection::establish(base).await.context("connecting to APIHUB_BENCH_POSTGRES_URL")?;
        conn.batch_execute(&format!("CREATE DATABASE {name}")).await.context("creating the benchmark database")?;
        let (prefix, query) = match base.split_once('?') {
            Some((prefix, query)) => (prefix, format!("?{query}")),
            None => (base, String::new()),
        };
        let root = prefix.rsplit_once('/').map_or(prefix, |(root, _)| root);
        Ok(PgDatabase { base: base.to_owned(), url: format!("{root}/{name}{query}"), name })
    }

    /// Drops the database (its gateway must be stopped).
    pub async fn drop_database(self) -> anyhow::Result<()> {
        use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
        let mut conn = AsyncPgConnection::establish(&self.base).await?;
        conn.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).await?;
        Ok(())
    }
}
