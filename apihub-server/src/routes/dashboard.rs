//! The dashboard: embedded in the binary at build time (see `build.rs`), or read from `UI_DIR`.
//!
//! Hashed assets (`/assets/*`) are cached for a year (their names change with their content);
//! `index.html`, and every other path (deep links such as `/keys` get `index.html`, so a reload
//! works), must be revalidated. Embedded files are sent gzipped to clients that accept it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::OnceLock;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use http::{HeaderValue, Method, Request, StatusCode};
use tower::util::BoxCloneSyncService;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/dashboard.rs"));
}

/// Serves the dashboard, whichever way it came.
pub type DashboardService = BoxCloneSyncService<Request<Body>, Response, Infallible>;

/// Whether this binary carries a built dashboard.
pub fn is_embedded() -> bool {
    !embedded::FILES.is_empty()
}

/// The dashboard from `dir` when given (`UI_DIR`), else the embedded one; `None` when neither
/// exists (the gateway then serves the API alone).
pub fn service(dir: Option<&Path>) -> Option<DashboardService> {
    match dir {
        Some(dir) => {
            let index = dir.join("index.html");
            if !index.is_file() {
                tracing::info!(dir = %dir.display(), "UI_DIR holds no built dashboard; serving the API only");
                return None;
            }
            let files = tower_http::services::ServeDir::new(dir).fallback(tower_http::services::ServeFile::new(index));
            let files = tower::ServiceExt::<Request<Body>>::map_response(files, IntoResponse::into_response);
            Some(BoxCloneSyncService::new(files))
        }
        None if is_embedded() => Some(BoxCloneSyncService::new(tower::service_fn(|request: Request<Body>| {
            std::future::ready(Ok::<_, Infallible>(serve_embedded(&request)))
        }))),
        None => {
            tracing::info!("this binary was built without the dashboard; serving the API only");
            None
        }
    }
}

struct File {
    bytes: &'static [u8],
    gzipped: Option<&'static [u8]>,
}

fn files() -> &'static HashMap<&'static str, File> {
    static FILES: OnceLock<HashMap<&'static str, File>> = OnceLock::new();
    FILES
        .get_or_init(|| embedded::FILES.iter().map(|&(path, bytes, gzipped)| (path, File { bytes, gzipped })).collect())
}

fn serve_embedded(request: &Request<Body>) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let path = request.uri().path();
    let (path, file) = match files().get_key_value(path) {
        Some((path, file)) if *path != "/index.html" => (*path, file),
        // A missing hashed asset is a real 404 (an old page asking for a file a new build
        // replaced); any other path is a page of the app.
        _ if path.starts_with("/assets/") => return StatusCode::NOT_FOUND.into_response(),
        _ => match files().get_key_value("/index.html") {
            Some((path, file)) => (*path, file),
            None => return StatusCode::NOT_FOUND.into_response(),
        },
    };
    let gzip_ok = request
        .headers()
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|coding| coding.trim().split(';').next() == Some("gzip")));
    let mut response = match file.gzipped.filter(|_| gzip_ok) {
        Some(gzipped) => {
            let mut response = Response::new(Body::from(gzipped));
            response.headers_mut().insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            response
        }
        None => Response::new(Body::from(file.bytes)),
    };
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    if file.gzipped.is_some() {
        headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
    }
    let cache = if path.starts_with("/assets/") { "public, max-age=31536000, immutable" } else { "no-cache" };
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

fn content_type(path: &str) -> &'static str {
    let extension = path.rsplit_once('.').map_or("", |(_, ext)| ext);
    match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
