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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use apihub_core::Money;
use apihub_core::billing::{BillingError, NewReservation, ReservationId, Settled, Settlement, UserFunds};
use apihub_core::budget::BudgetOwner;
use apihub_core::credit::{CreditBook, Debit, HoldError, MeterId, StoredMeter};
use apihub_core::ledger::{MAX_DESCRIPTION_LEN, TxType};
use apihub_core::policy::KeyId;
use apihub_core::store::StoreError;
use apihub_core::user::UserId;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use tokio::sync::{Notify, watch};

use super::billing::KeyLimitsRow;
use super::budgets::{BudgetDefs, BudgetRow};
use super::cached::Cached;
use super::schema::{api_keys, budget_windows, budgets, transactions, users};
use super::writer::SqliteWriter;
use super::{TxError, now_millis, saturating_add};

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
    /// back: stored values and unwritten debits never overlap.
    order: tokio::sync::Mutex<()>,
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

/// A consume row of the ledger, as a batch of settlements writes it.
#[derive(Insertable, Clone)]
#[diesel(table_name = transactions)]
pub(super) struct ConsumeRow<'a> {
    user_id: i64,
    tx_type: &'a str,
    amount: i64,
    balance_before: i64,
    balance_after: i64,
    order_no: String,
    description: String,
    created_at: i64,
}

impl ConsumeRow<'_> {
    pub(super) fn order_no(&self) -> &str {
        &self.order_no
    }

    /// Numbers the row as its debit's request id with the debit's sequence number appended (as
    /// [`consume_rows`] numbers a request id repeated within `batch`): its request id was in the
    /// ledger already.
    pub(super) fn renumber(&mut self, batch: &[Debit]) {
        let seq = batch.iter().find(|d| d.request_id == self.order_no).map_or(0, |d| d.seq);
        self.order_no = format!("{}#{seq}", self.order_no);
    }
}

/// What an account write touched, to read back into the book.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    /// Users whose balance may have changed.
    pub users: Vec<UserId>,
    /// Keys whose limits or counters may have changed.
    pub keys: Vec<KeyId>,
    /// Keys deleted.
    pub deleted_keys: Vec<KeyId>,
}

/// A debit an account write is about to make: held in the book while it is written, so it can
/// only take credit that no request holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Debiting {
    /// Whose balance.
    pub user_id: UserId,
    /// How much.
    pub amount: Money,
}

impl Touched {
    /// One user's balance.
    pub(crate) fn user(user_id: UserId) -> Self {
        Touched { users: vec![user_id], ..Touched::default() }
    }

    /// One key's row.
    pub(crate) fn key(key_id: KeyId) -> Self {
        Touched { keys: vec![key_id], ..Touched::default() }
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
            order: tokio::sync::Mutex::new(()),
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

    /// Loads a budget window's usage (none yet: zero) into the book, under the order lock.
    async fn load_meter(&self, id: MeterId, template: StoredMeter) -> Result<(), StoreError> {
        let _order = self.order.lock().await;
        if self.book().has_meter(id) {
            return Ok(());
        }
        let used: Option<(i64, i64, i64)> = self
            .writer
            .transaction(async |conn| -> Result<_, TxError> {
                Ok(budget_windows::table
                    .find((id.budget, id.start))
                    .select((budget_windows::credit_used, budget_windows::tokens_used, budget_windows::calls_used))
                    .first(conn)
                    .await
                    .optional()?)
            })
            .await
            .map_err(|e| e.0)?;
        let used = used.map_or([0; 3], |(credit, tokens, calls)| [credit, tokens, calls]);
        self.book().store_meter(id, StoredMeter { used, ..template });
        Ok(())
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

    /// Waits until every debit settled so far is written (at once when none waits).
    pub(crate) async fn caught_up(&self) {
        let target = self.book().last_seq();
        if *self.written.borrow() >= target {
            return;
        }
        self.wake_now();
        let mut written = self.written.subscribe();
        // Bounded: while the database refuses writes, a read goes ahead (and sees the balance
        // without the settlements still queued) rather than hang.
        let _ = tokio::time::timeout(READ_WAIT, written.wait_for(|written| *written >= target)).await;
    }

    /// Writes every debit queued so far (shutdown, tests).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let _order = self.order.lock().await;
        self.write_queued().await
    }

    /// Writes the debits queued when it is called, not those settled meanwhile (under load the
    /// queue never empties, and the order lock must not be held for ever). The caller holds the
    /// order lock.
    async fn write_queued(&self) -> Result<(), StoreError> {
        let last = self.book().last_seq();
        loop {
            let mut batch = self.book().to_write(MAX_BATCH);
            batch.retain(|debit| debit.seq <= last);
            if batch.is_empty() {
                return Ok(());
            }
            self.write(&batch).await?;
        }
    }

    fn wake_now(&self) {
        self.urgent.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Runs an account write that changes balances or key rows: the queue is written first, then
    /// `write`, then what it touched is read back into the book; see the [module docs](self).
    pub(crate) async fn account_write<T>(
        &self,
        debiting: Option<Debiting>,
        write: impl AsyncFnOnce() -> Result<T, StoreError>,
        touched: impl FnOnce(&T) -> Touched,
    ) -> Result<T, StoreError> {
        if let Some(Debiting { user_id, .. }) = debiting {
            self.load(&[user_id], &[]).await.map_err(billing_to_store)?;
        }
        let _order = self.order.lock().await;
        self.write_queued().await?;
        if let Some(Debiting { user_id, amount }) = debiting {
            match self.book().hold_funds(user_id, amount) {
                Ok(()) => {}
                Err(HoldError::Refused(error)) => return Err(billing_to_store(error)),
                // Loaded above, and users are never forgotten.
                Err(_) => return Err(StoreError::NotFound),
            }
        }
        let value = write().await;
        if let Some(Debiting { user_id, amount }) = debiting {
            self.book().release_funds(user_id, amount);
        }
        let value = value?;
        let touched = touched(&value);
        {
            let mut book = self.book();
            for key_id in &touched.deleted_keys {
                book.forget_key(*key_id);
            }
        }
        let users: Vec<UserId> = touched.users.into_iter().filter(|id| self.book().has_user(*id)).collect();
        let keys: Vec<KeyId> = touched.keys.into_iter().filter(|id| self.book().has_key(*id)).collect();
        self.read_back(&users, &keys).await?;
        Ok(value)
    }

    /// Loads users and keys on first use, under the order lock.
    async fn load(&self, user_ids: &[UserId], key_ids: &[KeyId]) -> Result<(), BillingError> {
        let _order = self.order.lock().await;
        let users: Vec<UserId> = user_ids.iter().copied().filter(|id| !self.book().has_user(*id)).collect();
        let keys: Vec<KeyId> = key_ids.iter().copied().filter(|id| !self.book().has_key(*id)).collect();
        let found = self.read_back(&users, &keys).await?;
        if found < users.len() + keys.len() {
            return Err(BillingError::Store(StoreError::NotFound));
        }
        Ok(())
    }

    /// Reads rows into the book (the caller holds the order lock); returns how many were found.
    async fn read_back(&self, user_ids: &[UserId], key_ids: &[KeyId]) -> Result<usize, StoreError> {
        if user_ids.is_empty() && key_ids.is_empty() {
            return Ok(0);
        }
        let (user_ids, key_ids) = (user_ids.to_vec(), key_ids.to_vec());
        let (balances, keys, budget_rows) = self
            .writer
            .transaction(async |conn| -> Result<_, TxError> {
                let balances: Vec<(i64, i64)> = users::table
                    .filter(users::id.eq_any(&user_ids))
                    .select((users::id, users::token_balance))
                    .load(conn)
                    .await?;
                let keys: Vec<(i64, KeyLimitsRow)> = api_keys::table
                    .filter(api_keys::id.eq_any(&key_ids))
                    .select((api_keys::id, KeyLimitsRow::as_select()))
                    .load(conn)
                    .await?;
                let budget_rows: Vec<BudgetRow> = budgets::table
                    .filter(budgets::user_id.eq_any(&user_ids).or(budgets::key_id.eq_any(&key_ids)))
                    .select(BudgetRow::as_select())
                    .load(conn)
                    .await?;
                Ok((balances, keys, budget_rows))
            })
            .await
            .map_err(|e| e.0)?;
        let found = balances.len() + keys.len();
        let budgets: Vec<_> = budget_rows.into_iter().map(BudgetRow::into_domain).collect::<Result<_, _>>()?;
        let owners: Vec<BudgetOwner> = balances
            .iter()
            .map(|(id, _)| BudgetOwner::User(*id))
            .chain(keys.iter().map(|(id, _)| BudgetOwner::Key(*id)))
            .collect();
        let gone = self.budgets.store(&owners, &budgets);
        let mut book = self.book();
        // Windows in the book keep their usage and take the new limits; a removed budget's go.
        book.forget_budgets(&gone);
        for budget in &budgets {
            book.set_meter_limits(budget.id, budget.limits.as_array());
        }
        for (user_id, balance) in balances {
            book.store_user(user_id, Money::from_micros(balance));
        }
        for (key_id, row) in keys {
            book.store_key(key_id, row.stored());
        }
        Ok(found)
    }

    /// Writes `batch` (the oldest queued debits) in one transaction, then marks it written.
    /// The caller holds the order lock. Unlike PostgreSQL's (`lease_writes`), this write needs
    /// no batch record: the transaction commits in this process, on the calling thread, and a
    /// failed `COMMIT` is rolled back before it is reported, so a batch reported failed was
    /// never written, and nothing awaits between the commit and marking the batch written.
    async fn write(&self, batch: &[Debit]) -> Result<(), StoreError> {
        let rows = batch.to_vec();
        self.writer
            .transaction(async |conn| -> Result<(), TxError> { write_debits(conn, &rows).await })
            .await
            .map_err(|e| {
                tracing::error!(error = %e.0, debits = batch.len(), "writing settlements failed; they stay queued");
                e.0
            })?;
        {
            let mut book = self.book();
            book.written(batch);
            book.forget_ended_meters(self.budgets.now());
        }
        if let Some(last) = batch.last() {
            self.written.send_replace(last.seq);
        }
        Ok(())
    }
}

/// A refused admin debit in the ledger's terms (402 `insufficient_balance`, naming what is
/// available once open holds are counted).
fn billing_to_store(error: BillingError) -> StoreError {
    match error {
        BillingError::InsufficientBalance { available, required } => {
            StoreError::Ledger(apihub_core::ledger::LedgerError::InsufficientBalance { available, required })
        }
        BillingError::Store(error) => error,
        other => StoreError::Internal(other.to_string()),
    }
}

/// A key's totals in a batch: charge (micros), tokens, calls, successful calls.
pub(super) type KeyTotal = (KeyId, [i64; 4]);

/// A batch's users and keys in the order first seen, with their totals: per user the charge;
/// per key the charge, tokens, calls and successful calls.
pub(super) fn batch_totals(batch: &[Debit]) -> (Vec<(UserId, i64)>, Vec<KeyTotal>) {
    let mut user_totals: Vec<(UserId, i64)> = Vec::new();
    let mut key_totals: Vec<KeyTotal> = Vec::new();
    for debit in batch {
        match user_totals.iter_mut().find(|(id, _)| *id == debit.user_id) {
            Some((_, total)) => *total = total.saturating_add(debit.charge.micros()),
            None => user_totals.push((debit.user_id, debit.charge.micros())),
        }
        let add = [debit.charge.micros(), debit.tokens, 1, i64::from(debit.success)];
        match key_totals.iter_mut().find(|(id, _)| *id == debit.key_id) {
            Some((_, total)) => total.iter_mut().zip(add).for_each(|(t, a)| *t = t.saturating_add(a)),
            None => key_totals.push((debit.key_id, add)),
        }
    }
    (user_totals, key_totals)
}

/// A user's consume rows for a batch, with running balances ending at `balance` (the balance
/// after the batch's `total`). A request id already in the ledger (`taken`; a library caller
/// reusing ids) gets the debit's sequence number appended.
pub(super) fn consume_rows(
    batch: &[Debit],
    user_id: UserId,
    balance: i64,
    total: i64,
    taken: &mut std::collections::HashSet<String>,
    now: i64,
) -> Vec<ConsumeRow<'static>> {
    let mut running = balance.saturating_add(total);
    let mut rows = Vec::new();
    for debit in batch.iter().filter(|d| d.user_id == user_id && d.charge.is_positive()) {
        let charge = debit.charge.micros();
        let order_no = if taken.insert(debit.request_id.clone()) {
            debit.request_id.clone()
        } else {
            format!("{}#{}", debit.request_id, debit.seq)
        };
        rows.push(ConsumeRow {
            user_id,
            tx_type: TxType::Consume.as_str(),
            amount: -charge,
            balance_before: running,
            balance_after: running.saturating_sub(charge),
            order_no,
            description: debit.description.chars().take(MAX_DESCRIPTION_LEN).collect(),
            created_at: now,
        });
        running = running.saturating_sub(charge);
    }
    rows
}

/// One batch's statements: per user one `UPDATE` (its consume rows' running balances follow from
/// the balance it returns), per key one `UPDATE`, and the consume rows in multi-row `INSERT`s.
async fn write_debits(conn: &mut super::writer::WriteConn, batch: &[Debit]) -> Result<(), TxError> {
    let now = now_millis();
    let (user_totals, key_totals) = batch_totals(batch);
    // A request id is the consume row's order number, unique per kind: one repeated within the
    // batch is told apart here, one already in the ledger (a library caller reusing ids) by the
    // insert's conflict below; either gets the debit's sequence number appended rather than stop
    // the batch, which would never be written.
    let mut taken = std::collections::HashSet::new();
    let mut rows = Vec::new();
    for (user_id, total) in user_totals {
        let balance: Option<i64> = diesel::update(users::table.find(user_id))
            .set((
                users::token_balance.eq(users::token_balance - total),
                users::total_consumed.eq(saturating_add!(users::total_consumed, total)),
                users::updated_at.eq(now),
            ))
            .returning(users::token_balance)
            .get_result(conn)
            .await
            .optional()?;
        let Some(balance) = balance else { continue };
        rows.extend(consume_rows(batch, user_id, balance, total, &mut taken, now));
    }
    for (key_id, [quota, tokens, calls, successes]) in key_totals {
        // Successes use up remaining calls, stopping at zero (an administrator may have lowered the
        // counter meanwhile); NULL, no limit, stays NULL.
        let remaining =
            diesel::dsl::case_when(api_keys::remaining_calls.gt(successes), api_keys::remaining_calls - successes)
                .when(
                    api_keys::remaining_calls.is_not_null(),
                    Some(0_i64).into_sql::<diesel::sql_types::Nullable<diesel::sql_types::BigInt>>(),
                )
                .otherwise(api_keys::remaining_calls);
        diesel::update(api_keys::table.find(key_id))
            .set((
                api_keys::quota_used.eq(saturating_add!(api_keys::quota_used, quota)),
                api_keys::tokens_used.eq(saturating_add!(api_keys::tokens_used, tokens)),
                api_keys::calls_total.eq(api_keys::calls_total + calls),
                api_keys::calls_succeeded.eq(api_keys::calls_succeeded + successes),
                api_keys::remaining_calls.eq(remaining),
                api_keys::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
    }
    // One prepared INSERT per row, inside the batch's one transaction (diesel's multi-row insert
    // is not available on this connection type for SQLite).
    for row in &mut rows {
        let insert = diesel::insert_into(transactions::table).values(&*row);
        let inserted = Cached(insert.on_conflict((transactions::tx_type, transactions::order_no)).do_nothing())
            .execute(conn)
            .await?;
        if inserted == 0 {
            row.renumber(batch);
            Cached(diesel::insert_into(transactions::table).values(&*row)).execute(conn).await?;
        }
    }
    let meters = meter_totals(batch);
    if !meters.is_empty() {
        let ids: Vec<i64> = meters.iter().map(|(id, _)| id.budget).collect();
        let live: Vec<i64> = budgets::table.filter(budgets::id.eq_any(&ids)).select(budgets::id).load(conn).await?;
        for (id, [credit, tokens, calls]) in meters.into_iter().filter(|(id, _)| live.contains(&id.budget)) {
            diesel::insert_into(budget_windows::table)
                .values((
                    budget_windows::budget_id.eq(id.budget),
                    budget_windows::window_start.eq(id.start),
                    budget_windows::window_end.eq(id.end),
                    budget_windows::credit_used.eq(credit),
                    budget_windows::tokens_used.eq(tokens),
                    budget_windows::calls_used.eq(calls),
                ))
                .on_conflict((budget_windows::budget_id, budget_windows::window_start))
                .do_update()
                .set((
                    budget_windows::credit_used.eq(saturating_add!(budget_windows::credit_used, credit)),
                    budget_windows::tokens_used.eq(saturating_add!(budget_windows::tokens_used, tokens)),
                    budget_windows::calls_used.eq(budget_windows::calls_used + calls),
                ))
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}

/// A batch's budget windows, with what it adds to each: credit (micros), tokens, successful calls.
pub(super) fn meter_totals(batch: &[Debit]) -> Vec<(MeterId, [i64; 3])> {
    let mut totals: Vec<(MeterId, [i64; 3])> = Vec::new();
    for debit in batch {
        let add = [debit.charge.micros(), debit.tokens, i64::from(debit.success)];
        for id in &debit.meters {
            match totals.iter_mut().find(|(m, _)| m == id) {
                Some((_, total)) => total.iter_mut().zip(add).for_each(|(t, a)| *t = t.saturating_add(a)),
                None => totals.push((*id, add)),
            }
        }
    }
    totals.sort_unstable_by_key(|(id, _)| *id);
    totals
}

/// The writing task: waits for a first debit, lets the window fill (unless a reader waits), writes
/// the queue, and on failure tries again with a growing pause. Ends with the engine.
async fn write_behind(engine: Weak<Engine>, wake: Arc<Notify>) {
    let mut pause = WINDOW;
    loop {
        let woken = wake.notified();
        let (pending, urgent) = match engine.upgrade() {
            Some(engine) => (engine.book().unwritten() > 0, engine.urgent.swap(false, Ordering::AcqRel)),
            None => return,
        };
        if !pending {
            // Re-checked now and then: the engine may have gone meanwhile.
            let _ = tokio::time::timeout(WINDOW * 20, woken).await;
            continue;
        }
        if !urgent {
            // Let the window fill; a reader waiting cuts it short.
            let _ = tokio::time::timeout(pause, woken).await;
        }
        let Some(engine) = engine.upgrade() else { return };
        engine.urgent.store(false, Ordering::Release);
        match engine.flush().await {
            Ok(()) => pause = WINDOW,
            Err(_) => pause = (pause * 2).min(MAX_PAUSE),
        }
    }
}
