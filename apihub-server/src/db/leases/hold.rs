//! Holds on the leases: taking one (growing a lease when it is short), settling and releasing
//! it, and what the open holds take.

use apihub_core::billing::{BillingError, NewReservation, ReservationId, Settled, Settlement, UserFunds};
use apihub_core::credit::{HoldError, MeterId};
use apihub_core::policy::KeyId;
use apihub_core::store::StoreError;
use apihub_core::user::UserId;

use super::grant::Refusal;
use super::{LeaseEngine, MAX_ROUNDS, NUDGE_WAIT, NUDGES};
use crate::db::engine::MAX_UNWRITTEN;

/// What [`LeaseEngine::order_to_grow`] found.
pub(super) enum Ordered<'a> {
    /// The order lock: grow the lease.
    Grow(tokio::sync::MutexGuard<'a, ()>),
    /// The hold fitted: it is taken.
    Held(ReservationId),
}

impl LeaseEngine {
    /// Takes a hold from this gateway's leases, growing them when they are short.
    pub(crate) async fn reserve(&self, new: &NewReservation) -> Result<ReservationId, BillingError> {
        if self.unwritten() >= MAX_UNWRITTEN {
            self.wake_now();
            return Err(BillingError::Store(StoreError::Unavailable("settlements are waiting to be written".into())));
        }
        self.check_validity().await;
        // Each round either holds, or grows a lease (which takes credit from the database, so
        // the rounds end), or is refused; the hold after a growth is taken under the order lock.
        let (mut nudges, mut transient) = (NUDGES, NUDGES);
        let now = self.budgets.now();
        for _ in 0..MAX_ROUNDS {
            let Some(meters) = self.budgets.windows(new.user_id, new.key_id, now) else {
                self.load_budgets(new.user_id, new.key_id).await.map_err(BillingError::Store)?;
                continue;
            };
            let ids: Vec<MeterId> = meters.iter().map(|(id, _)| *id).collect();
            let refused = match self.book().hold_metered(new, &ids) {
                Ok(id) => return Ok(id),
                Err(refused) => refused,
            };
            let grown = match refused {
                HoldError::UserNotLoaded(_) | HoldError::Refused(BillingError::InsufficientBalance { .. }) => {
                    self.grow_user(new, &ids).await
                }
                HoldError::KeyNotLoaded(_) | HoldError::Refused(BillingError::KeyLimit { .. }) => {
                    self.grow_key(new, &ids).await
                }
                HoldError::MeterNotLoaded(_) | HoldError::Refused(BillingError::BudgetSpent { .. }) => {
                    self.grow_meter(new, &meters).await.map_err(Refusal::Refused)
                }
                HoldError::Refused(error) => return Err(error),
            };
            let held = match grown {
                Ok(held) => held,
                // Other gateways lease what this one lacks: ask them for it, and try again.
                Err(Refusal::LeasedElsewhere(_)) if nudges > 0 => {
                    nudges -= 1;
                    tokio::time::sleep(NUDGE_WAIT).await;
                    None
                }
                // A deadlock between gateways or a busy pool: try again shortly.
                Err(Refusal::Refused(BillingError::Store(StoreError::Unavailable(_) | StoreError::Internal(_))))
                    if transient > 0 =>
                {
                    transient -= 1;
                    tokio::time::sleep(NUDGE_WAIT).await;
                    None
                }
                Err(Refusal::LeasedElsewhere(error) | Refusal::Refused(error)) => return Err(error),
            };
            if let Some(id) = held {
                return Ok(id);
            }
        }
        Err(BillingError::Store(StoreError::Unavailable("credit leases changed while the hold was taken".into())))
    }

    /// Waits for the order lock, to grow a lease. When the hold fits once the lock is had
    /// (another request's growth made room meanwhile), it is taken at once: requests refused
    /// together wait for one growth, not for one each.
    pub(super) async fn order_to_grow(
        &self,
        new: &NewReservation,
        meters: &[MeterId],
    ) -> Result<Ordered<'_>, BillingError> {
        let order = self.order.lock().await;
        Ok(match self.hold_now(new, meters)? {
            Some(id) => Ordered::Held(id),
            None => Ordered::Grow(order),
        })
    }

    /// After a growth (the caller holds the order lock): the hold, when it fits now.
    pub(super) fn hold_now(
        &self,
        new: &NewReservation,
        meters: &[MeterId],
    ) -> Result<Option<ReservationId>, BillingError> {
        match self.book().hold_metered(new, meters) {
            Ok(id) => Ok(Some(id)),
            Err(HoldError::Refused(error @ BillingError::Store(_))) => Err(error),
            Err(_) => Ok(None),
        }
    }

    /// Closes a hold with its whole charge and queues the debit.
    pub(crate) fn settle(&self, id: ReservationId, settlement: &Settlement) -> Result<Settled, BillingError> {
        let (settled, first) = self.book_of(id, |book| {
            let (settled, _) = book.settle(id, settlement)?;
            Ok::<_, BillingError>((settled, book.unwritten() == 1))
        })?;
        if first {
            self.wake.notify_one();
        }
        Ok(settled)
    }

    /// Frees a hold (its credit stays in this gateway's lease).
    pub(crate) fn release(&self, id: ReservationId) -> Result<(), BillingError> {
        self.book_of(id, |book| book.release(id))
    }

    /// Holds open on this gateway.
    pub(crate) fn open_holds(&self) -> usize {
        let here = self.book().open_holds();
        here + self.retired().iter().map(|(_, old)| old.open_holds()).sum::<usize>()
    }

    /// What this gateway's open holds take from a key: (tokens, credit in micros, calls).
    pub(crate) fn key_holds(&self, key_id: KeyId) -> Option<(i64, i64, i64)> {
        let counters = self.book().key_counters(key_id)?;
        Some((counters.tokens_reserved, counters.quota_reserved.micros(), counters.calls_reserved))
    }

    /// What this gateway holds and has not written of a user's credit: (held, unwritten).
    pub(crate) fn user_holds(&self, user_id: UserId) -> Option<UserFunds> {
        self.book().funds(user_id)
    }
}
