//! PostgreSQL going away while requests are in flight: the gateway reaches its database through
//! a TCP relay the test can cut, as a network partition or a database restart would. Requests
//! answered while it is away are billed, exactly once, when it is back: their holds came from the
//! gateway's credit lease, and the credit engine writes their debits when it can.
//!
//! (SQLite's counterpart, a file locked by another process, is in `billing.rs`.)

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use apihub_core::Money;
use apihub_mock_upstream::{MockConfig, MockUpstream, header};
use apihub_server::config::Secret;
use apihub_server::db::DbUrl;
use common::gateway::{Auth, Gateway, UPSTREAM_KEY, eventually};
use common::{Backend, TestApp};
use http::StatusCode;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A relay from a local port to PostgreSQL that can be cut (every connection closed, new ones
/// refused) and restored.
struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
    cuts: watch::Sender<u64>,
}

impl Relay {
    async fn start(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("relay port");
        let port = listener.local_addr().expect("relay address").port();
        let up = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0u64);
        let (accepting, cut) = (up.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused by closing it
                }
                let target = target.clone();
                let mut cut = cut.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Relay { port, up, cuts }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// `postgres://user@host:port/db` with the host and port replaced by the relay's.
fn through(url: &str, port: u16) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, path) = rest.split_once('/').expect("a database");
    let user = authority.rsplit_once('@').map(|(user, _)| format!("{user}@")).unwrap_or_default();
    format!("{scheme}://{user}127.0.0.1:{port}/{path}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_answered_while_postgres_is_away_are_billed_once_it_is_back() {
    let Ok(base) = std::env::var("APIHUB_TEST_POSTGRES_URL") else {
        assert!(std::env::var_os("CI").is_none(), "APIHUB_TEST_POSTGRES_URL must be set in CI");
        eprintln!("skipping: APIHUB_TEST_POSTGRES_URL is not set");
        return;
    };
    let (_, rest) = base.split_once("://").expect("a URL");
    let authority = rest.split_once('/').map_or(rest, |(authority, _)| authority);
    let target = authority.rsplit_once('@').map_or(authority, |(_, host)| host).to_owned();
    let relay = Relay::start(target).await;
    let mock = MockUpstream::start(MockConfig { api_key: Some(UPSTREAM_KEY.into()), ..MockConfig::default() })
        .await
        .expect("mock upstream");
    let (upstream, port) = (mock.url(), relay.port);
    let app = TestApp::on_with(Backend::Postgres, |config| {
        config.upstream_url = upstream;
        config.upstream_api_key = Some(Secret::new(UPSTREAM_KEY));
        if let DbUrl::Postgres(url) = &config.database_url {
            config.database_url = DbUrl::Postgres(through(url, port));
        }
    })
    .await
    .expect("PostgreSQL");
    let admin = app.admin_token().await;
    let gw = Gateway { app, mock, backend: Backend::Postgres, admin };
    gw.price("gpt-4o-mini", "1", "2").await;
    let who = gw.customer("olga", "10", "1", json!({})).await;

    // Twenty requests are held and forwarded; the upstream answers after 800 ms, by when the
    // database is gone, so none of them can be settled when it ends.
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]});
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let (app, body, key) = (gw.app.app.clone(), body.clone(), who.key.clone());
            tokio::spawn(async move {
                let request = common::gateway::request(
                    "/v1/chat/completions",
                    Auth::Bearer(&key),
                    &[(header::LATENCY_MS, "800")],
                    &body,
                );
                common::gateway::send_router(app, request).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    relay.cut();
    let mut answered = 0;
    for request in requests {
        let raw = request.await.expect("request task");
        raw.expect(StatusCode::OK);
        assert!(raw.json()["usage"]["completion_tokens"].as_u64().is_some_and(|n| n > 0));
        answered += 1;
    }
    assert_eq!(answered, 20, "every client was answered in full while the database was away");
    // The settlements were taken from the gateway's credit lease in memory; their debits wait in
    // the credit engine's queue, retried until the database is back.
    assert!(gw.app.state.settlements.is_empty(), "no settlement failed");

    tokio::time::sleep(Duration::from_secs(2)).await;
    relay.restore();
    tokio::time::timeout(Duration::from_secs(30), gw.app.state.db.flush())
        .await
        .expect("the database answers again")
        .expect("the settlements are written once the database is back");
    eventually("the holds to close", || async { gw.funds(who.user_id).await.reserved == Money::ZERO }).await;
    let consumes = gw.consumes(who.user_id).await;
    assert_eq!(consumes.len(), 20, "each answered request charged once");
    let charged: Money = consumes.iter().map(|t| t.amount).sum();
    assert_eq!(gw.usage(who.user_id).await.len(), 20);
    assert_eq!(gw.assert_settled(who.user_id).await, Money::from_credits(10).checked_add(charged).unwrap());
}
