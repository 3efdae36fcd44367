//! HashiCorp Vault / OpenBao: the KV secrets engine (v1 and v2) over Vault's HTTP API.
//!
//! # Why reqwest and not vaultrs
//!
//! This module talks to Vault with `reqwest` (rustls) directly instead of `vaultrs` 0.8:
//! - **Status codes and bodies are ours to read.** A KV v2 read of a soft-deleted or destroyed
//!   version answers `404` *with* `data.metadata` (deletion time, destroyed flag), while a missing
//!   path answers `404` with an empty `errors` list. vaultrs folds both into one `APIError`, and the
//!   difference decides between "not found" (which may, after three authoritative answers, delete a
//!   Secret) and "deleted version" (an error that keeps the Secret). We also need `Retry-After` on
//!   `429` and a clean split of `503` (sealed, standby) into transient errors.
//! - **Transport control.** Per-store CA bundles *added to* the system / `SSL_CERT_FILE` roots,
//!   client certificates for mTLS, `X-Vault-Namespace`, short connect/request timeouts and no
//!   redirects (a redirect would carry the token to another host) are a few builder calls on one
//!   `reqwest::Client` per store.
//! - **Secrets stay in redacting types.** Response bodies are read into zeroized buffers and the
//!   secret object is cut out as raw JSON (`serde_json::value::RawValue`) straight into
//!   [`SecretBytes`]; tokens live in [`SecretBytes`] too and go out as sensitive header values.
//! - **Weight.** reqwest (rustls, ring) is already in the dependency tree; vaultrs would add its
//!   own `rustify` HTTP layer and still need the same error mapping on top.
//!
//! # Behaviour
//!
//! - **KV v2** (`GET <mount>/data/<key>[?version=N]`): the value handed to the controller is the
//!   JSON of `data.data` (so `property` selects inside it and `dataFrom.extract` takes its keys);
//!   the version, and its `created_time` as created/updated, go to the metadata. A **soft-deleted or
//!   destroyed** version is an [`ProviderError::InvalidResponse`] (reason `InvalidRemoteValue`),
//!   never a Secret with empty data and never "not found": a deleted version can be undeleted, so
//!   it must not count towards `deletionPolicy: Delete`. Only the KV engine's own not-found shape —
//!   `404` with a JSON body whose `errors` list is empty, and no metadata — is
//!   [`ProviderError::NotFound`] (authoritative: it may count toward `deletionPolicy: Delete`). Every
//!   other `404` says nothing about the secret and is transient: no secrets engine mounted at the
//!   path (`no handler for route`), an unknown Vault namespace (`namespace not found`), a proxy or
//!   ingress answering in front of Vault (a body that is not Vault's JSON).
//! - **KV v1** (`GET <mount>/<key>`): no versions; a `remoteRef.version` is
//!   [`ProviderError::InvalidConfig`] (it can never resolve).
//! - **find**: `LIST <mount>/metadata/<prefix>` (v2) or `LIST <mount>/<prefix>` (v1), recursing
//!   into keys ending in `/`, at most [`MAX_FIND_DEPTH`] levels and [`MAX_FIND_KEYS`] listed keys
//!   (beyond either: an `InvalidConfig` error naming the limit — narrow `find.path`). Then the name
//!   regexp, then tags against the KV v2 `custom_metadata` (one metadata read per candidate; tags on
//!   KV v1 are an `InvalidConfig` error). Names come back in the form of the query path (with a
//!   leading `/` when the query path has one).
//! - **Auth**: a token from a Secret (looked up once with `lookup-self` for its TTL), Kubernetes
//!   auth (`auth/<mount>/login {role, jwt}`; the JWT comes from a [`JwtSource`] the controller
//!   supplies: a TokenRequest for `serviceAccountRef` or its own projected token), or AppRole
//!   (`auth/<mount>/login {role_id, secret_id}`). One Vault token per provider (a provider is built
//!   once per store generation): it is renewed with `renew-self` once two thirds of its TTL have
//!   passed and, when it is not renewable or renewal no longer extends it, replaced by a fresh
//!   login. On a `403` the provider logs in again and retries once, but at most once a minute (a
//!   policy that denies a path must not turn into a login per read). A failed login is remembered
//!   for [`LOGIN_RETRY`] so many concurrent reads of a broken store cost one login attempt.
//! - **Errors**: `503` (sealed, standby) / other 5xx / timeouts / connection failures →
//!   `Transient`; `429` → `Throttled` with `Retry-After`; `403` → `AccessDenied`; a failed login
//!   (400/401/403) → `AccessDenied`; other 4xx → `InvalidConfig`; unparseable JSON →
//!   `InvalidResponse`. Messages name the store and path and carry at most [`MAX_ERROR_TEXT`]
//!   characters of Vault's `errors` text (Vault does not echo values).
//! - **Transport**: HTTPS unless loopback (or `--allow-insecure-endpoints`), system and
//!   `SSL_CERT_FILE` roots (plus Mozilla's) and the store's CA bundle; optional client certificate;
//!   connect timeout 3 s, request timeout 10 s; redirects are refused (point `server` at the active
//!   node or a load balancer).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::{StreamExt, stream};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::{
    FetchedSecret, FindQuery, Provider, ProviderError, ProviderKind, RemoteRef, SecretMetadata,
    check_endpoint,
};
use crate::value::SecretBytes;

/// Deepest folder nesting `find` descends into.
pub const MAX_FIND_DEPTH: usize = 10;
/// Most keys (files and folders) `find` lists before giving up.
pub const MAX_FIND_KEYS: usize = 10_000;
/// How long a failed login is remembered before the next attempt.
pub const LOGIN_RETRY: Duration = Duration::from_secs(5);
/// Shortest time between two re-logins forced by `403` answers.
pub const FORCED_RELOGIN_INTERVAL: Duration = Duration::from_secs(60);
/// Most characters of Vault's error text quoted in a message.
pub const MAX_ERROR_TEXT: usize = 200;
/// Largest response body read: the shared answer limit (a value a Secret can hold, plus the JSON
/// around it), cut off while reading.
const MAX_BODY: usize = super::MAX_ANSWER_BYTES;
/// Concurrent reads inside one `get_many`.
const READ_CONCURRENCY: usize = 4;

pub use super::JwtSource;

/// How the provider authenticates.
#[derive(Clone)]
pub enum VaultAuthConfig {
    /// A fixed token (from a Secret).
    Token(SecretBytes),
    /// Kubernetes auth: `POST auth/<mount>/login {role, jwt}`.
    Kubernetes {
        /// Auth mount path (default `kubernetes`).
        mount: String,
        /// The Vault role.
        role: String,
        /// The service-account JWT.
        jwt: JwtSource,
    },
    /// AppRole: `POST auth/<mount>/login {role_id, secret_id}`.
    AppRole {
        /// Auth mount path (default `approle`).
        mount: String,
        /// The role id.
        role_id: String,
        /// The secret id.
        secret_id: SecretBytes,
    },
}

impl std::fmt::Debug for VaultAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Token(_) => f.write_str("Token(<redacted>)"),
            Self::Kubernetes { mount, role, .. } => f
                .debug_struct("Kubernetes")
                .field("mount", mount)
                .field("role", role)
                .finish_non_exhaustive(),
            Self::AppRole { mount, role_id, .. } => f
                .debug_struct("AppRole")
                .field("mount", mount)
                .field("role_id", role_id)
                .finish_non_exhaustive(),
        }
    }
}

impl VaultAuthConfig {
    fn describe(&self) -> String {
        match self {
            Self::Token(_) => "token".into(),
            Self::Kubernetes { mount, role, .. } => {
                format!("kubernetes login at auth/{mount} as role {role:?}")
            }
            Self::AppRole { mount, .. } => format!("approle login at auth/{mount}"),
        }
    }
}

/// Everything a [`VaultProvider`] is built from (resolved by the controller or a test).
#[derive(Clone, Debug)]
pub struct VaultConfig {
    /// The store's name, for messages.
    pub store: String,
    /// Server address, e.g. `https://vault.vault.svc:8200`.
    pub server: String,
    /// KV mount path, e.g. `secret`.
    pub mount: String,
    /// KV v2 (`true`) or v1.
    pub kv_v2: bool,
    /// Vault namespace (`X-Vault-Namespace`).
    pub namespace: Option<String>,
    /// Extra trusted CA certificates (PEM), added to the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate chain and private key (PEM) for mTLS.
    pub client_identity: Option<SecretBytes>,
    /// How to authenticate.
    pub auth: VaultAuthConfig,
    /// Accept plain-HTTP non-loopback servers.
    pub allow_insecure: bool,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
}

impl VaultConfig {
    /// A configuration with the default timeouts (connect 3 s, request 10 s).
    pub fn new(store: &str, server: &str, mount: &str, auth: VaultAuthConfig) -> Self {
        Self {
            store: store.to_string(),
            server: server.to_string(),
            mount: mount.to_string(),
            kv_v2: true,
            namespace: None,
            ca_pem: None,
            client_identity: None,
            auth,
            allow_insecure: false,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Authentication counters (tests and diagnostics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthStats {
    /// Logins (or, for token auth, token lookups) performed.
    pub logins: u64,
    /// Successful `renew-self` calls.
    pub renewals: u64,
}

struct TokenState {
    token: Option<SecretBytes>,
    issued: Instant,
    /// `None`: the token does not expire.
    ttl: Option<Duration>,
    renewable: bool,
    /// TTL granted at login, to tell when renewal stops extending the token (max TTL reached).
    login_ttl: Option<Duration>,
    failed: Option<(Instant, ProviderError)>,
    last_forced_relogin: Option<Instant>,
}

/// A Vault / OpenBao KV provider for one store.
pub struct VaultProvider {
    cfg: VaultConfig,
    base: String,
    mount: String,
    http: reqwest::Client,
    state: tokio::sync::Mutex<TokenState>,
    logins: AtomicU64,
    renewals: AtomicU64,
}

/// A raw HTTP answer: status, retry hint and a zeroized body.
struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Zeroizing<Vec<u8>>,
}

#[derive(serde::Serialize)]
struct KubernetesLogin<'a> {
    role: &'a str,
    jwt: &'a str,
}

#[derive(serde::Serialize)]
struct AppRoleLogin<'a> {
    role_id: &'a str,
    secret_id: &'a str,
}

#[derive(Deserialize)]
struct ErrorsBody {
    #[serde(default)]
    errors: Vec<String>,
}

#[derive(Deserialize)]
struct AuthBody {
    auth: Option<AuthInfo>,
}

#[derive(Deserialize)]
struct AuthInfo {
    client_token: String,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
}

#[derive(Deserialize)]
struct LookupBody {
    data: Option<LookupData>,
}

#[derive(Deserialize)]
struct LookupData {
    #[serde(default)]
    ttl: u64,
    #[serde(default)]
    renewable: bool,
}

#[derive(Deserialize)]
struct KvV2Body<'a> {
    #[serde(borrow)]
    data: Option<KvV2Data<'a>>,
}

#[derive(Deserialize)]
struct KvV2Data<'a> {
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    metadata: Option<KvV2VersionMeta>,
}

#[derive(Deserialize)]
struct KvV2VersionMeta {
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    created_time: Option<String>,
    #[serde(default)]
    deletion_time: Option<String>,
    #[serde(default)]
    destroyed: Option<bool>,
}

#[derive(Deserialize)]
struct KvV1Body<'a> {
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ListBody {
    data: Option<ListData>,
}

#[derive(Deserialize)]
struct ListData {
    #[serde(default)]
    keys: Vec<String>,
}

#[derive(Deserialize)]
struct MetadataBody {
    data: Option<MetadataData>,
}

#[derive(Deserialize)]
struct MetadataData {
    #[serde(default)]
    custom_metadata: Option<BTreeMap<String, String>>,
}

fn trim_slashes(s: &str) -> &str {
    s.trim_matches('/')
}

/// Characters kept as they are in a path segment (RFC 3986 unreserved).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a slash-separated path, refusing `.`/`..`/empty segments (they would be
/// normalised away by the URL parser and could leave the mount).
fn encode_path(what: &str, path: &str) -> Result<String, ProviderError> {
    let p = trim_slashes(path);
    if p.is_empty() {
        return Ok(String::new());
    }
    let mut out = Vec::new();
    for seg in p.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(ProviderError::InvalidConfig {
                message: format!(
                    "{what} {path:?}: empty, '.' and '..' path segments are not allowed"
                ),
            });
        }
        out.push(percent_encoding::utf8_percent_encode(seg, SEGMENT).to_string());
    }
    Ok(out.join("/"))
}

/// Whether a `404` body is the KV engine's own not-found: Vault's JSON with an empty `errors` list
/// (and nothing else that would make it another answer). A `404` with any error text — `no handler
/// for route` (nothing mounted there), `namespace not found` — or a body that is not Vault's JSON
/// (a proxy's page) is not.
fn is_kv_not_found(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct NotFoundBody {
        errors: Option<Vec<String>>,
        data: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<NotFoundBody>(body)
        .is_ok_and(|b| b.errors.is_some_and(|e| e.is_empty()) && b.data.is_none())
}

fn vault_errors(body: &[u8]) -> String {
    let text = serde_json::from_slice::<ErrorsBody>(body)
        .map(|b| b.errors.join("; "))
        .unwrap_or_default();
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_ERROR_TEXT)
        .collect();
    if clean.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", clean.trim())
    }
}

fn parse_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    s.filter(|s| !s.is_empty())
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
}

fn secs(n: u64) -> Option<Duration> {
    (n > 0).then(|| Duration::from_secs(n))
}

impl VaultProvider {
    /// Builds the provider and its HTTP client (no network calls: the first read logs in).
    pub fn new(cfg: VaultConfig) -> Result<Self, ProviderError> {
        let invalid = |message: String| ProviderError::InvalidConfig { message };
        check_endpoint(&cfg.server, cfg.allow_insecure)?;
        let base = cfg.server.trim().trim_end_matches('/').to_string();
        let mount = encode_path("vault.path", &cfg.mount)?;
        if mount.is_empty() {
            return Err(invalid(
                "vault.path (the KV mount) must not be empty".into(),
            ));
        }
        let mut headers = HeaderMap::new();
        headers.insert("X-Vault-Request", HeaderValue::from_static("true"));
        if let Some(ns) = cfg.namespace.as_deref().filter(|n| !n.is_empty()) {
            let v = HeaderValue::from_str(ns)
                .map_err(|_| invalid(format!("vault.namespace {ns:?} is not a valid header")))?;
            headers.insert("X-Vault-Namespace", v);
        }
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .default_headers(headers)
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("secretsync/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &cfg.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|_| invalid("the CA bundle is not valid PEM".into()))?;
            if certs.is_empty() {
                return Err(invalid("the CA bundle holds no certificate".into()));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if let Some(id) = &cfg.client_identity {
            let identity = reqwest::Identity::from_pem(id.expose()).map_err(|_| {
                invalid("the client certificate Secret does not hold a usable PEM certificate and key (tls.crt, tls.key)".into())
            })?;
            b = b.identity(identity);
        }
        let http = b
            .build()
            .map_err(|e| invalid(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            base,
            mount,
            http,
            state: tokio::sync::Mutex::new(TokenState {
                token: None,
                issued: Instant::now(),
                ttl: None,
                renewable: false,
                login_ttl: None,
                failed: None,
                last_forced_relogin: None,
            }),
            logins: AtomicU64::new(0),
            renewals: AtomicU64::new(0),
            cfg,
        })
    }

    /// How many logins and renewals this provider performed.
    pub fn auth_stats(&self) -> AuthStats {
        AuthStats {
            logins: self.logins.load(Ordering::Relaxed),
            renewals: self.renewals.load(Ordering::Relaxed),
        }
    }

    fn can_login(&self) -> bool {
        !matches!(self.cfg.auth, VaultAuthConfig::Token(_))
    }

    fn transient(&self, what: &str, detail: impl std::fmt::Display) -> ProviderError {
        ProviderError::Transient {
            message: format!("vault store {:?}: {what}: {detail}", self.cfg.store),
        }
    }

    /// One HTTP call. `api_path` is below `/v1/`.
    async fn send(
        &self,
        method: Method,
        api_path: &str,
        query: &[(&str, String)],
        token: Option<&SecretBytes>,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, ProviderError> {
        let url = format!("{}/v1/{api_path}", self.base);
        let mut req = self.http.request(method, &url);
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(t) = token {
            let mut hv =
                HeaderValue::from_bytes(t.expose()).map_err(|_| ProviderError::InvalidConfig {
                    message: format!(
                        "vault store {:?}: the token is not a valid header value",
                        self.cfg.store
                    ),
                })?;
            hv.set_sensitive(true);
            req = req.header("X-Vault-Token", hv);
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        let mut resp = req.send().await.map_err(|e| {
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            // reqwest errors carry the URL (no values) and the causes (TLS, DNS, refused).
            self.transient(
                &format!("{kind} for /v1/{api_path}"),
                super::error_chain(&e.without_url()),
            )
        })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut body = Zeroizing::new(Vec::new());
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if body.len() + c.len() > MAX_BODY {
                        return Err(ProviderError::TooLarge {
                            key: None,
                            limit: MAX_BODY,
                        });
                    }
                    body.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(self.transient(
                        &format!("reading the answer of /v1/{api_path}"),
                        e.without_url(),
                    ));
                }
            }
        }
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }

    /// Maps a non-success answer to an error. `key` names the remote key or path concerned.
    fn classify(&self, a: &Answer, key: &str) -> ProviderError {
        let store = &self.cfg.store;
        let errs = vault_errors(&a.body);
        match a.status.as_u16() {
            429 => ProviderError::Throttled {
                retry_after: a.retry_after,
            },
            403 | 401 => ProviderError::AccessDenied {
                key: Some(key.to_string()),
                message: format!("vault store {store:?}: permission denied{errs}"),
            },
            404 if is_kv_not_found(&a.body) => ProviderError::NotFound {
                key: key.to_string(),
            },
            404 => self.transient(
                &format!("{key}: HTTP 404 that is not the KV engine's not-found (no secrets engine mounted at the path, an unknown namespace, or a proxy in front of Vault)"),
                format!("HTTP 404{errs}"),
            ),
            503 => self.transient(
                &format!("{key}: server unavailable (sealed or standby)"),
                format!("HTTP 503{errs}"),
            ),
            300..=399 => self.transient(
                &format!("{key}: server answered with a redirect (point `server` at the active node or a load balancer)"),
                format!("HTTP {}", a.status.as_u16()),
            ),
            412 | 500..=599 => {
                self.transient(key, format!("HTTP {}{errs}", a.status.as_u16()))
            }
            s => ProviderError::InvalidConfig {
                message: format!("vault store {store:?}: {key}: HTTP {s}{errs}"),
            },
        }
    }

    fn parse_err(&self, key: &str, what: &str) -> ProviderError {
        ProviderError::InvalidResponse {
            key: key.to_string(),
            message: format!(
                "vault store {:?}: the answer is not valid {what}",
                self.cfg.store
            ),
        }
    }

    /// Authenticates: a login (Kubernetes, AppRole) or a token lookup (token auth).
    /// Returns the token, its TTL (`None` = no expiry) and whether it is renewable.
    async fn login(&self) -> Result<(SecretBytes, Option<Duration>, bool), ProviderError> {
        self.logins.fetch_add(1, Ordering::Relaxed);
        let store = &self.cfg.store;
        let denied = |a: &Answer, what: String| {
            if matches!(a.status.as_u16(), 400 | 401 | 403) {
                ProviderError::AccessDenied {
                    key: None,
                    message: format!(
                        "vault store {store:?}: {what} failed (HTTP {}){}",
                        a.status.as_u16(),
                        vault_errors(&a.body)
                    ),
                }
            } else {
                self.classify(a, &what)
            }
        };
        let (mount, mut body) = match &self.cfg.auth {
            VaultAuthConfig::Token(t) => {
                let a = self
                    .send(Method::GET, "auth/token/lookup-self", &[], Some(t), None)
                    .await?;
                if !a.status.is_success() {
                    return Err(denied(&a, "token lookup".into()));
                }
                let d = serde_json::from_slice::<LookupBody>(&a.body)
                    .ok()
                    .and_then(|b| b.data)
                    .ok_or_else(|| self.parse_err("auth/token/lookup-self", "JSON"))?;
                return Ok((t.clone(), secs(d.ttl), d.renewable && d.ttl > 0));
            }
            VaultAuthConfig::Kubernetes { mount, role, jwt } => {
                let jwt = jwt().await?;
                let jwt = jwt
                    .expose_str()
                    .ok_or_else(|| ProviderError::InvalidConfig {
                        message: format!(
                            "vault store {store:?}: the service account token is not text"
                        ),
                    })?;
                let mut body = Zeroizing::new(Vec::new());
                serde_json::to_writer(&mut *body, &KubernetesLogin { role, jwt })
                    .map_err(|e| self.transient("encoding the login", e))?;
                (mount, body)
            }
            VaultAuthConfig::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                let sid = secret_id
                    .expose_str()
                    .ok_or_else(|| ProviderError::InvalidConfig {
                        message: format!(
                            "vault store {store:?}: the AppRole secret id is not text"
                        ),
                    })?;
                let mut body = Zeroizing::new(Vec::new());
                serde_json::to_writer(
                    &mut *body,
                    &AppRoleLogin {
                        role_id,
                        secret_id: sid,
                    },
                )
                .map_err(|e| self.transient("encoding the login", e))?;
                (mount, body)
            }
        };
        let path = format!("auth/{}/login", encode_path("auth mountPath", mount)?);
        let a = self
            .send(
                Method::POST,
                &path,
                &[],
                None,
                Some(std::mem::take(&mut *body)),
            )
            .await?;
        if !a.status.is_success() {
            return Err(denied(&a, self.cfg.auth.describe()));
        }
        let auth = serde_json::from_slice::<AuthBody>(&a.body)
            .ok()
            .and_then(|b| b.auth)
            .ok_or_else(|| self.parse_err(&path, "login JSON"))?;
        let ttl = secs(auth.lease_duration);
        Ok((
            SecretBytes::from_string(auth.client_token),
            ttl,
            auth.renewable,
        ))
    }

    /// `renew-self`: the new TTL and renewability.
    async fn renew(&self, token: &SecretBytes) -> Result<(Option<Duration>, bool), ProviderError> {
        let a = self
            .send(
                Method::POST,
                "auth/token/renew-self",
                &[],
                Some(token),
                Some(b"{}".to_vec()),
            )
            .await?;
        if !a.status.is_success() {
            return Err(self.classify(&a, "auth/token/renew-self"));
        }
        let auth = serde_json::from_slice::<AuthBody>(&a.body)
            .ok()
            .and_then(|b| b.auth)
            .ok_or_else(|| self.parse_err("auth/token/renew-self", "JSON"))?;
        self.renewals.fetch_add(1, Ordering::Relaxed);
        Ok((secs(auth.lease_duration), auth.renewable))
    }

    /// The current token: cached, renewed, or from a fresh login.
    async fn token(&self) -> Result<SecretBytes, ProviderError> {
        let mut st = self.state.lock().await;
        if let Some(tok) = st.token.clone() {
            let Some(ttl) = st.ttl else {
                return Ok(tok);
            };
            let age = st.issued.elapsed();
            if age < ttl * 2 / 3 {
                return Ok(tok);
            }
            let still_valid = age + (ttl / 10).min(Duration::from_secs(1)) < ttl;
            if st.renewable && still_valid {
                match self.renew(&tok).await {
                    Ok((new_ttl, renewable)) => {
                        let extends = match (new_ttl, st.login_ttl) {
                            (Some(n), Some(l)) => n >= l / 3 && n > Duration::from_secs(1),
                            _ => true,
                        };
                        if extends || !self.can_login() {
                            st.issued = Instant::now();
                            st.ttl = new_ttl;
                            st.renewable = renewable;
                            return Ok(tok);
                        }
                        tracing::debug!(store = %self.cfg.store, "vault token reached its max TTL; logging in again");
                    }
                    Err(e) if e.is_retryable() => return Ok(tok),
                    Err(e) => {
                        tracing::debug!(store = %self.cfg.store, reason = %e.reason(), "vault token renewal failed; logging in again");
                    }
                }
            }
            if !self.can_login() {
                if still_valid {
                    return Ok(tok);
                }
                // A fixed token that expired: look it up again (it may have been renewed elsewhere).
                st.token = None;
            } else if still_valid && st.failed.is_some() {
                // A recent login failed: keep using the old token while it lasts.
                if let Some((at, _)) = &st.failed
                    && at.elapsed() < LOGIN_RETRY
                {
                    return Ok(tok);
                }
            }
        }
        if let Some((at, e)) = &st.failed
            && at.elapsed() < LOGIN_RETRY
        {
            return Err(e.clone());
        }
        match self.login().await {
            Ok((tok, ttl, renewable)) => {
                tracing::debug!(store = %self.cfg.store, ttl_secs = ttl.map(|t| t.as_secs()), renewable, "vault login");
                st.token = Some(tok.clone());
                st.issued = Instant::now();
                st.ttl = ttl;
                st.login_ttl = ttl;
                st.renewable = renewable;
                st.failed = None;
                Ok(tok)
            }
            Err(e) => {
                st.failed = Some((Instant::now(), e.clone()));
                // A transient failure keeps a still-valid token usable.
                if e.is_retryable()
                    && let (Some(tok), Some(ttl)) = (st.token.clone(), st.ttl)
                    && st.issued.elapsed() < ttl
                {
                    return Ok(tok);
                }
                Err(e)
            }
        }
    }

    /// An authenticated call; on `403` logs in again (at most once a minute) and retries once.
    async fn call(
        &self,
        method: Method,
        api_path: &str,
        query: &[(&str, String)],
    ) -> Result<Answer, ProviderError> {
        let tok = self.token().await?;
        let a = self
            .send(method.clone(), api_path, query, Some(&tok), None)
            .await?;
        if a.status != StatusCode::FORBIDDEN || !self.can_login() {
            return Ok(a);
        }
        {
            let mut st = self.state.lock().await;
            if st
                .last_forced_relogin
                .is_some_and(|t| t.elapsed() < FORCED_RELOGIN_INTERVAL)
            {
                return Ok(a);
            }
            st.last_forced_relogin = Some(Instant::now());
            if st.token.as_ref() == Some(&tok) {
                st.token = None;
                st.failed = None;
            }
        }
        tracing::debug!(store = %self.cfg.store, "vault answered 403; logging in again and retrying once");
        let tok = self.token().await?;
        self.send(method, api_path, query, Some(&tok), None).await
    }

    async fn get_v2(&self, remote: &RemoteRef) -> Result<FetchedSecret, ProviderError> {
        let key = &remote.key;
        let path = format!("{}/data/{}", self.mount, encode_path("remote key", key)?);
        let mut query = Vec::new();
        if let Some(v) = &remote.version {
            let n: u64 = v.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                ProviderError::InvalidConfig {
                    message: format!(
                        "remote key {key:?}: version {v:?} is not a KV v2 version number"
                    ),
                }
            })?;
            query.push(("version", n.to_string()));
        }
        let a = self
            .call(Method::GET, &path, &query)
            .await
            .map_err(|e| e.for_key(key))?;
        if !(a.status.is_success() || a.status == StatusCode::NOT_FOUND) {
            return Err(self.classify(&a, key));
        }
        let parsed = serde_json::from_slice::<KvV2Body<'_>>(&a.body);
        let Ok(body) = parsed else {
            return if a.status == StatusCode::NOT_FOUND {
                Err(self.classify(&a, key))
            } else {
                Err(self.parse_err(key, "KV v2 JSON"))
            };
        };
        let Some(d) = body.data else {
            return if a.status == StatusCode::NOT_FOUND {
                // The KV engine's own not-found, or another 404 (see `classify`).
                Err(self.classify(&a, key))
            } else {
                Err(self.parse_err(key, "KV v2 JSON (no data)"))
            };
        };
        let meta = d.metadata;
        let version = meta.as_ref().and_then(|m| m.version);
        let vtext = version.map_or_else(|| "?".to_string(), |v| v.to_string());
        if let Some(m) = &meta {
            if m.destroyed == Some(true) {
                return Err(ProviderError::InvalidResponse {
                    key: key.clone(),
                    message: format!(
                        "vault store {:?}: version {vtext} is destroyed (write a new version)",
                        self.cfg.store
                    ),
                });
            }
            if m.deletion_time.as_deref().is_some_and(|t| !t.is_empty()) {
                return Err(ProviderError::InvalidResponse {
                    key: key.clone(),
                    message: format!(
                        "vault store {:?}: version {vtext} is deleted (undelete it or write a new version)",
                        self.cfg.store
                    ),
                });
            }
        }
        if a.status == StatusCode::NOT_FOUND {
            // A 404 with a `data` object but no deletion marks: not the engine's not-found shape.
            return Err(self.transient(
                &format!("{key}: HTTP 404 with an unexpected body"),
                "HTTP 404",
            ));
        }
        let raw = d
            .data
            .ok_or_else(|| ProviderError::InvalidResponse {
                key: key.clone(),
                message: format!(
                    "vault store {:?}: version {vtext} has no data",
                    self.cfg.store
                ),
            })?
            .get();
        if !raw.trim_start().starts_with('{') {
            return Err(ProviderError::InvalidResponse {
                key: key.clone(),
                message: "KV v2 data is not a JSON object".into(),
            });
        }
        let created = parse_time(meta.as_ref().and_then(|m| m.created_time.as_deref()));
        Ok(FetchedSecret {
            value: SecretBytes::new(raw.as_bytes().to_vec()),
            meta: SecretMetadata {
                version: version.map(|v| v.to_string()),
                created,
                updated: created,
                ..Default::default()
            },
        })
    }

    async fn get_v1(&self, remote: &RemoteRef) -> Result<FetchedSecret, ProviderError> {
        let key = &remote.key;
        if let Some(v) = &remote.version {
            return Err(ProviderError::InvalidConfig {
                message: format!(
                    "remote key {key:?}: version {v:?} requested, but the KV v1 mount {:?} of vault store {:?} has no versions",
                    self.cfg.mount, self.cfg.store
                ),
            });
        }
        let path = format!("{}/{}", self.mount, encode_path("remote key", key)?);
        let a = self
            .call(Method::GET, &path, &[])
            .await
            .map_err(|e| e.for_key(key))?;
        if !a.status.is_success() {
            return Err(self.classify(&a, key));
        }
        let body = serde_json::from_slice::<KvV1Body<'_>>(&a.body)
            .map_err(|_| self.parse_err(key, "KV v1 JSON"))?;
        let raw = body
            .data
            .ok_or_else(|| self.parse_err(key, "KV v1 JSON (no data)"))?
            .get();
        if !raw.trim_start().starts_with('{') {
            return Err(self.parse_err(key, "KV v1 JSON (data is not an object)"));
        }
        Ok(FetchedSecret {
            value: SecretBytes::new(raw.as_bytes().to_vec()),
            meta: SecretMetadata::default(),
        })
    }

    /// `LIST` of one folder (`dir` without slashes at either end, "" = the mount root).
    async fn list(&self, dir: &str) -> Result<Vec<String>, ProviderError> {
        let enc = encode_path("find.path", dir)?;
        let path = match (self.cfg.kv_v2, enc.is_empty()) {
            (true, true) => format!("{}/metadata/", self.mount),
            (true, false) => format!("{}/metadata/{enc}/", self.mount),
            (false, true) => format!("{}/", self.mount),
            (false, false) => format!("{}/{enc}/", self.mount),
        };
        let a = self
            .call(Method::GET, &path, &[("list", "true".into())])
            .await?;
        if a.status == StatusCode::NOT_FOUND && is_kv_not_found(&a.body) {
            return Ok(Vec::new());
        }
        if !a.status.is_success() {
            return Err(self.classify(&a, &format!("{dir}/")));
        }
        serde_json::from_slice::<ListBody>(&a.body)
            .map(|b| b.data.map(|d| d.keys).unwrap_or_default())
            .map_err(|_| self.parse_err(dir, "LIST JSON"))
    }

    async fn tags_match(
        &self,
        name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<bool, ProviderError> {
        let path = format!(
            "{}/metadata/{}",
            self.mount,
            encode_path("remote key", name)?
        );
        let a = self.call(Method::GET, &path, &[]).await?;
        if a.status == StatusCode::NOT_FOUND && is_kv_not_found(&a.body) {
            return Ok(false);
        }
        if !a.status.is_success() {
            return Err(self.classify(&a, name));
        }
        let custom = serde_json::from_slice::<MetadataBody>(&a.body)
            .map_err(|_| self.parse_err(name, "metadata JSON"))?
            .data
            .and_then(|d| d.custom_metadata)
            .unwrap_or_default();
        Ok(tags.iter().all(|(k, v)| custom.get(k) == Some(v)))
    }
}

#[async_trait]
impl Provider for VaultProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Vault
    }

    async fn get(&self, remote: &RemoteRef) -> Result<FetchedSecret, ProviderError> {
        if self.cfg.kv_v2 {
            self.get_v2(remote).await
        } else {
            self.get_v1(remote).await
        }
    }

    async fn get_many(&self, remotes: &[RemoteRef]) -> Vec<Result<FetchedSecret, ProviderError>> {
        super::read_concurrently(self, remotes, READ_CONCURRENCY).await
    }

    async fn find(&self, query: &FindQuery) -> Result<Vec<String>, ProviderError> {
        if !self.cfg.kv_v2 && !query.tags.is_empty() {
            return Err(ProviderError::InvalidConfig {
                message: format!(
                    "vault store {:?}: find.tags needs KV v2 custom metadata; the mount {:?} is KV v1",
                    self.cfg.store, self.cfg.mount
                ),
            });
        }
        let re = query.compiled_regexp()?;
        let raw_prefix = query.path.as_deref().unwrap_or("");
        let lead = if raw_prefix.starts_with('/') { "/" } else { "" };
        let prefix = raw_prefix.trim_start_matches('/');
        // List the folder holding the prefix, then keep names starting with it.
        let (start_dir, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        let mut found: Vec<String> = Vec::new();
        let mut listed = 0usize;
        let mut pending: Vec<(String, usize)> = vec![(start_dir.to_string(), 0)];
        while let Some((dir, depth)) = pending.pop() {
            let keys = self.list(&dir).await?;
            listed += keys.len();
            if listed > MAX_FIND_KEYS {
                return Err(ProviderError::InvalidConfig {
                    message: format!(
                        "vault store {:?}: find under {raw_prefix:?} lists more than {MAX_FIND_KEYS} keys; narrow find.path",
                        self.cfg.store
                    ),
                });
            }
            for k in keys {
                let full = if dir.is_empty() {
                    k.clone()
                } else {
                    format!("{dir}/{k}")
                };
                if let Some(sub) = full.strip_suffix('/') {
                    // Descend only into folders that can hold names with the prefix.
                    if !(full.starts_with(prefix) || prefix.starts_with(&full)) {
                        continue;
                    }
                    if depth + 1 > MAX_FIND_DEPTH {
                        return Err(ProviderError::InvalidConfig {
                            message: format!(
                                "vault store {:?}: find under {raw_prefix:?} goes deeper than {MAX_FIND_DEPTH} folders; narrow find.path",
                                self.cfg.store
                            ),
                        });
                    }
                    pending.push((sub.to_string(), depth + 1));
                } else if full.starts_with(prefix) {
                    let name = format!("{lead}{full}");
                    if re.as_ref().is_none_or(|re| re.is_match(&name)) {
                        found.push(name);
                    }
                }
            }
        }
        found.sort();
        found.dedup();
        if query.tags.is_empty() {
            return Ok(found);
        }
        let lookups: Vec<BoxFuture<'_, Result<bool, ProviderError>>> = found
            .iter()
            .map(|n| -> BoxFuture<'_, _> { Box::pin(self.tags_match(n, &query.tags)) })
            .collect();
        let checks: Vec<Result<bool, ProviderError>> = stream::iter(lookups)
            .buffered(READ_CONCURRENCY)
            .collect()
            .await;
        let mut out = Vec::new();
        for (n, ok) in found.into_iter().zip(checks) {
            if ok? {
                out.push(n);
            }
        }
        Ok(out)
    }

    async fn validate(&self) -> Result<(), ProviderError> {
        let a = self
            .call(Method::GET, "auth/token/lookup-self", &[])
            .await?;
        if a.status.is_success() {
            Ok(())
        } else {
            Err(self.classify(&a, "auth/token/lookup-self"))
        }
    }
}

/// The default call budget of a Vault store (qps, burst), unless it sets `rateLimit`.
pub const DEFAULT_RATE: (f64, u32) = (50.0, 100);

/// Builds a `vault` store's provider. Credentials, CA bundle and client certificate come from the
/// credentials source; Kubernetes auth with the controller's own token only when the store may use
/// the controller's identity. The fingerprint names every Secret read (`name@resourceVersion`), so a
/// changed credential rebuilds the provider and its Vault token.
pub async fn from_spec(
    v: &crate::api::VaultProvider,
    cx: &super::build::BuildContext<'_>,
) -> Result<super::build::Built, super::build::ConfigError> {
    use super::build::ConfigError;
    use base64::Engine;
    let creds = cx.credentials;
    let mut fp = Vec::new();
    let mount_of = |m: &Option<String>, default: &str| {
        m.as_deref()
            .map(|m| m.trim_matches('/'))
            .filter(|m| !m.is_empty())
            .unwrap_or(default)
            .to_string()
    };
    let auth = if let Some(t) = &v.auth.token {
        let (token, f) = creds.secret_key(&t.secret_ref).await?;
        fp.push(f);
        VaultAuthConfig::Token(token)
    } else if let Some(a) = &v.auth.app_role {
        let (secret_id, f) = creds.secret_key(&a.secret_ref).await?;
        fp.push(f);
        VaultAuthConfig::AppRole {
            mount: mount_of(&a.mount_path, "approle"),
            role_id: a.role_id.clone(),
            secret_id,
        }
    } else if let Some(k) = &v.auth.kubernetes {
        VaultAuthConfig::Kubernetes {
            mount: mount_of(&k.mount_path, "kubernetes"),
            role: k.role.clone(),
            jwt: creds.service_account_token(
                k.service_account_ref.as_ref(),
                &[],
                "/var/run/secrets/kubernetes.io/serviceaccount/token".into(),
                "vault",
                "auth.kubernetes.serviceAccountRef",
            ),
        }
    } else {
        return Err(ConfigError::Invalid(
            "vault.auth needs one of token, kubernetes, appRole".into(),
        ));
    };
    let mut cfg = VaultConfig::new(cx.store, &v.server, &v.path, auth);
    cfg.kv_v2 = v.version.unwrap_or_default() == crate::api::VaultKvVersion::V2;
    cfg.namespace = v.namespace.clone();
    cfg.allow_insecure = cx.allow_insecure_endpoints;
    let mut ca = Vec::new();
    if let Some(b) = &v.ca_bundle {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .map_err(|_| ConfigError::Invalid("vault.caBundle is not valid base64".into()))?;
        ca.extend_from_slice(&pem);
        ca.push(b'\n');
    }
    if let Some(sel) = &v.ca_secret_ref {
        let (pem, f) = creds.secret_key(sel).await?;
        fp.push(f);
        ca.extend_from_slice(pem.expose());
    }
    if !ca.is_empty() {
        cfg.ca_pem = Some(ca);
    }
    if let Some(sel) = &v.client_cert_secret_ref {
        let key_of = |key: &str| crate::api::SecretKeySelector {
            name: sel.name.clone(),
            key: key.to_string(),
        };
        let (crt, f) = creds.secret_key(&key_of("tls.crt")).await?;
        let (key, _) = creds.secret_key(&key_of("tls.key")).await?;
        fp.push(f);
        let mut both = Vec::with_capacity(crt.len() + key.len() + 1);
        both.extend_from_slice(crt.expose());
        both.push(b'\n');
        both.extend_from_slice(key.expose());
        cfg.client_identity = Some(SecretBytes::new(both));
    }
    let provider = VaultProvider::new(cfg).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    Ok(super::build::Built {
        provider: std::sync::Arc::new(provider),
        fingerprint: fp.join(","),
        default_rate: Some(DEFAULT_RATE),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_and_dot_segments_refused() {
        assert_eq!(encode_path("k", "/a/b c/d").unwrap(), "a/b%20c/d");
        assert_eq!(encode_path("k", "team/db?x#y").unwrap(), "team/db%3Fx%23y");
        assert!(encode_path("k", "a/../sys/seal").is_err());
        assert!(encode_path("k", "a/./b").is_err());
        assert!(encode_path("k", "a//b").is_err());
        assert_eq!(encode_path("k", "/").unwrap(), "");
    }

    #[test]
    fn vault_error_text_is_capped_and_cleaned() {
        let long = format!(r#"{{"errors":["{}\nnext"]}}"#, "x".repeat(500));
        let t = vault_errors(long.as_bytes());
        assert!(t.len() <= MAX_ERROR_TEXT + 2);
        assert!(!t.contains('\n'));
        assert_eq!(vault_errors(br#"{"errors":[]}"#), "");
        // Only the KV engine's own 404 is a not-found.
        assert!(is_kv_not_found(br#"{"errors":[]}"#));
        assert!(!is_kv_not_found(
            br#"{"errors":["no handler for route \"kv/data/x\". route entry not found."]}"#
        ));
        assert!(!is_kv_not_found(br#"{"errors":["namespace not found"]}"#));
        assert!(!is_kv_not_found(b"<html>404 Not Found</html>"));
        assert!(!is_kv_not_found(b""));
        assert!(!is_kv_not_found(br#"{}"#));
        assert!(!is_kv_not_found(
            br#"{"errors":[],"data":{"metadata":{"deletion_time":"2026-01-01T00:00:00Z"}}}"#
        ));
        assert_eq!(vault_errors(b"not json"), "");
    }

    #[test]
    fn plain_http_is_refused_for_remote_servers() {
        let cfg = VaultConfig::new(
            "s",
            "http://vault.example.com:8200",
            "secret",
            VaultAuthConfig::Token(SecretBytes::from("t")),
        );
        assert!(matches!(
            VaultProvider::new(cfg),
            Err(ProviderError::InvalidConfig { .. })
        ));
    }

    #[test]
    fn auth_debug_is_redacted() {
        let a = VaultAuthConfig::AppRole {
            mount: "approle".into(),
            role_id: "rid".into(),
            secret_id: SecretBytes::from("sentinel-secret-id"),
        };
        assert!(!format!("{a:?}").contains("sentinel"));
        let t = VaultAuthConfig::Token(SecretBytes::from("sentinel-token"));
        assert!(!format!("{t:?}").contains("sentinel"));
    }
}
