//! What the mock does: its configuration, and the behaviour knobs each request may override.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use http::{HeaderMap, StatusCode};

/// How a [`MockUpstream`](super::MockUpstream) is set up. `MockConfig::default()` binds a free
/// port on `127.0.0.1`, requires no key and records the last request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockConfig {
    /// The address to bind; port 0 picks a free one.
    pub addr: SocketAddr,
    /// The key callers must present in their dialect's header; `None` lets anyone in.
    pub api_key: Option<String>,
    /// The model ids `GET /v1/models` lists.
    pub models: Vec<String>,
    /// The output tokens of a request that sets no cap.
    pub default_output_tokens: u64,
    /// Keep the last request for [`MockStats::last_request`](super::MockStats::last_request).
    /// Costs a header copy and a mutex per request: turn it off for benchmarks.
    pub record_requests: bool,
    /// How every response behaves, unless the request's `x-mock-*` headers say otherwise.
    pub behaviour: Behaviour,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            api_key: None,
            models: ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "gpt-image-1"].map(String::from).to_vec(),
            default_output_tokens: 16,
            record_requests: true,
            behaviour: Behaviour::default(),
        }
    }
}

/// How a response behaves. The default answers at once, in full, with usage.
///
/// Each field has a request header that overrides it (see [`header`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Behaviour {
    /// Wait before answering ([`header::LATENCY_MS`]).
    pub latency: Duration,
    /// Wait between streamed events ([`header::CHUNK_DELAY_MS`]).
    pub chunk_delay: Duration,
    /// Answer with this error status and the dialect's error body ([`header::STATUS`]).
    pub status: Option<StatusCode>,
    /// Report no usage at all ([`header::NO_USAGE`]).
    pub no_usage: bool,
    /// Generate this many output tokens whatever the request's cap ([`header::OUTPUT_TOKENS`]).
    pub output_tokens: Option<u64>,
    /// Report this many prompt tokens whatever the prompt ([`header::PROMPT_TOKENS`]): any `u64`,
    /// absurd ones included, to test how the gateway takes them.
    pub prompt_tokens: Option<u64>,
    /// End the body cleanly after this many SSE events (or elements of Gemini's streamed array;
    /// of a plain JSON body, bytes) ([`header::TRUNCATE_AFTER`]).
    pub truncate_after: Option<usize>,
    /// Abort the connection after this many SSE events (elements, bytes), counted as for
    /// `truncate_after` ([`header::RESET_AFTER`]). Wins over `truncate_after`.
    pub reset_after: Option<usize>,
    /// Never answer ([`header::HANG`]).
    pub hang: bool,
    /// Send this many frames, then nothing more, never ending the body ([`header::STALL_AFTER`]).
    pub stall_after: Option<usize>,
}

/// The request headers that override a [`Behaviour`] field. Numbers are decimal; switches take
/// `1`/`true` or `0`/`false`.
pub mod header {
    /// Milliseconds to wait before answering.
    pub const LATENCY_MS: &str = "x-mock-latency-ms";
    /// Milliseconds to wait between streamed events.
    pub const CHUNK_DELAY_MS: &str = "x-mock-chunk-delay-ms";
    /// An error status (400–599) to answer with; a status below 400 clears a configured one.
    pub const STATUS: &str = "x-mock-status";
    /// Report no usage at all.
    pub const NO_USAGE: &str = "x-mock-no-usage";
    /// The output tokens to generate, whatever the request's cap.
    pub const OUTPUT_TOKENS: &str = "x-mock-output-tokens";
    /// The prompt tokens to report, whatever the prompt.
    pub const PROMPT_TOKENS: &str = "x-mock-prompt-tokens";
    /// End the body cleanly after this many events (bytes of a JSON body).
    pub const TRUNCATE_AFTER: &str = "x-mock-truncate-after";
    /// Abort the connection after this many events (bytes of a JSON body).
    pub const RESET_AFTER: &str = "x-mock-reset-after";
    /// Never answer.
    pub const HANG: &str = "x-mock-hang";
    /// Send this many events (elements), then stall with the connection open.
    pub const STALL_AFTER: &str = "x-mock-stall-after";
}

/// An `x-mock-*` header the mock does not know, or whose value it cannot read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct InvalidKnob(String);

impl fmt::Display for InvalidKnob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Behaviour {
    /// This behaviour with the overrides of `headers` applied.
    pub(super) fn with_headers(mut self, headers: &HeaderMap) -> Result<Behaviour, InvalidKnob> {
        for (name, value) in headers {
            // One pass over the headers: most requests carry none of ours.
            if !name.as_str().starts_with("x-mock-") {
                continue;
            }
            let invalid = || InvalidKnob(format!("invalid {name}: {value:?}"));
            let text = value.to_str().map_err(|_| invalid())?.trim();
            let number = || text.parse::<u64>().map_err(|_| invalid());
            let count = || text.parse::<usize>().map_err(|_| invalid());
            let switch = || match text {
                "1" | "true" => Ok(true),
                "0" | "false" => Ok(false),
                _ => Err(invalid()),
            };
            match name.as_str() {
                header::LATENCY_MS => self.latency = Duration::from_millis(number()?),
                header::CHUNK_DELAY_MS => self.chunk_delay = Duration::from_millis(number()?),
                header::STATUS => {
                    let status = text.parse::<u16>().ok().filter(|s| *s <= 599);
                    let status = status.and_then(|s| StatusCode::from_u16(s).ok()).ok_or_else(invalid)?;
                    self.status = (status.as_u16() >= 400).then_some(status);
                }
                header::NO_USAGE => self.no_usage = switch()?,
                header::OUTPUT_TOKENS => self.output_tokens = Some(number()?),
                header::PROMPT_TOKENS => self.prompt_tokens = Some(number()?),
                header::TRUNCATE_AFTER => self.truncate_after = Some(count()?),
                header::RESET_AFTER => self.reset_after = Some(count()?),
                header::HANG => self.hang = switch()?,
                header::STALL_AFTER => self.stall_after = Some(count()?),
                _ => return Err(InvalidKnob(format!("unknown mock header {name}"))),
            }
        }
        Ok(self)
    }

    /// Where the body stops early, if it does, and whether it then aborts the connection.
    pub(super) fn cut(&self) -> Option<(usize, bool)> {
        match (self.reset_after, self.truncate_after) {
            (Some(after), _) => Some((after, true)),
            (None, Some(after)) => Some((after, false)),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (http::HeaderName::from_static(name), HeaderValue::from_str(value).unwrap()))
            .collect()
    }

    #[test]
    fn every_knob_has_its_header() {
        let got = Behaviour::default()
            .with_headers(&headers(&[
                (header::LATENCY_MS, "250"),
                (header::CHUNK_DELAY_MS, "5"),
                (header::STATUS, "529"),
                (header::NO_USAGE, "1"),
                (header::OUTPUT_TOKENS, "7"),
                (header::PROMPT_TOKENS, "9223372036854775807"),
                (header::TRUNCATE_AFTER, "3"),
                (header::RESET_AFTER, " 4 "),
                (header::STALL_AFTER, "2"),
                (header::HANG, "true"),
                ("x-other", "ignored"),
            ]))
            .unwrap();
        assert_eq!(
            got,
            Behaviour {
                latency: Duration::from_millis(250),
                chunk_delay: Duration::from_millis(5),
                status: Some(StatusCode::from_u16(529).unwrap()),
                no_usage: true,
                output_tokens: Some(7),
                prompt_tokens: Some(i64::MAX as u64),
                truncate_after: Some(3),
                reset_after: Some(4),
                hang: true,
                stall_after: Some(2),
            }
        );
        assert_eq!(got.cut(), Some((4, true)), "a reset wins over a truncation");
    }

    #[test]
    fn headers_override_the_configured_behaviour() {
        let configured = Behaviour { status: Some(StatusCode::BAD_GATEWAY), no_usage: true, ..Behaviour::default() };
        let got = configured.with_headers(&headers(&[(header::STATUS, "200"), (header::NO_USAGE, "0")])).unwrap();
        assert_eq!(got, Behaviour::default());
        assert_eq!(configured.with_headers(&HeaderMap::new()), Ok(configured));
    }

    #[test]
    fn typos_and_bad_values_are_refused() {
        for (name, value) in [
            ("x-mock-latency", "5"),
            (header::LATENCY_MS, "-5"),
            (header::STATUS, "abc"),
            (header::STATUS, "600"),
            (header::NO_USAGE, "yes please"),
            (header::TRUNCATE_AFTER, "3.5"),
        ] {
            let err = Behaviour::default().with_headers(&headers(&[(name, value)])).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }
}
