//! The API key format: `ahg_<public id>_<secret>`.
//!
//! The public id (12 base62 characters) finds the key's row; the secret (32 base62 characters,
//! about 190 random bits from the thread-local CSPRNG) proves possession. Only a SHA-256 of the
//! secret is stored, with the last four characters for display. A malformed key is refused by
//! [`PlainKey::parse`] before any storage lookup.
//!
//! ```
//! use apihub_core::key::{GeneratedKey, PlainKey};
//!
//! let generated = GeneratedKey::generate();
//! let presented = PlainKey::parse(generated.plain.expose()).unwrap();
//! assert_eq!(presented.public_id(), generated.public_id);
//! assert!(presented.matches(&generated.secret_hash));
//! assert!(PlainKey::parse("sk-not-ours").is_err());
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
pub struct PlainKey(String);

impl PlainKey {
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
        Ok(PlainKey(text.to_owned()))
    }

    /// The public id, which names the key's row.
    pub fn public_id(&self) -> &str {
        &self.0[PREFIX.len()..PREFIX.len() + PUBLIC_ID_LEN]
    }

    fn secret(&self) -> &str {
        &self.0[PREFIX.len() + PUBLIC_ID_LEN + 1..]
    }

    /// Whether this key's secret hashes to `stored`, compared in constant time.
    pub fn matches(&self, stored: &SecretHash) -> bool {
        SecretHash::of(self.secret()).0.ct_eq(&stored.0).into()
    }

    /// The whole key, for the one response that shows it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PlainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlainKey({PREFIX}{}_****)", self.public_id())
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
        GeneratedKey { plain: PlainKey(format!("{PREFIX}{public_id}_{secret}")), public_id, secret_hash, last4 }
    }
}

/// How a stored key is shown: prefix, public id and the last four secret characters.
pub fn display_mask(public_id: &str, last4: &str) -> String {
    format!("{PREFIX}{public_id}_…{last4}")
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
