//! The gateway's own errors in each vendor's shape, for what the server answers outside the
//! metered stack (the model list, unknown paths, methods): the rendering is the library's
//! ([`apihub_tower::dialect`], which also answers the stack's own refusals), so every official SDK
//! raises its own exception class with the message; upstream errors pass through untouched.

use apihub_core::usage::{Dialect, Endpoint};
use apihub_tower::body::GatewayError;
use axum::response::Response;

/// The dialect a path speaks, for its errors: its endpoint's, or by prefix for paths that are not
/// metered endpoints (the model list, unknown paths).
pub fn of_path(path: &str) -> Dialect {
    of(path, Endpoint::from_path(path))
}

/// [`of_path`], for a caller that has already looked the endpoint up.
pub fn of(path: &str, endpoint: Option<Endpoint>) -> Dialect {
    apihub_tower::dialect::of(path, endpoint)
}

/// `error`, answered in `dialect`'s shape (the library's rendering, as every refusal of the
/// metered stack already is).
pub fn render(dialect: Dialect, error: &GatewayError) -> Response {
    apihub_tower::dialect::render(dialect, error).map(axum::body::Body::new)
}

/// `response` with a gateway error in it re-rendered for `dialect`, keeping its other headers
/// (`Retry-After`, the rate-limit headers); any other response as it is.
pub fn localize(dialect: Dialect, response: Response) -> Response {
    apihub_tower::dialect::localize(dialect, response, axum::body::Body::new)
}
