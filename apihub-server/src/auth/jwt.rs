//! Session tokens: HS256 only, `exp` required and checked, bound to the user's token version.

use apihub_core::user::{Role, User, UserId};
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};

/// What a session token says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, as a string (RFC 7519).
    pub sub: String,
    /// The user's token version when issued; a bump revokes the token.
    pub ver: i64,
    /// The role when issued (informational: every request re-reads the user).
    pub role: Role,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expiry, Unix seconds.
    pub exp: i64,
}

/// Signs and checks session tokens with one secret.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    lifetime_secs: i64,
}

impl JwtKeys {
    /// Keys from a secret that [`crate::config`] has already vetted.
    pub fn new(secret: &[u8], lifetime_minutes: i64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_exp = true;
        validation.leeway = 0;
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            lifetime_secs: lifetime_minutes * 60,
        }
    }

    /// How long a token lives, in seconds.
    pub fn lifetime_secs(&self) -> i64 {
        self.lifetime_secs
    }

    /// Issues a token for `user`.
    pub fn issue(&self, user: &User) -> anyhow::Result<String> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user.id.to_string(),
            ver: user.token_version,
            role: user.role,
            iat: now,
            exp: now + self.lifetime_secs,
        };
        Ok(encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?)
    }

    /// Signs arbitrary claims (tests use it to make expired tokens).
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        Ok(encode(&Header::new(Algorithm::HS256), claims, &self.encoding)?)
    }

    /// Checks signature, algorithm and expiry; returns the user id and token version.
    pub fn verify(&self, token: &str) -> Option<(UserId, i64)> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        Some((data.claims.sub.parse().ok()?, data.claims.ver))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp_offset: i64) -> Claims {
        let now = Utc::now().timestamp();
        Claims { sub: "7".into(), ver: 3, role: Role::User, iat: now, exp: now + exp_offset }
    }

    #[test]
    fn round_trip_and_expiry() {
        let keys = JwtKeys::new(&[7u8; 32], 60);
        let good = keys.sign(&claims(60)).unwrap();
        assert_eq!(keys.verify(&good), Some((7, 3)));
        assert_eq!(keys.verify(&keys.sign(&claims(-1)).unwrap()), None);
        let other = JwtKeys::new(&[8u8; 32], 60);
        assert_eq!(other.verify(&good), None);
    }

    #[test]
    fn other_algorithms_are_refused() {
        let keys = JwtKeys::new(&[7u8; 32], 60);
        let hs512 = encode(&Header::new(Algorithm::HS512), &claims(60), &EncodingKey::from_secret(&[7u8; 32])).unwrap();
        assert_eq!(keys.verify(&hs512), None);
        // "alg": "none" with an empty signature.
        let good = keys.sign(&claims(60)).unwrap();
        let payload = good.split('.').nth(1).unwrap();
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
        assert_eq!(keys.verify(&none), None);
    }
}
