//! A book whose stored amounts are leases (slices of a balance, of a key's limits, of a budget
//! window): growing them, finding idle ones, what open holds and unwritten debits still take,
//! shrinking them, and a successor book for a node whose leases lapsed.

use crate::billing::ReservationId;
use crate::budget::BudgetId;
use crate::money::Money;
use crate::policy::KeyId;
use crate::user::UserId;

use super::{CreditBook, Debit, MeterId, add3};

/// What a lease is of: a user's credit, a key's limits, or a budget window (the budget and the
/// window's start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lease {
    /// A user's credit.
    User(UserId),
    /// A key's limited credit, tokens and calls.
    Key(KeyId),
    /// A budget window's credit, tokens and calls: the budget, the window's start.
    Meter(BudgetId, i64),
}

impl Lease {
    /// Whether a hold or debit of this user and key, counted in these windows, takes from it.
    fn covers(self, user_id: UserId, key_id: KeyId, meters: &[MeterId]) -> bool {
        match self {
            Lease::User(id) => id == user_id,
            Lease::Key(id) => id == key_id,
            Lease::Meter(budget, start) => meters.iter().any(|m| m.budget == budget && m.start == start),
        }
    }
}

impl CreditBook {
    /// Adds `amount` to a user's stored funds (a credit lease grown), entering the user at zero
    /// first when it is not in the book.
    pub fn grant_user(&mut self, user_id: UserId, amount: Money) {
        let entry = self.users.entry(user_id).or_default();
        entry.stored = entry.stored.saturating_add(amount.micros());
    }

    /// Adds to the limits a key has (a key lease grown): `quota` to its credit limit, `tokens` to
    /// its token limit and `calls` to its remaining calls, each only where the key has that limit
    /// in the book. `None` says the key has no such limit in the database (an administrator
    /// lifted it): the book drops it too. Returns `false` when the key is not in the book.
    pub fn grant_key(&mut self, key_id: KeyId, quota: Option<Money>, tokens: Option<i64>, calls: Option<i64>) -> bool {
        let Some(entry) = self.keys.get_mut(&key_id) else { return false };
        let stored = &mut entry.stored;
        stored.quota_limit = quota.and_then(|quota| {
            stored.quota_limit.map(|limit| Money::from_micros(limit.micros().saturating_add(quota.micros())))
        });
        stored.token_limit = tokens.and_then(|tokens| stored.token_limit.map(|limit| limit.saturating_add(tokens)));
        stored.remaining_calls = calls.and_then(|calls| stored.remaining_calls.map(|left| left.saturating_add(calls)));
        true
    }

    /// Users with nothing held and nothing unwritten, with the newest hold taken on their funds
    /// (unchanged between two looks: nobody used them meanwhile).
    pub fn idle_users(&self) -> Vec<(UserId, ReservationId)> {
        let idle = self.users.iter().filter(|(_, entry)| entry.reserved == 0 && entry.unwritten == 0);
        idle.map(|(id, entry)| (*id, entry.last_hold)).collect()
    }

    /// Keys with nothing held and nothing unwritten, with the newest hold taken on them.
    pub fn idle_keys(&self) -> Vec<(KeyId, ReservationId)> {
        self.keys.iter().filter(|(_, entry)| entry.idle()).map(|(id, entry)| (*id, entry.last_hold)).collect()
    }

    /// What a user's open holds and unwritten debits still take from its funds (micros).
    pub fn user_commitments(&self, user_id: UserId) -> Option<i64> {
        self.users.get(&user_id).map(|entry| entry.reserved.saturating_add(entry.unwritten))
    }

    /// What a key's open holds and unwritten debits still take from its limits: credit (micros),
    /// tokens and calls (a hold takes a call; a settled call only when it succeeded).
    pub fn key_commitments(&self, key_id: KeyId) -> Option<[i64; 3]> {
        self.keys.get(&key_id).map(|entry| {
            let (r, u) = (entry.reserved, entry.unwritten);
            [r.quota.saturating_add(u.quota), r.tokens.saturating_add(u.tokens), r.calls.saturating_add(u.calls)]
        })
    }

    /// Whether the book counts what `lease` is of (its user, key or window is in the book).
    pub fn counts(&self, lease: Lease) -> bool {
        match lease {
            Lease::User(id) => self.users.contains_key(&id),
            Lease::Key(id) => self.keys.contains_key(&id),
            Lease::Meter(budget, start) => self.meters.keys().any(|m| m.budget == budget && m.start == start),
        }
    }

    /// What the open holds and unwritten debits of what `lease` is of still take from it:
    /// credit (micros), tokens and calls (a hold takes a call; a settled call only when it
    /// succeeded), whether or not its entry is still in the book. For a lease whose entry left
    /// the book while in use (a key an administrator changed, say): the rest of it is not used.
    pub fn taken(&self, lease: Lease) -> [i64; 3] {
        let mut taken = [0; 3];
        for hold in self.holds.values().filter(|hold| lease.covers(hold.user_id, hold.key_id, &hold.meters)) {
            add3(&mut taken, [hold.amount, hold.tokens, 1]);
        }
        for debit in self.queue.iter().filter(|debit| lease.covers(debit.user_id, debit.key_id, &debit.meters)) {
            add3(&mut taken, [debit.charge.micros(), debit.tokens, i64::from(debit.success)]);
        }
        taken
    }

    /// Shrinks a user's stored funds to what its open holds and unwritten debits take (nothing
    /// is left for new holds), and returns that amount (micros); `None` when not in the book.
    pub fn shrink_user(&mut self, user_id: UserId) -> Option<i64> {
        let entry = self.users.get_mut(&user_id)?;
        entry.stored = entry.stored.min(entry.reserved.saturating_add(entry.unwritten));
        Some(entry.stored)
    }

    /// After [`written`](Self::written), for a book whose stored amounts are leases (slices of a
    /// balance and of a key's limits, never below zero): what a batch charged beyond a lease
    /// came from the balance itself, so the lease is empty, not negative.
    pub fn clamp_leases(&mut self, debits: &[Debit]) {
        for debit in debits {
            if let Some(user) = self.users.get_mut(&debit.user_id) {
                user.stored = user.stored.max(0);
            }
            if let Some(key) = self.keys.get_mut(&debit.key_id) {
                let stored = &mut key.stored;
                if let Some(limit) = stored.quota_limit {
                    stored.quota_used = stored.quota_used.min(limit);
                }
                if let Some(limit) = stored.token_limit {
                    stored.tokens_used = stored.tokens_used.min(limit);
                }
            }
            for id in &debit.meters {
                if let Some(meter) = self.meters.get_mut(id) {
                    let stored = &mut meter.stored;
                    for (used, limit) in stored.used.iter_mut().zip(stored.limits) {
                        *used = limit.map_or(*used, |limit| (*used).min(limit));
                    }
                }
            }
        }
    }

    /// A user's stored funds (for a book of leases: what it counts as leased, settled but
    /// unwritten charges included); `None` when not in the book.
    pub fn stored_user(&self, user_id: UserId) -> Option<i64> {
        self.users.get(&user_id).map(|entry| entry.stored)
    }

    /// An empty book whose reservation ids and debit sequence numbers continue this one's, so
    /// that the two can live side by side (a node whose leases lapsed retires its book, which
    /// only closes its open holds and writes their debits, and continues with this one).
    pub fn successor(&self) -> CreditBook {
        CreditBook { last_id: self.last_id, last_seq: self.last_seq, ..CreditBook::default() }
    }
}
