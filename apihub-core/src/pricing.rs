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
mod tests;
