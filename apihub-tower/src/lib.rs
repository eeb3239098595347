//! Tower layers for APIHub (key auth, rate limits, quota, billing). Built on `apihub-core`.
#![warn(missing_docs)]

pub mod memory;
