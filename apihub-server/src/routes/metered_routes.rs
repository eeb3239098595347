//! `/api/admin/routes`: metered routes, for administrators (see [`crate::metered`]). Every change
//! reloads the routes on this node and, through Redis, on every other.

use std::collections::HashSet;
use std::sync::OnceLock;

use apihub_core::Money;
use apihub_core::route::{METHODS, MeteredRoute, RouteSpec};
use apihub_core::store::StoreError;
use apihub_core::usage::Endpoint;
use axum::extract::State;
use chrono::{DateTime, Utc};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::schema::{Array, ArrayBuilder, ObjectBuilder, SchemaType, Type};

use super::views::double_option;
use crate::auth::AdminUser;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path};
use crate::state::AppState;

/// A metered route as the API shows it: never the upstream key, only its last four characters.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteView {
    pub id: i64,
    pub name: String,
    /// The public path (a prefix when `prefix`, ending with `/`).
    pub path: String,
    pub prefix: bool,
    pub methods: Vec<String>,
    pub upstream_url: String,
    /// `…` and the upstream key's last four characters (only `…` for a key under 12 characters);
    /// null when the route sends none.
    pub upstream_key_preview: Option<String>,
    pub upstream_key_header: String,
    /// Credits charged per successful call.
    #[schema(value_type = f64, example = 0.01)]
    pub price_per_call: Money,
    /// Credits charged per unit (read at `units_pointer`).
    #[schema(value_type = Option<f64>, example = 0.05)]
    pub price_per_unit: Option<Money>,
    pub units_pointer: Option<String>,
    pub max_units: u64,
    pub key_field: Option<String>,
    pub model_pointer: Option<String>,
    /// Statuses billed as success; empty = any 2xx.
    pub success_statuses: Vec<u16>,
    pub timeout_secs: u32,
    pub allow_stream: bool,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<MeteredRoute> for RouteView {
    fn from(route: MeteredRoute) -> Self {
        let spec = route.spec;
        let preview = spec.upstream_key.as_deref().map(apihub_core::channel::key_preview);
        RouteView {
            id: route.id,
            name: spec.name,
            path: spec.path,
            prefix: spec.prefix,
            methods: spec.methods,
            upstream_url: spec.upstream_url,
            upstream_key_preview: preview,
            upstream_key_header: spec.upstream_key_header,
            price_per_call: spec.price_per_call,
            price_per_unit: spec.price_per_unit,
            units_pointer: spec.units_pointer,
            max_units: spec.max_units,
            key_field: spec.key_field,
            model_pointer: spec.model_pointer,
            success_statuses: spec.success_statuses,
            timeout_secs: spec.timeout_secs,
            allow_stream: spec.allow_stream,
            enabled: spec.enabled,
            created_at: route.created_at,
            updated_at: route.updated_at,
        }
    }
}

/// Body of `POST /api/admin/routes` and `PUT /api/admin/routes/{route_id}` (a whole definition;
/// on update an absent `upstream_key` keeps the stored one, `null` removes it).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteRequest {
    /// Unique, 1 to 64 characters.
    #[schema(example = "image-generation")]
    pub name: String,
    /// The public path, e.g. `/api/generate`; end it with `/` for a prefix route.
    #[schema(example = "/api/generate")]
    pub path: String,
    /// Methods accepted, upper case, none twice; default `["POST"]`.
    #[schema(schema_with = methods_schema)]
    pub methods: Option<Vec<String>>,
    /// Plain http:// URL: the whole target of an exact route, the base of a prefix route.
    #[schema(example = "http://127.0.0.1:7860/api/generate")]
    pub upstream_url: String,
    /// The key sent upstream (never shown again).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub upstream_key: Option<Option<String>>,
    /// The header it goes in; default `authorization` (sent as `Bearer <key>`).
    pub upstream_key_header: Option<String>,
    /// Credits per successful call (required; 0 is allowed, a missing price is not).
    #[schema(value_type = f64, minimum = 0, example = 0.01)]
    pub price_per_call: Money,
    /// Credits per unit, with `units_pointer`.
    #[schema(value_type = Option<f64>, minimum = 0)]
    pub price_per_unit: Option<Money>,
    /// JSON pointer to the units of a call, e.g. `/batch_size` (1 when the body does not set it).
    pub units_pointer: Option<String>,
    /// Most units one call may ask for, 1 to 10000; default 100.
    #[schema(minimum = 1, maximum = 10000)]
    pub max_units: Option<u64>,
    /// A top-level JSON body field carrying the client's key (removed before forwarding).
    #[schema(example = "apiKey")]
    pub key_field: Option<String>,
    /// JSON pointer to the model, checked against the key's allow-list.
    pub model_pointer: Option<String>,
    /// Statuses billed as success (200 to 399, at most 20); default any 2xx.
    #[schema(schema_with = success_statuses_schema)]
    pub success_statuses: Option<Vec<u16>>,
    /// Seconds to the upstream's response headers, 1 to 3600; default 60.
    #[schema(minimum = 1, maximum = 3600)]
    pub timeout_secs: Option<u32>,
    /// Whether a request may ask for a stream; default false.
    pub allow_stream: Option<bool>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// `methods` in the OpenAPI document: what [`RouteSpec::validate`] accepts.
fn methods_schema() -> Array {
    let method = ObjectBuilder::new().schema_type(Type::String).enum_values(Some(METHODS));
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(method)
        .min_items(Some(1))
        .max_items(Some(METHODS.len()))
        .unique_items(true)
        .build()
}

/// `success_statuses` in the OpenAPI document: what [`RouteSpec::validate`] accepts.
fn success_statuses_schema() -> Array {
    let status = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(200)).maximum(Some(399));
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(status)
        .max_items(Some(20))
        .build()
}

impl RouteRequest {
    /// The definition, checked; `current_key` is kept when the request names no upstream key.
    fn into_spec(self, current_key: Option<String>) -> Result<RouteSpec, ApiError> {
        let defaults = RouteSpec::new(&self.name, &self.path, &self.upstream_url);
        let spec = RouteSpec {
            prefix: self.path.ends_with('/'),
            methods: self.methods.unwrap_or(defaults.methods),
            upstream_key: self.upstream_key.unwrap_or(current_key),
            upstream_key_header: self.upstream_key_header.unwrap_or(defaults.upstream_key_header),
            price_per_call: self.price_per_call,
            price_per_unit: self.price_per_unit,
            units_pointer: self.units_pointer,
            max_units: self.max_units.unwrap_or(defaults.max_units),
            key_field: self.key_field,
            model_pointer: self.model_pointer,
            success_statuses: self.success_statuses.unwrap_or_default(),
            timeout_secs: self.timeout_secs.unwrap_or(defaults.timeout_secs),
            allow_stream: self.allow_stream.unwrap_or(false),
            enabled: self.enabled.unwrap_or(true),
            ..defaults
        };
        let mut methods = HashSet::new();
        if !spec.methods.iter().all(|m| methods.insert(m.clone())) {
            return Err(ApiError::Validation("methods must not repeat".into()));
        }
        spec.validate().map_err(|e| ApiError::Validation(e.to_string()))?;
        if let Some(taken) = gateway_path(&spec) {
            return Err(ApiError::Validation(format!("path would take `{taken}`, which the gateway serves itself")));
        }
        Ok(spec)
    }
}

/// A path of the gateway's own that `spec` would take over, if any: its documented API (by
/// group: `/api/keys/…`), the LLM endpoints and model lists, the docs and the probes.
fn gateway_path(spec: &RouteSpec) -> Option<String> {
    static OWN: OnceLock<Vec<String>> = OnceLock::new();
    let own = OWN.get_or_init(|| {
        let mut own: Vec<String> = super::openapi().paths.paths.keys().cloned().collect();
        own.extend(
            [
                "/v1/chat/completions",
                "/v1/completions",
                "/v1/embeddings",
                "/v1/responses",
                "/v1/images/generations",
                "/v1/messages",
                "/v1/models",
                "/v1/models/x",
                "/v1beta/models/x:generateContent",
                "/docs",
                "/metrics",
                "/api/openapi.json",
            ]
            .map(str::to_owned),
        );
        own
    });
    let group = |path: &str| -> Option<String> {
        let rest = path.strip_prefix("/api/")?;
        Some(format!("/api/{}", rest.split('/').next().unwrap_or_default()))
    };
    if spec.path.starts_with("/v1beta") || spec.path.starts_with("/v1/models") || spec.path.starts_with("/docs") {
        return Some(spec.path.clone());
    }
    if Endpoint::from_path(&spec.path).is_some() {
        return Some(spec.path.clone());
    }
    own.iter()
        .find(|path| {
            spec.matches(path)
                || group(&spec.path).is_some_and(|g| group(path).is_some_and(|own| own == g) || g == "/api/")
        })
        .cloned()
}

fn stored(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict(_) => ApiError::Conflict("a route with this name or path exists".into()),
        StoreError::NotFound => ApiError::not_found("route"),
        other => other.into(),
    }
}

/// Every metered route.
#[utoipa::path(get, path = "/api/admin/routes", tag = "routes", security(("bearer" = [])),
    responses((status = 200, body = [RouteView]), (status = 403, body = ErrorBody)))]
pub async fn list_routes(State(state): State<AppState>, _admin: AdminUser) -> Result<Json<Vec<RouteView>>, ApiError> {
    Ok(Json(state.routes.routes().await?.into_iter().map(Into::into).collect()))
}

/// Create a metered route; it is served at once on every node.
#[utoipa::path(post, path = "/api/admin/routes", tag = "routes", security(("bearer" = [])), request_body = RouteRequest,
    responses((status = 201, body = RouteView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_route(
    State(state): State<AppState>,
    _admin: AdminUser,
    Json(req): Json<RouteRequest>,
) -> Result<(StatusCode, Json<RouteView>), ApiError> {
    let spec = req.into_spec(None)?;
    let route = state.routes.create_route(&spec).await.map_err(stored)?;
    state.invalidator.routes().await?;
    Ok((StatusCode::CREATED, Json(route.into())))
}

/// One metered route.
#[utoipa::path(get, path = "/api/admin/routes/{route_id}", tag = "routes", security(("bearer" = [])), params(("route_id" = i64, Path)),
    responses((status = 200, body = RouteView), (status = 404, body = ErrorBody)))]
pub async fn get_route(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(route_id): Path<i64>,
) -> Result<Json<RouteView>, ApiError> {
    let route = state.routes.route(route_id).await?.ok_or_else(|| ApiError::not_found("route"))?;
    Ok(Json(route.into()))
}

/// Replace a metered route's definition (an absent `upstream_key` keeps the stored one).
#[utoipa::path(put, path = "/api/admin/routes/{route_id}", tag = "routes", security(("bearer" = [])), params(("route_id" = i64, Path)),
    request_body = RouteRequest,
    responses((status = 200, body = RouteView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_route(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(route_id): Path<i64>,
    Json(req): Json<RouteRequest>,
) -> Result<Json<RouteView>, ApiError> {
    let current = state.routes.route(route_id).await?.ok_or_else(|| ApiError::not_found("route"))?;
    let spec = req.into_spec(current.spec.upstream_key)?;
    let route = state.routes.update_route(route_id, &spec).await.map_err(stored)?;
    state.invalidator.routes().await?;
    Ok(Json(route.into()))
}

/// Remove a metered route: its path answers 404 from then on (its usage stays in the statistics).
#[utoipa::path(delete, path = "/api/admin/routes/{route_id}", tag = "routes", security(("bearer" = [])), params(("route_id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_route(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(route_id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    state.routes.delete_route(route_id).await.map_err(stored)?;
    state.invalidator.routes().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(upstream_key: Option<&str>) -> RouteView {
        let mut spec = RouteSpec::new("images", "/api/generate", "http://127.0.0.1:1/generate");
        spec.upstream_key = upstream_key.map(str::to_owned);
        let now = Utc::now();
        MeteredRoute { id: 1, spec, created_at: now, updated_at: now }.into()
    }

    #[test]
    fn the_upstream_key_shows_only_a_preview_and_a_short_key_none_of_itself() {
        assert_eq!(view(Some("sk-image-upstream-0123")).upstream_key_preview.as_deref(), Some("…0123"));
        assert_eq!(view(Some("short-key")).upstream_key_preview.as_deref(), Some("…"));
        assert_eq!(view(None).upstream_key_preview, None);
    }

    #[test]
    fn a_route_may_not_take_the_gateways_own_paths() {
        let taken = |path: &str| {
            gateway_path(&RouteSpec { prefix: path.ends_with('/'), ..RouteSpec::new("r", path, "http://h") })
        };
        for path in [
            "/api/keys/import",
            "/api/admin/x",
            "/api/",
            "/v1/chat/completions",
            "/v1/",
            "/v1/models/x",
            "/v1beta/x",
            "/docs",
            "/metrics",
            "/healthz",
        ] {
            assert!(taken(path).is_some(), "{path}");
        }
        for path in ["/api/generate", "/v1/audio/speech", "/v1/audio/", "/v1/rerank", "/render"] {
            assert_eq!(taken(path), None, "{path}");
        }
    }
}
