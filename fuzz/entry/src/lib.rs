//! Entry points of secretsync's fuzz targets (`fuzz/`, cargo-fuzz) and of their corpus regression
//! test (`tests/fuzz_corpus.rs`, run by `make test`): each takes arbitrary bytes, drives one parser or
//! transform through secretsync's public API, and checks what must hold for any input (no panic;
//! errors carry no input bytes that look like a value; outputs stay bounded).
//!
//! A workspace member of its own so that the production crate carries none of this. The one thing
//! beyond secretsync's public API it uses (the Azure provider on an in-memory HTTP client, for
//! [`payload_azure`]) comes from secretsync's test-only feature `fuzzing`. [`payload`] is the
//! socket-based harness of the Vault and AWS payload targets.

pub mod payload;

use std::collections::BTreeMap;
use std::path::Path;

use secretsync::value::SecretBytes;

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
    let _ = secretsync::controller::property::parse_path(&path);
    let value = SecretBytes::new(value.to_vec());
    match secretsync::controller::property::select(&value, &path) {
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
    let _ = secretsync::controller::template::check_syntax("out", &tpl);
    let values: BTreeMap<String, SecretBytes> = [
        ("k".to_string(), SecretBytes::new(a.to_vec())),
        ("other".to_string(), SecretBytes::new(b.to_vec())),
    ]
    .into();
    let templates: BTreeMap<String, String> = [("out".to_string(), tpl.clone())].into();
    match secretsync::controller::template::render(&templates, &values) {
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
    use secretsync::providers::file::{Keyring, Store};
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
pub fn fuzz_keyring() -> secretsync::providers::file::Keyring {
    use secretsync::providers::file::{Keyring, MasterKey};
    Keyring::single(MasterKey::from_raw("fuzz", &[7u8; 32]).expect("fuzz key"))
}

/// A valid file-store document under [`fuzz_keyring`] with two entries (a seed input).
pub fn file_store_seed() -> Vec<u8> {
    let ring = fuzz_keyring();
    let mut store = secretsync::providers::file::Store::init(&ring).expect("init");
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
    match secretsync::cli::manifests::load_str(Path::new("fuzz.yaml"), &t, "default") {
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
    if let Ok(d) = secretsync::api::duration::parse(&t) {
        let _ = secretsync::api::duration::format(d);
    }
}

/// Building the desired Secret from a SecretRef spec (JSON) and one provider value:
/// `spec-json NUL value`.
pub fn desired_secret(data: &[u8]) {
    let (spec, value) = split(data);
    let Ok(spec) = serde_json::from_slice::<secretsync::api::SecretRefSpec>(spec) else {
        return;
    };
    let plan = secretsync::controller::desired::plan(&spec);
    let mut answers = secretsync::controller::desired::Answers::default();
    for r in plan.reads {
        answers.values.insert(
            r,
            secretsync::providers::FetchedSecret {
                value: SecretBytes::new(value.to_vec()),
                meta: Default::default(),
            },
        );
    }
    let key = secretsync::audit::HmacKey::new(vec![5; 32]);
    if let Ok(d) = secretsync::controller::desired::build("fuzz", &spec, &answers, &key) {
        let total: usize = d.data.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(total <= secretsync::api::MAX_SECRET_BYTES);
        assert!(d.data.values().all(|v| !v.is_empty()));
    }
}

/// Validating values (`validate` and the built-in rules of Secret types): `selector value`, where
/// `selector` (byte 0, mod 8) picks `validate.type` string, json, base64, pem-certificate,
/// pem-private-key or pem-bundle (0–5, with length bounds, and for json a required property), the
/// `kubernetes.io/tls` rule over `tls.crt NUL tls.key` (6) or the `kubernetes.io/dockerconfigjson`
/// rule (7). Checks: no panic; errors are one bounded line naming the key, never quoting the value;
/// certificate facts stay bounded.
pub fn validate(data: &[u8]) {
    use secretsync::api::{ValueType, ValueValidation};
    use secretsync::validate::{self, CertInfo, MAX_SANS};
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let bounded = |facts: &CertInfo| {
        assert!(facts.subject.chars().count() <= 256);
        assert!(facts.sans.len() <= MAX_SANS);
        assert!(facts.count >= 1);
    };
    let error = |e: &validate::ValidateError, key: &str| {
        let msg = e.to_string();
        assert_no_mark("validate", &msg);
        assert!(!msg.contains('\n'), "validate: a multi-line error: {msg}");
        assert!(msg.len() <= 1024, "validate: an unbounded error: {msg}");
        assert!(
            msg.contains(&format!("{key:?}")),
            "validate: the key is not named: {msg}"
        );
    };
    match selector % 8 {
        t @ 0..=5 => {
            let type_ = [
                ValueType::String,
                ValueType::Json,
                ValueType::Base64,
                ValueType::PemCertificate,
                ValueType::PemPrivateKey,
                ValueType::PemBundle,
            ][usize::from(t)];
            let rules = ValueValidation {
                type_: Some(type_),
                min_length: Some(1),
                max_length: Some(1 << 20),
                pattern: None,
                required_properties: if type_ == ValueType::Json {
                    vec!["auths".into()]
                } else {
                    Vec::new()
                },
            };
            match validate::check("k", &SecretBytes::new(rest.to_vec()), &rules) {
                Ok(Some(facts)) => bounded(&facts),
                Ok(None) => {}
                Err(e) => error(&e, "k"),
            }
        }
        6 => {
            let (crt, key) = split(rest);
            let data: BTreeMap<String, SecretBytes> = [
                ("tls.crt".to_string(), SecretBytes::new(crt.to_vec())),
                ("tls.key".to_string(), SecretBytes::new(key.to_vec())),
            ]
            .into();
            match validate::builtin(validate::TLS_TYPE, &data) {
                Ok(facts) => facts.values().for_each(bounded),
                Err(e) => {
                    let k = e.key().to_string();
                    error(&e, &k)
                }
            }
        }
        _ => {
            let data: BTreeMap<String, SecretBytes> = [(
                ".dockerconfigjson".to_string(),
                SecretBytes::new(rest.to_vec()),
            )]
            .into();
            if let Err(e) = validate::builtin(validate::DOCKER_CONFIG_JSON_TYPE, &data) {
                error(&e, ".dockerconfigjson");
            }
        }
    }
}

/// Azure Key Vault answers, through the real provider ([`secretsync::providers::azure::AzureKeyVault`]:
/// the Azure SDK's pipeline with Key Vault's challenge flow, the Entra token request of
/// `ClientSecretCredential`, `check_success`, model decoding and the list pager, then our
/// conversion and error classification) on an in-memory HTTP client: `op part status payload...`.
///
/// - `op` (byte 0, mod 4): get the latest `db`, get version [`azure::VERSION`] of it, find (prefix
///   `d`, tag `team=a`), validate.
/// - `part` (byte 1, mod 3): what the payload is: the vault's answer to the authorized request, the
///   token endpoint's answer, or the `WWW-Authenticate` challenge of the vault's 401 to the first,
///   unauthenticated request. The other answers are valid ones.
/// - `status` (byte 2): the payload's HTTP status, from [`azure::STATUSES`] (a challenge is always
///   a 401).
///
/// A listing gets the payload for its first three pages (so a `nextLink` is followed), then an
/// empty last page. Checks: no panic; errors are one bounded line that never quotes the secret
/// value of the answer, the client secret or the access token; not-found only from a 404 that
/// names `SecretNotFound`; the vault's HTTP status decides the error class; a non-200 answer is
/// never a success; a value served is exactly the answer's, never before its `nbf`, and never in
/// `Debug` output.
pub fn payload_azure(data: &[u8]) {
    azure::run(data)
}

/// The in-memory Key Vault and Entra ID of [`payload_azure`].
pub mod azure {
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use azure_core::http::headers::{HeaderName, Headers};
    use azure_core::http::{AsyncRawResponse, HttpClient, Request, StatusCode};
    use serde_json::Value;

    use secretsync::providers::azure::{AzureAuthConfig, AzureKeyVault, AzureSettings};
    use secretsync::providers::{FetchedSecret, FindQuery, Provider, ProviderError, RemoteRef};
    use secretsync::value::SecretBytes;

    use super::MARK;

    /// The statuses byte 2 picks from.
    pub const STATUSES: [u16; 11] = [200, 200, 200, 401, 403, 404, 408, 429, 500, 503, 400];
    /// The vault (never contacted: the HTTP client is in memory).
    pub const VAULT: &str = "https://fuzz.vault.azure.net";
    /// The tenant of the credential and of the default challenge.
    pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    /// The version op 1 asks for.
    pub const VERSION: &str = "0123456789abcdef0123456789abcdef";
    /// The client secret, which must never come back in an error.
    pub const CLIENT_SECRET: &str = "cs~Fz8Q-client-secret-never-quoted";
    /// The access token the default token answer issues, which must never come back in an error.
    pub const TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJmdXp6In0.fuzz-access-token";
    /// The value of the default Get Secret answer.
    pub const DEFAULT_VALUE: &str = "FUZZSECRET-default-value";
    /// Pages of a listing answered with the payload before an empty last page.
    pub const PAGES: usize = 3;

    const CLIENT_ID: &str = "11111111-1111-1111-1111-111111111111";
    const CHALLENGE: &str = "Bearer authorization=\"https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47\", resource=\"https://vault.azure.net\"";
    const UNAUTHORIZED: &[u8] = br#"{"error":{"code":"Unauthorized","message":"AKV10000: Request is missing a Bearer or PoP token."}}"#;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Op {
        Get,
        GetVersion,
        Find,
        Validate,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Part {
        Vault,
        Token,
        Challenge,
    }

    #[derive(Debug)]
    struct Answers {
        op: Op,
        part: Part,
        status: u16,
        payload: Vec<u8>,
        pages: Mutex<usize>,
    }

    fn default_bundle() -> String {
        format!(
            r#"{{"value":"{DEFAULT_VALUE}","id":"{VAULT}/secrets/db/{VERSION}","attributes":{{"enabled":true,"created":1700000000,"updated":1700000000,"recoveryLevel":"Recoverable+Purgeable","recoverableDays":90}},"tags":{{"team":"a"}}}}"#
        )
    }

    fn default_page() -> String {
        format!(
            r#"{{"value":[{{"id":"{VAULT}/secrets/db","attributes":{{"enabled":true,"created":1700000000,"updated":1700000000}},"tags":{{"team":"a"}}}},{{"id":"{VAULT}/secrets/other","attributes":{{"enabled":true}},"tags":{{"team":"a"}}}}],"nextLink":null}}"#
        )
    }

    fn token_answer() -> String {
        format!(
            r#"{{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"{TOKEN}"}}"#
        )
    }

    impl Answers {
        fn answer(&self, req: &Request) -> (u16, Headers, Vec<u8>) {
            let mut h = Headers::new();
            h.insert(
                HeaderName::from_static("content-type"),
                "application/json; charset=utf-8",
            );
            let fuzzed = |part: Part, h: &mut Headers| {
                if self.part == part && self.status == 429 {
                    h.insert(HeaderName::from_static("retry-after"), "3");
                }
                (self.part == part).then(|| (self.status, self.payload.clone()))
            };
            if req.url().host_str() == Some("login.microsoftonline.com") {
                let (s, b) = fuzzed(Part::Token, &mut h)
                    .unwrap_or_else(|| (200, token_answer().into_bytes()));
                return (s, h, b);
            }
            let authorized = req
                .headers()
                .get_optional_str(&HeaderName::from_static("authorization"))
                .is_some();
            if !authorized {
                let challenge = if self.part == Part::Challenge {
                    String::from_utf8_lossy(&self.payload).into_owned()
                } else {
                    CHALLENGE.to_string()
                };
                h.insert(HeaderName::from_static("www-authenticate"), challenge);
                return (401, h, UNAUTHORIZED.to_vec());
            }
            let listing = matches!(self.op, Op::Find | Op::Validate);
            if listing {
                let mut n = self.pages.lock().unwrap_or_else(|p| p.into_inner());
                *n += 1;
                if *n > PAGES {
                    return (200, h, br#"{"value":[]}"#.to_vec());
                }
            }
            let (s, b) = fuzzed(Part::Vault, &mut h).unwrap_or_else(|| {
                let b = if listing {
                    default_page()
                } else {
                    default_bundle()
                };
                (200, b.into_bytes())
            });
            (s, h, b)
        }
    }

    #[async_trait]
    impl HttpClient for Answers {
        async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
            let (status, headers, body) = self.answer(request);
            Ok(AsyncRawResponse::from_bytes(
                StatusCode::from(status),
                headers,
                body,
            ))
        }
    }

    enum Out {
        Value(FetchedSecret),
        Names(Vec<String>),
        Valid,
    }

    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
    }

    /// The entry point of [`super::payload_azure`].
    pub fn run(data: &[u8]) {
        let at = |i: usize| data.get(i).copied().unwrap_or(0) as usize;
        let op = [Op::Get, Op::GetVersion, Op::Find, Op::Validate][at(0) % 4];
        let part = [Part::Vault, Part::Token, Part::Challenge][at(1) % 3];
        let status = if part == Part::Challenge {
            401
        } else {
            STATUSES[at(2) % STATUSES.len()]
        };
        let payload = data.get(3..).unwrap_or_default().to_vec();
        let answers = Arc::new(Answers {
            op,
            part,
            status,
            payload,
            pages: Mutex::new(0),
        });
        let mut s = AzureSettings::new(
            "fuzz",
            VAULT,
            AzureAuthConfig::ClientSecret {
                client_id: CLIENT_ID.into(),
                secret: SecretBytes::from(CLIENT_SECRET),
            },
        );
        s.tenant_id = Some(TENANT.into());
        let p = AzureKeyVault::with_http_client_for_fuzzing(s, answers.clone()).expect("provider");
        let query = FindQuery {
            path: Some("d".into()),
            name_regexp: None,
            tags: [("team".to_string(), "a".to_string())].into(),
        };
        let res = RT.with(|rt| {
            rt.block_on(async {
                match op {
                    Op::Get => p.get(&RemoteRef::latest("db")).await.map(Out::Value),
                    Op::GetVersion => p
                        .get(&RemoteRef {
                            key: "db".into(),
                            version: Some(VERSION.into()),
                        })
                        .await
                        .map(Out::Value),
                    Op::Find => p.find(&query).await.map(Out::Names),
                    Op::Validate => p.validate().await.map(|()| Out::Valid),
                }
            })
        });
        check(op, part, status, &answers.payload, res);
    }

    /// The answer's `value` when it contains [`MARK`] and no other string of the document contains
    /// it (then an error quoting it could only have taken it from the value).
    fn lone_value(payload: &[u8]) -> Option<String> {
        fn count(v: &Value, needle: &str) -> usize {
            match v {
                Value::String(s) => usize::from(s.contains(needle)),
                Value::Array(a) => a.iter().map(|x| count(x, needle)).sum(),
                Value::Object(o) => o
                    .iter()
                    .map(|(k, x)| usize::from(k.contains(needle)) + count(x, needle))
                    .sum(),
                _ => 0,
            }
        }
        let doc: Value = serde_json::from_slice(payload).ok()?;
        let value = doc.get("value")?.as_str()?;
        (value.contains(MARK) && count(&doc, value) == 1).then(|| value.to_string())
    }

    fn check(op: Op, part: Part, status: u16, payload: &[u8], res: Result<Out, ProviderError>) {
        let text = String::from_utf8_lossy(payload);
        let get = matches!(op, Op::Get | Op::GetVersion);
        let vault = part == Part::Vault;
        match res {
            Err(e) => {
                let msg = e.to_string();
                let what = format!("azure {op:?}, {part:?} answer HTTP {status}");
                assert!(msg.len() < 4096, "{what}: unbounded error text: {msg}");
                assert!(
                    !msg.contains(['\r', '\n']),
                    "{what}: a multi-line error: {msg:?}"
                );
                for secret in [CLIENT_SECRET, TOKEN] {
                    assert!(
                        text.contains(secret) || !msg.contains(secret),
                        "{what}: the error quotes a credential: {msg}"
                    );
                }
                if vault
                    && status == 200
                    && get
                    && let Some(v) = lone_value(payload)
                {
                    assert!(
                        !msg.contains(&v),
                        "{what}: the error quotes the value: {msg}"
                    );
                }
                if let ProviderError::NotFound { .. } = e {
                    assert!(
                        vault && get && status == 404 && text.contains("SecretNotFound"),
                        "{what}: not-found from an ambiguous answer: {msg}"
                    );
                }
                if vault {
                    let reason = e.reason().as_str();
                    let expected: &[&str] = match status {
                        // (find's page limit is out of reach: listings end after PAGES pages)
                        200 => &["InvalidRemoteValue"],
                        401 | 403 => &["AccessDenied"],
                        404 if get => &["RemoteKeyNotFound", "ProviderUnavailable"],
                        404 | 408 | 500 | 503 => &["ProviderUnavailable"],
                        429 => &["ProviderThrottled"],
                        _ => &["InvalidStoreConfig"],
                    };
                    assert!(
                        expected.contains(&reason),
                        "{what}: classified {reason}, expected one of {expected:?}: {msg}"
                    );
                }
            }
            Ok(out) => {
                let what = format!("azure {op:?}, {part:?} answer HTTP {status}");
                // validate() accepts a 403 on the listing: the credential is valid, `list` not granted.
                let ok_status = status == 200 || (op == Op::Validate && vault && status == 403);
                assert!(
                    part == Part::Challenge || ok_status,
                    "{what}: taken as a success"
                );
                match out {
                    Out::Value(f) => {
                        let doc = if vault {
                            serde_json::from_slice::<Value>(payload).ok()
                        } else {
                            None
                        };
                        let expected = if vault {
                            doc.as_ref()
                                .and_then(|d| d.get("value")?.as_str().map(str::to_string))
                        } else {
                            Some(DEFAULT_VALUE.to_string())
                        };
                        let served = f.value.expose_str();
                        if let Some(expected) = &expected {
                            assert_eq!(served, Some(expected.as_str()), "{what}: another value");
                        }
                        if let Some(v) = served.filter(|v| v.contains(MARK)) {
                            assert!(
                                !format!("{f:?}").contains(v),
                                "{what}: Debug shows the value"
                            );
                        }
                        let nbf = doc
                            .as_ref()
                            .and_then(|d| d.pointer("/attributes/nbf")?.as_i64());
                        if let Some(nbf) = nbf {
                            assert!(
                                nbf <= chrono::Utc::now().timestamp() + 1,
                                "{what}: served before its nbf"
                            );
                        }
                    }
                    Out::Names(names) => {
                        assert!(
                            names.windows(2).all(|w| w[0] < w[1]),
                            "{what}: names not sorted and unique"
                        );
                        assert!(
                            names.iter().all(|n| n.starts_with('d')),
                            "{what}: a name outside the prefix"
                        );
                        if !vault {
                            assert_eq!(names, ["db"], "{what}: the default listing");
                        }
                    }
                    Out::Valid => {}
                }
            }
        }
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
    ("validate", validate),
    ("payload_azure", payload_azure),
];
