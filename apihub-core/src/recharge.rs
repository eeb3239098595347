//! Online recharge orders: a user asks to buy credit, pays on the payment provider's page, and the
//! provider's signed notification marks the order paid and credits the user, once. The provider's
//! protocol (signatures, notification parameters) is the server's business; this module only
//! knows orders and a checked [`Notice`].
//!
//! An order records the credit bought (`amount`) and the money to pay for it (`money`, whole cents
//! of the operator's currency: `amount × price`, rounded by [`crate::money::round_half_up`]). A
//! notification is accepted only when the server has checked it (signature, merchant, status) and
//! its `money` equals the order's to the cent; the store then flips the order from pending to paid with one
//! conditional `UPDATE` and writes the recharge in the same transaction, so a notification
//! delivered ten times, or ten times at once, credits exactly once.
//!
//! ```
//! use apihub_core::Money;
//! use apihub_core::recharge::{RechargePolicy, format_cents};
//!
//! let policy = RechargePolicy {
//!     min_amount: Money::from_credits(1),
//!     max_amount: Money::from_credits(1000),
//!     price: Money::parse("7.3").unwrap(), // 7.30 of the currency buys one credit
//!     payment_types: vec!["alipay".into(), "wxpay".into()],
//! };
//! let money = policy.quote(Money::parse("2.5").unwrap(), "alipay").unwrap();
//! assert_eq!(format_cents(money), "18.25");
//! assert!(policy.quote(Money::parse("0.5").unwrap(), "alipay").is_err()); // below the minimum
//! assert!(policy.quote(Money::from_credits(2), "paypal").is_err()); // not offered
//! ```

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::Rng;

use crate::ledger::{Account, MAX_TOTAL, Transaction};
use crate::money::{Money, round_half_up};
use crate::store::{Page, PageRequest, StoreError};
use crate::user::UserId;

/// Micro-units in one cent.
pub const MICROS_PER_CENT: i64 = Money::MICROS_PER_CREDIT / 100;

/// Every order number starts with this, and administrators' manual operations may not use it.
pub const ORDER_PREFIX: &str = "epay";

/// Most unpaid orders one user may open within [`PENDING_WINDOW_MINUTES`]: enough for a few
/// abandoned attempts, not for filling the table.
pub const MAX_RECENT_PENDING: u64 = 10;
/// The window [`MAX_RECENT_PENDING`] counts over.
pub const PENDING_WINDOW_MINUTES: i64 = 60;

/// Whether an order awaits its payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    /// Created; no payment confirmed yet.
    Pending,
    /// Paid and credited.
    Paid,
}

impl OrderStatus {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Paid => "paid",
        }
    }

    /// Reads [`OrderStatus::as_str`]'s output.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(OrderStatus::Pending),
            "paid" => Some(OrderStatus::Paid),
            _ => None,
        }
    }
}

/// A stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RechargeOrder {
    /// Row id.
    pub id: i64,
    /// Our order number, sent to the provider as `out_trade_no`; also the recharge's order number.
    pub out_trade_no: String,
    /// Who is buying.
    pub user_id: UserId,
    /// Credit bought.
    pub amount: Money,
    /// Money to pay, whole cents.
    pub money: Money,
    /// The provider's payment method (`alipay`, `wxpay`, …).
    pub payment_type: String,
    /// Pending or paid.
    pub status: OrderStatus,
    /// The provider's trade number, once notified.
    pub trade_no: Option<String>,
    /// The administrator who completed it by hand, if one did.
    pub completed_by: Option<UserId>,
    /// The administrator's note when completed by hand.
    pub note: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was paid.
    pub paid_at: Option<DateTime<Utc>>,
}

/// An order to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// From [`generate_out_trade_no`].
    pub out_trade_no: String,
    /// Who is buying.
    pub user_id: UserId,
    /// Credit bought.
    pub amount: Money,
    /// Money to pay, from [`RechargePolicy::quote`].
    pub money: Money,
    /// One of the policy's payment types.
    pub payment_type: String,
}

/// What the operator sells: bounds, price and payment methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RechargePolicy {
    /// Smallest credit amount per order.
    pub min_amount: Money,
    /// Largest credit amount per order.
    pub max_amount: Money,
    /// Money (in the currency's units) per credit.
    pub price: Money,
    /// Accepted `type` values.
    pub payment_types: Vec<String>,
}

impl RechargePolicy {
    /// The money to pay for `amount` credit, in whole cents, or why the order is refused.
    pub fn quote(&self, amount: Money, payment_type: &str) -> Result<Money, String> {
        if !self.payment_types.iter().any(|t| t == payment_type) {
            return Err(format!("payment_type must be one of: {}", self.payment_types.join(", ")));
        }
        if amount < self.min_amount || amount > self.max_amount {
            return Err(format!("amount must be between {} and {}", self.min_amount, self.max_amount));
        }
        let money = money_for(amount, self.price).ok_or("amount is too large")?;
        if !money.is_positive() {
            return Err("the amount costs less than one cent".into());
        }
        Ok(money)
    }

    /// Checks the settings themselves (at start-up).
    pub fn check(&self) -> Result<(), String> {
        if !self.min_amount.is_positive() || self.min_amount > self.max_amount || self.max_amount > MAX_TOTAL {
            return Err("the minimum must be positive and not above the maximum".into());
        }
        if !self.price.is_positive() {
            return Err("the price must be positive".into());
        }
        if money_for(self.max_amount, self.price).is_none() {
            return Err("the maximum amount at this price does not fit".into());
        }
        if self.payment_types.is_empty() {
            return Err("at least one payment type is needed".into());
        }
        if let Some(bad) = self.payment_types.iter().find(|t| !is_payment_type(t)) {
            return Err(format!("payment type `{bad}` must be 1 to 32 lowercase letters, digits or `_`"));
        }
        Ok(())
    }
}

/// `amount × price` in whole cents, rounded once by the project's rounding rule.
fn money_for(amount: Money, price: Money) -> Option<Money> {
    let micros = i128::from(amount.micros()).checked_mul(i128::from(price.micros()))?;
    let cents = round_half_up(micros, i128::from(Money::MICROS_PER_CREDIT) * i128::from(MICROS_PER_CENT))?;
    let micros = cents.checked_mul(i128::from(MICROS_PER_CENT))?;
    i64::try_from(micros).ok().map(Money::from_micros)
}

fn is_payment_type(t: &str) -> bool {
    (1..=32).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `money` as the provider writes it: two decimals (`10.00`). Sub-cent micros are truncated, but
/// orders only ever hold whole cents.
pub fn format_cents(money: Money) -> String {
    let cents = money.micros() / MICROS_PER_CENT;
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", (cents / 100).abs(), (cents % 100).abs())
}

/// A fresh order number: [`ORDER_PREFIX`], the UTC time to the second, and 10 random lowercase
/// letters and digits (about 52 bits), so it sorts by time and cannot be guessed.
pub fn generate_out_trade_no(now: DateTime<Utc>) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let suffix: String = (0..10).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect();
    format!("{ORDER_PREFIX}{}{suffix}", now.format("%Y%m%d%H%M%S"))
}

/// Whether `text` could be one of our order numbers (checked before any lookup).
pub fn is_out_trade_no(text: &str) -> bool {
    text.len() == ORDER_PREFIX.len() + 24
        && text.starts_with(ORDER_PREFIX)
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A notification that passed every check that needs no order: the signature, our `pid`, a
/// successful trade, a well-formed order number and an exact amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Our order number.
    pub out_trade_no: String,
    /// The provider's trade number.
    pub trade_no: String,
    /// The money the provider says was paid, exact.
    pub money: Money,
    /// The payment method.
    pub payment_type: String,
}

/// How an order came to be paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// The provider's notification, already checked by the server.
    Notified(Notice),
    /// An administrator, by hand (the payment was seen outside the gateway).
    ByHand {
        /// Who.
        admin: UserId,
        /// Why; kept on the order and in the ledger row.
        note: String,
    },
}

/// The outcome of completing an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completed {
    /// Paid now: the order, its recharge row and the account after it.
    Now {
        /// The order, paid.
        order: RechargeOrder,
        /// The recharge written.
        transaction: Transaction,
        /// The account after it.
        account: Account,
    },
    /// It had been paid before; nothing changed.
    Already(RechargeOrder),
}

/// Why completing an order changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompleteRefusal {
    /// No such order.
    #[error("no such order")]
    UnknownOrder,
    /// The notification's money differs from the order's.
    #[error("money {paid} does not match the order's {expected}")]
    WrongMoney {
        /// What the notification says.
        paid: String,
        /// What the order asks.
        expected: String,
    },
}

/// Filters of the order listings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    /// Only this user's orders.
    pub user_id: Option<UserId>,
    /// Only this status.
    pub status: Option<OrderStatus>,
    /// Only this order number.
    pub out_trade_no: Option<String>,
    /// Only orders created at or after this instant.
    pub created_since: Option<DateTime<Utc>>,
}

/// Storage of recharge orders.
#[async_trait]
pub trait RechargeStore: Send + Sync {
    /// Stores a new pending order.
    async fn create_order(&self, order: &NewOrder) -> Result<RechargeOrder, StoreError>;

    /// One order by its number.
    async fn order(&self, out_trade_no: &str) -> Result<Option<RechargeOrder>, StoreError>;

    /// One page of orders, newest first.
    async fn orders(&self, filter: &OrderFilter, page: PageRequest) -> Result<Page<RechargeOrder>, StoreError>;

    /// Marks a pending order paid and credits its user, in one transaction; of concurrent calls
    /// for one order exactly one credits, and the others see [`Completed::Already`].
    async fn complete(
        &self,
        out_trade_no: &str,
        how: &Completion,
    ) -> Result<Result<Completed, CompleteRefusal>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn quotes_round_to_the_cent_once() {
        let policy = RechargePolicy {
            min_amount: Money::parse("0.01").unwrap(),
            max_amount: Money::from_credits(1_000_000),
            price: Money::parse("0.333333").unwrap(),
            payment_types: vec!["alipay".into()],
        };
        assert!(policy.check().is_ok());
        // 1 × 0.333333 = 0.333333 → 0.33; 3 × 0.333333 = 0.999999 → 1.00; 0.015 at 1 → half up.
        assert_eq!(format_cents(policy.quote(Money::from_credits(1), "alipay").unwrap()), "0.33");
        assert_eq!(format_cents(policy.quote(Money::from_credits(3), "alipay").unwrap()), "1.00");
        let at_one = RechargePolicy { price: Money::from_credits(1), ..policy.clone() };
        assert_eq!(format_cents(at_one.quote(Money::parse("0.015").unwrap(), "alipay").unwrap()), "0.02");
        assert!(policy.quote(Money::parse("0.01").unwrap(), "alipay").is_err(), "0.0033 rounds to no money");
    }

    #[test]
    fn policies_are_vetted() {
        let good = RechargePolicy {
            min_amount: Money::from_credits(1),
            max_amount: Money::from_credits(100),
            price: Money::from_credits(1),
            payment_types: vec!["alipay".into(), "wxpay".into()],
        };
        assert!(good.check().is_ok());
        assert!(RechargePolicy { min_amount: Money::from_credits(200), ..good.clone() }.check().is_err());
        assert!(RechargePolicy { price: Money::ZERO, ..good.clone() }.check().is_err());
        assert!(RechargePolicy { payment_types: vec![], ..good.clone() }.check().is_err());
        assert!(RechargePolicy { payment_types: vec!["Ali Pay".into()], ..good }.check().is_err());
    }

    #[test]
    fn order_numbers_are_recognised() {
        let now = DateTime::parse_from_rfc3339("2026-11-25T19:04:05Z").unwrap().with_timezone(&Utc);
        let no = generate_out_trade_no(now);
        assert!(no.starts_with("epay20261125190405"), "{no}");
        assert!(is_out_trade_no(&no));
        assert_ne!(no, generate_out_trade_no(now));
        assert!(!is_out_trade_no("epay2026"));
        assert!(!is_out_trade_no(&no.to_uppercase()));
        assert_eq!(format_cents(Money::parse("1234.5").unwrap()), "1234.50");
        assert_eq!(format_cents(Money::ZERO), "0.00");
    }
}
