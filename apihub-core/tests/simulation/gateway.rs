//! A simulated gateway: the real [`CreditBook`] driven as `LeaseEngine` (`db/leases/`) drives
//! it, against the simulated database, with the budgets it knows (`BudgetDefs`). Each method
//! names the function it models; the order lock is implicit (a step runs to its end before the
//! next begins).

use std::collections::{HashMap, HashSet};

use apihub_core::Money;
use apihub_core::billing::{
    BillingError, HoldRequest, NewReservation, ReservationId, Settlement, UserFunds, check_hold,
};
use apihub_core::budget::{BudgetId, Period};
use apihub_core::credit::{CreditBook, Debit, HoldError, Lease, MeterId, StoredKey, StoredMeter};
use apihub_core::policy::KeyId;
use apihub_core::user::UserId;

use crate::db::{BudgetRow, Db, LEASE_TTL, Left, NodeId, Owner, Unavailable};

pub const HEARTBEAT: i64 = 5_000;
pub const VALIDITY_MARGIN: i64 = 3_000;
pub const RECLAIM_EVERY: i64 = 5_000;
pub const IDLE_SWEEP: i64 = 1_000;
pub const WINDOW: i64 = 50;
/// How often the budgets known are read again, and the database's clock measured.
pub const BUDGETS_RELOAD: i64 = 10_000;
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
    /// Fix E: a give-back whose first write fails still forgets the keys (or budget windows) it
    /// was asked to give back (their leases are strays then, given back after the next renewal),
    /// so that a key or budget an administrator changed is read again.
    pub forget_when_give_back_fails: bool,
}

impl Protocol {
    /// leases.rs as shipped: every fix.
    pub const SHIPPED: Protocol = Protocol {
        validity_per_lease: true,
        retire_lapsed_book: true,
        restore_failed_give_back: true,
        record_batches: true,
        forget_when_give_back_fails: true,
    };
    /// leases.rs before issue #12's fixes, which the simulation found needed.
    pub const BEFORE_FIXES: Protocol = Protocol {
        validity_per_lease: false,
        retire_lapsed_book: false,
        restore_failed_give_back: false,
        record_batches: false,
        forget_when_give_back_fails: false,
    };
}

/// A request in flight on this gateway, between its hold and its settlement or release.
#[derive(Debug, Clone)]
pub struct Request {
    pub id: ReservationId,
    /// The node id of the book that holds it (an older one when that book was retired).
    pub node: NodeId,
    pub user: UserId,
    pub key: KeyId,
    pub request_id: String,
    pub amount: i64,
    pub tokens: i64,
    /// The budget windows it counts in.
    pub meters: Vec<MeterId>,
}

pub struct Gateway {
    pub node: NodeId,
    /// The node id it started with: which process this is.
    pub started_as: NodeId,
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
    asked: HashMap<Lease, i64>,
    /// `Sizes`: the last growths, the keys known (`public_ids`: those a revocation gives back),
    /// the entries idle at the last sweep.
    user_grants: HashMap<UserId, i64>,
    key_grants: HashMap<KeyId, [i64; 3]>,
    known_keys: HashSet<KeyId>,
    /// Model only: the version of each key in the book when it entered it.
    key_versions: HashMap<KeyId, u64>,
    idle_users: HashMap<UserId, ReservationId>,
    idle_keys: HashMap<KeyId, ReservationId>,
    idle_meters: HashMap<MeterId, ReservationId>,
    /// `meter_grants`: the last growth of each window's lease.
    meter_grants: HashMap<MeterId, [i64; 3]>,
    /// Model only: the version of each window's budget when the window entered the book.
    meter_versions: HashMap<MeterId, u64>,
    /// `BudgetDefs`: the budgets known, by owner (an owner read with none has none).
    budget_defs: HashMap<Owner, Vec<(BudgetId, BudgetRow)>>,
    /// `BudgetDefs::skew`: the database's clock less this process's wall clock, as last measured
    /// (zero before the first measurement).
    budget_skew: i64,
    last_budgets: i64,
    last_renewal: i64,
    last_reclaim: i64,
    next_tick: i64,
    pub next_write: i64,
    /// `unsure`: the last write of a batch failed (it may have committed).
    pub unsure: bool,
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
            started_as: node,
            book: CreditBook::default(),
            retired: Vec::new(),
            open: Vec::new(),
            protocol,
            mono_offset,
            wall_skew,
            valid_until: None,
            asked: HashMap::new(),
            user_grants: HashMap::new(),
            key_grants: HashMap::new(),
            known_keys: HashSet::new(),
            key_versions: HashMap::new(),
            idle_users: HashMap::new(),
            idle_keys: HashMap::new(),
            idle_meters: HashMap::new(),
            meter_grants: HashMap::new(),
            meter_versions: HashMap::new(),
            budget_defs: HashMap::new(),
            budget_skew: 0,
            last_budgets: mono - BUDGETS_RELOAD,
            last_renewal: mono,
            last_reclaim: mono - RECLAIM_EVERY,
            next_tick: mono + IDLE_SWEEP,
            next_write: mono,
            unsure: false,
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
        let open = self.open.iter().map(|r| r.request_id.clone());
        let open = open.zip(self.open.iter().map(|r| r.meters.clone()));
        let queued = self.book.to_write(usize::MAX).into_iter().map(|d| (d.request_id.to_string(), d.meters));
        let lapsed: Vec<(String, Vec<MeterId>)> = open.chain(queued).collect();
        for (id, meters) in &lapsed {
            db.lapsed_windows.extend(meters.iter().map(|m| (id.clone(), m.budget, m.start)));
        }
        db.lapsed.extend(lapsed.iter().map(|(id, _)| id.clone()));
        db.lapsed_keys.extend(lapsed.into_iter().map(|(id, _)| id));
        if self.protocol.retire_lapsed_book {
            let successor = self.book.successor();
            let old = std::mem::replace(&mut self.book, successor);
            self.retired.push((self.node, old));
            self.node = db.new_node();
        } else {
            self.book.forget_all();
        }
        self.user_grants.clear();
        self.key_grants.clear();
        self.known_keys.clear();
        self.key_versions.clear();
        self.idle_users.clear();
        self.idle_keys.clear();
        self.idle_meters.clear();
        self.meter_grants.clear();
        self.meter_versions.clear();
        self.asked.clear();
    }

    /// `renewed`: the leases are alive until `asked_at + TTL - margin`, by this clock. With fix A
    /// that holds for the lease(s) just asked for, and the gateway trusts the oldest.
    fn renewed(&mut self, asked_at: i64, leases: &[Lease]) {
        if self.protocol.validity_per_lease {
            leases.iter().for_each(|lease| {
                self.asked.insert(*lease, asked_at);
            });
            self.valid_until = self.asked.values().min().map(|oldest| oldest + LEASE_TTL - VALIDITY_MARGIN);
            return;
        }
        let until = asked_at + LEASE_TTL - VALIDITY_MARGIN;
        if self.valid_until.is_none_or(|current| current < until) {
            self.valid_until = Some(until);
        }
    }

    /// `reserve`: a hold from the book, growing the leases while they are short.
    /// `hold` is the credit (micros) and tokens held.
    pub fn reserve(
        &mut self,
        db: &mut Db,
        user: UserId,
        key: KeyId,
        hold: [i64; 2],
        request_id: String,
    ) -> Result<(), String> {
        self.check_validity(db);
        let [amount, tokens] = hold;
        let hold = HoldRequest { amount: Money::from_micros(amount), tokens };
        let new = NewReservation { user_id: user, key_id: key, request_id: request_id.clone(), hold };
        let mut transient = TRANSIENT_RETRIES;
        let now = self.budget_now(db);
        for _ in 0..MAX_ROUNDS {
            let Some(meters) = self.windows(user, key, now) else {
                // `load_budgets`: a failure ends the request (no retry).
                let loaded = db.load_budgets(self.node, user, key).map_err(|_| "database unavailable")?;
                for owner in [Owner::User(user), Owner::Key(key)] {
                    let mine = loaded.iter().filter(|(_, budget)| budget.owner == owner);
                    self.budget_defs.insert(owner, mine.copied().collect());
                }
                continue;
            };
            let ids: Vec<MeterId> = meters.iter().map(|(id, _)| *id).collect();
            let grown = match self.book.hold_metered(&new, &ids) {
                Ok(id) => Some(Ok(Some(id))),
                Err(HoldError::UserNotLoaded(_) | HoldError::Refused(BillingError::InsufficientBalance { .. })) => {
                    Some(self.grow_user(db, &new, &ids))
                }
                Err(HoldError::KeyNotLoaded(_) | HoldError::Refused(BillingError::KeyLimit { .. })) => {
                    Some(self.grow_key(db, &new, &ids))
                }
                Err(HoldError::MeterNotLoaded(_) | HoldError::Refused(BillingError::BudgetSpent { .. })) => {
                    Some(self.grow_meter(db, &new, &meters))
                }
                Err(other) => return Err(format!("{other:?}")),
            };
            match grown {
                Some(Ok(Some(id))) => {
                    // Model only: its token overage is what it bills beyond these.
                    db.held_tokens.insert(request_id.clone(), tokens);
                    let (node, meters) = (self.node, ids);
                    self.open.push(Request { id, node, user, key, request_id, amount, tokens, meters });
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
    fn hold_now(&mut self, new: &NewReservation, meters: &[MeterId]) -> Result<Option<ReservationId>, Grow> {
        match self.book.hold_metered(new, meters) {
            Ok(id) => Ok(Some(id)),
            Err(HoldError::Refused(error @ BillingError::Store(_))) => Err(Grow::Refused(error.to_string())),
            Err(_) => Ok(None),
        }
    }

    /// `grow_user`: one conditional grant (queued settlements are not written first: what they
    /// charged beyond the lease is lacking too) of at least what the
    /// hold lacks, at most half of what is free, aiming at twice the last growth.
    fn grow_user(
        &mut self,
        db: &mut Db,
        new: &NewReservation,
        meters: &[MeterId],
    ) -> Result<Option<ReservationId>, Grow> {
        let (user, required) = (new.user_id, new.hold.amount);
        self.settle_doubt(db)?;
        let leased = self.book.funds(user);
        let available = leased.map_or(0, |funds| funds.margin());
        if leased.is_some() && available >= required.micros() {
            return self.hold_now(new, meters);
        }
        let min = required.micros().saturating_sub(available).max(0);
        if min == 0 {
            self.book.grant_user(user, Money::ZERO);
            return self.hold_now(new, meters);
        }
        let last = self.user_grants.get(&user).copied().unwrap_or(0);
        let want = min.saturating_mul(GROWTH).max(last.saturating_mul(2));
        let asked_at = self.mono(db);
        let wall = self.wall(db);
        let grant = db.grant_user(self.node, user, min, want, wall)?;
        match grant.granted {
            Some(granted) => {
                self.renewed(asked_at, &[Lease::User(user)]);
                self.book.grant_user(user, Money::from_micros(granted));
                self.user_grants.insert(user, granted);
                self.hold_now(new, meters)
            }
            // No Redis in the simulation: credit other gateways lease is not asked for.
            None => Err(Grow::Refused(format!("insufficient: {} free here", available.max(0) + grant.free.max(0)))),
        }
    }

    /// `grow_key`: a key in the book whose limits fit the hold takes
    /// it; else one conditional grant of at least what the hold lacks on each limit the key has
    /// (on first use: the whole hold and one call), at most half of what each has free, aiming at
    /// twice the last growth. The grant enters the book (`grant_key`), or the key does with the
    /// grant as its limits (`store_key`); a limit the database no longer has leaves the book.
    fn grow_key(
        &mut self,
        db: &mut Db,
        new: &NewReservation,
        meters: &[MeterId],
    ) -> Result<Option<ReservationId>, Grow> {
        let key = new.key_id;
        self.settle_doubt(db)?;
        let unlimited = UserFunds { balance: Money::from_micros(i64::MAX), reserved: Money::ZERO };
        let min = match self.book.key_counters(key) {
            Some(counters) if check_hold(&unlimited, &counters, &new.hold).is_ok() => {
                return self.hold_now(new, meters);
            }
            Some(counters) => counters.shortfall(&new.hold),
            None => [new.hold.amount.micros().max(0), new.hold.tokens.max(0), 1],
        };
        let last = self.key_grants.get(&key).copied().unwrap_or_default();
        let want: [i64; 3] = std::array::from_fn(|i| min[i].saturating_mul(GROWTH).max(last[i].saturating_mul(2)));
        let asked_at = self.mono(db);
        let wall = self.wall(db);
        let Some(grant) = db.grant_key(self.node, key, min, want, wall)? else {
            return Err(Grow::Refused("no such key".into()));
        };
        if grant.user != new.user_id {
            return Err(Grow::Refused("no such key".into()));
        }
        if !grant.granted {
            return Err(Grow::Refused(format!("key limit: {:?} free, {min:?} needed", grant.free)));
        }
        if grant.got.iter().sum::<i64>() > 0 {
            self.renewed(asked_at, &[Lease::Key(key)]);
        }
        let [quota, tokens, calls] = grant.got;
        let quota = grant.free[0].map(|_| Money::from_micros(quota));
        let (tokens, calls) = (grant.free[1].map(|_| tokens), grant.free[2].map(|_| calls));
        if !self.book.grant_key(key, quota, tokens, calls) {
            let stored = StoredKey {
                user_id: grant.user,
                quota_limit: quota,
                token_limit: tokens,
                remaining_calls: calls,
                tokens_used: 0,
                quota_used: Money::ZERO,
            };
            self.book.store_key(key, stored);
            self.key_versions.insert(key, grant.version);
        }
        self.key_grants.insert(key, grant.got);
        self.known_keys.insert(key);
        self.hold_now(new, meters)
    }

    /// `BudgetDefs::now`: this process's wall clock plus the skew last measured (the database's
    /// clock, once measured).
    fn budget_now(&self, db: &Db) -> i64 {
        self.wall(db) + self.budget_skew
    }

    /// `BudgetDefs::windows`: the windows a request of `key` of `user` counts in at `now`, each
    /// with its stored form before any usage; `None` when the key's or the user's budgets are
    /// not known. A window is named by its start, a multiple of the budget's period.
    pub fn windows(&self, user: UserId, key: KeyId, now: i64) -> Option<Vec<(MeterId, StoredMeter)>> {
        let of_key = self.budget_defs.get(&Owner::Key(key))?;
        let of_user = self.budget_defs.get(&Owner::User(user))?;
        let meters = of_key.iter().chain(of_user).map(|(id, budget)| {
            let start = now.div_euclid(budget.period) * budget.period;
            let scope = if matches!(budget.owner, Owner::Key(_)) { "key" } else { "user" };
            let stored = StoredMeter { scope, period: Period::Day, limits: budget.limits, used: [0; 3] };
            (MeterId { budget: *id, start, end: start + budget.period }, stored)
        });
        Some(meters.collect())
    }

    /// `grow_meter`: the first of the request's windows that cannot
    /// take the hold (not in the book, or short by what the hold lacks on some limit; on first
    /// use the whole hold and one call) grows by one conditional grant of at least that, at most
    /// half of what each limit has free, aiming at twice the last growth. The grant enters the
    /// book (`grant_meter`), or the window does with the grant as its limits (`store_meter`). A
    /// budget removed meanwhile: the budgets are read again. Refused: a budget is spent.
    fn grow_meter(
        &mut self,
        db: &mut Db,
        new: &NewReservation,
        meters: &[(MeterId, StoredMeter)],
    ) -> Result<Option<ReservationId>, Grow> {
        let ids: Vec<MeterId> = meters.iter().map(|(id, _)| *id).collect();
        self.settle_doubt(db)?;
        let short = self.book.meter_shortfall(meters, &new.hold);
        let Some((id, template, min)) = short else { return self.hold_now(new, &ids) };
        let last = self.meter_grants.get(&id).copied().unwrap_or_default();
        let want: [i64; 3] = std::array::from_fn(|i| min[i].saturating_mul(GROWTH).max(last[i].saturating_mul(2)));
        let asked_at = self.mono(db);
        let wall = self.wall(db);
        let Some(grant) = db.grant_meter(self.node, id, min, want, wall)? else {
            // The budget was removed meanwhile: read the budgets again.
            self.budget_defs.clear();
            return Ok(None);
        };
        if !grant.granted {
            return Err(Grow::Refused(format!("budget {} spent: {:?} free, {min:?} needed", id.budget, grant.free)));
        }
        if grant.got != [0; 3] {
            self.renewed(asked_at, &[Lease::Meter(id.budget, id.start)]);
        }
        if !self.book.grant_meter(id, grant.got) {
            let limits = std::array::from_fn(|i| grant.free[i].map(|_| grant.got[i]));
            self.book.store_meter(id, StoredMeter { limits, used: [0; 3], ..template });
            self.meter_versions.insert(id, grant.version);
        }
        self.meter_grants.insert(id, grant.got);
        self.hold_now(new, &ids)
    }

    /// The book that holds a request: the current one, or a retired one (fix B).
    fn book_of(&mut self, node: NodeId) -> &mut CreditBook {
        if node == self.node {
            return &mut self.book;
        }
        &mut self.retired.iter_mut().find(|(id, _)| *id == node).expect("a retired book").1
    }

    /// `settle`: the whole charge and all tokens, even above the hold; the debit is queued.
    pub fn settle(&mut self, at: usize, charge: i64, tokens: i64, success: bool) -> Debit {
        let request = self.open.swap_remove(at);
        let charge = Money::from_micros(charge);
        let settlement = Settlement { charge, tokens, success, description: "sim".into() };
        self.book_of(request.node).settle(request.id, &settlement).expect("an open hold settles").1
    }

    /// `release`.
    pub fn release(&mut self, at: usize) {
        let request = self.open.swap_remove(at);
        self.book_of(request.node).release(request.id).expect("an open hold is released");
    }

    /// The lease `(node, lease)` was reclaimed: what its requests in flight and unwritten
    /// settlements charge is what the README allows beyond a lease.
    pub fn lease_lapsed(&self, db: &mut Db, node: NodeId, lease: Lease) {
        let book = if node == self.node {
            Some(&self.book)
        } else {
            self.retired.iter().find(|(id, _)| *id == node).map(|(_, b)| b)
        };
        let Some(book) = book else { return };
        let covers = |user: UserId, key: KeyId, meters: &[MeterId]| match lease {
            Lease::User(id) => id == user,
            Lease::Key(id) => id == key,
            Lease::Meter(budget, start) => meters.iter().any(|m| m.budget == budget && m.start == start),
        };
        let open = self.open.iter().filter(|r| r.node == node && covers(r.user, r.key, &r.meters));
        let queued = book.to_write(usize::MAX).into_iter().filter(|d| covers(d.user_id, d.key_id, &d.meters));
        let lapsed = open.map(|r| r.request_id.clone()).chain(queued.map(|d| d.request_id.to_string()));
        match lease {
            Lease::User(_) => db.lapsed.extend(lapsed),
            Lease::Key(_) => db.lapsed_keys.extend(lapsed),
            Lease::Meter(budget, start) => db.lapsed_windows.extend(lapsed.map(|id| (id, budget, start))),
        }
    }

    /// Model only: the version of `key` when it entered the book (`None`: not in the book).
    pub fn key_version(&self, key: KeyId) -> Option<u64> {
        self.key_versions.get(&key).copied()
    }

    /// The requests of `key` open or unwritten in any book of this gateway.
    pub fn in_flight(&self, key: KeyId) -> Vec<String> {
        let open = self.open.iter().filter(|r| r.key == key).map(|r| r.request_id.clone());
        let books = std::iter::once(&self.book).chain(self.retired.iter().map(|(_, book)| book));
        let queued = books.flat_map(|book| book.to_write(usize::MAX)).filter(|d| d.key_id == key);
        open.chain(queued.map(|d| d.request_id.to_string())).collect()
    }

    /// The requests counted in a window of `budget`, open or unwritten in any book here.
    pub fn in_flight_in(&self, budget: BudgetId) -> Vec<String> {
        let counts = |meters: &[MeterId]| meters.iter().any(|m| m.budget == budget);
        let open = self.open.iter().filter(|r| counts(&r.meters)).map(|r| r.request_id.clone());
        let books = std::iter::once(&self.book).chain(self.retired.iter().map(|(_, book)| book));
        let queued = books.flat_map(|book| book.to_write(usize::MAX)).filter(|d| counts(&d.meters));
        open.chain(queued.map(|d| d.request_id.to_string())).collect()
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
            let written = db.write_debits(self.node, &batch, self.protocol.record_batches);
            self.unsure = written.is_err();
            let done = written?;
            batch.retain(|debit| debit.seq <= done);
            self.book.written(&batch);
            self.book.clamp_leases(&batch);
        }
    }

    /// `settle_doubt`: after a batch's write failed (it may have committed, its acknowledgement
    /// lost), a growth writes the queue first, so that the book learns what the batch consumed
    /// before the grant enters it, in the database's order.
    fn settle_doubt(&mut self, db: &mut Db) -> Result<(), Unavailable> {
        if self.unsure { self.write_queued(db) } else { Ok(()) }
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
        if self.mono(db) - self.last_budgets >= BUDGETS_RELOAD {
            // The budgets are read again; the database's clock is measured (`measure_skew`).
            self.last_budgets = self.mono(db);
            self.budget_defs.clear();
            let wall = self.wall(db);
            match db.read_clock(self.node) {
                Ok(clock) => self.budget_skew = clock - wall,
                Err(Unavailable) => did.push("reading the database's clock failed".into()),
            }
        }
        if self.mono(db) - self.last_renewal >= HEARTBEAT {
            match self.renew(db) {
                Ok(renewed) => {
                    self.last_renewal = self.mono(db);
                    did.push(format!("renewed {}", renewed.len()));
                    match self.return_strays(db, &renewed) {
                        Ok(strays) if strays.is_empty() => {}
                        Ok(strays) => did.push(format!("gave back strays {strays:?}")),
                        Err(Unavailable) => did.push("giving back strays failed".into()),
                    }
                }
                Err(Unavailable) => did.push("renewal failed".into()),
            }
        }
        match self.return_idle(db) {
            Ok((users, keys, meters)) if users.is_empty() && keys.is_empty() && meters.is_empty() => {}
            Ok((users, keys, meters)) => {
                let meters: Vec<(BudgetId, i64)> = meters.iter().map(|m| (m.budget, m.start)).collect();
                did.push(format!("gave back idle users {users:?} keys {keys:?} windows {meters:?}"))
            }
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
    /// for every lease in the book; with fix A, each touched row for its own lease. Returns them.
    fn renew(&mut self, db: &mut Db) -> Result<Vec<Lease>, Unavailable> {
        let asked_at = self.mono(db);
        let wall = self.wall(db);
        let renewed = db.renew(self.node, wall)?;
        if !renewed.is_empty() {
            self.renewed(asked_at, &renewed);
        }
        // A lease gone from the database that nothing in the book uses bounds validity no more.
        if self.protocol.validity_per_lease {
            let book = &self.book;
            let unused = |lease: &Lease| !book.counts(*lease) && book.taken(*lease) == [0; 3];
            self.asked.retain(|lease, _| renewed.contains(lease) || !unused(lease));
            self.renewed(0, &[]);
        }
        Ok(renewed)
    }

    /// `return_strays`, after a renewal: written settlements first; each renewed lease whose user
    /// or key is not in the book (a key forgotten while its holds were open, a give-back the
    /// database refused) shrinks to what the book's open holds and unwritten debits of it still
    /// take (`taken`). Returns those that shrank.
    fn return_strays(&mut self, db: &mut Db, renewed: &[Lease]) -> Result<Vec<Lease>, Unavailable> {
        self.write_queued(db)?;
        let strays: Vec<(Lease, [i64; 3])> = renewed
            .iter()
            .filter(|lease| !self.book.counts(**lease))
            .map(|lease| (*lease, self.book.taken(*lease)))
            .collect();
        for (lease, keep) in &strays {
            let keep = if matches!(lease, Lease::User(_)) { [keep[0], 0, 0] } else { *keep };
            if db.shrink(self.node, *lease, keep)? != Left::Kept {
                self.forget_asked(*lease);
            }
        }
        Ok(strays.into_iter().map(|(lease, _)| lease).collect())
    }

    /// With fix A, a lease no longer held (or no longer used) bounds the others' validity no more.
    fn forget_asked(&mut self, lease: Lease) {
        if self.protocol.validity_per_lease {
            self.asked.remove(&lease);
            self.renewed(0, &[]);
        }
    }

    /// `return_idle`: the users, keys and budget windows idle at the last look and still idle
    /// (same newest hold) are given back, the windows first. Returns them.
    #[allow(clippy::type_complexity)]
    fn return_idle(&mut self, db: &mut Db) -> Result<(Vec<UserId>, Vec<KeyId>, Vec<MeterId>), Unavailable> {
        let idle_users = self.book.idle_users();
        let idle_keys = self.book.idle_keys();
        let idle_meters = self.book.idle_meters();
        let mut meters: Vec<MeterId> =
            idle_meters.iter().filter(|(id, last)| self.idle_meters.get(id) == Some(last)).map(|(id, _)| *id).collect();
        meters.sort_unstable();
        self.idle_meters = idle_meters.into_iter().filter(|(id, _)| !meters.contains(id)).collect();
        let mut users: Vec<UserId> =
            idle_users.iter().filter(|(id, last)| self.idle_users.get(id) == Some(last)).map(|(id, _)| *id).collect();
        let mut keys: Vec<KeyId> =
            idle_keys.iter().filter(|(id, last)| self.idle_keys.get(id) == Some(last)).map(|(id, _)| *id).collect();
        // The book's order is a hash map's: sorted, a seed replays in any process.
        users.sort_unstable();
        keys.sort_unstable();
        self.idle_users = idle_users.into_iter().filter(|(id, _)| !users.contains(id)).collect();
        self.idle_keys = idle_keys.into_iter().filter(|(id, _)| !keys.contains(id)).collect();
        self.give_back_meters(db, &meters)?;
        if !users.is_empty() || !keys.is_empty() {
            self.give_back(db, &users, &keys, true)?;
        }
        Ok((users, keys, meters))
    }

    /// `give_back_meters`: written settlements first (a failure ends it, the windows still in
    /// the book); each window leaves the book, its lease keeping what its open holds and
    /// unwritten debits take (`meter_commitments`); then one `shrink_meter` transaction per
    /// window (a failure ends it: the leases not shrunk are strays, given back at a heartbeat).
    pub fn give_back_meters(&mut self, db: &mut Db, ids: &[MeterId]) -> Result<(), Unavailable> {
        if ids.is_empty() {
            return Ok(());
        }
        if let Err(error) = self.write_queued(db) {
            // As for keys (fix E): the windows leave the book anyway, their leases strays.
            if self.protocol.forget_when_give_back_fails {
                for id in ids {
                    self.book.forget_meter(*id);
                    self.meter_versions.remove(id);
                }
            }
            return Err(error);
        }
        let keeps_nothing = db.faults.meter_give_back_keeps_nothing;
        let commitments =
            |id: &MeterId| self.book.meter_commitments(*id).map(|keep| if keeps_nothing { [0; 3] } else { keep });
        let kept: Vec<(MeterId, [i64; 3])> =
            ids.iter().filter_map(|id| commitments(id).map(|keep| (*id, keep))).collect();
        for id in ids {
            self.book.forget_meter(*id);
            self.meter_grants.remove(id);
            self.meter_versions.remove(id);
        }
        for (id, keep) in kept {
            let lease = Lease::Meter(id.budget, id.start);
            // The window left the book: a lease of it nobody renews no longer bounds the others.
            if db.shrink(self.node, lease, keep)? != Left::Kept {
                self.forget_asked(lease);
            }
        }
        Ok(())
    }

    /// `revoke_budgets`, on the invalidation of a changed budget: the budgets are forgotten (read
    /// again on the next request) and every window's lease is given back. A failure is only
    /// logged (the windows leave the book anyway with fix E; their leases are strays).
    pub fn revoke_budgets(&mut self, db: &mut Db) -> Result<(), Unavailable> {
        self.budget_defs.clear();
        let mut meters = self.book.meter_ids();
        meters.sort_unstable();
        self.give_back_meters(db, &meters)
    }

    /// Model only: the version of the budget of window `id` when it entered the book (`None`:
    /// not in the book).
    pub fn meter_version(&self, id: MeterId) -> Option<u64> {
        self.meter_versions.get(&id).copied()
    }

    /// `give_back`: written settlements first; each user shrinks in the book to what its open
    /// holds and unwritten debits take (`shrink_user`), and each key leaves the book, keeping
    /// what its open holds and unwritten debits take (`key_commitments`); then one `shrink`
    /// transaction per user, after which, with `forget`, the user leaves the book. As shipped, a
    /// failed shrink grows the book back for that user and those not tried (fix C); before, the
    /// book had given up (and with `forget`, forgotten) them anyway. A failure ends the give-back
    /// before the keys (their leases stay whole: strays, given back at a heartbeat); then one
    /// `shrink` per key.
    pub fn give_back(
        &mut self,
        db: &mut Db,
        users: &[UserId],
        keys: &[KeyId],
        forget: bool,
    ) -> Result<(), Unavailable> {
        if let Err(error) = self.write_queued(db) {
            // With fix E the keys leave the book anyway (their leases strays); without it they
            // stayed with the limits they had (bug E).
            if self.protocol.forget_when_give_back_fails {
                for id in keys {
                    self.book.forget_key(*id);
                    self.key_versions.remove(id);
                }
            }
            return Err(error);
        }
        // (user, kept, given up in the book)
        let shrink = |book: &mut CreditBook, id: UserId| {
            let before = book.stored_user(id)?;
            let keep = book.shrink_user(id)?;
            Some((id, keep, before - keep))
        };
        let kept: Vec<(UserId, i64, i64)> = users.iter().filter_map(|id| shrink(&mut self.book, *id)).collect();
        let commitments = |id: &KeyId| match db.faults.key_give_back_keeps_nothing {
            true => self.book.key_commitments(*id).map(|_| [0; 3]),
            false => self.book.key_commitments(*id),
        };
        let kept_keys: Vec<(KeyId, [i64; 3])> =
            keys.iter().filter_map(|id| commitments(id).map(|keep| (*id, keep))).collect();
        for id in keys {
            self.book.forget_key(*id);
            self.key_versions.remove(id);
        }
        for (user, ..) in &kept {
            self.user_grants.remove(user);
        }
        for (key, _) in &kept_keys {
            self.key_grants.remove(key);
        }
        let mut failed = None;
        for (user, keep, given_up) in kept {
            if failed.is_none() {
                match db.shrink(self.node, Lease::User(user), [keep, 0, 0]) {
                    Ok(left) => {
                        if forget {
                            self.book.forget_user(user);
                        }
                        if left == Left::Deleted || (forget && left == Left::Missing) {
                            self.forget_asked(Lease::User(user));
                        }
                        continue;
                    }
                    Err(error) => failed = Some(error),
                }
            }
            if self.protocol.restore_failed_give_back {
                self.book.grant_user(user, Money::from_micros(given_up));
            } else if forget {
                self.book.forget_user(user);
            }
        }
        if let Some(error) = failed {
            return Err(error);
        }
        for (key, keep) in kept_keys {
            if db.shrink(self.node, Lease::Key(key), keep)? != Left::Kept {
                // The key left the book: its lease, if any is left, is not used any more.
                self.forget_asked(Lease::Key(key));
            }
        }
        Ok(())
    }

    /// `revoke_user`, before an administrator's debit.
    pub fn revoke_user(&mut self, db: &mut Db, user: UserId) -> Result<(), Unavailable> {
        self.give_back(db, &[user], &[], false)
    }

    /// `revoke_key`, on the invalidation of a key an administrator changed (limits, reset,
    /// deletion): a key this gateway knows is given back and forgotten, so its next hold reads
    /// it again. A failure is only logged (the lease is a stray then).
    pub fn revoke_key(&mut self, db: &mut Db, key: KeyId) -> Result<(), Unavailable> {
        if !self.known_keys.contains(&key) {
            return Ok(());
        }
        self.give_back(db, &[], &[key], true)
    }

    /// `give_back_all`, at shutdown: write everything, give back every lease (users' and keys',
    /// then budget windows').
    pub fn give_back_all(&mut self, db: &mut Db) -> Result<(), Unavailable> {
        self.write_retired(db)?;
        self.write_queued(db)?;
        let (mut users, mut keys) = self.book.entries();
        users.sort_unstable();
        keys.sort_unstable();
        self.give_back(db, &users, &keys, true)?;
        let mut meters = self.book.meter_ids();
        meters.sort_unstable();
        self.give_back_meters(db, &meters)
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

/// What the book counts as its lease of a key, for each limit the key has in the book: what is
/// left for new holds plus what the entry's open holds and unwritten debits take (holds taken
/// before the key last left the book are not the entry's: they close against its counters all
/// the same, see `World::check`).
pub fn key_stored(book: &CreditBook, key: KeyId) -> Option<[Option<i64>; 3]> {
    let counters = book.key_counters(key)?;
    let taken = book.key_commitments(key)?;
    let quota = counters
        .quota_limit
        .map(|limit| limit.micros() - counters.quota_used.micros() - counters.quota_reserved.micros() + taken[0]);
    let tokens = counters.token_limit.map(|limit| limit - counters.tokens_used - counters.tokens_reserved + taken[1]);
    // Remaining calls count unwritten successes down to zero, not below: at zero nothing is
    // left for new holds, whatever the entry's debits took.
    let calls = counters.remaining_calls.filter(|left| *left > 0).map(|left| left - counters.calls_reserved + taken[2]);
    Some([quota, tokens, calls])
}
