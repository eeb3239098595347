//! The credit ledger on SQL: one conditional update of the account and one row, in one transaction.

use apihub_core::Money;
use apihub_core::ledger::{
    Account, Applied, LedgerError, LedgerOp, MAX_TOTAL, Replay, Transaction, TxType, check_order_refund,
    compare_replay, delta_of, plan,
};
use apihub_core::store::{LedgerStore, Page, PageRequest, StoreError};
use apihub_core::user::UserId;
use async_trait::async_trait;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::engine::{Debiting, Touched};
use super::schema::{transactions, users};
use super::users::UserRow;
use super::{SqlStore, corrupt, from_millis, load_page, now_millis, write_tx};

/// A `transactions` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = transactions)]
pub(super) struct TxRow {
    id: i64,
    user_id: i64,
    tx_type: String,
    amount: i64,
    balance_before: i64,
    balance_after: i64,
    order_no: Option<String>,
    description: Option<String>,
    created_at: i64,
}

#[derive(Insertable)]
#[diesel(table_name = transactions)]
pub(super) struct NewTxRow<'a> {
    pub(super) user_id: i64,
    pub(super) tx_type: &'static str,
    pub(super) amount: i64,
    pub(super) balance_before: i64,
    pub(super) balance_after: i64,
    pub(super) order_no: Option<&'a str>,
    pub(super) description: Option<&'a str>,
    pub(super) created_at: i64,
}

impl TxRow {
    pub(super) fn into_domain(self) -> Result<Transaction, StoreError> {
        Ok(Transaction {
            id: self.id,
            user_id: self.user_id,
            tx_type: TxType::parse(&self.tx_type).ok_or_else(|| corrupt("transaction type", &self.tx_type))?,
            amount: Money::from_micros(self.amount),
            balance_before: Money::from_micros(self.balance_before),
            balance_after: Money::from_micros(self.balance_after),
            order_no: self.order_no,
            description: self.description,
            created_at: from_millis(self.created_at),
        })
    }
}

/// Inside a write transaction: credits `$amount` micros to `$user_id` as a recharge and writes its
/// ledger row (order number `$order_no`, text `$description`). Evaluates to
/// `Result<(TxRow, Account), TxError>`; an overflow of the balance or of the running total is a
/// refusal that rolls the transaction back.
macro_rules! credit_recharge {
    ($conn:expr, $user_id:expr, $amount:expr, $order_no:expr, $description:expr) => {{
        let (conn, user_id, amount): (_, apihub_core::user::UserId, i64) = ($conn, $user_id, $amount);
        let result: Result<_, $crate::db::TxError> = async {
            let max = apihub_core::ledger::MAX_TOTAL.micros();
            let after: Option<(i64, i64, i64)> = diesel::update(
                users::table
                    .find(user_id)
                    .filter((users::token_balance + amount).le(max))
                    .filter((users::total_recharged + amount).le(max)),
            )
            .set((
                users::token_balance.eq(users::token_balance + amount),
                users::total_recharged.eq(users::total_recharged + amount),
                users::updated_at.eq($crate::db::now_millis()),
            ))
            .returning((users::token_balance, users::total_recharged, users::total_consumed))
            .get_result(&mut *conn)
            .await
            .optional()?;
            let Some((balance, total_recharged, total_consumed)) = after else {
                return Err(apihub_core::store::StoreError::Ledger(apihub_core::ledger::LedgerError::Overflow).into());
            };
            let row = $crate::db::ledger::NewTxRow {
                user_id,
                tx_type: apihub_core::ledger::TxType::Recharge.as_str(),
                amount,
                balance_before: balance - amount,
                balance_after: balance,
                order_no: Some($order_no),
                description: Some($description),
                created_at: $crate::db::now_millis(),
            };
            let inserted: $crate::db::ledger::TxRow = diesel::insert_into(transactions::table)
                .values(&row)
                .returning($crate::db::ledger::TxRow::as_returning())
                .get_result(&mut *conn)
                .await?;
            let account = apihub_core::ledger::Account {
                balance: apihub_core::Money::from_micros(balance),
                total_recharged: apihub_core::Money::from_micros(total_recharged),
                total_consumed: apihub_core::Money::from_micros(total_consumed),
            };
            Ok((inserted, account))
        }
        .await;
        result
    }};
}

pub(super) use credit_recharge;

impl SqlStore {
    async fn apply_once(&self, user_id: UserId, op: &LedgerOp) -> Result<Applied, StoreError> {
        let delta = delta_of(op)?;
        write_tx!(self, |conn| {
            if let Some(order_no) = op.order_no.as_deref() {
                let earlier: Option<TxRow> = transactions::table
                    .filter(transactions::tx_type.eq(op.tx_type.as_str()))
                    .filter(transactions::order_no.eq(order_no))
                    .select(TxRow::as_select())
                    .first(conn)
                    .await
                    .optional()?;
                if let Some(earlier) = earlier {
                    let earlier = earlier.into_domain()?;
                    return match compare_replay(&earlier, user_id, op) {
                        Replay::Same => {
                            let user = users::table.find(user_id).select(UserRow::as_select()).first(conn).await?;
                            Ok(Applied { transaction: earlier, account: user.into_domain()?.account, replayed: true })
                        }
                        Replay::Conflict => Err(StoreError::Conflict(format!(
                            "order_no `{order_no}` was already used for a different {} operation",
                            op.tx_type.as_str()
                        ))
                        .into()),
                    };
                }
                if op.tx_type == TxType::Refund {
                    // The unique (tx_type, order_no) index allows one refund per order, so nothing
                    // was refunded under this number yet.
                    let consumed: Option<i64> = transactions::table
                        .filter(transactions::user_id.eq(user_id))
                        .filter(transactions::tx_type.eq(TxType::Consume.as_str()))
                        .filter(transactions::order_no.eq(order_no))
                        .select(transactions::amount)
                        .first(conn)
                        .await
                        .optional()?;
                    let consumed = Money::from_micros(consumed.unwrap_or(0).saturating_neg());
                    check_order_refund(consumed, Money::ZERO, op.amount)?;
                }
            }

            let (d_balance, d_recharged, d_consumed) =
                (delta.balance.micros(), delta.recharged.micros(), delta.consumed.micros());
            let max = MAX_TOTAL.micros();
            // A debit may not take the balance below zero; a credit always applies, even to a balance
            // a settled overage left below zero.
            let floor = if d_balance < 0 { 0 } else { i64::MIN };
            // The WHERE clause is the whole concurrency story: the row is locked by the UPDATE, and the
            // condition is evaluated on the current balance, so no interleaving can overspend.
            let after: Option<(i64, i64, i64)> = diesel::update(
                users::table
                    .find(user_id)
                    // Open holds are spoken for: a debit may only take what is not held.
                    .filter((users::token_balance - users::reserved + d_balance).ge(floor))
                    .filter((users::token_balance + d_balance).le(max))
                    .filter((users::total_consumed + d_consumed).ge(0))
                    .filter((users::total_recharged + d_recharged).le(max)),
            )
            .set((
                users::token_balance.eq(users::token_balance + d_balance),
                users::total_recharged.eq(users::total_recharged + d_recharged),
                users::total_consumed.eq(users::total_consumed + d_consumed),
                users::updated_at.eq(now_millis()),
            ))
            .returning((users::token_balance, users::total_recharged, users::total_consumed))
            .get_result(conn)
            .await
            .optional()?;

            let Some((balance, total_recharged, total_consumed)) = after else {
                // Refused or unknown: let the pure planner say which rule the current account breaks.
                let row: Option<UserRow> =
                    users::table.find(user_id).select(UserRow::as_select()).first(conn).await.optional()?;
                let row = row.ok_or(StoreError::NotFound)?;
                let reserved = Money::from_micros(row.reserved);
                let account = row.into_domain()?.account;
                plan(&account, op)?;
                let available = account.balance.checked_sub(reserved).unwrap_or(Money::ZERO);
                if delta.balance.is_negative() && available.checked_add(delta.balance).is_none_or(Money::is_negative) {
                    let required = delta.balance.abs();
                    return Err(StoreError::Ledger(LedgerError::InsufficientBalance { available, required }).into());
                }
                return Err(
                    StoreError::Internal("ledger update refused an operation the planner accepts".into()).into()
                );
            };
            let account = Account {
                balance: Money::from_micros(balance),
                total_recharged: Money::from_micros(total_recharged),
                total_consumed: Money::from_micros(total_consumed),
            };
            let row = NewTxRow {
                user_id,
                tx_type: op.tx_type.as_str(),
                amount: d_balance,
                balance_before: balance - d_balance,
                balance_after: balance,
                order_no: op.order_no.as_deref(),
                description: op.description.as_deref(),
                created_at: now_millis(),
            };
            let inserted = diesel::insert_into(transactions::table)
                .values(&row)
                .returning(TxRow::as_returning())
                .get_result(conn)
                .await?;
            Ok(Applied { transaction: inserted.into_domain()?, account, replayed: false })
        })
    }
}

#[async_trait]
impl LedgerStore for SqlStore {
    async fn apply(&self, user_id: UserId, op: LedgerOp) -> Result<Applied, StoreError> {
        let write = async || match self.apply_once(user_id, &op).await {
            // Two concurrent calls with one order number: the loser hit the unique index and rolled
            // back whole. Once more, it finds the winner's row and answers replay or conflict.
            Err(StoreError::Conflict(_)) if op.order_no.is_some() => self.apply_once(user_id, &op).await,
            other => other,
        };
        // A debit may only take credit no request holds: on SQLite the engine holds it meanwhile.
        let debiting = delta_of(&op)
            .ok()
            .filter(|delta| delta.balance.is_negative())
            .map(|delta| Debiting { user_id, amount: delta.balance.abs() });
        self.account_write(debiting, write, |_| Touched::user(user_id)).await
    }

    async fn transactions(
        &self,
        user_id: Option<UserId>,
        tx_type: Option<TxType>,
        page: PageRequest,
    ) -> Result<Page<Transaction>, StoreError> {
        macro_rules! filtered {
            () => {{
                let mut q = transactions::table.into_boxed();
                if let Some(user_id) = user_id {
                    q = q.filter(transactions::user_id.eq(user_id));
                }
                if let Some(tx_type) = tx_type {
                    q = q.filter(transactions::tx_type.eq(tx_type.as_str()));
                }
                q
            }};
        }
        load_page!(self, page, filtered!(), transactions::id.desc(), TxRow)
    }
}
