//! Discount rates, and [`apply_discounts`] for an amount that is already exact in micros.
//!
//! A call's charge does not go through it: [`pricing::charge`](crate::pricing::charge) applies
//! both rates to the exact, unrounded cost and rounds once.
//!
//! ```
//! use apihub_core::{apply_discounts, DiscountRate, Money};
//!
//! let user = DiscountRate::parse("0.8").unwrap(); // 20% off
//! let key = DiscountRate::parse("0.5").unwrap();  // and half of that
//! assert_eq!(apply_discounts(Money::from_micros(1_000_001), user, key), Money::from_micros(400_000));
//! ```

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::decimal::{self, DecimalError};
use crate::money::Money;

/// A price multiplier in (0, 1], stored exactly in parts per million: 1 = full price, 0.8 = 20% off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DiscountRate(u32);

/// Why a discount rate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscountError {
    /// Not a decimal with at most six fractional digits.
    #[error(transparent)]
    Decimal(#[from] DecimalError),
    /// Zero, negative or above one.
    #[error("a discount rate must be greater than 0 and at most 1")]
    OutOfRange,
}

impl DiscountRate {
    /// Parts per million that make a rate of 1.
    pub const PPM_SCALE: u32 = 1_000_000;
    /// Full price: no discount.
    pub const FULL_PRICE: DiscountRate = DiscountRate(Self::PPM_SCALE);

    /// A rate of `ppm` parts per million, which must lie in (0, 1,000,000].
    pub fn from_ppm(ppm: u32) -> Result<Self, DiscountError> {
        if ppm == 0 || ppm > Self::PPM_SCALE {
            return Err(DiscountError::OutOfRange);
        }
        Ok(DiscountRate(ppm))
    }

    /// Parses a decimal such as `"0.85"`.
    pub fn parse(text: &str) -> Result<Self, DiscountError> {
        Self::from_units(decimal::parse(text)?)
    }

    fn from_units(units: i64) -> Result<Self, DiscountError> {
        u32::try_from(units).map_err(|_| DiscountError::OutOfRange).and_then(Self::from_ppm)
    }

    /// The rate in parts per million.
    pub const fn ppm(self) -> u32 {
        self.0
    }
}

impl Default for DiscountRate {
    fn default() -> Self {
        Self::FULL_PRICE
    }
}

/// `raw × user_rate × key_rate`, rounded once with [`round_half_up`](crate::money::round_half_up) to
/// the micro-unit. `raw` must be the exact amount: discounting an already rounded cost rounds twice
/// (use [`pricing::charge`](crate::pricing::charge) for a call).
///
/// Both rates are at most 1, so the charge never exceeds the raw cost and never overflows.
pub fn apply_discounts(raw: Money, user: DiscountRate, key: DiscountRate) -> Money {
    let numerator = i128::from(user.0) * i128::from(key.0);
    let denominator = i128::from(DiscountRate::PPM_SCALE) * i128::from(DiscountRate::PPM_SCALE);
    // Cannot fail: the denominator is non-zero and |result| <= |raw|.
    raw.mul_div(numerator, denominator).unwrap_or(raw)
}

impl fmt::Display for DiscountRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        decimal::Display(i64::from(self.0)).fmt(f)
    }
}

impl Serialize for DiscountRate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        decimal::serde_impl::serialize(i64::from(self.0), serializer)
    }
}

impl<'de> Deserialize<'de> for DiscountRate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let units = deserializer.deserialize_any(decimal::serde_impl::UnitsVisitor("a discount rate"))?;
        Self::from_units(units).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rate() -> impl Strategy<Value = DiscountRate> {
        (1u32..=DiscountRate::PPM_SCALE).prop_map(|ppm| DiscountRate::from_ppm(ppm).unwrap())
    }

    #[test]
    fn rates_are_bounded() {
        assert_eq!(DiscountRate::parse("1").unwrap(), DiscountRate::FULL_PRICE);
        assert_eq!(DiscountRate::parse("0.000001").unwrap().ppm(), 1);
        for bad in ["0", "1.000001", "-0.5", "2", "0.0000001"] {
            assert!(DiscountRate::parse(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<DiscountRate>("0").is_err());
        assert_eq!(serde_json::from_str::<DiscountRate>("0.85").unwrap().ppm(), 850_000);
        assert_eq!(serde_json::to_string(&DiscountRate::from_ppm(850_000).unwrap()).unwrap(), "0.85");
    }

    #[test]
    fn the_charge_rounds_once_half_up() {
        let half = DiscountRate::parse("0.5").unwrap();
        // 3 micros × 0.5 = 1.5 → 2 (half up).
        // 5 × 0.5 × 0.5 = 1.25 → 1; rounding after each rate would give 2.5 → 3, then 1.5 → 2.
        assert_eq!(apply_discounts(Money::from_micros(3), half, DiscountRate::FULL_PRICE), Money::from_micros(2));
        assert_eq!(apply_discounts(Money::from_micros(5), half, half), Money::from_micros(1));
    }

    proptest! {
        #[test]
        fn charge_matches_exact_rational_model(raw in 0i64..=1_000_000_000_000_000, user in rate(), key in rate()) {
            let charged = apply_discounts(Money::from_micros(raw), user, key).micros();
            let exact_num = i128::from(raw) * i128::from(user.ppm()) * i128::from(key.ppm());
            let den: i128 = 1_000_000_000_000;
            // charged is the nearest integer to exact_num/den, ties going up.
            let twice_diff = 2 * exact_num - 2 * i128::from(charged) * den;
            prop_assert!(twice_diff < den && twice_diff >= -den);
            prop_assert!(charged <= raw);
            prop_assert!(charged >= 0);
        }

        #[test]
        fn full_price_changes_nothing(raw in i64::MIN / 2..i64::MAX / 2) {
            let m = Money::from_micros(raw);
            prop_assert_eq!(apply_discounts(m, DiscountRate::FULL_PRICE, DiscountRate::FULL_PRICE), m);
        }

        #[test]
        fn a_rate_round_trips_through_json(r in rate()) {
            let text = serde_json::to_string(&r).unwrap();
            prop_assert_eq!(serde_json::from_str::<DiscountRate>(&text).unwrap(), r);
        }
    }
}
