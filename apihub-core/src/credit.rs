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

use std::collections::{HashMap, HashSet, VecDeque};

use crate::billing::{
    BillingError, KeyCounters, NewReservation, ReservationId, Settled, Settlement, UserFunds, check_hold,
    settle_amounts,
};
use crate::budget::{BudgetId, Period};
use crate::money::Money;
use crate::policy::KeyId;
use crate::user::UserId;

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

/// A window of a periodic budget ([`crate::budget`]), as the book counts in it: the budget and
/// the window's bounds (Unix milliseconds; the start names it, the end follows from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MeterId {
    /// The budget.
    pub budget: BudgetId,
    /// The window's first instant.
    pub start: i64,
    /// The next window's first instant: when this one resets.
    pub end: i64,
}

/// A budget window as the store holds it: its limits and what it has used (credit in micros,
/// tokens, successful calls), and what a refusal tells the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredMeter {
    /// `key` or `user`: whose budget.
    pub scope: &'static str,
    /// The budget's period.
    pub period: Period,
    /// Credit (micros), tokens and calls allowed; `None`, no limit.
    pub limits: [Option<i64>; 3],
    /// Credit (micros), tokens and calls used.
    pub used: [i64; 3],
}

/// The names of a budget's three limits, in the book's order.
pub const METER_LIMITS: [&str; 3] = ["credit", "tokens", "calls"];

/// A settled request's durable effect: what the writer debits the user and adds to the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Debit {
    /// Queue order, from 1.
    pub seq: u64,
    /// Whose balance.
    pub user_id: UserId,
    /// Which key's counters.
    pub key_id: KeyId,
    /// The request id: the ledger row's order number.
    pub request_id: String,
    /// The charge (never negative); a ledger row is written when it is above zero.
    pub charge: Money,
    /// Tokens used.
    pub tokens: i64,
    /// Whether the call succeeded (counts down `remaining_calls`).
    pub success: bool,
    /// The ledger row's text.
    pub description: String,
    /// How much of the charge exceeded the hold.
    pub overage: Money,
    /// The budget windows the request counts in (credit, tokens and, when it succeeded, a call).
    pub meters: Vec<MeterId>,
}

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
    request_id: String,
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
    open_requests: HashSet<String>,
    last_id: ReservationId,
    queue: VecDeque<Debit>,
    last_seq: u64,
}

impl CreditBook {
    /// Sets a user's stored balance: on first use, or after the database row changed.
    pub fn store_user(&mut self, user_id: UserId, balance: Money) {
        self.users.entry(user_id).or_default().stored = balance.micros();
    }

    /// Sets a key's stored row: on first use, or after the database row changed.
    pub fn store_key(&mut self, key_id: KeyId, stored: StoredKey) {
        match self.keys.get_mut(&key_id) {
            Some(entry) => entry.stored = stored,
            None => {
                let entry = KeyEntry {
                    stored,
                    unwritten: KeyAmounts::default(),
                    reserved: KeyAmounts::default(),
                    last_hold: 0,
                };
                self.keys.insert(key_id, entry);
            }
        }
    }

    /// Forgets a deleted key. Its open holds still settle against the user.
    pub fn forget_key(&mut self, key_id: KeyId) {
        self.keys.remove(&key_id);
    }

    /// Sets a budget window's stored row: on first use, or after the budget changed.
    pub fn store_meter(&mut self, id: MeterId, stored: StoredMeter) {
        match self.meters.get_mut(&id) {
            Some(entry) => entry.stored = stored,
            None => {
                let entry = MeterEntry { stored, unwritten: [0; 3], reserved: [0; 3], last_hold: 0 };
                self.meters.insert(id, entry);
            }
        }
    }

    /// Whether a budget window is in the book.
    pub fn has_meter(&self, id: MeterId) -> bool {
        self.meters.contains_key(&id)
    }

    /// Forgets a budget window (its budget changed or went, or it ended). Its open holds and
    /// unwritten debits still close and write.
    pub fn forget_meter(&mut self, id: MeterId) {
        self.meters.remove(&id);
    }

    /// Forgets the windows that ended before `now` and that nothing holds or waits to write in.
    pub fn forget_ended_meters(&mut self, now: i64) {
        self.meters.retain(|id, entry| id.end > now || !entry.idle());
    }

    /// Forgets every window of the budgets `ids` (they changed or went).
    pub fn forget_budgets(&mut self, ids: &[BudgetId]) {
        self.meters.retain(|id, _| !ids.contains(&id.budget));
    }

    /// The budget windows in the book.
    pub fn meter_ids(&self) -> Vec<MeterId> {
        self.meters.keys().copied().collect()
    }

    /// A budget window's stored row, with what is unwritten added to its usage, and what is held.
    pub fn meter(&self, id: MeterId) -> Option<(StoredMeter, [i64; 3])> {
        self.meters.get(&id).map(|entry| {
            let mut stored = entry.stored;
            add3(&mut stored.used, entry.unwritten);
            (stored, entry.reserved)
        })
    }

    /// Sets the limits of every window of a budget in the book (an administrator changed them).
    pub fn set_meter_limits(&mut self, budget: BudgetId, limits: [Option<i64>; 3]) {
        for (_, entry) in self.meters.iter_mut().filter(|(id, _)| id.budget == budget) {
            entry.stored.limits = limits;
        }
    }

    /// Adds to a budget window's limits (a lease grown), each only where the budget has that
    /// limit. Returns `false` when the window is not in the book.
    pub fn grant_meter(&mut self, id: MeterId, add: [i64; 3]) -> bool {
        let Some(entry) = self.meters.get_mut(&id) else { return false };
        for (limit, add) in entry.stored.limits.iter_mut().zip(add) {
            *limit = limit.map(|limit| limit.saturating_add(add));
        }
        true
    }

    /// What a window's open holds and unwritten debits still take: credit, tokens, calls.
    pub fn meter_commitments(&self, id: MeterId) -> Option<[i64; 3]> {
        self.meters.get(&id).map(|entry| {
            let mut taken = entry.reserved;
            add3(&mut taken, entry.unwritten);
            taken
        })
    }

    /// Budget windows with nothing held and nothing unwritten, with the newest hold taken on them.
    pub fn idle_meters(&self) -> Vec<(MeterId, ReservationId)> {
        self.meters.iter().filter(|(_, entry)| entry.idle()).map(|(id, entry)| (*id, entry.last_hold)).collect()
    }

    /// Adds `amount` to a user's stored funds (a credit lease grown), entering the user at zero
    /// first when it is not in the book.
    pub fn grant_user(&mut self, user_id: UserId, amount: Money) {
        let entry = self.users.entry(user_id).or_default();
        entry.stored = entry.stored.saturating_add(amount.micros());
    }

    /// Adds to the limits a key has (a key lease grown): `quota` to its credit limit, `tokens` to
    /// its token limit and `calls` to its remaining calls, each only where the key has that limit.
    /// Returns `false` when the key is not in the book.
    pub fn grant_key(&mut self, key_id: KeyId, quota: Money, tokens: i64, calls: i64) -> bool {
        let Some(entry) = self.keys.get_mut(&key_id) else { return false };
        let stored = &mut entry.stored;
        stored.quota_limit =
            stored.quota_limit.map(|limit| Money::from_micros(limit.micros().saturating_add(quota.micros())));
        stored.token_limit = stored.token_limit.map(|limit| limit.saturating_add(tokens));
        stored.remaining_calls = stored.remaining_calls.map(|left| left.saturating_add(calls));
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

    /// The users and keys in the book.
    pub fn entries(&self) -> (Vec<UserId>, Vec<KeyId>) {
        (self.users.keys().copied().collect(), self.keys.keys().copied().collect())
    }

    /// Forgets a user's funds. Its open holds and unwritten debits still close and write.
    pub fn forget_user(&mut self, user_id: UserId) {
        self.users.remove(&user_id);
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
        if !self.open_requests.insert(new.request_id.clone()) {
            let conflict = format!("request id `{}` already holds credit", new.request_id);
            return Err(HoldError::Refused(BillingError::Store(crate::store::StoreError::Conflict(conflict))));
        }
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
        let hold = OpenHold {
            user_id: new.user_id,
            key_id: new.key_id,
            request_id: new.request_id.clone(),
            amount,
            tokens,
            meters: meters.to_vec(),
        };
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
            description: settlement.description.clone(),
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

    /// The oldest `max` queued debits, to write; they stay queued until [`Self::written`].
    pub fn to_write(&self, max: usize) -> Vec<Debit> {
        self.queue.iter().take(max).cloned().collect()
    }

    /// The writer persisted `debits` (the oldest queued, in order): they move from unwritten to
    /// stored.
    pub fn written(&mut self, debits: &[Debit]) {
        for debit in debits {
            match self.queue.front() {
                Some(front) if front.seq == debit.seq => {
                    self.queue.pop_front();
                }
                // Not the queue's head: written already, or never queued here.
                _ => continue,
            }
            let charge = debit.charge.micros();
            if let Some(user) = self.users.get_mut(&debit.user_id) {
                user.stored = user.stored.saturating_sub(charge);
                user.unwritten -= charge;
            }
            if let Some(key) = self.keys.get_mut(&debit.key_id) {
                let stored = &mut key.stored;
                stored.quota_used = Money::from_micros(stored.quota_used.micros().saturating_add(charge));
                stored.tokens_used = stored.tokens_used.saturating_add(debit.tokens);
                if debit.success {
                    stored.remaining_calls = stored.remaining_calls.map(|left| (left - 1).max(0));
                }
                key.unwritten.quota -= charge;
                key.unwritten.tokens -= debit.tokens;
                key.unwritten.calls -= i64::from(debit.success);
            }
            let counted = [charge, debit.tokens, i64::from(debit.success)];
            for id in &debit.meters {
                if let Some(meter) = self.meters.get_mut(id) {
                    add3(&mut meter.stored.used, counted);
                    sub3(&mut meter.unwritten, counted);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::HoldRequest;
    use proptest::prelude::*;

    fn credits(text: &str) -> Money {
        Money::parse(text).unwrap()
    }

    fn reservation(user_id: UserId, key_id: KeyId, amount: &str, tokens: i64) -> NewReservation {
        NewReservation {
            user_id,
            key_id,
            request_id: format!("r-{amount}"),
            hold: HoldRequest { amount: credits(amount), tokens },
        }
    }

    fn settlement(charge: &str, tokens: i64, success: bool) -> Settlement {
        Settlement { charge: credits(charge), tokens, success, description: "test".into() }
    }

    fn book(balance: &str, key: StoredKey) -> CreditBook {
        let mut book = CreditBook::default();
        book.store_user(1, credits(balance));
        book.store_key(7, StoredKey { user_id: 1, ..key });
        book
    }

    #[test]
    fn an_unloaded_user_or_key_is_asked_for() {
        let mut book = CreditBook::default();
        assert!(matches!(book.hold(&reservation(1, 7, "1", 1)), Err(HoldError::UserNotLoaded(1))));
        book.store_user(1, credits("5"));
        assert!(matches!(book.hold(&reservation(1, 7, "1", 1)), Err(HoldError::KeyNotLoaded(7))));
        book.store_key(7, StoredKey { user_id: 2, ..StoredKey::default() });
        assert!(matches!(book.hold(&reservation(1, 7, "1", 1)), Err(HoldError::Refused(BillingError::Store(_)))));
    }

    #[test]
    fn holds_never_exceed_the_balance_and_settlements_free_the_rest() {
        let mut book = book("1", StoredKey::default());
        let first = book.hold(&reservation(1, 7, "0.6", 10)).unwrap();
        assert!(matches!(
            book.hold(&reservation(1, 7, "0.5", 10)),
            Err(HoldError::Refused(BillingError::InsufficientBalance { .. }))
        ));
        book.settle(first, &settlement("0.2", 5, true)).unwrap();
        assert_eq!(book.funds(1).unwrap(), UserFunds { balance: credits("0.8"), reserved: Money::ZERO });
        assert!(book.hold(&reservation(1, 7, "0.8", 10)).is_ok());
        assert!(matches!(book.settle(first, &settlement("0.2", 5, true)), Err(BillingError::NotOpen(_))));
    }

    #[test]
    fn usage_above_the_hold_is_billed_and_may_take_the_balance_below_zero() {
        let mut book = book("1", StoredKey { quota_limit: Some(credits("2")), ..StoredKey::default() });
        let id = book.hold(&reservation(1, 7, "0.5", 10)).unwrap();
        let (settled, debit) = book.settle(id, &settlement("1.5", 3_000, true)).unwrap();
        assert_eq!((settled.charged, settled.overage), (credits("1.5"), credits("1")));
        assert_eq!(debit.overage, credits("1"));
        assert_eq!(book.funds(1).unwrap().balance, credits("-0.5"));
        let counters = book.key_counters(7).unwrap();
        assert_eq!((counters.quota_used, counters.tokens_used), (credits("1.5"), 3_000));
        // Nothing is available until the user tops up.
        assert!(matches!(
            book.hold(&reservation(1, 7, "0.000001", 1)),
            Err(HoldError::Refused(BillingError::InsufficientBalance { .. }))
        ));
    }

    #[test]
    fn a_lease_shrinks_to_what_is_held_and_a_charge_beyond_it_leaves_it_empty_not_negative() {
        let mut book = CreditBook::default();
        book.grant_user(1, credits("1"));
        book.store_key(7, StoredKey { user_id: 1, token_limit: Some(100), ..StoredKey::default() });
        let id = book.hold(&reservation(1, 7, "0.4", 50)).unwrap();
        // Given back but for the open hold: nothing is left for another.
        assert_eq!(book.shrink_user(1), Some(400_000));
        assert!(matches!(
            book.hold(&reservation(1, 7, "0.1", 1)),
            Err(HoldError::Refused(BillingError::InsufficientBalance { .. }))
        ));
        book.grant_user(1, credits("0.5"));
        // The upstream reports far more than the lease: the excess came from the balance itself.
        let (_, debit) = book.settle(id, &settlement("2", 150, true)).unwrap();
        book.written(std::slice::from_ref(&debit));
        book.clamp_leases(&[debit]);
        assert_eq!(book.funds(1).unwrap().balance, Money::ZERO);
        assert_eq!(book.key_counters(7).unwrap().tokens_used, 100);
        assert!(matches!(
            book.hold(&reservation(1, 7, "0", 1)),
            Err(HoldError::Refused(BillingError::KeyLimit { limit: "token_limit" }))
        ));
        assert!(book.grant_key(7, Money::ZERO, 20, 0));
        assert!(book.hold(&reservation(1, 7, "0", 20)).is_ok());
        assert_eq!(book.user_commitments(1), Some(0));
        assert_eq!(book.key_commitments(7), Some([0, 20, 1]));
    }

    #[test]
    fn a_row_reread_after_writes_counts_each_settlement_once() {
        let mut book = book("10", StoredKey { remaining_calls: Some(3), ..StoredKey::default() });
        for _ in 0..2 {
            let id = book.hold(&reservation(1, 7, "1", 10)).unwrap();
            book.settle(id, &settlement("1", 10, true)).unwrap();
        }
        let batch = book.to_write(1);
        book.written(&batch);
        // The database now has the first debit; a recharge of 5 is written and the row re-read.
        book.store_user(1, credits("14"));
        book.store_key(
            7,
            StoredKey {
                user_id: 1,
                remaining_calls: Some(2),
                quota_used: credits("1"),
                tokens_used: 10,
                ..StoredKey::default()
            },
        );
        assert_eq!(book.funds(1).unwrap().balance, credits("13"));
        assert_eq!(book.key_counters(7).unwrap().remaining_calls, Some(1));
        book.written(&book.to_write(10));
        assert_eq!(book.funds(1).unwrap().balance, credits("13"));
        let counters = book.key_counters(7).unwrap();
        assert_eq!((counters.remaining_calls, counters.quota_used, counters.tokens_used), (Some(1), credits("2"), 20));
        assert_eq!(book.unwritten(), 0);
    }

    #[test]
    fn a_budget_window_admits_holds_within_its_limits_and_counts_what_was_settled() {
        let mut book = book("100", StoredKey::default());
        let day = MeterId { budget: 3, start: 1_000, end: 2_000 };
        let meter = |used| StoredMeter {
            scope: "key",
            period: Period::Day,
            limits: [Some(credits("1").micros()), None, Some(2)],
            used,
        };
        let new = |id: &str| NewReservation { request_id: id.into(), ..reservation(1, 7, "0.3", 10) };
        assert!(matches!(book.hold_metered(&new("a"), &[day]), Err(HoldError::MeterNotLoaded(id)) if id == day));
        book.store_meter(day, meter([0; 3]));
        let a = book.hold_metered(&new("a"), &[day]).unwrap();
        let b = book.hold_metered(&new("b"), &[day]).unwrap();
        // Two calls held: a third is refused although credit is left.
        let refused = book.hold_metered(&new("c"), &[day]);
        assert!(matches!(
            refused,
            Err(HoldError::Refused(BillingError::BudgetSpent { limit: "calls", resets_at: 2_000, .. }))
        ));
        book.release(b).unwrap();
        let (_, debit) = book.settle(a, &settlement("0.4", 12, true)).unwrap();
        assert_eq!(debit.meters, vec![day]);
        assert_eq!(book.meter(day).unwrap().0.used, [400_000, 12, 1]);
        book.written(&[debit]);
        assert_eq!(book.meter(day).unwrap(), (meter([400_000, 12, 1]), [0; 3]));
        // 0.4 used + 0.3 held = 0.7; another 0.3 would go to 1.0, and 0.301 beyond it.
        let c = book.hold_metered(&new("c"), &[day]).unwrap();
        let refused =
            book.hold_metered(&NewReservation { request_id: "d".into(), ..reservation(1, 7, "0.301", 1) }, &[day]);
        assert!(matches!(refused, Err(HoldError::Refused(BillingError::BudgetSpent { limit: "credit", .. }))));
        book.release(c).unwrap();
        // The next window starts empty; an ended idle window is forgotten.
        let next = MeterId { budget: 3, start: 2_000, end: 3_000 };
        book.store_meter(next, meter([0; 3]));
        book.forget_ended_meters(2_000);
        assert!(!book.has_meter(day) && book.has_meter(next));
    }

    #[test]
    fn remaining_calls_count_successes_only_and_stop_at_zero() {
        let mut book = book("10", StoredKey { remaining_calls: Some(1), ..StoredKey::default() });
        let id = book.hold(&reservation(1, 7, "1", 1)).unwrap();
        assert!(matches!(
            book.hold(&reservation(1, 7, "1", 1)),
            Err(HoldError::Refused(BillingError::KeyLimit { limit: "remaining_calls" }))
        ));
        book.settle(id, &settlement("0", 1, false)).unwrap();
        let id = book.hold(&reservation(1, 7, "1", 1)).unwrap();
        book.settle(id, &settlement("0.1", 1, true)).unwrap();
        assert_eq!(book.key_counters(7).unwrap().remaining_calls, Some(0));
        book.written(&book.to_write(10));
        assert_eq!(book.key_counters(7).unwrap().remaining_calls, Some(0));
    }

    #[derive(Debug, Clone)]
    enum Step {
        Hold { amount: i64, tokens: i64 },
        Settle { pick: usize, charge: i64, tokens: i64, success: bool },
        Release { pick: usize },
        Write { max: usize },
        Recharge { amount: i64 },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0i64..400, 0i64..50).prop_map(|(amount, tokens)| Step::Hold { amount, tokens }),
            (any::<usize>(), 0i64..800, 0i64..100, any::<bool>())
                .prop_map(|(pick, charge, tokens, success)| Step::Settle { pick, charge, tokens, success }),
            any::<usize>().prop_map(|pick| Step::Release { pick }),
            (0usize..5).prop_map(|max| Step::Write { max }),
            (0i64..300).prop_map(|amount| Step::Recharge { amount }),
        ]
    }

    /// The writer, against the model database: writes the oldest `max` debits.
    fn write(book: &mut CreditBook, max: usize, balance: &mut i64, ledger_sum: &mut i64, key: &mut StoredKey) {
        let batch = book.to_write(max);
        for debit in &batch {
            *balance -= debit.charge.micros();
            *ledger_sum -= debit.charge.micros();
            key.quota_used = Money::from_micros(key.quota_used.micros() + debit.charge.micros());
            key.tokens_used += debit.tokens;
            if debit.success {
                key.remaining_calls = key.remaining_calls.map(|left| (left - 1).max(0));
            }
        }
        book.written(&batch);
    }

    proptest! {
        /// Against a plain model of the database (a balance, a ledger and key counters written
        /// only by the writer or a recharge): the book always equals the database plus the unwritten
        /// debits, holds never exceed what is available without an overage, and after every debit
        /// is written the two agree exactly.
        #[test]
        fn the_book_is_the_database_plus_the_unwritten_debits(steps in proptest::collection::vec(step(), 1..80)) {
            let limits = StoredKey { user_id: 1, quota_limit: Some(Money::from_micros(5_000)), token_limit: Some(2_000), remaining_calls: Some(20), ..StoredKey::default() };
            let mut book = CreditBook::default();
            let mut db_balance = 1_000i64;
            let mut db_key = limits;
            let mut ledger_sum = 1_000i64;
            book.store_user(1, Money::from_micros(db_balance));
            book.store_key(7, db_key);
            let mut open: Vec<ReservationId> = Vec::new();
            for step in steps {
                match step {
                    Step::Hold { amount, tokens } => {
                        let before = book.funds(1).unwrap();
                        let new = NewReservation { user_id: 1, key_id: 7, request_id: "r".into(), hold: HoldRequest { amount: Money::from_micros(amount), tokens } };
                        match book.hold(&new) {
                            Ok(id) => {
                                prop_assert!(amount <= before.available().micros());
                                open.push(id);
                            }
                            Err(HoldError::Refused(_)) => {}
                            Err(other) => prop_assert!(false, "{other:?}"),
                        }
                    }
                    Step::Settle { pick, charge, tokens, success } if !open.is_empty() => {
                        let id = open.swap_remove(pick % open.len());
                        book.settle(id, &Settlement { charge: Money::from_micros(charge), tokens, success, description: String::new() }).unwrap();
                    }
                    Step::Release { pick } if !open.is_empty() => {
                        let id = open.swap_remove(pick % open.len());
                        book.release(id).unwrap();
                    }
                    Step::Write { max } => write(&mut book, max, &mut db_balance, &mut ledger_sum, &mut db_key),
                    Step::Recharge { amount } => {
                        db_balance += amount;
                        ledger_sum += amount;
                        book.store_user(1, Money::from_micros(db_balance));
                    }
                    _ => {}
                }
                let unwritten: i64 = book.queue.iter().map(|d| d.charge.micros()).sum();
                prop_assert_eq!(book.funds(1).unwrap().balance.micros(), db_balance - unwritten);
                prop_assert_eq!(db_balance, ledger_sum);
            }
            for id in open.drain(..) {
                book.release(id).unwrap();
            }
            write(&mut book, usize::MAX, &mut db_balance, &mut ledger_sum, &mut db_key);
            prop_assert_eq!(book.funds(1).unwrap(), UserFunds { balance: Money::from_micros(db_balance), reserved: Money::ZERO });
            let counters = book.key_counters(7).unwrap();
            prop_assert_eq!((counters.quota_used, counters.tokens_used, counters.remaining_calls), (db_key.quota_used, db_key.tokens_used, db_key.remaining_calls));
            prop_assert_eq!((counters.quota_reserved, counters.tokens_reserved, counters.calls_reserved), (Money::ZERO, 0, 0));
        }
    }
}
