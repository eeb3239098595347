//! Metered routes: any HTTP API put behind the gateway's keys, limits and billing.
//!
//! An administrator declares a route: a public path (or prefix), the upstream it forwards to and
//! the upstream's own key, the methods, and a price per successful call in credits, plus
//! optionally a price per unit read from the request body with a JSON pointer (`/batch_size`:
//! four images cost four units). Where the client's key is read (the usual headers, or a JSON body
//! field such as `apiKey`, removed before forwarding), which body field names the model (for the
//! key's allow-list), which statuses count as success, the timeout and whether the route may
//! stream are part of it too.
//!
//! What a call is charged is `price_per_call + units × price_per_unit`, a pure function of the
//! route and the request ([`RouteSpec::price`] gives the [`ModelPrice`] the billing layer applies
//! to `units` images), rounded once after the discounts like every other charge.
//!
//! ```
//! use apihub_core::Money;
//! use apihub_core::route::{RouteCall, RouteSpec};
//!
//! let mut spec = RouteSpec::new("images", "/api/generate", "http://127.0.0.1:7860/api/generate");
//! spec.price_per_call = Money::ZERO;
//! spec.price_per_unit = Some(Money::parse("0.05").unwrap());
//! spec.units_pointer = Some("/batch_size".into());
//! spec.key_field = Some("apiKey".into());
//! spec.validate().unwrap();
//!
//! let mut body = serde_json::json!({"apiKey": "felix-0123456789abcdef", "prompt": "a cat", "batch_size": 4});
//! let call = RouteCall::read(&spec, Some(&mut body)).unwrap();
//! assert_eq!(call.units, 4);
//! assert_eq!(call.key.as_deref(), Some("felix-0123456789abcdef"));
//! assert!(body.get("apiKey").is_none(), "the client's key is never forwarded");
//! ```

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::money::Money;
use crate::pricing::ModelPrice;
use crate::store::StoreError;

/// A route's numeric id.
pub type RouteId = i64;

/// The methods a route may accept.
pub const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
/// Most units one call may ask for, whatever a route allows.
pub const MAX_UNITS: u64 = 10_000;
/// Longest timeout a route may set, in seconds.
pub const MAX_TIMEOUT_SECS: u32 = 3_600;
/// Longest public path or upstream URL.
pub const MAX_PATH_LEN: usize = 200;

/// What an administrator declares for a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Unique display name; also the model recorded when the route names no model field.
    pub name: String,
    /// The public path, such as `/api/generate`; with `prefix`, every path under it.
    pub path: String,
    /// Whether `path` is a prefix (it then ends with `/`).
    pub prefix: bool,
    /// Accepted methods, upper case (see [`METHODS`]).
    pub methods: Vec<String>,
    /// Where calls go: the whole URL for an exact route, the base the rest of the path is
    /// appended to for a prefix route. Plain `http://` (terminate TLS in front of a remote one).
    pub upstream_url: String,
    /// The key sent upstream, if any.
    pub upstream_key: Option<String>,
    /// The header it is sent in: `authorization` (as `Bearer <key>`) or any other (as is).
    pub upstream_key_header: String,
    /// Charged per successful call.
    pub price_per_call: Money,
    /// Charged per unit, with `units_pointer`.
    pub price_per_unit: Option<Money>,
    /// A JSON pointer to the units a call asks for (a positive integer, 1 when absent).
    pub units_pointer: Option<String>,
    /// The most units one call may ask for (at most [`MAX_UNITS`]).
    pub max_units: u64,
    /// A top-level JSON body field that may carry the client's key (removed before forwarding).
    pub key_field: Option<String>,
    /// A JSON pointer to the model, checked against the key's allow-list.
    pub model_pointer: Option<String>,
    /// The statuses that count as success (and are billed); empty means any 2xx.
    pub success_statuses: Vec<u16>,
    /// Time to the upstream's response headers, in seconds.
    pub timeout_secs: u32,
    /// Whether a request may ask for a stream (`"stream": true`).
    pub allow_stream: bool,
    /// Whether the route is served.
    pub enabled: bool,
}

impl RouteSpec {
    /// A POST route priced at zero per call, enabled, 60 s timeout, one unit per call.
    pub fn new(name: &str, path: &str, upstream_url: &str) -> Self {
        RouteSpec {
            name: name.to_owned(),
            path: path.to_owned(),
            prefix: false,
            methods: vec!["POST".to_owned()],
            upstream_url: upstream_url.to_owned(),
            upstream_key: None,
            upstream_key_header: "authorization".to_owned(),
            price_per_call: Money::ZERO,
            price_per_unit: None,
            units_pointer: None,
            max_units: 100,
            key_field: None,
            model_pointer: None,
            success_statuses: Vec::new(),
            timeout_secs: 60,
            allow_stream: false,
            enabled: true,
        }
    }

    /// Checks every field; the error names the first one wrong.
    pub fn validate(&self) -> Result<(), RouteError> {
        let invalid = |field: &'static str, reason: &str| Err(RouteError { field, reason: reason.to_owned() });
        if self.name.trim().is_empty() || self.name.chars().count() > 64 || self.name.chars().any(char::is_control) {
            return invalid("name", "must be 1 to 64 characters, without control characters");
        }
        if !valid_path(&self.path) {
            return invalid("path", "must start with `/` and hold at most 200 URL path characters (no `?`, `#`, `..`)");
        }
        if self.prefix != self.path.ends_with('/') {
            return invalid("path", "a prefix route's path ends with `/`, an exact route's does not");
        }
        if self.path == "/" {
            return invalid("path", "`/` would take over every path");
        }
        if self.methods.is_empty() || self.methods.iter().any(|m| !METHODS.contains(&m.as_str())) {
            return invalid("methods", "must name at least one of GET, POST, PUT, PATCH, DELETE");
        }
        match self.upstream_url.strip_prefix("http://") {
            Some(rest) if !rest.is_empty() && !rest.starts_with('/') && self.upstream_url.len() <= MAX_PATH_LEN => {}
            _ => return invalid("upstream_url", "must be an http:// URL of at most 200 characters"),
        }
        if self.upstream_url.contains(['?', '#', ' ']) {
            return invalid("upstream_url", "must not hold a query, a fragment or spaces");
        }
        if self
            .upstream_key
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.len() > 512 || !k.bytes().all(|b| b.is_ascii_graphic()))
        {
            return invalid("upstream_key", "must be 1 to 512 printable ASCII characters");
        }
        let header = &self.upstream_key_header;
        if header.is_empty() || header.len() > 64 || !header.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return invalid("upstream_key_header", "must be a header name (letters, digits, `-`)");
        }
        if self.price_per_call.is_negative() || self.price_per_unit.is_some_and(Money::is_negative) {
            return invalid("price_per_call", "prices must not be negative");
        }
        if self.price_per_unit.is_some() != self.units_pointer.is_some() {
            return invalid(
                "units_pointer",
                "a price per unit needs a units pointer, and a units pointer a price per unit",
            );
        }
        for (field, pointer) in [("units_pointer", &self.units_pointer), ("model_pointer", &self.model_pointer)] {
            if pointer.as_ref().is_some_and(|p| !valid_pointer(p)) {
                return invalid(field, "must be a JSON pointer such as `/batch_size` (at most 100 characters)");
            }
        }
        if !(1..=MAX_UNITS).contains(&self.max_units) {
            return invalid("max_units", "must be 1 to 10000");
        }
        if self.key_field.as_ref().is_some_and(|f| f.is_empty() || f.len() > 64 || f.chars().any(char::is_control)) {
            return invalid("key_field", "must be 1 to 64 characters");
        }
        if self.success_statuses.iter().any(|s| !(200..=399).contains(s)) || self.success_statuses.len() > 20 {
            return invalid("success_statuses", "must hold at most 20 statuses from 200 to 399");
        }
        if !(1..=MAX_TIMEOUT_SECS).contains(&self.timeout_secs) {
            return invalid("timeout_secs", "must be 1 to 3600");
        }
        Ok(())
    }

    /// Whether `path` (without its query) is this route's.
    pub fn matches(&self, path: &str) -> bool {
        if self.prefix { path.starts_with(&self.path) } else { path == self.path }
    }

    /// Whether `status` counts as a successful call.
    pub fn succeeded(&self, status: u16) -> bool {
        if self.success_statuses.is_empty() {
            (200..300).contains(&status)
        } else {
            self.success_statuses.contains(&status)
        }
    }

    /// The price the billing layer applies: `price_per_call` per request, `price_per_unit` per
    /// unit (counted as images).
    pub fn price(&self) -> ModelPrice {
        ModelPrice { per_request: Some(self.price_per_call), per_image: self.price_per_unit, ..ModelPrice::default() }
    }
}

fn valid_path(path: &str) -> bool {
    path.starts_with('/')
        && path.len() <= MAX_PATH_LEN
        && !path.contains("//")
        && !path.split('/').any(|segment| segment == ".." || segment == ".")
        && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-._~:@!$&'()*+,;=%".contains(&b))
}

fn valid_pointer(pointer: &str) -> bool {
    pointer.starts_with('/') && pointer.len() <= 100 && !pointer.chars().any(char::is_control)
}

/// Why a route definition was refused: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {reason}")]
pub struct RouteError {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// A stored route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeteredRoute {
    /// Primary key.
    pub id: RouteId,
    /// What was declared.
    pub spec: RouteSpec,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Stored routes.
#[async_trait]
pub trait RouteStore: Send + Sync {
    /// Every route, by id.
    async fn routes(&self) -> Result<Vec<MeteredRoute>, StoreError>;
    /// One route.
    async fn route(&self, id: RouteId) -> Result<Option<MeteredRoute>, StoreError>;
    /// Stores a new route; [`StoreError::Conflict`] when its name or path is taken.
    async fn create_route(&self, spec: &RouteSpec) -> Result<MeteredRoute, StoreError>;
    /// Replaces a route's definition; [`StoreError::NotFound`], or a conflict as on create.
    async fn update_route(&self, id: RouteId, spec: &RouteSpec) -> Result<MeteredRoute, StoreError>;
    /// Removes a route (its usage rows stay); [`StoreError::NotFound`] when there is none.
    async fn delete_route(&self, id: RouteId) -> Result<(), StoreError>;
}

/// What one request to a route asks for, read from its JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteCall {
    /// Units to bill (1 without a units pointer or when the body does not set it).
    pub units: u64,
    /// The model the body names, when the route has a model pointer.
    pub model: Option<String>,
    /// Whether the body asks for a stream.
    pub stream: bool,
    /// The client's key, taken out of the body's key field.
    pub key: Option<String>,
}

/// Why a request to a route was refused before it was forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The units field is not a positive integer, or asks for more than the route allows.
    #[error("`{pointer}` must be a whole number from 1 to {max}")]
    Units {
        /// The units pointer.
        pointer: String,
        /// The route's `max_units`.
        max: u64,
    },
    /// The model field is not a string of 1 to 128 characters.
    #[error("`{0}` must be a string of 1 to 128 characters")]
    Model(String),
    /// The body asks for a stream and the route does not stream.
    #[error("this route does not stream")]
    Stream,
    /// The key field holds something other than a string.
    #[error("`{0}` must be a string")]
    Key(String),
}

impl RouteCall {
    /// Reads `body` (`None` when it is not JSON) for `spec`, taking the client's key out of it.
    pub fn read(spec: &RouteSpec, mut body: Option<&mut Value>) -> Result<RouteCall, CallError> {
        let key = match (&spec.key_field, body.as_deref_mut().and_then(Value::as_object_mut)) {
            (Some(field), Some(object)) => match object.remove(field) {
                None | Some(Value::Null) => None,
                Some(Value::String(key)) => Some(key),
                Some(_) => return Err(CallError::Key(field.clone())),
            },
            _ => None,
        };
        let body = body.as_deref();
        let at = |pointer: &Option<String>| pointer.as_deref().and_then(|p| body.and_then(|b| b.pointer(p)));
        let units = match at(&spec.units_pointer) {
            None | Some(Value::Null) => 1,
            Some(value) => {
                value.as_u64().filter(|units| (1..=spec.max_units.min(MAX_UNITS)).contains(units)).ok_or_else(|| {
                    CallError::Units { pointer: spec.units_pointer.clone().unwrap_or_default(), max: spec.max_units }
                })?
            }
        };
        let model = match at(&spec.model_pointer) {
            None | Some(Value::Null) => None,
            Some(Value::String(model))
                if !model.is_empty() && model.len() <= 128 && !model.chars().any(char::is_control) =>
            {
                Some(model.clone())
            }
            Some(_) => return Err(CallError::Model(spec.model_pointer.clone().unwrap_or_default())),
        };
        let stream = body.and_then(|b| b.get("stream")).and_then(Value::as_bool) == Some(true);
        if stream && !spec.allow_stream {
            return Err(CallError::Stream);
        }
        Ok(RouteCall { units, model, stream, key })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec() -> RouteSpec {
        let mut spec = RouteSpec::new("images", "/api/generate", "http://127.0.0.1:7860/api/generate");
        spec.price_per_call = Money::parse("0.01").unwrap();
        spec
    }

    #[test]
    fn a_plain_route_is_valid_and_matches_only_its_path() {
        let spec = spec();
        assert_eq!(spec.validate(), Ok(()));
        assert!(spec.matches("/api/generate"));
        assert!(!spec.matches("/api/generate/x"));
        let mut prefix = RouteSpec::new("audio", "/v1/audio/", "http://127.0.0.1:1/v1/audio/");
        prefix.prefix = true;
        assert_eq!(prefix.validate(), Ok(()));
        assert!(prefix.matches("/v1/audio/speech"));
        assert!(!prefix.matches("/v1/audio"));
    }

    #[test]
    fn bad_definitions_name_their_field() {
        type Change = fn(&mut RouteSpec);
        let cases: [(&str, Change); 12] = [
            ("name", |s| s.name = " ".into()),
            ("path", |s| s.path = "api/generate".into()),
            ("path", |s| s.path = "/api/../admin".into()),
            ("path", |s| s.path = "/api/generate/".into()),
            ("methods", |s| s.methods = vec!["TRACE".into()]),
            ("upstream_url", |s| s.upstream_url = "https://example.com".into()),
            ("price_per_call", |s| s.price_per_call = Money::from_micros(-1)),
            ("units_pointer", |s| s.price_per_unit = Some(Money::ZERO)),
            ("units_pointer", |s| {
                s.price_per_unit = Some(Money::ZERO);
                s.units_pointer = Some("batch_size".into());
            }),
            ("max_units", |s| s.max_units = 0),
            ("success_statuses", |s| s.success_statuses = vec![500]),
            ("timeout_secs", |s| s.timeout_secs = 0),
        ];
        for (field, change) in cases {
            let mut spec = spec();
            change(&mut spec);
            assert_eq!(spec.validate().map_err(|e| e.field), Err(field), "{spec:?}");
        }
    }

    #[test]
    fn units_are_bounded_whole_numbers() {
        let mut spec = spec();
        spec.price_per_unit = Some(Money::parse("0.05").unwrap());
        spec.units_pointer = Some("/batch_size".into());
        spec.max_units = 8;
        let units = |body: Value| RouteCall::read(&spec, Some(&mut body.clone())).map(|c| c.units);
        assert_eq!(units(json!({"batch_size": 4})), Ok(4));
        assert_eq!(units(json!({})), Ok(1));
        assert_eq!(units(json!({"batch_size": null})), Ok(1));
        for bad in [json!(0), json!(-1), json!(1.5), json!("4"), json!(9), json!(u64::MAX)] {
            assert!(matches!(units(json!({"batch_size": bad})), Err(CallError::Units { max: 8, .. })), "{bad}");
        }
        assert_eq!(RouteCall::read(&spec, None).map(|c| c.units), Ok(1));
    }

    #[test]
    fn the_key_field_is_taken_out_and_the_model_read() {
        let mut spec = spec();
        spec.key_field = Some("apiKey".into());
        spec.model_pointer = Some("/model".into());
        let mut body = json!({"apiKey": "k-0123456789abcdef", "model": "sdxl", "prompt": "p"});
        let call = RouteCall::read(&spec, Some(&mut body)).unwrap();
        assert_eq!((call.key.as_deref(), call.model.as_deref()), (Some("k-0123456789abcdef"), Some("sdxl")));
        assert_eq!(body, json!({"model": "sdxl", "prompt": "p"}));
        assert_eq!(RouteCall::read(&spec, Some(&mut json!({"apiKey": 7}))), Err(CallError::Key("apiKey".into())));
        assert_eq!(RouteCall::read(&spec, Some(&mut json!({"model": 7}))), Err(CallError::Model("/model".into())));
    }

    #[test]
    fn a_stream_is_refused_unless_allowed() {
        let mut spec = spec();
        assert_eq!(RouteCall::read(&spec, Some(&mut json!({"stream": true}))), Err(CallError::Stream));
        spec.allow_stream = true;
        assert!(RouteCall::read(&spec, Some(&mut json!({"stream": true}))).unwrap().stream);
    }

    #[test]
    fn success_is_2xx_unless_listed() {
        let mut spec = spec();
        assert!(spec.succeeded(200) && spec.succeeded(204) && !spec.succeeded(302) && !spec.succeeded(500));
        spec.success_statuses = vec![200];
        assert!(spec.succeeded(200) && !spec.succeeded(202));
    }
}
