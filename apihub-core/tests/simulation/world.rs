//! The world: the database, the gateways, the random steps and the invariants checked after
//! each.

use std::collections::{BTreeMap, HashMap, VecDeque};

use apihub_core::credit::Lease;
use apihub_core::policy::KeyId;
use apihub_core::user::UserId;

use crate::db::{Db, Faults, KeyChange, LEASE_TTL, LeaseKey, NodeId};
use crate::gateway::{Gateway, HEARTBEAT, IDLE_SWEEP, Protocol, RECLAIM_EVERY, key_stored, stored};
use crate::rng::Rng;

/// A lease not backed by its gateway's book, for longer than this while the database is up,
/// is stranded credit: a dead gateway's lease expires and is reclaimed well within it.
const STRAND_LIMIT: i64 = LEASE_TTL + 2 * RECLAIM_EVERY + 5 * IDLE_SWEEP;
/// An idle lease (nothing open or unwritten on it) is given back at the second idle sweep after
/// it idles (a step may jump 12 s at once), or when that fails, expires within `STRAND_LIMIT` of
/// its last renewal, a heartbeat later at most.
const IDLE_LIMIT: i64 = STRAND_LIMIT + 2 * 12_000 + HEARTBEAT;
/// Steps kept for a failure's trace.
const TRACE: usize = 60;
/// A key's limits, in the order of its leases and `*_reserved` columns.
const LIMITS: [&str; 3] = ["credit", "tokens", "calls"];

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
    /// The key each user's requests use now (a deleted key is replaced by a new one).
    keys: BTreeMap<UserId, KeyId>,
    next_key: KeyId,
    /// Key invalidations published and not yet heard by a gateway: `(slot, the node id its
    /// process started as, key)`.
    invalidations: Vec<(usize, NodeId, KeyId)>,
    /// When (`up_time`) an administrator last changed each key.
    changed_at: HashMap<KeyId, i64>,
    /// What each settlement billed its key: key, credit, tokens, success.
    settlements: HashMap<String, (KeyId, i64, i64, bool)>,
    /// Usage-log rows looked at, and per key what they billed since its last reset (credit,
    /// tokens, calls, successes), with the reset's position in the log.
    usage_seen: usize,
    billed: HashMap<KeyId, (usize, [i64; 4])>,
    next_request: u64,
    settled: u64,
    lost: u64,
    /// Time during which some live gateway could reach the database.
    up_time: i64,
    /// Leases not backed by a book (and whether because they are idle), since when (`up_time`).
    unbacked: BTreeMap<(NodeId, LeaseKey, bool), i64>,
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
            users: users.clone(),
            keys: BTreeMap::new(),
            next_key: 1_001,
            invalidations: Vec::new(),
            changed_at: HashMap::new(),
            settlements: HashMap::new(),
            usage_seen: 0,
            billed: HashMap::new(),
            next_request: 1,
            settled: 0,
            lost: 0,
            up_time: 0,
            unbacked: BTreeMap::new(),
            trace: VecDeque::new(),
            step: 0,
        };
        for user in users {
            world.new_key(user);
        }
        for slot in 0..slots {
            world.start(slot);
        }
        world
    }

    /// Random limits for a key: each of a credit limit, a token limit and remaining calls,
    /// independently, about half the time (so some keys are unlimited, some have several).
    fn limits(rng: &mut Rng) -> [Option<i64>; 3] {
        let quota = rng.chance(45).then(|| rng.range(0, 2_000_000));
        let tokens = rng.chance(45).then(|| rng.range(0, 20_000));
        let calls = rng.chance(45).then(|| rng.range(0, 40));
        [quota, tokens, calls]
    }

    /// A new key for `user`, which its requests use from now on.
    fn new_key(&mut self, user: UserId) {
        let key = self.next_key;
        self.next_key += 1;
        let limits = Self::limits(&mut self.db.rng);
        self.db.add_key(key, user, limits);
        self.keys.insert(user, key);
        self.log(format!("user {user} gets key {key} with limits {limits:?}"));
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
            73..76 => self.change_key(),
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
            for (node, lease) in std::mem::take(&mut self.db.reclaimed) {
                self.gates.iter().flatten().for_each(|g| g.lease_lapsed(&mut self.db, node, lease));
            }
        }
        self.hear_invalidations(false);
    }

    /// Gateways hear the key invalidations published (through Redis, within milliseconds: here
    /// each one at this step or a later one, or all of them with `all`), and revoke the key.
    fn hear_invalidations(&mut self, all: bool) {
        let mut pending = std::mem::take(&mut self.invalidations);
        pending.retain(|&(slot, node, key)| {
            if !all && self.db.rng.chance(50) {
                return true;
            }
            // A gateway that ended (or whose slot restarted) heard nothing: its book is gone.
            let Some(gate) = self.gates[slot].as_mut().filter(|g| g.started_as == node) else { return false };
            let outcome = gate.revoke_key(&mut self.db, key);
            let node = gate.node;
            self.log(format!("node {node}: revoke key {key}: {outcome:?}"));
            for (node, lease) in std::mem::take(&mut self.db.reclaimed) {
                self.gates.iter().flatten().for_each(|g| g.lease_lapsed(&mut self.db, node, lease));
            }
            false
        });
        self.invalidations.extend(pending);
    }

    fn hold(&mut self) {
        let Some(slot) = self.pick_live() else { return };
        let user = self.users[self.db.rng.pick(self.users.len())];
        let key = self.keys[&user];
        let scale = [1_000, 50_000, 600_000][self.db.rng.pick(3)];
        let amount = self.db.rng.range(0, scale);
        let token_scale = [100, 2_000][self.db.rng.pick(2)];
        let tokens = self.db.rng.range(0, token_scale);
        let request_id = format!("r{}", self.next_request);
        self.next_request += 1;
        let gate = self.gates[slot].as_mut().expect("live");
        let node = gate.node;
        let outcome = gate.reserve(&mut self.db, user, key, [amount, tokens], request_id.clone());
        // Held with the key's limits as they were before an administrator changed them (this
        // gateway has not heard yet): no lease bounds it by a limit the key has and the book not.
        let (version, limits) = self.db.keys.get(&key).map_or((None, [None; 3]), |row| (Some(row.version), row.limits));
        if outcome.is_ok() && gate.key_version(key) != version {
            let book = gate
                .book
                .key_counters(key)
                .map(|c| [c.quota_limit.map(|q| q.micros()), c.token_limit, c.remaining_calls]);
            let book = book.unwrap_or_default();
            let unbounded: [bool; 3] = std::array::from_fn(|i| limits[i].is_some() && book[i].is_none());
            self.db.unbounded.insert(request_id.clone(), unbounded);
            // Once the gateway heard of the change, it reads the key again (`revoke_key`).
            let process = gate.started_as;
            let heard = !self.invalidations.iter().any(|&(s, p, k)| (s, p, k) == (slot, process, key));
            let since = self.up_time - self.changed_at.get(&key).copied().unwrap_or(0);
            if heard && since > STRAND_LIMIT {
                let what = format!("hold {request_id} with key {key}'s limits");
                self.db
                    .violations
                    .push(format!("node {node}: {what} from before an administrator's change {since} ms ago"));
            }
        }
        self.log(format!("node {node}: hold {request_id} user {user} key {key} {amount} {tokens} tokens: {outcome:?}"));
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
        let request = self.gates[slot].as_ref().expect("live").open[at].clone();
        let debit = self.settle_at(slot, at);
        let node = self.gates[slot].as_ref().expect("live").node;
        self.log(format!(
            "node {node}: settle {} (held {} {} tokens) charge {} overage {} tokens {} success {}",
            request.request_id,
            request.amount,
            request.tokens,
            debit.charge.micros(),
            debit.overage.micros(),
            debit.tokens,
            debit.success,
        ));
    }

    /// Settles request `at` of gateway `slot` with a random charge, tokens (mostly within the
    /// hold, sometimes above) and outcome (mostly a success), and remembers what it billed.
    fn settle_at(&mut self, slot: usize, at: usize) -> apihub_core::credit::Debit {
        let gate = self.gates[slot].as_mut().expect("live");
        let request = gate.open[at].clone();
        let rng = &mut self.db.rng;
        let charge = Self::charge_for(rng, request.amount);
        let tokens = Self::charge_for(rng, request.tokens);
        let success = !rng.chance(10);
        let debit = gate.settle(at, charge, tokens, success);
        self.settled += 1;
        let billed = (request.key, debit.charge.micros(), debit.tokens, debit.success);
        self.settlements.insert(request.request_id, billed);
        debit
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
        while !self.gates[slot].as_ref().expect("live").open.is_empty() {
            self.settle_at(slot, 0);
        }
        let mut gate = self.gates[slot].take().expect("live");
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

    /// An administrator changes a user's key through a gateway (new limits, a limit lifted, its
    /// usage reset, or the key deleted and the user given a new one); every live gateway hears of
    /// it (`Invalidation::Key`) and revokes the key, each at this step or a later one.
    fn change_key(&mut self) {
        let Some(slot) = self.pick_live() else { return };
        let user = self.users[self.db.rng.pick(self.users.len())];
        let key = self.keys[&user];
        let change = match self.db.rng.below(10) {
            0..4 => KeyChange::Limits(Self::limits(&mut self.db.rng)),
            4..6 => {
                let mut limits = self.db.keys[&key].limits;
                limits[self.db.rng.pick(3)] = None;
                KeyChange::Limits(limits)
            }
            6..9 => KeyChange::Reset,
            _ => KeyChange::Delete,
        };
        let node = self.gates[slot].as_ref().expect("live").node;
        let before = self.db.keys[&key].limits;
        let outcome = self.db.change_key(node, key, change);
        self.log(format!("node {node}: admin changes key {key}: {change:?}: {outcome:?}"));
        if outcome.is_err() {
            return;
        }
        if matches!(change, KeyChange::Delete) {
            self.new_key(user);
        }
        self.changed_at.insert(key, self.up_time);
        // What is in flight was held under the old limits: no lease bounds it by a new one.
        if let KeyChange::Limits(limits) = change {
            let added: [bool; 3] = std::array::from_fn(|i| before[i].is_none() && limits[i].is_some());
            for request_id in self.gates.iter().flatten().flat_map(|gate| gate.in_flight(key)) {
                let unbounded = self.db.unbounded.entry(request_id).or_default();
                (0..3).for_each(|i| unbounded[i] |= added[i]);
            }
        }
        for slot in self.live() {
            let process = self.gates[slot].as_ref().expect("live").started_as;
            self.invalidations.push((slot, process, key));
        }
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
        self.hear_invalidations(true);
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
            let leased: i64 = self.db.leases.iter().filter(|l| l.of() == Lease::User(*user)).map(|l| l.held[0]).sum();
            if row.reserved != leased {
                return Err(format!("user {user}: reserved {} but leases sum to {leased}", row.reserved));
            }
            if let Some(lease) = self.db.leases.iter().find(|l| l.held.iter().any(|held| *held < 0)) {
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
            let (users, keys) = gate.book.entries();
            for user in users {
                let funds = gate.book.funds(user).expect("in the book");
                let stored = stored(&gate.book, user).expect("in the book");
                // A batch in doubt consumed the lease, and the book does not know yet.
                let lease = self.db.held(gate.node, Lease::User(user))[0];
                let stored = stored - self.db.in_doubt_consumed(gate.node, Lease::User(user))[0];
                if stored != lease {
                    return Err(format!("node {}: book leases {stored} of user {user}, database {lease}", gate.node));
                }
                if funds.reserved.is_negative() {
                    return Err(format!("node {}: user {user} holds {} (negative)", gate.node, funds.reserved));
                }
            }
            // Of a key, the book never counts more than the lease holds (it may count less: what
            // the lease kept for holds open when the key left the book is not counted again when
            // it comes back, and is given back when the key is idle).
            for key in keys.into_iter().filter(|key| self.db.keys.contains_key(key)) {
                let stored = key_stored(&gate.book, key).expect("in the book");
                let lease = self.db.held(gate.node, Lease::Key(key));
                let in_doubt = self.db.in_doubt_consumed(gate.node, Lease::Key(key));
                for i in 0..3 {
                    // A batch in doubt consumed the lease, and the book does not know yet.
                    if let Some(stored) = stored[i].map(|stored| stored - in_doubt[i])
                        && stored > lease[i]
                    {
                        let (what, lease) = (LIMITS[i], lease[i]);
                        return Err(format!(
                            "node {}: book leases {stored} {what} of key {key}, database {lease}",
                            gate.node
                        ));
                    }
                }
            }
        }
        self.check_keys()?;
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

    /// The keys: `*_reserved` is the sum of the key's leases; used + reserved never exceeds a
    /// limit but by what an administrator's change left above it and what batches counted beyond
    /// leases, which is only what the README allows (credit and tokens billed beyond a hold; all
    /// of a request open or unwritten when its gateway's key lease lapsed, or whose limit is newer
    /// than its hold); the usage counters are what the usage log billed the key since its last
    /// reset, each row what the request settled.
    fn check_keys(&mut self) -> Result<(), String> {
        for (key, row) in &self.db.keys {
            let leases = self.db.leases.iter().filter(|l| l.key == Some(*key));
            let leased = leases.fold([0; 3], |sum, l| std::array::from_fn(|i| sum[i] + l.held[i]));
            if row.reserved != leased {
                return Err(format!("key {key}: reserved {:?} but leases sum to {leased:?}", row.reserved));
            }
            for (i, over) in row.over().into_iter().enumerate() {
                if let Some(over) = over
                    && over > row.slack[i]
                {
                    let (what, slack) = (LIMITS[i], row.slack[i]);
                    return Err(format!(
                        "key {key}: {what} used and leased exceed its limit by {over}, only {slack} allowed"
                    ));
                }
            }
        }
        for (key, excess) in &self.db.key_excess {
            let allowed = self.db.key_allowed.get(key).copied().unwrap_or_default();
            if let Some(i) = (0..3).find(|i| excess[*i] > allowed[*i]) {
                let what = LIMITS[i];
                return Err(format!(
                    "key {key}: {} {what} counted beyond leases, only {} allowed",
                    excess[i], allowed[i]
                ));
            }
        }
        for (at, row) in self.db.usage.iter().enumerate().skip(self.usage_seen) {
            let settled = self.settlements.get(&row.request_id).copied();
            if settled != Some((row.key, row.charge, row.tokens, row.success)) {
                return Err(format!("usage row {row:?}, but the request settled {settled:?}"));
            }
            let Some(from) = self.db.keys.get(&row.key).map(|k| k.usage_from) else { continue };
            let billed = self.billed.entry(row.key).or_insert((from, [0; 4]));
            if billed.0 != from {
                *billed = (from, [0; 4]);
            }
            if at < from {
                continue;
            }
            let add = [row.charge, row.tokens, 1, i64::from(row.success)];
            billed.1.iter_mut().zip(add).for_each(|(sum, add)| *sum += add);
        }
        self.usage_seen = self.db.usage.len();
        for (key, row) in &self.db.keys {
            let billed = match self.billed.get(key) {
                Some((from, billed)) if *from == row.usage_from => *billed,
                _ => [0; 4],
            };
            let counters = [row.quota_used, row.tokens_used, row.calls_total, row.calls_succeeded];
            if counters != billed {
                return Err(format!("key {key}: used {counters:?} but the usage log bills {billed:?} since its reset"));
            }
        }
        Ok(())
    }

    /// No credit stranded: a lease that its gateway's book does not use (a dead gateway's, one
    /// the book forgot, or one whose user or key has nothing open or unwritten on its gateway:
    /// idle) is gone within `STRAND_LIMIT` of database time.
    fn check_stranded(&mut self) -> Result<(), String> {
        let mut unbacked = BTreeMap::new();
        for lease in &self.db.leases {
            let gate = self.gates.iter().flatten().find(|g| g.node == lease.node);
            // What the gateway's book counts of the lease, and whether that is nothing because
            // the lease is idle (its user or key in the book, nothing open or unwritten on it).
            let (backed, idle) = gate.map_or(([0; 3], false), |g| match lease.of() {
                Lease::User(user) => match stored(&g.book, user) {
                    Some(_) if g.book.user_commitments(user) == Some(0) => ([0; 3], true),
                    Some(stored) => ([stored, 0, 0], false),
                    None => ([0; 3], false),
                },
                Lease::Key(key) => match g.book.key_commitments(key) {
                    Some([0, 0, 0]) => ([0; 3], true),
                    // A busy key in the book may count less than its lease: what the lease kept
                    // for holds open when the key last left the book (an administrator changed
                    // it), which the key counts as taken again when it comes back. That is
                    // given back when the key is idle (checked here), not before.
                    Some(_) => (lease.held, false),
                    // Left the book: what its holds and debits still take (`return_strays`).
                    None => (g.book.taken(lease.of()), false),
                },
                Lease::Meter(..) => ([0; 3], false),
            });
            if (0..3).any(|i| lease.held[i] > backed[i]) {
                // Becoming idle, or its gateway dying, starts a new count.
                let key = (lease.node, LeaseKey::from(lease.of()), idle);
                let since = self.unbacked.get(&key).copied().unwrap_or(self.up_time);
                let limit = if idle { IDLE_LIMIT } else { STRAND_LIMIT };
                if self.up_time - since > limit {
                    let what = if idle { "idle on" } else { "unused by" };
                    return Err(format!(
                        "lease {lease:?} {what} its gateway for {} ms of database time (backed {backed:?})",
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
        if let Some((key, row)) = self.db.keys.iter().find(|(_, row)| row.reserved != [0; 3]) {
            return Err(format!("after the drain, key {key} has {:?} reserved", row.reserved));
        }
        Ok(())
    }
}
