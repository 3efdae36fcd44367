//! Entry points of the fuzz targets (`fuzz/`, cargo-fuzz) and of their corpus regression test
//! (`tests/fuzz_corpus.rs`): each takes arbitrary bytes, drives one parser or transform through its
//! public API, and checks what must hold for any input (no panic; errors carry no input bytes that
//! look like a value; outputs stay bounded). Not part of the supported API.

use std::collections::BTreeMap;
use std::path::Path;

use crate::value::SecretBytes;

/// The marker every fuzz input may contain; it must never come back in an error message.
pub const MARK: &str = "FUZZSECRET";

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// Splits `data` at the first NUL byte: (head, tail).
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fn assert_no_mark(what: &str, msg: &str) {
    assert!(
        !msg.contains(MARK),
        "{what}: an error message quotes input data: {msg}"
    );
}

/// JSON property paths: `path NUL json-value`.
pub fn property_path(data: &[u8]) {
    let (path, value) = split(data);
    let path = text(path);
    let _ = crate::controller::property::parse_path(&path);
    let value = SecretBytes::new(value.to_vec());
    match crate::controller::property::select(&value, &path) {
        Ok(v) => assert!(v.len() <= value.len().max(16) * 2 + 16),
        Err(e) => {
            if !path.contains(MARK) {
                assert_no_mark("property", &e.to_string());
            }
        }
    }
}

/// Templates: `template NUL value-of-k NUL value-of-other`.
pub fn template(data: &[u8]) {
    let (tpl, rest) = split(data);
    let (a, b) = split(rest);
    let tpl = text(tpl);
    let _ = crate::controller::template::check_syntax("out", &tpl);
    let values: BTreeMap<String, SecretBytes> = [
        ("k".to_string(), SecretBytes::new(a.to_vec())),
        ("other".to_string(), SecretBytes::new(b.to_vec())),
    ]
    .into();
    let templates: BTreeMap<String, String> = [("out".to_string(), tpl.clone())].into();
    match crate::controller::template::render(&templates, &values) {
        Ok(out) => {
            for v in out.values() {
                assert!(
                    v.len() <= 1024 * 1024 + 4096,
                    "template output over the limit"
                );
            }
        }
        Err(e) => {
            if !tpl.contains(MARK) {
                assert_no_mark("template", &e);
            }
        }
    }
}

/// The encrypted file-store format: a document, opened with a fixed key and read entry by entry.
pub fn file_store(data: &[u8]) {
    use crate::providers::file::{Keyring, Store};
    thread_local! {
        static RING: Keyring = fuzz_keyring();
    }
    RING.with(|ring| match Store::from_bytes(data, ring) {
        Ok(store) => {
            for e in store.list() {
                let _ = store.get(&e.name, None);
            }
            let _ = store.verify();
            let _ = store.to_bytes();
        }
        Err(e) => assert_no_mark("file store", &e.to_string()),
    });
}

/// The fixed master key of the file-store target (so seed documents decrypt).
pub fn fuzz_keyring() -> crate::providers::file::Keyring {
    use crate::providers::file::{Keyring, MasterKey};
    Keyring::single(MasterKey::from_raw("fuzz", &[7u8; 32]).expect("fuzz key"))
}

/// A valid file-store document under [`fuzz_keyring`] with two entries (a seed input).
pub fn file_store_seed() -> Vec<u8> {
    let ring = fuzz_keyring();
    let mut store = crate::providers::file::Store::init(&ring).expect("init");
    store
        .put("/app/db", &SecretBytes::from(MARK), None, None)
        .expect("put");
    store
        .put(
            "/app/bin",
            &SecretBytes::new(vec![0xff, 0, 0x80]),
            None,
            None,
        )
        .expect("put");
    store.to_bytes().expect("bytes")
}

/// Manifest parsing of `check`/`render` (YAML, several documents).
pub fn manifests(data: &[u8]) {
    let t = text(data);
    match crate::cli::manifests::load_str(Path::new("fuzz.yaml"), &t, "default") {
        Ok(m) => {
            let _ = m.secret_refs.len() + m.stores.len() + m.cluster_stores.len();
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.len() < 64 * 1024, "unbounded manifest error");
        }
    }
}

/// Durations (`refreshInterval`, `warnBefore`).
pub fn duration(data: &[u8]) {
    let t = text(data);
    if let Ok(d) = crate::api::duration::parse(&t) {
        let _ = crate::api::duration::format(d);
    }
}

/// Building the desired Secret from a SecretRef spec (JSON) and one provider value:
/// `spec-json NUL value`.
pub fn desired_secret(data: &[u8]) {
    let (spec, value) = split(data);
    let Ok(spec) = serde_json::from_slice::<crate::api::SecretRefSpec>(spec) else {
        return;
    };
    let plan = crate::controller::desired::plan(&spec);
    let mut answers = crate::controller::desired::Answers::default();
    for r in plan.reads {
        answers.values.insert(
            r,
            crate::providers::FetchedSecret {
                value: SecretBytes::new(value.to_vec()),
                meta: Default::default(),
            },
        );
    }
    let key = crate::audit::HmacKey::new(vec![5; 32]);
    if let Ok(d) = crate::controller::desired::build("fuzz", &spec, &answers, &key) {
        let total: usize = d.data.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(total <= crate::api::MAX_SECRET_BYTES);
        assert!(d.data.values().all(|v| !v.is_empty()));
    }
}

/// One fuzz target: it takes any bytes and panics on a violation.
pub type Target = fn(&[u8]);

/// Every target by name (for the corpus test and `fuzz/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("property_path", property_path),
    ("template", template),
    ("file_store", file_store),
    ("manifests", manifests),
    ("duration", duration),
    ("desired_secret", desired_secret),
];
