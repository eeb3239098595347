//! Ledger math: how each credit operation moves a user's account, as pure functions.
//!
//! Invariants, kept by [`plan`] and checked by the property tests below:
//! - every transaction row has `balance_after = balance_before + amount` (amount is signed);
//! - a user's balance equals the sum of the amounts of their transactions;
//! - no operation takes the balance below zero (a consume that does not fit is refused whole);
//! - refunds never exceed what was consumed: in total (`total_consumed` never goes negative) and,
//!   for a refund naming an order, the amount consumed under that order number.
//!
//! ```
//! use apihub_core::ledger::{plan, Account, LedgerOp, TxType};
//! use apihub_core::Money;
//!
//! let account = Account::default();
//! let recharge = plan(&account, &LedgerOp::new(TxType::Recharge, Money::from_credits(10))).unwrap();
//! assert_eq!(recharge.after.balance, Money::from_credits(10));
//! let too_much = LedgerOp::new(TxType::Consume, Money::from_credits(11));
//! assert!(plan(&recharge.after, &too_much).is_err());
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::money::Money;
use crate::user::UserId;

/// The largest balance or total an account may reach (10¹² credits), far below `i64::MAX`, so
/// that a storage layer can add any accepted amount to any stored total without overflow.
pub const MAX_TOTAL: Money = Money::from_micros(1_000_000_000_000_000_000);

/// Longest accepted order number.
pub const MAX_ORDER_NO_LEN: usize = 64;
/// Longest accepted description.
pub const MAX_DESCRIPTION_LEN: usize = 500;

/// The kind of a ledger row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxType {
    /// Credit bought or granted.
    Recharge,
    /// Credit spent.
    Consume,
    /// Spent credit given back.
    Refund,
    /// A signed correction by an administrator.
    Adjust,
}

impl TxType {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TxType::Recharge => "recharge",
            TxType::Consume => "consume",
            TxType::Refund => "refund",
            TxType::Adjust => "adjust",
        }
    }

    /// Reads the stored name.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "recharge" => TxType::Recharge,
            "consume" => TxType::Consume,
            "refund" => TxType::Refund,
            "adjust" => TxType::Adjust,
            _ => return None,
        })
    }
}

/// A user's credit: the balance and its running totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Account {
    /// Spendable credit; never negative.
    pub balance: Money,
    /// Sum of recharges.
    pub total_recharged: Money,
    /// Sum of consumes less refunds; never negative.
    pub total_consumed: Money,
}

/// A requested credit operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerOp {
    /// What kind of operation.
    pub tx_type: TxType,
    /// A positive amount, except for [`TxType::Adjust`], where the sign says the direction.
    pub amount: Money,
    /// Makes the operation idempotent; a refund's names the consumed order it refunds.
    pub order_no: Option<String>,
    /// Free text kept on the row.
    pub description: Option<String>,
}

impl LedgerOp {
    /// An operation with no order number and no description.
    pub fn new(tx_type: TxType, amount: Money) -> Self {
        LedgerOp { tx_type, amount, order_no: None, description: None }
    }

    /// Sets the order number.
    pub fn with_order_no(mut self, order_no: impl Into<String>) -> Self {
        self.order_no = Some(order_no.into());
        self
    }

    /// Sets the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }
}

/// How an operation changes an account: the deltas a storage layer applies in one conditional update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountDelta {
    /// Signed change of the balance; the row's `amount`.
    pub balance: Money,
    /// Change of `total_recharged`.
    pub recharged: Money,
    /// Signed change of `total_consumed`.
    pub consumed: Money,
}

/// A planned transition: the deltas and the account before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// What changes.
    pub delta: AccountDelta,
    /// The account before.
    pub before: Account,
    /// The account after.
    pub after: Account,
}

/// Why an operation cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// Zero, or negative where only positive amounts make sense.
    #[error("amount must be greater than zero")]
    NonPositiveAmount,
    /// An adjustment of zero.
    #[error("an adjustment must not be zero")]
    ZeroAdjustment,
    /// The balance does not cover the debit.
    #[error("insufficient balance: {available} available, {required} required")]
    InsufficientBalance {
        /// Balance now.
        available: Money,
        /// What the operation needs.
        required: Money,
    },
    /// A refund larger than what was consumed.
    #[error("refund exceeds the amount consumed ({refundable} refundable)")]
    RefundExceedsConsumed {
        /// The most that may still be refunded.
        refundable: Money,
    },
    /// A total would leave the representable range.
    #[error("amount overflows the account")]
    Overflow,
    /// An order number or description that is too long or empty.
    #[error("{0}")]
    InvalidField(&'static str),
}

/// The deltas an operation implies, validating its amount but not the account.
pub fn delta_of(op: &LedgerOp) -> Result<AccountDelta, LedgerError> {
    validate_text(op)?;
    let amount = op.amount;
    let positive = || if amount.is_positive() { Ok(amount) } else { Err(LedgerError::NonPositiveAmount) };
    let neg = |m: Money| m.checked_neg().ok_or(LedgerError::Overflow);
    Ok(match op.tx_type {
        TxType::Recharge => AccountDelta { balance: positive()?, recharged: amount, consumed: Money::ZERO },
        TxType::Consume => AccountDelta { balance: neg(positive()?)?, recharged: Money::ZERO, consumed: amount },
        TxType::Refund => AccountDelta { balance: positive()?, recharged: Money::ZERO, consumed: neg(amount)? },
        TxType::Adjust => {
            if amount == Money::ZERO {
                return Err(LedgerError::ZeroAdjustment);
            }
            AccountDelta { balance: amount, recharged: Money::ZERO, consumed: Money::ZERO }
        }
    })
}

/// Refuses an order number that is not 1 to [`MAX_ORDER_NO_LEN`] printable ASCII characters.
pub fn check_order_no(order_no: &str) -> Result<(), LedgerError> {
    let ok =
        !order_no.is_empty() && order_no.len() <= MAX_ORDER_NO_LEN && order_no.bytes().all(|b| b.is_ascii_graphic());
    if ok { Ok(()) } else { Err(LedgerError::InvalidField("order_no must be 1 to 64 printable ASCII characters")) }
}

fn validate_text(op: &LedgerOp) -> Result<(), LedgerError> {
    if let Some(order_no) = &op.order_no {
        check_order_no(order_no)?;
    }
    if op.description.as_ref().is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_LEN) {
        return Err(LedgerError::InvalidField("description must be at most 500 characters"));
    }
    Ok(())
}

/// Plans `op` against `account`, refusing anything that would break an invariant: an operation
/// that lowers the balance must leave it at zero or above (one that raises it is always allowed,
/// even when the balance stays below zero after a settled overage).
pub fn plan(account: &Account, op: &LedgerOp) -> Result<Transition, LedgerError> {
    plan_inner(account, op, false)
}

/// Plans the consume row of a settled request: like [`plan`], except that the charge may take the
/// balance below zero (usage above the request's hold is billed all the same; see
/// [`billing`](crate::billing)).
pub fn plan_settlement(account: &Account, op: &LedgerOp) -> Result<Transition, LedgerError> {
    plan_inner(account, op, true)
}

fn plan_inner(account: &Account, op: &LedgerOp, may_overdraw: bool) -> Result<Transition, LedgerError> {
    let delta = delta_of(op)?;
    let add = |a: Money, b: Money| a.checked_add(b).ok_or(LedgerError::Overflow);
    let after = Account {
        balance: add(account.balance, delta.balance)?,
        total_recharged: add(account.total_recharged, delta.recharged)?,
        total_consumed: add(account.total_consumed, delta.consumed)?,
    };
    if after.balance > MAX_TOTAL || after.total_recharged > MAX_TOTAL {
        return Err(LedgerError::Overflow);
    }
    if after.balance.is_negative() && delta.balance.is_negative() && !may_overdraw {
        return Err(LedgerError::InsufficientBalance { available: account.balance, required: delta.balance.abs() });
    }
    if after.total_consumed.is_negative() {
        return Err(LedgerError::RefundExceedsConsumed { refundable: account.total_consumed });
    }
    Ok(Transition { delta, before: *account, after })
}

/// Checks a refund that names an order against what that order consumed and what was already refunded for it.
pub fn check_order_refund(consumed: Money, already_refunded: Money, refund: Money) -> Result<(), LedgerError> {
    let refundable = consumed.checked_sub(already_refunded).ok_or(LedgerError::Overflow)?;
    if refund > refundable {
        return Err(LedgerError::RefundExceedsConsumed { refundable: refundable.max(Money::ZERO) });
    }
    Ok(())
}

/// A ledger row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Primary key.
    pub id: i64,
    /// Whose account.
    pub user_id: UserId,
    /// Kind.
    pub tx_type: TxType,
    /// Signed change of the balance.
    pub amount: Money,
    /// Balance before the row.
    pub balance_before: Money,
    /// Balance after the row.
    pub balance_after: Money,
    /// Order number, if any.
    pub order_no: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// The result of applying an operation: the row, and whether it was written now or found from an
/// earlier call with the same order number (an idempotent replay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The transaction row.
    pub transaction: Transaction,
    /// The account after the operation (now, for a replay).
    pub account: Account,
    /// True when nothing changed because the order number had been applied before.
    pub replayed: bool,
}

/// What an earlier row with the same order number means for a new request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Same user, kind and amount: return the earlier row, change nothing.
    Same,
    /// Anything else: a conflict.
    Conflict,
}

/// Compares a request with an earlier row that carries the same order number.
pub fn compare_replay(existing: &Transaction, user_id: UserId, op: &LedgerOp) -> Replay {
    let same_amount = delta_of(op).map(|d| d.balance == existing.amount).unwrap_or(false);
    if existing.user_id == user_id && existing.tx_type == op.tx_type && same_amount {
        Replay::Same
    } else {
        Replay::Conflict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn op() -> impl Strategy<Value = LedgerOp> {
        let kind =
            prop_oneof![Just(TxType::Recharge), Just(TxType::Consume), Just(TxType::Refund), Just(TxType::Adjust)];
        (kind, -5_000_000i64..20_000_000).prop_map(|(k, a)| LedgerOp::new(k, Money::from_micros(a)))
    }

    #[test]
    fn recharge_then_consume() {
        let a = Account::default();
        let t = plan(&a, &LedgerOp::new(TxType::Recharge, Money::from_credits(5))).unwrap();
        let t2 = plan(&t.after, &LedgerOp::new(TxType::Consume, Money::from_credits(2))).unwrap();
        assert_eq!(t2.after.balance, Money::from_credits(3));
        assert_eq!(t2.after.total_consumed, Money::from_credits(2));
        assert_eq!(t2.delta.balance, Money::from_credits(-2));
    }

    #[test]
    fn refusals() {
        let a = Account { balance: Money::from_credits(1), ..Account::default() };
        assert!(matches!(
            plan(&a, &LedgerOp::new(TxType::Consume, Money::from_credits(2))),
            Err(LedgerError::InsufficientBalance { .. })
        ));
        assert!(matches!(
            plan(&a, &LedgerOp::new(TxType::Refund, Money::from_micros(1))),
            Err(LedgerError::RefundExceedsConsumed { .. })
        ));
        assert_eq!(plan(&a, &LedgerOp::new(TxType::Recharge, Money::ZERO)), Err(LedgerError::NonPositiveAmount));
        assert_eq!(plan(&a, &LedgerOp::new(TxType::Adjust, Money::ZERO)), Err(LedgerError::ZeroAdjustment));
        assert!(plan(&a, &LedgerOp::new(TxType::Adjust, Money::from_credits(-2))).is_err());
        assert!(plan(&a, &LedgerOp::new(TxType::Recharge, Money::from_credits(1)).with_order_no("has space")).is_err());
    }

    #[test]
    fn order_refunds_are_bounded() {
        assert!(check_order_refund(Money::from_credits(5), Money::from_credits(2), Money::from_credits(3)).is_ok());
        assert!(
            check_order_refund(Money::from_credits(5), Money::from_credits(2), Money::from_micros(3_000_001)).is_err()
        );
    }

    proptest! {
        /// Model: apply random operations; every accepted one yields a row; the rows keep every invariant.
        #[test]
        fn invariants_hold_over_any_sequence(ops in proptest::collection::vec(op(), 0..60)) {
            let mut account = Account::default();
            let mut sum = Money::ZERO;
            let mut consumed = Money::ZERO;
            let mut refunded = Money::ZERO;
            for op in &ops {
                if let Ok(t) = plan(&account, op) {
                    prop_assert_eq!(t.after.balance, t.before.balance.checked_add(t.delta.balance).unwrap());
                    sum = sum.checked_add(t.delta.balance).unwrap();
                    match op.tx_type {
                        TxType::Consume => consumed = consumed.checked_add(op.amount).unwrap(),
                        TxType::Refund => refunded = refunded.checked_add(op.amount).unwrap(),
                        _ => {}
                    }
                    account = t.after;
                }
                prop_assert_eq!(account.balance, sum);
                prop_assert!(!account.balance.is_negative());
                prop_assert!(refunded <= consumed);
                prop_assert_eq!(account.total_consumed, consumed.checked_sub(refunded).unwrap());
            }
        }
    }
}
