//! EPay (易支付), the payment provider behind online recharge: the MD5 signature that signs our
//! payment requests and the provider's notifications, and the check a notification must pass
//! before its order is completed. The orders themselves are the domain's
//! ([`apihub_core::recharge`]); only the provider's protocol lives here.

mod notification;
mod signature;

pub use notification::{MAX_TRADE_NO_LEN, Merchant, NoticeRefusal, TRADE_SUCCESS, check_notification};
pub use signature::{SIGN_PARAM, SIGN_TYPE_PARAM, sign, signing_string, verify};
