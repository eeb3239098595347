//! The query macros: a block run once per backend ([`with_conn!`], [`write_tx!`], [`write_op!`],
//! [`pg_tx!`]), a page of a listing ([`load_page!`]) and a saturating counter update
//! ([`saturating_add!`]).

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
///
/// [`writer`]: super::writer
/// [`writer::Answer`]: super::writer::Answer
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
