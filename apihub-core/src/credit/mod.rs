//! The credit engine's book: holds, settlements and releases in memory, their durable effects
//! handed out as [`Debit`]s for a writer to persist behind the requests, in batches.
//!
//! A gateway that is the only process spending a user's credit (one node on SQLite) keeps each
//! user's funds and each key's counters here, loaded on first use. A hold is a check and a take
//! under the caller's lock ([`check_hold`], the same rule the SQL stores apply); a settlement
//! moves the hold to the balance at once and queues a debit; the writer persists queued debits
//! and then tells the book ([`CreditBook::written`]). Each entry keeps what the database holds
//! (`stored`) apart from what is queued but not yet written (`unwritten`), so whoever changes the
//! database directly (a recharge, a key update) re-reads the row and calls
//! [`CreditBook::store_user`] or [`CreditBook::store_key`] with no ambiguity about which
//! settlements the row already contains, as long as no batch is written in between (the
//! writer's caller keeps that order with a lock).
//!
//! Holds are not durable: a restart frees them at once. Usage above a hold is billed (see
//! [`Settlement`]): the balance may go below zero by at most that excess, and the debit says by
//! how much ([`Debit::overage`]).
//!
//! ```
//! use apihub_core::billing::{HoldRequest, NewReservation, Settlement};
//! use apihub_core::credit::{CreditBook, StoredKey};
//! use apihub_core::Money;
//!
//! let mut book = CreditBook::default();
//! book.store_user(1, Money::from_credits(1));
//! book.store_key(7, StoredKey { user_id: 1, ..StoredKey::default() });
//! let hold = HoldRequest { amount: Money::parse("0.4").unwrap(), tokens: 100 };
//! let new = NewReservation { user_id: 1, key_id: 7, request_id: "r1".into(), hold };
//! let id = book.hold(&new).unwrap();
//! // The upstream reports more than was held: all of it is billed.
//! let settlement =
//!     Settlement { charge: Money::parse("0.5").unwrap(), tokens: 120, success: true, description: "m".into() };
//! let (settled, debit) = book.settle(id, &settlement).unwrap();
//! assert_eq!(settled.charged, Money::parse("0.5").unwrap());
//! assert_eq!(debit.overage, Money::parse("0.1").unwrap());
//! assert_eq!(book.funds(1).unwrap().balance, Money::parse("0.5").unwrap());
//! book.written(&[debit]);
//! assert_eq!(book.unwritten(), 0);
//! ```
//!
//! [`check_hold`]: crate::billing::check_hold
//! [`Settlement`]: crate::billing::Settlement

mod debits;
mod holds;
mod leases;
mod meters;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::billing::{BillingError, KeyCounters, ReservationId, UserFunds};
use crate::money::Money;
use crate::policy::KeyId;
use crate::user::UserId;

pub use debits::Debit;
pub use holds::HoldError;
pub use leases::Lease;
pub use meters::{METER_LIMITS, MeterId, StoredMeter};

/// A key's row as the database holds it: its limits and what it has used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredKey {
    /// The key's owner.
    pub user_id: UserId,
    /// Lifetime token limit.
    pub token_limit: Option<i64>,
    /// Lifetime credit limit.
    pub quota_limit: Option<Money>,
    /// Calls left (only successful calls count down, never below zero).
    pub remaining_calls: Option<i64>,
    /// Tokens used.
    pub tokens_used: i64,
    /// Credit charged.
    pub quota_used: Money,
}

#[derive(Debug, Default)]
struct UserEntry {
    /// The balance in the database.
    stored: i64,
    /// Charges settled but not yet written.
    unwritten: i64,
    /// Open holds.
    reserved: i64,
    /// The newest hold taken on these funds (0: none): tells an idle entry from a busy one.
    last_hold: ReservationId,
}

impl UserEntry {
    fn funds(&self) -> UserFunds {
        UserFunds {
            balance: Money::from_micros(self.stored.saturating_sub(self.unwritten)),
            reserved: Money::from_micros(self.reserved),
        }
    }
}

/// Per-key amounts: settled but unwritten, or held.
#[derive(Debug, Default, Clone, Copy)]
struct KeyAmounts {
    quota: i64,
    tokens: i64,
    calls: i64,
}

#[derive(Debug)]
struct KeyEntry {
    stored: StoredKey,
    unwritten: KeyAmounts,
    reserved: KeyAmounts,
    /// The newest hold taken on this key (0: none).
    last_hold: ReservationId,
}

impl KeyEntry {
    fn idle(&self) -> bool {
        let (r, u) = (self.reserved, self.unwritten);
        r.quota == 0 && r.tokens == 0 && r.calls == 0 && u.quota == 0 && u.tokens == 0 && u.calls == 0
    }
}

impl KeyEntry {
    fn counters(&self) -> KeyCounters {
        KeyCounters {
            token_limit: self.stored.token_limit,
            quota_limit: self.stored.quota_limit,
            remaining_calls: self.stored.remaining_calls.map(|left| (left - self.unwritten.calls).max(0)),
            tokens_used: self.stored.tokens_used.saturating_add(self.unwritten.tokens),
            quota_used: Money::from_micros(self.stored.quota_used.micros().saturating_add(self.unwritten.quota)),
            tokens_reserved: self.reserved.tokens,
            quota_reserved: Money::from_micros(self.reserved.quota),
            calls_reserved: self.reserved.calls,
        }
    }
}

#[derive(Debug)]
struct OpenHold {
    user_id: UserId,
    key_id: KeyId,
    request_id: Arc<str>,
    amount: i64,
    tokens: i64,
    meters: Vec<MeterId>,
}

/// A budget window: stored, unwritten and held amounts (credit in micros, tokens, calls).
#[derive(Debug)]
struct MeterEntry {
    stored: StoredMeter,
    unwritten: [i64; 3],
    reserved: [i64; 3],
    /// The newest hold taken on this window (0: none).
    last_hold: ReservationId,
}

impl MeterEntry {
    fn idle(&self) -> bool {
        self.unwritten == [0; 3] && self.reserved == [0; 3]
    }

    /// The first limit a hold of `add` would exceed.
    fn refusal(&self, id: &MeterId, add: [i64; 3]) -> Option<BillingError> {
        let over = (0..3).find(|&i| {
            self.stored.limits[i].is_some_and(|limit| {
                let after = self.stored.used[i].saturating_add(self.unwritten[i]).saturating_add(self.reserved[i]);
                after.saturating_add(add[i]) > limit
            })
        })?;
        Some(BillingError::BudgetSpent {
            scope: self.stored.scope,
            period: self.stored.period,
            limit: METER_LIMITS[over],
            resets_at: id.end,
        })
    }
}

fn add3(a: &mut [i64; 3], b: [i64; 3]) {
    a.iter_mut().zip(b).for_each(|(a, b)| *a = a.saturating_add(b));
}

fn sub3(a: &mut [i64; 3], b: [i64; 3]) {
    a.iter_mut().zip(b).for_each(|(a, b)| *a = a.saturating_sub(b));
}

/// Funds, key counters, open holds and the queue of unwritten debits; see the module docs.
#[derive(Debug, Default)]
pub struct CreditBook {
    users: HashMap<UserId, UserEntry>,
    keys: HashMap<KeyId, KeyEntry>,
    meters: HashMap<MeterId, MeterEntry>,
    holds: HashMap<ReservationId, OpenHold>,
    /// The request ids of open holds: one hold per request.
    open_requests: HashSet<Arc<str>>,
    last_id: ReservationId,
    queue: VecDeque<Debit>,
    last_seq: u64,
}

impl CreditBook {
    /// Sets a user's stored balance: on first use, or after the database row changed.
    pub fn store_user(&mut self, user_id: UserId, balance: Money) {
        self.users.entry(user_id).or_default().stored = balance.micros();
    }

    /// Sets a key's stored row: on first use, or after the database row changed. A key that
    /// left the book while holds on it were open (an administrator changed it) comes back
    /// counting those holds and its unwritten debits: they close and are written against it.
    pub fn store_key(&mut self, key_id: KeyId, stored: StoredKey) {
        match self.keys.get_mut(&key_id) {
            Some(entry) => entry.stored = stored,
            None => {
                let mut reserved = KeyAmounts::default();
                for hold in self.holds.values().filter(|hold| hold.key_id == key_id) {
                    reserved.quota = reserved.quota.saturating_add(hold.amount);
                    reserved.tokens = reserved.tokens.saturating_add(hold.tokens);
                    reserved.calls += 1;
                }
                let mut unwritten = KeyAmounts::default();
                for debit in self.queue.iter().filter(|debit| debit.key_id == key_id) {
                    unwritten.quota = unwritten.quota.saturating_add(debit.charge.micros());
                    unwritten.tokens = unwritten.tokens.saturating_add(debit.tokens);
                    unwritten.calls += i64::from(debit.success);
                }
                self.keys.insert(key_id, KeyEntry { stored, unwritten, reserved, last_hold: 0 });
            }
        }
    }

    /// Forgets a deleted key. Its open holds still settle against the user.
    pub fn forget_key(&mut self, key_id: KeyId) {
        self.keys.remove(&key_id);
    }

    /// The users and keys in the book.
    pub fn entries(&self) -> (Vec<UserId>, Vec<KeyId>) {
        (self.users.keys().copied().collect(), self.keys.keys().copied().collect())
    }

    /// Forgets a user's funds. Its open holds and unwritten debits still close and write.
    pub fn forget_user(&mut self, user_id: UserId) {
        self.users.remove(&user_id);
    }

    /// Whether hold `id` is open in this book.
    pub fn is_open(&self, id: ReservationId) -> bool {
        self.holds.contains_key(&id)
    }

    /// Forgets every user's funds and every key (a node whose leases may have lapsed): each is
    /// loaded again on its next hold. Open holds and unwritten debits still close and write.
    pub fn forget_all(&mut self) {
        self.users.clear();
        self.keys.clear();
        self.meters.clear();
    }

    /// Whether the user's funds are in the book.
    pub fn has_user(&self, user_id: UserId) -> bool {
        self.users.contains_key(&user_id)
    }

    /// Whether the key is in the book.
    pub fn has_key(&self, key_id: KeyId) -> bool {
        self.keys.contains_key(&key_id)
    }

    /// A user's balance (settled charges included, written or not) and open holds.
    pub fn funds(&self, user_id: UserId) -> Option<UserFunds> {
        self.users.get(&user_id).map(UserEntry::funds)
    }

    /// A key's counters (settled usage included, written or not) and open holds.
    pub fn key_counters(&self, key_id: KeyId) -> Option<KeyCounters> {
        self.keys.get(&key_id).map(KeyEntry::counters)
    }

    /// Open holds.
    pub fn open_holds(&self) -> usize {
        self.holds.len()
    }

    /// Debits queued and not yet written.
    pub fn unwritten(&self) -> usize {
        self.queue.len()
    }

    /// The newest debit's sequence number (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }
}

#[cfg(test)]
mod tests;
