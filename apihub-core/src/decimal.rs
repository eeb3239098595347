//! Fixed-point decimals with six fractional digits: the one parser and formatter behind
//! [`Money`](crate::Money) and [`DiscountRate`](crate::DiscountRate).
//!
//! Values travel as integers scaled by 10⁶. JSON input may be a number or a decimal string;
//! a JSON number is read through its shortest round-trip text, which is exact for every value
//! of at most 15 significant digits, so inputs are capped below 10⁹ (9 + 6 digits).

use std::fmt;

/// Scale of a fixed-point value: 10⁶ units per whole.
pub const SCALE: i64 = 1_000_000;

/// Largest absolute value accepted from input, in scaled units (just under 10⁹ wholes).
pub const MAX_INPUT: i64 = 1_000_000_000 * SCALE - 1;

/// Why a decimal was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecimalError {
    /// Empty text, stray characters, exponents, NaN or infinity.
    #[error("`{0}` is not a plain decimal number")]
    Malformed(String),
    /// More than six digits after the point.
    #[error("`{0}` has more than 6 fractional digits")]
    TooPrecise(String),
    /// Larger in magnitude than [`MAX_INPUT`].
    #[error("`{0}` is out of range (at most 999999999.999999)")]
    OutOfRange(String),
}

/// Parses `-?digits(.digits{1,6})?` into units of 10⁻⁶, exactly.
///
/// Nothing else is accepted: no sign `+`, no exponent, and no whitespace anywhere, leading or
/// trailing included (`" 5"` and `"5 "` are [`DecimalError::Malformed`], in JSON strings too).
pub fn parse(text: &str) -> Result<i64, DecimalError> {
    let malformed = || DecimalError::Malformed(text.to_owned());
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = match body.split_once('.') {
        Some((w, f)) => (w, f),
        None => (body, ""),
    };
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits_only(whole) || !digits_only(frac) {
        return Err(malformed());
    }
    if body.contains('.') && frac.is_empty() {
        return Err(malformed());
    }
    if frac.len() > 6 {
        return Err(DecimalError::TooPrecise(text.to_owned()));
    }
    let whole = whole.trim_start_matches('0');
    if whole.len() > 9 {
        return Err(DecimalError::OutOfRange(text.to_owned()));
    }
    let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| malformed())? };
    let mut frac_units: i64 = if frac.is_empty() { 0 } else { frac.parse().map_err(|_| malformed())? };
    for _ in frac.len()..6 {
        frac_units *= 10;
    }
    let units = whole * SCALE + frac_units;
    Ok(if negative { -units } else { units })
}

/// Parses a JSON number that serde handed over as an `f64`, through its shortest round-trip text.
pub fn parse_f64(value: f64) -> Result<i64, DecimalError> {
    if !value.is_finite() {
        return Err(DecimalError::Malformed(value.to_string()));
    }
    if value.abs() >= 1e9 {
        return Err(DecimalError::OutOfRange(value.to_string()));
    }
    // `Display` for f64 prints the shortest text that reads back as the same f64, never with an exponent.
    parse(&value.to_string())
}

/// Writes units of 10⁻⁶ as the shortest exact decimal: `100500000` → `100.5`, `3000000` → `3`.
pub fn format(units: i64) -> String {
    Display(units).to_string()
}

/// A formatter for scaled units; see [`format`].
pub(crate) struct Display(pub i64);

impl fmt::Display for Display {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = i128::from(self.0);
        let sign = if units < 0 { "-" } else { "" };
        let abs = units.abs();
        let whole = abs / i128::from(SCALE);
        let frac = abs % i128::from(SCALE);
        if frac == 0 {
            write!(f, "{sign}{whole}")
        } else {
            let digits = format!("{frac:06}");
            write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

/// Shared serde plumbing: accept a JSON number or string, emit an exact JSON number.
pub(crate) mod serde_impl {
    use serde::de::{self, Visitor};
    use std::fmt;

    pub(crate) struct UnitsVisitor(pub &'static str);

    impl Visitor<'_> for UnitsVisitor {
        type Value = i64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{} as a number or a decimal string with at most 6 fractional digits", self.0)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            if v.unsigned_abs() >= 1_000_000_000 {
                return Err(E::custom(super::DecimalError::OutOfRange(v.to_string())));
            }
            Ok(v * super::SCALE)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            if v >= 1_000_000_000 {
                return Err(E::custom(super::DecimalError::OutOfRange(v.to_string())));
            }
            self.visit_i64(v as i64)
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
            super::parse_f64(v).map_err(E::custom)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
            // Not trimmed: `" 5"` is as malformed as `"5x"` (see `parse`).
            super::parse(v).map_err(E::custom)
        }
    }

    /// Serializes scaled units as a JSON number written from the exact decimal text.
    pub(crate) fn serialize<S: serde::Serializer>(units: i64, serializer: S) -> Result<S::Ok, S::Error> {
        let raw = serde_json::value::RawValue::from_string(super::format(units)).map_err(serde::ser::Error::custom)?;
        serde::Serialize::serialize(&raw, serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_plain_decimals() {
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("100.5"), Ok(100_500_000));
        assert_eq!(parse("-0.000001"), Ok(-1));
        assert_eq!(parse("007.25"), Ok(7_250_000));
        assert_eq!(parse("999999999.999999"), Ok(MAX_INPUT));
    }

    #[test]
    fn refuses_what_is_not_a_plain_decimal() {
        for bad in ["", "-", ".5", "5.", "1e3", "NaN", "inf", "1,5", "+1", " 1", "0x10", "1.2.3"] {
            assert!(matches!(parse(bad), Err(DecimalError::Malformed(_))), "{bad:?}");
        }
        assert!(matches!(parse("0.1234567"), Err(DecimalError::TooPrecise(_))));
        assert!(matches!(parse("1000000000"), Err(DecimalError::OutOfRange(_))));
    }

    #[test]
    fn whitespace_around_a_decimal_is_malformed_in_text_and_in_json_strings() {
        for bad in [" 5", "5 ", "\t5", "5\n", " 5 ", "\u{a0}5", "- 5", "5 .5"] {
            assert!(matches!(parse(bad), Err(DecimalError::Malformed(_))), "{bad:?}");
            let json = serde_json::to_string(bad).unwrap();
            assert!(serde_json::from_str::<crate::Money>(&json).is_err(), "{json}");
            assert!(serde_json::from_str::<crate::DiscountRate>(&json).is_err(), "{json}");
        }
        assert_eq!(serde_json::from_str::<crate::Money>("\"5\"").unwrap(), crate::Money::from_credits(5));
    }

    #[test]
    fn floats_are_read_through_their_shortest_text() {
        assert_eq!(parse_f64(0.1), Ok(100_000));
        assert_eq!(parse_f64(100.5), Ok(100_500_000));
        assert_eq!(parse_f64(0.000001), Ok(1));
        assert!(parse_f64(1e300).is_err());
        assert!(parse_f64(f64::NAN).is_err());
        assert!(parse_f64(0.0000001).is_err());
    }

    #[test]
    fn formats_shortest_exact_text() {
        assert_eq!(format(100_500_000), "100.5");
        assert_eq!(format(3_000_000), "3");
        assert_eq!(format(-1), "-0.000001");
        assert_eq!(format(i64::MIN), "-9223372036854.775808");
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(units in -MAX_INPUT..=MAX_INPUT) {
            prop_assert_eq!(parse(&format(units)), Ok(units));
        }

        #[test]
        fn json_numbers_round_trip_through_f64(units in -MAX_INPUT..=MAX_INPUT) {
            let as_float: f64 = format(units).parse().unwrap();
            prop_assert_eq!(parse_f64(as_float), Ok(units));
        }
    }
}
