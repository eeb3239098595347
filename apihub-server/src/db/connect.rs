//! Opening the database: which backend a URL names, the pools and their options, SQLite's
//! connections and settings, and the migrations applied before anything else.

use std::path::Path;
use std::time::Duration;

use apihub_core::store::{Detail, StoreError};
use diesel::SqliteConnection;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::{Db, SqliteConn, budgets, engine, leases, pool_error, writer};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// The PostgreSQL advisory lock held while migrating (an arbitrary constant: "apihub" in ASCII).
const MIGRATION_LOCK: i64 = 0x6170_6968_7562;

/// How long a SQLite connection waits for a lock held by another process before failing.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;

/// Every SQLite connection's settings (10 s: `SQLITE_BUSY_TIMEOUT_MS`).
const SQLITE_PRAGMAS: &str =
    "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;";

/// Which backend a `DATABASE_URL` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// A SQLite file path (or `:memory:`).
    Sqlite(String),
    /// A PostgreSQL URL, passed through.
    Postgres(String),
}

impl DbUrl {
    /// Reads `sqlite://path`, `sqlite:path`, `postgres://…` or `postgresql://…`.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DbUrl::Postgres(url.to_owned()));
        }
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            if path.is_empty() {
                anyhow::bail!("DATABASE_URL `{url}` names no SQLite file");
            }
            return Ok(DbUrl::Sqlite(path.to_owned()));
        }
        anyhow::bail!("DATABASE_URL must start with sqlite:// or postgres:// (got `{url}`)")
    }
}

/// Pool sizes and timeouts.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Most connections held open.
    pub max_connections: usize,
    /// How long a caller waits for a free connection.
    pub acquire_timeout: Duration,
    /// The time zone periodic budgets' windows follow.
    pub budget_zone: apihub_core::budget::BudgetZone,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
            budget_zone: apihub_core::budget::BudgetZone::default(),
        }
    }
}

impl Db {
    /// Applies pending migrations, then opens a pool.
    pub async fn connect(url: &DbUrl, options: &PoolOptions) -> anyhow::Result<Db> {
        migrate(url).await?;
        let timeouts = deadpool_timeouts(options.acquire_timeout);
        let budgets = budgets::BudgetDefs::new(options.budget_zone);
        match url {
            DbUrl::Sqlite(path) => {
                let mut config = ManagerConfig::default();
                config.custom_setup = Box::new(|url| Box::pin(open_sqlite(url.to_owned())));
                config.recycling_method = RecyclingMethod::Fast;
                let manager = AsyncDieselConnectionManager::<SqliteConn>::new_with_config(path, config);
                let pool = Pool::builder(manager)
                    .max_size(options.max_connections)
                    .timeouts(timeouts)
                    .runtime(deadpool::Runtime::Tokio1)
                    .build()?;
                let writer = writer::SqliteWriter::new(open_sqlite_writer(path.clone()).await?, {
                    let path = path.clone();
                    move || open_sqlite_sync(&path, "")
                })?;
                let engine = engine::Engine::start(writer.clone(), budgets).await?;
                Ok(Db::Sqlite { pool, writer, engine })
            }
            DbUrl::Postgres(url) => {
                // A checkout is not verified with a `SELECT 1` round trip (one statement in eight
                // of a bench run). A connection PostgreSQL closed is known closed by its own task
                // and replaced at checkout; one that breaks later fails its query like any outage.
                let mut config = ManagerConfig::default();
                config.recycling_method = RecyclingMethod::Fast;
                let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
                let pool = Pool::builder(manager)
                    .max_size(options.max_connections)
                    .timeouts(timeouts)
                    .runtime(deadpool::Runtime::Tokio1)
                    .build()?;
                let engine = leases::LeaseEngine::start(pool.clone(), budgets);
                Ok(Db::Postgres { pool, engine })
            }
        }
    }

    /// The pool's state, for `/metrics`.
    pub fn pool_status(&self) -> crate::metrics::PoolGauges {
        let status = match self {
            Db::Sqlite { pool, .. } => pool.status(),
            Db::Postgres { pool, .. } => pool.status(),
        };
        crate::metrics::PoolGauges {
            in_use: status.size.saturating_sub(status.available),
            idle: status.available,
            max: status.max_size,
            waiting: status.waiting,
        }
    }

    /// Whether a connection can be had and answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Db::Sqlite { pool, .. } => pool.get().await.map_err(pool_error)?.batch_execute("SELECT 1").await,
            Db::Postgres { pool, .. } => pool.get().await.map_err(pool_error)?.batch_execute("SELECT 1").await,
        }
        .map_err(|e| StoreError::Unavailable(Detail::caused_by(e)))
    }
}

fn deadpool_timeouts(wait: Duration) -> deadpool::managed::Timeouts {
    deadpool::managed::Timeouts { wait: Some(wait), create: Some(wait), recycle: Some(wait) }
}

async fn open_sqlite(path: String) -> diesel::ConnectionResult<SqliteConn> {
    let mut conn = SqliteConn::establish(&path).await?;
    conn.batch_execute(SQLITE_PRAGMAS).await.map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

/// The write connection: [`SQLITE_PRAGMAS`], and no checkpoint on commit (a thread of the writer's
/// own checkpoints instead).
async fn open_sqlite_writer(path: String) -> anyhow::Result<SqliteConnection> {
    tokio::task::spawn_blocking(move || open_sqlite_sync(&path, "PRAGMA wal_autocheckpoint = 0;")).await?
}

/// A plain connection with [`SQLITE_PRAGMAS`] and then `more`.
pub(super) fn open_sqlite_sync(path: &str, more: &str) -> anyhow::Result<SqliteConnection> {
    use diesel::Connection;
    let mut conn = SqliteConnection::establish(path)?;
    diesel::connection::SimpleConnection::batch_execute(&mut conn, &format!("{SQLITE_PRAGMAS} {more}"))?;
    Ok(conn)
}

/// Sets SQLite's process-wide options, once, before the first connection opens (SQLite refuses
/// them afterwards, and then keeps its defaults: the options only save time):
///
/// - multi-thread mode instead of serialized: no mutex around every call on a connection. A
///   diesel connection is never used by two threads at once (it is not `Sync`), which is all
///   this mode asks.
/// - no memory statistics: SQLite otherwise takes a global mutex for every allocation it makes,
///   to count it, and the usage log and the credit engine's batches allocate for every value they
///   bind (the profile at 64 connections: 2.7 % of the gateway's CPU time in that locking).
fn configure_sqlite() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: both options take an int (or nothing); `sqlite3_config` is documented to be
        // called before `sqlite3_initialize`, and answers SQLITE_MISUSE, changing nothing, after.
        let codes = unsafe {
            [
                libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MULTITHREAD),
                libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS, 0 as std::ffi::c_int),
            ]
        };
        if codes.iter().any(|code| *code != libsqlite3_sys::SQLITE_OK) {
            tracing::debug!(?codes, "SQLite was initialised before its options could be set; it keeps its defaults");
        }
    });
}

/// Applies pending migrations (used at start-up and by `apihub migrate`); returns how many ran.
pub async fn migrate(url: &DbUrl) -> anyhow::Result<usize> {
    if matches!(url, DbUrl::Sqlite(_)) {
        configure_sqlite();
    }
    let url = url.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
        use diesel::Connection;
        let applied = match &url {
            DbUrl::Sqlite(path) => {
                if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                let mut conn = SqliteConnection::establish(path)?;
                diesel::connection::SimpleConnection::batch_execute(
                    &mut conn,
                    // Foreign keys off (SQLite's default, said out loud): a migration that rebuilds a
                    // table drops the old one, which must not cascade to the rows that refer to it.
                    &format!(
                        "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA foreign_keys = OFF;"
                    ),
                )?;
                conn.run_pending_migrations(SQLITE_MIGRATIONS).map_err(|e| anyhow::anyhow!(e))?.len()
            }
            DbUrl::Postgres(url) => {
                let mut conn = <diesel_async::async_connection_wrapper::AsyncConnectionWrapper<AsyncPgConnection> as Connection
                >::establish(url)?;
                // Gateways sharing a database may start together: one migrates while the others
                // wait on this lock, then find nothing left to do. It ends with the connection.
                diesel::connection::SimpleConnection::batch_execute(
                    &mut conn,
                    &format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"),
                )?;
                conn.run_pending_migrations(POSTGRES_MIGRATIONS).map_err(|e| anyhow::anyhow!(e))?.len()
            }
        };
        Ok(applied)
    })
    .await?
}
