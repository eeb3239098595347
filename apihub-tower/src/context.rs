//! What the layers leave in request extensions for the layers (and services) inside them.

use std::sync::Arc;

use apihub_core::DiscountRate;
use apihub_core::policy::ApiKey;
use apihub_core::user::UserId;

/// The authenticated key and its owner, put into request extensions by
/// [`KeyAuth`](crate::auth::KeyAuth).
#[derive(Debug, Clone)]
pub struct AuthenticatedKey {
    /// The key as stored (policy and counters as of the last cache fill).
    pub key: Arc<ApiKey>,
    /// The owner's id.
    pub user_id: UserId,
    /// The owner's discount rate.
    pub user_discount: DiscountRate,
}

/// The gateway's id for a request: `gw-` and a UUID. It names the request's consume row (its
/// `order_no`), so it is always made here, never taken from the client; a server should refuse
/// order numbers with the [`RequestId::PREFIX`] from anyone else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// What every gateway request id starts with.
    pub const PREFIX: &'static str = "gw-";

    /// The id a layer further out already assigned, or a new one.
    pub fn of<B>(request: &http::Request<B>) -> RequestId {
        request
            .extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(format!("{}{}", Self::PREFIX, uuid::Uuid::new_v4().simple())))
    }
}
