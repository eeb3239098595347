//! The upkeep on a schedule: renewing this gateway's leases, giving back idle ones, freeing any
//! gateway's expired ones, following the database's clock and forgetting old batch ids.

use std::sync::Weak;
use std::time::Instant;

use apihub_core::credit::MeterId;
use apihub_core::policy::KeyId;
use apihub_core::store::StoreError;
use apihub_core::user::UserId;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::{
    BUDGETS_RELOAD, DB_NOW, HEARTBEAT, IDLE_SWEEP, Lease, LeaseEngine, PRUNE_EVERY, RECLAIM_EVERY, ttl_millis,
};
use crate::db::lease_writes::{LeaseRow, lock_owner, prune_batch_ids, unreserve};
use crate::db::{TxError, now_millis};

#[derive(QueryableByName)]
struct DbClock {
    #[diesel(sql_type = BigInt)]
    now: i64,
}

/// A lease renewed: of a user's credit (`key_id` NULL) or of a key's limits.
#[derive(QueryableByName)]
struct Renewed {
    #[diesel(sql_type = BigInt)]
    user_id: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    key_id: Option<i64>,
}

/// A budget window's lease renewed.
#[derive(QueryableByName)]
struct RenewedMeter {
    #[diesel(sql_type = BigInt)]
    budget_id: i64,
    #[diesel(sql_type = BigInt)]
    window_start: i64,
}

impl LeaseEngine {
    /// Measures the database's clock against this process's, so that budget windows follow the
    /// database's clock on every gateway (half the round trip counts as the reading's delay).
    async fn measure_skew(&self) -> Result<(), StoreError> {
        let before = now_millis();
        let read: Vec<DbClock> =
            self.run(async |conn| Ok(diesel::sql_query(format!("SELECT {DB_NOW} AS now")).load(conn).await?)).await?;
        let after = now_millis();
        if let Some(DbClock { now }) = read.into_iter().next() {
            self.budgets.set_skew(now - (before + (after - before) / 2));
        }
        Ok(())
    }

    /// Renews this gateway's leases, and returns them. Each renewed lease is alive for
    /// `LEASE_TTL` from before the statement was sent; one that was not renewed (another gateway
    /// freed it when it expired) is not, and the book lapses when it may have.
    pub(super) async fn renew(&self) -> Result<Vec<Lease>, StoreError> {
        let _order = self.order.lock().await;
        let asked_at = Instant::now();
        let node_id = self.node_id();
        let (leases, meters): (Vec<Renewed>, Vec<RenewedMeter>) = self
            .run(async |conn| {
                let leases = diesel::sql_query(format!(
                    "UPDATE credit_leases SET expires_at = {DB_NOW} + $2 WHERE node_id = $1 RETURNING user_id, key_id"
                ))
                .bind::<Text, _>(&node_id)
                .bind::<BigInt, _>(ttl_millis())
                .load(conn)
                .await?;
                let meters = diesel::sql_query(format!(
                    "UPDATE budget_leases SET expires_at = {DB_NOW} + $2 WHERE node_id = $1 \
                     RETURNING budget_id, window_start"
                ))
                .bind::<Text, _>(&node_id)
                .bind::<BigInt, _>(ttl_millis())
                .load(conn)
                .await?;
                Ok((leases, meters))
            })
            .await?;
        let leases = leases.into_iter().map(|row| row.key_id.map_or(Lease::User(row.user_id), Lease::Key));
        let meters = meters.into_iter().map(|row| Lease::Meter(row.budget_id, row.window_start));
        let renewed: Vec<Lease> = leases.chain(meters).collect();
        self.renewed(asked_at, renewed.iter().copied());
        // A lease gone from the database (its key deleted while this gateway could not give it
        // back) that nothing in the book uses any more bounds the others' validity no more: else
        // the whole book would lapse for it.
        let book = self.book();
        let unused = |lease: &Lease| !book.counts(*lease) && book.taken(*lease) == [0; 3];
        self.asked().retain(|lease, _| renewed.contains(lease) || !unused(lease));
        Ok(renewed)
    }

    /// Forgets batch ids older than `BATCH_IDS_KEPT` (a batch is retried within minutes).
    pub(super) async fn prune_batch_ids(&self) -> Result<usize, StoreError> {
        self.run(async |conn| Ok(prune_batch_ids(conn).await?)).await
    }

    /// Gives back the leases whose entries were idle at the last look and still are.
    async fn return_idle(&self) -> Result<(), StoreError> {
        let (users, keys, meters) = {
            let book = self.book();
            let mut sizes = self.sizes();
            let idle_users = book.idle_users();
            let idle_keys = book.idle_keys();
            let users: Vec<UserId> = idle_users
                .iter()
                .filter(|(id, last)| sizes.idle_users.get(id) == Some(last))
                .map(|(id, _)| *id)
                .collect();
            let keys: Vec<KeyId> = idle_keys
                .iter()
                .filter(|(id, last)| sizes.idle_keys.get(id) == Some(last))
                .map(|(id, _)| *id)
                .collect();
            let idle_meters = book.idle_meters();
            let meters: Vec<MeterId> = idle_meters
                .iter()
                .filter(|(id, last)| sizes.idle_meters.get(id) == Some(last))
                .map(|(id, _)| *id)
                .collect();
            sizes.idle_users = idle_users.into_iter().filter(|(id, _)| !users.contains(id)).collect();
            sizes.idle_keys = idle_keys.into_iter().filter(|(id, _)| !keys.contains(id)).collect();
            sizes.idle_meters = idle_meters.into_iter().filter(|(id, _)| !meters.contains(id)).collect();
            (users, keys, meters)
        };
        self.give_back_meters(&meters).await?;
        if users.is_empty() && keys.is_empty() {
            return Ok(());
        }
        self.give_back(&users, &keys, true).await
    }

    /// Frees any gateway's expired leases, one transaction each; returns how many.
    pub(crate) async fn reclaim_expired(&self) -> Result<usize, StoreError> {
        let expired: Vec<LeaseRow> = self
            .run(async |conn| {
                Ok(diesel::sql_query(format!(
                    "SELECT id, user_id, key_id, amount, tokens, calls FROM credit_leases \
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
                        lock_owner(conn, &lease).await?;
                        let gone: Vec<LeaseRow> = diesel::sql_query(format!(
                            "DELETE FROM credit_leases WHERE id = $1 AND expires_at < {DB_NOW} \
                             RETURNING id, user_id, key_id, amount, tokens, calls"
                        ))
                        .bind::<BigInt, _>(lease.id)
                        .load(conn)
                        .await?;
                        for row in &gone {
                            unreserve(conn, row, [row.amount, row.tokens, row.calls]).await?;
                        }
                        Ok(!gone.is_empty())
                    })
                    .await
                })
                .await?;
            freed += usize::from(found);
        }
        Ok(freed + self.reclaim_expired_meters().await?)
    }
}

/// Renews leases, gives back idle ones and frees expired ones, on their schedules. Ends with the
/// engine.
pub(super) async fn upkeep(engine: Weak<LeaseEngine>) {
    let mut tick = tokio::time::interval(IDLE_SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut last_renewal, mut last_reclaim) = (Instant::now(), Instant::now() - RECLAIM_EVERY);
    let mut last_budgets = Instant::now() - BUDGETS_RELOAD;
    let mut last_prune = Instant::now();
    loop {
        tick.tick().await;
        let Some(engine) = engine.upgrade() else { return };
        if last_budgets.elapsed() >= BUDGETS_RELOAD {
            last_budgets = Instant::now();
            engine.budgets.forget_all();
            if let Err(error) = engine.measure_skew().await {
                tracing::warn!(%error, "reading the database's clock failed; budget windows keep the last reading");
            }
        }
        if last_renewal.elapsed() >= HEARTBEAT {
            match engine.renew().await {
                Ok(renewed) => {
                    last_renewal = Instant::now();
                    if let Err(error) = engine.return_strays(&renewed).await {
                        tracing::warn!(%error, "giving back leases the book no longer uses failed");
                    }
                }
                Err(error) => tracing::warn!(%error, "renewing credit leases failed"),
            }
        }
        if let Err(error) = engine.return_idle().await {
            tracing::warn!(%error, "giving back unused credit leases failed");
        }
        if last_reclaim.elapsed() >= RECLAIM_EVERY {
            last_reclaim = Instant::now();
            match engine.reclaim_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(freed = n, "freed expired credit leases (a gateway stopped renewing them)"),
                Err(error) => tracing::warn!(%error, "freeing expired credit leases failed"),
            }
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = Instant::now();
            if let Err(error) = engine.prune_batch_ids().await {
                tracing::warn!(%error, "forgetting old batch ids failed");
            }
        }
    }
}
