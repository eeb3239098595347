//! Giving leases of users' credit and keys' limits back: on an administrator's change, when
//! idle, and at shutdown.

use apihub_core::Money;
use apihub_core::policy::KeyId;
use apihub_core::store::StoreError;
use apihub_core::user::UserId;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::{Lease, LeaseEngine};
use crate::db::TxError;
use crate::db::lease_writes::{LeaseRow, Left, free_lease};

/// A key and what stays leased of it: credit (micros), tokens, calls.
type Kept<Id> = (Id, [i64; 3]);

/// A user, the credit that stays leased, and the credit the book gave up (micros).
type GivenUp = (UserId, i64, i64);

impl LeaseEngine {
    /// Gives back this gateway's lease of a key and forgets it, so that its next hold reads the
    /// key again (an administrator changed it). Holds still open keep their share of the lease
    /// until they close.
    pub(crate) async fn revoke_key(&self, public_id: &str) {
        let key_id = self.sizes().public_ids.get(public_id).copied();
        if let Some(key_id) = key_id
            && let Err(error) = self.give_back(&[], &[key_id], true).await
        {
            tracing::warn!(%error, key_id, "giving back a key's lease failed; it is given back after the next renewal");
        }
    }

    /// Gives back every key's lease and forgets the keys (invalidations may have been missed).
    pub(crate) async fn revoke_all_keys(&self) {
        let (_, keys) = self.book().entries();
        if let Err(error) = self.give_back(&[], &keys, true).await {
            tracing::warn!(%error, "giving back the keys' leases failed; they are given back after the next renewal");
        }
    }

    /// Gives back this gateway's lease of a user's credit, but for what its open holds need
    /// (before an administrator's debit).
    pub(crate) async fn revoke_user(&self, user_id: UserId) -> Result<(), StoreError> {
        self.give_back(&[user_id], &[], false).await
    }

    /// Gives back leases: all of a lease when its entry is idle, else all but what the entry's
    /// open holds and unwritten debits take. With `forget`, the entries leave the book (and are
    /// leased afresh on their next hold); else users keep what stays leased (keys are always
    /// forgotten: they are given back when they changed). A user's funds shrink in the book
    /// first (no hold can take what is being given back) and leave it only once the database
    /// has given the lease back; when that fails, the book grows back to the whole lease.
    pub(super) async fn give_back(
        &self,
        user_ids: &[UserId],
        key_ids: &[KeyId],
        forget: bool,
    ) -> Result<(), StoreError> {
        let _order = self.order.lock().await;
        if let Err(error) = self.write_queued().await {
            // The keys changed (or are idle): they leave the book anyway, so that their next hold
            // reads them again instead of holding with their old limits for as long as they stay
            // busy here. Their leases are strays now, given back after the next renewal
            // ([`Self::return_strays`]). Found by the simulation (bug E).
            let mut book = self.book();
            key_ids.iter().for_each(|id| book.forget_key(*id));
            return Err(error);
        }
        // What stays leased: what the open holds may still charge, and what was settled after the
        // write above (the next batch consumes it from the lease).
        // (user, credit kept, credit given up) and (key, [credit, tokens, calls] kept).
        let (users, keys): (Vec<GivenUp>, Vec<Kept<KeyId>>) = {
            let mut book = self.book();
            let users = user_ids
                .iter()
                .filter_map(|id| {
                    let before = book.stored_user(*id)?;
                    let keep = book.shrink_user(*id)?;
                    Some((*id, keep, before.saturating_sub(keep)))
                })
                .collect();
            let keys = key_ids.iter().filter_map(|id| book.key_commitments(*id).map(|keep| (*id, keep))).collect();
            for id in key_ids {
                book.forget_key(*id);
            }
            (users, keys)
        };
        {
            let mut sizes = self.sizes();
            for (id, ..) in &users {
                sizes.user_grants.remove(id);
            }
            for (id, _) in &keys {
                sizes.key_grants.remove(id);
            }
        }
        for (at, &(user_id, keep, _)) in users.iter().enumerate() {
            match self.shrink(Some(user_id), None, [keep, 0, 0]).await {
                Ok(left) => {
                    if forget {
                        self.book().forget_user(user_id);
                    }
                    // A lease no longer held bounds the others' validity no more; one freed by
                    // another gateway does while its user's holds stay in the book.
                    if left == Left::Deleted || (forget && left == Left::Missing) {
                        self.asked().remove(&Lease::User(user_id));
                    }
                }
                Err(error) => {
                    // This lease and those not tried are whole in the database: so in the book.
                    let mut book = self.book();
                    for &(user_id, _, given_up) in &users[at..] {
                        book.grant_user(user_id, Money::from_micros(given_up));
                    }
                    return Err(error);
                }
            }
        }
        for (key_id, keep) in keys {
            if self.shrink(None, Some(key_id), keep).await? != Left::Kept {
                // The key left the book: its lease, if any is left, is not used any more.
                self.asked().remove(&Lease::Key(key_id));
            }
        }
        Ok(())
    }

    /// Gives back what is left of this gateway's leases (among `leases`) whose entries left the
    /// book: a key or budget window forgotten while its holds were open keeps their share of its
    /// lease until they close, and one whose give-back the database refused keeps all of it.
    /// Each shrinks to what the open holds and unwritten debits of its key, window or user still
    /// take ([`CreditBook::taken`](apihub_core::credit::CreditBook::taken)). Without this, such a
    /// lease would stay renewed, and its credit unusable by the other gateways, for as long as
    /// this one runs and does not use the key or window again.
    pub(super) async fn return_strays(&self, leases: &[Lease]) -> Result<(), StoreError> {
        let _order = self.order.lock().await;
        self.write_queued().await?;
        // Under the order lock no grant enters an entry: a lease not counted now stays so.
        let strays: Vec<(Lease, [i64; 3])> = {
            let book = self.book();
            leases.iter().filter(|lease| !book.counts(**lease)).map(|lease| (*lease, book.taken(*lease))).collect()
        };
        for (lease, keep) in strays {
            let left = match lease {
                Lease::User(user_id) => self.shrink(Some(user_id), None, [keep[0], 0, 0]).await?,
                Lease::Key(key_id) => self.shrink(None, Some(key_id), keep).await?,
                Lease::Meter(budget, start) => self.shrink_meter(budget, start, keep).await?,
            };
            if left != Left::Kept {
                self.asked().remove(&lease);
            }
        }
        Ok(())
    }

    /// Shrinks this gateway's lease of a user's credit or a key's limits to `keep` (credit,
    /// tokens, calls), deleting it when nothing is kept.
    async fn shrink(&self, user_id: Option<UserId>, key_id: Option<KeyId>, keep: [i64; 3]) -> Result<Left, StoreError> {
        let node_id = self.node_id();
        self.run(async |conn| {
            conn.transaction(async |conn| -> Result<Left, TxError> {
                // The user or key first, then the lease: the lock order.
                let lease: Vec<LeaseRow> = match (user_id, key_id) {
                    (Some(user_id), _) => {
                        diesel::sql_query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                            .bind::<BigInt, _>(user_id)
                            .execute(conn)
                            .await?;
                        diesel::sql_query(
                            "SELECT id, user_id, key_id, amount, tokens, calls FROM credit_leases \
                             WHERE node_id = $1 AND user_id = $2 AND key_id IS NULL FOR UPDATE",
                        )
                        .bind::<Text, _>(&node_id)
                        .bind::<BigInt, _>(user_id)
                        .load(conn)
                        .await?
                    }
                    (None, Some(key_id)) => {
                        diesel::sql_query("SELECT id FROM api_keys WHERE id = $1 FOR UPDATE")
                            .bind::<BigInt, _>(key_id)
                            .execute(conn)
                            .await?;
                        diesel::sql_query(
                            "SELECT id, user_id, key_id, amount, tokens, calls FROM credit_leases \
                             WHERE node_id = $1 AND key_id = $2 FOR UPDATE",
                        )
                        .bind::<Text, _>(&node_id)
                        .bind::<BigInt, _>(key_id)
                        .load(conn)
                        .await?
                    }
                    (None, None) => Vec::new(),
                };
                let mut left = Left::Missing;
                for lease in lease {
                    left = free_lease(conn, &lease, keep).await?;
                }
                Ok(left)
            })
            .await
        })
        .await
    }

    /// Writes every debit queued so far, and gives back every lease but for what open holds take
    /// (shutdown).
    pub async fn give_back_all(&self) -> Result<(), StoreError> {
        self.flush().await?;
        let (users, keys) = self.book().entries();
        self.give_back(&users, &keys, true).await?;
        let meters = self.book().meter_ids();
        self.give_back_meters(&meters).await
    }
}
