//! The simulated PostgreSQL database: users (`token_balance`, `reserved`), `credit_leases`, the
//! ledger (`transactions`) and the virtual clock. Each method models one statement or one
//! transaction of `apihub-server/src/db/leases.rs` (named in its doc) and fails, having changed
//! nothing, when the calling gateway cannot reach the database.

use std::collections::{BTreeMap, HashMap, HashSet};

use apihub_core::credit::Debit;
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
}

#[derive(Debug, Clone, Copy, Default)]
pub struct UserRow {
    pub token_balance: i64,
    pub reserved: i64,
}

#[derive(Debug, Clone)]
pub struct LeaseRow {
    pub id: i64,
    pub node: NodeId,
    pub user: UserId,
    pub amount: i64,
    /// On the database's clock.
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub struct LedgerRow {
    pub user: UserId,
    pub amount: i64,
    pub order_no: String,
}

/// What `grow_user`'s statement answers.
pub struct UserGrant {
    pub free: i64,
    pub granted: Option<i64>,
}

/// The statement could not run: the database is down or unreachable from this gateway.
#[derive(Debug)]
pub struct Unavailable;

/// A batch that committed while its gateway was told it failed (its acknowledgement lost).
#[derive(Debug, Default)]
pub struct InDoubt {
    /// How many settlements it applied.
    pub debits: usize,
    /// What it consumed of each user's lease.
    pub consumed: BTreeMap<UserId, i64>,
}

pub struct Db {
    /// The true time (ms): every clock below is an offset from it.
    pub time: i64,
    /// The database's clock is `time + clock_offset`.
    pub clock_offset: i64,
    pub rng: Rng,
    pub users: BTreeMap<UserId, UserRow>,
    pub leases: Vec<LeaseRow>,
    next_lease: i64,
    next_node: NodeId,
    pub ledger: Vec<LedgerRow>,
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
    /// Request ids open or unwritten on a gateway when its leases lapsed.
    pub lapsed: HashSet<String>,
    /// Leases reclaimed since the world last looked: `(node, user)`.
    pub reclaimed: Vec<(NodeId, UserId)>,
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
            leases: Vec::new(),
            next_lease: 1,
            next_node: 0,
            ledger: Vec::new(),
            applied: HashMap::new(),
            outage: false,
            partitioned: HashSet::new(),
            flaky,
            faults,
            excess: HashMap::new(),
            allowed: HashMap::new(),
            lapsed: HashSet::new(),
            reclaimed: Vec::new(),
            violations: Vec::new(),
            batches: HashMap::new(),
            in_doubt: BTreeMap::new(),
        }
    }

    /// The database's clock (`DB_NOW`, `clock_timestamp()`).
    /// A fresh node id (a gateway's start draws a new UUID).
    pub fn new_node(&mut self) -> NodeId {
        self.next_node += 1;
        self.next_node
    }

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

    pub fn add_user(&mut self, user: UserId, balance: i64) {
        self.users.insert(user, UserRow { token_balance: balance, reserved: 0 });
        self.ledger.push(LedgerRow { user, amount: balance, order_no: format!("opening-{user}") });
    }

    pub fn lease(&self, node: NodeId, user: UserId) -> Option<&LeaseRow> {
        self.leases.iter().find(|l| l.node == node && l.user == user)
    }

    /// `grow_user`'s one statement: `u` locks the user and reads what is free; `g` moves
    /// `GREATEST(min, LEAST(want, free / 2))` into `users.reserved` when `free >= min`; `l` adds
    /// it to this node's lease (`ON CONFLICT … DO UPDATE`), stamping `expires_at = DB_NOW + TTL`.
    /// `stamp` is the clock the expiry is measured from (the database's unless a fault says).
    pub fn grant_user(
        &mut self,
        node: NodeId,
        user: UserId,
        min: i64,
        want: i64,
        node_clock: i64,
    ) -> Result<UserGrant, Unavailable> {
        self.round_trip(node)?;
        let stamp = if self.faults.node_clock_decides_expiry { node_clock } else { self.clock() };
        let row = self.users.get_mut(&user).expect("the simulation's users exist");
        let free = row.token_balance - row.reserved;
        if free < min {
            return Ok(UserGrant { free, granted: None });
        }
        let granted = min.max(want.min(free / 2));
        row.reserved += granted;
        match self.leases.iter_mut().find(|l| l.node == node && l.user == user) {
            Some(lease) => {
                lease.amount += granted;
                lease.expires_at = stamp + LEASE_TTL;
            }
            None => {
                let id = self.next_lease;
                self.next_lease += 1;
                self.leases.push(LeaseRow { id, node, user, amount: granted, expires_at: stamp + LEASE_TTL });
            }
        }
        Ok(UserGrant { free, granted: Some(granted) })
    }

    /// `renew`: `UPDATE credit_leases SET expires_at = DB_NOW + TTL WHERE node_id = $1`; the users
    /// whose leases it touched (`RETURNING user_id`: before fix A only their number was used).
    pub fn renew(&mut self, node: NodeId, node_clock: i64) -> Result<Vec<UserId>, Unavailable> {
        self.round_trip(node)?;
        let stamp = if self.faults.node_clock_decides_expiry { node_clock } else { self.clock() };
        let mine = self.leases.iter_mut().filter(|l| l.node == node);
        Ok(mine
            .map(|lease| {
                lease.expires_at = stamp + LEASE_TTL;
                lease.user
            })
            .collect())
    }

    /// `grow_key`'s statement for a key without limits: it grants nothing and records no lease.
    pub fn read_key(&mut self, node: NodeId) -> Result<(), Unavailable> {
        self.round_trip(node)
    }

    /// `shrink` with `free_lease` and `take_from_lease`, one transaction: the node's lease of the
    /// user gives back `max(amount - keep, 0)`, and is deleted when that is all of it.
    pub fn shrink(&mut self, node: NodeId, user: UserId, keep: i64) -> Result<(), Unavailable> {
        self.round_trip(node)?;
        let Some(at) = self.leases.iter().position(|l| l.node == node && l.user == user) else { return Ok(()) };
        let back = (self.leases[at].amount - keep).max(0);
        if back == self.leases[at].amount {
            self.leases.remove(at);
        } else {
            self.leases[at].amount -= back;
        }
        self.users.get_mut(&user).expect("user").reserved -= back;
        Ok(())
    }

    /// `reclaim_expired`: one `SELECT … WHERE expires_at < DB_NOW`, then per lease one
    /// transaction that deletes it if it is still expired and gives its amount back
    /// (`unreserve`). Returns how many were freed.
    pub fn reclaim_expired(&mut self, node: NodeId) -> Result<usize, Unavailable> {
        self.round_trip(node)?;
        let now = self.clock();
        let expired: Vec<i64> = self.leases.iter().filter(|l| l.expires_at < now).map(|l| l.id).collect();
        let mut freed = 0;
        for id in expired {
            self.round_trip(node)?;
            let now = self.clock();
            let Some(at) = self.leases.iter().position(|l| l.id == id && l.expires_at < now) else { continue };
            let lease = self.leases.remove(at);
            self.users.get_mut(&lease.user).expect("user").reserved -= lease.amount;
            self.reclaimed.push((lease.node, lease.user));
            freed += 1;
        }
        Ok(freed)
    }

    /// `write_debits`, one transaction: with `record` (`record_batch`), the batch is recorded by
    /// its node id and first sequence number, and one recorded before counts as written up to
    /// the last it recorded; then per user, this node's lease pays first
    /// (`consumed = LEAST(amount, total)`), `token_balance -= total`, `reserved -= consumed`; a
    /// consume row per positive charge, a request id already in the ledger getting `#seq`.
    /// Returns the sequence number up to which the batch is written.
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

    /// What batches in doubt consumed of `node`'s lease of `user` (its book does not know yet).
    pub fn in_doubt_consumed(&self, node: NodeId, user: UserId) -> i64 {
        let mine = self.in_doubt.iter().filter(|((n, _), _)| *n == node);
        mine.map(|(_, batch)| batch.consumed.get(&user).copied().unwrap_or(0)).sum()
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

    fn apply_batch(&mut self, node: NodeId, batch: &[Debit], consumed_by: &mut BTreeMap<UserId, i64>) {
        let mut totals: BTreeMap<UserId, i64> = BTreeMap::new();
        for debit in batch {
            *totals.entry(debit.user_id).or_default() += debit.charge.micros();
        }
        for (user, total) in totals {
            let consumed = match self.leases.iter_mut().find(|l| l.node == node && l.user == user) {
                Some(lease) => {
                    let consumed = lease.amount.min(total);
                    lease.amount -= consumed;
                    consumed
                }
                None => 0,
            };
            *consumed_by.entry(user).or_default() += consumed;
            let row = self.users.get_mut(&user).expect("user");
            row.token_balance -= total;
            row.reserved -= consumed;
            *self.excess.entry(user).or_default() += total - consumed;
        }
        for debit in batch {
            let id = &debit.request_id;
            let count = self.applied.entry(id.clone()).or_default();
            *count += 1;
            if *count > 1 {
                self.violations.push(format!("settlement {id} applied {count} times"));
            }
            // What may legitimately exceed a lease: the overage billed, or the whole charge of a
            // request whose gateway's leases lapsed.
            let allowed = if self.lapsed.contains(id) { debit.charge.micros() } else { debit.overage.micros() };
            *self.allowed.entry(debit.user_id).or_default() += allowed;
            if debit.charge.is_positive() {
                let taken = self.ledger.iter().any(|row| row.order_no == *id);
                let order_no = if taken { format!("{id}#{}", debit.seq) } else { id.clone() };
                self.ledger.push(LedgerRow { user: debit.user_id, amount: -debit.charge.micros(), order_no });
            }
        }
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
}
