//! Tests of the book: holds, settlements, leases and budget windows, and a property test of the
//! book against a model database.

use super::*;
use crate::billing::{HoldRequest, NewReservation, Settlement};
use crate::budget::Period;
use proptest::prelude::*;

fn credits(text: &str) -> Money {
    Money::parse(text).unwrap()
}

fn reservation(user_id: UserId, key_id: KeyId, amount: &str, tokens: i64) -> NewReservation {
    NewReservation {
        user_id,
        key_id,
        request_id: format!("r-{amount}"),
        hold: HoldRequest { amount: credits(amount), tokens },
    }
}

fn settlement(charge: &str, tokens: i64, success: bool) -> Settlement {
    Settlement { charge: credits(charge), tokens, success, description: "test".into() }
}

fn book(balance: &str, key: StoredKey) -> CreditBook {
    let mut book = CreditBook::default();
    book.store_user(1, credits(balance));
    book.store_key(7, StoredKey { user_id: 1, ..key });
    book
}

#[test]
fn an_unloaded_user_or_key_is_asked_for() {
    let mut book = CreditBook::default();
    assert!(matches!(book.hold(&reservation(1, 7, "1", 1)), Err(HoldError::UserNotLoaded(1))));
    book.store_user(1, credits("5"));
    assert!(matches!(book.hold(&reservation(1, 7, "1", 1)), Err(HoldError::KeyNotLoaded(7))));
    book.store_key(7, StoredKey { user_id: 2, ..StoredKey::default() });
    assert!(matches!(book.hold(&reservation(1, 7, "1", 1)), Err(HoldError::Refused(BillingError::Store(_)))));
}

#[test]
fn holds_never_exceed_the_balance_and_settlements_free_the_rest() {
    let mut book = book("1", StoredKey::default());
    let first = book.hold(&reservation(1, 7, "0.6", 10)).unwrap();
    assert!(matches!(
        book.hold(&reservation(1, 7, "0.5", 10)),
        Err(HoldError::Refused(BillingError::InsufficientBalance { .. }))
    ));
    book.settle(first, &settlement("0.2", 5, true)).unwrap();
    assert_eq!(book.funds(1).unwrap(), UserFunds { balance: credits("0.8"), reserved: Money::ZERO });
    assert!(book.hold(&reservation(1, 7, "0.8", 10)).is_ok());
    assert!(matches!(book.settle(first, &settlement("0.2", 5, true)), Err(BillingError::NotOpen(_))));
}

#[test]
fn usage_above_the_hold_is_billed_and_may_take_the_balance_below_zero() {
    let mut book = book("1", StoredKey { quota_limit: Some(credits("2")), ..StoredKey::default() });
    let id = book.hold(&reservation(1, 7, "0.5", 10)).unwrap();
    let (settled, debit) = book.settle(id, &settlement("1.5", 3_000, true)).unwrap();
    assert_eq!((settled.charged, settled.overage), (credits("1.5"), credits("1")));
    assert_eq!(debit.overage, credits("1"));
    assert_eq!(book.funds(1).unwrap().balance, credits("-0.5"));
    let counters = book.key_counters(7).unwrap();
    assert_eq!((counters.quota_used, counters.tokens_used), (credits("1.5"), 3_000));
    // Nothing is available until the user tops up.
    assert!(matches!(
        book.hold(&reservation(1, 7, "0.000001", 1)),
        Err(HoldError::Refused(BillingError::InsufficientBalance { .. }))
    ));
}

#[test]
fn a_lease_shrinks_to_what_is_held_and_a_charge_beyond_it_leaves_it_empty_not_negative() {
    let mut book = CreditBook::default();
    book.grant_user(1, credits("1"));
    book.store_key(7, StoredKey { user_id: 1, token_limit: Some(100), ..StoredKey::default() });
    let id = book.hold(&reservation(1, 7, "0.4", 50)).unwrap();
    // Given back but for the open hold: nothing is left for another.
    assert_eq!(book.shrink_user(1), Some(400_000));
    assert!(matches!(
        book.hold(&reservation(1, 7, "0.1", 1)),
        Err(HoldError::Refused(BillingError::InsufficientBalance { .. }))
    ));
    book.grant_user(1, credits("0.5"));
    // The upstream reports far more than the lease: the excess came from the balance itself.
    let (_, debit) = book.settle(id, &settlement("2", 150, true)).unwrap();
    book.written(std::slice::from_ref(&debit));
    book.clamp_leases(&[debit]);
    assert_eq!(book.funds(1).unwrap().balance, Money::ZERO);
    assert_eq!(book.key_counters(7).unwrap().tokens_used, 100);
    assert!(matches!(
        book.hold(&reservation(1, 7, "0", 1)),
        Err(HoldError::Refused(BillingError::KeyLimit { limit: "token_limit" }))
    ));
    assert!(book.grant_key(7, None, Some(20), None));
    assert!(book.hold(&reservation(1, 7, "0", 20)).is_ok());
    assert_eq!(book.user_commitments(1), Some(0));
    assert_eq!(book.key_commitments(7), Some([0, 20, 1]));
    // The token limit lifted in the database: the next grant says so, and the book drops it.
    assert!(book.grant_key(7, None, None, None));
    assert_eq!(book.key_counters(7).unwrap().token_limit, None);
    assert!(book.grant_key(7, Some(Money::ZERO), Some(5), Some(1)), "limits the key lacks stay absent");
    assert_eq!(book.key_counters(7).unwrap().token_limit, None);
}

#[test]
fn a_forgotten_key_or_window_still_counts_what_its_open_holds_and_unwritten_debits_take() {
    let mut book = book("10", StoredKey { quota_limit: Some(credits("5")), ..StoredKey::default() });
    let window = MeterId { budget: 3, start: 1_000, end: 2_000 };
    let stored = StoredMeter { scope: "key", period: Period::Day, limits: [None; 3], used: [0; 3] };
    book.store_meter(window, stored);
    let open = book.hold_metered(&reservation(1, 7, "0.4", 50), &[window]).unwrap();
    let settled = book.hold_metered(&reservation(1, 7, "0.3", 20), &[window]).unwrap();
    book.settle(settled, &settlement("0.25", 30, false)).unwrap();
    book.forget_key(7);
    book.forget_meter(window);
    assert!(!book.counts(Lease::Key(7)) && !book.counts(Lease::Meter(3, 1_000)) && book.counts(Lease::User(1)));
    // The open hold's credit, tokens and call, and the settled (failed) call's credit and tokens.
    assert_eq!(book.taken(Lease::Key(7)), [650_000, 80, 1]);
    assert_eq!(book.taken(Lease::Meter(3, 1_000)), [650_000, 80, 1]);
    assert_eq!(book.taken(Lease::Meter(3, 2_000)), [0; 3], "another window of the budget");
    assert_eq!(book.taken(Lease::Key(8)), [0; 3]);
    book.written(&book.to_write(10));
    book.release(open).unwrap();
    assert_eq!(book.taken(Lease::Key(7)), [0; 3], "nothing held, nothing unwritten");
}

#[test]
fn a_key_or_window_back_in_the_book_counts_the_holds_and_debits_taken_before_it_left() {
    let mut book = book("10", StoredKey { quota_limit: Some(credits("5")), ..StoredKey::default() });
    let window = MeterId { budget: 3, start: 1_000, end: 2_000 };
    let stored = StoredMeter { scope: "key", period: Period::Day, limits: [Some(5_000_000), None, None], used: [0; 3] };
    book.store_meter(window, stored);
    let open = book.hold_metered(&reservation(1, 7, "0.4", 50), &[window]).unwrap();
    let settled = book.hold_metered(&reservation(1, 7, "0.3", 20), &[window]).unwrap();
    book.settle(settled, &settlement("0.25", 30, true)).unwrap();
    // An administrator changed the key and the budget: both leave the book and are read again.
    book.forget_key(7);
    book.forget_meter(window);
    book.store_key(7, StoredKey { user_id: 1, quota_limit: Some(credits("1")), ..StoredKey::default() });
    book.store_meter(window, stored);
    let counters = book.key_counters(7).unwrap();
    assert_eq!((counters.quota_reserved, counters.quota_used), (credits("0.4"), credits("0.25")));
    assert_eq!(book.key_commitments(7), Some([650_000, 80, 2]));
    assert_eq!(book.meter_commitments(window), Some([650_000, 80, 2]));
    // Closing and writing them leaves nothing negative behind: the key is idle again.
    book.release(open).unwrap();
    book.written(&book.to_write(10));
    assert_eq!(book.key_commitments(7), Some([0; 3]));
    assert_eq!(book.meter_commitments(window), Some([0; 3]));
    assert_eq!(book.idle_keys().len(), 1);
    assert_eq!(book.key_counters(7).unwrap().quota_used, credits("0.25"));
}

#[test]
fn a_row_reread_after_writes_counts_each_settlement_once() {
    let mut book = book("10", StoredKey { remaining_calls: Some(3), ..StoredKey::default() });
    for _ in 0..2 {
        let id = book.hold(&reservation(1, 7, "1", 10)).unwrap();
        book.settle(id, &settlement("1", 10, true)).unwrap();
    }
    let batch = book.to_write(1);
    book.written(&batch);
    // The database now has the first debit; a recharge of 5 is written and the row re-read.
    book.store_user(1, credits("14"));
    book.store_key(
        7,
        StoredKey {
            user_id: 1,
            remaining_calls: Some(2),
            quota_used: credits("1"),
            tokens_used: 10,
            ..StoredKey::default()
        },
    );
    assert_eq!(book.funds(1).unwrap().balance, credits("13"));
    assert_eq!(book.key_counters(7).unwrap().remaining_calls, Some(1));
    book.written(&book.to_write(10));
    assert_eq!(book.funds(1).unwrap().balance, credits("13"));
    let counters = book.key_counters(7).unwrap();
    assert_eq!((counters.remaining_calls, counters.quota_used, counters.tokens_used), (Some(1), credits("2"), 20));
    assert_eq!(book.unwritten(), 0);
}

#[test]
fn a_budget_window_admits_holds_within_its_limits_and_counts_what_was_settled() {
    let mut book = book("100", StoredKey::default());
    let day = MeterId { budget: 3, start: 1_000, end: 2_000 };
    let meter = |used| StoredMeter {
        scope: "key",
        period: Period::Day,
        limits: [Some(credits("1").micros()), None, Some(2)],
        used,
    };
    let new = |id: &str| NewReservation { request_id: id.into(), ..reservation(1, 7, "0.3", 10) };
    assert!(matches!(book.hold_metered(&new("a"), &[day]), Err(HoldError::MeterNotLoaded(id)) if id == day));
    book.store_meter(day, meter([0; 3]));
    let a = book.hold_metered(&new("a"), &[day]).unwrap();
    let b = book.hold_metered(&new("b"), &[day]).unwrap();
    // Two calls held: a third is refused although credit is left.
    let refused = book.hold_metered(&new("c"), &[day]);
    assert!(matches!(
        refused,
        Err(HoldError::Refused(BillingError::BudgetSpent { limit: "calls", resets_at: 2_000, .. }))
    ));
    book.release(b).unwrap();
    let (_, debit) = book.settle(a, &settlement("0.4", 12, true)).unwrap();
    assert_eq!(debit.meters, vec![day]);
    assert_eq!(book.meter(day).unwrap().0.used, [400_000, 12, 1]);
    book.written(&[debit]);
    assert_eq!(book.meter(day).unwrap(), (meter([400_000, 12, 1]), [0; 3]));
    // 0.4 used + 0.3 held = 0.7; another 0.3 would go to 1.0, and 0.301 beyond it.
    let c = book.hold_metered(&new("c"), &[day]).unwrap();
    let refused =
        book.hold_metered(&NewReservation { request_id: "d".into(), ..reservation(1, 7, "0.301", 1) }, &[day]);
    assert!(matches!(refused, Err(HoldError::Refused(BillingError::BudgetSpent { limit: "credit", .. }))));
    book.release(c).unwrap();
    // The next window starts empty; an ended idle window is forgotten.
    let next = MeterId { budget: 3, start: 2_000, end: 3_000 };
    book.store_meter(next, meter([0; 3]));
    book.forget_ended_meters(2_000);
    assert!(!book.has_meter(day) && book.has_meter(next));
}

#[test]
fn remaining_calls_count_successes_only_and_stop_at_zero() {
    let mut book = book("10", StoredKey { remaining_calls: Some(1), ..StoredKey::default() });
    let id = book.hold(&reservation(1, 7, "1", 1)).unwrap();
    assert!(matches!(
        book.hold(&reservation(1, 7, "1", 1)),
        Err(HoldError::Refused(BillingError::KeyLimit { limit: "remaining_calls" }))
    ));
    book.settle(id, &settlement("0", 1, false)).unwrap();
    let id = book.hold(&reservation(1, 7, "1", 1)).unwrap();
    book.settle(id, &settlement("0.1", 1, true)).unwrap();
    assert_eq!(book.key_counters(7).unwrap().remaining_calls, Some(0));
    book.written(&book.to_write(10));
    assert_eq!(book.key_counters(7).unwrap().remaining_calls, Some(0));
}

#[derive(Debug, Clone)]
enum Step {
    Hold { amount: i64, tokens: i64 },
    Settle { pick: usize, charge: i64, tokens: i64, success: bool },
    Release { pick: usize },
    Write { max: usize },
    Recharge { amount: i64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0i64..400, 0i64..50).prop_map(|(amount, tokens)| Step::Hold { amount, tokens }),
        (any::<usize>(), 0i64..800, 0i64..100, any::<bool>())
            .prop_map(|(pick, charge, tokens, success)| Step::Settle { pick, charge, tokens, success }),
        any::<usize>().prop_map(|pick| Step::Release { pick }),
        (0usize..5).prop_map(|max| Step::Write { max }),
        (0i64..300).prop_map(|amount| Step::Recharge { amount }),
    ]
}

/// The writer, against the model database: writes the oldest `max` debits.
fn write(book: &mut CreditBook, max: usize, balance: &mut i64, ledger_sum: &mut i64, key: &mut StoredKey) {
    let batch = book.to_write(max);
    for debit in &batch {
        *balance -= debit.charge.micros();
        *ledger_sum -= debit.charge.micros();
        key.quota_used = Money::from_micros(key.quota_used.micros() + debit.charge.micros());
        key.tokens_used += debit.tokens;
        if debit.success {
            key.remaining_calls = key.remaining_calls.map(|left| (left - 1).max(0));
        }
    }
    book.written(&batch);
}

proptest! {
    /// Against a plain model of the database (a balance, a ledger and key counters written
    /// only by the writer or a recharge): the book always equals the database plus the unwritten
    /// debits, holds never exceed what is available without an overage, and after every debit
    /// is written the two agree exactly.
    #[test]
    fn the_book_is_the_database_plus_the_unwritten_debits(steps in proptest::collection::vec(step(), 1..80)) {
        let limits = StoredKey { user_id: 1, quota_limit: Some(Money::from_micros(5_000)), token_limit: Some(2_000), remaining_calls: Some(20), ..StoredKey::default() };
        let mut book = CreditBook::default();
        let mut db_balance = 1_000i64;
        let mut db_key = limits;
        let mut ledger_sum = 1_000i64;
        book.store_user(1, Money::from_micros(db_balance));
        book.store_key(7, db_key);
        let mut open: Vec<ReservationId> = Vec::new();
        for step in steps {
            match step {
                Step::Hold { amount, tokens } => {
                    let before = book.funds(1).unwrap();
                    let new = NewReservation { user_id: 1, key_id: 7, request_id: "r".into(), hold: HoldRequest { amount: Money::from_micros(amount), tokens } };
                    match book.hold(&new) {
                        Ok(id) => {
                            prop_assert!(amount <= before.available().micros());
                            open.push(id);
                        }
                        Err(HoldError::Refused(_)) => {}
                        Err(other) => prop_assert!(false, "{other:?}"),
                    }
                }
                Step::Settle { pick, charge, tokens, success } if !open.is_empty() => {
                    let id = open.swap_remove(pick % open.len());
                    book.settle(id, &Settlement { charge: Money::from_micros(charge), tokens, success, description: String::new() }).unwrap();
                }
                Step::Release { pick } if !open.is_empty() => {
                    let id = open.swap_remove(pick % open.len());
                    book.release(id).unwrap();
                }
                Step::Write { max } => write(&mut book, max, &mut db_balance, &mut ledger_sum, &mut db_key),
                Step::Recharge { amount } => {
                    db_balance += amount;
                    ledger_sum += amount;
                    book.store_user(1, Money::from_micros(db_balance));
                }
                _ => {}
            }
            let unwritten: i64 = book.queue.iter().map(|d| d.charge.micros()).sum();
            prop_assert_eq!(book.funds(1).unwrap().balance.micros(), db_balance - unwritten);
            prop_assert_eq!(db_balance, ledger_sum);
        }
        for id in open.drain(..) {
            book.release(id).unwrap();
        }
        write(&mut book, usize::MAX, &mut db_balance, &mut ledger_sum, &mut db_key);
        prop_assert_eq!(book.funds(1).unwrap(), UserFunds { balance: Money::from_micros(db_balance), reserved: Money::ZERO });
        let counters = book.key_counters(7).unwrap();
        prop_assert_eq!((counters.quota_used, counters.tokens_used, counters.remaining_calls), (db_key.quota_used, db_key.tokens_used, db_key.remaining_calls));
        prop_assert_eq!((counters.quota_reserved, counters.tokens_reserved, counters.calls_reserved), (Money::ZERO, 0, 0));
    }
}
