//! Recharge orders on SQL. Completing an order is one transaction: read it, check the paid money,
//! flip it from pending to paid with a conditional `UPDATE` (of concurrent notifications exactly
//! one matches the pending row), and credit the recharge whose order number is the order's.

use apihub_core::Money;
use apihub_core::recharge::{
    CompleteRefusal, Completed, Completion, NewOrder, OrderFilter, OrderStatus, RechargeOrder, RechargeStore,
    format_cents,
};
use apihub_core::store::{Page, PageRequest, StoreError};
use async_trait::async_trait;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::engine::Touched;
use super::ledger::credit_recharge;
use super::schema::{recharge_orders, transactions, users};
use super::{SqlStore, corrupt, from_millis, load_page, now_millis, with_conn, write_tx};

/// A `recharge_orders` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = recharge_orders)]
struct OrderRow {
    id: i64,
    out_trade_no: String,
    user_id: i64,
    amount: i64,
    money: i64,
    payment_type: String,
    status: String,
    trade_no: Option<String>,
    completed_by: Option<i64>,
    note: Option<String>,
    created_at: i64,
    paid_at: Option<i64>,
}

#[derive(Insertable)]
#[diesel(table_name = recharge_orders)]
struct NewOrderRow<'a> {
    out_trade_no: &'a str,
    user_id: i64,
    amount: i64,
    money: i64,
    payment_type: &'a str,
    status: &'static str,
    created_at: i64,
}

impl OrderRow {
    fn into_domain(self) -> Result<RechargeOrder, StoreError> {
        Ok(RechargeOrder {
            id: self.id,
            status: OrderStatus::parse(&self.status).ok_or_else(|| corrupt("order status", &self.status))?,
            out_trade_no: self.out_trade_no,
            user_id: self.user_id,
            amount: Money::from_micros(self.amount),
            money: Money::from_micros(self.money),
            payment_type: self.payment_type,
            trade_no: self.trade_no,
            completed_by: self.completed_by,
            note: self.note,
            created_at: from_millis(self.created_at),
            paid_at: self.paid_at.map(from_millis),
        })
    }
}

/// What completing an order did, before mapping rows to the domain.
enum Outcome {
    Now(OrderRow, super::ledger::TxRow, apihub_core::ledger::Account),
    Already(OrderRow),
    Refused(CompleteRefusal),
}

#[async_trait]
impl RechargeStore for SqlStore {
    async fn create_order(&self, order: &NewOrder) -> Result<RechargeOrder, StoreError> {
        let row = NewOrderRow {
            out_trade_no: &order.out_trade_no,
            user_id: order.user_id,
            amount: order.amount.micros(),
            money: order.money.micros(),
            payment_type: &order.payment_type,
            status: OrderStatus::Pending.as_str(),
            created_at: now_millis(),
        };
        let inserted: OrderRow = write_tx!(self, |conn| {
            Ok(diesel::insert_into(recharge_orders::table)
                .values(&row)
                .returning(OrderRow::as_returning())
                .get_result(conn)
                .await?)
        })?;
        inserted.into_domain()
    }

    async fn order(&self, out_trade_no: &str) -> Result<Option<RechargeOrder>, StoreError> {
        let row: Option<OrderRow> = with_conn!(self, |conn| {
            Ok(recharge_orders::table
                .filter(recharge_orders::out_trade_no.eq(out_trade_no))
                .select(OrderRow::as_select())
                .first(conn)
                .await
                .optional()?)
        })?;
        row.map(OrderRow::into_domain).transpose()
    }

    async fn orders(&self, filter: &OrderFilter, page: PageRequest) -> Result<Page<RechargeOrder>, StoreError> {
        macro_rules! filtered {
            () => {{
                let mut q = recharge_orders::table.into_boxed();
                if let Some(user_id) = filter.user_id {
                    q = q.filter(recharge_orders::user_id.eq(user_id));
                }
                if let Some(status) = filter.status {
                    q = q.filter(recharge_orders::status.eq(status.as_str()));
                }
                if let Some(out_trade_no) = filter.out_trade_no.as_deref() {
                    q = q.filter(recharge_orders::out_trade_no.eq(out_trade_no));
                }
                if let Some(since) = filter.created_since {
                    q = q.filter(recharge_orders::created_at.ge(since.timestamp_millis()));
                }
                q
            }};
        }
        load_page!(self, page, filtered!(), recharge_orders::id.desc(), OrderRow)
    }

    async fn complete(
        &self,
        out_trade_no: &str,
        how: &Completion,
    ) -> Result<Result<Completed, CompleteRefusal>, StoreError> {
        let (trade_no, completed_by, note) = match how {
            Completion::Notified(notice) => (Some(notice.trade_no.as_str()), None, None),
            Completion::ByHand { admin, note } => (None, Some(*admin), Some(note.as_str())),
        };
        let write = async || {
            write_tx!(self, |conn| {
                let order: Option<OrderRow> = recharge_orders::table
                    .filter(recharge_orders::out_trade_no.eq(out_trade_no))
                    .select(OrderRow::as_select())
                    .first(conn)
                    .await
                    .optional()?;
                let Some(order) = order else { return Ok(Outcome::Refused(CompleteRefusal::UnknownOrder)) };
                if let Completion::Notified(notice) = how
                    && notice.money.micros() != order.money
                {
                    return Ok(Outcome::Refused(CompleteRefusal::WrongMoney {
                        paid: notice.money.to_string(),
                        expected: format_cents(Money::from_micros(order.money)),
                    }));
                }
                // The whole concurrency story: only one UPDATE can match the pending row.
                let won: Option<OrderRow> = diesel::update(
                    recharge_orders::table
                        .find(order.id)
                        .filter(recharge_orders::status.eq(OrderStatus::Pending.as_str())),
                )
                .set((
                    recharge_orders::status.eq(OrderStatus::Paid.as_str()),
                    recharge_orders::trade_no.eq(trade_no),
                    recharge_orders::completed_by.eq(completed_by),
                    recharge_orders::note.eq(note),
                    recharge_orders::paid_at.eq(now_millis()),
                ))
                .returning(OrderRow::as_returning())
                .get_result(conn)
                .await
                .optional()?;
                let Some(won) = won else {
                    let paid = recharge_orders::table.find(order.id).select(OrderRow::as_select()).first(conn).await?;
                    return Ok(Outcome::Already(paid));
                };
                let description = match how {
                    Completion::Notified(notice) => {
                        format!("online recharge ({}, trade {})", won.payment_type, notice.trade_no)
                    }
                    Completion::ByHand { admin, note } => {
                        format!("online recharge completed by hand by administrator #{admin}: {note}")
                    }
                };
                let (tx, account) = credit_recharge!(conn, won.user_id, won.amount, &won.out_trade_no, &description)?;
                Ok(Outcome::Now(won, tx, account))
            })
        };
        let touched = |outcome: &Outcome| match outcome {
            Outcome::Now(order, ..) => Touched::user(order.user_id),
            _ => Touched::default(),
        };
        let outcome: Outcome = self.account_write(None, write, touched).await?;
        Ok(match outcome {
            Outcome::Now(order, tx, account) => {
                Ok(Completed::Now { order: order.into_domain()?, transaction: tx.into_domain()?, account })
            }
            Outcome::Already(order) => Ok(Completed::Already(order.into_domain()?)),
            Outcome::Refused(refusal) => Err(refusal),
        })
    }
}
