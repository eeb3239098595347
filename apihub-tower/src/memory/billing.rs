//! [`BillingStore`] for [`MemoryStore`]: reservations held, settled and released under the
//! store's one lock, so concurrent reserves can never together exceed a balance or a key limit.
//!
//! A hold is kept where the SQL store keeps it: in the user's `reserved`, in the key's reserved
//! counters ([`KeyHolds`]) and in a reservation row. Settling writes the charge as a `consume`
//! row through the ledger's own [`State::write`], with the request id as its order number; a
//! request id that could not be that order number is refused when reserving, before anything is
//! held or forwarded.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use apihub_core::Money;
use apihub_core::billing::{
    BillingError, BillingStore, HoldRequest, KeyCounters, NewReservation, ReservationId, Settled, Settlement,
    UserFunds, check_hold, settle_amounts,
};
use apihub_core::ledger::{LedgerError, LedgerOp, MAX_DESCRIPTION_LEN, Transition, TxType, delta_of, plan_settlement};
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
    created_at: DateTime<Utc>,
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
    /// the hold.
    fn settled(&self, charge: Money, settlement: &Settlement) -> Option<ApiKey> {
        let mut key = self.key.clone();
        let usage = &mut key.usage;
        usage.quota_used = Money::from_micros(usage.quota_used.micros().saturating_add(charge.micros()));
        usage.tokens_used = usage.tokens_used.saturating_add(settlement.tokens.max(0));
        usage.calls_total = usage.calls_total.checked_add(1)?;
        if settlement.success {
            usage.calls_succeeded = usage.calls_succeeded.checked_add(1)?;
            if let Some(left) = &mut key.policy.remaining_calls {
                *left = left.checked_sub(1)?;
            }
        }
        key.updated_at = Utc::now();
        Some(key)
    }
}

impl State {
    /// [`BillingStore::reserve`], with the lock held: check, then hold; a refusal changes nothing.
    fn reserve(&mut self, new: &NewReservation) -> Result<ReservationId, BillingError> {
        self.check_new(new)?;
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
            created_at: Utc::now(),
        };
        self.reservations.insert(id, reservation);
        Ok(id)
    }

    /// Refuses a negative hold, and a request id that could not be the order number of the consume
    /// row: malformed, or already used by a consume row or an open reservation.
    fn check_new(&self, new: &NewReservation) -> Result<(), StoreError> {
        if new.hold.amount.is_negative() || new.hold.tokens < 0 {
            return Err(LedgerError::InvalidField("a hold must not be negative").into());
        }
        // The ledger's own rules for an order number, checked on a stand-in consume.
        delta_of(&LedgerOp::new(TxType::Consume, Money::from_micros(1)).with_order_no(&new.request_id))?;
        let open = self.reservations.values().any(|r| r.request_id == new.request_id);
        if open || self.order(TxType::Consume, &new.request_id).is_some() {
            return Err(StoreError::Conflict(format!("request id `{}` is already billed", new.request_id)));
        }
        Ok(())
    }

    /// [`BillingStore::settle`], with the lock held: everything that could refuse is checked before
    /// anything changes, so a refusal leaves the reservation open.
    fn settle(&mut self, id: ReservationId, settlement: &Settlement) -> Result<Settled, BillingError> {
        let open = self.reservations.get(&id).ok_or(BillingError::NotOpen(id))?.clone();
        let (charge, overage) = settle_amounts(settlement.charge, open.hold.amount);
        let consume =
            if charge.is_positive() { Some(self.plan_consume(&open, charge, &settlement.description)?) } else { None };
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

    /// The consume row for a reservation charged `charge`, planned against the user's account.
    fn plan_consume(
        &self,
        open: &Reservation,
        charge: Money,
        description: &str,
    ) -> Result<(LedgerOp, Transition), StoreError> {
        if self.order(TxType::Consume, &open.request_id).is_some() {
            return Err(StoreError::Conflict(format!("request id `{}` was billed meanwhile", open.request_id)));
        }
        let account = self.users.get(&open.user_id).ok_or(StoreError::NotFound)?.user.account;
        // The description is free text: cut it to what a row keeps rather than refuse the charge.
        let description: String = description.chars().take(MAX_DESCRIPTION_LEN).collect();
        let op = LedgerOp::new(TxType::Consume, charge).with_order_no(&open.request_id).with_description(description);
        // Usage above the hold is billed too, even below a zero balance.
        let transition = plan_settlement(&account, &op)?;
        Ok((op, transition))
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

    /// [`BillingStore::release_stale`], with the lock held.
    fn release_stale(&mut self, age: std::time::Duration) -> Result<u64, BillingError> {
        let before = Utc::now() - chrono::TimeDelta::from_std(age).unwrap_or(chrono::TimeDelta::MAX);
        let stale: Vec<ReservationId> =
            self.reservations.iter().filter(|(_, r)| r.created_at < before).map(|(&id, _)| id).collect();
        for &id in &stale {
            self.close(id)?;
        }
        Ok(stale.len() as u64)
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

    async fn release_stale(&self, age: std::time::Duration) -> Result<u64, BillingError> {
        self.lock()?.release_stale(age)
    }

    async fn reserved_funds(&self, user_id: UserId) -> Result<UserFunds, BillingError> {
        Ok(self.lock()?.users.get(&user_id).ok_or(StoreError::NotFound)?.funds())
    }

    fn known_balance(&self, user_id: UserId) -> Option<Money> {
        Some(self.lock().ok()?.users.get(&user_id)?.funds().balance)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use apihub_core::key::GeneratedKey;
    use apihub_core::ledger::Account;
    use apihub_core::policy::{KeyPolicy, KeyUsage};
    use apihub_core::store::{KeyStore, LedgerStore, NewKey, UserStore};
    use apihub_core::user::User;
    use chrono::TimeDelta;

    use super::super::{funded, race, rows};
    use super::*;

    fn credits(n: i64) -> Money {
        Money::from_credits(n)
    }

    /// A key of `user`'s with `policy`.
    async fn key_of(store: &MemoryStore, user: &User, policy: KeyPolicy) -> ApiKey {
        let GeneratedKey { public_id, secret_hash, last4, .. } = GeneratedKey::generate();
        let new = NewKey { public_id, secret_hash, last4, policy, batch_id: None };
        store.create_keys(user.id, vec![new]).await.unwrap().remove(0)
    }

    /// A store in which alice holds `balance` credits and one key with `policy`.
    async fn alice_with_key(balance: i64, policy: KeyPolicy) -> (MemoryStore, User, ApiKey) {
        let store = MemoryStore::new();
        let alice = funded(&store, "alice", balance).await;
        let key = key_of(&store, &alice, policy).await;
        (store, alice, key)
    }

    fn hold(user: &User, key: &ApiKey, request_id: &str, amount: i64, tokens: i64) -> NewReservation {
        NewReservation {
            user_id: user.id,
            key_id: key.id,
            request_id: request_id.into(),
            hold: HoldRequest { amount: credits(amount), tokens },
        }
    }

    fn charge(charge: Money, tokens: i64, success: bool) -> Settlement {
        Settlement { charge, tokens, success, description: "gpt-4o via key 1".into() }
    }

    fn funds(balance: i64, reserved: i64) -> UserFunds {
        UserFunds { balance: credits(balance), reserved: credits(reserved) }
    }

    fn holds_of(store: &MemoryStore, key: &ApiKey) -> KeyHolds {
        store.lock().unwrap().keys[&key.id].holds
    }

    async fn account(store: &MemoryStore, user: &User) -> Account {
        store.user(user.id).await.unwrap().unwrap().account
    }

    /// Everything a refusal must leave as it was.
    fn snapshot(store: &MemoryStore) -> impl PartialEq + std::fmt::Debug {
        let state = store.lock().unwrap();
        let users: Vec<_> = state.users.values().map(|row| (row.user.clone(), row.reserved)).collect();
        let keys: Vec<_> = state.keys.values().map(|row| (row.key.clone(), row.holds)).collect();
        let open: Vec<_> = state.reservations.keys().copied().collect();
        (users, keys, open, state.transactions.clone())
    }

    #[tokio::test]
    async fn settling_charges_and_frees_the_hold_and_releasing_frees_it() {
        let (store, alice, key) =
            alice_with_key(10, KeyPolicy { remaining_calls: Some(5), ..KeyPolicy::default() }).await;
        let id = store.reserve(&hold(&alice, &key, "req-1", 3, 100)).await.unwrap();
        assert_eq!(store.reserved_funds(alice.id).await.unwrap(), funds(10, 3));
        assert_eq!(holds_of(&store, &key), KeyHolds { tokens: 100, quota: credits(3), calls: 1 });

        let settled = store.settle(id, &charge(credits(2), 60, true)).await.unwrap();
        assert_eq!(settled.charged, credits(2));
        let row = settled.transaction.unwrap();
        assert_eq!((row.user_id, row.tx_type, row.amount), (alice.id, TxType::Consume, credits(-2)));
        assert_eq!((row.balance_before, row.balance_after), (credits(10), credits(8)));
        assert_eq!((row.order_no.as_deref(), row.description.as_deref()), (Some("req-1"), Some("gpt-4o via key 1")));
        assert_eq!(rows(&store, Some(alice.id)).await[0], row);
        assert_eq!(store.reserved_funds(alice.id).await.unwrap(), funds(8, 0));
        let expected = Account { balance: credits(8), total_recharged: credits(10), total_consumed: credits(2) };
        assert_eq!(account(&store, &alice).await, expected);
        let after = store.key(key.id).await.unwrap().unwrap();
        let usage = KeyUsage { tokens_used: 60, quota_used: credits(2), calls_total: 1, calls_succeeded: 1 };
        assert_eq!((after.usage, after.policy.remaining_calls), (usage, Some(4)));
        assert_eq!(holds_of(&store, &key), KeyHolds::default());

        let id = store.reserve(&hold(&alice, &key, "req-2", 5, 100)).await.unwrap();
        assert_eq!(store.reserved_funds(alice.id).await.unwrap(), funds(8, 5));
        store.release(id).await.unwrap();
        assert_eq!(store.reserved_funds(alice.id).await.unwrap(), funds(8, 0));
        assert_eq!(store.key(key.id).await.unwrap().unwrap(), after);
        assert_eq!(holds_of(&store, &key), KeyHolds::default());
        assert_eq!(rows(&store, Some(alice.id)).await.len(), 2);
    }

    #[tokio::test]
    async fn usage_above_the_hold_is_billed_even_below_a_zero_balance() {
        let (store, alice, key) =
            alice_with_key(10, KeyPolicy { remaining_calls: Some(5), ..KeyPolicy::default() }).await;
        let id = store.reserve(&hold(&alice, &key, "req-1", 3, 100)).await.unwrap();
        // A failed call is charged what it used, and keeps its call.
        let settled = store.settle(id, &charge(credits(5), 100, false)).await.unwrap();
        assert_eq!((settled.charged, settled.overage), (credits(5), credits(2)));
        assert_eq!(settled.transaction.unwrap().amount, credits(-5));
        for (n, below_one) in [Money::ZERO, credits(-1)].into_iter().enumerate() {
            let id = store.reserve(&hold(&alice, &key, &format!("free-{n}"), 2, 10)).await.unwrap();
            let settled = store.settle(id, &charge(below_one, 10, true)).await.unwrap();
            assert_eq!(settled, Settled { transaction: None, charged: Money::ZERO, overage: Money::ZERO });
        }
        assert_eq!(store.reserved_funds(alice.id).await.unwrap(), funds(5, 0));
        assert_eq!(rows(&store, Some(alice.id)).await.len(), 2);
        let after = store.key(key.id).await.unwrap().unwrap();
        let usage = KeyUsage { tokens_used: 120, quota_used: credits(5), calls_total: 3, calls_succeeded: 2 };
        assert_eq!((after.usage, after.policy.remaining_calls), (usage, Some(3)));
    }

    #[tokio::test]
    async fn a_reservation_closes_once() {
        let (store, alice, key) = alice_with_key(10, KeyPolicy::default()).await;
        let settled = store.reserve(&hold(&alice, &key, "req-1", 3, 0)).await.unwrap();
        store.settle(settled, &charge(credits(3), 0, true)).await.unwrap();
        let released = store.reserve(&hold(&alice, &key, "req-2", 3, 0)).await.unwrap();
        store.release(released).await.unwrap();
        let before = snapshot(&store);
        for id in [settled, released, 99] {
            let again = store.settle(id, &charge(credits(3), 0, true)).await;
            assert!(matches!(again, Err(BillingError::NotOpen(n)) if n == id));
            assert!(matches!(store.release(id).await, Err(BillingError::NotOpen(n)) if n == id));
        }
        assert_eq!(snapshot(&store), before);
        assert_eq!(store.reserved_funds(alice.id).await.unwrap(), funds(7, 0));
    }

    #[tokio::test]
    async fn each_limit_refuses_and_changes_nothing() {
        let store = MemoryStore::new();
        let alice = funded(&store, "alice", 100).await;
        let bob = funded(&store, "bob", 100).await;
        let calls = key_of(&store, &alice, KeyPolicy { remaining_calls: Some(1), ..KeyPolicy::default() }).await;
        let tokens = key_of(&store, &alice, KeyPolicy { token_limit: Some(100), ..KeyPolicy::default() }).await;
        let quota = key_of(&store, &alice, KeyPolicy { quota_limit: Some(credits(5)), ..KeyPolicy::default() }).await;
        let unlimited = key_of(&store, &alice, KeyPolicy::default()).await;
        let bobs = key_of(&store, &bob, KeyPolicy::default()).await;
        store.reserve(&hold(&alice, &calls, "c1", 1, 0)).await.unwrap();
        store.reserve(&hold(&alice, &tokens, "t1", 1, 60)).await.unwrap();
        store.reserve(&hold(&alice, &quota, "q1", 3, 0)).await.unwrap();
        let before = snapshot(&store);

        let refusals = [
            (hold(&alice, &calls, "c2", 1, 0), "remaining_calls"),
            (hold(&alice, &tokens, "t2", 1, 41), "token_limit"),
            (hold(&alice, &quota, "q2", 3, 0), "quota_limit"),
        ];
        for (new, limit) in refusals {
            let refused = store.reserve(&new).await;
            assert!(matches!(refused, Err(BillingError::KeyLimit { limit: l }) if l == limit), "{refused:?}");
            assert_eq!(snapshot(&store), before);
        }
        // 5 of alice's 100 credits are held.
        let refused = store.reserve(&hold(&alice, &unlimited, "u1", 96, 0)).await;
        assert!(matches!(
            refused,
            Err(BillingError::InsufficientBalance { available, required })
                if (available, required) == (credits(95), credits(96))
        ));
        let strangers = [hold(&alice, &bobs, "x1", 1, 0), hold(&bob, &unlimited, "x2", 1, 0), {
            let mut nobody = hold(&alice, &unlimited, "x3", 1, 0);
            nobody.user_id = 99;
            nobody
        }];
        for new in strangers {
            assert!(matches!(store.reserve(&new).await, Err(BillingError::Store(StoreError::NotFound))));
        }
        assert_eq!(snapshot(&store), before);

        // Up to each limit exactly still holds.
        store.reserve(&hold(&alice, &tokens, "t3", 1, 40)).await.unwrap();
        store.reserve(&hold(&alice, &quota, "q3", 2, 0)).await.unwrap();
        store.reserve(&hold(&alice, &unlimited, "u2", 92, 0)).await.unwrap();
        assert_eq!(store.reserved_funds(alice.id).await.unwrap(), funds(100, 100));
    }

    #[tokio::test]
    async fn request_ids_are_checked_before_anything_is_held() {
        let (store, alice, key) = alice_with_key(10, KeyPolicy::default()).await;
        let id = store.reserve(&hold(&alice, &key, "req-1", 1, 0)).await.unwrap();
        let before = snapshot(&store);
        let open = store.reserve(&hold(&alice, &key, "req-1", 1, 0)).await;
        assert!(matches!(open, Err(BillingError::Store(StoreError::Conflict(_)))));
        let malformed = store.reserve(&hold(&alice, &key, "has space", 1, 0)).await;
        assert!(matches!(malformed, Err(BillingError::Store(StoreError::Ledger(LedgerError::InvalidField(_))))));
        let negative = store.reserve(&hold(&alice, &key, "req-2", -1, 0)).await;
        assert!(matches!(negative, Err(BillingError::Store(StoreError::Ledger(LedgerError::InvalidField(_))))));
        assert_eq!(snapshot(&store), before);

        store.settle(id, &charge(credits(1), 0, true)).await.unwrap();
        let billed = store.reserve(&hold(&alice, &key, "req-1", 1, 0)).await;
        assert!(matches!(billed, Err(BillingError::Store(StoreError::Conflict(_)))));
        // A description longer than a row keeps is cut, not a reason to charge nothing.
        let id = store.reserve(&hold(&alice, &key, "req-3", 1, 0)).await.unwrap();
        let long = Settlement { description: "x".repeat(MAX_DESCRIPTION_LEN + 1), ..charge(credits(1), 0, true) };
        let row = store.settle(id, &long).await.unwrap().transaction.unwrap();
        assert_eq!(row.description.unwrap().len(), MAX_DESCRIPTION_LEN);
    }

    #[tokio::test]
    async fn a_key_deleted_meanwhile_still_charges_its_user() {
        let (store, alice, key) = alice_with_key(10, KeyPolicy::default()).await;
        let id = store.reserve(&hold(&alice, &key, "req-1", 4, 0)).await.unwrap();
        store.delete_key(key.id).await.unwrap();
        let settled = store.settle(id, &charge(credits(3), 0, true)).await.unwrap();
        assert_eq!(settled.charged, credits(3));
        assert_eq!(store.reserved_funds(alice.id).await.unwrap(), funds(7, 0));
    }

    #[tokio::test]
    async fn stale_holds_are_released() {
        let (store, alice, key) = alice_with_key(10, KeyPolicy::default()).await;
        let old = store.reserve(&hold(&alice, &key, "old", 2, 20)).await.unwrap();
        let recent = store.reserve(&hold(&alice, &key, "recent", 3, 30)).await.unwrap();
        store.lock().unwrap().reservations.get_mut(&old).unwrap().created_at -= TimeDelta::minutes(10);

        assert_eq!(store.release_stale(Duration::from_secs(5 * 60)).await.unwrap(), 1);
        assert_eq!(store.reserved_funds(alice.id).await.unwrap(), funds(10, 3));
        assert_eq!(holds_of(&store, &key), KeyHolds { tokens: 30, quota: credits(3), calls: 1 });
        assert!(matches!(store.release(old).await, Err(BillingError::NotOpen(_))));

        assert_eq!(store.release_stale(Duration::ZERO).await.unwrap(), 1);
        assert!(matches!(store.release(recent).await, Err(BillingError::NotOpen(_))));
        assert_eq!(store.release_stale(Duration::ZERO).await.unwrap(), 0);
        assert_eq!(store.reserved_funds(alice.id).await.unwrap(), funds(10, 0));
        assert_eq!(holds_of(&store, &key), KeyHolds::default());
        assert_eq!(rows(&store, Some(alice.id)).await.len(), 1);
    }

    #[tokio::test]
    async fn holds_limit_ledger_debits() {
        let (store, alice, key) = alice_with_key(10, KeyPolicy::default()).await;
        let id = store.reserve(&hold(&alice, &key, "req-1", 8, 0)).await.unwrap();
        let short = Err(LedgerError::InsufficientBalance { available: credits(2), required: credits(3) });
        for debit in [LedgerOp::new(TxType::Consume, credits(3)), LedgerOp::new(TxType::Adjust, credits(-3))] {
            let refused = store.apply(alice.id, debit).await.map_err(|e| match e {
                StoreError::Ledger(e) => e,
                other => panic!("expected a ledger refusal, got {other}"),
            });
            assert_eq!(refused.map(drop), short);
        }
        store.apply(alice.id, LedgerOp::new(TxType::Consume, credits(2))).await.unwrap();
        store.apply(alice.id, LedgerOp::new(TxType::Recharge, credits(1))).await.unwrap();
        assert_eq!(store.reserved_funds(alice.id).await.unwrap(), funds(9, 8));

        store.settle(id, &charge(credits(8), 0, true)).await.unwrap();
        let now = account(&store, &alice).await;
        assert_eq!((now.balance, now.total_consumed), (credits(1), credits(10)));
        assert_eq!(rows(&store, Some(alice.id)).await.iter().map(|r| r.amount).sum::<Money>(), now.balance);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
    async fn concurrent_reserves_never_overspend() {
        let (memory, alice, key) = alice_with_key(50, KeyPolicy::default()).await;
        let store: Arc<dyn BillingStore> = Arc::new(memory.clone());
        let results = race(200, |i| {
            let (store, new) = (Arc::clone(&store), hold(&alice, &key, &format!("req-{i}"), 1, 10));
            async move { store.reserve(&new).await }
        })
        .await;
        let mut held = Vec::new();
        for result in results {
            match result {
                Ok(id) => held.push(id),
                Err(e) => assert!(matches!(e, BillingError::InsufficientBalance { .. }), "{e}"),
            }
        }
        assert_eq!(held.len(), 50);
        assert_eq!(memory.reserved_funds(alice.id).await.unwrap(), funds(50, 50));

        let settled = race(held.len(), |i| {
            let (store, id) = (Arc::clone(&store), held[i]);
            async move { store.settle(id, &charge(credits(1), 10, true)).await }
        })
        .await;
        assert!(settled.into_iter().all(|s| s.unwrap().charged == credits(1)));
        assert_eq!(memory.reserved_funds(alice.id).await.unwrap(), funds(0, 0));
        let written = rows(&memory, Some(alice.id)).await;
        assert_eq!(written.iter().filter(|r| r.tx_type == TxType::Consume).count(), 50);
        assert_eq!(written.iter().map(|r| r.amount).sum::<Money>(), Money::ZERO);
        assert!(written.iter().all(|r| !r.balance_after.is_negative()));
        assert_eq!(account(&memory, &alice).await.total_consumed, credits(50));
        assert_eq!(holds_of(&memory, &key), KeyHolds::default());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
    async fn concurrent_calls_never_exceed_remaining_calls() {
        let (memory, alice, key) =
            alice_with_key(1000, KeyPolicy { remaining_calls: Some(30), ..KeyPolicy::default() }).await;
        let store: Arc<dyn BillingStore> = Arc::new(memory.clone());
        let calls = race(100, |i| {
            let (store, new) = (Arc::clone(&store), hold(&alice, &key, &format!("req-{i}"), 1, 10));
            async move {
                match store.reserve(&new).await {
                    Ok(id) => store.settle(id, &charge(credits(1), 10, true)).await.map(|_| true),
                    Err(BillingError::KeyLimit { limit: "remaining_calls" }) => Ok(false),
                    Err(e) => Err(e),
                }
            }
        })
        .await;
        let succeeded = calls.into_iter().filter(|call| *call.as_ref().unwrap()).count();
        assert_eq!(succeeded, 30);
        let after = memory.key(key.id).await.unwrap().unwrap();
        assert_eq!(after.policy.remaining_calls, Some(0));
        let usage = KeyUsage { tokens_used: 300, quota_used: credits(30), calls_total: 30, calls_succeeded: 30 };
        assert_eq!(after.usage, usage);
        assert_eq!(holds_of(&memory, &key), KeyHolds::default());
        assert_eq!(memory.reserved_funds(alice.id).await.unwrap(), funds(970, 0));
    }
}
