//! The API key format: `ahg_<public id>_<secret>`, and keys imported from another system.
//!
//! The public id (12 base62 characters) finds the key's row; the secret (32 base62 characters,
//! about 190 random bits from the thread-local CSPRNG) proves possession. Only a SHA-256 of the
//! secret is stored, with the last four characters for display. A malformed key is refused by
//! [`PlainKey::parse`] before any storage lookup.
//!
//! An imported key keeps the string another system issued (at least [`IMPORTED_MIN_LEN`]
//! printable ASCII characters, not starting with `ahg_`). Its row is named by a public id derived
//! from the string ([`imported_public_id`], `imp_` and 24 hex digits, which no generated id can
//! equal), and the SHA-256 of the whole string is stored as its secret hash.
//!
//! ```
//! use apihub_core::key::{GeneratedKey, ImportedKey, PlainKey};
//!
//! let generated = GeneratedKey::generate();
//! let presented = PlainKey::parse(generated.plain.expose()).unwrap();
//! assert_eq!(presented.public_id(), generated.public_id);
//! assert!(presented.matches(&generated.secret_hash));
//! assert!(PlainKey::parse("sk-not-ours").is_err());
//!
//! // A key imported from another system authenticates with its own string.
//! let imported = ImportedKey::new("felix-0123456789abcdef").unwrap();
//! let presented = PlainKey::parse_any("felix-0123456789abcdef").unwrap();
//! assert_eq!(presented.public_id(), imported.public_id);
//! assert!(presented.matches(&imported.secret_hash));
//! assert!(ImportedKey::new("short").is_err());
//! ```

use std::fmt;

use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every APIHub key starts with this.
pub const PREFIX: &str = "ahg_";
/// Length of the public id.
pub const PUBLIC_ID_LEN: usize = 12;
/// Length of the secret.
pub const SECRET_LEN: usize = 32;
/// Length of a whole key.
pub const KEY_LEN: usize = PREFIX.len() + PUBLIC_ID_LEN + 1 + SECRET_LEN;

/// A SHA-256 digest of a key's secret, the only form in which a secret is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash(pub [u8; 32]);

impl SecretHash {
    /// Hashes a secret.
    pub fn of(secret: &str) -> Self {
        SecretHash(Sha256::digest(secret.as_bytes()).into())
    }

    /// Lower-case hex, as stored.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Reads the stored hex form.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(SecretHash(out))
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

/// Why a presented key was refused without a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed API key")]
pub struct MalformedKey;

/// A whole key as a client presents it. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainKey {
    text: String,
    /// `Some` for an imported key: its derived public id.
    imported: Option<String>,
}

/// Shortest imported key accepted.
pub const IMPORTED_MIN_LEN: usize = 16;
/// Longest imported key accepted.
pub const IMPORTED_MAX_LEN: usize = 256;
/// What every imported key's public id starts with.
pub const IMPORTED_ID_PREFIX: &str = "imp_";

/// The public id of an imported key: `imp_` and the first 24 hex digits of a SHA-256 of the key
/// under its own domain (not the stored secret hash). A generated id is 12 base62 characters, so
/// the two never meet.
pub fn imported_public_id(text: &str) -> String {
    let digest = Sha256::new().chain_update(b"apihub-imported-key:").chain_update(text.as_bytes()).finalize();
    format!("{IMPORTED_ID_PREFIX}{}", &hex::encode(digest)[..24])
}

/// Why a key string cannot be imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// Shorter than [`IMPORTED_MIN_LEN`] or longer than [`IMPORTED_MAX_LEN`].
    #[error("an imported key must be {IMPORTED_MIN_LEN} to {IMPORTED_MAX_LEN} characters long")]
    Length,
    /// A character outside printable ASCII (spaces and control characters included).
    #[error("an imported key must be printable ASCII without spaces")]
    Alphabet,
    /// Starts with `ahg_`: that prefix belongs to the keys this gateway issues.
    #[error("an imported key must not start with `{PREFIX}`")]
    ReservedPrefix,
}

/// A key string from another system, checked, and what to store for it.
#[derive(Debug, Clone)]
pub struct ImportedKey {
    /// The derived public id ([`imported_public_id`]).
    pub public_id: String,
    /// SHA-256 of the whole string.
    pub secret_hash: SecretHash,
    /// Its last four characters, for display.
    pub last4: String,
}

impl ImportedKey {
    /// Checks `text` (length, alphabet, prefix) and derives what to store.
    pub fn new(text: &str) -> Result<Self, ImportError> {
        if !(IMPORTED_MIN_LEN..=IMPORTED_MAX_LEN).contains(&text.len()) {
            return Err(ImportError::Length);
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ImportError::Alphabet);
        }
        if text.starts_with(PREFIX) {
            return Err(ImportError::ReservedPrefix);
        }
        Ok(ImportedKey {
            public_id: imported_public_id(text),
            secret_hash: SecretHash::of(text),
            last4: text[text.len() - 4..].to_owned(),
        })
    }
}

impl PlainKey {
    /// A presented key in either format: an `ahg_` key ([`PlainKey::parse`]), or else an
    /// imported one (anything [`ImportedKey::new`] accepts).
    pub fn parse_any(text: &str) -> Result<Self, MalformedKey> {
        if text.starts_with(PREFIX) {
            return Self::parse(text);
        }
        let imported = ImportedKey::new(text).map_err(|_| MalformedKey)?;
        Ok(PlainKey { text: text.to_owned(), imported: Some(imported.public_id) })
    }

    /// Checks the format (prefix, lengths, alphabet) without touching storage.
    pub fn parse(text: &str) -> Result<Self, MalformedKey> {
        let rest = text.strip_prefix(PREFIX).ok_or(MalformedKey)?;
        if text.len() != KEY_LEN {
            return Err(MalformedKey);
        }
        let (public_id, secret) = rest.split_at(PUBLIC_ID_LEN);
        let secret = secret.strip_prefix('_').ok_or(MalformedKey)?;
        let base62 = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric());
        if !base62(public_id) || !base62(secret) {
            return Err(MalformedKey);
        }
        Ok(PlainKey { text: text.to_owned(), imported: None })
    }

    /// The public id, which names the key's row.
    pub fn public_id(&self) -> &str {
        match &self.imported {
            Some(public_id) => public_id,
            None => &self.text[PREFIX.len()..PREFIX.len() + PUBLIC_ID_LEN],
        }
    }

    /// What is hashed: an `ahg_` key's secret part, an imported key's whole string.
    fn secret(&self) -> &str {
        match &self.imported {
            Some(_) => &self.text,
            None => &self.text[PREFIX.len() + PUBLIC_ID_LEN + 1..],
        }
    }

    /// Whether this key's secret hashes to `stored`, compared in constant time.
    pub fn matches(&self, stored: &SecretHash) -> bool {
        SecretHash::of(self.secret()).0.ct_eq(&stored.0).into()
    }

    /// The whole key, for the one response that shows it.
    pub fn expose(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for PlainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.imported {
            Some(public_id) => write!(f, "PlainKey({public_id} imported, ****)"),
            None => write!(f, "PlainKey({PREFIX}{}_****)", self.public_id()),
        }
    }
}

/// A freshly generated key: the plain key to show once, and what to store.
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    /// The whole key; show it once and drop it.
    pub plain: PlainKey,
    /// The public id, stored in clear and unique.
    pub public_id: String,
    /// SHA-256 of the secret.
    pub secret_hash: SecretHash,
    /// The last four characters of the secret, for display.
    pub last4: String,
}

impl GeneratedKey {
    /// Generates a new key from the thread-local CSPRNG.
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let mut draw = |n: usize| -> String { (&mut rng).sample_iter(Alphanumeric).take(n).map(char::from).collect() };
        let public_id = draw(PUBLIC_ID_LEN);
        let secret = draw(SECRET_LEN);
        let last4 = secret[SECRET_LEN - 4..].to_owned();
        let secret_hash = SecretHash::of(&secret);
        let plain = PlainKey { text: format!("{PREFIX}{public_id}_{secret}"), imported: None };
        GeneratedKey { plain, public_id, secret_hash, last4 }
    }
}

/// How a stored key is shown: prefix, public id and the last four secret characters; an imported
/// key only by its last four characters.
pub fn display_mask(public_id: &str, last4: &str) -> String {
    if public_id.starts_with(IMPORTED_ID_PREFIX) {
        format!("…{last4}")
    } else {
        format!("{PREFIX}{public_id}_…{last4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_verify() {
        let generated = GeneratedKey::generate();
        let key = PlainKey::parse(generated.plain.expose()).unwrap();
        assert_eq!(key.public_id(), generated.public_id);
        assert!(key.matches(&generated.secret_hash));
        assert!(generated.plain.expose().ends_with(&generated.last4));
        assert_eq!(SecretHash::from_hex(&generated.secret_hash.to_hex()), Some(generated.secret_hash));
    }

    #[test]
    fn two_keys_differ() {
        assert_ne!(GeneratedKey::generate().plain, GeneratedKey::generate().plain);
    }

    #[test]
    fn debug_redacts_the_secret() {
        let generated = GeneratedKey::generate();
        let shown = format!("{:?}", generated);
        assert!(!shown.contains(&generated.plain.expose()[PREFIX.len() + PUBLIC_ID_LEN + 1..]));
    }

    #[test]
    fn a_wrong_secret_does_not_match() {
        let a = GeneratedKey::generate();
        let b = GeneratedKey::generate();
        let forged = PlainKey::parse(&format!(
            "{PREFIX}{}_{}",
            a.public_id,
            &b.plain.expose()[PREFIX.len() + PUBLIC_ID_LEN + 1..]
        ))
        .unwrap();
        assert!(!forged.matches(&a.secret_hash));
    }

    #[test]
    fn imported_keys_authenticate_with_their_own_string_only() {
        let text = "felix_key_0123456789";
        let imported = ImportedKey::new(text).unwrap();
        let presented = PlainKey::parse_any(text).unwrap();
        assert_eq!(presented.public_id(), imported.public_id);
        assert!(presented.public_id().starts_with(IMPORTED_ID_PREFIX));
        assert!(presented.matches(&imported.secret_hash));
        let other = PlainKey::parse_any("felix_key_0123456780").unwrap();
        assert_ne!(other.public_id(), imported.public_id);
        assert!(!other.matches(&imported.secret_hash));
        assert_eq!(imported.last4, "6789");
        assert_eq!(display_mask(&imported.public_id, &imported.last4), "…6789");
        assert!(!format!("{presented:?}").contains(text));
    }

    #[test]
    fn unimportable_strings_are_refused() {
        assert_eq!(ImportedKey::new("short").unwrap_err(), ImportError::Length);
        assert_eq!(ImportedKey::new(&"x".repeat(IMPORTED_MAX_LEN + 1)).unwrap_err(), ImportError::Length);
        assert_eq!(ImportedKey::new("with a space 0123456").unwrap_err(), ImportError::Alphabet);
        assert_eq!(ImportedKey::new("ahg_0123456789abcdefgh").unwrap_err(), ImportError::ReservedPrefix);
        // An `ahg_` string is read as a generated key, never as an imported one.
        assert_eq!(PlainKey::parse_any("ahg_0123456789abcdefgh"), Err(MalformedKey));
        assert_eq!(PlainKey::parse_any("short"), Err(MalformedKey));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let good = GeneratedKey::generate().plain.expose().to_owned();
        let mut wrong_sep = good.clone();
        wrong_sep.replace_range(PREFIX.len() + PUBLIC_ID_LEN..PREFIX.len() + PUBLIC_ID_LEN + 1, "-");
        for bad in [
            String::new(),
            "ahg_".into(),
            good[..good.len() - 1].to_owned(),
            format!("{good}x"),
            good.replacen("ahg_", "sk-_", 1),
            wrong_sep,
            good.replace(&good[good.len() - 1..], "!"),
            format!("{}é", &good[..good.len() - 2]),
        ] {
            assert_eq!(PlainKey::parse(&bad), Err(MalformedKey), "{bad}");
        }
    }
}
