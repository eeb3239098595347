//! [`BillingStore`] for [`MemoryStore`]: reservations held, settled and released under the
//! store's one lock, so concurrent reserves can never together exceed a balance or a key limit.
//!
//! A hold is kept where the SQL store keeps it: in the user's `reserved`, in the key's reserved
//! counters ([`KeyHolds`]) and in a reservation row. Settling writes the charge as a `consume`
//! row through the ledger's own [`State::write`], with the request id as its order number; a
//! request id that could not be that order number, or one an open reservation holds, is refused
//! when reserving, before anything is held or forwarded.

use async_trait::async_trait;
use chrono::Utc;

use apihub_core::Money;
use apihub_core::billing::{
    BillingError, BillingStore, HoldRequest, KeyCounters, NewReservation, ReservationId, Settled, Settlement,
    UserFunds, check_hold, check_new, settle_amounts,
};
use apihub_core::ledger::{
    LedgerError, LedgerOp, MAX_DESCRIPTION_LEN, MAX_ORDER_NO_LEN, Transition, TxType, plan_settlement,
};
use apihub_core::policy::{ApiKey, KeyId};
use apihub_core::store::StoreError;
use apihub_core::user::UserId;

use super::keys::KeyRow;
use super::{MemoryStore, State, next_id};

/// An open reservation (a row of the SQL store's `reservations` table).
#[derive(Clone)]
pub(super) struct Reservation {
    user_id: UserId,
    key_id: KeyId,
    request_id: String,
    hold: HoldRequest,
}

/// What open reservations hold against one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct KeyHolds {
    tokens: i64,
    quota: Money,
    calls: i64,
}

impl KeyHolds {
    /// These holds and one more, or `None` on overflow.
    fn plus(self, hold: &HoldRequest) -> Option<Self> {
        Some(KeyHolds {
            tokens: self.tokens.checked_add(hold.tokens)?,
            quota: self.quota.checked_add(hold.amount)?,
            calls: self.calls.checked_add(1)?,
        })
    }

    /// These holds less one of them.
    fn minus(self, hold: &HoldRequest) -> Self {
        KeyHolds { tokens: self.tokens - hold.tokens, quota: less(self.quota, hold.amount), calls: self.calls - 1 }
    }
}

/// `total - part`, where `part` was added to `total` before (a hold being freed): cannot overflow.
fn less(total: Money, part: Money) -> Money {
    Money::from_micros(total.micros() - part.micros())
}

/// A ledger refusal as a billing error.
fn refused(error: LedgerError) -> BillingError {
    BillingError::Store(error.into())
}

impl KeyRow {
    /// The key's limits and counters, open holds included.
    fn counters(&self) -> KeyCounters {
        let ApiKey { policy, usage, .. } = &self.key;
        KeyCounters {
            token_limit: policy.token_limit,
            quota_limit: policy.quota_limit,
            remaining_calls: policy.remaining_calls,
            tokens_used: usage.tokens_used,
            quota_used: usage.quota_used,
            tokens_reserved: self.holds.tokens,
            quota_reserved: self.holds.quota,
            calls_reserved: self.holds.calls,
        }
    }

    /// The key once a call it held for is charged `charge`, or `None` when a call count would
    /// overflow. The usage sums saturate, as the SQL stores' do: an absurd charge must not strand
    /// the hold. `remaining_calls` stops at zero, as in the SQL stores: an administrator may cut it
    /// below the calls already held, and those calls are still served.
    fn settled(&self, charge: Money, settlement: &Settlement) -> Option<ApiKey> {
        let mut key = self.key.clone();
        let usage = &mut key.usage;
        usage.quota_used = Money::from_micros(usage.quota_used.micros().saturating_add(charge.micros()));
        usage.tokens_used = usage.tokens_used.saturating_add(settlement.tokens.max(0));
        usage.calls_total = usage.calls_total.checked_add(1)?;
        if settlement.success {
            usage.calls_succeeded = usage.calls_succeeded.checked_add(1)?;
            if let Some(left) = &mut key.policy.remaining_calls {
                *left = left.saturating_sub(1).max(0);
            }
        }
        key.updated_at = Utc::now();
        Some(key)
    }
}

impl State {
    /// [`BillingStore::reserve`], with the lock held: check, then hold; a refusal changes nothing.
    fn reserve(&mut self, new: &NewReservation) -> Result<ReservationId, BillingError> {
        self.check_unbilled(new)?;
        let user = self.users.get_mut(&new.user_id).ok_or(StoreError::NotFound)?;
        let key = self.keys.get_mut(&new.key_id).filter(|row| row.key.user_id == new.user_id);
        let key = key.ok_or(StoreError::NotFound)?;
        check_hold(&user.funds(), &key.counters(), &new.hold)?;
        let held = user.reserved.checked_add(new.hold.amount).zip(key.holds.plus(&new.hold));
        let (reserved, holds) = held.ok_or_else(|| refused(LedgerError::Overflow))?;
        user.reserved = reserved;
        key.holds = holds;
        let id = next_id(&mut self.last_reservation_id);
        let reservation = Reservation {
            user_id: new.user_id,
            key_id: new.key_id,
            request_id: new.request_id.clone(),
            hold: new.hold,
        };
        self.reservations.insert(id, reservation);
        Ok(id)
    }

    /// Refuses a negative hold, a request id that could not be the order number of the consume
    /// row, and one an open reservation holds.
    fn check_unbilled(&self, new: &NewReservation) -> Result<(), BillingError> {
        check_new(new)?;
        if self.reservations.values().any(|r| r.request_id == new.request_id) {
            return Err(StoreError::Conflict(format!("request id `{}` already holds credit", new.request_id)).into());
        }
        Ok(())
    }

    /// [`BillingStore::settle`], with the lock held: everything that could refuse is checked before
    /// anything changes, so a refusal leaves the reservation open.
    fn settle(&mut self, id: ReservationId, settlement: &Settlement) -> Result<Settled, BillingError> {
        let open = self.reservations.get(&id).ok_or(BillingError::NotOpen(id))?.clone();
        let (charge, overage) = settle_amounts(settlement.charge, open.hold.amount);
        let consume = if charge.is_positive() {
            Some(self.plan_consume(id, &open, charge, &settlement.description)?)
        } else {
            None
        };
        // A key deleted meanwhile is skipped; its user is charged all the same.
        let key = match self.keys.get(&open.key_id) {
            Some(row) => Some(row.settled(charge, settlement).ok_or_else(|| refused(LedgerError::Overflow))?),
            None => None,
        };
        self.close(id)?;
        if let (Some(row), Some(key)) = (self.keys.get_mut(&open.key_id), key) {
            row.key = key;
        }
        let transaction = consume.map(|(op, transition)| self.write(open.user_id, op, &transition)).transpose()?;
        Ok(Settled { transaction, charged: charge, overage })
    }

    /// The consume row for reservation `id` charged `charge`, planned against the user's account.
    fn plan_consume(
        &self,
        id: ReservationId,
        open: &Reservation,
        charge: Money,
        description: &str,
    ) -> Result<(LedgerOp, Transition), StoreError> {
        let order_no = self.order_no_for(id, &open.request_id)?;
        let account = self.users.get(&open.user_id).ok_or(StoreError::NotFound)?.user.account;
        // The description is free text: cut it to what a row keeps rather than refuse the charge.
        let description: String = description.chars().take(MAX_DESCRIPTION_LEN).collect();
        let op = LedgerOp::new(TxType::Consume, charge).with_order_no(order_no).with_description(description);
        // Usage above the hold is billed too, even below a zero balance.
        let transition = plan_settlement(&account, &op)?;
        Ok((op, transition))
    }

    /// The consume row's order number: the request id, or, when a row already has it (a caller
    /// reusing request ids), the request id with `#` and the reservation id appended (cut to fit),
    /// as the SQL stores do: each call is charged under a number of its own.
    fn order_no_for(&self, id: ReservationId, request_id: &str) -> Result<String, StoreError> {
        if self.order(TxType::Consume, request_id).is_none() {
            return Ok(request_id.to_owned());
        }
        let suffix = format!("#{id}");
        // The request id is printable ASCII (checked when reserving), so any cut is a char boundary.
        let keep = request_id.len().min(MAX_ORDER_NO_LEN.saturating_sub(suffix.len()));
        let order_no = format!("{}{suffix}", &request_id[..keep]);
        match self.order(TxType::Consume, &order_no) {
            None => Ok(order_no),
            Some(_) => Err(StoreError::Conflict(format!("order number `{order_no}` is taken"))),
        }
    }

    /// Removes an open reservation and frees what it held.
    fn close(&mut self, id: ReservationId) -> Result<Reservation, BillingError> {
        let open = self.reservations.remove(&id).ok_or(BillingError::NotOpen(id))?;
        if let Some(user) = self.users.get_mut(&open.user_id) {
            user.reserved = less(user.reserved, open.hold.amount);
        }
        if let Some(key) = self.keys.get_mut(&open.key_id) {
            key.holds = key.holds.minus(&open.hold);
        }
        Ok(open)
    }
}

#[async_trait]
impl BillingStore for MemoryStore {
    async fn reserve(&self, reservation: &NewReservation) -> Result<ReservationId, BillingError> {
        self.lock()?.reserve(reservation)
    }

    async fn settle(&self, id: ReservationId, settlement: &Settlement) -> Result<Settled, BillingError> {
        self.lock()?.settle(id, settlement)
    }

    async fn release(&self, id: ReservationId) -> Result<(), BillingError> {
        self.lock()?.close(id).map(drop)
    }

    /// Frees nothing: holds live in this process's memory, as the store does, so no crash can
    /// leave one behind, and a hold however old belongs to a request still running (a long
    /// stream), whose settlement must still find it (as the SQL stores' credit engines do).
    async fn release_stale(&self, _age: std::time::Duration) -> Result<u64, BillingError> {
        Ok(0)
    }

    async fn reserved_funds(&self, user_id: UserId) -> Result<UserFunds, BillingError> {
        Ok(self.lock()?.users.get(&user_id).ok_or(StoreError::NotFound)?.funds())
    }

    fn known_balance(&self, user_id: UserId) -> Option<Money> {
        Some(self.lock().ok()?.users.get(&user_id)?.funds().balance)
    }
}
