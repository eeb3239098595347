//! Header values written from numbers without a `String` in between.

use std::fmt::{self, Write};

use http::HeaderValue;

/// The longest value [`display`] writes on the stack; anything longer is refused (the gateway's
/// numbers, with their units, take at most about 25 bytes).
const MAX_LEN: usize = 48;

/// `value`'s `Display` text as a header value, written into a buffer on the stack and copied
/// once into the value (`value.to_string()` then `HeaderValue::from_str` allocates twice);
/// `None` when it is longer than [`MAX_LEN`] or not a valid header value.
pub(crate) fn display(value: impl fmt::Display) -> Option<HeaderValue> {
    let mut text = Buffer { bytes: [0; MAX_LEN], len: 0 };
    write!(text, "{value}").ok()?;
    HeaderValue::from_bytes(&text.bytes[..text.len]).ok()
}

struct Buffer {
    bytes: [u8; MAX_LEN],
    len: usize,
}

impl Write for Buffer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).filter(|&end| end <= MAX_LEN).ok_or(fmt::Error)?;
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_its_display_text() {
        assert_eq!(display(42_u64).unwrap(), "42");
        assert_eq!(display(format_args!("{}s", u64::MAX)).unwrap(), "18446744073709551615s");
        assert_eq!(display(apihub_core::Money::from_micros(-1_500_000)).unwrap(), "-1.5");
    }

    #[test]
    fn a_text_too_long_or_not_a_header_value_is_none() {
        assert!(display("x".repeat(MAX_LEN)).is_some());
        assert!(display("x".repeat(MAX_LEN + 1)).is_none());
        assert!(display("a\nb").is_none());
    }
}
