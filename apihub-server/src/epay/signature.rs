//! The EPay MD5 signature, used to sign payment requests and to check notifications.
//!
//! The scheme: drop `sign`, `sign_type` and every parameter with an empty value, sort the rest by
//! key in byte order, join them as `k=v&…` with the raw (not URL-encoded) values, append the
//! merchant key, and take the lowercase hex MD5 of the result.
//!
//! ```
//! use apihub_server::epay::{sign, verify};
//!
//! let params = [("pid", "1001"), ("money", "10.00"), ("sign_type", "MD5"), ("param", "")];
//! let signature = sign(&params, "merchant-key");
//! // The same as signing the string `money=10.00&pid=1001merchant-key`.
//! assert_eq!(signature.len(), 32);
//! assert!(verify(&params, "merchant-key", &signature));
//! assert!(!verify(&params, "another-key", &signature));
//! ```

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

/// The parameter carrying the signature; never part of what is signed.
pub const SIGN_PARAM: &str = "sign";
/// The parameter naming the signature scheme (`MD5`); never part of what is signed.
pub const SIGN_TYPE_PARAM: &str = "sign_type";

/// The string the signature is the MD5 of, without the merchant key: the kept parameters sorted by
/// key in byte order and joined as `k=v&…`.
pub fn signing_string<'a, I, K, V>(params: I) -> String
where
    I: IntoIterator<Item = &'a (K, V)>,
    K: AsRef<str> + 'a,
    V: AsRef<str> + 'a,
{
    let mut kept: Vec<(&str, &str)> = params
        .into_iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .filter(|(k, v)| *k != SIGN_PARAM && *k != SIGN_TYPE_PARAM && !v.is_empty())
        .collect();
    kept.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then(a.1.cmp(b.1)));
    let mut out = String::new();
    for (i, (k, v)) in kept.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// The EPay signature of `params` under the merchant `key`: lowercase hex MD5.
pub fn sign<'a, I, K, V>(params: I, key: &str) -> String
where
    I: IntoIterator<Item = &'a (K, V)>,
    K: AsRef<str> + 'a,
    V: AsRef<str> + 'a,
{
    let mut hasher = Md5::new();
    hasher.update(signing_string(params).as_bytes());
    hasher.update(key.as_bytes());
    hex::encode(hasher.finalize())
}

/// Whether `signature` is the EPay signature of `params` under `key`, compared in constant time.
/// Upper-case hex is accepted, as some EPay deployments send it.
pub fn verify<'a, I, K, V>(params: I, key: &str, signature: &str) -> bool
where
    I: IntoIterator<Item = &'a (K, V)>,
    K: AsRef<str> + 'a,
    V: AsRef<str> + 'a,
{
    let expected = sign(params, key);
    let given = signature.to_ascii_lowercase();
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "testkey123";

    fn submit_params() -> Vec<(&'static str, &'static str)> {
        vec![
            ("device", "pc"),
            ("money", "10.00"),
            ("name", "TUC10"),
            ("notify_url", "https://gw.example.com/api/user/epay/notify"),
            ("out_trade_no", "USR1NOAbC1231700000000"),
            ("pid", "1001"),
            ("return_url", "https://gw.example.com/console/log"),
            ("type", "alipay"),
        ]
    }

    fn notify_params() -> Vec<(&'static str, &'static str)> {
        vec![
            ("pid", "1001"),
            ("trade_no", "2024010112000012345"),
            ("out_trade_no", "USR1NOAbC1231700000000"),
            ("type", "alipay"),
            ("name", "TUC10"),
            ("money", "10.00"),
            ("trade_status", "TRADE_SUCCESS"),
            ("param", ""),
        ]
    }

    #[test]
    fn submit_vector() {
        assert_eq!(sign(&submit_params(), KEY), "69c407e440a0b5e3fdff7c7c0e6f35d5");
    }

    #[test]
    fn notify_vector() {
        assert_eq!(sign(&notify_params(), KEY), "df717258c8797caf769e468592bf3a7b");
    }

    #[test]
    fn signing_string_drops_sign_sign_type_and_empty_values_and_sorts() {
        let mut params = notify_params();
        params.push(("sign", "whatever"));
        params.push(("sign_type", "MD5"));
        assert_eq!(
            signing_string(&params),
            "money=10.00&name=TUC10&out_trade_no=USR1NOAbC1231700000000&pid=1001\
             &trade_no=2024010112000012345&trade_status=TRADE_SUCCESS&type=alipay"
        );
        assert_eq!(sign(&params, KEY), "df717258c8797caf769e468592bf3a7b");
    }

    #[test]
    fn keys_sort_by_bytes() {
        let params = [("b", "1"), ("B", "2"), ("a_", "3"), ("a", "4")];
        assert_eq!(signing_string(&params), "B=2&a=4&a_=3&b=1");
    }

    #[test]
    fn verify_accepts_only_the_right_signature() {
        let params = notify_params();
        assert!(verify(&params, KEY, "df717258c8797caf769e468592bf3a7b"));
        assert!(verify(&params, KEY, "DF717258C8797CAF769E468592BF3A7B"));
        assert!(!verify(&params, "wrongkey", "df717258c8797caf769e468592bf3a7b"));
        assert!(!verify(&params, KEY, "df717258c8797caf769e468592bf3a7c"));
        assert!(!verify(&params, KEY, ""));
        let mut tampered = params.clone();
        tampered[5] = ("money", "100.00");
        assert!(!verify(&tampered, KEY, "df717258c8797caf769e468592bf3a7b"));
    }
}
