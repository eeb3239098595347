//! [`UserStore`] for [`MemoryStore`]: usernames unique without regard to case (as in the SQL
//! schema, so "Alice" cannot impersonate "alice"), and the token version bumped on every disable
//! and password change.

use async_trait::async_trait;
use chrono::Utc;

use apihub_core::Money;
use apihub_core::billing::UserFunds;
use apihub_core::discount::DiscountRate;
use apihub_core::ledger::Account;
use apihub_core::store::{Page, PageRequest, StoreError, UserQuery, UserStore};
use apihub_core::user::{NewUser, Role, User, UserId, UserStatus};

use super::{MemoryStore, State, next_id, page_of};

/// A user with what [`User`] leaves out: the password hash, and the sum of the user's open holds
/// (the SQL store's `reserved` column).
pub(super) struct UserRow {
    pub(super) user: User,
    password_hash: String,
    pub(super) reserved: Money,
}

impl UserRow {
    /// The balance and what is held against it.
    pub(super) fn funds(&self) -> UserFunds {
        UserFunds { balance: self.user.account.balance, reserved: self.reserved }
    }
}

impl State {
    /// A user's row, or [`StoreError::NotFound`].
    pub(super) fn user_mut(&mut self, id: UserId) -> Result<&mut UserRow, StoreError> {
        self.users.get_mut(&id).ok_or(StoreError::NotFound)
    }

    /// The row whose username is `username`, compared without regard to case.
    fn user_by_name(&self, username: &str) -> Option<&UserRow> {
        let wanted = username.to_lowercase();
        self.users.values().find(|row| row.user.username.to_lowercase() == wanted)
    }
}

impl MemoryStore {
    /// Changes one user under the lock and returns the result.
    fn update_user(&self, id: UserId, change: impl FnOnce(&mut UserRow)) -> Result<User, StoreError> {
        let mut state = self.lock()?;
        let row = state.user_mut(id)?;
        change(row);
        Ok(row.user.clone())
    }
}

/// Whether `user` passes `query`'s filters; `needle` is the search text, lower-cased.
fn matches(user: &User, needle: Option<&str>, query: &UserQuery) -> bool {
    let found = |text: &str| needle.is_none_or(|n| text.to_lowercase().contains(n));
    (found(&user.username) || user.email.as_deref().is_some_and(found))
        && query.role.is_none_or(|role| role == user.role)
        && query.status.is_none_or(|status| status == user.status)
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
        let mut state = self.lock()?;
        if state.user_by_name(&new.username).is_some() {
            return Err(StoreError::Conflict(format!("username `{}` is taken", new.username)));
        }
        let user = User {
            id: next_id(&mut state.last_user_id),
            username: new.username,
            email: new.email,
            role: new.role,
            status: UserStatus::Active,
            account: Account::default(),
            discount_rate: DiscountRate::FULL_PRICE,
            token_version: 0,
            created_at: Utc::now(),
        };
        state
            .users
            .insert(user.id, UserRow { user: user.clone(), password_hash: new.password_hash, reserved: Money::ZERO });
        Ok(user)
    }

    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        Ok(self.lock()?.users.get(&id).map(|row| row.user.clone()))
    }

    async fn credentials(&self, username: &str) -> Result<Option<(User, String)>, StoreError> {
        let state = self.lock()?;
        Ok(state.user_by_name(username).map(|row| (row.user.clone(), row.password_hash.clone())))
    }

    async fn list_users(&self, query: &UserQuery, page: PageRequest) -> Result<Page<User>, StoreError> {
        let needle = query.search.as_deref().map(str::to_lowercase);
        let state = self.lock()?;
        let rows = state.users.values().rev().map(|row| &row.user);
        Ok(page_of(rows.filter(|user| matches(user, needle.as_deref(), query)), page))
    }

    async fn set_user_status(&self, id: UserId, status: UserStatus) -> Result<User, StoreError> {
        self.update_user(id, |row| {
            row.user.status = status;
            if status == UserStatus::Disabled {
                row.user.token_version += 1;
            }
        })
    }

    async fn set_user_discount(&self, id: UserId, rate: DiscountRate) -> Result<User, StoreError> {
        self.update_user(id, |row| row.user.discount_rate = rate)
    }

    async fn set_password(&self, id: UserId, password_hash: &str) -> Result<User, StoreError> {
        self.update_user(id, |row| {
            password_hash.clone_into(&mut row.password_hash);
            row.user.token_version += 1;
        })
    }

    async fn count_admins(&self) -> Result<u64, StoreError> {
        Ok(self.lock()?.users.values().filter(|row| row.user.role == Role::Admin).count() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::super::register;
    use super::*;

    #[tokio::test]
    async fn usernames_are_unique_and_ids_count_from_one() {
        let store = MemoryStore::new();
        assert_eq!(register(&store, "alice", Role::User).await.id, 1);
        assert_eq!(register(&store, "bob", Role::User).await.id, 2);
        for taken in ["alice", "ALICE"] {
            let again = NewUser { username: taken.into(), email: None, password_hash: "x".into(), role: Role::Admin };
            assert!(matches!(store.create_user(again).await, Err(StoreError::Conflict(_))));
        }
        assert_eq!(store.lock().unwrap().users.len(), 2);
    }

    #[tokio::test]
    async fn a_new_user_starts_active_with_nothing() {
        let store = MemoryStore::new();
        let alice = register(&store, "alice", Role::User).await;
        assert_eq!(alice.status, UserStatus::Active);
        assert_eq!(alice.account, Account::default());
        assert_eq!(alice.discount_rate, DiscountRate::FULL_PRICE);
        assert_eq!(store.user(alice.id).await.unwrap(), Some(alice.clone()));
        assert_eq!(store.user(99).await.unwrap(), None);
        assert_eq!(store.credentials("alice").await.unwrap(), Some((alice.clone(), "hash-of-alice".into())));
        assert_eq!(store.credentials("Alice").await.unwrap(), Some((alice, "hash-of-alice".into())));
        assert_eq!(store.credentials("bob").await.unwrap(), None);
    }

    #[tokio::test]
    async fn listing_searches_filters_and_pages_newest_first() {
        let store = MemoryStore::new();
        for i in 1..=25 {
            register(&store, &format!("user{i:02}"), Role::User).await;
        }
        let admin = NewUser {
            username: "root".into(),
            email: Some("Ops@Example.com".into()),
            password_hash: "x".into(),
            role: Role::Admin,
        };
        let admin = store.create_user(admin).await.unwrap();

        let first = store.list_users(&UserQuery::default(), PageRequest { page: 1, page_size: 10 }).await.unwrap();
        assert_eq!(first.total, 26);
        assert_eq!(first.items.iter().map(|u| u.id).collect::<Vec<_>>(), (17..=26).rev().collect::<Vec<_>>());
        let last = store.list_users(&UserQuery::default(), PageRequest { page: 3, page_size: 10 }).await.unwrap();
        assert_eq!((last.items.len(), last.total), (6, 26));

        let by_email = UserQuery { search: Some("example.COM".into()), ..UserQuery::default() };
        let found = store.list_users(&by_email, PageRequest::default()).await.unwrap();
        assert_eq!(found.items, vec![admin.clone()]);

        let by_name = UserQuery { search: Some("USER1".into()), ..UserQuery::default() };
        let found = store.list_users(&by_name, PageRequest { page: 1, page_size: 3 }).await.unwrap();
        assert_eq!(found.total, 10); // user10 to user19
        assert_eq!(found.items.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(), ["user19", "user18", "user17"]);

        let admins = UserQuery { role: Some(Role::Admin), ..UserQuery::default() };
        assert_eq!(store.list_users(&admins, PageRequest::default()).await.unwrap().total, 1);
        store.set_user_status(3, UserStatus::Disabled).await.unwrap();
        let disabled =
            UserQuery { status: Some(UserStatus::Disabled), search: Some("user".into()), role: Some(Role::User) };
        let found = store.list_users(&disabled, PageRequest::default()).await.unwrap();
        assert_eq!((found.total, found.items[0].id), (1, 3));
    }

    #[tokio::test]
    async fn disabling_and_password_changes_revoke_tokens() {
        let store = MemoryStore::new();
        let alice = register(&store, "alice", Role::User).await;
        let disabled = store.set_user_status(alice.id, UserStatus::Disabled).await.unwrap();
        assert_eq!((disabled.status, disabled.token_version), (UserStatus::Disabled, alice.token_version + 1));
        let enabled = store.set_user_status(alice.id, UserStatus::Active).await.unwrap();
        assert_eq!((enabled.status, enabled.token_version), (UserStatus::Active, alice.token_version + 1));

        let changed = store.set_password(alice.id, "new-hash").await.unwrap();
        assert_eq!(changed.token_version, alice.token_version + 2);
        assert_eq!(store.credentials("alice").await.unwrap().unwrap().1, "new-hash");

        let rate = DiscountRate::parse("0.8").unwrap();
        let discounted = store.set_user_discount(alice.id, rate).await.unwrap();
        assert_eq!((discounted.discount_rate, discounted.token_version), (rate, changed.token_version));
    }

    #[tokio::test]
    async fn changing_an_unknown_user_is_not_found() {
        let store = MemoryStore::new();
        assert!(matches!(store.set_user_status(7, UserStatus::Disabled).await, Err(StoreError::NotFound)));
        assert!(matches!(store.set_user_discount(7, DiscountRate::FULL_PRICE).await, Err(StoreError::NotFound)));
        assert!(matches!(store.set_password(7, "h").await, Err(StoreError::NotFound)));
    }

    #[tokio::test]
    async fn admins_are_counted() {
        let store = MemoryStore::new();
        assert_eq!(store.count_admins().await.unwrap(), 0);
        register(&store, "root", Role::Admin).await;
        register(&store, "alice", Role::User).await;
        register(&store, "ops", Role::Admin).await;
        assert_eq!(store.count_admins().await.unwrap(), 2);
    }
}
