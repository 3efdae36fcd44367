//! A minimal DER reader: just enough to take private keys and public keys apart (PKCS#8, PKCS#1,
//! SEC1, SubjectPublicKeyInfo). Bounds-checked, no recursion beyond what the caller does.

/// DER tags used here.
pub const INTEGER: u8 = 0x02;
/// BIT STRING.
pub const BIT_STRING: u8 = 0x03;
/// OCTET STRING.
pub const OCTET_STRING: u8 = 0x04;
/// OBJECT IDENTIFIER.
pub const OID: u8 = 0x06;
/// SEQUENCE.
pub const SEQUENCE: u8 = 0x30;
/// `[0]` constructed.
pub const CONTEXT_0: u8 = 0xa0;
/// `[1]` constructed.
pub const CONTEXT_1: u8 = 0xa1;

/// A cursor over DER elements.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The next element's tag, without consuming it.
    pub fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    /// The next element: its tag and contents.
    pub fn next_any(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let mut len = 0usize;
            for &b in &rest[..n] {
                len = (len << 8) | usize::from(b);
            }
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return None;
        }
        let (body, rest) = rest.split_at(len);
        self.0 = rest;
        Some((tag, body))
    }

    /// The next element, which must have tag `tag`.
    pub fn next(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.next_any()? {
            (t, body) if t == tag => Some(body),
            _ => None,
        }
    }

    /// The next element if it has tag `tag` (otherwise nothing is consumed).
    pub fn optional(&mut self, tag: u8) -> Option<&'a [u8]> {
        if self.peek() == Some(tag) {
            self.next(tag)
        } else {
            None
        }
    }
}

/// An INTEGER's magnitude without leading zero bytes (for comparing moduli and exponents).
pub fn unsigned(int: &[u8]) -> &[u8] {
    let start = int.iter().position(|&b| b != 0).unwrap_or(int.len());
    &int[start..]
}

/// A BIT STRING's bytes (no unused bits allowed, as in keys).
pub fn bits(body: &[u8]) -> Option<&[u8]> {
    match body.split_first() {
        Some((0, rest)) => Some(rest),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths_and_refuses_truncation() {
        let mut r = Reader(&[0x02, 0x01, 0x05, 0x04, 0x81, 0x02, 0xaa, 0xbb]);
        assert_eq!(r.next(INTEGER), Some(&[5u8][..]));
        assert_eq!(r.next(OCTET_STRING), Some(&[0xaa, 0xbb][..]));
        assert!(r.is_empty());
        assert_eq!(Reader(&[0x30, 0x05, 0x00]).next_any(), None);
        assert_eq!(Reader(&[0x30, 0x85, 0, 0, 0, 0, 1]).next_any(), None);
        assert_eq!(Reader(&[0x30]).next_any(), None);
        assert_eq!(unsigned(&[0, 0, 1, 0]), &[1, 0]);
    }
}
