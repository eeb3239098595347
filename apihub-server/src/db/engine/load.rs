//! Reading rows into the book: users, keys and their budgets on first use or after an account
//! write, and a budget window's usage on its first hold.

use apihub_core::Money;
use apihub_core::billing::BillingError;
use apihub_core::budget::BudgetOwner;
use apihub_core::credit::{MeterId, StoredMeter};
use apihub_core::policy::KeyId;
use apihub_core::store::StoreError;
use apihub_core::user::UserId;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::Engine;
use crate::db::TxError;
use crate::db::billing::KeyLimitsRow;
use crate::db::budgets::BudgetRow;
use crate::db::schema::{api_keys, budget_windows, budgets, users};

impl Engine {
    /// Loads a budget window's usage (none yet: zero) into the book, under the order lock.
    pub(super) async fn load_meter(&self, id: MeterId, template: StoredMeter) -> Result<(), StoreError> {
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

    /// Loads users and keys on first use, under the order lock.
    pub(super) async fn load(&self, user_ids: &[UserId], key_ids: &[KeyId]) -> Result<(), BillingError> {
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
    pub(super) async fn read_back(&self, user_ids: &[UserId], key_ids: &[KeyId]) -> Result<usize, StoreError> {
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
}
