//! Master keys and keyrings.
//!
//! A master key is 32 random bytes with a key id. Its textual form (key files, the
//! `SECRETSYNC_MASTER_KEY` variable, values of the cluster's master-key Secret) is one line:
//!
//! ```text
//! secretsync-master-key-v1:<key id>:<32 bytes, base64url without padding>
//! ```
//!
//! Key ids are 1–64 characters of `[A-Za-z0-9._-]` (so they are valid Kubernetes Secret data keys).
//! Generated ids look like `mk-20260415-093000-1a2b3c4d` (UTC creation time, then 32 random bits),
//! so sorting ids sorts keys by creation time.
//!
//! A [`Keyring`] holds several master keys. Decryption uses whichever key the store has a wrapping
//! for. Encryption of new wrappings (`store init`) uses the **newest** key, defined as the **last**
//! key of the keyring: the last line of a key file, or — for a Kubernetes Secret, whose data is
//! ordered by key id — the greatest key id, which for generated ids is the most recently created.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::OsRng;
use aes_gcm::aead::rand_core::RngCore;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use super::FileStoreError;

/// Prefix of the textual form of a master key.
pub const MASTER_KEY_PREFIX: &str = "secretsync-master-key-v1";

/// Length of a master key in bytes.
pub const KEY_LEN: usize = 32;

/// One master key: an id and 32 secret bytes (zeroed on drop, never printed).
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .field("bytes", &"<redacted>")
            .finish()
    }
}

/// Whether `id` is a valid key id.
pub(crate) fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl MasterKey {
    /// Generates a new random master key with a time-based id (`mk-YYYYMMDD-HHMMSS-xxxxxxxx`).
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(bytes.as_mut());
        let mut tag = [0u8; 4];
        OsRng.fill_bytes(&mut tag);
        let id = format!(
            "mk-{}-{}",
            chrono::Utc::now().format("%Y%m%d-%H%M%S"),
            hex::encode(tag)
        );
        Self { id, bytes }
    }

    /// Builds a key from an id and raw bytes (which must be exactly 32).
    pub fn from_raw(id: &str, raw: &[u8]) -> Result<Self, FileStoreError> {
        if !valid_key_id(id) {
            return Err(FileStoreError::InvalidKey {
                what: format!("key id {id:?} is not 1-64 characters of [A-Za-z0-9._-]"),
            });
        }
        let arr: [u8; KEY_LEN] = raw.try_into().map_err(|_| FileStoreError::InvalidKey {
            what: format!("key {id:?} must be {KEY_LEN} bytes, got {}", raw.len()),
        })?;
        Ok(Self {
            id: id.to_string(),
            bytes: Zeroizing::new(arr),
        })
    }

    /// Parses one key line (`secretsync-master-key-v1:<id>:<base64url>`), surrounding whitespace allowed.
    pub fn parse(line: &str) -> Result<Self, FileStoreError> {
        let line = line.trim();
        let mut parts = line.splitn(3, ':');
        let (Some(prefix), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(FileStoreError::InvalidKey {
                what: format!("expected `{MASTER_KEY_PREFIX}:<id>:<base64url>`"),
            });
        };
        if prefix != MASTER_KEY_PREFIX {
            return Err(FileStoreError::InvalidKey {
                what: format!("expected the prefix `{MASTER_KEY_PREFIX}:`"),
            });
        }
        // Errors never repeat any part of the line: a malformed line may hold key material
        // in an unexpected place.
        if !valid_key_id(id) {
            return Err(FileStoreError::InvalidKey {
                what: "the key id is not 1-64 characters of [A-Za-z0-9._-]".into(),
            });
        }
        let raw = Zeroizing::new(URL_SAFE_NO_PAD.decode(b64).map_err(|_| {
            FileStoreError::InvalidKey {
                what: "the key material is not unpadded base64url".into(),
            }
        })?);
        if raw.len() != KEY_LEN {
            return Err(FileStoreError::InvalidKey {
                what: format!(
                    "the key material must be {KEY_LEN} bytes, got {}",
                    raw.len()
                ),
            });
        }
        Self::from_raw(id, &raw)
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The textual form (secret!). Only for writing key files and printing a new key once.
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{MASTER_KEY_PREFIX}:{}:{}",
            self.id,
            URL_SAFE_NO_PAD.encode(self.bytes.as_ref())
        ))
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

/// Several master keys; the last one is the newest (see the module doc).
#[derive(Clone, Default)]
pub struct Keyring {
    keys: Vec<MasterKey>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.ids())
            .finish()
    }
}

impl Keyring {
    /// An empty keyring (opens nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// A keyring of one key.
    pub fn single(key: MasterKey) -> Self {
        Self { keys: vec![key] }
    }

    /// Adds a key as the newest. The same id twice is accepted only with the same bytes.
    pub fn push(&mut self, key: MasterKey) -> Result<(), FileStoreError> {
        if let Some(pos) = self.keys.iter().position(|k| k.id == key.id) {
            if self.keys[pos].bytes != key.bytes {
                return Err(FileStoreError::InvalidKey {
                    what: format!(
                        "key id {:?} appears twice with different key material",
                        key.id
                    ),
                });
            }
            let k = self.keys.remove(pos);
            self.keys.push(k);
            return Ok(());
        }
        self.keys.push(key);
        Ok(())
    }

    /// Parses key text: one key per line; blank lines and lines starting with `#` are ignored.
    /// Later lines are newer. At least one key is required.
    pub fn parse(text: &str) -> Result<Self, FileStoreError> {
        let mut ring = Self::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = MasterKey::parse(line).map_err(|e| match e {
                FileStoreError::InvalidKey { what } => FileStoreError::InvalidKey {
                    what: format!("line {}: {what}", n + 1),
                },
                other => other,
            })?;
            ring.push(key)?;
        }
        if ring.is_empty() {
            return Err(FileStoreError::InvalidKey {
                what: "no master key found".into(),
            });
        }
        Ok(ring)
    }

    /// Builds a keyring from a Kubernetes Secret's data: each data key is a key id and its value
    /// either the key text (whose id must equal the data key) or the raw 32 bytes. Keys are ordered
    /// by id, so the greatest id is the newest.
    pub fn from_secret_data(data: &BTreeMap<String, Vec<u8>>) -> Result<Self, FileStoreError> {
        let mut ring = Self::new();
        for (id, value) in data {
            let key = if value.len() == KEY_LEN {
                MasterKey::from_raw(id, value)?
            } else {
                let text = std::str::from_utf8(value).map_err(|_| FileStoreError::InvalidKey {
                    what: format!("Secret key {id:?} is neither {KEY_LEN} raw bytes nor key text"),
                })?;
                let key = MasterKey::parse(text).map_err(|e| match e {
                    FileStoreError::InvalidKey { what } => FileStoreError::InvalidKey {
                        what: format!("Secret key {id:?}: {what}"),
                    },
                    other => other,
                })?;
                if key.id != *id {
                    return Err(FileStoreError::InvalidKey {
                        what: format!("Secret key {id:?} holds a master key with id {:?}", key.id),
                    });
                }
                key
            };
            ring.push(key)?;
        }
        if ring.is_empty() {
            return Err(FileStoreError::InvalidKey {
                what: "the master-key Secret has no keys".into(),
            });
        }
        Ok(ring)
    }

    /// The key ids, oldest first.
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.id.clone()).collect()
    }

    /// The newest key (the last), if any.
    pub fn newest(&self) -> Option<&MasterKey> {
        self.keys.last()
    }

    /// The key with this id.
    pub fn get(&self, id: &str) -> Option<&MasterKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True if there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_redaction() {
        let k = MasterKey::generate();
        assert!(k.id().starts_with("mk-"));
        assert!(valid_key_id(k.id()));
        let text = k.to_text();
        let back = MasterKey::parse(&text).unwrap();
        assert_eq!(back.id(), k.id());
        assert_eq!(back.bytes(), k.bytes());
        let b64 = text.rsplit(':').next().unwrap().to_string();
        assert!(!format!("{k:?}").contains(&b64));
        let ring = Keyring::single(k);
        assert!(!format!("{ring:?}").contains(&b64));
    }

    #[test]
    fn parse_rejects_bad_text_without_echoing_it() {
        for bad in [
            "",
            "nope",
            "secretsync-master-key-v2:a:AAAA",
            "secretsync-master-key-v1:bad id:AAAA",
            "secretsync-master-key-v1:a:!!!!SECRETISH",
            "secretsync-master-key-v1:a:AAAA",
            "secretsync-master-key-v1:SECRETISH-material:x",
        ] {
            let err = MasterKey::parse(bad).unwrap_err();
            assert!(matches!(err, FileStoreError::InvalidKey { .. }), "{bad}");
            assert!(!err.to_string().contains("SECRETISH"));
        }
    }

    #[test]
    fn keyring_parse_several_lines_newest_is_last() {
        let a = MasterKey::generate();
        let b = MasterKey::from_raw("zzz-old", &[7u8; 32]).unwrap();
        let text = format!(
            "# keys\n{}\n\n{}\n",
            a.to_text().as_str(),
            b.to_text().as_str()
        );
        let ring = Keyring::parse(&text).unwrap();
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.newest().unwrap().id(), "zzz-old");
        assert!(ring.get(a.id()).is_some());
        assert!(Keyring::parse("# only a comment\n").is_err());
        let b2 = MasterKey::from_raw("zzz-old", &[8u8; 32]).unwrap();
        assert!(
            Keyring::parse(&format!(
                "{}\n{}",
                b.to_text().as_str(),
                b2.to_text().as_str()
            ))
            .is_err()
        );
    }

    #[test]
    fn keyring_from_secret_data() {
        let a = MasterKey::from_raw("mk-20250101-000000-aaaaaaaa", &[1u8; 32]).unwrap();
        let mut data = BTreeMap::new();
        data.insert(
            a.id().to_string(),
            format!("{}\n", a.to_text().as_str()).into_bytes(),
        );
        data.insert("mk-20260101-000000-bbbbbbbb".to_string(), vec![2u8; 32]);
        let ring = Keyring::from_secret_data(&data).unwrap();
        assert_eq!(ring.newest().unwrap().id(), "mk-20260101-000000-bbbbbbbb");
        assert_eq!(ring.get(a.id()).unwrap().bytes(), &[1u8; 32]);

        let mut mismatched = BTreeMap::new();
        mismatched.insert("other".to_string(), a.to_text().as_bytes().to_vec());
        assert!(Keyring::from_secret_data(&mismatched).is_err());
        assert!(Keyring::from_secret_data(&BTreeMap::new()).is_err());
        let mut short = BTreeMap::new();
        short.insert("k".to_string(), vec![0u8; 31]);
        assert!(Keyring::from_secret_data(&short).is_err());
    }
}
