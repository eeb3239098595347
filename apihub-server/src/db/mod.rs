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

use std::sync::Arc;

use apihub_core::store::{Detail, StoreError};
use diesel::SqliteConnection;
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::deadpool::{Pool, PoolError};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;

mod billing;
pub mod budgets;
mod cached;
mod channels;
mod clock;
mod connect;
pub mod engine;
mod keys;
mod lease_writes;
pub mod leases;
mod ledger;
mod macros;
mod multi_row;
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

pub(crate) use clock::{DbNowMillis, from_millis, now_millis};
pub use connect::{DbUrl, PoolOptions, migrate};
pub(crate) use macros::{load_page, pg_tx, saturating_add, with_conn, write_op, write_tx};
pub(crate) use writer::spawn_on_own_thread;

type SqliteConn = SyncConnectionWrapper<SqliteConnection>;

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
    /// Whether this is the embedded SQLite database.
    pub fn is_sqlite(&self) -> bool {
        matches!(self, Db::Sqlite { .. })
    }

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
            other => StoreError::Internal(Detail::caused_by(other)),
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
    StoreError::Unavailable(Detail::caused_by(error))
}

/// A stored value that does not map back to the domain: the database was edited by hand.
pub(crate) fn corrupt(what: &str, value: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("stored {what} `{value}` is not valid").into())
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
