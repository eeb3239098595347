//! How a presented key is read: the id it is looked up by, and how it is verified.

use std::fmt;

use apihub_core::key::{PlainKey, SecretHash};
use subtle::ConstantTimeEq;

use apihub_core::lookup::KeyRecord;

/// A key format: what a presented key is looked up by, and whether it matches what is stored.
/// [`AhgKeys`] (the default) reads APIHub's `ahg_` keys; [`HashedKeys`] takes any string and
/// looks it up by its SHA-256, for an application whose keys exist already.
pub trait KeyFormat: Send + Sync + fmt::Debug {
    /// The id the [`KeyLookup`](super::KeyLookup) finds the key by, or `None` when the string is
    /// not a key of this format (a 401 "malformed API key", with no lookup).
    fn lookup_id(&self, presented: &str) -> Option<String>;
    /// Whether `presented` is the key `record` stores, in constant time.
    fn verify(&self, presented: &str, record: &KeyRecord) -> bool;
}

/// APIHub's keys: `ahg_<public id>_<secret>`, looked up by the public id and verified against the
/// SHA-256 of the secret; and keys imported from another system (see
/// [`apihub_core::key`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct AhgKeys;

impl KeyFormat for AhgKeys {
    fn lookup_id(&self, presented: &str) -> Option<String> {
        PlainKey::parse_any(presented).ok().map(|key| key.public_id().to_owned())
    }

    fn verify(&self, presented: &str, record: &KeyRecord) -> bool {
        PlainKey::parse_any(presented).is_ok_and(|key| key.matches(&record.secret_hash))
    }
}

/// Any key string of `min_len..=max_len` printable ASCII characters, looked up by the lower-case
/// hex SHA-256 of the whole string (which is what the application stores, and the record's
/// `secret_hash`).
#[derive(Debug, Clone, Copy)]
pub struct HashedKeys {
    /// Shortest key accepted.
    pub min_len: usize,
    /// Longest key accepted.
    pub max_len: usize,
}

impl Default for HashedKeys {
    fn default() -> Self {
        HashedKeys { min_len: 16, max_len: 256 }
    }
}

impl KeyFormat for HashedKeys {
    fn lookup_id(&self, presented: &str) -> Option<String> {
        let printable = presented.bytes().all(|b| b.is_ascii_graphic());
        (printable && (self.min_len..=self.max_len).contains(&presented.len()))
            .then(|| SecretHash::of(presented).to_hex())
    }

    fn verify(&self, presented: &str, record: &KeyRecord) -> bool {
        SecretHash::of(presented).0.ct_eq(&record.secret_hash.0).into()
    }
}

#[cfg(test)]
mod tests {
    use apihub_core::key::GeneratedKey;

    use super::*;

    #[test]
    fn an_ahg_key_is_found_by_its_public_id_and_verified_by_its_secret() {
        let key = GeneratedKey::generate();
        let record = KeyRecord::new(1, 1, key.secret_hash.clone());
        assert_eq!(AhgKeys.lookup_id(key.plain.expose()), Some(key.public_id.clone()));
        assert!(AhgKeys.verify(key.plain.expose(), &record));
        let other = GeneratedKey::generate();
        assert!(!AhgKeys.verify(other.plain.expose(), &record));
        assert_eq!(AhgKeys.lookup_id("ahg_short"), None);
    }

    #[test]
    fn a_hashed_key_is_found_and_verified_by_the_hash_of_the_whole_string() {
        let format = HashedKeys::default();
        let presented = "sk-live-0123456789abcdef";
        let hash = SecretHash::of(presented);
        assert_eq!(format.lookup_id(presented), Some(hash.to_hex()));
        assert!(format.verify(presented, &KeyRecord::new(1, 1, hash)));
        assert!(!format.verify("sk-live-0123456789abcdeX", &KeyRecord::new(1, 1, SecretHash::of(presented))));
        assert_eq!(format.lookup_id("short"), None);
        assert_eq!(format.lookup_id("with a space in it"), None);
    }
}
