//! Checking a payment notification: the signature, our merchant id, a successful trade, one of our
//! order numbers, a sane trade number and an amount. What passes becomes the domain's
//! [`Notice`]; the store then checks it against the order.

use apihub_core::Money;
use apihub_core::recharge::{Notice, is_out_trade_no};

use super::signature::{SIGN_PARAM, SIGN_TYPE_PARAM, verify};

/// The `trade_status` of a completed payment.
pub const TRADE_SUCCESS: &str = "TRADE_SUCCESS";

/// Longest accepted provider trade number.
pub const MAX_TRADE_NO_LEN: usize = 64;

/// The merchant settings a notification is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Merchant<'a> {
    /// Our merchant id (`pid`).
    pub pid: &'a str,
    /// The merchant key the signature is made with.
    pub key: &'a str,
}

/// Why a notification credits nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoticeRefusal {
    /// A parameter appears twice: which value was signed is ambiguous.
    #[error("parameter `{0}` appears more than once")]
    Duplicate(String),
    /// A required parameter is missing or empty.
    #[error("parameter `{0}` is missing")]
    Missing(&'static str),
    /// The signature does not match (a tampered field or the wrong key).
    #[error("signature mismatch")]
    BadSignature,
    /// Signed with a scheme other than MD5.
    #[error("unsupported sign_type `{0}`")]
    SignType(String),
    /// Another merchant's notification.
    #[error("pid `{0}` is not ours")]
    WrongPid(String),
    /// The trade is not (yet) successful.
    #[error("trade_status is `{0}`")]
    NotSuccessful(String),
    /// Not one of our order numbers.
    #[error("no such order `{0}`")]
    UnknownOrder(String),
    /// `money` is not a decimal amount.
    #[error("money `{0}` is not an amount")]
    BadMoney(String),
    /// The trade number is too long or has control characters.
    #[error("trade_no is not valid")]
    BadTradeNo,
}

/// Checks a notification's parameters (query string or form body, in any order) against our
/// merchant settings. The order itself is checked by the store.
pub fn check_notification(params: &[(String, String)], merchant: Merchant<'_>) -> Result<Notice, NoticeRefusal> {
    for (i, (key, _)) in params.iter().enumerate() {
        if params[..i].iter().any(|(k, _)| k == key) {
            return Err(NoticeRefusal::Duplicate(key.clone()));
        }
    }
    let get = |name: &'static str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let required = |name: &'static str| get(name).filter(|v| !v.is_empty()).ok_or(NoticeRefusal::Missing(name));
    let signature = required(SIGN_PARAM)?;
    if let Some(sign_type) = get(SIGN_TYPE_PARAM).filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("MD5")) {
        return Err(NoticeRefusal::SignType(sign_type.to_owned()));
    }
    if !verify(params, merchant.key, signature) {
        return Err(NoticeRefusal::BadSignature);
    }
    let pid = required("pid")?;
    if pid != merchant.pid {
        return Err(NoticeRefusal::WrongPid(pid.to_owned()));
    }
    let status = required("trade_status")?;
    if status != TRADE_SUCCESS {
        return Err(NoticeRefusal::NotSuccessful(status.to_owned()));
    }
    let out_trade_no = required("out_trade_no")?;
    if !is_out_trade_no(out_trade_no) {
        return Err(NoticeRefusal::UnknownOrder(out_trade_no.to_owned()));
    }
    let trade_no = required("trade_no")?;
    if trade_no.len() > MAX_TRADE_NO_LEN || trade_no.chars().any(char::is_control) {
        return Err(NoticeRefusal::BadTradeNo);
    }
    let money_text = required("money")?;
    let money = Money::parse(money_text).map_err(|_| NoticeRefusal::BadMoney(money_text.to_owned()))?;
    Ok(Notice {
        out_trade_no: out_trade_no.to_owned(),
        trade_no: trade_no.to_owned(),
        money,
        payment_type: get("type").unwrap_or_default().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::epay::sign;

    const KEY: &str = "testkey123";
    const ORDER: &str = "epay20240101120000abcdefghij";

    fn merchant() -> Merchant<'static> {
        Merchant { pid: "1001", key: KEY }
    }

    fn notification(money: &str) -> Vec<(String, String)> {
        let mut params: Vec<(String, String)> = [
            ("pid", "1001"),
            ("trade_no", "2024010112000012345"),
            ("out_trade_no", ORDER),
            ("type", "alipay"),
            ("name", "TUC10"),
            ("money", money),
            ("trade_status", TRADE_SUCCESS),
            ("param", ""),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let signature = sign(&params, KEY);
        params.push(("sign".into(), signature));
        params.push(("sign_type".into(), "MD5".into()));
        params
    }

    #[test]
    fn a_good_notification_passes() {
        let notice = check_notification(&notification("10.00"), merchant()).unwrap();
        assert_eq!(notice.out_trade_no, ORDER);
        assert_eq!(notice.trade_no, "2024010112000012345");
        assert_eq!(notice.money, Money::from_credits(10));
        assert_eq!(notice.payment_type, "alipay");
    }

    #[test]
    fn tampering_the_wrong_key_and_duplicates_are_refused() {
        let mut tampered = notification("10.00");
        tampered[5].1 = "1000.00".into();
        assert_eq!(check_notification(&tampered, merchant()), Err(NoticeRefusal::BadSignature));
        let wrong_key = Merchant { pid: "1001", key: "otherkey" };
        assert_eq!(check_notification(&notification("10.00"), wrong_key), Err(NoticeRefusal::BadSignature));
        let mut doubled = notification("10.00");
        doubled.push(("money".into(), "1000.00".into()));
        assert_eq!(check_notification(&doubled, merchant()), Err(NoticeRefusal::Duplicate("money".into())));
        let unsigned: Vec<_> = notification("10.00").into_iter().filter(|(k, _)| k != "sign").collect();
        assert_eq!(check_notification(&unsigned, merchant()), Err(NoticeRefusal::Missing("sign")));
    }

    #[test]
    fn another_pid_or_an_unfinished_trade_is_refused() {
        let other = Merchant { pid: "2002", key: KEY };
        assert_eq!(check_notification(&notification("10.00"), other), Err(NoticeRefusal::WrongPid("1001".into())));
        let mut waiting = notification("10.00");
        waiting.retain(|(k, _)| k != "sign");
        waiting[6].1 = "WAIT_BUYER_PAY".into();
        let signature = sign(&waiting, KEY);
        waiting.push(("sign".into(), signature));
        assert_eq!(
            check_notification(&waiting, merchant()),
            Err(NoticeRefusal::NotSuccessful("WAIT_BUYER_PAY".into()))
        );
    }
}
