//! [`LedgerStore`] for [`MemoryStore`]: the ledger math of [`apihub_core::ledger`] applied under
//! the store's one lock, with `(tx_type, order_no)` unique, and debits limited to what open holds
//! (see [`super::billing`]) leave of the balance.

use async_trait::async_trait;
use chrono::Utc;

use apihub_core::Money;
use apihub_core::ledger::{
    Applied, LedgerError, LedgerOp, Replay, Transaction, Transition, TxType, check_order_refund, compare_replay,
    delta_of, plan,
};
use apihub_core::store::{LedgerStore, Page, PageRequest, StoreError};
use apihub_core::user::UserId;

use super::{MemoryStore, State, next_id, page_of};

impl State {
    /// The row holding `(tx_type, order_no)`, if any.
    pub(super) fn order(&self, tx_type: TxType, order_no: &str) -> Option<&Transaction> {
        let index = self.orders.get(&(tx_type, order_no.to_owned()))?;
        self.transactions.get(*index)
    }

    /// Checks a refund naming `order_no` against that order's consume by the same user, less the
    /// refunds already made under it; no such consume leaves nothing to refund.
    fn check_refund_of_order(&self, user_id: UserId, order_no: &str, refund: Money) -> Result<(), LedgerError> {
        let consumed = self.order(TxType::Consume, order_no).filter(|row| row.user_id == user_id);
        let consumed = consumed.map_or(Money::ZERO, |row| row.amount.abs());
        let refunded = self
            .transactions
            .iter()
            .filter(|row| row.user_id == user_id && row.tx_type == TxType::Refund)
            .filter(|row| row.order_no.as_deref() == Some(order_no))
            .map(|row| row.amount)
            .sum();
        check_order_refund(consumed, refunded, refund)
    }

    /// [`LedgerStore::apply`], with the lock held: replay or refuse by order number, plan, write.
    fn apply(&mut self, user_id: UserId, op: LedgerOp) -> Result<Applied, StoreError> {
        // A malformed operation is refused whatever is stored.
        let delta = delta_of(&op)?;
        let row = self.user_mut(user_id)?;
        let (account, funds) = (row.user.account, row.funds());
        if let Some(order_no) = &op.order_no {
            if let Some(first) = self.order(op.tx_type, order_no) {
                return match compare_replay(first, user_id, &op) {
                    Replay::Same => Ok(Applied { transaction: first.clone(), account, replayed: true }),
                    Replay::Conflict => Err(StoreError::Conflict(format!(
                        "order_no `{order_no}` was already used for a different {} operation",
                        op.tx_type.as_str()
                    ))),
                };
            }
            if op.tx_type == TxType::Refund {
                self.check_refund_of_order(user_id, order_no, op.amount)?;
            }
        }
        // Open holds are spoken for: a debit may take only what they leave.
        let debit = if delta.balance.is_negative() { delta.balance.abs() } else { Money::ZERO };
        if debit > funds.available() {
            return Err(LedgerError::InsufficientBalance { available: funds.available(), required: debit }.into());
        }
        let transition = plan(&account, &op)?;
        let transaction = self.write(user_id, op, &transition)?;
        Ok(Applied { transaction, account: transition.after, replayed: false })
    }

    /// Writes a planned operation: the user's account after it, and its row, indexed by order number.
    pub(super) fn write(
        &mut self,
        user_id: UserId,
        op: LedgerOp,
        transition: &Transition,
    ) -> Result<Transaction, StoreError> {
        self.user_mut(user_id)?.user.account = transition.after;
        let LedgerOp { tx_type, order_no, description, .. } = op;
        let transaction = Transaction {
            id: next_id(&mut self.last_transaction_id),
            user_id,
            tx_type,
            amount: transition.delta.balance,
            balance_before: transition.before.balance,
            balance_after: transition.after.balance,
            order_no,
            description,
            created_at: Utc::now(),
        };
        if let Some(order_no) = &transaction.order_no {
            self.orders.insert((tx_type, order_no.clone()), self.transactions.len());
        }
        self.transactions.push(transaction.clone());
        Ok(transaction)
    }
}

#[async_trait]
impl LedgerStore for MemoryStore {
    async fn apply(&self, user_id: UserId, op: LedgerOp) -> Result<Applied, StoreError> {
        self.lock()?.apply(user_id, op)
    }

    async fn transactions(
        &self,
        user_id: Option<UserId>,
        tx_type: Option<TxType>,
        page: PageRequest,
    ) -> Result<Page<Transaction>, StoreError> {
        let state = self.lock()?;
        let rows =
            state.transactions.iter().rev().filter(|row| {
                user_id.is_none_or(|id| id == row.user_id) && tx_type.is_none_or(|kind| kind == row.tx_type)
            });
        Ok(page_of(rows, page))
    }
}
