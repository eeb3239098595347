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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use apihub_core::ledger::Account;
    use apihub_core::store::{Store, UserStore};

    use super::super::{funded, race, rows};
    use super::*;

    fn credits(n: i64) -> Money {
        Money::from_credits(n)
    }

    async fn account(store: &MemoryStore, user_id: UserId) -> Account {
        store.user(user_id).await.unwrap().unwrap().account
    }

    #[tokio::test]
    async fn each_operation_writes_one_row() {
        let store = MemoryStore::new();
        let alice = funded(&store, "alice", 10).await;
        let spent =
            store.apply(alice.id, LedgerOp::new(TxType::Consume, credits(3)).with_description("chat")).await.unwrap();
        assert!(!spent.replayed);
        let row = &spent.transaction;
        assert_eq!((row.id, row.user_id, row.tx_type), (2, alice.id, TxType::Consume));
        assert_eq!((row.amount, row.balance_before, row.balance_after), (credits(-3), credits(10), credits(7)));
        assert_eq!(row.description.as_deref(), Some("chat"));
        let expected = Account { balance: credits(7), total_recharged: credits(10), total_consumed: credits(3) };
        assert_eq!(spent.account, expected);
        assert_eq!(account(&store, alice.id).await, expected);

        let adjusted = store.apply(alice.id, LedgerOp::new(TxType::Adjust, credits(-2))).await.unwrap();
        assert_eq!(adjusted.account.balance, credits(5));
        let listed = rows(&store, Some(alice.id)).await;
        assert_eq!(listed.iter().map(|r| r.id).collect::<Vec<_>>(), [3, 2, 1]);
        assert_eq!(listed.iter().map(|r| r.amount).sum::<Money>(), adjusted.account.balance);
    }

    #[tokio::test]
    async fn refused_operations_change_nothing() {
        let store = MemoryStore::new();
        let alice = funded(&store, "alice", 1).await;
        let before = account(&store, alice.id).await;
        let too_much = store.apply(alice.id, LedgerOp::new(TxType::Consume, credits(2))).await;
        assert!(matches!(too_much, Err(StoreError::Ledger(LedgerError::InsufficientBalance { .. }))));
        let zero = store.apply(alice.id, LedgerOp::new(TxType::Recharge, Money::ZERO)).await;
        assert!(matches!(zero, Err(StoreError::Ledger(LedgerError::NonPositiveAmount))));
        let bad_order =
            store.apply(alice.id, LedgerOp::new(TxType::Recharge, credits(1)).with_order_no("has space")).await;
        assert!(matches!(bad_order, Err(StoreError::Ledger(LedgerError::InvalidField(_)))));
        let nobody = store.apply(99, LedgerOp::new(TxType::Recharge, credits(1))).await;
        assert!(matches!(nobody, Err(StoreError::NotFound)));
        assert_eq!(account(&store, alice.id).await, before);
        assert_eq!(rows(&store, None).await.len(), 1);
    }

    #[tokio::test]
    async fn an_order_number_replays_or_conflicts() {
        let store = MemoryStore::new();
        let alice = funded(&store, "alice", 10).await;
        let bob = funded(&store, "bob", 10).await;
        let consume = LedgerOp::new(TxType::Consume, credits(4)).with_order_no("req-1");
        let first = store.apply(alice.id, consume.clone()).await.unwrap();
        store.apply(alice.id, LedgerOp::new(TxType::Recharge, credits(1))).await.unwrap();

        let again = store.apply(alice.id, consume.clone().with_description("ignored")).await.unwrap();
        assert!(again.replayed);
        assert_eq!(again.transaction, first.transaction);
        assert_eq!(again.account, account(&store, alice.id).await); // the account now, not then
        assert_eq!(again.account.balance, credits(7));

        let other_amount =
            store.apply(alice.id, LedgerOp::new(TxType::Consume, credits(5)).with_order_no("req-1")).await;
        assert!(matches!(other_amount, Err(StoreError::Conflict(_))));
        let other_user = store.apply(bob.id, consume).await;
        assert!(matches!(other_user, Err(StoreError::Conflict(_))));
        // A malformed request under a used number is refused as malformed.
        let zero = store.apply(alice.id, LedgerOp::new(TxType::Consume, Money::ZERO).with_order_no("req-1")).await;
        assert!(matches!(zero, Err(StoreError::Ledger(LedgerError::NonPositiveAmount))));
        // The number is unique per kind: a recharge may carry it too.
        let recharge = store.apply(bob.id, LedgerOp::new(TxType::Recharge, credits(1)).with_order_no("req-1")).await;
        assert!(!recharge.unwrap().replayed);

        assert_eq!(account(&store, alice.id).await.balance, credits(7));
        assert_eq!(account(&store, bob.id).await.balance, credits(11));
        assert_eq!(rows(&store, None).await.len(), 5);
    }

    #[tokio::test]
    async fn a_refund_is_bounded_by_its_order() {
        let store = MemoryStore::new();
        let alice = funded(&store, "alice", 10).await;
        let bob = funded(&store, "bob", 10).await;
        store.apply(alice.id, LedgerOp::new(TxType::Consume, credits(5)).with_order_no("o1")).await.unwrap();
        store.apply(alice.id, LedgerOp::new(TxType::Consume, credits(2))).await.unwrap();
        let refund = |amount: Money, order_no: &str| LedgerOp::new(TxType::Refund, amount).with_order_no(order_no);
        // The amount a refusal says may still be refunded.
        let refundable = |result: Result<Applied, StoreError>| match result {
            Err(StoreError::Ledger(LedgerError::RefundExceedsConsumed { refundable })) => refundable,
            other => panic!("expected RefundExceedsConsumed, got {other:?}"),
        };

        assert_eq!(refundable(store.apply(alice.id, refund(credits(1), "nope")).await), Money::ZERO);
        assert_eq!(refundable(store.apply(bob.id, refund(credits(1), "o1")).await), Money::ZERO); // alice's order
        assert_eq!(refundable(store.apply(alice.id, refund(Money::from_micros(5_000_001), "o1")).await), credits(5));

        let refunded = store.apply(alice.id, refund(credits(3), "o1")).await.unwrap();
        assert!(!refunded.replayed);
        assert_eq!(refunded.transaction.amount, credits(3));
        let expected = Account { balance: credits(6), total_recharged: credits(10), total_consumed: credits(4) };
        assert_eq!(refunded.account, expected);
        assert!(store.apply(alice.id, refund(credits(3), "o1")).await.unwrap().replayed);
        // (Refund, "o1") is taken now, so a second, different refund of the order conflicts.
        assert!(matches!(store.apply(alice.id, refund(credits(1), "o1")).await, Err(StoreError::Conflict(_))));

        // Without an order number only the account's total bounds a refund.
        assert_eq!(refundable(store.apply(alice.id, LedgerOp::new(TxType::Refund, credits(5))).await), credits(4));
        assert_eq!(account(&store, alice.id).await.balance, credits(6));
    }

    #[tokio::test]
    async fn listing_filters_and_pages_newest_first() {
        let store = MemoryStore::new();
        let alice = funded(&store, "alice", 100).await;
        let bob = funded(&store, "bob", 100).await;
        for _ in 0..12 {
            store.apply(alice.id, LedgerOp::new(TxType::Consume, credits(1))).await.unwrap();
            store.apply(bob.id, LedgerOp::new(TxType::Consume, credits(1))).await.unwrap();
        }
        let page = |page| PageRequest { page, page_size: 5 };
        let everyone = store.transactions(None, None, page(1)).await.unwrap();
        assert_eq!((everyone.total, everyone.items[0].id), (26, 26));
        let alices = store.transactions(Some(alice.id), Some(TxType::Consume), page(3)).await.unwrap();
        assert_eq!(alices.total, 12);
        assert_eq!(alices.items.iter().map(|r| r.id).collect::<Vec<_>>(), [5, 3]);
        assert!(alices.items.iter().all(|r| r.user_id == alice.id && r.tx_type == TxType::Consume));
        let recharges = store.transactions(None, Some(TxType::Recharge), page(1)).await.unwrap();
        assert_eq!(recharges.items.iter().map(|r| r.user_id).collect::<Vec<_>>(), [bob.id, alice.id]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
    async fn concurrent_consumes_never_overspend() {
        let memory = MemoryStore::new();
        let alice = funded(&memory, "alice", 50).await;
        let store: Arc<dyn Store> = Arc::new(memory.clone());
        let results = race(200, |_| {
            let store = Arc::clone(&store);
            async move { store.apply(alice.id, LedgerOp::new(TxType::Consume, credits(1))).await }
        })
        .await;
        let mut succeeded = 0;
        for result in results {
            match result {
                Ok(_) => succeeded += 1,
                Err(e) => assert!(matches!(e, StoreError::Ledger(LedgerError::InsufficientBalance { .. })), "{e}"),
            }
        }
        assert_eq!(succeeded, 50);
        let now = account(&memory, alice.id).await;
        assert_eq!((now.balance, now.total_consumed), (Money::ZERO, credits(50)));
        let written = rows(&memory, Some(alice.id)).await;
        assert_eq!(written.len(), 51);
        assert_eq!(written.iter().map(|r| r.amount).sum::<Money>(), now.balance);
        assert!(written.iter().all(|r| !r.balance_after.is_negative()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
    async fn concurrent_replays_charge_once() {
        let memory = MemoryStore::new();
        let alice = funded(&memory, "alice", 50).await;
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let store = memory.clone();
                let op = LedgerOp::new(TxType::Consume, credits(2)).with_order_no("req-1");
                tokio::spawn(async move { store.apply(alice.id, op).await })
            })
            .collect();
        let mut fresh = 0;
        for task in tasks {
            let applied = task.await.unwrap().unwrap();
            assert_eq!(applied.transaction.id, 2);
            fresh += usize::from(!applied.replayed);
        }
        assert_eq!(fresh, 1);
        assert_eq!(account(&memory, alice.id).await.balance, credits(48));
    }
}
