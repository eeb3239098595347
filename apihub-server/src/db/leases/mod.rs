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
//! - **Giving back.** A slice nobody used for a second is returned ([`IDLE_SWEEP`]); so is everything
//!   at shutdown. Every heartbeat also gives back what is left of leases whose entries left the book
//!   (a key or window forgotten while in use, a give-back the database refused). A gateway that
//!   cannot renew its leases for [`LEASE_TTL`] (measured with the database's clock) loses them: any
//!   gateway frees expired leases ([`RECLAIM_EVERY`]), so a crashed gateway's credit is free again
//!   within 25 s. This gateway stops using its leases [`VALIDITY_MARGIN`] before they can expire,
//!   measuring from before it asked for their renewal with its own monotonic clock, so no clock (its
//!   own or another gateway's) can make two gateways spend the same credit.
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

mod budget_windows;
mod give_back;
mod grant;
mod hold;
mod upkeep;
mod write_behind;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use apihub_core::billing::ReservationId;
use apihub_core::credit::{CreditBook, Lease, MeterId};
use apihub_core::policy::KeyId;
use apihub_core::store::StoreError;
use apihub_core::user::UserId;
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::deadpool::Pool;
use tokio::sync::{Notify, watch};

use super::budgets::BudgetDefs;
use super::{TxError, pool_error};
use upkeep::upkeep;
use write_behind::write_behind;

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
/// Most debits the writing task writes in one transaction: it lets the order lock go between
/// two, so that a lease's growth waits for one such batch at most.
const WRITER_BATCH: usize = 512;
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

/// What a gateway refused for credit or limits that other gateways lease asks them to give back
/// (through the invalidation channel): all but what their open holds take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nudge {
    /// A user's credit.
    User(UserId),
    /// A key's limits (its credit limit, token limit, remaining calls), by public id.
    Key(String),
}

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
    /// The last write of a batch failed: it may have committed ([`Self::settle_doubt`]).
    unsure: AtomicBool,
    /// The newest debit written.
    written: watch::Sender<u64>,
    /// When each lease of this node was last asked for (granted or renewed), by this process's
    /// clock: they are all certainly alive until the oldest of these plus `LEASE_TTL`, less
    /// `VALIDITY_MARGIN`.
    asked: Mutex<HashMap<Lease, Instant>>,
    /// Asks the other gateways to give back a user's unused lease (through Redis).
    nudge: std::sync::OnceLock<tokio::sync::mpsc::Sender<Nudge>>,
    /// Test only: the next batch commits, but is reported as failed (a lost acknowledgement).
    #[cfg(test)]
    lose_commit_ack: AtomicBool,
}

impl std::fmt::Debug for LeaseEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseEngine").field("node_id", &self.node_id()).finish_non_exhaustive()
    }
}

fn new_node_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

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
            unsure: AtomicBool::new(false),
            written: watch::Sender::new(0),
            asked: Mutex::default(),
            nudge: std::sync::OnceLock::new(),
            #[cfg(test)]
            lose_commit_ack: AtomicBool::new(false),
        })
    }

    /// Where to ask the other gateways for a user's unused lease, when this one is refused
    /// credit they lease (set once, at start-up, with Redis).
    pub fn nudge_with(&self, sender: tokio::sync::mpsc::Sender<Nudge>) {
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

    /// Runs `body` on a pooled connection.
    async fn run<T>(
        &self,
        body: impl AsyncFnOnce(&mut AsyncPgConnection) -> Result<T, TxError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.pool.get().await.map_err(pool_error)?;
        body(&mut conn).await.map_err(|e| e.0)
    }
}

fn ttl_millis() -> i64 {
    i64::try_from(LEASE_TTL.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
