//! The stale-hold sweeper: frees holds nothing will ever settle.
//!
//! A hold is closed by its request (settled, released, or released on drop), and a settlement
//! the store failed to write is retried until it is ([`SettlementBacklog`](super::SettlementBacklog)).
//! What is left is a process that stopped with holds open (a crash, a `kill -9`, a runtime shut
//! down under a retry): a store shared by several processes keeps those holds until something
//! frees them. [`sweep_stale_holds`] asks the store, every `every`, to free holds older than
//! `age` by the store's own clock ([`BillingStore::release_stale`]); a store that keeps holds in
//! its process's memory frees none, and loses nothing by being swept.

use std::sync::Arc;
use std::time::Duration;

use apihub_core::billing::BillingStore;

/// Frees `store`'s holds older than `age`, every `every`, for as long as it runs: spawn it beside
/// the service and abort it at shutdown. `age` must exceed the longest request (a stream's hold
/// stays open while it runs); the reference server uses two hours.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use apihub_tower::billing::sweep_stale_holds;
/// use apihub_tower::memory::MemoryStore;
///
/// # async fn run() {
/// let sweeper = tokio::spawn(sweep_stale_holds(
///     Arc::new(MemoryStore::new()),
///     Duration::from_secs(60),
///     Duration::from_secs(2 * 3600),
/// ));
/// // … at shutdown:
/// sweeper.abort();
/// # }
/// ```
pub async fn sweep_stale_holds(store: Arc<dyn BillingStore>, every: Duration, age: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.release_stale(age).await {
            Ok(0) => {}
            Ok(released) => tracing::warn!(released, "released stale holds"),
            Err(error) => tracing::error!(%error, "sweeping stale holds failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use apihub_core::billing::{BillingError, NewReservation, ReservationId, Settled, Settlement, UserFunds};
    use apihub_core::user::UserId;
    use async_trait::async_trait;

    use super::*;

    /// A store that records the ages it was asked to sweep, and fails every other sweep.
    #[derive(Default)]
    struct Swept(Mutex<Vec<Duration>>);

    #[async_trait]
    impl BillingStore for Swept {
        async fn reserve(&self, _: &NewReservation) -> Result<ReservationId, BillingError> {
            Err(BillingError::NotOpen(0))
        }
        async fn settle(&self, id: ReservationId, _: &Settlement) -> Result<Settled, BillingError> {
            Err(BillingError::NotOpen(id))
        }
        async fn release(&self, id: ReservationId) -> Result<(), BillingError> {
            Err(BillingError::NotOpen(id))
        }
        async fn release_stale(&self, age: Duration) -> Result<u64, BillingError> {
            let mut ages = self.0.lock().unwrap();
            ages.push(age);
            if ages.len().is_multiple_of(2) {
                return Err(BillingError::Store(apihub_core::store::StoreError::Unavailable("down".into())));
            }
            Ok(1)
        }
        async fn reserved_funds(&self, _: UserId) -> Result<UserFunds, BillingError> {
            Err(BillingError::NotOpen(0))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweeper_asks_the_store_every_period_and_outlives_its_failures() {
        let store = Arc::new(Swept::default());
        let age = Duration::from_secs(7200);
        let sweeper = tokio::spawn(sweep_stale_holds(store.clone(), Duration::from_secs(60), age));
        // The first sweep runs at once, then one a minute: at 0, 60, 120 and 180 s.
        tokio::time::sleep(Duration::from_secs(181)).await;
        sweeper.abort();
        assert_eq!(*store.0.lock().unwrap(), vec![age; 4], "a failed sweep does not stop the next");
    }
}
