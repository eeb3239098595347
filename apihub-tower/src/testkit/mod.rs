//! The storage contract: one set of behavioural tests that every implementation of
//! `apihub-core`'s store traits must pass (feature `testkit`).
//!
//! The suite is written once over [`Store`] (users, keys, the ledger, the usage log, prices and
//! reservations) and run over the in-memory store of this crate and the reference gateway's SQL
//! stores; an embedder runs it over their own store the same way. [`store_contract!`] expands to
//! one `#[test]` per contract, each named by the sentence it checks, so a failure says which
//! promise the store broke. Each test gets a fresh, empty store from the given maker, which may
//! answer `None` to skip (a database that is not configured).
//!
//! ```
//! use apihub_tower::memory::MemoryStore;
//! use apihub_tower::testkit::Subject;
//!
//! async fn memory_store() -> Option<Subject> {
//!     Some(Subject::new(MemoryStore::new()))
//! }
//!
//! // In a test file (`tests/store_contract.rs`), this defines one test per contract:
//! apihub_tower::store_contract!(memory_store);
//! # fn main() {}
//! ```
//!
//! The contracts run on a multi-threaded tokio runtime of their own (the concurrency contracts
//! need real threads), so the test file needs no async runtime of its own.

pub mod accounts;
pub mod billing;
mod fixtures;
pub mod ledger;
pub mod records;

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use apihub_core::store::Store;

/// The store under test, and whatever must live as long as the test (a throwaway database).
pub struct Subject {
    store: Arc<dyn Store>,
    _guard: Box<dyn Any + Send>,
}

impl Subject {
    /// A store that needs nothing kept alive beside it.
    pub fn new(store: impl Store + 'static) -> Self {
        Subject::with_guard(store, ())
    }

    /// A store, and `guard`, dropped after the test (e.g. a temporary directory or database).
    pub fn with_guard(store: impl Store + 'static, guard: impl Any + Send) -> Self {
        Subject { store: Arc::new(store), _guard: Box::new(guard) }
    }
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subject").finish_non_exhaustive()
    }
}

/// Runs one contract on a store made by `make` (skipped when it makes none), on a runtime of its
/// own with four worker threads. Panics when the contract is broken.
pub fn run<M, C>(make: impl FnOnce() -> M, contract: impl FnOnce(Arc<dyn Store>) -> C)
where
    M: Future<Output = Option<Subject>>,
    C: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime for the contract");
    runtime.block_on(async move {
        let Some(subject) = make().await else {
            eprintln!("skipping: the store under test is not configured");
            return;
        };
        contract(Arc::clone(&subject.store)).await;
        drop(subject);
    });
}

/// Defines one `#[test]` per storage contract, each running it on a fresh store from `$make`
/// (an `async fn() -> Option<Subject>`; see the [module docs](crate::testkit)).
#[macro_export]
macro_rules! store_contract {
    ($make:expr $(,)?) => {
        $crate::store_contract!(@each $make;
            accounts::usernames_are_unique_without_regard_to_case,
            accounts::a_new_user_starts_active_with_nothing,
            accounts::users_list_newest_first_filtered_and_paged,
            accounts::disabling_a_user_or_changing_a_password_revokes_sessions,
            accounts::changing_an_unknown_user_is_not_found,
            accounts::admins_are_counted,
            accounts::keys_are_created_all_or_none,
            accounts::keys_for_an_unknown_owner_are_not_found,
            accounts::imported_keys_are_flagged,
            accounts::keys_list_newest_first_filtered_and_paged,
            accounts::a_key_update_applies_its_patch,
            accounts::resetting_a_key_zeroes_its_usage_and_keeps_its_policy,
            accounts::a_deleted_key_is_gone_and_its_id_is_not_reused,
            ledger::each_ledger_operation_writes_one_row_and_the_rows_sum_to_the_balance,
            ledger::a_refused_ledger_operation_changes_nothing,
            ledger::an_order_number_replays_the_same_operation_and_refuses_another,
            ledger::a_refund_is_bounded_by_the_order_it_names,
            ledger::transactions_list_newest_first_filtered_and_paged,
            ledger::concurrent_consumes_never_overspend,
            ledger::concurrent_replays_charge_once,
            records::usage_records_list_latest_written_first,
            records::a_large_batch_of_usage_records_is_written_whole_and_in_order,
            records::prices_are_set_replaced_listed_by_name_and_deleted,
            billing::a_settled_reservation_charges_the_user_once,
            billing::a_released_reservation_charges_nothing,
            billing::usage_above_the_hold_is_billed_even_below_a_zero_balance,
            billing::a_failed_call_is_charged_and_keeps_its_call,
            billing::a_charge_of_zero_or_less_writes_no_row,
            billing::a_reservation_closes_once,
            billing::each_key_limit_refuses_a_hold_and_changes_nothing,
            billing::a_hold_beyond_the_free_balance_is_refused_and_changes_nothing,
            billing::a_hold_for_someone_elses_key_is_not_found,
            billing::a_request_id_holds_once_at_a_time,
            billing::many_settlements_reusing_request_ids_write_one_row_each,
            billing::a_long_description_is_cut_rather_than_refused,
            billing::calls_cut_while_a_call_is_held_stop_at_zero,
            billing::a_key_deleted_meanwhile_still_charges_its_user,
            billing::no_sweep_takes_a_live_hold,
            billing::holds_limit_ledger_debits,
            billing::concurrent_reserves_never_overspend,
            billing::concurrent_calls_never_exceed_remaining_calls,
            billing::concurrent_holds_never_exceed_a_token_or_credit_limit,
        );
    };
    (@each $make:expr; $($module:ident :: $name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::testkit::run($make, $crate::testkit::$module::$name);
            }
        )*
    };
}
