//! Reservations on SQL: each step is one transaction of conditional updates, so concurrent
//! requests can never hold more than a balance or a key limit allows.

use apihub_core::Money;
use apihub_core::billing::{
    BillingError, BillingStore, KeyCounters, NewReservation, ReservationId, Settled, Settlement, UserFunds, check_hold,
    settle_amounts,
};
use apihub_core::credit::StoredKey;
use apihub_core::ledger::{MAX_DESCRIPTION_LEN, TxType};
use apihub_core::policy::KeyId;
use apihub_core::store::StoreError;
use apihub_core::user::UserId;
use async_trait::async_trait;
use chrono::Utc;
use diesel::dsl::case_when;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::cached::Cached;
use super::schema::{api_keys, reservations, transactions, users};
use super::{DbNowMillis, HoldCommit, SqlStore, now_millis, saturating_add, with_conn, write_op};

/// Marks a refusal that the rules no longer confirm: funds were freed concurrently (PostgreSQL's
/// read-committed re-check can see a release that the refused update did not). Retried.
const RACED: &str = "a hold raced with a concurrent release";

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
    request_id: String,
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

/// A key's limits, usage and (on PostgreSQL) holds: what `check_hold` reads, and what the credit
/// engine keeps of a key.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = api_keys)]
pub(super) struct KeyLimitsRow {
    user_id: i64,
    token_limit: Option<i64>,
    quota_limit: Option<i64>,
    remaining_calls: Option<i64>,
    tokens_used: i64,
    quota_used: i64,
    tokens_reserved: i64,
    quota_reserved: i64,
    calls_reserved: i64,
}

impl KeyLimitsRow {
    fn counters(&self) -> KeyCounters {
        KeyCounters {
            token_limit: self.token_limit,
            quota_limit: self.quota_limit.map(Money::from_micros),
            remaining_calls: self.remaining_calls,
            tokens_used: self.tokens_used,
            quota_used: Money::from_micros(self.quota_used),
            tokens_reserved: self.tokens_reserved,
            quota_reserved: Money::from_micros(self.quota_reserved),
            calls_reserved: self.calls_reserved,
        }
    }

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
        with_conn!(self, |conn| Ok(reservations::table.count().get_result::<i64>(conn).await?))
    }

    /// What open holds take from a key: (tokens, credit in micros, calls).
    pub async fn key_holds(&self, key_id: KeyId) -> Result<(i64, i64, i64), StoreError> {
        if let Some(engine) = self.engine() {
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
        if let Some(engine) = self.engine() {
            return engine.reserve(new).await;
        }
        // On its own task: a caller dropped while the hold's transaction is in flight (a client
        // that went away) cannot know whether it committed, so the task finishes it and frees
        // a hold nobody is left to settle, instead of leaving it to the stale-hold sweep.
        let (store, new) = (self.clone(), new.clone());
        let (answer, answered) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut attempt = 0;
            let result = loop {
                attempt += 1;
                match store.reserve_once(&new).await {
                    Err(BillingError::Store(StoreError::Unavailable(reason))) if reason == RACED && attempt < 3 => {
                        continue;
                    }
                    other => break other,
                }
            };
            if let Err(Ok(id)) = answer.send(result)
                && let Err(error) = store.release_one(id).await
            {
                tracing::error!(%error, reservation = id, "releasing the hold of a request that went away failed");
            }
        });
        answered.await.unwrap_or_else(|_| Err(StoreError::Unavailable("the hold's task ended".into()).into()))
    }

    async fn settle(&self, id: ReservationId, settlement: &Settlement) -> Result<Settled, BillingError> {
        match self.engine() {
            Some(engine) => engine.settle(id, settlement),
            None => self.settle_once(id, settlement).await,
        }
    }

    async fn release(&self, id: ReservationId) -> Result<(), BillingError> {
        match self.engine() {
            Some(engine) => engine.release(id),
            None => self.release_one(id).await,
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

    async fn reserved_funds(&self, user_id: UserId) -> Result<UserFunds, BillingError> {
        if let Some(funds) = self.engine().and_then(|engine| engine.funds(user_id)) {
            return Ok(funds);
        }
        let row: Option<(i64, i64)> = with_conn!(self, |conn| {
            Ok(users::table
                .find(user_id)
                .select((users::token_balance, users::reserved))
                .first(conn)
                .await
                .optional()?)
        })?;
        let (balance, reserved) = row.ok_or(BillingError::Store(StoreError::NotFound))?;
        Ok(UserFunds { balance: Money::from_micros(balance), reserved: Money::from_micros(reserved) })
    }
}

impl SqlStore {
    async fn reserve_once(&self, new: &NewReservation) -> Result<ReservationId, BillingError> {
        let (amount, tokens) = (new.hold.amount.micros(), new.hold.tokens);
        if amount < 0 || tokens < 0 {
            return Err(BillingError::Store(StoreError::Internal("a hold must not be negative".into())));
        }
        let new = new.clone();
        write_op!(self, Applied, BillingTx, move |conn| {
            conn.commit_without_flush().await?;
            let user_held = Cached(
                diesel::update(
                    users::table.find(new.user_id).filter((users::token_balance - users::reserved).ge(amount)),
                )
                .set(users::reserved.eq(users::reserved + amount)),
            )
            .execute(conn)
            .await?;
            let key_held = Cached(
                diesel::update(
                    api_keys::table
                        .find(new.key_id)
                        .filter(api_keys::user_id.eq(new.user_id))
                        .filter(
                            api_keys::remaining_calls
                                .is_null()
                                .or((api_keys::remaining_calls.assume_not_null() - api_keys::calls_reserved).ge(1_i64)),
                        )
                        .filter(
                            api_keys::token_limit
                                .is_null()
                                .or((api_keys::tokens_used + api_keys::tokens_reserved + tokens)
                                    .le(api_keys::token_limit.assume_not_null())),
                        )
                        .filter(
                            api_keys::quota_limit
                                .is_null()
                                .or((api_keys::quota_used + api_keys::quota_reserved + amount)
                                    .le(api_keys::quota_limit.assume_not_null())),
                        ),
                )
                .set((
                    api_keys::tokens_reserved.eq(api_keys::tokens_reserved + tokens),
                    api_keys::quota_reserved.eq(api_keys::quota_reserved + amount),
                    api_keys::calls_reserved.eq(api_keys::calls_reserved + 1),
                )),
            )
            .execute(conn)
            .await?;
            if user_held == 0 || key_held == 0 {
                // Refused (the transaction rolls back): let the pure rule say which limit.
                let user: Option<(i64, i64)> = users::table
                    .find(new.user_id)
                    .select((users::token_balance, users::reserved))
                    .first(conn)
                    .await
                    .optional()?;
                let key: Option<KeyLimitsRow> =
                    api_keys::table.find(new.key_id).select(KeyLimitsRow::as_select()).first(conn).await.optional()?;
                let (Some((balance, reserved)), Some(key)) = (user, key) else {
                    return Err(StoreError::NotFound.into());
                };
                if key.user_id != new.user_id {
                    return Err(StoreError::NotFound.into());
                }
                let funds = UserFunds {
                    balance: Money::from_micros(balance),
                    // The user update may have applied before the key refused: undo it in the view.
                    reserved: Money::from_micros(if user_held == 1 { reserved - amount } else { reserved }),
                };
                check_hold(&funds, &key.counters(), &new.hold)?;
                // Funds were freed between the refused update and the re-read: try again.
                return Err(StoreError::Unavailable(RACED.into()).into());
            }
            let row = NewReservationRow {
                user_id: new.user_id,
                key_id: new.key_id,
                request_id: &new.request_id,
                amount,
                tokens,
            };
            let values = (row, reservations::created_at.eq(DbNowMillis));
            Ok(Cached(diesel::insert_into(reservations::table).values(values).returning(reservations::id))
                .get_result(conn)
                .await?)
        })
    }

    async fn settle_once(&self, id: ReservationId, settlement: &Settlement) -> Result<Settled, BillingError> {
        let description: String = settlement.description.chars().take(MAX_DESCRIPTION_LEN).collect();
        let (charge, tokens, success) = (settlement.charge, settlement.tokens.max(0), i64::from(settlement.success));
        write_op!(self, Applied, BillingTx, move |conn| {
            let row: Option<ReservationRow> = diesel::delete(reservations::table.find(id))
                .returning(ReservationRow::as_returning())
                .get_result(conn)
                .await
                .optional()?;
            let row = row.ok_or(BillingError::NotOpen(id))?;
            // All of the charge, even above the hold (the balance may go below zero by the excess).
            let (charge, overage) = settle_amounts(charge, Money::from_micros(row.amount));
            let charge = charge.micros();
            let balance: i64 = Cached(
                diesel::update(users::table.find(row.user_id))
                    .set((
                        users::reserved.eq(users::reserved - row.amount),
                        users::token_balance.eq(users::token_balance - charge),
                        users::total_consumed.eq(saturating_add!(users::total_consumed, charge)),
                        users::updated_at.eq(now_millis()),
                    ))
                    .returning(users::token_balance),
            )
            .get_result(conn)
            .await?;
            let counters = (
                api_keys::tokens_reserved.eq(api_keys::tokens_reserved - row.tokens),
                api_keys::quota_reserved.eq(api_keys::quota_reserved - row.amount),
                api_keys::calls_reserved.eq(api_keys::calls_reserved - 1),
                api_keys::quota_used.eq(saturating_add!(api_keys::quota_used, charge)),
                api_keys::tokens_used.eq(saturating_add!(api_keys::tokens_used, tokens)),
                api_keys::calls_total.eq(api_keys::calls_total + 1),
                api_keys::calls_succeeded.eq(api_keys::calls_succeeded + success),
                api_keys::updated_at.eq(now_millis()),
            );
            let key = diesel::update(api_keys::table.find(row.key_id));
            if success == 1 {
                // A success uses up one of the remaining calls, stopping at zero: an administrator
                // may have lowered the counter while this call ran (NULL, no limit, stays NULL).
                let remaining = case_when(api_keys::remaining_calls.gt(0_i64), api_keys::remaining_calls - 1_i64)
                    .otherwise(api_keys::remaining_calls);
                Cached(key.set((counters, api_keys::remaining_calls.eq(remaining)))).execute(conn).await?;
            } else {
                Cached(key.set(counters)).execute(conn).await?;
            }
            let transaction = if charge > 0 {
                let inserted = Cached(
                    diesel::insert_into(transactions::table)
                        .values((
                            transactions::user_id.eq(row.user_id),
                            transactions::tx_type.eq(TxType::Consume.as_str()),
                            transactions::amount.eq(-charge),
                            transactions::balance_before.eq(balance + charge),
                            transactions::balance_after.eq(balance),
                            transactions::order_no.eq(&row.request_id),
                            transactions::description.eq(&description),
                            transactions::created_at.eq(now_millis()),
                        ))
                        .returning(transactions::id),
                )
                .get_result::<i64>(conn)
                .await?;
                Some(apihub_core::ledger::Transaction {
                    id: inserted,
                    user_id: row.user_id,
                    tx_type: TxType::Consume,
                    amount: Money::from_micros(-charge),
                    balance_before: Money::from_micros(balance + charge),
                    balance_after: Money::from_micros(balance),
                    order_no: Some(row.request_id.clone()),
                    description: Some(description.clone()),
                    created_at: Utc::now(),
                })
            } else {
                None
            };
            Ok(Settled { transaction, charged: Money::from_micros(charge), overage })
        })
    }
}
