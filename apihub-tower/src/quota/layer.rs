use std::fmt;
use std::sync::Arc;

use tower::Layer;

use super::Quota;
use crate::extract::{LlmExtractor, UsageExtractor};

/// Applies [`Quota`], buffering request bodies of at most `max_body_bytes`.
#[derive(Clone)]
pub struct QuotaLayer {
    max_body_bytes: usize,
    extractor: Arc<dyn UsageExtractor>,
}

impl fmt::Debug for QuotaLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuotaLayer").field("max_body_bytes", &self.max_body_bytes).finish_non_exhaustive()
    }
}

// `Quota`'s `Debug` sits here, beside the layer's, to keep `service.rs` to its request path.
impl<S: fmt::Debug> fmt::Debug for Quota<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quota")
            .field("inner", &self.inner)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl QuotaLayer {
    /// Buffers at most `max_body_bytes` of each request body (413 beyond) and reads LLM requests.
    pub fn new(max_body_bytes: usize) -> Self {
        QuotaLayer { max_body_bytes, extractor: Arc::new(LlmExtractor) }
    }

    /// Reads requests with `extractor` instead.
    pub fn with_extractor(mut self, extractor: Arc<dyn UsageExtractor>) -> Self {
        self.extractor = extractor;
        self
    }
}

impl<S> Layer<S> for QuotaLayer {
    type Service = Quota<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Quota { inner, max_body_bytes: self.max_body_bytes, extractor: self.extractor.clone() }
    }
}
