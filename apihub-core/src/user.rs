//! Accounts: who holds credit and keys.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::discount::DiscountRate;
use crate::money::Money;

/// A user's numeric id.
pub type UserId = i64;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages only their own keys and credit.
    User,
    /// Manages every user, key and balance.
    Admin,
}

/// Whether an account may log in and use its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// Normal.
    Active,
    /// Cannot log in; its keys stop working.
    Disabled,
}

/// A user as stored, without the password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Primary key.
    pub id: UserId,
    /// Unique login name.
    pub username: String,
    /// Optional contact address.
    pub email: Option<String>,
    /// What the user may do.
    pub role: Role,
    /// Active or disabled.
    pub status: UserStatus,
    /// Credit and its running totals.
    pub account: crate::ledger::Account,
    /// The user's discount, applied to every charge with the key's.
    pub discount_rate: DiscountRate,
    /// Bumped on a password change or disable, revoking every earlier session token.
    pub token_version: i64,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
}

impl User {
    /// Current balance.
    pub fn balance(&self) -> Money {
        self.account.balance
    }

    /// Whether the user is an administrator.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// What registration stores.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Validated with [`validate_username`].
    pub username: String,
    /// Optional contact address.
    pub email: Option<String>,
    /// An argon2id PHC string.
    pub password_hash: String,
    /// Role at creation.
    pub role: Role,
}

/// Why a username or password was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// Username rule.
    #[error("username must be 3 to 32 characters of A-Z, a-z, 0-9, '_', '.' or '-'")]
    Username,
    /// Password rule.
    #[error("password must be at least 8 characters (and at most 256)")]
    Password,
    /// Email rule.
    #[error("email must look like name@host and be at most 254 characters")]
    Email,
}

/// Username rule: 3–32 characters of `[A-Za-z0-9_.-]`.
pub fn validate_username(name: &str) -> Result<(), CredentialError> {
    let ok = (3..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok { Ok(()) } else { Err(CredentialError::Username) }
}

/// Password rule: at least 8 characters, at most 256 (hashing cost stays bounded).
pub fn validate_password(password: &str) -> Result<(), CredentialError> {
    let n = password.chars().count();
    if (8..=256).contains(&n) { Ok(()) } else { Err(CredentialError::Password) }
}

/// A light email check: one `@` with text on both sides, no spaces, at most 254 bytes.
pub fn validate_email(email: &str) -> Result<(), CredentialError> {
    let ok = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && matches!(email.split_once('@'), Some((local, host)) if !local.is_empty() && !host.is_empty() && !host.contains('@'));
    if ok { Ok(()) } else { Err(CredentialError::Email) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_rules() {
        for ok in ["abc", "a.b-c_d", "X".repeat(32).as_str()] {
            assert!(validate_username(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "", "has space", "é_acc", "a/b", "X".repeat(33).as_str()] {
            assert!(validate_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn password_and_email_rules() {
        assert!(validate_password("12345678").is_ok());
        assert!(validate_password("1234567").is_err());
        assert!(validate_email("a@b").is_ok());
        assert!(validate_email("a@@b").is_err());
        assert!(validate_email("@b").is_err());
        assert!(validate_email("a b@c").is_err());
    }
}
