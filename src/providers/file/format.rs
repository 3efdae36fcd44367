//! The store document and the pure operations on it (no I/O).
//!
//! See the [module documentation of `file`](super) for the format. In short:
//!
//! - every value is encrypted with AES-256-GCM under a *value key* derived (HKDF-SHA256, salt = store
//!   id) from a random 32-byte *data key*, with a fresh random 96-bit nonce, and associated data that
//!   binds the store id, the data key id, the entry name and the version;
//! - each data key is wrapped (AES-256-GCM, random nonce, associated data binding store id, data key
//!   id and master key id) by one or more master keys;
//! - an HMAC-SHA256 under a *MAC key* derived from the newest data key covers every other field of
//!   the document (a length-prefixed canonical encoding), so deleting, reordering or editing entries,
//!   versions, timestamps, tags or wrappings is detected.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, SecondsFormat, Utc};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::FileStoreError;
use super::keys::{Keyring, MasterKey, valid_key_id};
use crate::value::SecretBytes;

/// The format marker (`"format"` field).
pub const FORMAT_MARKER: &str = "secretsync-file-store";
/// The only format version this build reads and writes.
pub const FORMAT_VERSION: u64 = 1;
/// The value and key-wrapping cipher.
pub const CIPHER: &str = "aes-256-gcm";

/// Longest entry name, in bytes.
pub const MAX_NAME_LEN: usize = 512;
/// Longest tag key or value, in bytes.
pub const MAX_TAG_LEN: usize = 256;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;
const STORE_ID_LEN: usize = 16;

const AD_VALUE: &[u8] = b"secretsync-file-store/v1/value";
const AD_WRAP: &[u8] = b"secretsync-file-store/v1/wrap";
const AD_MAC: &[u8] = b"secretsync-file-store/v1/mac";
const INFO_VALUE_KEY: &[u8] = b"secretsync-file-store/v1 value key";
const INFO_MAC_KEY: &[u8] = b"secretsync-file-store/v1 mac key";

// ---------------------------------------------------------------------------------------------
// Serialized form. Field order here is the order in the file; maps are BTreeMaps (sorted).

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StoreDocument {
    format: String,
    version: u64,
    store_id: String,
    cipher: String,
    data_keys: Vec<DataKeyDoc>,
    entries: BTreeMap<String, EntryDoc>,
    mac: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DataKeyDoc {
    id: String,
    created: String,
    wrappings: Vec<WrappingDoc>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WrappingDoc {
    master_key_id: String,
    nonce: String,
    ciphertext: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EntryDoc {
    tags: BTreeMap<String, String>,
    versions: Vec<VersionDoc>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct VersionDoc {
    version: String,
    created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<String>,
    data_key: String,
    nonce: String,
    ciphertext: String,
}

/// Only the header, read first so a newer format gets a clear error rather than a field error.
#[derive(Deserialize)]
struct Header {
    format: Option<String>,
    version: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// Public metadata types.

/// Metadata of one version of an entry (no value).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VersionMeta {
    /// Version id: `"1"`, `"2"`, … (increasing per entry).
    pub version: String,
    /// When this version was written.
    pub created: DateTime<Utc>,
    /// When this version expires, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<DateTime<Utc>>,
}

impl VersionMeta {
    /// Whether this version has expired at `now`.
    pub fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
}

/// One entry without its values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EntryInfo {
    /// Entry name (the remote key).
    pub name: String,
    /// Tags (used by `find`).
    pub tags: BTreeMap<String, String>,
    /// Versions, oldest first; the last is the latest.
    pub versions: Vec<VersionMeta>,
}

impl EntryInfo {
    /// The latest version.
    pub fn latest(&self) -> Option<&VersionMeta> {
        self.versions.last()
    }
}

// ---------------------------------------------------------------------------------------------
// Key material.

/// An unwrapped data key and the keys derived from it (all zeroed on drop).
#[derive(Clone)]
struct DataKey {
    raw: Zeroizing<[u8; KEY_LEN]>,
    value_key: Zeroizing<[u8; KEY_LEN]>,
    mac_key: Zeroizing<[u8; KEY_LEN]>,
}

impl DataKey {
    fn derive(raw: Zeroizing<[u8; KEY_LEN]>, store_id: &[u8]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(store_id), raw.as_ref());
        let mut value_key = Zeroizing::new([0u8; KEY_LEN]);
        let mut mac_key = Zeroizing::new([0u8; KEY_LEN]);
        // 32 bytes is far below HKDF-SHA256's output limit (255 * 32), so expand cannot fail.
        let ok = hk.expand(INFO_VALUE_KEY, value_key.as_mut()).is_ok()
            && hk.expand(INFO_MAC_KEY, mac_key.as_mut()).is_ok();
        debug_assert!(ok);
        Self {
            raw,
            value_key,
            mac_key,
        }
    }

    fn generate(store_id: &[u8]) -> Self {
        let mut raw = Zeroizing::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(raw.as_mut());
        Self::derive(raw, store_id)
    }
}

/// Appends a length-prefixed field (u64 big-endian length, then the bytes).
fn put_field(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    buf.extend_from_slice(bytes);
}

fn put_count(buf: &mut Vec<u8>, n: usize) {
    buf.extend_from_slice(&(n as u64).to_be_bytes());
}

fn value_ad(store_id: &str, data_key_id: &str, name: &str, version: &str) -> Vec<u8> {
    let mut ad = Vec::new();
    for f in [
        AD_VALUE,
        store_id.as_bytes(),
        data_key_id.as_bytes(),
        name.as_bytes(),
        version.as_bytes(),
    ] {
        put_field(&mut ad, f);
    }
    ad
}

fn wrap_ad(store_id: &str, data_key_id: &str, master_key_id: &str) -> Vec<u8> {
    let mut ad = Vec::new();
    for f in [
        AD_WRAP,
        store_id.as_bytes(),
        data_key_id.as_bytes(),
        master_key_id.as_bytes(),
    ] {
        put_field(&mut ad, f);
    }
    ad
}

fn random_nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut n);
    n
}

fn aead_seal(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
    ad: &[u8],
) -> Result<Vec<u8>, FileStoreError> {
    Aes256Gcm::new(key.into())
        .encrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: plaintext,
                aad: ad,
            },
        )
        .map_err(|_| FileStoreError::Crypto {
            what: "encryption failed".into(),
        })
}

fn aead_open(
    key: &[u8; KEY_LEN],
    nonce: &[u8],
    ciphertext: &[u8],
    ad: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    if nonce.len() != NONCE_LEN {
        return None;
    }
    Aes256Gcm::new(key.into())
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: ad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

fn corrupt(what: impl Into<String>) -> FileStoreError {
    FileStoreError::Corrupt { what: what.into() }
}

/// Strict base64 (standard alphabet, canonical padding, and re-encoding must give the same text, so
/// no two spellings decode to the same bytes).
fn decode_b64(s: &str, what: impl Fn() -> String) -> Result<Vec<u8>, FileStoreError> {
    match B64.decode(s) {
        Ok(v) if B64.encode(&v) == s => Ok(v),
        _ => Err(corrupt(format!("{} is not canonical base64", what()))),
    }
}

/// Strict lowercase hex.
fn decode_hex(s: &str, what: impl Fn() -> String) -> Result<Vec<u8>, FileStoreError> {
    match hex::decode(s) {
        Ok(v) if hex::encode(&v) == s => Ok(v),
        _ => Err(corrupt(format!("{} is not lowercase hex", what()))),
    }
}

fn parse_time(s: &str, what: impl Fn() -> String) -> Result<DateTime<Utc>, FileStoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| corrupt(format!("{} is not an RFC 3339 time", what())))
}

fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Checks an entry name: 1–512 bytes, no control characters.
pub fn validate_name(name: &str) -> Result<(), FileStoreError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(FileStoreError::InvalidName {
            what: format!("entry names must be 1-{MAX_NAME_LEN} bytes without control characters"),
        });
    }
    Ok(())
}

/// Checks a tag: key 1–256 bytes, value up to 256 bytes, no control characters.
pub fn validate_tag(key: &str, value: &str) -> Result<(), FileStoreError> {
    let bad = |s: &str| s.len() > MAX_TAG_LEN || s.chars().any(char::is_control);
    if key.is_empty() || bad(key) || bad(value) {
        return Err(FileStoreError::InvalidName {
            what: format!(
                "tag {key:?}: keys must be 1-{MAX_TAG_LEN} bytes and values at most {MAX_TAG_LEN}, without control characters"
            ),
        });
    }
    Ok(())
}

fn parse_version_number(v: &str) -> Option<u64> {
    let n: u64 = v.parse().ok()?;
    (n >= 1 && n.to_string() == v).then_some(n)
}

// ---------------------------------------------------------------------------------------------
// The store.

/// An opened (unlocked and verified) store document: its entries plus the unwrapped data keys.
///
/// Obtained with [`Store::init`] or [`Store::from_bytes`]; serialized with [`Store::to_bytes`]. Every
/// mutation recomputes the document MAC. Values only leave through [`Store::get`], as [`SecretBytes`].
#[derive(Clone)]
pub struct Store {
    doc: StoreDocument,
    data_keys: BTreeMap<String, DataKey>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("store_id", &self.doc.store_id)
            .field("entries", &self.doc.entries.len())
            .field("master_key_ids", &self.master_key_ids())
            .finish()
    }
}

impl Store {
    /// Creates an empty store with a random store id and one data key wrapped by the keyring's
    /// newest master key.
    pub fn init(keyring: &Keyring) -> Result<Self, FileStoreError> {
        let master = keyring.newest().ok_or_else(|| FileStoreError::InvalidKey {
            what: "the keyring is empty".into(),
        })?;
        let mut id = [0u8; STORE_ID_LEN];
        OsRng.fill_bytes(&mut id);
        let mut store = Self {
            doc: StoreDocument {
                format: FORMAT_MARKER.into(),
                version: FORMAT_VERSION,
                store_id: hex::encode(id),
                cipher: CIPHER.into(),
                data_keys: Vec::new(),
                entries: BTreeMap::new(),
                mac: String::new(),
            },
            data_keys: BTreeMap::new(),
        };
        store.add_data_key(master)?;
        store.reseal()?;
        Ok(store)
    }

    /// Parses a document, unwraps its data keys with `keyring` and verifies the MAC. Tampered,
    /// truncated or unknown input and a wrong key all give an error, never partial data.
    pub fn from_bytes(bytes: &[u8], keyring: &Keyring) -> Result<Self, FileStoreError> {
        let doc = parse_document(bytes)?;
        let store_id = decode_hex(&doc.store_id, || "storeId".into())?;
        let mut data_keys = BTreeMap::new();
        let in_store: Vec<String> = {
            let mut ids: Vec<String> = doc
                .data_keys
                .iter()
                .flat_map(|d| d.wrappings.iter().map(|w| w.master_key_id.clone()))
                .collect();
            ids.sort();
            ids.dedup();
            ids
        };
        for dk in &doc.data_keys {
            let mut unwrapped = None;
            let mut tried = None;
            for w in &dk.wrappings {
                let Some(mk) = keyring.get(&w.master_key_id) else {
                    continue;
                };
                tried = Some(mk.id().to_string());
                let nonce = decode_b64(&w.nonce, || {
                    format!("wrapping nonce of data key {:?}", dk.id)
                })?;
                let ct = decode_b64(&w.ciphertext, || format!("wrapped data key {:?}", dk.id))?;
                let ad = wrap_ad(&doc.store_id, &dk.id, mk.id());
                if let Some(pt) = aead_open(mk.bytes(), &nonce, &ct, &ad) {
                    let raw: [u8; KEY_LEN] = pt.as_slice().try_into().map_err(|_| {
                        corrupt(format!("data key {:?} has the wrong length", dk.id))
                    })?;
                    unwrapped = Some(DataKey::derive(Zeroizing::new(raw), &store_id));
                    break;
                }
            }
            match (unwrapped, tried) {
                (Some(k), _) => {
                    data_keys.insert(dk.id.clone(), k);
                }
                (None, Some(key_id)) => {
                    return Err(FileStoreError::UnwrapFailed {
                        key_id,
                        data_key_id: dk.id.clone(),
                    });
                }
                (None, None) => {
                    return Err(FileStoreError::WrongKey {
                        key_ids_in_store: in_store,
                        key_ids_given: keyring.ids(),
                    });
                }
            }
        }
        let store = Self { doc, data_keys };
        store.check_mac()?;
        Ok(store)
    }

    /// The document as pretty-printed JSON with a trailing newline (stable field order).
    pub fn to_bytes(&self) -> Result<Vec<u8>, FileStoreError> {
        let mut out = serde_json::to_vec_pretty(&self.doc).map_err(|e| FileStoreError::Crypto {
            what: format!("serializing the store: {e}"),
        })?;
        out.push(b'\n');
        Ok(out)
    }

    /// The random store id (hex).
    pub fn store_id(&self) -> &str {
        &self.doc.store_id
    }

    /// Ids of the master keys that can open this store.
    pub fn master_key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .doc
            .data_keys
            .iter()
            .flat_map(|d| d.wrappings.iter().map(|w| w.master_key_id.clone()))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Ids of the data keys, oldest first (the last one encrypts new values).
    pub fn data_key_ids(&self) -> Vec<String> {
        self.doc.data_keys.iter().map(|d| d.id.clone()).collect()
    }

    /// Appends a new version of `name` (creating the entry) and returns its version id.
    ///
    /// `tags`: when `Some`, they replace the entry's tags; when `None`, existing tags are kept.
    pub fn put(
        &mut self,
        name: &str,
        value: &SecretBytes,
        expires: Option<DateTime<Utc>>,
        tags: Option<BTreeMap<String, String>>,
    ) -> Result<String, FileStoreError> {
        validate_name(name)?;
        if let Some(tags) = &tags {
            for (k, v) in tags {
                validate_tag(k, v)?;
            }
        }
        let dk_id = self.active_data_key_id()?.to_string();
        let entry = self.doc.entries.get(name);
        let next = match entry.and_then(|e| e.versions.last()) {
            Some(v) => parse_version_number(&v.version)
                .and_then(|n| n.checked_add(1))
                .ok_or_else(|| corrupt(format!("entry {name:?} has an invalid version id")))?,
            None => 1,
        };
        let version = next.to_string();
        let (nonce, ct) = self.seal_value(&dk_id, name, &version, value)?;
        let vdoc = VersionDoc {
            version: version.clone(),
            created: format_time(Utc::now()),
            expires: expires.map(format_time),
            data_key: dk_id,
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(ct),
        };
        let entry = self
            .doc
            .entries
            .entry(name.to_string())
            .or_insert_with(|| EntryDoc {
                tags: BTreeMap::new(),
                versions: Vec::new(),
            });
        if let Some(tags) = tags {
            entry.tags = tags;
        }
        entry.versions.push(vdoc);
        self.reseal()?;
        Ok(version)
    }

    /// Reads a value: the latest version, or the given one.
    pub fn get(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<(SecretBytes, VersionMeta), FileStoreError> {
        let entry = self
            .doc
            .entries
            .get(name)
            .ok_or_else(|| FileStoreError::NotFound { name: name.into() })?;
        let v = match version {
            None => entry.versions.last(),
            Some(want) => entry.versions.iter().find(|v| v.version == want),
        }
        .ok_or_else(|| FileStoreError::VersionNotFound {
            name: name.into(),
            version: version.unwrap_or("latest").into(),
        })?;
        let dk = self
            .data_keys
            .get(&v.data_key)
            .ok_or_else(|| corrupt(format!("unknown data key {:?}", v.data_key)))?;
        let decrypt_err = || FileStoreError::Decrypt {
            name: name.into(),
            version: v.version.clone(),
        };
        let nonce = decode_b64(&v.nonce, || {
            format!("nonce of {name:?} version {}", v.version)
        })?;
        let ct = decode_b64(&v.ciphertext, || {
            format!("ciphertext of {name:?} version {}", v.version)
        })?;
        let ad = value_ad(&self.doc.store_id, &v.data_key, name, &v.version);
        let mut pt = aead_open(&dk.value_key, &nonce, &ct, &ad).ok_or_else(decrypt_err)?;
        let value = SecretBytes::new(std::mem::take(&mut *pt));
        Ok((value, version_meta(v)?))
    }

    /// The entry's metadata (no values), if it exists.
    pub fn entry(&self, name: &str) -> Option<EntryInfo> {
        self.doc
            .entries
            .get(name)
            .and_then(|e| entry_info(name, e).ok())
    }

    /// All entries, sorted by name, without values.
    pub fn list(&self) -> Vec<EntryInfo> {
        self.doc
            .entries
            .iter()
            .filter_map(|(n, e)| entry_info(n, e).ok())
            .collect()
    }

    /// Removes an entry with all its versions.
    pub fn remove(&mut self, name: &str) -> Result<(), FileStoreError> {
        self.doc
            .entries
            .remove(name)
            .ok_or_else(|| FileStoreError::NotFound { name: name.into() })?;
        self.reseal()?;
        Ok(())
    }

    /// Re-wraps every data key under `new_key` **only**: afterwards no other master key opens the
    /// store. Values are not re-encrypted (see [`Store::rotate_data_key`] for that).
    pub fn rotate_master_key(&mut self, new_key: &MasterKey) -> Result<(), FileStoreError> {
        let mut rewrapped = Vec::with_capacity(self.doc.data_keys.len());
        for dk in &self.doc.data_keys {
            let key = self
                .data_keys
                .get(&dk.id)
                .ok_or_else(|| corrupt(format!("unknown data key {:?}", dk.id)))?;
            rewrapped.push(wrap(&self.doc.store_id, &dk.id, key, new_key)?);
        }
        for (dk, w) in self.doc.data_keys.iter_mut().zip(rewrapped) {
            dk.wrappings = vec![w];
        }
        self.reseal()?;
        Ok(())
    }

    /// Adds a wrapping of every data key under `key`, keeping the existing ones (so both open the
    /// store). Useful to stage a rotation.
    pub fn add_master_key(&mut self, key: &MasterKey) -> Result<(), FileStoreError> {
        for i in 0..self.doc.data_keys.len() {
            let id = self.doc.data_keys[i].id.clone();
            let dk = self
                .data_keys
                .get(&id)
                .ok_or_else(|| corrupt(format!("unknown data key {id:?}")))?;
            let w = wrap(&self.doc.store_id, &id, dk, key)?;
            let wrappings = &mut self.doc.data_keys[i].wrappings;
            wrappings.retain(|x| x.master_key_id != key.id());
            wrappings.push(w);
        }
        self.reseal()?;
        Ok(())
    }

    /// Generates a fresh data key (wrapped by the same master keys as the current one), re-encrypts
    /// every version of every value under it with new nonces, and drops the old data keys. Version
    /// ids, timestamps and tags are kept. After this, an old copy of the store plus an old master key
    /// no longer reveals the key that protects the current values.
    pub fn rotate_data_key(&mut self, keyring: &Keyring) -> Result<(), FileStoreError> {
        let masters: Vec<&MasterKey> = self
            .master_key_ids()
            .iter()
            .filter_map(|id| keyring.get(id))
            .collect();
        if masters.is_empty() {
            return Err(FileStoreError::WrongKey {
                key_ids_in_store: self.master_key_ids(),
                key_ids_given: keyring.ids(),
            });
        }
        let mut next = self.clone();
        next.doc.data_keys.clear();
        next.data_keys.clear();
        let mut first = true;
        for mk in masters {
            if first {
                next.add_data_key(mk)?;
                first = false;
            } else {
                next.add_master_key(mk)?;
            }
        }
        let new_id = next.active_data_key_id()?.to_string();
        for (name, entry) in &self.doc.entries {
            for (i, version) in entry.versions.iter().map(|v| &v.version).enumerate() {
                let (value, _) = self.get(name, Some(version))?;
                let (nonce, ct) = next.seal_value(&new_id, name, version, &value)?;
                if let Some(v) = next
                    .doc
                    .entries
                    .get_mut(name)
                    .and_then(|e| e.versions.get_mut(i))
                {
                    v.data_key = new_id.clone();
                    v.nonce = B64.encode(nonce);
                    v.ciphertext = B64.encode(ct);
                }
            }
        }
        next.reseal()?;
        *self = next;
        Ok(())
    }

    /// Re-checks the document MAC and decrypts every version of every value (values are dropped at
    /// once). Returns the number of versions checked.
    pub fn verify(&self) -> Result<usize, FileStoreError> {
        self.check_mac()?;
        let mut n = 0;
        for (name, e) in &self.doc.entries {
            for v in &e.versions {
                self.get(name, Some(&v.version))?;
                n += 1;
            }
        }
        Ok(n)
    }

    // --- internals ---

    fn active_data_key_id(&self) -> Result<&str, FileStoreError> {
        self.doc
            .data_keys
            .last()
            .map(|d| d.id.as_str())
            .ok_or_else(|| corrupt("no data key"))
    }

    fn add_data_key(&mut self, master: &MasterKey) -> Result<(), FileStoreError> {
        let store_id = decode_hex(&self.doc.store_id, || "storeId".into())?;
        let dk = DataKey::generate(&store_id);
        let id = loop {
            let mut tag = [0u8; 4];
            OsRng.fill_bytes(&mut tag);
            let id = format!("dk-{}", hex::encode(tag));
            if !self.data_keys.contains_key(&id) {
                break id;
            }
        };
        let w = wrap(&self.doc.store_id, &id, &dk, master)?;
        self.doc.data_keys.push(DataKeyDoc {
            id: id.clone(),
            created: format_time(Utc::now()),
            wrappings: vec![w],
        });
        self.data_keys.insert(id, dk);
        Ok(())
    }

    fn seal_value(
        &self,
        dk_id: &str,
        name: &str,
        version: &str,
        value: &SecretBytes,
    ) -> Result<([u8; NONCE_LEN], Vec<u8>), FileStoreError> {
        let dk = self
            .data_keys
            .get(dk_id)
            .ok_or_else(|| corrupt(format!("unknown data key {dk_id:?}")))?;
        let nonce = random_nonce();
        let ad = value_ad(&self.doc.store_id, dk_id, name, version);
        let ct = aead_seal(&dk.value_key, &nonce, value.expose(), &ad)?;
        Ok((nonce, ct))
    }

    fn mac_key(&self) -> Result<&DataKey, FileStoreError> {
        let id = self.active_data_key_id()?;
        self.data_keys
            .get(id)
            .ok_or_else(|| corrupt(format!("unknown data key {id:?}")))
    }

    fn compute_mac(&self) -> Result<Hmac<Sha256>, FileStoreError> {
        let key = self.mac_key()?;
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(key.mac_key.as_ref()).map_err(|_| {
                FileStoreError::Crypto {
                    what: "HMAC key".into(),
                }
            })?;
        mac.update(&mac_input(&self.doc));
        Ok(mac)
    }

    /// Recomputes the MAC after a mutation.
    fn reseal(&mut self) -> Result<(), FileStoreError> {
        self.doc.mac = hex::encode(self.compute_mac()?.finalize().into_bytes());
        Ok(())
    }

    fn check_mac(&self) -> Result<(), FileStoreError> {
        let expected = decode_hex(&self.doc.mac, || "mac".into())?;
        self.compute_mac()?.verify_slice(&expected).map_err(|_| {
            corrupt("the document MAC does not match: entries, versions, timestamps, tags or keys were added, removed or edited")
        })
    }
}

fn wrap(
    store_id: &str,
    dk_id: &str,
    dk: &DataKey,
    master: &MasterKey,
) -> Result<WrappingDoc, FileStoreError> {
    let nonce = random_nonce();
    let ct = aead_seal(
        master.bytes(),
        &nonce,
        dk.raw.as_ref(),
        &wrap_ad(store_id, dk_id, master.id()),
    )?;
    Ok(WrappingDoc {
        master_key_id: master.id().to_string(),
        nonce: B64.encode(nonce),
        ciphertext: B64.encode(ct),
    })
}

fn version_meta(v: &VersionDoc) -> Result<VersionMeta, FileStoreError> {
    Ok(VersionMeta {
        version: v.version.clone(),
        created: parse_time(&v.created, || "created".into())?,
        expires: v
            .expires
            .as_deref()
            .map(|e| parse_time(e, || "expires".into()))
            .transpose()?,
    })
}

fn entry_info(name: &str, e: &EntryDoc) -> Result<EntryInfo, FileStoreError> {
    Ok(EntryInfo {
        name: name.to_string(),
        tags: e.tags.clone(),
        versions: e
            .versions
            .iter()
            .map(version_meta)
            .collect::<Result<_, _>>()?,
    })
}

/// The canonical, length-prefixed encoding of every field but `mac`.
fn mac_input(doc: &StoreDocument) -> Vec<u8> {
    let mut b = Vec::new();
    put_field(&mut b, AD_MAC);
    put_field(&mut b, doc.format.as_bytes());
    put_field(&mut b, doc.version.to_string().as_bytes());
    put_field(&mut b, doc.store_id.as_bytes());
    put_field(&mut b, doc.cipher.as_bytes());
    put_count(&mut b, doc.data_keys.len());
    for dk in &doc.data_keys {
        put_field(&mut b, dk.id.as_bytes());
        put_field(&mut b, dk.created.as_bytes());
        put_count(&mut b, dk.wrappings.len());
        for w in &dk.wrappings {
            put_field(&mut b, w.master_key_id.as_bytes());
            put_field(&mut b, w.nonce.as_bytes());
            put_field(&mut b, w.ciphertext.as_bytes());
        }
    }
    put_count(&mut b, doc.entries.len());
    for (name, e) in &doc.entries {
        put_field(&mut b, name.as_bytes());
        put_count(&mut b, e.tags.len());
        for (k, v) in &e.tags {
            put_field(&mut b, k.as_bytes());
            put_field(&mut b, v.as_bytes());
        }
        put_count(&mut b, e.versions.len());
        for v in &e.versions {
            put_field(&mut b, v.version.as_bytes());
            put_field(&mut b, v.created.as_bytes());
            match &v.expires {
                Some(x) => {
                    b.push(1);
                    put_field(&mut b, x.as_bytes());
                }
                None => b.push(0),
            }
            put_field(&mut b, v.data_key.as_bytes());
            put_field(&mut b, v.nonce.as_bytes());
            put_field(&mut b, v.ciphertext.as_bytes());
        }
    }
    b
}

/// A JSON error without serde's detail, which quotes the offending string or number (a store `path`
/// pointed at some other JSON file would otherwise echo its content into a status message).
fn json_error(e: serde_json::Error) -> FileStoreError {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => "unexpected structure",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    FileStoreError::Parse {
        message: format!("{kind} at line {} column {}", e.line(), e.column()),
    }
}

/// Parses and structurally validates a document (no keys needed; nothing is trusted yet).
fn parse_document(bytes: &[u8]) -> Result<StoreDocument, FileStoreError> {
    let header: Header = serde_json::from_slice(bytes).map_err(json_error)?;
    if header.format.as_deref() != Some(FORMAT_MARKER) {
        return Err(corrupt(format!(
            "not a secretsync file store (the \"format\" field is not {FORMAT_MARKER:?})"
        )));
    }
    match header.version {
        Some(FORMAT_VERSION) => {}
        Some(found) => {
            return Err(FileStoreError::UnknownFormatVersion {
                found,
                supported: FORMAT_VERSION,
            });
        }
        None => return Err(corrupt("the \"version\" field is missing")),
    }
    let doc: StoreDocument = serde_json::from_slice(bytes).map_err(json_error)?;
    if doc.cipher != CIPHER {
        return Err(corrupt(format!("unsupported cipher (expected {CIPHER:?})")));
    }
    let sid = decode_hex(&doc.store_id, || "storeId".into())?;
    if sid.len() != STORE_ID_LEN {
        return Err(corrupt("storeId has the wrong length"));
    }
    if decode_hex(&doc.mac, || "mac".into())?.len() != 32 {
        return Err(corrupt("mac has the wrong length"));
    }
    if doc.data_keys.is_empty() {
        return Err(corrupt("no data key"));
    }
    let mut dk_ids = std::collections::BTreeSet::new();
    for dk in &doc.data_keys {
        if !valid_key_id(&dk.id) || !dk_ids.insert(dk.id.as_str()) {
            return Err(corrupt("a data key id is invalid or repeated"));
        }
        parse_time(&dk.created, || {
            format!("created time of data key {:?}", dk.id)
        })?;
        if dk.wrappings.is_empty() {
            return Err(corrupt(format!("data key {:?} has no wrapping", dk.id)));
        }
        let mut mk_ids = std::collections::BTreeSet::new();
        for w in &dk.wrappings {
            if !valid_key_id(&w.master_key_id) || !mk_ids.insert(w.master_key_id.as_str()) {
                return Err(corrupt(format!(
                    "data key {:?}: a master key id is invalid or repeated",
                    dk.id
                )));
            }
            if decode_b64(&w.nonce, || "a wrapping nonce".into())?.len() != NONCE_LEN
                || decode_b64(&w.ciphertext, || "a wrapped data key".into())?.len()
                    != KEY_LEN + TAG_LEN
            {
                return Err(corrupt(format!(
                    "data key {:?}: a wrapping has the wrong length",
                    dk.id
                )));
            }
        }
    }
    for (name, e) in &doc.entries {
        validate_name(name).map_err(|_| corrupt("an entry name is invalid"))?;
        for (k, v) in &e.tags {
            validate_tag(k, v)
                .map_err(|_| corrupt(format!("entry {name:?} has an invalid tag")))?;
        }
        if e.versions.is_empty() {
            return Err(corrupt(format!("entry {name:?} has no versions")));
        }
        let mut last = 0u64;
        for v in &e.versions {
            let n = parse_version_number(&v.version)
                .filter(|n| *n > last)
                .ok_or_else(|| {
                    corrupt(format!(
                        "entry {name:?}: version ids must be increasing positive integers"
                    ))
                })?;
            last = n;
            let what = || format!("entry {name:?} version {}", v.version);
            parse_time(&v.created, || format!("created time of {}", what()))?;
            if let Some(x) = &v.expires {
                parse_time(x, || format!("expiry of {}", what()))?;
            }
            if !dk_ids.contains(v.data_key.as_str()) {
                return Err(corrupt(format!("{} refers to an unknown data key", what())));
            }
            if decode_b64(&v.nonce, || format!("nonce of {}", what()))?.len() != NONCE_LEN {
                return Err(corrupt(format!("nonce of {} has the wrong length", what())));
            }
            if decode_b64(&v.ciphertext, || format!("ciphertext of {}", what()))?.len() < TAG_LEN {
                return Err(corrupt(format!("ciphertext of {} is truncated", what())));
            }
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        Keyring::single(MasterKey::generate())
    }

    fn tags(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn put_get_versions_and_list() {
        let k = ring();
        let mut s = Store::init(&k).unwrap();
        assert_eq!(
            s.put(
                "db",
                &SecretBytes::from("one"),
                None,
                tags(&[("team", "a")])
            )
            .unwrap(),
            "1"
        );
        assert_eq!(
            s.put("db", &SecretBytes::from("two"), None, None).unwrap(),
            "2"
        );
        let bin = SecretBytes::new(vec![0, 255, 128, 10, 13]);
        s.put("bin", &bin, None, None).unwrap();
        let bytes = s.to_bytes().unwrap();
        let s2 = Store::from_bytes(&bytes, &k).unwrap();
        let (v, m) = s2.get("db", None).unwrap();
        assert_eq!(v.expose(), b"two");
        assert_eq!(m.version, "2");
        assert_eq!(s2.get("db", Some("1")).unwrap().0.expose(), b"one");
        assert_eq!(s2.get("bin", None).unwrap().0, bin);
        assert!(matches!(
            s2.get("db", Some("3")),
            Err(FileStoreError::VersionNotFound { .. })
        ));
        assert!(matches!(
            s2.get("nope", None),
            Err(FileStoreError::NotFound { .. })
        ));
        let list = s2.list();
        assert_eq!(
            list.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["bin", "db"]
        );
        assert_eq!(list[1].tags.get("team").map(String::as_str), Some("a"));
        assert_eq!(list[1].versions.len(), 2);
        assert_eq!(s2.verify().unwrap(), 3);
        let text = String::from_utf8(bytes).unwrap();
        assert!(!text.contains("one") && !text.contains("two"));
    }

    #[test]
    fn remove_and_expiry() {
        let k = ring();
        let mut s = Store::init(&k).unwrap();
        let past = Utc::now() - chrono::Duration::hours(1);
        s.put("a", &SecretBytes::from("x"), Some(past), None)
            .unwrap();
        let (_, m) = s.get("a", None).unwrap();
        assert!(m.is_expired_at(Utc::now()));
        s.remove("a").unwrap();
        assert!(matches!(
            s.remove("a"),
            Err(FileStoreError::NotFound { .. })
        ));
        assert!(
            Store::from_bytes(&s.to_bytes().unwrap(), &k)
                .unwrap()
                .list()
                .is_empty()
        );
    }

    #[test]
    fn invalid_names_and_tags() {
        let mut s = Store::init(&ring()).unwrap();
        assert!(s.put("", &SecretBytes::from("x"), None, None).is_err());
        assert!(s.put("a\nb", &SecretBytes::from("x"), None, None).is_err());
        assert!(
            s.put("a", &SecretBytes::from("x"), None, tags(&[("", "v")]))
                .is_err()
        );
        assert!(s.list().is_empty());
    }

    #[test]
    fn wrong_key_and_rotation() {
        let k1 = ring();
        let mut s = Store::init(&k1).unwrap();
        s.put("a", &SecretBytes::from("x"), None, None).unwrap();
        let k2 = MasterKey::generate();
        let err =
            Store::from_bytes(&s.to_bytes().unwrap(), &Keyring::single(k2.clone())).unwrap_err();
        assert!(matches!(err, FileStoreError::WrongKey { .. }), "{err}");

        let old_dk = s.data_key_ids();
        s.rotate_master_key(&k2).unwrap();
        assert_eq!(s.data_key_ids(), old_dk);
        let bytes = s.to_bytes().unwrap();
        assert!(Store::from_bytes(&bytes, &k1).is_err());
        let s2 = Store::from_bytes(&bytes, &Keyring::single(k2.clone())).unwrap();
        assert_eq!(s2.get("a", None).unwrap().0.expose(), b"x");

        let mut s3 = s2.clone();
        s3.rotate_data_key(&Keyring::single(k2.clone())).unwrap();
        assert_ne!(s3.data_key_ids(), old_dk);
        let s4 = Store::from_bytes(&s3.to_bytes().unwrap(), &Keyring::single(k2)).unwrap();
        assert_eq!(s4.get("a", None).unwrap().0.expose(), b"x");
        assert_eq!(s4.verify().unwrap(), 1);
    }

    #[test]
    fn add_master_key_keeps_both() {
        let k1 = MasterKey::generate();
        let k2 = MasterKey::generate();
        let mut s = Store::init(&Keyring::single(k1.clone())).unwrap();
        s.add_master_key(&k2).unwrap();
        let b = s.to_bytes().unwrap();
        Store::from_bytes(&b, &Keyring::single(k1)).unwrap();
        Store::from_bytes(&b, &Keyring::single(k2)).unwrap();
    }

    /// With a valid MAC (recomputed with the key), the associated data still binds each
    /// ciphertext to its entry and version.
    #[test]
    fn associated_data_binds_name_and_version() {
        let k = ring();
        let mut s = Store::init(&k).unwrap();
        s.put("a", &SecretBytes::from("va"), None, None).unwrap();
        s.put("a", &SecretBytes::from("va2"), None, None).unwrap();
        s.put("b", &SecretBytes::from("vb"), None, None).unwrap();
        let mut swapped = s.clone();
        {
            let e = &mut swapped.doc.entries;
            let a = e["a"].versions[0].clone();
            let b = e["b"].versions[0].clone();
            let ea = e.get_mut("a").unwrap();
            ea.versions[0].nonce = b.nonce.clone();
            ea.versions[0].ciphertext = b.ciphertext.clone();
            let eb = e.get_mut("b").unwrap();
            eb.versions[0].nonce = a.nonce;
            eb.versions[0].ciphertext = a.ciphertext;
        }
        swapped.reseal().unwrap();
        let reopened = Store::from_bytes(&swapped.to_bytes().unwrap(), &k).unwrap();
        assert!(matches!(
            reopened.get("a", Some("1")),
            Err(FileStoreError::Decrypt { .. })
        ));
        assert!(matches!(
            reopened.get("b", None),
            Err(FileStoreError::Decrypt { .. })
        ));
        assert!(reopened.verify().is_err());

        let mut versions = s.clone();
        {
            let vs = &mut versions.doc.entries.get_mut("a").unwrap().versions;
            let (n0, c0) = (vs[0].nonce.clone(), vs[0].ciphertext.clone());
            vs[0].nonce = vs[1].nonce.clone();
            vs[0].ciphertext = vs[1].ciphertext.clone();
            vs[1].nonce = n0;
            vs[1].ciphertext = c0;
        }
        versions.reseal().unwrap();
        assert!(matches!(
            versions.get("a", None),
            Err(FileStoreError::Decrypt { .. })
        ));

        // A ciphertext from another store (same key, different store id) does not decrypt.
        let mut other = Store::init(&k).unwrap();
        other.put("a", &SecretBytes::from("x"), None, None).unwrap();
        other.data_keys = s.data_keys.clone();
        other.doc.data_keys = s.doc.data_keys.clone();
        let mut moved = other.clone();
        moved.doc.entries.get_mut("a").unwrap().versions[0] =
            s.doc.entries["a"].versions[0].clone();
        assert!(matches!(
            moved.get("a", None),
            Err(FileStoreError::Decrypt { .. })
        ));
    }

    #[test]
    fn unknown_version_and_marker() {
        let k = ring();
        let s = Store::init(&k).unwrap();
        let text = String::from_utf8(s.to_bytes().unwrap()).unwrap();
        let v2 = text.replacen("\"version\": 1", "\"version\": 2", 1);
        assert!(matches!(
            Store::from_bytes(v2.as_bytes(), &k),
            Err(FileStoreError::UnknownFormatVersion { found: 2, .. })
        ));
        assert!(matches!(
            Store::from_bytes(b"{}", &k),
            Err(FileStoreError::Corrupt { .. })
        ));
        assert!(matches!(
            Store::from_bytes(b"", &k),
            Err(FileStoreError::Parse { .. })
        ));
    }
}
