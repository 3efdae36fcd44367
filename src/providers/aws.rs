//! AWS Secrets Manager.
//!
//! **Clients.** One SDK client per region (the primary `region`, then each of `failoverRegions`),
//! built once per store generation and shared by every reconcile: credentials are cached by the
//! SDK's identity cache and refreshed before they expire. HTTPS goes through rustls (ring) with the
//! system roots (`SSL_CERT_FILE` is honoured). Timeouts are short (connect 3 s, operation 10 s) and
//! the SDK's own retries are off (`max_attempts = 1`): the shared fetch layer retries transient
//! failures once with backoff and jitter, and this provider fails over between regions, so SDK
//! retries would only multiply calls (3 SDK attempts × 2 fetch attempts × regions) and stretch a
//! reconcile far past its deadline.
//!
//! **Credentials.** `auth.secretRef` → static keys (optionally a session token) from a Secret;
//! `auth.jwt` → web identity: a service-account token from the controller's [`JwtSource`]
//! (audience [`STS_AUDIENCE`]) exchanged with `sts:AssumeRoleWithWebIdentity` for `role` (an
//! unsigned call: no other credentials are involved), renewed by the SDK's identity cache before
//! the session expires; no `auth` → the SDK default chain (environment, web identity / IRSA, EKS
//! Pod Identity, ECS, instance profile), which the controller allows only for stores that may use
//! its own identity. `role` without `jwt` → `sts:AssumeRole` with the base credentials (and
//! `externalId`), session name `secretsync`. An `endpoint` applies to Secrets Manager only (VPC
//! endpoint or an emulator); STS uses its regional endpoint (or `AWS_ENDPOINT_URL_STS`).
//!
//! **Reads.** Latest values (no `version`, or `AWSCURRENT`) of up to 20 keys go out as one
//! `BatchGetSecretValue` (`SecretIdList`); its per-id `Errors[]` are mapped one by one, so one missing
//! or denied key never fails the others, and an id absent from both lists is a transient error (never
//! not-found). A single latest key uses `GetSecretValue` (same cost, and it needs only
//! `secretsmanager:GetSecretValue`). If `BatchGetSecretValue` itself is denied (the IAM policy lacks
//! it), the provider says so once in the log and reads key by key from then on. Pinned versions use
//! `GetSecretValue` with a `VersionId` or `VersionStage`, see [`VersionSelector::parse`].
//! `SecretString` is returned as its UTF-8 bytes, `SecretBinary` as raw bytes.
//!
//! **Metadata.** `version` = the VersionId read; `created` and `updated` = that version's
//! `CreatedDate` (the moment the value last changed); `served_by` = the region that answered.
//! `LastRotatedDate`/`NextRotationDate` would need a `DescribeSecret` per key and are not read;
//! AWS has no expiry date, so `expires` stays empty.
//!
//! **Failover.** Each call goes to the primary region first; on a transient failure (timeout,
//! connection error, 5xx) the same call is sent to each failover region in order. Access denied and
//! throttling from the primary never fail over (they are answers, not outages). After a failover
//! region has served, it is tried first for [`STICKY_FAILOVER`] from the moment the primary failed;
//! then the primary is probed again — reads the failover region keeps serving do not extend that
//! time, so an outage costs one failed primary call per [`STICKY_FAILOVER`], and the store returns
//! to its primary soon after it recovers. ARNs are rewritten to the replica's region.
//!
//! **Errors.** `ResourceNotFoundException` from the primary region → not-found (authoritative: it
//! may count toward `deletionPolicy: Delete`). From a failover region it is transient: a replica
//! that lacks the secret (not replicated yet, or never) says nothing about the primary, and the
//! next failover region is tried. `AccessDeniedException`,
//! `UnrecognizedClientException`, `ExpiredTokenException`, `InvalidSignatureException`,
//! `DecryptionFailure` and other credential/KMS failures → access denied; `ThrottlingException`,
//! `TooManyRequestsException` or HTTP 429 → throttled (with `Retry-After` when present);
//! `InternalServiceError`, HTTP 5xx, timeouts, connection failures and unreadable responses →
//! transient; `InvalidRequestException`/`InvalidParameterException` (e.g. a secret scheduled for
//! deletion) → invalid. Any other code is transient: it is retried, never taken as not-found.
//! Messages carry the key, the region and the AWS error code, never a value.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::Region;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use chrono::{DateTime, Utc};

use super::{
    FetchedSecret, FindQuery, JwtSource, Provider, ProviderError, ProviderKind, RemoteRef,
    SecretMetadata, check_endpoint, name_matches,
};
use crate::value::SecretBytes;

/// Ids per `BatchGetSecretValue` call (the AWS limit).
pub const MAX_BATCH: usize = 20;

/// How long a failover region that served stays first in line before the primary is tried again.
pub const STICKY_FAILOVER: Duration = Duration::from_secs(60);

/// Pages of `ListSecrets` (100 names each) one search reads at most.
const MAX_LIST_PAGES: usize = 100;

/// Static AWS credentials (from the store's credentials Secret).
pub struct StaticCredentials {
    /// `AKIA...` / `ASIA...`.
    pub access_key_id: SecretBytes,
    /// The secret access key.
    pub secret_access_key: SecretBytes,
    /// A session token (temporary credentials).
    pub session_token: Option<SecretBytes>,
}

/// SDK timeouts.
#[derive(Clone, Copy, Debug)]
pub struct AwsTimeouts {
    /// TCP/TLS connect.
    pub connect: Duration,
    /// One whole call (the SDK does not retry, so one attempt).
    pub operation: Duration,
}

impl Default for AwsTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(3),
            operation: Duration::from_secs(10),
        }
    }
}

/// Everything needed to build the provider of one store.
pub struct AwsSettings {
    /// The store's name (for messages).
    pub store: String,
    /// Primary region.
    pub region: String,
    /// Replica regions, in order.
    pub failover_regions: Vec<String>,
    /// Secrets Manager endpoint override.
    pub endpoint: Option<String>,
    /// Role to assume.
    pub role: Option<String>,
    /// External id for AssumeRole.
    pub external_id: Option<String>,
    /// Static keys; `None` = the SDK default chain.
    pub credentials: Option<StaticCredentials>,
    /// `--allow-insecure-endpoints`.
    pub allow_insecure_endpoints: bool,
    /// SDK timeouts.
    pub timeouts: AwsTimeouts,
    /// STS endpoint override for AssumeRole (tests; in production the regional STS endpoint or
    /// `AWS_ENDPOINT_URL_STS`).
    pub sts_endpoint: Option<String>,
    /// Web identity (`auth.jwt`): the token source exchanged for `role`.
    pub web_identity: Option<JwtSource>,
    /// How long a failover region that served stays first in line ([`STICKY_FAILOVER`]).
    pub sticky_failover: Duration,
}

impl AwsSettings {
    /// Settings for `store` in `region` with the default chain and default timeouts.
    pub fn new(store: impl Into<String>, region: impl Into<String>) -> Self {
        Self {
            store: store.into(),
            region: region.into(),
            failover_regions: Vec::new(),
            endpoint: None,
            role: None,
            external_id: None,
            credentials: None,
            allow_insecure_endpoints: false,
            timeouts: AwsTimeouts::default(),
            sts_endpoint: None,
            web_identity: None,
            sticky_failover: STICKY_FAILOVER,
        }
    }
}

/// The audience of a service-account token exchanged with `sts:AssumeRoleWithWebIdentity` (the
/// one EKS's IRSA uses).
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";

/// Credentials from a service-account token and `sts:AssumeRoleWithWebIdentity`: the per-store
/// form of IRSA. The SDK's identity cache calls it again before the session expires.
#[derive(Clone)]
struct WebIdentity {
    store: String,
    role: String,
    jwt: JwtSource,
    sts: aws_sdk_sts::Client,
}

impl std::fmt::Debug for WebIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebIdentity")
            .field("store", &self.store)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl WebIdentity {
    async fn credentials(&self) -> aws_credential_types::provider::Result {
        let token = (self.jwt)().await.map_err(|e| {
            CredentialsError::provider_error(format!(
                "aws store {:?}: the service account token: {e}",
                self.store
            ))
        })?;
        let token = token.expose_str().map(str::to_string).ok_or_else(|| {
            CredentialsError::provider_error("the service account token is not UTF-8")
        })?;
        let out = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(&self.role)
            .role_session_name("secretsync")
            .web_identity_token(token)
            .send()
            .await
            .map_err(|e| {
                let meta = ProvideErrorMetadata::code(&e)
                    .unwrap_or("unknown")
                    .to_string();
                let msg = ProvideErrorMetadata::message(&e)
                    .map(|m| format!(": {}", m.chars().take(200).collect::<String>()))
                    .unwrap_or_default();
                CredentialsError::provider_error(format!(
                    "aws store {:?}: sts:AssumeRoleWithWebIdentity for {}: {meta}{msg}",
                    self.store, self.role
                ))
            })?;
        let c = out.credentials.ok_or_else(|| {
            CredentialsError::provider_error(
                "sts:AssumeRoleWithWebIdentity returned no credentials",
            )
        })?;
        let expiry = std::time::SystemTime::try_from(c.expiration).ok();
        Ok(Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            expiry,
            "secretsync-web-identity",
        ))
    }
}

impl aws_credential_types::provider::ProvideCredentials for WebIdentity {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::new(self.credentials())
    }
}

/// How a `remoteRef.version` string selects a secret version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionSelector {
    /// A `VersionId`.
    Id(String),
    /// A `VersionStage` (staging label).
    Stage(String),
}

impl VersionSelector {
    /// The rule: `stage:NAME` and `id:VALUE` say it explicitly; otherwise a string starting with
    /// `AWS` (`AWSCURRENT`, `AWSPREVIOUS`, `AWSPENDING`) is a stage, a string of 32–64 letters, digits
    /// and `-` (the VersionId format; AWS generates UUIDs) is a version id, and anything else is a
    /// custom staging label.
    pub fn parse(v: &str) -> Self {
        if let Some(s) = v.strip_prefix("stage:") {
            return Self::Stage(s.to_string());
        }
        if let Some(s) = v.strip_prefix("id:") {
            return Self::Id(s.to_string());
        }
        if v.starts_with("AWS") {
            return Self::Stage(v.to_string());
        }
        if (32..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            Self::Id(v.to_string())
        } else {
            Self::Stage(v.to_string())
        }
    }
}

/// The SDK HTTP client: hyper + rustls with ring, system roots (`SSL_CERT_FILE` honoured); also
/// serves plain `http://` for loopback endpoints. Every answer is cut off at [`MAX_ANSWER_BYTES`]
/// while it is read.
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    let inner = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_smithy_runtime_api::client::http::SharedHttpClient::new(CappedClient {
        inner,
        limit: MAX_ANSWER_BYTES,
    })
}

/// The largest AWS answer read: a `BatchGetSecretValue` of 20 values of the 64 KiB maximum, with
/// room for JSON escaping and metadata. (Secrets Manager never holds more; an endpoint that answers
/// more — a tenant's `endpoint` — is cut off while it is read.)
pub const MAX_ANSWER_BYTES: usize = 3 << 20;

/// The error of an answer cut off at its limit (found in the SDK error's source chain).
#[derive(Debug)]
struct AnswerTooLarge(usize);

impl std::fmt::Display for AnswerTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the answer is larger than {} bytes", self.0)
    }
}

impl std::error::Error for AnswerTooLarge {}

/// An HTTP client whose answers are read whole, up to `limit` bytes, before the SDK sees them.
#[derive(Debug, Clone)]
struct CappedClient {
    inner: aws_smithy_runtime_api::client::http::SharedHttpClient,
    limit: usize,
}

impl aws_smithy_runtime_api::client::http::HttpClient for CappedClient {
    fn http_connector(
        &self,
        settings: &aws_smithy_runtime_api::client::http::HttpConnectorSettings,
        components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
    ) -> aws_smithy_runtime_api::client::http::SharedHttpConnector {
        aws_smithy_runtime_api::client::http::SharedHttpConnector::new(CappedConnector {
            inner: self.inner.http_connector(settings, components),
            limit: self.limit,
        })
    }
}

#[derive(Debug)]
struct CappedConnector {
    inner: aws_smithy_runtime_api::client::http::SharedHttpConnector,
    limit: usize,
}

impl aws_smithy_runtime_api::client::http::HttpConnector for CappedConnector {
    fn call(
        &self,
        request: aws_smithy_runtime_api::client::orchestrator::HttpRequest,
    ) -> aws_smithy_runtime_api::client::http::HttpConnectorFuture {
        use aws_smithy_runtime_api::client::result::ConnectorError;
        use http_body_util::BodyExt;
        let answer = self.inner.call(request);
        let limit = self.limit;
        aws_smithy_runtime_api::client::http::HttpConnectorFuture::new(async move {
            let mut resp = answer.await?;
            let mut body = resp.take_body();
            let mut buf: Vec<u8> = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(ConnectorError::io)?;
                if let Ok(data) = frame.into_data() {
                    if buf.len() + data.len() > limit {
                        zeroize::Zeroize::zeroize(&mut buf);
                        return Err(ConnectorError::other(Box::new(AnswerTooLarge(limit)), None));
                    }
                    buf.extend_from_slice(&data);
                }
            }
            *resp.body_mut() = aws_smithy_types::body::SdkBody::from(buf);
            Ok(resp)
        })
    }
}

/// Whether a read is of the current version (batchable).
fn is_current(version: Option<&str>) -> bool {
    version.is_none_or(|v| VersionSelector::parse(v) == VersionSelector::Stage("AWSCURRENT".into()))
}

struct Regional {
    region: String,
    client: Client,
}

/// A classified failure plus the raw AWS error code (for decisions like the batch fallback).
struct Failure {
    err: ProviderError,
    code: Option<String>,
}

/// The AWS Secrets Manager provider of one store.
pub struct AwsSecretsManager {
    store: String,
    regions: Vec<Regional>,
    preferred: Mutex<Option<(usize, Instant)>>,
    batch_denied: AtomicBool,
    sticky_failover: Duration,
}

impl AwsSecretsManager {
    /// Builds the SDK clients (no network call: credentials are resolved on first use).
    pub async fn new(s: AwsSettings) -> Result<Self, ProviderError> {
        let invalid = |message: String| ProviderError::InvalidConfig { message };
        let mut regions: Vec<String> = vec![s.region.clone()];
        for r in &s.failover_regions {
            if !regions.contains(r) {
                regions.push(r.clone());
            }
        }
        for r in &regions {
            if r.is_empty()
                || !r
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(invalid(format!("aws: {r:?} is not a region name")));
            }
        }
        if let Some(ep) = &s.endpoint {
            check_endpoint(ep, s.allow_insecure_endpoints)?;
        }
        if let Some(ep) = &s.sts_endpoint {
            check_endpoint(ep, s.allow_insecure_endpoints)?;
        }
        if let Some(role) = &s.role
            && !role.starts_with("arn:")
        {
            return Err(invalid(format!("aws.role {role:?} is not an IAM role ARN")));
        }

        let http = https_client();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(s.region.clone()))
            .http_client(http)
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(s.timeouts.connect)
                    .operation_timeout(s.timeouts.operation)
                    .operation_attempt_timeout(s.timeouts.operation)
                    .build(),
            );
        if let Some(jwt) = &s.web_identity {
            let role = s.role.clone().ok_or_else(|| {
                invalid(
                    "aws.auth.jwt exchanges the service account's token for a role: set aws.role"
                        .into(),
                )
            })?;
            // AssumeRoleWithWebIdentity is unsigned: an STS client without credentials, so the
            // controller's own identity is never involved.
            let mut sts_loader = aws_config::defaults(BehaviorVersion::latest())
                .region(Region::new(s.region.clone()))
                .http_client(https_client())
                .no_credentials()
                .retry_config(RetryConfig::standard().with_max_attempts(1))
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(s.timeouts.connect)
                        .operation_timeout(s.timeouts.operation)
                        .build(),
                );
            if let Some(ep) = &s.sts_endpoint {
                sts_loader = sts_loader.endpoint_url(ep);
            }
            let sts_conf = sts_loader.load().await;
            let provider = WebIdentity {
                store: s.store.clone(),
                role,
                jwt: jwt.clone(),
                sts: aws_sdk_sts::Client::new(&sts_conf),
            };
            loader = loader.credentials_provider(provider);
        } else if let Some(c) = &s.credentials {
            let text = |v: &SecretBytes, what: &str| -> Result<String, ProviderError> {
                let t = v
                    .expose_str()
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| invalid(format!("aws: the {what} is empty or not UTF-8")))?;
                Ok(t.to_string())
            };
            let creds = Credentials::new(
                text(&c.access_key_id, "access key id")?,
                text(&c.secret_access_key, "secret access key")?,
                c.session_token
                    .as_ref()
                    .map(|t| text(t, "session token"))
                    .transpose()?,
                None,
                "secretsync-static",
            );
            loader = loader.credentials_provider(creds);
        }
        let mut conf = loader.load().await;
        if let Some(role) = s.role.as_ref().filter(|_| s.web_identity.is_none()) {
            let mut sts_conf = conf.clone();
            if let Some(ep) = &s.sts_endpoint {
                sts_conf = sts_conf.into_builder().endpoint_url(ep).build();
            }
            let mut b = AssumeRoleProvider::builder(role)
                .session_name("secretsync")
                .region(Region::new(s.region.clone()))
                .configure(&sts_conf);
            if let Some(x) = &s.external_id {
                b = b.external_id(x);
            }
            let assume = b.build().await;
            conf = conf
                .into_builder()
                .credentials_provider(SharedCredentialsProvider::new(assume))
                .build();
        }
        let regions = regions
            .into_iter()
            .map(|region| {
                let mut b = aws_sdk_secretsmanager::config::Builder::from(&conf)
                    .region(Region::new(region.clone()));
                if let Some(ep) = &s.endpoint {
                    b = b.endpoint_url(ep);
                }
                Regional {
                    region,
                    client: Client::from_conf(b.build()),
                }
            })
            .collect();
        Ok(Self {
            store: s.store,
            regions,
            preferred: Mutex::new(None),
            batch_denied: AtomicBool::new(false),
            sticky_failover: s.sticky_failover,
        })
    }

    /// The regions, primary first.
    pub fn regions(&self) -> Vec<&str> {
        self.regions.iter().map(|r| r.region.as_str()).collect()
    }

    /// Region indexes in the order to try them.
    fn order(&self) -> Vec<usize> {
        let start = match *lock(&self.preferred) {
            Some((i, t)) if t.elapsed() < self.sticky_failover && i < self.regions.len() => i,
            _ => 0,
        };
        std::iter::once(start)
            .chain((0..self.regions.len()).filter(|&i| i != start))
            .collect()
    }

    /// Runs `op` against the regions in order until one answers with anything but a transient error.
    async fn with_failover<'a, T, F, Fut>(&'a self, op: F) -> Result<(T, &'a str), Failure>
    where
        F: Fn(&'a Regional) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let mut last: Option<Failure> = None;
        let mut primary_failed = false;
        for i in self.order() {
            let reg = &self.regions[i];
            match op(reg).await {
                Ok(v) => {
                    let mut p = lock(&self.preferred);
                    *p = match *p {
                        _ if i == 0 => None,
                        // Still on the same failover region and the primary was not tried: keep
                        // the time it took over, so the primary is probed again after the sticky
                        // time however many reads the failover region serves meanwhile.
                        Some((pi, since)) if pi == i && !primary_failed => Some((i, since)),
                        _ => Some((i, Instant::now())),
                    };
                    return Ok((v, reg.region.as_str()));
                }
                Err(f) if i != 0 && matches!(f.err, ProviderError::NotFound { .. }) => {
                    // A replica's not-found is not the primary's: try the next region, and at
                    // worst fail transiently.
                    last = Some(Failure {
                        err: not_found_in_replica(&f.err, &reg.region),
                        code: f.code,
                    });
                }
                Err(f) if matches!(f.err, ProviderError::Transient { .. }) => {
                    primary_failed |= i == 0;
                    if self.regions.len() > 1 {
                        tracing::info!(
                            store = %self.store,
                            region = %reg.region,
                            error = %f.err,
                            "aws region failed; trying the next region"
                        );
                    }
                    // Forget a failover preference that stopped working.
                    let mut p = lock(&self.preferred);
                    if p.is_some_and(|(pi, _)| pi == i) {
                        *p = None;
                    }
                    drop(p);
                    last = Some(f);
                }
                Err(f) => return Err(f),
            }
        }
        Err(last.unwrap_or(Failure {
            err: ProviderError::Transient {
                message: "no region configured".into(),
            },
            code: None,
        }))
    }

    /// One `GetSecretValue`.
    async fn get_one(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> Result<FetchedSecret, ProviderError> {
        let sel = version.map(VersionSelector::parse);
        let r = self
            .with_failover(|reg| {
                let sel = sel.clone();
                async move {
                    let id = id_for_region(key, &reg.region, &self.regions[0].region);
                    let mut req = reg.client.get_secret_value().secret_id(id);
                    match sel {
                        Some(VersionSelector::Id(v)) => req = req.version_id(v),
                        Some(VersionSelector::Stage(v)) => req = req.version_stage(v),
                        None => {}
                    }
                    req.send()
                        .await
                        .map_err(|e| classify_sdk(&e, Some(key), &reg.region))
                }
            })
            .await;
        let (out, region) = r.map_err(|f| f.err)?;
        to_fetched(
            key,
            out.secret_string,
            out.secret_binary.map(|b| b.into_inner()),
            out.version_id,
            out.created_date.as_ref(),
            region,
        )
    }

    /// One `BatchGetSecretValue` for up to [`MAX_BATCH`] distinct ids; one answer per id, in order.
    async fn batch(&self, ids: &[String]) -> Vec<Result<FetchedSecret, ProviderError>> {
        if ids.len() == 1 || self.batch_denied.load(Ordering::Relaxed) {
            return futures::future::join_all(ids.iter().map(|id| self.get_one(id, None))).await;
        }
        let primary = self.regions[0].region.as_str();
        let r = self
            .with_failover(|reg| async move {
                let sent: Vec<String> = ids
                    .iter()
                    .map(|id| id_for_region(id, &reg.region, primary))
                    .collect();
                let r = reg
                    .client
                    .batch_get_secret_value()
                    .set_secret_id_list(Some(sent.clone()))
                    .send()
                    .await;
                match r {
                    Ok(out) => Ok((sent, out)),
                    Err(e) => Err(classify_sdk(&e, None, &reg.region)),
                }
            })
            .await;
        let ((sent, out), region) = match r {
            Ok(v) => v,
            Err(f) if f.code.as_deref() == Some("AccessDeniedException") => {
                // Per-secret denials come back in Errors[]: a denial of the whole call means the
                // policy lacks secretsmanager:BatchGetSecretValue. Read key by key from now on.
                if !self.batch_denied.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        store = %self.store,
                        "secretsmanager:BatchGetSecretValue is denied; reading secrets one by one (grant it to batch up to 20 reads per call)"
                    );
                }
                return futures::future::join_all(ids.iter().map(|id| self.get_one(id, None)))
                    .await;
            }
            Err(f) => return ids.iter().map(|_| Err(f.err.clone())).collect(),
        };
        let mut entries: Vec<Option<aws_sdk_secretsmanager::types::SecretValueEntry>> = out
            .secret_values
            .unwrap_or_default()
            .into_iter()
            .map(Some)
            .collect();
        let errors = out.errors.unwrap_or_default();
        ids.iter()
            .zip(&sent)
            .map(|(id, s)| {
                if let Some(e) = entries
                    .iter_mut()
                    .find(|e| e.as_ref().is_some_and(|e| entry_matches(s, e.name(), e.arn())))
                    .and_then(Option::take)
                {
                    return to_fetched(
                        id,
                        e.secret_string,
                        e.secret_binary.map(|b| b.into_inner()),
                        e.version_id,
                        e.created_date.as_ref(),
                        region,
                    );
                }
                if let Some(e) = errors.iter().find(|e| e.secret_id() == Some(s.as_str())) {
                    let err = classify_code(
                        e.error_code(),
                        e.message(),
                        None,
                        None,
                        Some(id),
                        region,
                    );
                    return Err(if region == primary {
                        err
                    } else {
                        not_found_in_replica(&err, region)
                    });
                }
                Err(ProviderError::Transient {
                    message: format!(
                        "BatchGetSecretValue in {region} returned neither a value nor an error for {id:?}"
                    ),
                })
            })
            .collect()
    }
}

#[async_trait]
impl Provider for AwsSecretsManager {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Aws
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    async fn get(&self, remote: &RemoteRef) -> Result<FetchedSecret, ProviderError> {
        let mut v = self.get_many(std::slice::from_ref(remote)).await;
        v.pop().unwrap_or_else(|| {
            Err(ProviderError::Transient {
                message: "no answer".into(),
            })
        })
    }

    async fn get_many(&self, remotes: &[RemoteRef]) -> Vec<Result<FetchedSecret, ProviderError>> {
        // Current versions: distinct ids in batches of 20. Pinned versions: one call each.
        let mut current: Vec<String> = Vec::new();
        for r in remotes {
            if is_current(r.version.as_deref()) && !current.contains(&r.key) {
                current.push(r.key.clone());
            }
        }
        let batches = futures::future::join_all(current.chunks(MAX_BATCH).map(|c| self.batch(c)));
        let pinned = futures::future::join_all(
            remotes
                .iter()
                .filter(|r| !is_current(r.version.as_deref()))
                .map(|r| self.get_one(&r.key, r.version.as_deref())),
        );
        let (batches, pinned) = futures::join!(batches, pinned);
        let current_answers: Vec<Result<FetchedSecret, ProviderError>> =
            batches.into_iter().flatten().collect();
        let mut pinned = pinned.into_iter();
        remotes
            .iter()
            .map(|r| {
                if is_current(r.version.as_deref()) {
                    current
                        .iter()
                        .position(|k| *k == r.key)
                        .and_then(|i| current_answers.get(i).cloned())
                        .unwrap_or_else(|| {
                            Err(ProviderError::Transient {
                                message: format!("no answer for {:?}", r.key),
                            })
                        })
                } else {
                    pinned.next().unwrap_or_else(|| {
                        Err(ProviderError::Transient {
                            message: format!("no answer for {:?}", r.key),
                        })
                    })
                }
            })
            .collect()
    }

    async fn find(&self, query: &FindQuery) -> Result<Vec<String>, ProviderError> {
        let re = query.compiled_regexp()?;
        // Server-side filters narrow the listing (AWS matches them loosely: prefixes of words, and
        // tag keys and values independently); the exact match is done here.
        let mut filters = Vec::new();
        if let Some(p) = query.path.as_deref().filter(|p| filter_value_ok(p)) {
            filters.push(filter(FilterNameStringType::Name, [p.to_string()]));
        }
        if !query.tags.is_empty() {
            let keys: Vec<String> = query
                .tags
                .keys()
                .filter(|k| filter_value_ok(k))
                .cloned()
                .collect();
            if keys.len() == query.tags.len() {
                filters.push(filter(FilterNameStringType::TagKey, keys));
            }
            let values: Vec<String> = query
                .tags
                .values()
                .filter(|v| filter_value_ok(v))
                .cloned()
                .collect();
            if values.len() == query.tags.len() {
                filters.push(filter(FilterNameStringType::TagValue, values));
            }
        }
        let filters = &filters;
        let (listed, _) = self
            .with_failover(|reg| async move {
                let mut found: Vec<(String, Vec<(String, String)>)> = Vec::new();
                let mut token: Option<String> = None;
                for _ in 0..MAX_LIST_PAGES {
                    let r = reg
                        .client
                        .list_secrets()
                        .set_filters((!filters.is_empty()).then(|| filters.clone()))
                        .max_results(100)
                        .set_next_token(token.take())
                        .send()
                        .await;
                    let out = match r {
                        Ok(out) => out,
                        Err(e) => return Err(classify_sdk(&e, None, &reg.region)),
                    };
                    for e in out.secret_list.unwrap_or_default() {
                        if let Some(name) = e.name {
                            let tags = e
                                .tags
                                .unwrap_or_default()
                                .into_iter()
                                .filter_map(|t| Some((t.key?, t.value.unwrap_or_default())))
                                .collect();
                            found.push((name, tags));
                        }
                    }
                    token = out.next_token.filter(|t| !t.is_empty());
                    if token.is_none() {
                        return Ok(found);
                    }
                }
                Err::<Vec<(String, Vec<(String, String)>)>, Failure>(Failure {
                    err: ProviderError::InvalidConfig {
                        message: format!(
                            "find matches more than {} secrets; narrow the path or tags",
                            MAX_LIST_PAGES * 100
                        ),
                    },
                    code: None,
                })
            })
            .await
            .map_err(|f| f.err)?;
        let mut names: Vec<String> = listed
            .into_iter()
            .filter(|(name, tags)| {
                name_matches(query, re.as_ref(), name)
                    && query
                        .tags
                        .iter()
                        .all(|(k, v)| tags.iter().any(|(tk, tv)| tk == k && tv == v))
            })
            .map(|(name, _)| name)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn validate(&self) -> Result<(), ProviderError> {
        let r = self
            .with_failover(|reg| async move {
                reg.client
                    .list_secrets()
                    .max_results(1)
                    .send()
                    .await
                    .map_err(|e| classify_sdk(&e, None, &reg.region))
            })
            .await;
        match r {
            Ok(_) => Ok(()),
            // Signed and recognised, only not allowed to list: the credentials work.
            Err(f) if f.code.as_deref() == Some("AccessDeniedException") => Ok(()),
            Err(f) => Err(f.err),
        }
    }
}

fn filter(key: FilterNameStringType, values: impl IntoIterator<Item = String>) -> Filter {
    Filter::builder()
        .key(key)
        .set_values(Some(values.into_iter().collect()))
        .build()
}

/// Whether a string may be sent as a `ListSecrets` filter value (AWS pattern, no negation).
fn filter_value_ok(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 512
        && !v.starts_with('!')
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b" :_@/+=.-".contains(&b))
}

/// A secret ARN rewritten to a replica region (names are the same in every region).
/// A not-found answered by a failover region, as the transient failure it is (any other error
/// unchanged).
fn not_found_in_replica(err: &ProviderError, region: &str) -> ProviderError {
    match err {
        ProviderError::NotFound { key } => ProviderError::Transient {
            message: format!(
                "remote key {key:?} not found in failover region {region} (only the primary region's not-found is authoritative)"
            ),
        },
        other => other.clone(),
    }
}

fn id_for_region(id: &str, region: &str, primary: &str) -> String {
    if region == primary {
        return id.to_string();
    }
    let parts: Vec<&str> = id.splitn(5, ':').collect();
    if parts.len() == 5 && parts[0] == "arn" && parts[2] == "secretsmanager" {
        format!("arn:{}:secretsmanager:{region}:{}", parts[1], parts[4])
    } else {
        id.to_string()
    }
}

/// Whether a `SecretValueEntry` answers the id sent: by name, full ARN, or partial ARN (the ARN
/// without AWS's random 6-character suffix).
fn entry_matches(sent: &str, name: Option<&str>, arn: Option<&str>) -> bool {
    if name == Some(sent) || arn == Some(sent) {
        return true;
    }
    sent.starts_with("arn:")
        && arn.is_some_and(|a| {
            a.len() == sent.len() + 7
                && a.starts_with(sent)
                && a.as_bytes().get(sent.len()) == Some(&b'-')
        })
}

fn to_fetched(
    key: &str,
    string: Option<String>,
    binary: Option<Vec<u8>>,
    version: Option<String>,
    created: Option<&aws_smithy_types::DateTime>,
    region: &str,
) -> Result<FetchedSecret, ProviderError> {
    let value = match (string, binary) {
        (Some(s), _) => SecretBytes::from_string(s),
        (None, Some(b)) => SecretBytes::new(b),
        (None, None) => {
            return Err(ProviderError::InvalidResponse {
                key: key.to_string(),
                message: format!(
                    "the current version in {region} has neither SecretString nor SecretBinary"
                ),
            });
        }
    };
    let created = created.and_then(|d| DateTime::<Utc>::from_timestamp(d.secs(), d.subsec_nanos()));
    Ok(FetchedSecret {
        value,
        meta: SecretMetadata {
            version,
            created,
            updated: created,
            expires: None,
            served_by: Some(region.to_string()),
        },
    })
}

/// Classifies an SDK error. Never includes response bodies (a truncated body may hold a value).
fn classify_sdk<E>(e: &SdkError<E, HttpResponse>, key: Option<&str>, region: &str) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let transient = |message: String| Failure {
        err: ProviderError::Transient { message },
        code: None,
    };
    let what = key.map(|k| format!(" reading {k:?}")).unwrap_or_default();
    if let Some(t) = find_source::<AnswerTooLarge>(e) {
        return Failure {
            err: ProviderError::TooLarge {
                key: key.map(str::to_string),
                limit: t.0,
            },
            code: None,
        };
    }
    match e {
        SdkError::ServiceError(se) => {
            let raw = se.raw();
            let status = raw.status().as_u16();
            let retry_after = raw.headers().get("retry-after").and_then(parse_retry_after);
            let code = se.err().code().map(clean_code);
            Failure {
                err: classify_code(
                    code.as_deref(),
                    se.err().message(),
                    Some(status),
                    retry_after,
                    key,
                    region,
                ),
                code,
            }
        }
        SdkError::TimeoutError(_) => transient(format!("AWS {region}: timed out{what}")),
        SdkError::ResponseError(re) => transient(format!(
            "AWS {region}: unreadable response (HTTP {}){what}",
            re.raw().status().as_u16()
        )),
        SdkError::DispatchFailure(d) => {
            if let Some(c) = find_source::<CredentialsError>(e) {
                return Failure {
                    err: match c {
                        CredentialsError::ProviderTimedOut(_) | CredentialsError::Unhandled(_) => {
                            ProviderError::Transient {
                                message: format!(
                                    "AWS {region}: loading credentials failed: {}",
                                    super::error_chain(c)
                                ),
                            }
                        }
                        _ => ProviderError::AccessDenied {
                            key: key.map(str::to_string),
                            message: format!(
                                "AWS {region}: no usable credentials: {}",
                                super::error_chain(c)
                            ),
                        },
                    },
                    code: None,
                };
            }
            let kind = if d.is_timeout() {
                "timed out"
            } else if d.is_io() {
                "connection failed"
            } else {
                "request failed"
            };
            transient(format!(
                "AWS {region}: {kind}{what}: {}",
                super::error_chain(e)
            ))
        }
        SdkError::ConstructionFailure(_) => Failure {
            err: ProviderError::InvalidConfig {
                message: format!(
                    "AWS {region}: building the request failed{what}: {}",
                    super::error_chain(e)
                ),
            },
            code: None,
        },
        _ => transient(format!("AWS {region}: request failed{what}")),
    }
}

/// Classifies an AWS error code (from a response or a `BatchGetSecretValue` `Errors[]` entry).
fn classify_code(
    code: Option<&str>,
    message: Option<&str>,
    status: Option<u16>,
    retry_after: Option<Duration>,
    key: Option<&str>,
    region: &str,
) -> ProviderError {
    let code = code.map(clean_code);
    let code_str = code.as_deref().unwrap_or("");
    let detail = {
        let mut d = format!(
            "AWS {region}: {}",
            if code_str.is_empty() {
                "error"
            } else {
                code_str
            }
        );
        if let Some(s) = status {
            d.push_str(&format!(" (HTTP {s})"));
        }
        if let Some(m) = message.filter(|m| !m.is_empty()) {
            let m: String = m.chars().take(200).collect();
            d.push_str(": ");
            d.push_str(&m);
        }
        d
    };
    let key_owned = key.map(str::to_string);
    match code_str {
        "ResourceNotFoundException" => ProviderError::NotFound {
            key: key.unwrap_or("").to_string(),
        },
        "AccessDeniedException"
        | "AccessDenied"
        | "UnrecognizedClientException"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "InvalidClientTokenId"
        | "MissingAuthenticationToken"
        | "MissingAuthenticationTokenException"
        | "NotAuthorized"
        | "DecryptionFailure"
        | "KMSAccessDeniedException"
        | "KMSDisabledException"
        | "KMSInvalidStateException"
        | "KMSNotFoundException" => ProviderError::AccessDenied {
            key: key_owned,
            message: detail,
        },
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "SlowDown" => ProviderError::Throttled { retry_after },
        "InvalidRequestException" | "InvalidParameterException" | "ValidationException" => {
            match key {
                Some(k) => ProviderError::InvalidResponse {
                    key: k.to_string(),
                    message: detail,
                },
                None => ProviderError::InvalidConfig { message: detail },
            }
        }
        "InternalServiceError"
        | "InternalServiceErrorException"
        | "InternalFailure"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "RequestTimeout"
        | "RequestTimeoutException" => ProviderError::Transient { message: detail },
        _ => match status {
            Some(429) => ProviderError::Throttled { retry_after },
            Some(401) | Some(403) => ProviderError::AccessDenied {
                key: key_owned,
                message: detail,
            },
            // Unknown codes and statuses are never taken as not-found: retry, report unavailable.
            _ => ProviderError::Transient { message: detail },
        },
    }
}

/// `com.amazonaws.secretsmanager#ThrottlingException:http://...` → `ThrottlingException`.
fn clean_code(c: &str) -> String {
    let c = c.rsplit('#').next().unwrap_or(c);
    c.split(':').next().unwrap_or(c).trim().to_string()
}

/// `Retry-After`: delay seconds or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let s = v.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(3600.0)));
    }
    let at = DateTime::parse_from_rfc2822(s).ok()?;
    (at.with_timezone(&Utc) - Utc::now()).to_std().ok()
}

fn find_source<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(t) = c.downcast_ref::<T>() {
            return Some(t);
        }
        cur = c.source();
    }
    None
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keeps the provider alive behind an `Arc<dyn Provider>` (for callers that build it directly).
pub async fn build(settings: AwsSettings) -> Result<Arc<dyn Provider>, ProviderError> {
    Ok(Arc::new(AwsSecretsManager::new(settings).await?))
}

/// The default call budget of an AWS store (qps, burst): `BatchGetSecretValue` and `ListSecrets`
/// allow 100/s per account and region; half of it.
pub const DEFAULT_RATE: (f64, u32) = (50.0, 100);

/// Builds an `aws` store's provider: static keys (`auth.secretRef`) or web identity (`auth.jwt`, a
/// token of a ServiceAccount of the store's namespace) from the credentials source; without `auth`
/// the controller's own identity (the SDK default chain), only for stores that may use it. The
/// fingerprint names each Secret read.
pub async fn from_spec(
    aws: &crate::api::AwsProvider,
    cx: &super::build::BuildContext<'_>,
) -> Result<super::build::Built, super::build::ConfigError> {
    use super::build::ConfigError;
    let mut settings = AwsSettings::new(cx.store, &aws.region);
    settings.failover_regions = aws.failover_regions.clone();
    settings.endpoint = aws.endpoint.clone();
    settings.role = aws.role.clone();
    settings.external_id = aws.external_id.clone();
    settings.allow_insecure_endpoints = cx.allow_insecure_endpoints;
    let mut fp = Vec::new();
    let auth = aws.auth.as_ref();
    if let Some(jwt) = auth.and_then(|a| a.jwt.as_ref()) {
        settings.web_identity = Some(cx.credentials.service_account_token(
            Some(&jwt.service_account_ref),
            &[STS_AUDIENCE],
            std::path::PathBuf::new(),
            "aws",
            "auth.jwt.serviceAccountRef",
        ));
        fp.push(format!("jwt:{}", jwt.service_account_ref.name));
    }
    if let Some(r) = auth.and_then(|a| a.secret_ref.as_ref()) {
        let (access_key_id, f1) = cx.credentials.secret_key(&r.access_key_id).await?;
        let (secret_access_key, f2) = cx.credentials.secret_key(&r.secret_access_key).await?;
        fp.extend([f1, f2]);
        let session_token = match &r.session_token {
            Some(sel) => {
                let (t, f) = cx.credentials.secret_key(sel).await?;
                fp.push(f);
                Some(t)
            }
            None => None,
        };
        settings.credentials = Some(StaticCredentials {
            access_key_id,
            secret_access_key,
            session_token,
        });
    }
    let provider = AwsSecretsManager::new(settings)
        .await
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    Ok(super::build::Built {
        provider: Arc::new(provider),
        fingerprint: fp.join(","),
        default_rate: Some(DEFAULT_RATE),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_rule() {
        use VersionSelector::*;
        assert_eq!(
            VersionSelector::parse("AWSPREVIOUS"),
            Stage("AWSPREVIOUS".into())
        );
        assert_eq!(
            VersionSelector::parse("AWSCURRENT"),
            Stage("AWSCURRENT".into())
        );
        assert_eq!(
            VersionSelector::parse("a1b2c3d4-5678-90ab-cdef-EXAMPLE11111"),
            Id("a1b2c3d4-5678-90ab-cdef-EXAMPLE11111".into())
        );
        assert_eq!(VersionSelector::parse("blue"), Stage("blue".into()));
        assert_eq!(VersionSelector::parse("id:v1"), Id("v1".into()));
        assert_eq!(
            VersionSelector::parse("stage:a1b2c3d4-5678-90ab-cdef-EXAMPLE11111"),
            Stage("a1b2c3d4-5678-90ab-cdef-EXAMPLE11111".into())
        );
        assert!(is_current(None));
        assert!(is_current(Some("AWSCURRENT")));
        assert!(is_current(Some("stage:AWSCURRENT")));
        assert!(!is_current(Some("AWSPREVIOUS")));
    }

    #[test]
    fn arns_follow_the_region_and_match_partially() {
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db";
        assert_eq!(
            id_for_region(arn, "eu-west-1", "us-east-1"),
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db"
        );
        assert_eq!(id_for_region(arn, "us-east-1", "us-east-1"), arn);
        assert_eq!(
            id_for_region("/app/db", "eu-west-1", "us-east-1"),
            "/app/db"
        );
        assert!(entry_matches(
            arn,
            Some("db"),
            Some(&format!("{arn}-AbCdEf"))
        ));
        assert!(entry_matches(
            "db",
            Some("db"),
            Some(&format!("{arn}-AbCdEf"))
        ));
        assert!(!entry_matches(
            arn,
            Some("db2"),
            Some(&format!("{arn}2-AbCdEf"))
        ));
        assert!(!entry_matches("db", Some("db2"), None));
    }

    #[test]
    fn error_codes_are_classified() {
        let c = |code: &str, status: Option<u16>| {
            classify_code(Some(code), Some("m"), status, None, Some("k"), "us-east-1")
        };
        assert!(matches!(
            c("ResourceNotFoundException", Some(400)),
            ProviderError::NotFound { .. }
        ));
        for code in [
            "AccessDeniedException",
            "UnrecognizedClientException",
            "ExpiredTokenException",
            "InvalidSignatureException",
            "DecryptionFailure",
        ] {
            assert!(
                matches!(c(code, Some(400)), ProviderError::AccessDenied { .. }),
                "{code}"
            );
        }
        assert!(matches!(
            c("ThrottlingException", Some(400)),
            ProviderError::Throttled { .. }
        ));
        assert!(matches!(
            c(
                "com.amazonaws.secretsmanager#TooManyRequestsException",
                Some(429)
            ),
            ProviderError::Throttled { .. }
        ));
        assert!(matches!(
            c("InternalServiceError", Some(500)),
            ProviderError::Transient { .. }
        ));
        assert!(matches!(
            c("Whatever", Some(503)),
            ProviderError::Transient { .. }
        ));
        assert!(
            matches!(c("Whatever", Some(404)), ProviderError::Transient { .. }),
            "never not-found without the code"
        );
        assert!(matches!(
            c("Whatever", Some(429)),
            ProviderError::Throttled { .. }
        ));
        assert!(matches!(
            c("Whatever", Some(403)),
            ProviderError::AccessDenied { .. }
        ));
        assert!(matches!(
            c("InvalidRequestException", Some(400)),
            ProviderError::InvalidResponse { .. }
        ));
        let msg = c("AccessDeniedException", Some(400)).to_string();
        assert!(
            msg.contains("AccessDeniedException")
                && msg.contains("us-east-1")
                && msg.contains("\"k\""),
            "{msg}"
        );
    }

    #[test]
    fn retry_after_is_parsed() {
        let h = parse_retry_after;
        assert_eq!(h("3"), Some(Duration::from_secs(3)));
        assert_eq!(h("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(h("garbage"), None);
        let later = (Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        assert!(h(&later).is_some_and(|d| d > Duration::from_secs(20)));
    }

    #[test]
    fn filter_values_are_checked() {
        assert!(filter_value_ok("/clarivum/prod/"));
        assert!(!filter_value_ok("!negated"));
        assert!(!filter_value_ok("a*b"));
        assert!(!filter_value_ok(""));
    }
}
