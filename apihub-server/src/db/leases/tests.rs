//! The lease protocol's faults on a real PostgreSQL database (`APIHUB_TEST_POSTGRES_URL`; without
//! it the tests are skipped locally and fail under CI), with engines that run no tasks of their
//! own: each test writes, renews, reclaims and lets time pass (on the engine's monotonic clock
//! and on the leases' expiries alike) exactly when it says. Two engines on one database are two
//! gateways. The faults these tests inject are real: a pool with no connection to give, a
//! commit whose acknowledgement is lost (a narrow test-only switch in `write_queued`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use apihub_core::billing::{BillingError, HoldRequest, NewReservation, ReservationId, Settlement};
use apihub_core::budget::BudgetZone;
use apihub_core::policy::KeyId;
use apihub_core::user::UserId;
use diesel::sql_types::{BigInt, Text};
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::{LeaseEngine, PgPool};
use crate::db::budgets::BudgetDefs;
use crate::db::{DbUrl, migrate};

/// The throwaway database of the integration tests.
#[path = "../../../tests/common/pg.rs"]
mod pg;

/// A fresh database with the migrations applied, dropped at the end.
struct TestDb {
    database: pg::PgDatabase,
}

impl TestDb {
    async fn create() -> Option<TestDb> {
        let Ok(base) = std::env::var("APIHUB_TEST_POSTGRES_URL") else {
            assert!(std::env::var_os("CI").is_none(), "APIHUB_TEST_POSTGRES_URL must be set in CI");
            return None;
        };
        let database = pg::PgDatabase::create(&base).await;
        migrate(&DbUrl::Postgres(database.url.clone())).await.expect("migrations");
        Some(TestDb { database })
    }

    /// A pool of `size` connections, waiting at most 200 ms for one.
    fn pool(&self, size: usize) -> PgPool {
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(&self.database.url);
        let wait = Some(Duration::from_millis(200));
        PgPool::builder(manager)
            .max_size(size)
            .timeouts(deadpool::managed::Timeouts { wait, create: wait, recycle: wait })
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("pool")
    }

    /// A gateway: an engine on a pool of its own.
    fn gateway(&self, connections: usize) -> (Arc<LeaseEngine>, PgPool) {
        let pool = self.pool(connections);
        (LeaseEngine::new(pool.clone(), BudgetDefs::new(BudgetZone::default())), pool)
    }

    async fn conn(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.database.url).await.expect("connect")
    }

    /// A user with `balance` micros and an unlimited key of theirs.
    async fn customer(&self, name: &str, balance: i64) -> (UserId, KeyId) {
        let mut conn = self.conn().await;
        let user: Vec<Id> = diesel::sql_query(
            "INSERT INTO users (username, password_hash, role, token_balance, created_at, updated_at) \
             VALUES ($1, 'x', 'user', $2, 0, 0) RETURNING id",
        )
        .bind::<Text, _>(name)
        .bind::<BigInt, _>(balance)
        .load(&mut conn)
        .await
        .expect("user");
        let user = user[0].id;
        let key: Vec<Id> = diesel::sql_query(
            "INSERT INTO api_keys (user_id, public_id, secret_hash, last4, name, status, created_at, updated_at) \
             VALUES ($1, $2, 'x', 'xxxx', 'k', 'active', 0, 0) RETURNING id",
        )
        .bind::<BigInt, _>(user)
        .bind::<Text, _>(format!("pk-{name}"))
        .load(&mut conn)
        .await
        .expect("key");
        (user, key[0].id)
    }

    async fn number(&self, sql: &str, user: UserId, node: Option<&str>) -> i64 {
        let mut conn = self.conn().await;
        let row: Vec<Number> = diesel::sql_query(sql)
            .bind::<BigInt, _>(user)
            .bind::<Text, _>(node.unwrap_or(""))
            .load(&mut conn)
            .await
            .expect(sql);
        row[0].n
    }

    /// What `node`'s lease of the user's credit holds in the database.
    async fn lease(&self, user: UserId, node: &str) -> i64 {
        let sql = "SELECT COALESCE(SUM(amount), 0)::BIGINT AS n FROM credit_leases \
                   WHERE user_id = $1 AND key_id IS NULL AND node_id = $2";
        self.number(sql, user, Some(node)).await
    }

    /// A limit of `micros` on the key's credit.
    async fn limit_key(&self, key: KeyId, micros: i64) {
        let mut conn = self.conn().await;
        diesel::sql_query("UPDATE api_keys SET quota_limit = $2 WHERE id = $1")
            .bind::<BigInt, _>(key)
            .bind::<BigInt, _>(micros)
            .execute(&mut conn)
            .await
            .expect("limit the key");
    }

    /// A daily budget of `micros` on the key's credit.
    async fn key_budget(&self, key: KeyId, micros: i64) {
        let mut conn = self.conn().await;
        diesel::sql_query(
            "INSERT INTO budgets (key_id, period, credit_limit, created_at, updated_at) VALUES ($1, 'day', $2, 0, 0)",
        )
        .bind::<BigInt, _>(key)
        .bind::<BigInt, _>(micros)
        .execute(&mut conn)
        .await
        .expect("budget");
    }

    /// The key's credit leased (`quota_reserved`) and used.
    async fn key_credit(&self, key: KeyId) -> (i64, i64) {
        let sql = |column| format!("SELECT {column} AS n FROM api_keys WHERE id = $1 AND $2 = $2");
        (self.number(&sql("quota_reserved"), key, None).await, self.number(&sql("quota_used"), key, None).await)
    }

    /// The credit leased and used of the key's budget windows.
    async fn window_credit(&self, key: KeyId) -> (i64, i64) {
        let sql = |column| {
            format!(
                "SELECT COALESCE(SUM(w.{column}), 0)::BIGINT AS n FROM budget_windows w \
                 JOIN budgets b ON b.id = w.budget_id WHERE b.key_id = $1 AND $2 = $2"
            )
        };
        (self.number(&sql("credit_reserved"), key, None).await, self.number(&sql("credit_used"), key, None).await)
    }

    /// What the key has reserved (leased): credit, tokens, calls.
    async fn key_reserved(&self, key: KeyId) -> [i64; 3] {
        let mut reserved = [0; 3];
        for (slot, column) in reserved.iter_mut().zip(["quota_reserved", "tokens_reserved", "calls_reserved"]) {
            *slot =
                self.number(&format!("SELECT {column} AS n FROM api_keys WHERE id = $1 AND $2 = $2"), key, None).await;
        }
        reserved
    }

    /// What the key's budget windows have reserved (leased): credit, tokens, calls.
    async fn window_reserved(&self, key: KeyId) -> [i64; 3] {
        let mut reserved = [0; 3];
        for (slot, column) in reserved.iter_mut().zip(["credit_reserved", "tokens_reserved", "calls_reserved"]) {
            let sql = format!(
                "SELECT COALESCE(SUM(w.{column}), 0)::BIGINT AS n FROM budget_windows w \
                 JOIN budgets b ON b.id = w.budget_id WHERE b.key_id = $1 AND $2 = $2"
            );
            *slot = self.number(&sql, key, None).await;
        }
        reserved
    }

    /// This node's lease rows, of credit and of budget windows.
    async fn lease_rows(&self, node: &str) -> i64 {
        let sql = "SELECT (SELECT COUNT(*) FROM credit_leases WHERE node_id = $2) \
                   + (SELECT COUNT(*) FROM budget_leases WHERE node_id = $2) + 0 * $1 AS n";
        self.number(sql, 0, Some(node)).await
    }

    async fn reserved(&self, user: UserId) -> i64 {
        self.number("SELECT reserved AS n FROM users WHERE id = $1 AND $2 = $2", user, None).await
    }

    async fn balance(&self, user: UserId) -> i64 {
        self.number("SELECT token_balance AS n FROM users WHERE id = $1 AND $2 = $2", user, None).await
    }

    async fn consume_rows(&self, user: UserId) -> i64 {
        let sql = "SELECT COUNT(*) AS n FROM transactions WHERE user_id = $1 AND tx_type = 'consume' AND $2 = $2";
        self.number(sql, user, None).await
    }

    /// `by` passes without a renewal: on `engine`'s clock, and for its leases' expiries.
    async fn elapse(&self, engine: &LeaseEngine, by: Duration) {
        pretend_elapsed(engine, by);
        let mut conn = self.conn().await;
        for table in ["credit_leases", "budget_leases"] {
            diesel::sql_query(format!("UPDATE {table} SET expires_at = expires_at - $1 WHERE node_id = $2"))
                .bind::<BigInt, _>(i64::try_from(by.as_millis()).expect("millis"))
                .bind::<Text, _>(engine.node_id())
                .execute(&mut conn)
                .await
                .expect("age leases");
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(diesel::QueryableByName)]
struct Number {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The engine's clock moves `by` ahead of when it last asked for its leases.
fn pretend_elapsed(engine: &LeaseEngine, by: Duration) {
    for asked in engine.asked().values_mut() {
        *asked = asked.checked_sub(by).expect("an instant that far back");
    }
}

fn hold(user: UserId, key: KeyId, request_id: &str, amount: i64) -> NewReservation {
    let hold = HoldRequest { amount: apihub_core::Money::from_micros(amount), tokens: 0 };
    NewReservation { user_id: user, key_id: key, request_id: request_id.into(), hold }
}

fn charge(micros: i64) -> Settlement {
    Settlement { charge: apihub_core::Money::from_micros(micros), tokens: 0, success: true, description: "t".into() }
}

/// What `engine`'s book counts as its lease of the user: its funds, settled charges included.
fn book_lease(engine: &LeaseEngine, user: UserId) -> i64 {
    engine.book().stored_user(user).unwrap_or(0)
}

fn held(engine: &LeaseEngine, user: UserId) -> i64 {
    engine.user_holds(user).map_or(0, |funds| funds.reserved.micros())
}

/// One heartbeat, as `upkeep` runs it: the leases renewed, then those the book no longer uses
/// given back.
async fn heartbeat(engine: &LeaseEngine) {
    let renewed = engine.renew().await.expect("renewed");
    engine.return_strays(&renewed).await.expect("strays given back");
}

async fn reserve(engine: &LeaseEngine, new: &NewReservation) -> Result<ReservationId, BillingError> {
    engine.reserve(new).await
}

/// A request of `micros` held and settled at exactly that (queued, not yet written).
async fn spend(engine: &LeaseEngine, user: UserId, key: KeyId, request_id: &str, micros: i64) {
    let id = reserve(engine, &hold(user, key, request_id, micros)).await.expect("held");
    engine.settle(id, &charge(micros)).expect("settled");
}

/// Bug A: a grant renews only its own lease, and a renewal that touches any of this gateway's
/// leases used to vouch for every lease in its book. Here the lease of user 1 is not renewed
/// for 21 s while a grant for user 2 succeeds in between; another gateway reclaims the expired
/// lease; this gateway must then not hold user 1's credit from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_does_not_spend_a_lease_another_gateway_reclaimed() {
    let Some(db) = TestDb::create().await else { return };
    let (one, key_one) = db.customer("one", 1_000_000).await;
    let (two, key_two) = db.customer("two", 1_000_000).await;
    let (a, _) = db.gateway(4);
    let (b, _) = db.gateway(4);

    let first = reserve(&a, &hold(one, key_one, "a1", 100_000)).await.expect("a leases user one's credit");
    a.release(first).expect("released");
    db.elapse(&a, Duration::from_secs(16)).await;
    let second = reserve(&a, &hold(two, key_two, "a2", 100_000)).await.expect("a leases user two's credit");
    a.release(second).expect("released");
    // Its renewals fail for five more seconds: user one's lease expires, and B frees it.
    db.elapse(&a, Duration::from_secs(5)).await;
    assert!(b.reclaim_expired().await.expect("reclaim") >= 1);
    assert_eq!(db.reserved(one).await, 0, "user one's lease expired and was freed");
    a.renew().await.expect("a renews what it still has");

    let a_held = match reserve(&a, &hold(one, key_one, "a3", 400_000)).await {
        Ok(_) => 400_000,
        Err(_) => 0,
    };
    assert!(
        db.lease(one, &a.node_id()).await >= held(&a, one),
        "a holds {} of user one's credit, but leases {}",
        held(&a, one),
        db.lease(one, &a.node_id()).await
    );
    // B sells what is free; together they never hold more than the balance.
    let mut b_held = 0;
    for (n, amount) in [500_000, 500_000, 100_000].into_iter().enumerate() {
        if reserve(&b, &hold(one, key_one, &format!("b{n}"), amount)).await.is_ok() {
            b_held += amount;
        }
    }
    assert!(a_held + b_held <= 1_000_000, "{a_held} + {b_held} held of a balance of 1,000,000");
}

/// Bug B: a gateway whose leases lapsed used to forget its book but keep its node id, so its
/// next grant added to the old lease row, and its old holds closed against the new entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_leases_lapsed_keeps_its_old_holds_apart_from_its_new_lease() {
    let Some(db) = TestDb::create().await else { return };
    let (one, key) = db.customer("one", 1_000_000).await;
    let (a, _) = db.gateway(4);
    let (b, _) = db.gateway(4);

    let old = reserve(&a, &hold(one, key, "old", 300_000)).await.expect("a leases");
    // The database is away for 21 s: a's leases lapse (expired, not yet freed).
    db.elapse(&a, Duration::from_secs(21)).await;
    reserve(&a, &hold(one, key, "new", 100_000)).await.expect("a leases afresh");
    a.settle(old, &charge(300_000)).expect("the old hold settles");
    a.flush().await.expect("written");
    assert_eq!(held(&a, one), 100_000, "a's open hold is the new one");

    // Another gateway frees what expired; what a leases now is what its book spends.
    b.reclaim_expired().await.expect("reclaim");
    a.renew().await.expect("renew");
    b.reclaim_expired().await.expect("reclaim");
    assert_eq!(db.lease(one, &a.node_id()).await, book_lease(&a, one), "a's lease in the database and its book");
    assert_eq!(db.reserved(one).await, book_lease(&a, one), "no credit stranded in an old lease");
    assert_eq!(db.balance(one).await, 700_000);
}

/// Bug C: a give-back shrank the book first; when the database's shrink then failed, the
/// difference stayed locked in the lease (renewed by the heartbeat) while the book had given it
/// up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_give_back_leaves_the_lease_and_the_book_equal() {
    let Some(db) = TestDb::create().await else { return };
    let (one, key) = db.customer("one", 1_000_000).await;
    let (a, pool) = db.gateway(1);

    let open = reserve(&a, &hold(one, key, "r1", 100_000)).await.expect("a leases");
    let leased = db.lease(one, &a.node_id()).await;
    assert_eq!(book_lease(&a, one), leased);
    {
        // The pool has no connection to give: giving back (before an administrator's debit) fails.
        let _taken = pool.get().await.expect("the only connection");
        a.revoke_user(one).await.expect_err("no connection");
    }
    assert_eq!(book_lease(&a, one), db.lease(one, &a.node_id()).await, "the book gave up what the lease kept");
    // The user stays busy: the lease grows, and still matches the book.
    reserve(&a, &hold(one, key, "r2", 450_000)).await.expect("a holds more");
    a.settle(open, &charge(100_000)).expect("settled");
    a.flush().await.expect("written");
    assert_eq!(book_lease(&a, one), db.lease(one, &a.node_id()).await);
    a.revoke_user(one).await.expect("given back");
    assert_eq!(db.reserved(one).await, 450_000, "only the open hold stays leased");
}

/// Fix C for keys: a key's entry leaves the book before its lease is given back (an
/// administrator changed it). When the database then refused the give-back, the lease stayed
/// whole, renewed by every heartbeat, while no book used it: the key's credit was locked for as
/// long as the gateway ran without using the key again. Now the heartbeat gives back all but
/// what the key's open holds and unwritten settlements take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_lease_whose_give_back_failed_is_given_back_at_the_next_heartbeat() {
    let Some(db) = TestDb::create().await else { return };
    let (one, key) = db.customer("one", 1_000_000).await;
    db.limit_key(key, 500_000).await;
    let (a, pool) = db.gateway(1);

    let open = reserve(&a, &hold(one, key, "r1", 10_000)).await.expect("a leases");
    let (leased, _) = db.key_credit(key).await;
    assert!(leased > 10_000, "the lease covers more than one hold: {leased}");
    {
        // The pool has no connection to give: the administrator's change is heard, the give-back fails.
        let _taken = pool.get().await.expect("the only connection");
        a.revoke_key("pk-one").await;
    }
    assert_eq!(db.key_credit(key).await, (leased, 0), "the lease is whole in the database");
    assert!(!a.book().has_key(key), "and no book uses it");

    heartbeat(&a).await;
    assert_eq!(db.key_credit(key).await, (10_000, 0), "all but what the open hold takes");
    a.settle(open, &charge(4_000)).expect("settled");
    heartbeat(&a).await;
    assert_eq!(db.key_credit(key).await, (0, 4_000), "the settlement written, nothing left leased");
    a.give_back_all().await.expect("given back");
    assert_eq!(db.lease_rows(&a.node_id()).await, 0);
    assert_eq!((db.reserved(one).await, db.balance(one).await), (0, 996_000));
}

/// Bug E (found by the simulation): a key revocation whose first write failed (settlements were
/// waiting and the database was away) returned before the key left the book, and nothing tried
/// again: the gateway went on holding with the key's old limits for as long as the key stayed
/// busy there. Now the key leaves the book anyway, and its lease is a stray.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revocation_that_cannot_write_still_reads_the_key_again() {
    let Some(db) = TestDb::create().await else { return };
    let (one, key) = db.customer("one", 1_000_000).await;
    db.limit_key(key, 500_000).await;
    let (a, pool) = db.gateway(1);

    let settled = reserve(&a, &hold(one, key, "r1", 10_000)).await.expect("a leases");
    {
        // The pool has no connection to give: the settlement waits, and so does the revocation.
        let _taken = pool.get().await.expect("the only connection");
        a.settle(settled, &charge(4_000)).expect("settled");
        a.revoke_key("pk-one").await;
        assert!(!a.book().has_key(key), "the key's old limits are used no more");
    }
    // An administrator lowered the key's limit: the next hold reads it.
    db.limit_key(key, 5_000).await;
    let refused = reserve(&a, &hold(one, key, "r2", 10_000)).await;
    assert!(matches!(refused, Err(BillingError::KeyLimit { .. })), "{refused:?}");
    heartbeat(&a).await;
    a.give_back_all().await.expect("given back");
    assert_eq!(db.key_credit(key).await, (0, 4_000), "the settlement written, nothing left leased");
    assert_eq!((db.reserved(one).await, db.balance(one).await), (0, 996_000));
}

/// Bug E for budget windows: a budget change heard while settlements could not be written left
/// the windows in the book with the old limits. Now they leave it anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_revocation_that_cannot_write_still_reads_the_budget_again() {
    let Some(db) = TestDb::create().await else { return };
    let (one, key) = db.customer("one", 1_000_000).await;
    db.key_budget(key, 500_000).await;
    let (a, pool) = db.gateway(1);

    let settled = reserve(&a, &hold(one, key, "r1", 10_000)).await.expect("a leases");
    assert_eq!(a.book().meter_ids().len(), 1, "the day's window is leased");
    {
        let _taken = pool.get().await.expect("the only connection");
        a.settle(settled, &charge(4_000)).expect("settled");
        a.revoke_budgets().await;
        assert!(a.book().meter_ids().is_empty(), "the window's old limits are used no more");
    }
    heartbeat(&a).await;
    a.give_back_all().await.expect("given back");
    assert_eq!(db.window_credit(key).await, (0, 4_000), "the settlement written, nothing left leased");
}

/// A key deleted while this gateway could not give its lease back takes the lease with it: the
/// renewal does not find it, and as nothing in the book uses it, it does not make the book lapse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_deleted_with_its_key_does_not_make_the_book_lapse() {
    let Some(db) = TestDb::create().await else { return };
    let (one, key) = db.customer("one", 1_000_000).await;
    db.limit_key(key, 500_000).await;
    let (a, pool) = db.gateway(1);

    let open = reserve(&a, &hold(one, key, "r1", 10_000)).await.expect("a leases");
    a.release(open).expect("released");
    {
        let _taken = pool.get().await.expect("the only connection");
        a.revoke_key("pk-one").await;
    }
    let mut conn = db.conn().await;
    diesel::sql_query("DELETE FROM api_keys WHERE id = $1")
        .bind::<BigInt, _>(key)
        .execute(&mut conn)
        .await
        .expect("deleted");
    // Both leases were asked for 10 s ago; only the user's is renewed now.
    let half = Duration::from_secs(10);
    pretend_elapsed(&a, half);
    a.renew().await.expect("renewed");
    pretend_elapsed(&a, half);
    assert!(!a.lapsed(), "the user's lease was renewed, and the key's is gone");
    a.give_back_all().await.expect("given back");
    assert_eq!(db.reserved(one).await, 0);
}

/// Fix C for budget windows, as for keys: the windows leave the book before their leases are
/// given back (an administrator changed a budget).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_window_lease_whose_give_back_failed_is_given_back_at_the_next_heartbeat() {
    let Some(db) = TestDb::create().await else { return };
    let (one, key) = db.customer("one", 1_000_000).await;
    db.key_budget(key, 500_000).await;
    let (a, pool) = db.gateway(1);

    let open = reserve(&a, &hold(one, key, "r1", 10_000)).await.expect("a leases");
    let (leased, _) = db.window_credit(key).await;
    assert!(leased > 10_000, "the window's lease covers more than one hold: {leased}");
    {
        let _taken = pool.get().await.expect("the only connection");
        a.revoke_budgets().await;
    }
    assert_eq!(db.window_credit(key).await, (leased, 0), "the lease is whole in the database");

    heartbeat(&a).await;
    assert_eq!(db.window_credit(key).await, (10_000, 0), "all but what the open hold takes");
    a.settle(open, &charge(4_000)).expect("settled");
    heartbeat(&a).await;
    assert_eq!(db.window_credit(key).await, (0, 4_000), "the settlement written, nothing left leased");
    a.give_back_all().await.expect("given back");
    assert_eq!(db.lease_rows(&a.node_id()).await, 0);
}

/// PostgreSQL's GREATEST and LEAST skip a NULL, so a limit a key or budget does not have (its
/// `free` NULL) was "granted" the whole growth asked for: every key took a lease row and
/// reserved credit, tokens and calls it has no limit on, written, renewed and given back for
/// nothing. A limit the key or budget lacks now grants nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_limits_a_key_or_budget_has_are_leased() {
    let Some(db) = TestDb::create().await else { return };
    let (one, unlimited) = db.customer("one", 1_000_000).await;
    let (two, limited) = db.customer("two", 1_000_000).await;
    db.limit_key(limited, 500_000).await;
    db.key_budget(limited, 400_000).await;
    let (a, _) = db.gateway(4);
    let with_tokens = |user, key, id: &str| {
        let hold = HoldRequest { amount: apihub_core::Money::from_micros(10_000), tokens: 50 };
        NewReservation { user_id: user, key_id: key, request_id: id.into(), hold }
    };

    let open = reserve(&a, &with_tokens(one, unlimited, "r1")).await.expect("held");
    assert_eq!(db.key_reserved(unlimited).await, [0; 3], "a key without limits reserves nothing");
    let key_leases = "SELECT COUNT(*) AS n FROM credit_leases WHERE key_id = $1 AND $2 = $2";
    assert_eq!(db.number(key_leases, unlimited, None).await, 0, "and takes no lease");
    a.release(open).expect("released");

    let open = reserve(&a, &with_tokens(two, limited, "r2")).await.expect("held");
    let [credit, tokens, calls] = db.key_reserved(limited).await;
    assert!(credit >= 10_000, "the key's credit limit is leased: {credit}");
    assert_eq!((tokens, calls), (0, 0), "its tokens and calls have no limit");
    let [credit, tokens, calls] = db.window_reserved(limited).await;
    assert!(credit >= 10_000, "the budget's credit limit is leased: {credit}");
    assert_eq!((tokens, calls), (0, 0), "its tokens and calls have no limit");
    a.settle(open, &charge(10_000)).expect("settled");
    a.give_back_all().await.expect("given back");
    assert_eq!(db.key_reserved(limited).await, [0; 3]);
    assert_eq!(db.window_reserved(limited).await, [0; 3]);
    assert_eq!(db.window_credit(limited).await, (0, 10_000));
}

/// Bug D: a batch that commits while the gateway loses the connection before hearing so stayed
/// queued and was written again (as `id#seq` ledger rows): charged twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_commit_acknowledgement_was_lost_is_charged_once() {
    let Some(db) = TestDb::create().await else { return };
    let (one, key) = db.customer("one", 1_000_000).await;
    let (a, _) = db.gateway(4);

    spend(&a, one, key, "r1", 100_000).await;
    a.lose_commit_ack.store(true, Ordering::Release);
    a.flush().await.expect_err("the acknowledgement is lost");
    a.flush().await.expect("written (again?)");
    assert_eq!(db.balance(one).await, 900_000, "charged once");
    assert_eq!(db.consume_rows(one).await, 1);
    assert_eq!(a.book().unwritten(), 0);
    a.give_back_all().await.expect("given back");
    assert_eq!(db.reserved(one).await, 0);
}

/// A lease grows without writing the queue first, except after a batch's write failed: a batch
/// whose acknowledgement was lost consumed the lease in the database before the growth, so the
/// book must learn that before the growth enters it (else it counts the growth's cover for the
/// batch's overage twice, and the two disagree by that much).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_growth_after_a_lost_acknowledgement_leaves_the_book_and_the_lease_equal() {
    let Some(db) = TestDb::create().await else { return };
    let (one, key) = db.customer("one", 1_000_000).await;
    let (a, _) = db.gateway(4);

    let id = reserve(&a, &hold(one, key, "r1", 100_000)).await.expect("a leases");
    assert_eq!(book_lease(&a, one), 500_000, "half of what is free");
    // 100,000 beyond the lease: overage, from the balance.
    a.settle(id, &charge(600_000)).expect("settled");
    a.lose_commit_ack.store(true, Ordering::Release);
    a.flush().await.expect_err("the acknowledgement is lost");
    let id = reserve(&a, &hold(one, key, "r2", 10_000)).await.expect("the lease grows");
    assert_eq!(book_lease(&a, one), db.lease(one, &a.node_id()).await, "the book counts the lease the database has");
    a.settle(id, &charge(10_000)).expect("settled");
    a.flush().await.expect("written");
    assert_eq!(book_lease(&a, one), db.lease(one, &a.node_id()).await);
    assert_eq!(db.balance(one).await, 390_000, "charged once");
    a.give_back_all().await.expect("given back");
    assert_eq!(db.reserved(one).await, 0);
}

/// A batch's consume rows go in with one plain insert; a request id the ledger already has (a
/// library caller reusing ids) makes it fail, and then every row of the batch goes in by the
/// checked insert, that one renumbered: charged once each, the balance and the ledger equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_a_request_id_the_ledger_has_is_written_whole_with_that_row_renumbered() {
    let Some(db) = TestDb::create().await else { return };
    let (one, key) = db.customer("one", 1_000_000).await;
    let (a, _) = db.gateway(4);
    spend(&a, one, key, "used", 1_000).await;
    a.flush().await.expect("written");

    for request_id in ["fresh-1", "used", "fresh-2"] {
        spend(&a, one, key, request_id, 1_000).await;
    }
    a.flush().await.expect("written, the plain insert's conflict notwithstanding");
    assert_eq!(a.book().unwritten(), 0);
    assert_eq!(db.balance(one).await, 996_000, "charged once each");
    assert_eq!(db.consume_rows(one).await, 4);
    let ledger = "SELECT COALESCE(SUM(amount), 0)::BIGINT AS n FROM transactions WHERE user_id = $1 AND $2 = $2";
    assert_eq!(db.number(ledger, one, None).await, -4_000, "the ledger adds up to the balance's fall");
    let renumbered = "SELECT COUNT(*) AS n FROM transactions WHERE user_id = $1 AND order_no LIKE $2";
    assert_eq!(db.number(renumbered, one, Some("used#%")).await, 1, "the repeated id renumbered");
    a.give_back_all().await.expect("given back");
    assert_eq!(db.reserved(one).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_records_older_than_a_day_are_pruned() {
    let Some(db) = TestDb::create().await else { return };
    let (one, key) = db.customer("one", 1_000_000).await;
    let (a, _) = db.gateway(4);
    for n in 0..2 {
        spend(&a, one, key, &format!("r{n}"), 1_000).await;
        a.flush().await.expect("written");
    }
    let count = "SELECT COUNT(*) AS n FROM credit_batches WHERE $1 = $1 AND node_id = $2";
    assert_eq!(db.number(count, one, Some(&a.node_id())).await, 2, "one record per batch");
    let mut conn = db.conn().await;
    diesel::sql_query("UPDATE credit_batches SET created_at = created_at - 86400001 WHERE first_seq = 1")
        .execute(&mut conn)
        .await
        .expect("age one record");
    assert_eq!(a.prune_batch_ids().await.expect("pruned"), 1);
    assert_eq!(db.number(count, one, Some(&a.node_id())).await, 1, "the newer record stays");
}

/// The ledger has no foreign key to `users` on PostgreSQL (its migration 000016 says why): a
/// batch writes a user's consume rows only when its update of that user's balance found the user,
/// so a debit of a user the database lacks leaves no row and the rest of its batch is written; and
/// a trigger still refuses to delete a user who has ledger rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_foreign_key_the_ledger_still_names_only_users_that_exist_and_keeps_them() {
    use apihub_core::Money;
    use apihub_core::credit::Debit;
    use diesel::result::DatabaseErrorKind;

    let Some(db) = TestDb::create().await else { return };
    let (one, key) = db.customer("one", 1_000_000).await;
    let nobody = one + 1_000;
    let foreign_keys = "SELECT COUNT(*) AS n FROM pg_constraint \
                        WHERE conrelid = 'transactions'::regclass AND contype = 'f' AND $1 = $1 AND $2 = $2";
    assert_eq!(db.number(foreign_keys, one, None).await, 0, "the ledger's rows name their user unchecked");

    let debit = |seq, user_id, request_id: &str| Debit {
        seq,
        user_id,
        key_id: key,
        request_id: request_id.into(),
        charge: Money::from_micros(1_000),
        tokens: 10,
        success: true,
        description: "t".into(),
        overage: Money::ZERO,
        meters: Vec::new(),
    };
    let batch = [debit(1, one, "known"), debit(2, nobody, "unknown")];
    let mut conn = db.conn().await;
    let written = conn
        .transaction(async |conn| crate::db::lease_writes::write_debits(conn, "node-a", &batch).await)
        .await
        .map_err(|error| error.0)
        .expect("the batch written");
    assert_eq!(written, 2, "written whole");
    assert_eq!(db.balance(one).await, 999_000);
    assert_eq!(db.consume_rows(one).await, 1);
    assert_eq!(db.consume_rows(nobody).await, 0, "no row for a user the database lacks");
    let rows = "SELECT COUNT(*) AS n FROM transactions WHERE $1 = $1 AND $2 = $2";
    assert_eq!(db.number(rows, one, None).await, 1, "the known user's row alone");

    // What the key also did: a user with ledger rows cannot be deleted; one without can.
    let (two, _) = db.customer("two", 0).await;
    let delete = |user| diesel::sql_query("DELETE FROM users WHERE id = $1").bind::<BigInt, _>(user);
    let refused = delete(one).execute(&mut conn).await;
    assert!(
        matches!(&refused, Err(diesel::result::Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info))
            if info.message().contains("has ledger rows")),
        "refused by the trigger: {refused:?}"
    );
    assert_eq!(db.consume_rows(one).await, 1, "the ledger kept");
    assert_eq!(delete(two).execute(&mut conn).await.expect("deleted"), 1);
}
