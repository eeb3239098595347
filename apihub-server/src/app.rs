//! Start-up: open storage, make sure an administrator exists, build the state.

use std::sync::Arc;

use apihub_core::store::Store;
use apihub_core::user::{NewUser, Role, validate_password, validate_username};
use rand::Rng;
use rand::distr::Alphanumeric;

use crate::auth::jwt::JwtKeys;
use crate::auth::password;
use crate::config::Config;
use crate::db::{Db, PoolOptions, SqlStore};
use crate::state::AppState;

/// Opens the database (migrating it) and builds the shared state.
pub async fn init_state(config: Config) -> anyhow::Result<AppState> {
    let options = PoolOptions { max_connections: config.db_max_connections, ..PoolOptions::default() };
    let db = Db::connect(&config.database_url, &options).await?;
    let store: Arc<dyn Store> = Arc::new(SqlStore::new(db.clone()));
    let jwt = Arc::new(JwtKeys::new(config.secret_key.expose().as_bytes(), config.access_token_expire_minutes));
    Ok(AppState { store, db, jwt, config: Arc::new(config) })
}

/// What [`ensure_admin`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminBootstrap {
    /// An administrator existed; nothing changed.
    Existing,
    /// Created with the configured password.
    Created,
    /// Created with this generated password, which must be shown once.
    Generated(String),
}

/// Creates the first administrator from `ADMIN_*` when no administrator exists.
pub async fn ensure_admin(state: &AppState) -> anyhow::Result<AdminBootstrap> {
    if state.store.count_admins().await? > 0 {
        return Ok(AdminBootstrap::Existing);
    }
    let config = &state.config;
    let (password, generated) = match &config.admin_password {
        Some(p) => (p.expose().to_owned(), false),
        None => (rand::rng().sample_iter(Alphanumeric).take(20).map(char::from).collect::<String>(), true),
    };
    create_admin(state.store.as_ref(), &config.admin_username, &password, config.admin_email.clone()).await?;
    Ok(if generated { AdminBootstrap::Generated(password) } else { AdminBootstrap::Created })
}

/// Creates an administrator account (used at first start and by `apihub admin create`).
pub async fn create_admin(
    store: &dyn Store,
    username: &str,
    password: &str,
    email: Option<String>,
) -> anyhow::Result<()> {
    validate_username(username).map_err(|e| anyhow::anyhow!("ADMIN_USERNAME: {e}"))?;
    validate_password(password).map_err(|e| anyhow::anyhow!("ADMIN_PASSWORD: {e}"))?;
    let password_hash = password::hash_blocking(password.to_owned()).await?;
    store.create_user(NewUser { username: username.to_owned(), email, password_hash, role: Role::Admin }).await?;
    Ok(())
}
