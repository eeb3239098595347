//! Admission: everything a request must pass before billing, run by one middleware with one
//! typed future, in this order:
//!
//! 1. **who**: the key the client presents ([`crate::auth`]), or the identity an application's
//!    own middleware put in the request's extensions for a user it signed in itself;
//! 2. **how often**: the key's rate limits ([`crate::rate_limit`]), before the body is read, so
//!    the cheapest refusal costs the least;
//! 3. **what**: the body is read whole (up to a limit, 413 beyond it) and, when admission reads
//!    requests ([`AdmissionLayer::read_requests`]), parsed for the model, stream flag and output
//!    cap; a path the extractor does not meter is a 404 and what the key may not ask for a 403
//!    ([`crate::quota`]).
//!
//! The inner service receives a `Request<`[`ForwardedBody`](crate::body::ForwardedBody)`>` with
//! the [`AuthenticatedKey`](crate::context::AuthenticatedKey) and, when read, the
//! [`RequestInfo`](apihub_core::usage::RequestInfo) in its extensions: billing accepts no other
//! request body, so it cannot be mounted without admission in front of it. A refusal is answered
//! here (an OpenAI-shaped error, the [`GatewayError`](crate::GatewayError) in its extensions) and
//! never reaches the inner service; an admitted request's response gets the rate-limit headers.
//!
//! ```
//! use std::sync::Arc;
//! use apihub_tower::admission::AdmissionLayer;
//! use apihub_tower::auth::KeyCache;
//! use apihub_tower::body::ForwardedBody;
//! use apihub_tower::memory::MemoryStore;
//! use tower::ServiceBuilder;
//!
//! let cache = Arc::new(KeyCache::new(Arc::new(MemoryStore::new())));
//! // Key authentication only: no rate limits, requests not read.
//! let _stack = ServiceBuilder::new().layer(AdmissionLayer::new(cache)).service(tower::service_fn(
//!     |_req: http::Request<ForwardedBody>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//!     },
//! ));
//! ```

mod admit;
mod body;
mod future;
mod layer;
mod service;

pub use body::AdmissionBody;
pub use future::ResponseFuture;
pub use layer::AdmissionLayer;
pub use service::Admission;
