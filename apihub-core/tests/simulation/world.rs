//! The world: the database, the gateways, the random steps and the invariants checked after
//! each.

use std::collections::{HashMap, VecDeque};

use apihub_core::user::UserId;

use crate::db::{Db, Faults, LEASE_TTL, NodeId};
use crate::gateway::{Gateway, IDLE_SWEEP, Protocol, RECLAIM_EVERY, stored};
use crate::rng::Rng;

/// A lease not backed by its gateway's book, for longer than this while the database is up,
/// is stranded credit: a dead gateway's lease expires and is reclaimed well within it.
const STRAND_LIMIT: i64 = LEASE_TTL + 2 * RECLAIM_EVERY + 5 * IDLE_SWEEP;
/// Steps kept for a failure's trace.
const TRACE: usize = 60;

#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub steps: usize,
    pub protocol: Protocol,
    pub faults: Faults,
}

/// A failed run: enough to replay it.
#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    pub step: usize,
    pub message: String,
    pub trace: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed {} failed at step {}: {}", self.seed, self.step, self.message)?;
        writeln!(f, "replay: APIHUB_SIM_SEED={} cargo test -p apihub-core --test simulation", self.seed)?;
        writeln!(f, "last steps:")?;
        self.trace.iter().try_for_each(|line| writeln!(f, "  {line}"))
    }
}

/// What a passing run did: the sweep's totals, and a fingerprint of the end state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub settled: u64,
    pub lost_in_crashes: u64,
    pub ledger_rows: usize,
    pub end_time: i64,
    pub balances: i64,
}

pub struct World {
    pub db: Db,
    /// Gateway slots; `None`: down.
    gates: Vec<Option<Gateway>>,
    protocol: Protocol,
    users: Vec<UserId>,
    next_request: u64,
    settled: u64,
    lost: u64,
    /// Time during which some live gateway could reach the database.
    up_time: i64,
    /// Leases not backed by a book, since when (`up_time`).
    unbacked: HashMap<(NodeId, UserId), i64>,
    trace: VecDeque<String>,
    step: usize,
}

/// Runs one seed: the steps, a check after each, then a drain and the final checks.
pub fn run(seed: u64, config: Config) -> Result<Totals, Failure> {
    let mut world = World::new(seed, config);
    let fail = |world: &World, message: String| Failure {
        seed,
        step: world.step,
        message,
        trace: world.trace.iter().cloned().collect(),
    };
    for step in 1..=config.steps {
        world.step = step;
        world.step_once();
        world.check().map_err(|message| fail(&world, message))?;
    }
    world.step = config.steps + 1;
    world.drain();
    world.check().and_then(|()| world.check_drained()).map_err(|message| fail(&world, message))?;
    Ok(Totals {
        settled: world.settled,
        lost_in_crashes: world.lost,
        ledger_rows: world.db.ledger.len(),
        end_time: world.db.time,
        balances: world.db.users.values().map(|u| u.token_balance).sum(),
    })
}

impl World {
    fn new(seed: u64, config: Config) -> World {
        let mut rng = Rng::new(seed);
        let clock_offset = rng.range(-1_000_000_000, 1_000_000_000);
        let flaky = rng.below(20);
        let mut db = Db::new(rng, clock_offset, flaky, config.faults);
        let users: Vec<UserId> = (1..=db.rng.range(1, 3)).collect();
        for user in &users {
            let balance = db.rng.range(0, 3_000_000);
            db.add_user(*user, balance);
        }
        let slots = db.rng.range(2, 4) as usize;
        let mut world = World {
            db,
            gates: (0..slots).map(|_| None).collect(),
            protocol: config.protocol,
            users,
            next_request: 1,
            settled: 0,
            lost: 0,
            up_time: 0,
            unbacked: HashMap::new(),
            trace: VecDeque::new(),
            step: 0,
        };
        for slot in 0..slots {
            world.start(slot);
        }
        world
    }

    fn log(&mut self, line: String) {
        if self.trace.len() == TRACE {
            self.trace.pop_front();
        }
        self.trace.push_back(format!("#{} t={}ms {line}", self.step, self.db.time));
    }

    fn start(&mut self, slot: usize) {
        let node = self.db.new_node();
        self.gates[slot] = Some(Gateway::start(node, &mut self.db, self.protocol));
        self.log(format!("gateway {slot} starts as node {node}"));
    }

    fn live(&self) -> Vec<usize> {
        (0..self.gates.len()).filter(|slot| self.gates[*slot].is_some()).collect()
    }

    fn pick_live(&mut self) -> Option<usize> {
        let live = self.live();
        (!live.is_empty()).then(|| live[self.db.rng.pick(live.len())])
    }

    /// Time passes; the database counts as up when some live gateway reaches it.
    fn advance(&mut self, dt: i64) {
        let up = self.gates.iter().flatten().any(|g| self.db.reachable(g.node));
        if up {
            self.up_time += dt;
        }
        self.db.time += dt;
    }

    fn step_once(&mut self) {
        let dt = if self.db.rng.chance(3) { self.db.rng.range(2_000, 12_000) } else { self.db.rng.range(0, 400) };
        self.advance(dt);
        self.run_timers();
        let rng = &mut self.db.rng;
        match rng.below(100) {
            0..30 => self.hold(),
            30..52 => self.settle(),
            52..58 => self.release(),
            58..60 => self.admin(true),
            60..62 => self.admin(false),
            62..63 => self.crash(),
            63..64 => self.shut_down(),
            64..69 => self.restart(),
            69..71 => {
                self.db.outage = !self.db.outage;
                self.log(format!("database {}", if self.db.outage { "down" } else { "up" }));
            }
            71..73 => self.partition(),
            _ => {}
        }
    }

    /// The gateways' own tasks: the batch writer (sometimes late) and upkeep's tick.
    fn run_timers(&mut self) {
        for slot in 0..self.gates.len() {
            let Some(gate) = self.gates[slot].as_mut() else { continue };
            let db = &mut self.db;
            let mut did = Vec::new();
            if gate.unwritten() > 0 && gate.mono(db) >= gate.next_write {
                if db.rng.chance(20) {
                    gate.next_write += db.rng.range(1, 2_000);
                    did.push("writer delayed".to_string());
                } else {
                    let queued = gate.unwritten();
                    match gate.writer_turn(db) {
                        Ok(()) => did.push(format!("wrote {queued}")),
                        Err(_) => did.push(format!("writing {queued} failed")),
                    }
                }
            }
            if gate.tick_due(db) {
                did.push(gate.tick(db));
            }
            did.retain(|line| !line.is_empty());
            if !did.is_empty() {
                let node = gate.node;
                self.log(format!("node {node}: {}", did.join("; ")));
            }
            for (node, user) in std::mem::take(&mut self.db.reclaimed) {
                self.gates.iter().flatten().for_each(|g| g.lease_lapsed(&mut self.db, node, user));
            }
        }
    }

    fn hold(&mut self) {
        let Some(slot) = self.pick_live() else { return };
        let user = self.users[self.db.rng.pick(self.users.len())];
        let scale = [1_000, 50_000, 600_000][self.db.rng.pick(3)];
        let amount = self.db.rng.range(0, scale);
        let request_id = format!("r{}", self.next_request);
        self.next_request += 1;
        let gate = self.gates[slot].as_mut().expect("live");
        let node = gate.node;
        let outcome = gate.reserve(&mut self.db, user, amount, request_id.clone());
        self.log(format!("node {node}: hold {request_id} user {user} {amount}: {outcome:?}"));
    }

    /// A gateway with a request in flight, and which request.
    fn pick_open(&mut self) -> Option<(usize, usize)> {
        let busy: Vec<usize> =
            self.live().into_iter().filter(|s| !self.gates[*s].as_ref().unwrap().open.is_empty()).collect();
        if busy.is_empty() {
            return None;
        }
        let slot = busy[self.db.rng.pick(busy.len())];
        let open = self.gates[slot].as_ref().unwrap().open.len();
        Some((slot, self.db.rng.pick(open)))
    }

    /// A charge for a hold: mostly within it, sometimes above (overage), sometimes nothing.
    fn charge_for(rng: &mut Rng, hold: i64) -> i64 {
        match rng.below(10) {
            0 => 0,
            1 | 2 => hold + rng.range(1, hold.max(1_000)),
            _ => rng.range(0, hold),
        }
    }

    fn settle(&mut self) {
        let Some((slot, at)) = self.pick_open() else { return };
        let gate = self.gates[slot].as_mut().expect("live");
        let request = gate.open[at].clone();
        let charge = Self::charge_for(&mut self.db.rng, request.amount);
        let debit = gate.settle(at, charge);
        let node = gate.node;
        self.settled += 1;
        self.log(format!(
            "node {node}: settle {} (held {}) charge {} overage {}",
            request.request_id,
            request.amount,
            debit.charge.micros(),
            debit.overage.micros()
        ));
    }

    fn release(&mut self) {
        let Some((slot, at)) = self.pick_open() else { return };
        let gate = self.gates[slot].as_mut().expect("live");
        let request_id = gate.open[at].request_id.clone();
        gate.release(at);
        let node = gate.node;
        self.log(format!("node {node}: release {request_id}"));
    }

    /// An administrator's credit or debit through a gateway; a debit first gives back that
    /// gateway's idle lease of the user (`account_write` → `revoke_user`).
    fn admin(&mut self, credit: bool) {
        let Some(slot) = self.pick_live() else { return };
        let user = self.users[self.db.rng.pick(self.users.len())];
        let amount = self.db.rng.range(1, 1_000_000);
        let order_no = format!("admin-{}", self.next_request);
        self.next_request += 1;
        let gate = self.gates[slot].as_mut().expect("live");
        let node = gate.node;
        let outcome = if credit {
            self.db.admin_apply(node, user, amount, order_no)
        } else {
            gate.revoke_user(&mut self.db, user).and_then(|()| self.db.admin_apply(node, user, -amount, order_no))
        };
        let verb = if credit { "credit" } else { "debit" };
        self.log(format!("node {node}: admin {verb} user {user} {amount}: {outcome:?}"));
    }

    /// A `kill -9`: the book is gone, holds with it; unwritten settlements are lost (never
    /// charged: the customer's favour). The leases stay until they expire and are reclaimed.
    fn crash(&mut self) {
        let Some(slot) = self.pick_live() else { return };
        let gate = self.gates[slot].take().expect("live");
        let lost = self.lost_with(&gate);
        self.log(format!("node {} crashes, losing {lost} unwritten", gate.node));
    }

    /// SIGTERM: in-flight requests end (settled), then `give_back_all`. What it could not write
    /// (the database is away) is lost with the process.
    fn shut_down(&mut self) {
        let Some(slot) = self.pick_live() else { return };
        let mut gate = self.gates[slot].take().expect("live");
        while !gate.open.is_empty() {
            let charge = Self::charge_for(&mut self.db.rng, gate.open[0].amount);
            gate.settle(0, charge);
            self.settled += 1;
        }
        let outcome = gate.give_back_all(&mut self.db);
        let lost = self.lost_with(&gate);
        self.log(format!("node {} shuts down: {outcome:?}, {lost} unwritten lost", gate.node));
    }

    /// A gateway that ends loses its queue but for batches in doubt, which were applied.
    fn lost_with(&mut self, gate: &Gateway) -> usize {
        let applied = self.db.resolve_in_doubt(&gate.nodes());
        let lost = gate.unwritten() - applied;
        self.lost += lost as u64;
        lost
    }

    fn restart(&mut self) {
        if let Some(slot) = (0..self.gates.len()).find(|s| self.gates[*s].is_none()) {
            self.start(slot);
        }
    }

    fn partition(&mut self) {
        let Some(slot) = self.pick_live() else { return };
        let node = self.gates[slot].as_ref().expect("live").node;
        let cut = !self.db.partitioned.remove(&node);
        if cut {
            self.db.partitioned.insert(node);
        }
        self.log(format!("node {node} {}", if cut { "cut off from the database" } else { "reconnected" }));
    }

    /// The end: the database heals, every gateway ends its requests and shuts down, the leases
    /// left expire and a last gateway reclaims them.
    fn drain(&mut self) {
        self.db.outage = false;
        self.db.partitioned.clear();
        self.db.flaky = 0;
        for slot in self.live() {
            let gate = self.gates[slot].as_mut().expect("live");
            while !gate.open.is_empty() {
                gate.release(0);
            }
        }
        for slot in self.live() {
            self.advance(1_000);
            self.run_timers();
            let mut gate = self.gates[slot].take().expect("live");
            let outcome = gate.give_back_all(&mut self.db);
            self.lost_with(&gate);
            self.log(format!("drain: node {} shuts down: {outcome:?}", gate.node));
        }
        self.advance(LEASE_TTL + 1);
        self.start(0);
        for _ in 0..3 {
            self.advance(RECLAIM_EVERY);
            self.run_timers();
        }
    }

    /// The invariants, after every step.
    fn check(&mut self) -> Result<(), String> {
        if let Some(violation) = self.db.violations.first() {
            return Err(violation.clone());
        }
        for (user, row) in &self.db.users {
            let leased: i64 = self.db.leases.iter().filter(|l| l.user == *user).map(|l| l.amount).sum();
            if row.reserved != leased {
                return Err(format!("user {user}: reserved {} but leases sum to {leased}", row.reserved));
            }
            if let Some(lease) = self.db.leases.iter().find(|l| l.amount < 0) {
                return Err(format!("lease {lease:?} is negative"));
            }
            let ledger: i64 = self.db.ledger.iter().filter(|r| r.user == *user).map(|r| r.amount).sum();
            if ledger != row.token_balance {
                return Err(format!("user {user}: balance {} but the ledger sums to {ledger}", row.token_balance));
            }
            // Leases never exceed the balance, but by what was charged beyond them, and that
            // only as the README allows (billed overage; requests open when leases lapsed).
            let allowed = self.db.allowed.get(user).copied().unwrap_or(0);
            let excess = self.db.excess.get(user).copied().unwrap_or(0);
            if excess > allowed {
                return Err(format!("user {user}: {excess} charged beyond leases, only {allowed} allowed"));
            }
            let free = row.token_balance - row.reserved;
            if free < -allowed {
                return Err(format!("user {user}: leases exceed the balance by {}, only {allowed} allowed", -free));
            }
        }
        // A gateway's book counts exactly the credit its lease holds in the database, and no
        // negative hold, while it trusts its leases (more would be spent twice; less, stranded).
        for gate in self.gates.iter().flatten().filter(|g| g.valid(&self.db)) {
            for user in gate.book.entries().0 {
                let funds = gate.book.funds(user).expect("in the book");
                let stored = stored(&gate.book, user).expect("in the book");
                // A batch in doubt consumed the lease, and the book does not know yet.
                let lease = self.db.lease(gate.node, user).map_or(0, |l| l.amount);
                let stored = stored - self.db.in_doubt_consumed(gate.node, user);
                if stored != lease {
                    return Err(format!("node {}: book leases {stored} of user {user}, database {lease}", gate.node));
                }
                if funds.reserved.is_negative() {
                    return Err(format!("node {}: user {user} holds {} (negative)", gate.node, funds.reserved));
                }
            }
        }
        // Every settlement is applied once, or waits in a live gateway's queue (but for batches
        // in doubt, applied and queued), or was lost in a crash: none lost otherwise, none
        // applied twice.
        let queued = self.gates.iter().flatten().map(Gateway::unwritten).sum::<usize>() - self.db.in_doubt_debits();
        let applied = self.db.applied.len() as u64;
        if applied + queued as u64 + self.lost != self.settled {
            return Err(format!(
                "{} settled but {applied} applied + {queued} queued + {} lost in crashes",
                self.settled, self.lost
            ));
        }
        self.check_stranded()
    }

    /// No credit stranded: a lease that its gateway's book does not use (a dead gateway's, or one
    /// the book forgot) is gone within `STRAND_LIMIT` of database time.
    fn check_stranded(&mut self) -> Result<(), String> {
        let mut unbacked = HashMap::new();
        for lease in &self.db.leases {
            let gate = self.gates.iter().flatten().find(|g| g.node == lease.node);
            let backed = gate.and_then(|g| stored(&g.book, lease.user));
            if lease.amount > backed.unwrap_or(0) {
                let key = (lease.node, lease.user);
                let since = self.unbacked.get(&key).copied().unwrap_or(self.up_time);
                if self.up_time - since > STRAND_LIMIT {
                    return Err(format!(
                        "lease {lease:?} unused by its gateway for {} ms of database time (backed {backed:?})",
                        self.up_time - since
                    ));
                }
                unbacked.insert(key, since);
            }
        }
        self.unbacked = unbacked;
        Ok(())
    }

    /// After the drain: nothing leased, every settlement applied or lost in a crash.
    fn check_drained(&self) -> Result<(), String> {
        if let Some(lease) = self.db.leases.first() {
            return Err(format!("after the drain, lease {lease:?} is left"));
        }
        if let Some((user, row)) = self.db.users.iter().find(|(_, row)| row.reserved != 0) {
            return Err(format!("after the drain, user {user} has {} reserved", row.reserved));
        }
        Ok(())
    }
}
