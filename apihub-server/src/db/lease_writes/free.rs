//! Lease rows, and what takes from them: a batch consuming part of a lease, a give-back or a
//! reclaim freeing it (and unreserving it from its user, key or budget window), each after the
//! row it belongs to is locked.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// What a give-back left of this node's lease in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::db) enum Left {
    /// The lease keeps what its open holds and unwritten settlements take.
    Kept,
    /// The lease was given back whole.
    Deleted,
    /// There was no lease (given back before, or freed by another gateway when it expired).
    Missing,
}

/// A gateway's lease of a budget window.
#[derive(QueryableByName)]
pub(in crate::db) struct MeterLeaseRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub budget_id: i64,
    #[diesel(sql_type = BigInt)]
    pub window_start: i64,
    #[diesel(sql_type = BigInt)]
    pub amount: i64,
    #[diesel(sql_type = BigInt)]
    pub tokens: i64,
    #[diesel(sql_type = BigInt)]
    pub calls: i64,
}

/// A gateway's lease of a user's credit (`key_id` NULL) or of a key's limits.
#[derive(QueryableByName)]
pub(in crate::db) struct LeaseRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub user_id: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub key_id: Option<i64>,
    #[diesel(sql_type = BigInt)]
    pub amount: i64,
    #[diesel(sql_type = BigInt)]
    pub tokens: i64,
    #[diesel(sql_type = BigInt)]
    pub calls: i64,
}

/// Locks a lease's user or key row (the lock order: owner before lease).
pub(in crate::db) async fn lock_owner(
    conn: &mut AsyncPgConnection,
    lease: &LeaseRow,
) -> Result<(), diesel::result::Error> {
    let (sql, id) = match lease.key_id {
        Some(key_id) => ("SELECT id FROM api_keys WHERE id = $1 FOR UPDATE", key_id),
        None => ("SELECT id FROM users WHERE id = $1 FOR UPDATE", lease.user_id),
    };
    diesel::sql_query(sql).bind::<BigInt, _>(id).execute(conn).await?;
    Ok(())
}

/// Gives a lease back to its user or key but for `keep` (credit, tokens, calls): the lease
/// shrinks to it, or is deleted when nothing is kept.
pub(in crate::db) async fn free_lease(
    conn: &mut AsyncPgConnection,
    lease: &LeaseRow,
    keep: [i64; 3],
) -> Result<Left, diesel::result::Error> {
    let held = [lease.amount, lease.tokens, lease.calls];
    let back = beyond(held, keep);
    let left = take_from_lease(conn, "credit_leases", lease.id, Some(held), back).await?;
    unreserve(conn, lease, back).await?;
    Ok(left)
}

/// What a lease holding `held` gives back when it keeps `keep` (each never below zero: a lease
/// keeps at most what it holds).
fn beyond(held: [i64; 3], keep: [i64; 3]) -> [i64; 3] {
    std::array::from_fn(|i| (held[i] - keep[i]).max(0))
}

/// A batch's settlements consume `used` (credit, tokens, calls) of lease `id` of `table`; an
/// emptied lease stays (its entry is still in the book) until it is given back or expires.
pub(in crate::db) async fn consume_lease(
    conn: &mut AsyncPgConnection,
    table: &str,
    id: i64,
    used: [i64; 3],
) -> Result<(), diesel::result::Error> {
    take_from_lease(conn, table, id, None, used).await.map(|_| ())
}

/// Takes `taken` (credit, tokens, calls) out of lease `id` of `table` (`credit_leases` or
/// `budget_leases`); given what the lease `held`, the row is deleted when that empties it.
async fn take_from_lease(
    conn: &mut AsyncPgConnection,
    table: &str,
    id: i64,
    held: Option<[i64; 3]>,
    taken: [i64; 3],
) -> Result<Left, diesel::result::Error> {
    if held == Some(taken) {
        diesel::sql_query(format!("DELETE FROM {table} WHERE id = $1")).bind::<BigInt, _>(id).execute(conn).await?;
        return Ok(Left::Deleted);
    } else {
        diesel::sql_query(format!(
            "UPDATE {table} SET amount = amount - $2, tokens = tokens - $3, calls = calls - $4 WHERE id = $1"
        ))
        .bind::<BigInt, _>(id)
        .bind::<BigInt, _>(taken[0])
        .bind::<BigInt, _>(taken[1])
        .bind::<BigInt, _>(taken[2])
        .execute(conn)
        .await?;
    }
    Ok(Left::Kept)
}

/// Takes `back` out of the reserved columns of a lease's user or key.
pub(in crate::db) async fn unreserve(
    conn: &mut AsyncPgConnection,
    lease: &LeaseRow,
    back: [i64; 3],
) -> Result<(), diesel::result::Error> {
    match lease.key_id {
        Some(key_id) => {
            diesel::sql_query(
                "UPDATE api_keys SET quota_reserved = quota_reserved - $2, tokens_reserved = tokens_reserved - $3, \
                 calls_reserved = calls_reserved - $4 WHERE id = $1",
            )
            .bind::<BigInt, _>(key_id)
            .bind::<BigInt, _>(back[0])
            .bind::<BigInt, _>(back[1])
            .bind::<BigInt, _>(back[2])
            .execute(conn)
            .await?;
        }
        None => {
            diesel::sql_query("UPDATE users SET reserved = reserved - $2 WHERE id = $1")
                .bind::<BigInt, _>(lease.user_id)
                .bind::<BigInt, _>(back[0])
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}

/// Locks a budget window's row (the lock order: window before lease).
pub(in crate::db) async fn lock_window(
    conn: &mut AsyncPgConnection,
    budget_id: i64,
    start: i64,
) -> Result<(), diesel::result::Error> {
    diesel::sql_query("SELECT budget_id FROM budget_windows WHERE budget_id = $1 AND window_start = $2 FOR UPDATE")
        .bind::<BigInt, _>(budget_id)
        .bind::<BigInt, _>(start)
        .execute(conn)
        .await?;
    Ok(())
}

/// Gives a budget window's lease back to the window but for `keep` (credit, tokens, calls).
pub(in crate::db) async fn free_meter_lease(
    conn: &mut AsyncPgConnection,
    lease: &MeterLeaseRow,
    keep: [i64; 3],
) -> Result<Left, diesel::result::Error> {
    let held = [lease.amount, lease.tokens, lease.calls];
    let back = beyond(held, keep);
    let left = take_from_lease(conn, "budget_leases", lease.id, Some(held), back).await?;
    unreserve_window(conn, lease, back).await?;
    Ok(left)
}

/// Takes `back` out of a budget window's reserved columns.
pub(in crate::db) async fn unreserve_window(
    conn: &mut AsyncPgConnection,
    lease: &MeterLeaseRow,
    back: [i64; 3],
) -> Result<(), diesel::result::Error> {
    diesel::sql_query(
        "UPDATE budget_windows SET credit_reserved = credit_reserved - $3, tokens_reserved = tokens_reserved - $4, \
         calls_reserved = calls_reserved - $5 WHERE budget_id = $1 AND window_start = $2",
    )
    .bind::<BigInt, _>(lease.budget_id)
    .bind::<BigInt, _>(lease.window_start)
    .bind::<BigInt, _>(back[0])
    .bind::<BigInt, _>(back[1])
    .bind::<BigInt, _>(back[2])
    .execute(conn)
    .await?;
    Ok(())
}
