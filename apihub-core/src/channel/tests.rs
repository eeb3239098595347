//! Tests of channels: dialects and models served, weights within a priority group, the circuit
//! breaker, model prices, and checked definitions.

use super::*;

fn spec(name: &str, priority: i32, weight: u32) -> ChannelSpec {
    ChannelSpec { priority, weight, ..ChannelSpec::new(name, "http://127.0.0.1:1") }
}

#[test]
fn a_channel_serves_only_its_dialects_and_models_while_enabled() {
    let mut channel = spec("a", 0, 1);
    assert!(channel.serves(Dialect::Gemini, "anything"));
    channel.dialects = vec![Dialect::OpenAi];
    channel.models = vec!["gpt-4o".into()];
    assert!(channel.serves(Dialect::OpenAi, "gpt-4o"));
    assert!(!channel.serves(Dialect::Anthropic, "gpt-4o"));
    assert!(!channel.serves(Dialect::OpenAi, "gpt-4o-mini"));
    channel.enabled = false;
    assert!(!channel.serves(Dialect::OpenAi, "gpt-4o"));
}

#[test]
fn weights_share_traffic_inside_a_priority_group_and_never_across_groups() {
    let (a, b, low) = (spec("a", 5, 3), spec("b", 5, 1), spec("low", 0, 1000));
    let candidates = [(&a, true), (&b, true), (&low, true)];
    let mut first = [0u32; 3];
    // Every ticket once: the first pick follows the weights exactly (3 : 1), `low` never first.
    for ticket in 0..4 {
        let mut draws = [ticket, 0].into_iter();
        let order = attempt_order(&candidates, |n| draws.next().unwrap_or(0) % n);
        assert_eq!(order.len(), 3);
        assert_eq!(order[2], 2, "the lower priority group comes last");
        first[order[0]] += 1;
    }
    assert_eq!(first, [3, 1, 0]);
}

#[test]
fn an_open_channel_is_tried_only_after_every_healthy_one() {
    let (high, low) = (spec("high", 10, 1), spec("low", 0, 1));
    assert_eq!(attempt_order(&[(&high, false), (&low, true)], |_| 0), vec![1, 0]);
}

#[test]
fn the_breaker_opens_after_the_threshold_and_a_successful_trial_closes_it() {
    let policy = BreakerPolicy { threshold: 3, base: Duration::from_secs(5), max: Duration::from_secs(20) };
    let mut breaker = Breaker::default();
    breaker.failure(0, &policy);
    breaker.failure(0, &policy);
    assert!(breaker.allows(0), "two failures leave it closed");
    breaker.failure(1_000, &policy);
    assert_eq!(breaker.state(1_000), BreakerState::Open);
    assert!(!breaker.allows(5_999));
    assert!(breaker.allows(6_000), "half-open after the back-off");
    breaker.attempt(6_000);
    assert!(!breaker.allows(6_000), "one trial at a time");
    breaker.failure(6_100, &policy);
    assert_eq!(breaker.state(16_099), BreakerState::Open, "a failed trial doubles the back-off");
    assert!(breaker.allows(16_100));
    breaker.attempt(16_100);
    breaker.failure(16_100, &policy);
    breaker.attempt(36_100);
    breaker.failure(36_100, &policy);
    assert!(breaker.allows(56_100), "the back-off stops growing at its maximum");
    breaker.attempt(56_100);
    breaker.success();
    assert_eq!(breaker.state(56_100), BreakerState::Closed);
    assert_eq!(breaker.failures(), 0);
}

#[test]
fn a_model_costs_its_own_price_else_the_channel_default_else_nothing_known() {
    let own = ModelPrice { input: crate::Money::from_micros(1), ..ModelPrice::default() };
    let fallback = ModelPrice { output: crate::Money::from_micros(2), ..ModelPrice::default() };
    let mut channel = spec("a", 0, 1);
    channel.cost_prices.insert("gpt-4o".into(), own);
    assert_eq!(channel.cost_price("gpt-4o"), Some(own));
    assert_eq!(channel.cost_price("o3"), None);
    channel.default_cost_price = Some(fallback);
    assert_eq!(channel.cost_price("gpt-4o"), Some(own));
    assert_eq!(channel.cost_price("o3"), Some(fallback));
}

#[test]
fn definitions_are_checked() {
    assert!(spec("a", 0, 1).validate().is_ok());
    type Change = fn(&mut ChannelSpec);
    let bad: [(&str, Change); 10] = [
        ("name", |s| s.name = " ".into()),
        ("base_url", |s| s.base_url = "https://x".into()),
        ("base_url", |s| s.base_url = "http://x/?a=1".into()),
        ("weight", |s| s.weight = 0),
        ("timeout_secs", |s| s.timeout_secs = Some(0)),
        ("models", |s| s.models = vec!["a\"b".into()]),
        ("aliases", |s| {
            s.aliases.insert("gpt".into(), String::new());
        }),
        ("cost_prices", |s| {
            let negative = ModelPrice { output: crate::Money::from_micros(-1), ..ModelPrice::default() };
            s.cost_prices.insert("gpt".into(), negative);
        }),
        ("cost_prices", |s| {
            s.cost_prices.insert("two words".into(), ModelPrice::default());
        }),
        ("default_cost_price", |s| {
            s.default_cost_price =
                Some(ModelPrice { per_request: Some(crate::Money::from_micros(-1)), ..ModelPrice::default() });
        }),
    ];
    for (field, change) in bad {
        let mut s = spec("a", 0, 1);
        change(&mut s);
        assert_eq!(s.validate().map_err(|e| e.field), Err(field));
    }
}
