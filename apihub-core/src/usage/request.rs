//! What a request body says about the usage to expect, for reserving credit before the call.

use serde_json::Value;

use super::sparse::{self, Keep};
use super::{Endpoint, count, gemini_model};

/// The fields of a request body [`RequestInfo::read`] looks at; the rest is skipped unread.
const REQUEST_FIELDS: &[(&str, Keep)] = &[
    ("model", Keep::Whole),
    ("stream", Keep::Whole),
    ("max_tokens", Keep::Whole),
    ("max_completion_tokens", Keep::Whole),
    ("max_output_tokens", Keep::Whole),
    ("n", Keep::Whole),
    ("best_of", Keep::Whole),
    ("generationConfig", Keep::Whole),
    ("generation_config", Keep::Whole),
];

/// Request bytes counted as one token by [`estimate_tokens`].
pub const BYTES_PER_TOKEN: u64 = 4;

/// What a request asks for, read from its path and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// The endpoint called.
    pub endpoint: Endpoint,
    /// The model: the body's `model`, or for Gemini the one in the path.
    pub model: Option<String>,
    /// Whether the response streams: `"stream": true`, or Gemini's `streamGenerateContent`.
    pub stream: bool,
    /// The most output the request allows: tokens (the dialect's `max_tokens`,
    /// `max_completion_tokens`, `max_output_tokens` or `generationConfig.maxOutputTokens`, times
    /// the number of choices or candidates asked for), `0` for embeddings, or for image
    /// generations the number of images (`n`, 1 when absent). `None` when the request sets no cap.
    pub output_cap: Option<u64>,
    /// A cheap estimate of the prompt's tokens: see [`estimate_tokens`].
    pub prompt_estimate: u64,
}

impl RequestInfo {
    /// Reads a request to `path` (query string allowed) with `body`; `None` when the path is not
    /// an [`Endpoint`]. A body that is not JSON gives no model and no cap.
    pub fn read(path: &str, body: &[u8]) -> Option<RequestInfo> {
        let endpoint = Endpoint::from_path(path)?;
        let request = sparse::parse(body, REQUEST_FIELDS).unwrap_or(Value::Null);
        let model = match endpoint {
            Endpoint::GenerateContent | Endpoint::StreamGenerateContent => gemini_model(path),
            _ => request.get("model").and_then(Value::as_str),
        };
        Some(RequestInfo {
            endpoint,
            model: model.map(str::to_owned),
            stream: endpoint == Endpoint::StreamGenerateContent
                || request.get("stream").and_then(Value::as_bool) == Some(true),
            output_cap: output_cap(endpoint, &request),
            prompt_estimate: estimate_tokens(body),
        })
    }
}

fn output_cap(endpoint: Endpoint, request: &Value) -> Option<u64> {
    let field = |name: &str| request.get(name).and_then(Value::as_u64);
    // Each choice (or candidate) asked for may use the whole cap.
    let times = |cap: Option<u64>, copies: Option<u64>| cap.map(|cap| cap.saturating_mul(copies.unwrap_or(1).max(1)));
    match endpoint {
        Endpoint::ChatCompletions => times(field("max_completion_tokens").max(field("max_tokens")), field("n")),
        Endpoint::Completions => times(field("max_tokens"), field("n").max(field("best_of"))),
        Endpoint::Responses => field("max_output_tokens"),
        Endpoint::Embeddings => Some(0),
        Endpoint::ImageGenerations => Some(field("n").unwrap_or(1)),
        Endpoint::Messages => field("max_tokens"),
        Endpoint::GenerateContent | Endpoint::StreamGenerateContent => {
            // Proto JSON accepts both spellings.
            let config = request.get("generationConfig").or_else(|| request.get("generation_config"));
            let config_field =
                |camel: &str, snake: &str| config.and_then(|c| count(c, camel).or_else(|| count(c, snake)));
            times(
                config_field("/maxOutputTokens", "/max_output_tokens"),
                config_field("/candidateCount", "/candidate_count"),
            )
        }
    }
}

/// A cheap estimate of the tokens in a request: its size in bytes divided by
/// [`BYTES_PER_TOKEN`], rounded up.
///
/// An estimate, not a bound: it counts JSON syntax too (so it usually runs high for English), but
/// dense scripts and images referenced by URL can cost more tokens than it says.
pub fn estimate_tokens(body: &[u8]) -> u64 {
    u64::try_from(body.len()).unwrap_or(u64::MAX).div_ceil(BYTES_PER_TOKEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &str, body: &str) -> RequestInfo {
        RequestInfo::read(path, body.as_bytes()).unwrap()
    }

    fn summary(info: &RequestInfo) -> (Option<&str>, bool, Option<u64>) {
        (info.model.as_deref(), info.stream, info.output_cap)
    }

    #[test]
    fn each_dialect_names_its_cap() {
        for (path, body, expected) in [
            ("/v1/chat/completions", r#"{"model":"gpt-4o","max_tokens":100}"#, (Some("gpt-4o"), false, Some(100))),
            (
                "/v1/chat/completions",
                r#"{"model":"o3","stream":true,"max_completion_tokens":900,"n":2}"#,
                (Some("o3"), true, Some(1_800)),
            ),
            (
                "/v1/chat/completions",
                r#"{"model":"o3","max_completion_tokens":900,"max_tokens":50}"#,
                (Some("o3"), false, Some(900)),
            ),
            ("/v1/chat/completions", r#"{"model":"gpt-4o","n":3}"#, (Some("gpt-4o"), false, None)),
            (
                "/v1/completions",
                r#"{"model":"babbage-002","max_tokens":16,"best_of":3}"#,
                (Some("babbage-002"), false, Some(48)),
            ),
            (
                "/v1/responses",
                r#"{"model":"gpt-4.1","max_output_tokens":500,"stream":true}"#,
                (Some("gpt-4.1"), true, Some(500)),
            ),
            (
                "/v1/embeddings",
                r#"{"model":"text-embedding-3-small","input":"hi"}"#,
                (Some("text-embedding-3-small"), false, Some(0)),
            ),
            (
                "/v1/images/generations",
                r#"{"model":"dall-e-3","prompt":"a cat","n":2}"#,
                (Some("dall-e-3"), false, Some(2)),
            ),
            (
                "/v1/images/generations",
                r#"{"model":"gpt-image-1","prompt":"a cat"}"#,
                (Some("gpt-image-1"), false, Some(1)),
            ),
            (
                "/v1/messages",
                r#"{"model":"claude-opus-4-1","max_tokens":4096,"stream":true}"#,
                (Some("claude-opus-4-1"), true, Some(4_096)),
            ),
            (
                "/v1beta/models/gemini-2.5-flash:generateContent",
                r#"{"contents":[],"generationConfig":{"maxOutputTokens":256,"candidateCount":2}}"#,
                (Some("gemini-2.5-flash"), false, Some(512)),
            ),
            (
                "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
                r#"{"contents":[],"generation_config":{"max_output_tokens":64}}"#,
                (Some("gemini-2.5-pro"), true, Some(64)),
            ),
        ] {
            assert_eq!(summary(&read(path, body)), expected, "{path} {body}");
        }
    }

    #[test]
    fn odd_values_give_no_cap_and_no_stream() {
        for body in [
            r#"{"model":7,"max_tokens":-1,"stream":"yes"}"#,
            r#"{"max_tokens":1.5,"stream":1}"#,
            r#"{"max_tokens":"100"}"#,
            "not json",
            "",
        ] {
            assert_eq!(summary(&read("/v1/messages", body)), (None, false, None), "{body}");
        }
        assert_eq!(read("/v1/chat/completions", r#"{"max_tokens":10,"n":0}"#).output_cap, Some(10));
        assert_eq!(
            read("/v1/chat/completions", r#"{"max_tokens":18446744073709551615,"n":2}"#).output_cap,
            Some(u64::MAX)
        );
        assert_eq!(RequestInfo::read("/v1/models", b"{}"), None);
    }

    #[test]
    fn the_prompt_estimate_is_a_quarter_of_the_bytes_rounded_up() {
        assert_eq!(estimate_tokens(b""), 0);
        assert_eq!(estimate_tokens(b"abcd"), 1);
        assert_eq!(estimate_tokens(b"abcde"), 2);
        let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hello"}]}"#;
        assert_eq!(read("/v1/chat/completions", body).prompt_estimate, (body.len() as u64).div_ceil(4));
    }
}
