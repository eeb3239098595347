//! Model prices, and what a call costs and is charged: pure functions of a [`ModelPrice`], a
//! [`Usage`] and the user's and key's [`DiscountRate`]s.
//!
//! Token prices are [`Money`] per 1,000,000 tokens. The exact cost of a call is a fraction: every
//! token count times its price in micros, plus the per-image and per-request prices scaled by a
//! million, summed in `i128` over 1,000,000. Its [`charge`] is that exact fraction times the user's
//! and the key's rates (in parts per million), rounded once with [`round_half_up`] to the micro:
//! no rounding per term, none between the cost and the discounts, no float. [`cost`] is the same
//! fraction at full price. Unreported counts cost nothing; a negative price counts as zero, so a
//! call never credits anyone; amounts too large for [`Money`] saturate at its maximum.
//!
//! Cache tokens are billed once. [`Usage`] counts them inside `input_tokens` whatever the
//! dialect: OpenAI and Gemini report cached tokens inside the prompt, and Anthropic, which reports
//! `input_tokens` apart from its cache reads and writes, has them added up at extraction (see
//! [`usage::anthropic`](crate::usage::anthropic)). So `input_tokens - cache_read_tokens -
//! cache_write_tokens` is billed at the input price, and the cache tokens at the cache-read and
//! cache-write prices (which fall back to the input price). Reasoning tokens are inside
//! `output_tokens` and billed as output.
//!
//! ```
//! use apihub_core::pricing::{Charge, ModelPrice, charge, cost, max_charge};
//! use apihub_core::usage::Usage;
//! use apihub_core::{DiscountRate, Money};
//!
//! let price = ModelPrice {
//!     input: Money::parse("3").unwrap(),
//!     output: Money::parse("15").unwrap(),
//!     cache_read: Some(Money::parse("0.3").unwrap()),
//!     ..ModelPrice::default()
//! };
//! let usage =
//!     Usage { input_tokens: Some(1_000), cache_read_tokens: Some(800), output_tokens: Some(100), ..Usage::default() };
//! let (user, key) = (DiscountRate::parse("0.8").unwrap(), DiscountRate::parse("0.5").unwrap());
//! // (200 × 3 + 800 × 0.3 + 100 × 15) / 1,000,000 credits = 2,340 micros before discounts,
//! // × 0.8 × 0.5 = 936 micros charged.
//! let Charge { raw_cost, charge } = charge(&price, &usage, user, key);
//! assert_eq!(raw_cost, Money::parse("0.00234").unwrap());
//! assert_eq!(raw_cost, cost(&price, &usage));
//! assert_eq!(charge, Money::from_micros(936));
//! // A hold for 1,000 prompt tokens and up to 100 output tokens covers it.
//! assert!(max_charge(&price, 1_000, 100, user, key) >= charge);
//! ```

use crate::discount::DiscountRate;
use crate::money::{Money, round_half_up};
use crate::usage::Usage;

/// Tokens a token price is quoted for.
pub const TOKENS_PER_PRICE: i128 = 1_000_000;

/// What a model costs. Token prices are per [`TOKENS_PER_PRICE`] (one million) tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ModelPrice {
    /// Per million input tokens not served from or written to the cache.
    pub input: Money,
    /// Per million output tokens, reasoning included.
    pub output: Money,
    /// Per million input tokens read from the cache; the input price when `None`.
    pub cache_read: Option<Money>,
    /// Per million input tokens written to the cache; the input price when `None`.
    pub cache_write: Option<Money>,
    /// Per call, on top of the tokens.
    pub per_request: Option<Money>,
    /// Per generated image.
    pub per_image: Option<Money>,
}

impl ModelPrice {
    /// The cache-read price, or the input price when none is set.
    pub fn cache_read_price(&self) -> Money {
        self.cache_read.unwrap_or(self.input)
    }

    /// The cache-write price, or the input price when none is set.
    pub fn cache_write_price(&self) -> Money {
        self.cache_write.unwrap_or(self.input)
    }

    /// Checks the price as an administrator sets it: no amount may be negative.
    pub fn validate(&self) -> Result<(), PriceError> {
        let all =
            [Some(self.input), Some(self.output), self.cache_read, self.cache_write, self.per_request, self.per_image];
        if all.into_iter().flatten().any(Money::is_negative) { Err(PriceError::Negative) } else { Ok(()) }
    }
}

/// Why a [`ModelPrice`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PriceError {
    /// An amount is below zero.
    #[error("prices must not be negative")]
    Negative,
}

/// What a call is billed, each amount rounded once from the exact cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Charge {
    /// The cost before discounts, as [`cost`] gives it: for display.
    pub raw_cost: Money,
    /// The exact cost × user rate × key rate, rounded once: what is billed.
    pub charge: Money,
}

/// What a call with this usage is billed by a user with rate `user` through a key with rate `key`.
///
/// `charge` is rounded from the exact product, never from the rounded `raw_cost`: so it can differ
/// by a micro from [`apply_discounts`](crate::apply_discounts)`(raw_cost, user, key)`.
pub fn charge(price: &ModelPrice, usage: &Usage, user: DiscountRate, key: DiscountRate) -> Charge {
    let exact = ExactCost::of_usage(price, usage);
    Charge {
        raw_cost: exact.discounted(DiscountRate::FULL_PRICE, DiscountRate::FULL_PRICE),
        charge: exact.discounted(user, key),
    }
}

/// What a call with this usage costs, before discounts.
///
/// More usage never costs less: adding input, output or images, or a cache hit (which adds to
/// `input_tokens` and `cache_read_tokens` alike), never lowers the cost. Moving tokens of a fixed
/// input into the cache does, when the cache price is lower.
pub fn cost(price: &ModelPrice, usage: &Usage) -> Money {
    ExactCost::of_usage(price, usage).discounted(DiscountRate::FULL_PRICE, DiscountRate::FULL_PRICE)
}

/// The most a call may be charged when its prompt is at most `prompt_estimate` tokens (cache
/// reads and writes included) and its output at most `output_cap` tokens: [`max_cost`] × user
/// rate × key rate, rounded once. It is at least [`charge`] of any usage within these bounds.
pub fn max_charge(
    price: &ModelPrice,
    prompt_estimate: u64,
    output_cap: u64,
    user: DiscountRate,
    key: DiscountRate,
) -> Money {
    ExactCost::at_most(price, prompt_estimate, output_cap).discounted(user, key)
}

/// The most a call may cost when its prompt is at most `prompt_estimate` tokens (cache reads and
/// writes included) and its output at most `output_cap` tokens, before discounts.
///
/// `output_cap` also bounds the images, as [`RequestInfo::output_cap`](crate::usage::RequestInfo::output_cap)
/// does for image generations. Every input token is priced at the highest of the input, cache-read
/// and cache-write prices, so the result is at least [`cost`] of any usage within these bounds.
pub fn max_cost(price: &ModelPrice, prompt_estimate: u64, output_cap: u64) -> Money {
    ExactCost::at_most(price, prompt_estimate, output_cap)
        .discounted(DiscountRate::FULL_PRICE, DiscountRate::FULL_PRICE)
}

/// An exact cost in micros × [`TOKENS_PER_PRICE`]: Σ tokens × price micros, plus (images ×
/// per-image micros + per-request micros) × 1,000,000. Never negative; `i128::MAX` when the true
/// sum is at least that.
#[derive(Debug, Clone, Copy)]
struct ExactCost(i128);

impl ExactCost {
    fn of_usage(price: &ModelPrice, usage: &Usage) -> Self {
        let tokens = |count: Option<u64>| i128::from(count.unwrap_or(0));
        let read = tokens(usage.cache_read_tokens);
        let write = tokens(usage.cache_write_tokens);
        let uncached = (tokens(usage.input_tokens) - read - write).max(0);
        Self::sum(
            price,
            &[
                (uncached, price.input),
                (read, price.cache_read_price()),
                (write, price.cache_write_price()),
                (tokens(usage.output_tokens), price.output),
            ],
            tokens(usage.images),
        )
    }

    fn at_most(price: &ModelPrice, prompt_estimate: u64, output_cap: u64) -> Self {
        let input = price.input.max(price.cache_read_price()).max(price.cache_write_price());
        Self::sum(
            price,
            &[(i128::from(prompt_estimate), input), (i128::from(output_cap), price.output)],
            i128::from(output_cap),
        )
    }

    /// Σ tokens × price, plus images × per-image price plus the per-request price. Each product
    /// of a `u64` count and an `i64` price fits in `i128`; the sums and the scaling may saturate.
    fn sum(price: &ModelPrice, tokens: &[(i128, Money)], images: i128) -> Self {
        let micros = |money: Money| i128::from(money.micros().max(0));
        let per_token =
            tokens.iter().fold(0i128, |sum, &(count, money)| sum.saturating_add(count.saturating_mul(micros(money))));
        let per_call = images
            .saturating_mul(micros(price.per_image.unwrap_or(Money::ZERO)))
            .saturating_add(micros(price.per_request.unwrap_or(Money::ZERO)));
        ExactCost(per_token.saturating_add(per_call.saturating_mul(TOKENS_PER_PRICE)))
    }

    /// `self × user × key / (1,000,000 × 10¹²)`, rounded once, saturating at `Money`'s maximum.
    ///
    /// Saturating is exact: when the product overflows `i128` (or the sum was already saturated
    /// at `i128::MAX`, and both rates are at least 1 ppm), the true quotient is above
    /// `i128::MAX / 10¹⁸ ≈ 1.7 × 10²⁰ > i64::MAX ≈ 9.2 × 10¹⁸`, so the rounded charge exceeds
    /// `Money`'s maximum anyway.
    fn discounted(self, user: DiscountRate, key: DiscountRate) -> Money {
        let scale = i128::from(DiscountRate::PPM_SCALE);
        let rounded = self
            .0
            .checked_mul(i128::from(user.ppm()))
            .and_then(|n| n.checked_mul(i128::from(key.ppm())))
            // Never `None` on the division: the denominator is not zero.
            .and_then(|n| round_half_up(n, TOKENS_PER_PRICE * scale * scale))
            .unwrap_or(i128::MAX);
        Money::from_micros(i64::try_from(rounded).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Endpoint;
    use num_bigint::BigInt;
    use num_rational::BigRational;
    use proptest::prelude::*;

    fn credits(text: &str) -> Money {
        Money::parse(text).unwrap()
    }

    fn usage(input: u64, read: u64, write: u64, output: u64) -> Usage {
        Usage {
            input_tokens: Some(input),
            cache_read_tokens: Some(read),
            cache_write_tokens: Some(write),
            output_tokens: Some(output),
            ..Usage::default()
        }
    }

    #[test]
    fn openai_cached_tokens_are_billed_once_at_the_cache_price() {
        let o4_mini = ModelPrice {
            input: credits("1.1"),
            output: credits("4.4"),
            cache_read: Some(credits("0.275")),
            ..ModelPrice::default()
        };
        let reported =
            Usage::from_response(Endpoint::ChatCompletions, include_bytes!("usage/fixtures/openai_chat.json"));
        // 179 × 1.1 + 1,664 × 0.275 + 1,290 × 4.4 = 6,330.5 micros, rounded half up.
        assert_eq!(cost(&o4_mini, &reported), Money::from_micros(6_331));
    }

    #[test]
    fn anthropic_cache_reads_and_writes_have_their_own_prices() {
        let sonnet = ModelPrice {
            input: credits("3"),
            output: credits("15"),
            cache_read: Some(credits("0.3")),
            cache_write: Some(credits("3.75")),
            ..ModelPrice::default()
        };
        let reported =
            Usage::from_response(Endpoint::Messages, include_bytes!("usage/fixtures/anthropic_messages.json"));
        // 14 × 3 + 4,987 × 0.3 + 1,523 × 3.75 + 393 × 15 = 13,144.35 micros.
        assert_eq!(cost(&sonnet, &reported), Money::from_micros(13_144));
    }

    #[test]
    fn cache_prices_fall_back_to_the_input_price() {
        let price = ModelPrice { input: credits("2"), output: credits("8"), ..ModelPrice::default() };
        assert_eq!(cost(&price, &usage(1_000, 600, 300, 0)), cost(&price, &usage(1_000, 0, 0, 0)));
        assert_eq!(cost(&price, &usage(1_000, 600, 300, 0)), credits("0.002"));
    }

    #[test]
    fn images_cost_their_count_and_a_request_its_price_once() {
        let dall_e = ModelPrice {
            per_image: Some(credits("0.02")),
            per_request: Some(credits("0.001")),
            ..ModelPrice::default()
        };
        let reported =
            Usage::from_response(Endpoint::ImageGenerations, include_bytes!("usage/fixtures/openai_images.json"));
        assert_eq!(cost(&dall_e, &reported), credits("0.041"));
        assert_eq!(cost(&dall_e, &Usage::default()), credits("0.001"));
    }

    #[test]
    fn the_sum_is_rounded_once() {
        // Half a micro for the input and half for the output: 1 micro, not 1 + 1.
        let price = ModelPrice { input: credits("0.5"), output: credits("0.5"), ..ModelPrice::default() };
        assert_eq!(cost(&price, &usage(1, 0, 0, 1)), Money::from_micros(1));
        assert_eq!(cost(&price, &usage(1, 0, 0, 0)), Money::from_micros(1)); // 0.5 rounds up
        assert_eq!(cost(&price, &usage(0, 0, 0, 0)), Money::ZERO);
    }

    #[test]
    fn extremes_saturate_and_negative_prices_count_as_zero() {
        let max = Money::from_micros(i64::MAX);
        let price = ModelPrice {
            input: max,
            output: max,
            cache_read: Some(max),
            cache_write: Some(max),
            per_request: Some(max),
            per_image: Some(max),
        };
        let huge = Usage { images: Some(u64::MAX), ..usage(u64::MAX, u64::MAX, u64::MAX, u64::MAX) };
        assert_eq!(cost(&price, &huge), max);
        assert_eq!(max_cost(&price, u64::MAX, u64::MAX), max);
        // The sum saturates in i128; even at the smallest rates the charge is above Money's maximum.
        let least = DiscountRate::from_ppm(1).unwrap();
        assert_eq!(charge(&price, &huge, least, least), Charge { raw_cost: max, charge: max });
        assert_eq!(max_charge(&price, u64::MAX, u64::MAX, least, least), max);

        let negative = ModelPrice { input: credits("-1"), per_request: Some(credits("-1")), ..ModelPrice::default() };
        assert_eq!(cost(&negative, &usage(1_000_000, 0, 0, 0)), Money::ZERO);
        assert_eq!(max_cost(&negative, 1_000_000, 0), Money::ZERO);
    }

    #[test]
    fn a_discounted_charge_is_rounded_once() {
        let price = ModelPrice { input: credits("0.1235"), output: credits("0.6"), ..ModelPrice::default() };
        let (user, key) = (DiscountRate::parse("0.8").unwrap(), DiscountRate::parse("0.5").unwrap());
        // 1,000 × 0.1235 + 500 × 0.6 = 423.5 micros, × 0.8 × 0.5 = 169.4 → 169. Rounding the cost
        // first would give 424 × 0.4 = 169.6 → 170.
        let billed = charge(&price, &usage(1_000, 0, 0, 500), user, key);
        assert_eq!(billed, Charge { raw_cost: Money::from_micros(424), charge: Money::from_micros(169) });
        assert_eq!(crate::apply_discounts(billed.raw_cost, user, key), Money::from_micros(170));
        assert_eq!(max_charge(&price, 1_000, 500, user, key), Money::from_micros(169));
    }

    fn money() -> impl Strategy<Value = Money> + Clone {
        (0i64..=1_000_000_000).prop_map(Money::from_micros)
    }

    /// A price whose amounts come from `money`.
    fn price_of<M: Strategy<Value = Money> + Clone>(money: M) -> impl Strategy<Value = ModelPrice> {
        let maybe = || proptest::option::of(money.clone());
        (money.clone(), money.clone(), maybe(), maybe(), maybe(), maybe()).prop_map(
            |(input, output, cache_read, cache_write, per_request, per_image)| ModelPrice {
                input,
                output,
                cache_read,
                cache_write,
                per_request,
                per_image,
            },
        )
    }

    fn price() -> impl Strategy<Value = ModelPrice> {
        price_of(money())
    }

    fn count() -> impl Strategy<Value = Option<u64>> + Clone {
        proptest::option::of(0u64..=1_000_000_000)
    }

    /// A usage whose counts come from `count`.
    fn usage_of<C: Strategy<Value = Option<u64>> + Clone>(count: C) -> impl Strategy<Value = Usage> {
        (count.clone(), count.clone(), count.clone(), count.clone(), count.clone(), count).prop_map(
            |(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, images)| Usage {
                input_tokens,
                output_tokens,
                cache_read_tokens,
                cache_write_tokens,
                reasoning_tokens,
                images,
            },
        )
    }

    /// Any usage, including inconsistent reports (cache counts above the input).
    fn any_usage() -> impl Strategy<Value = Usage> {
        usage_of(count())
    }

    /// A usage as upstreams report it: cache reads and writes are a part of the input.
    fn consistent_usage() -> impl Strategy<Value = Usage> {
        any_usage().prop_map(|mut usage| {
            let input = usage.input_tokens.unwrap_or(0);
            usage.cache_read_tokens = usage.cache_read_tokens.map(|read| read.min(input));
            let left = input - usage.cache_read_tokens.unwrap_or(0);
            usage.cache_write_tokens = usage.cache_write_tokens.map(|write| write.min(left));
            usage
        })
    }

    /// Any price, negative and extreme ones included.
    fn any_price() -> impl Strategy<Value = ModelPrice> {
        price_of(prop_oneof![3 => money(), 1 => any::<i64>().prop_map(Money::from_micros)])
    }

    /// Any usage, extreme counts included.
    fn extreme_usage() -> impl Strategy<Value = Usage> {
        usage_of(prop_oneof![3 => count(), 1 => any::<u64>().prop_map(Some)])
    }

    fn rate() -> impl Strategy<Value = DiscountRate> {
        prop_oneof![
            1 => Just(DiscountRate::FULL_PRICE),
            3 => (1..=DiscountRate::PPM_SCALE).prop_map(|ppm| DiscountRate::from_ppm(ppm).unwrap()),
        ]
    }

    /// The charge in micros as a fraction, straight from the definitions: credits per million
    /// tokens, per image and per request, times both rates.
    fn exact_charge(price: &ModelPrice, usage: &Usage, user: DiscountRate, key: DiscountRate) -> BigRational {
        let ratio = |numerator: i128, denominator: i128| BigRational::new(numerator.into(), denominator.into());
        let tokens = |count: Option<u64>| BigRational::from_integer(count.unwrap_or(0).into());
        // Credits; a negative price counts as zero.
        let credits = |money: Option<Money>| ratio(money.unwrap_or(Money::ZERO).micros().max(0).into(), 1_000_000);
        let per_million = |count: BigRational, price: Money| count * credits(Some(price)) / ratio(1_000_000, 1);
        let (read, write) = (tokens(usage.cache_read_tokens), tokens(usage.cache_write_tokens));
        let uncached = (tokens(usage.input_tokens) - &read - &write).max(ratio(0, 1));
        let credits = per_million(uncached, price.input)
            + per_million(read, price.cache_read_price())
            + per_million(write, price.cache_write_price())
            + per_million(tokens(usage.output_tokens), price.output)
            + tokens(usage.images) * credits(price.per_image)
            + credits(price.per_request);
        credits * ratio(1_000_000, 1) * ratio(user.ppm().into(), 1_000_000) * ratio(key.ppm().into(), 1_000_000)
    }

    /// The nearest micro, ties away from zero, saturated at Money's maximum.
    fn rounded(exact: &BigRational) -> Money {
        let micros: BigInt = exact.round().to_integer();
        Money::from_micros(i64::try_from(&micros).unwrap_or(i64::MAX))
    }

    fn add(count: Option<u64>, extra: u64) -> Option<u64> {
        Some(count.unwrap_or(0) + extra)
    }

    proptest! {
        #[test]
        fn more_usage_never_costs_less(price in price(), usage in any_usage(), kind in 0..6usize, extra in 0u64..1_000_000) {
            let mut more = usage;
            match kind {
                0 => more.input_tokens = add(usage.input_tokens, extra),
                1 => more.output_tokens = add(usage.output_tokens, extra),
                // A cache hit or write is a part of the input.
                2 => {
                    more.input_tokens = add(usage.input_tokens, extra);
                    more.cache_read_tokens = add(usage.cache_read_tokens, extra);
                }
                3 => {
                    more.input_tokens = add(usage.input_tokens, extra);
                    more.cache_write_tokens = add(usage.cache_write_tokens, extra);
                }
                4 => more.reasoning_tokens = add(usage.reasoning_tokens, extra),
                _ => more.images = add(usage.images, extra),
            }
            prop_assert!(cost(&price, &more) >= cost(&price, &usage));
        }

        #[test]
        fn the_reservation_covers_any_usage_within_its_bounds(
            price in price(),
            usage in any_usage(),
            prompt_slack in 0u64..1_000,
            output_slack in 0u64..1_000,
        ) {
            let tokens = |count: Option<u64>| count.unwrap_or(0);
            let prompt = tokens(usage.input_tokens).max(tokens(usage.cache_read_tokens) + tokens(usage.cache_write_tokens));
            let output = tokens(usage.output_tokens).max(tokens(usage.images));
            prop_assert!(max_cost(&price, prompt + prompt_slack, output + output_slack) >= cost(&price, &usage));
        }

        #[test]
        fn no_usage_costs_the_request_price_only(price in price(), zeros in any::<bool>()) {
            let nothing = if zeros { usage(0, 0, 0, 0) } else { Usage::default() };
            prop_assert_eq!(cost(&price, &nothing), price.per_request.unwrap_or(Money::ZERO));
            prop_assert_eq!(max_cost(&price, 0, 0), price.per_request.unwrap_or(Money::ZERO));
        }

        #[test]
        fn the_charge_is_the_exact_product_rounded_half_up(
            price in any_price(),
            usage in extreme_usage(),
            user in rate(),
            key in rate(),
        ) {
            let billed = charge(&price, &usage, user, key);
            prop_assert_eq!(billed.charge, rounded(&exact_charge(&price, &usage, user, key)));
            let full = DiscountRate::FULL_PRICE;
            prop_assert_eq!(billed.raw_cost, rounded(&exact_charge(&price, &usage, full, full)));
            prop_assert_eq!(billed.raw_cost, cost(&price, &usage));
        }

        #[test]
        fn the_discounted_hold_covers_any_charge_within_its_bounds(
            price in price(),
            usage in any_usage(),
            prompt_slack in 0u64..1_000,
            output_slack in 0u64..1_000,
            user in rate(),
            key in rate(),
        ) {
            let tokens = |count: Option<u64>| count.unwrap_or(0);
            let prompt = tokens(usage.input_tokens).max(tokens(usage.cache_read_tokens) + tokens(usage.cache_write_tokens));
            let output = tokens(usage.output_tokens).max(tokens(usage.images));
            let hold = max_charge(&price, prompt + prompt_slack, output + output_slack, user, key);
            prop_assert!(hold >= charge(&price, &usage, user, key).charge);
            prop_assert!(hold <= max_cost(&price, prompt + prompt_slack, output + output_slack));
        }

        #[test]
        fn cost_is_the_exact_sum_rounded_half_up(price in price(), usage in consistent_usage()) {
            let n = |count: Option<u64>| i128::from(count.unwrap_or(0));
            let m = |money: Option<Money>| i128::from(money.unwrap_or(Money::ZERO).micros());
            let (read, write) = (n(usage.cache_read_tokens), n(usage.cache_write_tokens));
            let exact = (n(usage.input_tokens) - read - write) * m(Some(price.input))
                + read * m(Some(price.cache_read_price()))
                + write * m(Some(price.cache_write_price()))
                + n(usage.output_tokens) * m(Some(price.output))
                + (n(usage.images) * m(price.per_image) + m(price.per_request)) * 1_000_000;
            let charged = i128::from(cost(&price, &usage).micros());
            // The nearest micro, ties going up.
            let twice_diff = 2 * exact - 2 * charged * 1_000_000;
            prop_assert!((-1_000_000..1_000_000).contains(&twice_diff), "{exact} {charged}");
        }
    }
}
