//! The per-request log: the usage log's rows one by one, newest first, read a page at a time with
//! a keyset [`Cursor`] (never an offset, so a deep page costs what the first one does), and pruned
//! in small batches.
//!
//! ```
//! use apihub_core::request_log::{Cursor, StatusFilter};
//!
//! let cursor = Cursor { created_at_ms: 1_764_806_400_000, id: 42 };
//! assert_eq!(Cursor::parse(&cursor.to_string()), Some(cursor));
//! assert_eq!(Cursor::parse("42"), None);
//! assert_eq!(StatusFilter::parse("error"), Some(StatusFilter::Error));
//! assert!(StatusFilter::Ok.matches(204) && !StatusFilter::Ok.matches(499));
//! ```

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::store::{StoreError, UsageRecord};
use crate::user::UserId;

/// Most rows one page may hold.
pub const MAX_PAGE: u32 = 200;

/// Where a page ends: the `(created_at, id)` of its last row. The next page holds the rows
/// strictly before it in the log's order (`created_at` descending, then `id` descending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The last row's time, in Unix milliseconds (as stored).
    pub created_at_ms: i64,
    /// The last row's id.
    pub id: i64,
}

impl Cursor {
    /// Reads what [`Cursor`]'s `Display` wrote (`<millis>-<id>`, two non-negative integers).
    pub fn parse(text: &str) -> Option<Cursor> {
        let (time, id) = text.split_once('-')?;
        let number = |s: &str| if s.bytes().all(|b| b.is_ascii_digit()) { s.parse::<i64>().ok() } else { None };
        Some(Cursor { created_at_ms: number(time)?, id: number(id)? })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.created_at_ms, self.id)
    }
}

/// Which statuses to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// This status exactly.
    Exact(u16),
    /// Any 2xx.
    Ok,
    /// Anything but a 2xx.
    Error,
}

impl StatusFilter {
    /// `ok`, `error`, or a three-digit status.
    pub fn parse(text: &str) -> Option<StatusFilter> {
        match text {
            "ok" => Some(StatusFilter::Ok),
            "error" => Some(StatusFilter::Error),
            digits if digits.len() == 3 && digits.bytes().all(|b| b.is_ascii_digit()) => {
                digits.parse().ok().map(StatusFilter::Exact)
            }
            _ => None,
        }
    }

    /// Whether a row with `status` is listed.
    pub fn matches(self, status: u16) -> bool {
        match self {
            StatusFilter::Exact(exact) => status == exact,
            StatusFilter::Ok => (200..300).contains(&status),
            StatusFilter::Error => !(200..300).contains(&status),
        }
    }
}

/// Which rows to list; every field narrows, `None` lets all through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFilter {
    /// One user's rows (always set for a user's own listing).
    pub user_id: Option<UserId>,
    /// One key's rows.
    pub key_id: Option<i64>,
    /// One model's rows (exact name).
    pub model: Option<String>,
    /// Statuses.
    pub status: Option<StatusFilter>,
    /// Inclusive start.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive end.
    pub to: Option<DateTime<Utc>>,
}

/// One row of the log, with the names it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestEntry {
    /// The row's id.
    pub id: i64,
    /// The row.
    pub record: UsageRecord,
    /// The owner's username (empty if the user was removed since).
    pub username: String,
    /// The key's name (empty if the key was removed since).
    pub key_name: String,
    /// The metered route's name, for a metered route's call (empty if removed since).
    pub route_name: Option<String>,
}

impl RequestEntry {
    /// Where the page that ends with this row ends.
    pub fn cursor(&self) -> Cursor {
        Cursor { created_at_ms: self.record.created_at.timestamp_millis(), id: self.id }
    }
}

/// The per-request log's storage.
#[async_trait]
pub trait RequestLogStore: Send + Sync {
    /// At most `limit` rows the filter selects, newest first, strictly after `after` in that order.
    async fn requests(
        &self,
        filter: &RequestFilter,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<RequestEntry>, StoreError>;

    /// Deletes at most `batch` of the oldest rows created before `before`; returns how many.
    async fn prune_requests(&self, before: DateTime<Utc>, batch: u32) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_what_they_write_and_nothing_else() {
        let cursor = Cursor { created_at_ms: i64::MAX, id: 0 };
        assert_eq!(Cursor::parse(&cursor.to_string()), Some(cursor));
        for bad in ["", "-", "1-", "-1", "1--1", "+1-2", "1-2-3", "a-1", "99999999999999999999-1"] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn status_filters_are_exact_or_a_class() {
        assert_eq!(StatusFilter::parse("429"), Some(StatusFilter::Exact(429)));
        for bad in ["", "2xx", "20", "2000", "OK", "-20"] {
            assert_eq!(StatusFilter::parse(bad), None, "{bad}");
        }
        assert!(StatusFilter::Error.matches(499) && StatusFilter::Error.matches(199));
        assert!(!StatusFilter::Error.matches(200) && StatusFilter::Ok.matches(299));
    }
}
