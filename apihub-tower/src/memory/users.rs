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
