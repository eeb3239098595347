use tower::Layer;

use super::Quota;

/// Applies [`Quota`], buffering request bodies of at most `max_body_bytes`.
#[derive(Debug, Clone, Copy)]
pub struct QuotaLayer {
    max_body_bytes: usize,
}

impl QuotaLayer {
    /// Buffers at most `max_body_bytes` of each request body (413 beyond).
    pub fn new(max_body_bytes: usize) -> Self {
        QuotaLayer { max_body_bytes }
    }
}

impl<S> Layer<S> for QuotaLayer {
    type Service = Quota<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Quota { inner, max_body_bytes: self.max_body_bytes }
    }
}
