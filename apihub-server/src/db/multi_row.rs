//! Multi-row `INSERT`s for the rows written once per proxied request (a usage-log row; on SQLite
//! a ledger consume row).
//!
//! Per row, running a prepared statement costs diesel a walk of its whole query (to check it may
//! be cached, to look it up, to bind) and SQLite a statement step and reset, each about as much as
//! writing the row; one statement for [`ROWS_PER_INSERT`] rows pays them once. Such a statement is
//! prepared under a marker type ([`Prepared`](super::cached::Prepared)), so it must always have one
//! text: a batch's remainder goes in one row at a time.

use diesel::QueryResult;
use diesel::backend::Backend;
use diesel::query_builder::AstPass;

/// Rows in one multi-row `INSERT`: at most 64 × 23 = 1,472 parameters (the usage log's), far
/// below both databases' limits.
pub(super) const ROWS_PER_INSERT: usize = 64;

/// Pushes `INSERT INTO table (columns…) VALUES (…), (…)`, one parenthesis per row of `rows`, whose
/// values `bind` pushes in `columns`' order (separated by `, `). Identifiers are quoted as diesel
/// quotes them, so one row gives exactly the text of diesel's own one-row insert.
pub(super) fn push_insert<'b, DB: Backend, R>(
    out: &mut AstPass<'_, 'b, DB>,
    table: &str,
    columns: &[&str],
    rows: &'b [R],
    mut bind: impl FnMut(&mut AstPass<'_, 'b, DB>, &'b R) -> QueryResult<()>,
) -> QueryResult<()> {
    out.push_sql("INSERT INTO ");
    out.push_identifier(table)?;
    out.push_sql(" (");
    for (at, column) in columns.iter().enumerate() {
        out.push_sql(if at == 0 { "" } else { ", " });
        out.push_identifier(column)?;
    }
    out.push_sql(") VALUES ");
    for (at, row) in rows.iter().enumerate() {
        out.push_sql(if at == 0 { "(" } else { ", (" });
        bind(out, row)?;
        out.push_sql(")");
    }
    Ok(())
}
