//! The write connection's [`SpawnBlocking`]: every statement runs at once on the calling thread,
//! and a block of statements (a transaction or savepoint) is driven to its end in one poll.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use apihub_core::store::{Detail, StoreError};
use diesel::SqliteConnection;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel_async::sync_connection_wrapper::SpawnBlocking;
use futures_util::future::BoxFuture;

use super::WriteConn;
use crate::db::TxError;

/// A [`SpawnBlocking`] that runs the task at once, on the caller's thread.
pub(crate) struct Inline;

impl SpawnBlocking for Inline {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> BoxFuture<'a, Result<R, Box<dyn std::error::Error + Send + Sync + 'static>>>
    where
        R: Send + 'static,
    {
        Box::pin(std::future::ready(Ok(task())))
    }

    fn get_runtime() -> Self {
        Inline
    }
}

/// Polls `future` once: on [`WriteConn`] every query is ready at once, so a block of queries
/// finishes in one poll. `None` would mean the block awaited something else.
pub(super) fn run_now<F: Future>(future: F) -> Option<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

pub(super) fn suspended() -> StoreError {
    StoreError::Internal("a SQLite write suspended on the inline connection".into())
}

/// Runs `step` on the inner connection (begin, commit or roll back a transaction or savepoint).
pub(super) fn raw<R: Send + 'static>(
    conn: &mut WriteConn,
    step: impl FnOnce(&mut SqliteConnection) -> diesel::QueryResult<R> + Send + 'static,
) -> Result<R, StoreError> {
    run_now(conn.spawn_blocking(step)).ok_or_else(suspended)?.map_err(|e| StoreError::Internal(Detail::caused_by(e)))
}

/// Runs `statements` on the inner connection with diesel's synchronous API, whose statement cache
/// builds no SQL text for a statement with a static query id ([`Prepared`]); the async wrapper
/// builds every statement's text (and copies its values) to carry it to the connection's thread.
///
/// [`Prepared`]: crate::db::cached::Prepared
pub(crate) fn direct<R: Send + 'static>(
    conn: &mut WriteConn,
    statements: impl FnOnce(&mut SqliteConnection) -> diesel::QueryResult<R> + Send + 'static,
) -> Result<R, TxError> {
    run_now(conn.spawn_blocking(statements)).ok_or_else(|| TxError(suspended()))?.map_err(TxError::from)
}

/// Runs `body` in a transaction (or, inside one, a savepoint) opened by `begin`: committed when it
/// returns `Ok`, rolled back otherwise.
pub(super) fn scoped<T, E>(
    conn: &mut WriteConn,
    begin: impl FnOnce(&mut SqliteConnection) -> diesel::QueryResult<()> + Send + 'static,
    body: impl AsyncFnOnce(&mut WriteConn) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<StoreError>,
{
    raw(conn, begin)?;
    let result = run_now(body(conn)).unwrap_or_else(|| Err(E::from(suspended())));
    match result {
        Ok(value) => {
            if let Err(error) = raw(conn, AnsiTransactionManager::commit_transaction) {
                // A failed COMMIT leaves the transaction open: end it before reporting.
                let _ = raw(conn, AnsiTransactionManager::rollback_transaction);
                return Err(E::from(error));
            }
            Ok(value)
        }
        Err(error) => {
            raw(conn, AnsiTransactionManager::rollback_transaction)?;
            Err(error)
        }
    }
}
