//! The world: the database, the gateways, the random steps and the invariants checked after
//! each.

use std::collections::{BTreeMap, HashMap, VecDeque};

use apihub_core::budget::BudgetId;
use apihub_core::credit::{Lease, MeterId};
use apihub_core::policy::KeyId;
use apihub_core::user::UserId;

use crate::db::{BudgetChange, Db, Faults, KeyChange, LEASE_TTL, LeaseKey, NodeId, Owner};
use crate::gateway::{Gateway, HEARTBEAT, IDLE_SWEEP, Protocol, RECLAIM_EVERY, key_stored, stored};
use crate::rng::Rng;

/// A lease not backed by its gateway's book, for longer than this while the database is up,
/// is stranded credit: a dead gateway's lease expires and is reclaimed well within it. (The
/// reclaim after expiry, or a stray's renewal before its give-back failed, may come a step's
/// jump of the clock late: 12 s. With budget windows a tick makes more round trips, so a flaky
/// one that pushes a reclaim to the next period is likelier: seeds 319 and 805 of the sweep.)
const STRAND_LIMIT: i64 = CHANGE_LIMIT + 12_000;
/// A gateway that heard of an administrator's change to a key or a budget holds with the old
/// limits no longer than this after the change (its revocation, or failing that its lease's
/// expiry, a renewal's give-back of the stray or an idle give-back, ends them).
const CHANGE_LIMIT: i64 = LEASE_TTL + 2 * RECLAIM_EVERY + 5 * IDLE_SWEEP;
/// An idle lease (nothing open or unwritten on it) is given back at the second idle sweep after
/// it idles (a step may jump 12 s at once), or when that fails, expires within `CHANGE_LIMIT` of
/// its last renewal, a heartbeat later at most.
const IDLE_LIMIT: i64 = CHANGE_LIMIT + 2 * 12_000 + HEARTBEAT;
/// Steps kept for a failure's trace.
const TRACE: usize = 60;
/// A key's limits, in the order of its leases and `*_reserved` columns.
const LIMITS: [&str; 3] = ["credit", "tokens", "calls"];
/// The periods of budgets' windows (virtual ms: a run lasts minutes, so windows roll over).
const PERIODS: [i64; 3] = [15_000, 40_000, 90_000];

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
    /// Budget invalidations published and not yet heard: `(slot, the node id its process
    /// started as)`.
    budget_invalidations: Vec<(usize, NodeId)>,
    /// When (`up_time`) an administrator last changed each budget.
    budget_changed_at: HashMap<BudgetId, i64>,
    /// Whether this seed's users and keys get budgets.
    budgeted: bool,
    /// The windows each request's hold counted in (as the gateway passed them to the book).
    request_meters: HashMap<String, Vec<MeterId>>,
    /// Settlements applied that the world looked at, and what they counted in each window.
    applied_seen: usize,
    window_counted: BTreeMap<(BudgetId, i64), [i64; 3]>,
    /// Ledger rows summed, and their sum per user (the ledger only grows).
    ledger_seen: usize,
    ledger_sums: BTreeMap<UserId, i64>,
    /// `Db::window_writes` at the last check of the windows (unchanged since: not checked again).
    windows_checked: u64,
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
            budget_invalidations: Vec::new(),
            budget_changed_at: HashMap::new(),
            budgeted: false,
            request_meters: HashMap::new(),
            applied_seen: 0,
            window_counted: BTreeMap::new(),
            windows_checked: u64::MAX,
            ledger_seen: 0,
            ledger_sums: BTreeMap::new(),
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
        // Budgets in half of the seeds (the sweep's time): of some users, and (`new_key`) of some
        // keys.
        world.budgeted = world.db.rng.chance(50);
        for user in users {
            if world.budgeted && world.db.rng.chance(50) {
                world.new_budget(Owner::User(user));
            }
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
        if self.budgeted && self.db.rng.chance(40) {
            self.new_budget(Owner::Key(key));
        }
    }

    /// Random limits for a budget: as a key's, but at least one (`budget::validate`).
    fn budget_limits(rng: &mut Rng) -> [Option<i64>; 3] {
        loop {
            let limits = Self::limits(rng);
            if limits.iter().any(Option::is_some) {
                return limits;
            }
        }
    }

    /// A budget for `owner`, with a random period and limits.
    fn new_budget(&mut self, owner: Owner) {
        let period = PERIODS[self.db.rng.pick(PERIODS.len())];
        let limits = Self::budget_limits(&mut self.db.rng);
        let id = self.db.add_budget(owner, period, limits);
        self.log(format!("{owner:?} gets budget {id}: every {period} ms {limits:?}"));
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
            76..78 if self.budgeted => self.change_budget(),
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
            self.tell_reclaimed();
        }
        self.hear_invalidations(false);
    }

    /// Every gateway learns of the leases the last statements reclaimed (`lease_lapsed`).
    fn tell_reclaimed(&mut self) {
        for (node, lease) in std::mem::take(&mut self.db.reclaimed) {
            self.gates.iter().flatten().for_each(|g| g.lease_lapsed(&mut self.db, node, lease));
        }
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
            self.tell_reclaimed();
            false
        });
        self.invalidations.extend(pending);
        let mut pending = std::mem::take(&mut self.budget_invalidations);
        pending.retain(|&(slot, node)| {
            if !all && self.db.rng.chance(50) {
                return true;
            }
            let Some(gate) = self.gates[slot].as_mut().filter(|g| g.started_as == node) else { return false };
            let outcome = gate.revoke_budgets(&mut self.db);
            let node = gate.node;
            self.log(format!("node {node}: revoke budgets: {outcome:?}"));
            self.tell_reclaimed();
            false
        });
        self.budget_invalidations.extend(pending);
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
            if heard && since > CHANGE_LIMIT {
                let what = format!("hold {request_id} with key {key}'s limits");
                self.db
                    .violations
                    .push(format!("node {node}: {what} from before an administrator's change {since} ms ago"));
            }
        }
        if outcome.is_ok() {
            let meters = gate.open.last().expect("just held").meters.clone();
            let process = gate.started_as;
            let heard = !self.budget_invalidations.iter().any(|&(s, p)| (s, p) == (slot, process));
            for meter in &meters {
                let Some(budget) = self.db.budgets.get(&meter.budget) else { continue };
                // A window of another user's or key's budget: the book counted the hold wrongly.
                if budget.owner != Owner::User(user) && budget.owner != Owner::Key(key) {
                    let owner = budget.owner;
                    self.db
                        .violations
                        .push(format!("hold {request_id} counted in budget {} of {owner:?}", meter.budget));
                }
                if gate.meter_version(*meter) == Some(budget.version) {
                    continue;
                }
                // Held with the window's limits from before an administrator changed the budget:
                // no lease bounds it by a limit the budget has and the book not.
                let book = gate.book.meter(*meter).map_or([None; 3], |(stored, _)| stored.limits);
                let unbounded: [bool; 3] = std::array::from_fn(|i| budget.limits[i].is_some() && book[i].is_none());
                let entry = self.db.unbounded_windows.entry((request_id.clone(), meter.budget)).or_default();
                (0..3).for_each(|i| entry[i] |= unbounded[i]);
                // Once the gateway heard of the change, it forgets the windows (`revoke_budgets`).
                let since = self.up_time - self.budget_changed_at.get(&meter.budget).copied().unwrap_or(0);
                if heard && since > CHANGE_LIMIT {
                    let what = format!("hold {request_id} in budget {}'s window {}", meter.budget, meter.start);
                    let when = format!("from before an administrator's change {since} ms ago");
                    self.db.violations.push(format!("node {node}: {what} with its limits {when}"));
                }
            }
            self.request_meters.insert(request_id.clone(), meters);
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
        if debit.meters != request.meters {
            let id = &request.request_id;
            let held = &request.meters;
            self.db.violations.push(format!("{id} held in windows {held:?} but settles in {:?}", debit.meters));
        }
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

    /// An administrator changes a budget through a gateway (`set_budgets`: new limits, the budget
    /// removed, or one added to a user or key without one); every live gateway hears of it
    /// (`Invalidation::Budgets`) and revokes its budgets, each at this step or a later one.
    fn change_budget(&mut self) {
        let Some(slot) = self.pick_live() else { return };
        let user = self.users[self.db.rng.pick(self.users.len())];
        let owner = if self.db.rng.chance(50) { Owner::User(user) } else { Owner::Key(self.keys[&user]) };
        let budget = self.db.budgets.iter().find(|(_, b)| b.owner == owner).map(|(id, b)| (*id, *b));
        let change = match budget {
            None => {
                let period = PERIODS[self.db.rng.pick(PERIODS.len())];
                BudgetChange::Add(owner, period, Self::budget_limits(&mut self.db.rng))
            }
            Some((id, _)) if self.db.rng.chance(15) => BudgetChange::Remove(id),
            Some((id, _)) => BudgetChange::Limits(id, Self::budget_limits(&mut self.db.rng)),
        };
        let node = self.gates[slot].as_ref().expect("live").node;
        let outcome = self.db.change_budget(node, change);
        self.log(format!("node {node}: admin changes budgets of {owner:?}: {change:?}: {outcome:?}"));
        if outcome.is_err() {
            return;
        }
        if let (BudgetChange::Limits(id, limits), Some((_, before))) = (change, budget) {
            self.budget_changed_at.insert(id, self.up_time);
            // What is in flight was held under the old limits: no lease bounds it by a new one.
            let added: [bool; 3] = std::array::from_fn(|i| before.limits[i].is_none() && limits[i].is_some());
            for gate in self.gates.iter().flatten() {
                for request_id in gate.in_flight_in(id) {
                    let unbounded = self.db.unbounded_windows.entry((request_id, id)).or_default();
                    (0..3).for_each(|i| unbounded[i] |= added[i]);
                }
            }
        }
        for slot in self.live() {
            let process = self.gates[slot].as_ref().expect("live").started_as;
            self.budget_invalidations.push((slot, process));
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
        for row in &self.db.ledger[self.ledger_seen..] {
            *self.ledger_sums.entry(row.user).or_default() += row.amount;
        }
        self.ledger_seen = self.db.ledger.len();
        let negative = self.db.leases.iter().find(|l| l.held.iter().any(|held| *held < 0));
        for (user, row) in &self.db.users {
            let leased: i64 = self.db.leases.iter().filter(|l| l.of() == Lease::User(*user)).map(|l| l.held[0]).sum();
            if row.reserved != leased {
                return Err(format!("user {user}: reserved {} but leases sum to {leased}", row.reserved));
            }
            if let Some(lease) = negative {
                return Err(format!("lease {lease:?} is negative"));
            }
            let ledger = self.ledger_sums.get(user).copied().unwrap_or(0);
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
            // Of a budget window the same: never more than the lease (what is left for new holds
            // plus what the window's open holds and unwritten debits take).
            for id in gate.book.meter_ids() {
                if !self.db.windows.contains_key(&(id.budget, id.start)) {
                    continue;
                }
                let (stored, held) = gate.book.meter(id).expect("in the book");
                let taken = gate.book.meter_commitments(id).expect("in the book");
                let lease = self.db.held(gate.node, Lease::Meter(id.budget, id.start));
                let in_doubt = self.db.in_doubt_consumed(gate.node, Lease::Meter(id.budget, id.start));
                for i in 0..3 {
                    let Some(limit) = stored.limits[i] else { continue };
                    let stored = limit - stored.used[i] - held[i] + taken[i] - in_doubt[i];
                    if stored > lease[i] {
                        let (what, lease) = (LIMITS[i], lease[i]);
                        let window = format!("budget {}'s window {}", id.budget, id.start);
                        return Err(format!(
                            "node {}: book leases {stored} {what} of {window}, database {lease}",
                            gate.node
                        ));
                    }
                }
            }
        }
        self.check_keys()?;
        self.check_windows()?;
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

    /// The budget windows: `*_reserved` is the sum of the window's leases; used + reserved never
    /// exceeds a limit but by what an administrator's change left above it and what batches
    /// counted beyond leases, which is only what the README allows (as of a key: credit and
    /// tokens billed beyond a hold; all of a request open or unwritten when its gateway's lease
    /// of the window lapsed, or whose limit is newer than its hold); the usage is what the
    /// settlements applied counted in the window, each once, in the windows its hold took.
    fn check_windows(&mut self) -> Result<(), String> {
        for id in &self.db.applied_order[self.applied_seen..] {
            let (_, charge, tokens, success) = self.settlements[id];
            for meter in self.request_meters.get(id).into_iter().flatten() {
                let counted = self.window_counted.entry((meter.budget, meter.start)).or_default();
                let add = [charge, tokens, i64::from(success)];
                counted.iter_mut().zip(add).for_each(|(sum, add)| *sum += add);
            }
        }
        self.applied_seen = self.db.applied_order.len();
        if self.db.window_writes == self.windows_checked && self.db.violations.is_empty() {
            return Ok(());
        }
        self.windows_checked = self.db.window_writes;
        let mut leases: BTreeMap<(BudgetId, i64), [i64; 3]> = BTreeMap::new();
        for lease in &self.db.leases {
            if let Some(window) = lease.meter {
                let sum = leases.entry(window).or_default();
                sum.iter_mut().zip(lease.held).for_each(|(sum, held)| *sum += held);
            }
        }
        for (&(budget_id, start), row) in &self.db.windows {
            let window = || format!("budget {budget_id}'s window {start}");
            let leased = leases.get(&(budget_id, start)).copied().unwrap_or_default();
            if row.reserved != leased {
                return Err(format!("{}: reserved {:?} but leases sum to {leased:?}", window(), row.reserved));
            }
            let budget = &self.db.budgets[&budget_id];
            for (i, over) in row.over(budget).into_iter().enumerate() {
                if let Some(over) = over
                    && over > row.slack[i]
                {
                    let (what, slack) = (LIMITS[i], row.slack[i]);
                    let window = window();
                    return Err(format!(
                        "{window}: {what} used and leased exceed its limit by {over}, only {slack} allowed"
                    ));
                }
            }
            let counted = self.window_counted.get(&(budget_id, start)).copied().unwrap_or_default();
            if row.used != counted {
                return Err(format!("{}: used {:?} but its settlements count {counted:?}", window(), row.used));
            }
        }
        for (&(budget_id, start), excess) in &self.db.window_excess {
            let allowed = self.db.window_allowed.get(&(budget_id, start)).copied().unwrap_or_default();
            if let Some(i) = (0..3).find(|i| excess[*i] > allowed[*i]) {
                let what = LIMITS[i];
                return Err(format!(
                    "budget {budget_id}'s window {start}: {} {what} counted beyond leases, only {} allowed",
                    excess[i], allowed[i]
                ));
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
                Lease::Meter(budget, start) => {
                    // The window's id (its end follows from the budget's period; a removed budget's
                    // windows have no leases).
                    let period = self.db.budgets.get(&budget).map_or(0, |b| b.period);
                    let id = MeterId { budget, start, end: start + period };
                    match g.book.meter_commitments(id) {
                        Some([0, 0, 0]) => ([0; 3], true),
                        // As a key's: what the lease kept for holds open when the window last left
                        // the book is counted as taken again when it comes back.
                        Some(_) => (lease.held, false),
                        None => (g.book.taken(lease.of()), false),
                    }
                }
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

    /// After the drain: nothing leased (of a user, a key or a budget window), every settlement
    /// applied or lost in a crash.
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
        if let Some(((budget, start), row)) = self.db.windows.iter().find(|(_, row)| row.reserved != [0; 3]) {
            return Err(format!("after the drain, budget {budget}'s window {start} has {:?} reserved", row.reserved));
        }
        Ok(())
    }
}
