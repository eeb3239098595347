//! Reservations: money moves as reserve → settle (or release).
//!
//! Before a request is forwarded, the most it can cost is *held* against the user's available
//! balance (`balance - reserved`) and against the key's quotas, atomically. When the response ends
//! the actual charge is *settled*: the balance is debited by the whole charge (usage above the hold
//! is billed too, from the user's free credit and, when that is not enough, by taking the balance
//! below zero by at most that excess), the key's counters grow by what was billed, a `consume`
//! ledger row is written, and the hold is freed.
//! An upstream error, a timeout or a disconnect before any output *releases* the hold instead.
//!
//! The rules here are pure; a store applies them with conditional updates (see
//! [`BillingStore`]) and calls [`check_hold`] to explain a refusal.
//!
//! ```
//! use apihub_core::billing::{check_hold, HoldRequest, KeyCounters, UserFunds};
//! use apihub_core::Money;
//!
//! let funds = UserFunds { balance: Money::from_credits(1), reserved: Money::ZERO };
//! let key = KeyCounters::default();
//! let hold = HoldRequest { amount: Money::from_credits(2), tokens: 100 };
//! assert!(check_hold(&funds, &key, &hold).is_err());
//! ```

use async_trait::async_trait;

use crate::ledger::Transaction;
use crate::money::Money;
use crate::policy::KeyId;
use crate::store::StoreError;
use crate::user::UserId;

/// A stored reservation's id.
pub type ReservationId = i64;

/// What one request holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldRequest {
    /// The most the request can be charged (after discounts).
    pub amount: Money,
    /// The most tokens it can use (prompt estimate plus output cap).
    pub tokens: i64,
}

/// A reservation to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReservation {
    /// Whose balance.
    pub user_id: UserId,
    /// Which key's quotas.
    pub key_id: KeyId,
    /// The gateway's request id; becomes the `order_no` of the consume row.
    pub request_id: String,
    /// What is held.
    pub hold: HoldRequest,
}

/// A user's balance and what is already held against it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserFunds {
    /// The ledger balance.
    pub balance: Money,
    /// Sum of open holds.
    pub reserved: Money,
}

impl UserFunds {
    /// What a new hold may take.
    pub fn available(&self) -> Money {
        self.balance.checked_sub(self.reserved).unwrap_or(Money::ZERO).max(Money::ZERO)
    }

    /// The balance less open holds, in micros, below zero when settled charges went beyond what
    /// was held (what a lease must grow by before a new hold fits, beyond the hold itself).
    pub fn margin(&self) -> i64 {
        self.balance.micros().saturating_sub(self.reserved.micros())
    }
}

/// A key's limits and counters, including open holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyCounters {
    /// Lifetime token limit.
    pub token_limit: Option<i64>,
    /// Lifetime credit limit.
    pub quota_limit: Option<Money>,
    /// Calls left (only successful calls count down).
    pub remaining_calls: Option<i64>,
    /// Tokens used so far.
    pub tokens_used: i64,
    /// Credits charged so far.
    pub quota_used: Money,
    /// Tokens held by open reservations.
    pub tokens_reserved: i64,
    /// Credits held by open reservations.
    pub quota_reserved: Money,
    /// Calls held by open reservations.
    pub calls_reserved: i64,
}

impl KeyCounters {
    /// How much more of each limit `hold` needs than the key has left: credit (micros), tokens,
    /// calls; 0 for a limit the key does not have or that covers the hold.
    pub fn shortfall(&self, hold: &HoldRequest) -> [i64; 3] {
        let quota = self.quota_limit.map_or(0, |limit| {
            self.quota_used.micros() + self.quota_reserved.micros() + hold.amount.micros() - limit.micros()
        });
        let tokens = self.token_limit.map_or(0, |limit| self.tokens_used + self.tokens_reserved + hold.tokens - limit);
        let calls = self.remaining_calls.map_or(0, |left| 1 - (left - self.calls_reserved));
        [quota.max(0), tokens.max(0), calls.max(0)]
    }
}

/// Why a hold was refused or a reservation could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// The user's available balance does not cover the hold.
    #[error("insufficient balance: {available} available, up to {required} required")]
    InsufficientBalance {
        /// Balance less open holds.
        available: Money,
        /// The hold.
        required: Money,
    },
    /// A key limit would be exceeded.
    #[error("this key's {limit} is exhausted")]
    KeyLimit {
        /// `token_limit`, `quota_limit` or `remaining_calls`.
        limit: &'static str,
    },
    /// A periodic budget's window is spent (see [`crate::budget`]).
    #[error("this {scope}'s {period} {limit} budget is spent until it resets")]
    BudgetSpent {
        /// `key` or `user`.
        scope: &'static str,
        /// The budget's period.
        period: crate::budget::Period,
        /// `credit`, `tokens` or `calls`.
        limit: &'static str,
        /// When the window ends (Unix milliseconds).
        resets_at: i64,
    },
    /// The reservation was already settled or released.
    #[error("reservation {0} is not open")]
    NotOpen(ReservationId),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a hold against the user's funds and the key's counters (what a store's conditional
/// update enforces).
pub fn check_hold(funds: &UserFunds, key: &KeyCounters, hold: &HoldRequest) -> Result<(), BillingError> {
    if let Some(limit) = key.remaining_calls
        && limit - key.calls_reserved < 1
    {
        return Err(BillingError::KeyLimit { limit: "remaining_calls" });
    }
    if let Some(limit) = key.token_limit
        && key.tokens_used.saturating_add(key.tokens_reserved).saturating_add(hold.tokens) > limit
    {
        return Err(BillingError::KeyLimit { limit: "token_limit" });
    }
    if let Some(limit) = key.quota_limit {
        let after =
            key.quota_used.micros().saturating_add(key.quota_reserved.micros()).saturating_add(hold.amount.micros());
        if after > limit.micros() {
            return Err(BillingError::KeyLimit { limit: "quota_limit" });
        }
    }
    if hold.amount > funds.available() {
        return Err(BillingError::InsufficientBalance { available: funds.available(), required: hold.amount });
    }
    Ok(())
}

/// Refuses a reservation no store may hold, before anything is looked up: a negative hold, or a
/// request id that could not be the order number of its consume row.
pub fn check_new(new: &NewReservation) -> Result<(), BillingError> {
    if new.hold.amount.is_negative() || new.hold.tokens < 0 {
        return Err(StoreError::from(crate::ledger::LedgerError::InvalidField("a hold must not be negative")).into());
    }
    crate::ledger::check_order_no(&new.request_id).map_err(|e| StoreError::from(e).into())
}

/// What a finished request is charged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// The charge after discounts, all of it, even above the hold (a negative one counts as zero).
    pub charge: Money,
    /// Tokens used.
    pub tokens: i64,
    /// Whether the call succeeded (only successes count down `remaining_calls`).
    pub success: bool,
    /// Text for the ledger row, e.g. `gpt-4o via key 12`.
    pub description: String,
}

/// The outcome of a settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The consume row, when the store wrote it before answering: none for a zero charge, nor from
    /// a store that writes settlements in batches behind the request (the SQL stores).
    pub transaction: Option<Transaction>,
    /// What was charged: the settlement's charge.
    pub charged: Money,
    /// How much of it exceeded the hold (usage above what the request was expected to cost).
    pub overage: Money,
}

/// What a settlement charges against a hold of `hold`: the whole charge (never negative), and the
/// part of it above the hold.
pub fn settle_amounts(charge: Money, hold: Money) -> (Money, Money) {
    let charge = charge.max(Money::ZERO);
    let overage = charge.checked_sub(hold).unwrap_or(Money::ZERO).max(Money::ZERO);
    (charge, overage)
}

/// Reservations, applied atomically by the store.
///
/// Contract, for every implementation:
/// - `reserve` succeeds only if [`check_hold`] passes against the current state, and applies the
///   hold in the same atomic step, so N concurrent reserves can never together exceed a balance or
///   a limit;
/// - `settle` and `release` close a reservation exactly once (a second call is
///   [`BillingError::NotOpen`]);
/// - the ledger stays consistent: the balance equals the sum of its rows, and holds are not rows.
#[async_trait]
pub trait BillingStore: Send + Sync {
    /// Holds funds and quota for a request.
    async fn reserve(&self, reservation: &NewReservation) -> Result<ReservationId, BillingError>;
    /// Charges a finished request and frees the rest of its hold.
    async fn settle(&self, id: ReservationId, settlement: &Settlement) -> Result<Settled, BillingError>;
    /// Frees a hold without charging anything.
    async fn release(&self, id: ReservationId) -> Result<(), BillingError>;
    /// Frees holds older than `age` by the store's own clock (left by a crash); returns how many.
    /// A store shared by several processes measures the age with the database's clock, so no
    /// process's clock can free another's live holds; a store that keeps holds in its process's
    /// memory frees none (a crash takes them along, and a long stream's hold must stay open).
    async fn release_stale(&self, age: std::time::Duration) -> Result<u64, BillingError>;
    /// Open holds against a user (for tests and the dashboard).
    async fn reserved_funds(&self, user_id: UserId) -> Result<UserFunds, BillingError>;
    /// The user's balance, settled charges included (written or not), when the store knows it
    /// without a round trip to a database; `None` (the default) when it would take one.
    fn known_balance(&self, _user_id: UserId) -> Option<Money> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(credits: i64, tokens: i64) -> HoldRequest {
        HoldRequest { amount: Money::from_credits(credits), tokens }
    }

    #[test]
    fn holds_respect_available_balance() {
        let funds = UserFunds { balance: Money::from_credits(10), reserved: Money::from_credits(7) };
        assert!(check_hold(&funds, &KeyCounters::default(), &hold(3, 0)).is_ok());
        assert!(matches!(
            check_hold(&funds, &KeyCounters::default(), &hold(4, 0)),
            Err(BillingError::InsufficientBalance { .. })
        ));
    }

    #[test]
    fn holds_respect_key_limits() {
        let funds = UserFunds { balance: Money::from_credits(100), reserved: Money::ZERO };
        let calls = KeyCounters { remaining_calls: Some(2), calls_reserved: 2, ..KeyCounters::default() };
        assert!(matches!(
            check_hold(&funds, &calls, &hold(1, 1)),
            Err(BillingError::KeyLimit { limit: "remaining_calls" })
        ));
        let tokens =
            KeyCounters { token_limit: Some(100), tokens_used: 50, tokens_reserved: 30, ..KeyCounters::default() };
        assert!(check_hold(&funds, &tokens, &hold(1, 20)).is_ok());
        assert!(check_hold(&funds, &tokens, &hold(1, 21)).is_err());
        let quota = KeyCounters {
            quota_limit: Some(Money::from_credits(5)),
            quota_used: Money::from_credits(4),
            ..KeyCounters::default()
        };
        assert!(check_hold(&funds, &quota, &hold(1, 0)).is_ok());
        assert!(check_hold(&funds, &quota, &hold(2, 0)).is_err());
    }

    #[test]
    fn usage_above_the_hold_is_charged_and_counted_as_overage() {
        let (five, three) = (Money::from_credits(5), Money::from_credits(3));
        assert_eq!(settle_amounts(five, three), (five, Money::from_credits(2)));
        assert_eq!(settle_amounts(three, five), (three, Money::ZERO));
        assert_eq!(settle_amounts(Money::from_credits(-1), three), (Money::ZERO, Money::ZERO));
    }
}
