//! Wire types shared by several routes: how users, keys, transactions and pages look in JSON.
//! Domain types stay in apihub-core; these map them explicitly.

use apihub_core::key::display_mask;
use apihub_core::ledger::{Transaction, TxType};
use apihub_core::policy::{ApiKey, KeyStatus};
use apihub_core::store::{Page, PageRequest};
use apihub_core::user::{Role, User, UserStatus};
use apihub_core::{DiscountRate, Money};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

/// A user as the API shows it. Money fields are exact decimals of credits.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    #[schema(value_type = String, example = "user")]
    pub role: Role,
    #[schema(value_type = String, example = "active")]
    pub status: UserStatus,
    /// Spendable credit.
    #[schema(value_type = f64, example = 100.5)]
    pub token_balance: Money,
    #[schema(value_type = f64)]
    pub total_recharged: Money,
    #[schema(value_type = f64)]
    pub total_consumed: Money,
    /// Multiplier applied to every charge (1 = full price).
    #[schema(value_type = f64, example = 1)]
    pub discount_rate: DiscountRate,
    pub created_at: DateTime<Utc>,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            id: u.id,
            username: u.username,
            email: u.email,
            role: u.role,
            status: u.status,
            token_balance: u.account.balance,
            total_recharged: u.account.total_recharged,
            total_consumed: u.account.total_consumed,
            discount_rate: u.discount_rate,
            created_at: u.created_at,
        }
    }
}

/// An API key as the API shows it: never the secret, only a masked preview.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    /// `ahg_<public id>_…<last 4>`, or `…<last 4>` for an imported key.
    pub key_preview: String,
    /// Imported from another system with its own string.
    pub imported: bool,
    #[schema(value_type = String, example = "active")]
    pub status: KeyStatus,
    pub expires_at: Option<DateTime<Utc>>,
    /// Requests per minute; null = unlimited.
    pub rate_limit: Option<u32>,
    /// Requests per day; null = unlimited.
    pub rate_limit_day: Option<u32>,
    /// Lifetime tokens; null = unlimited.
    pub token_limit: Option<i64>,
    /// Lifetime credits; null = unlimited.
    #[schema(value_type = Option<f64>)]
    pub quota_limit: Option<Money>,
    /// Calls left; null = unlimited.
    pub remaining_calls: Option<i64>,
    /// Models the key may call; empty = all.
    pub allowed_models: Vec<String>,
    #[schema(value_type = f64, example = 1)]
    pub discount_rate: DiscountRate,
    pub batch_id: Option<String>,
    pub tokens_used: i64,
    #[schema(value_type = f64)]
    pub quota_used: Money,
    pub calls_total: i64,
    pub calls_succeeded: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ApiKey> for KeyView {
    fn from(k: ApiKey) -> Self {
        KeyView {
            id: k.id,
            user_id: k.user_id,
            key_preview: display_mask(&k.public_id, &k.last4),
            imported: k.imported,
            name: k.policy.name,
            status: k.policy.status,
            expires_at: k.policy.expires_at,
            rate_limit: k.policy.rate_limit,
            rate_limit_day: k.policy.rate_limit_day,
            token_limit: k.policy.token_limit,
            quota_limit: k.policy.quota_limit,
            remaining_calls: k.policy.remaining_calls,
            allowed_models: k.policy.allowed_models,
            discount_rate: k.policy.discount_rate,
            batch_id: k.batch_id,
            tokens_used: k.usage.tokens_used,
            quota_used: k.usage.quota_used,
            calls_total: k.usage.calls_total,
            calls_succeeded: k.usage.calls_succeeded,
            created_at: k.created_at,
            updated_at: k.updated_at,
        }
    }
}

/// A newly created key: the only response that ever carries the whole key.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    /// The whole key. Store it now: it is shown once and never again.
    pub key: String,
    #[serde(flatten)]
    pub info: KeyView,
}

/// A ledger row.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionView {
    pub id: i64,
    pub user_id: i64,
    /// The kind of movement (`recharge`, `consume`, `refund`, `adjust`, `redeem`), under the seed
    /// API's name.
    #[schema(value_type = String, example = "recharge")]
    pub transaction_type: TxType,
    /// The same as `transaction_type` (this API's earlier name, kept for existing clients).
    #[schema(value_type = String, example = "recharge")]
    pub tx_type: TxType,
    /// Signed change of the balance.
    #[schema(value_type = f64)]
    pub amount: Money,
    #[schema(value_type = f64)]
    pub balance_before: Money,
    #[schema(value_type = f64)]
    pub balance_after: Money,
    pub order_no: Option<String>,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<Transaction> for TransactionView {
    fn from(t: Transaction) -> Self {
        TransactionView {
            id: t.id,
            user_id: t.user_id,
            transaction_type: t.tx_type,
            tx_type: t.tx_type,
            amount: t.amount,
            balance_before: t.balance_before,
            balance_after: t.balance_after,
            order_no: t.order_no,
            description: t.description,
            created_at: t.created_at,
        }
    }
}

/// `?page=&page_size=` on every listing.
#[derive(Debug, Clone, Copy, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page number, from 1 (default 1).
    #[serde(default, deserialize_with = "whole::option")]
    #[param(minimum = 1, maximum = 1_000_000)]
    pub page: Option<u32>,
    /// Rows per page, 1 to 200 (default 20).
    #[serde(default, deserialize_with = "whole::option")]
    #[param(minimum = 1, maximum = 200)]
    pub page_size: Option<u32>,
}

impl PageQuery {
    /// Validates the numbers.
    pub fn request(self) -> Result<PageRequest, ApiError> {
        let page = self.page.unwrap_or(1);
        let page_size = self.page_size.unwrap_or(20);
        if page == 0 || page > 1_000_000 {
            return Err(ApiError::Validation("page must be between 1 and 1000000".into()));
        }
        if page_size == 0 || page_size > PageRequest::MAX_PAGE_SIZE {
            return Err(ApiError::Validation(format!(
                "page_size must be between 1 and {}",
                PageRequest::MAX_PAGE_SIZE
            )));
        }
        Ok(PageRequest { page, page_size })
    }
}

/// An optional filter from the query string, read by `parse`; a value it does not know is a 422
/// with `refusal` as its message.
pub fn parse_filter<T>(
    value: Option<&str>,
    parse: fn(&str) -> Option<T>,
    refusal: &str,
) -> Result<Option<T>, ApiError> {
    value.map(|v| parse(v).ok_or_else(|| ApiError::Validation(refusal.to_owned()))).transpose()
}

/// Declares a concrete page type for the OpenAPI document (one per item type).
macro_rules! page_type {
    ($name:ident, $item:ty) => {
        #[doc = concat!("One page of `", stringify!($item), "`.")]
        #[derive(Debug, Serialize, ToSchema)]
        pub struct $name {
            pub items: Vec<$item>,
            /// Rows matching in all.
            pub total: u64,
            pub page: u32,
            pub page_size: u32,
        }

        impl<T: Into<$item>> From<Page<T>> for $name {
            fn from(p: Page<T>) -> Self {
                $name {
                    items: p.items.into_iter().map(Into::into).collect(),
                    total: p.total,
                    page: p.request.page,
                    page_size: p.request.page_size,
                }
            }
        }
    };
}

page_type!(UserPage, UserView);
page_type!(KeyPage, KeyView);
page_type!(TransactionPage, TransactionView);
page_type!(RedemptionCodePage, super::redemption::RedemptionCodeView);
page_type!(RechargeOrderPage, super::recharge::RechargeOrderView);

/// Deserializes a field that may be absent (outer `None`), `null` (`Some(None)`) or a value.
pub fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Whole numbers as JSON Schema counts them: `752`, `752.0` and `"752"` (a query string) are the
/// same integer. Anything with a fraction, out of the target's range or not a number is refused.
pub mod whole {
    use serde::de::{self, Deserializer, Visitor};
    use std::fmt;
    use std::marker::PhantomData;

    /// Floats beyond this are not exact integers any more; refuse them rather than guess.
    const EXACT: f64 = 9_007_199_254_740_992.0;

    struct WholeVisitor<T>(PhantomData<T>);

    impl<T: TryFrom<i128>> WholeVisitor<T> {
        fn fit<E: de::Error>(value: i128) -> Result<T, E> {
            T::try_from(value).map_err(|_| E::custom(format!("{value} is out of range")))
        }
        fn float<E: de::Error>(value: f64) -> Result<T, E> {
            if value.is_finite() && value.fract() == 0.0 && value.abs() <= EXACT {
                // Exact: a whole f64 of at most 2^53 converts without rounding.
                #[allow(clippy::cast_possible_truncation)]
                return Self::fit(value as i128);
            }
            Err(E::custom(format!("{value} is not a whole number")))
        }
    }

    impl<T: TryFrom<i128>> Visitor<'_> for WholeVisitor<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a whole number")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            Self::fit(v.into())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            Self::fit(v.into())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            Self::float(v)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            if let Ok(n) = v.parse::<i128>() {
                return Self::fit(n);
            }
            // `752.0` or `7.52e2`, but not `inf`, `NaN` or text with spaces.
            let numeric = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
            match v.parse::<f64>() {
                Ok(f) if numeric => Self::float(f),
                _ => Err(E::custom(format!("`{v}` is not a whole number"))),
            }
        }
    }

    struct Whole<T>(T);

    impl<'de, T: TryFrom<i128>> serde::Deserialize<'de> for Whole<T> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(WholeVisitor(PhantomData)).map(Whole)
        }
    }

    /// A required whole number.
    pub fn required<'de, D: Deserializer<'de>, T: TryFrom<i128>>(deserializer: D) -> Result<T, D::Error> {
        <Whole<T> as serde::Deserialize>::deserialize(deserializer).map(|w| w.0)
    }

    /// An optional whole number (use with `#[serde(default)]`).
    pub fn option<'de, D: Deserializer<'de>, T: TryFrom<i128>>(deserializer: D) -> Result<Option<T>, D::Error> {
        <Option<Whole<T>> as serde::Deserialize>::deserialize(deserializer).map(|o| o.map(|w| w.0))
    }

    /// A whole number that may be absent (outer `None`, with `#[serde(default)]`), `null` or a value.
    pub fn double_option<'de, D: Deserializer<'de>, T: TryFrom<i128>>(
        deserializer: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        option(deserializer).map(Some)
    }
}

/// The names the API accepts for domain enums, for the OpenAPI document only (apihub-core does
/// not depend on utoipa).
pub mod names {
    use serde::Serialize;
    use utoipa::ToSchema;

    /// A user's role.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum RoleName {
        User,
        Admin,
    }

    /// Active or disabled (users, keys, redemption codes).
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum ActiveStatus {
        Active,
        Disabled,
    }

    /// A recharge order's status.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum OrderStatusName {
        Pending,
        Paid,
    }

    /// An LLM API dialect an upstream channel speaks.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum DialectName {
        OpenAi,
        Anthropic,
        Gemini,
    }

    /// The kind of a ledger row.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum TxTypeName {
        Recharge,
        Consume,
        Refund,
        Adjust,
    }
}
