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
