//! Forgetting changed keys, users and prices on every node: locally at once, and through Redis
//! pub/sub elsewhere.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use apihub_core::store::StoreError;
use apihub_core::user::UserId;
use apihub_tower::auth::KeyCache;
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::SharedRedis;
use crate::db::leases::LeaseEngine;
use crate::metered::RouteTable;
use crate::proxy::channels::ChannelTable;
use crate::proxy::prices::PriceCache;

/// How long a subscriber connection may take to open or to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// How often an idle subscription is pinged, so a dead connection is noticed.
const PING_EVERY: Duration = Duration::from_secs(10);
/// First and longest wait before reconnecting a dropped subscription.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(10));

/// What changed, as published: `key:<public_id>`, `user:<id>`, `prices`, `routes`, `channels`,
/// `budgets`, or a request for a user's credit leases (`leases:<id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// One key (updated, disabled, deleted, its usage reset).
    Key(String),
    /// Every key of a user (disabled, enabled, discount changed).
    User(UserId),
    /// The model prices.
    Prices,
    /// The metered routes.
    Routes,
    /// The upstream channels.
    Channels,
    /// Periodic budgets (a key's or a user's): gateways give back their budget leases and read
    /// the budgets again.
    Budgets,
    /// A gateway was refused credit that other gateways lease: each gives back what its open
    /// holds do not take.
    Leases(UserId),
}

impl Invalidation {
    /// The message payload.
    pub fn encode(&self) -> String {
        match self {
            Invalidation::Key(public_id) => format!("key:{public_id}"),
            Invalidation::User(user_id) => format!("user:{user_id}"),
            Invalidation::Prices => "prices".to_owned(),
            Invalidation::Routes => "routes".to_owned(),
            Invalidation::Channels => "channels".to_owned(),
            Invalidation::Budgets => "budgets".to_owned(),
            Invalidation::Leases(user_id) => format!("leases:{user_id}"),
        }
    }

    /// Reads a payload; `None` for anything else.
    pub fn decode(payload: &str) -> Option<Invalidation> {
        match payload {
            "prices" => return Some(Invalidation::Prices),
            "routes" => return Some(Invalidation::Routes),
            "channels" => return Some(Invalidation::Channels),
            "budgets" => return Some(Invalidation::Budgets),
            _ => {}
        }
        match payload.split_once(':')? {
            ("key", public_id) if !public_id.is_empty() => Some(Invalidation::Key(public_id.to_owned())),
            ("user", id) => id.parse().ok().map(Invalidation::User),
            ("leases", id) => id.parse().ok().map(Invalidation::Leases),
            _ => None,
        }
    }
}

/// This node's caches of what the API can change.
#[derive(Clone)]
struct Caches {
    keys: Arc<KeyCache>,
    prices: Arc<PriceCache>,
    /// On PostgreSQL, the credit engine: a changed key's lease is given back and the key read
    /// again.
    leases: Option<Arc<LeaseEngine>>,
    /// The metered routes, reloaded when an administrator changes one.
    routes: Option<Arc<RouteTable>>,
    /// The upstream channels, reloaded when an administrator changes one.
    channels: Option<Arc<ChannelTable>>,
}

impl Caches {
    async fn apply(&self, what: &Invalidation) -> Result<(), StoreError> {
        match what {
            Invalidation::Key(public_id) => {
                self.keys.invalidate_key(public_id);
                if let Some(leases) = &self.leases {
                    leases.revoke_key(public_id).await;
                }
            }
            Invalidation::User(user_id) => self.keys.invalidate_user(*user_id),
            Invalidation::Prices => self.prices.reload().await?,
            Invalidation::Leases(user_id) => {
                if let Some(leases) = &self.leases
                    && let Err(error) = leases.revoke_user(*user_id).await
                {
                    tracing::warn!(%error, user_id, "giving back a user's credit lease failed");
                }
            }
            Invalidation::Routes => {
                if let Some(routes) = &self.routes {
                    routes.reload().await?;
                }
            }
            Invalidation::Channels => {
                if let Some(channels) = &self.channels {
                    channels.reload().await?;
                }
            }
            Invalidation::Budgets => {
                if let Some(leases) = &self.leases {
                    leases.revoke_budgets().await;
                }
            }
        }
        Ok(())
    }

    /// After missing messages: forgets every key (and gives back every key's lease), reloads the
    /// prices.
    async fn refresh(&self) {
        self.keys.clear();
        if let Some(leases) = &self.leases {
            leases.revoke_all_keys().await;
            leases.revoke_budgets().await;
        }
        if let Err(error) = self.prices.reload().await {
            tracing::warn!(%error, "reloading model prices failed; the periodic reload will retry");
        }
        if let Some(routes) = &self.routes
            && let Err(error) = routes.reload().await
        {
            tracing::warn!(%error, "reloading metered routes failed; the periodic reload will retry");
        }
        if let Some(channels) = &self.channels
            && let Err(error) = channels.reload().await
        {
            tracing::warn!(%error, "reloading channels failed; the periodic reload will retry");
        }
    }
}

/// The one call a route makes after changing a key, a user or a price: refreshes this node's
/// cache and, with Redis, tells every other node to refresh its own.
#[derive(Clone)]
pub struct Invalidator {
    caches: Caches,
    redis: Option<SharedRedis>,
}

impl std::fmt::Debug for Invalidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invalidator").field("redis", &self.redis).finish_non_exhaustive()
    }
}

impl Invalidator {
    /// Refreshes this node's caches only (a single node, or no Redis).
    pub fn local(keys: Arc<KeyCache>, prices: Arc<PriceCache>) -> Self {
        Invalidator { caches: Caches { keys, prices, leases: None, routes: None, channels: None }, redis: None }
    }

    /// Refreshes this node's caches and publishes every invalidation through `redis`.
    pub fn shared(keys: Arc<KeyCache>, prices: Arc<PriceCache>, redis: SharedRedis) -> Self {
        Invalidator { caches: Caches { keys, prices, leases: None, routes: None, channels: None }, redis: Some(redis) }
    }

    /// Also makes the credit engine give back a changed key's lease (PostgreSQL).
    pub fn with_leases(mut self, leases: Option<Arc<LeaseEngine>>) -> Self {
        self.caches.leases = leases;
        self
    }

    /// Also reloads `routes` on a [`Invalidation::Routes`] (and after missed messages).
    pub fn with_routes(mut self, routes: Arc<RouteTable>) -> Self {
        self.caches.routes = Some(routes);
        self
    }

    /// Also reloads `channels` on a [`Invalidation::Channels`] (and after missed messages).
    pub fn with_channels(mut self, channels: Arc<ChannelTable>) -> Self {
        self.caches.channels = Some(channels);
        self
    }

    /// The pub/sub channel, `{prefix}:invalidate`, when shared.
    pub fn channel(&self) -> Option<String> {
        self.redis.as_ref().map(|redis| format!("{}:invalidate", redis.prefix()))
    }

    /// Forgets one key, here and on every node.
    pub async fn key(&self, public_id: &str) {
        // Forgetting a key cannot fail.
        let _ = self.invalidate(Invalidation::Key(public_id.to_owned())).await;
    }

    /// Forgets every key of a user, here and on every node.
    pub async fn user(&self, user_id: UserId) {
        let _ = self.invalidate(Invalidation::User(user_id)).await;
    }

    /// Reloads the model prices, here and on every node.
    pub async fn prices(&self) -> Result<(), StoreError> {
        self.invalidate(Invalidation::Prices).await
    }

    /// Reloads the metered routes, here and on every node.
    pub async fn routes(&self) -> Result<(), StoreError> {
        self.invalidate(Invalidation::Routes).await
    }

    /// Reloads the upstream channels, here and on every node.
    pub async fn channels(&self) -> Result<(), StoreError> {
        self.invalidate(Invalidation::Channels).await
    }

    /// Applies changed budgets, here and on every node.
    pub async fn budgets(&self) {
        // Giving back budget leases cannot fail (a failure is logged; the leases expire).
        let _ = self.invalidate(Invalidation::Budgets).await;
    }

    /// Applies `what` here, then publishes it. Only reloading prices here can fail. A failed
    /// publish is logged, not returned: the change itself is stored, and other nodes see it
    /// anyway within the key cache's TTL (1 s) or the periodic price reload (10 s).
    pub async fn invalidate(&self, what: Invalidation) -> Result<(), StoreError> {
        self.caches.apply(&what).await?;
        let (Some(redis), Some(channel)) = (&self.redis, self.channel()) else { return Ok(()) };
        let published =
            redis::cmd("PUBLISH").arg(&channel).arg(what.encode()).query_async::<i64>(&mut redis.connection()).await;
        if let Err(error) = published {
            tracing::warn!(%error, "publishing an invalidation failed; other nodes catch up on their own");
        }
        Ok(())
    }

    /// With Redis, starts the task that applies every node's invalidations to this node's caches,
    /// for as long as the process runs (abort the handle to stop it).
    pub fn subscribe(&self) -> Option<JoinHandle<()>> {
        let redis = self.redis.clone()?;
        let channel = self.channel()?;
        Some(tokio::spawn(follow(self.caches.clone(), redis, channel)))
    }
}

/// Subscribes, applies, and after any failure reconnects with a growing delay.
async fn follow(caches: Caches, redis: SharedRedis, channel: String) {
    let mut delay = BACKOFF.0;
    let mut connected_before = false;
    loop {
        let error = listen(&caches, &redis, &channel, || {
            if connected_before {
                tracing::info!(%channel, "invalidations resumed; the key cache was cleared");
            } else {
                tracing::info!(%channel, "following invalidations from every node");
            }
            connected_before = true;
            delay = BACKOFF.0;
        })
        .await;
        tracing::warn!(error = format!("{error:#}"), retry_in = ?delay, "invalidation subscription lost");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(BACKOFF.1);
    }
}

/// One subscription, until it fails.
async fn listen(caches: &Caches, redis: &SharedRedis, channel: &str, subscribed: impl FnOnce()) -> anyhow::Error {
    let run = async {
        let pubsub = tokio::time::timeout(ANSWER_WITHIN, redis.client().get_async_pubsub())
            .await
            .context("connecting timed out")?
            .with_context(|| format!("connecting to Redis at {}", redis.address()))?;
        let (mut sink, mut messages) = pubsub.split();
        tokio::time::timeout(ANSWER_WITHIN, sink.subscribe(channel)).await.context("subscribing timed out")??;
        // Whatever was published while this node was not listening is lost: refresh everything.
        caches.refresh().await;
        subscribed();
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else { anyhow::bail!("the connection closed") };
                    match message.get_payload::<String>().ok().as_deref().and_then(Invalidation::decode) {
                        Some(what) => {
                            if let Err(error) = caches.apply(&what).await {
                                tracing::warn!(%error, ?what, "applying an invalidation failed");
                            }
                        }
                        None => tracing::warn!(payload = ?message.get_payload_bytes(), "ignored an unknown invalidation"),
                    }
                }
                _ = ping.tick() => {
                    tokio::time::timeout(ANSWER_WITHIN, sink.ping::<redis::Value>()).await.context("a ping timed out")??;
                }
            }
        }
    };
    match run.await {
        Ok(never) => never,
        Err(error) => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::{Relay, TestRedis, test_redis, test_redis_url};
    use apihub_core::DiscountRate;
    use apihub_core::key::GeneratedKey;
    use apihub_core::lookup::{KeyLookup, KeyRecord};
    use apihub_core::policy::{ApiKey, KeyPatch, KeyPolicy};
    use apihub_core::pricing::ModelPrice;
    use apihub_core::store::{KeyStore, NewKey, PriceStore, UserStore};
    use apihub_core::user::{NewUser, Role};
    use apihub_tower::billing::PriceBook;
    use apihub_tower::clock::SystemClock;
    use apihub_tower::memory::MemoryStore;

    #[test]
    fn payloads_round_trip() {
        for what in [
            Invalidation::Key("AbC123".into()),
            Invalidation::User(42),
            Invalidation::Prices,
            Invalidation::Routes,
            Invalidation::Channels,
        ] {
            assert_eq!(Invalidation::decode(&what.encode()), Some(what));
        }
        for junk in ["", "key:", "user:x", "nope:1", "key"] {
            assert_eq!(Invalidation::decode(junk), None, "{junk}");
        }
    }

    /// Polls `cache` until `fresh` holds for its entry of `public_id`.
    async fn until(cache: &KeyCache, public_id: &str, what: &str, fresh: impl Fn(&KeyRecord) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while !fresh(&cache.get(public_id).await.unwrap().expect("key")) {
            assert!(tokio::time::Instant::now() < deadline, "{what} did not refresh the cache");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A store holding one user with one key, and a cache over it that would trust an entry for an
    /// hour (so only an invalidation can refresh it).
    async fn fixture() -> (Arc<MemoryStore>, UserId, ApiKey) {
        let store = Arc::new(MemoryStore::new());
        let user = store
            .create_user(NewUser { username: "u".into(), email: None, password_hash: "x".into(), role: Role::User })
            .await
            .unwrap();
        let generated = GeneratedKey::generate();
        let new_key = NewKey {
            public_id: generated.public_id.clone(),
            secret_hash: generated.secret_hash.clone(),
            last4: generated.last4.clone(),
            policy: KeyPolicy::default(),
            batch_id: None,
        };
        let key = store.create_keys(user.id, vec![new_key]).await.unwrap().remove(0);
        (store, user.id, key)
    }

    fn hour_cache(store: &Arc<MemoryStore>) -> Arc<KeyCache> {
        Arc::new(KeyCache::with_clock(store.clone() as Arc<dyn KeyLookup>, Arc::new(SystemClock), 3_600_000))
    }

    /// A node's caches over `store`, invalidated through `redis`.
    async fn node(store: &Arc<MemoryStore>, redis: &SharedRedis) -> (Invalidator, Arc<KeyCache>, Arc<PriceCache>) {
        let (keys, prices) = (hour_cache(store), Arc::new(PriceCache::load(store.clone()).await.unwrap()));
        (Invalidator::shared(keys.clone(), prices.clone(), redis.clone()), keys, prices)
    }

    /// Renames the key behind the caches' backs; returns the old name, still cached in `cache`.
    async fn rename(store: &MemoryStore, cache: &KeyCache, key: &ApiKey) -> String {
        let old_name = cache.get(&key.public_id).await.unwrap().expect("key").policy.name.clone();
        let patch = KeyPatch { name: Some(format!("{old_name}-renamed")), ..KeyPatch::default() };
        store.update_key(key.id, &patch).await.unwrap();
        assert_eq!(cache.get(&key.public_id).await.unwrap().unwrap().policy.name, old_name, "cached");
        old_name
    }

    /// Node B's cache trusts its entries for an hour: a change stored behind its back stays
    /// invisible until node A's invalidator publishes it.
    #[tokio::test]
    async fn an_invalidation_reaches_the_other_node() {
        let Some(redis) = test_redis().await else { return };
        let (store, user_id, key) = fixture().await;
        let (node_a, _, _) = node(&store, &redis).await;
        let (node_b, cache_b, prices_b) = node(&store, &redis).await;
        assert_eq!(node_a.channel(), Some(format!("{}:invalidate", redis.prefix())));
        let subscriber = node_b.subscribe().expect("shared");
        // The subscription clears the cache when it starts; let it start before filling it.
        tokio::time::sleep(Duration::from_millis(300)).await;

        let old_name = rename(&store, &cache_b, &key).await;
        node_a.key(&key.public_id).await;
        until(&cache_b, &key.public_id, "a key invalidation", |e| e.policy.name != old_name).await;

        let rate = DiscountRate::parse("0.5").unwrap();
        store.set_user_discount(user_id, rate).await.unwrap();
        assert_ne!(cache_b.get(&key.public_id).await.unwrap().unwrap().owner_discount, rate, "cached");
        node_a.user(user_id).await;
        until(&cache_b, &key.public_id, "a user invalidation", |e| e.owner_discount == rate).await;

        store.set_price("gpt-new", &ModelPrice::default()).await.unwrap();
        assert!(prices_b.price("gpt-new").is_none(), "not reloaded yet");
        node_a.prices().await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while prices_b.price("gpt-new").is_none() {
            assert!(tokio::time::Instant::now() < deadline, "a price change did not reach node B");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        subscriber.abort();
    }

    /// Messages published while a node's subscription is down are lost, so when it comes back the
    /// node forgets everything it cached.
    #[tokio::test]
    async fn a_node_whose_subscription_dropped_clears_its_cache() {
        let Some(url) = test_redis_url() else { return };
        let relay = Relay::start(&url).await;
        let redis = TestRedis::connect_via(&url, &relay.url).await;
        let (store, _, key) = fixture().await;
        let (invalidator, cache, _) = node(&store, &redis).await;
        let subscriber = invalidator.subscribe().expect("shared");
        tokio::time::sleep(Duration::from_millis(300)).await;

        let old_name = rename(&store, &cache, &key).await;
        relay.cut();
        until(&cache, &key.public_id, "a resubscription", |e| e.policy.name != old_name).await;
        subscriber.abort();
    }

    #[tokio::test]
    async fn without_redis_only_this_node_refreshes() {
        let store = Arc::new(MemoryStore::new());
        let prices = Arc::new(PriceCache::load(store.clone()).await.unwrap());
        let invalidator = Invalidator::local(hour_cache(&store), prices.clone());
        assert_eq!(invalidator.channel(), None);
        assert!(invalidator.subscribe().is_none());
        invalidator.user(1).await;
        store.set_price("gpt-new", &ModelPrice::default()).await.unwrap();
        invalidator.prices().await.unwrap();
        assert!(prices.price("gpt-new").is_some());
    }
}
