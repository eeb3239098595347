use std::sync::Arc;

use apihub_core::billing::{BillingError, BillingStore, HoldRequest, ReservationId, Settled, Settlement};

use crate::log_sample::LogSample;

/// An open hold. It must be settled or released; if it is dropped open (a client disconnect, a
/// panic, a forgotten path) it releases itself on the runtime.
#[must_use = "a reservation must be settled or released"]
pub struct Reservation {
    store: Arc<dyn BillingStore>,
    id: ReservationId,
    hold: HoldRequest,
    open: bool,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation").field("id", &self.id).field("hold", &self.hold).field("open", &self.open).finish()
    }
}

impl Reservation {
    /// Wraps a reservation the store just made.
    pub fn new(store: Arc<dyn BillingStore>, id: ReservationId, hold: HoldRequest) -> Self {
        Reservation { store, id, hold, open: true }
    }

    /// What is held.
    pub fn hold(&self) -> HoldRequest {
        self.hold
    }

    /// Charges and closes.
    pub async fn settle(mut self, settlement: &Settlement) -> Result<Settled, BillingError> {
        self.open = false;
        self.store.settle(self.id, settlement).await
    }

    /// Charges and closes, unless the store fails: then the reservation stays open, to be tried
    /// again ([`BillingError::NotOpen`] also closes it: someone else closed it first).
    pub async fn try_settle(&mut self, settlement: &Settlement) -> Result<Settled, BillingError> {
        let result = self.store.settle(self.id, settlement).await;
        if !matches!(result, Err(BillingError::Store(_))) {
            self.open = false;
        }
        result
    }

    /// Frees the hold and closes.
    pub async fn release(mut self) -> Result<(), BillingError> {
        self.open = false;
        self.store.release(self.id).await
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let (store, id) = (self.store.clone(), self.id);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(error) = store.release(id).await {
                        static LOG: LogSample = LogSample::new();
                        if let Some(skipped) = LOG.sample() {
                            tracing::error!(%error, reservation = id, skipped, "releasing a dropped reservation failed");
                        }
                    }
                });
            }
            // No runtime (shutdown): the store's stale-hold sweep frees it on the next start.
            Err(_) => tracing::warn!(reservation = id, "reservation dropped without a runtime; left to the sweeper"),
        }
    }
}
