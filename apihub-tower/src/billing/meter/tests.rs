//! The meter's tests: what it bills for each kind of body, and what it passes through.

use super::*;

fn price() -> ModelPrice {
    ModelPrice { input: Money::from_credits(1), output: Money::from_credits(2), ..ModelPrice::default() }
}

fn chat(prompt_estimate: u64) -> RequestInfo {
    let mut info = RequestInfo::read("/v1/chat/completions", b"{}").unwrap();
    info.prompt_estimate = prompt_estimate;
    info
}

fn json(prompt_estimate: u64) -> Meter {
    Meter::json(chat(prompt_estimate), Arc::new(crate::extract::LlmExtractor), 1 << 20)
}

#[test]
fn json_usage_is_read_and_discounted() {
    let mut meter = json(10);
    let body = br#"{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":1000,"completion_tokens":500}}"#;
    let (a, b) = body.split_at(20);
    assert_eq!(meter.observe(Bytes::from_static(a)), Bytes::from_static(a));
    meter.observe(Bytes::from_static(b));
    let half = DiscountRate::parse("0.5").unwrap();
    let bill = meter.bill(Outcome::Completed, &price(), half, DiscountRate::FULL_PRICE);
    assert_eq!(bill.source, UsageSource::Reported);
    // 1000 × 1 + 500 × 2 = 2000 credits per million tokens → 0.002 credits, halved.
    assert_eq!(bill.raw_cost, Money::parse("0.002").unwrap());
    assert_eq!(bill.charge, Money::parse("0.001").unwrap());
}

#[test]
fn the_discounted_charge_is_rounded_once_from_the_exact_cost() {
    let mut meter = json(10);
    meter.observe(Bytes::from_static(br#"{"usage":{"prompt_tokens":1000,"completion_tokens":500}}"#));
    let price = ModelPrice {
        input: Money::parse("0.1235").unwrap(),
        output: Money::parse("0.6").unwrap(),
        ..ModelPrice::default()
    };
    let (user, key) = (DiscountRate::parse("0.8").unwrap(), DiscountRate::parse("0.5").unwrap());
    let bill = meter.bill(Outcome::Completed, &price, user, key);
    // 1,000 × 0.1235 + 500 × 0.6 = 423.5 micros → 424 shown; × 0.8 × 0.5 = 169.4 → 169 charged
    // (not 424 × 0.4 = 169.6 → 170).
    assert_eq!(bill.raw_cost, Money::from_micros(424));
    assert_eq!(bill.charge, Money::from_micros(169));
}

#[test]
fn absurd_reported_usage_is_billed_clamped_and_flagged() {
    let mut meter = json(10);
    meter.observe(Bytes::from_static(br#"{"usage":{"prompt_tokens":9223372036854775807,"completion_tokens":2}}"#));
    let bill = meter.bill(Outcome::Completed, &price(), DiscountRate::FULL_PRICE, DiscountRate::FULL_PRICE);
    let max = apihub_core::usage::MAX_REPORTED_TOKENS;
    assert_eq!((bill.usage.input_tokens, bill.usage.output_tokens), (Some(max), Some(2)));
    assert_eq!(bill.implausible.and_then(|u| u.input_tokens), Some(i64::MAX as u64));
    // 10⁹ × 1 + 2 × 2 credits per million tokens.
    assert_eq!(bill.charge, Money::from_micros(1_000_000_004));
    assert_eq!(bill.raw_cost, bill.charge);
}

/// A chat stream whose second event is one `data:` line of `line_bytes`, fed in 64 KiB chunks
/// through `meter`; returns what the client received.
fn huge_line_stream(meter: &mut Meter, line_bytes: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut send =
        |meter: &mut Meter, bytes: &[u8]| out.extend_from_slice(&meter.observe(Bytes::copy_from_slice(bytes)));
    send(meter, b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: ");
    let piece = vec![b'x'; 64 << 10];
    for _ in 0..line_bytes / piece.len() {
        send(meter, &piece);
        if let Kind::Sse { held, .. } = &meter.kind {
            assert!(held.len() <= MAX_EVENT_BYTES, "the meter holds at most one event's limit");
        }
    }
    send(meter, b"\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}\n\n");
    send(meter, b"data: [DONE]\n\n");
    if let Some(rest) = meter.flush() {
        out.extend_from_slice(&rest);
    }
    out
}

#[test]
fn a_huge_sse_line_passes_through_unchanged_and_is_billed_as_estimated() {
    let line_bytes = 4 * MAX_EVENT_BYTES;
    for strip in [false, true] {
        let mut meter = Meter::sse(Endpoint::ChatCompletions, 100, strip);
        let out = huge_line_stream(&mut meter, line_bytes);
        // Every byte as it came, the usage chunk included once stripping had to stop.
        assert_eq!(out.len() as u64, meter.response_bytes, "strip: {strip}");
        assert!(out.ends_with(b"[DONE]\n\n"));
        let bill = meter.bill(Outcome::Completed, &price(), DiscountRate::FULL_PRICE, DiscountRate::FULL_PRICE);
        assert!(bill.billable);
        // The upstream reported and finished: its counts stand, flagged as not checked.
        assert_eq!(bill.source, UsageSource::Estimated, "strip: {strip}");
        assert_eq!((bill.usage.input_tokens, bill.usage.output_tokens), (Some(5), Some(1)));
    }
    // Cut before the usage report: the skipped bytes count as output in the estimate.
    let mut meter = Meter::sse(Endpoint::ChatCompletions, 100, true);
    let mut out =
        meter.observe(Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: ")).to_vec();
    out.extend_from_slice(&meter.observe(Bytes::from(vec![b'x'; 2 * MAX_EVENT_BYTES])));
    assert_eq!(out.len() as u64, meter.response_bytes);
    let bill = meter.bill(Outcome::Aborted, &price(), DiscountRate::FULL_PRICE, DiscountRate::FULL_PRICE);
    assert_eq!(bill.source, UsageSource::Estimated);
    let skipped = (2 * MAX_EVENT_BYTES + "data: ".len()) as u64;
    assert_eq!(bill.usage.output_tokens, Some((2 + skipped).div_ceil(BYTES_PER_TOKEN)));
}

#[test]
fn stripping_sends_each_event_as_it_came() {
    let mut meter = Meter::sse(Endpoint::ChatCompletions, 1, true);
    let stream = ": keep-alive\r\ndata: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\r\n\r\n\
                  data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}\r\n\r\n\
                  data: [DONE]\r\n\r\n";
    let mut out = Vec::new();
    for piece in stream.as_bytes().chunks(7) {
        out.extend_from_slice(&meter.observe(Bytes::copy_from_slice(piece)));
    }
    out.extend(meter.flush().unwrap_or_default());
    let expected = ": keep-alive\r\ndata: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\r\n\r\ndata: [DONE]\r\n\r\n";
    assert_eq!(String::from_utf8(out).unwrap(), expected);
}

#[test]
fn a_json_body_in_many_chunks_is_read_whole_and_one_longer_than_the_limit_is_estimated() {
    let body = br#"{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":1000,"completion_tokens":500}}"#;
    let bill = |limit: usize| {
        let mut meter = Meter::json(chat(10), Arc::new(crate::extract::LlmExtractor), limit);
        for chunk in body.chunks(9) {
            meter.observe(Bytes::copy_from_slice(chunk));
        }
        meter.observe(Bytes::new());
        meter.bill(Outcome::Completed, &price(), DiscountRate::FULL_PRICE, DiscountRate::FULL_PRICE)
    };
    let whole = bill(body.len());
    assert_eq!((whole.source, whole.usage.input_tokens), (UsageSource::Reported, Some(1000)));
    // One byte short: the body is not kept (not even its first chunks), and the usage is estimated.
    let cut = bill(body.len() - 1);
    assert_eq!((cut.source, cut.usage.input_tokens), (UsageSource::Estimated, Some(10)));
}

#[test]
fn missing_usage_is_estimated() {
    let mut meter = json(100);
    meter.observe(Bytes::from_static(br#"{"choices":[]}"#));
    let bill = meter.bill(Outcome::Completed, &price(), DiscountRate::FULL_PRICE, DiscountRate::FULL_PRICE);
    assert_eq!(bill.source, UsageSource::Estimated);
    assert_eq!(bill.usage.input_tokens, Some(100));
    assert_eq!(bill.usage.output_tokens, Some(4));
}

#[test]
fn an_image_answer_without_usage_is_billed_for_the_images_asked_for() {
    let info = RequestInfo::read("/v1/images/generations", br#"{"model":"img","n":2}"#).unwrap();
    let mut meter = Meter::json(info, Arc::new(crate::extract::LlmExtractor), 1 << 20);
    meter.observe(Bytes::from_static(b"event: image_generation.completed\ndata: {}\n\n"));
    let price = ModelPrice { per_image: Some(Money::from_credits(1)), ..ModelPrice::default() };
    let bill = meter.bill(Outcome::Completed, &price, DiscountRate::FULL_PRICE, DiscountRate::FULL_PRICE);
    assert_eq!((bill.source, bill.usage.images), (UsageSource::Estimated, Some(2)));
    assert_eq!(bill.charge, Money::from_credits(2));
}

#[test]
fn a_stream_without_output_is_not_billable() {
    let mut meter = Meter::sse(Endpoint::ChatCompletions, 100, false);
    meter.observe(Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n"));
    let bill = meter.bill(Outcome::Aborted, &price(), DiscountRate::FULL_PRICE, DiscountRate::FULL_PRICE);
    assert!(!bill.billable);
}

#[test]
fn a_stream_cut_after_an_early_usage_report_bills_its_output() {
    // Anthropic reports the input and an early output count of 1 before any text.
    let mut meter = Meter::sse(Endpoint::Messages, 100, false);
    let stream = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello there\"}}\n\n",
    );
    meter.observe(Bytes::from_static(stream.as_bytes()));
    let bill = meter.bill(Outcome::Aborted, &price(), DiscountRate::FULL_PRICE, DiscountRate::FULL_PRICE);
    assert!(bill.billable);
    assert_eq!(bill.source, UsageSource::Estimated);
    assert_eq!(bill.usage.input_tokens, Some(10), "the reported input stands");
    // "Hello there": 11 bytes of text, not the ~180 bytes of SSE and JSON around them.
    assert_eq!(bill.usage.output_tokens, Some(3));
}

#[test]
fn the_usage_chunk_can_be_stripped() {
    let mut meter = Meter::sse(Endpoint::ChatCompletions, 1, true);
    let stream = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}\n\n",
        "data: [DONE]\n\n",
    );
    let mut out = Vec::new();
    for byte in stream.as_bytes() {
        out.extend_from_slice(&meter.observe(Bytes::copy_from_slice(&[*byte])));
    }
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("\"Hi\""));
    assert!(!out.contains("usage"));
    assert!(out.contains("[DONE]"));
    let bill = meter.bill(Outcome::Completed, &price(), DiscountRate::FULL_PRICE, DiscountRate::FULL_PRICE);
    assert_eq!(bill.usage.input_tokens, Some(5));
    assert_eq!(bill.source, UsageSource::Reported);
}

#[test]
fn the_clients_usage_chunk_carries_its_cost_and_every_other_byte_is_unchanged() {
    let quote = CostQuote { price: price(), user: DiscountRate::parse("0.5").unwrap(), key: DiscountRate::FULL_PRICE };
    let mut meter = Meter::sse_with_cost(Endpoint::ChatCompletions, 1, quote);
    let content = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\r\n\r\n";
    let usage = "data: {\"id\":\"x\",\"choices\":[],\"usage\": {\"prompt_tokens\":1000,\"completion_tokens\":500}}\n\n";
    let stream = format!("{content}{usage}data: [DONE]\n\n");
    let mut out = Vec::new();
    for piece in stream.as_bytes().chunks(7) {
        out.extend_from_slice(&meter.observe(Bytes::copy_from_slice(piece)));
    }
    assert_eq!(meter.flush(), None);
    let out = String::from_utf8(out).unwrap();
    // 1000 × 1 + 500 × 2 per million = 0.002, halved.
    let annotated = "data: {\"id\":\"x\",\"choices\":[],\"usage\": {\"cost\":0.001,\"prompt_tokens\":1000,\"completion_tokens\":500}}\n\n";
    assert_eq!(out, format!("{content}{annotated}data: [DONE]\n\n"));
    let bill = meter.bill(Outcome::Completed, &price(), DiscountRate::parse("0.5").unwrap(), DiscountRate::FULL_PRICE);
    assert_eq!(bill.charge, Money::parse("0.001").unwrap());
    // A usage object that is empty, or not where it should be, is handled or left alone.
    assert_eq!(with_cost(b"data: {\"usage\":{}}\n\n", Money::ZERO).unwrap(), b"data: {\"usage\":{\"cost\":0}}\n\n");
    assert_eq!(with_cost(b"data: {\"usage\":null}\n\n", Money::ZERO), None);
}
