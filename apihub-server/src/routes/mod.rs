//! The HTTP surface: every route, its OpenAPI document and the middleware around them.

pub mod auth;
pub mod budgets;
pub mod channels;
pub mod dashboard;
pub mod health;
pub mod keys;
pub mod keys_admin;
pub mod keys_import;
pub mod metered_routes;
pub mod metrics;
pub mod openapi;
pub mod prices;
pub mod recharge;
pub mod redemption;
pub mod requests;
mod service;
mod split;
pub mod stats;
pub mod tokens;
pub mod tokens_admin;
pub mod users_admin;
pub mod views;

pub use service::App;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use tower::ServiceBuilder;
use tower::util::MapResponseLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "APIHub", description = "API-key gateway for LLM APIs: accounts, keys, credit and administration."),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Registration, login and the current user"),
        (name = "keys", description = "The caller's API keys"),
        (name = "tokens", description = "The caller's credit"),
        (name = "admin", description = "Administration: users, keys and credit"),
        (name = "stats", description = "Usage statistics"),
        (name = "prices", description = "Model prices"),
        (name = "routes", description = "Metered routes: any HTTP API behind the gateway's keys and billing"),
        (name = "channels", description = "Upstream channels: where LLM requests go, with priorities, weights, aliases and failover"),
        (name = "health", description = "Probes"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// Every documented route, with its OpenAPI document.
fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::me))
        .routes(routes!(auth::change_password))
        .routes(routes!(keys::create_key, keys::list_keys))
        .routes(routes!(keys::create_batch))
        .routes(routes!(keys::get_batch))
        .routes(routes!(keys::get_key, keys::update_key, keys::delete_key))
        .routes(routes!(keys::deactivate_key))
        .routes(routes!(keys::reset_usage))
        .routes(routes!(budgets::key_budgets, budgets::set_key_budgets))
        .routes(routes!(budgets::my_budgets))
        .routes(routes!(budgets::user_budgets, budgets::set_user_budgets))
        .routes(routes!(keys_admin::all_keys))
        .routes(routes!(keys_admin::user_keys, keys_admin::create_user_key))
        .routes(routes!(keys_admin::create_user_batch))
        .routes(routes!(keys_import::import_keys))
        .routes(routes!(keys_import::import_keys_csv))
        .routes(routes!(tokens::balance))
        .routes(routes!(tokens::transactions))
        .routes(routes!(tokens::check))
        .routes(routes!(tokens_admin::user_balance))
        .routes(routes!(tokens_admin::recharge))
        .routes(routes!(tokens_admin::consume))
        .routes(routes!(tokens_admin::refund))
        .routes(routes!(tokens_admin::adjust))
        .routes(routes!(tokens_admin::set_discount))
        .routes(routes!(redemption::redeem))
        .routes(routes!(redemption::create_codes, redemption::list_codes))
        .routes(routes!(redemption::disable_code))
        .routes(routes!(recharge::options))
        .routes(routes!(recharge::create_order))
        .routes(routes!(recharge::my_orders))
        .routes(routes!(recharge::my_order))
        .routes(routes!(recharge::callback_get, recharge::callback_post))
        .routes(routes!(recharge::admin_orders))
        .routes(routes!(recharge::complete_order))
        .routes(routes!(prices::list_prices))
        .routes(routes!(prices::set_price, prices::delete_price))
        .routes(routes!(channels::list_channels, channels::create_channel))
        .routes(routes!(channels::get_channel, channels::update_channel, channels::delete_channel))
        .routes(routes!(metered_routes::list_routes, metered_routes::create_route))
        .routes(routes!(metered_routes::get_route, metered_routes::update_route, metered_routes::delete_route))
        .routes(routes!(requests::my_requests))
        .routes(routes!(requests::export_my_requests))
        .routes(routes!(requests::admin_requests))
        .routes(routes!(requests::export_admin_requests))
        .routes(routes!(stats::my_stats))
        .routes(routes!(stats::key_stats))
        .routes(routes!(stats::admin_overview))
        .routes(routes!(stats::admin_margins))
        .routes(routes!(stats::admin_user_stats))
        .routes(routes!(users_admin::list_users))
        .routes(routes!(users_admin::get_user))
        .routes(routes!(users_admin::disable_user))
        .routes(routes!(users_admin::enable_user))
}

/// The OpenAPI document (also served at `/api/openapi.json` and printed by `apihub openapi`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented_api().1
}

/// The routes and their document, completed with the responses every operation can give.
fn documented_api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (api, mut doc) = api_router().split_for_parts();
    openapi::FrameworkResponses.modify(&mut doc);
    (api, doc)
}

/// `X-Request-Id` for a request that has none: a version 7 UUID from the thread's generator
/// (tower-http's `MakeRequestUuid` asks the kernel for each one, a system call per request).
#[derive(Debug, Clone, Copy)]
pub struct TimeOrderedIds;

impl MakeRequestId for TimeOrderedIds {
    fn make_request_id<B>(&mut self, _request: &http::Request<B>) -> Option<RequestId> {
        let mut text = uuid::Uuid::encode_buffer();
        let id = apihub_tower::context::time_ordered_uuid().hyphenated().encode_lower(&mut text);
        http::HeaderValue::from_str(id).ok().map(RequestId::new)
    }
}

/// The whole application, shared by `main` and the tests.
pub fn build_app(state: AppState) -> service::App {
    let max_body = state.config.max_body_bytes;
    let route_table = state.route_table.clone();
    let dashboard = dashboard::service(state.config.ui_dir.as_deref());
    // Every /v1 response is counted by status class, refusals included; forwarded requests are
    // counted again by model when their usage record is made.
    let metrics = state.metrics.clone();
    let proxy_service = crate::proxy::ProxyService::new(&state);
    // With CORS configured every proxied response needs its layer: then all go through the router.
    let direct = state.config.cors_allow_origins.is_empty().then(|| split::Direct {
        proxy: proxy_service.clone(),
        routes: state.route_table.clone(),
        metrics: state.metrics.clone(),
    });
    let proxy = crate::proxy::router(&state, proxy_service).layer(MapResponseLayer::new(
        move |response: axum::response::Response| {
            metrics.count_response(response.status());
            response
        },
    ));
    // For Prometheus, not for API clients: left out of the OpenAPI document (whose generated
    // client the dashboard is built on).
    let scrape = Router::new().route("/metrics", axum::routing::get(metrics::metrics)).with_state(state.clone());
    let (api, mut doc) = documented_api();
    doc.info.title.clone_from(&state.config.app_name);
    // The account API: JSON bodies of at most MAX_BODY_BYTES (413 via our extractor's rejection)
    // and a minute per request. The proxy has its own limits: LLM calls run long and carry more.
    let api = api.with_state(state).merge(SwaggerUi::new("/docs").url("/api/openapi.json", doc)).layer(
        ServiceBuilder::new()
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                http::StatusCode::REQUEST_TIMEOUT,
                Duration::from_secs(60),
            ))
            .layer(DefaultBodyLimit::max(max_body)),
    );

    let not_found = || async { ApiError::NotFound("no such route".into()).into_response() };
    let app = Router::new()
        .merge(proxy)
        .merge(scrape)
        .merge(api)
        // Unknown API paths stay JSON 404s even when the dashboard answers everything else.
        .route("/api/{*rest}", axum::routing::any(not_found))
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed.into_response() });
    let app = match dashboard {
        Some(files) => app.fallback_service(files),
        None => app.fallback(not_found),
    };

    // Metered routes first: a request to a route's path is served by that route (the routes API
    // never lets a route take one of the gateway's own paths); any other goes on to the app.
    let app = app.layer(axum::middleware::from_fn_with_state(route_table, crate::metered::dispatch));

    // Outermost first: each request gets an id (kept on the response) before it is traced, and a
    // panic anywhere becomes a JSON 500 inside the trace. Inside them, the proxy's requests skip
    // the router (`split`).
    let layered = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(TimeOrderedIds))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(service::Panicked))
        .service(split::Split { router: app, direct });
    service::IntoAxum(layered)
}
