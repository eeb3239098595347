//! The usage log on SQL.

use apihub_core::store::{Page, PageRequest, StoreError, UsageRecord, UsageSource, UsageStore};
use apihub_core::user::UserId;
use apihub_core::{DiscountRate, Money};
use async_trait::async_trait;
use diesel::backend::Backend;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, Bool, HasSqlType, Integer, Nullable, Text};
use diesel_async::RunQueryDsl;

use super::cached::{Cached, Prepared};
use super::multi_row::{push_insert, slices, with_slice_marker};
use super::schema::usage_logs;
use super::writer::{self, Answer};
use super::{Db, SqlStore, TxError, corrupt, from_millis, load_page, pg_tx};

/// diesel's own `INSERT` of `$row` (a `&UsageRow`) with every column named, the reference the
/// tests hold [`UsageRows`] to: a derived `Insertable` leaves a `None` out (so the text would
/// depend on which values are missing); `column.eq(None)` binds a `NULL`, the columns' default.
#[cfg(test)]
macro_rules! usage_insert {
    ($row:expr) => {{
        let row: &UsageRow = $row;
        diesel::insert_into(usage_logs::table).values((
            usage_logs::request_id.eq(&row.request_id),
            usage_logs::user_id.eq(row.user_id),
            usage_logs::key_id.eq(row.key_id),
            usage_logs::model.eq(&row.model),
            usage_logs::endpoint.eq(&row.endpoint),
            usage_logs::stream.eq(row.stream),
            usage_logs::prompt_tokens.eq(row.prompt_tokens),
            usage_logs::completion_tokens.eq(row.completion_tokens),
            usage_logs::cached_tokens.eq(row.cached_tokens),
            usage_logs::raw_cost.eq(row.raw_cost),
            usage_logs::user_discount_ppm.eq(row.user_discount_ppm),
            usage_logs::key_discount_ppm.eq(row.key_discount_ppm),
            usage_logs::charged.eq(row.charged),
            usage_logs::status.eq(row.status),
            usage_logs::upstream_latency_ms.eq(row.upstream_latency_ms),
            usage_logs::usage_source.eq(&row.usage_source),
            usage_logs::created_at.eq(row.created_at),
            usage_logs::overage.eq(row.overage),
            usage_logs::route_id.eq(row.route_id),
            usage_logs::channel.eq(&row.channel),
            usage_logs::attempts.eq(row.attempts),
            usage_logs::cost.eq(row.cost),
            usage_logs::first_byte_ms.eq(row.first_byte_ms),
        ))
    }};
}

/// The usage log's multi-row `INSERT` of `N` rows (one text: see [`Prepared`]).
struct UsageChunkInsert<const N: usize>;

/// Rows as one `INSERT` (see [`multi_row`](super::multi_row)), every column
/// named and bound as [`usage_insert!`] binds it (a `NULL` for a `None`), in the table's order.
struct UsageRows<'a>(&'a [UsageRow]);

impl QueryId for UsageRows<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB> QueryFragment<DB> for UsageRows<'_>
where
    DB: Backend + HasSqlType<Text> + HasSqlType<BigInt> + HasSqlType<Integer> + HasSqlType<Bool>,
    String: ToSql<Text, DB>,
    i64: ToSql<BigInt, DB>,
    i32: ToSql<Integer, DB>,
    bool: ToSql<Bool, DB>,
    Option<i64>: ToSql<Nullable<BigInt>, DB>,
    Option<String>: ToSql<Nullable<Text>, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        use usage_logs::*;
        let names = [
            request_id::NAME,
            user_id::NAME,
            key_id::NAME,
            model::NAME,
            endpoint::NAME,
            stream::NAME,
            prompt_tokens::NAME,
            completion_tokens::NAME,
            cached_tokens::NAME,
            raw_cost::NAME,
            user_discount_ppm::NAME,
            key_discount_ppm::NAME,
            charged::NAME,
            status::NAME,
            upstream_latency_ms::NAME,
            usage_source::NAME,
            created_at::NAME,
            overage::NAME,
            route_id::NAME,
            channel::NAME,
            attempts::NAME,
            cost::NAME,
            first_byte_ms::NAME,
        ];
        push_insert(&mut out, "usage_logs", &names, self.0, |out, row| {
            // Each value after the first with its separator, in `names`' order.
            macro_rules! bind {
                ($first_type:ty => $first:expr $(, $type:ty => $value:expr)* $(,)?) => {
                    out.push_bind_param::<$first_type, _>($first)?;
                    $(
                        out.push_sql(", ");
                        out.push_bind_param::<$type, _>($value)?;
                    )*
                };
            }
            bind!(
                Text => &row.request_id,
                BigInt => &row.user_id,
                BigInt => &row.key_id,
                Text => &row.model,
                Text => &row.endpoint,
                Bool => &row.stream,
                BigInt => &row.prompt_tokens,
                BigInt => &row.completion_tokens,
                BigInt => &row.cached_tokens,
                BigInt => &row.raw_cost,
                Integer => &row.user_discount_ppm,
                Integer => &row.key_discount_ppm,
                BigInt => &row.charged,
                Integer => &row.status,
                BigInt => &row.upstream_latency_ms,
                Text => &row.usage_source,
                BigInt => &row.created_at,
                BigInt => &row.overage,
                Nullable<BigInt> => &row.route_id,
                Nullable<Text> => &row.channel,
                Integer => &row.attempts,
                Nullable<BigInt> => &row.cost,
                Nullable<BigInt> => &row.first_byte_ms,
            );
            Ok(())
        })
    }
}

/// A `usage_logs` row (without its id, which only orders rows).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = usage_logs)]
pub(super) struct UsageRow {
    pub(super) request_id: String,
    pub(super) user_id: i64,
    pub(super) key_id: i64,
    pub(super) model: String,
    pub(super) endpoint: String,
    pub(super) stream: bool,
    pub(super) prompt_tokens: i64,
    pub(super) completion_tokens: i64,
    pub(super) cached_tokens: i64,
    pub(super) raw_cost: i64,
    pub(super) user_discount_ppm: i32,
    pub(super) key_discount_ppm: i32,
    pub(super) charged: i64,
    pub(super) status: i32,
    pub(super) upstream_latency_ms: i64,
    pub(super) usage_source: String,
    pub(super) created_at: i64,
    pub(super) overage: i64,
    pub(super) route_id: Option<i64>,
    pub(super) channel: Option<String>,
    pub(super) attempts: i32,
    pub(super) cost: Option<i64>,
    pub(super) first_byte_ms: Option<i64>,
}

impl UsageRow {
    fn of(r: &UsageRecord) -> Self {
        UsageRow {
            request_id: r.request_id.clone(),
            user_id: r.user_id,
            key_id: r.key_id,
            model: r.model.clone(),
            endpoint: r.endpoint.clone(),
            stream: r.stream,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            cached_tokens: r.cached_tokens,
            raw_cost: r.raw_cost.micros(),
            user_discount_ppm: r.user_discount.ppm() as i32,
            key_discount_ppm: r.key_discount.ppm() as i32,
            charged: r.charged.micros(),
            status: i32::from(r.status),
            upstream_latency_ms: r.upstream_latency_ms,
            usage_source: match r.usage_source {
                UsageSource::Reported => "reported",
                UsageSource::Estimated => "estimated",
            }
            .to_owned(),
            created_at: r.created_at.timestamp_millis(),
            overage: r.overage.micros(),
            route_id: r.route_id,
            channel: r.channel.clone(),
            attempts: i32::try_from(r.attempts).unwrap_or(i32::MAX),
            cost: r.cost.map(Money::micros),
            first_byte_ms: r.first_byte_ms,
        }
    }

    pub(super) fn into_domain(self) -> Result<UsageRecord, StoreError> {
        let rate = |ppm: i32| {
            u32::try_from(ppm).ok().and_then(|p| DiscountRate::from_ppm(p).ok()).ok_or_else(|| corrupt("discount", ppm))
        };
        Ok(UsageRecord {
            user_discount: rate(self.user_discount_ppm)?,
            key_discount: rate(self.key_discount_ppm)?,
            usage_source: match self.usage_source.as_str() {
                "reported" => UsageSource::Reported,
                "estimated" => UsageSource::Estimated,
                other => return Err(corrupt("usage source", other)),
            },
            status: u16::try_from(self.status).map_err(|_| corrupt("status", self.status))?,
            request_id: self.request_id,
            user_id: self.user_id,
            key_id: self.key_id,
            model: self.model,
            endpoint: self.endpoint,
            route_id: self.route_id,
            stream: self.stream,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cached_tokens: self.cached_tokens,
            raw_cost: Money::from_micros(self.raw_cost),
            charged: Money::from_micros(self.charged),
            overage: Money::from_micros(self.overage),
            upstream_latency_ms: self.upstream_latency_ms,
            created_at: from_millis(self.created_at),
            attempts: u32::try_from(self.attempts).map_err(|_| corrupt("attempts", self.attempts))?,
            channel: self.channel,
            cost: self.cost.map(Money::from_micros),
            first_byte_ms: self.first_byte_ms,
        })
    }
}

/// Usage rows as columns, for PostgreSQL's one `INSERT … SELECT … FROM unnest(…)` a batch: there a
/// multi-row `VALUES` sets up each row's 23 expressions anew, a cost per row the database's CPU
/// shares with the gateway's (see `lease_writes` for the ledger's rows, measured).
#[derive(Default)]
struct UsageColumns<'a> {
    request_id: Vec<&'a str>,
    user_id: Vec<i64>,
    key_id: Vec<i64>,
    model: Vec<&'a str>,
    endpoint: Vec<&'a str>,
    stream: Vec<bool>,
    prompt_tokens: Vec<i64>,
    completion_tokens: Vec<i64>,
    cached_tokens: Vec<i64>,
    raw_cost: Vec<i64>,
    user_discount_ppm: Vec<i32>,
    key_discount_ppm: Vec<i32>,
    charged: Vec<i64>,
    status: Vec<i32>,
    upstream_latency_ms: Vec<i64>,
    usage_source: Vec<&'a str>,
    created_at: Vec<i64>,
    overage: Vec<i64>,
    route_id: Vec<Option<i64>>,
    channel: Vec<Option<&'a str>>,
    attempts: Vec<i32>,
    cost: Vec<Option<i64>>,
    first_byte_ms: Vec<Option<i64>>,
}

impl<'a> UsageColumns<'a> {
    fn of(rows: &'a [UsageRow]) -> Self {
        let mut c = UsageColumns::default();
        for row in rows {
            c.request_id.push(&row.request_id);
            c.user_id.push(row.user_id);
            c.key_id.push(row.key_id);
            c.model.push(&row.model);
            c.endpoint.push(&row.endpoint);
            c.stream.push(row.stream);
            c.prompt_tokens.push(row.prompt_tokens);
            c.completion_tokens.push(row.completion_tokens);
            c.cached_tokens.push(row.cached_tokens);
            c.raw_cost.push(row.raw_cost);
            c.user_discount_ppm.push(row.user_discount_ppm);
            c.key_discount_ppm.push(row.key_discount_ppm);
            c.charged.push(row.charged);
            c.status.push(row.status);
            c.upstream_latency_ms.push(row.upstream_latency_ms);
            c.usage_source.push(&row.usage_source);
            c.created_at.push(row.created_at);
            c.overage.push(row.overage);
            c.route_id.push(row.route_id);
            c.channel.push(row.channel.as_deref());
            c.attempts.push(row.attempts);
            c.cost.push(row.cost);
            c.first_byte_ms.push(row.first_byte_ms);
        }
        c
    }

    /// One statement for the batch, kept prepared; the rows take their ids in the batch's order
    /// (`ORDER BY` the arrays' ordinality: rows of one millisecond are listed by id).
    async fn insert(&self, conn: &mut diesel_async::AsyncPgConnection) -> Result<(), diesel::result::Error> {
        use diesel::sql_types::Array;
        if self.request_id.is_empty() {
            return Ok(());
        }
        Cached(
            diesel::sql_query(
                "INSERT INTO usage_logs (request_id, user_id, key_id, model, endpoint, stream, prompt_tokens, \
                 completion_tokens, cached_tokens, raw_cost, user_discount_ppm, key_discount_ppm, charged, status, \
                 upstream_latency_ms, usage_source, created_at, overage, route_id, channel, attempts, cost, \
                 first_byte_ms) \
                 SELECT request_id, user_id, key_id, model, endpoint, stream, prompt_tokens, completion_tokens, \
                 cached_tokens, raw_cost, user_discount_ppm, key_discount_ppm, charged, status, upstream_latency_ms, \
                 usage_source, created_at, overage, route_id, channel, attempts, cost, first_byte_ms \
                 FROM unnest($1::TEXT[], $2::BIGINT[], $3::BIGINT[], $4::TEXT[], $5::TEXT[], $6::BOOLEAN[], \
                 $7::BIGINT[], $8::BIGINT[], $9::BIGINT[], $10::BIGINT[], $11::INTEGER[], $12::INTEGER[], \
                 $13::BIGINT[], $14::INTEGER[], $15::BIGINT[], $16::TEXT[], $17::BIGINT[], $18::BIGINT[], \
                 $19::BIGINT[], $20::TEXT[], $21::INTEGER[], $22::BIGINT[], $23::BIGINT[]) WITH ORDINALITY \
                 AS v(request_id, user_id, key_id, model, endpoint, stream, prompt_tokens, completion_tokens, \
                 cached_tokens, raw_cost, user_discount_ppm, key_discount_ppm, charged, status, upstream_latency_ms, \
                 usage_source, created_at, overage, route_id, channel, attempts, cost, first_byte_ms, ord) \
                 ORDER BY ord",
            )
            .bind::<Array<Text>, _>(&self.request_id)
            .bind::<Array<BigInt>, _>(&self.user_id)
            .bind::<Array<BigInt>, _>(&self.key_id)
            .bind::<Array<Text>, _>(&self.model)
            .bind::<Array<Text>, _>(&self.endpoint)
            .bind::<Array<Bool>, _>(&self.stream)
            .bind::<Array<BigInt>, _>(&self.prompt_tokens)
            .bind::<Array<BigInt>, _>(&self.completion_tokens)
            .bind::<Array<BigInt>, _>(&self.cached_tokens)
            .bind::<Array<BigInt>, _>(&self.raw_cost)
            .bind::<Array<Integer>, _>(&self.user_discount_ppm)
            .bind::<Array<Integer>, _>(&self.key_discount_ppm)
            .bind::<Array<BigInt>, _>(&self.charged)
            .bind::<Array<Integer>, _>(&self.status)
            .bind::<Array<BigInt>, _>(&self.upstream_latency_ms)
            .bind::<Array<Text>, _>(&self.usage_source)
            .bind::<Array<BigInt>, _>(&self.created_at)
            .bind::<Array<BigInt>, _>(&self.overage)
            .bind::<Array<Nullable<BigInt>>, _>(&self.route_id)
            .bind::<Array<Nullable<Text>>, _>(&self.channel)
            .bind::<Array<Integer>, _>(&self.attempts)
            .bind::<Array<Nullable<BigInt>>, _>(&self.cost)
            .bind::<Array<Nullable<BigInt>>, _>(&self.first_byte_ms),
        )
        .execute(conn)
        .await
        .map(|_| ())
    }
}

#[async_trait]
impl UsageStore for SqlStore {
    async fn record_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        let rows: Vec<UsageRow> = records.iter().map(UsageRow::of).collect();
        let written: Result<(), TxError> = match &self.db {
            // Through diesel's synchronous API: one text for all, never built (see `Prepared`).
            Db::Sqlite { writer, .. } => {
                writer
                    .batched(Answer::Committed, async move |conn| {
                        writer::direct(conn, move |conn| {
                            for slice in slices(&rows) {
                                with_slice_marker!(UsageChunkInsert, slice.len(), |Marker| {
                                    let insert = Prepared::<Marker, _>::new(UsageRows(slice));
                                    diesel::RunQueryDsl::execute(insert, conn).map(|_| ())
                                })?;
                            }
                            Ok(())
                        })
                    })
                    .await
            }
            Db::Postgres { pool, .. } => {
                async {
                    pg_tx!(pool, TxError, |conn| {
                        UsageColumns::of(&rows).insert(conn).await?;
                        Ok(())
                    })
                }
                .await
            }
        };
        written.map_err(|e| e.0)
    }

    async fn usage(&self, user_id: Option<UserId>, page: PageRequest) -> Result<Page<UsageRecord>, StoreError> {
        macro_rules! filtered {
            () => {{
                let mut q = usage_logs::table.into_boxed();
                if let Some(user_id) = user_id {
                    q = q.filter(usage_logs::user_id.eq(user_id));
                }
                q
            }};
        }
        load_page!(self, page, filtered!(), usage_logs::id.desc(), UsageRow)
    }
}

#[cfg(test)]
mod tests {
    use diesel::debug_query;
    use diesel::sqlite::Sqlite;

    use super::super::multi_row::ROWS_PER_INSERT;
    use super::*;

    fn row(some: bool) -> UsageRow {
        UsageRow {
            request_id: if some { "req_a".into() } else { "b".into() },
            user_id: 1,
            key_id: 2,
            model: "m".into(),
            endpoint: "/v1/chat/completions".into(),
            stream: some,
            prompt_tokens: 3,
            completion_tokens: 4,
            cached_tokens: 0,
            raw_cost: 5,
            user_discount_ppm: 1_000_000,
            key_discount_ppm: 1_000_000,
            charged: 5,
            status: 200,
            upstream_latency_ms: 6,
            usage_source: "reported".into(),
            created_at: 7,
            overage: 0,
            route_id: some.then_some(8),
            channel: some.then(|| "main".into()),
            attempts: 1,
            cost: some.then_some(9),
            first_byte_ms: some.then_some(10),
        }
    }

    #[test]
    fn the_usage_insert_has_one_text_whichever_values_are_missing() {
        let text = |row: &UsageRow| {
            let insert = usage_insert!(row);
            debug_query::<Sqlite, _>(&insert).to_string().split(" -- binds").next().unwrap_or_default().to_owned()
        };
        assert_eq!(text(&row(true)), text(&row(false)));
    }

    /// The text of [`UsageRows`] with its binds' values left out.
    fn chunk_text(rows: &[UsageRow]) -> String {
        let text = debug_query::<Sqlite, _>(&UsageRows(rows)).to_string();
        text.split(" -- binds").next().unwrap_or_default().to_owned()
    }

    #[test]
    fn the_chunk_insert_has_one_text_whichever_values_are_missing() {
        let rows = |first: bool| (0..ROWS_PER_INSERT).map(|n| row((n % 2 == 0) == first)).collect::<Vec<_>>();
        assert_eq!(chunk_text(&rows(true)), chunk_text(&rows(false)));
    }

    #[test]
    fn one_row_of_the_chunk_insert_is_the_one_row_insert() {
        let one = row(true);
        let insert = usage_insert!(&one);
        let single = debug_query::<Sqlite, _>(&insert).to_string();
        assert_eq!(chunk_text(std::slice::from_ref(&one)), single.split(" -- binds").next().unwrap_or_default());
    }
}
