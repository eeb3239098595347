//! One batch of debits in the database: SQLite's statements, and what both backends build from a
//! batch (PostgreSQL's statements are in `lease_writes`): the totals, the ledger's consume rows and
//! their multi-row insert.

use std::sync::Arc;

use apihub_core::credit::{Debit, MeterId};
use apihub_core::ledger::{MAX_DESCRIPTION_LEN, TxType};
use apihub_core::policy::KeyId;
use apihub_core::user::UserId;
use diesel::backend::Backend;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, HasSqlType, Text};
use diesel_async::RunQueryDsl;

use crate::db::cached::{Cached, Prepared};
use crate::db::multi_row::{push_insert, slices, with_slice_marker};
use crate::db::schema::{api_keys, budget_windows, budgets, transactions, users};
use crate::db::{TxError, now_millis, saturating_add};

/// The consume-row insert of `N` rows returning the order numbers it inserted (one text: see
/// [`Prepared`]): PostgreSQL's.
pub(in crate::db) struct ConsumeChunkInsert<const N: usize>;

/// The consume-row insert of `N` rows returning nothing (SQLite's: see [`ConsumeRows::counted`]).
pub(in crate::db) struct ConsumeChunkAppend<const N: usize>;

/// Consume rows as one `INSERT … ON CONFLICT (tx_type, order_no) DO NOTHING` (see
/// [`multi_row`](crate::db::multi_row)), bound as diesel's one-row insert binds them.
pub(in crate::db) struct ConsumeRows<'a> {
    rows: &'a [ConsumeRow],
    returning: bool,
}

impl<'a> ConsumeRows<'a> {
    /// Returning the order numbers of the rows it inserted: those it skipped already had theirs
    /// in the ledger.
    pub(in crate::db) fn returning(rows: &'a [ConsumeRow]) -> Self {
        ConsumeRows { rows, returning: true }
    }

    /// Returning nothing: the count of rows inserted tells whether one was skipped. On SQLite a
    /// `RETURNING` clause costs an ephemeral table and, in diesel, three allocations a row.
    pub(in crate::db) fn counted(rows: &'a [ConsumeRow]) -> Self {
        ConsumeRows { rows, returning: false }
    }
}

impl QueryId for ConsumeRows<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for ConsumeRows<'_> {
    type SqlType = Text;
}

impl<DB> QueryFragment<DB> for ConsumeRows<'_>
where
    DB: Backend + HasSqlType<Text> + HasSqlType<BigInt>,
    i64: ToSql<BigInt, DB>,
    str: ToSql<Text, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        use transactions::*;
        let names = [
            user_id::NAME,
            tx_type::NAME,
            amount::NAME,
            balance_before::NAME,
            balance_after::NAME,
            order_no::NAME,
            description::NAME,
            created_at::NAME,
        ];
        push_insert(&mut out, "transactions", &names, self.rows, |out, row| {
            out.push_bind_param::<BigInt, _>(&row.user_id)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(row.tx_type)?;
            for value in [&row.amount, &row.balance_before, &row.balance_after] {
                out.push_sql(", ");
                out.push_bind_param::<BigInt, _>(value)?;
            }
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(&*row.order_no)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(&*row.description)?;
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(&row.created_at)
        })?;
        out.push_sql(" ON CONFLICT (");
        out.push_identifier(tx_type::NAME)?;
        out.push_sql(", ");
        out.push_identifier(order_no::NAME)?;
        out.push_sql(") DO NOTHING");
        if self.returning {
            out.push_sql(" RETURNING ");
            out.push_identifier(order_no::NAME)?;
        }
        Ok(())
    }
}

/// A consume row of the ledger, as a batch of settlements writes it. Its texts are the debit's
/// own (shared, not copied) unless renumbered or cut to the longest description.
#[derive(Clone)]
pub(in crate::db) struct ConsumeRow {
    user_id: i64,
    tx_type: &'static str,
    amount: i64,
    balance_before: i64,
    balance_after: i64,
    order_no: Arc<str>,
    description: Arc<str>,
    created_at: i64,
}

/// [`ConsumeRow::values`]: the row as diesel inserts it.
type ConsumeValues<'a> = (
    diesel::dsl::Eq<transactions::user_id, i64>,
    diesel::dsl::Eq<transactions::tx_type, &'a str>,
    diesel::dsl::Eq<transactions::amount, i64>,
    diesel::dsl::Eq<transactions::balance_before, i64>,
    diesel::dsl::Eq<transactions::balance_after, i64>,
    diesel::dsl::Eq<transactions::order_no, &'a str>,
    diesel::dsl::Eq<transactions::description, &'a str>,
    diesel::dsl::Eq<transactions::created_at, i64>,
);

impl ConsumeRow {
    pub(in crate::db) fn order_no(&self) -> &str {
        &self.order_no
    }

    /// The row as an insert's values (a row inserted again renumbered), in the chunk insert's
    /// column order.
    pub(in crate::db) fn values(&self) -> ConsumeValues<'_> {
        use transactions::*;
        (
            user_id.eq(self.user_id),
            tx_type.eq(self.tx_type),
            amount.eq(self.amount),
            balance_before.eq(self.balance_before),
            balance_after.eq(self.balance_after),
            order_no.eq(&*self.order_no),
            description.eq(&*self.description),
            created_at.eq(self.created_at),
        )
    }

    /// Numbers the row as its debit's request id with the debit's sequence number appended (as
    /// [`consume_rows`] numbers a request id repeated within `batch`): its request id was in the
    /// ledger already.
    pub(in crate::db) fn renumber(&mut self, batch: &[Debit]) {
        let seq = batch.iter().find(|d| d.request_id == self.order_no).map_or(0, |d| d.seq);
        self.order_no = Arc::from(format!("{}#{seq}", self.order_no));
    }
}

/// Consume rows as columns, each bound as one array of PostgreSQL's plain insert
/// (`INSERT … SELECT … FROM unnest(…)`, in `lease_writes`), the texts borrowed from the rows.
#[derive(Default)]
pub(in crate::db) struct ConsumeColumns<'a> {
    pub(in crate::db) user_id: Vec<i64>,
    pub(in crate::db) tx_type: Vec<&'a str>,
    pub(in crate::db) amount: Vec<i64>,
    pub(in crate::db) balance_before: Vec<i64>,
    pub(in crate::db) balance_after: Vec<i64>,
    pub(in crate::db) order_no: Vec<&'a str>,
    pub(in crate::db) description: Vec<&'a str>,
    pub(in crate::db) created_at: Vec<i64>,
}

impl<'a> ConsumeColumns<'a> {
    pub(in crate::db) fn of(rows: &'a [ConsumeRow]) -> Self {
        let mut columns = ConsumeColumns::default();
        for row in rows {
            columns.user_id.push(row.user_id);
            columns.tx_type.push(row.tx_type);
            columns.amount.push(row.amount);
            columns.balance_before.push(row.balance_before);
            columns.balance_after.push(row.balance_after);
            columns.order_no.push(&row.order_no);
            columns.description.push(&row.description);
            columns.created_at.push(row.created_at);
        }
        columns
    }
}

/// A key's totals in a batch: charge (micros), tokens, calls, successful calls.
pub(in crate::db) type KeyTotal = (KeyId, [i64; 4]);

/// A batch's users and keys in the order first seen, with their totals: per user the charge;
/// per key the charge, tokens, calls and successful calls.
pub(in crate::db) fn batch_totals(batch: &[Debit]) -> (Vec<(UserId, i64)>, Vec<KeyTotal>) {
    let mut user_totals: Vec<(UserId, i64)> = Vec::new();
    let mut key_totals: Vec<KeyTotal> = Vec::new();
    for debit in batch {
        match user_totals.iter_mut().find(|(id, _)| *id == debit.user_id) {
            Some((_, total)) => *total = total.saturating_add(debit.charge.micros()),
            None => user_totals.push((debit.user_id, debit.charge.micros())),
        }
        let add = [debit.charge.micros(), debit.tokens, 1, i64::from(debit.success)];
        match key_totals.iter_mut().find(|(id, _)| *id == debit.key_id) {
            Some((_, total)) => total.iter_mut().zip(add).for_each(|(t, a)| *t = t.saturating_add(a)),
            None => key_totals.push((debit.key_id, add)),
        }
    }
    (user_totals, key_totals)
}

/// Appends to `rows` a user's consume rows for a batch, with running balances ending at `balance`
/// (the balance after the batch's `total`). A request id repeated within the batch (`taken`: those
/// seen so far; a library caller reusing ids) gets the debit's sequence number appended.
pub(in crate::db) fn consume_rows<'a>(
    batch: &'a [Debit],
    user_id: UserId,
    (balance, total): (i64, i64),
    taken: &mut std::collections::HashSet<&'a str>,
    now: i64,
    rows: &mut Vec<ConsumeRow>,
) {
    let mut running = balance.saturating_add(total);
    for debit in batch.iter().filter(|d| d.user_id == user_id && d.charge.is_positive()) {
        let charge = debit.charge.micros();
        let order_no = if taken.insert(&debit.request_id) {
            debit.request_id.clone()
        } else {
            Arc::from(format!("{}#{}", debit.request_id, debit.seq))
        };
        rows.push(ConsumeRow {
            user_id,
            tx_type: TxType::Consume.as_str(),
            amount: -charge,
            balance_before: running,
            balance_after: running.saturating_sub(charge),
            order_no,
            description: truncated(&debit.description),
            created_at: now,
        });
        running = running.saturating_sub(charge);
    }
}

/// `description` cut to the longest a ledger row keeps ([`MAX_DESCRIPTION_LEN`] characters); the
/// same text, shared, when it has no more bytes than that (so no more characters either).
fn truncated(description: &Arc<str>) -> Arc<str> {
    if description.len() <= MAX_DESCRIPTION_LEN {
        return description.clone();
    }
    match description.char_indices().nth(MAX_DESCRIPTION_LEN) {
        Some((end, _)) => Arc::from(&description[..end]),
        None => description.clone(),
    }
}

/// One batch's statements: per user one `UPDATE` (its consume rows' running balances follow from
/// the balance it returns), per key one `UPDATE`, and the consume rows in multi-row `INSERT`s,
/// built in `rows` (the caller's buffer, emptied first; the caller empties it again once the batch
/// is written, so that it keeps no request's text).
pub(super) async fn write_debits(
    conn: &mut crate::db::writer::WriteConn,
    batch: &[Debit],
    rows: &mut Vec<ConsumeRow>,
) -> Result<(), TxError> {
    let now = now_millis();
    let (user_totals, key_totals) = batch_totals(batch);
    // A request id is the consume row's order number, unique per kind: one repeated within the
    // batch is told apart here, one already in the ledger (a library caller reusing ids) by the
    // insert's conflict below; either gets the debit's sequence number appended rather than stop
    // the batch, which would never be written.
    let mut taken = std::collections::HashSet::with_capacity(batch.len());
    rows.clear();
    for (user_id, total) in user_totals {
        let balance: Option<i64> = diesel::update(users::table.find(user_id))
            .set((
                users::token_balance.eq(users::token_balance - total),
                users::total_consumed.eq(saturating_add!(users::total_consumed, total)),
                users::updated_at.eq(now),
            ))
            .returning(users::token_balance)
            .get_result(conn)
            .await
            .optional()?;
        let Some(balance) = balance else { continue };
        consume_rows(batch, user_id, (balance, total), &mut taken, now, rows);
    }
    for (key_id, [quota, tokens, calls, successes]) in key_totals {
        // Successes use up remaining calls, stopping at zero (an administrator may have lowered the
        // counter meanwhile); NULL, no limit, stays NULL.
        let remaining =
            diesel::dsl::case_when(api_keys::remaining_calls.gt(successes), api_keys::remaining_calls - successes)
                .when(
                    api_keys::remaining_calls.is_not_null(),
                    Some(0_i64).into_sql::<diesel::sql_types::Nullable<diesel::sql_types::BigInt>>(),
                )
                .otherwise(api_keys::remaining_calls);
        diesel::update(api_keys::table.find(key_id))
            .set((
                api_keys::quota_used.eq(saturating_add!(api_keys::quota_used, quota)),
                api_keys::tokens_used.eq(saturating_add!(api_keys::tokens_used, tokens)),
                api_keys::calls_total.eq(api_keys::calls_total + calls),
                api_keys::calls_succeeded.eq(api_keys::calls_succeeded + successes),
                api_keys::remaining_calls.eq(remaining),
                api_keys::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
    }
    // The consume rows, inside the batch's one transaction, in slices of the fixed sizes
    // (`multi_row::slices`), through diesel's synchronous API on the write connection: found
    // under their marker types, their texts are never built (see `Prepared`; a `ConsumeRow` has
    // no optional column, so each size has one text). A row whose request id is in the ledger
    // already is skipped there (the insert counts fewer rows than it was given), then inserted
    // again renumbered.
    let built = std::mem::take(rows);
    let (built, skipped) = crate::db::writer::direct(conn, move |conn| {
        let rows = built;
        let mut skipped = Vec::new();
        let mut first = 0;
        for slice in slices(&rows) {
            let inserted = with_slice_marker!(ConsumeChunkAppend, slice.len(), |Marker| {
                diesel::RunQueryDsl::execute(Prepared::<Marker, _>::new(ConsumeRows::counted(slice)), conn)
            })?;
            if inserted < slice.len() {
                // Which ones it skipped: the rows it inserted are the ledger's newest (its ids only
                // grow, AUTOINCREMENT, and this connection is its one writer).
                let newest: std::collections::HashSet<String> = diesel::RunQueryDsl::load::<Option<String>>(
                    transactions::table
                        .select(transactions::order_no)
                        .order(transactions::id.desc())
                        .limit(i64::try_from(inserted).unwrap_or(i64::MAX)),
                    conn,
                )?
                .into_iter()
                .flatten()
                .collect();
                skipped
                    .extend((first..).zip(slice).filter(|(_, row)| !newest.contains(row.order_no())).map(|(at, _)| at));
            }
            first += slice.len();
        }
        Ok((rows, skipped))
    })?;
    *rows = built;
    for at in skipped {
        let Some(row) = rows.get_mut(at) else { continue };
        row.renumber(batch);
        Cached(diesel::insert_into(transactions::table).values(row.values())).execute(conn).await?;
    }
    let meters = meter_totals(batch);
    if !meters.is_empty() {
        let ids: Vec<i64> = meters.iter().map(|(id, _)| id.budget).collect();
        let live: Vec<i64> = budgets::table.filter(budgets::id.eq_any(&ids)).select(budgets::id).load(conn).await?;
        for (id, [credit, tokens, calls]) in meters.into_iter().filter(|(id, _)| live.contains(&id.budget)) {
            diesel::insert_into(budget_windows::table)
                .values((
                    budget_windows::budget_id.eq(id.budget),
                    budget_windows::window_start.eq(id.start),
                    budget_windows::window_end.eq(id.end),
                    budget_windows::credit_used.eq(credit),
                    budget_windows::tokens_used.eq(tokens),
                    budget_windows::calls_used.eq(calls),
                ))
                .on_conflict((budget_windows::budget_id, budget_windows::window_start))
                .do_update()
                .set((
                    budget_windows::credit_used.eq(saturating_add!(budget_windows::credit_used, credit)),
                    budget_windows::tokens_used.eq(saturating_add!(budget_windows::tokens_used, tokens)),
                    budget_windows::calls_used.eq(budget_windows::calls_used + calls),
                ))
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}

/// A batch's budget windows, with what it adds to each: credit (micros), tokens, successful calls.
pub(in crate::db) fn meter_totals(batch: &[Debit]) -> Vec<(MeterId, [i64; 3])> {
    let mut totals: Vec<(MeterId, [i64; 3])> = Vec::new();
    for debit in batch {
        let add = [debit.charge.micros(), debit.tokens, i64::from(debit.success)];
        for id in &debit.meters {
            match totals.iter_mut().find(|(m, _)| m == id) {
                Some((_, total)) => total.iter_mut().zip(add).for_each(|(t, a)| *t = t.saturating_add(a)),
                None => totals.push((*id, add)),
            }
        }
    }
    totals.sort_unstable_by_key(|(id, _)| *id);
    totals
}

#[cfg(test)]
mod tests {
    use diesel::debug_query;
    use diesel::sqlite::Sqlite;

    use super::*;
    use crate::db::multi_row::ROWS_PER_INSERT;

    fn row(n: i64) -> ConsumeRow {
        ConsumeRow {
            user_id: n,
            tx_type: TxType::Consume.as_str(),
            amount: -n,
            balance_before: n,
            balance_after: 0,
            order_no: Arc::from(format!("req-{n}")),
            description: Arc::from("x".repeat(usize::try_from(n).unwrap_or(0))),
            created_at: n,
        }
    }

    /// A statement's text with its binds' values left out.
    fn text(query: &impl QueryFragment<Sqlite>) -> String {
        let text = debug_query::<Sqlite, _>(query).to_string();
        text.split(" -- binds").next().unwrap_or_default().to_owned()
    }

    /// The same on PostgreSQL, which numbers its binds.
    fn pg_text(query: &impl QueryFragment<diesel::pg::Pg>) -> String {
        let text = debug_query::<diesel::pg::Pg, _>(query).to_string();
        text.split(" -- binds").next().unwrap_or_default().to_owned()
    }

    #[test]
    fn the_chunk_insert_has_one_text_whichever_values() {
        let rows = |from: i64| (from..).take(ROWS_PER_INSERT).map(row).collect::<Vec<_>>();
        assert_eq!(text(&ConsumeRows::counted(&rows(0))), text(&ConsumeRows::counted(&rows(1_000))));
        assert_eq!(text(&ConsumeRows::returning(&rows(0))), text(&ConsumeRows::returning(&rows(1_000))));
    }

    #[test]
    fn one_row_of_the_chunk_insert_is_the_one_row_insert_with_or_without_its_order_number() {
        let one = row(7);
        let insert = diesel::insert_into(transactions::table)
            .values(one.values())
            .on_conflict((transactions::tx_type, transactions::order_no))
            .do_nothing();
        assert_eq!(text(&ConsumeRows::counted(std::slice::from_ref(&one))), text(&insert));
        let insert = insert.returning(transactions::order_no);
        assert_eq!(text(&ConsumeRows::returning(std::slice::from_ref(&one))), text(&insert));
        // diesel qualifies a returned column on PostgreSQL: the same column.
        let ours = pg_text(&ConsumeRows::returning(std::slice::from_ref(&one)));
        let qualified = ours.replace(r#"RETURNING "order_no""#, r#"RETURNING "transactions"."order_no""#);
        assert_eq!(qualified, pg_text(&insert), "the same on PostgreSQL");
        let rows = |from: i64| (from..).take(ROWS_PER_INSERT).map(row).collect::<Vec<_>>();
        assert_eq!(pg_text(&ConsumeRows::returning(&rows(0))), pg_text(&ConsumeRows::returning(&rows(1_000))));
    }
}
