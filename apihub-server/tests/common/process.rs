//! The real `apihub` binary as a separate process, and a plain HTTP client to talk to it: for
//! tests that need what only a process has (its own listener, signals, file limits, restarts).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The URL from `name`, or `None` (skip) outside CI.
pub fn service_url(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(std::env::var_os("CI").is_none(), "{name} must be set in CI");
            eprintln!("skipping: {name} is not set");
            None
        }
    }
}

/// One `apihub serve` process, killed when dropped.
pub struct Node {
    pub name: &'static str,
    pub base: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Node {
    /// Starts the binary with exactly `env` (nothing inherited, no `.env` read) in `dir`.
    pub fn start(name: &'static str, dir: &Path, env: &[(&str, String)]) -> Node {
        Self::start_with_file_limit(name, dir, env, None)
    }

    /// [`Node::start`], with at most `max_files` open files (`ulimit -n`) when given.
    pub fn start_with_file_limit(
        name: &'static str,
        dir: &Path,
        env: &[(&str, String)],
        max_files: Option<u32>,
    ) -> Node {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        // Its log (tracing writes to stdout) and anything on stderr (a panic) go to one file.
        let log = dir.join("apihub.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let binary = env!("CARGO_BIN_EXE_apihub");
        let mut command = match max_files {
            None => Command::new(binary),
            Some(n) => {
                let mut shell = Command::new("/bin/sh");
                shell.arg("-c").arg(format!("ulimit -n {n} && exec \"$0\" \"$@\"")).arg(binary);
                shell
            }
        };
        let child = command
            .arg("serve")
            .current_dir(&dir)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("DATA_DIR", dir.join("data"))
            .env("RUST_LOG", "warn,apihub_server=info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("start apihub");
        Node { name, base: format!("http://127.0.0.1:{port}"), child, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits for `/readyz`; panics with the node's log if it exits or takes too long.
    pub async fn ready(&mut self, client: &HttpClient) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("node {} exited with {status}:\n{}", self.name, self.log_text());
            }
            let request = Request::get(self.url("/readyz")).body(Full::default()).unwrap();
            if let Ok(response) = client.request(request).await
                && response.status() == StatusCode::OK
            {
                return;
            }
            assert!(Instant::now() < deadline, "node {} not ready:\n{}", self.name, self.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The node's log so far, without its colours (ANSI escapes).
    pub fn log_text(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut plain = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(start) = rest.find('\x1b') {
            plain.push_str(&rest[..start]);
            rest = rest[start..].split_once('m').map_or("", |(_, after)| after);
        }
        plain.push_str(rest);
        plain
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response with its body read (as JSON where it parses).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Value,
}

impl Reply {
    #[track_caller]
    pub fn expect(self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        self.body
    }
}

/// A request with `headers` and, when given, a JSON body.
pub fn request(method: Method, url: &str, headers: &[(&str, &str)], body: Option<&Value>) -> Request<Full<Bytes>> {
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = match body {
        Some(body) => {
            request = request.header("content-type", "application/json");
            Full::new(Bytes::from(body.to_string()))
        }
        None => Full::default(),
    };
    request.body(body).expect("a valid request")
}

pub async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Reply {
    let response = client.request(request(method, url, headers, body)).await.expect("HTTP request");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("response body").to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    Reply { status: parts.status, headers: parts.headers, body }
}

/// A session-authenticated call to the account API.
pub async fn api(
    client: &HttpClient,
    node: &Node,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Reply {
    let bearer = format!("Bearer {token}");
    send(client, method, &node.url(path), &[("authorization", &bearer)], body.as_ref()).await
}

pub async fn login(client: &HttpClient, node: &Node, username: &str, password: &str) -> String {
    let body = json!({"username": username, "password": password});
    let reply = send(client, Method::POST, &node.url("/api/auth/login"), &[], Some(&body)).await;
    reply.expect(StatusCode::OK)["access_token"].as_str().expect("token").to_owned()
}

/// A client for [`Node`]s.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Registers `name`, gives it `credits` and returns a new API key of its own.
pub async fn funded_key(client: &HttpClient, node: &Node, admin: &str, name: &str, credits: &str) -> String {
    let body = json!({"username": name, "password": "a-long-password"});
    let user = send(client, Method::POST, &node.url("/api/auth/register"), &[], Some(&body)).await;
    let user_id = user.expect(StatusCode::CREATED)["id"].as_i64().expect("user id");
    let recharge = json!({"amount": credits});
    let path = format!("/api/tokens/admin/user/{user_id}/recharge");
    api(client, node, Method::POST, &path, admin, Some(recharge)).await.expect(StatusCode::OK);
    let token = login(client, node, name, "a-long-password").await;
    let key = api(client, node, Method::POST, "/api/keys", &token, Some(json!({"name": "k"}))).await;
    key.expect(StatusCode::CREATED)["key"].as_str().expect("key").to_owned()
}

/// What the kernel says about process `pid`: a `/proc/<pid>/status` field in kB (`VmRSS`,
/// `VmHWM`), and the number of open file descriptors.
pub fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with(&format!("{field}:"))).expect("field");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("kB")
}

/// How many files process `pid` has open.
pub fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|dir| dir.count()).unwrap_or(0)
}
