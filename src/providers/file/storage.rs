//! Reading and writing store and key files.
//!
//! - Saves are atomic: the document is written to a temporary file in the same directory
//!   (`.<name>.tmp.<pid>.<random>`), fsynced, renamed over the store, and the directory is fsynced.
//!   A reader never sees a torn file. A new store file gets mode 0644 (it holds only ciphertext); an
//!   existing file keeps its mode.
//! - Read-modify-write ([`update_store`], used by every CLI command that changes a store) holds an
//!   exclusive advisory lock on a sidecar file `.<name>.lock` in the same directory for the whole
//!   load → change → save, so concurrent writers (threads or processes) serialize and no `put` is
//!   lost. The lock file is left in place (removing it would race); add it to `.gitignore`. Waiting
//!   for the lock gives up after [`LOCK_TIMEOUT`].
//! - Key files are created with `create_new` (never overwritten) and mode 0600.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aes_gcm::aead::OsRng;
use aes_gcm::aead::rand_core::RngCore;

use super::FileStoreError;
use super::format::Store;
use super::keys::{Keyring, MasterKey};

/// How long a writer waits for another writer's lock before giving up.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest store document read, to bound memory on a wrong path.
pub const MAX_STORE_BYTES: u64 = 64 << 20;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FileStoreError + '_ {
    move |source| FileStoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sidecar(path: &Path, suffix: &str) -> Result<PathBuf, FileStoreError> {
    let name = path.file_name().ok_or_else(|| FileStoreError::Io {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
    })?;
    let mut s = std::ffi::OsString::from(".");
    s.push(name);
    s.push(suffix);
    Ok(path.with_file_name(s))
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Reads a store file's bytes (bounded in size).
pub fn read_store_bytes(path: &Path) -> Result<Vec<u8>, FileStoreError> {
    let meta = fs::metadata(path).map_err(io_err(path))?;
    if meta.len() > MAX_STORE_BYTES {
        return Err(FileStoreError::Corrupt {
            what: format!("{} is larger than {MAX_STORE_BYTES} bytes", path.display()),
        });
    }
    fs::read(path).map_err(io_err(path))
}

/// Reads and opens a store file.
pub fn load_store(path: &Path, keyring: &Keyring) -> Result<Store, FileStoreError> {
    let bytes = read_store_bytes(path)?;
    Store::from_bytes(&bytes, keyring)
}

/// Writes a store atomically (temp file, fsync, rename, fsync of the directory).
pub fn save_store(path: &Path, store: &Store) -> Result<(), FileStoreError> {
    let bytes = store.to_bytes()?;
    write_atomic(path, &bytes)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileStoreError> {
    let mut rnd = [0u8; 6];
    OsRng.fill_bytes(&mut rnd);
    let tmp = sidecar(
        path,
        &format!(".tmp.{}.{}", std::process::id(), hex::encode(rnd)),
    )?;
    let existing_perms = fs::metadata(path).ok().map(|m| m.permissions());
    let result = (|| {
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o644);
        }
        let mut f = opts.open(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        if let Some(perms) = existing_perms {
            f.set_permissions(perms).map_err(io_err(&tmp))?;
        }
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io_err(path))?;
        sync_dir(parent_dir(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn sync_dir(dir: &Path) -> Result<(), FileStoreError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// An exclusive advisory lock on a store (released on drop).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// Takes the store's writer lock, waiting up to [`LOCK_TIMEOUT`].
pub fn lock_store(path: &Path) -> Result<StoreLock, FileStoreError> {
    let lock_path = sidecar(path, ".lock")?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(io_err(&lock_path))?;
    let start = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(StoreLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(FileStoreError::LockTimeout { path: lock_path });
            }
            Err(fs::TryLockError::Error(source)) => {
                return Err(FileStoreError::Io {
                    path: lock_path,
                    source,
                });
            }
        }
    }
}

/// Creates a new store file; fails if it already exists.
pub fn create_store(path: &Path, store: &Store) -> Result<(), FileStoreError> {
    let _lock = lock_store(path)?;
    if fs::symlink_metadata(path).is_ok() {
        return Err(FileStoreError::AlreadyExists {
            path: path.to_path_buf(),
        });
    }
    save_store(path, store)
}

/// Load → change → save under the writer lock. `f`'s error aborts without writing.
pub fn update_store<T>(
    path: &Path,
    keyring: &Keyring,
    f: impl FnOnce(&mut Store) -> Result<T, FileStoreError>,
) -> Result<T, FileStoreError> {
    let _lock = lock_store(path)?;
    let mut store = load_store(path, keyring)?;
    let out = f(&mut store)?;
    save_store(path, &store)?;
    Ok(out)
}

/// Writes a new key file (mode 0600, never overwriting), one key line plus a newline.
pub fn write_new_key_file(path: &Path, key: &MasterKey) -> Result<(), FileStoreError> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            FileStoreError::AlreadyExists {
                path: path.to_path_buf(),
            }
        } else {
            FileStoreError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    let mut line = key.to_text();
    line.push('\n');
    let written = f.write_all(line.as_bytes()).and_then(|()| f.sync_all());
    if let Err(source) = written {
        drop(f);
        let _ = fs::remove_file(path);
        return Err(FileStoreError::Io {
            path: path.to_path_buf(),
            source,
        });
    }
    sync_dir(parent_dir(path))
}

/// Reads a key file (one or more key lines) into a keyring.
pub fn read_key_file(path: &Path) -> Result<Keyring, FileStoreError> {
    let meta = fs::metadata(path).map_err(io_err(path))?;
    if meta.len() > 1 << 20 {
        return Err(FileStoreError::InvalidKey {
            what: format!("{} is too large for a key file", path.display()),
        });
    }
    let text = zeroize::Zeroizing::new(fs::read_to_string(path).map_err(io_err(path))?);
    Keyring::parse(&text).map_err(|e| match e {
        FileStoreError::InvalidKey { what } => FileStoreError::InvalidKey {
            what: format!("{}: {what}", path.display()),
        },
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::SecretBytes;

    #[test]
    fn create_update_load_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let store_path = dir.path().join("store.json");
        let key_path = dir.path().join("key");
        let key = MasterKey::generate();
        write_new_key_file(&key_path, &key).unwrap();
        assert!(matches!(
            write_new_key_file(&key_path, &key),
            Err(FileStoreError::AlreadyExists { .. })
        ));
        let ring = read_key_file(&key_path).unwrap();
        create_store(&store_path, &Store::init(&ring).unwrap()).unwrap();
        assert!(matches!(
            create_store(&store_path, &Store::init(&ring).unwrap()),
            Err(FileStoreError::AlreadyExists { .. })
        ));
        update_store(&store_path, &ring, |s| {
            s.put("a", &SecretBytes::from("v"), None, None)
        })
        .unwrap();
        assert_eq!(
            load_store(&store_path, &ring)
                .unwrap()
                .get("a", None)
                .unwrap()
                .0
                .expose(),
            b"v"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            fs::set_permissions(&store_path, fs::Permissions::from_mode(0o600)).unwrap();
            update_store(&store_path, &ring, |s| {
                s.put("b", &SecretBytes::from("w"), None, None)
            })
            .unwrap();
            assert_eq!(
                fs::metadata(&store_path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        // No temp files left behind.
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp.")), "{names:?}");
    }

    #[test]
    fn failed_update_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        let ring = Keyring::single(MasterKey::generate());
        create_store(&p, &Store::init(&ring).unwrap()).unwrap();
        let before = fs::read(&p).unwrap();
        let r: Result<(), _> = update_store(&p, &ring, |s| {
            s.put("a", &SecretBytes::from("v"), None, None)?;
            Err(FileStoreError::NotFound { name: "x".into() })
        });
        assert!(r.is_err());
        assert_eq!(fs::read(&p).unwrap(), before);
    }
}
