//! A throwaway PostgreSQL database per test (also the credit engine's own tests' in
//! `src/db/leases/tests.rs`, which include this file).

/// A throwaway PostgreSQL database, dropped when the test ends.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    /// Where the fresh database is.
    pub url: String,
}

impl PgDatabase {
    /// Creates a database named `apihub_t_<uuid>` on the server `base` names.
    pub async fn create(base: &str) -> PgDatabase {
        use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
        let name = format!("apihub_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = AsyncPgConnection::establish(base).await.expect("connect to APIHUB_TEST_POSTGRES_URL");
        conn.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
        let (prefix, query) = match base.split_once('?') {
            Some((p, q)) => (p, format!("?{q}")),
            None => (base, String::new()),
        };
        let root = prefix.rsplit_once('/').map_or(prefix, |(root, _)| root);
        PgDatabase { admin_url: base.to_owned(), url: format!("{root}/{name}{query}"), name }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime; do the async cleanup on a runtime of its own.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            runtime.block_on(async move {
                use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
                if let Ok(mut conn) = AsyncPgConnection::establish(&url).await {
                    let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                }
            });
        })
        .join();
    }
}
