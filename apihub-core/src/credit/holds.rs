//! Holds: taking one (checked against the user's funds, the key's counters and the budget
//! windows), holding funds with no key, settling a hold into a queued debit, and releasing it.

use std::sync::Arc;

use crate::billing::{BillingError, NewReservation, ReservationId, Settled, Settlement, check_hold, settle_amounts};
use crate::money::Money;
use crate::policy::KeyId;
use crate::user::UserId;

use super::{CreditBook, Debit, MeterId, OpenHold, add3, sub3};

/// Why [`CreditBook::hold`] could not decide.
#[derive(Debug)]
pub enum HoldError {
    /// The user is not in the book: load it ([`CreditBook::store_user`]) and try again.
    UserNotLoaded(UserId),
    /// The key is not in the book: load it ([`CreditBook::store_key`]) and try again.
    KeyNotLoaded(KeyId),
    /// A budget window is not in the book: load it ([`CreditBook::store_meter`]) and try again.
    MeterNotLoaded(MeterId),
    /// Refused by the rules (or the key is not the user's: [`StoreError::NotFound`](crate::store::StoreError)).
    Refused(BillingError),
}

impl CreditBook {
    /// Checks and takes a hold in one step ([`check_hold`] against the user's funds and the
    /// key's counters, unwritten settlements and open holds included).
    pub fn hold(&mut self, new: &NewReservation) -> Result<ReservationId, HoldError> {
        self.hold_metered(new, &[])
    }

    /// [`Self::hold`], also within the limits of budget windows `meters` (the windows of the
    /// key's and the user's budgets that contain the request's time): each window's usage,
    /// unwritten settlements and open holds, plus this hold's credit, tokens and one call, must
    /// stay within its limits.
    pub fn hold_metered(&mut self, new: &NewReservation, meters: &[MeterId]) -> Result<ReservationId, HoldError> {
        crate::billing::check_new(new).map_err(HoldError::Refused)?;
        let (amount, tokens) = (new.hold.amount.micros(), new.hold.tokens);
        let user = self.users.get(&new.user_id).ok_or(HoldError::UserNotLoaded(new.user_id))?;
        let key = self.keys.get(&new.key_id).ok_or(HoldError::KeyNotLoaded(new.key_id))?;
        if key.stored.user_id != new.user_id {
            return Err(HoldError::Refused(BillingError::Store(crate::store::StoreError::NotFound)));
        }
        check_hold(&user.funds(), &key.counters(), &new.hold).map_err(HoldError::Refused)?;
        let add = [amount, tokens, 1];
        for id in meters {
            let meter = self.meters.get(id).ok_or(HoldError::MeterNotLoaded(*id))?;
            if let Some(refusal) = meter.refusal(id, add) {
                return Err(HoldError::Refused(refusal));
            }
        }
        if self.open_requests.contains(new.request_id.as_str()) {
            let conflict = format!("request id `{}` already holds credit", new.request_id);
            return Err(HoldError::Refused(BillingError::Store(crate::store::StoreError::Conflict(conflict))));
        }
        let request_id: Arc<str> = Arc::from(new.request_id.as_str());
        self.open_requests.insert(request_id.clone());
        self.last_id += 1;
        if let Some(user) = self.users.get_mut(&new.user_id) {
            user.reserved += amount;
            user.last_hold = self.last_id;
        }
        if let Some(key) = self.keys.get_mut(&new.key_id) {
            key.reserved.quota += amount;
            key.reserved.tokens += tokens;
            key.reserved.calls += 1;
            key.last_hold = self.last_id;
        }
        for id in meters {
            if let Some(meter) = self.meters.get_mut(id) {
                add3(&mut meter.reserved, add);
                meter.last_hold = self.last_id;
            }
        }
        let hold =
            OpenHold { user_id: new.user_id, key_id: new.key_id, request_id, amount, tokens, meters: meters.to_vec() };
        self.holds.insert(self.last_id, hold);
        Ok(self.last_id)
    }

    /// Holds `amount` of a user's available credit with no key (an administrator's debit, while it
    /// is written): refused as a request's hold would be.
    pub fn hold_funds(&mut self, user_id: UserId, amount: Money) -> Result<(), HoldError> {
        let user = self.users.get_mut(&user_id).ok_or(HoldError::UserNotLoaded(user_id))?;
        let available = user.funds().available();
        if amount > available || amount.is_negative() {
            return Err(HoldError::Refused(BillingError::InsufficientBalance { available, required: amount }));
        }
        user.reserved += amount.micros();
        Ok(())
    }

    /// Frees what [`Self::hold_funds`] held.
    pub fn release_funds(&mut self, user_id: UserId, amount: Money) {
        if let Some(user) = self.users.get_mut(&user_id) {
            user.reserved -= amount.micros();
        }
    }

    /// Closes a hold with its charge, all of it, even above the hold; queues the debit.
    pub fn settle(&mut self, id: ReservationId, settlement: &Settlement) -> Result<(Settled, Debit), BillingError> {
        let hold = self.close(id)?;
        let (charge, overage) = settle_amounts(settlement.charge, Money::from_micros(hold.amount));
        let charge = charge.micros();
        let tokens = settlement.tokens.max(0);
        if let Some(user) = self.users.get_mut(&hold.user_id) {
            user.unwritten = user.unwritten.saturating_add(charge);
        }
        if let Some(key) = self.keys.get_mut(&hold.key_id) {
            key.unwritten.quota = key.unwritten.quota.saturating_add(charge);
            key.unwritten.tokens = key.unwritten.tokens.saturating_add(tokens);
            key.unwritten.calls += i64::from(settlement.success);
        }
        for id in &hold.meters {
            if let Some(meter) = self.meters.get_mut(id) {
                add3(&mut meter.unwritten, [charge, tokens, i64::from(settlement.success)]);
            }
        }
        self.last_seq += 1;
        let debit = Debit {
            seq: self.last_seq,
            user_id: hold.user_id,
            key_id: hold.key_id,
            request_id: hold.request_id,
            charge: Money::from_micros(charge),
            tokens,
            success: settlement.success,
            description: Arc::from(settlement.description.as_str()),
            overage,
            meters: hold.meters,
        };
        self.queue.push_back(debit.clone());
        let settled = Settled { transaction: None, charged: debit.charge, overage: debit.overage };
        Ok((settled, debit))
    }

    /// Frees a hold without charging anything.
    pub fn release(&mut self, id: ReservationId) -> Result<(), BillingError> {
        self.close(id).map(|_| ())
    }

    /// Removes a hold and frees what it held.
    fn close(&mut self, id: ReservationId) -> Result<OpenHold, BillingError> {
        let hold = self.holds.remove(&id).ok_or(BillingError::NotOpen(id))?;
        self.open_requests.remove(&hold.request_id);
        if let Some(user) = self.users.get_mut(&hold.user_id) {
            user.reserved -= hold.amount;
        }
        if let Some(key) = self.keys.get_mut(&hold.key_id) {
            key.reserved.quota -= hold.amount;
            key.reserved.tokens -= hold.tokens;
            key.reserved.calls -= 1;
        }
        for id in &hold.meters {
            if let Some(meter) = self.meters.get_mut(id) {
                sub3(&mut meter.reserved, [hold.amount, hold.tokens, 1]);
            }
        }
        Ok(hold)
    }
}
