//! Which endpoint a request path names, and in which dialect it speaks.

/// The API dialect an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// OpenAI and compatible upstreams.
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
    /// Google's Gemini API.
    Gemini,
}

/// An endpoint whose usage the gateway reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/completions` (legacy).
    Completions,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `POST /v1/responses`.
    Responses,
    /// `POST /v1/images/generations`.
    ImageGenerations,
    /// `POST /v1/messages` (Anthropic).
    Messages,
    /// `POST /v1beta/models/{model}:generateContent` (Gemini).
    GenerateContent,
    /// `POST /v1beta/models/{model}:streamGenerateContent` (Gemini).
    StreamGenerateContent,
}

impl Endpoint {
    /// The endpoint a request path names, ignoring any query string; `None` for any other path.
    ///
    /// Gemini paths are accepted under `/v1beta/models/` and `/v1/models/`.
    ///
    /// ```
    /// use apihub_core::usage::{Dialect, Endpoint};
    ///
    /// assert_eq!(Endpoint::from_path("/v1/chat/completions"), Some(Endpoint::ChatCompletions));
    /// let gemini = Endpoint::from_path("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse");
    /// assert_eq!(gemini, Some(Endpoint::StreamGenerateContent));
    /// assert_eq!(gemini.map(Endpoint::dialect), Some(Dialect::Gemini));
    /// assert_eq!(Endpoint::from_path("/v1/models"), None);
    /// ```
    pub fn from_path(path: &str) -> Option<Endpoint> {
        Some(match without_query(path) {
            "/v1/chat/completions" => Endpoint::ChatCompletions,
            "/v1/completions" => Endpoint::Completions,
            "/v1/embeddings" => Endpoint::Embeddings,
            "/v1/responses" => Endpoint::Responses,
            "/v1/images/generations" => Endpoint::ImageGenerations,
            "/v1/messages" => Endpoint::Messages,
            path => gemini_path(path)?.1,
        })
    }

    /// The dialect the endpoint speaks.
    pub fn dialect(self) -> Dialect {
        match self {
            Endpoint::ChatCompletions
            | Endpoint::Completions
            | Endpoint::Embeddings
            | Endpoint::Responses
            | Endpoint::ImageGenerations => Dialect::OpenAi,
            Endpoint::Messages => Dialect::Anthropic,
            Endpoint::GenerateContent | Endpoint::StreamGenerateContent => Dialect::Gemini,
        }
    }
}

/// The model named by a Gemini path, such as `gemini-2.5-flash` in
/// `/v1beta/models/gemini-2.5-flash:generateContent`; `None` for any other path.
///
/// ```
/// use apihub_core::usage::gemini_model;
///
/// assert_eq!(gemini_model("/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"), Some("gemini-2.5-pro"));
/// assert_eq!(gemini_model("/v1/chat/completions"), None);
/// ```
pub fn gemini_model(path: &str) -> Option<&str> {
    gemini_path(without_query(path)).map(|(model, _)| model)
}

fn without_query(path: &str) -> &str {
    path.split_once(['?', '#']).map_or(path, |(path, _)| path)
}

/// The model and method of a Gemini path without its query.
fn gemini_path(path: &str) -> Option<(&str, Endpoint)> {
    let rest = path.strip_prefix("/v1beta/models/").or_else(|| path.strip_prefix("/v1/models/"))?;
    let (model, method) = rest.rsplit_once(':')?;
    if model.is_empty() || model.contains(['/', ':']) {
        return None;
    }
    let endpoint = match method {
        "generateContent" => Endpoint::GenerateContent,
        "streamGenerateContent" => Endpoint::StreamGenerateContent,
        _ => return None,
    };
    Some((model, endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_is_found_by_its_path() {
        for (path, endpoint, dialect) in [
            ("/v1/chat/completions", Endpoint::ChatCompletions, Dialect::OpenAi),
            ("/v1/completions", Endpoint::Completions, Dialect::OpenAi),
            ("/v1/embeddings", Endpoint::Embeddings, Dialect::OpenAi),
            ("/v1/responses", Endpoint::Responses, Dialect::OpenAi),
            ("/v1/images/generations", Endpoint::ImageGenerations, Dialect::OpenAi),
            ("/v1/messages", Endpoint::Messages, Dialect::Anthropic),
            ("/v1beta/models/gemini-2.0-flash:generateContent", Endpoint::GenerateContent, Dialect::Gemini),
            ("/v1/models/gemini-2.0-flash:generateContent?key=x", Endpoint::GenerateContent, Dialect::Gemini),
            (
                "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
                Endpoint::StreamGenerateContent,
                Dialect::Gemini,
            ),
        ] {
            assert_eq!(Endpoint::from_path(path), Some(endpoint), "{path}");
            assert_eq!(endpoint.dialect(), dialect);
        }
    }

    #[test]
    fn other_paths_are_not_endpoints() {
        for path in [
            "",
            "/",
            "/v1/models",
            "/v1/chat/completions/",
            "/v1/images/edits",
            "/v1/messages/count_tokens",
            "/v1beta/models/:generateContent",
            "/v1beta/models/gemini-2.0-flash:countTokens",
            "/v1beta/models/gemini-2.0-flash",
            "/v1beta/models/a/b:generateContent",
            "/v1beta/models/a:b:generateContent",
            "/v1beta/tunedModels/x:generateContent",
        ] {
            assert_eq!(Endpoint::from_path(path), None, "{path}");
            assert_eq!(gemini_model(path), None, "{path}");
        }
    }

    #[test]
    fn the_gemini_model_comes_from_the_path() {
        assert_eq!(gemini_model("/v1beta/models/gemini-2.5-flash:generateContent"), Some("gemini-2.5-flash"));
        assert_eq!(
            gemini_model("/v1/models/gemini-1.5-pro-002:streamGenerateContent?alt=sse"),
            Some("gemini-1.5-pro-002")
        );
        assert_eq!(gemini_model("/v1/messages"), None);
    }
}
