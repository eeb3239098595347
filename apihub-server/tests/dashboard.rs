//! The binary serves its embedded dashboard from any folder: `/`, deep links, hashed assets with
//! long cache headers and gzip, and JSON 404s for unknown API paths.
//!
//! Needs the dashboard built before the binary (`npm --prefix apihub-ui run build`, as the
//! README's test command does first); without it the test is skipped locally and fails under CI.

mod common;

use common::process::{Node, send};
use http::{Method, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_its_embedded_dashboard_from_any_folder() {
    if !apihub_server::routes::dashboard::is_embedded() {
        assert!(std::env::var_os("CI").is_none(), "CI must build apihub-ui before the binary");
        eprintln!("skipping: this build has no dashboard (run `npm --prefix apihub-ui run build` first)");
        return;
    }
    // A fresh folder, no UI_DIR, nothing of the repository's around: only the binary.
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("SECRET_KEY", "dashboard-test-secret-0123456789abcdefghij".to_owned()),
        ("ADMIN_PASSWORD", "dashboard-admin-password".to_owned()),
    ];
    let client = common::process::client();
    let mut node = Node::start("gateway", dir.path(), &env);
    node.ready(&client).await;

    let index = send(&client, Method::GET, &node.url("/"), &[], None).await;
    assert_eq!(index.status, StatusCode::OK);
    assert!(index.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert_eq!(index.headers["cache-control"], "no-cache");
    let html = index.body.as_str().expect("html").to_owned();
    assert!(html.contains("<div id=\"root\">"), "{html}");

    let deep = send(&client, Method::GET, &node.url("/keys"), &[], None).await;
    assert_eq!(deep.status, StatusCode::OK);
    assert_eq!(deep.body.as_str(), Some(html.as_str()), "a deep link gets the app");

    let asset = html.split('"').find(|part| part.starts_with("/assets/") && part.ends_with(".js")).expect("a script");
    let plain = send(&client, Method::GET, &node.url(asset), &[], None).await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(plain.headers["cache-control"], "public, max-age=31536000, immutable");
    assert!(plain.headers["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert!(!plain.headers.contains_key("content-encoding"));
    let gzipped = send(&client, Method::GET, &node.url(asset), &[("accept-encoding", "gzip, br")], None).await;
    assert_eq!(gzipped.status, StatusCode::OK);
    assert_eq!(gzipped.headers["content-encoding"], "gzip");

    let missing = send(&client, Method::GET, &node.url("/assets/gone-0000.js"), &[], None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let api = send(&client, Method::GET, &node.url("/api/nothing-here"), &[], None).await;
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    assert_eq!(api.body["error"]["code"], "not_found");
}
