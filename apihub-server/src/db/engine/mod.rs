//! The credit engine on SQLite: holds, settlements and releases in memory, their durable effects
//! written behind the requests, in batches.
//!
//! Only one process may write a SQLite file, so this process is the only one spending its users'
//! credit: the [`CreditBook`] (apihub-core) holds every user's funds and every key's counters once
//! used, and a request's hold, settlement and release never touch the database. Settlements
//! queue [`Debit`]s; a task writes the queue every [`WINDOW`] (or at once when a reader needs it)
//! in one transaction: one `UPDATE` per touched user and key, and the ledger's consume rows. A
//! batch that cannot be written stays queued and is tried again with a growing pause, so no
//! settlement is ever lost while the process lives; while [`MAX_UNWRITTEN`] debits wait, new holds
//! are refused (503). At shutdown the queue is written out ([`Engine::flush`]). Holds are not
//! written at all: a restart frees them at once.
//!
//! What a `kill -9` can lose is the unwritten queue: at most one window of settlements, always in
//! the customer's favour (the requests were served and are not charged), never an overspend.
//!
//! Consistency with the rest of the store:
//! - every read through the store first waits for the debits settled so far to be written
//!   ([`Engine::caught_up`], called by `with_conn!`), so nobody reads a balance older than a
//!   settlement they were told of;
//! - every account write that changes a balance or a key's limits or counters (a recharge, a
//!   redemption, a key update, …) runs under [`Engine::account_write`]: the queue is written
//!   first, the change is applied, and the touched rows are read back into the book, all under the
//!   `order` lock that batch writes and first loads also take, so a row read back never contains
//!   a debit that is still counted as unwritten.
//!
//! [`Debit`]: apihub_core::credit::Debit

mod account;
mod batch;
mod load;
mod write_behind;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use apihub_core::billing::{BillingError, NewReservation, ReservationId, Settled, Settlement, UserFunds};
use apihub_core::credit::{CreditBook, HoldError, MeterId};
use apihub_core::policy::KeyId;
use apihub_core::store::StoreError;
use apihub_core::user::UserId;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use tokio::sync::{Notify, watch};

use super::TxError;
use super::budgets::BudgetDefs;
use super::schema::{api_keys, users};
use super::writer::SqliteWriter;
use write_behind::{Scratch, write_behind};

pub(crate) use account::{Debiting, Touched};
pub(super) use batch::{
    ConsumeChunkInsert, ConsumeColumns, ConsumeRow, ConsumeRows, batch_totals, consume_rows, meter_totals,
};

/// How long a settlement may wait before it is written with the others of its window.
pub const WINDOW: Duration = Duration::from_millis(50);
/// Most debits written in one transaction.
const MAX_BATCH: usize = 4_096;
/// Unwritten debits beyond which new holds are refused until the queue shrinks.
pub const MAX_UNWRITTEN: usize = 100_000;
/// Longest a read waits for the settlements before it to be written.
const READ_WAIT: Duration = Duration::from_secs(5);
/// Longest pause between two attempts at a batch that failed.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// The engine; see the [module docs](self).
pub struct Engine {
    book: Mutex<CreditBook>,
    /// The budgets of the users and keys in the book.
    budgets: Arc<BudgetDefs>,
    writer: Arc<SqliteWriter>,
    /// Held while a batch is written, a row is loaded, or an account write is applied and read
    /// back: stored values and unwritten debits never overlap. It keeps the batch writer's buffers.
    order: tokio::sync::Mutex<Scratch>,
    /// Wakes the writing task: a first debit queued, or a reader waiting.
    wake: Arc<Notify>,
    /// A reader waits: write now, without waiting for the window.
    urgent: AtomicBool,
    /// The newest debit written.
    written: watch::Sender<u64>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("written", &*self.written.borrow()).finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine writing through `writer`, and its writing task (which ends with the engine).
    ///
    /// Holds left in the database by an earlier version of the gateway (which kept them there)
    /// are freed here: this process is the only one that could still be using them.
    pub(crate) async fn start(writer: Arc<SqliteWriter>, budgets: Arc<BudgetDefs>) -> Result<Arc<Engine>, StoreError> {
        writer
            .transaction(async |conn| -> Result<(), TxError> {
                diesel::delete(super::schema::reservations::table).execute(conn).await?;
                diesel::update(users::table.filter(users::reserved.ne(0)))
                    .set(users::reserved.eq(0))
                    .execute(conn)
                    .await?;
                diesel::update(
                    api_keys::table.filter(
                        api_keys::tokens_reserved
                            .ne(0)
                            .or(api_keys::quota_reserved.ne(0))
                            .or(api_keys::calls_reserved.ne(0)),
                    ),
                )
                .set((api_keys::tokens_reserved.eq(0), api_keys::quota_reserved.eq(0), api_keys::calls_reserved.eq(0)))
                .execute(conn)
                .await?;
                Ok(())
            })
            .await
            .map_err(|e| e.0)?;
        let engine = Arc::new(Engine {
            book: Mutex::new(CreditBook::default()),
            budgets,
            writer,
            order: tokio::sync::Mutex::new(Scratch::default()),
            wake: Arc::new(Notify::new()),
            urgent: AtomicBool::new(false),
            written: watch::Sender::new(0),
        });
        // Its writes block the thread they run on: a thread of its own.
        super::writer::spawn_on_own_thread(
            "apihub-write-behind",
            write_behind(Arc::downgrade(&engine), engine.wake.clone()),
        );
        Ok(engine)
    }

    fn book(&self) -> MutexGuard<'_, CreditBook> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The budgets' time zone, clock and definitions.
    pub(crate) fn budgets(&self) -> &Arc<BudgetDefs> {
        &self.budgets
    }

    /// Takes a hold in memory, loading the user, the key and their budgets' windows on first use.
    pub(crate) async fn reserve(&self, new: &NewReservation) -> Result<ReservationId, BillingError> {
        if self.book().unwritten() >= MAX_UNWRITTEN {
            self.wake_now();
            return Err(BillingError::Store(StoreError::Unavailable("settlements are waiting to be written".into())));
        }
        let now = self.budgets.now();
        // A first load brings the user, the key and their budgets; each window is loaded once.
        for _ in 0..8 {
            let Some(meters) = self.budgets.windows(new.user_id, new.key_id, now) else {
                self.load(&[new.user_id], &[new.key_id]).await?;
                continue;
            };
            let ids: Vec<MeterId> = meters.iter().map(|(id, _)| *id).collect();
            let missing = match self.book().hold_metered(new, &ids) {
                Ok(id) => return Ok(id),
                Err(HoldError::Refused(error)) => return Err(error),
                Err(missing) => missing,
            };
            match missing {
                HoldError::UserNotLoaded(user_id) => self.load(&[user_id], &[]).await?,
                HoldError::KeyNotLoaded(key_id) => self.load(&[], &[key_id]).await?,
                HoldError::MeterNotLoaded(id) => {
                    let template = meters.iter().find(|(m, _)| *m == id).map(|(_, stored)| *stored);
                    self.load_meter(id, template.ok_or(StoreError::NotFound)?).await?;
                }
                HoldError::Refused(error) => return Err(error),
            }
        }
        Err(BillingError::Store(StoreError::NotFound))
    }

    /// Closes a hold with its whole charge and queues the debit.
    pub(crate) fn settle(&self, id: ReservationId, settlement: &Settlement) -> Result<Settled, BillingError> {
        let (settled, first) = {
            let mut book = self.book();
            let (settled, _) = book.settle(id, settlement)?;
            (settled, book.unwritten() == 1)
        };
        if first {
            self.wake.notify_one();
        }
        Ok(settled)
    }

    /// Frees a hold.
    pub(crate) fn release(&self, id: ReservationId) -> Result<(), BillingError> {
        self.book().release(id)
    }

    /// A user's funds as the book has them (settlements included, written or not), or `None`
    /// when the user was never used here.
    pub(crate) fn funds(&self, user_id: UserId) -> Option<UserFunds> {
        self.book().funds(user_id)
    }

    /// What open holds take from a key: (tokens, credit in micros, calls), or `None` when the key
    /// was never used here.
    pub(crate) fn key_holds(&self, key_id: KeyId) -> Option<(i64, i64, i64)> {
        let counters = self.book().key_counters(key_id)?;
        Some((counters.tokens_reserved, counters.quota_reserved.micros(), counters.calls_reserved))
    }

    /// Holds open now.
    pub(crate) fn open_holds(&self) -> usize {
        self.book().open_holds()
    }
}
