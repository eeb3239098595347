//! Model prices in memory.

use apihub_core::pricing::ModelPrice;
use apihub_core::store::{PriceStore, StoreError};
use async_trait::async_trait;

use super::MemoryStore;

#[async_trait]
impl PriceStore for MemoryStore {
    async fn prices(&self) -> Result<Vec<(String, ModelPrice)>, StoreError> {
        Ok(self.lock()?.prices.iter().map(|(model, price)| (model.clone(), *price)).collect())
    }

    async fn set_price(&self, model: &str, price: &ModelPrice) -> Result<(), StoreError> {
        self.lock()?.prices.insert(model.to_owned(), *price);
        Ok(())
    }

    async fn delete_price(&self, model: &str) -> Result<(), StoreError> {
        self.lock()?.prices.remove(model).map(|_| ()).ok_or(StoreError::NotFound)
    }
}
