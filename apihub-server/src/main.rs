//! `apihub`: the gateway binary.
//!
//! ```text
//! apihub [serve]                      start the gateway (the default)
//! apihub migrate                      apply pending database migrations and exit
//! apihub admin create --username NAME [--password PW | password on stdin]
//! apihub openapi                      print the OpenAPI document as JSON
//! apihub mock-upstream [--host 127.0.0.1] [--port 9090] [--latency-ms N] [--chunk-delay-ms N] [--api-key KEY]
//!                                     serve a mock LLM upstream (OpenAI, Anthropic, Gemini) for tests
//! ```

use std::io::Read;
use std::time::Duration;

use anyhow::Context;
use apihub_server::app::{AdminBootstrap, create_admin, ensure_admin, init_state, spawn_upkeep};
use apihub_server::config::Config;
use apihub_server::{build_app, db};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// mimalloc: the proxy allocates and frees small buffers on every request, from every worker
/// thread, and glibc's allocator spent a fifth of the gateway's CPU time on them (perf, at 64
/// connections). [`apihub_server::allocator`] says how it is called. With the `count-allocations`
/// feature, every allocation is counted too.
#[cfg(feature = "count-allocations")]
#[global_allocator]
static ALLOCATOR: apihub_server::metrics::allocations::Counting = apihub_server::metrics::allocations::Counting;
#[cfg(not(feature = "count-allocations"))]
#[global_allocator]
static ALLOCATOR: apihub_server::allocator::Mimalloc = apihub_server::allocator::Mimalloc;

#[derive(Parser)]
#[command(name = "apihub", version, about = "API-key gateway for LLM APIs")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Start the gateway (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage administrators.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Print the OpenAPI document as JSON.
    Openapi,
    /// Serve a mock LLM upstream (OpenAI, Anthropic and Gemini dialects) for tests and benchmarks,
    /// until interrupted. Requests may override its behaviour with `x-mock-*` headers.
    MockUpstream {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// Port to listen on; 0 picks a free one.
        #[arg(long, default_value_t = 9090)]
        port: u16,
        /// Milliseconds to wait before each answer.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Milliseconds to wait between streamed events.
        #[arg(long, default_value_t = 0)]
        chunk_delay_ms: u64,
        /// The key callers must present; any caller is let in when absent.
        #[arg(long)]
        api_key: Option<String>,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an administrator account.
    Create {
        /// Login name.
        #[arg(long)]
        username: String,
        /// Password; read from standard input when absent (safer: keeps it out of the shell history).
        #[arg(long)]
        password: Option<String>,
        /// Email address.
        #[arg(long)]
        email: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    release_freed_memory();
    run()
}

/// mimalloc gives memory freed in bulk back to the system only after a delay (100 ms for arena
/// memory), so a burst of requests or one admin batch of 100,000 keys left the resident set high
/// for a while (the benchmark's peak RSS: 176 MiB; with no delay, 122 MiB). No delay then, unless
/// `MIMALLOC_PURGE_DELAY` says otherwise.
fn release_freed_memory() {
    /// `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (libmimalloc-sys names no constant
    /// for it); mimalloc reads it whenever it purges.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) };
    }
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn")))
        .init();
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Openapi => {
            println!("{}", apihub_server::openapi().to_pretty_json()?);
            Ok(())
        }
        Command::Migrate => {
            let config = Config::from_env()?;
            let applied = db::migrate(&config.database_url).await?;
            println!("applied {applied} migration(s)");
            Ok(())
        }
        Command::Admin { command: AdminCommand::Create { username, password, email } } => {
            let password = match password {
                Some(p) => p,
                None => {
                    let mut input = String::new();
                    std::io::stdin().read_to_string(&mut input).context("reading the password from stdin")?;
                    input.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            let state = init_state(Config::from_env()?).await?;
            create_admin(state.store.as_ref(), &username, &password, email).await?;
            println!("created administrator `{username}`");
            Ok(())
        }
        Command::Serve => serve().await,
        Command::MockUpstream { host, port, latency_ms, chunk_delay_ms, api_key } => {
            mock_upstream((host, port).into(), latency_ms, chunk_delay_ms, api_key).await
        }
    }
}

/// Serves the mock upstream until Ctrl-C or SIGTERM, without recording requests (nobody reads
/// them here, and it would cost a lock per request).
async fn mock_upstream(
    addr: std::net::SocketAddr,
    latency_ms: u64,
    chunk_delay_ms: u64,
    api_key: Option<String>,
) -> anyhow::Result<()> {
    use apihub_mock_upstream::{Behaviour, MockConfig, MockUpstream};
    use std::time::Duration;

    let behaviour = Behaviour {
        latency: Duration::from_millis(latency_ms),
        chunk_delay: Duration::from_millis(chunk_delay_ms),
        ..Behaviour::default()
    };
    let config = MockConfig { addr, api_key, record_requests: false, behaviour, ..MockConfig::default() };
    let mock = MockUpstream::start(config).await.with_context(|| format!("binding {addr}"))?;
    tracing::info!("mock upstream listening on {}", mock.url());
    let _ = shutdown_signal().await;
    Ok(())
}

async fn serve() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let address = format!("{}:{}", config.host, config.port);
    let _serving = serving_lock(&config.database_url)?;
    let state = init_state(config).await?;
    match ensure_admin(&state).await? {
        AdminBootstrap::Existing => {}
        AdminBootstrap::Created => {
            tracing::info!(username = %state.config.admin_username, "created the first administrator")
        }
        AdminBootstrap::Generated(password) => {
            // Shown once, on the terminal only; it is not logged anywhere else.
            eprintln!(
                "\n  First start: created administrator `{}` with password: {password}\n  Change it after logging in (POST /api/auth/password).\n",
                state.config.admin_username
            );
        }
    }
    let listener = tokio::net::TcpListener::bind(&address).await.with_context(|| format!("binding {address}"))?;
    let limits = state.config.limits;
    tracing::info!(
        max_connections = limits.max_connections,
        "APIHub listening on http://{address} (API docs at /docs)"
    );
    let upkeep = spawn_upkeep(&state);
    let (usage_log, settlements, db) = (state.usage_log.clone(), state.settlements.clone(), state.db.clone());
    // On SIGTERM, /readyz answers 503 for a while first (requests are still served), so that a
    // load balancer stops sending before the listener closes; Ctrl-C stops at once.
    let (draining, readiness_delay) =
        (state.draining.clone(), Duration::from_secs(state.config.shutdown_readiness_delay_secs));
    let shutdown = async move {
        let signal = shutdown_signal().await;
        draining.store(true, std::sync::atomic::Ordering::Release);
        if signal == Signal::Terminate && !readiness_delay.is_zero() {
            tracing::info!(secs = readiness_delay.as_secs(), "not ready any more; still serving for a while");
            tokio::time::sleep(readiness_delay).await;
        }
        tracing::info!("shutting down: finishing in-flight requests");
    };
    // Graceful shutdown waits (up to SHUTDOWN_TIMEOUT_SECS) for in-flight requests, streams
    // included; each settles its charge before its body ends. Then settlements still being
    // retried (the database was away) get a while to be written, the credit engine writes what it
    // still holds in memory, and the usage log is drained before the process exits.
    apihub_server::serve::serve(listener, build_app(state), limits, shutdown).await?;
    if tokio::time::timeout(SETTLEMENT_DRAIN, settlements.drained()).await.is_err() {
        tracing::error!(left = settlements.len(), "settlements still failing at shutdown are lost");
    }
    if let Err(error) = db.close().await {
        tracing::error!(%error, "writing the last settlements failed; they are lost");
    }
    usage_log.flush().await;
    upkeep.iter().for_each(tokio::task::JoinHandle::abort);
    tracing::info!("usage log flushed; bye");
    Ok(())
}

/// On SQLite, an exclusive lock on `<file>.serving`, held while this process lives: the credit
/// engine keeps holds and unwritten settlements in this process's memory, so a second gateway on
/// the same file would spend the same credit again. (`apihub migrate` and `apihub admin` do not
/// take it: they move no credit.)
fn serving_lock(url: &db::DbUrl) -> anyhow::Result<Option<std::fs::File>> {
    let db::DbUrl::Sqlite(path) = url else { return Ok(None) };
    if path == ":memory:" {
        return Ok(None);
    }
    let lock_path = format!("{path}.serving");
    if let Some(dir) = std::path::Path::new(&lock_path).parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = std::fs::File::create(&lock_path).with_context(|| format!("opening {lock_path}"))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another gateway is serving the SQLite database {path}; one SQLite file serves one gateway (use PostgreSQL for several)"
        ),
        Err(std::fs::TryLockError::Error(error)) => Err(error).with_context(|| format!("locking {lock_path}")),
    }
}

/// How long a stopping gateway keeps retrying settlements the database refused.
const SETTLEMENT_DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Which signal asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// Ctrl-C: someone at a terminal.
    Interrupt,
    /// SIGTERM: a process manager or an orchestrator.
    Terminate,
}

async fn shutdown_signal() -> Signal {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => Signal::Interrupt,
        () = terminate => Signal::Terminate,
    }
}
