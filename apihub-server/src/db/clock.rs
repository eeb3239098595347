//! Time in the stored form (Unix milliseconds): now by this process's clock or by the database's,
//! and a stored timestamp read back.

use chrono::{DateTime, TimeZone, Utc};

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
