//! Storage on SQLite (embedded, the default) or PostgreSQL, behind apihub-core's storage traits.
//!
//! Both backends share one diesel schema and one body of query code: [`with_conn!`] and
//! [`write_tx!`] expand a block once per backend, so every query is written once and compiled
//! twice. On SQLite a write transaction starts with `BEGIN IMMEDIATE` (the write lock is taken up
//! front, so two writers never deadlock into "database is locked") on the process's one write
//! connection, whose statements run without a hop to the blocking pool, and the request path's
//! writes share group commits ([`writer`], [`write_op!`]). On PostgreSQL every
//! balance change is one conditional `UPDATE … WHERE balance + delta >= 0`, which row-locks and
//! re-checks under concurrency.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use apihub_core::store::StoreError;
use chrono::{DateTime, TimeZone, Utc};
use diesel::SqliteConnection;
use diesel_async::pooled_connection::deadpool::{Pool, PoolError};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

mod billing;
pub mod budgets;
mod cached;
mod channels;
pub mod engine;
mod keys;
mod lease_writes;
pub mod leases;
mod ledger;
mod prices;
mod recharge;
mod redemption;
mod request_log;
mod routes;
pub mod schema;
mod stats;
mod usage;
mod users;
mod writer;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// The PostgreSQL advisory lock held while migrating (an arbitrary constant: "apihub" in ASCII).
const MIGRATION_LOCK: i64 = 0x6170_6968_7562;

/// How long a SQLite connection waits for a lock held by another process before failing.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;

type SqliteConn = SyncConnectionWrapper<SqliteConnection>;

/// Every SQLite connection's settings (10 s: `SQLITE_BUSY_TIMEOUT_MS`).
const SQLITE_PRAGMAS: &str =
    "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;";

/// A connection pool to one of the two backends.
#[derive(Clone)]
pub enum Db {
    /// Embedded SQLite: `pool` for reads, `writer` the one connection every write goes through,
    /// `engine` the credit engine that holds and settles in memory (the only process writing the
    /// file is the only one spending its credit).
    Sqlite { pool: Pool<SqliteConn>, writer: Arc<writer::SqliteWriter>, engine: Arc<engine::Engine> },
    /// PostgreSQL through diesel-async's native connection.
    /// `engine` the credit engine that holds and settles from this gateway's credit leases.
    Postgres { pool: Pool<AsyncPgConnection>, engine: Arc<leases::LeaseEngine> },
}

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
                let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
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
        .map_err(|e| StoreError::Unavailable(e.to_string()))
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
fn open_sqlite_sync(path: &str, more: &str) -> anyhow::Result<SqliteConnection> {
    use diesel::Connection;
    let mut conn = SqliteConnection::establish(path)?;
    diesel::connection::SimpleConnection::batch_execute(&mut conn, &format!("{SQLITE_PRAGMAS} {more}"))?;
    Ok(conn)
}

/// Applies pending migrations (used at start-up and by `apihub migrate`); returns how many ran.
pub async fn migrate(url: &DbUrl) -> anyhow::Result<usize> {
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

/// The diesel implementation of every storage trait.
#[derive(Clone)]
pub struct SqlStore {
    pub(crate) db: Db,
}

impl SqlStore {
    /// Wraps a pool.
    pub fn new(db: Db) -> Self {
        SqlStore { db }
    }

    /// The pool, for health checks.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The credit engine, on SQLite.
    pub(crate) fn engine(&self) -> Option<&Arc<engine::Engine>> {
        match &self.db {
            Db::Sqlite { engine, .. } => Some(engine),
            Db::Postgres { .. } => None,
        }
    }

    /// The credit engine, on PostgreSQL.
    pub(crate) fn leases(&self) -> Option<&Arc<leases::LeaseEngine>> {
        match &self.db {
            Db::Postgres { engine, .. } => Some(engine),
            Db::Sqlite { .. } => None,
        }
    }

    /// Runs an account write that changes balances or key rows, so that the credit engine (on
    /// SQLite) reads back what it `touched` (see [`engine::Engine::account_write`]).
    pub(crate) async fn account_write<T>(
        &self,
        debiting: Option<engine::Debiting>,
        write: impl AsyncFnOnce() -> Result<T, StoreError>,
        touched: impl FnOnce(&T) -> engine::Touched,
    ) -> Result<T, StoreError> {
        match &self.db {
            Db::Sqlite { engine, .. } => engine.account_write(debiting, write, touched).await,
            Db::Postgres { engine, .. } => {
                // Leased credit is reserved: give this gateway's idle lease back before a debit.
                if let Some(engine::Debiting { user_id, .. }) = debiting {
                    engine.revoke_user(user_id).await?;
                }
                write().await
            }
        }
    }
}

impl Db {
    /// Write transactions this process has begun (SQLite's one write connection); `None` on
    /// PostgreSQL, whose `pg_stat_database` counts them for every node.
    pub fn write_transactions(&self) -> Option<u64> {
        match self {
            Db::Sqlite { writer, .. } => Some(writer.transactions()),
            Db::Postgres { .. } => None,
        }
    }

    /// Writes every settlement still queued in memory.
    pub async fn flush(&self) -> Result<(), StoreError> {
        match self {
            Db::Sqlite { engine, .. } => engine.flush().await,
            Db::Postgres { engine, .. } => engine.flush().await,
        }
    }

    /// At shutdown: writes every settlement still queued in memory and (on PostgreSQL) gives
    /// back this gateway's credit leases, so other gateways can sell that credit at once.
    pub async fn close(&self) -> Result<(), StoreError> {
        match self {
            Db::Sqlite { engine, .. } => engine.flush().await,
            Db::Postgres { engine, .. } => engine.give_back_all().await,
        }
    }
}

/// An error inside a query block: diesel's own, or a domain refusal that must roll back.
#[derive(Debug)]
pub(crate) struct TxError(pub StoreError);

impl From<diesel::result::Error> for TxError {
    fn from(error: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        TxError(match error {
            Error::NotFound => StoreError::NotFound,
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                StoreError::Conflict(info.message().to_owned())
            }
            // A row naming one that does not exist (a key for an unknown user): not found, as
            // the storage traits promise, not a database failure.
            Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => StoreError::NotFound,
            // PostgreSQL cannot hold NUL in text (SQLSTATE 22021, or 22P05 in JSON); the value
            // came from the request, so this is the client's error, not ours.
            Error::DatabaseError(DatabaseErrorKind::Unknown, info)
                if info.message().contains("0x00") || info.message().contains("\\u0000") =>
            {
                StoreError::Invalid("text must not contain NUL characters".into())
            }
            other => StoreError::Internal(other.to_string()),
        })
    }
}

impl From<StoreError> for TxError {
    fn from(error: StoreError) -> Self {
        TxError(error)
    }
}

impl From<apihub_core::ledger::LedgerError> for TxError {
    fn from(error: apihub_core::ledger::LedgerError) -> Self {
        TxError(StoreError::Ledger(error))
    }
}

pub(crate) fn pool_error(error: PoolError) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

/// Runs `$body` with `$conn: &mut Connection` on whichever backend the store uses.
/// The body evaluates to `Result<T, TxError>`; the macro yields `Result<T, StoreError>`.
///
/// `with_conn!(lagging store, …)` skips the wait for the credit engine's unwritten settlements:
/// for the request path's key lookup, whose usage counters the engine itself enforces (a lookup
/// then never waits for a batch write).
macro_rules! with_conn {
    (lagging $store:expr, |$conn:ident| $body:expr) => {
        $crate::db::with_conn!(@ $store, false, |$conn| $body)
    };
    ($store:expr, |$conn:ident| $body:expr) => {
        $crate::db::with_conn!(@ $store, true, |$conn| $body)
    };
    (@ $store:expr, $settled:expr, |$conn:ident| $body:expr) => {{
        let result: Result<_, $crate::db::TxError> = async {
            match &$store.db {
                $crate::db::Db::Sqlite { pool, writer, engine } => {
                    // Never older than what a write was answered with, or a settlement made.
                    writer.visible().await;
                    if $settled {
                        engine.caught_up().await;
                    }
                    let mut guard = pool.get().await.map_err($crate::db::pool_error)?;
                    let $conn = &mut *guard;
                    $body
                }
                $crate::db::Db::Postgres { pool, engine } => {
                    if $settled {
                        engine.caught_up().await;
                    }
                    let mut guard = pool.get().await.map_err($crate::db::pool_error)?;
                    let $conn = &mut *guard;
                    $body
                }
            }
        }
        .await;
        result.map_err(|e| e.0)
    }};
}

/// Runs `$body` inside one write transaction (`BEGIN IMMEDIATE` on SQLite); an `Err` rolls back.
macro_rules! write_tx {
    ($store:expr, |$conn:ident| $body:expr) => {
        $crate::db::write_tx!($store, $crate::db::TxError, |$conn| $body)
    };
    // With an explicit error type `$error`: a newtype whose `.0` is what the macro yields, with
    // `From<diesel::result::Error>` and `From<StoreError>` (for pool errors).
    ($store:expr, $error:ty, |$conn:ident| $body:expr) => {{
        let result: Result<_, $error> = async {
            match &$store.db {
                $crate::db::Db::Sqlite { writer, .. } => writer.transaction(async |$conn| $body).await,
                $crate::db::Db::Postgres { pool, .. } => $crate::db::pg_tx!(pool, $error, |$conn| $body),
            }
        }
        .await;
        result.map_err(|e| e.0)
    }};
}

/// [`write_tx!`] for the request path's writes: on SQLite the body (`move`: it owns what it uses)
/// joins the next group commit ([`writer`]), in a savepoint of its own, and its caller hears the
/// result when `$answer` ([`writer::Answer`]) says; on PostgreSQL it is its own transaction, as
/// with `write_tx!`.
macro_rules! write_op {
    ($store:expr, $answer:ident, $error:ty, move |$conn:ident| $body:expr) => {{
        let result: Result<_, $error> = match &$store.db {
            $crate::db::Db::Sqlite { writer, .. } => {
                writer
                    .batched($crate::db::writer::Answer::$answer, async move |$conn| -> Result<_, $error> { $body })
                    .await
            }
            $crate::db::Db::Postgres { pool, .. } => async { $crate::db::pg_tx!(pool, $error, |$conn| $body) }.await,
        };
        result.map_err(|e| e.0)
    }};
}

/// One PostgreSQL transaction on a pooled connection; evaluates to `Result<_, $error>`.
macro_rules! pg_tx {
    ($pool:expr, $error:ty, |$conn:ident| $body:expr) => {{
        let mut guard = $pool.get().await.map_err(|e| <$error>::from($crate::db::pool_error(e)))?;
        diesel_async::AsyncConnection::transaction(&mut *guard, async |$conn| $body).await
    }};
}

/// One page of a listing, newest first (`$order`), with the count of every match.
///
/// `$query` builds the boxed, filtered query; it is expanded twice, once to count and once to
/// load the page, so both always apply the same filters. Rows map to the domain with
/// `<$row>::into_domain`; the macro evaluates to `Result<Page<_>, StoreError>`.
macro_rules! load_page {
    ($store:expr, $page:expr, $query:expr, $order:expr, $row:ty) => {{
        let page: apihub_core::store::PageRequest = $page;
        let loaded: Result<(Vec<$row>, i64), apihub_core::store::StoreError> = $crate::db::with_conn!($store, |conn| {
            let total = $query.count().get_result(conn).await?;
            let rows = $query
                .order($order)
                .offset(page.offset())
                .limit(page.limit())
                .select(<$row>::as_select())
                .load(conn)
                .await?;
            Ok((rows, total))
        });
        loaded.and_then(|(rows, total)| {
            let items = rows.into_iter().map(<$row>::into_domain).collect::<Result<_, _>>()?;
            Ok(apihub_core::store::Page { items, total: total as u64, request: page })
        })
    }};
}

/// `$column + $amount` for an `UPDATE` of a `BIGINT` counter (`$amount`, an `i64`, counted from
/// 0 when negative), stopping at `i64::MAX` instead of failing the statement ("bigint out of
/// range" on PostgreSQL, "integer overflow" on SQLite): a key's `tokens_used` and `quota_used` and
/// a user's `total_consumed` are sums of every call, and a failed settlement would strand its hold.
macro_rules! saturating_add {
    ($column:expr, $amount:expr) => {{
        let amount: i64 = ::std::cmp::max($amount, 0);
        diesel::dsl::case_when($column.le(i64::MAX - amount), $column + amount)
            .otherwise(diesel::IntoSql::into_sql::<diesel::sql_types::BigInt>(i64::MAX))
    }};
}

pub(crate) use {load_page, pg_tx, saturating_add, with_conn, write_op, write_tx};

/// Now, in the stored form (Unix milliseconds).
pub(crate) fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}

/// Now by the database's clock, in the stored form (Unix milliseconds): for what several nodes
/// compare (a hold's age), so that no node's clock decides for another's.
#[derive(Debug, Clone, Copy, diesel::query_builder::QueryId)]
pub(crate) struct DbNowMillis;

impl diesel::Expression for DbNowMillis {
    type SqlType = diesel::sql_types::BigInt;
}

impl<QS> diesel::AppearsOnTable<QS> for DbNowMillis {}

impl<QS> diesel::SelectableExpression<QS> for DbNowMillis {}

impl diesel::expression::ValidGrouping<()> for DbNowMillis {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

impl diesel::query_builder::QueryFragment<diesel::sqlite::Sqlite> for DbNowMillis {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::sqlite::Sqlite>,
    ) -> diesel::QueryResult<()> {
        out.push_sql("CAST(unixepoch('subsec') * 1000 AS INTEGER)");
        Ok(())
    }
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for DbNowMillis {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        out.push_sql("CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)");
        Ok(())
    }
}

/// Reads a stored timestamp.
pub(crate) fn from_millis(millis: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(millis).single().unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A stored value that does not map back to the domain: the database was edited by hand.
pub(crate) fn corrupt(what: &str, value: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("stored {what} `{value}` is not valid"))
}

/// Escapes `%`, `_` and `\` for a LIKE pattern with `\` as the escape character.
pub(crate) fn like_pattern(search: &str) -> String {
    let mut out = String::with_capacity(search.len() + 2);
    out.push('%');
    for c in search.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

diesel::define_sql_function! {
    /// SQL `lower(text)`.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}
