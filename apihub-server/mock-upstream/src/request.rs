//! What a request asks the mock for, read in one pass with borrowed fields, and the deterministic
//! usage and text the mock answers with.

use std::borrow::Cow;
use std::fmt;

use apihub_core::usage::{Dialect, Endpoint, gemini_model};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::Behaviour;

/// The request fields the mock reads, in any dialect; all others are skipped unparsed.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Ask<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    max_output_tokens: Option<u64>,
    #[serde(rename = "generationConfig", alias = "generation_config")]
    generation_config: Option<GenerationConfig>,
    /// Images to generate.
    pub(super) n: Option<u64>,
    /// The length of each embedding.
    pub(super) dimensions: Option<u64>,
    #[serde(borrow)]
    messages: Option<&'a RawValue>,
    #[serde(borrow)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow)]
    pub(super) input: Option<&'a RawValue>,
    #[serde(borrow)]
    contents: Option<&'a RawValue>,
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct GenerationConfig {
    #[serde(rename = "maxOutputTokens", alias = "max_output_tokens")]
    max_output_tokens: Option<u64>,
}

impl<'a> Ask<'a> {
    /// Reads a body; an empty one reads as `{}`.
    fn read(body: &'a [u8]) -> Result<Ask<'a>, serde_json::Error> {
        if body.is_empty() { Ok(Ask::default()) } else { serde_json::from_slice(body) }
    }

    /// The field holding the prompt of `endpoint`.
    fn prompt_field(&self, endpoint: Endpoint) -> Option<&'a RawValue> {
        match endpoint {
            Endpoint::ChatCompletions | Endpoint::Messages => self.messages,
            Endpoint::Completions | Endpoint::ImageGenerations => self.prompt,
            Endpoint::Embeddings | Endpoint::Responses => self.input,
            Endpoint::GenerateContent | Endpoint::StreamGenerateContent => self.contents,
        }
    }

    /// The output cap the request sets, in its dialect's field; none is generated for embeddings
    /// and images.
    fn output_cap(&self, endpoint: Endpoint) -> Option<u64> {
        match endpoint {
            Endpoint::ChatCompletions => self.max_completion_tokens.or(self.max_tokens),
            Endpoint::Completions | Endpoint::Messages => self.max_tokens,
            Endpoint::Responses => self.max_output_tokens,
            Endpoint::GenerateContent | Endpoint::StreamGenerateContent => {
                self.generation_config.as_ref().and_then(|config| config.max_output_tokens)
            }
            Endpoint::Embeddings | Endpoint::ImageGenerations => Some(0),
        }
    }
}

/// The prompt tokens the mock reports for a request to `path` with `body`: the bytes of the
/// prompt field as sent (`messages`, `prompt`, `input` or `contents`, by endpoint) divided by 4,
/// rounded up; 0 when the field is absent. `None` when the path names no endpoint or the body is
/// not a JSON object the mock can read.
///
/// ```
/// use apihub_mock_upstream::prompt_tokens;
///
/// let body = br#"{"model":"claude-sonnet-4","max_tokens":5,"messages":[{"role":"user","content":"Hi"}]}"#;
/// assert_eq!(prompt_tokens("/v1/messages", body), Some(8)); // 31 bytes of `messages`
/// assert_eq!(prompt_tokens("/v1/models", b"{}"), None);
/// ```
pub fn prompt_tokens(path: &str, body: &[u8]) -> Option<u64> {
    let endpoint = Endpoint::from_path(path)?;
    Some(tokens(Ask::read(body).ok()?.prompt_field(endpoint)))
}

fn tokens(prompt: Option<&RawValue>) -> u64 {
    prompt.map_or(0, |raw| (raw.get().len() as u64).div_ceil(4))
}

/// A request admitted and read: everything a dialect needs to answer it.
#[derive(Debug)]
pub(super) struct Call<'a> {
    /// The request's sequence number, for ids.
    pub(super) id: u64,
    pub(super) endpoint: Endpoint,
    pub(super) ask: Ask<'a>,
    /// The model, as a JSON string (quoted and escaped).
    pub(super) model: String,
    pub(super) prompt_tokens: u64,
    pub(super) output_tokens: u64,
    /// Whether to report usage.
    pub(super) usage: bool,
    /// The query string, if any.
    pub(super) query: Option<&'a str>,
}

impl<'a> Call<'a> {
    /// Reads a request; the error is the 400 message.
    pub(super) fn read(
        endpoint: Endpoint,
        uri: &'a http::Uri,
        body: &'a [u8],
        behaviour: &Behaviour,
        default_output_tokens: u64,
        id: u64,
    ) -> Result<Call<'a>, String> {
        let ask = Ask::read(body).map_err(|e| format!("the request body is not valid: {e}"))?;
        let model = match endpoint.dialect() {
            Dialect::Gemini => gemini_model(uri.path()),
            Dialect::OpenAi | Dialect::Anthropic => ask.model.as_deref(),
        };
        let model = json_string(model.ok_or("`model` is required")?);
        let output_tokens = behaviour.output_tokens.or(ask.output_cap(endpoint)).unwrap_or(default_output_tokens);
        Ok(Call {
            id,
            endpoint,
            prompt_tokens: behaviour.prompt_tokens.unwrap_or_else(|| tokens(ask.prompt_field(endpoint))),
            output_tokens,
            usage: !behaviour.no_usage,
            model,
            query: uri.query(),
            ask,
        })
    }

    /// Whether the request asks for a stream (`"stream": true`).
    pub(super) fn stream(&self) -> bool {
        self.ask.stream == Some(true)
    }

    /// Whether an OpenAI stream should end with a usage-only chunk.
    pub(super) fn include_usage(&self) -> bool {
        self.usage && self.ask.stream_options.as_ref().and_then(|options| options.include_usage) == Some(true)
    }

    /// Prompt plus output tokens.
    pub(super) fn total_tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.output_tokens)
    }
}

/// `s` as a JSON string literal.
pub(super) fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}

const WORDS: [&str; 16] = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
];

/// The `n` words of the text, space-separated: one per output token. Plain ASCII letters, safe
/// inside a JSON string.
#[derive(Debug, Clone, Copy)]
pub(super) struct Words(pub(super) u64);

impl fmt::Display for Words {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (0..self.0).try_for_each(|i| Piece(i).fmt(f))
    }
}

/// Word `i` of the text as streamed: with the space before it, except the first. The pieces of
/// a stream add up to [`Words`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Piece(pub(super) u64);

impl fmt::Display for Piece {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = WORDS[(self.0 % WORDS.len() as u64) as usize];
        if self.0 == 0 { f.write_str(word) } else { write!(f, " {word}") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_is_a_quarter_of_its_field_rounded_up() {
        let body = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[1]}"#;
        assert_eq!(prompt_tokens("/v1/chat/completions", body), Some(1));
        assert_eq!(prompt_tokens("/v1/completions", br#"{"prompt":"abcdefg"}"#), Some(3)); // `"abcdefg"`
        assert_eq!(prompt_tokens("/v1/embeddings", br#"{"input":["ab","cd"]}"#), Some(3));
        assert_eq!(prompt_tokens("/v1/responses", br#"{"input":"abc"}"#), Some(2));
        assert_eq!(prompt_tokens("/v1beta/models/g:generateContent", br#"{"contents":[]}"#), Some(1));
        assert_eq!(prompt_tokens("/v1/messages", br#"{"model":"m"}"#), Some(0));
        assert_eq!(prompt_tokens("/v1/messages", b""), Some(0));
        assert_eq!(prompt_tokens("/v1/messages", b"[1]"), None);
        assert_eq!(prompt_tokens("/v1/messages", br#"{"max_tokens":"5"}"#), None);
    }

    #[test]
    fn output_comes_from_the_knob_then_the_cap_then_the_default() {
        let uri: http::Uri = "/v1/chat/completions".parse().unwrap();
        let read = |body: &'static str, behaviour: Behaviour| {
            Call::read(Endpoint::ChatCompletions, &uri, body.as_bytes(), &behaviour, 16, 0).unwrap().output_tokens
        };
        let forced = Behaviour { output_tokens: Some(2), ..Behaviour::default() };
        assert_eq!(read(r#"{"model":"m"}"#, Behaviour::default()), 16);
        assert_eq!(read(r#"{"model":"m","max_tokens":5}"#, Behaviour::default()), 5);
        assert_eq!(read(r#"{"model":"m","max_tokens":5,"max_completion_tokens":9}"#, Behaviour::default()), 9);
        assert_eq!(read(r#"{"model":"m","max_tokens":5}"#, forced), 2);
    }

    #[test]
    fn the_model_is_required_and_escaped() {
        let uri: http::Uri = "/v1/messages".parse().unwrap();
        let read =
            |body: &'static str| Call::read(Endpoint::Messages, &uri, body.as_bytes(), &Behaviour::default(), 16, 0);
        assert_eq!(read(r#"{"model":"a\"b"}"#).unwrap().model, r#""a\"b""#);
        assert!(read(r#"{"max_tokens":3}"#).unwrap_err().contains("model"));
        let gemini: http::Uri = "/v1beta/models/gemini-2.5-flash:generateContent?key=k".parse().unwrap();
        let call = Call::read(Endpoint::GenerateContent, &gemini, b"{}", &Behaviour::default(), 16, 0).unwrap();
        assert_eq!((call.model.as_str(), call.query), (r#""gemini-2.5-flash""#, Some("key=k")));
    }

    #[test]
    fn pieces_add_up_to_the_words() {
        assert_eq!(Words(0).to_string(), "");
        assert_eq!(Words(3).to_string(), "lorem ipsum dolor");
        let pieces: String = (0..40).map(|i| Piece(i).to_string()).collect();
        assert_eq!(pieces, Words(40).to_string());
        assert_eq!(Words(40).to_string().split(' ').count(), 40);
    }
}
