//! Contracts of [`UserStore`](apihub_core::store::UserStore) and
//! [`KeyStore`](apihub_core::store::KeyStore): users and their keys.

use std::sync::Arc;

use apihub_core::discount::DiscountRate;
use apihub_core::ledger::Account;
use apihub_core::policy::{KeyPatch, KeyPolicy, KeyStatus, KeyUsage};
use apihub_core::store::{KeyQuery, PageRequest, Store, StoreError, UserQuery};
use apihub_core::user::{NewUser, Role, UserStatus};

use super::fixtures::{alice_with_key, charge, credits, hold, key_now, new_key, register};

/// "Alice" cannot register beside "alice", and logs in as her.
pub async fn usernames_are_unique_without_regard_to_case(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", Role::User).await;
    for taken in ["alice", "ALICE"] {
        let again = NewUser { username: taken.into(), email: None, password_hash: "x".into(), role: Role::Admin };
        assert!(matches!(store.create_user(again).await, Err(StoreError::Conflict(_))), "`{taken}` is taken");
    }
    let (found, hash) = store.credentials("Alice").await.expect("read").expect("alice");
    assert_eq!((found.id, hash.as_str()), (alice.id, "hash-of-alice"));
    assert_eq!(store.list_users(&UserQuery::default(), PageRequest::default()).await.expect("list").total, 1);
}

/// A new user is active, has no credit, pays full price, and reads back as created.
pub async fn a_new_user_starts_active_with_nothing(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", Role::User).await;
    assert_eq!(
        (alice.status, alice.account, alice.discount_rate),
        (UserStatus::Active, Account::default(), DiscountRate::FULL_PRICE)
    );
    assert_eq!(store.user(alice.id).await.expect("read"), Some(alice.clone()));
    assert_eq!(store.user(alice.id + 1000).await.expect("read"), None);
    assert_eq!(store.credentials("alice").await.expect("read"), Some((alice, "hash-of-alice".into())));
    assert_eq!(store.credentials("bob").await.expect("read"), None);
}

/// Listing searches names and emails without regard to case, filters by role and status, counts
/// every match and pages newest first.
pub async fn users_list_newest_first_filtered_and_paged(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for i in 1..=12 {
        ids.push(register(&*store, &format!("user{i:02}"), Role::User).await.id);
    }
    let root = NewUser {
        username: "root".into(),
        email: Some("Ops@Example.com".into()),
        password_hash: "x".into(),
        role: Role::Admin,
    };
    let root = store.create_user(root).await.expect("root");
    let page = |page, page_size| PageRequest { page, page_size };

    let first = store.list_users(&UserQuery::default(), page(1, 5)).await.expect("list");
    let newest: Vec<_> = std::iter::once(root.id).chain(ids.iter().rev().copied()).take(5).collect();
    assert_eq!((first.total, first.items.iter().map(|u| u.id).collect::<Vec<_>>()), (13, newest));
    let last = store.list_users(&UserQuery::default(), page(3, 5)).await.expect("list");
    assert_eq!((last.total, last.items.len()), (13, 3));

    let by_email = UserQuery { search: Some("example.COM".into()), ..UserQuery::default() };
    assert_eq!(store.list_users(&by_email, page(1, 20)).await.expect("list").items, vec![root.clone()]);
    let by_name = UserQuery { search: Some("USER1".into()), ..UserQuery::default() };
    let found = store.list_users(&by_name, page(1, 2)).await.expect("list");
    let names: Vec<_> = found.items.iter().map(|u| u.username.as_str()).collect();
    assert_eq!((found.total, names), (3, vec!["user12", "user11"]));
    let admins = UserQuery { role: Some(Role::Admin), ..UserQuery::default() };
    assert_eq!(store.list_users(&admins, page(1, 20)).await.expect("list").total, 1);

    store.set_user_status(ids[2], UserStatus::Disabled).await.expect("disable");
    let disabled =
        UserQuery { status: Some(UserStatus::Disabled), search: Some("user".into()), role: Some(Role::User) };
    let found = store.list_users(&disabled, page(1, 20)).await.expect("list");
    assert_eq!((found.total, found.items[0].id), (1, ids[2]));
}

/// Disabling a user and changing their password each bump the token version (revoking their
/// sessions); enabling and discounts do not.
pub async fn disabling_a_user_or_changing_a_password_revokes_sessions(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", Role::User).await;
    let disabled = store.set_user_status(alice.id, UserStatus::Disabled).await.expect("disable");
    assert_eq!((disabled.status, disabled.token_version), (UserStatus::Disabled, alice.token_version + 1));
    let enabled = store.set_user_status(alice.id, UserStatus::Active).await.expect("enable");
    assert_eq!((enabled.status, enabled.token_version), (UserStatus::Active, alice.token_version + 1));

    let changed = store.set_password(alice.id, "new-hash").await.expect("password");
    assert_eq!(changed.token_version, alice.token_version + 2);
    assert_eq!(store.credentials("alice").await.expect("read").expect("alice").1, "new-hash");

    let rate = DiscountRate::parse("0.8").expect("a rate");
    let discounted = store.set_user_discount(alice.id, rate).await.expect("discount");
    assert_eq!((discounted.discount_rate, discounted.token_version), (rate, changed.token_version));
    assert_eq!(store.user(alice.id).await.expect("read"), Some(discounted));
}

/// Changes to a user who does not exist are [`StoreError::NotFound`].
pub async fn changing_an_unknown_user_is_not_found(store: Arc<dyn Store>) {
    let nobody = register(&*store, "alice", Role::User).await.id + 1000;
    assert!(matches!(store.set_user_status(nobody, UserStatus::Disabled).await, Err(StoreError::NotFound)));
    assert!(matches!(store.set_user_discount(nobody, DiscountRate::FULL_PRICE).await, Err(StoreError::NotFound)));
    assert!(matches!(store.set_password(nobody, "h").await, Err(StoreError::NotFound)));
}

/// Administrators are counted, users are not.
pub async fn admins_are_counted(store: Arc<dyn Store>) {
    assert_eq!(store.count_admins().await.expect("count"), 0);
    register(&*store, "root", Role::Admin).await;
    register(&*store, "alice", Role::User).await;
    register(&*store, "ops", Role::Admin).await;
    assert_eq!(store.count_admins().await.expect("count"), 2);
}

/// A batch of keys with a public id taken (by a stored key or within the batch) is refused whole.
pub async fn keys_are_created_all_or_none(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", Role::User).await;
    let batch = vec![new_key("a", KeyPolicy::default(), None), new_key("b", KeyPolicy::default(), None)];
    let created = store.create_keys(alice.id, batch).await.expect("keys");
    assert!(created.iter().all(|k| k.user_id == alice.id && !k.imported && k.usage == KeyUsage::default()));
    assert!(created[0].id < created[1].id, "ids grow");

    let fresh = new_key("c", KeyPolicy::default(), None);
    let mut clash = new_key("a again", KeyPolicy::default(), None);
    clash.public_id.clone_from(&created[0].public_id);
    let refused = store.create_keys(alice.id, vec![fresh.clone(), clash]).await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
    let twice = store.create_keys(alice.id, vec![fresh.clone(), fresh.clone()]).await;
    assert!(matches!(twice, Err(StoreError::Conflict(_))), "{twice:?}");
    assert_eq!(store.key_by_public_id(&fresh.public_id).await.expect("read"), None);

    assert_eq!(store.key_by_public_id(&created[1].public_id).await.expect("read"), Some(created[1].clone()));
    assert_eq!(store.key(created[0].id).await.expect("read"), Some(created[0].clone()));
    assert!(store.create_keys(alice.id, Vec::new()).await.expect("none").is_empty());
}

/// Keys for a user who does not exist are [`StoreError::NotFound`], created or imported.
pub async fn keys_for_an_unknown_owner_are_not_found(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", Role::User).await;
    let nobody = alice.id + 1000;
    let created = store.create_keys(nobody, vec![new_key("a", KeyPolicy::default(), None)]).await;
    assert!(matches!(created, Err(StoreError::NotFound)), "{created:?}");
    let mixed =
        vec![(alice.id, new_key("b", KeyPolicy::default(), None)), (nobody, new_key("c", KeyPolicy::default(), None))];
    let imported = store.import_keys(mixed).await;
    assert!(matches!(imported, Err(StoreError::NotFound)), "{imported:?}");
    let none = KeyQuery::default();
    assert_eq!(store.list_keys(&none, PageRequest::default()).await.expect("list").total, 0, "all or none");
}

/// Imported keys are flagged, each for its owner.
pub async fn imported_keys_are_flagged(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", Role::User).await;
    let bob = register(&*store, "bob", Role::User).await;
    let policy = KeyPolicy { remaining_calls: Some(100), ..KeyPolicy::default() };
    let keys = vec![(alice.id, new_key("a", policy.clone(), None)), (bob.id, new_key("b", policy, None))];
    let imported = store.import_keys(keys).await.expect("import");
    assert_eq!(
        imported.iter().map(|k| (k.user_id, k.imported)).collect::<Vec<_>>(),
        [(alice.id, true), (bob.id, true)]
    );
    assert_eq!(imported[0].policy.remaining_calls, Some(100));
    assert_eq!(store.key(imported[1].id).await.expect("read"), Some(imported[1].clone()));
}

/// Listing filters by owner, batch and status, counts every match and pages newest first.
pub async fn keys_list_newest_first_filtered_and_paged(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", Role::User).await;
    let bob = register(&*store, "bob", Role::User).await;
    let batch = (0..5).map(|i| new_key(&format!("batch{i}"), KeyPolicy::default(), Some("b1"))).collect();
    let mut ids: Vec<_> = store.create_keys(alice.id, batch).await.expect("batch").iter().map(|k| k.id).collect();
    ids.push(store.create_keys(alice.id, vec![new_key("loose", KeyPolicy::default(), None)]).await.expect("key")[0].id);
    ids.push(
        store.create_keys(bob.id, vec![new_key("bobs", KeyPolicy::default(), Some("b1"))]).await.expect("key")[0].id,
    );
    let off = KeyPatch { status: Some(KeyStatus::Disabled), ..KeyPatch::default() };
    store.update_key(ids[1], &off).await.expect("disable");
    let page = |page, page_size| PageRequest { page, page_size };
    let listed = |page: apihub_core::store::Page<apihub_core::policy::ApiKey>| {
        (page.total, page.items.iter().map(|k| k.id).collect::<Vec<_>>())
    };

    let all = store.list_keys(&KeyQuery::default(), page(1, 3)).await.expect("list");
    assert_eq!(listed(all), (7, vec![ids[6], ids[5], ids[4]]));
    let alices = KeyQuery { user_id: Some(alice.id), ..KeyQuery::default() };
    assert_eq!(listed(store.list_keys(&alices, page(2, 4)).await.expect("list")), (6, vec![ids[1], ids[0]]));
    let b1 = KeyQuery { batch_id: Some("b1".into()), ..KeyQuery::default() };
    assert_eq!(store.list_keys(&b1, page(1, 20)).await.expect("list").total, 6);
    let disabled = KeyQuery { status: Some(KeyStatus::Disabled), ..b1 };
    assert_eq!(listed(store.list_keys(&disabled, page(1, 20)).await.expect("list")), (1, vec![ids[1]]));
}

/// An update applies its patch to the policy and nothing else; an unknown key is not found.
pub async fn a_key_update_applies_its_patch(store: Arc<dyn Store>) {
    let (_, key) = alice_with_key(&*store, 0, KeyPolicy::default()).await;
    let patch = KeyPatch {
        name: Some("renamed".into()),
        quota_limit: Some(Some(credits(3))),
        remaining_calls: Some(Some(7)),
        allowed_models: Some(vec!["gpt-4o".into()]),
        ..KeyPatch::default()
    };
    let updated = store.update_key(key.id, &patch).await.expect("update");
    let mut expected = key.policy.clone();
    patch.apply_to(&mut expected);
    assert_eq!(updated.policy, expected);
    assert_eq!((updated.usage, updated.created_at), (key.usage, key.created_at));
    assert!(updated.updated_at >= key.updated_at);
    assert_eq!(store.key(key.id).await.expect("read"), Some(updated));
    assert!(matches!(store.update_key(key.id + 1000, &patch).await, Err(StoreError::NotFound)));
}

/// A reset zeroes what the key has used and keeps its limits (`remaining_calls` included).
pub async fn resetting_a_key_zeroes_its_usage_and_keeps_its_policy(store: Arc<dyn Store>) {
    let (alice, key) =
        alice_with_key(&*store, 10, KeyPolicy { remaining_calls: Some(5), ..KeyPolicy::default() }).await;
    let id = store.reserve(&hold(&alice, &key, "req-1", 2, 50)).await.expect("hold");
    store.settle(id, &charge(credits(1), 40, true)).await.expect("settle");
    let used = key_now(&*store, &key).await;
    assert_eq!((used.usage.calls_total, used.policy.remaining_calls), (1, Some(4)));

    let reset = store.reset_key_usage(key.id).await.expect("reset");
    assert_eq!((reset.usage, &reset.policy), (KeyUsage::default(), &used.policy));
    assert_eq!(key_now(&*store, &key).await, reset);
    assert!(matches!(store.reset_key_usage(key.id + 1000).await, Err(StoreError::NotFound)));
}

/// A deleted key is found neither by id nor by public id, cannot be deleted twice, and its id is
/// never handed to another key.
pub async fn a_deleted_key_is_gone_and_its_id_is_not_reused(store: Arc<dyn Store>) {
    let (alice, key) = alice_with_key(&*store, 0, KeyPolicy::default()).await;
    store.delete_key(key.id).await.expect("delete");
    assert_eq!(store.key(key.id).await.expect("read"), None);
    assert_eq!(store.key_by_public_id(&key.public_id).await.expect("read"), None);
    assert!(matches!(store.delete_key(key.id).await, Err(StoreError::NotFound)));
    let again = store.create_keys(alice.id, vec![new_key("again", KeyPolicy::default(), None)]).await.expect("key");
    assert!(again[0].id > key.id, "id {} was handed out again", key.id);
}
