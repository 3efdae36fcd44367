use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};

use super::*;

const SENTINEL: &str = "hunter2-SENTINEL";

fn v(s: &str) -> SecretBytes {
    SecretBytes::from(s)
}

fn rule(t: ValueType) -> ValueValidation {
    ValueValidation {
        type_: Some(t),
        ..Default::default()
    }
}

/// Asserts a failure names the key and the rule and none of `value`'s text.
fn fails(r: Result<impl std::fmt::Debug, ValidateError>, key: &str, rule: &str, value: &str) {
    let e = r.expect_err("must fail");
    let msg = e.to_string();
    assert!(msg.contains(&format!("{key:?}")), "{msg}");
    assert!(msg.contains(rule), "{msg}");
    assert!(!msg.contains(SENTINEL), "{msg}");
    // No 8-byte run of the value (PEM armour lines aside: their known labels may be named).
    for line in value.lines().filter(|l| !l.starts_with("-----")) {
        for w in line.as_bytes().windows(8) {
            if let Ok(w) = std::str::from_utf8(w) {
                assert!(!msg.contains(w), "{msg} quotes {w:?}");
            }
        }
    }
}

struct Issued {
    cert: String,
    key: String,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    let pem = params.self_signed(&key).unwrap().pem();
    (params, key, pem)
}

fn leaf(issuer: &(CertificateParams, KeyPair, String), names: &[&str], days: i64) -> Issued {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0]);
    params.distinguished_name = dn;
    let t = Utc::now() + chrono::Duration::days(days);
    params.not_after = {
        use chrono::Datelike;
        rcgen::date_time_ymd(t.year(), t.month() as u8, t.day() as u8)
    };
    let iss = rcgen::Issuer::new(issuer.0.clone(), &issuer.1);
    let cert = params.signed_by(&key, &iss).unwrap();
    Issued {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

fn tls(crt: &str, key: &str) -> BTreeMap<String, SecretBytes> {
    [
        ("tls.crt".to_string(), v(crt)),
        ("tls.key".to_string(), v(key)),
    ]
    .into()
}

#[test]
fn string_type_is_utf8() {
    assert!(check("k", &v("héllo"), &rule(ValueType::String)).is_ok());
    let bad = SecretBytes::new(vec![b'o', b'k', 0xff, 0xfe]);
    fails(
        check("k", &bad, &rule(ValueType::String)),
        "k",
        "validate.type string",
        "",
    );
}

#[test]
fn json_type_and_truncated_json() {
    let ok = format!(r#"{{"password":"{SENTINEL}","user":"u"}}"#);
    assert!(check("cfg", &v(&ok), &rule(ValueType::Json)).is_ok());
    let cut = &ok[..ok.len() - 6];
    fails(
        check("cfg", &v(cut), &rule(ValueType::Json)),
        "cfg",
        "validate.type json",
        cut,
    );
    let junk = format!("{SENTINEL} is not json");
    fails(
        check("cfg", &v(&junk), &rule(ValueType::Json)),
        "cfg",
        "validate.type json",
        &junk,
    );
}

#[test]
fn base64_type() {
    assert!(check("b", &v("aGVsbG8=\n"), &rule(ValueType::Base64)).is_ok());
    fails(
        check("b", &v("not base64!"), &rule(ValueType::Base64)),
        "b",
        "validate.type base64",
        "not base64!",
    );
    fails(
        check("b", &v("aGVsbG8"), &rule(ValueType::Base64)),
        "b",
        "base64",
        "",
    );
}

#[test]
fn lengths_count_bytes() {
    let r = ValueValidation {
        min_length: Some(4),
        max_length: Some(6),
        ..Default::default()
    };
    assert!(check("p", &v("abcd"), &r).is_ok());
    assert!(check("p", &v("abcdef"), &r).is_ok());
    fails(check("p", &v("abc"), &r), "p", "validate.minLength 4", "");
    fails(
        check("p", &v("abcdefg"), &r),
        "p",
        "validate.maxLength 6",
        "",
    );
    // Bytes, not characters.
    fails(check("p", &v("ééé√"), &r), "p", "validate.maxLength 6", "");
}

#[test]
fn pattern_is_anchored_and_bad_patterns_are_spec_errors() {
    let r = ValueValidation {
        pattern: Some("[a-z]+-[0-9]{2}".into()),
        ..Default::default()
    };
    assert!(check("id", &v("abc-12"), &r).is_ok());
    let partial = format!("{SENTINEL} abc-12");
    fails(
        check("id", &v(&partial), &r),
        "id",
        "validate.pattern",
        &partial,
    );
    fails(check("id", &v("abc-123"), &r), "id", "validate.pattern", "");
    let bad = ValueValidation {
        pattern: Some("(unclosed".into()),
        ..Default::default()
    };
    let e = check("id", &v("x"), &bad).unwrap_err();
    assert!(matches!(e, ValidateError::Pattern { .. }), "{e}");
    assert!(!e.to_string().contains('\n'), "{e}");
}

#[test]
fn required_properties_name_only_the_configured_names() {
    let r = ValueValidation {
        type_: Some(ValueType::Json),
        required_properties: vec!["user".into(), "password".into()],
        ..Default::default()
    };
    assert!(check("db", &v(r#"{"user":"u","password":"p","x":1}"#), &r).is_ok());
    let value = format!(r#"{{"user":"u","{SENTINEL}":"p"}}"#);
    let e = check("db", &v(&value), &r).unwrap_err().to_string();
    assert!(e.contains("\"password\""), "{e}");
    assert!(!e.contains(SENTINEL) && !e.contains("\"user\""), "{e}");
    fails(
        check("db", &v("[1,2]"), &r),
        "db",
        "validate.requiredProperties",
        "",
    );
}

#[test]
fn pem_certificate_chain_leaf_first_and_facts() {
    let root = ca("Test Root");
    let l = leaf(&root, &["a.test.invalid", "10.0.0.1"], 30);
    let chain = format!("{}{}", l.cert, root.2);
    let facts = check("crt", &v(&chain), &rule(ValueType::PemCertificate))
        .unwrap()
        .unwrap();
    assert_eq!(facts.count, 2);
    assert!(
        facts.subject.contains("a.test.invalid"),
        "{}",
        facts.subject
    );
    assert_eq!(facts.sans, ["DNS:a.test.invalid", "IP:10.0.0.1"]);
    let days = (facts.not_after - Utc::now()).num_days();
    assert!((29..=30).contains(&days), "{days}");

    // Out of order: the root first.
    let reversed = format!("{}{}", root.2, l.cert);
    fails(
        check("crt", &v(&reversed), &rule(ValueType::PemCertificate)),
        "crt",
        "validate.type pem-certificate",
        "",
    );
    // A bundle takes any order.
    let b = check("ca", &v(&reversed), &rule(ValueType::PemBundle))
        .unwrap()
        .unwrap();
    assert_eq!(b.count, 2);
    // A key is not a certificate; garbage is not PEM.
    fails(
        check("crt", &v(&l.key), &rule(ValueType::PemCertificate)),
        "crt",
        "pem-certificate",
        &l.key,
    );
    fails(
        check("crt", &v(SENTINEL), &rule(ValueType::PemCertificate)),
        "crt",
        "pem-certificate",
        SENTINEL,
    );
    let broken = l.cert.replace("MII", "MIX");
    fails(
        check("crt", &v(&broken), &rule(ValueType::PemBundle)),
        "crt",
        "pem-bundle",
        &broken,
    );
}

#[test]
fn pem_private_key_kinds() {
    let root = ca("Test Root");
    let l = leaf(&root, &["a.test.invalid"], 30);
    for k in [
        l.key.as_str(),
        include_str!("testdata/rsa.key"),
        include_str!("testdata/rsa-pkcs1.key"),
        include_str!("testdata/ec.key"),
    ] {
        assert!(
            check("key", &v(k), &rule(ValueType::PemPrivateKey)).is_ok(),
            "{k}"
        );
    }
    fails(
        check("key", &v(&l.cert), &rule(ValueType::PemPrivateKey)),
        "key",
        "pem-private-key",
        &l.cert,
    );
    let two = format!("{}{}", l.key, l.key);
    fails(
        check("key", &v(&two), &rule(ValueType::PemPrivateKey)),
        "key",
        "pem-private-key",
        &two,
    );
    let unknown = format!("-----BEGIN {SENTINEL}-----\nAAAA\n-----END {SENTINEL}-----\n");
    fails(
        check("key", &v(&unknown), &rule(ValueType::PemPrivateKey)),
        "key",
        "pem-private-key",
        &unknown,
    );
}

#[test]
fn tls_builtin_matches_key_and_certificate() {
    let root = ca("Test Root");
    let a = leaf(&root, &["a.test.invalid"], 30);
    let b = leaf(&root, &["b.test.invalid"], 30);
    let chain = format!("{}{}", a.cert, root.2);
    let facts = builtin(TLS_TYPE, &tls(&chain, &a.key)).unwrap();
    assert_eq!(facts["tls.crt"].count, 2);
    // Another key.
    fails(
        builtin(TLS_TYPE, &tls(&chain, &b.key)),
        "tls.key",
        "kubernetes.io/tls",
        &b.key,
    );
    // Out of order chain.
    let reversed = format!("{}{}", root.2, a.cert);
    fails(
        builtin(TLS_TYPE, &tls(&reversed, &a.key)),
        "tls.crt",
        "kubernetes.io/tls",
        "",
    );
    // RSA (PKCS#8 and PKCS#1) and SEC1 EC keys, from openssl.
    let rsa = include_str!("testdata/rsa.crt");
    assert!(builtin(TLS_TYPE, &tls(rsa, include_str!("testdata/rsa.key"))).is_ok());
    assert!(builtin(TLS_TYPE, &tls(rsa, include_str!("testdata/rsa-pkcs1.key"))).is_ok());
    let ec = include_str!("testdata/ec.crt");
    assert!(builtin(TLS_TYPE, &tls(ec, include_str!("testdata/ec.key"))).is_ok());
    fails(
        builtin(TLS_TYPE, &tls(ec, include_str!("testdata/rsa.key"))),
        "tls.key",
        "kubernetes.io/tls",
        "",
    );
    fails(
        builtin(TLS_TYPE, &tls(rsa, &a.key)),
        "tls.key",
        "kubernetes.io/tls",
        "",
    );
    // A key is required.
    let only: BTreeMap<String, SecretBytes> = [("tls.crt".to_string(), v(&chain))].into();
    fails(builtin(TLS_TYPE, &only), "tls.key", "kubernetes.io/tls", "");
    // Opaque Secrets have no built-in rules.
    assert!(
        builtin("Opaque", &tls(SENTINEL, SENTINEL))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn tls_builtin_ed25519() {
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cert = CertificateParams::new(vec!["ed.test.invalid".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    assert!(builtin(TLS_TYPE, &tls(&cert.pem(), &key.serialize_pem())).is_ok());
    let other = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    fails(
        builtin(TLS_TYPE, &tls(&cert.pem(), &other.serialize_pem())),
        "tls.key",
        "kubernetes.io/tls",
        "",
    );
}

#[test]
fn dockerconfigjson_builtin() {
    let d = |s: &str| -> BTreeMap<String, SecretBytes> {
        [(".dockerconfigjson".to_string(), v(s))].into()
    };
    assert!(
        builtin(
            DOCKER_CONFIG_JSON_TYPE,
            &d(r#"{"auths":{"r.example":{"auth":"eA=="}}}"#)
        )
        .is_ok()
    );
    let no_auths = format!(r#"{{"{SENTINEL}":{{}}}}"#);
    fails(
        builtin(DOCKER_CONFIG_JSON_TYPE, &d(&no_auths)),
        ".dockerconfigjson",
        "kubernetes.io/dockerconfigjson",
        &no_auths,
    );
    fails(
        builtin(DOCKER_CONFIG_JSON_TYPE, &d(r#"{"auths":[]}"#)),
        ".dockerconfigjson",
        "dockerconfigjson",
        "",
    );
    let cut = format!(r#"{{"auths":{{"{SENTINEL}""#);
    fails(
        builtin(DOCKER_CONFIG_JSON_TYPE, &d(&cut)),
        ".dockerconfigjson",
        "dockerconfigjson",
        &cut,
    );
}
