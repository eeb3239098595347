//! What the layers leave in request extensions for the layers (and services) inside them.

use std::sync::Arc;

use crate::auth::KeyRecord;
use crate::log_sample::LogSample;

/// The authenticated key, put into request extensions by admission (or, for users an application
/// signed in itself, by the application's own middleware: see [`crate::auth`]).
#[derive(Debug, Clone)]
pub struct AuthenticatedKey {
    /// The key as looked up (policy and counters as of the last cache fill).
    pub key: Arc<KeyRecord>,
}

impl AuthenticatedKey {
    /// The identity of `key`.
    pub fn new(key: KeyRecord) -> Self {
        AuthenticatedKey { key: Arc::new(key) }
    }
}

/// The gateway's id for a request: `gw-` and a UUID. It names the request's consume row (its
/// `order_no`), so it is always made here, never taken from the client; a server should refuse
/// order numbers with the [`RequestId::PREFIX`] from anyone else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// What every gateway request id starts with.
    pub const PREFIX: &'static str = "gw-";

    /// The id a layer further out already assigned, or a new one ([`time_ordered_uuid`]).
    pub fn of<B>(request: &http::Request<B>) -> RequestId {
        request
            .extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(format!("{}{}", Self::PREFIX, time_ordered_uuid().simple())))
    }
}

/// A new version 7 UUID: the time in milliseconds, then random bits from the thread's generator.
///
/// Ids made later sort later, so a store's unique index on request ids (the ledger's) grows at its
/// end: with random ids each settlement in a batch landed on a page of its own, and a batch of
/// 700 rewrote about 700 index pages. (`uuid`'s own generators also ask the kernel for every id,
/// a system call per request.)
pub fn time_ordered_uuid() -> uuid::Uuid {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
    uuid::Builder::from_unix_timestamp_millis(millis, &rand::random()).into_uuid()
}

/// The request's [`AuthenticatedKey`], or billing's refusal of a request without one (logged as an
/// error, since it means the stack is mis-assembled).
///
/// Billing acts for a key: it forwards no request that carries no [`AuthenticatedKey`], however
/// the stack was assembled. The refusal is a 401 `invalid_api_key` rather than a 5xx: the
/// extension is put there by whatever authenticates requests
/// ([`Admission`](crate::admission::Admission), or an application's own middleware for users it
/// signed in), and a layer cannot tell "nothing authenticated this request" from "the
/// authenticating layer let an anonymous request by". In the second case the client can act on a
/// 401 (send a key); in the first, nothing is forwarded or billed either way, and the error log
/// names the layer, so the operator finds the mis-assembly. A 503 would invite clients to retry a
/// request that can never succeed.
pub(crate) fn require_key<'a, B>(
    request: &'a http::Request<B>,
    layer: &'static str,
) -> Result<&'a AuthenticatedKey, crate::body::GatewayError> {
    request.extensions().get::<AuthenticatedKey>().ok_or_else(|| {
        static LOG: LogSample = LogSample::new();
        if let Some(skipped) = LOG.sample() {
            tracing::error!(
                layer,
                path = request.uri().path(),
                skipped,
                "refused a request without an authenticated key: admission must run before this layer \
                 (use GatewayBuilder, or put AdmissionLayer in front of it)"
            );
        }
        crate::body::GatewayError::new(
            http::StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            "this request carries no authenticated API key",
        )
    })
}

/// Which upstream answered, put into response extensions by an upstream service that chooses
/// among several (the gateway's channels); the billing layer copies it into the usage record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedBy {
    /// The upstream's name.
    pub upstream: String,
    /// Upstreams tried for this request, the one that answered included.
    pub attempts: u32,
    /// What the operator pays that upstream for the request's model, when it is known: the
    /// billing layer applies it to the usage billed and records the result as the usage record's
    /// `cost`.
    pub cost_price: Option<apihub_core::pricing::ModelPrice>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_made_later_sort_later() {
        let first = RequestId::of(&http::Request::new(()));
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = RequestId::of(&http::Request::new(()));
        assert!(first.0 < second.0, "{} then {}", first.0, second.0);
        assert!(first.0.starts_with(RequestId::PREFIX) && first.0.len() == RequestId::PREFIX.len() + 32);
        assert_eq!(time_ordered_uuid().get_version_num(), 7);
        assert_ne!(time_ordered_uuid(), time_ordered_uuid());
    }
}
