//! The simulated PostgreSQL database: users (`token_balance`, `reserved`), keys with their limits
//! (`api_keys`: `quota_limit`, `token_limit`, `remaining_calls`, what they used and their
//! `*_reserved` columns), `credit_leases` (of a user's credit, or of a key's limits), the ledger
//! (`transactions`), the usage log, periodic budgets (`budgets`), their windows (`budget_windows`:
//! used counters and `*_reserved` columns) and their leases (`budget_leases`, kept with
//! `credit_leases` here, told apart by [`LeaseRow::meter`]), and the virtual clock. Each method
//! models one statement or one transaction of `apihub-server/src/db/leases/` or
//! `db/lease_writes/` (named in its doc) and fails, having changed nothing, when the calling
//! gateway cannot reach the database.

use std::collections::{BTreeMap, HashMap, HashSet};

use apihub_core::budget::BudgetId;
use apihub_core::credit::{Debit, Lease, MeterId};
use apihub_core::policy::KeyId;
use apihub_core::user::UserId;

use crate::rng::Rng;

/// A gateway's node id (a new one at every start, as `LeaseEngine::start` draws a UUID).
pub type NodeId = u32;

/// How long a lease lives without renewal (`LEASE_TTL`), in milliseconds.
pub const LEASE_TTL: i64 = 20_000;

/// Failures injected: on purpose, to prove that the checks see them, or (`lost_commit_acks`)
/// the database's own, on in the sweep.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Every batch is applied twice.
    pub apply_batch_twice: bool,
    /// Leases are stamped with the granting gateway's own (skewed) wall clock, not the database's.
    pub node_clock_decides_expiry: bool,
    /// Now and then a batch commits but the gateway is told it failed (a connection lost during
    /// `COMMIT`), so it writes the batch again. Not a protocol fault: the database does this.
    pub lost_commit_acks: bool,
    /// `grow_key`'s statement reads what a key has free without its `*_reserved` columns (what
    /// other gateways lease of it), so two gateways can lease the same quota.
    pub key_free_ignores_reserved: bool,
    /// A protocol bug injected: a give-back of a key's lease keeps nothing for the key's open
    /// holds and unwritten debits (`key_commitments` ignored), so they settle beyond any lease.
    pub key_give_back_keeps_nothing: bool,
    /// `grow_meter`'s statement reads what a budget window has free without its `*_reserved`
    /// columns (what other gateways lease of it), so two gateways can lease the same budget.
    pub window_free_ignores_reserved: bool,
    /// A protocol bug injected: a give-back of a budget window's lease keeps nothing for the
    /// window's open holds and unwritten debits (`meter_commitments` ignored).
    pub meter_give_back_keeps_nothing: bool,
    /// A batch's settlements are counted in the first of their budget windows only (the loop
    /// over `meter_totals` ends early).
    pub batch_counts_first_window_only: bool,
}

impl Faults {
    /// No fault (`Default` in a `const`).
    pub const NONE: Faults = Faults {
        apply_batch_twice: false,
        node_clock_decides_expiry: false,
        lost_commit_acks: false,
        key_free_ignores_reserved: false,
        key_give_back_keeps_nothing: false,
        window_free_ignores_reserved: false,
        meter_give_back_keeps_nothing: false,
        batch_counts_first_window_only: false,
    };
}

#[derive(Debug, Clone, Copy, Default)]
pub struct UserRow {
    pub token_balance: i64,
    pub reserved: i64,
}

/// An `api_keys` row: its limits (`None`: no such limit), what it used, what leases reserve of it
/// (`*_reserved`: credit in micros, tokens, calls), and the model's own bookkeeping.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyRow {
    pub user: UserId,
    /// `quota_limit` (micros), `token_limit`, `remaining_calls`.
    pub limits: [Option<i64>; 3],
    pub quota_used: i64,
    pub tokens_used: i64,
    pub calls_total: i64,
    pub calls_succeeded: i64,
    /// `quota_reserved`, `tokens_reserved`, `calls_reserved`.
    pub reserved: [i64; 3],
    /// Model only: how far used + reserved (for calls: reserved) may exceed each limit. What an
    /// administrator's change left above a lowered limit, plus what batches charged beyond leases
    /// since (each charge beyond a lease is checked against what the README allows).
    pub slack: [i64; 3],
    /// Model only: the usage log's length at the last reset (rows before it are not counted).
    pub usage_from: usize,
    /// Model only: how many times an administrator changed the key.
    pub version: u64,
}

impl KeyRow {
    /// How far each limit is exceeded (negative: what is free): used + reserved - limit, or for
    /// calls reserved - remaining calls; `None` for a limit the key does not have.
    pub fn over(&self) -> [Option<i64>; 3] {
        let used = [self.quota_used, self.tokens_used, 0];
        std::array::from_fn(|i| self.limits[i].map(|limit| used[i] + self.reserved[i] - limit))
    }
}

/// Whose budget (`budgets.user_id` or `budgets.key_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    User(UserId),
    Key(KeyId),
}

/// A `budgets` row: whose, how long its windows last (virtual milliseconds: the simulation's
/// periods are seconds long, so that windows roll over within a run) and its limits
/// (`credit_limit`, `token_limit`, `call_limit`).
#[derive(Debug, Clone, Copy)]
pub struct BudgetRow {
    pub owner: Owner,
    pub period: i64,
    pub limits: [Option<i64>; 3],
    /// Model only: how many times an administrator changed it.
    pub version: u64,
}

/// A `budget_windows` row: what the window used (`credit_used`, `tokens_used`, `calls_used`)
/// and what leases reserve of it (`*_reserved`), and the model's own bookkeeping.
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowRow {
    pub used: [i64; 3],
    pub reserved: [i64; 3],
    /// Model only: how far used + reserved may exceed each limit (as a key's `slack`).
    pub slack: [i64; 3],
}

impl WindowRow {
    /// How far each limit of `budget` is exceeded (used + reserved - limit).
    pub fn over(&self, budget: &BudgetRow) -> [Option<i64>; 3] {
        std::array::from_fn(|i| budget.limits[i].map(|limit| self.used[i] + self.reserved[i] - limit))
    }
}

/// What `grow_meter`'s statement answers (`MeterGrant`).
pub struct WindowGrant {
    /// What each limit has free (`None`: no such limit).
    pub free: [Option<i64>; 3],
    pub granted: bool,
    /// What was granted of each.
    pub got: [i64; 3],
    /// Model only: the budget's version read.
    pub version: u64,
}

#[derive(Debug, Clone)]
pub struct LeaseRow {
    pub id: i64,
    pub node: NodeId,
    pub user: UserId,
    /// `None`: a lease of the user's credit; else of this key's limits.
    pub key: Option<KeyId>,
    /// `Some`: a `budget_leases` row, of this budget window (budget, window start); `user` and
    /// `key` are then unused.
    pub meter: Option<(BudgetId, i64)>,
    /// `amount` (micros), `tokens`, `calls` (a user's lease has only an amount).
    pub held: [i64; 3],
    /// On the database's clock.
    pub expires_at: i64,
}

impl LeaseRow {
    pub fn of(&self) -> Lease {
        match self.meter {
            Some((budget, start)) => Lease::Meter(budget, start),
            None => self.key.map_or(Lease::User(self.user), Lease::Key),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LedgerRow {
    pub user: UserId,
    pub amount: i64,
    pub order_no: String,
}

/// A usage-log row: what one settlement billed a key (written with its batch).
#[derive(Debug, Clone)]
pub struct UsageRow {
    pub key: KeyId,
    pub request_id: String,
    pub charge: i64,
    pub tokens: i64,
    pub success: bool,
}

/// What `grow_user`'s statement answers.
pub struct UserGrant {
    pub free: i64,
    pub granted: Option<i64>,
}

/// What `grow_key`'s statement answers (`KeyGrant`).
pub struct KeyGrant {
    pub user: UserId,
    /// What each limit has free (`None`: no such limit).
    pub free: [Option<i64>; 3],
    /// Whether every limit had at least what was asked for.
    pub granted: bool,
    /// Model only: the key's version read.
    pub version: u64,
    /// What was granted of each (zero for a limit the key does not have).
    pub got: [i64; 3],
}

/// What a give-back left of the lease (`Left` of `lease_writes/free.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Left {
    Kept,
    Deleted,
    Missing,
}

/// The statement could not run: the database is down or unreachable from this gateway (or, for
/// a give-back, a `CHECK` refused it: then a violation is recorded too).
#[derive(Debug)]
pub struct Unavailable;

/// A batch that committed while its gateway was told it failed (its acknowledgement lost).
#[derive(Debug, Default)]
pub struct InDoubt {
    /// How many settlements it applied.
    pub debits: usize,
    /// What it consumed of each of the node's leases.
    pub consumed: BTreeMap<LeaseKey, [i64; 3]>,
}

/// A lease's identity within a node, ordered (`Lease` is not `Ord`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LeaseKey {
    User(UserId),
    Key(KeyId),
    Meter(BudgetId, i64),
}

impl From<Lease> for LeaseKey {
    fn from(lease: Lease) -> LeaseKey {
        match lease {
            Lease::Key(key) => LeaseKey::Key(key),
            Lease::User(user) => LeaseKey::User(user),
            Lease::Meter(budget, start) => LeaseKey::Meter(budget, start),
        }
    }
}

pub struct Db {
    /// The true time (ms): every clock below is an offset from it.
    pub time: i64,
    /// The database's clock is `time + clock_offset`.
    pub clock_offset: i64,
    pub rng: Rng,
    pub users: BTreeMap<UserId, UserRow>,
    pub keys: BTreeMap<KeyId, KeyRow>,
    pub leases: Vec<LeaseRow>,
    next_lease: i64,
    next_node: NodeId,
    pub ledger: Vec<LedgerRow>,
    pub usage: Vec<UsageRow>,
    pub budgets: BTreeMap<BudgetId, BudgetRow>,
    next_budget: BudgetId,
    /// By budget and window start.
    pub windows: BTreeMap<(BudgetId, i64), WindowRow>,
    /// Model only: how many times budgets, windows or their leases changed (the world checks
    /// the windows again only then).
    pub window_writes: u64,
    /// Model only: the request ids of the settlements applied, in order.
    pub applied_order: Vec<String>,
    /// Per window: credit, tokens and successful calls a batch counted beyond the window's lease.
    pub window_excess: HashMap<(BudgetId, i64), [i64; 3]>,
    /// Per window: what the README allows of that (as of a key).
    pub window_allowed: HashMap<(BudgetId, i64), [i64; 3]>,
    /// Request ids and windows (budget, start) whose gateway's lease of the window lapsed while
    /// the request was open or unwritten there.
    pub lapsed_windows: HashSet<(String, BudgetId, i64)>,
    /// Request ids and budgets, and the limits of the budget that no lease bounds for them
    /// (added by an administrator while they were in flight, or missing from their gateway's
    /// book when it took the hold).
    pub unbounded_windows: HashMap<(String, BudgetId), [bool; 3]>,
    /// Settlements applied by batches, by request id (zero charges write no ledger row, so the
    /// model counts them here).
    pub applied: HashMap<String, u32>,
    /// Everyone's statements fail.
    pub outage: bool,
    /// These gateways' statements fail.
    pub partitioned: HashSet<NodeId>,
    /// A statement fails now and then (per mille).
    pub flaky: u64,
    pub faults: Faults,
    /// Per user: charged beyond the lease a batch consumed (the balance alone paid it).
    pub excess: HashMap<UserId, i64>,
    /// Per user: charges the README allows beyond a lease: billed overage, and what holds and
    /// settlements open when a gateway's leases lapsed were charged.
    pub allowed: HashMap<UserId, i64>,
    /// Per key: credit, tokens and successful calls a batch counted beyond the key's lease.
    pub key_excess: HashMap<KeyId, [i64; 3]>,
    /// Per key: what the README allows of that (billed overage of credit and tokens beyond the
    /// hold; everything of a request whose gateway's key lease lapsed).
    pub key_allowed: HashMap<KeyId, [i64; 3]>,
    /// Request ids open or unwritten on a gateway when its lease of their user lapsed.
    pub lapsed: HashSet<String>,
    /// Request ids open or unwritten on a gateway when its lease of their key lapsed.
    pub lapsed_keys: HashSet<String>,
    /// Request ids and the limits of their key that no lease bounds for them: limits an
    /// administrator added while they were in flight, or that their gateway's book did not have
    /// when it took the hold (it had not heard of the change yet).
    pub unbounded: HashMap<String, [bool; 3]>,
    /// Tokens each request held (its token overage is what it bills beyond them).
    pub held_tokens: HashMap<String, i64>,
    /// Leases reclaimed since the world last looked: `(node, lease)`.
    pub reclaimed: Vec<(NodeId, Lease)>,
    /// Violations seen while applying (a settlement applied twice).
    pub violations: Vec<String>,
    /// `credit_batches`: each batch written, by node id and first sequence number, to its last.
    batches: HashMap<(NodeId, u64), u64>,
    /// Batches committed whose gateway was told they failed, by node id and first sequence
    /// number, until the gateway writes them again (or dies).
    pub in_doubt: BTreeMap<(NodeId, u64), InDoubt>,
}

impl Db {
    pub fn new(rng: Rng, clock_offset: i64, flaky: u64, faults: Faults) -> Db {
        Db {
            time: 0,
            clock_offset,
            rng,
            users: BTreeMap::new(),
            keys: BTreeMap::new(),
            leases: Vec::new(),
            next_lease: 1,
            next_node: 0,
            ledger: Vec::new(),
            usage: Vec::new(),
            budgets: BTreeMap::new(),
            next_budget: 1,
            windows: BTreeMap::new(),
            window_writes: 0,
            applied_order: Vec::new(),
            window_excess: HashMap::new(),
            window_allowed: HashMap::new(),
            lapsed_windows: HashSet::new(),
            unbounded_windows: HashMap::new(),
            applied: HashMap::new(),
            outage: false,
            partitioned: HashSet::new(),
            flaky,
            faults,
            excess: HashMap::new(),
            allowed: HashMap::new(),
            key_excess: HashMap::new(),
            key_allowed: HashMap::new(),
            lapsed: HashSet::new(),
            lapsed_keys: HashSet::new(),
            unbounded: HashMap::new(),
            held_tokens: HashMap::new(),
            reclaimed: Vec::new(),
            violations: Vec::new(),
            batches: HashMap::new(),
            in_doubt: BTreeMap::new(),
        }
    }

    /// A fresh node id (a gateway's start draws a new UUID).
    pub fn new_node(&mut self) -> NodeId {
        self.next_node += 1;
        self.next_node
    }

    /// The database's clock (`DB_NOW`, `clock_timestamp()`).
    pub fn clock(&self) -> i64 {
        self.time + self.clock_offset
    }

    /// Whether `node` can reach the database at all (outage and partition only).
    pub fn reachable(&self, node: NodeId) -> bool {
        !self.outage && !self.partitioned.contains(&node)
    }

    /// One round trip: a few milliseconds pass, then the statement runs or fails.
    fn round_trip(&mut self, node: NodeId) -> Result<(), Unavailable> {
        self.time += self.rng.range(0, 4);
        if !self.reachable(node) || self.rng.chance_per_mille(self.flaky) {
            return Err(Unavailable);
        }
        Ok(())
    }

    /// The stamp a grant or renewal measures expiry from: the database's clock, unless a fault
    /// says the gateway's.
    fn stamp(&self, node_clock: i64) -> i64 {
        if self.faults.node_clock_decides_expiry { node_clock } else { self.clock() }
    }

    pub fn add_user(&mut self, user: UserId, balance: i64) {
        self.users.insert(user, UserRow { token_balance: balance, reserved: 0 });
        self.ledger.push(LedgerRow { user, amount: balance, order_no: format!("opening-{user}") });
    }

    /// A new key of `user` with these limits (`create_keys`).
    pub fn add_key(&mut self, key: KeyId, user: UserId, limits: [Option<i64>; 3]) {
        let usage_from = self.usage.len();
        self.keys.insert(key, KeyRow { user, limits, usage_from, ..KeyRow::default() });
    }

    /// `node`'s lease of `lease` (a user's credit or a key's limits).
    pub fn lease(&self, node: NodeId, lease: Lease) -> Option<&LeaseRow> {
        self.leases.iter().find(|l| l.node == node && l.of() == lease)
    }

    /// What `node`'s lease of `lease` holds: credit (micros), tokens, calls (zero: no lease).
    pub fn held(&self, node: NodeId, lease: Lease) -> [i64; 3] {
        self.lease(node, lease).map_or([0; 3], |l| l.held)
    }

    /// Adds `got` to `node`'s lease of `lease` (`ON CONFLICT … DO UPDATE`), stamping its expiry.
    fn add_to_lease(&mut self, node: NodeId, of: Lease, got: [i64; 3], stamp: i64) {
        let expires_at = stamp + LEASE_TTL;
        let (user, key, meter) = match of {
            Lease::User(user) => (user, None, None),
            Lease::Key(key) => (self.keys[&key].user, Some(key), None),
            Lease::Meter(budget, start) => (0, None, Some((budget, start))),
        };
        match self.leases.iter_mut().find(|l| l.node == node && l.of() == of) {
            Some(lease) => {
                lease.held.iter_mut().zip(got).for_each(|(held, got)| *held += got);
                lease.expires_at = expires_at;
            }
            None => {
                let id = self.next_lease;
                self.next_lease += 1;
                self.leases.push(LeaseRow { id, node, user, key, meter, held: got, expires_at });
            }
        }
    }

    /// `grow_user`'s one statement: `u` locks the user and reads what is free; `g` moves
    /// `GREATEST(min, LEAST(want, free / 2))` into `users.reserved` when `free >= min`; `l` adds
    /// it to this node's lease (`ON CONFLICT … DO UPDATE`), stamping `expires_at = DB_NOW + TTL`.
    pub fn grant_user(
        &mut self,
        node: NodeId,
        user: UserId,
        min: i64,
        want: i64,
        node_clock: i64,
    ) -> Result<UserGrant, Unavailable> {
        self.round_trip(node)?;
        let stamp = self.stamp(node_clock);
        let row = self.users.get_mut(&user).expect("the simulation's users exist");
        let free = row.token_balance - row.reserved;
        if free < min {
            return Ok(UserGrant { free, granted: None });
        }
        let granted = min.max(want.min(free / 2));
        row.reserved += granted;
        self.add_to_lease(node, Lease::User(user), [granted, 0, 0], stamp);
        Ok(UserGrant { free, granted: Some(granted) })
    }

    /// `grow_key`'s one statement: `k` locks the key and reads what each limit has free
    /// (`limit - used - reserved`, NULL without the limit); `s` sizes each grant as
    /// `GREATEST(min, LEAST(want, free / 2))` (0 without the limit), granted when every limit has
    /// at least `min`; `g` adds the grants to `api_keys.*_reserved` and `l` to this node's lease
    /// (`ON CONFLICT (node_id, key_id) … DO UPDATE`) when anything is granted. `None`: no such key
    /// (deleted).
    pub fn grant_key(
        &mut self,
        node: NodeId,
        key: KeyId,
        min: [i64; 3],
        want: [i64; 3],
        node_clock: i64,
    ) -> Result<Option<KeyGrant>, Unavailable> {
        self.round_trip(node)?;
        let stamp = self.stamp(node_clock);
        let ignore_reserved = self.faults.key_free_ignores_reserved;
        let Some(row) = self.keys.get_mut(&key) else { return Ok(None) };
        let used = [row.quota_used, row.tokens_used, 0];
        let reserved = if ignore_reserved { [0; 3] } else { row.reserved };
        let free: [Option<i64>; 3] = std::array::from_fn(|i| row.limits[i].map(|limit| limit - used[i] - reserved[i]));
        let (got, granted) = size_grant(free, min, want);
        let (user, version) = (row.user, row.version);
        if granted && got.iter().sum::<i64>() > 0 {
            row.reserved.iter_mut().zip(got).for_each(|(reserved, got)| *reserved += got);
            self.add_to_lease(node, Lease::Key(key), got, stamp);
        }
        Ok(Some(KeyGrant { user, free, granted, got, version }))
    }

    /// `renew`: `UPDATE credit_leases SET expires_at = DB_NOW + TTL WHERE node_id = $1`, then
    /// the same of `budget_leases` (two statements, not one transaction: the second can fail
    /// after the first); the leases they touched (`RETURNING …`: before fix A only their number
    /// was used).
    pub fn renew(&mut self, node: NodeId, node_clock: i64) -> Result<Vec<Lease>, Unavailable> {
        let mut renewed = Vec::new();
        for meters in [false, true] {
            self.round_trip(node)?;
            let stamp = self.stamp(node_clock);
            let mine = self.leases.iter_mut().filter(|l| l.node == node && l.meter.is_some() == meters);
            renewed.extend(mine.map(|lease| {
                lease.expires_at = stamp + LEASE_TTL;
                lease.of()
            }));
        }
        Ok(renewed)
    }

    /// `load_budgets`: the budgets of a user and of a key (`WHERE user_id = $1 OR key_id = $2`).
    pub fn load_budgets(
        &mut self,
        node: NodeId,
        user: UserId,
        key: KeyId,
    ) -> Result<Vec<(BudgetId, BudgetRow)>, Unavailable> {
        self.round_trip(node)?;
        let mine = |row: &BudgetRow| row.owner == Owner::User(user) || row.owner == Owner::Key(key);
        Ok(self.budgets.iter().filter(|(_, row)| mine(row)).map(|(id, row)| (*id, *row)).collect())
    }

    /// `measure_skew`'s `SELECT DB_NOW`: the database's clock, read half a round trip ago.
    pub fn read_clock(&mut self, node: NodeId) -> Result<i64, Unavailable> {
        let before = self.time;
        self.round_trip(node)?;
        Ok(self.clock() - (self.time - before) / 2)
    }

    /// `grow_meter`'s transaction: the window's row is inserted on its first use (`INSERT …
    /// SELECT … FROM budgets WHERE id = $1 ON CONFLICT DO NOTHING`: not for a budget removed);
    /// then one statement: `w` locks the window and reads what each limit has free (`limit -
    /// used - reserved`, NULL without the limit); `s` sizes each grant as `GREATEST(min,
    /// LEAST(want, free / 2))` (0 without the limit), granted when every limit has at least
    /// `min`; `g` adds the grants to `budget_windows.*_reserved` and `l` to this node's lease
    /// (`ON CONFLICT (node_id, budget_id, window_start) … DO UPDATE`) when anything is granted.
    /// `None`: no such budget (no row from `s`).
    pub fn grant_meter(
        &mut self,
        node: NodeId,
        id: MeterId,
        min: [i64; 3],
        want: [i64; 3],
        node_clock: i64,
    ) -> Result<Option<WindowGrant>, Unavailable> {
        self.round_trip(node)?;
        let stamp = self.stamp(node_clock);
        let Some(budget) = self.budgets.get(&id.budget).copied() else { return Ok(None) };
        self.window_writes += 1;
        let ignore_reserved = self.faults.window_free_ignores_reserved;
        let window = self.windows.entry((id.budget, id.start)).or_default();
        let reserved = if ignore_reserved { [0; 3] } else { window.reserved };
        let free: [Option<i64>; 3] =
            std::array::from_fn(|i| budget.limits[i].map(|limit| limit - window.used[i] - reserved[i]));
        let (got, granted) = size_grant(free, min, want);
        if granted && got.iter().sum::<i64>() > 0 {
            window.reserved.iter_mut().zip(got).for_each(|(reserved, got)| *reserved += got);
            self.add_to_lease(node, Lease::Meter(id.budget, id.start), got, stamp);
        }
        Ok(Some(WindowGrant { free, granted, got, version: budget.version }))
    }

    /// `shrink` with `free_lease`, one transaction: the user or key is locked, then this node's
    /// lease of it gives back `max(held - keep, 0)` of each (`beyond`) to the user's `reserved`
    /// or the key's `*_reserved` (`unreserve`), and is deleted when that is all of it
    /// (`take_from_lease`). A lease left negative (a `keep` below zero) breaks the table's `CHECK
    /// (amount >= 0)`: the transaction fails, and the model records a violation.
    pub fn shrink(&mut self, node: NodeId, lease: Lease, keep: [i64; 3]) -> Result<Left, Unavailable> {
        self.round_trip(node)?;
        let Some(at) = self.leases.iter().position(|l| l.node == node && l.of() == lease) else {
            return Ok(Left::Missing);
        };
        self.window_writes += u64::from(self.leases[at].meter.is_some());
        let held = self.leases[at].held;
        let back: [i64; 3] = std::array::from_fn(|i| (held[i] - keep[i]).max(0));
        if (0..3).any(|i| held[i] - back[i] < 0) {
            self.violations
                .push(format!("node {node}: giving back {lease:?} to keep {keep:?} of {held:?} breaks a CHECK"));
            return Err(Unavailable);
        }
        let left = if back == held {
            self.leases.remove(at);
            Left::Deleted
        } else {
            self.leases[at].held.iter_mut().zip(back).for_each(|(held, back)| *held -= back);
            Left::Kept
        };
        self.unreserve(lease, back);
        Ok(left)
    }

    /// `unreserve`: `back` leaves the user's `reserved` or the key's `*_reserved` (a deleted
    /// key's leases went with it).
    fn unreserve(&mut self, lease: Lease, back: [i64; 3]) {
        match lease {
            Lease::User(user) => self.users.get_mut(&user).expect("user").reserved -= back[0],
            Lease::Key(key) => {
                if let Some(row) = self.keys.get_mut(&key) {
                    row.reserved.iter_mut().zip(back).for_each(|(reserved, back)| *reserved -= back);
                }
            }
            // `unreserve_window` (a removed budget's windows went with it).
            Lease::Meter(budget, start) => {
                if let Some(row) = self.windows.get_mut(&(budget, start)) {
                    row.reserved.iter_mut().zip(back).for_each(|(reserved, back)| *reserved -= back);
                }
            }
        }
    }

    /// `reclaim_expired`: one `SELECT … WHERE expires_at < DB_NOW`, then per lease one
    /// transaction that locks its owner (`lock_owner`), deletes it if it is still expired and
    /// gives it back (`unreserve`); then the same of `budget_leases` (`reclaim_expired_meters`,
    /// `lock_window`, `unreserve_window`). Returns how many were freed.
    pub fn reclaim_expired(&mut self, node: NodeId) -> Result<usize, Unavailable> {
        let mut freed = 0;
        for meters in [false, true] {
            freed += self.reclaim_expired_of(node, meters)?;
        }
        Ok(freed)
    }

    fn reclaim_expired_of(&mut self, node: NodeId, meters: bool) -> Result<usize, Unavailable> {
        self.round_trip(node)?;
        let now = self.clock();
        let expired = self.leases.iter().filter(|l| l.expires_at < now && l.meter.is_some() == meters);
        let expired: Vec<i64> = expired.map(|l| l.id).collect();
        let mut freed = 0;
        for id in expired {
            self.round_trip(node)?;
            let now = self.clock();
            let Some(at) = self.leases.iter().position(|l| l.id == id && l.expires_at < now) else { continue };
            let lease = self.leases.remove(at);
            self.window_writes += u64::from(lease.meter.is_some());
            self.unreserve(lease.of(), lease.held);
            self.reclaimed.push((lease.node, lease.of()));
            freed += 1;
        }
        Ok(freed)
    }

    /// `write_debits`, one transaction: with `record` (`record_batch`), the batch is recorded by
    /// its node id and first sequence number, and one recorded before counts as written up to
    /// the last it recorded; then per user, this node's lease pays first
    /// (`consumed = LEAST(amount, total)`), `token_balance -= total`, `reserved -= consumed`; per
    /// key the same for credit, tokens and successful calls (`consume_lease`), its counters grow
    /// by all of it; a consume row per positive charge, a request id already in the ledger
    /// getting `#seq`. Returns the sequence number up to which the batch is written.
    pub fn write_debits(&mut self, node: NodeId, batch: &[Debit], record: bool) -> Result<u64, Unavailable> {
        self.round_trip(node)?;
        let first = batch.first().map_or(0, |debit| debit.seq);
        let last = batch.last().map_or(0, |debit| debit.seq);
        // Written again: whatever the outcome, the gateway hears of this one.
        self.in_doubt.remove(&(node, first));
        if record {
            if let Some(written) = self.batches.get(&(node, first)) {
                return Ok(*written);
            }
            self.batches.insert((node, first), last);
        }
        let times = if self.faults.apply_batch_twice { 2 } else { 1 };
        let mut consumed = BTreeMap::new();
        for _ in 0..times {
            self.apply_batch(node, batch, &mut consumed);
        }
        if self.faults.lost_commit_acks && self.rng.chance(10) {
            self.in_doubt.insert((node, first), InDoubt { debits: batch.len(), consumed });
            return Err(Unavailable);
        }
        Ok(last)
    }

    /// What batches in doubt consumed of `node`'s lease of `lease` (its book does not know yet).
    pub fn in_doubt_consumed(&self, node: NodeId, lease: Lease) -> [i64; 3] {
        let mine = self.in_doubt.iter().filter(|((n, _), _)| *n == node);
        let consumed = mine.filter_map(|(_, batch)| batch.consumed.get(&LeaseKey::from(lease)));
        consumed.fold([0; 3], |sum, c| std::array::from_fn(|i| sum[i] + c[i]))
    }

    /// A gateway with these node ids is gone: its batches in doubt were applied (they are not
    /// lost with its queue). How many settlements they hold.
    pub fn resolve_in_doubt(&mut self, nodes: &[NodeId]) -> usize {
        let gone: Vec<(NodeId, u64)> = self.in_doubt.keys().filter(|(n, _)| nodes.contains(n)).copied().collect();
        gone.iter().filter_map(|key| self.in_doubt.remove(key)).map(|batch| batch.debits).sum()
    }

    /// Settlements in batches in doubt (applied, and still queued).
    pub fn in_doubt_debits(&self) -> usize {
        self.in_doubt.values().map(|batch| batch.debits).sum()
    }

    /// Takes `total` out of `node`'s lease of `lease`, as far as it holds: what it consumed.
    fn consume(&mut self, node: NodeId, lease: Lease, total: [i64; 3]) -> [i64; 3] {
        match self.leases.iter_mut().find(|l| l.node == node && l.of() == lease) {
            Some(lease) => {
                let consumed = std::array::from_fn(|i| lease.held[i].min(total[i]));
                lease.held.iter_mut().zip(consumed).for_each(|(held, consumed)| *held -= consumed);
                consumed
            }
            None => [0; 3],
        }
    }

    fn apply_batch(&mut self, node: NodeId, batch: &[Debit], consumed_by: &mut BTreeMap<LeaseKey, [i64; 3]>) {
        let mut totals: BTreeMap<UserId, i64> = BTreeMap::new();
        // Per key: credit, tokens, calls, successes (`batch_totals`).
        let mut key_totals: BTreeMap<KeyId, [i64; 4]> = BTreeMap::new();
        for debit in batch {
            *totals.entry(debit.user_id).or_default() += debit.charge.micros();
            let add = [debit.charge.micros(), debit.tokens, 1, i64::from(debit.success)];
            let total = key_totals.entry(debit.key_id).or_default();
            total.iter_mut().zip(add).for_each(|(total, add)| *total += add);
        }
        for (user, total) in totals {
            let consumed = self.consume(node, Lease::User(user), [total, 0, 0])[0];
            consumed_by.entry(LeaseKey::User(user)).or_default()[0] += consumed;
            let row = self.users.get_mut(&user).expect("user");
            row.token_balance -= total;
            row.reserved -= consumed;
            *self.excess.entry(user).or_default() += total - consumed;
        }
        for (key, [quota, tokens, calls, successes]) in key_totals {
            let counted = [quota, tokens, successes];
            let consumed = self.consume(node, Lease::Key(key), counted);
            let sum = consumed_by.entry(LeaseKey::Key(key)).or_default();
            sum.iter_mut().zip(consumed).for_each(|(sum, consumed)| *sum += consumed);
            // A deleted key's row is gone (and its leases with it): nothing to update.
            let Some(row) = self.keys.get_mut(&key) else { continue };
            row.quota_used += quota.max(0);
            row.tokens_used += tokens.max(0);
            row.calls_total += calls;
            row.calls_succeeded += successes;
            row.limits[2] = row.limits[2].map(|left| (left - successes).max(0));
            // Only a limit the key has counts (a lease holds nothing of one it does not have).
            let excess: [i64; 3] =
                std::array::from_fn(|i| if row.limits[i].is_some() { counted[i] - consumed[i] } else { 0 });
            for i in 0..3 {
                row.reserved[i] -= consumed[i];
                row.slack[i] += excess[i];
            }
            let sum = self.key_excess.entry(key).or_default();
            sum.iter_mut().zip(excess).for_each(|(sum, excess)| *sum += excess);
        }
        self.write_meters(node, batch, consumed_by);
        for debit in batch {
            let id = &debit.request_id.to_string();
            self.applied_order.push(id.clone());
            let count = self.applied.entry(id.clone()).or_default();
            *count += 1;
            if *count > 1 {
                self.violations.push(format!("settlement {id} applied {count} times"));
            }
            // What may legitimately exceed a lease: the overage billed, or the whole charge of a
            // request whose gateway's leases lapsed.
            let allowed = if self.lapsed.contains(id) { debit.charge.micros() } else { debit.overage.micros() };
            *self.allowed.entry(debit.user_id).or_default() += allowed;
            // Of a key: credit and tokens billed beyond the hold; a successful call never (the
            // hold took it); but all of a limit no lease bounds for the request (its gateway's
            // lease of the key lapsed, or the limit is newer than its hold).
            let all = [debit.charge.micros(), debit.tokens, i64::from(debit.success)];
            let held = self.held_tokens.get(id).copied().unwrap_or(0);
            let beyond = [debit.overage.micros(), (debit.tokens - held).max(0), 0];
            let lapsed = self.lapsed_keys.contains(id);
            let unbounded = self.unbounded.get(id).copied().unwrap_or_default();
            let key_allowed: [i64; 3] =
                std::array::from_fn(|i| if lapsed || unbounded[i] { all[i] } else { beyond[i] });
            if let Some(row) = self.keys.get(&debit.key_id) {
                let sum = self.key_allowed.entry(debit.key_id).or_default();
                for i in (0..3).filter(|i| row.limits[*i].is_some()) {
                    sum[i] += key_allowed[i];
                }
                self.usage.push(UsageRow {
                    key: debit.key_id,
                    request_id: id.clone(),
                    charge: debit.charge.micros(),
                    tokens: debit.tokens,
                    success: debit.success,
                });
            }
            // Of a window, the same, with its own lapses and limits newer than the hold.
            for meter in &debit.meters {
                let Some(budget) = self.budgets.get(&meter.budget) else { continue };
                let lapsed = self.lapsed_windows.contains(&(id.clone(), meter.budget, meter.start));
                let unbounded = self.unbounded_windows.get(&(id.clone(), meter.budget)).copied().unwrap_or_default();
                let sum = self.window_allowed.entry((meter.budget, meter.start)).or_default();
                for i in (0..3).filter(|i| budget.limits[*i].is_some()) {
                    sum[i] += if lapsed || unbounded[i] { all[i] } else { beyond[i] };
                }
            }
            if debit.charge.is_positive() {
                let taken = self.ledger.iter().any(|row| row.order_no == *id);
                let order_no = if taken { format!("{id}#{}", debit.seq) } else { id.clone() };
                self.ledger.push(LedgerRow { user: debit.user_id, amount: -debit.charge.micros(), order_no });
            }
        }
    }

    /// `write_meters`, within the batch's transaction: per window the batch counts in (`meter_totals`:
    /// each debit's credit, tokens and success, in each of its windows), this node's lease pays
    /// first (`LEAST(held, total)`, `consume_lease`), the window's usage grows by all of it and its
    /// `*_reserved` columns shrink by what the lease paid. A removed budget's window is gone (and
    /// its leases with it): nothing to update.
    fn write_meters(&mut self, node: NodeId, batch: &[Debit], consumed_by: &mut BTreeMap<LeaseKey, [i64; 3]>) {
        let mut totals: BTreeMap<(BudgetId, i64), [i64; 3]> = BTreeMap::new();
        let first_only = self.faults.batch_counts_first_window_only;
        for debit in batch {
            let add = [debit.charge.micros(), debit.tokens, i64::from(debit.success)];
            for meter in debit.meters.iter().take(if first_only { 1 } else { usize::MAX }) {
                let total = totals.entry((meter.budget, meter.start)).or_default();
                total.iter_mut().zip(add).for_each(|(total, add)| *total += add);
            }
        }
        self.window_writes += u64::from(!totals.is_empty());
        for ((budget, start), total) in totals {
            let consumed = self.consume(node, Lease::Meter(budget, start), total);
            let sum = consumed_by.entry(LeaseKey::Meter(budget, start)).or_default();
            sum.iter_mut().zip(consumed).for_each(|(sum, consumed)| *sum += consumed);
            let Some(limits) = self.budgets.get(&budget).map(|b| b.limits) else { continue };
            let Some(row) = self.windows.get_mut(&(budget, start)) else { continue };
            let excess: [i64; 3] =
                std::array::from_fn(|i| if limits[i].is_some() { total[i] - consumed[i] } else { 0 });
            for i in 0..3 {
                row.used[i] += total[i].max(0);
                row.reserved[i] -= consumed[i];
                row.slack[i] += excess[i];
            }
            let sum = self.window_excess.entry((budget, start)).or_default();
            sum.iter_mut().zip(excess).for_each(|(sum, excess)| *sum += excess);
        }
    }

    /// A new budget (`set_budgets`' insert). Returns its id.
    pub fn add_budget(&mut self, owner: Owner, period: i64, limits: [Option<i64>; 3]) -> BudgetId {
        let id = self.next_budget;
        self.next_budget += 1;
        self.budgets.insert(id, BudgetRow { owner, period, limits, version: 0 });
        id
    }

    /// An administrator's change to an owner's budgets (`set_budgets` of db/budgets.rs), one
    /// transaction that leaves the windows' `*_reserved` and the leases alone: new limits for a
    /// budget, or the budget removed (its windows and their leases with it: `ON DELETE
    /// CASCADE`), or a new budget. Whether it was applied (a changed or removed budget was there).
    pub fn change_budget(&mut self, node: NodeId, change: BudgetChange) -> Result<bool, Unavailable> {
        self.round_trip(node)?;
        self.window_writes += 1;
        match change {
            BudgetChange::Limits(id, limits) => {
                let Some(budget) = self.budgets.get_mut(&id) else { return Ok(false) };
                budget.limits = limits;
                budget.version += 1;
                let budget = *budget;
                // What the change leaves above a limit is the administrator's doing, not a lease's.
                for ((_, _), row) in self.windows.range_mut((id, i64::MIN)..=(id, i64::MAX)) {
                    row.slack = row.over(&budget).map(|over| over.unwrap_or(0).max(0));
                }
            }
            BudgetChange::Remove(id) => {
                if self.budgets.remove(&id).is_none() {
                    return Ok(false);
                }
                self.remove_windows(|budget| budget == id);
            }
            BudgetChange::Add(owner, period, limits) => {
                self.add_budget(owner, period, limits);
            }
        }
        Ok(true)
    }

    /// The windows of the budgets `gone` and their leases go (`ON DELETE CASCADE`).
    fn remove_windows(&mut self, gone: impl Fn(BudgetId) -> bool) {
        self.window_writes += 1;
        self.windows.retain(|(budget, _), _| !gone(*budget));
        self.leases.retain(|l| l.meter.is_none_or(|(budget, _)| !gone(budget)));
    }

    /// `apply_once` (db/ledger.rs) for an administrator's credit (`amount > 0`) or debit: a debit
    /// may only take what no lease holds (`token_balance - reserved + amount >= 0`). Whether it
    /// was applied.
    pub fn admin_apply(
        &mut self,
        node: NodeId,
        user: UserId,
        amount: i64,
        order_no: String,
    ) -> Result<bool, Unavailable> {
        self.round_trip(node)?;
        let row = self.users.get_mut(&user).expect("user");
        if amount < 0 && row.token_balance - row.reserved + amount < 0 {
            return Ok(false);
        }
        row.token_balance += amount;
        self.ledger.push(LedgerRow { user, amount, order_no });
        Ok(true)
    }

    /// An administrator's change to a key (`update_key`, `reset_key_usage`, `delete_key` of
    /// db/keys.rs), one transaction that leaves `*_reserved` and the leases alone (a deletion
    /// takes the key's leases with it: `ON DELETE CASCADE`). Whether the key was there.
    pub fn change_key(&mut self, node: NodeId, key: KeyId, change: KeyChange) -> Result<bool, Unavailable> {
        self.round_trip(node)?;
        let usage_len = self.usage.len();
        let Some(row) = self.keys.get_mut(&key) else { return Ok(false) };
        row.version += 1;
        match change {
            KeyChange::Limits(limits) => row.limits = limits,
            KeyChange::Reset => {
                (row.quota_used, row.tokens_used, row.calls_total, row.calls_succeeded) = (0, 0, 0, 0);
                row.usage_from = usage_len;
            }
            KeyChange::Delete => {
                self.keys.remove(&key);
                self.leases.retain(|l| l.key != Some(key));
                // The key's budgets go with it, and their windows and leases.
                let gone: Vec<BudgetId> =
                    self.budgets.iter().filter(|(_, b)| b.owner == Owner::Key(key)).map(|(id, _)| *id).collect();
                self.budgets.retain(|id, _| !gone.contains(id));
                self.remove_windows(|budget| gone.contains(&budget));
                return Ok(true);
            }
        }
        // What the change leaves above a limit is the administrator's doing, not a lease's.
        row.slack = row.over().map(|over| over.unwrap_or(0).max(0));
        Ok(true)
    }
}

/// An administrator's change to a key.
#[derive(Debug, Clone, Copy)]
pub enum KeyChange {
    /// New limits (`quota_limit`, `token_limit`, `remaining_calls`; `None` lifts one).
    Limits([Option<i64>; 3]),
    /// Its usage counters back to zero.
    Reset,
    Delete,
}

/// An administrator's change to budgets (`set_budgets`).
#[derive(Debug, Clone, Copy)]
pub enum BudgetChange {
    /// New limits for a budget (at least one).
    Limits(BudgetId, [Option<i64>; 3]),
    /// The budget removed.
    Remove(BudgetId),
    /// A new budget: whose, its period (ms), its limits.
    Add(Owner, i64, [Option<i64>; 3]),
}

/// The `s` part of `grow_key`'s and `grow_meter`'s statements: each limit's grant is
/// `GREATEST(min, LEAST(want, free / 2))` (0 without the limit, `free` NULL), granted when every
/// limit has at least `min` free.
fn size_grant(free: [Option<i64>; 3], min: [i64; 3], want: [i64; 3]) -> ([i64; 3], bool) {
    let got = std::array::from_fn(|i| free[i].map_or(0, |free| min[i].max(want[i].min(free / 2))));
    (got, (0..3).all(|i| free[i].is_none_or(|free| free >= min[i])))
}
