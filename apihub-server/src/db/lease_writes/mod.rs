//! The statements that take from credit leases on PostgreSQL ([`super::leases`]; grants and
//! renewals stay there): batched settlements, one transaction per batch, each consuming this
//! gateway's leases of its users, keys and budget windows, rows locked in a fixed order (users,
//! keys, their leases, windows, their leases) so that two gateways never deadlock; and freeing a
//! lease (given back, or reclaimed when it expired), its owner locked first.
//!
//! A batch is recorded in `credit_batches` by its node id and first sequence number, in its own
//! transaction. A batch whose commit's acknowledgement was lost (the connection dropped during
//! `COMMIT`) stays queued and is written again: the second attempt finds the record and counts
//! the batch as written instead of charging it twice. Records older than [`BATCH_IDS_KEPT`] are
//! pruned (a batch is retried within seconds, at most minutes).

mod free;

use apihub_core::credit::Debit;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::cached::{Cached, Prepared};
use super::engine::{
    ConsumeChunkInsert, ConsumeColumns, ConsumeRow, ConsumeRows, batch_totals, consume_rows, meter_totals,
};
use super::leases::DB_NOW;
use super::multi_row::{slices, with_slice_marker};
use super::schema::transactions;
use super::{TxError, now_millis};
use free::consume_lease;
pub(super) use free::{
    LeaseRow, Left, MeterLeaseRow, free_lease, free_meter_lease, lock_owner, lock_window, unreserve, unreserve_window,
};

/// How long a batch's record is kept, in milliseconds of the database's clock (a day).
pub(super) const BATCH_IDS_KEPT: i64 = 86_400_000;

#[derive(QueryableByName)]
struct Balance {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    token_balance: i64,
}

/// What a batch takes out of leases (user and key leases alike): one `UPDATE` for them all.
#[derive(Default)]
struct LeaseTakes {
    ids: Vec<i64>,
    taken: [Vec<i64>; 3],
}

impl LeaseTakes {
    fn push(&mut self, id: i64, taken: [i64; 3]) {
        self.ids.push(id);
        self.taken.iter_mut().zip(taken).for_each(|(column, value)| column.push(value));
    }

    /// An emptied lease stays (its entry is still in the book) until it is given back or expires.
    async fn write(&self, conn: &mut AsyncPgConnection) -> Result<(), diesel::result::Error> {
        if self.ids.is_empty() {
            return Ok(());
        }
        Cached(
            diesel::sql_query(
                "UPDATE credit_leases SET amount = credit_leases.amount - v.amount, \
             tokens = credit_leases.tokens - v.tokens, calls = credit_leases.calls - v.calls \
             FROM unnest($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::BIGINT[]) AS v(id, amount, tokens, calls) \
             WHERE credit_leases.id = v.id",
            )
            .bind::<Array<BigInt>, _>(&self.ids)
            .bind::<Array<BigInt>, _>(&self.taken[0])
            .bind::<Array<BigInt>, _>(&self.taken[1])
            .bind::<Array<BigInt>, _>(&self.taken[2]),
        )
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// A batch's users: what each is charged, and how much of it its lease paid.
#[derive(Default)]
struct UserTakes {
    ids: Vec<i64>,
    totals: Vec<i64>,
    consumed: Vec<i64>,
}

impl UserTakes {
    fn push(&mut self, id: i64, total: i64, consumed: i64) {
        self.ids.push(id);
        self.totals.push(total);
        self.consumed.push(consumed);
    }

    /// One `UPDATE` for every user of the batch; the balances after it, by user.
    async fn write(&self, conn: &mut AsyncPgConnection, now: i64) -> Result<Vec<Balance>, diesel::result::Error> {
        let statement = diesel::sql_query(
            "UPDATE users SET token_balance = users.token_balance - v.total, reserved = users.reserved - v.consumed, \
             total_consumed = CASE WHEN users.total_consumed <= 9223372036854775807 - v.total \
             THEN users.total_consumed + v.total ELSE 9223372036854775807 END, updated_at = $4 \
             FROM unnest($1::BIGINT[], $2::BIGINT[], $3::BIGINT[]) AS v(id, total, consumed) \
             WHERE users.id = v.id RETURNING users.id, users.token_balance",
        )
        .bind::<Array<BigInt>, _>(&self.ids)
        .bind::<Array<BigInt>, _>(&self.totals)
        .bind::<Array<BigInt>, _>(&self.consumed)
        .bind::<BigInt, _>(now);
        Cached(statement).load(conn).await
    }
}

/// A batch's keys: what each used (credit, tokens, calls, successful calls), and how much of
/// it its lease paid (credit, tokens, calls).
#[derive(Default)]
struct KeyTakes {
    ids: Vec<i64>,
    used: [Vec<i64>; 4],
    consumed: [Vec<i64>; 3],
}

impl KeyTakes {
    fn push(&mut self, id: i64, [quota, tokens, calls, successes]: [i64; 4], consumed: [i64; 3]) {
        self.ids.push(id);
        let used = [quota.max(0), tokens.max(0), calls, successes];
        self.used.iter_mut().zip(used).for_each(|(column, value)| column.push(value));
        self.consumed.iter_mut().zip(consumed).for_each(|(column, value)| column.push(value));
    }

    /// One `UPDATE` for every key of the batch. Successes use up remaining calls, stopping at
    /// zero; NULL, no limit, stays NULL.
    async fn write(&self, conn: &mut AsyncPgConnection, now: i64) -> Result<(), diesel::result::Error> {
        if self.ids.is_empty() {
            return Ok(());
        }
        let statement = diesel::sql_query(
            "UPDATE api_keys SET \
             quota_used = CASE WHEN api_keys.quota_used <= 9223372036854775807 - v.quota \
                 THEN api_keys.quota_used + v.quota ELSE 9223372036854775807 END, \
             tokens_used = CASE WHEN api_keys.tokens_used <= 9223372036854775807 - v.tokens \
                 THEN api_keys.tokens_used + v.tokens ELSE 9223372036854775807 END, \
             calls_total = api_keys.calls_total + v.calls, calls_succeeded = api_keys.calls_succeeded + v.successes, \
             remaining_calls = CASE WHEN api_keys.remaining_calls IS NULL THEN NULL \
                 ELSE GREATEST(api_keys.remaining_calls - v.successes, 0) END, \
             quota_reserved = api_keys.quota_reserved - v.quota_taken, \
             tokens_reserved = api_keys.tokens_reserved - v.tokens_taken, \
             calls_reserved = api_keys.calls_reserved - v.calls_taken, updated_at = $9 \
             FROM unnest($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::BIGINT[], $5::BIGINT[], $6::BIGINT[], \
                 $7::BIGINT[], $8::BIGINT[]) AS v(id, quota, tokens, calls, successes, quota_taken, tokens_taken, calls_taken) \
             WHERE api_keys.id = v.id",
        )
        .bind::<Array<BigInt>, _>(&self.ids)
        .bind::<Array<BigInt>, _>(&self.used[0])
        .bind::<Array<BigInt>, _>(&self.used[1])
        .bind::<Array<BigInt>, _>(&self.used[2])
        .bind::<Array<BigInt>, _>(&self.used[3])
        .bind::<Array<BigInt>, _>(&self.consumed[0])
        .bind::<Array<BigInt>, _>(&self.consumed[1])
        .bind::<Array<BigInt>, _>(&self.consumed[2])
        .bind::<BigInt, _>(now);
        Cached(statement).execute(conn).await?;
        Ok(())
    }
}

#[derive(QueryableByName)]
struct LastSeq {
    #[diesel(sql_type = BigInt)]
    last_seq: i64,
}

/// Records a batch under `node_id` by its first sequence number. `None`: recorded now (write
/// it); `Some(last)`: written before, up to sequence number `last`.
async fn record_batch(conn: &mut AsyncPgConnection, node_id: &str, batch: &[Debit]) -> Result<Option<u64>, TxError> {
    let seq = |debit: Option<&Debit>| debit.map_or(0, |debit| i64::try_from(debit.seq).unwrap_or(i64::MAX));
    let (first, last) = (seq(batch.first()), seq(batch.last()));
    let recorded: Vec<LastSeq> = Cached(
        diesel::sql_query(format!(
            "INSERT INTO credit_batches (node_id, first_seq, last_seq, created_at) VALUES ($1, $2, $3, {DB_NOW}) \
         ON CONFLICT (node_id, first_seq) DO NOTHING RETURNING last_seq"
        ))
        .bind::<Text, _>(node_id)
        .bind::<BigInt, _>(first)
        .bind::<BigInt, _>(last),
    )
    .load(conn)
    .await?;
    if !recorded.is_empty() {
        return Ok(None);
    }
    let before: Vec<LastSeq> =
        diesel::sql_query("SELECT last_seq FROM credit_batches WHERE node_id = $1 AND first_seq = $2")
            .bind::<Text, _>(node_id)
            .bind::<BigInt, _>(first)
            .load(conn)
            .await?;
    Ok(Some(before.into_iter().next().map_or(0, |row| u64::try_from(row.last_seq).unwrap_or(0))))
}

/// Forgets the records of batches written more than [`BATCH_IDS_KEPT`] ago; returns how many.
pub(super) async fn prune_batch_ids(conn: &mut AsyncPgConnection) -> Result<usize, diesel::result::Error> {
    diesel::sql_query(format!("DELETE FROM credit_batches WHERE created_at < {DB_NOW} - $1"))
        .bind::<BigInt, _>(BATCH_IDS_KEPT)
        .execute(conn)
        .await
}

/// A batch's budget windows, after its users and keys (the lock order: windows, then their
/// leases): per window, what this gateway's lease still holds pays first, and the usage grows by
/// the whole of it.
async fn write_meters(conn: &mut AsyncPgConnection, node_id: &str, batch: &[Debit]) -> Result<(), TxError> {
    let meters = meter_totals(batch);
    if meters.is_empty() {
        return Ok(());
    }
    let budget_ids: Vec<i64> = meters.iter().map(|(id, _)| id.budget).collect();
    let starts: Vec<i64> = meters.iter().map(|(id, _)| id.start).collect();
    diesel::sql_query(
        "SELECT budget_id FROM budget_windows WHERE (budget_id, window_start) IN \
         (SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[])) ORDER BY budget_id, window_start FOR UPDATE",
    )
    .bind::<Array<BigInt>, _>(&budget_ids)
    .bind::<Array<BigInt>, _>(&starts)
    .execute(conn)
    .await?;
    let leases: Vec<MeterLeaseRow> = diesel::sql_query(
        "SELECT id, budget_id, window_start, amount, tokens, calls FROM budget_leases WHERE node_id = $1 \
         AND (budget_id, window_start) IN (SELECT * FROM unnest($2::BIGINT[], $3::BIGINT[])) ORDER BY id FOR UPDATE",
    )
    .bind::<Text, _>(node_id)
    .bind::<Array<BigInt>, _>(&budget_ids)
    .bind::<Array<BigInt>, _>(&starts)
    .load(conn)
    .await?;
    for (id, total) in meters {
        let lease = leases.iter().find(|l| l.budget_id == id.budget && l.window_start == id.start);
        let consumed =
            lease.map_or([0; 3], |l| [l.amount.min(total[0]), l.tokens.min(total[1]), l.calls.min(total[2])]);
        if let Some(lease) = lease {
            consume_lease(conn, "budget_leases", lease.id, consumed).await?;
        }
        diesel::sql_query(
            "UPDATE budget_windows SET \
             credit_used = CASE WHEN credit_used <= 9223372036854775807 - $3 THEN credit_used + $3 ELSE 9223372036854775807 END, \
             tokens_used = CASE WHEN tokens_used <= 9223372036854775807 - $4 THEN tokens_used + $4 ELSE 9223372036854775807 END, \
             calls_used = calls_used + $5, credit_reserved = credit_reserved - $6, \
             tokens_reserved = tokens_reserved - $7, calls_reserved = calls_reserved - $8 \
             WHERE budget_id = $1 AND window_start = $2",
        )
        .bind::<BigInt, _>(id.budget)
        .bind::<BigInt, _>(id.start)
        .bind::<BigInt, _>(total[0].max(0))
        .bind::<BigInt, _>(total[1].max(0))
        .bind::<BigInt, _>(total[2])
        .bind::<BigInt, _>(consumed[0])
        .bind::<BigInt, _>(consumed[1])
        .bind::<BigInt, _>(consumed[2])
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// One batch, recorded first (see the [module docs](self)): its users locked, then its keys,
/// then this gateway's leases of them (the lock order); per user one `UPDATE` of the balance and
/// of what the lease still holds, per key the same for its counters, and the consume rows.
/// Returns the sequence number up to which the batch is written: all of it, or what an earlier
/// attempt whose acknowledgement was lost wrote.
pub(super) async fn write_debits(conn: &mut AsyncPgConnection, node_id: &str, batch: &[Debit]) -> Result<u64, TxError> {
    if let Some(written) = record_batch(conn, node_id, batch).await? {
        return Ok(written);
    }
    let now = now_millis();
    let (mut user_totals, mut key_totals) = batch_totals(batch);
    user_totals.sort_unstable_by_key(|(id, _)| *id);
    key_totals.sort_unstable_by_key(|(id, _)| *id);
    let user_ids: Vec<i64> = user_totals.iter().map(|(id, _)| *id).collect();
    let key_ids: Vec<i64> = key_totals.iter().map(|(id, _)| *id).collect();
    Cached(
        diesel::sql_query("SELECT id FROM users WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind::<Array<BigInt>, _>(&user_ids),
    )
    .execute(conn)
    .await?;
    Cached(
        diesel::sql_query("SELECT id FROM api_keys WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind::<Array<BigInt>, _>(&key_ids),
    )
    .execute(conn)
    .await?;
    let leases: Vec<LeaseRow> = Cached(
        diesel::sql_query(
            "SELECT id, user_id, key_id, amount, tokens, calls FROM credit_leases WHERE node_id = $1 \
         AND ((key_id IS NULL AND user_id = ANY($2)) OR key_id = ANY($3)) ORDER BY id FOR UPDATE",
        )
        .bind::<Text, _>(node_id)
        .bind::<Array<BigInt>, _>(&user_ids)
        .bind::<Array<BigInt>, _>(&key_ids),
    )
    .load(conn)
    .await?;
    // What each lease still holds pays first; the rest (overage) comes from the balance alone.
    let mut takes = LeaseTakes::default();
    let mut users = UserTakes::default();
    for (user_id, total) in &user_totals {
        let lease = leases.iter().find(|l| l.key_id.is_none() && l.user_id == *user_id);
        let consumed = lease.map_or(0, |l| l.amount.min(*total));
        if let Some(lease) = lease {
            takes.push(lease.id, [consumed, 0, 0]);
        }
        users.push(*user_id, *total, consumed);
    }
    let mut keys = KeyTakes::default();
    for (key_id, [quota, tokens, calls, successes]) in &key_totals {
        let lease = leases.iter().find(|l| l.key_id == Some(*key_id));
        let consumed = lease.map_or([0; 3], |l| [l.amount.min(*quota), l.tokens.min(*tokens), l.calls.min(*successes)]);
        if let Some(lease) = lease {
            takes.push(lease.id, consumed);
        }
        keys.push(*key_id, [*quota, *tokens, *calls, *successes], consumed);
    }
    takes.write(conn).await?;
    let balances = users.write(conn, now).await?;
    keys.write(conn, now).await?;
    // Request ids repeated within the batch are told apart here; one already in the ledger (a
    // library caller reusing ids) is found by the insert's conflict below. (Looking them up first
    // cost a scan of every consume row per batch whenever the planner's statistics lagged behind
    // a fast-growing ledger: half a second per batch in the benchmark.)
    let mut taken = std::collections::HashSet::new();
    let mut rows = Vec::new();
    for (user_id, total) in user_totals {
        // A user deleted meanwhile has no balance to run down (nor consume rows).
        let Some(balance) = balances.iter().find(|b| b.id == user_id) else { continue };
        consume_rows(batch, user_id, (balance.token_balance, total), &mut taken, now, &mut rows);
    }
    write_meters(conn, node_id, batch).await?;
    insert_consume_rows(conn, batch, &rows).await?;
    Ok(batch.last().map_or(0, |debit| debit.seq))
}

/// Inserts a batch's consume rows. Their order numbers are request ids the gateway made, so they
/// are new to the ledger: all go in with one plain `INSERT … SELECT … FROM unnest(…)`, inside a
/// savepoint. Only when one was there already (a library caller reusing request ids) does that
/// insert fail, and then the rows go in again by [`insert_consume_rows_checked`].
///
/// Why not always the checked insert: on PostgreSQL `ON CONFLICT` makes every row a speculative
/// insertion, and a multi-row `VALUES` sets up every row's expressions anew. Measured apart (512
/// rows a transaction, the ledger's three indexes), the backend spent 5.3–5.7 µs a row on the
/// checked insert and 3.4 µs on the plain one: the ledger's rows were the larger part of
/// PostgreSQL's CPU time per proxied request.
async fn insert_consume_rows(
    conn: &mut AsyncPgConnection,
    batch: &[Debit],
    rows: &[ConsumeRow],
) -> Result<(), diesel::result::Error> {
    use diesel::result::{DatabaseErrorKind, Error};
    use diesel_async::SimpleAsyncConnection;
    if rows.is_empty() {
        return Ok(());
    }
    // Released with the transaction: nothing else in it needs one. The rows take their ids in the
    // batch's order (`ORDER BY` the arrays' ordinality), so running balances read in id order.
    conn.batch_execute("SAVEPOINT consume_rows").await?;
    let columns = ConsumeColumns::of(rows);
    let plain = Cached(
        diesel::sql_query(
            "INSERT INTO transactions (user_id, tx_type, amount, balance_before, balance_after, order_no, \
             description, created_at) SELECT user_id, tx_type, amount, balance_before, balance_after, order_no, \
             description, created_at FROM unnest($1::BIGINT[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[], \
             $5::BIGINT[], $6::TEXT[], $7::TEXT[], $8::BIGINT[]) WITH ORDINALITY AS v(user_id, tx_type, amount, \
             balance_before, balance_after, order_no, description, created_at, ord) ORDER BY ord",
        )
        .bind::<Array<BigInt>, _>(&columns.user_id)
        .bind::<Array<Text>, _>(&columns.tx_type)
        .bind::<Array<BigInt>, _>(&columns.amount)
        .bind::<Array<BigInt>, _>(&columns.balance_before)
        .bind::<Array<BigInt>, _>(&columns.balance_after)
        .bind::<Array<Text>, _>(&columns.order_no)
        .bind::<Array<Text>, _>(&columns.description)
        .bind::<Array<BigInt>, _>(&columns.created_at),
    )
    .execute(conn)
    .await;
    match plain {
        Ok(_) => Ok(()),
        Err(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
            conn.batch_execute("ROLLBACK TO SAVEPOINT consume_rows").await?;
            insert_consume_rows_checked(conn, batch, rows).await
        }
        Err(error) => Err(error),
    }
}

/// Inserts consume rows up to 64 to a statement kept prepared (see
/// [`multi_row`](crate::db::multi_row)), skipping those whose order number the ledger already
/// has; those are inserted again renumbered ([`ConsumeRow::renumber`]).
async fn insert_consume_rows_checked(
    conn: &mut AsyncPgConnection,
    batch: &[Debit],
    rows: &[ConsumeRow],
) -> Result<(), diesel::result::Error> {
    let mut again: Vec<ConsumeRow> = Vec::new();
    for slice in slices(rows) {
        let inserted: Vec<String> = with_slice_marker!(ConsumeChunkInsert, slice.len(), |Marker| {
            Prepared::<Marker, _>::new(ConsumeRows::returning(slice)).load(conn).await
        })?;
        if inserted.len() < slice.len() {
            let inserted: std::collections::HashSet<String> = inserted.into_iter().collect();
            again.extend(slice.iter().filter(|row| !inserted.contains(row.order_no())).cloned());
        }
    }
    for row in &mut again {
        row.renumber(batch);
    }
    // Eight binds a row, within PostgreSQL's 65,535 a statement.
    for chunk in again.chunks(4_096) {
        let values: Vec<_> = chunk.iter().map(ConsumeRow::values).collect();
        diesel::insert_into(transactions::table).values(values).execute(conn).await?;
    }
    Ok(())
}
