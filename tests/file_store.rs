//! The encrypted file store: round trips, tamper and truncation detection, wrong keys, rotation,
//! concurrent writers, and property tests.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use proptest::prelude::*;
use secretsync::providers::file::storage::{
    create_store, load_store, update_store, write_new_key_file,
};
use secretsync::providers::file::{FileProvider, FileStoreError, Keyring, MasterKey, Store};
use secretsync::providers::{Provider, RemoteRef};
use secretsync::value::SecretBytes;
use serde_json::Value;

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

/// A small store with two entries, two versions, tags, an expiry and a binary value.
fn sample(ring: &Keyring) -> Store {
    let mut s = Store::init(ring).unwrap();
    s.put(
        "db",
        &SecretBytes::from("pw-one"),
        None,
        tags(&[("team", "pay")]),
    )
    .unwrap();
    s.put(
        "db",
        &SecretBytes::from("pw-two"),
        Some(Utc::now() + chrono::Duration::days(30)),
        None,
    )
    .unwrap();
    s.put(
        "bin",
        &SecretBytes::new(vec![0xff, 0x00, 0xfe, b'\n']),
        None,
        None,
    )
    .unwrap();
    s
}

/// Every value and all metadata, for comparing two opened stores.
fn snapshot(s: &Store) -> Vec<(String, String, Vec<u8>, String)> {
    let mut out = Vec::new();
    for e in s.list() {
        for v in &e.versions {
            let (val, meta) = s.get(&e.name, Some(&v.version)).unwrap();
            out.push((
                e.name.clone(),
                v.version.clone(),
                val.expose().to_vec(),
                format!("{meta:?}{:?}", e.tags),
            ));
        }
    }
    out
}

fn edit_json(bytes: &[u8], f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(bytes).unwrap();
    f(&mut v);
    serde_json::to_vec_pretty(&v).unwrap()
}

#[test]
fn round_trip_latest_by_version_and_binary() {
    let k = ring();
    let bytes = sample(&k).to_bytes().unwrap();
    let s = Store::from_bytes(&bytes, &k).unwrap();
    let (v, m) = s.get("db", None).unwrap();
    assert_eq!(v.expose(), b"pw-two");
    assert_eq!(m.version, "2");
    assert!(m.expires.is_some());
    assert_eq!(s.get("db", Some("1")).unwrap().0.expose(), b"pw-one");
    assert_eq!(
        s.get("bin", None).unwrap().0.expose(),
        &[0xff, 0x00, 0xfe, b'\n']
    );
    // Only ciphertext in the file.
    let text = String::from_utf8(bytes).unwrap();
    assert!(!text.contains("pw-one") && !text.contains("pw-two"));
    assert!(text.contains("\"format\": \"secretsync-file-store\""));
}

#[test]
fn flipping_any_byte_is_detected() {
    let k = ring();
    let bytes = sample(&k).to_bytes().unwrap();
    assert!(bytes.len() > 200);
    for mask in [0x01u8, 0x02, 0x20, 0x80] {
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= mask;
            match Store::from_bytes(&t, &k) {
                Err(_) => {}
                Ok(s) => {
                    // Only a change of insignificant JSON whitespace may still open, and then it
                    // must hold exactly the same data.
                    assert!(
                        bytes[i].is_ascii_whitespace() && t[i].is_ascii_whitespace(),
                        "pos {i} mask {mask:#x}"
                    );
                    assert_eq!(snapshot(&s), snapshot(&sample_reopen(&bytes, &k)));
                }
            }
        }
    }
}

fn sample_reopen(bytes: &[u8], k: &Keyring) -> Store {
    Store::from_bytes(bytes, k).unwrap()
}

#[test]
fn truncation_is_detected() {
    let k = ring();
    let bytes = sample(&k).to_bytes().unwrap();
    assert_eq!(bytes.last(), Some(&b'\n'));
    for len in 0..bytes.len() - 1 {
        assert!(Store::from_bytes(&bytes[..len], &k).is_err(), "len {len}");
    }
    // Dropping only the trailing newline is harmless.
    Store::from_bytes(&bytes[..bytes.len() - 1], &k).unwrap();
}

#[test]
fn swapping_ciphertexts_between_entries_or_versions_is_detected() {
    let k = ring();
    let bytes = sample(&k).to_bytes().unwrap();
    let swapped = edit_json(&bytes, |v| {
        let a = v["entries"]["db"]["versions"][0]["ciphertext"].take();
        let b = v["entries"]["bin"]["versions"][0]["ciphertext"].take();
        v["entries"]["db"]["versions"][0]["ciphertext"] = b;
        v["entries"]["bin"]["versions"][0]["ciphertext"] = a;
    });
    assert!(matches!(
        Store::from_bytes(&swapped, &k),
        Err(FileStoreError::Corrupt { .. })
    ));
    let swapped_versions = edit_json(&bytes, |v| {
        let vs = v["entries"]["db"]["versions"].as_array_mut().unwrap();
        let (a, b) = (vs[0]["ciphertext"].take(), vs[1]["ciphertext"].take());
        vs[0]["ciphertext"] = b;
        vs[1]["ciphertext"] = a;
    });
    assert!(Store::from_bytes(&swapped_versions, &k).is_err());
}

#[test]
fn removing_entries_versions_or_metadata_is_detected() {
    let k = ring();
    let bytes = sample(&k).to_bytes().unwrap();
    type Edit = Box<dyn Fn(&mut Value)>;
    let edits: Vec<Edit> = vec![
        Box::new(|v| {
            v["entries"].as_object_mut().unwrap().remove("bin");
        }),
        Box::new(|v| {
            v["entries"]["db"]["versions"].as_array_mut().unwrap().pop();
        }),
        Box::new(|v| {
            v["entries"]["db"]["versions"]
                .as_array_mut()
                .unwrap()
                .remove(0);
            v["entries"]["db"]["versions"][0]["version"] = "1".into();
        }),
        Box::new(|v| {
            v["entries"]["db"]["tags"]["team"] = "other".into();
        }),
        Box::new(|v| {
            v["entries"]["db"]["versions"][1]
                .as_object_mut()
                .unwrap()
                .remove("expires");
        }),
        Box::new(|v| {
            v["entries"]["db"]["versions"][0]["created"] = "2020-01-01T00:00:00Z".into();
        }),
        Box::new(|v| {
            let e = v["entries"]["db"].take();
            v["entries"].as_object_mut().unwrap().remove("db");
            v["entries"]["renamed"] = e;
        }),
    ];
    for (i, edit) in edits.iter().enumerate() {
        let t = edit_json(&bytes, edit);
        let err = Store::from_bytes(&t, &k).unwrap_err();
        assert!(
            matches!(err, FileStoreError::Corrupt { .. }),
            "edit {i}: {err}"
        );
    }
}

#[test]
fn wrong_key_is_a_typed_error_and_access_denied() {
    let k = ring();
    let s = sample(&k);
    let bytes = s.to_bytes().unwrap();
    let other = ring();
    match Store::from_bytes(&bytes, &other) {
        Err(FileStoreError::WrongKey {
            key_ids_in_store,
            key_ids_given,
        }) => {
            assert_eq!(key_ids_in_store, k.ids());
            assert_eq!(key_ids_given, other.ids());
        }
        other => panic!("expected WrongKey, got {other:?}"),
    }
    // Same id, different material.
    let id = k.ids()[0].clone();
    let impostor = Keyring::single(MasterKey::from_raw(&id, &[9u8; 32]).unwrap());
    assert!(matches!(
        Store::from_bytes(&bytes, &impostor),
        Err(FileStoreError::UnwrapFailed { .. })
    ));
    let e = FileProvider::from_bytes(&bytes, other).unwrap_err();
    assert_eq!(e.reason(), secretsync::api::Reason::AccessDenied);
    let e = FileProvider::from_bytes(&bytes, impostor).unwrap_err();
    assert_eq!(e.reason(), secretsync::api::Reason::AccessDenied);
    let e = FileProvider::from_bytes(b"{\"format\":\"secretsync-file-store\",\"version\":7}", k)
        .unwrap_err();
    assert_eq!(e.reason(), secretsync::api::Reason::InvalidStoreConfig);
}

#[test]
fn keyring_with_several_keys_opens_either() {
    let old = MasterKey::generate();
    let new = MasterKey::generate();
    let mut both = Keyring::single(old.clone());
    both.push(new.clone()).unwrap();
    let s = Store::init(&Keyring::single(old)).unwrap();
    Store::from_bytes(&s.to_bytes().unwrap(), &both).unwrap();
    // init uses the newest (last) key.
    let s2 = Store::init(&both).unwrap();
    assert_eq!(s2.master_key_ids(), vec![new.id().to_string()]);
}

#[test]
fn master_key_rotation_old_fails_new_works() {
    for rotate_data_key in [false, true] {
        let old = ring();
        let mut s = sample(&old);
        let before = snapshot(&s);
        let new = MasterKey::generate();
        if rotate_data_key {
            s.rotate_data_key(&old).unwrap();
        }
        s.rotate_master_key(&new).unwrap();
        let bytes = s.to_bytes().unwrap();
        assert!(Store::from_bytes(&bytes, &old).is_err());
        let reopened = Store::from_bytes(&bytes, &Keyring::single(new)).unwrap();
        assert_eq!(snapshot(&reopened), before);
    }
}

#[test]
fn rotation_through_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    let old = MasterKey::generate();
    create_store(&store, &sample(&Keyring::single(old.clone()))).unwrap();
    let new = MasterKey::generate();
    update_store(&store, &Keyring::single(old.clone()), |s| {
        s.rotate_master_key(&new)
    })
    .unwrap();
    assert!(load_store(&store, &Keyring::single(old)).is_err());
    assert_eq!(
        load_store(&store, &Keyring::single(new))
            .unwrap()
            .get("db", None)
            .unwrap()
            .0
            .expose(),
        b"pw-two"
    );
}

#[test]
fn concurrent_writers_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(dir.path().join("store.json"));
    let k = ring();
    create_store(&store, &Store::init(&k).unwrap()).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (store, k) = (Arc::clone(&store), k.clone());
            std::thread::spawn(move || {
                for i in 0..10 {
                    let name = format!("t{t}-{i}");
                    update_store(&store, &k, |s| {
                        s.put(&name, &SecretBytes::from(name.as_str()), None, None)
                    })
                    .unwrap();
                    update_store(&store, &k, |s| {
                        s.put("shared", &SecretBytes::from(name.as_str()), None, None)
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = load_store(&store, &k).unwrap();
    let list = s.list();
    assert_eq!(list.len(), 81);
    for t in 0..8 {
        for i in 0..10 {
            let name = format!("t{t}-{i}");
            assert_eq!(s.get(&name, None).unwrap().0.expose(), name.as_bytes());
        }
    }
    let shared = list.iter().find(|e| e.name == "shared").unwrap();
    assert_eq!(shared.versions.len(), 80);
    assert_eq!(shared.latest().unwrap().version, "80");
}

#[test]
fn key_file_is_0600_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("k");
    let key = MasterKey::generate();
    write_new_key_file(&p, &key).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let before = std::fs::read(&p).unwrap();
    assert!(write_new_key_file(&p, &MasterKey::generate()).is_err());
    assert_eq!(std::fs::read(&p).unwrap(), before);
}

#[test]
fn provider_over_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("store.json");
    let k = ring();
    create_store(&p, &sample(&k)).unwrap();
    let prov = FileProvider::open(Path::new(&p), k).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let got = rt.block_on(prov.get(&RemoteRef::latest("db"))).unwrap();
    assert_eq!(got.value.expose(), b"pw-two");
    assert_eq!(got.meta.version.as_deref(), Some("2"));
    assert!(got.meta.expires.is_some());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_entries_round_trip(
        entries in proptest::collection::btree_map(
            "[^\\p{Cc}]{1,40}",
            (proptest::collection::vec(any::<u8>(), 0..200),
             proptest::collection::btree_map("[a-z]{1,8}", "[^\\p{Cc}]{0,16}", 0..4)),
            1..6),
    ) {
        let k = ring();
        let mut s = Store::init(&k).unwrap();
        for (name, (value, t)) in &entries {
            s.put(name, &SecretBytes::new(value.clone()), None, Some(t.clone())).unwrap();
        }
        let back = Store::from_bytes(&s.to_bytes().unwrap(), &k).unwrap();
        for (name, (value, t)) in &entries {
            let (v, m) = back.get(name, None).unwrap();
            prop_assert_eq!(v.expose(), value.as_slice());
            prop_assert_eq!(m.version.as_str(), "1");
            prop_assert_eq!(&back.entry(name).unwrap().tags, t);
        }
        prop_assert_eq!(back.list().len(), entries.len());
    }

    #[test]
    fn arbitrary_single_byte_corruption_is_detected(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let k = fixed_ring();
        let bytes = fixed_doc();
        let i = pos.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        let mut t = bytes.clone();
        t[i] = byte;
        if let Ok(s) = Store::from_bytes(&t, &k) {
            // Only insignificant JSON whitespace may change, and the data must be identical.
            prop_assert!(bytes[i].is_ascii_whitespace() && byte.is_ascii_whitespace());
            prop_assert_eq!(snapshot(&s), snapshot(&Store::from_bytes(&bytes, &k).unwrap()));
        }
    }
}

fn fixed_ring() -> Keyring {
    Keyring::single(MasterKey::from_raw("mk-test", &[42u8; 32]).unwrap())
}

fn fixed_doc() -> Vec<u8> {
    static DOC: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DOC.get_or_init(|| sample(&fixed_ring()).to_bytes().unwrap())
        .clone()
}

/// The master key from `SECRETSYNC_MASTER_KEY` (the key text itself), through the binary: the
/// right key opens the store, another key is refused.
#[test]
fn master_key_from_env() {
    let k = MasterKey::generate();
    let ring = Keyring::single(MasterKey::parse(&k.to_text()).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.json");
    std::fs::write(&path, sample(&ring).to_bytes().unwrap()).unwrap();
    let list = |key: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_secretsync"))
            .args(["store", "list", "--file"])
            .arg(&path)
            .env_remove("SECRETSYNC_MASTER_KEY_FILE")
            .env("SECRETSYNC_MASTER_KEY", key)
            .output()
            .unwrap()
    };
    let out = list(k.to_text().as_str());
    assert!(out.status.success(), "{out:?}");
    let out = list(MasterKey::generate().to_text().as_str());
    assert!(!out.status.success(), "{out:?}");
}
