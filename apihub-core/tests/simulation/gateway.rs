//! A simulated gateway: the real [`CreditBook`] driven as `LeaseEngine` (leases.rs) drives it,
//! against the simulated database. Each method names the function of leases.rs it models; the
//! order lock is implicit (a step runs to its end before the next begins).

use std::collections::HashMap;

use apihub_core::Money;
use apihub_core::billing::{BillingError, HoldRequest, NewReservation, ReservationId, Settlement};
use apihub_core::credit::{CreditBook, Debit, HoldError, StoredKey};
use apihub_core::user::UserId;

use crate::db::{Db, LEASE_TTL, NodeId, Unavailable};

pub const HEARTBEAT: i64 = 5_000;
pub const VALIDITY_MARGIN: i64 = 3_000;
pub const RECLAIM_EVERY: i64 = 5_000;
pub const IDLE_SWEEP: i64 = 1_000;
pub const WINDOW: i64 = 50;
const MAX_PAUSE: i64 = 5_000;
const MAX_BATCH: usize = 4_096;
const MAX_ROUNDS: usize = 64;
const GROWTH: i64 = 8;
const TRANSIENT_RETRIES: u32 = 3;
const RETRY_WAIT: i64 = 50;

/// The fixes of issue #12, each of which the protocol as shipped has and the one before lacked
/// (see the module docs of main.rs).
#[derive(Debug, Clone, Copy)]
pub struct Protocol {
    /// Fix A: a gateway trusts its leases until the oldest renewal of any of them (a grant renews
    /// only the lease it grows; a renewal that misses a reclaimed lease does not vouch for it).
    pub validity_per_lease: bool,
    /// Fix B: a gateway whose leases lapsed does not forget users in the book its in-flight
    /// requests still use; it retires that book, which only closes those requests and writes
    /// their settlements under the old node id (whose leases are no longer renewed), and
    /// continues with a new book under a new node id.
    pub retire_lapsed_book: bool,
    /// Fix C: a give-back that shrank the book but could not shrink the lease in the database
    /// grows the book back, so the difference is not stranded while the user stays busy.
    pub restore_failed_give_back: bool,
    /// Fix D: a batch is recorded by its node id and first sequence number in its own
    /// transaction (`credit_batches`); written again after its acknowledgement was lost, it
    /// counts as written instead of being applied twice.
    pub record_batches: bool,
}

impl Protocol {
    /// leases.rs as shipped: every fix.
    pub const SHIPPED: Protocol = Protocol {
        validity_per_lease: true,
        retire_lapsed_book: true,
        restore_failed_give_back: true,
        record_batches: true,
    };
    /// leases.rs before issue #12's fixes, which the simulation found needed.
    pub const BEFORE_FIXES: Protocol = Protocol {
        validity_per_lease: false,
        retire_lapsed_book: false,
        restore_failed_give_back: false,
        record_batches: false,
    };
}

/// A request in flight on this gateway, between its hold and its settlement or release.
#[derive(Debug, Clone)]
pub struct Request {
    pub id: ReservationId,
    /// The node id of the book that holds it (an older one when that book was retired).
    pub node: NodeId,
    pub user: UserId,
    pub request_id: String,
    pub amount: i64,
}

/// The key every request of `user` uses: a key without limits (its lease grants nothing).
pub fn key_of(user: UserId) -> i64 {
    1_000 + user
}

pub struct Gateway {
    pub node: NodeId,
    pub book: CreditBook,
    /// With fix B: books retired when their leases lapsed, under their node ids.
    retired: Vec<(NodeId, CreditBook)>,
    pub open: Vec<Request>,
    protocol: Protocol,
    /// This process's monotonic clock is `time + mono_offset`.
    mono_offset: i64,
    /// Its wall clock is `time + wall_skew` (only a fault lets it matter).
    pub wall_skew: i64,
    /// `valid_until` (monotonic).
    pub valid_until: Option<i64>,
    /// With fix A: when each lease was last asked to be granted or renewed (monotonic).
    asked: HashMap<UserId, i64>,
    /// `Sizes::user_grants` and `Sizes::idle_users`.
    user_grants: HashMap<UserId, i64>,
    idle_users: HashMap<UserId, ReservationId>,
    last_renewal: i64,
    last_reclaim: i64,
    next_tick: i64,
    pub next_write: i64,
    pause: i64,
}

impl Gateway {
    /// `LeaseEngine::start`: a fresh node id, an empty book, the upkeep clocks started.
    pub fn start(node: NodeId, db: &mut Db, protocol: Protocol) -> Gateway {
        let mono_offset = db.rng.range(0, 1_000_000_000);
        let wall_skew = db.rng.range(-3 * 3_600_000, 3 * 3_600_000);
        let mono = db.time + mono_offset;
        Gateway {
            node,
            book: CreditBook::default(),
            retired: Vec::new(),
            open: Vec::new(),
            protocol,
            mono_offset,
            wall_skew,
            valid_until: None,
            asked: HashMap::new(),
            user_grants: HashMap::new(),
            idle_users: HashMap::new(),
            last_renewal: mono,
            last_reclaim: mono - RECLAIM_EVERY,
            next_tick: mono + IDLE_SWEEP,
            next_write: mono,
            pause: WINDOW,
        }
    }

    pub fn mono(&self, db: &Db) -> i64 {
        db.time + self.mono_offset
    }

    fn wall(&self, db: &Db) -> i64 {
        db.time + self.wall_skew
    }

    /// Whether the book may still be used: `valid_until` not passed (`check_validity`'s test).
    pub fn valid(&self, db: &Db) -> bool {
        self.valid_until.is_none_or(|until| self.mono(db) < until)
    }

    /// `check_validity`: past `valid_until`, forgets every lease. What is open or unwritten now
    /// is what the README allows to be charged beyond a lease.
    fn check_validity(&mut self, db: &mut Db) {
        if self.valid(db) {
            return;
        }
        self.valid_until = None;
        db.lapsed.extend(self.open.iter().map(|r| r.request_id.clone()));
        db.lapsed.extend(self.book.to_write(usize::MAX).into_iter().map(|d| d.request_id));
        if self.protocol.retire_lapsed_book {
            let successor = self.book.successor();
            let old = std::mem::replace(&mut self.book, successor);
            self.retired.push((self.node, old));
            self.node = db.new_node();
        } else {
            self.book.forget_all();
        }
        self.user_grants.clear();
        self.idle_users.clear();
        self.asked.clear();
    }

    /// `renewed`: the leases are alive until `asked_at + TTL - margin`, by this clock. With fix A
    /// that holds for the lease(s) just asked for, and the gateway trusts the oldest.
    fn renewed(&mut self, asked_at: i64, users: &[UserId]) {
        if self.protocol.validity_per_lease {
            users.iter().for_each(|user| {
                self.asked.insert(*user, asked_at);
            });
            self.valid_until = self.asked.values().min().map(|oldest| oldest + LEASE_TTL - VALIDITY_MARGIN);
            return;
        }
        let until = asked_at + LEASE_TTL - VALIDITY_MARGIN;
        if self.valid_until.is_none_or(|current| current < until) {
            self.valid_until = Some(until);
        }
    }

    /// `reserve`: a hold from the book, growing the lease while it is short.
    pub fn reserve(&mut self, db: &mut Db, user: UserId, amount: i64, request_id: String) -> Result<(), String> {
        self.check_validity(db);
        let hold = HoldRequest { amount: Money::from_micros(amount), tokens: 0 };
        let new = NewReservation { user_id: user, key_id: key_of(user), request_id: request_id.clone(), hold };
        let mut transient = TRANSIENT_RETRIES;
        for _ in 0..MAX_ROUNDS {
            let grown = match self.book.hold(&new) {
                Ok(id) => Some(Ok(Some(id))),
                Err(HoldError::UserNotLoaded(_) | HoldError::Refused(BillingError::InsufficientBalance { .. })) => {
                    Some(self.grow_user(db, &new))
                }
                Err(HoldError::KeyNotLoaded(_)) => Some(self.grow_key(db, &new)),
                Err(other) => return Err(format!("{other:?}")),
            };
            match grown {
                Some(Ok(Some(id))) => {
                    self.open.push(Request { id, node: self.node, user, request_id, amount });
                    return Ok(());
                }
                Some(Ok(None)) | None => {}
                Some(Err(Grow::Unavailable)) if transient > 0 => {
                    transient -= 1;
                    db.time += RETRY_WAIT;
                }
                Some(Err(Grow::Unavailable)) => return Err("database unavailable".into()),
                Some(Err(Grow::Refused(reason))) => return Err(reason),
            }
        }
        Err("credit leases changed while the hold was taken".into())
    }

    /// `hold_now`.
    fn hold_now(&mut self, new: &NewReservation) -> Result<Option<ReservationId>, Grow> {
        match self.book.hold(new) {
            Ok(id) => Ok(Some(id)),
            Err(HoldError::Refused(error @ BillingError::Store(_))) => Err(Grow::Refused(error.to_string())),
            Err(_) => Ok(None),
        }
    }

    /// `grow_user`: written settlements first, then one conditional grant of at least what the
    /// hold lacks, at most half of what is free, aiming at twice the last growth.
    fn grow_user(&mut self, db: &mut Db, new: &NewReservation) -> Result<Option<ReservationId>, Grow> {
        let (user, required) = (new.user_id, new.hold.amount);
        self.write_queued(db)?;
        let leased = self.book.funds(user);
        let available = leased.map_or(Money::ZERO, |funds| funds.available());
        if leased.is_some() && available >= required {
            return self.hold_now(new);
        }
        let min = required.micros().saturating_sub(available.micros()).max(0);
        if min == 0 {
            self.book.grant_user(user, Money::ZERO);
            return self.hold_now(new);
        }
        let last = self.user_grants.get(&user).copied().unwrap_or(0);
        let want = min.saturating_mul(GROWTH).max(last.saturating_mul(2));
        let asked_at = self.mono(db);
        let wall = self.wall(db);
        let grant = db.grant_user(self.node, user, min, want, wall)?;
        match grant.granted {
            Some(granted) => {
                self.renewed(asked_at, &[user]);
                self.book.grant_user(user, Money::from_micros(granted));
                self.user_grants.insert(user, granted);
                self.hold_now(new)
            }
            // No Redis in the simulation: credit other gateways lease is not asked for.
            None => Err(Grow::Refused(format!("insufficient: {} free here", available.micros() + grant.free.max(0)))),
        }
    }

    /// `grow_key` for a key without limits: written settlements first, then one statement that
    /// grants nothing and records no lease; the key enters the book without limits.
    fn grow_key(&mut self, db: &mut Db, new: &NewReservation) -> Result<Option<ReservationId>, Grow> {
        self.write_queued(db)?;
        db.read_key(self.node)?;
        self.book.store_key(new.key_id, StoredKey { user_id: new.user_id, ..StoredKey::default() });
        self.hold_now(new)
    }

    /// The book that holds a request: the current one, or a retired one (fix B).
    fn book_of(&mut self, node: NodeId) -> &mut CreditBook {
        if node == self.node {
            return &mut self.book;
        }
        &mut self.retired.iter_mut().find(|(id, _)| *id == node).expect("a retired book").1
    }

    /// `settle`: the whole charge, even above the hold; the debit is queued.
    pub fn settle(&mut self, at: usize, charge: i64) -> Debit {
        let request = self.open.swap_remove(at);
        let settlement =
            Settlement { charge: Money::from_micros(charge), tokens: 0, success: true, description: "sim".into() };
        self.book_of(request.node).settle(request.id, &settlement).expect("an open hold settles").1
    }

    /// `release`.
    pub fn release(&mut self, at: usize) {
        let request = self.open.swap_remove(at);
        self.book_of(request.node).release(request.id).expect("an open hold is released");
    }

    /// The lease `(node, user)` was reclaimed: what its requests in flight and unwritten
    /// settlements charge is what the README allows beyond a lease.
    pub fn lease_lapsed(&self, db: &mut Db, node: NodeId, user: UserId) {
        let book = if node == self.node {
            Some(&self.book)
        } else {
            self.retired.iter().find(|(id, _)| *id == node).map(|(_, b)| b)
        };
        let Some(book) = book else { return };
        let open = self.open.iter().filter(|r| r.node == node && r.user == user).map(|r| r.request_id.clone());
        db.lapsed.extend(open);
        let queued = book.to_write(usize::MAX).into_iter().filter(|d| d.user_id == user);
        db.lapsed.extend(queued.map(|d| d.request_id));
    }

    /// The node ids of this gateway's books, retired ones included.
    pub fn nodes(&self) -> Vec<NodeId> {
        std::iter::once(self.node).chain(self.retired.iter().map(|(node, _)| *node)).collect()
    }

    /// Debits queued in every book of this gateway.
    pub fn unwritten(&self) -> usize {
        self.book.unwritten() + self.retired.iter().map(|(_, book)| book.unwritten()).sum::<usize>()
    }

    /// `write_queued` (`write_book`): the debits queued when called, in batches; each written
    /// batch (all of it, or what an earlier attempt wrote) consumes the lease in the book as in
    /// the database (`written`, `clamp_leases`).
    pub fn write_queued(&mut self, db: &mut Db) -> Result<(), Unavailable> {
        let last = self.book.last_seq();
        loop {
            let mut batch = self.book.to_write(MAX_BATCH);
            batch.retain(|debit| debit.seq <= last);
            if batch.is_empty() {
                return Ok(());
            }
            let done = db.write_debits(self.node, &batch, self.protocol.record_batches)?;
            batch.retain(|debit| debit.seq <= done);
            self.book.written(&batch);
            self.book.clamp_leases(&batch);
        }
    }

    /// `write_behind`'s turn: write the queue (with fix B, the retired books' first, and a
    /// retired book with nothing open or queued is dropped); after a failure, wait twice as long
    /// (at most 5 s).
    pub fn writer_turn(&mut self, db: &mut Db) -> Result<(), Unavailable> {
        let written = self.write_retired(db).and_then(|()| self.write_queued(db));
        self.pause = if written.is_ok() { WINDOW } else { (self.pause * 2).min(MAX_PAUSE) };
        self.next_write = self.mono(db) + self.pause;
        written
    }

    fn write_retired(&mut self, db: &mut Db) -> Result<(), Unavailable> {
        for (node, book) in &mut self.retired {
            let mut batch = book.to_write(usize::MAX);
            if !batch.is_empty() {
                let done = db.write_debits(*node, &batch, self.protocol.record_batches)?;
                batch.retain(|debit| debit.seq <= done);
                book.written(&batch);
            }
        }
        let open = &self.open;
        self.retired.retain(|(node, book)| book.unwritten() > 0 || open.iter().any(|r| r.node == *node));
        Ok(())
    }

    /// Whether `upkeep`'s next tick is due.
    pub fn tick_due(&self, db: &Db) -> bool {
        self.mono(db) >= self.next_tick
    }

    /// One tick of `upkeep`: renew when a heartbeat is due, give back idle leases, free expired
    /// leases when due. What it did, for the trace.
    pub fn tick(&mut self, db: &mut Db) -> String {
        self.next_tick = self.mono(db) + IDLE_SWEEP;
        let mut did = Vec::new();
        if self.mono(db) - self.last_renewal >= HEARTBEAT {
            match self.renew(db) {
                Ok(n) => {
                    self.last_renewal = self.mono(db);
                    did.push(format!("renewed {n}"));
                }
                Err(Unavailable) => did.push("renewal failed".into()),
            }
        }
        match self.return_idle(db) {
            Ok(users) if users.is_empty() => {}
            Ok(users) => did.push(format!("gave back idle {users:?}")),
            Err(Unavailable) => did.push("give-back failed".into()),
        }
        if self.mono(db) - self.last_reclaim >= RECLAIM_EVERY {
            self.last_reclaim = self.mono(db);
            match db.reclaim_expired(self.node) {
                Ok(0) => {}
                Ok(n) => did.push(format!("reclaimed {n}")),
                Err(Unavailable) => did.push("reclaim failed".into()),
            }
        }
        did.join(", ")
    }

    /// `renew`: every lease of this node gets `DB_NOW + TTL`; before fix A, any row touched vouched
    /// for every lease in the book; with fix A, each touched row for its own user.
    fn renew(&mut self, db: &mut Db) -> Result<usize, Unavailable> {
        let asked_at = self.mono(db);
        let wall = self.wall(db);
        let renewed = db.renew(self.node, wall)?;
        if !renewed.is_empty() {
            self.renewed(asked_at, &renewed);
        }
        Ok(renewed.len())
    }

    /// `return_idle`: the users idle at the last look and still idle (same newest hold) are given
    /// back. Returns them.
    fn return_idle(&mut self, db: &mut Db) -> Result<Vec<UserId>, Unavailable> {
        let idle = self.book.idle_users();
        let users: Vec<UserId> =
            idle.iter().filter(|(id, last)| self.idle_users.get(id) == Some(last)).map(|(id, _)| *id).collect();
        self.idle_users = idle.into_iter().filter(|(id, _)| !users.contains(id)).collect();
        if !users.is_empty() {
            self.give_back(db, &users, true)?;
        }
        Ok(users)
    }

    /// `give_back` (users only): written settlements first; each user shrinks in the book to
    /// what its open holds and unwritten debits take (`shrink_user`); then one `shrink`
    /// transaction per user, after which, with `forget`, the user leaves the book. As shipped, a
    /// failed shrink grows the book back for that user and those not tried (fix C); before, the
    /// book had given up (and with `forget`, forgotten) them anyway.
    pub fn give_back(&mut self, db: &mut Db, users: &[UserId], forget: bool) -> Result<(), Unavailable> {
        self.write_queued(db)?;
        // (user, kept, given up in the book)
        let shrink = |book: &mut CreditBook, id: UserId| {
            let before = book.stored_user(id)?;
            let keep = book.shrink_user(id)?;
            Some((id, keep, before - keep))
        };
        let kept: Vec<(UserId, i64, i64)> = users.iter().filter_map(|id| shrink(&mut self.book, *id)).collect();
        for (user, ..) in &kept {
            self.user_grants.remove(user);
        }
        let mut failed = None;
        for (user, keep, given_up) in kept {
            let existed = db.lease(self.node, user).is_some();
            if failed.is_none() {
                failed = db.shrink(self.node, user, keep).err();
            }
            if failed.is_some() {
                if self.protocol.restore_failed_give_back {
                    self.book.grant_user(user, Money::from_micros(given_up));
                } else if forget {
                    self.book.forget_user(user);
                }
                continue;
            }
            if forget {
                self.book.forget_user(user);
            }
            let deleted = existed && db.lease(self.node, user).is_none();
            if self.protocol.validity_per_lease && (deleted || (forget && !existed)) {
                // With fix A, a lease given back whole no longer bounds the others' validity.
                self.asked.remove(&user);
                self.renewed(0, &[]);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// `revoke_user`, before an administrator's debit.
    pub fn revoke_user(&mut self, db: &mut Db, user: UserId) -> Result<(), Unavailable> {
        self.give_back(db, &[user], false)
    }

    /// `give_back_all`, at shutdown: write everything, give back every lease.
    pub fn give_back_all(&mut self, db: &mut Db) -> Result<(), Unavailable> {
        self.write_retired(db)?;
        self.write_queued(db)?;
        let users = self.book.entries().0;
        self.give_back(db, &users, true)
    }
}

/// Why a lease could not grow.
pub enum Grow {
    Unavailable,
    Refused(String),
}

impl From<Unavailable> for Grow {
    fn from(_: Unavailable) -> Grow {
        Grow::Unavailable
    }
}

/// What the book counts as a user's lease: its balance plus what is settled but unwritten.
pub fn stored(book: &CreditBook, user: UserId) -> Option<i64> {
    let funds = book.funds(user)?;
    Some(funds.balance.micros() + book.user_commitments(user)? - funds.reserved.micros())
}
