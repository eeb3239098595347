use std::sync::Arc;

use tower::Layer;

use super::{RateLimit, RateLimiter};

/// Applies [`RateLimit`] with a shared [`RateLimiter`].
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<dyn RateLimiter>,
}

impl RateLimitLayer {
    /// Limits with `limiter` (in-process, or shared by several gateways).
    pub fn new(limiter: Arc<dyn RateLimiter>) -> Self {
        RateLimitLayer { limiter }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit { inner, limiter: self.limiter.clone() }
    }
}
