//! A route's upstream: the request rewritten to the route's URL, the client's credentials and
//! hop-by-hop headers dropped, the route's own key added, a timeout to the response headers.

use std::time::Duration;

use apihub_core::route::RouteSpec;
use apihub_tower::body::{BoxError, ForwardedBody};
use axum::body::Body;
use http::header::{self, HeaderName};
use http::{HeaderValue, Request, Response};
use tower::Service;

use crate::proxy::UpstreamBody;
use crate::proxy::rename::Renamed;
use crate::proxy::upstream::{Target, forward};

/// The pooled client every route shares.
pub(crate) type RouteClient = crate::proxy::upstream::UpstreamClient;

/// Forwards one route's calls.
#[derive(Clone)]
pub(crate) struct RouteUpstream {
    client: RouteClient,
    target: Target,
    /// For a prefix route, the public prefix the rest of the path follows.
    prefix: Option<String>,
    key: Option<(HeaderName, HeaderValue)>,
    timeout: Duration,
    idle_timeout: Duration,
}

impl RouteUpstream {
    /// The upstream of `spec`; `Err` names what in the stored route cannot be used.
    pub(crate) fn new(client: RouteClient, spec: &RouteSpec, idle_timeout: Duration) -> Result<Self, String> {
        let target = Target::parse(&spec.upstream_url).map_err(|e| format!("upstream_url {e}"))?;
        let key = match &spec.upstream_key {
            None => None,
            Some(key) => {
                let name = HeaderName::from_bytes(spec.upstream_key_header.to_ascii_lowercase().as_bytes())
                    .map_err(|_| "upstream_key_header is not a header name".to_owned())?;
                let text = if name == header::AUTHORIZATION { format!("Bearer {key}") } else { key.clone() };
                let value =
                    HeaderValue::from_str(&text).map_err(|_| "upstream_key is not a header value".to_owned())?;
                Some((name, value))
            }
        };
        Ok(RouteUpstream {
            client,
            target,
            prefix: spec.prefix.then(|| spec.path.trim_end_matches('/').to_owned()),
            key,
            timeout: Duration::from_secs(u64::from(spec.timeout_secs)),
            idle_timeout,
        })
    }

    fn rewrite(&self, request: &mut Request<Body>) -> Result<(), BoxError> {
        let rest = match &self.prefix {
            Some(prefix) => request.uri().path().strip_prefix(prefix.as_str()).unwrap_or_default(),
            None => "",
        };
        let (rest, query) = (rest.to_owned(), request.uri().query().map(str::to_owned));
        self.target.point(request, &rest, query.as_deref())?;
        if let Some((name, value)) = &self.key {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        Ok(())
    }
}

impl RouteUpstream {
    /// The service the route's gateway stack forwards through.
    pub(crate) fn into_service(
        self,
    ) -> impl Service<Request<ForwardedBody>, Response = Response<UpstreamBody>, Error = BoxError, Future: Send>
    + Clone
    + Send
    + Sync {
        tower::service_fn(move |request: Request<ForwardedBody>| {
            let mut request = request.map(|body| Body::from(body.into_bytes()));
            let rewritten = self.rewrite(&mut request);
            let (client, timeout, idle_timeout) = (self.client.clone(), self.timeout, self.idle_timeout);
            async move {
                rewritten?;
                match tokio::time::timeout(timeout, forward(&client, request, idle_timeout)).await {
                    Ok(response) => response.map(|r| r.map(Renamed::plain)),
                    // The billing layer answers an `Elapsed` with a 504.
                    Err(_) => Err(Box::new(tower::timeout::error::Elapsed::new()) as BoxError),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::upstream::pooled_client;

    fn upstream(spec: &RouteSpec) -> RouteUpstream {
        RouteUpstream::new(pooled_client(Duration::from_secs(1)), spec, Duration::from_secs(1)).unwrap()
    }

    #[test]
    fn the_client_key_is_replaced_by_the_route_key() {
        let mut spec = RouteSpec::new("images", "/api/generate", "http://127.0.0.1:7860/sdapi/txt2img");
        spec.upstream_key = Some("up-secret".into());
        let mut request = Request::post("/api/generate?x=1")
            .header("authorization", "Bearer felix-0123456789abcdef")
            .header("x-api-key", "felix-0123456789abcdef")
            .header("x-kept", "1")
            .body(Body::empty())
            .unwrap();
        upstream(&spec).rewrite(&mut request).unwrap();
        assert_eq!(request.uri().to_string(), "http://127.0.0.1:7860/sdapi/txt2img?x=1");
        assert_eq!(request.headers()["authorization"], "Bearer up-secret");
        assert!(request.headers().get("x-api-key").is_none());
        assert_eq!(request.headers()["x-kept"], "1");
    }

    #[test]
    fn a_prefix_route_appends_the_rest_of_the_path() {
        let mut spec = RouteSpec::new("audio", "/v1/audio/", "http://127.0.0.1:9000/audio/");
        spec.prefix = true;
        spec.upstream_key = Some("k".into());
        spec.upstream_key_header = "x-api-key".into();
        let mut request = Request::post("/v1/audio/speech").body(Body::empty()).unwrap();
        upstream(&spec).rewrite(&mut request).unwrap();
        assert_eq!(request.uri().to_string(), "http://127.0.0.1:9000/audio/speech");
        assert_eq!(request.headers()["x-api-key"], "k");
        assert!(request.headers().get("authorization").is_none());
    }
}
