//! The upstream client: a pooled keep-alive HTTP/1 client that rewrites each request for the
//! upstream (its URL, its key) and drops what must not cross the gateway.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use apihub_tower::body::BoxError;
use axum::body::Body;
use http::header::{self, HeaderName};
use http::uri::{PathAndQuery, Uri};
use http::{HeaderMap, HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::Service;

use super::connector::PlainConnector;
use super::idle::IdleTimeout;

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1), the client's credentials,
/// which must never reach the upstream, and `Accept-Encoding`: the billing layer reads usage from
/// the response as it passes, so the upstream must answer uncompressed.
static DROPPED: [HeaderName; DROPPED_COUNT] = [
    header::ACCEPT_ENCODING,
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("x-goog-api-key"),
];

/// At most 16: `scrub` notes the ones present in a `u16`.
const DROPPED_COUNT: usize = 13;
const _: () = assert!(DROPPED_COUNT <= u16::BITS as usize);

/// Upstream settings.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Base URL, e.g. `http://127.0.0.1:8317`.
    pub url: String,
    /// The key the gateway presents upstream.
    pub api_key: Option<String>,
    /// Time to connect.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of a response body.
    pub idle_timeout: Duration,
}

/// Where requests go: an upstream URL's scheme, host and path.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    base_path: String,
    /// The `Host` header for the authority, made once (the client would format it per request).
    host: HeaderValue,
}

impl Target {
    /// Reads a plain `http://` URL (put TLS termination in front of a remote upstream).
    pub(crate) fn parse(url: &str) -> Result<Target, String> {
        let uri: Uri = url.parse().map_err(|e| format!("`{url}`: {e}"))?;
        let scheme = uri.scheme().cloned().ok_or("needs a scheme")?;
        if scheme != http::uri::Scheme::HTTP {
            return Err("must be http:// (terminate TLS in front of a remote upstream)".into());
        }
        let authority = uri.authority().cloned().ok_or("needs a host")?;
        // As the client would write it: the host, and the port unless it is HTTP's own.
        let host = match authority.port_u16() {
            Some(port) if port != 80 => format!("{}:{port}", authority.host()),
            _ => authority.host().to_owned(),
        };
        let host = HeaderValue::from_str(&host).map_err(|e| format!("`{url}`: {e}"))?;
        Ok(Target { scheme, authority, base_path: uri.path().to_owned(), host })
    }

    /// Whether the URL has no path of its own: a request's path and query then go upstream as
    /// they came.
    fn at_root(&self) -> bool {
        self.base_path.trim_end_matches('/').is_empty()
    }

    /// Points `request` at the URL's path followed by `path` (the URL as it is when `path` is
    /// empty) and `query`, and drops hop-by-hop headers and the client's credentials.
    pub(crate) fn point(&self, request: &mut Request<Body>, path: &str, query: Option<&str>) -> Result<(), BoxError> {
        let base = if path.is_empty() { self.base_path.as_str() } else { self.base_path.trim_end_matches('/') };
        let path_and_query = match query {
            Some(query) => format!("{base}{path}?{query}"),
            None => format!("{base}{path}"),
        };
        self.point_at(request, PathAndQuery::try_from(path_and_query)?)
    }

    /// Points `request` at `path_and_query` on the upstream, with its `Host`, and drops
    /// hop-by-hop headers and the client's credentials.
    fn point_at(&self, request: &mut Request<Body>, path_and_query: PathAndQuery) -> Result<(), BoxError> {
        *request.uri_mut() = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()?;
        let headers = request.headers_mut();
        scrub(headers);
        headers.insert(header::HOST, self.host.clone());
        Ok(())
    }
}

/// The pooled client every upstream is reached through.
pub(crate) type UpstreamClient = Client<PlainConnector, Body>;

/// A pooled keep-alive HTTP/1 client, as every upstream uses.
pub(crate) fn pooled_client(connect_timeout: Duration) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_keepalive(Some(Duration::from_secs(60)));
    connector.set_connect_timeout(Some(connect_timeout));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .build(PlainConnector(connector))
}

/// Sends `request` and returns the response with hop-by-hop headers dropped and a body that ends
/// when the upstream stalls for `idle_timeout`.
pub(crate) async fn forward(
    client: &UpstreamClient,
    request: Request<Body>,
    idle_timeout: Duration,
) -> Result<Response<IdleTimeout<Incoming>>, BoxError> {
    let mut response = client.request(request).await?;
    scrub(response.headers_mut());
    Ok(response.map(|body| IdleTimeout::new(body, idle_timeout)))
}

/// Forwards gateway requests to the upstream.
#[derive(Clone)]
pub struct Upstream {
    client: UpstreamClient,
    target: Target,
    api_key: Option<HeaderValue>,
    bearer: Option<HeaderValue>,
    idle_timeout: Duration,
}

impl Upstream {
    /// A client for `config.url` (plain HTTP: put TLS termination in front of a remote upstream).
    pub fn new(config: &UpstreamConfig) -> anyhow::Result<Self> {
        let target = Target::parse(&config.url).map_err(|e| anyhow::anyhow!("UPSTREAM_URL {e}"))?;
        let client = pooled_client(config.connect_timeout);
        let header = |value: String| {
            HeaderValue::from_str(&value).map_err(|_| anyhow::anyhow!("UPSTREAM_API_KEY is not a valid header value"))
        };
        let api_key = config.api_key.clone().map(header).transpose()?;
        let bearer = config.api_key.as_ref().map(|key| header(format!("Bearer {key}"))).transpose()?;
        Ok(Upstream { client, target, api_key, bearer, idle_timeout: config.idle_timeout })
    }

    fn rewrite(&self, request: &mut Request<Body>) -> Result<(), BoxError> {
        let uri = request.uri();
        let has_key_param = uri.query().is_some_and(|q| q.split('&').any(is_key_param));
        match uri.path_and_query() {
            // The usual set-up: the path and query as they came (shared with the request, not
            // copied).
            Some(as_sent) if self.target.at_root() && !has_key_param => {
                let as_sent = as_sent.clone();
                self.target.point_at(request, as_sent)?;
            }
            _ => {
                let path = uri.path().to_owned();
                let query = uri.query().map(strip_key_param).filter(|q| !q.is_empty());
                self.target.point(request, &path, query.as_deref())?;
            }
        }
        if let (Some(key), Some(bearer)) = (&self.api_key, &self.bearer) {
            // Each dialect's own header, and a bearer token, which CLIProxyAPI accepts for all.
            let dialect_header = match request.uri().path() {
                p if p.contains("/v1beta/") => Some("x-goog-api-key"),
                p if p.ends_with("/v1/messages") => Some("x-api-key"),
                _ => None,
            };
            let headers = request.headers_mut();
            if let Some(name) = dialect_header {
                headers.insert(HeaderName::from_static(name), key.clone());
            }
            headers.insert(header::AUTHORIZATION, bearer.clone());
        }
        Ok(())
    }
}

/// Drops hop-by-hop headers (and any named in `Connection`) and the client's credentials.
fn scrub(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    // A message carries a few headers and few of these: each header is compared with the list
    // (cheap), and only those present are looked up again to be removed.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = DROPPED.iter().position(|dropped| dropped == name) {
            present |= 1 << i;
        }
    }
    let found = DROPPED.iter().enumerate().filter(|(i, _)| present & (1 << i) != 0).map(|(_, name)| name);
    for name in found.chain(named.iter()) {
        headers.remove(name);
    }
}

/// Removes a Gemini-style `key=` parameter (the client's key) from a query string.
fn strip_key_param(query: &str) -> String {
    query.split('&').filter(|pair| !is_key_param(pair) && !pair.is_empty()).collect::<Vec<_>>().join("&")
}

/// Whether a query's `pair` is a Gemini-style `key=` parameter.
fn is_key_param(pair: &str) -> bool {
    pair.starts_with("key=")
}

impl Upstream {
    /// Sends `request` upstream, without cloning the client (as [`Service::call`] must).
    pub(crate) async fn send(&self, mut request: Request<Body>) -> Result<Response<IdleTimeout<Incoming>>, BoxError> {
        self.rewrite(&mut request)?;
        forward(&self.client, request, self.idle_timeout).await
    }
}

impl Service<Request<Body>> for Upstream {
    type Response = Response<IdleTimeout<Incoming>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let upstream = self.clone();
        Box::pin(async move { upstream.send(request).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_credentials_and_hop_headers_are_dropped() {
        let upstream = Upstream::new(&UpstreamConfig {
            url: "http://127.0.0.1:8317/base/".into(),
            api_key: Some("up-key".into()),
            connect_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
        })
        .unwrap();
        let mut request = Request::builder()
            .uri("/v1beta/models/gemini-pro:generateContent?alt=sse&key=ahg_client")
            .header("authorization", "Bearer ahg_client")
            .header("x-goog-api-key", "ahg_client")
            .header("connection", "keep-alive, x-custom")
            .header("x-custom", "1")
            .header("x-kept", "1")
            .header("accept-encoding", "gzip, br")
            .header("te", "trailers")
            .header("te", "deflate")
            .header("proxy-authorization", "Basic eDp5")
            .header("keep-alive", "timeout=5")
            .header("upgrade", "websocket")
            .body(Body::empty())
            .unwrap();
        upstream.rewrite(&mut request).unwrap();
        assert_eq!(
            request.uri().to_string(),
            "http://127.0.0.1:8317/base/v1beta/models/gemini-pro:generateContent?alt=sse"
        );
        let headers = request.headers();
        assert_eq!(headers["authorization"], "Bearer up-key");
        assert_eq!(headers["x-goog-api-key"], "up-key");
        assert!(headers.get("x-custom").is_none());
        assert!(headers.get("connection").is_none());
        assert!(headers.get("accept-encoding").is_none(), "usage must be readable: no compression");
        for hop in ["te", "proxy-authorization", "keep-alive", "upgrade"] {
            assert!(headers.get(hop).is_none(), "{hop} is dropped, every value of it");
        }
        assert_eq!(headers["x-kept"], "1");
    }

    #[test]
    fn at_the_root_the_path_and_query_go_as_sent_less_the_clients_key() {
        let upstream = Upstream::new(&UpstreamConfig {
            url: "http://127.0.0.1:8317/".into(),
            api_key: None,
            connect_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
        })
        .unwrap();
        let rewritten = |uri: &str| {
            let mut request =
                Request::builder().uri(uri).header("host", "gateway.example").body(Body::empty()).unwrap();
            upstream.rewrite(&mut request).unwrap();
            (request.uri().to_string(), request.headers()["host"].clone())
        };
        let (uri, host) = rewritten("/v1/chat/completions?x=1&y=2");
        assert_eq!(uri, "http://127.0.0.1:8317/v1/chat/completions?x=1&y=2");
        assert_eq!(host, "127.0.0.1:8317", "the upstream's host and port");
        let host = |url: &str| Target::parse(url).unwrap().host;
        assert_eq!(
            host("http://user:secret@upstream.internal:80/base"),
            "upstream.internal",
            "no credentials, no port 80"
        );
        assert_eq!(host("http://[::1]:8080"), "[::1]:8080");
        let (uri, _) = rewritten("/v1beta/models/m:generateContent?key=ahg_client&alt=sse");
        assert_eq!(uri, "http://127.0.0.1:8317/v1beta/models/m:generateContent?alt=sse");
        let (uri, _) = rewritten("/v1beta/models/m:generateContent?key=ahg_client");
        assert_eq!(uri, "http://127.0.0.1:8317/v1beta/models/m:generateContent");
    }

    #[test]
    fn only_plain_http_upstreams() {
        let config = |url: &str| UpstreamConfig {
            url: url.into(),
            api_key: None,
            connect_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
        };
        assert!(Upstream::new(&config("https://api.example.com")).is_err());
        assert!(Upstream::new(&config("not a url")).is_err());
    }
}
