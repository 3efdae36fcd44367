//! Secret values in a redacting wrapper.
//!
//! [`SecretBytes`] is the only type that carries a secret value through secretsync. Its `Debug` and
//! `Display` print nothing but a placeholder, it is zeroed on drop, and reading the bytes needs an
//! explicit [`SecretBytes::expose`] call, which is easy to find in review.

use std::fmt;
use zeroize::Zeroizing;

/// A secret value: bytes that never reach logs, events, status, metrics or error text.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps bytes as a secret value.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Wraps a string as a secret value.
    pub fn from_string(s: String) -> Self {
        Self::new(s.into_bytes())
    }

    /// The raw bytes. Every call site is a place where a value is used on purpose.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The value as UTF-8 text, if it is valid UTF-8.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Number of bytes (not secret: Kubernetes limits Secret sizes and we report overflows).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if the value has no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(v: Vec<u8>) -> Self {
        Self::new(v)
    }
}

impl From<&str> for SecretBytes {
    fn from(v: &str) -> Self {
        Self::new(v.as_bytes().to_vec())
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(<redacted>)")
    }
}

impl fmt::Display for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let v = SecretBytes::from("hunter2-sentinel");
        assert!(!format!("{v:?}").contains("hunter2"));
        assert!(!format!("{v}").contains("hunter2"));
        assert!(!format!("{:?}", Some(vec![v.clone()])).contains("hunter2"));
        assert_eq!(v.expose(), b"hunter2-sentinel");
    }
}
