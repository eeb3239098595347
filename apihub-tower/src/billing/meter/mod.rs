//! Reads a response's usage while it passes through, and turns it into a charge.

use apihub_core::pricing::{Charge, ModelPrice, charge};
use apihub_core::store::UsageSource;
use apihub_core::usage::openai::is_usage_only_chunk;
use std::fmt;
use std::sync::Arc;

use apihub_core::usage::{BYTES_PER_TOKEN, Endpoint, MAX_EVENT_BYTES, RequestInfo, SseParser, StreamUsage, Usage};
use apihub_core::{DiscountRate, Money};
use bytes::{Bytes, BytesMut};

use crate::extract::UsageExtractor;

/// How a response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The body ended normally.
    Completed,
    /// The upstream broke off mid-body, or the client went away.
    Aborted,
}

/// What a finished response is billed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bill {
    /// The usage billed (reported, or estimated).
    pub usage: Usage,
    /// Whether the usage was reported or estimated.
    pub source: UsageSource,
    /// Cost before discounts, rounded once: for display.
    pub raw_cost: Money,
    /// The exact cost × user rate × key rate, rounded once (not from `raw_cost`).
    pub charge: Money,
    /// Whether anything is owed at all: false for a stream that ended before any output.
    pub billable: bool,
    /// The usage as the upstream reported it, when a count was above
    /// [`MAX_REPORTED_TOKENS`](apihub_core::usage::MAX_REPORTED_TOKENS): `usage` is then that
    /// report clamped, and the caller logs this one.
    pub implausible: Option<Usage>,
}

/// Observes a response body.
pub struct Meter {
    prompt_estimate: u64,
    kind: Kind,
    response_bytes: u64,
    /// When the body's first byte came.
    first_byte: Option<std::time::Instant>,
}

impl fmt::Debug for Meter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meter")
            .field("prompt_estimate", &self.prompt_estimate)
            .field("response_bytes", &self.response_bytes)
            .field("first_byte", &self.first_byte)
            .finish_non_exhaustive()
    }
}

enum Kind {
    Json {
        body: Kept,
        limit: usize,
        info: RequestInfo,
        extractor: Arc<dyn UsageExtractor>,
    },
    Sse {
        parser: SseParser,
        usage: StreamUsage,
        strip_usage_chunk: bool,
        /// The prices a usage-only chunk's `usage.cost` is computed with (the client asked for
        /// that chunk); its events are held as while stripping.
        cost: Option<Box<CostQuote>>,
        /// While stripping: the bytes of the event being read, sent on once it is known not to be
        /// the usage chunk.
        held: BytesMut,
    },
}

/// A JSON body kept for its usage, up to a limit. A body that comes in one chunk (as a small one
/// does) is kept as that chunk, without a copy.
enum Kept {
    Nothing,
    One(Bytes),
    Joined(BytesMut),
    /// Longer than the limit: not kept.
    TooLong,
}

impl Kept {
    fn push(&mut self, chunk: &Bytes, limit: usize) {
        if chunk.is_empty() {
            return;
        }
        *self = match std::mem::replace(self, Kept::TooLong) {
            Kept::Nothing if chunk.len() <= limit => Kept::One(chunk.clone()),
            Kept::One(first) if first.len() + chunk.len() <= limit => {
                let mut joined = BytesMut::with_capacity(first.len() + chunk.len());
                joined.extend_from_slice(&first);
                joined.extend_from_slice(chunk);
                Kept::Joined(joined)
            }
            Kept::Joined(mut joined) if joined.len() + chunk.len() <= limit => {
                joined.extend_from_slice(chunk);
                Kept::Joined(joined)
            }
            _ => Kept::TooLong,
        };
    }

    /// The body, unless it was longer than the limit.
    fn bytes(&self) -> Option<&[u8]> {
        match self {
            Kept::Nothing => Some(&[]),
            Kept::One(bytes) => Some(bytes),
            Kept::Joined(bytes) => Some(bytes),
            Kept::TooLong => None,
        }
    }
}

/// What a stream's usage chunk is priced at: the model's price and the two discounts.
#[derive(Debug, Clone)]
pub struct CostQuote {
    /// The model's price.
    pub price: ModelPrice,
    /// The user's discount.
    pub user: DiscountRate,
    /// The key's discount.
    pub key: DiscountRate,
}

impl Meter {
    /// A meter for a JSON body (kept up to `limit` bytes for `extractor` to read its usage).
    pub fn json(info: RequestInfo, extractor: Arc<dyn UsageExtractor>, limit: usize) -> Self {
        Meter {
            prompt_estimate: info.prompt_estimate,
            kind: Kind::Json { body: Kept::Nothing, limit, info, extractor },
            response_bytes: 0,
            first_byte: None,
        }
    }

    /// A meter for an SSE body; with `strip_usage_chunk`, the usage-only chunk the gateway asked
    /// for is removed from what the client sees.
    pub fn sse(endpoint: Endpoint, prompt_estimate: u64, strip_usage_chunk: bool) -> Self {
        Meter {
            prompt_estimate,
            kind: Kind::Sse {
                parser: SseParser::new(),
                usage: StreamUsage::new(endpoint),
                strip_usage_chunk,
                cost: None,
                held: BytesMut::new(),
            },
            response_bytes: 0,
            first_byte: None,
        }
    }

    /// A meter for an SSE body whose usage-only chunk (the client asked for it) gets
    /// `usage.cost`: the charge for the usage it reports, as settled.
    pub fn sse_with_cost(endpoint: Endpoint, prompt_estimate: u64, quote: CostQuote) -> Self {
        let mut meter = Meter::sse(endpoint, prompt_estimate, false);
        if let Kind::Sse { cost, .. } = &mut meter.kind {
            *cost = Some(Box::new(quote));
        }
        meter
    }

    /// Observes a chunk; returns what to send on: the chunk itself, or, while stripping, the bytes
    /// of the events it completed as they came, but for the stripped one.
    ///
    /// An event longer than [`MAX_EVENT_BYTES`] is not parsed (see [`SseParser`]): a stripping
    /// meter then stops stripping and sends on everything it held and every byte after it
    /// unchanged (the usage chunk, if one follows, included), so that memory stays bounded.
    pub fn observe(&mut self, chunk: Bytes) -> Bytes {
        if self.first_byte.is_none() && !chunk.is_empty() {
            self.first_byte = Some(std::time::Instant::now());
        }
        self.response_bytes += chunk.len() as u64;
        match &mut self.kind {
            Kind::Json { body, limit, .. } => {
                body.push(&chunk, *limit);
                chunk
            }
            Kind::Sse { parser, usage, strip_usage_chunk, cost, held } => {
                if !*strip_usage_chunk && cost.is_none() {
                    parser.push(&chunk).iter().for_each(|e| usage.push(e));
                    return chunk;
                }
                let mut out = BytesMut::new();
                let mut rest = &chunk[..];
                while !rest.is_empty() {
                    let (event, read) = parser.next_event(rest);
                    held.extend_from_slice(&rest[..read]);
                    rest = &rest[read..];
                    if let Some(event) = event {
                        usage.push(&event);
                        let bytes = held.split();
                        if !is_usage_only_chunk(&event) {
                            out.extend_from_slice(&bytes);
                            continue;
                        }
                        // Its leading line ends still go: the first may end the previous event's
                        // `\r\n` split across chunks, and a blank line sends nothing.
                        let lead = bytes.iter().take_while(|&&b| b == b'\n' || b == b'\r').count();
                        out.extend_from_slice(&bytes[..lead]);
                        if let Some(quote) = cost.as_deref() {
                            let reported = usage.usage().clamped();
                            let priced = charge(&quote.price, &reported, quote.user, quote.key).charge;
                            match with_cost(&bytes[lead..], priced) {
                                Some(annotated) => out.extend_from_slice(&annotated),
                                None => out.extend_from_slice(&bytes[lead..]),
                            }
                        }
                    }
                }
                if parser.skipped_bytes() > 0 || held.len() > MAX_EVENT_BYTES {
                    // Too long to hold: from now on every byte passes through as it came.
                    *strip_usage_chunk = false;
                    *cost = None;
                    out.extend_from_slice(&std::mem::take(held));
                }
                out.freeze()
            }
        }
    }

    /// When the body's first byte came (`None`: none yet).
    pub fn first_byte(&self) -> Option<std::time::Instant> {
        self.first_byte
    }

    /// Whether chunks leave exactly as they came (everything but a stripping SSE meter).
    pub fn passes_through_unchanged(&self) -> bool {
        !matches!(self.kind, Kind::Sse { strip_usage_chunk: true, .. } | Kind::Sse { cost: Some(_), .. })
    }

    /// At the end of the body: whatever a stripping meter still holds, to send on.
    pub fn flush(&mut self) -> Option<Bytes> {
        match &mut self.kind {
            Kind::Sse { parser, usage, strip_usage_chunk, cost, held } => {
                let last = parser.finish();
                if let Some(last) = &last {
                    usage.push(last);
                }
                let rest = std::mem::take(held).freeze();
                // A last event without its blank line: stripped if it is the usage chunk, else
                // sent as it came (a stream cut short gets no cost).
                let holding = *strip_usage_chunk || cost.is_some();
                let stripped = *strip_usage_chunk && last.as_ref().is_some_and(is_usage_only_chunk);
                (holding && !rest.is_empty() && !stripped).then_some(rest)
            }
            Kind::Json { .. } => None,
        }
    }

    /// The bill for what was observed.
    pub fn bill(&self, outcome: Outcome, price: &ModelPrice, user: DiscountRate, key: DiscountRate) -> Bill {
        let (reported, produced, finished, output_bytes, skipped) = match &self.kind {
            Kind::Json { body, info, extractor, .. } => {
                let usage = match (outcome, body.bytes()) {
                    (Outcome::Completed, Some(bytes)) => extractor.response(info, bytes),
                    // Cut short, or longer than the limit: no usage read (it is estimated).
                    _ => Usage::default(),
                };
                (usage, self.response_bytes > 0, true, self.response_bytes, false)
            }
            Kind::Sse { usage, parser, .. } => {
                // Bytes passed over unparsed (an event above `MAX_EVENT_BYTES`) may have been
                // content: the estimate counts them as such.
                let skipped = parser.skipped_bytes();
                let output_bytes = usage.output_bytes().saturating_add(skipped);
                (usage.usage(), usage.produced_output() || skipped > 0, usage.finished(), output_bytes, skipped > 0)
            }
        };
        // Validated where it enters billing, whichever extractor read it: absurd counts are clamped.
        let implausible = reported.exceeds_limits().then_some(reported);
        let reported = reported.clamped();
        let estimated_output = output_bytes.div_ceil(BYTES_PER_TOKEN);
        let (usage, source) = if reported.is_empty() {
            // Not reported: prompt estimate plus output bytes ÷ 4, documented in the module; an
            // image endpoint's answer counts the images asked for (a per-image price applies).
            let images = match &self.kind {
                Kind::Json { info, .. } if info.endpoint == Endpoint::ImageGenerations => info.output_cap,
                _ => None,
            };
            let estimate = Usage {
                input_tokens: Some(self.prompt_estimate),
                output_tokens: Some(estimated_output),
                images,
                ..Usage::default()
            };
            (estimate, UsageSource::Estimated)
        } else if !finished {
            // A stream cut short may have reported its input (Anthropic's `message_start`, every
            // Gemini chunk), even an early output count, but not the output it went on to produce:
            // that output is estimated as above, never below what was reported.
            let output = reported.output_tokens.unwrap_or(0).max(estimated_output);
            (Usage { output_tokens: Some(output), ..reported }, UsageSource::Estimated)
        } else if skipped {
            // The upstream's own final count covers what was passed over unparsed, but it could
            // not be checked against the stream: flagged.
            (reported, UsageSource::Estimated)
        } else {
            (reported, UsageSource::Reported)
        };
        let Charge { raw_cost, charge } = charge(price, &usage, user, key);
        Bill { usage, source, raw_cost, charge, billable: produced, implausible }
    }
}

/// A usage-only chunk's bytes (`data: {…,"usage":{…}}` and its line ends) with `"cost":<charge>`
/// first in its usage object, the rest byte for byte as it came; `None` when the chunk is not in
/// that shape (it then goes on unchanged).
fn with_cost(event: &[u8], charge: Money) -> Option<Vec<u8>> {
    const KEY: &[u8] = b"\"usage\"";
    let at = event.windows(KEY.len()).rposition(|w| w == KEY)? + KEY.len();
    let skip_ws = |from: usize| from + event[from..].iter().take_while(|b| b.is_ascii_whitespace()).count();
    let colon = skip_ws(at);
    if event.get(colon) != Some(&b':') {
        return None;
    }
    let open = skip_ws(colon + 1);
    if event.get(open) != Some(&b'{') {
        return None;
    }
    let empty = event.get(skip_ws(open + 1)) == Some(&b'}');
    let cost = serde_json::to_string(&charge).ok()?;
    let mut out = Vec::with_capacity(event.len() + cost.len() + 8);
    out.extend_from_slice(&event[..=open]);
    out.extend_from_slice(b"\"cost\":");
    out.extend_from_slice(cost.as_bytes());
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(&event[open + 1..]);
    // The result must still be the chunk it was, with the cost in its usage.
    let data = std::str::from_utf8(&out).ok()?.trim().strip_prefix("data:")?.trim();
    let parsed: serde_json::Value = serde_json::from_str(data).ok()?;
    (parsed["usage"]["cost"].is_number()).then_some(out)
}

#[cfg(test)]
mod tests;
