//! `GET /v1/models`: the upstream's model list, filtered to what the key may use and what has a
//! price on this gateway; `GET /v1/models/{model}` (and Gemini's `/v1beta/models/{model}`): one
//! entry of that list, or the vendor's 404 (`HEAD` too: the server sends the head alone).

use std::convert::Infallible;
use std::sync::Arc;

use apihub_tower::admission::AdmissionLayer;
use apihub_tower::body::{ForwardedBody, GatewayError};
use apihub_tower::context::AuthenticatedKey;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt};

use super::UpstreamService;
use super::prices::PriceCache;
use crate::state::AppState;

/// The authenticated models endpoint, boxed.
pub(super) type ModelsService = BoxCloneSyncService<Request<Body>, Response, Infallible>;

/// The authenticated models endpoint.
pub(super) fn service(state: &AppState) -> ModelsService {
    let upstream = state.upstream.clone();
    let prices = state.prices.clone();
    let handler = tower::service_fn(move |request: Request<ForwardedBody>| {
        let upstream = upstream.clone();
        let prices = prices.clone();
        async move { Ok::<_, Infallible>(list(upstream, prices, request).await) }
    });
    // Key authentication only: listing models is not rate limited or billed.
    let authenticated = AdmissionLayer::new(state.key_cache.clone()).layer(handler);
    BoxCloneSyncService::new(ServiceExt::<Request<Body>>::map_response(authenticated, IntoResponse::into_response))
}

async fn list(upstream: UpstreamService, prices: Arc<PriceCache>, request: Request<ForwardedBody>) -> Response {
    let Some(identity) = request.extensions().get::<AuthenticatedKey>().cloned() else {
        return GatewayError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            "missing API key",
        )
        .into_response()
        .into_response();
    };
    let bad_gateway = || {
        GatewayError::new(
            StatusCode::BAD_GATEWAY,
            "api_error",
            "upstream_unavailable",
            "the upstream model list is unavailable",
        )
        .into_response()
        .into_response()
    };
    let (mut parts, body) = request.into_parts();
    // One model: ask for the whole list (the same filtering applies) and pick it out.
    let path = parts.uri.path().to_owned();
    let (list_path, wanted) = match path.split_once("/models/") {
        Some((prefix, model)) => (format!("{prefix}/models"), Some(model.trim_start_matches("models/").to_owned())),
        None => (path.clone(), None),
    };
    if wanted.is_some() {
        let Ok(uri) = list_path.parse() else { return bad_gateway() };
        parts.uri = uri;
        parts.method = http::Method::GET;
    }
    let forwarded = Request::from_parts(parts, body);
    let Ok(response) = upstream.oneshot(forwarded).await else { return bad_gateway() };
    if !response.status().is_success() {
        return bad_gateway();
    }
    let Ok(bytes) = response.into_body().collect().await.map(|b| b.to_bytes()) else { return bad_gateway() };
    let Ok(mut list) = serde_json::from_slice::<Value>(&bytes) else { return bad_gateway() };
    let priced = prices.snapshot();
    let allowed = |id: &str| priced.contains_key(id) && identity.key.policy.allows_model(id);
    // OpenAI lists `data[].id`; Gemini lists `models[].name` as `models/<id>`.
    if let Some(data) = list.get_mut("data").and_then(Value::as_array_mut) {
        data.retain(|m| m.get("id").and_then(Value::as_str).is_some_and(allowed));
    }
    if let Some(models) = list.get_mut("models").and_then(Value::as_array_mut) {
        models.retain(|m| {
            m.get("name").and_then(Value::as_str).map(|n| n.trim_start_matches("models/")).is_some_and(allowed)
        });
    }
    match wanted {
        None => axum::Json(list).into_response(),
        Some(model) => match pick(&list, &model) {
            Some(entry) => axum::Json(entry).into_response(),
            None => GatewayError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
                format!("The model `{model}` does not exist or you do not have access to it."),
            )
            .into_response()
            .into_response(),
        },
    }
}

/// The entry for `model` in a filtered list, in either vendor's shape.
fn pick(list: &Value, model: &str) -> Option<Value> {
    let openai = list.get("data").and_then(Value::as_array).into_iter().flatten();
    let gemini = list.get("models").and_then(Value::as_array).into_iter().flatten();
    openai
        .filter(|m| m.get("id").and_then(Value::as_str) == Some(model))
        .chain(
            gemini.filter(|m| {
                m.get("name").and_then(Value::as_str).map(|n| n.trim_start_matches("models/")) == Some(model)
            }),
        )
        .next()
        .cloned()
}
