//! The price book the billing layer reads: an in-memory snapshot of `model_prices`, reloaded
//! after every change made through this node and every few seconds (for changes made on another).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use apihub_core::pricing::ModelPrice;
use apihub_core::store::{PriceStore, StoreError};
use apihub_tower::billing::PriceBook;

/// A snapshot of the prices table.
pub struct PriceCache {
    store: Arc<dyn PriceStore>,
    prices: RwLock<Arc<HashMap<String, ModelPrice>>>,
}

impl PriceCache {
    /// Loads every price.
    pub async fn load(store: Arc<dyn PriceStore>) -> Result<Self, StoreError> {
        let cache = PriceCache { store, prices: RwLock::new(Arc::default()) };
        cache.reload().await?;
        Ok(cache)
    }

    /// Reads the table again.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let fresh: HashMap<String, ModelPrice> = self.store.prices().await?.into_iter().collect();
        if let Ok(mut prices) = self.prices.write() {
            *prices = Arc::new(fresh);
        }
        Ok(())
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<HashMap<String, ModelPrice>> {
        self.prices.read().map(|p| p.clone()).unwrap_or_default()
    }
}

impl PriceBook for PriceCache {
    fn price(&self, model: &str) -> Option<ModelPrice> {
        self.prices.read().ok()?.get(model).copied()
    }
}
