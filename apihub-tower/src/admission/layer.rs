//! [`AdmissionLayer`]: admission's settings, cheap to clone.

use std::fmt;
use std::sync::Arc;

use tower::Layer;

use super::Admission;
use super::admit::Policies;
use crate::auth::{AhgKeys, KeyCache, KeyFormat};
use crate::clock::{Clock, SystemClock};
use crate::extract::UsageExtractor;
use crate::rate_limit::RateLimiter;

/// Applies [`Admission`]: key authentication, and optionally rate limits and request reading.
#[derive(Clone)]
pub struct AdmissionLayer {
    policies: Policies,
}

impl fmt::Debug for AdmissionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionLayer")
            .field("cache", &self.policies.cache)
            .field("format", &self.policies.format)
            .field("rate_limited", &self.policies.limiter.is_some())
            .field("max_body_bytes", &self.policies.max_body_bytes)
            .field("reads_requests", &self.policies.extractor.is_some())
            .finish_non_exhaustive()
    }
}

impl AdmissionLayer {
    /// Admission that authenticates `ahg_` keys through `cache` (expiry judged by the system
    /// clock), with no rate limits, and reads no request (billing refuses what it cannot read:
    /// see [`read_requests`](AdmissionLayer::read_requests)). Bodies of up to 16 MiB.
    pub fn new(cache: Arc<KeyCache>) -> Self {
        AdmissionLayer {
            policies: Policies {
                cache,
                format: Arc::new(AhgKeys),
                clock: Arc::new(SystemClock),
                limiter: None,
                max_body_bytes: 16 * 1024 * 1024,
                extractor: None,
            },
        }
    }

    /// Reads presented keys with `format` (default [`AhgKeys`]).
    pub fn key_format(mut self, format: Arc<dyn KeyFormat>) -> Self {
        self.policies.format = format;
        self
    }

    /// Judges key expiry by `clock`.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.policies.clock = clock;
        self
    }

    /// Enforces each key's rate limits with `limiter` (in-process, or shared by several gateways).
    pub fn rate_limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.policies.limiter = Some(limiter);
        self
    }

    /// Largest request body accepted (413 beyond it).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.policies.max_body_bytes = bytes;
        self
    }

    /// Reads each request with `extractor` (a path it does not meter is a 404) and checks what it
    /// asks for against the key's policy, leaving the [`RequestInfo`](apihub_core::usage::RequestInfo)
    /// for billing.
    pub fn read_requests(mut self, extractor: Arc<dyn UsageExtractor>) -> Self {
        self.policies.extractor = Some(extractor);
        self
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission { inner, policies: Arc::new(self.policies.clone()) }
    }
}
