//! Upstream channels: the upstreams an operator forwards LLM requests to, with priorities,
//! weights, model aliases, and a circuit breaker per channel.
//!
//! A request goes to the highest-priority group that has a channel serving its dialect and model
//! and whose breaker lets it through; inside a group, channels are drawn at random in proportion
//! to their weights. When a channel fails before anything reached the client (a connect error, a
//! timeout to the headers, a 5xx or a 429), the next one in that order is tried. Everything here is
//! pure (the caller passes the time and the random numbers); the server does the I/O.
//!
//! ```
//! use apihub_core::channel::{ChannelSpec, attempt_order};
//! use apihub_core::usage::Dialect;
//!
//! let mut main = ChannelSpec::new("main", "http://10.0.0.1:8317");
//! main.priority = 10;
//! main.aliases.insert("gpt-4o".into(), "gpt-4o-2024-11-20".into());
//! let backup = ChannelSpec::new("backup", "http://10.0.0.2:8317");
//! assert!(main.serves(Dialect::OpenAi, "gpt-4o"));
//! assert_eq!(main.upstream_model("gpt-4o"), "gpt-4o-2024-11-20");
//! // Higher priority first; a healthy channel before one whose breaker is open.
//! let order = attempt_order(&[(&backup, true), (&main, true)], |_| 0);
//! assert_eq!(order, vec![1, 0]);
//! let order = attempt_order(&[(&backup, true), (&main, false)], |_| 0);
//! assert_eq!(order, vec![0, 1]);
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::pricing::ModelPrice;
use crate::store::StoreError;
use crate::usage::Dialect;

/// A channel's numeric id.
pub type ChannelId = i64;

/// Longest name.
pub const MAX_NAME_LEN: usize = 64;
/// Most models or aliases one channel may list.
pub const MAX_MODELS: usize = 500;
/// Highest weight.
pub const MAX_WEIGHT: u32 = 1_000;
/// Longest timeout to the response headers a channel may set, in seconds.
pub const MAX_TIMEOUT_SECS: u32 = 3_600;

/// The dialect names the API uses.
pub fn dialect_name(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::OpenAi => "openai",
        Dialect::Anthropic => "anthropic",
        Dialect::Gemini => "gemini",
    }
}

/// The dialect a name stands for.
pub fn dialect_named(name: &str) -> Option<Dialect> {
    match name {
        "openai" => Some(Dialect::OpenAi),
        "anthropic" => Some(Dialect::Anthropic),
        "gemini" => Some(Dialect::Gemini),
        _ => None,
    }
}

/// What an administrator declares for a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSpec {
    /// Unique display name; the label on metrics and usage rows.
    pub name: String,
    /// Plain `http://` base URL, e.g. `http://10.0.0.1:8317`.
    pub base_url: String,
    /// The key the gateway presents to this upstream.
    pub api_key: Option<String>,
    /// The dialects it speaks; empty: all.
    pub dialects: Vec<Dialect>,
    /// The public model names it serves; empty: any.
    pub models: Vec<String>,
    /// Public model name → the name this upstream knows it by.
    pub aliases: BTreeMap<String, String>,
    /// Higher is tried first.
    pub priority: i32,
    /// Share of traffic inside its priority group, 1 to [`MAX_WEIGHT`].
    pub weight: u32,
    /// Whether it takes traffic.
    pub enabled: bool,
    /// Time to the response headers, overriding the gateway's `UPSTREAM_TIMEOUT_SECS`.
    pub timeout_secs: Option<u32>,
    /// What the operator pays this upstream, per public model name: the usage row's `cost`.
    pub cost_prices: BTreeMap<String, ModelPrice>,
    /// What the operator pays for a model [`cost_prices`](Self::cost_prices) does not list; with
    /// neither, a request's cost is unknown.
    pub default_cost_price: Option<ModelPrice>,
}

impl ChannelSpec {
    /// A channel with the defaults: every dialect and model, priority 0, weight 1, enabled.
    pub fn new(name: &str, base_url: &str) -> Self {
        ChannelSpec {
            name: name.to_owned(),
            base_url: base_url.to_owned(),
            api_key: None,
            dialects: Vec::new(),
            models: Vec::new(),
            aliases: BTreeMap::new(),
            priority: 0,
            weight: 1,
            enabled: true,
            timeout_secs: None,
            cost_prices: BTreeMap::new(),
            default_cost_price: None,
        }
    }

    /// Checks the definition.
    pub fn validate(&self) -> Result<(), ChannelError> {
        let invalid = |field: &'static str, reason: &str| Err(ChannelError { field, reason: reason.to_owned() });
        if self.name.trim().is_empty()
            || self.name.chars().count() > MAX_NAME_LEN
            || self.name.chars().any(char::is_control)
        {
            return invalid("name", "must be 1 to 64 characters, without control characters");
        }
        match self.base_url.strip_prefix("http://") {
            Some(rest)
                if !rest.is_empty()
                    && !rest.starts_with('/')
                    && self.base_url.len() <= 200
                    && !rest.contains(['?', '#'])
                    && !rest.chars().any(|c| c.is_control() || c.is_whitespace()) => {}
            _ => return invalid("base_url", "must be an http:// URL of at most 200 characters, without query"),
        }
        if self.api_key.as_deref().is_some_and(|key| key.is_empty() || key.len() > 500 || !key.is_ascii())
            || self.api_key.as_deref().is_some_and(|key| key.bytes().any(|b| b.is_ascii_control()))
        {
            return invalid("api_key", "must be 1 to 500 printable ASCII characters");
        }
        let model_name = |name: &str| {
            !name.is_empty() && name.len() <= 200 && !name.chars().any(|c| c.is_control() || c == '"' || c == '\\')
        };
        if self.models.len() > MAX_MODELS || !self.models.iter().all(|m| model_name(m)) {
            return invalid(
                "models",
                "must hold at most 500 names of 1 to 200 characters, without quotes or control characters",
            );
        }
        if self.aliases.len() > MAX_MODELS
            || !self.aliases.iter().all(|(public, upstream)| model_name(public) && model_name(upstream))
        {
            return invalid(
                "aliases",
                "must map at most 500 names of 1 to 200 characters, without quotes or control characters",
            );
        }
        if !(1..=MAX_WEIGHT).contains(&self.weight) {
            return invalid("weight", "must be 1 to 1000");
        }
        if !(-1_000..=1_000).contains(&self.priority) {
            return invalid("priority", "must be -1000 to 1000");
        }
        if self.timeout_secs.is_some_and(|t| !(1..=MAX_TIMEOUT_SECS).contains(&t)) {
            return invalid("timeout_secs", "must be 1 to 3600");
        }
        // Model names as a model's price is keyed (see the prices API), amounts as a price's.
        let priced_name =
            |name: &str| !name.is_empty() && name.len() <= 128 && name.chars().all(|c| c.is_ascii_graphic());
        if self.cost_prices.len() > MAX_MODELS
            || !self.cost_prices.iter().all(|(model, price)| priced_name(model) && price.validate().is_ok())
        {
            return invalid(
                "cost_prices",
                "must map at most 500 model names of 1 to 128 printable ASCII characters to prices that are not negative",
            );
        }
        if self.default_cost_price.is_some_and(|price| price.validate().is_err()) {
            return invalid("default_cost_price", "must not be negative");
        }
        Ok(())
    }

    /// What the operator pays this channel for the public `model`: its own cost price, else the
    /// channel's default; `None` when it has neither (the cost is unknown).
    pub fn cost_price(&self, model: &str) -> Option<ModelPrice> {
        self.cost_prices.get(model).copied().or(self.default_cost_price)
    }

    /// Whether it takes `model` in `dialect` (enabled, that dialect, that model or any).
    pub fn serves(&self, dialect: Dialect, model: &str) -> bool {
        self.enabled
            && (self.dialects.is_empty() || self.dialects.contains(&dialect))
            && (self.models.is_empty() || self.models.iter().any(|m| m == model))
    }

    /// The name this upstream knows the public `model` by.
    pub fn upstream_model<'a>(&'a self, model: &'a str) -> &'a str {
        self.aliases.get(model).map_or(model, String::as_str)
    }

    /// The key as the API shows it (see [`key_preview`]).
    pub fn key_preview(&self) -> Option<String> {
        self.api_key.as_deref().map(key_preview)
    }
}

/// An upstream key as the API shows it: `…` and its last four characters (only `…` for a key under
/// 12 characters, whose end would give too much away).
pub fn key_preview(key: &str) -> String {
    let tail = if key.len() >= 12 { key.get(key.len() - 4..) } else { None };
    format!("…{}", tail.unwrap_or_default())
}

/// Why a channel definition was refused: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {reason}")]
pub struct ChannelError {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// A stored channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Primary key.
    pub id: ChannelId,
    /// What was declared.
    pub spec: ChannelSpec,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Stored channels.
#[async_trait]
pub trait ChannelStore: Send + Sync {
    /// Every channel, by id.
    async fn channels(&self) -> Result<Vec<Channel>, StoreError>;
    /// One channel.
    async fn channel(&self, id: ChannelId) -> Result<Option<Channel>, StoreError>;
    /// Stores a new channel; [`StoreError::Conflict`] when its name is taken.
    async fn create_channel(&self, spec: &ChannelSpec) -> Result<Channel, StoreError>;
    /// Replaces a channel's definition; [`StoreError::NotFound`], or a conflict as on create.
    async fn update_channel(&self, id: ChannelId, spec: &ChannelSpec) -> Result<Channel, StoreError>;
    /// Removes a channel (usage rows keep its name); [`StoreError::NotFound`] when there is none.
    async fn delete_channel(&self, id: ChannelId) -> Result<(), StoreError>;
}

/// The order in which to try `candidates` (channels that serve the request, each with whether
/// its breaker lets a request through): by priority, highest first, channels whose breaker is
/// open after every healthy one; inside a priority group, a weighted random order drawn with
/// `random(n)`, which returns a number in `0..n`. Returns indices into `candidates`.
pub fn attempt_order(candidates: &[(&ChannelSpec, bool)], mut random: impl FnMut(u64) -> u64) -> Vec<usize> {
    let mut groups: BTreeMap<(bool, std::cmp::Reverse<i32>), Vec<usize>> = BTreeMap::new();
    for (index, (spec, healthy)) in candidates.iter().enumerate() {
        groups.entry((!healthy, std::cmp::Reverse(spec.priority))).or_default().push(index);
    }
    let mut order = Vec::with_capacity(candidates.len());
    for (_, mut group) in groups {
        // Weighted sampling without replacement: draw one in proportion to weight, remove, repeat.
        while !group.is_empty() {
            let total: u64 = group.iter().map(|&i| u64::from(candidates[i].0.weight.max(1))).sum();
            let mut ticket = random(total).min(total.saturating_sub(1));
            let mut pick = group.len() - 1;
            for (slot, &i) in group.iter().enumerate() {
                let weight = u64::from(candidates[i].0.weight.max(1));
                if ticket < weight {
                    pick = slot;
                    break;
                }
                ticket -= weight;
            }
            order.push(group.remove(pick));
        }
    }
    order
}

/// A channel's passive circuit breaker: `threshold` consecutive failures open it for a back-off
/// that doubles with each failed trial (from `base` up to `max`); once the back-off has passed it
/// lets one trial request through (half-open), whose success closes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    failures: u32,
    /// Open until this instant (milliseconds on the caller's clock).
    open_until: Option<u64>,
    /// The back-off of the current or last opening.
    backoff: Duration,
    /// A half-open trial is under way.
    trial: bool,
}

/// A breaker's state, as metrics and the API show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Taking traffic.
    Closed,
    /// Refusing traffic until the back-off has passed.
    Open,
    /// Letting one trial through.
    HalfOpen,
}

/// Breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the breaker.
    pub threshold: u32,
    /// First back-off.
    pub base: Duration,
    /// Longest back-off.
    pub max: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy { threshold: 3, base: Duration::from_secs(5), max: Duration::from_secs(300) }
    }
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker { failures: 0, open_until: None, backoff: Duration::ZERO, trial: false }
    }
}

impl Breaker {
    /// The state at `now_ms`.
    pub fn state(&self, now_ms: u64) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(until) if now_ms < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Whether a request may go to this channel now (closed, or half-open with no trial under way).
    pub fn allows(&self, now_ms: u64) -> bool {
        match self.state(now_ms) {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => !self.trial,
        }
    }

    /// A request is sent (it is the half-open trial when the back-off has passed).
    pub fn attempt(&mut self, now_ms: u64) {
        if self.state(now_ms) != BreakerState::Closed {
            self.trial = true;
        }
    }

    /// The channel answered: the breaker closes.
    pub fn success(&mut self) {
        *self = Breaker::default();
    }

    /// The channel failed at `now_ms`: a failed trial reopens the breaker for twice as long;
    /// the `threshold`-th consecutive failure opens it.
    pub fn failure(&mut self, now_ms: u64, policy: &BreakerPolicy) {
        self.failures = self.failures.saturating_add(1);
        let backoff = if self.open_until.is_some() {
            (self.backoff * 2).min(policy.max)
        } else if self.failures >= policy.threshold.max(1) {
            policy.base.min(policy.max)
        } else {
            return;
        };
        self.backoff = backoff;
        self.trial = false;
        self.open_until = Some(now_ms.saturating_add(u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX)));
    }

    /// Consecutive failures.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests;
