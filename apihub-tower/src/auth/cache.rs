//! A short-lived cache of key lookups, with explicit invalidation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use apihub_core::store::StoreError;
use apihub_core::user::UserId;

use crate::clock::{Clock, SystemClock};
use apihub_core::lookup::{KeyLookup, KeyRecord};

/// A cached lookup.
#[derive(Debug, Clone)]
struct Entry {
    record: Arc<KeyRecord>,
    fetched_at: u64,
}

/// Caches `lookup id → key record` for at most `ttl_millis`.
///
/// The server calls [`KeyCache::invalidate_key`] / [`KeyCache::invalidate_user`] whenever it
/// changes a key or user, so on one node a change takes effect at once; the TTL (1 s by default)
/// bounds how long another node can serve a stale entry. Unknown keys are not cached, so the cache
/// only ever holds real keys.
///
/// Misses for one lookup id share one lookup: when a busy key's entry expires, the requests in
/// flight on it (64 connections: 64 requests) wait for the first one's lookup instead of each
/// asking the store, and a flood of requests with one unknown key asks the store one at a time.
/// A lookup that began before an invalidation neither fills the cache nor is joined by a request
/// that comes after it.
pub struct KeyCache {
    store: Arc<dyn KeyLookup>,
    clock: Arc<dyn Clock>,
    ttl_millis: u64,
    max_entries: usize,
    entries: RwLock<Entries>,
    /// Lookups under way, by lookup id.
    pending: Mutex<HashMap<String, Arc<Pending>>>,
}

/// The cached entries, and how many invalidations there have been.
#[derive(Default)]
struct Entries {
    by_id: HashMap<String, Entry>,
    /// Bumped by every invalidation, under the same lock as the entries: a lookup fills the cache
    /// only if none came while it ran.
    generation: u64,
}

/// One lookup under way, which the misses for its id wait for. Set only when it succeeded: when
/// it fails, a waiter tries the store itself.
type Pending = tokio::sync::OnceCell<Option<Arc<KeyRecord>>>;

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache").field("ttl_millis", &self.ttl_millis).finish_non_exhaustive()
    }
}

impl KeyCache {
    /// Default time an entry is trusted.
    pub const DEFAULT_TTL_MILLIS: u64 = 1_000;

    /// A cache over `store` with the default TTL and the system clock.
    pub fn new(store: Arc<dyn KeyLookup>) -> Self {
        Self::with_clock(store, Arc::new(SystemClock), Self::DEFAULT_TTL_MILLIS)
    }

    /// A cache with an explicit clock and TTL (0 disables caching).
    pub fn with_clock(store: Arc<dyn KeyLookup>, clock: Arc<dyn Clock>, ttl_millis: u64) -> Self {
        KeyCache {
            store,
            clock,
            ttl_millis,
            max_entries: 100_000,
            entries: RwLock::default(),
            pending: Mutex::default(),
        }
    }

    /// The key with this lookup id (an `ahg_` key's public id), from the cache or the store.
    pub async fn get(&self, lookup_id: &str) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let now = self.clock.now_millis();
        if let Ok(entries) = self.entries.read()
            && let Some(entry) = entries.by_id.get(lookup_id)
            && now.saturating_sub(entry.fetched_at) < self.ttl_millis
        {
            return Ok(Some(entry.record.clone()));
        }
        if self.ttl_millis == 0 {
            return self.fetch(lookup_id, now).await;
        }
        let joined = match self.pending.lock() {
            Ok(mut pending) => Some(pending.entry(lookup_id.to_owned()).or_default().clone()),
            Err(_) => None,
        };
        // The guard holds the only reference this request has, so that it can count who waits.
        let waiting = Waiting { cache: self, lookup_id, lookup: joined };
        let found = match waiting.lookup.as_deref() {
            Some(lookup) => lookup.get_or_try_init(|| self.fetch(lookup_id, now)).await.cloned(),
            None => self.fetch(lookup_id, now).await,
        };
        drop(waiting);
        found
    }

    /// Asks the store, and caches what it found unless an invalidation came meanwhile.
    async fn fetch(&self, lookup_id: &str, now: u64) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let generation = self.entries.read().map(|entries| entries.generation).ok();
        let Some(record) = self.store.lookup(lookup_id).await? else {
            return Ok(None);
        };
        let record = Arc::new(record);
        if self.ttl_millis > 0
            && let Ok(mut entries) = self.entries.write()
            && Some(entries.generation) == generation
        {
            if entries.by_id.len() >= self.max_entries {
                entries.by_id.clear();
            }
            entries.by_id.insert(lookup_id.to_owned(), Entry { record: record.clone(), fetched_at: now });
        }
        Ok(Some(record))
    }

    /// Forgets one key (after an update or delete), by its lookup id.
    pub fn invalidate_key(&self, lookup_id: &str) {
        if let Ok(mut entries) = self.entries.write() {
            entries.generation += 1;
            entries.by_id.remove(lookup_id);
        }
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(lookup_id);
        }
    }

    /// Forgets every key of a user (after a disable or discount change).
    pub fn invalidate_user(&self, user_id: UserId) {
        if let Ok(mut entries) = self.entries.write() {
            entries.generation += 1;
            entries.by_id.retain(|_, e| e.record.user_id != user_id);
        }
        // Which lookups under way are the user's is known only once they end.
        self.forget_pending();
    }

    /// Forgets everything.
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.generation += 1;
            entries.by_id.clear();
        }
        self.forget_pending();
    }

    fn forget_pending(&self) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.clear();
        }
    }
}

/// One request waiting for a lookup under way. Whoever leaves it last, or first once it
/// succeeded (done, or dropped with its request), retires it from the lookups under way: later
/// misses then start their own, and no entry outlives the requests waiting on it (a flood of
/// unknown keys whose clients hang up leaves nothing behind).
struct Waiting<'a> {
    cache: &'a KeyCache,
    lookup_id: &'a str,
    lookup: Option<Arc<Pending>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let Some(lookup) = self.lookup.take() else { return };
        if let Ok(mut pending) = self.cache.pending.lock() {
            let ours = pending.get(self.lookup_id).is_some_and(|under_way| Arc::ptr_eq(under_way, &lookup));
            // Joining and leaving both happen under this lock, so the count is exact: the map's
            // reference and this one mean nobody else waits.
            if ours && (lookup.initialized() || Arc::strong_count(&lookup) <= 2) {
                pending.remove(self.lookup_id);
            }
            drop(lookup);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use apihub_core::key::SecretHash;
    use async_trait::async_trait;
    use tokio::sync::Semaphore;

    use super::*;

    /// A key table whose lookups wait at a gate until let through, counted as they start.
    struct Gated {
        started: AtomicUsize,
        gate: Semaphore,
        /// How many lookups fail before they succeed.
        failures: AtomicUsize,
        /// The user the keys belong to (changed to tell a stale record from a fresh one).
        user_id: std::sync::atomic::AtomicI64,
    }

    impl Gated {
        fn new(failures: usize) -> Arc<Self> {
            Arc::new(Gated {
                started: AtomicUsize::new(0),
                gate: Semaphore::new(0),
                failures: AtomicUsize::new(failures),
                user_id: 7.into(),
            })
        }

        /// Waits until `n` lookups have started.
        async fn started(&self, n: usize) {
            while self.started.load(Ordering::SeqCst) < n {
                tokio::task::yield_now().await;
            }
        }
    }

    /// Once the first lookup has started and the other misses had time to join it, lets
    /// `lookups` through the gate.
    async fn let_through(store: &Gated, lookups: usize) {
        store.started(1).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        store.gate.add_permits(lookups);
    }

    #[async_trait]
    impl KeyLookup for Gated {
        async fn lookup(&self, lookup_id: &str) -> Result<Option<KeyRecord>, StoreError> {
            self.started.fetch_add(1, Ordering::SeqCst);
            let user_id = self.user_id.load(Ordering::SeqCst);
            self.gate.acquire().await.map_err(|_| StoreError::NotFound)?.forget();
            if self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                return Err(StoreError::Invalid("the table is down".into()));
            }
            Ok((lookup_id != "unknown").then(|| KeyRecord::new(1, user_id, SecretHash::of("secret"))))
        }
    }

    /// Waits until `n` requests wait for the lookup of `id` under way.
    async fn joined(cache: &KeyCache, id: &str, n: usize) {
        let waiting = || cache.pending.lock().unwrap().get(id).map_or(0, |lookup| Arc::strong_count(lookup) - 1);
        while waiting() < n {
            tokio::task::yield_now().await;
        }
    }

    fn cache(store: &Arc<Gated>) -> Arc<KeyCache> {
        Arc::new(KeyCache::new(store.clone()))
    }

    /// Starts `n` lookups of `id` at once.
    fn misses(cache: &Arc<KeyCache>, id: &'static str, n: usize) -> Vec<tokio::task::JoinHandle<Option<i64>>> {
        (0..n)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.get(id).await.ok().flatten().map(|record| record.user_id) })
            })
            .collect()
    }

    async fn answers(misses: Vec<tokio::task::JoinHandle<Option<i64>>>) -> Vec<Option<i64>> {
        let mut answers = Vec::new();
        for miss in misses {
            answers.push(miss.await.unwrap());
        }
        answers
    }

    /// `n` concurrent misses of `id` on a fresh cache whose store fails `failures` times, with
    /// `lookups` let through: the store, the cache and what each miss got.
    async fn rush(
        failures: usize,
        id: &'static str,
        n: usize,
        lookups: usize,
    ) -> (Arc<Gated>, Arc<KeyCache>, Vec<Option<i64>>) {
        let store = Gated::new(failures);
        let cache = cache(&store);
        let waiting = misses(&cache, id, n);
        let_through(&store, lookups).await;
        let answers = answers(waiting).await;
        (store, cache, answers)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_for_one_key_share_one_lookup_and_the_next_request_is_a_hit() {
        let (store, cache, answers) = rush(0, "abc", 64, 1).await;
        assert_eq!(answers, vec![Some(7); 64]);
        assert_eq!(cache.get("abc").await.unwrap().map(|r| r.user_id), Some(7));
        assert_eq!(store.started.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_with_one_unknown_key_asks_the_store_once_and_caches_nothing() {
        let (store, cache, answers) = rush(0, "unknown", 32, 1).await;
        assert_eq!(answers, vec![None; 32]);
        assert_eq!(store.started.load(Ordering::SeqCst), 1);
        // Not cached: the next request asks again.
        store.gate.add_permits(1);
        assert!(cache.get("unknown").await.unwrap().is_none());
        assert_eq!(store.started.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn when_the_shared_lookup_fails_the_waiters_ask_the_store_themselves() {
        let (store, _, answers) = rush(1, "abc", 8, 2).await;
        // The first lookup failed (its caller gets the error); the next one served the rest.
        assert_eq!(answers.iter().filter(|a| a.is_none()).count(), 1);
        assert_eq!(answers.iter().filter(|a| **a == Some(7)).count(), 7);
        assert_eq!(store.started.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lookup_whose_requests_all_went_away_leaves_nothing_behind() {
        let store = Gated::new(0);
        let cache = cache(&store);
        let waiting = misses(&cache, "unknown", 8);
        joined(&cache, "unknown", 8).await;
        for miss in &waiting {
            miss.abort();
        }
        for miss in waiting {
            assert!(miss.await.unwrap_err().is_cancelled());
        }
        assert!(cache.pending.lock().unwrap().is_empty());
        // The next miss starts afresh (as the waiters did in turn while the first ones left).
        let before = store.started.load(Ordering::SeqCst);
        store.gate.add_permits(1);
        assert!(cache.get("unknown").await.unwrap().is_none());
        assert_eq!(store.started.load(Ordering::SeqCst), before + 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lookup_under_way_at_an_invalidation_is_neither_joined_after_it_nor_cached() {
        for invalidate in [
            (|cache: &KeyCache| cache.invalidate_key("abc")) as fn(&KeyCache),
            |cache| cache.invalidate_user(7),
            |cache| cache.clear(),
        ] {
            let store = Gated::new(0);
            let cache = cache(&store);
            let before = misses(&cache, "abc", 4);
            joined(&cache, "abc", 4).await;
            // The key changes hands, and the cache is told.
            store.user_id.store(8, Ordering::SeqCst);
            invalidate(&cache);
            let after = misses(&cache, "abc", 4);
            store.started(2).await;
            store.gate.add_permits(2);
            // Those that asked before may see the old record; none that asked after does.
            assert_eq!(answers(before).await, vec![Some(7); 4]);
            assert_eq!(answers(after).await, vec![Some(8); 4]);
            // The stale lookup filled nothing: the cache holds the fresh one.
            assert_eq!(cache.get("abc").await.unwrap().map(|r| r.user_id), Some(8));
            assert_eq!(store.started.load(Ordering::SeqCst), 2);
        }
    }
}
