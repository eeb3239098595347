//! Growing (or first taking) a lease of a user's credit or of a key's limits: one conditional
//! `UPDATE` that refuses what is not free.

use std::time::Instant;

use apihub_core::Money;
use apihub_core::billing::{BillingError, NewReservation, ReservationId, UserFunds, check_hold};
use apihub_core::credit::{MeterId, StoredKey};
use apihub_core::store::StoreError;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use diesel_async::RunQueryDsl;

use super::hold::Ordered;
use super::{DB_NOW, GROWTH, Lease, LeaseEngine, Nudge, ttl_millis};
use crate::db::cached::Cached;

#[derive(QueryableByName)]
struct UserGrant {
    #[diesel(sql_type = BigInt)]
    free: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    granted: Option<i64>,
    /// What other gateways lease of the user's credit.
    #[diesel(sql_type = BigInt)]
    others: i64,
}

/// Why a lease could not grow.
pub(super) enum Refusal {
    /// Not enough credit, even counting what other gateways lease.
    Refused(BillingError),
    /// Enough only with what other gateways lease; they were asked for it.
    LeasedElsewhere(BillingError),
}

impl From<BillingError> for Refusal {
    fn from(error: BillingError) -> Self {
        Refusal::Refused(error)
    }
}

#[derive(QueryableByName)]
struct KeyGrant {
    #[diesel(sql_type = BigInt)]
    user_id: i64,
    #[diesel(sql_type = Text)]
    public_id: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    quota_free: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    tokens_free: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    calls_free: Option<i64>,
    #[diesel(sql_type = Bool)]
    granted: bool,
    /// What other gateways lease of the key's credit, tokens and calls.
    #[diesel(sql_type = BigInt)]
    quota_others: i64,
    #[diesel(sql_type = BigInt)]
    tokens_others: i64,
    #[diesel(sql_type = BigInt)]
    calls_others: i64,
    #[diesel(sql_type = BigInt)]
    quota: i64,
    #[diesel(sql_type = BigInt)]
    tokens: i64,
    #[diesel(sql_type = BigInt)]
    calls: i64,
}

impl LeaseEngine {
    /// Grows (or first takes) this gateway's lease of a user's credit by at least what `new`
    /// lacks, then takes the hold when it fits. Refused with what is available (this lease and
    /// the free credit) when even that is not free.
    pub(super) async fn grow_user(
        &self,
        new: &NewReservation,
        meters: &[MeterId],
    ) -> Result<Option<ReservationId>, Refusal> {
        let (user_id, required) = (new.user_id, new.hold.amount);
        let _order = match self.order_to_grow(new, meters).await? {
            Ordered::Grow(order) => order,
            Ordered::Held(id) => return Ok(Some(id)),
        };
        self.settle_doubt().await.map_err(BillingError::Store)?;
        // What the hold lacks now (other requests took or freed credit while this one waited),
        // what queued settlements charged beyond the lease included.
        let leased = self.book().funds(user_id);
        let available = leased.map_or(0, |funds| funds.margin());
        if leased.is_some() && available >= required.micros() {
            return Ok(self.hold_now(new, meters)?);
        }
        let min = required.micros().saturating_sub(available).max(0);
        if min == 0 {
            self.book().grant_user(user_id, Money::ZERO);
            return Ok(self.hold_now(new, meters)?);
        }
        let last = self.sizes().user_grants.get(&user_id).copied().unwrap_or(0);
        let want = min.saturating_mul(GROWTH).max(last.saturating_mul(2));
        let asked_at = Instant::now();
        let node_id = self.node_id();
        let grant: Vec<UserGrant> = self
            .run(async |conn| {
                Ok(Cached(
                    diesel::sql_query(format!(
                        "WITH u AS (SELECT id, token_balance - reserved AS free FROM users WHERE id = $1 FOR UPDATE), \
                     g AS (UPDATE users SET reserved = users.reserved + GREATEST($2, LEAST($3, u.free / 2)) \
                           FROM u WHERE users.id = u.id AND u.free >= $2 \
                           RETURNING users.id, GREATEST($2, LEAST($3, u.free / 2)) AS granted), \
                     l AS (INSERT INTO credit_leases (node_id, user_id, key_id, amount, expires_at, created_at) \
                           SELECT $4, g.id, NULL, g.granted, {DB_NOW} + $5, {DB_NOW} FROM g \
                           ON CONFLICT (node_id, user_id) WHERE key_id IS NULL DO UPDATE \
                           SET amount = credit_leases.amount + EXCLUDED.amount, expires_at = EXCLUDED.expires_at) \
                     SELECT u.free, (SELECT granted FROM g) AS granted, \
                            (SELECT COALESCE(SUM(amount), 0) FROM credit_leases \
                             WHERE user_id = $1 AND key_id IS NULL AND node_id <> $4)::BIGINT AS others FROM u"
                    ))
                    .bind::<BigInt, _>(user_id)
                    .bind::<BigInt, _>(min)
                    .bind::<BigInt, _>(want)
                    .bind::<Text, _>(&node_id)
                    .bind::<BigInt, _>(ttl_millis()),
                )
                .load(conn)
                .await?)
            })
            .await
            .map_err(BillingError::Store)?;
        let Some(grant) = grant.into_iter().next() else {
            return Err(BillingError::Store(StoreError::NotFound).into());
        };
        match grant.granted {
            Some(granted) => {
                self.renewed(asked_at, [Lease::User(user_id)]);
                self.book().grant_user(user_id, Money::from_micros(granted));
                self.sizes().user_grants.insert(user_id, granted);
                Ok(self.hold_now(new, meters)?)
            }
            None => {
                let here = available.max(0).saturating_add(grant.free.max(0));
                let error = BillingError::InsufficientBalance { available: Money::from_micros(here), required };
                if grant.others > 0
                    && here.saturating_add(grant.others) >= required.micros()
                    && let Some(nudge) = self.nudge.get()
                {
                    let _ = nudge.try_send(Nudge::User(user_id));
                    return Err(Refusal::LeasedElsewhere(error));
                }
                Err(Refusal::Refused(error))
            }
        }
    }

    /// Reads a key (on first use) and grows this gateway's lease of its limited credit, tokens
    /// and calls by at least what `new` lacks, then takes the hold when it fits. Refused with
    /// the limit that is spent.
    pub(super) async fn grow_key(
        &self,
        new: &NewReservation,
        meters: &[MeterId],
    ) -> Result<Option<ReservationId>, Refusal> {
        let key_id = new.key_id;
        let _order = match self.order_to_grow(new, meters).await? {
            Ordered::Grow(order) => order,
            Ordered::Held(id) => return Ok(Some(id)),
        };
        self.settle_doubt().await.map_err(BillingError::Store)?;
        let loaded = self.book().key_counters(key_id);
        let unlimited = UserFunds { balance: Money::from_micros(i64::MAX), reserved: Money::ZERO };
        let min = match loaded {
            Some(counters) if check_hold(&unlimited, &counters, &new.hold).is_ok() => {
                return Ok(self.hold_now(new, meters)?);
            }
            // What the hold lacks now, on each limit.
            Some(counters) => counters.shortfall(&new.hold),
            // On first use, enough for this hold on every limit the key has.
            None => [new.hold.amount.micros().max(0), new.hold.tokens.max(0), 1],
        };
        let last = self.sizes().key_grants.get(&key_id).copied().unwrap_or_default();
        let want: [i64; 3] = std::array::from_fn(|i| min[i].saturating_mul(GROWTH).max(last[i].saturating_mul(2)));
        let asked_at = Instant::now();
        let node_id = self.node_id();
        let grant: Vec<KeyGrant> = self
            .run(async |conn| {
                // A limit the key does not have grants nothing and needs nothing (`free` NULL: not through
                // GREATEST and LEAST, which skip a NULL).
                let statement = diesel::sql_query(format!(
                    "WITH k AS (SELECT id, user_id, public_id, \
                                quota_limit - quota_used - quota_reserved AS quota_free, \
                                token_limit - tokens_used - tokens_reserved AS tokens_free, \
                                remaining_calls - calls_reserved AS calls_free \
                                FROM api_keys WHERE id = $1 FOR UPDATE), \
                     s AS (SELECT k.*, \
                                CASE WHEN quota_free IS NULL THEN 0 ELSE GREATEST($2, LEAST($5, quota_free / 2)) END AS quota, \
                                CASE WHEN tokens_free IS NULL THEN 0 ELSE GREATEST($3, LEAST($6, tokens_free / 2)) END AS tokens, \
                                CASE WHEN calls_free IS NULL THEN 0 ELSE GREATEST($4, LEAST($7, calls_free / 2)) END AS calls, \
                                (quota_free IS NULL OR quota_free >= $2) AND (tokens_free IS NULL OR tokens_free >= $3) \
                                AND (calls_free IS NULL OR calls_free >= $4) AS granted FROM k), \
                     g AS (UPDATE api_keys SET quota_reserved = quota_reserved + s.quota, \
                                tokens_reserved = tokens_reserved + s.tokens, calls_reserved = calls_reserved + s.calls \
                           FROM s WHERE api_keys.id = s.id AND s.granted AND s.quota + s.tokens + s.calls > 0 \
                           RETURNING api_keys.id), \
                     l AS (INSERT INTO credit_leases (node_id, user_id, key_id, amount, tokens, calls, expires_at, created_at) \
                           SELECT $8, s.user_id, s.id, s.quota, s.tokens, s.calls, {DB_NOW} + $9, {DB_NOW} \
                           FROM s JOIN g ON g.id = s.id \
                           ON CONFLICT (node_id, key_id) WHERE key_id IS NOT NULL DO UPDATE \
                           SET amount = credit_leases.amount + EXCLUDED.amount, tokens = credit_leases.tokens + EXCLUDED.tokens, \
                               calls = credit_leases.calls + EXCLUDED.calls, expires_at = EXCLUDED.expires_at), \
                     o AS (SELECT COALESCE(SUM(amount), 0)::BIGINT AS quota_others, \
                                COALESCE(SUM(tokens), 0)::BIGINT AS tokens_others, \
                                COALESCE(SUM(calls), 0)::BIGINT AS calls_others \
                           FROM credit_leases WHERE key_id = $1 AND node_id <> $8) \
                     SELECT user_id, public_id, quota_free, tokens_free, calls_free, granted, \
                            quota_others, tokens_others, calls_others, quota, tokens, calls FROM s, o"
                ))
                .bind::<BigInt, _>(key_id)
                .bind::<BigInt, _>(min[0])
                .bind::<BigInt, _>(min[1])
                .bind::<BigInt, _>(min[2])
                .bind::<BigInt, _>(want[0])
                .bind::<BigInt, _>(want[1])
                .bind::<BigInt, _>(want[2])
                .bind::<Text, _>(&node_id)
                .bind::<BigInt, _>(ttl_millis());
                Ok(Cached(statement).load(conn).await?)
            })
            .await
            .map_err(BillingError::Store)?;
        let Some(grant) = grant.into_iter().next() else {
            return Err(BillingError::Store(StoreError::NotFound).into());
        };
        if grant.user_id != new.user_id {
            return Err(BillingError::Store(StoreError::NotFound).into());
        }
        if !grant.granted {
            let free = [grant.quota_free, grant.tokens_free, grant.calls_free];
            let limit = if free[2].is_some_and(|free| free < min[2]) {
                "remaining_calls"
            } else if free[1].is_some_and(|free| free < min[1]) {
                "token_limit"
            } else {
                "quota_limit"
            };
            let error = BillingError::KeyLimit { limit };
            // What this gateway lacks sits in other gateways' leases of the key: ask them for it.
            let others = [grant.quota_others, grant.tokens_others, grant.calls_others];
            let elsewhere = (0..3).all(|i| free[i].is_none_or(|free| free.saturating_add(others[i]) >= min[i]));
            if elsewhere
                && others.iter().any(|leased| *leased > 0)
                && let Some(nudge) = self.nudge.get()
            {
                let _ = nudge.try_send(Nudge::Key(grant.public_id));
                return Err(Refusal::LeasedElsewhere(error));
            }
            return Err(Refusal::Refused(error));
        }
        if grant.quota + grant.tokens + grant.calls > 0 {
            self.renewed(asked_at, [Lease::Key(key_id)]);
        }
        let (quota, tokens, calls) = (Money::from_micros(grant.quota), grant.tokens, grant.calls);
        let mut book = self.book();
        // A limit the database no longer has (`free` NULL: lifted by an administrator) leaves the
        // book too, or a hold it refuses would ask for a growth that grants nothing, again and again.
        let granted =
            (grant.quota_free.map(|_| quota), grant.tokens_free.map(|_| tokens), grant.calls_free.map(|_| calls));
        if !book.grant_key(key_id, granted.0, granted.1, granted.2) {
            book.store_key(
                key_id,
                StoredKey {
                    user_id: grant.user_id,
                    quota_limit: grant.quota_free.map(|_| quota),
                    token_limit: grant.tokens_free.map(|_| tokens),
                    remaining_calls: grant.calls_free.map(|_| calls),
                    tokens_used: 0,
                    quota_used: Money::ZERO,
                },
            );
        }
        drop(book);
        let mut sizes = self.sizes();
        sizes.key_grants.insert(key_id, [grant.quota, grant.tokens, grant.calls]);
        sizes.public_ids.insert(grant.public_id, key_id);
        drop(sizes);
        Ok(self.hold_now(new, meters)?)
    }
}
