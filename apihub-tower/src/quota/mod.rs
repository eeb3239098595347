//! Quota: what the authenticated key may ask for. Admission reads the request once (model,
//! stream flag, output cap) and refuses, before anything reaches the upstream or moves a
//! counter:
//! - a path the [extractor](crate::extract) does not meter (404 `unknown_url`: nothing unmetered
//!   is forwarded);
//! - (403) a model not on the key's allow-list, a key whose `remaining_calls`, `token_limit` or
//!   `quota_limit` is used up.
//!
//! These are fast checks against the key as authenticated; billing's reservation enforces the
//! same limits atomically. The body is read whole first, up to a limit (413 beyond it), and the
//! [`RequestInfo`](apihub_core::usage::RequestInfo) goes into the request's extensions for
//! billing.

mod check;

pub(crate) use check::{check, key_limit_refusal, unknown_route};
