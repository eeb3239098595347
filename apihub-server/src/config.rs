//! Settings from environment variables (and an optional `.env` file); `.env.example` documents each.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use apihub_core::Money;
use apihub_core::recharge::RechargePolicy;
use rand::RngCore;

use crate::db::DbUrl;

/// Secrets that appear in this project's own docs. A server configured with one of them would be
/// signing sessions with a key anyone can read, so it refuses to start.
pub const PUBLISHED_SECRETS: &[&str] =
    &["change-me-to-a-random-string-of-at-least-32-bytes", "please-replace-this-with-64-random-hex-characters"];

/// Shortest accepted `SECRET_KEY`, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// Everything the server reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `APP_NAME`: shown in the API docs and dashboard.
    pub app_name: String,
    /// `HOST`: the address to bind.
    pub host: String,
    /// `PORT`: the port to bind.
    pub port: u16,
    /// `DATABASE_URL`: `sqlite://path` (default `sqlite://./data/apihub.db`) or `postgres://…`.
    pub database_url: DbUrl,
    /// `DATA_DIR`: where the generated secret key (and the default SQLite file) live.
    pub data_dir: PathBuf,
    /// `SECRET_KEY`, vetted; or the generated one kept in `DATA_DIR`.
    pub secret_key: Secret,
    /// `ACCESS_TOKEN_EXPIRE_MINUTES`: session token lifetime.
    pub access_token_expire_minutes: i64,
    /// `UPSTREAM_URL`: the LLM upstream the gateway forwards to.
    pub upstream_url: String,
    /// `UPSTREAM_API_KEY`: the key the gateway presents upstream.
    pub upstream_api_key: Option<Secret>,
    /// `UPSTREAM_TIMEOUT_SECS`: how long to wait for the upstream's response headers.
    pub upstream_timeout_secs: u64,
    /// `UPSTREAM_CONNECT_TIMEOUT_SECS`: how long to wait for a connection to the upstream.
    pub upstream_connect_timeout_secs: u64,
    /// `PROXY_MAX_BODY_BYTES`: largest request body forwarded to the upstream.
    pub proxy_max_body_bytes: usize,
    /// `DEFAULT_MAX_OUTPUT_TOKENS`: output held for a request that sets no cap.
    pub default_max_output_tokens: u64,
    /// `ADMIN_USERNAME`: the first administrator's name.
    pub admin_username: String,
    /// `ADMIN_PASSWORD`: the first administrator's password (generated and printed once when unset).
    pub admin_password: Option<Secret>,
    /// `ADMIN_EMAIL`: the first administrator's email.
    pub admin_email: Option<String>,
    /// `MAX_BODY_BYTES`: largest JSON body the account API accepts.
    pub max_body_bytes: usize,
    /// `DB_MAX_CONNECTIONS`: pool size.
    pub db_max_connections: usize,
    /// `LOGIN_LIMIT_PER_ADDRESS`: failed logins a minute from one client address before its logins
    /// are refused for a minute (0: no limit). Behind a reverse proxy every client shares the
    /// proxy's address: raise it or turn it off there.
    pub login_limit_per_address: u32,
    /// `MAX_CONNECTIONS`, `HEADER_READ_TIMEOUT_SECS`, `KEEP_ALIVE_TIMEOUT_SECS`,
    /// `SHUTDOWN_TIMEOUT_SECS`: how many client connections, for how long (see [`crate::serve`]).
    pub limits: crate::serve::Limits,
    /// `SHUTDOWN_READINESS_DELAY_SECS`: after SIGTERM, how long `/readyz` answers 503 while
    /// requests are still served, so that a load balancer stops sending before the listener closes.
    pub shutdown_readiness_delay_secs: u64,
    /// `UPSTREAM_IDLE_TIMEOUT_SECS`: longest wait for the upstream's next body bytes; past it the
    /// response ends, and what was delivered is billed.
    pub upstream_idle_timeout_secs: u64,
    /// `UPSTREAM_MAX_ATTEMPTS`: most channels tried for one request before its first byte (1 to
    /// 10, default 3; see [`crate::proxy::channels`]).
    pub upstream_max_attempts: usize,
    /// `CHANNEL_PROBE_SECS`: how often every channel is probed with `GET /v1/models` (free), its
    /// answer fed to its circuit breaker; 0 (the default): never, the breakers learn from traffic.
    pub channel_probe_secs: u64,
    /// `USAGE_LOG_RETENTION_DAYS`: usage rows (the per-request log) older than this many days are
    /// deleted in small batches by a background task; `None` (the default): kept for ever.
    pub usage_log_retention_days: Option<u32>,
    /// `USAGE_LOG_MAX_QUEUED`: most usage rows waiting to be written (the database away or
    /// behind) before new requests are refused with a 503, so that the queue cannot take the
    /// process's memory; 100,000 by default (about 50 MB), at least 1.
    pub usage_log_max_queued: usize,
    /// `BUDGET_TIME_ZONE`: the IANA time zone (e.g. `Asia/Shanghai`) whose calendar days, weeks
    /// and months periodic budgets follow; UTC by default.
    pub budget_zone: apihub_core::budget::BudgetZone,
    /// `CURRENCY`: the ISO 4217 code of the money users pay in (default `CNY`), shown by the
    /// dashboard next to prices and payments.
    pub currency: String,
    /// `CORS_ALLOW_ORIGINS`: comma-separated origins (`https://app.example.com`, or `*` for any)
    /// whose browser apps may call `/v1` and `/v1beta`; none by default.
    pub cors_allow_origins: Vec<String>,
    /// `UI_DIR`: a built dashboard to serve at `/` from disk instead of the one embedded in the
    /// binary (for working on the dashboard); `None`: the embedded one.
    pub ui_dir: Option<PathBuf>,
    /// `REDIS_URL` (and `REDIS_KEY_PREFIX`): rate limits and key-cache invalidation shared by
    /// several gateways. `None`: in-process limits, and the key cache's TTL bounds staleness.
    pub redis: Option<RedisConfig>,
    /// `EPAY_*` and `PUBLIC_URL`: online recharge through an EPay (易支付) merchant. `None`: the
    /// recharge routes answer that online payment is not configured.
    pub epay: Option<EpayConfig>,
}

/// An EPay merchant account and what the operator sells through it.
#[derive(Debug, Clone)]
pub struct EpayConfig {
    /// `EPAY_URL`: the provider's base URL (`https://pay.example.com/`); orders go to its
    /// `submit.php`, or to this URL itself when it already names a `.php` page.
    pub submit_url: String,
    /// `EPAY_PID`: our merchant id.
    pub pid: String,
    /// `EPAY_KEY`: the merchant key that signs both ways.
    pub key: Secret,
    /// `PUBLIC_URL`: where users and the provider reach this gateway (`https://gw.example.com`);
    /// the notify URL is `{PUBLIC_URL}/api/tokens/recharge/callback` and the return page
    /// `{PUBLIC_URL}/recharge/result`.
    pub public_url: String,
    /// `EPAY_MIN_AMOUNT`, `EPAY_MAX_AMOUNT` (credits per order, default 1 and 10000),
    /// `EPAY_PRICE` (money per credit, default 1) and `EPAY_PAYMENT_TYPES` (comma-separated,
    /// default `alipay,wxpay`).
    pub policy: RechargePolicy,
}

impl EpayConfig {
    /// The page users are sent to, the notify URL and the return URL.
    pub fn notify_url(&self) -> String {
        format!("{}/api/tokens/recharge/callback", self.public_url)
    }

    /// Where the provider sends the user back to after paying.
    pub fn return_url(&self) -> String {
        format!("{}/recharge/result", self.public_url)
    }

    /// Reads the `EPAY_*` settings: all of `EPAY_URL`, `EPAY_PID`, `EPAY_KEY` and `PUBLIC_URL`, or
    /// none (online recharge off). Anything in between is a configuration error.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<EpayConfig>> {
        const REQUIRED: [&str; 4] = ["EPAY_URL", "EPAY_PID", "EPAY_KEY", "PUBLIC_URL"];
        let values = REQUIRED.map(&get);
        let missing: Vec<&str> = REQUIRED.iter().zip(&values).filter(|(_, v)| v.is_none()).map(|(n, _)| *n).collect();
        if missing.len() == REQUIRED.len() {
            return Ok(None);
        }
        if !missing.is_empty() {
            bail!("online recharge needs {} too (set all of {} or none)", missing.join(", "), REQUIRED.join(", "));
        }
        let [url, pid, key, public_url] = values.map(Option::unwrap_or_default);
        for (name, value) in [("EPAY_URL", &url), ("PUBLIC_URL", &public_url)] {
            if !(value.starts_with("https://") || value.starts_with("http://")) {
                bail!("{name} must start with https:// or http://");
            }
        }
        if !pid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            bail!("EPAY_PID must be letters and digits");
        }
        if key.len() < 8 {
            bail!("EPAY_KEY looks too short to be a merchant key");
        }
        let submit_url = if url.ends_with(".php") { url } else { format!("{}/submit.php", url.trim_end_matches('/')) };
        let money = |name: &str, default: &str| -> anyhow::Result<Money> {
            let text = get(name).unwrap_or_else(|| default.to_owned());
            Money::parse(&text).map_err(|e| anyhow::anyhow!("{name}=`{text}` is not an amount: {e}"))
        };
        let policy = RechargePolicy {
            min_amount: money("EPAY_MIN_AMOUNT", "1")?,
            max_amount: money("EPAY_MAX_AMOUNT", "10000")?,
            price: money("EPAY_PRICE", "1")?,
            payment_types: get("EPAY_PAYMENT_TYPES")
                .unwrap_or_else(|| "alipay,wxpay".into())
                .split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
        };
        policy
            .check()
            .map_err(|e| anyhow::anyhow!("EPAY_MIN_AMOUNT / EPAY_MAX_AMOUNT / EPAY_PRICE / EPAY_PAYMENT_TYPES: {e}"))?;
        Ok(Some(EpayConfig {
            submit_url,
            pid,
            key: Secret(key),
            public_url: public_url.trim_end_matches('/').to_owned(),
            policy,
        }))
    }
}

/// Where gateways that share state meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `REDIS_URL`: `redis://[user:password@]host[:port][/db]`, or `redis+unix:///path` for a
    /// socket. TLS (`rediss://`) is not built in.
    pub url: Secret,
    /// `REDIS_KEY_PREFIX` (default `apihub`): starts every key and channel name, so deployments
    /// (or test runs) sharing one Redis never see each other's counters or messages.
    pub key_prefix: String,
}

impl RedisConfig {
    /// The default `REDIS_KEY_PREFIX`.
    pub const DEFAULT_PREFIX: &str = "apihub";

    /// Settings for `url` with the default prefix.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig { url: Secret::new(url), key_prefix: Self::DEFAULT_PREFIX.to_owned() }
    }

    /// Vets `REDIS_URL` and `REDIS_KEY_PREFIX`; `None` without a URL.
    pub fn parse(url: Option<String>, key_prefix: Option<String>) -> anyhow::Result<Option<RedisConfig>> {
        let Some(url) = url else { return Ok(None) };
        if !["redis://", "redis+unix://", "unix://"].iter().any(|scheme| url.starts_with(scheme)) {
            bail!("REDIS_URL must start with redis://, redis+unix:// or unix:// (TLS is not built in)");
        }
        let key_prefix = key_prefix.unwrap_or_else(|| Self::DEFAULT_PREFIX.to_owned());
        if key_prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!("REDIS_KEY_PREFIX must not contain whitespace");
        }
        Ok(Some(RedisConfig { url: Secret(url), key_prefix }))
    }
}

/// A secret string whose `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(****)")
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn parsed<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(text) => text.parse().map_err(|e| anyhow::anyhow!("{name}=`{text}` is not valid: {e}")),
    }
}

impl Config {
    /// Reads `.env` (if present) and the environment.
    pub fn from_env() -> anyhow::Result<Config> {
        // A missing .env is normal; a malformed one is not.
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => return Err(e).context("reading .env"),
        }
        let data_dir = PathBuf::from(var("DATA_DIR").unwrap_or_else(|| "./data".into()));
        let database_url =
            var("DATABASE_URL").unwrap_or_else(|| format!("sqlite://{}", data_dir.join("apihub.db").display()));
        let minutes: i64 = parsed("ACCESS_TOKEN_EXPIRE_MINUTES", 60 * 24)?;
        if !(1..=60 * 24 * 30).contains(&minutes) {
            bail!("ACCESS_TOKEN_EXPIRE_MINUTES must be between 1 and 43200");
        }
        Ok(Config {
            app_name: var("APP_NAME").unwrap_or_else(|| "APIHub".into()),
            host: var("HOST").unwrap_or_else(|| "127.0.0.1".into()),
            port: parsed("PORT", 8000)?,
            database_url: DbUrl::parse(&database_url)?,
            secret_key: load_secret(var("SECRET_KEY"), &data_dir)?,
            data_dir,
            access_token_expire_minutes: minutes,
            upstream_url: var("UPSTREAM_URL").unwrap_or_else(|| "http://127.0.0.1:8317".into()),
            upstream_api_key: var("UPSTREAM_API_KEY").map(Secret),
            upstream_timeout_secs: parsed("UPSTREAM_TIMEOUT_SECS", 600)?,
            upstream_connect_timeout_secs: parsed("UPSTREAM_CONNECT_TIMEOUT_SECS", 10)?,
            proxy_max_body_bytes: parsed("PROXY_MAX_BODY_BYTES", 32 * 1024 * 1024)?,
            default_max_output_tokens: parsed("DEFAULT_MAX_OUTPUT_TOKENS", 4096)?,
            admin_username: var("ADMIN_USERNAME").unwrap_or_else(|| "admin".into()),
            admin_password: var("ADMIN_PASSWORD").map(Secret),
            admin_email: var("ADMIN_EMAIL"),
            max_body_bytes: parsed("MAX_BODY_BYTES", 1024 * 1024)?,
            db_max_connections: parsed("DB_MAX_CONNECTIONS", 16)?,
            login_limit_per_address: parsed("LOGIN_LIMIT_PER_ADDRESS", 30)?,
            limits: crate::serve::Limits {
                max_connections: parsed("MAX_CONNECTIONS", crate::serve::Limits::default_max_connections())?.max(1),
                header_read: Duration::from_secs(parsed("HEADER_READ_TIMEOUT_SECS", 10)?),
                keep_alive: Duration::from_secs(parsed("KEEP_ALIVE_TIMEOUT_SECS", 60)?),
                shutdown_timeout: Duration::from_secs(parsed("SHUTDOWN_TIMEOUT_SECS", 30)?),
            },
            shutdown_readiness_delay_secs: parsed("SHUTDOWN_READINESS_DELAY_SECS", 5)?,
            upstream_idle_timeout_secs: parsed("UPSTREAM_IDLE_TIMEOUT_SECS", 300)?,
            upstream_max_attempts: parsed::<usize>("UPSTREAM_MAX_ATTEMPTS", 3)?.clamp(1, 10),
            channel_probe_secs: parsed("CHANNEL_PROBE_SECS", 0)?,
            usage_log_retention_days: retention_days(var("USAGE_LOG_RETENTION_DAYS"))?,
            usage_log_max_queued: parsed::<usize>("USAGE_LOG_MAX_QUEUED", 100_000)?.max(1),
            budget_zone: budget_zone(var("BUDGET_TIME_ZONE"))?,
            currency: currency(var("CURRENCY"))?,
            cors_allow_origins: var("CORS_ALLOW_ORIGINS")
                .map(|list| {
                    list.split(',')
                        .map(|o| o.trim().trim_end_matches('/').to_owned())
                        .filter(|o| !o.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            ui_dir: var("UI_DIR").map(PathBuf::from),
            redis: RedisConfig::parse(var("REDIS_URL"), var("REDIS_KEY_PREFIX"))?,
            epay: EpayConfig::from_vars(var)?,
        })
    }
}

/// `USAGE_LOG_RETENTION_DAYS`, vetted: a whole number of days, at least 1; unset keeps every row.
fn retention_days(configured: Option<String>) -> anyhow::Result<Option<u32>> {
    let Some(text) = configured else { return Ok(None) };
    match text.parse::<u32>() {
        Ok(days) if (1..=365_000).contains(&days) => Ok(Some(days)),
        _ => {
            bail!("USAGE_LOG_RETENTION_DAYS=`{text}` must be a whole number of days from 1 to 365000 (unset: keep all)")
        }
    }
}

/// `BUDGET_TIME_ZONE`, vetted: an IANA time zone name; UTC when unset.
fn budget_zone(configured: Option<String>) -> anyhow::Result<apihub_core::budget::BudgetZone> {
    let Some(name) = configured else { return Ok(apihub_core::budget::BudgetZone::default()) };
    apihub_core::budget::BudgetZone::parse(name.trim())
        .ok_or_else(|| anyhow::anyhow!("BUDGET_TIME_ZONE=`{name}` is not an IANA time zone name (e.g. Asia/Shanghai)"))
}

/// `CURRENCY`, vetted: three letters (ISO 4217), upper-cased; `CNY` when unset.
fn currency(configured: Option<String>) -> anyhow::Result<String> {
    let code = configured.unwrap_or_else(|| "CNY".into()).to_ascii_uppercase();
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
        bail!("CURRENCY must be an ISO 4217 code of three letters, such as CNY or USD");
    }
    Ok(code)
}

/// Checks a configured secret: long enough and not one printed in our docs.
pub fn vet_secret(secret: &str) -> anyhow::Result<()> {
    if secret.len() < MIN_SECRET_LEN {
        bail!("SECRET_KEY must be at least {MIN_SECRET_LEN} bytes (generate one with `openssl rand -hex 32`)");
    }
    if PUBLISHED_SECRETS.contains(&secret) {
        bail!("SECRET_KEY is the example value from the documentation; set a random one");
    }
    Ok(())
}

/// The configured secret, or the one generated on first start and kept in `data_dir/secret_key`.
pub fn load_secret(configured: Option<String>, data_dir: &Path) -> anyhow::Result<Secret> {
    if let Some(secret) = configured {
        vet_secret(&secret)?;
        return Ok(Secret(secret));
    }
    let path = data_dir.join("secret_key");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_owned();
        vet_secret(&existing).with_context(|| format!("{} holds an unusable secret", path.display()))?;
        return Ok(Secret(existing));
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = hex::encode(bytes);
    write_private(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated a new SECRET_KEY and stored it");
    Ok(Secret(secret))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_published_secrets_are_refused() {
        assert!(vet_secret("short").is_err());
        for published in PUBLISHED_SECRETS {
            assert!(vet_secret(published).is_err());
        }
        assert!(vet_secret(&"x".repeat(32)).is_ok());
    }

    /// Every SECRET_KEY value written in our docs must be on the refusal list.
    #[test]
    fn documented_secrets_are_refused() {
        for doc in [include_str!("../../.env.example"), include_str!("../../README.md")] {
            for line in doc.lines() {
                if let Some(value) = line.trim().trim_start_matches('#').trim().strip_prefix("SECRET_KEY=") {
                    let value = value.trim().trim_matches('"');
                    if !value.is_empty() && !value.starts_with('$') {
                        assert!(vet_secret(value).is_err(), "documented SECRET_KEY `{value}` would be accepted");
                    }
                }
            }
        }
    }

    #[test]
    fn redis_settings_are_vetted() {
        assert_eq!(RedisConfig::parse(None, Some("x".into())).unwrap(), None);
        let config = RedisConfig::parse(Some("redis://:pw@127.0.0.1:6379/2".into()), None).unwrap().unwrap();
        assert_eq!(config.key_prefix, "apihub");
        assert!(!format!("{config:?}").contains("pw"), "the URL may hold a password");
        assert!(RedisConfig::parse(Some("rediss://host".into()), None).is_err());
        assert!(RedisConfig::parse(Some("127.0.0.1:6379".into()), None).is_err());
        assert!(RedisConfig::parse(Some("redis://h".into()), Some("a b".into())).is_err());
    }

    #[test]
    fn epay_settings_are_all_or_nothing() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        };
        assert!(EpayConfig::from_vars(vars(&[])).unwrap().is_none());
        let partial = EpayConfig::from_vars(vars(&[("EPAY_URL", "https://pay.example.com")])).unwrap_err();
        assert!(partial.to_string().contains("EPAY_PID, EPAY_KEY, PUBLIC_URL"), "{partial}");
        let full = EpayConfig::from_vars(vars(&[
            ("EPAY_URL", "https://pay.example.com/"),
            ("EPAY_PID", "1001"),
            ("EPAY_KEY", "testkey123"),
            ("PUBLIC_URL", "https://gw.example.com/"),
            ("EPAY_PAYMENT_TYPES", "alipay, qqpay"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(full.submit_url, "https://pay.example.com/submit.php");
        assert_eq!(full.notify_url(), "https://gw.example.com/api/tokens/recharge/callback");
        assert_eq!(full.policy.payment_types, ["alipay", "qqpay"]);
        assert!(!format!("{full:?}").contains("testkey123"));
        let bad_price = EpayConfig::from_vars(vars(&[
            ("EPAY_URL", "https://pay.example.com/pay.php"),
            ("EPAY_PID", "1001"),
            ("EPAY_KEY", "testkey123"),
            ("PUBLIC_URL", "https://gw.example.com"),
            ("EPAY_PRICE", "0"),
        ]));
        assert!(bad_price.is_err());
    }

    #[test]
    fn the_currency_is_three_letters() {
        assert_eq!(currency(None).unwrap(), "CNY");
        assert_eq!(currency(Some("usd".into())).unwrap(), "USD");
        assert!(currency(Some("yuan".into())).is_err());
        assert!(currency(Some("¥".into())).is_err());
    }

    #[test]
    fn a_generated_secret_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_secret(None, dir.path()).unwrap();
        let second = load_secret(None, dir.path()).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.expose().len(), 64);
    }
}
