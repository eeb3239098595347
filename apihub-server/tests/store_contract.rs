//! The storage contract ([`apihub_tower::testkit`]) over the diesel store: on a temporary SQLite
//! file, and on a fresh PostgreSQL database when `APIHUB_TEST_POSTGRES_URL` names a server
//! (skipped without it locally, a failure under CI).

#[path = "common/pg.rs"]
mod pg;

use apihub_server::db::{Db, DbUrl, PoolOptions, SqlStore};
use apihub_tower::testkit::Subject;

async fn connect(url: DbUrl) -> SqlStore {
    SqlStore::new(Db::connect(&url, &PoolOptions::default()).await.expect("the database"))
}

async fn sqlite_store() -> Option<Subject> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = connect(DbUrl::Sqlite(dir.path().join("apihub.db").display().to_string())).await;
    Some(Subject::with_guard(store, dir))
}

async fn postgres_store() -> Option<Subject> {
    let Ok(base) = std::env::var("APIHUB_TEST_POSTGRES_URL") else {
        assert!(std::env::var_os("CI").is_none(), "APIHUB_TEST_POSTGRES_URL must be set in CI");
        return None;
    };
    let database = pg::PgDatabase::create(&base).await;
    let store = connect(DbUrl::Postgres(database.url.clone())).await;
    Some(Subject::with_guard(store, database))
}

mod sqlite {
    apihub_tower::store_contract!(super::sqlite_store);
}

mod postgres {
    apihub_tower::store_contract!(super::postgres_store);
}
