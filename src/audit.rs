//! Keyed HMACs of secret values (drift detection, rotation detection, status and audit records).
//!
//! A keyed HMAC lets us compare values and prove which value was synced without storing or revealing
//! it: without the key, a low-entropy password cannot be brute-forced from the HMAC.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::value::SecretBytes;

type HmacSha256 = Hmac<Sha256>;

/// The key of every HMAC secretsync computes. Held in a zeroizing buffer; `Debug` prints nothing.
#[derive(Clone)]
pub struct HmacKey(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(<redacted>)")
    }
}

impl HmacKey {
    /// Wraps key bytes (at least 32 bytes recommended).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A fresh random 32-byte key.
    pub fn random() -> Self {
        use rand::RngCore;
        let mut k = vec![0u8; 32];
        rand::rng().fill_bytes(&mut k);
        Self::new(k)
    }

    /// The raw key (to store it in its Secret).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    fn mac(&self, parts: &[&[u8]]) -> String {
        // new_from_slice only fails for invalid key lengths, which HMAC does not have.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// HMAC of one Secret key's value, bound to the key name.
    pub fn key_hmac(&self, secret_key: &str, value: &SecretBytes) -> String {
        self.mac(&[b"secretsync/v1/key", secret_key.as_bytes(), value.expose()])
    }

    /// HMAC of a whole data map, computed from the per-key HMACs (so status can reproduce it).
    pub fn data_hmac_from_keys<'a>(
        &self,
        key_hmacs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> String {
        let mut sorted: Vec<_> = key_hmacs.into_iter().collect();
        sorted.sort();
        let mut parts: Vec<&[u8]> = vec![b"secretsync/v1/data"];
        for (k, h) in &sorted {
            parts.push(k.as_bytes());
            parts.push(h.as_bytes());
        }
        self.mac(&parts)
    }

    /// HMAC of a whole data map.
    pub fn data_hmac(&self, data: &BTreeMap<String, SecretBytes>) -> String {
        let per_key: Vec<(String, String)> = data
            .iter()
            .map(|(k, v)| (k.clone(), self.key_hmac(k, v)))
            .collect();
        self.data_hmac_from_keys(per_key.iter().map(|(k, h)| (k.as_str(), h.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmacs_are_keyed_and_bound_to_names() {
        let k1 = HmacKey::new(vec![1; 32]);
        let k2 = HmacKey::new(vec![2; 32]);
        let v = SecretBytes::from("value");
        assert_ne!(k1.key_hmac("a", &v), k2.key_hmac("a", &v));
        assert_ne!(k1.key_hmac("a", &v), k1.key_hmac("b", &v));
        assert_eq!(
            k1.key_hmac("a", &v),
            k1.key_hmac("a", &SecretBytes::from("value"))
        );
        // Length prefixes: ("ab","c") and ("a","bc") differ.
        assert_ne!(
            k1.key_hmac("ab", &SecretBytes::from("c")),
            k1.key_hmac("a", &SecretBytes::from("bc"))
        );
        assert!(!format!("{k1:?}").contains('1'));
    }

    #[test]
    fn data_hmac_is_order_independent_and_change_sensitive() {
        let k = HmacKey::new(vec![7; 32]);
        let mut d: BTreeMap<String, SecretBytes> = BTreeMap::new();
        d.insert("a".into(), "1".into());
        d.insert("b".into(), "2".into());
        let h1 = k.data_hmac(&d);
        d.insert("b".into(), "3".into());
        assert_ne!(h1, k.data_hmac(&d));
    }
}
