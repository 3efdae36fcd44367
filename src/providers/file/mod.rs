//! The local encrypted file store provider (DESIGN §4).
//!
//! A store is one JSON document that is safe to commit to Git: it holds only ciphertext and
//! non-secret metadata (entry names, tags, version ids, timestamps, key ids).
//!
//! # Format (version 1)
//!
//! ```json
//! {
//!   "format": "secretsync-file-store",
//!   "version": 1,
//!   "storeId": "9f0c6a1e4b7d2c38a5e1f0b2c4d6e8fa",
//!   "cipher": "aes-256-gcm",
//!   "dataKeys": [
//!     {
//!       "id": "dk-3fa1c2d4",
//!       "created": "2026-04-15T09:30:00Z",
//!       "wrappings": [
//!         { "masterKeyId": "mk-20260415-093000-1a2b3c4d", "nonce": "<12 bytes, base64>",
//!           "ciphertext": "<48 bytes, base64>" }
//!       ]
//!     }
//!   ],
//!   "entries": {
//!     "/prod/db": {
//!       "tags": { "team": "payments" },
//!       "versions": [
//!         { "version": "1", "created": "2026-04-15T09:31:00Z", "expires": "2026-07-01T00:00:00Z",
//!           "dataKey": "dk-3fa1c2d4", "nonce": "<base64>", "ciphertext": "<base64>" }
//!       ]
//!     }
//!   },
//!   "mac": "<HMAC-SHA256, 64 lowercase hex digits>"
//! }
//! ```
//!
//! - **Values** are encrypted with AES-256-GCM under a *value key* derived with HKDF-SHA256 (salt =
//!   store id) from a random 32-byte *data key*; every encryption uses a fresh random 96-bit nonce,
//!   and the associated data binds store id, data key id, entry name and version, so moving a
//!   ciphertext to another entry, version or store fails to decrypt.
//! - **Data keys** are wrapped with AES-256-GCM by one or more **master keys** (associated data:
//!   store id, data key id, master key id). New values use the last data key.
//! - **Structure**: `mac` is an HMAC-SHA256, under a MAC key derived (HKDF, different label) from the
//!   newest data key, over a length-prefixed canonical encoding of every other field — removing,
//!   reordering, adding or editing entries, versions, timestamps, expiries, tags or wrappings is
//!   detected. Binary fields must be canonical base64 / lowercase hex, so no two spellings decode to
//!   the same bytes. Whitespace outside strings is not significant (it is JSON).
//! - Anything tampered, truncated, of an unknown format version, or opened with a wrong key is a
//!   typed [`FileStoreError`], never partial or garbage data.
//!
//! Master keys and their text form (`secretsync-master-key-v1:<id>:<base64url>`) are described in
//! [`keys`]; file handling (atomic saves, the writer lock) in [`storage`].
//!
//! # Rotation
//!
//! [`Store::rotate_master_key`] re-wraps every data key under the new master key only (the old
//! key no longer opens the current file); values stay as they are. Because an old copy of the file
//! (e.g. in Git history) plus the old master key still reveals the unchanged data key,
//! [`Store::rotate_data_key`] also exists: a fresh data key, every version re-encrypted, old data keys
//! dropped. `secretsync store rotate-key` does both by default (`--keep-data-key` re-wraps only).
//! For a rotation without downtime in a cluster: add the new key to the master-key Secret next to
//! the old one (the controller decrypts with any key it has), rotate and publish the store, then
//! remove the old key from the Secret.
//!
//! # Provider behaviour
//!
//! [`FileProvider`] verifies the document on construction. `get` reads the latest version (the
//! highest) or `RemoteRef::version`; an unknown name or version is `NotFound`. An expired version is
//! still returned, with `meta.expires` set in the past, so the controller can warn (it decides what
//! to do with expiries). `find` matches the path prefix, name regexp and tags and returns sorted names.

pub mod format;
pub mod keys;
pub mod storage;

use std::path::{Path, PathBuf};

use async_trait::async_trait;

pub use format::{EntryInfo, Store, VersionMeta};
pub use keys::{Keyring, MasterKey};

use crate::providers::{
    FetchedSecret, FindQuery, Provider, ProviderError, ProviderKind, RemoteRef, SecretMetadata,
    name_matches,
};

/// Every way the file store can fail. Messages name files, entries and key ids — never values or
/// key material.
#[derive(Debug, thiserror::Error)]
pub enum FileStoreError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The document is not valid JSON or does not have the expected fields (e.g. truncated).
    #[error("the store is not a valid store document: {message}")]
    Parse {
        /// The JSON parser's message (position; no values: the document holds only ciphertext).
        message: String,
    },
    /// The document was written by a newer secretsync.
    #[error("unknown store format version {found} (this build reads version {supported})")]
    UnknownFormatVersion {
        /// Version in the document.
        found: u64,
        /// Version this build supports.
        supported: u64,
    },
    /// The document is damaged or was tampered with.
    #[error("the store is corrupt or was tampered with: {what}")]
    Corrupt {
        /// What is wrong.
        what: String,
    },
    /// None of the given master keys has a wrapping in the store.
    #[error(
        "wrong master key: the store is encrypted for key id(s) {key_ids_in_store:?}, but only {key_ids_given:?} were given"
    )]
    WrongKey {
        /// Master key ids the store has wrappings for.
        key_ids_in_store: Vec<String>,
        /// Master key ids given.
        key_ids_given: Vec<String>,
    },
    /// A master key with the right id did not decrypt a data key: wrong key material for that id,
    /// or the wrapping was altered.
    #[error(
        "master key {key_id:?} does not decrypt data key {data_key_id:?} (wrong key material for that id, or the store was altered)"
    )]
    UnwrapFailed {
        /// The master key id tried.
        key_id: String,
        /// The data key.
        data_key_id: String,
    },
    /// A value failed authentication.
    #[error("entry {name:?} version {version} failed to decrypt (the store was altered)")]
    Decrypt {
        /// Entry name.
        name: String,
        /// Version id.
        version: String,
    },
    /// No entry with this name.
    #[error("entry {name:?} not found")]
    NotFound {
        /// Entry name.
        name: String,
    },
    /// The entry exists but not this version.
    #[error("entry {name:?} has no version {version:?}")]
    VersionNotFound {
        /// Entry name.
        name: String,
        /// The version asked for.
        version: String,
    },
    /// An entry name or tag is not acceptable.
    #[error("invalid name: {what}")]
    InvalidName {
        /// What is wrong.
        what: String,
    },
    /// A master key (text, file or Secret) is malformed.
    #[error("invalid master key: {what}")]
    InvalidKey {
        /// What is wrong (never the key material).
        what: String,
    },
    /// Refusing to overwrite an existing file.
    #[error("{} already exists", path.display())]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
    /// Another writer held the store lock for too long.
    #[error("timed out waiting for the store lock {}", path.display())]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
    },
    /// A cryptographic or serialization operation failed unexpectedly.
    #[error("internal error: {what}")]
    Crypto {
        /// What failed.
        what: String,
    },
}

impl FileStoreError {
    /// A stable, low-cardinality category name.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Io { .. } => "Io",
            Self::Parse { .. } => "Parse",
            Self::UnknownFormatVersion { .. } => "UnknownFormatVersion",
            Self::Corrupt { .. } => "Corrupt",
            Self::WrongKey { .. } => "WrongKey",
            Self::UnwrapFailed { .. } => "UnwrapFailed",
            Self::Decrypt { .. } => "Decrypt",
            Self::NotFound { .. } => "NotFound",
            Self::VersionNotFound { .. } => "VersionNotFound",
            Self::InvalidName { .. } => "InvalidName",
            Self::InvalidKey { .. } => "InvalidKey",
            Self::AlreadyExists { .. } => "AlreadyExists",
            Self::LockTimeout { .. } => "LockTimeout",
            Self::Crypto { .. } => "Internal",
        }
    }

    /// Classifies the error for the controller.
    ///
    /// Wrong or mismatched master keys → `AccessDenied`; a corrupt, truncated, tampered or
    /// unknown-version document, a bad key text → `InvalidConfig`; unknown entry or version →
    /// `NotFound`; a value that fails to decrypt → `InvalidResponse` naming the entry; file I/O →
    /// `InvalidConfig` when the file is missing, else `Transient`.
    pub fn into_provider_error(self) -> ProviderError {
        let message = self.to_string();
        match self {
            Self::WrongKey { .. } | Self::UnwrapFailed { .. } => {
                ProviderError::AccessDenied { key: None, message }
            }
            Self::NotFound { name } | Self::VersionNotFound { name, .. } => {
                ProviderError::NotFound { key: name }
            }
            Self::Decrypt { name, .. } => ProviderError::InvalidResponse { key: name, message },
            Self::Io { ref source, .. }
                if !matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                ProviderError::Transient { message }
            }
            Self::LockTimeout { .. } => ProviderError::Transient { message },
            _ => ProviderError::InvalidConfig {
                message: format!("file store: {message}"),
            },
        }
    }
}

/// Builds a `file` store's provider: the master keys and the document from the credentials source
/// (Secret and ConfigMap in the cluster; key file and local file offline). `path` reads the
/// controller's own filesystem, which belongs to the controller's namespace like its ambient
/// identity: a tenant's store must not make the controller read its files.
pub async fn from_spec(
    spec: &crate::api::FileProvider,
    cx: &super::build::BuildContext<'_>,
) -> Result<super::build::Built, super::build::ConfigError> {
    let (keyring, key_fp) = cx
        .credentials
        .file_keyring(spec.master_key_secret_ref.as_ref())
        .await?;
    let (doc, doc_fp) = cx.credentials.file_document(spec).await?;
    let provider = FileProvider::from_bytes(&doc, keyring)?;
    Ok(super::build::Built {
        provider: std::sync::Arc::new(provider),
        fingerprint: format!("{doc_fp}/{key_fp}"),
        default_rate: None,
    })
}

/// The `file` provider: an opened, verified store held in memory.
#[derive(Debug)]
pub struct FileProvider {
    store: Store,
}

impl FileProvider {
    /// Opens a store document (from a ConfigMap key or a file) with the given keyring. The MAC is
    /// verified here; a wrong key is `AccessDenied`, a corrupt document `InvalidConfig`.
    pub fn from_bytes(doc: &[u8], keyring: Keyring) -> Result<Self, ProviderError> {
        let store =
            Store::from_bytes(doc, &keyring).map_err(FileStoreError::into_provider_error)?;
        Ok(Self { store })
    }

    /// Opens a store file.
    pub fn open(path: &Path, keyring: Keyring) -> Result<Self, ProviderError> {
        let bytes = storage::read_store_bytes(path).map_err(FileStoreError::into_provider_error)?;
        Self::from_bytes(&bytes, keyring).map_err(|e| match e {
            ProviderError::InvalidConfig { message } => ProviderError::InvalidConfig {
                message: format!("{}: {message}", path.display()),
            },
            ProviderError::AccessDenied { key, message } => ProviderError::AccessDenied {
                key,
                message: format!("{}: {message}", path.display()),
            },
            other => other,
        })
    }

    /// The opened store (metadata and values).
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn get_sync(&self, remote: &RemoteRef) -> Result<FetchedSecret, ProviderError> {
        let (value, meta) = self
            .store
            .get(&remote.key, remote.version.as_deref())
            .map_err(FileStoreError::into_provider_error)?;
        Ok(FetchedSecret {
            value,
            meta: SecretMetadata {
                version: Some(meta.version),
                created: Some(meta.created),
                updated: Some(meta.created),
                expires: meta.expires,
                served_by: None,
            },
        })
    }

    fn find_sync(&self, query: &FindQuery) -> Result<Vec<String>, ProviderError> {
        let re = query.compiled_regexp()?;
        Ok(self
            .store
            .list()
            .into_iter()
            .filter(|e| name_matches(query, re.as_ref(), &e.name))
            .filter(|e| query.tags.iter().all(|(k, v)| e.tags.get(k) == Some(v)))
            .map(|e| e.name)
            .collect())
    }
}

#[async_trait]
impl Provider for FileProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::File
    }

    async fn get(&self, remote: &RemoteRef) -> Result<FetchedSecret, ProviderError> {
        self.get_sync(remote)
    }

    async fn find(&self, query: &FindQuery) -> Result<Vec<String>, ProviderError> {
        self.find_sync(query)
    }

    /// The document was verified when the provider was built; this re-checks the MAC.
    async fn validate(&self) -> Result<(), ProviderError> {
        self.store
            .verify()
            .map(|_| ())
            .map_err(FileStoreError::into_provider_error)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::value::SecretBytes;

    fn provider() -> (FileProvider, Keyring) {
        let ring = Keyring::single(MasterKey::generate());
        let mut s = Store::init(&ring).unwrap();
        let t = |p: &[(&str, &str)]| {
            Some(
                p.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        s.put(
            "/prod/db",
            &SecretBytes::from("v1"),
            None,
            t(&[("team", "pay")]),
        )
        .unwrap();
        s.put("/prod/db", &SecretBytes::from("v2"), None, None)
            .unwrap();
        s.put(
            "/prod/api-key",
            &SecretBytes::from("k"),
            None,
            t(&[("team", "pay"), ("tier", "1")]),
        )
        .unwrap();
        s.put(
            "/dev/db",
            &SecretBytes::from("d"),
            Some(chrono::Utc::now() - chrono::Duration::days(1)),
            None,
        )
        .unwrap();
        let p = FileProvider::from_bytes(&s.to_bytes().unwrap(), ring.clone()).unwrap();
        (p, ring)
    }

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn get_latest_version_and_not_found() {
        let (p, _) = provider();
        assert_eq!(p.kind(), ProviderKind::File);
        let got = block(p.get(&RemoteRef::latest("/prod/db"))).unwrap();
        assert_eq!(got.value.expose(), b"v2");
        assert_eq!(got.meta.version.as_deref(), Some("2"));
        assert!(got.meta.created.is_some());
        let v1 = block(p.get(&RemoteRef {
            key: "/prod/db".into(),
            version: Some("1".into()),
        }))
        .unwrap();
        assert_eq!(v1.value.expose(), b"v1");
        let e = block(p.get(&RemoteRef {
            key: "/prod/db".into(),
            version: Some("9".into()),
        }))
        .unwrap_err();
        assert_eq!(
            e,
            ProviderError::NotFound {
                key: "/prod/db".into()
            }
        );
        let e = block(p.get(&RemoteRef::latest("/nope"))).unwrap_err();
        assert_eq!(e.reason(), crate::api::Reason::RemoteKeyNotFound);
        let expired = block(p.get(&RemoteRef::latest("/dev/db"))).unwrap();
        assert!(expired.meta.expires.unwrap() < chrono::Utc::now());
        block(p.validate()).unwrap();
    }

    #[test]
    fn find_by_path_regexp_and_tags() {
        let (p, _) = provider();
        let q = |path: Option<&str>, re: Option<&str>, tags: &[(&str, &str)]| FindQuery {
            path: path.map(String::from),
            name_regexp: re.map(String::from),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        };
        assert_eq!(
            block(p.find(&q(Some("/prod/"), None, &[]))).unwrap(),
            ["/prod/api-key", "/prod/db"]
        );
        assert_eq!(
            block(p.find(&q(None, Some("db$"), &[]))).unwrap(),
            ["/dev/db", "/prod/db"]
        );
        assert_eq!(
            block(p.find(&q(None, None, &[("tier", "1")]))).unwrap(),
            ["/prod/api-key"]
        );
        assert_eq!(
            block(p.find(&q(Some("/prod/"), Some("^/prod/d"), &[("team", "pay")]))).unwrap(),
            ["/prod/db"]
        );
        assert!(block(p.find(&q(None, Some("("), &[]))).is_err());
    }

    #[test]
    fn error_classes() {
        let (p, _) = provider();
        let bytes = p.store().to_bytes().unwrap();
        let other = Keyring::single(MasterKey::generate());
        let e = FileProvider::from_bytes(&bytes, other).unwrap_err();
        assert_eq!(e.reason(), crate::api::Reason::AccessDenied);
        let (_, ring) = provider();
        let e = FileProvider::from_bytes(&bytes[..bytes.len() / 2], ring).unwrap_err();
        assert_eq!(e.reason(), crate::api::Reason::InvalidStoreConfig);
        let e =
            FileProvider::open(Path::new("/nonexistent/store.json"), Keyring::new()).unwrap_err();
        assert_eq!(e.reason(), crate::api::Reason::InvalidStoreConfig);
        assert!(e.to_string().contains("/nonexistent/store.json"));
    }
}
