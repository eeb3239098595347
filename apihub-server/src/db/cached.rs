//! Prepared-statement caching for the request path's `UPDATE` and `INSERT` statements.
//!
//! diesel never caches an `UPDATE` or an `INSERT` of a struct (a changeset or a value may be
//! left out, so one call site can yield several SQL texts), and SQLite then parses and plans each
//! such statement again on every call: most of the cost of a hold or a settlement. The texts of
//! the statements wrapped in [`Cached`] are fixed, and both backends key their statement cache on
//! the SQL text itself (the wrapper has no static query id), so caching them is sound.
//!
//! Keyed by its SQL text, a cached statement still has its text built on every call to be looked
//! up (a few dozen small allocations for a wide `INSERT`). The statements written once per
//! proxied request (a usage-log row; on SQLite a ledger consume row) use [`Prepared`] instead:
//! keyed by a marker type of their call site, their lookup builds no text on PostgreSQL, nor on
//! SQLite when run through diesel's synchronous API (`writer::direct`; the async wrapper builds
//! the text of everything it runs, to carry it to the connection's thread, so a [`Prepared`] run
//! through it saves nothing).

use std::marker::PhantomData;

use diesel::QueryResult;
use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};

/// A statement that may be kept prepared, keyed by its SQL text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cached<Q>(pub Q);

impl<Q> QueryId for Cached<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Cached<Q> {
    type SqlType = Q::SqlType;
}

impl<Q: QueryFragment<DB>, DB: Backend> QueryFragment<DB> for Cached<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

/// A statement kept prepared under the marker type `M`: diesel's statement cache is then keyed by
/// `M` and builds no SQL text to look it up.
///
/// Sound only where every statement wrapped with one `M` has the same SQL text: one call site per
/// marker, no left-out values (a derived `Insertable` leaves out a `None`: with `Option` fields,
/// every column named, as `column.eq(value)`), no `IN` lists. `db::usage`'s test compares the
/// texts of two rows that differ in every value.
pub(crate) struct Prepared<M, Q>(pub Q, PhantomData<M>);

// diesel's synchronous `execute` and `load`, for `writer::direct`.
impl<M, Q, Conn> diesel::RunQueryDsl<Conn> for Prepared<M, Q> {}

impl<M, Q> Prepared<M, Q> {
    pub(crate) fn new(query: Q) -> Self {
        Prepared(query, PhantomData)
    }
}

impl<M: 'static, Q> QueryId for Prepared<M, Q> {
    type QueryId = M;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<M, Q: Query> Query for Prepared<M, Q> {
    type SqlType = Q::SqlType;
}

impl<M, Q: QueryFragment<DB>, DB: Backend> QueryFragment<DB> for Prepared<M, Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}
