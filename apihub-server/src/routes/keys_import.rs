//! `/api/admin/keys/import`: keys from another system (the second seed's, one-api's, new-api's)
//! imported with their own strings, so their holders switch without new keys. Each is stored
//! hashed, authenticates with its original string and is flagged `imported`; the list is taken
//! whole or not at all.

use std::collections::{BTreeMap, HashMap, HashSet};

use apihub_core::key::ImportedKey;
use apihub_core::store::{NewKey, StoreError};
use apihub_core::user::User;
use axum::extract::State;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::keys::{KeyFields, reject_unknown};
use super::views::KeyView;
use crate::auth::AdminUser;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Text};
use crate::state::AppState;

/// Most keys one import may hold.
pub const MAX_IMPORT: usize = 1000;

/// One key to import: its string, its owner (`username` or `user_id`) and its limits.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ImportedKeyRequest {
    /// The key as the other system issued it: 16 to 256 printable ASCII characters, not `ahg_…`.
    #[schema(example = "felix-0123456789abcdef")]
    pub key: String,
    /// The owner's username (or give `user_id`).
    pub username: Option<String>,
    /// The owner's id (or give `username`).
    pub user_id: Option<i64>,
    #[serde(flatten)]
    pub fields: KeyFields,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: BTreeMap<String, Value>,
}

/// Body of `POST /api/admin/keys/import`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportKeysRequest {
    /// 1 to 1000 keys, none twice.
    #[schema(max_items = 1000)]
    pub keys: Vec<ImportedKeyRequest>,
}

/// The imported keys (never their strings).
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportedKeys {
    pub keys: Vec<KeyView>,
}

/// Import keys given as JSON; all or none.
#[utoipa::path(post, path = "/api/admin/keys/import", tag = "admin", security(("bearer" = [])), request_body = ImportKeysRequest,
    responses((status = 201, body = ImportedKeys), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn import_keys(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Json(req): Json<ImportKeysRequest>,
) -> Result<(StatusCode, Json<ImportedKeys>), ApiError> {
    Ok((StatusCode::CREATED, Json(import(&state, &admin, req.keys).await?)))
}

/// Import keys given as CSV: a header row naming the columns (`key`, `username` or `user_id`,
/// and any of `name`, `remaining_calls`, `rate_limit`, `rate_limit_day`, `token_limit`,
/// `quota_limit`, `expires_at`, `allowed_models` separated by `;`), then one key per row; fields
/// are not quoted. Empty cells are absent. All or none.
#[utoipa::path(post, path = "/api/admin/keys/import/csv", tag = "admin", security(("bearer" = [])),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 201, body = ImportedKeys), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn import_keys_csv(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Text(body): Text,
) -> Result<(StatusCode, Json<ImportedKeys>), ApiError> {
    let keys = parse_csv(&body)?;
    Ok((StatusCode::CREATED, Json(import(&state, &admin, keys).await?)))
}

/// Reads CSV rows into the JSON request's entries (so both are checked alike).
fn parse_csv(text: &str) -> Result<Vec<ImportedKeyRequest>, ApiError> {
    const NUMBERS: [&str; 6] =
        ["user_id", "remaining_calls", "rate_limit", "rate_limit_day", "token_limit", "quota_limit"];
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').map(str::trim).collect();
    if !header.contains(&"key") {
        return Err(ApiError::Validation("the CSV header must name a `key` column".into()));
    }
    let mut keys = Vec::new();
    for (index, line) in lines.enumerate() {
        let row = index + 2;
        if keys.len() == MAX_IMPORT {
            return Err(ApiError::Validation(format!("an import holds at most {MAX_IMPORT} keys")));
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != header.len() {
            return Err(ApiError::Validation(format!(
                "CSV row {row} has {} cells, the header {}",
                cells.len(),
                header.len()
            )));
        }
        let mut object = Map::new();
        for (column, cell) in header.iter().zip(cells).filter(|(_, cell)| !cell.is_empty()) {
            let value = if NUMBERS.contains(column) {
                let number = serde_json::from_str::<serde_json::Number>(cell)
                    .map_err(|_| ApiError::Validation(format!("CSV row {row}: `{column}` must be a number")))?;
                Value::Number(number)
            } else if *column == "allowed_models" {
                Value::from(cell.split(';').map(str::trim).filter(|m| !m.is_empty()).collect::<Vec<_>>())
            } else {
                Value::from(cell)
            };
            object.insert((*column).to_owned(), value);
        }
        let key = serde_json::from_value(Value::Object(object))
            .map_err(|e| ApiError::Validation(format!("CSV row {row}: {e}")))?;
        keys.push(key);
    }
    Ok(keys)
}

/// Checks every entry (format, duplicates, owners, limits) before storing any.
async fn import(state: &AppState, admin: &User, keys: Vec<ImportedKeyRequest>) -> Result<ImportedKeys, ApiError> {
    if keys.is_empty() || keys.len() > MAX_IMPORT {
        return Err(ApiError::Validation(format!("an import holds 1 to {MAX_IMPORT} keys")));
    }
    let mut seen = HashSet::new();
    let mut owners: HashMap<(Option<String>, Option<i64>), i64> = HashMap::new();
    let mut new = Vec::with_capacity(keys.len());
    for (index, entry) in keys.into_iter().enumerate() {
        let number = index + 1;
        let invalid = |message: String| ApiError::Validation(format!("key #{number}: {message}"));
        reject_unknown(&entry.unknown).map_err(|e| invalid(e.to_string()))?;
        let imported = ImportedKey::new(&entry.key).map_err(|e| invalid(e.to_string()))?;
        if !seen.insert(imported.public_id.clone()) {
            return Err(invalid("the same key appears twice in the list".into()));
        }
        let owner = (entry.username.clone(), entry.user_id);
        let user_id = match owners.get(&owner) {
            Some(id) => *id,
            None => {
                let id = owner_id(state, &owner).await.map_err(|e| match e {
                    ApiError::Validation(message) => invalid(message),
                    ApiError::NotFound(message) => ApiError::NotFound(format!("key #{number}: {message}")),
                    other => other,
                })?;
                owners.insert(owner, id);
                id
            }
        };
        let policy = entry.fields.into_policy(admin, "imported".into()).map_err(|e| match e {
            ApiError::Validation(message) => invalid(message),
            other => other,
        })?;
        let key = NewKey {
            public_id: imported.public_id,
            secret_hash: imported.secret_hash,
            last4: imported.last4,
            policy,
            batch_id: None,
        };
        new.push((user_id, key));
    }
    let public_ids: Vec<String> = new.iter().map(|(_, key)| key.public_id.clone()).collect();
    match state.store.import_keys(new).await {
        Ok(stored) => Ok(ImportedKeys { keys: stored.into_iter().map(Into::into).collect() }),
        Err(StoreError::Conflict(_)) => {
            // Name the first key already stored (nothing was imported).
            for (index, public_id) in public_ids.iter().enumerate() {
                if state.store.key_by_public_id(public_id).await?.is_some() {
                    return Err(ApiError::Conflict(format!(
                        "key #{} is already stored; nothing was imported",
                        index + 1
                    )));
                }
            }
            Err(ApiError::Conflict("a key is already stored; nothing was imported".into()))
        }
        Err(other) => Err(other.into()),
    }
}

/// The owner named by `username` or `user_id` (exactly one of them).
async fn owner_id(state: &AppState, owner: &(Option<String>, Option<i64>)) -> Result<i64, ApiError> {
    let user: Option<User> = match owner {
        (Some(username), None) => state.store.credentials(username).await?.map(|(user, _)| user),
        (None, Some(id)) => state.store.user(*id).await?,
        _ => return Err(ApiError::Validation("name the owner with `username` or `user_id` (one of them)".into())),
    };
    user.map(|u| u.id).ok_or_else(|| ApiError::not_found("owner"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_become_entries() {
        let csv = "key,username,name,remaining_calls,allowed_models\nfelix-0123456789abcdef,alice,old,100,sdxl;flux\nfelix-0123456789abcdeg,bob,,,\n";
        let keys = parse_csv(csv).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].username.as_deref(), Some("alice"));
        assert_eq!(keys[0].fields.remaining_calls, Some(100));
        assert_eq!(keys[0].fields.allowed_models.as_deref(), Some(&["sdxl".to_owned(), "flux".to_owned()][..]));
        assert_eq!(keys[1].fields.name, None);
    }

    #[test]
    fn bad_csv_is_refused_with_its_row() {
        for csv in ["name\nx", "key,username\nonly-one-cell", "key,remaining_calls\nfelix-0123456789abcdef,many"] {
            assert!(matches!(parse_csv(csv), Err(ApiError::Validation(_))), "{csv}");
        }
    }
}
