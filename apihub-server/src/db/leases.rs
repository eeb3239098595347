//! The credit engine on PostgreSQL: credit leases.
//!
//! Several gateways may spend the same users' credit, so none can keep a user's whole balance in
//! memory as the SQLite engine does ([`super::engine`]). Instead each gateway leases a slice of
//! what is free: one conditional `UPDATE` moves credit into `users.reserved` (and, for a key
//! with limits, its remaining credit, tokens and calls into `api_keys.*_reserved`) and records the
//! slice in `credit_leases` under this gateway's node id. The slice is then the user's "balance" in
//! this gateway's [`CreditBook`]: holds, settlements and releases are taken from it in memory, and
//! settlements are written in batches, each consuming the lease it came from. Invariant: leases
//! and holds never exceed a balance, on any number of gateways, because every lease is taken by
//! the same conditional update that refuses what is not free.
//!
//! - **Sizing.** A lease grows by at least what a refused hold lacks and at most half of what is
//!   free (so a second gateway finds credit too), aiming at twice its last growth: a busy user's
//!   lease grows to cover a few hundred milliseconds of traffic, and a user's last credit is leased
//!   exactly, hold by hold.
//! - **Giving back.** A slice nobody used for a second is returned ([`IDLE_SWEEP`]); so is
//!   everything at shutdown. A gateway that cannot renew its leases for [`LEASE_TTL`] (measured with
//!   the database's clock) loses them: any gateway frees expired leases ([`RECLAIM_EVERY`]), so a
//!   crashed gateway's credit is free again within 25 s. This gateway stops using its leases
//!   [`VALIDITY_MARGIN`] before they can expire, measuring from before it asked for their
//!   renewal with its own monotonic clock, so no clock (its own or another gateway's) can make two
//!   gateways spend the same credit.
//! - **Changes.** An administrator's change to a key (limits, reset, deletion) makes every gateway
//!   give the key's lease back and read the key again ([`LeaseEngine::revoke_key`], through the
//!   existing invalidation); a debit by an administrator first gives back this gateway's idle
//!   lease of the user.
//! - **Budgets.** A periodic budget's window ([`super::budgets`]) is leased the same way: one
//!   conditional `UPDATE` moves part of what the window has left into `budget_windows.*_reserved`
//!   and records it in `budget_leases`; holds check the request's windows in the book with the
//!   balance and the key. A changed budget makes every gateway give its window leases back
//!   ([`LeaseEngine::revoke_budgets`], through the invalidation); the budgets are read again at
//!   least every [`BUDGETS_RELOAD`], and the database's clock with them: windows follow it, so a
//!   gateway whose own clock is wrong still counts a request in the window the others do.
//! - **Lock order.** A batch locks its users, then its keys (each in id order), then its leases,
//!   then its budget windows, then their leases; granting and reclaiming lock the user, key or
//!   window before the lease: two gateways never deadlock.
//!
//! What a crash can lose is the same as on SQLite: at most one window of unwritten settlements, in
//! the customer's favour. What a database outage longer than the lease lifetime can cost: the
//! holds still open on this gateway when its leases lapse are settled afterwards against a
//! balance whose lease other gateways may have taken: at most those holds (and overage).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use apihub_core::Money;
use apihub_core::billing::{
    BillingError, KeyCounters, NewReservation, ReservationId, Settled, Settlement, UserFunds, check_hold,
};
use apihub_core::budget::BudgetOwner;
use apihub_core::credit::{CreditBook, HoldError, METER_LIMITS, MeterId, StoredKey, StoredMeter};
use apihub_core::policy::KeyId;
use apihub_core::store::StoreError;
use apihub_core::user::UserId;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio::sync::{Notify, watch};

use super::budgets::{BudgetDefs, BudgetRow};
use super::engine::{MAX_UNWRITTEN, WINDOW};
use super::lease_writes::{
    LeaseRow, Left, MeterLeaseRow, free_lease, free_meter_lease, lock_owner, lock_window, prune_batch_ids, unreserve,
    unreserve_window, write_debits,
};
use super::schema::budgets;
use super::{TxError, now_millis, pool_error};

/// How long a lease lives without renewal (the database's clock).
pub const LEASE_TTL: Duration = Duration::from_secs(20);
/// How often this gateway renews its leases.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// This gateway stops using its leases this long before they could expire.
const VALIDITY_MARGIN: Duration = Duration::from_secs(3);
/// How often this gateway frees any gateway's expired leases.
pub const RECLAIM_EVERY: Duration = Duration::from_secs(5);
/// How often unused leases are looked at; one unused since the last look is given back.
const IDLE_SWEEP: Duration = Duration::from_secs(1);
/// Most debits written in one transaction.
const MAX_BATCH: usize = 4_096;
/// Longest a read waits for the settlements before it to be written.
const READ_WAIT: Duration = Duration::from_secs(5);
/// Longest pause between two attempts at a batch that failed.
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// How often the budgets known here are read again (the bound for a change made on another
/// gateway without Redis; with it, every gateway hears of a change at once).
const BUDGETS_RELOAD: Duration = Duration::from_secs(10);
/// How many times a hold refused for credit that other gateways lease asks them for it.
const NUDGES: u32 = 3;
/// How long it then waits before trying again.
const NUDGE_WAIT: Duration = Duration::from_millis(50);
/// Most rounds of growing a lease and trying a hold again.
const MAX_ROUNDS: usize = 64;
/// A lease grows by this many times what a refused hold lacked, at least.
const GROWTH: i64 = 8;
/// How often batch ids older than `lease_writes::BATCH_IDS_KEPT` are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(3_600);

/// The database's clock, in Unix milliseconds (leases are stamped and aged with it).
pub(super) const DB_NOW: &str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";

type PgPool = Pool<AsyncPgConnection>;

/// The engine; see the [module docs](self).
pub struct LeaseEngine {
    /// The node id this gateway's leases carry now (a new one when they lapsed).
    node_id: Mutex<String>,
    pool: PgPool,
    book: Mutex<CreditBook>,
    /// Books retired when their leases lapsed, under their node ids: each only closes its open
    /// holds and writes their settlements, and goes when nothing is left of them.
    retired: Mutex<Vec<(String, CreditBook)>>,
    /// The budgets of the users and keys that made requests here.
    budgets: Arc<BudgetDefs>,
    sizes: Mutex<Sizes>,
    /// Held while a batch is written, a lease is granted, renewed or given back: the book's
    /// stored amounts and the database's leases never disagree about a written batch.
    order: tokio::sync::Mutex<()>,
    /// Wakes the writing task: a first debit queued, or a reader waiting.
    wake: Arc<Notify>,
    /// A reader waits: write now, without waiting for the window.
    urgent: AtomicBool,
    /// The newest debit written.
    written: watch::Sender<u64>,
    /// When each lease of this node was last asked for (granted or renewed), by this process's
    /// clock: they are all certainly alive until the oldest of these plus `LEASE_TTL`, less
    /// `VALIDITY_MARGIN`.
    asked: Mutex<HashMap<Lease, Instant>>,
    /// Asks the other gateways to give back a user's unused lease (through Redis).
    nudge: std::sync::OnceLock<tokio::sync::mpsc::Sender<UserId>>,
    /// Test only: the next batch commits, but is reported as failed (a lost acknowledgement).
    #[cfg(test)]
    lose_commit_ack: AtomicBool,
}

impl std::fmt::Debug for LeaseEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseEngine").field("node_id", &self.node_id()).finish_non_exhaustive()
    }
}

/// A lease of this node: of a user's credit, of a key's limits, or of a budget window
/// (budget, window start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Lease {
    User(UserId),
    Key(KeyId),
    Meter(i64, i64),
}

fn new_node_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A key and what stays leased of it: credit (micros), tokens, calls.
type Kept<Id> = (Id, [i64; 3]);

/// A user, the credit that stays leased, and the credit the book gave up (micros).
type GivenUp = (UserId, i64, i64);

/// What the engine remembers about its leases besides the book.
#[derive(Debug, Default)]
struct Sizes {
    /// The last growth of each user's lease (micros).
    user_grants: HashMap<UserId, i64>,
    /// The last growth of each key's lease: credit (micros), tokens, calls.
    key_grants: HashMap<KeyId, [i64; 3]>,
    /// The last growth of each budget window's lease: credit (micros), tokens, calls.
    meter_grants: HashMap<MeterId, [i64; 3]>,
    /// Keys by public id, for invalidations.
    public_ids: HashMap<String, KeyId>,
    /// Entries seen idle at the last sweep, with their newest hold then.
    idle_users: HashMap<UserId, ReservationId>,
    idle_keys: HashMap<KeyId, ReservationId>,
    idle_meters: HashMap<MeterId, ReservationId>,
}

#[derive(QueryableByName)]
struct UserGrant {
    #[diesel(sql_type = BigInt)]
    free: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    granted: Option<i64>,
    /// What other gateways lease of the user's credit.
    #[diesel(sql_type = BigInt)]
    others: i64,
}

/// Why a lease could not grow.
enum Refusal {
    /// Not enough credit, even counting what other gateways lease.
    Refused(BillingError),
    /// Enough only with what other gateways lease; they were asked for it.
    LeasedElsewhere(BillingError),
}

impl From<BillingError> for Refusal {
    fn from(error: BillingError) -> Self {
        Refusal::Refused(error)
    }
}

#[derive(QueryableByName)]
struct KeyGrant {
    #[diesel(sql_type = BigInt)]
    user_id: i64,
    #[diesel(sql_type = Text)]
    public_id: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    quota_free: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    tokens_free: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    calls_free: Option<i64>,
    #[diesel(sql_type = Bool)]
    granted: bool,
    #[diesel(sql_type = BigInt)]
    quota: i64,
    #[diesel(sql_type = BigInt)]
    tokens: i64,
    #[diesel(sql_type = BigInt)]
    calls: i64,
}

#[derive(QueryableByName)]
struct MeterGrant {
    #[diesel(sql_type = Nullable<BigInt>)]
    credit_free: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    tokens_free: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    calls_free: Option<i64>,
    #[diesel(sql_type = Bool)]
    granted: bool,
    #[diesel(sql_type = BigInt)]
    credit: i64,
    #[diesel(sql_type = BigInt)]
    tokens: i64,
    #[diesel(sql_type = BigInt)]
    calls: i64,
}

#[derive(QueryableByName)]
struct DbClock {
    #[diesel(sql_type = BigInt)]
    now: i64,
}

/// A lease renewed: of a user's credit (`key_id` NULL) or of a key's limits.
#[derive(QueryableByName)]
struct Renewed {
    #[diesel(sql_type = BigInt)]
    user_id: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    key_id: Option<i64>,
}

/// A budget window's lease renewed.
#[derive(QueryableByName)]
struct RenewedMeter {
    #[diesel(sql_type = BigInt)]
    budget_id: i64,
    #[diesel(sql_type = BigInt)]
    window_start: i64,
}

/// Which of a key's limits a hold lacks, and by how much: credit (micros), tokens, calls.
fn key_shortfall(counters: &KeyCounters, new: &NewReservation) -> [i64; 3] {
    let quota = counters.quota_limit.map_or(0, |limit| {
        counters.quota_used.micros() + counters.quota_reserved.micros() + new.hold.amount.micros() - limit.micros()
    });
    let tokens = counters
        .token_limit
        .map_or(0, |limit| counters.tokens_used + counters.tokens_reserved + new.hold.tokens - limit);
    let calls = counters.remaining_calls.map_or(0, |left| 1 - (left - counters.calls_reserved));
    [quota.max(0), tokens.max(0), calls.max(0)]
}

impl LeaseEngine {
    /// An engine for a new node id on `pool`, with its writing and upkeep tasks (which end with
    /// the engine).
    pub(crate) fn start(pool: PgPool, budgets: Arc<BudgetDefs>) -> Arc<LeaseEngine> {
        let engine = LeaseEngine::new(pool, budgets);
        tokio::spawn(write_behind(Arc::downgrade(&engine), engine.wake.clone()));
        tokio::spawn(upkeep(Arc::downgrade(&engine)));
        engine
    }

    /// An engine without its tasks: nothing is written, renewed or given back unless asked.
    fn new(pool: PgPool, budgets: Arc<BudgetDefs>) -> Arc<LeaseEngine> {
        Arc::new(LeaseEngine {
            node_id: Mutex::new(new_node_id()),
            pool,
            book: Mutex::new(CreditBook::default()),
            retired: Mutex::default(),
            budgets,
            sizes: Mutex::default(),
            order: tokio::sync::Mutex::new(()),
            wake: Arc::new(Notify::new()),
            urgent: AtomicBool::new(false),
            written: watch::Sender::new(0),
            asked: Mutex::default(),
            nudge: std::sync::OnceLock::new(),
            #[cfg(test)]
            lose_commit_ack: AtomicBool::new(false),
        })
    }

    /// Where to ask the other gateways for a user's unused lease, when this one is refused
    /// credit they lease (set once, at start-up, with Redis).
    pub fn nudge_with(&self, sender: tokio::sync::mpsc::Sender<UserId>) {
        let _ = self.nudge.set(sender);
    }

    /// This gateway's node id (its leases carry it).
    pub fn node_id(&self) -> String {
        self.node_id.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The budgets' time zone, clock and definitions.
    pub(crate) fn budgets(&self) -> &Arc<BudgetDefs> {
        &self.budgets
    }

    fn book(&self) -> MutexGuard<'_, CreditBook> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sizes(&self) -> MutexGuard<'_, Sizes> {
        self.sizes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Locked after the book, when both are.
    fn retired(&self) -> MutexGuard<'_, Vec<(String, CreditBook)>> {
        self.retired.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn asked(&self) -> MutexGuard<'_, HashMap<Lease, Instant>> {
        self.asked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether some lease may have lapsed: the one asked for longest ago was asked for more
    /// than `LEASE_TTL - VALIDITY_MARGIN` ago (a grant or a renewal vouches only for the leases
    /// it touched).
    fn lapsed(&self) -> bool {
        let oldest = self.asked().values().min().copied();
        oldest.is_some_and(|oldest| Instant::now() >= oldest + LEASE_TTL - VALIDITY_MARGIN)
    }

    /// When the leases may have lapsed (renewals failed for too long), retires the book under
    /// the old node id: it only closes its open holds and writes their settlements (against the
    /// balance, beyond what is left of leases nobody renews any more), while this gateway goes
    /// on with an empty book under a new node id, leasing afresh. Old and new leases never mix.
    async fn check_validity(&self) {
        if !self.lapsed() {
            return;
        }
        let _order = self.order.lock().await;
        if !self.lapsed() {
            return;
        }
        tracing::error!("credit leases could not be renewed in time; they are given up");
        let old_node =
            std::mem::replace(&mut *self.node_id.lock().unwrap_or_else(PoisonError::into_inner), new_node_id());
        {
            let mut book = self.book();
            let successor = book.successor();
            let old = std::mem::replace(&mut *book, successor);
            self.retired().push((old_node, old));
        }
        self.asked().clear();
        *self.sizes() = Sizes::default();
    }

    /// `leases` were granted or renewed by a statement sent at `asked_at`.
    fn renewed(&self, asked_at: Instant, leases: impl IntoIterator<Item = Lease>) {
        let mut asked = self.asked();
        for lease in leases {
            asked.insert(lease, asked_at);
        }
    }

    /// Runs `f` on the book that holds `id`: this one, or a retired one.
    fn book_of<T>(&self, id: ReservationId, f: impl FnOnce(&mut CreditBook) -> T) -> T {
        let mut book = self.book();
        if !book.is_open(id) {
            let mut retired = self.retired();
            if let Some((_, old)) = retired.iter_mut().find(|(_, old)| old.is_open(id)) {
                return f(old);
            }
        }
        f(&mut book)
    }

    /// Debits waiting to be written, retired books' included.
    fn unwritten(&self) -> usize {
        let here = self.book().unwritten();
        here + self.retired().iter().map(|(_, old)| old.unwritten()).sum::<usize>()
    }

    /// Takes a hold from this gateway's leases, growing them when they are short.
    pub(crate) async fn reserve(&self, new: &NewReservation) -> Result<ReservationId, BillingError> {
        if self.unwritten() >= MAX_UNWRITTEN {
            self.wake_now();
            return Err(BillingError::Store(StoreError::Unavailable("settlements are waiting to be written".into())));
        }
        self.check_validity().await;
        // Each round either holds, or grows a lease (which takes credit from the database, so
        // the rounds end), or is refused; the hold after a growth is taken under the order lock.
        let (mut nudges, mut transient) = (NUDGES, NUDGES);
        let now = self.budgets.now();
        for _ in 0..MAX_ROUNDS {
            let Some(meters) = self.budgets.windows(new.user_id, new.key_id, now) else {
                self.load_budgets(new.user_id, new.key_id).await.map_err(BillingError::Store)?;
                continue;
            };
            let ids: Vec<MeterId> = meters.iter().map(|(id, _)| *id).collect();
            let refused = match self.book().hold_metered(new, &ids) {
                Ok(id) => return Ok(id),
                Err(refused) => refused,
            };
            let grown = match refused {
                HoldError::UserNotLoaded(_) | HoldError::Refused(BillingError::InsufficientBalance { .. }) => {
                    self.grow_user(new, &ids).await
                }
                HoldError::KeyNotLoaded(_) | HoldError::Refused(BillingError::KeyLimit { .. }) => {
                    self.grow_key(new, &ids).await.map_err(Refusal::Refused)
                }
                HoldError::MeterNotLoaded(_) | HoldError::Refused(BillingError::BudgetSpent { .. }) => {
                    self.grow_meter(new, &meters).await.map_err(Refusal::Refused)
                }
                HoldError::Refused(error) => return Err(error),
            };
            let held = match grown {
                Ok(held) => held,
                // Other gateways lease what this one lacks: ask them for it, and try again.
                Err(Refusal::LeasedElsewhere(_)) if nudges > 0 => {
                    nudges -= 1;
                    tokio::time::sleep(NUDGE_WAIT).await;
                    None
                }
                // A deadlock between gateways or a busy pool: try again shortly.
                Err(Refusal::Refused(BillingError::Store(StoreError::Unavailable(_) | StoreError::Internal(_))))
                    if transient > 0 =>
                {
                    transient -= 1;
                    tokio::time::sleep(NUDGE_WAIT).await;
                    None
                }
                Err(Refusal::LeasedElsewhere(error) | Refusal::Refused(error)) => return Err(error),
            };
            if let Some(id) = held {
                return Ok(id);
            }
        }
        Err(BillingError::Store(StoreError::Unavailable("credit leases changed while the hold was taken".into())))
    }

    /// After a growth (the caller holds the order lock): the hold, when it fits now.
    fn hold_now(&self, new: &NewReservation, meters: &[MeterId]) -> Result<Option<ReservationId>, BillingError> {
        match self.book().hold_metered(new, meters) {
            Ok(id) => Ok(Some(id)),
            Err(HoldError::Refused(error @ BillingError::Store(_))) => Err(error),
            Err(_) => Ok(None),
        }
    }

    /// Closes a hold with its whole charge and queues the debit.
    pub(crate) fn settle(&self, id: ReservationId, settlement: &Settlement) -> Result<Settled, BillingError> {
        let (settled, first) = self.book_of(id, |book| {
            let (settled, _) = book.settle(id, settlement)?;
            Ok::<_, BillingError>((settled, book.unwritten() == 1))
        })?;
        if first {
            self.wake.notify_one();
        }
        Ok(settled)
    }

    /// Frees a hold (its credit stays in this gateway's lease).
    pub(crate) fn release(&self, id: ReservationId) -> Result<(), BillingError> {
        self.book_of(id, |book| book.release(id))
    }

    /// Holds open on this gateway.
    pub(crate) fn open_holds(&self) -> usize {
        let here = self.book().open_holds();
        here + self.retired().iter().map(|(_, old)| old.open_holds()).sum::<usize>()
    }

    /// What this gateway's open holds take from a key: (tokens, credit in micros, calls).
    pub(crate) fn key_holds(&self, key_id: KeyId) -> Option<(i64, i64, i64)> {
        let counters = self.book().key_counters(key_id)?;
        Some((counters.tokens_reserved, counters.quota_reserved.micros(), counters.calls_reserved))
    }

    /// What this gateway holds and has not written of a user's credit: (held, unwritten).
    pub(crate) fn user_holds(&self, user_id: UserId) -> Option<UserFunds> {
        self.book().funds(user_id)
    }

    /// Grows (or first takes) this gateway's lease of a user's credit by at least what `new`
    /// lacks, then takes the hold when it fits. Refused with what is available (this lease and
    /// the free credit) when even that is not free.
    async fn grow_user(&self, new: &NewReservation, meters: &[MeterId]) -> Result<Option<ReservationId>, Refusal> {
        let (user_id, required) = (new.user_id, new.hold.amount);
        let _order = self.order.lock().await;
        self.write_queued().await.map_err(BillingError::Store)?;
        // What the hold lacks now (other requests took or freed credit while this one waited).
        let leased = self.book().funds(user_id);
        let available = leased.map_or(Money::ZERO, |funds| funds.available());
        if leased.is_some() && available >= required {
            return Ok(self.hold_now(new, meters)?);
        }
        let min = required.micros().saturating_sub(available.micros()).max(0);
        if min == 0 {
            self.book().grant_user(user_id, Money::ZERO);
            return Ok(self.hold_now(new, meters)?);
        }
        let last = self.sizes().user_grants.get(&user_id).copied().unwrap_or(0);
        let want = min.saturating_mul(GROWTH).max(last.saturating_mul(2));
        let asked_at = Instant::now();
        let node_id = self.node_id();
        let grant: Vec<UserGrant> = self
            .run(async |conn| {
                Ok(diesel::sql_query(format!(
                    "WITH u AS (SELECT id, token_balance - reserved AS free FROM users WHERE id = $1 FOR UPDATE), \
                     g AS (UPDATE users SET reserved = users.reserved + GREATEST($2, LEAST($3, u.free / 2)) \
                           FROM u WHERE users.id = u.id AND u.free >= $2 \
                           RETURNING users.id, GREATEST($2, LEAST($3, u.free / 2)) AS granted), \
                     l AS (INSERT INTO credit_leases (node_id, user_id, key_id, amount, expires_at, created_at) \
                           SELECT $4, g.id, NULL, g.granted, {DB_NOW} + $5, {DB_NOW} FROM g \
                           ON CONFLICT (node_id, user_id) WHERE key_id IS NULL DO UPDATE \
                           SET amount = credit_leases.amount + EXCLUDED.amount, expires_at = EXCLUDED.expires_at) \
                     SELECT u.free, (SELECT granted FROM g) AS granted, \
                            (SELECT COALESCE(SUM(amount), 0) FROM credit_leases \
                             WHERE user_id = $1 AND key_id IS NULL AND node_id <> $4)::BIGINT AS others FROM u"
                ))
                .bind::<BigInt, _>(user_id)
                .bind::<BigInt, _>(min)
                .bind::<BigInt, _>(want)
                .bind::<Text, _>(&node_id)
                .bind::<BigInt, _>(ttl_millis())
                .load(conn)
                .await?)
            })
            .await
            .map_err(BillingError::Store)?;
        let Some(grant) = grant.into_iter().next() else {
            return Err(BillingError::Store(StoreError::NotFound).into());
        };
        match grant.granted {
            Some(granted) => {
                self.renewed(asked_at, [Lease::User(user_id)]);
                self.book().grant_user(user_id, Money::from_micros(granted));
                self.sizes().user_grants.insert(user_id, granted);
                Ok(self.hold_now(new, meters)?)
            }
            None => {
                let here = available.micros().saturating_add(grant.free.max(0));
                let error = BillingError::InsufficientBalance { available: Money::from_micros(here), required };
                if grant.others > 0
                    && here.saturating_add(grant.others) >= required.micros()
                    && let Some(nudge) = self.nudge.get()
                {
                    let _ = nudge.try_send(user_id);
                    return Err(Refusal::LeasedElsewhere(error));
                }
                Err(Refusal::Refused(error))
            }
        }
    }

    /// Reads a key (on first use) and grows this gateway's lease of its limited credit, tokens
    /// and calls by at least what `new` lacks, then takes the hold when it fits. Refused with
    /// the limit that is spent.
    async fn grow_key(&self, new: &NewReservation, meters: &[MeterId]) -> Result<Option<ReservationId>, BillingError> {
        let key_id = new.key_id;
        let _order = self.order.lock().await;
        self.write_queued().await.map_err(BillingError::Store)?;
        let loaded = self.book().key_counters(key_id);
        let unlimited = UserFunds { balance: Money::from_micros(i64::MAX), reserved: Money::ZERO };
        let min = match loaded {
            Some(counters) if check_hold(&unlimited, &counters, &new.hold).is_ok() => {
                return self.hold_now(new, meters);
            }
            // What the hold lacks now, on each limit.
            Some(counters) => key_shortfall(&counters, new),
            // On first use, enough for this hold on every limit the key has.
            None => [new.hold.amount.micros().max(0), new.hold.tokens.max(0), 1],
        };
        let last = self.sizes().key_grants.get(&key_id).copied().unwrap_or_default();
        let want: [i64; 3] = std::array::from_fn(|i| min[i].saturating_mul(GROWTH).max(last[i].saturating_mul(2)));
        let asked_at = Instant::now();
        let node_id = self.node_id();
        let grant: Vec<KeyGrant> = self
            .run(async |conn| {
                // A limit the key does not have grants nothing and needs nothing (`free` NULL).
                Ok(diesel::sql_query(format!(
                    "WITH k AS (SELECT id, user_id, public_id, \
                                quota_limit - quota_used - quota_reserved AS quota_free, \
                                token_limit - tokens_used - tokens_reserved AS tokens_free, \
                                remaining_calls - calls_reserved AS calls_free \
                                FROM api_keys WHERE id = $1 FOR UPDATE), \
                     s AS (SELECT k.*, \
                                COALESCE(GREATEST($2, LEAST($5, quota_free / 2)), 0) AS quota, \
                                COALESCE(GREATEST($3, LEAST($6, tokens_free / 2)), 0) AS tokens, \
                                COALESCE(GREATEST($4, LEAST($7, calls_free / 2)), 0) AS calls, \
                                (quota_free IS NULL OR quota_free >= $2) AND (tokens_free IS NULL OR tokens_free >= $3) \
                                AND (calls_free IS NULL OR calls_free >= $4) AS granted FROM k), \
                     g AS (UPDATE api_keys SET quota_reserved = quota_reserved + s.quota, \
                                tokens_reserved = tokens_reserved + s.tokens, calls_reserved = calls_reserved + s.calls \
                           FROM s WHERE api_keys.id = s.id AND s.granted AND s.quota + s.tokens + s.calls > 0 \
                           RETURNING api_keys.id), \
                     l AS (INSERT INTO credit_leases (node_id, user_id, key_id, amount, tokens, calls, expires_at, created_at) \
                           SELECT $8, s.user_id, s.id, s.quota, s.tokens, s.calls, {DB_NOW} + $9, {DB_NOW} \
                           FROM s JOIN g ON g.id = s.id \
                           ON CONFLICT (node_id, key_id) WHERE key_id IS NOT NULL DO UPDATE \
                           SET amount = credit_leases.amount + EXCLUDED.amount, tokens = credit_leases.tokens + EXCLUDED.tokens, \
                               calls = credit_leases.calls + EXCLUDED.calls, expires_at = EXCLUDED.expires_at) \
                     SELECT user_id, public_id, quota_free, tokens_free, calls_free, granted, quota, tokens, calls FROM s"
                ))
                .bind::<BigInt, _>(key_id)
                .bind::<BigInt, _>(min[0])
                .bind::<BigInt, _>(min[1])
                .bind::<BigInt, _>(min[2])
                .bind::<BigInt, _>(want[0])
                .bind::<BigInt, _>(want[1])
                .bind::<BigInt, _>(want[2])
                .bind::<Text, _>(&node_id)
                .bind::<BigInt, _>(ttl_millis())
                .load(conn)
                .await?)
            })
            .await
            .map_err(BillingError::Store)?;
        let Some(grant) = grant.into_iter().next() else {
            return Err(BillingError::Store(StoreError::NotFound));
        };
        if grant.user_id != new.user_id {
            return Err(BillingError::Store(StoreError::NotFound));
        }
        if !grant.granted {
            let limit = if grant.calls_free.is_some_and(|free| free < min[2]) {
                "remaining_calls"
            } else if grant.tokens_free.is_some_and(|free| free < min[1]) {
                "token_limit"
            } else {
                "quota_limit"
            };
            return Err(BillingError::KeyLimit { limit });
        }
        if grant.quota + grant.tokens + grant.calls > 0 {
            self.renewed(asked_at, [Lease::Key(key_id)]);
        }
        let (quota, tokens, calls) = (Money::from_micros(grant.quota), grant.tokens, grant.calls);
        let mut book = self.book();
        if !book.grant_key(key_id, quota, tokens, calls) {
            book.store_key(
                key_id,
                StoredKey {
                    user_id: grant.user_id,
                    quota_limit: grant.quota_free.map(|_| quota),
                    token_limit: grant.tokens_free.map(|_| tokens),
                    remaining_calls: grant.calls_free.map(|_| calls),
                    tokens_used: 0,
                    quota_used: Money::ZERO,
                },
            );
        }
        drop(book);
        let mut sizes = self.sizes();
        sizes.key_grants.insert(key_id, [grant.quota, grant.tokens, grant.calls]);
        sizes.public_ids.insert(grant.public_id, key_id);
        drop(sizes);
        self.hold_now(new, meters)
    }

    /// Reads the budgets of a request's user and key (on their first request here, or after the
    /// budgets changed).
    async fn load_budgets(&self, user_id: UserId, key_id: KeyId) -> Result<(), StoreError> {
        let rows: Vec<BudgetRow> = self
            .run(async |conn| {
                Ok(budgets::table
                    .filter(budgets::user_id.eq(user_id).or(budgets::key_id.eq(key_id)))
                    .select(BudgetRow::as_select())
                    .load(conn)
                    .await?)
            })
            .await?;
        let budgets: Vec<_> = rows.into_iter().map(BudgetRow::into_domain).collect::<Result<_, _>>()?;
        self.budgets.store(&[BudgetOwner::User(user_id), BudgetOwner::Key(key_id)], &budgets);
        Ok(())
    }

    /// Grows (or first takes) this gateway's lease of the first of `meters` (a request's budget
    /// windows) that cannot take the hold, by at least what the hold lacks, then takes the hold
    /// when it fits. Refused with the budget limit that is spent.
    async fn grow_meter(
        &self,
        new: &NewReservation,
        meters: &[(MeterId, StoredMeter)],
    ) -> Result<Option<ReservationId>, BillingError> {
        let ids: Vec<MeterId> = meters.iter().map(|(id, _)| *id).collect();
        let _order = self.order.lock().await;
        self.write_queued().await.map_err(BillingError::Store)?;
        let add = [new.hold.amount.micros().max(0), new.hold.tokens.max(0), 1];
        // The first window short of this hold, and by how much (on first use: the whole hold).
        let short = {
            let book = self.book();
            meters.iter().find_map(|(id, template)| match book.meter(*id) {
                None => Some((*id, *template, add)),
                Some((stored, held)) => {
                    let lack: [i64; 3] = std::array::from_fn(|i| {
                        stored.limits[i].map_or(0, |limit| stored.used[i] + held[i] + add[i] - limit).max(0)
                    });
                    (lack != [0; 3]).then_some((*id, *template, lack))
                }
            })
        };
        let Some((id, template, min)) = short else { return self.hold_now(new, &ids) };
        let last = self.sizes().meter_grants.get(&id).copied().unwrap_or_default();
        let want: [i64; 3] = std::array::from_fn(|i| min[i].saturating_mul(GROWTH).max(last[i].saturating_mul(2)));
        let asked_at = Instant::now();
        let node_id = self.node_id();
        let grant: Vec<MeterGrant> = self
            .run(async |conn| {
                conn.transaction(async |conn| -> Result<Vec<MeterGrant>, TxError> {
                    // The window's row, on its first use by any gateway (not for a budget just removed).
                    diesel::sql_query(
                        "INSERT INTO budget_windows (budget_id, window_start, window_end)                          SELECT id, $2, $3 FROM budgets WHERE id = $1 ON CONFLICT DO NOTHING",
                    )
                    .bind::<BigInt, _>(id.budget)
                    .bind::<BigInt, _>(id.start)
                    .bind::<BigInt, _>(id.end)
                    .execute(conn)
                    .await?;
                    // A limit the budget does not have grants nothing and needs nothing (`free` NULL).
                    Ok(diesel::sql_query(format!(
                        "WITH w AS (SELECT w.budget_id, w.window_start,                                     b.credit_limit - w.credit_used - w.credit_reserved AS credit_free,                                     b.token_limit - w.tokens_used - w.tokens_reserved AS tokens_free,                                     b.call_limit - w.calls_used - w.calls_reserved AS calls_free                                     FROM budget_windows w JOIN budgets b ON b.id = w.budget_id                                     WHERE w.budget_id = $1 AND w.window_start = $2 FOR UPDATE OF w),                          s AS (SELECT w.*,                                     COALESCE(GREATEST($3, LEAST($6, credit_free / 2)), 0) AS credit,                                     COALESCE(GREATEST($4, LEAST($7, tokens_free / 2)), 0) AS tokens,                                     COALESCE(GREATEST($5, LEAST($8, calls_free / 2)), 0) AS calls,                                     (credit_free IS NULL OR credit_free >= $3) AND (tokens_free IS NULL OR tokens_free >= $4)                                     AND (calls_free IS NULL OR calls_free >= $5) AS granted FROM w),                          g AS (UPDATE budget_windows SET credit_reserved = credit_reserved + s.credit,                                     tokens_reserved = tokens_reserved + s.tokens, calls_reserved = calls_reserved + s.calls                                FROM s WHERE budget_windows.budget_id = s.budget_id                                AND budget_windows.window_start = s.window_start                                AND s.granted AND s.credit + s.tokens + s.calls > 0                                RETURNING budget_windows.budget_id),                          l AS (INSERT INTO budget_leases (node_id, budget_id, window_start, amount, tokens, calls, expires_at, created_at)                                SELECT $9, s.budget_id, s.window_start, s.credit, s.tokens, s.calls, {DB_NOW} + $10, {DB_NOW}                                FROM s JOIN g ON g.budget_id = s.budget_id                                ON CONFLICT (node_id, budget_id, window_start) DO UPDATE                                SET amount = budget_leases.amount + EXCLUDED.amount, tokens = budget_leases.tokens + EXCLUDED.tokens,                                    calls = budget_leases.calls + EXCLUDED.calls, expires_at = EXCLUDED.expires_at)                          SELECT credit_free, tokens_free, calls_free, granted, credit, tokens, calls FROM s"
                    ))
                    .bind::<BigInt, _>(id.budget)
                    .bind::<BigInt, _>(id.start)
                    .bind::<BigInt, _>(min[0])
                    .bind::<BigInt, _>(min[1])
                    .bind::<BigInt, _>(min[2])
                    .bind::<BigInt, _>(want[0])
                    .bind::<BigInt, _>(want[1])
                    .bind::<BigInt, _>(want[2])
                    .bind::<Text, _>(&node_id)
                    .bind::<BigInt, _>(ttl_millis())
                    .load(conn)
                    .await?)
                })
                .await
            })
            .await
            .map_err(BillingError::Store)?;
        let Some(grant) = grant.into_iter().next() else {
            // The budget was removed meanwhile: read the budgets again.
            self.budgets.forget_all();
            return Ok(None);
        };
        let free = [grant.credit_free, grant.tokens_free, grant.calls_free];
        if !grant.granted {
            let over = (0..3).find(|&i| free[i].is_some_and(|free| free < min[i])).unwrap_or(0);
            return Err(BillingError::BudgetSpent {
                scope: template.scope,
                period: template.period,
                limit: METER_LIMITS[over],
                resets_at: id.end,
            });
        }
        let granted = [grant.credit, grant.tokens, grant.calls];
        if granted != [0; 3] {
            self.renewed(asked_at, [Lease::Meter(id.budget, id.start)]);
        }
        {
            let mut book = self.book();
            if !book.grant_meter(id, granted) {
                let limits = std::array::from_fn(|i| free[i].map(|_| granted[i]));
                book.store_meter(id, StoredMeter { limits, used: [0; 3], ..template });
            }
        }
        self.sizes().meter_grants.insert(id, granted);
        self.hold_now(new, &ids)
    }

    /// Gives back every budget window's lease and forgets the budgets (an administrator changed
    /// some): each is read and leased afresh on its next request.
    pub(crate) async fn revoke_budgets(&self) {
        self.budgets.forget_all();
        let meters = self.book().meter_ids();
        if let Err(error) = self.give_back_meters(&meters).await {
            tracing::warn!(%error, "giving back the budgets' leases failed; they expire on their own");
        }
    }

    /// Gives back budget windows' leases but for what their open holds and unwritten debits take,
    /// and forgets the windows.
    async fn give_back_meters(&self, ids: &[MeterId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let _order = self.order.lock().await;
        self.write_queued().await?;
        let kept: Vec<(MeterId, [i64; 3])> = {
            let mut book = self.book();
            let kept = ids.iter().filter_map(|id| book.meter_commitments(*id).map(|keep| (*id, keep))).collect();
            ids.iter().for_each(|id| book.forget_meter(*id));
            kept
        };
        {
            let mut sizes = self.sizes();
            ids.iter().for_each(|id| {
                sizes.meter_grants.remove(id);
            });
        }
        let node_id = self.node_id();
        for (id, keep) in kept {
            let gone = self
                .run(async |conn| {
                conn.transaction(async |conn| -> Result<bool, TxError> {
                    // The window first, then the lease: the lock order.
                    lock_window(conn, id.budget, id.start).await?;
                    let leases: Vec<MeterLeaseRow> = diesel::sql_query(
                        "SELECT id, budget_id, window_start, amount, tokens, calls FROM budget_leases                          WHERE node_id = $1 AND budget_id = $2 AND window_start = $3 FOR UPDATE",
                    )
                    .bind::<Text, _>(&node_id)
                    .bind::<BigInt, _>(id.budget)
                    .bind::<BigInt, _>(id.start)
                    .load(conn)
                    .await?;
                    let mut gone = true;
                    for lease in leases {
                        let back = [
                            (lease.amount - keep[0]).max(0),
                            (lease.tokens - keep[1]).max(0),
                            (lease.calls - keep[2]).max(0),
                        ];
                        gone &= free_meter_lease(conn, &lease, back).await? == Left::Deleted;
                    }
                    Ok(gone)
                })
                .await
            })
            .await?;
            // The window left the book: a lease of it nobody renews no longer bounds the others.
            if gone {
                self.asked().remove(&Lease::Meter(id.budget, id.start));
            }
        }
        Ok(())
    }

    /// Gives back this gateway's lease of a key and forgets it, so that its next hold reads the
    /// key again (an administrator changed it). Holds still open keep their share of the lease
    /// until they close.
    pub(crate) async fn revoke_key(&self, public_id: &str) {
        let key_id = self.sizes().public_ids.get(public_id).copied();
        if let Some(key_id) = key_id
            && let Err(error) = self.give_back(&[], &[key_id], true).await
        {
            tracing::warn!(%error, key_id, "giving back a key's lease failed; it expires on its own");
        }
    }

    /// Gives back every key's lease and forgets the keys (invalidations may have been missed).
    pub(crate) async fn revoke_all_keys(&self) {
        let (_, keys) = self.book().entries();
        if let Err(error) = self.give_back(&[], &keys, true).await {
            tracing::warn!(%error, "giving back the keys' leases failed; they expire on their own");
        }
    }

    /// Gives back this gateway's lease of a user's credit, but for what its open holds need
    /// (before an administrator's debit).
    pub(crate) async fn revoke_user(&self, user_id: UserId) -> Result<(), StoreError> {
        self.give_back(&[user_id], &[], false).await
    }

    /// Gives back leases: all of a lease when its entry is idle, else all but what the entry's
    /// open holds and unwritten debits take. With `forget`, the entries leave the book (and are
    /// leased afresh on their next hold); else users keep what stays leased (keys are always
    /// forgotten: they are given back when they changed). A user's funds shrink in the book
    /// first (no hold can take what is being given back) and leave it only once the database
    /// has given the lease back; when that fails, the book grows back to the whole lease.
    async fn give_back(&self, user_ids: &[UserId], key_ids: &[KeyId], forget: bool) -> Result<(), StoreError> {
        let _order = self.order.lock().await;
        self.write_queued().await?;
        // What stays leased: what the open holds may still charge, and what was settled after the
        // write above (the next batch consumes it from the lease).
        // (user, credit kept, credit given up) and (key, [credit, tokens, calls] kept).
        let (users, keys): (Vec<GivenUp>, Vec<Kept<KeyId>>) = {
            let mut book = self.book();
            let users = user_ids
                .iter()
                .filter_map(|id| {
                    let before = book.stored_user(*id)?;
                    let keep = book.shrink_user(*id)?;
                    Some((*id, keep, before.saturating_sub(keep)))
                })
                .collect();
            let keys = key_ids.iter().filter_map(|id| book.key_commitments(*id).map(|keep| (*id, keep))).collect();
            for id in key_ids {
                book.forget_key(*id);
            }
            (users, keys)
        };
        {
            let mut sizes = self.sizes();
            for (id, ..) in &users {
                sizes.user_grants.remove(id);
            }
            for (id, _) in &keys {
                sizes.key_grants.remove(id);
            }
        }
        for (at, &(user_id, keep, _)) in users.iter().enumerate() {
            match self.shrink(Some(user_id), None, [keep, 0, 0]).await {
                Ok(left) => {
                    if forget {
                        self.book().forget_user(user_id);
                    }
                    // A lease no longer held bounds the others' validity no more; one freed by
                    // another gateway does while its user's holds stay in the book.
                    if left == Left::Deleted || (forget && left == Left::Missing) {
                        self.asked().remove(&Lease::User(user_id));
                    }
                }
                Err(error) => {
                    // This lease and those not tried are whole in the database: so in the book.
                    let mut book = self.book();
                    for &(user_id, _, given_up) in &users[at..] {
                        book.grant_user(user_id, Money::from_micros(given_up));
                    }
                    return Err(error);
                }
            }
        }
        for (key_id, keep) in keys {
            if self.shrink(None, Some(key_id), keep).await? != Left::Kept {
                // The key left the book: its lease, if any is left, is not used any more.
                self.asked().remove(&Lease::Key(key_id));
            }
        }
        Ok(())
    }

    /// Shrinks this gateway's lease of a user's credit or a key's limits to `keep` (credit,
    /// tokens, calls), deleting it when nothing is kept.
    async fn shrink(&self, user_id: Option<UserId>, key_id: Option<KeyId>, keep: [i64; 3]) -> Result<Left, StoreError> {
        let node_id = self.node_id();
        self.run(async |conn| {
            conn.transaction(async |conn| -> Result<Left, TxError> {
                // The user or key first, then the lease: the lock order.
                let lease: Vec<LeaseRow> = match (user_id, key_id) {
                    (Some(user_id), _) => {
                        diesel::sql_query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                            .bind::<BigInt, _>(user_id)
                            .execute(conn)
                            .await?;
                        diesel::sql_query(
                            "SELECT id, user_id, key_id, amount, tokens, calls FROM credit_leases \
                             WHERE node_id = $1 AND user_id = $2 AND key_id IS NULL FOR UPDATE",
                        )
                        .bind::<Text, _>(&node_id)
                        .bind::<BigInt, _>(user_id)
                        .load(conn)
                        .await?
                    }
                    (None, Some(key_id)) => {
                        diesel::sql_query("SELECT id FROM api_keys WHERE id = $1 FOR UPDATE")
                            .bind::<BigInt, _>(key_id)
                            .execute(conn)
                            .await?;
                        diesel::sql_query(
                            "SELECT id, user_id, key_id, amount, tokens, calls FROM credit_leases \
                             WHERE node_id = $1 AND key_id = $2 FOR UPDATE",
                        )
                        .bind::<Text, _>(&node_id)
                        .bind::<BigInt, _>(key_id)
                        .load(conn)
                        .await?
                    }
                    (None, None) => Vec::new(),
                };
                let mut left = Left::Missing;
                for lease in lease {
                    let back = [
                        (lease.amount - keep[0]).max(0),
                        (lease.tokens - keep[1]).max(0),
                        (lease.calls - keep[2]).max(0),
                    ];
                    left = free_lease(conn, &lease, back).await?;
                }
                Ok(left)
            })
            .await
        })
        .await
    }

    /// Waits until every debit settled so far is written (at once when none waits).
    pub(crate) async fn caught_up(&self) {
        let target = self.book().last_seq();
        if *self.written.borrow() >= target {
            return;
        }
        self.wake_now();
        let mut written = self.written.subscribe();
        let _ = tokio::time::timeout(READ_WAIT, written.wait_for(|written| *written >= target)).await;
    }

    /// Writes every debit queued so far.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let _order = self.order.lock().await;
        self.write_queued().await
    }

    /// Writes every debit queued so far, and gives back every lease but for what open holds take
    /// (shutdown).
    pub async fn give_back_all(&self) -> Result<(), StoreError> {
        self.flush().await?;
        let (users, keys) = self.book().entries();
        self.give_back(&users, &keys, true).await?;
        let meters = self.book().meter_ids();
        self.give_back_meters(&meters).await
    }

    fn wake_now(&self) {
        self.urgent.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Runs `body` on a pooled connection.
    async fn run<T>(
        &self,
        body: impl AsyncFnOnce(&mut AsyncPgConnection) -> Result<T, TxError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.pool.get().await.map_err(pool_error)?;
        body(&mut conn).await.map_err(|e| e.0)
    }

    /// Writes the debits queued when it is called, retired books' first (the caller holds the
    /// order lock); a retired book with nothing open or queued goes.
    async fn write_queued(&self) -> Result<(), StoreError> {
        let retired: Vec<(String, u64)> =
            self.retired().iter().map(|(node_id, old)| (node_id.clone(), old.last_seq())).collect();
        for (node_id, last) in retired {
            self.write_book(&node_id, last).await?;
        }
        self.retired().retain(|(_, old)| old.open_holds() > 0 || old.unwritten() > 0);
        let (node_id, last) = (self.node_id(), self.book().last_seq());
        self.write_book(&node_id, last).await
    }

    /// Runs `f` on the book whose leases carry `node_id`: this one, or a retired one (the node
    /// id changes only under the order lock, which the caller holds).
    fn book_under<T>(&self, node_id: &str, f: impl FnOnce(&mut CreditBook) -> T) -> Option<T> {
        if *self.node_id.lock().unwrap_or_else(PoisonError::into_inner) == node_id {
            return Some(f(&mut self.book()));
        }
        self.retired().iter_mut().find(|(id, _)| id == node_id).map(|(_, old)| f(old))
    }

    /// Writes the debits of the book under `node_id` queued up to `last`, in batches. A batch is
    /// recorded by its node id and first sequence number in its own transaction: one whose
    /// commit's acknowledgement was lost, written again, is found written and counts as such.
    async fn write_book(&self, node_id: &str, last: u64) -> Result<(), StoreError> {
        loop {
            let mut batch = self.book_under(node_id, |book| book.to_write(MAX_BATCH)).unwrap_or_default();
            batch.retain(|debit| debit.seq <= last);
            if batch.is_empty() {
                return Ok(());
            }
            let rows = batch.clone();
            let done = self
                .run(async |conn| conn.transaction(async |conn| write_debits(conn, node_id, &rows).await).await)
                .await
                .inspect_err(|error| {
                    tracing::error!(%error, debits = batch.len(), "writing settlements failed; they stay queued");
                })?;
            #[cfg(test)]
            if self.lose_commit_ack.swap(false, Ordering::AcqRel) {
                return Err(StoreError::Unavailable("the commit's acknowledgement was lost (test)".into()));
            }
            batch.retain(|debit| debit.seq <= done);
            self.book_under(node_id, |book| {
                book.written(&batch);
                book.clamp_leases(&batch);
            });
            if let Some(last) = batch.last() {
                self.written.send_if_modified(|written| {
                    let newer = *written < last.seq;
                    *written = (*written).max(last.seq);
                    newer
                });
            }
        }
    }

    /// Measures the database's clock against this process's, so that budget windows follow the
    /// database's clock on every gateway (half the round trip counts as the reading's delay).
    async fn measure_skew(&self) -> Result<(), StoreError> {
        let before = now_millis();
        let read: Vec<DbClock> =
            self.run(async |conn| Ok(diesel::sql_query(format!("SELECT {DB_NOW} AS now")).load(conn).await?)).await?;
        let after = now_millis();
        if let Some(DbClock { now }) = read.into_iter().next() {
            self.budgets.set_skew(now - (before + (after - before) / 2));
        }
        Ok(())
    }

    /// Renews this gateway's leases. Each renewed lease is alive for `LEASE_TTL` from before the
    /// statement was sent; one that was not renewed (another gateway freed it when it expired)
    /// is not, and the book lapses when it may have.
    async fn renew(&self) -> Result<(), StoreError> {
        let _order = self.order.lock().await;
        let asked_at = Instant::now();
        let node_id = self.node_id();
        let (leases, meters): (Vec<Renewed>, Vec<RenewedMeter>) = self
            .run(async |conn| {
                let leases = diesel::sql_query(format!(
                    "UPDATE credit_leases SET expires_at = {DB_NOW} + $2 WHERE node_id = $1 RETURNING user_id, key_id"
                ))
                .bind::<Text, _>(&node_id)
                .bind::<BigInt, _>(ttl_millis())
                .load(conn)
                .await?;
                let meters = diesel::sql_query(format!(
                    "UPDATE budget_leases SET expires_at = {DB_NOW} + $2 WHERE node_id = $1 \
                     RETURNING budget_id, window_start"
                ))
                .bind::<Text, _>(&node_id)
                .bind::<BigInt, _>(ttl_millis())
                .load(conn)
                .await?;
                Ok((leases, meters))
            })
            .await?;
        let leases = leases.into_iter().map(|row| row.key_id.map_or(Lease::User(row.user_id), Lease::Key));
        let meters = meters.into_iter().map(|row| Lease::Meter(row.budget_id, row.window_start));
        self.renewed(asked_at, leases.chain(meters));
        Ok(())
    }

    /// Forgets batch ids older than `BATCH_IDS_KEPT` (a batch is retried within minutes).
    async fn prune_batch_ids(&self) -> Result<usize, StoreError> {
        self.run(async |conn| Ok(prune_batch_ids(conn).await?)).await
    }

    /// Gives back the leases whose entries were idle at the last look and still are.
    async fn return_idle(&self) -> Result<(), StoreError> {
        let (users, keys, meters) = {
            let book = self.book();
            let mut sizes = self.sizes();
            let idle_users = book.idle_users();
            let idle_keys = book.idle_keys();
            let users: Vec<UserId> = idle_users
                .iter()
                .filter(|(id, last)| sizes.idle_users.get(id) == Some(last))
                .map(|(id, _)| *id)
                .collect();
            let keys: Vec<KeyId> = idle_keys
                .iter()
                .filter(|(id, last)| sizes.idle_keys.get(id) == Some(last))
                .map(|(id, _)| *id)
                .collect();
            let idle_meters = book.idle_meters();
            let meters: Vec<MeterId> = idle_meters
                .iter()
                .filter(|(id, last)| sizes.idle_meters.get(id) == Some(last))
                .map(|(id, _)| *id)
                .collect();
            sizes.idle_users = idle_users.into_iter().filter(|(id, _)| !users.contains(id)).collect();
            sizes.idle_keys = idle_keys.into_iter().filter(|(id, _)| !keys.contains(id)).collect();
            sizes.idle_meters = idle_meters.into_iter().filter(|(id, _)| !meters.contains(id)).collect();
            (users, keys, meters)
        };
        self.give_back_meters(&meters).await?;
        if users.is_empty() && keys.is_empty() {
            return Ok(());
        }
        self.give_back(&users, &keys, true).await
    }

    /// Frees any gateway's expired leases, one transaction each; returns how many.
    pub(crate) async fn reclaim_expired(&self) -> Result<usize, StoreError> {
        let expired: Vec<LeaseRow> = self
            .run(async |conn| {
                Ok(diesel::sql_query(format!(
                    "SELECT id, user_id, key_id, amount, tokens, calls FROM credit_leases \
                     WHERE expires_at < {DB_NOW} ORDER BY id LIMIT 1000"
                ))
                .load(conn)
                .await?)
            })
            .await?;
        let mut freed = 0;
        for lease in expired {
            let found = self
                .run(async |conn| {
                    conn.transaction(async |conn| -> Result<bool, TxError> {
                        lock_owner(conn, &lease).await?;
                        let gone: Vec<LeaseRow> = diesel::sql_query(format!(
                            "DELETE FROM credit_leases WHERE id = $1 AND expires_at < {DB_NOW} \
                             RETURNING id, user_id, key_id, amount, tokens, calls"
                        ))
                        .bind::<BigInt, _>(lease.id)
                        .load(conn)
                        .await?;
                        for row in &gone {
                            unreserve(conn, row, [row.amount, row.tokens, row.calls]).await?;
                        }
                        Ok(!gone.is_empty())
                    })
                    .await
                })
                .await?;
            freed += usize::from(found);
        }
        Ok(freed + self.reclaim_expired_meters().await?)
    }

    /// Frees any gateway's expired budget window leases, one transaction each; returns how many.
    async fn reclaim_expired_meters(&self) -> Result<usize, StoreError> {
        let expired: Vec<MeterLeaseRow> = self
            .run(async |conn| {
                Ok(diesel::sql_query(format!(
                    "SELECT id, budget_id, window_start, amount, tokens, calls FROM budget_leases                      WHERE expires_at < {DB_NOW} ORDER BY id LIMIT 1000"
                ))
                .load(conn)
                .await?)
            })
            .await?;
        let mut freed = 0;
        for lease in expired {
            let found = self
                .run(async |conn| {
                    conn.transaction(async |conn| -> Result<bool, TxError> {
                        lock_window(conn, lease.budget_id, lease.window_start).await?;
                        let gone: Vec<MeterLeaseRow> = diesel::sql_query(format!(
                            "DELETE FROM budget_leases WHERE id = $1 AND expires_at < {DB_NOW}                              RETURNING id, budget_id, window_start, amount, tokens, calls"
                        ))
                        .bind::<BigInt, _>(lease.id)
                        .load(conn)
                        .await?;
                        for row in &gone {
                            unreserve_window(conn, row, [row.amount, row.tokens, row.calls]).await?;
                        }
                        Ok(!gone.is_empty())
                    })
                    .await
                })
                .await?;
            freed += usize::from(found);
        }
        Ok(freed)
    }
}

fn ttl_millis() -> i64 {
    i64::try_from(LEASE_TTL.as_millis()).unwrap_or(i64::MAX)
}

/// The writing task: waits for a first debit, lets the window fill (unless a reader waits), writes
/// the queue, and on failure tries again with a growing pause. Ends with the engine.
async fn write_behind(engine: Weak<LeaseEngine>, wake: Arc<Notify>) {
    let mut pause = WINDOW;
    loop {
        let woken = wake.notified();
        let (pending, urgent) = match engine.upgrade() {
            Some(engine) => (engine.unwritten() > 0, engine.urgent.swap(false, Ordering::AcqRel)),
            None => return,
        };
        if !pending {
            let _ = tokio::time::timeout(WINDOW * 20, woken).await;
            continue;
        }
        if !urgent {
            let _ = tokio::time::timeout(pause, woken).await;
        }
        let Some(engine) = engine.upgrade() else { return };
        engine.urgent.store(false, Ordering::Release);
        let written = {
            let _order = engine.order.lock().await;
            engine.write_queued().await
        };
        match written {
            Ok(()) => pause = WINDOW,
            Err(_) => pause = (pause * 2).min(MAX_PAUSE),
        }
    }
}

/// Renews leases, gives back idle ones and frees expired ones, on their schedules. Ends with the
/// engine.
async fn upkeep(engine: Weak<LeaseEngine>) {
    let mut tick = tokio::time::interval(IDLE_SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut last_renewal, mut last_reclaim) = (Instant::now(), Instant::now() - RECLAIM_EVERY);
    let mut last_budgets = Instant::now() - BUDGETS_RELOAD;
    let mut last_prune = Instant::now();
    loop {
        tick.tick().await;
        let Some(engine) = engine.upgrade() else { return };
        if last_budgets.elapsed() >= BUDGETS_RELOAD {
            last_budgets = Instant::now();
            engine.budgets.forget_all();
            if let Err(error) = engine.measure_skew().await {
                tracing::warn!(%error, "reading the database's clock failed; budget windows keep the last reading");
            }
        }
        if last_renewal.elapsed() >= HEARTBEAT {
            match engine.renew().await {
                Ok(()) => last_renewal = Instant::now(),
                Err(error) => tracing::warn!(%error, "renewing credit leases failed"),
            }
        }
        if let Err(error) = engine.return_idle().await {
            tracing::warn!(%error, "giving back unused credit leases failed");
        }
        if last_reclaim.elapsed() >= RECLAIM_EVERY {
            last_reclaim = Instant::now();
            match engine.reclaim_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(freed = n, "freed expired credit leases (a gateway stopped renewing them)"),
                Err(error) => tracing::warn!(%error, "freeing expired credit leases failed"),
            }
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = Instant::now();
            if let Err(error) = engine.prune_batch_ids().await {
                tracing::warn!(%error, "forgetting old batch ids failed");
            }
        }
    }
}

#[cfg(test)]
mod tests;
