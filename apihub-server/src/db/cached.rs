//! Prepared-statement caching for the request path's `UPDATE` and `INSERT` statements.
//!
//! diesel never caches an `UPDATE` or an `INSERT` of a struct (a changeset or a value may be
//! left out, so one call site can yield several SQL texts), and SQLite then parses and plans each
//! such statement again on every call: most of the cost of a hold or a settlement. The texts of
//! the statements wrapped in [`Cached`] are fixed, and both backends key their statement cache on
//! the SQL text itself (the wrapper has no static query id), so caching them is sound.

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
