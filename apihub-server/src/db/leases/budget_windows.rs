//! Leases of budget windows: reading a request's budgets, growing a window's lease, giving
//! window leases back, and freeing any gateway's expired ones.

use std::time::Instant;

use apihub_core::billing::{BillingError, NewReservation, ReservationId};
use apihub_core::budget::BudgetOwner;
use apihub_core::credit::{METER_LIMITS, MeterId, StoredMeter};
use apihub_core::policy::KeyId;
use apihub_core::store::StoreError;
use apihub_core::user::UserId;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::hold::Ordered;
use super::{DB_NOW, GROWTH, Lease, LeaseEngine, ttl_millis};
use crate::db::TxError;
use crate::db::budgets::BudgetRow;
use crate::db::lease_writes::{Left, MeterLeaseRow, free_meter_lease, lock_window, unreserve_window};
use crate::db::schema::budgets;

#[derive(QueryableByName)]
struct MeterGrant {
    #[diesel(sql_type = Nullable<BigInt>)]
    credit_free: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    tokens_free: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    calls_free: Option<i64>,
    #[diesel(sql_type = Bool)]
    granted: bool,
    #[diesel(sql_type = BigInt)]
    credit: i64,
    #[diesel(sql_type = BigInt)]
    tokens: i64,
    #[diesel(sql_type = BigInt)]
    calls: i64,
}

impl LeaseEngine {
    /// Reads the budgets of a request's user and key (on their first request here, or after the
    /// budgets changed).
    pub(super) async fn load_budgets(&self, user_id: UserId, key_id: KeyId) -> Result<(), StoreError> {
        let rows: Vec<BudgetRow> = self
            .run(async |conn| {
                Ok(budgets::table
                    .filter(budgets::user_id.eq(user_id).or(budgets::key_id.eq(key_id)))
                    .select(BudgetRow::as_select())
                    .load(conn)
                    .await?)
            })
            .await?;
        let budgets: Vec<_> = rows.into_iter().map(BudgetRow::into_domain).collect::<Result<_, _>>()?;
        self.budgets.store(&[BudgetOwner::User(user_id), BudgetOwner::Key(key_id)], &budgets);
        Ok(())
    }

    /// Grows (or first takes) this gateway's lease of the first of `meters` (a request's budget
    /// windows) that cannot take the hold, by at least what the hold lacks, then takes the hold
    /// when it fits. Refused with the budget limit that is spent.
    pub(super) async fn grow_meter(
        &self,
        new: &NewReservation,
        meters: &[(MeterId, StoredMeter)],
    ) -> Result<Option<ReservationId>, BillingError> {
        let ids: Vec<MeterId> = meters.iter().map(|(id, _)| *id).collect();
        let _order = match self.order_to_grow(new, &ids).await? {
            Ordered::Grow(order) => order,
            Ordered::Held(id) => return Ok(Some(id)),
        };
        self.settle_doubt().await.map_err(BillingError::Store)?;
        // The first window short of this hold, and by how much (on first use: the whole hold).
        let short = self.book().meter_shortfall(meters, &new.hold);
        let Some((id, template, min)) = short else { return self.hold_now(new, &ids) };
        let last = self.sizes().meter_grants.get(&id).copied().unwrap_or_default();
        let want: [i64; 3] = std::array::from_fn(|i| min[i].saturating_mul(GROWTH).max(last[i].saturating_mul(2)));
        let asked_at = Instant::now();
        let node_id = self.node_id();
        let grant: Vec<MeterGrant> = self
            .run(async |conn| {
                conn.transaction(async |conn| -> Result<Vec<MeterGrant>, TxError> {
                    // The window's row, on its first use by any gateway (not for a budget just removed).
                    diesel::sql_query(
                        "INSERT INTO budget_windows (budget_id, window_start, window_end) \
                         SELECT id, $2, $3 FROM budgets WHERE id = $1 ON CONFLICT DO NOTHING",
                    )
                    .bind::<BigInt, _>(id.budget)
                    .bind::<BigInt, _>(id.start)
                    .bind::<BigInt, _>(id.end)
                    .execute(conn)
                    .await?;
                    // A limit the budget does not have grants nothing and needs nothing (`free` NULL: not
                    // through GREATEST and LEAST, which skip a NULL).
                    Ok(diesel::sql_query(format!(
                        "WITH w AS (SELECT w.budget_id, w.window_start, \
                         b.credit_limit - w.credit_used - w.credit_reserved AS credit_free, \
                         b.token_limit - w.tokens_used - w.tokens_reserved AS tokens_free, \
                         b.call_limit - w.calls_used - w.calls_reserved AS calls_free \
                         FROM budget_windows w JOIN budgets b ON b.id = w.budget_id \
                         WHERE w.budget_id = $1 AND w.window_start = $2 FOR UPDATE OF w), \
                         s AS (SELECT w.*, \
                         CASE WHEN credit_free IS NULL THEN 0 ELSE GREATEST($3, LEAST($6, credit_free / 2)) END AS credit, \
                         CASE WHEN tokens_free IS NULL THEN 0 ELSE GREATEST($4, LEAST($7, tokens_free / 2)) END AS tokens, \
                         CASE WHEN calls_free IS NULL THEN 0 ELSE GREATEST($5, LEAST($8, calls_free / 2)) END AS calls, \
                         (credit_free IS NULL OR credit_free >= $3) AND (tokens_free IS NULL OR tokens_free >= $4) \
                         AND (calls_free IS NULL OR calls_free >= $5) AS granted FROM w), \
                         g AS (UPDATE budget_windows SET credit_reserved = credit_reserved + s.credit, \
                         tokens_reserved = tokens_reserved + s.tokens, calls_reserved = calls_reserved + s.calls \
                         FROM s WHERE budget_windows.budget_id = s.budget_id \
                         AND budget_windows.window_start = s.window_start \
                         AND s.granted AND s.credit + s.tokens + s.calls > 0 \
                         RETURNING budget_windows.budget_id), \
                         l AS (INSERT INTO budget_leases \
                         (node_id, budget_id, window_start, amount, tokens, calls, expires_at, created_at) \
                         SELECT $9, s.budget_id, s.window_start, s.credit, s.tokens, s.calls, {DB_NOW} + $10, {DB_NOW} \
                         FROM s JOIN g ON g.budget_id = s.budget_id \
                         ON CONFLICT (node_id, budget_id, window_start) DO UPDATE \
                         SET amount = budget_leases.amount + EXCLUDED.amount, \
                         tokens = budget_leases.tokens + EXCLUDED.tokens, \
                         calls = budget_leases.calls + EXCLUDED.calls, expires_at = EXCLUDED.expires_at) \
                         SELECT credit_free, tokens_free, calls_free, granted, credit, tokens, calls FROM s"
                    ))
                    .bind::<BigInt, _>(id.budget)
                    .bind::<BigInt, _>(id.start)
                    .bind::<BigInt, _>(min[0])
                    .bind::<BigInt, _>(min[1])
                    .bind::<BigInt, _>(min[2])
                    .bind::<BigInt, _>(want[0])
                    .bind::<BigInt, _>(want[1])
                    .bind::<BigInt, _>(want[2])
                    .bind::<Text, _>(&node_id)
                    .bind::<BigInt, _>(ttl_millis())
                    .load(conn)
                    .await?)
                })
                .await
            })
            .await
            .map_err(BillingError::Store)?;
        let Some(grant) = grant.into_iter().next() else {
            // The budget was removed meanwhile: read the budgets again.
            self.budgets.forget_all();
            return Ok(None);
        };
        let free = [grant.credit_free, grant.tokens_free, grant.calls_free];
        if !grant.granted {
            let over = (0..3).find(|&i| free[i].is_some_and(|free| free < min[i])).unwrap_or(0);
            return Err(BillingError::BudgetSpent {
                scope: template.scope,
                period: template.period,
                limit: METER_LIMITS[over],
                resets_at: id.end,
            });
        }
        let granted = [grant.credit, grant.tokens, grant.calls];
        if granted != [0; 3] {
            self.renewed(asked_at, [Lease::Meter(id.budget, id.start)]);
        }
        {
            let mut book = self.book();
            if !book.grant_meter(id, granted) {
                let limits = std::array::from_fn(|i| free[i].map(|_| granted[i]));
                book.store_meter(id, StoredMeter { limits, used: [0; 3], ..template });
            }
        }
        self.sizes().meter_grants.insert(id, granted);
        self.hold_now(new, &ids)
    }

    /// Gives back every budget window's lease and forgets the budgets (an administrator changed
    /// some): each is read and leased afresh on its next request.
    pub(crate) async fn revoke_budgets(&self) {
        self.budgets.forget_all();
        let meters = self.book().meter_ids();
        if let Err(error) = self.give_back_meters(&meters).await {
            tracing::warn!(%error, "giving back the budgets' leases failed; they are given back after the next renewal");
        }
    }

    /// Gives back budget windows' leases but for what their open holds and unwritten debits take,
    /// and forgets the windows.
    pub(super) async fn give_back_meters(&self, ids: &[MeterId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let _order = self.order.lock().await;
        if let Err(error) = self.write_queued().await {
            // As for keys (bug E, `give_back`): the windows leave the book anyway, so that their
            // next hold reads the changed budget; their leases are strays, given back after the
            // next renewal.
            let mut book = self.book();
            ids.iter().for_each(|id| book.forget_meter(*id));
            return Err(error);
        }
        let kept: Vec<(MeterId, [i64; 3])> = {
            let mut book = self.book();
            let kept = ids.iter().filter_map(|id| book.meter_commitments(*id).map(|keep| (*id, keep))).collect();
            ids.iter().for_each(|id| book.forget_meter(*id));
            kept
        };
        {
            let mut sizes = self.sizes();
            ids.iter().for_each(|id| {
                sizes.meter_grants.remove(id);
            });
        }
        for (id, keep) in kept {
            // The window left the book: a lease of it nobody renews no longer bounds the others.
            if self.shrink_meter(id.budget, id.start, keep).await? != Left::Kept {
                self.asked().remove(&Lease::Meter(id.budget, id.start));
            }
        }
        Ok(())
    }

    /// Shrinks this gateway's lease of a budget window (budget, window start) to `keep` (credit,
    /// tokens, calls), deleting it when nothing is kept.
    pub(super) async fn shrink_meter(&self, budget: i64, start: i64, keep: [i64; 3]) -> Result<Left, StoreError> {
        let node_id = self.node_id();
        self.run(async |conn| {
            conn.transaction(async |conn| -> Result<Left, TxError> {
                // The window first, then the lease: the lock order.
                lock_window(conn, budget, start).await?;
                let leases: Vec<MeterLeaseRow> = diesel::sql_query(
                    "SELECT id, budget_id, window_start, amount, tokens, calls FROM budget_leases \
                     WHERE node_id = $1 AND budget_id = $2 AND window_start = $3 FOR UPDATE",
                )
                .bind::<Text, _>(&node_id)
                .bind::<BigInt, _>(budget)
                .bind::<BigInt, _>(start)
                .load(conn)
                .await?;
                let mut left = Left::Missing;
                for lease in leases {
                    left = free_meter_lease(conn, &lease, keep).await?;
                }
                Ok(left)
            })
            .await
        })
        .await
    }

    /// Frees any gateway's expired budget window leases, one transaction each; returns how many.
    pub(super) async fn reclaim_expired_meters(&self) -> Result<usize, StoreError> {
        let expired: Vec<MeterLeaseRow> = self
            .run(async |conn| {
                Ok(diesel::sql_query(format!(
                    "SELECT id, budget_id, window_start, amount, tokens, calls FROM budget_leases \
                     WHERE expires_at < {DB_NOW} ORDER BY id LIMIT 1000"
                ))
                .load(conn)
                .await?)
            })
            .await?;
        let mut freed = 0;
        for lease in expired {
            let found = self
                .run(async |conn| {
                    conn.transaction(async |conn| -> Result<bool, TxError> {
                        lock_window(conn, lease.budget_id, lease.window_start).await?;
                        let gone: Vec<MeterLeaseRow> = diesel::sql_query(format!(
                            "DELETE FROM budget_leases WHERE id = $1 AND expires_at < {DB_NOW} \
                             RETURNING id, budget_id, window_start, amount, tokens, calls"
                        ))
                        .bind::<BigInt, _>(lease.id)
                        .load(conn)
                        .await?;
                        for row in &gone {
                            unreserve_window(conn, row, [row.amount, row.tokens, row.calls]).await?;
                        }
                        Ok(!gone.is_empty())
                    })
                    .await
                })
                .await?;
            freed += usize::from(found);
        }
        Ok(freed)
    }
}
