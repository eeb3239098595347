//! Periodic budgets in storage: their definitions (`budgets`), what each window used
//! (`budget_windows`), and [`BudgetDefs`], the credit engines' cache of which budgets a request
//! counts against.
//!
//! A request counts in the current window of each budget of its key and of its user. The credit
//! engines check those windows inside the hold, as they check the balance: on SQLite the window's
//! usage is in the engine's book; on PostgreSQL each gateway leases a slice of a window's
//! remaining credit, tokens and calls (`budget_leases`, as `credit_leases` for balances). Windows
//! are computed from the time ([`apihub_core::budget::window`]); no task resets them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use apihub_core::Money;
use apihub_core::budget::{
    Budget, BudgetId, BudgetLimits, BudgetOwner, BudgetSpec, BudgetState, BudgetStore, BudgetUsage, BudgetZone, Period,
    Window, window,
};
use apihub_core::credit::{MeterId, StoredMeter};
use apihub_core::policy::KeyId;
use apihub_core::store::StoreError;
use apihub_core::user::UserId;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::engine::Touched;
use super::schema::{budget_windows, budgets};
use super::{SqlStore, TxError, corrupt, now_millis, with_conn, write_tx};

/// A `budgets` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = budgets)]
pub(super) struct BudgetRow {
    id: i64,
    user_id: Option<i64>,
    key_id: Option<i64>,
    period: String,
    credit_limit: Option<i64>,
    token_limit: Option<i64>,
    call_limit: Option<i64>,
}

impl BudgetRow {
    pub(super) fn into_domain(self) -> Result<Budget, StoreError> {
        let owner = match (self.key_id, self.user_id) {
            (Some(key_id), _) => BudgetOwner::Key(key_id),
            (None, Some(user_id)) => BudgetOwner::User(user_id),
            (None, None) => return Err(corrupt("budget owner", self.id)),
        };
        let period = Period::parse(&self.period).ok_or_else(|| corrupt("budget period", &self.period))?;
        let limits = BudgetLimits {
            credit: self.credit_limit.map(Money::from_micros),
            tokens: self.token_limit,
            calls: self.call_limit,
        };
        Ok(Budget { id: self.id, owner, period, limits })
    }
}

/// The budgets of a request's key and user that the credit engines know, the time zone their
/// windows follow, and the clock they are read with.
#[derive(Debug)]
pub struct BudgetDefs {
    zone: BudgetZone,
    /// Added to the system clock (tests move budget time forward with [`Self::advance`]).
    offset: AtomicI64,
    /// The database's clock less this process's (PostgreSQL: every gateway counts a request in
    /// the same window, whatever its own clock says).
    skew: AtomicI64,
    defs: Mutex<HashMap<BudgetOwner, Arc<[Budget]>>>,
}

impl BudgetDefs {
    /// No budgets known yet; windows in `zone`.
    pub fn new(zone: BudgetZone) -> Arc<BudgetDefs> {
        Arc::new(BudgetDefs { zone, offset: AtomicI64::new(0), skew: AtomicI64::new(0), defs: Mutex::default() })
    }

    /// The time zone windows follow.
    pub fn zone(&self) -> &BudgetZone {
        &self.zone
    }

    /// Now, as budgets see it (Unix milliseconds): the database's clock where it was measured.
    pub fn now(&self) -> i64 {
        let offset = AtomicI64::load(&self.offset, Ordering::Relaxed);
        now_millis().saturating_add(offset).saturating_add(AtomicI64::load(&self.skew, Ordering::Relaxed))
    }

    /// Records how far the database's clock is ahead of this process's (milliseconds).
    pub(super) fn set_skew(&self, skew: i64) {
        self.skew.store(skew, Ordering::Relaxed);
    }

    /// Moves budget time forward (tests: a window ends without waiting for it).
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset.fetch_add(by, Ordering::Relaxed);
    }

    fn defs(&self) -> std::sync::MutexGuard<'_, HashMap<BudgetOwner, Arc<[Budget]>>> {
        self.defs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets what `owners` have (`budgets` holds all of their budgets; an owner with none gets
    /// none); returns the ids of their budgets that are gone.
    pub(super) fn store(&self, owners: &[BudgetOwner], budgets: &[Budget]) -> Vec<BudgetId> {
        let mut defs = self.defs();
        let mut gone = Vec::new();
        for owner in owners {
            let now: Arc<[Budget]> = budgets.iter().filter(|b| b.owner == *owner).copied().collect();
            if let Some(before) = defs.insert(*owner, now.clone()) {
                gone.extend(before.iter().filter(|b| !now.iter().any(|n| n.id == b.id)).map(|b| b.id));
            }
        }
        gone
    }

    /// Forgets every owner's budgets (each is read again on its next request).
    pub(super) fn forget_all(&self) {
        self.defs().clear();
    }

    /// The windows a request by `key_id` of `user_id` counts in at `now`, each with its stored
    /// form before any usage (limits, scope, period); `None` when the key's or the user's budgets
    /// are not known yet.
    pub(super) fn windows(&self, user_id: UserId, key_id: KeyId, now: i64) -> Option<Vec<(MeterId, StoredMeter)>> {
        let (key, user) = {
            let defs = self.defs();
            (defs.get(&BudgetOwner::Key(key_id))?.clone(), defs.get(&BudgetOwner::User(user_id))?.clone())
        };
        if key.is_empty() && user.is_empty() {
            return Some(Vec::new());
        }
        let meters = key.iter().chain(user.iter()).map(|budget| {
            let Window { start, end } = window(budget.period, &self.zone, now);
            let stored = StoredMeter {
                scope: budget.owner.scope(),
                period: budget.period,
                limits: budget.limits.as_array(),
                used: [0; 3],
            };
            (MeterId { budget: budget.id, start, end }, stored)
        });
        Some(meters.collect())
    }
}

impl SqlStore {
    /// The time zone and clock budgets use.
    pub fn budget_defs(&self) -> &Arc<BudgetDefs> {
        match &self.db {
            super::Db::Sqlite { engine, .. } => engine.budgets(),
            super::Db::Postgres { engine, .. } => engine.budgets(),
        }
    }
}

#[async_trait::async_trait]
impl BudgetStore for SqlStore {
    fn zone(&self) -> BudgetZone {
        *self.budget_defs().zone()
    }

    async fn budget_states(&self, owners: &[BudgetOwner]) -> Result<Vec<BudgetState>, StoreError> {
        if owners.is_empty() {
            return Ok(Vec::new());
        }
        let (user_ids, key_ids) = split_owners(owners);
        let rows: Vec<BudgetRow> = with_conn!(self, |conn| {
            Ok(budgets::table
                .filter(budgets::user_id.eq_any(&user_ids).or(budgets::key_id.eq_any(&key_ids)))
                .order(budgets::id)
                .select(BudgetRow::as_select())
                .load(conn)
                .await?)
        })?;
        let defs = self.budget_defs();
        let now = defs.now();
        let budgets: Vec<Budget> = rows.into_iter().map(BudgetRow::into_domain).collect::<Result<_, _>>()?;
        let windows: Vec<Window> = budgets.iter().map(|b| window(b.period, defs.zone(), now)).collect();
        let ids: Vec<i64> = budgets.iter().map(|b| b.id).collect();
        let used: Vec<(i64, i64, i64, i64, i64)> = with_conn!(self, |conn| {
            Ok(budget_windows::table
                .filter(budget_windows::budget_id.eq_any(&ids))
                .filter(budget_windows::window_end.gt(now))
                .filter(budget_windows::window_start.le(now))
                .select((
                    budget_windows::budget_id,
                    budget_windows::window_start,
                    budget_windows::credit_used,
                    budget_windows::tokens_used,
                    budget_windows::calls_used,
                ))
                .load(conn)
                .await?)
        })?;
        Ok(budgets
            .into_iter()
            .zip(windows)
            .map(|(budget, window)| {
                let row = used.iter().find(|(id, start, ..)| *id == budget.id && *start == window.start);
                let used = row.map_or_else(BudgetUsage::default, |(_, _, credit, tokens, calls)| BudgetUsage {
                    credit: Money::from_micros(*credit),
                    tokens: *tokens,
                    calls: *calls,
                });
                BudgetState { budget, window, used }
            })
            .collect())
    }

    /// On SQLite the credit engine applies the new limits to the current windows at once; on
    /// PostgreSQL the caller's `budgets` invalidation makes every gateway, this one included,
    /// give back its budget leases (as a key change's does for key leases).
    async fn set_budgets(&self, owner: BudgetOwner, specs: &[BudgetSpec]) -> Result<(), StoreError> {
        let specs = specs.to_vec();
        let now = now_millis();
        let (user_id, key_id) = match owner {
            BudgetOwner::User(id) => (Some(id), None),
            BudgetOwner::Key(id) => (None, Some(id)),
        };
        let write = async || {
            write_tx!(self, |conn| {
                let existing: Vec<(i64, String)> = budgets::table
                    .filter(budgets::user_id.eq(user_id).and(budgets::user_id.is_not_null()))
                    .or_filter(budgets::key_id.eq(key_id).and(budgets::key_id.is_not_null()))
                    .select((budgets::id, budgets::period))
                    .load(conn)
                    .await?;
                for (id, period) in &existing {
                    let kept = specs.iter().find(|spec| spec.period.as_str() == period);
                    match kept {
                        Some(spec) => {
                            let limits = spec.limits;
                            diesel::update(budgets::table.find(id))
                                .set((
                                    budgets::credit_limit.eq(limits.credit.map(Money::micros)),
                                    budgets::token_limit.eq(limits.tokens),
                                    budgets::call_limit.eq(limits.calls),
                                    budgets::updated_at.eq(now),
                                ))
                                .execute(conn)
                                .await?;
                        }
                        None => {
                            diesel::delete(budgets::table.find(id)).execute(conn).await?;
                        }
                    }
                }
                for spec in specs.iter().filter(|spec| !existing.iter().any(|(_, p)| p == spec.period.as_str())) {
                    diesel::insert_into(budgets::table)
                        .values((
                            budgets::user_id.eq(user_id),
                            budgets::key_id.eq(key_id),
                            budgets::period.eq(spec.period.as_str()),
                            budgets::credit_limit.eq(spec.limits.credit.map(Money::micros)),
                            budgets::token_limit.eq(spec.limits.tokens),
                            budgets::call_limit.eq(spec.limits.calls),
                            budgets::created_at.eq(now),
                            budgets::updated_at.eq(now),
                        ))
                        .execute(conn)
                        .await?;
                }
                Ok::<_, TxError>(())
            })
        };
        let touched = |_: &()| match owner {
            BudgetOwner::User(id) => Touched::user(id),
            BudgetOwner::Key(id) => Touched::key(id),
        };
        self.account_write(None, write, touched).await
    }
}

/// Owners split into user ids and key ids.
pub(super) fn split_owners(owners: &[BudgetOwner]) -> (Vec<UserId>, Vec<KeyId>) {
    let users = owners.iter().filter_map(|o| if let BudgetOwner::User(id) = o { Some(*id) } else { None });
    let keys = owners.iter().filter_map(|o| if let BudgetOwner::Key(id) = o { Some(*id) } else { None });
    (users.collect(), keys.collect())
}
