//! Contracts of [`BillingStore`](apihub_core::billing::BillingStore): reserve → settle (or
//! release), against the user's free credit and every key limit, exactly once, under concurrency.

use std::sync::Arc;
use std::time::Duration;

use apihub_core::Money;
use apihub_core::billing::{BillingError, Settlement};
use apihub_core::ledger::{Account, LedgerError, LedgerOp, MAX_DESCRIPTION_LEN, Transaction, TxType};
use apihub_core::policy::{KeyPatch, KeyPolicy, KeyUsage};
use apihub_core::store::{Store, StoreError};

use super::fixtures::{
    alice_with_key, assert_ledger_sums, charge, credits, funded, funds, hold, key_now, key_of, race, rows, snapshot,
    user_now,
};

/// The consume row a settlement wrote for `request_id` (the newest of the user's rows), checked
/// against what the store answered, when it answered with one.
fn consume_row(written: &[Transaction], answered: Option<&Transaction>, request_id: &str) -> Transaction {
    let row = written.first().expect("a consume row").clone();
    assert_eq!((row.tx_type, row.order_no.as_deref()), (TxType::Consume, Some(request_id)));
    if let Some(answered) = answered {
        assert_eq!(answered, &row, "the row answered is the row written");
    }
    row
}

fn calls(n: i64) -> KeyPolicy {
    KeyPolicy { remaining_calls: Some(n), ..KeyPolicy::default() }
}

/// A hold takes from the free balance; settling charges the user once (one consume row under the
/// request id), counts the key's usage and one call down, and frees the hold.
pub async fn a_settled_reservation_charges_the_user_once(store: Arc<dyn Store>) {
    let (alice, key) = alice_with_key(&*store, 10, calls(5)).await;
    let id = store.reserve(&hold(&alice, &key, "req-1", 3, 100)).await.expect("hold");
    assert_eq!(store.reserved_funds(alice.id).await.expect("funds"), funds(10, 3));

    let settled = store.settle(id, &charge(credits(2), 60, true)).await.expect("settle");
    assert_eq!((settled.charged, settled.overage), (credits(2), Money::ZERO));
    let written = assert_ledger_sums(&*store, &alice).await;
    let row = consume_row(&written, settled.transaction.as_ref(), "req-1");
    assert_eq!((row.user_id, row.amount), (alice.id, credits(-2)));
    assert_eq!((row.balance_before, row.balance_after), (credits(10), credits(8)));
    assert_eq!(row.description.as_deref(), Some("gpt-4o via key 1"));
    assert_eq!(written.len(), 2);
    assert_eq!(store.reserved_funds(alice.id).await.expect("funds"), funds(8, 0));
    let account = Account { balance: credits(8), total_recharged: credits(10), total_consumed: credits(2) };
    assert_eq!(user_now(&*store, &alice).await.account, account);
    let after = key_now(&*store, &key).await;
    let usage = KeyUsage { tokens_used: 60, quota_used: credits(2), calls_total: 1, calls_succeeded: 1 };
    assert_eq!((after.usage, after.policy.remaining_calls), (usage, Some(4)));
}

/// Releasing frees the hold and changes nothing else: no row, no usage, no call counted.
pub async fn a_released_reservation_charges_nothing(store: Arc<dyn Store>) {
    let (alice, key) = alice_with_key(&*store, 10, calls(1)).await;
    let before = snapshot(&*store, &alice, &key).await;
    let id = store.reserve(&hold(&alice, &key, "req-1", 5, 100)).await.expect("hold");
    assert_eq!(store.reserved_funds(alice.id).await.expect("funds"), funds(10, 5));
    store.release(id).await.expect("release");
    assert_eq!(snapshot(&*store, &alice, &key).await, before);
    // The key's one call and the whole balance are free again.
    let id = store.reserve(&hold(&alice, &key, "req-2", 10, 0)).await.expect("hold again");
    store.release(id).await.expect("release");
}

/// Usage the hold did not foresee is charged too, from free credit and then below zero, and is
/// counted as overage.
pub async fn usage_above_the_hold_is_billed_even_below_a_zero_balance(store: Arc<dyn Store>) {
    let (alice, key) = alice_with_key(&*store, 4, KeyPolicy::default()).await;
    let id = store.reserve(&hold(&alice, &key, "req-1", 3, 100)).await.expect("hold");
    let settled = store.settle(id, &charge(credits(6), 100, true)).await.expect("settle");
    assert_eq!((settled.charged, settled.overage), (credits(6), credits(3)));
    let written = assert_ledger_sums(&*store, &alice).await;
    let row = consume_row(&written, settled.transaction.as_ref(), "req-1");
    assert_eq!((row.amount, row.balance_after), (credits(-6), credits(-2)));
    assert_eq!(store.reserved_funds(alice.id).await.expect("funds"), funds(-2, 0));
    assert_eq!(key_now(&*store, &key).await.usage.quota_used, credits(6));
    let broke = store.reserve(&hold(&alice, &key, "req-2", 1, 0)).await;
    assert!(matches!(broke, Err(BillingError::InsufficientBalance { .. })), "{broke:?}");
}

/// A failed call is charged what it used but does not count a call down.
pub async fn a_failed_call_is_charged_and_keeps_its_call(store: Arc<dyn Store>) {
    let (alice, key) = alice_with_key(&*store, 10, calls(5)).await;
    let id = store.reserve(&hold(&alice, &key, "req-1", 3, 100)).await.expect("hold");
    store.settle(id, &charge(credits(1), 30, false)).await.expect("settle");
    let after = key_now(&*store, &key).await;
    let usage = KeyUsage { tokens_used: 30, quota_used: credits(1), calls_total: 1, calls_succeeded: 0 };
    assert_eq!((after.usage, after.policy.remaining_calls), (usage, Some(5)));
    assert_eq!(user_now(&*store, &alice).await.account.balance, credits(9));
}

/// A charge of zero, or a negative one, charges nothing and writes no row, but the call counts.
pub async fn a_charge_of_zero_or_less_writes_no_row(store: Arc<dyn Store>) {
    let (alice, key) = alice_with_key(&*store, 10, calls(5)).await;
    for (n, below_one) in [Money::ZERO, credits(-1)].into_iter().enumerate() {
        let id = store.reserve(&hold(&alice, &key, &format!("free-{n}"), 2, 10)).await.expect("hold");
        let settled = store.settle(id, &charge(below_one, 10, true)).await.expect("settle");
        assert_eq!((settled.transaction, settled.charged, settled.overage), (None, Money::ZERO, Money::ZERO));
    }
    assert_eq!(rows(&*store, Some(alice.id)).await.len(), 1);
    assert_eq!(store.reserved_funds(alice.id).await.expect("funds"), funds(10, 0));
    let after = key_now(&*store, &key).await;
    let usage = KeyUsage { tokens_used: 20, quota_used: Money::ZERO, calls_total: 2, calls_succeeded: 2 };
    assert_eq!((after.usage, after.policy.remaining_calls), (usage, Some(3)));
}

/// A reservation settled or released is closed: settling or releasing it again (or one that never
/// was) is [`BillingError::NotOpen`] and changes nothing.
pub async fn a_reservation_closes_once(store: Arc<dyn Store>) {
    let (alice, key) = alice_with_key(&*store, 10, KeyPolicy::default()).await;
    let settled = store.reserve(&hold(&alice, &key, "req-1", 3, 0)).await.expect("hold");
    store.settle(settled, &charge(credits(3), 0, true)).await.expect("settle");
    let released = store.reserve(&hold(&alice, &key, "req-2", 3, 0)).await.expect("hold");
    store.release(released).await.expect("release");
    let before = snapshot(&*store, &alice, &key).await;
    for id in [settled, released, released + 1000] {
        let again = store.settle(id, &charge(credits(3), 0, true)).await;
        assert!(matches!(again, Err(BillingError::NotOpen(n)) if n == id), "{again:?}");
        let again = store.release(id).await;
        assert!(matches!(again, Err(BillingError::NotOpen(n)) if n == id), "{again:?}");
    }
    assert_eq!(snapshot(&*store, &alice, &key).await, before);
    assert_eq!(before.1, funds(7, 0));
}

/// Each key limit (calls, tokens, credit) refuses the hold that would pass it, names itself, and
/// changes nothing; a hold up to the limit exactly is granted.
pub async fn each_key_limit_refuses_a_hold_and_changes_nothing(store: Arc<dyn Store>) {
    let alice = funded(&*store, "alice", 100).await;
    let by_calls = key_of(&*store, &alice, calls(1)).await;
    let by_tokens = key_of(&*store, &alice, KeyPolicy { token_limit: Some(100), ..KeyPolicy::default() }).await;
    let by_credit = key_of(&*store, &alice, KeyPolicy { quota_limit: Some(credits(5)), ..KeyPolicy::default() }).await;
    store.reserve(&hold(&alice, &by_calls, "c1", 1, 0)).await.expect("hold");
    store.reserve(&hold(&alice, &by_tokens, "t1", 1, 60)).await.expect("hold");
    store.reserve(&hold(&alice, &by_credit, "q1", 3, 0)).await.expect("hold");

    let refusals = [
        (hold(&alice, &by_calls, "c2", 1, 0), &by_calls, "remaining_calls"),
        (hold(&alice, &by_tokens, "t2", 1, 41), &by_tokens, "token_limit"),
        (hold(&alice, &by_credit, "q2", 3, 0), &by_credit, "quota_limit"),
    ];
    for (new, key, limit) in refusals {
        let before = snapshot(&*store, &alice, key).await;
        let refused = store.reserve(&new).await;
        assert!(matches!(refused, Err(BillingError::KeyLimit { limit: l }) if l == limit), "{refused:?}");
        assert_eq!(snapshot(&*store, &alice, key).await, before);
    }
    store.reserve(&hold(&alice, &by_tokens, "t3", 1, 40)).await.expect("up to the token limit");
    store.reserve(&hold(&alice, &by_credit, "q3", 2, 0)).await.expect("up to the credit limit");
    assert_eq!(store.reserved_funds(alice.id).await.expect("funds"), funds(100, 8));
}

/// A hold beyond the balance less open holds is refused with both amounts and changes nothing; a
/// hold of the rest exactly is granted.
pub async fn a_hold_beyond_the_free_balance_is_refused_and_changes_nothing(store: Arc<dyn Store>) {
    let (alice, key) = alice_with_key(&*store, 10, KeyPolicy::default()).await;
    store.reserve(&hold(&alice, &key, "req-1", 4, 0)).await.expect("hold");
    let before = snapshot(&*store, &alice, &key).await;
    let refused = store.reserve(&hold(&alice, &key, "req-2", 7, 0)).await;
    assert!(
        matches!(refused, Err(BillingError::InsufficientBalance { available, required })
            if (available, required) == (credits(6), credits(7))),
        "{refused:?}"
    );
    assert_eq!(snapshot(&*store, &alice, &key).await, before);
    store.reserve(&hold(&alice, &key, "req-3", 6, 0)).await.expect("the rest");
    assert_eq!(store.reserved_funds(alice.id).await.expect("funds"), funds(10, 10));
}

/// A hold naming another user's key, or a user who does not exist, is not found.
pub async fn a_hold_for_someone_elses_key_is_not_found(store: Arc<dyn Store>) {
    let (alice, alices) = alice_with_key(&*store, 10, KeyPolicy::default()).await;
    let bob = funded(&*store, "bob", 10).await;
    let bobs = key_of(&*store, &bob, KeyPolicy::default()).await;
    let mut nobody = hold(&alice, &alices, "x3", 1, 0);
    nobody.user_id = bob.id + 1000;
    for new in [hold(&alice, &bobs, "x1", 1, 0), hold(&bob, &alices, "x2", 1, 0), nobody] {
        let refused = store.reserve(&new).await;
        assert!(matches!(refused, Err(BillingError::Store(StoreError::NotFound))), "{refused:?}");
    }
    assert_eq!(store.reserved_funds(alice.id).await.expect("funds"), funds(10, 0));
    assert_eq!(store.reserved_funds(bob.id).await.expect("funds"), funds(10, 0));
}

/// A request id holds once at a time: a second hold under an open one is a conflict, and a request
/// id that cannot be an order number, or a negative hold, is refused before anything is held. A
/// request id used again after its settlement (a caller reusing ids) is charged again, under an
/// order number of its own.
pub async fn a_request_id_holds_once_at_a_time(store: Arc<dyn Store>) {
    let (alice, key) = alice_with_key(&*store, 10, KeyPolicy::default()).await;
    let id = store.reserve(&hold(&alice, &key, "req-1", 1, 0)).await.expect("hold");
    let before = snapshot(&*store, &alice, &key).await;
    let open = store.reserve(&hold(&alice, &key, "req-1", 1, 0)).await;
    assert!(matches!(open, Err(BillingError::Store(StoreError::Conflict(_)))), "{open:?}");
    let invalid = |refused: &Result<_, BillingError>| {
        matches!(refused, Err(BillingError::Store(StoreError::Ledger(LedgerError::InvalidField(_)))))
    };
    let malformed = store.reserve(&hold(&alice, &key, "has space", 1, 0)).await;
    assert!(invalid(&malformed), "{malformed:?}");
    let negative = store.reserve(&hold(&alice, &key, "req-2", -1, 0)).await;
    assert!(invalid(&negative), "{negative:?}");
    assert_eq!(snapshot(&*store, &alice, &key).await, before);

    store.settle(id, &charge(credits(1), 0, true)).await.expect("settle");
    // Read back (a store that writes settlements in batches writes this one now), so that the
    // second charge meets the first in the ledger, not in the same batch.
    assert_ledger_sums(&*store, &alice).await;
    let again = store.reserve(&hold(&alice, &key, "req-1", 1, 0)).await.expect("a settled request id again");
    store.settle(again, &charge(credits(2), 0, true)).await.expect("settle");
    let written = assert_ledger_sums(&*store, &alice).await;
    let charged: Vec<_> =
        written.iter().filter(|r| r.order_no.as_ref().is_some_and(|o| o.starts_with("req-1"))).collect();
    assert_eq!(charged.iter().map(|r| r.amount).collect::<Vec<_>>(), [credits(-2), credits(-1)]);
    assert_eq!(charged[1].order_no.as_deref(), Some("req-1"), "the first charge has the request id");
    assert_ne!(charged[0].order_no, charged[1].order_no);
    assert_eq!(user_now(&*store, &alice).await.account.balance, credits(7));
}

/// Many settlements written together (more than a store puts in one statement), some under
/// request ids the ledger already has, write one consume row each under an order number of its
/// own; the rows sum to the balance.
pub async fn many_settlements_reusing_request_ids_write_one_row_each(store: Arc<dyn Store>) {
    let (alice, key) = alice_with_key(&*store, 1000, KeyPolicy::default()).await;
    let id = |n: usize| format!("req-{n:03}");
    let reused = [0, 1, 2, 3, 4, 140, 141, 142, 143, 144];
    for n in reused {
        let held = store.reserve(&hold(&alice, &key, &id(n), 1, 0)).await.expect("hold");
        store.settle(held, &charge(credits(1), 0, true)).await.expect("settle");
    }
    // Read back: the first charges are in the ledger before the others are settled.
    assert_ledger_sums(&*store, &alice).await;
    let mut held = Vec::new();
    for n in 0..150 {
        held.push(store.reserve(&hold(&alice, &key, &id(n), 1, 0)).await.expect("hold"));
    }
    for held in held {
        store.settle(held, &charge(credits(1), 0, true)).await.expect("settle");
    }
    let written = assert_ledger_sums(&*store, &alice).await;
    let consumed: Vec<&Transaction> = written.iter().filter(|r| r.tx_type == TxType::Consume).collect();
    assert_eq!(consumed.len(), 160);
    let orders: std::collections::HashSet<&str> = consumed.iter().filter_map(|r| r.order_no.as_deref()).collect();
    assert_eq!(orders.len(), 160, "each row has an order number of its own");
    assert!((0..150).all(|n| orders.contains(id(n).as_str())), "a new request id is its row's order number");
    assert_eq!(user_now(&*store, &alice).await.account.balance, credits(1000 - 160));
}

/// A description longer than a row keeps is cut, not a reason to charge nothing.
pub async fn a_long_description_is_cut_rather_than_refused(store: Arc<dyn Store>) {
    let (alice, key) = alice_with_key(&*store, 10, KeyPolicy::default()).await;
    let id = store.reserve(&hold(&alice, &key, "req-1", 1, 0)).await.expect("hold");
    let long = Settlement { description: "x".repeat(MAX_DESCRIPTION_LEN + 1), ..charge(credits(1), 0, true) };
    let settled = store.settle(id, &long).await.expect("settle");
    let row = consume_row(&rows(&*store, Some(alice.id)).await, settled.transaction.as_ref(), "req-1");
    assert_eq!(row.description.map(|d| d.chars().count()), Some(MAX_DESCRIPTION_LEN));
    assert_eq!(user_now(&*store, &alice).await.account.balance, credits(9));
}

/// Calls cut by an administrator below what is already held stop at zero when the held calls
/// succeed: `remaining_calls` is never negative.
pub async fn calls_cut_while_a_call_is_held_stop_at_zero(store: Arc<dyn Store>) {
    let (alice, key) = alice_with_key(&*store, 10, calls(5)).await;
    let a = store.reserve(&hold(&alice, &key, "req-1", 1, 0)).await.expect("hold");
    let b = store.reserve(&hold(&alice, &key, "req-2", 1, 0)).await.expect("hold");
    store.update_key(key.id, &KeyPatch { remaining_calls: Some(Some(1)), ..KeyPatch::default() }).await.expect("cut");
    store.settle(a, &charge(credits(1), 5, true)).await.expect("settle");
    store.settle(b, &charge(credits(1), 5, true)).await.expect("settle");
    let after = key_now(&*store, &key).await;
    assert_eq!((after.policy.remaining_calls, after.usage.calls_succeeded), (Some(0), 2));
    let refused = store.reserve(&hold(&alice, &key, "req-3", 1, 0)).await;
    assert!(matches!(refused, Err(BillingError::KeyLimit { limit: "remaining_calls" })), "{refused:?}");
}

/// A key deleted while its request is in flight: the user is still charged, once.
pub async fn a_key_deleted_meanwhile_still_charges_its_user(store: Arc<dyn Store>) {
    let (alice, key) = alice_with_key(&*store, 10, KeyPolicy::default()).await;
    let id = store.reserve(&hold(&alice, &key, "req-1", 4, 0)).await.expect("hold");
    store.delete_key(key.id).await.expect("delete");
    let settled = store.settle(id, &charge(credits(3), 0, true)).await.expect("settle");
    assert_eq!(settled.charged, credits(3));
    assert_eq!(store.reserved_funds(alice.id).await.expect("funds"), funds(7, 0));
    consume_row(&assert_ledger_sums(&*store, &alice).await, settled.transaction.as_ref(), "req-1");
}

/// Sweeping stale holds never takes a hold a live request still has (a long stream), so its
/// settlement still charges: holds in the store's own process end with it.
pub async fn no_sweep_takes_a_live_hold(store: Arc<dyn Store>) {
    let (alice, key) = alice_with_key(&*store, 10, calls(5)).await;
    let old = store.reserve(&hold(&alice, &key, "req-old", 2, 10)).await.expect("hold");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = store.reserve(&hold(&alice, &key, "req-fresh", 3, 20)).await.expect("hold");

    assert_eq!(store.release_stale(Duration::from_millis(100)).await.expect("sweep"), 0);
    assert_eq!(store.reserved_funds(alice.id).await.expect("funds"), funds(10, 5));
    store.settle(old, &charge(credits(2), 10, true)).await.expect("the old hold is still open");
    store.release(fresh).await.expect("the fresh hold is still open");
    assert_eq!(store.reserved_funds(alice.id).await.expect("funds"), funds(8, 0));
    assert_eq!(key_now(&*store, &key).await.policy.remaining_calls, Some(4));
}

/// Ledger debits (consumes, negative adjustments) may take only what open holds leave free.
pub async fn holds_limit_ledger_debits(store: Arc<dyn Store>) {
    let (alice, key) = alice_with_key(&*store, 10, KeyPolicy::default()).await;
    let id = store.reserve(&hold(&alice, &key, "req-1", 8, 0)).await.expect("hold");
    for debit in [LedgerOp::new(TxType::Consume, credits(3)), LedgerOp::new(TxType::Adjust, credits(-3))] {
        let refused = store.apply(alice.id, debit).await;
        assert!(
            matches!(refused, Err(StoreError::Ledger(LedgerError::InsufficientBalance { available, required }))
                if (available, required) == (credits(2), credits(3))),
            "{refused:?}"
        );
    }
    store.apply(alice.id, LedgerOp::new(TxType::Consume, credits(2))).await.expect("what is free");
    store.apply(alice.id, LedgerOp::new(TxType::Recharge, credits(1))).await.expect("recharge");
    assert_eq!(store.reserved_funds(alice.id).await.expect("funds"), funds(9, 8));
    store.settle(id, &charge(credits(8), 0, true)).await.expect("settle");
    let now = user_now(&*store, &alice).await.account;
    assert_eq!((now.balance, now.total_consumed), (credits(1), credits(10)));
    assert_ledger_sums(&*store, &alice).await;
}

/// 200 concurrent holds of 1 credit against 50 grant exactly 50; settling them all charges 50.
pub async fn concurrent_reserves_never_overspend(store: Arc<dyn Store>) {
    let (alice, key) = alice_with_key(&*store, 50, KeyPolicy::default()).await;
    let results = race(200, |i| {
        let (store, new) = (Arc::clone(&store), hold(&alice, &key, &format!("req-{i}"), 1, 10));
        async move { store.reserve(&new).await }
    })
    .await;
    let mut held = Vec::new();
    for result in results {
        match result {
            Ok(id) => held.push(id),
            Err(e) => assert!(matches!(e, BillingError::InsufficientBalance { .. }), "{e}"),
        }
    }
    assert_eq!(held.len(), 50);
    assert_eq!(store.reserved_funds(alice.id).await.expect("funds"), funds(50, 50));

    let settled = race(held.len(), |i| {
        let (store, id) = (Arc::clone(&store), held[i]);
        async move { store.settle(id, &charge(credits(1), 10, true)).await }
    })
    .await;
    assert!(settled.into_iter().all(|s| s.expect("settle").charged == credits(1)));
    assert_eq!(store.reserved_funds(alice.id).await.expect("funds"), funds(0, 0));
    let written = assert_ledger_sums(&*store, &alice).await;
    assert_eq!(written.iter().filter(|r| r.tx_type == TxType::Consume).count(), 50);
    assert!(written.iter().all(|r| !r.balance_after.is_negative()));
    assert_eq!(key_now(&*store, &key).await.usage.quota_used, credits(50));
}

/// 100 concurrent calls through a key with 30 calls left: exactly 30 succeed, and it ends at 0.
pub async fn concurrent_calls_never_exceed_remaining_calls(store: Arc<dyn Store>) {
    let (alice, key) = alice_with_key(&*store, 1000, calls(30)).await;
    let outcomes = race(100, |i| {
        let (store, new) = (Arc::clone(&store), hold(&alice, &key, &format!("req-{i}"), 1, 10));
        async move {
            match store.reserve(&new).await {
                Ok(id) => store.settle(id, &charge(credits(1), 10, true)).await.map(|_| true),
                Err(BillingError::KeyLimit { limit: "remaining_calls" }) => Ok(false),
                Err(e) => Err(e),
            }
        }
    })
    .await;
    let succeeded = outcomes.into_iter().filter(|call| *call.as_ref().expect("a call or a refusal")).count();
    assert_eq!(succeeded, 30);
    let after = key_now(&*store, &key).await;
    assert_eq!(after.policy.remaining_calls, Some(0));
    let usage = KeyUsage { tokens_used: 300, quota_used: credits(30), calls_total: 30, calls_succeeded: 30 };
    assert_eq!(after.usage, usage);
    assert_eq!(store.reserved_funds(alice.id).await.expect("funds"), funds(970, 0));
}

/// Concurrent holds against a key's token limit and another's credit limit never pass them.
pub async fn concurrent_holds_never_exceed_a_token_or_credit_limit(store: Arc<dyn Store>) {
    let alice = funded(&*store, "alice", 1000).await;
    let by_tokens = key_of(&*store, &alice, KeyPolicy { token_limit: Some(1000), ..KeyPolicy::default() }).await;
    let by_credit = key_of(&*store, &alice, KeyPolicy { quota_limit: Some(credits(20)), ..KeyPolicy::default() }).await;
    let outcomes = race(120, |i| {
        let key = if i % 2 == 0 { &by_tokens } else { &by_credit };
        let (store, new) = (Arc::clone(&store), hold(&alice, key, &format!("req-{i}"), 1, 100));
        async move { store.reserve(&new).await }
    })
    .await;
    let (mut tokens, mut credit) = (0, 0);
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(_) if i % 2 == 0 => tokens += 1,
            Ok(_) => credit += 1,
            Err(e) => assert!(matches!(e, BillingError::KeyLimit { .. }), "{e}"),
        }
    }
    assert_eq!((tokens, credit), (10, 20));
    assert_eq!(store.reserved_funds(alice.id).await.expect("funds"), funds(1000, 30));
}
