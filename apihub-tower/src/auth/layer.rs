use std::fmt;
use std::sync::Arc;

use tower::Layer;

use super::{KeyAuth, KeyCache};
use crate::clock::{Clock, SystemClock};

/// Applies [`KeyAuth`]: authenticates `ahg_` keys through a [`KeyCache`].
#[derive(Clone)]
pub struct KeyAuthLayer {
    cache: Arc<KeyCache>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for KeyAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyAuthLayer").field("cache", &self.cache).finish_non_exhaustive()
    }
}

// `KeyAuth`'s `Debug` sits here, beside the layer's, to keep `service.rs` to its request path.
impl<S: fmt::Debug> fmt::Debug for KeyAuth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyAuth").field("inner", &self.inner).field("cache", &self.cache).finish_non_exhaustive()
    }
}

impl KeyAuthLayer {
    /// Authenticates against `cache`, judging expiry by the system clock.
    pub fn new(cache: Arc<KeyCache>) -> Self {
        KeyAuthLayer { cache, clock: Arc::new(SystemClock) }
    }

    /// Judges expiry by `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

impl<S> Layer<S> for KeyAuthLayer {
    type Service = KeyAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyAuth { inner, cache: self.cache.clone(), clock: self.clock.clone() }
    }
}
