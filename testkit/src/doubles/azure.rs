//! Azure Key Vault for tests: an in-process HTTPS double of the Azure Key Vault secrets data plane
//! and of the Microsoft Entra ID token endpoint. No Key Vault emulator exists on our
//! registries (see `TESTING.md`, "Azure Key Vault: no emulator exists"), so this is written from
//! Microsoft's public REST reference and from what `azure_security_keyvault_secrets` 1.0 /
//! `azure_identity` 1.0 send and parse.
//!
//! One server on `https://127.0.0.1:<port>` is both the vault base URL and the authority host. TLS
//! uses a fresh [`crate::tls::TestCa`] (written to [`KeyVaultDouble::ca_file`] for `SSL_CERT_FILE`)
//! and a leaf certificate for DNS `localhost` and IP `127.0.0.1`; ALPN offers `http/1.1` only;
//! connections are kept alive and served concurrently.
//!
//! What is emulated:
//! - **Vault routes** (`api-version` query required, else 400 `BadParameter`):
//!   `GET /secrets/{name}[/]` (latest), `GET /secrets/{name}/{version}`, `PUT /secrets/{name}`
//!   (Set Secret), `PATCH /secrets/{name}/{version}` (Update Secret), `GET /secrets` and
//!   `GET /secrets/{name}/versions` (pages of `SecretItem`s with an absolute `nextLink`). Names are
//!   1–127 of `[0-9a-zA-Z-]` (else 400 `BadParameter`), looked up case-insensitively, returned as
//!   first set. Ids are absolute URLs; versions are 32 lowercase hex; times are Unix seconds.
//!   Unknown secret or version: 404 `SecretNotFound`. Disabled version: 403 `Forbidden` /
//!   `SecretDisabled`. `exp`/`nbf` are not enforced (Key Vault returns those values); lists include
//!   disabled, expired and not-yet-valid secrets. The secrets list carries each secret's latest
//!   version's attributes under an unversioned id; the versions list is sorted by version id.
//! - **Challenge flow**: a vault request without `Authorization` gets 401 with an empty body and
//!   `WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/{TENANT}",
//!   resource="https://vault.azure.net"`. A bearer token this double did not issue, or revoked, or
//!   expired, gets the same 401 plus a Key Vault `Unauthorized` error body.
//! - **Token endpoint** `POST /{tenant}/oauth2/v2.0/token` (client credentials with a client secret
//!   or a federated client assertion), with Entra's error bodies (`error`, `error_description`
//!   with the real `\r\nTrace ID: …\r\nCorrelation ID: …\r\nTimestamp: …` tail, `error_codes`,
//!   `timestamp`, `trace_id`, `correlation_id`, `error_uri`). Note: `azure_identity` 1.0 reads
//!   `error_description` as a borrowed `&str`, so these JSON escapes make it fail to parse the body
//!   (as it does against real Entra); the AADSTS text then appears only inside a deserialization
//!   error further down the error's source chain.
//! - **Faults** ([`Rule`]): throttling with `Retry-After`, 5xx, 403, delays, truncated bodies,
//!   spurious 401s, per path substring; vault faults carry Key Vault error bodies, token-endpoint
//!   faults Entra error bodies.
//!
//! Not emulated: soft delete (`delete` purges), backup/restore, certificate-backed secrets
//! (`kid`, `managed`), managed identity (IMDS), real JWT validation (tokens are opaque to the vault
//! side: only issuance by this double, revocation and expiry are checked).

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::tls::TestCa;

/// The tenant the double's token endpoint knows (and names in its challenges).
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

/// The challenge's `resource`; the token scope must be `{RESOURCE}/.default`.
const RESOURCE: &str = "https://vault.azure.net";
/// The `api-version` the double writes into `nextLink`s (the service uses its own there; clients
/// re-set theirs).
const NEXT_LINK_API_VERSION: &str = "7.6";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const VAULT_NAME: &str = "kv-double";

/// Attributes of a secret version, as given to [`KeyVaultDouble::set_with`] and edited by
/// [`KeyVaultDouble::update`].
#[derive(Clone, Debug)]
pub struct SetOptions {
    /// Tags of the version (`tags` in the bundle).
    pub tags: Vec<(String, String)>,
    /// `contentType` of the version.
    pub content_type: Option<String>,
    /// Default `true`.
    pub enabled: bool,
    /// `nbf`, Unix seconds.
    pub not_before: Option<i64>,
    /// `exp`, Unix seconds.
    pub expires: Option<i64>,
}

impl Default for SetOptions {
    fn default() -> Self {
        SetOptions {
            tags: Vec::new(),
            content_type: None,
            enabled: true,
            not_before: None,
            expires: None,
        }
    }
}

/// A fault the double can inject.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// 429 with `Retry-After: {retry_after_secs}` and a `Throttled` error body.
    Throttle {
        /// Seconds in `Retry-After`.
        retry_after_secs: u64,
    },
    /// This status with an error body (`InternalServerError`, `ServiceUnavailable`, …).
    Status(u16),
    /// 403 `Forbidden` (access policy denies the operation; `innererror.code` `AccessDenied`). The
    /// message contains `\r\n` JSON escapes, like the service's.
    Forbidden,
    /// Sleep, then answer normally.
    Delay(Duration),
    /// Answer normally but send only half of the body (`Content-Length` announces all of it), then
    /// close the connection.
    Truncate,
    /// 401 with the challenge header and an `Unauthorized` body, even with a valid token.
    Unauthorized,
}

/// When a fault applies.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Substring of the request path (`""`: every request; `"/oauth2/"`: the token endpoint).
    pub path_contains: String,
    /// What the double answers instead.
    pub fault: Fault,
    /// How many matching requests it hits (`None`: until cleared).
    pub times: Option<usize>,
}

impl Rule {
    /// Every request gets `fault` until cleared.
    pub fn always(fault: Fault) -> Rule {
        Rule {
            path_contains: String::new(),
            fault,
            times: None,
        }
    }
    /// Only requests whose path contains `s`.
    pub fn path(mut self, s: &str) -> Rule {
        self.path_contains = s.to_string();
        self
    }
    /// Only the next `n` matching requests.
    pub fn times(mut self, n: usize) -> Rule {
        self.times = Some(n);
        self
    }
}

/// Request counters. `gets`, `lists` and `sets` count every request to that route that carried an
/// `Authorization` header, whatever the answer (faulted, rejected token, 404, …); requests answered
/// with the no-token challenge count only in `challenges`.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// 401 challenges sent to vault requests without `Authorization`.
    pub challenges: usize,
    /// Every request to the token endpoint (faulted and failed ones included).
    pub token_requests: usize,
    /// `GET /secrets/{name}[/]` and `GET /secrets/{name}/{version}`.
    pub gets: usize,
    /// Pages of `GET /secrets` and `GET /secrets/{name}/versions`.
    pub lists: usize,
    /// `PUT /secrets/{name}`.
    pub sets: usize,
    /// Faults injected.
    pub faults: usize,
}

/// One request as seen by the double.
#[derive(Clone, Debug)]
pub struct RequestLog {
    /// HTTP method (`GET`, `POST`, ...).
    pub method: String,
    /// Raw (still percent-encoded) path.
    pub path: String,
    /// Raw query string (without `?`).
    pub query: String,
    /// The status sent (for `Truncate`, the status of the truncated answer).
    pub status: u16,
    /// The request carried an `Authorization` header (valid or not).
    pub authorized: bool,
}

struct Version {
    id: String,
    value: String,
    opts: SetOptions,
    created: i64,
    updated: i64,
}

struct Secret {
    /// The name as first set.
    name: String,
    /// In creation order; the last one is the latest.
    versions: Vec<Version>,
}

impl Secret {
    fn latest(&self) -> &Version {
        self.versions.last().expect("a secret has a version")
    }
    fn version(&self, id: &str) -> Option<&Version> {
        self.versions.iter().find(|v| v.id == id)
    }
}

#[derive(Default)]
struct Client {
    secret: Option<String>,
    federated: Vec<String>,
    /// Federated credentials by claims: the assertion's `sub`, with `aud` containing
    /// `api://AzureADTokenExchange` (what Entra checks of a Kubernetes service-account token,
    /// besides the issuer's signature, which the double cannot verify).
    federated_subjects: Vec<String>,
}

/// A managed identity served by the App Service-style endpoint (`IDENTITY_ENDPOINT` =
/// `{url}/msi/token`, `IDENTITY_HEADER` = `header`).
struct ManagedIdentity {
    header: String,
    client_id: String,
}

struct Token {
    expires: SystemTime,
    client_id: String,
}

struct State {
    secrets: HashMap<String, Secret>,
    clients: HashMap<String, Client>,
    managed: Vec<ManagedIdentity>,
    tokens: HashMap<String, Token>,
    token_lifetime: i64,
    page_size: usize,
    rules: Vec<Rule>,
    counts: Counts,
    log: Vec<RequestLog>,
}

struct Shared {
    base: String,
    state: Mutex<State>,
}

/// The running double; the server stops when this is dropped.
pub struct KeyVaultDouble {
    /// `https://127.0.0.1:<port>`: the vault base URL and the authority host.
    pub url: String,
    /// PEM of the CA that signed the server certificate.
    pub ca_pem: String,
    /// [`Self::ca_pem`] in a file (for `SSL_CERT_FILE`), removed on drop.
    pub ca_file: PathBuf,
    shared: Arc<Shared>,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KeyVaultDouble {
    fn drop(&mut self) {
        // The accept task owns the connection tasks (a JoinSet): aborting it ends them all.
        self.task.abort();
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn new_version_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn new_guid() -> String {
    let h = format!("{:032x}", rand::random::<u128>());
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn valid_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// TLS material: (CA PEM, server chain, server key).
fn certificates() -> (String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let ca = TestCa::new("secretsync test Key Vault double CA").expect("CA certificate");
    let leaf = ca
        .server_cert(&["localhost", "127.0.0.1"])
        .expect("leaf certificate");
    (
        ca.cert_pem.clone(),
        vec![
            CertificateDer::from(leaf.cert_der),
            CertificateDer::from(ca.cert_der().to_vec()),
        ],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der)),
    )
}

impl KeyVaultDouble {
    /// Starts the double on 127.0.0.1 (a free port) with fresh TLS material and empty state.
    pub async fn start() -> KeyVaultDouble {
        let (ca_pem, chain, key) = certificates();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server certificate");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));

        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = dir.path().join("kv-double-ca.pem");
        std::fs::write(&ca_file, &ca_pem).expect("write CA file");

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("https://{}", listener.local_addr().expect("local addr"));
        let shared = Arc::new(Shared {
            base: url.clone(),
            state: Mutex::new(State {
                secrets: HashMap::new(),
                clients: HashMap::new(),
                managed: Vec::new(),
                tokens: HashMap::new(),
                token_lifetime: 3599,
                page_size: 25,
                rules: Vec::new(),
                counts: Counts::default(),
                log: Vec::new(),
            }),
        });
        let sh = shared.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((tcp, _)) = accepted else { continue };
                        let _ = tcp.set_nodelay(true);
                        let (acceptor, sh) = (acceptor.clone(), sh.clone());
                        conns.spawn(async move {
                            let Ok(tls) = acceptor.accept(tcp).await else { return };
                            let svc = hyper::service::service_fn(move |req| {
                                let sh = sh.clone();
                                async move { Ok::<_, Infallible>(handle(sh, req).await) }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .keep_alive(true)
                                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                                .await;
                        });
                    }
                    // Reap finished connections.
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        KeyVaultDouble {
            url,
            ca_pem,
            ca_file,
            shared,
            _dir: dir,
            task,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap()
    }

    /// The authority host for credentials (`== url`).
    pub fn authority_host(&self) -> String {
        self.url.clone()
    }

    /// Registers an app (client id) with a client secret in [`TENANT`].
    pub fn register_client_secret(&self, client_id: &str, secret: &str) {
        self.state()
            .clients
            .entry(client_id.to_string())
            .or_default()
            .secret = Some(secret.to_string());
    }

    /// Registers a federated identity credential for an app: a `client_assertion` equal to
    /// `subject_token` is accepted.
    pub fn register_federated(&self, client_id: &str, subject_token: &str) {
        self.state()
            .clients
            .entry(client_id.to_string())
            .or_default()
            .federated
            .push(subject_token.to_string());
    }

    /// Registers a federated identity credential by subject, as `az identity federated-credential
    /// create --subject ... --audiences api://AzureADTokenExchange` does: a JWT assertion whose `sub`
    /// is `subject` and whose `aud` contains the token-exchange audience is accepted.
    pub fn register_federated_subject(&self, client_id: &str, subject: &str) {
        self.state()
            .clients
            .entry(client_id.to_string())
            .or_default()
            .federated_subjects
            .push(subject.to_string());
    }

    /// Registers a managed identity for the App Service managed-identity protocol (API version
    /// 2019-08-01): `GET {url}/msi/token?api-version=2019-08-01&resource=...[&client_id=...]` with the
    /// header `X-IDENTITY-HEADER: <header>`. `client_id` is the user-assigned identity's client id
    /// (a request without `client_id` gets the first registered identity, the "system-assigned" one).
    pub fn register_managed_identity(&self, header: &str, client_id: &str) {
        self.state().managed.push(ManagedIdentity {
            header: header.to_string(),
            client_id: client_id.to_string(),
        });
    }

    /// Sets a new version (enabled, no tags); returns its version id.
    pub fn set(&self, name: &str, value: &str) -> String {
        self.set_with(name, value, SetOptions::default())
    }

    /// Sets a new version with attributes; it becomes the latest. Returns its version id.
    pub fn set_with(&self, name: &str, value: &str, opts: SetOptions) -> String {
        assert!(valid_name(name), "invalid Key Vault secret name {name:?}");
        store(&mut self.state(), name, value.to_string(), opts)
    }

    /// Edits the attributes of the latest version (`None`) or of `version`; bumps `updated`.
    pub fn update(&self, name: &str, version: Option<&str>, f: impl FnOnce(&mut SetOptions)) {
        let mut st = self.state();
        let s = st
            .secrets
            .get_mut(&name.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("no secret {name}"));
        let v = match version {
            None => s.versions.last_mut().expect("version"),
            Some(id) => s
                .versions
                .iter_mut()
                .find(|v| v.id == id)
                .unwrap_or_else(|| panic!("no version {id} of {name}")),
        };
        f(&mut v.opts);
        v.updated = now_secs();
    }

    /// Deletes (and purges) a secret: afterwards it is 404 `SecretNotFound` and can be set anew.
    pub fn delete(&self, name: &str) {
        self.state().secrets.remove(&name.to_ascii_lowercase());
    }

    /// Rejects every access token issued so far (401 + challenge); later tokens are valid.
    pub fn revoke_tokens(&self) {
        self.state().tokens.clear();
    }

    /// `expires_in` (and real lifetime) of tokens issued from now on; default 3599.
    pub fn set_token_lifetime(&self, secs: i64) {
        self.state().token_lifetime = secs;
    }

    /// Items per list page (default 25, like the service); a smaller `maxresults` wins.
    pub fn set_page_size(&self, n: usize) {
        assert!(n > 0, "page size must be positive");
        self.state().page_size = n;
    }

    /// Adds a fault rule (rules are checked in order; the first live match fires).
    pub fn fault(&self, rule: Rule) {
        self.state().rules.push(rule);
    }

    /// Removes all fault rules.
    pub fn clear_faults(&self) {
        self.state().rules.clear();
    }

    /// How many requests of each kind the double has served.
    pub fn counts(&self) -> Counts {
        self.state().counts.clone()
    }

    /// Set every count back to zero.
    pub fn reset_counts(&self) {
        self.state().counts = Counts::default();
    }

    /// Every request so far, in order of completion.
    pub fn requests(&self) -> Vec<RequestLog> {
        self.state().log.clone()
    }
}

fn store(st: &mut State, name: &str, value: String, opts: SetOptions) -> String {
    let id = new_version_id();
    let now = now_secs();
    let version = Version {
        id: id.clone(),
        value,
        opts,
        created: now,
        updated: now,
    };
    st.secrets
        .entry(name.to_ascii_lowercase())
        .or_insert_with(|| Secret {
            name: name.to_string(),
            versions: Vec::new(),
        })
        .versions
        .push(version);
    id
}

// ---------------------------------------------------------------------------------------------
// HTTP plumbing

/// A response body with a single chunk. `exact: false` hides the length from hyper, so that an
/// explicit, larger `Content-Length` header is sent as is (the `Truncate` fault).
struct OneChunk {
    data: Option<Bytes>,
    exact: bool,
}

impl Body for OneChunk {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.data.take().map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.data, self.exact) {
            (Some(d), true) => SizeHint::with_exact(d.len() as u64),
            (None, _) => SizeHint::with_exact(0),
            (Some(_), false) => SizeHint::default(),
        }
    }
}

/// A response before it is put on the wire.
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(status: u16, v: Value) -> Answer {
        Answer {
            status,
            headers: vec![("content-type", "application/json; charset=utf-8".into())],
            body: v.to_string().into_bytes(),
        }
    }
    fn header(mut self, k: &'static str, v: impl Into<String>) -> Answer {
        self.headers.push((k, v.into()));
        self
    }
}

fn challenge_header() -> String {
    format!(
        r#"Bearer authorization="https://login.microsoftonline.com/{TENANT}", resource="{RESOURCE}""#
    )
}

fn kv_error(status: u16, code: &str, message: &str) -> Answer {
    Answer::json(status, json!({"error": {"code": code, "message": message}}))
}

fn kv_error_inner(status: u16, code: &str, message: &str, inner: &str) -> Answer {
    Answer::json(
        status,
        json!({"error": {"code": code, "message": message, "innererror": {"code": inner}}}),
    )
}

fn bad_parameter(message: &str) -> Answer {
    kv_error(400, "BadParameter", message)
}

fn not_found(what: &str) -> Answer {
    kv_error(
        404,
        "SecretNotFound",
        &format!(
            "A secret with (name/id) {what} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
    )
}

fn unauthorized(message: &str) -> Answer {
    kv_error(401, "Unauthorized", message).header("www-authenticate", challenge_header())
}

/// An Entra ID token endpoint error, with the service's `\r\n`-separated description tail.
fn entra_error(status: u16, error: &str, code: u32, description: &str) -> Answer {
    let (trace, corr) = (new_guid(), new_guid());
    let ts = chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
    Answer::json(
        status,
        json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {description}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}\r\nTimestamp: {ts}"
            ),
            "error_codes": [code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": corr,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// `a=b&c=d` (query or form body) into decoded pairs; `+` is a space.
fn pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(&k.replace('+', " ")), decode(&v.replace('+', " ")))
        })
        .collect()
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

async fn read_body(mut body: Incoming) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(Ok(frame)) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
    {
        if let Ok(d) = frame.into_data() {
            out.extend_from_slice(&d);
        }
    }
    out
}

async fn handle(sh: Arc<Shared>, req: Request<Incoming>) -> Response<OneChunk> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let identity_header = req
        .headers()
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = read_body(req.into_body()).await;
    let is_msi = path.starts_with("/msi/");
    let is_token = path.contains("/oauth2/") || is_msi;

    // Faults apply to the token endpoint and to vault requests that carry a token (an
    // unauthenticated vault request always gets its challenge first).
    let fault = if is_token || auth.is_some() {
        let mut st = sh.state.lock().unwrap();
        let mut hit = None;
        for r in st.rules.iter_mut() {
            if !path.contains(&r.path_contains) || r.times == Some(0) {
                continue;
            }
            if let Some(t) = &mut r.times {
                *t -= 1;
            }
            hit = Some(r.fault.clone());
            break;
        }
        if hit.is_some() {
            st.counts.faults += 1;
        }
        hit
    } else {
        None
    };

    let mut truncate = false;
    let answer = match fault {
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            None
        }
        Some(Fault::Truncate) => {
            truncate = true;
            None
        }
        Some(f) => {
            if is_token {
                count_token(&sh);
                Some(token_fault(&f))
            } else {
                count_route(&sh, &method, &path);
                Some(vault_fault(&f, &method, &path, auth.as_deref(), &sh))
            }
        }
        None => None,
    };
    let answer = match answer {
        Some(a) => a,
        None if is_msi => {
            count_token(&sh);
            msi_token(&sh, &query, identity_header.as_deref())
        }
        None if is_token => {
            count_token(&sh);
            token(&sh, &method, &path, &body)
        }
        None => vault(&sh, &method, &path, &query, auth.as_deref(), &body),
    };

    sh.state.lock().unwrap().log.push(RequestLog {
        method,
        path,
        query,
        status: answer.status,
        authorized: auth.is_some(),
    });

    let len = answer.body.len();
    let mut body = answer.body;
    if truncate {
        body.truncate(len / 2);
    }
    let mut resp = Response::new(OneChunk {
        data: (!body.is_empty()).then(|| Bytes::from(body)),
        exact: !truncate,
    });
    *resp.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let h = resp.headers_mut();
    for (k, v) in answer.headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.append(k, v);
        }
    }
    if !is_token {
        h.insert(
            "x-ms-request-id",
            HeaderValue::from_str(&new_guid()).expect("header"),
        );
        h.insert(
            "x-ms-keyvault-service-version",
            HeaderValue::from_static("1.9.2164.1"),
        );
    }
    if truncate {
        h.insert("content-length", HeaderValue::from(len));
        h.insert("connection", HeaderValue::from_static("close"));
    }
    resp
}

fn count_token(sh: &Shared) {
    sh.state.lock().unwrap().counts.token_requests += 1;
}

/// Which operation a vault path is (for counters and permission names).
#[derive(Clone, Copy, PartialEq)]
enum Route {
    Get,
    List,
    Set,
    Other,
}

fn route(method: &str, path: &str) -> Route {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (method, segs.as_slice()) {
        ("GET", ["secrets"]) | ("GET", ["secrets", _, "versions"]) => Route::List,
        ("GET", ["secrets", _]) | ("GET", ["secrets", _, _]) => Route::Get,
        ("PUT", ["secrets", _]) => Route::Set,
        _ => Route::Other,
    }
}

fn count_route(sh: &Shared, method: &str, path: &str) {
    let mut st = sh.state.lock().unwrap();
    match route(method, path) {
        Route::Get => st.counts.gets += 1,
        Route::List => st.counts.lists += 1,
        Route::Set => st.counts.sets += 1,
        Route::Other => {}
    }
}

fn token_fault(f: &Fault) -> Answer {
    match f {
        Fault::Throttle { retry_after_secs } => entra_error(
            429,
            "temporarily_unavailable",
            90055,
            "There are too many incoming requests. Please try again later.",
        )
        .header("retry-after", retry_after_secs.to_string()),
        Fault::Status(code) => entra_error(
            *code,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.",
        ),
        Fault::Forbidden => entra_error(
            400,
            "unauthorized_client",
            7000112,
            "Application is disabled.",
        ),
        Fault::Unauthorized => entra_error(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
        ),
        Fault::Delay(_) | Fault::Truncate => unreachable!("answered normally"),
    }
}

fn vault_fault(f: &Fault, method: &str, path: &str, auth: Option<&str>, sh: &Shared) -> Answer {
    match f {
        Fault::Throttle { retry_after_secs } => kv_error(
            429,
            "Throttled",
            "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached",
        )
        .header("retry-after", retry_after_secs.to_string()),
        Fault::Status(code) => {
            let (code_str, msg) = match code {
                500 => ("InternalServerError", "An unexpected error occurred."),
                502 => ("BadGateway", "Bad gateway."),
                503 => (
                    "ServiceUnavailable",
                    "The service is temporarily unavailable. Please retry later.",
                ),
                504 => ("GatewayTimeout", "The operation timed out."),
                _ => ("InternalServerError", "An error occurred."),
            };
            kv_error(*code, code_str, msg)
        }
        Fault::Forbidden => {
            let op = match route(method, path) {
                Route::List => "list",
                Route::Set => "set",
                _ => "get",
            };
            let appid = auth
                .and_then(bearer)
                .and_then(|t| {
                    sh.state
                        .lock()
                        .unwrap()
                        .tokens
                        .get(t)
                        .map(|t| t.client_id.clone())
                })
                .unwrap_or_else(|| "00000000-0000-0000-0000-000000000000".into());
            kv_error_inner(
                403,
                "Forbidden",
                &format!(
                    "The user, group or application 'appid={appid};oid={};iss=https://sts.windows.net/{TENANT}/' does not have secrets {op} permission on key vault '{VAULT_NAME};location=eastus'.\r\nFor help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
                    new_guid()
                ),
                "AccessDenied",
            )
        }
        Fault::Unauthorized => unauthorized(&format!("AKV10032: Invalid issuer. Expected one of https://sts.windows.net/{TENANT}/, found https://sts.windows.net/00000000-0000-0000-0000-000000000000/.")),
        Fault::Delay(_) | Fault::Truncate => unreachable!("answered normally"),
    }
}

fn bearer(auth: &str) -> Option<&str> {
    let (scheme, tok) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| tok.trim())
}

// ---------------------------------------------------------------------------------------------
// Entra ID token endpoint

fn token(sh: &Shared, method: &str, path: &str, body: &[u8]) -> Answer {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let tenant = match segs.as_slice() {
        [tenant, "oauth2", "v2.0", "token"] => *tenant,
        _ => {
            return entra_error(
                404,
                "invalid_request",
                900023,
                "Specified tenant identifier is neither a valid DNS name, nor a valid external domain.",
            );
        }
    };
    if method != "POST" {
        return entra_error(
            400,
            "invalid_request",
            900561,
            &format!(
                "The endpoint only accepts POST, OPTIONS requests. Received a {method} request."
            ),
        );
    }
    if !tenant.eq_ignore_ascii_case(TENANT) {
        return entra_error(
            400,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        );
    }
    let form = pairs(&String::from_utf8_lossy(body));
    let missing = |p: &str| {
        entra_error(
            400,
            "invalid_request",
            900144,
            &format!("The request body must contain the following parameter: '{p}'."),
        )
    };
    let Some(grant) = get(&form, "grant_type") else {
        return missing("grant_type");
    };
    if grant != "client_credentials" {
        return entra_error(
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    let Some(client_id) = get(&form, "client_id") else {
        return missing("client_id");
    };
    let mut st = sh.state.lock().unwrap();
    let Some(client) = st.clients.get(client_id) else {
        return entra_error(
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{TENANT}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        );
    };
    if let Some(assertion) = get(&form, "client_assertion") {
        if get(&form, "client_assertion_type") != Some(ASSERTION_TYPE) {
            return missing("client_assertion_type");
        }
        let by_claims = assertion_claims(assertion).is_some_and(|c| {
            let aud_ok = match &c["aud"] {
                Value::String(a) => a == "api://AzureADTokenExchange",
                Value::Array(a) => a.iter().any(|x| x == "api://AzureADTokenExchange"),
                _ => false,
            };
            aud_ok
                && c["sub"]
                    .as_str()
                    .is_some_and(|sub| client.federated_subjects.iter().any(|s| s == sub))
        });
        if !by_claims && !client.federated.iter().any(|t| t == assertion) {
            return entra_error(
                400,
                "invalid_client",
                700213,
                &format!(
                    "No matching federated identity record found for presented assertion subject '{}'. Check your federated identity credential Subject, Audience and Issuer against the presented assertion.",
                    assertion_subject(assertion)
                ),
            );
        }
    } else if let Some(secret) = get(&form, "client_secret") {
        if client.secret.as_deref() != Some(secret) {
            return entra_error(
                401,
                "invalid_client",
                7000215,
                &format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                ),
            );
        }
    } else {
        return entra_error(
            401,
            "invalid_client",
            7000216,
            "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
        );
    }
    let scope = get(&form, "scope").unwrap_or("");
    if scope != format!("{RESOURCE}/.default") {
        return entra_error(
            400,
            "invalid_scope",
            70011,
            &format!(
                "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
            ),
        );
    }
    let (access_token, lifetime) = issue(&mut st, client_id);
    Answer::json(
        200,
        json!({
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
        }),
    )
}

/// Issues an access token for the vault to `client_id` (remembered until it expires or is revoked).
fn issue(st: &mut State, client_id: &str) -> (String, i64) {
    let lifetime = st.token_lifetime;
    let now = now_secs();
    let claims = json!({
        "aud": RESOURCE,
        "iss": format!("https://sts.windows.net/{TENANT}/"),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "appid": client_id,
        "tid": TENANT,
        "uti": new_guid(),
        "ver": "1.0",
    });
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let access_token = format!(
        "{}.{}.{}",
        b64.encode(br#"{"typ":"JWT","alg":"RS256"}"#),
        b64.encode(claims.to_string()),
        b64.encode(rand::random::<[u8; 32]>())
    );
    let expires = if lifetime > 0 {
        SystemTime::now() + Duration::from_secs(lifetime as u64)
    } else {
        SystemTime::now()
    };
    st.tokens.insert(
        access_token.clone(),
        Token {
            expires,
            client_id: client_id.to_string(),
        },
    );
    (access_token, lifetime)
}

/// The App Service managed-identity endpoint (`IDENTITY_ENDPOINT`).
fn msi_token(sh: &Shared, query: &str, header: Option<&str>) -> Answer {
    let q: HashMap<String, String> = pairs(query).into_iter().collect();
    let mut st = sh.state.lock().unwrap();
    if q.get("api-version").map(String::as_str) != Some("2019-08-01") {
        return Answer::json(
            400,
            json!({"statusCode": 400, "message": "api-version 2019-08-01 is required"}),
        );
    }
    if q.get("resource").map(String::as_str) != Some(RESOURCE) {
        return Answer::json(
            400,
            json!({"statusCode": 400, "message": "unsupported resource"}),
        );
    }
    let found = st.managed.iter().find(|m| {
        Some(m.header.as_str()) == header && q.get("client_id").is_none_or(|c| *c == m.client_id)
    });
    let Some(client_id) = found.map(|m| m.client_id.clone()) else {
        return Answer::json(
            400,
            json!({"statusCode": 400, "message": "No managed identity found for the specified ClientId/ResourceId/PrincipalId."}),
        );
    };
    let (access_token, lifetime) = issue(&mut st, &client_id);
    Answer::json(
        200,
        json!({
            "access_token": access_token,
            "expires_on": (now_secs() + lifetime).to_string(),
            "resource": RESOURCE,
            "token_type": "Bearer",
            "client_id": client_id,
        }),
    )
}

/// The `sub` of a JWT assertion, or the whole assertion if it is not one.
fn assertion_claims(assertion: &str) -> Option<Value> {
    assertion
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
}

fn assertion_subject(assertion: &str) -> String {
    assertion_claims(assertion)
        .and_then(|v| v["sub"].as_str().map(str::to_string))
        .unwrap_or_else(|| assertion.to_string())
}

// ---------------------------------------------------------------------------------------------
// Key Vault secrets API

fn attributes(v: &Version) -> Value {
    let mut a = json!({
        "enabled": v.opts.enabled,
        "created": v.created,
        "updated": v.updated,
        "recoverableDays": 90,
        "recoveryLevel": "Recoverable+Purgeable",
    });
    if let Some(nbf) = v.opts.not_before {
        a["nbf"] = json!(nbf);
    }
    if let Some(exp) = v.opts.expires {
        a["exp"] = json!(exp);
    }
    a
}

/// A `SecretItem` (no `value`) or, with `value`, a `SecretBundle`.
fn item(id: String, v: &Version, with_value: bool) -> Value {
    let mut o = json!({"id": id, "attributes": attributes(v)});
    if with_value {
        o["value"] = json!(v.value);
    }
    if let Some(ct) = &v.opts.content_type {
        o["contentType"] = json!(ct);
    }
    if !v.opts.tags.is_empty() {
        let tags: serde_json::Map<String, Value> = v
            .opts
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        o["tags"] = Value::Object(tags);
    }
    o
}

fn bundle(base: &str, s: &Secret, v: &Version) -> Value {
    item(format!("{base}/secrets/{}/{}", s.name, v.id), v, true)
}

fn vault(
    sh: &Shared,
    method: &str,
    path: &str,
    query: &str,
    auth: Option<&str>,
    body: &[u8],
) -> Answer {
    let Some(auth) = auth else {
        sh.state.lock().unwrap().counts.challenges += 1;
        return Answer {
            status: 401,
            headers: vec![("www-authenticate", challenge_header())],
            body: Vec::new(),
        };
    };
    count_route(sh, method, path);
    {
        let st = sh.state.lock().unwrap();
        let Some(tok) = bearer(auth) else {
            return unauthorized("AKV10000: Request is missing a Bearer or PoP token.");
        };
        match st.tokens.get(tok) {
            None => {
                return unauthorized(&format!(
                    "AKV10032: Invalid issuer. Expected one of https://sts.windows.net/{TENANT}/, https://login.microsoftonline.com/{TENANT}/v2.0, found an unknown or revoked token."
                ));
            }
            Some(t) if SystemTime::now() >= t.expires => {
                return unauthorized("[TokenExpired] Error validating token: 'S2S12086'.");
            }
            Some(_) => {}
        }
    }
    let q = pairs(query);
    if get(&q, "api-version").is_none_or(str::is_empty) {
        return bad_parameter(
            "The request URI contains an invalid version: ''. The api-version query parameter is required.",
        );
    }
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    if segs.first() != Some(&"secrets") {
        return kv_error(404, "NotFound", "The requested resource was not found.");
    }
    if let Some(name) = segs.get(1)
        && !valid_name(name)
    {
        return bad_parameter(&format!(
            "The request URI contains an invalid name: {name}. Secret names may only contain alphanumeric characters and dashes and must be 1-127 characters long."
        ));
    }
    match (method, &segs[1..]) {
        ("GET", []) => list_secrets(sh, &q),
        ("GET", [name, "versions"]) => list_versions(sh, name, &q),
        ("GET", [name]) => get_secret(sh, name, None),
        ("GET", [name, version]) => get_secret(sh, name, Some(version)),
        ("PUT", [name]) => set_secret(sh, name, body),
        ("PATCH", [name]) => update_secret(sh, name, None, body),
        ("PATCH", [name, version]) => update_secret(sh, name, Some(version), body),
        _ => kv_error(
            405,
            "BadParameter",
            &format!("The requested method {method} is not allowed for this resource."),
        ),
    }
}

fn get_secret(sh: &Shared, name: &str, version: Option<&str>) -> Answer {
    let st = sh.state.lock().unwrap();
    let Some(s) = st.secrets.get(&name.to_ascii_lowercase()) else {
        return not_found(name);
    };
    let v = match version {
        None => s.latest(),
        Some(id) => match s.version(id) {
            Some(v) => v,
            None => return not_found(&format!("{name}/{id}")),
        },
    };
    if !v.opts.enabled {
        return kv_error_inner(
            403,
            "Forbidden",
            "Operation get is not allowed on a disabled secret.",
            "SecretDisabled",
        );
    }
    Answer::json(200, bundle(&sh.base, s, v))
}

/// Page size and offset from `maxresults` and `$skiptoken`.
fn paging(st: &State, q: &[(String, String)]) -> Result<(usize, usize), Answer> {
    let mut size = st.page_size;
    if let Some(m) = get(q, "maxresults") {
        match m.parse::<usize>() {
            Ok(n) if n >= 1 => size = size.min(n),
            _ => {
                return Err(bad_parameter(&format!(
                    "The value '{m}' is not valid for parameter maxresults. It must be an integer between 1 and 25."
                )));
            }
        }
    }
    let offset = match get(q, "$skiptoken") {
        None => 0,
        Some(t) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["NextMarker"].as_str()?.strip_prefix("2!")?.parse().ok())
            .ok_or_else(|| bad_parameter("The skip token is invalid."))?,
    };
    Ok((size, offset))
}

fn page(
    base: &str,
    path: &str,
    items: Vec<Value>,
    size: usize,
    offset: usize,
    maxresults: bool,
) -> Answer {
    let end = (offset + size).min(items.len());
    let value: Vec<Value> = items
        .get(offset.min(items.len())..end)
        .unwrap_or_default()
        .to_vec();
    let next = (end < items.len()).then(|| {
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!({"NextMarker": format!("2!{end}")}).to_string());
        let mut link =
            format!("{base}{path}?api-version={NEXT_LINK_API_VERSION}&$skiptoken={token}");
        if maxresults {
            link.push_str(&format!("&maxresults={size}"));
        }
        link
    });
    Answer::json(200, json!({"value": value, "nextLink": next}))
}

fn list_secrets(sh: &Shared, q: &[(String, String)]) -> Answer {
    let st = sh.state.lock().unwrap();
    let (size, offset) = match paging(&st, q) {
        Ok(p) => p,
        Err(a) => return a,
    };
    let mut keys: Vec<&String> = st.secrets.keys().collect();
    keys.sort();
    let items = keys
        .into_iter()
        .map(|k| {
            let s = &st.secrets[k];
            item(format!("{}/secrets/{}", sh.base, s.name), s.latest(), false)
        })
        .collect();
    page(
        &sh.base,
        "/secrets",
        items,
        size,
        offset,
        get(q, "maxresults").is_some(),
    )
}

fn list_versions(sh: &Shared, name: &str, q: &[(String, String)]) -> Answer {
    let st = sh.state.lock().unwrap();
    let (size, offset) = match paging(&st, q) {
        Ok(p) => p,
        Err(a) => return a,
    };
    let Some(s) = st.secrets.get(&name.to_ascii_lowercase()) else {
        return not_found(name);
    };
    let mut versions: Vec<&Version> = s.versions.iter().collect();
    versions.sort_by(|a, b| a.id.cmp(&b.id));
    let items = versions
        .into_iter()
        .map(|v| item(format!("{}/secrets/{}/{}", sh.base, s.name, v.id), v, false))
        .collect();
    page(
        &sh.base,
        &format!("/secrets/{}/versions", s.name),
        items,
        size,
        offset,
        get(q, "maxresults").is_some(),
    )
}

/// `attributes`, `tags` and `contentType` of a Set/Update Secret body applied to `opts`.
fn apply_body(v: &Value, opts: &mut SetOptions) -> Result<(), Answer> {
    if let Some(ct) = v.get("contentType") {
        match ct {
            Value::String(s) => opts.content_type = Some(s.clone()),
            Value::Null => {}
            _ => return Err(bad_parameter("Property contentType must be a string.")),
        }
    }
    if let Some(tags) = v.get("tags") {
        match tags {
            Value::Object(m) => {
                let mut t = Vec::new();
                for (k, v) in m {
                    let Some(v) = v.as_str() else {
                        return Err(bad_parameter("Tag values must be strings."));
                    };
                    t.push((k.clone(), v.to_string()));
                }
                opts.tags = t;
            }
            Value::Null => {}
            _ => return Err(bad_parameter("Property tags must be an object.")),
        }
    }
    if let Some(a) = v.get("attributes").filter(|a| !a.is_null()) {
        if let Some(e) = a.get("enabled").and_then(Value::as_bool) {
            opts.enabled = e;
        }
        if let Some(n) = a.get("nbf").and_then(Value::as_i64) {
            opts.not_before = Some(n);
        }
        if let Some(x) = a.get("exp").and_then(Value::as_i64) {
            opts.expires = Some(x);
        }
    }
    Ok(())
}

fn set_secret(sh: &Shared, name: &str, body: &[u8]) -> Answer {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return bad_parameter("The request body is not valid JSON.");
    };
    let Some(value) = v.get("value").and_then(Value::as_str) else {
        return bad_parameter("Property value is required and must be a string.");
    };
    let mut opts = SetOptions::default();
    if let Err(a) = apply_body(&v, &mut opts) {
        return a;
    }
    let mut st = sh.state.lock().unwrap();
    let id = store(&mut st, name, value.to_string(), opts);
    let s = &st.secrets[&name.to_ascii_lowercase()];
    let ver = s.version(&id).expect("just stored");
    Answer::json(200, bundle(&sh.base, s, ver))
}

fn update_secret(sh: &Shared, name: &str, version: Option<&str>, body: &[u8]) -> Answer {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return bad_parameter("The request body is not valid JSON.");
    };
    let mut st = sh.state.lock().unwrap();
    let Some(s) = st.secrets.get_mut(&name.to_ascii_lowercase()) else {
        return not_found(name);
    };
    let idx = match version {
        None => s.versions.len() - 1,
        Some(id) => match s.versions.iter().position(|v| v.id == id) {
            Some(i) => i,
            None => return not_found(&format!("{name}/{id}")),
        },
    };
    let mut opts = s.versions[idx].opts.clone();
    if let Err(a) = apply_body(&v, &mut opts) {
        return a;
    }
    s.versions[idx].opts = opts;
    s.versions[idx].updated = now_secs();
    // Update Secret returns the bundle without the value.
    let ver = &s.versions[idx];
    Answer::json(
        200,
        item(
            format!("{}/secrets/{}/{}", sh.base, s.name, ver.id),
            ver,
            false,
        ),
    )
}
