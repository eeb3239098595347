//! Contracts of [`LedgerStore`](apihub_core::store::LedgerStore): every credit movement is one
//! row, applied atomically, and an order number makes it idempotent.

use std::sync::Arc;

use apihub_core::Money;
use apihub_core::ledger::{Account, Applied, LedgerError, LedgerOp, TxType};
use apihub_core::store::{PageRequest, Store, StoreError};

use super::fixtures::{assert_ledger_sums, credits, funded, race, rows, user_now};

/// A consume and an adjustment each write one row, whose amounts and running balances add up.
pub async fn each_ledger_operation_writes_one_row_and_the_rows_sum_to_the_balance(store: Arc<dyn Store>) {
    let alice = funded(&*store, "alice", 10).await;
    let spend = LedgerOp::new(TxType::Consume, credits(3)).with_description("chat");
    let spent = store.apply(alice.id, spend).await.expect("consume");
    assert!(!spent.replayed);
    let row = &spent.transaction;
    assert_eq!((row.user_id, row.tx_type, row.description.as_deref()), (alice.id, TxType::Consume, Some("chat")));
    assert_eq!((row.amount, row.balance_before, row.balance_after), (credits(-3), credits(10), credits(7)));
    let expected = Account { balance: credits(7), total_recharged: credits(10), total_consumed: credits(3) };
    assert_eq!((spent.account, user_now(&*store, &alice).await.account), (expected, expected));

    let adjusted = store.apply(alice.id, LedgerOp::new(TxType::Adjust, credits(-2))).await.expect("adjust");
    assert_eq!(adjusted.account.balance, credits(5));
    let written = assert_ledger_sums(&*store, &alice).await;
    assert_eq!(written.len(), 3);
    assert!(written[0].id > written[1].id && written[1].id > written[2].id, "newest first");
    assert_eq!(written[1], spent.transaction);
}

/// An overdraft, a zero amount, a malformed order number and an unknown user are refused, and
/// nothing changes.
pub async fn a_refused_ledger_operation_changes_nothing(store: Arc<dyn Store>) {
    let alice = funded(&*store, "alice", 1).await;
    let too_much = store.apply(alice.id, LedgerOp::new(TxType::Consume, credits(2))).await;
    assert!(matches!(too_much, Err(StoreError::Ledger(LedgerError::InsufficientBalance { .. }))), "{too_much:?}");
    let zero = store.apply(alice.id, LedgerOp::new(TxType::Recharge, Money::ZERO)).await;
    assert!(matches!(zero, Err(StoreError::Ledger(LedgerError::NonPositiveAmount))), "{zero:?}");
    let bad_order = store.apply(alice.id, LedgerOp::new(TxType::Recharge, credits(1)).with_order_no("has space")).await;
    assert!(matches!(bad_order, Err(StoreError::Ledger(LedgerError::InvalidField(_)))), "{bad_order:?}");
    let nobody = store.apply(alice.id + 1000, LedgerOp::new(TxType::Recharge, credits(1))).await;
    assert!(matches!(nobody, Err(StoreError::NotFound)), "{nobody:?}");
    assert_eq!(user_now(&*store, &alice).await, alice);
    assert_eq!(rows(&*store, None).await.len(), 1);
}

/// The same operation again under its order number returns the first row (replayed, charged
/// once); anything else under that number is a conflict; the number is unique per kind.
pub async fn an_order_number_replays_the_same_operation_and_refuses_another(store: Arc<dyn Store>) {
    let alice = funded(&*store, "alice", 10).await;
    let bob = funded(&*store, "bob", 10).await;
    let consume = LedgerOp::new(TxType::Consume, credits(4)).with_order_no("req-1");
    let first = store.apply(alice.id, consume.clone()).await.expect("consume");
    store.apply(alice.id, LedgerOp::new(TxType::Recharge, credits(1))).await.expect("recharge");

    let again = store.apply(alice.id, consume.clone().with_description("ignored")).await.expect("replay");
    assert!(again.replayed);
    assert_eq!(again.transaction, first.transaction);
    assert_eq!(again.account.balance, credits(7), "the account now, not then");

    let other_amount = store.apply(alice.id, LedgerOp::new(TxType::Consume, credits(5)).with_order_no("req-1")).await;
    assert!(matches!(other_amount, Err(StoreError::Conflict(_))), "{other_amount:?}");
    let other_user = store.apply(bob.id, consume).await;
    assert!(matches!(other_user, Err(StoreError::Conflict(_))), "{other_user:?}");
    let recharge = store.apply(bob.id, LedgerOp::new(TxType::Recharge, credits(1)).with_order_no("req-1")).await;
    assert!(!recharge.expect("another kind may carry the number").replayed);

    assert_eq!(user_now(&*store, &alice).await.account.balance, credits(7));
    assert_eq!(user_now(&*store, &bob).await.account.balance, credits(11));
    assert_eq!(rows(&*store, None).await.len(), 5);
}

/// A refund naming an order gives back at most what that order (the same user's) consumed; one
/// without an order is bounded by the account's total consumed.
pub async fn a_refund_is_bounded_by_the_order_it_names(store: Arc<dyn Store>) {
    let alice = funded(&*store, "alice", 10).await;
    let bob = funded(&*store, "bob", 10).await;
    store.apply(alice.id, LedgerOp::new(TxType::Consume, credits(5)).with_order_no("o1")).await.expect("consume");
    store.apply(alice.id, LedgerOp::new(TxType::Consume, credits(2))).await.expect("consume");
    let refund = |amount: Money, order_no: &str| LedgerOp::new(TxType::Refund, amount).with_order_no(order_no);
    let refundable = |result: Result<Applied, StoreError>| match result {
        Err(StoreError::Ledger(LedgerError::RefundExceedsConsumed { refundable })) => refundable,
        other => panic!("expected RefundExceedsConsumed, got {other:?}"),
    };

    assert_eq!(refundable(store.apply(alice.id, refund(credits(1), "nope")).await), Money::ZERO);
    assert_eq!(refundable(store.apply(bob.id, refund(credits(1), "o1")).await), Money::ZERO, "alice's order");
    assert_eq!(refundable(store.apply(alice.id, refund(Money::from_micros(5_000_001), "o1")).await), credits(5));

    let refunded = store.apply(alice.id, refund(credits(3), "o1")).await.expect("refund");
    assert_eq!(refunded.transaction.amount, credits(3));
    let expected = Account { balance: credits(6), total_recharged: credits(10), total_consumed: credits(4) };
    assert_eq!(refunded.account, expected);
    assert!(store.apply(alice.id, refund(credits(3), "o1")).await.expect("replay").replayed);
    assert!(matches!(store.apply(alice.id, refund(credits(1), "o1")).await, Err(StoreError::Conflict(_))));

    let unbounded = store.apply(alice.id, LedgerOp::new(TxType::Refund, credits(5))).await;
    assert_eq!(refundable(unbounded), credits(4));
    assert_ledger_sums(&*store, &alice).await;
}

/// Rows list newest first, for one user or everyone, of one kind or all, counted and paged.
pub async fn transactions_list_newest_first_filtered_and_paged(store: Arc<dyn Store>) {
    let alice = funded(&*store, "alice", 100).await;
    let bob = funded(&*store, "bob", 100).await;
    let mut alices = Vec::new();
    for _ in 0..6 {
        alices.push(store.apply(alice.id, LedgerOp::new(TxType::Consume, credits(1))).await.expect("consume"));
        store.apply(bob.id, LedgerOp::new(TxType::Consume, credits(1))).await.expect("consume");
    }
    let page = |page| PageRequest { page, page_size: 4 };
    let everyone = store.transactions(None, None, page(1)).await.expect("list");
    assert_eq!((everyone.total, everyone.items[0].user_id), (14, bob.id));
    let listed = store.transactions(Some(alice.id), Some(TxType::Consume), page(2)).await.expect("list");
    let oldest: Vec<_> = alices[..2].iter().rev().map(|a| a.transaction.clone()).collect();
    assert_eq!((listed.total, listed.items), (6, oldest));
    let recharges = store.transactions(None, Some(TxType::Recharge), page(1)).await.expect("list");
    assert_eq!(recharges.items.iter().map(|r| r.user_id).collect::<Vec<_>>(), [bob.id, alice.id]);
}

/// 200 concurrent consumes of 1 credit from 50 succeed exactly 50 times.
pub async fn concurrent_consumes_never_overspend(store: Arc<dyn Store>) {
    let alice = funded(&*store, "alice", 50).await;
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
    let now = user_now(&*store, &alice).await.account;
    assert_eq!((now.balance, now.total_consumed), (Money::ZERO, credits(50)));
    let written = assert_ledger_sums(&*store, &alice).await;
    assert_eq!(written.len(), 51);
    assert!(written.iter().all(|r| !r.balance_after.is_negative()));
}

/// 50 concurrent copies of one operation under one order number charge once.
pub async fn concurrent_replays_charge_once(store: Arc<dyn Store>) {
    let alice = funded(&*store, "alice", 50).await;
    let results = race(50, |_| {
        let store = Arc::clone(&store);
        async move { store.apply(alice.id, LedgerOp::new(TxType::Consume, credits(2)).with_order_no("req-1")).await }
    })
    .await;
    let applied: Vec<_> = results.into_iter().map(|r| r.expect("applied or replayed")).collect();
    assert_eq!(applied.iter().filter(|a| !a.replayed).count(), 1);
    assert!(applied.iter().all(|a| a.transaction == applied[0].transaction));
    assert_eq!(user_now(&*store, &alice).await.account.balance, credits(48));
}
