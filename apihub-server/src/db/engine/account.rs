//! Account writes (a recharge, a redemption, a key update, an administrator's debit, …): what
//! one touched and may debit, and how it runs against the book; see the
//! [engine's docs](super).

use apihub_core::Money;
use apihub_core::billing::BillingError;
use apihub_core::credit::HoldError;
use apihub_core::policy::KeyId;
use apihub_core::store::StoreError;
use apihub_core::user::UserId;

use super::Engine;

/// What an account write touched, to read back into the book.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    /// Users whose balance may have changed.
    pub users: Vec<UserId>,
    /// Keys whose limits or counters may have changed.
    pub keys: Vec<KeyId>,
    /// Keys deleted.
    pub deleted_keys: Vec<KeyId>,
}

/// A debit an account write is about to make: held in the book while it is written, so it can
/// only take credit that no request holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Debiting {
    /// Whose balance.
    pub user_id: UserId,
    /// How much.
    pub amount: Money,
}

impl Touched {
    /// One user's balance.
    pub(crate) fn user(user_id: UserId) -> Self {
        Touched { users: vec![user_id], ..Touched::default() }
    }

    /// One key's row.
    pub(crate) fn key(key_id: KeyId) -> Self {
        Touched { keys: vec![key_id], ..Touched::default() }
    }
}

impl Engine {
    /// Runs an account write that changes balances or key rows: the queue is written first, then
    /// `write`, then what it touched is read back into the book; see the [module docs](super).
    pub(crate) async fn account_write<T>(
        &self,
        debiting: Option<Debiting>,
        write: impl AsyncFnOnce() -> Result<T, StoreError>,
        touched: impl FnOnce(&T) -> Touched,
    ) -> Result<T, StoreError> {
        if let Some(Debiting { user_id, .. }) = debiting {
            self.load(&[user_id], &[]).await.map_err(billing_to_store)?;
        }
        let mut order = self.order.lock().await;
        self.write_queued(&mut order).await?;
        if let Some(Debiting { user_id, amount }) = debiting {
            match self.book().hold_funds(user_id, amount) {
                Ok(()) => {}
                Err(HoldError::Refused(error)) => return Err(billing_to_store(error)),
                // Loaded above, and users are never forgotten.
                Err(_) => return Err(StoreError::NotFound),
            }
        }
        let value = write().await;
        if let Some(Debiting { user_id, amount }) = debiting {
            self.book().release_funds(user_id, amount);
        }
        let value = value?;
        let touched = touched(&value);
        {
            let mut book = self.book();
            for key_id in &touched.deleted_keys {
                book.forget_key(*key_id);
            }
        }
        let users: Vec<UserId> = touched.users.into_iter().filter(|id| self.book().has_user(*id)).collect();
        let keys: Vec<KeyId> = touched.keys.into_iter().filter(|id| self.book().has_key(*id)).collect();
        self.read_back(&users, &keys).await?;
        Ok(value)
    }
}

/// A refused admin debit in the ledger's terms (402 `insufficient_balance`, naming what is
/// available once open holds are counted).
fn billing_to_store(error: BillingError) -> StoreError {
    match error {
        BillingError::InsufficientBalance { available, required } => {
            StoreError::Ledger(apihub_core::ledger::LedgerError::InsufficientBalance { available, required })
        }
        BillingError::Store(error) => error,
        other => StoreError::Internal(apihub_core::store::Detail::caused_by(other)),
    }
}
