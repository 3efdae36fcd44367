//! Secret backends behind one trait, and the shared fetch layer.
//!
//! The trait knows nothing about Kubernetes: a provider is built from a store's spec plus the
//! credentials the controller resolved for it, and answers reads of remote keys. Every failure is
//! classified into a [`ProviderError`] whose [`ProviderError::reason`] is a stable, low-cardinality
//! category used for conditions, events and metric labels. Messages never contain values.

pub mod aws;
pub mod azure;
pub mod build;
pub mod env;
pub mod fake;
pub mod fetch;
pub mod file;
pub mod vault;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::api::Reason;
use crate::value::SecretBytes;

/// Where a Kubernetes service-account JWT comes from (a TokenRequest for a `serviceAccountRef`, or a
/// projected token file). Called once per login or token exchange, never per read. Shared by the
/// Vault Kubernetes login and the Azure workload-identity exchange.
pub type JwtSource = std::sync::Arc<
    dyn Fn() -> futures::future::BoxFuture<'static, Result<SecretBytes, ProviderError>>
        + Send
        + Sync,
>;

/// Which backend a provider is (a metric label, so a closed set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProviderKind {
    /// AWS Secrets Manager.
    Aws,
    /// Azure Key Vault.
    Azure,
    /// HashiCorp Vault / OpenBao.
    Vault,
    /// The local encrypted file store.
    File,
    /// Process environment (CLI only).
    Env,
    /// Inline values (demos and tests).
    Fake,
}

impl ProviderKind {
    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::Azure => "azureKeyVault",
            Self::Vault => "vault",
            Self::File => "file",
            Self::Env => "env",
            Self::Fake => "fake",
        }
    }
}

/// One remote value to read: a key and an optional version (a version id, or a stage such as
/// `AWSCURRENT`). JSON `property` selection happens after the read, so reads of the same key are shared.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemoteRef {
    /// The provider's name, path or ARN of the secret.
    pub key: String,
    /// A version id or stage; `None` means the latest.
    pub version: Option<String>,
}

impl RemoteRef {
    /// The latest version of `key`.
    pub fn latest(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            version: None,
        }
    }
}

/// What a provider knows about a value besides the value itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretMetadata {
    /// Provider version id of the value read.
    pub version: Option<String>,
    /// When this version was created.
    pub created: Option<DateTime<Utc>>,
    /// When the value was last updated or rotated at the source.
    pub updated: Option<DateTime<Utc>>,
    /// When the value expires (provider-reported).
    pub expires: Option<DateTime<Utc>>,
    /// Where the value was served from (e.g. an AWS region), if the provider has several.
    pub served_by: Option<String>,
}

/// A value read from a provider.
#[derive(Clone, Debug)]
pub struct FetchedSecret {
    /// The value (redacted in Debug).
    pub value: SecretBytes,
    /// Its metadata.
    pub meta: SecretMetadata,
}

/// A search for remote keys (`dataFrom.find`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FindQuery {
    /// Only keys under this path / name prefix.
    pub path: Option<String>,
    /// Only keys whose name matches this regular expression.
    pub name_regexp: Option<String>,
    /// Only secrets carrying all these tags.
    pub tags: BTreeMap<String, String>,
}

/// Every way a provider call can fail, classified. Messages never carry secret values.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProviderError {
    /// The provider said authoritatively that the key does not exist.
    #[error("remote key {key:?} not found")]
    NotFound {
        /// The remote key.
        key: String,
    },
    /// Credentials were rejected or lack permission. Never treated as not-found.
    #[error("access denied{}: {message}", key.as_ref().map(|k| format!(" to {k:?}")).unwrap_or_default())]
    AccessDenied {
        /// The remote key, if the denial concerns one.
        key: Option<String>,
        /// What the provider said (no values).
        message: String,
    },
    /// The provider asked us to slow down.
    #[error("throttled by the provider{}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    Throttled {
        /// The provider's retry hint.
        retry_after: Option<Duration>,
    },
    /// A timeout, 5xx, connection failure or similar: retry later.
    #[error("transient provider error: {message}")]
    Transient {
        /// What went wrong (no values).
        message: String,
    },
    /// The provider answered with something we cannot use (malformed payload, missing property).
    #[error("invalid value for remote key {key:?}: {message}")]
    InvalidResponse {
        /// The remote key.
        key: String,
        /// What is wrong with it (no values).
        message: String,
    },
    /// The store is configured in a way that can never work (bad URL, missing credentials).
    #[error("invalid store configuration: {message}")]
    InvalidConfig {
        /// What is wrong.
        message: String,
    },
    /// An answer larger than a Secret can ever hold: cut off while it was read, never kept.
    #[error("the answer{} is larger than {limit} bytes (a Kubernetes Secret holds at most 1 MiB)", key.as_ref().map(|k| format!(" for remote key {k:?}")).unwrap_or_default())]
    TooLarge {
        /// The remote key, if the answer was about one.
        key: Option<String>,
        /// The limit that was passed.
        limit: usize,
    },
}

/// The largest answer read for one value: the Kubernetes Secret limit plus room for the
/// provider's envelope (JSON, metadata). Longer answers are cut off while they are read
/// ([`ProviderError::TooLarge`]), so no tenant can make the controller hold more.
pub const MAX_ANSWER_BYTES: usize = crate::api::MAX_SECRET_BYTES + 64 * 1024;

/// Most keys one `find` may match; more is an error (narrow the search).
pub const MAX_FIND_RESULTS: usize = 1000;

impl ProviderError {
    /// A stable category: used as condition reason, event reason and metric label.
    pub fn reason(&self) -> Reason {
        match self {
            Self::NotFound { .. } => Reason::RemoteKeyNotFound,
            Self::AccessDenied { .. } => Reason::AccessDenied,
            Self::Throttled { .. } => Reason::ProviderThrottled,
            Self::Transient { .. } => Reason::ProviderUnavailable,
            Self::InvalidResponse { .. } => Reason::InvalidRemoteValue,
            Self::InvalidConfig { .. } => Reason::InvalidStoreConfig,
            Self::TooLarge { .. } => Reason::SecretTooLarge,
        }
    }

    /// The error, naming `key` where it did not name a key yet.
    pub fn for_key(self, key: &str) -> Self {
        match self {
            Self::TooLarge { key: None, limit } => Self::TooLarge {
                key: Some(key.to_string()),
                limit,
            },
            other => other,
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Throttled { .. } | Self::Transient { .. })
    }

    /// The provider's retry hint, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// A secret backend. Implementations are cheap to share (`Arc<dyn Provider>`) and cache their
/// credentials/clients internally; they are built once per store generation, not per reconcile.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Which backend this is.
    fn kind(&self) -> ProviderKind;

    /// Reads one value.
    async fn get(&self, remote: &RemoteRef) -> Result<FetchedSecret, ProviderError>;

    /// How many keys one `get_many` call answers at once (AWS `BatchGetSecretValue`: 20). The fetch
    /// layer collects misses of concurrent callers into batches of up to this size; `1` (the
    /// default) means the provider has no batch API and every key costs its own call.
    fn max_batch(&self) -> usize {
        1
    }

    /// Reads many values at once; the answer has one entry per input, in order. Providers with a
    /// batch API (AWS `BatchGetSecretValue`) override this; one failing key never fails the others.
    async fn get_many(&self, remotes: &[RemoteRef]) -> Vec<Result<FetchedSecret, ProviderError>> {
        let mut out = Vec::with_capacity(remotes.len());
        for r in remotes {
            out.push(self.get(r).await);
        }
        out
    }

    /// Lists the remote keys matching a query (values are read afterwards with `get_many`).
    async fn find(&self, query: &FindQuery) -> Result<Vec<String>, ProviderError>;

    /// Checks that the credentials work and the provider is reachable (store `Ready`).
    async fn validate(&self) -> Result<(), ProviderError>;
}

impl FindQuery {
    /// The compiled `name.regexp`, if any (see [`compile_name_regexp`]).
    pub fn compiled_regexp(&self) -> Result<Option<regex::Regex>, ProviderError> {
        self.name_regexp
            .as_deref()
            .map(compile_name_regexp)
            .transpose()
    }
}

/// Reads `remotes` one call each, at most `concurrency` at a time, answers in input order: the
/// `get_many` of providers without a batch API.
pub async fn read_concurrently<P: Provider + ?Sized>(
    provider: &P,
    remotes: &[RemoteRef],
    concurrency: usize,
) -> Vec<Result<FetchedSecret, ProviderError>> {
    use futures::StreamExt;
    use futures::future::BoxFuture;
    // Collected first: a lazy `map` closure would need to be general over the borrow's lifetime,
    // which the `Send` bound of `async_trait` futures cannot express.
    let reads: Vec<BoxFuture<'_, Result<FetchedSecret, ProviderError>>> =
        remotes.iter().map(|r| provider.get(r)).collect();
    futures::stream::iter(reads)
        .buffered(concurrency.max(1))
        .collect()
        .await
}

/// Compiles a `find.name.regexp`, bounded in size so a hostile pattern cannot exhaust memory.
pub fn compile_name_regexp(pattern: &str) -> Result<regex::Regex, ProviderError> {
    crate::api::syntax::name_regexp(pattern)
        .map_err(|message| ProviderError::InvalidConfig { message })
}

/// Whether `name` satisfies the path prefix and regexp parts of a [`FindQuery`] (tags are provider-specific).
pub fn name_matches(query: &FindQuery, re: Option<&regex::Regex>, name: &str) -> bool {
    query.path.as_deref().is_none_or(|p| name.starts_with(p))
        && re.is_none_or(|re| re.is_match(name))
}

/// Zero-trust transport: provider endpoints must be HTTPS. Plain HTTP is accepted only for loopback
/// addresses (`localhost`, `127.0.0.0/8`, `::1`) or when the controller runs with
/// `--allow-insecure-endpoints`.
pub fn check_endpoint(url: &str, allow_insecure: bool) -> Result<(), ProviderError> {
    let lower = url.trim().to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = lower.strip_prefix("http://") else {
        return Err(ProviderError::InvalidConfig {
            message: format!("endpoint {url:?} must be an https:// URL"),
        });
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback || allow_insecure {
        Ok(())
    } else {
        Err(ProviderError::InvalidConfig {
            message: format!(
                "endpoint {url:?} is plain HTTP; use https:// (plain HTTP is allowed only for loopback addresses or with --allow-insecure-endpoints)"
            ),
        })
    }
}

/// An error and its sources on one line, at most 400 characters: for transport and credential errors
/// only (never a response body), so that "error sending request" says why (e.g. an unknown issuer).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = c.source();
    }
    let mut out = parts.join(": ");
    if out.len() > 400 {
        out = out.chars().take(400).collect();
    }
    out
}

#[cfg(test)]
mod endpoint_tests {
    use super::check_endpoint;

    #[test]
    fn https_required_except_loopback_or_allowed() {
        assert!(check_endpoint("https://vault.example.com:8200", false).is_ok());
        assert!(check_endpoint("http://127.0.0.1:4566", false).is_ok());
        assert!(check_endpoint("http://localhost:8200/v1", false).is_ok());
        assert!(check_endpoint("http://[::1]:8200", false).is_ok());
        assert!(check_endpoint("http://vault.vault.svc:8200", false).is_err());
        assert!(check_endpoint("http://10.0.0.5", false).is_err());
        assert!(check_endpoint("http://127.0.0.1.evil.com", false).is_err());
        assert!(check_endpoint("http://vault.vault.svc:8200", true).is_ok());
        assert!(check_endpoint("ftp://x", true).is_err());
    }
}
