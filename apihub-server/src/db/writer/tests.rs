//! Tests of the writer on a temporary SQLite file: when operations are answered and committed,
//! what a failure rolls back, and what survives a runtime that ends.

use diesel::connection::SimpleConnection;
use diesel::sql_types::BigInt;
use diesel_async::SimpleAsyncConnection;

use super::*;

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// A writer on a fresh file with a table `t`, and a path to open a second connection on.
fn writer() -> (tempfile::TempDir, String, Arc<SqliteWriter>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("w.db").display().to_string();
    let mut conn = super::super::connect::open_sqlite_sync(&path, "PRAGMA wal_autocheckpoint = 0;").expect("open");
    conn.batch_execute("CREATE TABLE t (v INTEGER NOT NULL UNIQUE)").expect("create");
    let open = {
        let path = path.clone();
        move || super::super::connect::open_sqlite_sync(&path, "")
    };
    (dir, path, SqliteWriter::new(conn, open).expect("writer"))
}

/// Rows in `t`, read on a connection of its own (what the read pool sees).
fn rows(path: &str) -> i64 {
    let mut conn = super::super::connect::open_sqlite_sync(path, "").expect("open");
    diesel::RunQueryDsl::get_result::<Count>(diesel::sql_query("SELECT count(*) AS n FROM t"), &mut conn)
        .expect("count")
        .n
}

async fn exec(conn: &mut WriteConn, sql: &str) -> Result<(), StoreError> {
    conn.batch_execute(sql).await.map_err(|e| StoreError::Invalid(e.to_string()))
}

async fn insert(writer: &Arc<SqliteWriter>, answer: Answer, v: i64) -> Result<(), StoreError> {
    writer
        .batched(answer, async move |conn: &mut WriteConn| exec(conn, &format!("INSERT INTO t (v) VALUES ({v})")).await)
        .await
}

#[tokio::test]
async fn an_applied_operation_is_answered_before_its_commit_and_read_after_it() {
    let (_dir, path, writer) = writer();
    insert(&writer, Answer::Applied, 1).await.expect("insert");
    // Answered, and not yet committed: the commit is a task that has not run on this thread.
    assert_eq!(rows(&path), 0);
    writer.visible().await;
    assert_eq!(rows(&path), 1);
    // Nothing pending: no wait at all.
    writer.visible().await;
}

#[tokio::test]
async fn a_committed_operation_is_answered_after_its_commit_with_what_was_applied_before() {
    let (_dir, path, writer) = writer();
    insert(&writer, Answer::Applied, 1).await.expect("insert");
    insert(&writer, Answer::Committed, 2).await.expect("insert");
    assert_eq!(rows(&path), 2);
}

#[tokio::test]
async fn a_failed_operation_in_an_open_transaction_rolls_back_alone() {
    let (_dir, path, writer) = writer();
    insert(&writer, Answer::Applied, 1).await.expect("insert");
    let failed = writer
        .batched(Answer::Applied, async move |conn: &mut WriteConn| {
            exec(conn, "INSERT INTO t (v) VALUES (2)").await?;
            // The unique column refuses this one: the savepoint drops both inserts.
            exec(conn, "INSERT INTO t (v) VALUES (1)").await
        })
        .await;
    assert!(matches!(failed, Err(StoreError::Invalid(_))), "{failed:?}");
    insert(&writer, Answer::Applied, 3).await.expect("insert");
    writer.visible().await;
    assert_eq!(rows(&path), 2);
}

#[tokio::test]
async fn a_failed_operation_alone_rolls_back_its_transaction() {
    let (_dir, path, writer) = writer();
    insert(&writer, Answer::Committed, 1).await.expect("insert");
    assert!(insert(&writer, Answer::Applied, 1).await.is_err());
    writer.visible().await;
    insert(&writer, Answer::Committed, 2).await.expect("insert after a rollback");
    assert_eq!(rows(&path), 2);
}

#[tokio::test]
async fn an_account_transaction_commits_what_was_applied_first() {
    let (_dir, path, writer) = writer();
    insert(&writer, Answer::Applied, 1).await.expect("insert");
    writer
        .transaction(async |conn: &mut WriteConn| exec(conn, "INSERT INTO t (v) VALUES (2)").await)
        .await
        .expect("transaction");
    assert_eq!(rows(&path), 2);
}

/// Inserts `v` (applied) on a runtime of its own that then ends, its commit task unrun.
fn applied_on_a_runtime_that_ends(writer: &Arc<SqliteWriter>, v: i64) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(insert(writer, Answer::Applied, v)).expect("insert");
}

#[test]
fn operations_left_open_by_a_runtime_that_ends_are_committed_when_the_writer_drops() {
    let (_dir, path, writer) = writer();
    // The commit task goes with its runtime, then the writer's last handle.
    applied_on_a_runtime_that_ends(&writer, 1);
    assert_eq!(rows(&path), 0);
    drop(writer);
    assert_eq!(rows(&path), 1);
}

#[test]
fn a_commit_task_lost_with_its_runtime_does_not_stop_later_commits() {
    let (_dir, path, writer) = writer();
    applied_on_a_runtime_that_ends(&writer, 1);
    let second = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    second.block_on(async {
        insert(&writer, Answer::Applied, 2).await.expect("insert");
        tokio::time::timeout(std::time::Duration::from_secs(5), writer.visible()).await.expect("committed");
    });
    assert_eq!(rows(&path), 2);
}
