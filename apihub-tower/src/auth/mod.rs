//! Key authentication: reads the key a client presents, looks it up and checks it; admission
//! ([`AdmissionLayer`](crate::admission::AdmissionLayer)) runs it first and puts the
//! [`AuthenticatedKey`](crate::context::AuthenticatedKey) into the request's extensions.
//!
//! The key is read from `Authorization: Bearer` (OpenAI clients), `x-api-key` (Anthropic) or
//! `x-goog-api-key` / `?key=` (Gemini). Its [`KeyFormat`] says what it is looked up by and how it
//! is verified ([`AhgKeys`], APIHub's own, by default; [`HashedKeys`] for an application's
//! existing keys); a [`KeyLookup`] (one method) finds its [`KeyRecord`], through a [`KeyCache`].
//! Missing, malformed, unknown or wrong keys get a 401; a key that is known but disabled,
//! expired or owned by a disabled account gets a 403. The refusal never reaches the inner service.
//!
//! An application that signs its users in itself meters their requests by putting an
//! [`AuthenticatedKey`](crate::context::AuthenticatedKey) for them into the request's extensions
//! in a middleware of its own, outside the gateway's layers: admission then takes that identity
//! as it is and asks for no key (see [`AdmissionLayer`](crate::admission::AdmissionLayer)).
//!
//! ```
//! use std::sync::Arc;
//! use apihub_tower::auth::{HashedKeys, KeyCache};
//! use apihub_tower::admission::AdmissionLayer;
//! use apihub_tower::memory::MemoryStore;
//!
//! let cache = Arc::new(KeyCache::new(Arc::new(MemoryStore::new())));
//! // Keys are any strings, looked up by their SHA-256.
//! let _admission = AdmissionLayer::new(cache).key_format(Arc::new(HashedKeys::default()));
//! ```

mod cache;
mod check;
mod format;

pub use apihub_core::lookup::{KeyLookup, KeyRecord};
pub use cache::KeyCache;
pub use check::presented_key;
pub(crate) use check::{authenticate, presented_in};
pub use format::{AhgKeys, HashedKeys, KeyFormat};
