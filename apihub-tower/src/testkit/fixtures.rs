//! What the contracts set up and look at, through the store traits alone.

use std::sync::Arc;

use apihub_core::Money;
use apihub_core::billing::{HoldRequest, NewReservation, Settlement, UserFunds};
use apihub_core::key::GeneratedKey;
use apihub_core::ledger::{LedgerOp, Transaction, TxType};
use apihub_core::policy::{ApiKey, KeyPolicy};
use apihub_core::store::{NewKey, PageRequest, Store};
use apihub_core::user::{NewUser, Role, User};

pub(super) fn credits(n: i64) -> Money {
    Money::from_credits(n)
}

/// Registers `username` with a placeholder password hash.
pub(super) async fn register(store: &dyn Store, username: &str, role: Role) -> User {
    let password_hash = format!("hash-of-{username}");
    store.create_user(NewUser { username: username.into(), email: None, password_hash, role }).await.expect("a user")
}

/// A user holding `balance` credits from one recharge.
pub(super) async fn funded(store: &dyn Store, username: &str, balance: i64) -> User {
    let user = register(store, username, Role::User).await;
    if balance > 0 {
        store.apply(user.id, LedgerOp::new(TxType::Recharge, credits(balance))).await.expect("a recharge");
    }
    store.user(user.id).await.expect("read").expect("the user")
}

/// A new key with a fresh public id, named `name`.
pub(super) fn new_key(name: &str, policy: KeyPolicy, batch_id: Option<&str>) -> NewKey {
    let GeneratedKey { public_id, secret_hash, last4, .. } = GeneratedKey::generate();
    let policy = KeyPolicy { name: name.into(), ..policy };
    NewKey { public_id, secret_hash, last4, policy, batch_id: batch_id.map(Into::into) }
}

/// A key of `user`'s with `policy`.
pub(super) async fn key_of(store: &dyn Store, user: &User, policy: KeyPolicy) -> ApiKey {
    store.create_keys(user.id, vec![new_key("key", policy, None)]).await.expect("a key").remove(0)
}

/// A store in which alice holds `balance` credits and one key with `policy`.
pub(super) async fn alice_with_key(store: &dyn Store, balance: i64, policy: KeyPolicy) -> (User, ApiKey) {
    let alice = funded(store, "alice", balance).await;
    let key = key_of(store, &alice, policy).await;
    (alice, key)
}

/// A hold of `amount` credits and `tokens` tokens for `request_id`.
pub(super) fn hold(user: &User, key: &ApiKey, request_id: &str, amount: i64, tokens: i64) -> NewReservation {
    NewReservation {
        user_id: user.id,
        key_id: key.id,
        request_id: request_id.into(),
        hold: HoldRequest { amount: credits(amount), tokens },
    }
}

/// A settlement charging `charge` for `tokens`.
pub(super) fn charge(charge: Money, tokens: i64, success: bool) -> Settlement {
    Settlement { charge, tokens, success, description: "gpt-4o via key 1".into() }
}

pub(super) fn funds(balance: i64, reserved: i64) -> UserFunds {
    UserFunds { balance: credits(balance), reserved: credits(reserved) }
}

/// Every ledger row of one user (or everyone), newest first.
pub(super) async fn rows(store: &dyn Store, user_id: Option<i64>) -> Vec<Transaction> {
    let all = PageRequest { page: 1, page_size: PageRequest::MAX_PAGE_SIZE };
    store.transactions(user_id, None, all).await.expect("transactions").items
}

/// A user as stored now.
pub(super) async fn user_now(store: &dyn Store, user: &User) -> User {
    store.user(user.id).await.expect("read").expect("the user")
}

/// A key as stored now.
pub(super) async fn key_now(store: &dyn Store, key: &ApiKey) -> ApiKey {
    store.key(key.id).await.expect("read").expect("the key")
}

/// Everything about `user` and `key` a refusal must leave as it was: the user, their funds and
/// ledger rows, and the key.
pub(super) async fn snapshot(
    store: &dyn Store,
    user: &User,
    key: &ApiKey,
) -> (User, UserFunds, Vec<Transaction>, Option<ApiKey>) {
    let funds = store.reserved_funds(user.id).await.expect("funds");
    (user_now(store, user).await, funds, rows(store, Some(user.id)).await, store.key(key.id).await.expect("read"))
}

/// Asserts that the user's ledger rows add up to their balance and that none left it negative.
pub(super) async fn assert_ledger_sums(store: &dyn Store, user: &User) -> Vec<Transaction> {
    let written = rows(store, Some(user.id)).await;
    let balance = user_now(store, user).await.account.balance;
    assert_eq!(written.iter().map(|r| r.amount).sum::<Money>(), balance, "the rows sum to the balance");
    written
}

/// Spawns `n` tasks made by `task`, releases them all at once, and returns their outputs in order.
pub(super) async fn race<F>(n: usize, task: impl Fn(usize) -> F) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (start, task) = (Arc::clone(&start), task(i));
            tokio::spawn(async move {
                start.wait().await;
                task.await
            })
        })
        .collect();
    let mut outputs = Vec::with_capacity(n);
    for task in tasks {
        outputs.push(task.await.expect("a task of the race"));
    }
    outputs
}
