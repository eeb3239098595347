//! Users on SQL.

use apihub_core::DiscountRate;
use apihub_core::Money;
use apihub_core::ledger::Account;
use apihub_core::store::{Page, PageRequest, StoreError, UserQuery, UserStore};
use apihub_core::user::{NewUser, Role, User, UserId, UserStatus};
use async_trait::async_trait;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::users;
use super::{SqlStore, corrupt, from_millis, like_pattern, load_page, lower, now_millis, with_conn, write_tx};

/// A `users` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub(crate) struct UserRow {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    pub password_hash: String,
    pub role: String,
    pub status: String,
    pub token_balance: i64,
    pub total_recharged: i64,
    pub total_consumed: i64,
    pub discount_ppm: i32,
    pub token_version: i64,
    pub created_at: i64,
    #[allow(dead_code, reason = "selected with the row; the API does not show it yet")]
    pub updated_at: i64,
    pub reserved: i64,
}

#[derive(Insertable)]
#[diesel(table_name = users)]
struct NewUserRow<'a> {
    username: &'a str,
    email: Option<&'a str>,
    password_hash: &'a str,
    role: &'a str,
    status: &'a str,
    created_at: i64,
    updated_at: i64,
}

pub(crate) fn role_str(role: Role) -> &'static str {
    match role {
        Role::User => "user",
        Role::Admin => "admin",
    }
}

pub(crate) fn user_status_str(status: UserStatus) -> &'static str {
    match status {
        UserStatus::Active => "active",
        UserStatus::Disabled => "disabled",
    }
}

impl UserRow {
    pub(crate) fn into_domain(self) -> Result<User, StoreError> {
        let role = match self.role.as_str() {
            "user" => Role::User,
            "admin" => Role::Admin,
            other => return Err(corrupt("role", other)),
        };
        let status = match self.status.as_str() {
            "active" => UserStatus::Active,
            "disabled" => UserStatus::Disabled,
            other => return Err(corrupt("user status", other)),
        };
        let discount_rate = u32::try_from(self.discount_ppm)
            .ok()
            .and_then(|ppm| DiscountRate::from_ppm(ppm).ok())
            .ok_or_else(|| corrupt("discount", self.discount_ppm))?;
        Ok(User {
            id: self.id,
            username: self.username,
            email: self.email,
            role,
            status,
            account: Account {
                balance: Money::from_micros(self.token_balance),
                total_recharged: Money::from_micros(self.total_recharged),
                total_consumed: Money::from_micros(self.total_consumed),
            },
            discount_rate,
            token_version: self.token_version,
            created_at: from_millis(self.created_at),
        })
    }
}

/// Applies the filters of a [`UserQuery`] to a boxed `users` query (used for rows and count).
macro_rules! filtered_users {
    ($query:expr) => {{
        let query: &UserQuery = $query;
        let mut q = users::table.into_boxed();
        if let Some(search) = query.search.as_deref().filter(|s| !s.is_empty()) {
            let pattern = like_pattern(search);
            q =
                q.filter(lower(users::username).like(pattern.clone()).escape('\\').or(
                    lower(users::email.assume_not_null()).like(pattern).escape('\\').and(users::email.is_not_null()),
                ));
        }
        if let Some(role) = query.role {
            q = q.filter(users::role.eq(role_str(role)));
        }
        if let Some(status) = query.status {
            q = q.filter(users::status.eq(user_status_str(status)));
        }
        q
    }};
}

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(&self, user: NewUser) -> Result<User, StoreError> {
        let now = now_millis();
        let row = NewUserRow {
            username: &user.username,
            email: user.email.as_deref(),
            password_hash: &user.password_hash,
            role: role_str(user.role),
            status: user_status_str(UserStatus::Active),
            created_at: now,
            updated_at: now,
        };
        let created: UserRow = write_tx!(self, |conn| {
            Ok(diesel::insert_into(users::table)
                .values(&row)
                .returning(UserRow::as_returning())
                .get_result(conn)
                .await?)
        })
        .map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(format!("username `{}` is taken", user.username)),
            other => other,
        })?;
        created.into_domain()
    }

    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = with_conn!(self, |conn| {
            Ok(users::table.find(id).select(UserRow::as_select()).first(conn).await.optional()?)
        })?;
        row.map(UserRow::into_domain).transpose()
    }

    async fn credentials(&self, username: &str) -> Result<Option<(User, String)>, StoreError> {
        let name = username.to_lowercase();
        let row: Option<UserRow> = with_conn!(self, |conn| {
            Ok(users::table
                .filter(lower(users::username).eq(&name))
                .select(UserRow::as_select())
                .first(conn)
                .await
                .optional()?)
        })?;
        row.map(|r| {
            let hash = r.password_hash.clone();
            r.into_domain().map(|u| (u, hash))
        })
        .transpose()
    }

    async fn list_users(&self, query: &UserQuery, page: PageRequest) -> Result<Page<User>, StoreError> {
        load_page!(self, page, filtered_users!(query), users::id.desc(), UserRow)
    }

    async fn set_user_status(&self, id: UserId, status: UserStatus) -> Result<User, StoreError> {
        // Disabling bumps the token version, which revokes every session token issued before.
        let bump: i64 = if status == UserStatus::Disabled { 1 } else { 0 };
        let row: UserRow = write_tx!(self, |conn| {
            Ok(diesel::update(users::table.find(id))
                .set((
                    users::status.eq(user_status_str(status)),
                    users::token_version.eq(users::token_version + bump),
                    users::updated_at.eq(now_millis()),
                ))
                .returning(UserRow::as_returning())
                .get_result(conn)
                .await?)
        })?;
        row.into_domain()
    }

    async fn set_user_discount(&self, id: UserId, rate: DiscountRate) -> Result<User, StoreError> {
        let ppm = rate.ppm() as i32;
        let row: UserRow = write_tx!(self, |conn| {
            Ok(diesel::update(users::table.find(id))
                .set((users::discount_ppm.eq(ppm), users::updated_at.eq(now_millis())))
                .returning(UserRow::as_returning())
                .get_result(conn)
                .await?)
        })?;
        row.into_domain()
    }

    async fn set_password(&self, id: UserId, password_hash: &str) -> Result<User, StoreError> {
        let hash = password_hash.to_owned();
        let row: UserRow = write_tx!(self, |conn| {
            Ok(diesel::update(users::table.find(id))
                .set((
                    users::password_hash.eq(&hash),
                    users::token_version.eq(users::token_version + 1),
                    users::updated_at.eq(now_millis()),
                ))
                .returning(UserRow::as_returning())
                .get_result(conn)
                .await?)
        })?;
        row.into_domain()
    }

    async fn count_admins(&self) -> Result<u64, StoreError> {
        let n: i64 = with_conn!(self, |conn| {
            Ok(users::table.filter(users::role.eq(role_str(Role::Admin))).count().get_result(conn).await?)
        })?;
        Ok(n as u64)
    }
}
