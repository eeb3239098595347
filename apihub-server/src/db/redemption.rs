//! Redemption codes on SQL. A redemption is one conditional `UPDATE` of the code (it matches only
//! while the code is unredeemed, active and unexpired, so of concurrent attempts exactly one wins)
//! and, in the same transaction, the recharge: the balance update and its ledger row.

use apihub_core::Money;
use apihub_core::ledger::Account;
use apihub_core::redemption::{
    CodeFilter, CodeStatus, NewBatch, RedeemRefusal, Redeemed, RedemptionCode, RedemptionStore, order_no,
};
use apihub_core::store::{Page, PageRequest, StoreError};
use apihub_core::user::UserId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::engine::Touched;
use super::ledger::{TxRow, credit_recharge};
use super::schema::{redemption_codes, transactions, users};
use super::{SqlStore, corrupt, from_millis, load_page, now_millis, with_conn, write_tx};

/// A `redemption_codes` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = redemption_codes)]
struct CodeRow {
    id: i64,
    code: String,
    amount: i64,
    name: String,
    expires_at: Option<i64>,
    status: String,
    batch_id: String,
    created_by: i64,
    redeemed_by: Option<i64>,
    redeemed_at: Option<i64>,
    created_at: i64,
}

#[derive(Insertable)]
#[diesel(table_name = redemption_codes)]
struct NewCodeRow<'a> {
    code: &'a str,
    amount: i64,
    name: &'a str,
    expires_at: Option<i64>,
    status: &'static str,
    batch_id: &'a str,
    created_by: i64,
    created_at: i64,
}

impl CodeRow {
    fn into_domain(self) -> Result<RedemptionCode, StoreError> {
        Ok(RedemptionCode {
            id: self.id,
            status: CodeStatus::parse(&self.status).ok_or_else(|| corrupt("code status", &self.status))?,
            code: self.code,
            amount: Money::from_micros(self.amount),
            name: self.name,
            expires_at: self.expires_at.map(from_millis),
            batch_id: self.batch_id,
            created_by: self.created_by,
            redeemed_by: self.redeemed_by,
            redeemed_at: self.redeemed_at.map(from_millis),
            created_at: from_millis(self.created_at),
        })
    }
}

#[async_trait]
impl RedemptionStore for SqlStore {
    async fn create_codes(
        &self,
        created_by: UserId,
        batch: &NewBatch,
        batch_id: &str,
        codes: &[String],
    ) -> Result<Vec<RedemptionCode>, StoreError> {
        let now = now_millis();
        let name = batch.name.trim();
        let rows: Vec<NewCodeRow<'_>> = codes
            .iter()
            .map(|code| NewCodeRow {
                code,
                amount: batch.amount.micros(),
                name,
                expires_at: batch.expires_at.map(|at| at.timestamp_millis()),
                status: CodeStatus::Active.as_str(),
                batch_id,
                created_by,
                created_at: now,
            })
            .collect();
        let inserted: Vec<CodeRow> = write_tx!(self, |conn| {
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(
                    diesel::insert_into(redemption_codes::table)
                        .values(row)
                        .returning(CodeRow::as_returning())
                        .get_result(conn)
                        .await?,
                );
            }
            Ok(out)
        })?;
        inserted.into_iter().map(CodeRow::into_domain).collect()
    }

    async fn codes(&self, filter: &CodeFilter, page: PageRequest) -> Result<Page<RedemptionCode>, StoreError> {
        macro_rules! filtered {
            () => {{
                let mut q = redemption_codes::table.into_boxed();
                if let Some(status) = filter.status {
                    q = q.filter(redemption_codes::status.eq(status.as_str()));
                }
                if let Some(batch_id) = filter.batch_id.as_deref() {
                    q = q.filter(redemption_codes::batch_id.eq(batch_id));
                }
                match filter.redeemed {
                    Some(true) => q = q.filter(redemption_codes::redeemed_by.is_not_null()),
                    Some(false) => q = q.filter(redemption_codes::redeemed_by.is_null()),
                    None => {}
                }
                q
            }};
        }
        load_page!(self, page, filtered!(), redemption_codes::id.desc(), CodeRow)
    }

    async fn disable_code(&self, id: i64) -> Result<RedemptionCode, StoreError> {
        let row: CodeRow = write_tx!(self, |conn| {
            Ok(diesel::update(redemption_codes::table.find(id))
                .set(redemption_codes::status.eq(CodeStatus::Disabled.as_str()))
                .returning(CodeRow::as_returning())
                .get_result(conn)
                .await?)
        })?;
        row.into_domain()
    }

    async fn redeem(
        &self,
        user_id: UserId,
        code: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<Redeemed, RedeemRefusal>, StoreError> {
        let now_ms = now.timestamp_millis();
        let order = order_no(code);
        let write = async || {
            write_tx!(self, |conn| {
                // The whole concurrency story: only one UPDATE can match the unredeemed row.
                let won: Option<CodeRow> = diesel::update(
                    redemption_codes::table
                        .filter(redemption_codes::code.eq(code))
                        .filter(redemption_codes::redeemed_by.is_null())
                        .filter(redemption_codes::status.eq(CodeStatus::Active.as_str()))
                        .filter(redemption_codes::expires_at.is_null().or(redemption_codes::expires_at.gt(now_ms))),
                )
                .set((redemption_codes::redeemed_by.eq(user_id), redemption_codes::redeemed_at.eq(now_ms)))
                .returning(CodeRow::as_returning())
                .get_result(conn)
                .await
                .optional()?;
                let Some(won) = won else { return Ok(None) };
                let description = format!("redemption code ({})", won.name);
                let (inserted, account) = credit_recharge!(conn, user_id, won.amount, &order, &description)?;
                Ok(Some((inserted, account)))
            })
        };
        let done: Option<(TxRow, Account)> = self.account_write(None, write, |_| Touched::user(user_id)).await?;
        if let Some((row, account)) = done {
            return Ok(Ok(Redeemed { transaction: row.into_domain()?, account }));
        }
        // Refused: nothing changed; read the code to say why.
        let row: Option<CodeRow> = with_conn!(self, |conn| {
            Ok(redemption_codes::table
                .filter(redemption_codes::code.eq(code))
                .select(CodeRow::as_select())
                .first(conn)
                .await
                .optional()?)
        })?;
        let Some(row) = row else { return Ok(Err(RedeemRefusal::Unknown)) };
        // A code that became redeemable in between cannot happen (no route re-enables one), so a
        // row that looks redeemable now was refused for a reason that changed; call it used.
        Ok(Err(row.into_domain()?.refusal(now).unwrap_or(RedeemRefusal::AlreadyRedeemed)))
    }
}
