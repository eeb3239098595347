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

#[cfg(test)]
mod tests {
    use super::*;
    use apihub_core::Money;

    #[tokio::test]
    async fn set_list_delete() {
        let store = MemoryStore::new();
        let price = ModelPrice { input: Money::from_credits(1), ..ModelPrice::default() };
        store.set_price("b", &price).await.unwrap();
        store.set_price("a", &ModelPrice::default()).await.unwrap();
        store.set_price("b", &ModelPrice { output: Money::from_credits(2), ..price }).await.unwrap();
        let listed = store.prices().await.unwrap();
        assert_eq!(listed.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(listed[1].1.output, Money::from_credits(2));
        store.delete_price("a").await.unwrap();
        assert!(matches!(store.delete_price("a").await, Err(StoreError::NotFound)));
    }
}
