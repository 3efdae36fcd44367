//! Bad input (issue #11): oversize values, binary and non-UTF-8 values, invalid key names, deep or
//! huge JSON, malformed YAML manifests and file-store documents. Each must give a clear error (naming
//! the field or file, never quoting a value), never panic, stay within bounded time and memory, and —
//! since every failure happens before a write — lose nothing. The e2e counterpart (the Secret stays
//! untouched) is `bad_input_is_reported_and_nothing_is_lost_or_leaked` in `e2e_core.rs`.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use secretsync::api::{
    DataFrom, DataItem, RemoteRefSpec, SecretRefSpec, StoreRef, Target, Template,
};
use secretsync::audit::HmacKey;
use secretsync::cli::manifests;
use secretsync::controller::desired::{self, Answers, BuildError, DesiredSecret};
use secretsync::controller::property;
use secretsync::providers::file::{Keyring, MasterKey, Store};
use secretsync::providers::{FetchedSecret, RemoteRef, SecretMetadata};
use secretsync::value::SecretBytes;

const SENTINEL: &str = "SENTINEL-3f9c2a71-do-not-log";

fn item(key: &str, remote: &str, prop: Option<&str>) -> DataItem {
    DataItem {
        secret_key: key.into(),
        remote_ref: RemoteRefSpec {
            key: remote.into(),
            property: prop.map(Into::into),
            version: None,
        },
        validate: None,
    }
}

fn spec(data: Vec<DataItem>) -> SecretRefSpec {
    SecretRefSpec {
        store_ref: StoreRef {
            name: "s".into(),
            kind: None,
        },
        data,
        ..Default::default()
    }
}

fn answers(pairs: Vec<(&str, Vec<u8>)>) -> Answers {
    Answers {
        values: pairs
            .into_iter()
            .map(|(k, v)| {
                (
                    RemoteRef::latest(k),
                    FetchedSecret {
                        value: SecretBytes::new(v),
                        meta: SecretMetadata::default(),
                    },
                )
            })
            .collect(),
        found: HashMap::new(),
    }
}

fn build(s: &SecretRefSpec, a: &Answers) -> Result<DesiredSecret, BuildError> {
    desired::build("x", s, a, &HmacKey::new(vec![1; 32]))
}

/// Runs `f`, which must finish within `limit` (a debug build on a shared 2-core machine).
fn timed<T>(what: &str, limit: Duration, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    assert!(t.elapsed() < limit, "{what} took {:?}", t.elapsed());
    out
}

fn no_value_in(msg: &str, values: &[&[u8]]) {
    for v in values {
        let s = String::from_utf8_lossy(v);
        if s.len() >= 6 {
            assert!(!msg.contains(s.as_ref()), "error quotes a value: {msg}");
        }
    }
    assert!(!msg.contains(SENTINEL), "error quotes the sentinel: {msg}");
}

#[test]
fn binary_and_non_utf8_values_are_kept_exactly_or_refused_clearly() {
    let bin: Vec<u8> = vec![0xff, 0xfe, 0x00, 0x80, b'S', 0xc3, 0x28, 0x0a, 0x0d];
    // Without a property: the bytes are the value, unchanged.
    let d = build(
        &spec(vec![item("blob", "/bin", None)]),
        &answers(vec![("/bin", bin.clone())]),
    )
    .unwrap();
    assert_eq!(d.data["blob"].expose(), bin.as_slice());
    // With a property: not JSON, a clear error naming the field.
    let e = build(
        &spec(vec![item("pw", "/bin", Some("password"))]),
        &answers(vec![("/bin", bin.clone())]),
    )
    .unwrap_err();
    assert_eq!(e.reason, secretsync::api::Reason::InvalidRemoteValue);
    assert_eq!(e.field, "spec.data[0].remoteRef.property");
    // Extract of a binary value.
    let mut s = spec(vec![]);
    s.data_from = vec![DataFrom {
        extract: Some(RemoteRefSpec {
            key: "/bin".into(),
            ..Default::default()
        }),
        find: None,
    }];
    let e = build(&s, &answers(vec![("/bin", bin.clone())])).unwrap_err();
    assert_eq!(e.reason, secretsync::api::Reason::InvalidRemoteValue);
    // A template over a non-UTF-8 value: the text variable is absent (strict: an error), the base64
    // form is there; nothing is silently mangled.
    let mut s = spec(vec![item("blob", "/bin", None)]);
    s.target = Some(Box::new(Target {
        template: Some(Template {
            data: [("out".to_string(), "{{ blob }}".to_string())].into(),
            merge_policy: None,
            validate: Default::default(),
        }),
        ..Default::default()
    }));
    let e = build(&s, &answers(vec![("/bin", bin.clone())])).unwrap_err();
    assert_eq!(e.reason, secretsync::api::Reason::TemplateFailed);
    no_value_in(&e.to_string(), &[&bin]);
    if let Some(t) = s.target.as_mut().and_then(|t| t.template.as_mut()) {
        t.data = [("out".to_string(), "{{ data_b64.blob }}".to_string())].into();
    }
    let d = build(&s, &answers(vec![("/bin", bin.clone())])).unwrap();
    use base64::Engine;
    assert_eq!(
        d.data["out"].expose(),
        base64::engine::general_purpose::STANDARD
            .encode(&bin)
            .as_bytes()
    );
}

#[test]
fn oversize_values_are_refused_before_any_write() {
    // One value over 1 MiB, and several that only together exceed it.
    let big = vec![b'x'; 1024 * 1024 + 1];
    let e = build(
        &spec(vec![item("a", "/a", None)]),
        &answers(vec![("/a", big)]),
    )
    .unwrap_err();
    assert_eq!(e.reason, secretsync::api::Reason::SecretTooLarge);
    let part = vec![b'y'; 300 * 1024];
    let e = build(
        &spec(vec![
            item("a", "/a", None),
            item("b", "/b", None),
            item("c", "/c", None),
            item("d", "/d", None),
        ]),
        &answers(vec![
            ("/a", part.clone()),
            ("/b", part.clone()),
            ("/c", part.clone()),
            ("/d", part.clone()),
        ]),
    )
    .unwrap_err();
    assert_eq!(e.reason, secretsync::api::Reason::SecretTooLarge);
    assert!(e.message.contains("1 MiB"), "{e}");
    // Just under the limit passes.
    let ok = vec![b'z'; 1024 * 1024 - 16];
    assert!(
        build(
            &spec(vec![item("a", "/a", None)]),
            &answers(vec![("/a", ok)])
        )
        .is_ok()
    );
}

#[test]
fn invalid_key_names_are_refused_with_the_field() {
    for bad in [
        "",
        "a/b",
        "..",
        ".",
        "a b",
        "ключ",
        "x\u{0}y",
        &"k".repeat(254),
    ] {
        let s = spec(vec![item(bad, "/a", None)]);
        let errs = secretsync::api::validation::validate_secretref(&s);
        assert!(
            errs.iter().any(|e| e.field.starts_with("spec.data[0]")),
            "{bad:?}: {errs:?}"
        );
        let e = build(&s, &answers(vec![("/a", b"v".to_vec())])).unwrap_err();
        assert_eq!(e.reason, secretsync::api::Reason::InvalidSpec, "{bad:?}");
    }
    // Keys of an extracted JSON object that Kubernetes would reject.
    let mut s = spec(vec![]);
    s.data_from = vec![DataFrom {
        extract: Some(RemoteRefSpec {
            key: "/j".into(),
            ..Default::default()
        }),
        find: None,
    }];
    for bad in ["../etc", "a b", "", "ü"] {
        let doc = serde_json::json!({ bad: SENTINEL }).to_string();
        let e = build(&s, &answers(vec![("/j", doc.into_bytes())])).unwrap_err();
        assert_eq!(
            e.reason,
            secretsync::api::Reason::InvalidSecretKey,
            "{bad:?}"
        );
        no_value_in(&e.to_string(), &[]);
    }
}

#[test]
fn deep_and_huge_json_is_bounded() {
    // Deeply nested JSON: no stack overflow, a clear error (serde_json's recursion limit).
    let deep_arr = format!("{}1{}", "[".repeat(200_000), "]".repeat(200_000));
    let deep_obj = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    for doc in [&deep_arr, &deep_obj] {
        let e = timed("deep JSON property", Duration::from_secs(5), || {
            build(
                &spec(vec![item("k", "/d", Some("a.a.a"))]),
                &answers(vec![("/d", doc.as_bytes().to_vec())]),
            )
        })
        .unwrap_err();
        assert_eq!(e.reason, secretsync::api::Reason::InvalidRemoteValue);
        assert!(e.message.len() < 1000, "{}", e.message);
    }
    // A very long property path.
    let long_path = vec!["a"; 50_000].join(".");
    let r = timed("long property path", Duration::from_secs(5), || {
        property::select(&SecretBytes::from(r#"{"a":1}"#), &long_path)
    });
    assert!(r.is_err());
    // A huge object (200k keys, ~4 MiB) extracted: refused as too large, quickly.
    let mut huge = String::from("{");
    for i in 0..200_000 {
        if i > 0 {
            huge.push(',');
        }
        huge.push_str(&format!("\"k{i}\":\"{SENTINEL}\""));
    }
    huge.push('}');
    let mut s = spec(vec![]);
    s.data_from = vec![DataFrom {
        extract: Some(RemoteRefSpec {
            key: "/h".into(),
            ..Default::default()
        }),
        find: None,
    }];
    let e = timed("huge JSON extract", Duration::from_secs(20), || {
        build(&s, &answers(vec![("/h", huge.into_bytes())]))
    })
    .unwrap_err();
    assert_eq!(e.reason, secretsync::api::Reason::SecretTooLarge);
    no_value_in(&e.to_string(), &[]);
}

fn load(text: &str) -> Result<manifests::Manifests, String> {
    manifests::load_str(Path::new("bad.yaml"), text, "default").map_err(|e| e.to_string())
}

#[test]
fn malformed_yaml_manifests_give_clear_errors() {
    let sref_with = |extra: &str| {
        format!(
            "apiVersion: secretsync.io/v1alpha1\nkind: SecretRef\nmetadata: {{name: a}}\nspec:\n  storeRef: {{name: s}}\n{extra}"
        )
    };
    let bomb = {
        let mut y = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let mut prev = "a".to_string();
        for l in ["b", "c", "d", "e", "f", "g", "h", "i"] {
            y.push_str(&format!(
                "{l}: &{l} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
            ));
            prev = l.to_string();
        }
        y
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "tab indentation",
            "apiVersion: v1\nkind: x\n\tmetadata: {}\n".into(),
        ),
        (
            "unterminated quote",
            format!("apiVersion: \"v1\nkind: SecretRef\nx: {SENTINEL}\n"),
        ),
        (
            "unclosed flow",
            "apiVersion: secretsync.io/v1alpha1\nkind: SecretRef\nspec: {storeRef: {name: s}\n"
                .into(),
        ),
        ("alias bomb", bomb),
        (
            "deep nesting",
            format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000)),
        ),
        ("not a mapping", "- a\n- b\n".into()),
        ("no kind", "apiVersion: v1\nmetadata: {name: x}\n".into()),
        (
            "wrong type with a value",
            sref_with(&format!("  data: \"{SENTINEL}\"\n")),
        ),
        (
            "duplicate keys",
            format!(
                "apiVersion: v1\napiVersion: v2\nkind: Secret\nstringData: {{a: {SENTINEL}}}\n"
            ),
        ),
        (
            "binary garbage",
            String::from_utf8_lossy(&[0xff, 0x00, 0x1b, b':', b'[', 0xfe]).into_owned(),
        ),
    ];
    for (what, text) in &cases {
        let r = timed(what, Duration::from_secs(10), || load(text));
        match r {
            Err(msg) => {
                assert!(
                    msg.contains("bad.yaml"),
                    "{what}: error does not name the file: {msg}"
                );
                assert!(
                    !msg.contains(SENTINEL),
                    "{what}: error quotes a value: {msg}"
                );
                assert!(msg.len() < 2000, "{what}: unbounded error text");
            }
            // Some inputs are valid YAML that `check` reports as problems of the object instead.
            Ok(m) => {
                let dump = format!("{:?}", m.secret_refs.len());
                assert!(!dump.contains(SENTINEL), "{what}");
            }
        }
    }
}

#[test]
fn malformed_file_store_documents_are_errors_not_garbage() {
    let key = MasterKey::generate();
    let ring = Keyring::single(key);
    let mut store = Store::init(&ring).unwrap();
    store
        .put("/a", &SecretBytes::from(SENTINEL), None, None)
        .unwrap();
    let good = store.to_bytes().unwrap();
    let text = String::from_utf8(good.clone()).unwrap();
    let mut inputs: Vec<Vec<u8>> = vec![
        vec![],
        b"{".to_vec(),
        b"null".to_vec(),
        vec![0xff; 64],
        format!(r#"{{"format":"secretsync-file-store","version":"{SENTINEL}"}}"#).into_bytes(),
        good[..good.len() / 2].to_vec(),
        format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
    ];
    // Flip one character of every ciphertext-looking run.
    for (i, _) in text.match_indices("\"ciphertext\"").take(3) {
        let mut t = good.clone();
        let at = i + 20;
        t[at] = if t[at] == b'a' { b'b' } else { b'a' };
        inputs.push(t);
    }
    for (n, doc) in inputs.iter().enumerate() {
        let r = timed("file store parse", Duration::from_secs(5), || {
            Store::from_bytes(doc, &ring).and_then(|s| s.get("/a", None).map(|_| ()))
        });
        let e = r.expect_err(&format!("input {n} was accepted"));
        no_value_in(&e.to_string(), &[]);
    }
}
