//! `/api/usage/requests`: the per-request log, newest first, a keyset page at a time, and its
//! export as CSV or NDJSON streamed in chunks. A user sees their own requests; administrators see
//! everyone's (`/api/admin/usage/requests`).

use apihub_core::request_log::{Cursor, MAX_PAGE, RequestEntry, RequestFilter, RequestLogStore, StatusFilter};
use apihub_core::store::UsageSource;
use apihub_core::{DiscountRate, Money};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use http::header;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

use super::stats::parse_bound;
use crate::auth::{AdminUser, CurrentUser};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Query};
use crate::state::AppState;

/// Rows a page holds when the query names no `limit`.
const DEFAULT_PAGE: u32 = 50;
/// Rows an export reads per query.
const EXPORT_CHUNK: u32 = 1_000;

/// The filters of both listings and both exports.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilterQuery {
    /// Only this key's requests.
    pub key_id: Option<i64>,
    /// Only this model's requests (exact name).
    #[param(max_length = 200, pattern = r"^[^\x00]*$")]
    pub model: Option<String>,
    /// A status (`429`), `ok` (any 2xx) or `error` (anything else).
    #[param(pattern = r"^([0-9]{3}|ok|error)$")]
    pub status: Option<String>,
    /// Start, inclusive: an RFC 3339 time, or a `YYYY-MM-DD` date (its UTC midnight).
    #[param(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$"
    )]
    pub from: Option<String>,
    /// End: an RFC 3339 time (exclusive), or a `YYYY-MM-DD` date (counted whole, to its end in UTC).
    #[param(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$"
    )]
    pub to: Option<String>,
}

impl FilterQuery {
    fn filter(&self) -> Result<RequestFilter, ApiError> {
        if self.model.as_deref().is_some_and(|m| m.chars().count() > 200 || m.contains('\0')) {
            return Err(ApiError::Validation("`model` must be at most 200 characters, without NUL".into()));
        }
        let status = match &self.status {
            Some(text) => Some(StatusFilter::parse(text).ok_or_else(|| {
                ApiError::Validation("`status` must be a three-digit status, `ok` or `error`".into())
            })?),
            None => None,
        };
        let from = self.from.as_deref().map(|t| parse_bound(t, "from", false)).transpose()?;
        let to = self.to.as_deref().map(|t| parse_bound(t, "to", true)).transpose()?;
        Ok(RequestFilter { user_id: None, key_id: self.key_id, model: self.model.clone(), status, from, to })
    }
}

/// `?user_id=` on the administrators' listing and export.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// Only this user's requests.
    pub user_id: Option<i64>,
}

/// `?cursor=&limit=` of a listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The previous page's `next_cursor`: this page starts after it. Opaque.
    #[param(pattern = r"^[0-9]{1,18}-[0-9]{1,18}$")]
    pub cursor: Option<String>,
    /// Rows per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

impl PageQuery {
    fn read(&self) -> Result<(Option<Cursor>, u32), ApiError> {
        let cursor =
            match &self.cursor {
                Some(text) => Some(Cursor::parse(text).ok_or_else(|| {
                    ApiError::Validation("`cursor` must be a `next_cursor` from a previous page".into())
                })?),
                None => None,
            };
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::Validation(format!("`limit` must be from 1 to {MAX_PAGE}")));
        }
        Ok((cursor, limit))
    }
}

/// What an export is written as.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// Comma-separated values, with a UTF-8 byte order mark and a header row.
    #[default]
    Csv,
    /// One JSON object per line, as the listing's items.
    Ndjson,
}

/// `?format=` of an export.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FormatQuery {
    /// `csv` (the default) or `ndjson`.
    #[param(inline)]
    pub format: Option<ExportFormat>,
}

/// One request through the gateway. Money fields are exact decimals of credits.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestItem {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    /// The gateway's request id (the `x-apihub-request-id` response header).
    pub request_id: String,
    pub user_id: i64,
    /// The owner's username (empty if the user was removed since).
    pub username: String,
    pub key_id: i64,
    /// The key's name (empty if the key was removed since).
    pub key_name: String,
    pub model: String,
    /// The path called.
    pub endpoint: String,
    /// The metered route called, for a metered route's call.
    pub route_id: Option<i64>,
    /// Its name (empty if the route was removed since).
    pub route_name: Option<String>,
    /// The upstream channel that answered (`default`: `UPSTREAM_URL`; null for a metered route's
    /// call or a request no channel answered).
    pub channel: Option<String>,
    /// Channels tried, the one that answered included.
    pub attempts: u32,
    pub stream: bool,
    /// The status the client got (499: the client went away before the end).
    pub status: u16,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Prompt tokens read from the upstream's cache.
    pub cached_tokens: i64,
    /// Cost before discounts.
    #[schema(value_type = f64)]
    pub raw_cost: Money,
    /// The user's multiplier at the time (1 = full price).
    #[schema(value_type = f64, example = 1)]
    pub user_discount: DiscountRate,
    /// The key's multiplier at the time (1 = full price).
    #[schema(value_type = f64, example = 1)]
    pub key_discount: DiscountRate,
    /// What was charged (the ledger's consume row).
    #[schema(value_type = f64, example = 0.0125)]
    pub charged: Money,
    /// The part of the charge above the request's hold.
    #[schema(value_type = f64)]
    pub overage: Money,
    /// Time to the upstream's response headers, in milliseconds.
    pub upstream_latency_ms: i64,
    /// Time to the first byte of the response body (a stream's first event), in milliseconds;
    /// null when none came.
    pub first_byte_ms: Option<i64>,
    /// `reported` by the upstream, or `estimated` by the gateway.
    #[schema(example = "reported")]
    pub usage_source: &'static str,
    /// What the operator pays for it, at the answering channel's cost price: only in the
    /// administrators' listing, and only when that channel has a cost price for the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub cost: Option<Money>,
}

impl RequestItem {
    /// The row as an administrator sees it: with the operator's cost.
    fn for_admin(e: RequestEntry) -> Self {
        let cost = e.record.cost;
        RequestItem { cost, ..e.into() }
    }
}

/// The row as its owner sees it: never the operator's cost.
impl From<RequestEntry> for RequestItem {
    fn from(e: RequestEntry) -> Self {
        let r = e.record;
        RequestItem {
            id: e.id,
            created_at: r.created_at,
            request_id: r.request_id,
            user_id: r.user_id,
            username: e.username,
            key_id: r.key_id,
            key_name: e.key_name,
            model: r.model,
            endpoint: r.endpoint,
            route_id: r.route_id,
            route_name: e.route_name,
            channel: r.channel,
            attempts: r.attempts,
            stream: r.stream,
            status: r.status,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            cached_tokens: r.cached_tokens,
            raw_cost: r.raw_cost,
            user_discount: r.user_discount,
            key_discount: r.key_discount,
            charged: r.charged,
            overage: r.overage,
            upstream_latency_ms: r.upstream_latency_ms,
            first_byte_ms: r.first_byte_ms,
            usage_source: match r.usage_source {
                UsageSource::Reported => "reported",
                UsageSource::Estimated => "estimated",
            },
            cost: None,
        }
    }
}

/// One page of requests, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestPage {
    pub items: Vec<RequestItem>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// One page: `limit` rows, and a cursor when there are more (one more row is read to know).
async fn page(
    store: &dyn RequestLogStore,
    filter: &RequestFilter,
    query: &PageQuery,
    item: fn(RequestEntry) -> RequestItem,
) -> Result<RequestPage, ApiError> {
    let (after, limit) = query.read()?;
    let mut entries = store.requests(filter, after, limit + 1).await?;
    let more = entries.len() > limit as usize;
    entries.truncate(limit as usize);
    let next_cursor = if more { entries.last().map(|e| e.cursor().to_string()) } else { None };
    Ok(RequestPage { items: entries.into_iter().map(item).collect(), next_cursor })
}

/// The caller's requests, newest first.
#[utoipa::path(get, path = "/api/usage/requests", tag = "stats", security(("bearer" = [])),
    params(FilterQuery, PageQuery),
    responses((status = 200, body = RequestPage), (status = 422, body = ErrorBody)))]
pub async fn my_requests(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(filter): Query<FilterQuery>,
    Query(paging): Query<PageQuery>,
) -> Result<Json<RequestPage>, ApiError> {
    let filter = RequestFilter { user_id: Some(user.id), ..filter.filter()? };
    Ok(Json(page(state.request_log.as_ref(), &filter, &paging, RequestItem::from).await?))
}

/// Everyone's requests, newest first.
#[utoipa::path(get, path = "/api/admin/usage/requests", tag = "admin", security(("bearer" = [])),
    params(UserQuery, FilterQuery, PageQuery),
    responses((status = 200, body = RequestPage), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn admin_requests(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(user): Query<UserQuery>,
    Query(filter): Query<FilterQuery>,
    Query(paging): Query<PageQuery>,
) -> Result<Json<RequestPage>, ApiError> {
    let filter = RequestFilter { user_id: user.user_id, ..filter.filter()? };
    Ok(Json(page(state.request_log.as_ref(), &filter, &paging, RequestItem::for_admin).await?))
}

/// The caller's requests matching the filters, newest first, as a CSV or NDJSON download.
#[utoipa::path(get, path = "/api/usage/requests/export", tag = "stats", security(("bearer" = [])),
    params(FilterQuery, FormatQuery),
    responses(
        (status = 200, description = "The rows, streamed", content((String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 422, body = ErrorBody)))]
pub async fn export_my_requests(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(filter): Query<FilterQuery>,
    Query(format): Query<FormatQuery>,
) -> Result<Response, ApiError> {
    let filter = RequestFilter { user_id: Some(user.id), ..filter.filter()? };
    Ok(export(state.request_log.clone(), filter, format.format.unwrap_or_default()))
}

/// Everyone's requests matching the filters, newest first, as a CSV or NDJSON download.
#[utoipa::path(get, path = "/api/admin/usage/requests/export", tag = "admin", security(("bearer" = [])),
    params(UserQuery, FilterQuery, FormatQuery),
    responses(
        (status = 200, description = "The rows, streamed", content((String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn export_admin_requests(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(user): Query<UserQuery>,
    Query(filter): Query<FilterQuery>,
    Query(format): Query<FormatQuery>,
) -> Result<Response, ApiError> {
    let filter = RequestFilter { user_id: user.user_id, ..filter.filter()? };
    Ok(export(state.request_log.clone(), filter, format.format.unwrap_or_default()))
}

/// The download: [`EXPORT_CHUNK`] rows per query, each written as one body chunk, so memory stays
/// bounded whatever the number of rows, and the next query waits until the client took the last
/// chunk. A query that fails ends the body with an error (the client sees a cut-off download).
fn export(store: Arc<dyn RequestLogStore>, filter: RequestFilter, format: ExportFormat) -> Response {
    // `None`: not started; `Some(None)`: done; `Some(Some(c))`: continue after `c`.
    let stream = futures_util::stream::unfold(Some(None::<Cursor>), move |state| {
        let (store, filter) = (store.clone(), filter.clone());
        async move {
            let after = state?;
            let entries = match store.requests(&filter, after, EXPORT_CHUNK).await {
                Ok(entries) => entries,
                Err(error) => {
                    tracing::error!(%error, "exporting requests failed");
                    return Some((Err(std::io::Error::other(error.to_string())), None));
                }
            };
            let next = match entries.last() {
                Some(last) if entries.len() == EXPORT_CHUNK as usize => Some(Some(last.cursor())),
                _ => None,
            };
            let mut out = Vec::with_capacity(entries.len() * 256 + 256);
            if after.is_none() && matches!(format, ExportFormat::Csv) {
                out.extend_from_slice("\u{feff}".as_bytes());
                out.extend_from_slice(CSV_HEADER.as_bytes());
            }
            for entry in entries {
                write_row(&mut out, format, RequestItem::from(entry));
            }
            if out.is_empty() && next.is_none() {
                return None;
            }
            Some((Ok::<_, std::io::Error>(Bytes::from(out)), next))
        }
    });
    let (content_type, extension) = match format {
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
        ExportFormat::Ndjson => ("application/x-ndjson", "ndjson"),
    };
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"requests.{extension}\"")),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// The CSV header row: the listing's fields, in order.
const CSV_HEADER: &str = "id,created_at,request_id,user_id,username,key_id,key_name,model,endpoint,route_id,route_name,\
channel,attempts,stream,status,prompt_tokens,completion_tokens,cached_tokens,raw_cost,user_discount,key_discount,charged,overage,\
upstream_latency_ms,first_byte_ms,usage_source\r\n";

fn write_row(out: &mut Vec<u8>, format: ExportFormat, item: RequestItem) {
    match format {
        ExportFormat::Ndjson => {
            // Serializing plain data into a Vec cannot fail.
            if serde_json::to_writer(&mut *out, &item).is_ok() {
                out.push(b'\n');
            }
        }
        ExportFormat::Csv => {
            let fields: [String; 26] = [
                item.id.to_string(),
                item.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                item.request_id,
                item.user_id.to_string(),
                item.username,
                item.key_id.to_string(),
                item.key_name,
                item.model,
                item.endpoint,
                item.route_id.map(|id| id.to_string()).unwrap_or_default(),
                item.route_name.unwrap_or_default(),
                item.channel.unwrap_or_default(),
                item.attempts.to_string(),
                item.stream.to_string(),
                item.status.to_string(),
                item.prompt_tokens.to_string(),
                item.completion_tokens.to_string(),
                item.cached_tokens.to_string(),
                item.raw_cost.to_string(),
                item.user_discount.to_string(),
                item.key_discount.to_string(),
                item.charged.to_string(),
                item.overage.to_string(),
                item.upstream_latency_ms.to_string(),
                item.first_byte_ms.map(|ms| ms.to_string()).unwrap_or_default(),
                item.usage_source.to_owned(),
            ];
            for (i, field) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                csv_field(out, field);
            }
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// One CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break, with its
/// quotes doubled. A field a spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) is
/// prefixed with `'`, since names and models are the users' own text.
fn csv_field(out: &mut Vec<u8>, field: &str) {
    let formula = field.starts_with(['=', '+', '-', '@']) && field.parse::<f64>().is_err();
    let quoted = formula || field.contains([',', '"', '\n', '\r']);
    if quoted {
        out.push(b'"');
    }
    if formula {
        out.push(b'\'');
    }
    for c in field.chars() {
        if c == '"' {
            out.push(b'"');
        }
        let mut buf = [0; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    if quoted {
        out.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(text: &str) -> String {
        let mut out = Vec::new();
        csv_field(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_fields_are_quoted_only_when_they_must_be() {
        assert_eq!(field("gpt-4o"), "gpt-4o");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field("名字"), "名字");
        assert_eq!(field("-0.5"), "-0.5");
        assert_eq!(field("=HYPERLINK(1)"), "\"'=HYPERLINK(1)\"");
    }
}
