//! What every handler can reach.

use std::sync::Arc;

use apihub_core::store::Store;

use crate::auth::jwt::JwtKeys;
use crate::config::Config;
use crate::db::Db;

/// Shared state: cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// All storage, behind core's traits.
    pub store: Arc<dyn Store>,
    /// The pool, for readiness checks.
    pub db: Db,
    /// Session token keys.
    pub jwt: Arc<JwtKeys>,
    /// Settings.
    pub config: Arc<Config>,
}
