//! The server: binding, the accept loop, the routes, and the checks every request goes through
//! before its dialect answers.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use apihub_core::usage::{Dialect, Endpoint};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::StatusCode;
use http::request::Parts;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::body::{Reply, error_response};
use super::config::{Behaviour, MockConfig};
use super::request::Call;
use super::stats::{MockStats, Route};
use super::{anthropic, gemini, openai};

/// The largest request body read.
const MAX_BODY: usize = 64 << 20;

/// A running mock upstream. Dropping it stops the server: the port closes and every open
/// connection is cut, hanging requests included.
#[derive(Debug)]
pub struct MockUpstream {
    addr: SocketAddr,
    stats: MockStats,
    /// Dropped with the mock: its receivers, in the accept loop and each connection, then stop.
    _shutdown: watch::Sender<()>,
}

impl MockUpstream {
    /// Binds [`MockConfig::addr`] and serves from a background task of the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub async fn start(config: MockConfig) -> io::Result<MockUpstream> {
        let listener = TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;
        let stats = MockStats::default();
        let shared = Arc::new(Shared {
            models: openai::models_body(&config.models),
            api_key: config.api_key,
            default_output_tokens: config.default_output_tokens,
            record_requests: config.record_requests,
            behaviour: config.behaviour,
            stats: stats.clone(),
        });
        let (shutdown, stopped) = watch::channel(());
        tokio::spawn(serve(listener, router(shared), stopped));
        Ok(MockUpstream { addr, stats, _shutdown: shutdown })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, such as `http://127.0.0.1:40123`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What it has received so far.
    pub fn stats(&self) -> &MockStats {
        &self.stats
    }
}

/// Accepts connections until the mock is dropped, serving each with HTTP/1.1 in its own task.
async fn serve(listener: TcpListener, app: Router, mut stopped: watch::Receiver<()>) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors, most likely: give connections time to close.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stopped.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            // Dropping the connection closes its socket, whatever it was doing.
            tokio::select! {
                _ = connection => {}
                _ = stopped.changed() => {}
            }
        });
    }
}

/// What every request handler shares.
struct Shared {
    api_key: Option<String>,
    default_output_tokens: u64,
    record_requests: bool,
    behaviour: Behaviour,
    /// The body of `GET /v1/models`, built once.
    models: Bytes,
    stats: MockStats,
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/responses", post(responses))
        .route("/v1/images/generations", post(images))
        .route("/v1/models", get(models))
        .route("/v1/messages", post(messages))
        .route("/v1beta/models/{target}", post(gemini))
        .route("/v1/models/{target}", post(gemini))
        .fallback(not_found)
        .with_state(shared)
}

async fn chat(State(mock): State<Arc<Shared>>, request: Request) -> Response {
    mock.answer(Endpoint::ChatCompletions, request, openai::chat).await
}

async fn completions(State(mock): State<Arc<Shared>>, request: Request) -> Response {
    mock.answer(Endpoint::Completions, request, openai::completions).await
}

async fn embeddings(State(mock): State<Arc<Shared>>, request: Request) -> Response {
    mock.answer(Endpoint::Embeddings, request, openai::embeddings).await
}

async fn responses(State(mock): State<Arc<Shared>>, request: Request) -> Response {
    mock.answer(Endpoint::Responses, request, openai::responses).await
}

async fn images(State(mock): State<Arc<Shared>>, request: Request) -> Response {
    mock.answer(Endpoint::ImageGenerations, request, openai::images).await
}

async fn messages(State(mock): State<Arc<Shared>>, request: Request) -> Response {
    mock.answer(Endpoint::Messages, request, anthropic::messages).await
}

/// `{model}:generateContent` and `{model}:streamGenerateContent`; any other method is not found.
async fn gemini(State(mock): State<Arc<Shared>>, request: Request) -> Response {
    match Endpoint::from_path(request.uri().path()) {
        Some(endpoint) => mock.answer(endpoint, request, gemini::generate).await,
        None => not_found(State(mock)).await,
    }
}

async fn models(State(mock): State<Arc<Shared>>, request: Request) -> Response {
    match mock.admit(Route::Models, request).await {
        Ok(admitted) => Reply::Json(mock.models.clone()).into_response(&admitted.behaviour),
        Err(refused) => refused,
    }
}

async fn not_found(State(mock): State<Arc<Shared>>) -> Response {
    mock.stats.count(Route::Unknown);
    error(Dialect::OpenAi, StatusCode::NOT_FOUND, "the mock upstream has no such endpoint")
}

/// A request past the checks.
struct Admitted {
    id: u64,
    parts: Parts,
    body: Bytes,
    behaviour: Behaviour,
}

impl Shared {
    /// Admits a request to `endpoint`, reads it, and answers it with `reply`.
    async fn answer(&self, endpoint: Endpoint, request: Request, reply: fn(&Call) -> Reply) -> Response {
        let admitted = match self.admit(Route::Api(endpoint), request).await {
            Ok(admitted) => admitted,
            Err(refused) => return refused,
        };
        let Admitted { id, parts, body, behaviour } = &admitted;
        match Call::read(endpoint, &parts.uri, body, behaviour, self.default_output_tokens, *id) {
            Ok(call) => reply(&call).into_response(behaviour),
            Err(message) => error(endpoint.dialect(), StatusCode::BAD_REQUEST, &message),
        }
    }

    /// Counts and records a request, then applies, in order: the hang, the latency, the key
    /// check and the injected error status.
    async fn admit(&self, route: Route, request: Request) -> Result<Admitted, Response> {
        let id = self.stats.count(route);
        let dialect = route.dialect();
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, MAX_BODY)
            .await
            .map_err(|_| error(dialect, StatusCode::BAD_REQUEST, "the request body could not be read"))?;
        if self.record_requests {
            self.stats.record(&parts, &body);
        }
        let behaviour = self
            .behaviour
            .with_headers(&parts.headers)
            .map_err(|invalid| error(dialect, StatusCode::BAD_REQUEST, &invalid.to_string()))?;
        if behaviour.hang {
            std::future::pending::<()>().await;
        }
        if !behaviour.latency.is_zero() {
            tokio::time::sleep(behaviour.latency).await;
        }
        if let Some(expected) = &self.api_key {
            let presented = match dialect {
                Dialect::OpenAi => openai::api_key(&parts.headers),
                Dialect::Anthropic => anthropic::api_key(&parts.headers),
                Dialect::Gemini => gemini::api_key(&parts.headers, parts.uri.query()),
            };
            match presented {
                Some(key) if key == expected => {}
                Some(_) => return Err(error(dialect, StatusCode::UNAUTHORIZED, "invalid API key")),
                None => return Err(error(dialect, StatusCode::UNAUTHORIZED, "missing API key")),
            }
        }
        if let Some(status) = behaviour.status {
            return Err(error(dialect, status, "error injected by the mock upstream"));
        }
        Ok(Admitted { id, parts, body, behaviour })
    }
}

/// An error response in `dialect`'s shape.
fn error(dialect: Dialect, status: StatusCode, message: &str) -> Response {
    let body = match dialect {
        Dialect::OpenAi => openai::error_body(status, message),
        Dialect::Anthropic => anthropic::error_body(status, message),
        Dialect::Gemini => gemini::error_body(status, message),
    };
    error_response(status, body)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::header;
    use super::super::tests::{open_mock, post, start};
    use super::*;

    const CHAT: &str = r#"{"model":"gpt-4o-mini","max_tokens":2,"messages":[]}"#;

    #[tokio::test]
    async fn openai_calls_need_the_configured_bearer_key() {
        let mock = start(MockConfig { api_key: Some("sk-upstream".into()), ..MockConfig::default() }).await;
        let path = "/v1/chat/completions";
        assert_eq!(post(&mock, path, &[("authorization", "Bearer sk-upstream")], CHAT).await.status, 200);
        for (headers, message) in [
            (&[][..], "missing API key"),
            (&[("authorization", "Bearer sk-client")], "invalid API key"),
            (&[("authorization", "sk-upstream")], "missing API key"),
            (&[("x-api-key", "sk-upstream")], "missing API key"),
        ] {
            let got = post(&mock, path, headers, CHAT).await;
            assert_eq!(got.status, StatusCode::UNAUTHORIZED, "{headers:?}");
            let json = got.json();
            assert_eq!(
                (json["error"]["message"].as_str(), json["error"]["code"].as_str()),
                (Some(message), Some("invalid_api_key"))
            );
        }
    }

    #[tokio::test]
    async fn latency_delays_the_answer() {
        let behaviour = Behaviour { latency: Duration::from_millis(120), ..Behaviour::default() };
        let mock = start(MockConfig { behaviour, ..MockConfig::default() }).await;
        let got = post(&mock, "/v1/chat/completions", &[], CHAT).await;
        assert!(got.head_after >= Duration::from_millis(120), "{:?}", got.head_after);
        let got = post(&mock, "/v1/chat/completions", &[(header::LATENCY_MS, "0")], CHAT).await;
        assert!(got.head_after < Duration::from_millis(100), "{:?}", got.head_after);
        let got = post(&mock, "/v1/messages", &[(header::LATENCY_MS, "150")], CHAT).await;
        assert!(got.head_after >= Duration::from_millis(150), "{:?}", got.head_after);
    }

    #[tokio::test]
    async fn hang_never_answers_until_the_mock_is_dropped() {
        let mock = open_mock().await;
        let addr = mock.addr();
        let hanging = post(&mock, "/v1/chat/completions", &[(header::HANG, "1")], CHAT);
        assert!(tokio::time::timeout(Duration::from_millis(200), hanging).await.is_err());
        assert_eq!(mock.stats().total(), 1, "the hanging call was received");

        // A hanging call in flight, then the mock goes away: the call fails at once.
        let hanging = tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(connection);
            let request = http::Request::post("/v1/chat/completions")
                .header("host", "mock")
                .header(header::HANG, "1")
                .body(http_body_util::Full::new(Bytes::from_static(CHAT.as_bytes())))
                .unwrap();
            sender.send_request(request).await
        });
        while mock.stats().total() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let dropped_at = Instant::now();
        drop(mock);
        let outcome = tokio::time::timeout(Duration::from_secs(5), hanging).await.unwrap().unwrap();
        assert!(outcome.is_err(), "the connection was cut");
        assert!(dropped_at.elapsed() < Duration::from_secs(1));
        // And the port is closed.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn an_injected_status_comes_after_the_key_check() {
        let mock = start(MockConfig { api_key: Some("k".into()), ..MockConfig::default() }).await;
        let got = post(&mock, "/v1/chat/completions", &[(header::STATUS, "503")], CHAT).await;
        assert_eq!(got.status, StatusCode::UNAUTHORIZED);
        let got =
            post(&mock, "/v1/chat/completions", &[("authorization", "Bearer k"), (header::STATUS, "503")], CHAT).await;
        assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn a_configured_status_fails_every_call_unless_a_header_clears_it() {
        let behaviour = Behaviour { status: Some(StatusCode::BAD_GATEWAY), ..Behaviour::default() };
        let mock = start(MockConfig { behaviour, ..MockConfig::default() }).await;
        assert_eq!(post(&mock, "/v1/chat/completions", &[], CHAT).await.status, StatusCode::BAD_GATEWAY);
        assert_eq!(post(&mock, "/v1/chat/completions", &[(header::STATUS, "200")], CHAT).await.status, 200);
    }

    #[tokio::test]
    async fn a_bad_knob_is_refused_in_the_dialect_shape() {
        let mock = open_mock().await;
        let got = post(&mock, "/v1/messages", &[("x-mock-lateny-ms", "5")], CHAT).await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST);
        assert_eq!(got.json()["error"]["type"], "invalid_request_error");
        assert!(got.json()["error"]["message"].as_str().unwrap().contains("x-mock-lateny-ms"));
    }

    #[tokio::test]
    async fn output_tokens_overrides_the_cap() {
        let mock = open_mock().await;
        let got = post(&mock, "/v1/chat/completions", &[(header::OUTPUT_TOKENS, "3")], CHAT).await;
        assert_eq!(got.json()["usage"]["completion_tokens"], 3);
    }

    #[tokio::test]
    async fn many_calls_on_one_connection_and_in_parallel() {
        let mock = open_mock().await;
        let stream = tokio::net::TcpStream::connect(mock.addr()).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        for _ in 0..20 {
            let request = http::Request::post("/v1/chat/completions")
                .header("host", "mock")
                .body(http_body_util::Full::new(Bytes::from_static(CHAT.as_bytes())))
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.status(), 200);
            http_body_util::BodyExt::collect(response.into_body()).await.unwrap();
        }
        let calls: Vec<_> = (0..30).map(|_| post(&mock, "/v1/chat/completions", &[], CHAT)).collect();
        for got in futures::future::join_all(calls).await {
            assert_eq!(got.status, 200);
        }
        assert_eq!(mock.stats().requests("/v1/chat/completions"), 50);
    }
}
