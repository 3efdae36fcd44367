//! Azure Key Vault secrets, through the stable Azure SDK (`azure_security_keyvault_secrets` 1.0,
//! `azure_identity` 1.0, `azure_core` 1.1) on our own transport ([`transport`]).
//!
//! # Behaviour
//!
//! - **Names**: `remoteRef.key` is the Key Vault secret name: 1–127 letters, digits and dashes
//!   (Key Vault's rule; names are case-insensitive there). Anything else — a path with `/`, an
//!   underscore, a dot — is refused as [`ProviderError::InvalidConfig`] naming the key, before any
//!   call. `remoteRef.version` is a version id (32 hex characters as Key Vault issues them).
//!   `dataFrom.find` returns secret names, which are valid Secret keys as they are.
//! - **Reads**: `GET /secrets/{name}/{version?}`. The value goes straight into a redacting
//!   [`SecretBytes`]; the version (parsed from the secret's `id`), `created`, `updated` and `exp`
//!   (→ status `expiresAt` and the `expiry.warnBefore` warning) go to the metadata. Key Vault does not
//!   enforce `nbf`/`exp` on reads: an expired secret is synced and reported as expiring/expired, a
//!   secret that is **not yet valid** (`nbf` in the future) is refused as `InvalidRemoteValue` so a
//!   pre-staged credential is never distributed early (the Secret keeps its last good data).
//! - **find**: lists secret properties (`GET /secrets`, 25 per page, following `nextLink`, at most
//!   [`MAX_FIND_PAGES`] pages), keeps the enabled ones that are valid now (`nbf` ≤ now < `exp`) and
//!   match the name prefix, regexp and tags; their values are read afterwards like any other key.
//! - **Auth**: client secret (a Secret in the store's namespace), workload identity (the federated
//!   token file AKS injects, `AZURE_FEDERATED_TOKEN_FILE`, or a TokenRequest for a
//!   `serviceAccountRef` with the audience `api://AzureADTokenExchange`, exchanged through
//!   `ClientAssertionCredential`), or managed identity (IMDS; optional user-assigned client id).
//!   The SDK credentials cache access tokens and refresh them before expiry. One client and
//!   credential per store: the first request of a client gets Key Vault's 401 challenge, then one
//!   token request. When the vault rejects a token that the credential still considers valid (401
//!   on an authorized request, e.g. after the app's secret was reset), the provider rebuilds its
//!   credential and client and retries once — at most once a minute.
//! - **Clouds**: the authority host is `azureKeyVault.authorityHost`, else `AZURE_AUTHORITY_HOST`
//!   (read by the controller), else the cloud of the vault URL (`*.vault.azure.cn` → China,
//!   `*.vault.usgovcloudapi.net` → US Government, anything else → public). The challenge-resource
//!   check stays on, except for loopback vault addresses (test doubles).
//! - **Errors**, by HTTP status (the SDK may lose the error code): 404 with a Key Vault
//!   `SecretNotFound` body → [`ProviderError::NotFound`] (a 404 without that body is ambiguous →
//!   transient, never not-found); 401 / 403 and Entra ID rejections (AADSTS codes) →
//!   [`ProviderError::AccessDenied`]; 429 → [`ProviderError::Throttled`] with `Retry-After`;
//!   408 / 5xx / timeouts / connection failures / cut bodies → [`ProviderError::Transient`];
//!   unparseable payloads → [`ProviderError::InvalidResponse`]. SDK retries are off: the shared
//!   fetch layer retries and honours `Retry-After` per store. Messages carry Key Vault's error
//!   code and text (which never echo values), capped.

pub mod transport;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::{ClientMethodOptions, ClientOptions, HttpClient, RetryOptions, Transport};
use azure_identity::{
    ClientAssertion, ClientAssertionCredential, ClientAssertionCredentialOptions,
    ClientSecretCredential, ClientSecretCredentialOptions, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId,
};
use azure_security_keyvault_secrets::models::{
    SecretAttributes, SecretClientGetSecretOptions, SecretClientListSecretPropertiesOptions,
};
use azure_security_keyvault_secrets::{ResourceExt, SecretClient, SecretClientOptions};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;

use super::{
    FetchedSecret, FindQuery, JwtSource, Provider, ProviderError, ProviderKind, RemoteRef,
    SecretMetadata, name_matches,
};
use crate::value::SecretBytes;

/// Most list pages one `find` reads (25 secrets a page).
pub const MAX_FIND_PAGES: usize = 400;
/// Concurrent reads inside one `get_many` (Key Vault has no batch read).
const READ_CONCURRENCY: usize = 8;
/// Characters of Key Vault / Entra ID error text kept in a message.
const MAX_ERROR_TEXT: usize = 240;
/// Shortest time between two credential rebuilds after a rejected token.
const REBUILD_EVERY: Duration = Duration::from_secs(60);
/// The token-exchange audience of Entra workload identity federation.
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";
/// The public cloud's authority.
pub const PUBLIC_AUTHORITY: &str = "https://login.microsoftonline.com";

/// How the provider authenticates.
#[derive(Clone)]
pub enum AzureAuthConfig {
    /// A service principal's client secret.
    ClientSecret {
        /// Application (client) id.
        client_id: String,
        /// The client secret.
        secret: SecretBytes,
    },
    /// Workload identity federation: a Kubernetes service-account token exchanged for an Entra token.
    WorkloadIdentity {
        /// Application (client) id.
        client_id: String,
        /// Where the service-account token comes from (file or TokenRequest).
        assertion: JwtSource,
    },
    /// The managed identity of the node or pod (IMDS / App Service endpoint).
    ManagedIdentity {
        /// A user-assigned identity's client id; `None`: system-assigned.
        client_id: Option<String>,
    },
}

impl std::fmt::Debug for AzureAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ClientSecret { client_id, .. } => f
                .debug_struct("ClientSecret")
                .field("client_id", client_id)
                .finish_non_exhaustive(),
            Self::WorkloadIdentity { client_id, .. } => f
                .debug_struct("WorkloadIdentity")
                .field("client_id", client_id)
                .finish_non_exhaustive(),
            Self::ManagedIdentity { client_id } => f
                .debug_struct("ManagedIdentity")
                .field("client_id", client_id)
                .finish(),
        }
    }
}

/// Everything needed to build the provider of one store.
#[derive(Clone, Debug)]
pub struct AzureSettings {
    /// The store's name (for messages).
    pub store: String,
    /// `https://<vault>.vault.azure.net`.
    pub vault_url: String,
    /// The Entra tenant (required for client secret and workload identity).
    pub tenant_id: Option<String>,
    /// Authority host override (`authorityHost`, else `AZURE_AUTHORITY_HOST`).
    pub authority_host: Option<String>,
    /// How to authenticate.
    pub auth: AzureAuthConfig,
    /// Extra trusted CA certificates (PEM), added to the system / `SSL_CERT_FILE` roots.
    pub ca_pem: Option<Vec<u8>>,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
}

impl AzureSettings {
    /// Settings with default timeouts (connect 3 s, request 10 s).
    pub fn new(
        store: impl Into<String>,
        vault_url: impl Into<String>,
        auth: AzureAuthConfig,
    ) -> Self {
        Self {
            store: store.into(),
            vault_url: vault_url.into(),
            tenant_id: None,
            authority_host: None,
            auth,
            ca_pem: None,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Checks a Key Vault secret name: 1–127 characters of `[0-9A-Za-z-]`.
pub fn validate_secret_name(name: &str) -> Result<(), ProviderError> {
    if name.is_empty()
        || name.len() > 127
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(ProviderError::InvalidConfig {
            message: format!(
                "remote key {name:?} is not a Key Vault secret name (1-127 letters, digits and dashes; use dashes where other stores use '/' or '_')"
            ),
        });
    }
    Ok(())
}

/// Checks a `remoteRef.version`: a Key Vault version id (letters and digits, at most 64).
pub fn validate_version(name: &str, version: &str) -> Result<(), ProviderError> {
    if version.is_empty()
        || version.len() > 64
        || !version.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(ProviderError::InvalidConfig {
            message: format!(
                "version {version:?} of remote key {name:?} is not a Key Vault version id (32 hex characters)"
            ),
        });
    }
    Ok(())
}

/// The vault URL, parsed and checked: `https://host[:port][/]`.
pub fn parse_vault_url(url: &str) -> Result<azure_core::http::Url, ProviderError> {
    let invalid = |why: &str| ProviderError::InvalidConfig {
        message: format!("azureKeyVault.vaultUrl {url:?} {why}"),
    };
    let u = azure_core::http::Url::parse(url.trim()).map_err(|_| invalid("is not a URL"))?;
    if u.scheme() != "https" {
        return Err(invalid(
            "must be an https:// URL (Key Vault refuses tokens over plain HTTP)",
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(invalid("has no host"));
    }
    if u.path() != "/" && !u.path().is_empty() {
        return Err(invalid(
            "must be the vault's base URL, without a path (e.g. https://myvault.vault.azure.net)",
        ));
    }
    if u.query().is_some() || !u.username().is_empty() || u.password().is_some() {
        return Err(invalid("must not carry a query or credentials"));
    }
    Ok(u)
}

/// The Entra authority for a vault: the explicit override, else the vault's cloud.
pub fn authority_for(vault_host: &str, explicit: Option<&str>) -> String {
    if let Some(a) = explicit.map(str::trim).filter(|a| !a.is_empty()) {
        return a.trim_end_matches('/').to_string();
    }
    let h = vault_host.to_ascii_lowercase();
    if h.ends_with(".vault.azure.cn") {
        "https://login.chinacloudapi.cn".into()
    } else if h.ends_with(".vault.usgovcloudapi.net") {
        "https://login.microsoftonline.us".into()
    } else {
        PUBLIC_AUTHORITY.into()
    }
}

fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn to_chrono(t: Option<&azure_core::time::OffsetDateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.unix_timestamp(), 0))
}

/// Whether listed attributes make a secret usable now: enabled, `nbf` passed, `exp` not passed.
pub fn usable_now(attrs: Option<&SecretAttributes>, now: DateTime<Utc>) -> bool {
    let Some(a) = attrs else { return true };
    a.enabled != Some(false)
        && to_chrono(a.not_before.as_ref()).is_none_or(|nbf| nbf <= now)
        && to_chrono(a.expires.as_ref()).is_none_or(|exp| exp > now)
}

fn clean(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let t = one_line.split_whitespace().collect::<Vec<_>>().join(" ");
    if t.chars().count() > MAX_ERROR_TEXT {
        let cut: String = t.chars().take(MAX_ERROR_TEXT).collect();
        format!("{cut}…")
    } else {
        t
    }
}

/// Key Vault's `{"error":{"code","message"}}` body, if that is what it is.
fn kv_error(body: &[u8]) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    let code = e
        .get("code")
        .and_then(|c| c.as_str())
        .unwrap_or("")
        .to_string();
    let msg = e
        .get("message")
        .and_then(|c| c.as_str())
        .map(clean)
        .unwrap_or_default();
    Some((code, msg))
}

/// Maps an HTTP answer of the vault to an error. `key`: the secret concerned (`None`: a listing).
pub fn classify_status(
    store: &str,
    status: u16,
    body: &[u8],
    retry_after: Option<&str>,
    key: Option<&str>,
) -> ProviderError {
    let what = key.map_or_else(
        || "listing secrets".to_string(),
        |k| format!("secret {k:?}"),
    );
    let kv = kv_error(body);
    // The code is matched as sent (`SecretNotFound` exactly) but cleaned for the message like the
    // text: it is the service's string too, and may hold line breaks.
    let detail = kv
        .as_ref()
        .map(|(c, m)| format!(": {} {m}", clean(c)))
        .unwrap_or_default();
    match status {
        404 if key.is_some() && kv.as_ref().is_some_and(|(c, _)| c == "SecretNotFound") => {
            ProviderError::NotFound {
                key: key.unwrap_or_default().to_string(),
            }
        }
        404 => ProviderError::Transient {
            message: format!(
                "azure store {store:?}: {what}: HTTP 404 without a Key Vault SecretNotFound answer (check vaultUrl){detail}"
            ),
        },
        401 | 403 => ProviderError::AccessDenied {
            key: key.map(str::to_string),
            message: format!(
                "azure store {store:?}: {what}: HTTP {status}{detail} (the identity needs the 'Key Vault Secrets User' role or a get/list access policy)"
            ),
        },
        429 => ProviderError::Throttled {
            retry_after: retry_after
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        },
        408 | 500..=599 => ProviderError::Transient {
            message: format!("azure store {store:?}: {what}: HTTP {status}{detail}"),
        },
        _ => ProviderError::InvalidConfig {
            message: format!("azure store {store:?}: {what}: HTTP {status}{detail}"),
        },
    }
}

/// Maps an SDK error. Credential failures are classified by what the token endpoint (or the
/// service-account token source) answered, found down the `source()` chain.
pub fn classify(store: &str, e: &azure_core::Error, key: Option<&str>) -> ProviderError {
    // An error of our own (the service-account token source) keeps its class.
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut token_answer: Option<ProviderError> = None;
    let mut network = false;
    let mut depth = 0;
    while let Some(err) = cur {
        if depth > 16 {
            break;
        }
        depth += 1;
        if let Some(p) = err.downcast_ref::<ProviderError>() {
            return p.clone();
        }
        if let Some(az) = err.downcast_ref::<azure_core::Error>() {
            match az.kind() {
                ErrorKind::HttpResponse {
                    status,
                    raw_response,
                    error_code,
                } if !matches!(e.kind(), ErrorKind::HttpResponse { .. }) => {
                    // The token endpoint's answer inside a credential error.
                    let s = u16::from(*status);
                    let body = raw_response.as_ref().map(|r| r.body().as_ref().to_vec());
                    let desc = body
                        .as_deref()
                        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                        .and_then(|v| {
                            v.get("error_description")
                                .and_then(|d| d.as_str())
                                .map(clean)
                        })
                        .or_else(|| error_code.as_deref().map(|c| format!("AADSTS{c}")))
                        .unwrap_or_default();
                    let ra = raw_response.as_ref().and_then(|r| {
                        r.headers()
                            .get_optional_str(&azure_core::http::headers::RETRY_AFTER)
                            .map(str::to_string)
                    });
                    token_answer = Some(match s {
                        429 => ProviderError::Throttled {
                            retry_after: ra
                                .and_then(|s| s.trim().parse::<u64>().ok())
                                .map(Duration::from_secs),
                        },
                        408 | 500..=599 => ProviderError::Transient {
                            message: format!(
                                "azure store {store:?}: the token endpoint answered HTTP {s}"
                            ),
                        },
                        _ => ProviderError::AccessDenied {
                            key: None,
                            message: format!(
                                "azure store {store:?}: Entra ID refused the credential (HTTP {s}): {desc}"
                            ),
                        },
                    });
                }
                // A cut connection, or an answer of the token endpoint that is not Entra's JSON
                // (a proxy's error page, a 5xx body): an outage, not a refusal.
                ErrorKind::Connection | ErrorKind::Io | ErrorKind::DataConversion
                    if !std::ptr::eq(az, e) =>
                {
                    network = true
                }
                _ => {}
            }
        }
        cur = err.source();
    }
    match e.kind() {
        ErrorKind::HttpResponse {
            status,
            raw_response,
            ..
        } => {
            let body = raw_response
                .as_ref()
                .map(|r| r.body().as_ref().to_vec())
                .unwrap_or_default();
            let ra = raw_response.as_ref().and_then(|r| {
                r.headers()
                    .get_optional_str(&azure_core::http::headers::RETRY_AFTER)
                    .map(str::to_string)
            });
            classify_status(store, u16::from(*status), &body, ra.as_deref(), key)
        }
        ErrorKind::Connection | ErrorKind::Io => ProviderError::Transient {
            message: format!("azure store {store:?}: {}", clean(&e.to_string())),
        },
        ErrorKind::Credential => token_answer.unwrap_or_else(|| {
            // azure_identity 1.0 fails to parse Entra's error body when its description holds JSON
            // escapes (real ones always do: "...\r\nTrace ID: ..."), so the answer survives only as
            // text inside a serde error: find its AADSTS code there.
            if let Some((code, desc)) = aadsts(e) {
                return if TRANSIENT_AADSTS.contains(&code) {
                    ProviderError::Transient {
                        message: format!("azure store {store:?}: Entra ID: {desc}"),
                    }
                } else {
                    ProviderError::AccessDenied {
                        key: None,
                        message: format!(
                            "azure store {store:?}: Entra ID refused the credential: {desc}"
                        ),
                    }
                };
            }
            if network {
                ProviderError::Transient {
                    message: format!(
                        "azure store {store:?}: the token endpoint failed: {}",
                        clean(&e.to_string())
                    ),
                }
            } else {
                ProviderError::AccessDenied {
                    key: None,
                    message: format!(
                        "azure store {store:?}: getting a token failed: {}",
                        clean(&e.to_string())
                    ),
                }
            }
        }),
        ErrorKind::DataConversion if e.to_string().contains(transport::TOO_LARGE) => {
            ProviderError::TooLarge {
                key: key.map(str::to_string),
                limit: transport::MAX_BODY,
            }
        }
        ErrorKind::DataConversion => ProviderError::InvalidResponse {
            key: key.unwrap_or("(listing)").to_string(),
            message: format!(
                "azure store {store:?}: the answer is not valid: {}",
                clean(&e.to_string())
            ),
        },
        // `vaultUrl` is always https on the vault's host, so a request the SDK (plain http) or our
        // transport (another host) refuses to send a token to came from an answer of the vault — a
        // listing's `nextLink` — not from the store's configuration.
        _ if token_answer.is_none() && {
            let t = e.to_string();
            t.contains("non-TLS protected endpoints") || t.contains(transport::FOREIGN_ORIGIN)
        } =>
        {
            ProviderError::InvalidResponse {
                key: key.unwrap_or("(listing)").to_string(),
                message: format!(
                    "azure store {store:?}: the vault's answer points outside the vault: {}",
                    clean(&e.to_string())
                ),
            }
        }
        _ => token_answer.unwrap_or_else(|| ProviderError::InvalidConfig {
            message: format!("azure store {store:?}: {}", clean(&e.to_string())),
        }),
    }
}

/// Entra ID error codes that mean "try again" rather than "refused" (AADSTS90033: a transient error).
const TRANSIENT_AADSTS: &[u32] = &[90033];

/// The first `AADSTS<code>: <description>` in the error chain's text (description cut at the first
/// line break or quote, then cleaned).
fn aadsts(e: &azure_core::Error) -> Option<(u32, String)> {
    let mut text = e.to_string();
    let mut cur = std::error::Error::source(e);
    let mut depth = 0;
    while let Some(s) = cur {
        if depth > 16 {
            break;
        }
        depth += 1;
        text.push(' ');
        text.push_str(&s.to_string());
        cur = s.source();
    }
    let at = text.find("AADSTS")?;
    let rest = &text[at..];
    let digits: String = rest[6..].chars().take_while(char::is_ascii_digit).collect();
    let code = digits.parse::<u32>().ok()?;
    let end = ["\\r", "\\n", "\r", "\n", "\""]
        .iter()
        .filter_map(|m| rest.find(m))
        .min()
        .unwrap_or(rest.len());
    Some((code, clean(&rest[..end])))
}

/// Hands the service-account token to the SDK's `ClientAssertionCredential`.
struct Assertion {
    source: JwtSource,
}

impl std::fmt::Debug for Assertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Assertion(<redacted>)")
    }
}

#[async_trait]
impl ClientAssertion for Assertion {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        let token = (self.source)().await.map_err(|e| {
            azure_core::Error::with_error(
                ErrorKind::Credential,
                e.clone(),
                format!("reading the service account token: {e}"),
            )
        })?;
        token.expose_str().map(str::to_string).ok_or_else(|| {
            azure_core::Error::with_message(
                ErrorKind::Credential,
                "the service account token is not UTF-8",
            )
        })
    }
}

/// The Azure Key Vault provider of one store.
pub struct AzureKeyVault {
    settings: AzureSettings,
    url: String,
    transport: Arc<dyn HttpClient>,
    client: Mutex<Arc<SecretClient>>,
    last_rebuild: Mutex<Option<Instant>>,
    rebuilds: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AzureKeyVault {
    /// Builds the transport, credential and client (no network call: the first read authenticates).
    pub fn new(settings: AzureSettings) -> Result<Self, ProviderError> {
        // The URL first: its error wins over a CA bundle's.
        let vault = parse_vault_url(&settings.vault_url)?;
        let transport = Arc::new(
            transport::ReqwestTransport::new(
                settings.ca_pem.as_deref(),
                settings.connect_timeout,
                settings.request_timeout,
            )?
            .bearer_only_to(&vault),
        );
        Self::with_http_client(settings, transport)
    }

    /// [`AzureKeyVault::new`] on another HTTP client; `ca_pem` and the timeouts are then the
    /// client's business.
    pub(crate) fn with_http_client(
        settings: AzureSettings,
        transport: Arc<dyn HttpClient>,
    ) -> Result<Self, ProviderError> {
        let url = parse_vault_url(&settings.vault_url)?;
        let client = Self::build_client(&settings, url.as_str(), &transport)?;
        Ok(Self {
            url: url.as_str().trim_end_matches('/').to_string(),
            settings,
            transport,
            client: Mutex::new(Arc::new(client)),
            last_rebuild: Mutex::new(None),
            rebuilds: AtomicU64::new(0),
        })
    }

    /// `with_http_client` for the fuzz target `payload_azure` (crate
    /// `secretsync-fuzz-entry`), which answers from memory. Not part of the supported API: only
    /// with the test-only feature `fuzzing`.
    #[cfg(feature = "fuzzing")]
    #[doc(hidden)]
    pub fn with_http_client_for_fuzzing(
        settings: AzureSettings,
        transport: Arc<dyn HttpClient>,
    ) -> Result<Self, ProviderError> {
        Self::with_http_client(settings, transport)
    }

    /// How many times the credential and client were rebuilt after a rejected token.
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds.load(Ordering::Relaxed)
    }

    fn build_client(
        s: &AzureSettings,
        url: &str,
        transport: &Arc<dyn HttpClient>,
    ) -> Result<SecretClient, ProviderError> {
        let invalid = |message: String| ProviderError::InvalidConfig { message };
        let host = azure_core::http::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        let authority = authority_for(&host, s.authority_host.as_deref());
        if !authority.starts_with("https://") {
            return Err(invalid(format!(
                "azure store {:?}: the authority host {authority:?} must be an https:// URL",
                s.store
            )));
        }
        let mut custom = CustomConfiguration::default();
        custom.authority_host = authority;
        let options = ClientOptions {
            transport: Some(Transport::new(transport.clone())),
            retry: RetryOptions::none(),
            cloud: Some(Arc::new(CloudConfiguration::Custom(custom))),
            ..Default::default()
        };
        let tenant = || -> Result<String, ProviderError> {
            s.tenant_id
                .clone()
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| {
                    invalid(format!(
                        "azure store {:?}: azureKeyVault.tenantId is required (or AZURE_TENANT_ID in the controller's environment)",
                        s.store
                    ))
                })
        };
        let cred_err = |e: azure_core::Error| {
            invalid(format!(
                "azure store {:?}: building the credential: {}",
                s.store,
                clean(&e.to_string())
            ))
        };
        let credential: Arc<dyn TokenCredential> = match &s.auth {
            AzureAuthConfig::ClientSecret { client_id, secret } => {
                let text = secret
                    .expose_str()
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        invalid(format!(
                            "azure store {:?}: the client secret is empty or not UTF-8",
                            s.store
                        ))
                    })?;
                ClientSecretCredential::new(
                    &tenant()?,
                    client_id.clone(),
                    azure_core::credentials::Secret::new(text.to_string()),
                    Some(ClientSecretCredentialOptions {
                        client_options: options.clone(),
                    }),
                )
                .map_err(cred_err)?
            }
            AzureAuthConfig::WorkloadIdentity {
                client_id,
                assertion,
            } => ClientAssertionCredential::new(
                tenant()?,
                client_id.clone(),
                Assertion {
                    source: assertion.clone(),
                },
                Some(ClientAssertionCredentialOptions {
                    client_options: options.clone(),
                }),
            )
            .map_err(cred_err)?,
            AzureAuthConfig::ManagedIdentity { client_id } => {
                ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                    client_options: options.clone(),
                }))
                .map_err(cred_err)?
            }
        };
        let client_options = SecretClientOptions {
            client_options: options,
            verify_challenge_resource: Some(!is_loopback_host(&host)),
            ..Default::default()
        };
        SecretClient::new(url, credential, Some(client_options)).map_err(|e| {
            invalid(format!(
                "azure store {:?}: building the Key Vault client: {}",
                s.store,
                clean(&e.to_string())
            ))
        })
    }

    fn current(&self) -> Arc<SecretClient> {
        lock(&self.client).clone()
    }

    /// After the vault rejected a token: a new credential (empty token cache) and client, at most
    /// once per [`REBUILD_EVERY`]. Returns whether a rebuild happened.
    fn rebuild(&self) -> bool {
        {
            let mut last = lock(&self.last_rebuild);
            if last.is_some_and(|t| t.elapsed() < REBUILD_EVERY) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match Self::build_client(&self.settings, &self.url, &self.transport) {
            Ok(c) => {
                *lock(&self.client) = Arc::new(c);
                self.rebuilds.fetch_add(1, Ordering::Relaxed);
                tracing::info!(store = %self.settings.store, "azure: the vault rejected the access token; rebuilt the credential and client");
                true
            }
            Err(e) => {
                tracing::warn!(store = %self.settings.store, error = %e, "azure: rebuilding the credential failed");
                false
            }
        }
    }

    /// Runs `op` with the current client; on a 401 from the vault, rebuilds once and retries.
    async fn call<T, F, Fut>(&self, key: Option<&str>, op: F) -> Result<T, ProviderError>
    where
        F: Fn(Arc<SecretClient>) -> Fut,
        Fut: std::future::Future<Output = azure_core::Result<T>>,
    {
        match self.guarded(op(self.current())).await? {
            Ok(v) => Ok(v),
            Err(e) if e.http_status().map(u16::from) == Some(401) && self.rebuild() => self
                .guarded(op(self.current()))
                .await?
                .map_err(|e| classify(&self.settings.store, &e, key)),
            Err(e) => Err(classify(&self.settings.store, &e, key)),
        }
    }

    /// Runs an SDK future, turning a panic inside it into a transient failure of this store. The
    /// SDK has panicked on service answers (azure_identity 1.0 on a token answer whose
    /// `expires_in` overflows a timestamp, found by the `payload_azure` fuzz target); a service's
    /// answer must never take the whole controller down. The client is rebuilt afterwards.
    async fn guarded<T>(
        &self,
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, ProviderError> {
        use futures::FutureExt;
        match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
            Ok(v) => Ok(v),
            Err(_) => {
                self.rebuild();
                Err(ProviderError::Transient {
                    message: format!(
                        "azure store {:?}: the Azure SDK failed on the service's answer (internal panic); retrying later",
                        self.settings.store
                    ),
                })
            }
        }
    }

    async fn get_one(&self, remote: &RemoteRef) -> Result<FetchedSecret, ProviderError> {
        let name = remote.key.as_str();
        validate_secret_name(name)?;
        if let Some(v) = &remote.version {
            validate_version(name, v)?;
        }
        let store = &self.settings.store;
        let resp = self
            .call(Some(name), |c| {
                let version = remote.version.clone();
                async move {
                    c.get_secret(
                        name,
                        Some(SecretClientGetSecretOptions {
                            secret_version: version,
                            ..Default::default()
                        }),
                    )
                    .await
                }
            })
            .await?;
        let secret = resp
            .into_model()
            .map_err(|e| classify(store, &e, Some(name)))?;
        let version = secret
            .resource_id()
            .ok()
            .and_then(|id| id.version)
            .or_else(|| remote.version.clone());
        let attrs = secret.attributes.as_ref();
        let now = Utc::now();
        if let Some(nbf) = attrs.and_then(|a| to_chrono(a.not_before.as_ref()))
            && nbf > now
        {
            return Err(ProviderError::InvalidResponse {
                key: name.to_string(),
                message: format!(
                    "azure store {store:?}: the current version is not valid before {} (nbf); it is not synced early",
                    nbf.to_rfc3339()
                ),
            });
        }
        let meta = SecretMetadata {
            version,
            created: attrs.and_then(|a| to_chrono(a.created.as_ref())),
            updated: attrs.and_then(|a| to_chrono(a.updated.as_ref())),
            expires: attrs.and_then(|a| to_chrono(a.expires.as_ref())),
            served_by: None,
        };
        let value = secret.value.ok_or_else(|| ProviderError::InvalidResponse {
            key: name.to_string(),
            message: format!("azure store {store:?}: the answer has no value"),
        })?;
        Ok(FetchedSecret {
            value: SecretBytes::from_string(value),
            meta,
        })
    }

    /// One complete listing of secret properties: the names usable now that match `query`.
    async fn list_matching(
        &self,
        client: Arc<SecretClient>,
        query: &FindQuery,
        re: Option<&regex::Regex>,
        max_results: Option<i32>,
        pages_limit: usize,
    ) -> azure_core::Result<Result<Vec<String>, ProviderError>> {
        let pager =
            client.list_secret_properties(Some(SecretClientListSecretPropertiesOptions {
                maxresults: max_results,
                ..Default::default()
            }))?;
        let mut pages = pager.into_pages();
        let now = Utc::now();
        let mut names = Vec::new();
        let mut n = 0usize;
        while let Some(page) = pages.try_next().await? {
            n += 1;
            if n > pages_limit {
                return Ok(Err(ProviderError::InvalidConfig {
                    message: format!(
                        "azure store {:?}: find lists more than {pages_limit} pages of secrets; narrow it with find.path or tags",
                        self.settings.store
                    ),
                }));
            }
            let page = page.into_model()?;
            for item in page.value {
                let Ok(id) = item.resource_id() else { continue };
                if usable_now(item.attributes.as_ref(), now)
                    && name_matches(query, re, &id.name)
                    && query
                        .tags
                        .iter()
                        .all(|(k, v)| item.tags.as_ref().and_then(|t| t.get(k)) == Some(v))
                {
                    names.push(id.name);
                }
            }
        }
        Ok(Ok(names))
    }
}

#[async_trait]
impl Provider for AzureKeyVault {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Azure
    }

    async fn get(&self, remote: &RemoteRef) -> Result<FetchedSecret, ProviderError> {
        self.get_one(remote).await
    }

    async fn get_many(&self, remotes: &[RemoteRef]) -> Vec<Result<FetchedSecret, ProviderError>> {
        super::read_concurrently(self, remotes, READ_CONCURRENCY).await
    }

    async fn find(&self, query: &FindQuery) -> Result<Vec<String>, ProviderError> {
        let re = query.compiled_regexp()?;
        let mut names = self
            .call(None, |c| {
                self.list_matching(c, query, re.as_ref(), None, MAX_FIND_PAGES)
            })
            .await??;
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn validate(&self) -> Result<(), ProviderError> {
        // One page of one item: proves the credential works and the vault answers. A 403 here still
        // proves authentication (the identity may hold `get` but not `list`).
        let empty = FindQuery::default();
        match self
            .call(None, |c| self.list_matching(c, &empty, None, Some(1), 1))
            .await
        {
            Ok(_) => Ok(()),
            // The vault's own 403 on the listing (`classify_status`), not Entra refusing the
            // credential with a 403 (`classify`'s "Entra ID refused …"): that one is a failure.
            Err(ProviderError::AccessDenied { message, .. })
                if message.contains("listing secrets: HTTP 403") =>
            {
                tracing::debug!(store = %self.settings.store, "azure: listing is not permitted; the credential is valid");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// The default call budget of a Key Vault store (qps, burst): 4,000 GET transactions per 10 s per
/// vault; a quarter of it.
pub const DEFAULT_RATE: (f64, u32) = (100.0, 200);

/// Builds an `azureKeyVault` store's provider. A client secret comes from the credentials source and
/// is named in the fingerprint, so a rotated secret rebuilds the credential. The controller's own
/// identity (workload identity without `serviceAccountRef`, managed identity) only for stores that may
/// use it. `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_AUTHORITY_HOST` and
/// `AZURE_FEDERATED_TOKEN_FILE` fill what the spec leaves out.
pub async fn from_spec(
    az: &crate::api::AzureKeyVaultProvider,
    cx: &super::build::BuildContext<'_>,
) -> Result<super::build::Built, super::build::ConfigError> {
    use super::build::ConfigError;
    use base64::Engine;
    let invalid = ConfigError::Invalid;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let mut fp = Vec::new();
    let auth = if let Some(cs) = &az.auth.client_secret {
        let (secret, f) = cx.credentials.secret_key(&cs.secret_ref).await?;
        fp.push(f);
        AzureAuthConfig::ClientSecret {
            client_id: cs.client_id.clone(),
            secret,
        }
    } else if let Some(wi) = &az.auth.workload_identity {
        let client_id = wi.client_id.clone().or_else(|| env("AZURE_CLIENT_ID")).ok_or_else(|| {
            invalid("azureKeyVault.auth.workloadIdentity.clientId is required (or AZURE_CLIENT_ID in the controller's environment)".into())
        })?;
        let own_token = match (&wi.service_account_ref, env("AZURE_FEDERATED_TOKEN_FILE")) {
            (Some(_), _) => std::path::PathBuf::new(),
            (None, Some(f)) => f.into(),
            (None, None) => {
                return Err(invalid("azureKeyVault.auth.workloadIdentity: set serviceAccountRef, or run the controller with Azure workload identity (AZURE_FEDERATED_TOKEN_FILE)".into()));
            }
        };
        AzureAuthConfig::WorkloadIdentity {
            client_id,
            assertion: cx.credentials.service_account_token(
                wi.service_account_ref.as_ref(),
                &[TOKEN_EXCHANGE_AUDIENCE],
                own_token,
                "azure",
                "auth.workloadIdentity.serviceAccountRef",
            ),
        }
    } else if let Some(mi) = &az.auth.managed_identity {
        AzureAuthConfig::ManagedIdentity {
            client_id: mi.client_id.clone(),
        }
    } else {
        return Err(invalid(
            "azureKeyVault.auth needs one of workloadIdentity, managedIdentity, clientSecret"
                .into(),
        ));
    };
    let mut settings = AzureSettings::new(cx.store, &az.vault_url, auth);
    settings.tenant_id = az.tenant_id.clone().or_else(|| env("AZURE_TENANT_ID"));
    settings.authority_host = az
        .authority_host
        .clone()
        .or_else(|| env("AZURE_AUTHORITY_HOST"));
    if let Some(b) = &az.ca_bundle {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .map_err(|_| invalid("azureKeyVault.caBundle is not valid base64".into()))?;
        settings.ca_pem = Some(pem);
    }
    let provider = AzureKeyVault::new(settings).map_err(|e| invalid(e.to_string()))?;
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
    fn secret_names_follow_key_vault_rules() {
        assert!(validate_secret_name("db-password-1").is_ok());
        assert!(validate_secret_name(&"a".repeat(127)).is_ok());
        for bad in ["", "a/b", "a_b", "a.b", "/x", "naïve", &"a".repeat(128)] {
            let e = validate_secret_name(bad).unwrap_err();
            assert_eq!(
                e.reason(),
                crate::api::Reason::InvalidStoreConfig,
                "{bad:?}"
            );
        }
        assert!(validate_version("x", "0123456789abcdef0123456789abcdef").is_ok());
        assert!(validate_version("x", "../etc").is_err());
    }

    #[test]
    fn vault_url_must_be_an_https_base_url() {
        assert!(parse_vault_url("https://myvault.vault.azure.net").is_ok());
        assert!(parse_vault_url("https://myvault.vault.azure.net/").is_ok());
        assert!(parse_vault_url("https://127.0.0.1:8443").is_ok());
        for bad in [
            "http://myvault.vault.azure.net",
            "http://127.0.0.1:8443",
            "myvault",
            "https://myvault.vault.azure.net/secrets/x",
            "https://user:pw@myvault.vault.azure.net",
        ] {
            let e = parse_vault_url(bad).unwrap_err().to_string();
            assert!(e.contains("azureKeyVault.vaultUrl"), "{bad}: {e}");
        }
    }

    #[test]
    fn authority_follows_override_then_vault_cloud() {
        assert_eq!(authority_for("v.vault.azure.net", None), PUBLIC_AUTHORITY);
        assert_eq!(
            authority_for("v.vault.azure.cn", None),
            "https://login.chinacloudapi.cn"
        );
        assert_eq!(
            authority_for("V.VAULT.USGOVCLOUDAPI.NET", None),
            "https://login.microsoftonline.us"
        );
        assert_eq!(
            authority_for("v.vault.azure.cn", Some("https://login.example.internal/")),
            "https://login.example.internal"
        );
        assert_eq!(
            authority_for("v.vault.azure.net", Some(" ")),
            PUBLIC_AUTHORITY
        );
    }

    #[test]
    fn usable_now_filters_disabled_future_and_expired() {
        let now = Utc::now();
        let t = |secs: i64| {
            Some(
                azure_core::time::OffsetDateTime::from_unix_timestamp(now.timestamp() + secs)
                    .unwrap(),
            )
        };
        let mut a = SecretAttributes {
            enabled: Some(true),
            ..Default::default()
        };
        assert!(usable_now(Some(&a), now));
        a.not_before = t(60);
        assert!(!usable_now(Some(&a), now));
        a.not_before = t(-60);
        a.expires = t(-1);
        assert!(!usable_now(Some(&a), now));
        a.expires = t(3600);
        assert!(usable_now(Some(&a), now));
        a.enabled = Some(false);
        assert!(!usable_now(Some(&a), now));
    }

    #[test]
    fn status_classes() {
        let nf = br#"{"error":{"code":"SecretNotFound","message":"A secret with (name/id) x was not found in this key vault."}}"#;
        assert_eq!(
            classify_status("s", 404, nf, None, Some("x")),
            ProviderError::NotFound { key: "x".into() }
        );
        // A 404 that is not Key Vault's answer is never "not found" (it could delete a Secret).
        assert_eq!(
            classify_status("s", 404, b"<html>no</html>", None, Some("x")).reason(),
            crate::api::Reason::ProviderUnavailable
        );
        let forbidden = b"{\"error\":{\"code\":\"Forbidden\",\"message\":\"The user ... does not have secrets get permission\\r\\nCaller: appid=1\"}}";
        let e = classify_status("s", 403, forbidden, None, Some("x"));
        assert_eq!(e.reason(), crate::api::Reason::AccessDenied);
        assert!(!e.to_string().contains('\r'), "{e}");
        assert!(e.to_string().contains("Forbidden"), "{e}");
        // The code is one line too; a code that is not exactly `SecretNotFound` is no not-found.
        let crlf = br#"{"error":{"code":"SecretNotFound\r\nX-Injected: 1","message":"m"}}"#;
        let e = classify_status("s", 404, crlf, None, Some("x"));
        assert_eq!(e.reason(), crate::api::Reason::ProviderUnavailable);
        assert!(!e.to_string().contains(['\r', '\n']), "{e:?}");
        assert!(
            e.to_string().contains("SecretNotFound X-Injected: 1"),
            "{e}"
        );
        assert_eq!(
            classify_status("s", 429, b"", Some("7"), Some("x")),
            ProviderError::Throttled {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(
            classify_status("s", 503, b"", None, Some("x")).reason(),
            crate::api::Reason::ProviderUnavailable
        );
        assert_eq!(
            classify_status("s", 400, b"", None, Some("x")).reason(),
            crate::api::Reason::InvalidStoreConfig
        );
    }

    #[test]
    fn aadsts_codes_are_found_in_unparsed_entra_answers() {
        let inner = azure_core::Error::with_message(
            ErrorKind::DataConversion,
            r#"invalid type: string "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1", expected a borrowed string"#,
        );
        let e = azure_core::Error::with_error(
            ErrorKind::Credential,
            inner,
            "ClientSecretCredential authentication failed.",
        );
        assert_eq!(
            aadsts(&e),
            Some((
                7000215,
                "AADSTS7000215: Invalid client secret provided.".to_string()
            ))
        );
        assert_eq!(
            classify("s", &e, None).reason(),
            crate::api::Reason::AccessDenied
        );
        let inner = azure_core::Error::with_message(
            ErrorKind::DataConversion,
            r#"invalid type: string "AADSTS90033: A transient error has occurred.\r\n""#,
        );
        let e = azure_core::Error::with_error(ErrorKind::Credential, inner, "failed");
        assert_eq!(
            classify("s", &e, None).reason(),
            crate::api::Reason::ProviderUnavailable
        );
        let e = azure_core::Error::with_message(ErrorKind::Credential, "no client ID specified");
        assert_eq!(
            classify("s", &e, None).reason(),
            crate::api::Reason::AccessDenied
        );
        assert_eq!(aadsts(&e), None);
    }

    #[test]
    fn long_error_text_is_capped_to_one_line() {
        let long = format!("line1\r\n{}", "x".repeat(1000));
        let c = clean(&long);
        assert!(!c.contains('\n'));
        assert!(c.chars().count() <= MAX_ERROR_TEXT + 1);
    }

    #[test]
    fn auth_debug_is_redacted() {
        let a = AzureAuthConfig::ClientSecret {
            client_id: "app".into(),
            secret: SecretBytes::from_string("hunter2-sentinel".into()),
        };
        let d = format!("{a:?}");
        assert!(!d.contains("hunter2"), "{d}");
        assert!(d.contains("app"));
    }

    #[tokio::test]
    async fn invalid_names_fail_before_any_call() {
        let p = AzureKeyVault::new(AzureSettings::new(
            "s",
            "https://127.0.0.1:1",
            AzureAuthConfig::ClientSecret {
                client_id: "app".into(),
                secret: SecretBytes::from_string("x".into()),
            },
        ));
        // tenantId missing: a clear configuration error naming the field.
        let e = p.err().expect("tenant required").to_string();
        assert!(e.contains("tenantId"), "{e}");
        let mut s = AzureSettings::new(
            "s",
            "https://127.0.0.1:1",
            AzureAuthConfig::ClientSecret {
                client_id: "app".into(),
                secret: SecretBytes::from_string("x".into()),
            },
        );
        s.tenant_id = Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into());
        let p = AzureKeyVault::new(s).expect("provider");
        let e = p.get(&RemoteRef::latest("a/b")).await.unwrap_err();
        assert_eq!(e.reason(), crate::api::Reason::InvalidStoreConfig);
    }
}
