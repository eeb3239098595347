//! The [`BillingStore`] on SQL: holds, settlements and releases go to the credit engine of the
//! backend (SQLite: [`super::engine`]; PostgreSQL: [`super::leases`]); what is here reads the
//! funds and holds, and frees holds that an older version kept in the `reservations` table.

use apihub_core::Money;
use apihub_core::billing::{BillingError, BillingStore, NewReservation, ReservationId, Settled, Settlement, UserFunds};
use apihub_core::credit::StoredKey;
use apihub_core::policy::KeyId;
use apihub_core::store::StoreError;
use apihub_core::user::UserId;
use async_trait::async_trait;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::cached::Cached;
use super::schema::{api_keys, credit_leases, reservations, users};
use super::{Db, DbNowMillis, SqlStore, with_conn, write_op};

/// The error a billing transaction rolls back with.
#[derive(Debug)]
pub(crate) struct BillingTx(pub BillingError);

impl From<diesel::result::Error> for BillingTx {
    fn from(error: diesel::result::Error) -> Self {
        BillingTx(BillingError::Store(super::TxError::from(error).0))
    }
}

impl From<StoreError> for BillingTx {
    fn from(error: StoreError) -> Self {
        BillingTx(BillingError::Store(error))
    }
}

impl From<BillingError> for BillingTx {
    fn from(error: BillingError) -> Self {
        BillingTx(error)
    }
}

/// A `reservations` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = reservations)]
struct ReservationRow {
    user_id: i64,
    key_id: i64,
    amount: i64,
    tokens: i64,
}

#[derive(Insertable)]
#[diesel(table_name = reservations)]
struct NewReservationRow<'a> {
    user_id: i64,
    key_id: i64,
    request_id: &'a str,
    amount: i64,
    tokens: i64,
}

/// A key's limits and usage: what the credit engine keeps of a key.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = api_keys)]
pub(super) struct KeyLimitsRow {
    user_id: i64,
    token_limit: Option<i64>,
    quota_limit: Option<i64>,
    remaining_calls: Option<i64>,
    tokens_used: i64,
    quota_used: i64,
}

impl KeyLimitsRow {
    /// The row as the credit engine's book keeps it (its holds live in the book instead).
    pub(super) fn stored(&self) -> StoredKey {
        StoredKey {
            user_id: self.user_id,
            token_limit: self.token_limit,
            quota_limit: self.quota_limit.map(Money::from_micros),
            remaining_calls: self.remaining_calls,
            tokens_used: self.tokens_used,
            quota_used: Money::from_micros(self.quota_used),
        }
    }
}

/// Frees a reservation's holds on its user and key (the row is already deleted).
macro_rules! free_holds {
    ($conn:ident, $row:expr) => {{
        let row: &ReservationRow = $row;
        Cached(diesel::update(users::table.find(row.user_id)).set(users::reserved.eq(users::reserved - row.amount)))
            .execute($conn)
            .await?;
        // The key may have been deleted meanwhile; then there is nothing to free on it.
        Cached(diesel::update(api_keys::table.find(row.key_id)).set((
            api_keys::tokens_reserved.eq(api_keys::tokens_reserved - row.tokens),
            api_keys::quota_reserved.eq(api_keys::quota_reserved - row.amount),
            api_keys::calls_reserved.eq(api_keys::calls_reserved - 1),
        )))
        .execute($conn)
        .await?;
    }};
}

impl SqlStore {
    /// Reservations open now (held, not yet settled or released), whichever node made them.
    pub async fn open_reservations(&self) -> Result<i64, StoreError> {
        if let Some(engine) = self.engine() {
            return Ok(i64::try_from(engine.open_holds()).unwrap_or(i64::MAX));
        }
        let here = self.leases().map_or(0, |engine| engine.open_holds());
        let old: i64 = with_conn!(self, |conn| Ok(reservations::table.count().get_result::<i64>(conn).await?))?;
        Ok(old.saturating_add(i64::try_from(here).unwrap_or(i64::MAX)))
    }

    /// What open holds take from a key: (tokens, credit in micros, calls).
    pub async fn key_holds(&self, key_id: KeyId) -> Result<(i64, i64, i64), StoreError> {
        if let Some(engine) = self.engine() {
            return Ok(engine.key_holds(key_id).unwrap_or_default());
        }
        if let Some(engine) = self.leases() {
            return Ok(engine.key_holds(key_id).unwrap_or_default());
        }
        let held: Option<(i64, i64, i64)> = with_conn!(self, |conn| {
            Ok(api_keys::table
                .find(key_id)
                .select((api_keys::tokens_reserved, api_keys::quota_reserved, api_keys::calls_reserved))
                .first(conn)
                .await
                .optional()?)
        })?;
        Ok(held.unwrap_or_default())
    }

    async fn release_one(&self, id: ReservationId) -> Result<(), BillingError> {
        write_op!(self, Applied, BillingTx, move |conn| {
            let row: Option<ReservationRow> = diesel::delete(reservations::table.find(id))
                .returning(ReservationRow::as_returning())
                .get_result(conn)
                .await
                .optional()?;
            let row = row.ok_or(BillingError::NotOpen(id))?;
            free_holds!(conn, &row);
            Ok(())
        })
    }
}

#[async_trait]
impl BillingStore for SqlStore {
    async fn reserve(&self, new: &NewReservation) -> Result<ReservationId, BillingError> {
        match &self.db {
            Db::Sqlite { engine, .. } => engine.reserve(new).await,
            Db::Postgres { engine, .. } => engine.reserve(new).await,
        }
    }

    async fn settle(&self, id: ReservationId, settlement: &Settlement) -> Result<Settled, BillingError> {
        match &self.db {
            Db::Sqlite { engine, .. } => engine.settle(id, settlement),
            Db::Postgres { engine, .. } => engine.settle(id, settlement),
        }
    }

    async fn release(&self, id: ReservationId) -> Result<(), BillingError> {
        match &self.db {
            Db::Sqlite { engine, .. } => engine.release(id),
            Db::Postgres { engine, .. } => engine.release(id),
        }
    }

    async fn release_stale(&self, age: std::time::Duration) -> Result<u64, BillingError> {
        if self.engine().is_some() {
            // Holds live in this process's memory: a crash frees them, and a request frees its own.
            return Ok(0);
        }
        let age = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        // Ages are measured with the database's clock, as holds are stamped with it: no node's
        // clock can make another node's live holds look stale.
        let stale: Vec<i64> = with_conn!(self, |conn| {
            Ok(reservations::table
                .filter((reservations::created_at + age).lt(DbNowMillis))
                .select(reservations::id)
                .load(conn)
                .await?)
        })?;
        let mut released = 0;
        for id in stale {
            match self.release_one(id).await {
                Ok(()) => released += 1,
                // Settled or released meanwhile by the request itself.
                Err(BillingError::NotOpen(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(released)
    }

    /// On SQLite the credit engine has every balance in memory; on PostgreSQL a gateway only
    /// knows its lease, and the balance would take a read after the batch write: `None`.
    fn known_balance(&self, user_id: UserId) -> Option<Money> {
        self.engine().and_then(|engine| engine.funds(user_id)).map(|funds| funds.balance)
    }

    async fn reserved_funds(&self, user_id: UserId) -> Result<UserFunds, BillingError> {
        if let Some(funds) = self.engine().and_then(|engine| engine.funds(user_id)) {
            return Ok(funds);
        }
        // On PostgreSQL `reserved` counts gateways' credit leases, most of which no request holds:
        // the view shows what requests hold (this gateway's, and any held the old way).
        let row: Option<(i64, i64, i64)> = with_conn!(self, |conn| {
            let leased: Vec<i64> = credit_leases::table
                .filter(credit_leases::user_id.eq(user_id))
                .filter(credit_leases::key_id.is_null())
                .select(credit_leases::amount)
                .load(conn)
                .await?;
            let row: Option<(i64, i64)> = users::table
                .find(user_id)
                .select((users::token_balance, users::reserved))
                .first(conn)
                .await
                .optional()?;
            Ok(row.map(|(balance, reserved)| (balance, reserved, leased.iter().sum())))
        })?;
        let (balance, reserved, leased) = row.ok_or(BillingError::Store(StoreError::NotFound))?;
        let held_here = self.leases().and_then(|engine| engine.user_holds(user_id)).map_or(0, |f| f.reserved.micros());
        let reserved = (reserved - leased).max(0) + held_here;
        Ok(UserFunds { balance: Money::from_micros(balance), reserved: Money::from_micros(reserved) })
    }
}
