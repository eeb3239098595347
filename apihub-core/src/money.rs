//! Credit amounts in integer micro-units, and the one rounding rule of the project.
//!
//! ```
//! use apihub_core::Money;
//!
//! let price: Money = serde_json::from_str("\"100.5\"").unwrap();
//! assert_eq!(price.micros(), 100_500_000);
//! assert_eq!(serde_json::to_string(&price).unwrap(), "100.5");
//! ```

use std::fmt;
use std::iter::Sum;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::decimal::{self, DecimalError};

/// An amount of credit: 1 credit = 1,000,000 micros. Never a float.
///
/// JSON input is a number (`100.5`) or a decimal string (`"100.5"`) with at most six fractional
/// digits; output is always the exact decimal as a JSON number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

impl Money {
    /// No credit.
    pub const ZERO: Money = Money(0);
    /// Micros in one credit.
    pub const MICROS_PER_CREDIT: i64 = decimal::SCALE;

    /// An amount of `micros` micro-units.
    pub const fn from_micros(micros: i64) -> Self {
        Money(micros)
    }

    /// A whole number of credits.
    pub const fn from_credits(credits: i64) -> Self {
        Money(credits * Self::MICROS_PER_CREDIT)
    }

    /// The amount in micro-units.
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// Parses a decimal string such as `"12.345"`.
    pub fn parse(text: &str) -> Result<Self, DecimalError> {
        decimal::parse(text).map(Money)
    }

    /// Whether the amount is above zero.
    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// Whether the amount is below zero.
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    /// `self - other`, or `None` on overflow.
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }

    /// The amount with its sign flipped, or `None` for `i64::MIN` micros.
    pub fn checked_neg(self) -> Option<Money> {
        self.0.checked_neg().map(Money)
    }

    /// The absolute value.
    pub fn abs(self) -> Money {
        Money(self.0.saturating_abs())
    }

    /// `self × numerator ÷ denominator`, rounded once with [`round_half_up`].
    ///
    /// Returns `None` when the result does not fit or `denominator` is zero.
    pub fn mul_div(self, numerator: i128, denominator: i128) -> Option<Money> {
        let product = i128::from(self.0).checked_mul(numerator)?;
        let rounded = round_half_up(product, denominator)?;
        i64::try_from(rounded).ok().map(Money)
    }
}

/// THE rounding rule of APIHub: divide and round half away from zero (half up in magnitude).
///
/// Every computation that leaves the integers (discounts, per-token prices) ends here, once.
/// Returns `None` for a zero denominator.
pub fn round_half_up(numerator: i128, denominator: i128) -> Option<i128> {
    if denominator == 0 {
        return None;
    }
    let (n, d) = if denominator < 0 { (-numerator, -denominator) } else { (numerator, denominator) };
    let quotient = n / d;
    let remainder = n % d;
    // Compare 2|r| with d to avoid overflow in r + d/2.
    if remainder.unsigned_abs() * 2 >= d.unsigned_abs() {
        Some(if n < 0 { quotient - 1 } else { quotient + 1 })
    } else {
        Some(quotient)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        decimal::Display(self.0).fmt(f)
    }
}

impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        Money(iter.map(|m| m.0).sum())
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        decimal::serde_impl::serialize(self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(decimal::serde_impl::UnitsVisitor("an amount")).map(Money)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn json_in_and_out_is_exact() {
        for (input, micros, output) in [
            ("100.5", 100_500_000, "100.5"),
            ("\"100.5\"", 100_500_000, "100.5"),
            ("0.000001", 1, "0.000001"),
            ("7", 7_000_000, "7"),
            ("\"-3.25\"", -3_250_000, "-3.25"),
        ] {
            let money: Money = serde_json::from_str(input).unwrap();
            assert_eq!(money.micros(), micros, "{input}");
            assert_eq!(serde_json::to_string(&money).unwrap(), output);
        }
    }

    #[test]
    fn json_refuses_what_it_cannot_hold_exactly() {
        for bad in ["0.0000001", "\"1.0000001\"", "1e400", "\"NaN\"", "true", "null", "[1]", "1e9", "\"abc\""] {
            assert!(serde_json::from_str::<Money>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(round_half_up(5, 10), Some(1));
        assert_eq!(round_half_up(4, 10), Some(0));
        assert_eq!(round_half_up(-5, 10), Some(-1));
        assert_eq!(round_half_up(-4, 10), Some(0));
        assert_eq!(round_half_up(15, -10), Some(-2));
        assert_eq!(round_half_up(1, 0), None);
    }

    proptest! {
        #[test]
        fn rounding_matches_a_rational_model(n in -1_000_000_000_000i128..1_000_000_000_000, d in 1i128..1_000_000_000) {
            let r = round_half_up(n, d).unwrap();
            // |n/d - r| <= 1/2, and exactly 1/2 only when r points away from zero.
            let diff2 = (2 * (n - r * d)).abs();
            prop_assert!(diff2 <= d);
            if diff2 == d {
                prop_assert!(r.abs() * d >= n.abs());
            }
        }
    }
}
