//! Tests of pricing: cache, image and request prices, rounding and saturation, and properties
//! of cost, reservation and discounted charges over any usage.

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
        Usage::from_response(Endpoint::ChatCompletions, include_bytes!("../usage/fixtures/openai_chat.json"));
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
        Usage::from_response(Endpoint::Messages, include_bytes!("../usage/fixtures/anthropic_messages.json"));
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
    let dall_e =
        ModelPrice { per_image: Some(credits("0.02")), per_request: Some(credits("0.001")), ..ModelPrice::default() };
    let reported =
        Usage::from_response(Endpoint::ImageGenerations, include_bytes!("../usage/fixtures/openai_images.json"));
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
