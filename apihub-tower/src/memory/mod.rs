//! An in-memory [`Store`](apihub_core::store::Store): every storage trait of `apihub-core`, with no
//! database, for tests, examples and single-process demos.
//!
//! It also implements [`BillingStore`]: reservations hold credit and key quota before a request
//! and settle or release it after.
//!
//! One mutex guards all the state, so each call is atomic, including [`LedgerStore::apply`]'s
//! check-plan-write and [`BillingStore::reserve`]'s check-hold: concurrent consumes and
//! reservations can never overspend. The lock is never held across an `.await`. Ids count from 1
//! per table and are never reused, listings are newest first (latest written first, as the SQL
//! store orders by id), and the data lives as long as the last clone of the store: clones share it.
//!
//! ```
//! use std::sync::Arc;
//!
//! use apihub_core::Money;
//! use apihub_core::ledger::{LedgerOp, TxType};
//! use apihub_core::store::{LedgerStore, Store, StoreError, UserStore};
//! use apihub_core::user::{NewUser, Role};
//! use apihub_tower::memory::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), StoreError> {
//! let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
//! let alice = store
//!     .create_user(NewUser { username: "alice".into(), email: None, password_hash: "$argon2id$…".into(), role: Role::User })
//!     .await?;
//! store.apply(alice.id, LedgerOp::new(TxType::Recharge, Money::from_credits(5))).await?;
//!
//! let spend = LedgerOp::new(TxType::Consume, Money::from_credits(2)).with_order_no("req-1");
//! let first = store.apply(alice.id, spend.clone()).await?;
//! let again = store.apply(alice.id, spend).await?; // same order number: replayed, not charged twice
//! assert!(!first.replayed && again.replayed);
//! assert_eq!(again.transaction, first.transaction);
//! assert_eq!(again.account.balance, Money::from_credits(3));
//! # Ok(())
//! # }
//! ```
//!
//! [`LedgerStore::apply`]: apihub_core::store::LedgerStore::apply
//! [`BillingStore`]: apihub_core::billing::BillingStore
//! [`BillingStore::reserve`]: apihub_core::billing::BillingStore::reserve

mod billing;
mod keys;
mod ledger;
mod prices;
mod usage;
mod users;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use apihub_core::billing::ReservationId;
use apihub_core::ledger::{Transaction, TxType};
use apihub_core::policy::KeyId;
use apihub_core::store::{Page, PageRequest, StoreError, UsageRecord};
use apihub_core::user::UserId;

use self::billing::Reservation;
use self::keys::KeyRow;
use self::users::UserRow;

/// Every storage trait of `apihub-core`, kept in memory. Cheap to clone; clones share the data.
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        self.state.lock().map_err(|_| StoreError::Internal("memory store lock poisoned".into()))
    }
}

impl fmt::Debug for MemoryStore {
    // Never prints rows: they hold password hashes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

/// All tables. Rows keyed by id iterate oldest first, so `.rev()` is newest first.
#[derive(Default)]
struct State {
    users: BTreeMap<UserId, UserRow>,
    keys: BTreeMap<KeyId, KeyRow>,
    /// Append-only, oldest first.
    transactions: Vec<Transaction>,
    /// The unique index on `(tx_type, order_no)`: the position of the row in `transactions`.
    orders: HashMap<(TxType, String), usize>,
    usage: Vec<UsageRecord>,
    prices: BTreeMap<String, apihub_core::pricing::ModelPrice>,
    /// Open reservations; settling or releasing one removes it.
    reservations: BTreeMap<ReservationId, Reservation>,
    last_user_id: UserId,
    last_key_id: KeyId,
    last_transaction_id: i64,
    last_reservation_id: ReservationId,
}

/// Increments an id counter and returns the new id.
fn next_id(last: &mut i64) -> i64 {
    *last += 1;
    *last
}

/// One page of `rows` (already filtered and in order), with the count of all of them.
fn page_of<'a, T: Clone + 'a>(rows: impl IntoIterator<Item = &'a T>, request: PageRequest) -> Page<T> {
    let skip = usize::try_from(request.offset()).unwrap_or(usize::MAX);
    let take = usize::try_from(request.limit()).unwrap_or(usize::MAX);
    let mut total = 0u64;
    let mut items = Vec::new();
    for (i, row) in rows.into_iter().enumerate() {
        total += 1;
        if i >= skip && items.len() < take {
            items.push(row.clone());
        }
    }
    Page { items, total, request }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_count_every_row() {
        let rows: Vec<i32> = (1..=45).collect();
        let third = page_of(&rows, PageRequest { page: 3, page_size: 20 });
        assert_eq!(third.items, (41..=45).collect::<Vec<_>>());
        assert_eq!(third.total, 45);
        let beyond = page_of(&rows, PageRequest { page: 9, page_size: 20 });
        assert!(beyond.items.is_empty());
        assert_eq!(beyond.total, 45);
    }

    #[test]
    fn debug_shows_no_rows() {
        assert_eq!(format!("{:?}", MemoryStore::new()), "MemoryStore { .. }");
    }
}
