//! Stores, for the controller and the offline commands alike: finding a SecretRef's store under the
//! tenancy rules ([`admit`], over a [`StoreLookup`]), the key rule of cluster stores ([`check_key`]),
//! and reading what a SecretRef needs with that rule applied to every read ([`read`]). Providers are
//! built by [`crate::providers::build`]. The controller implements the lookup over its reflectors and
//! the credentials over the Kubernetes API; `check` and `render` over manifests, files and
//! environment variables. One implementation of each rule, so `check` never passes a manifest the
//! controller refuses.
//!
//! Credentials referenced by a store are read from the store's own namespace (the controller's for a
//! ClusterSecretStore): no field anywhere reads across namespaces.

pub mod read;
pub mod tenancy;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kube::ResourceExt;

use crate::api::{
    ClusterSecretStore, ClusterStoreCondition, ProviderSpec, RateLimit, Reason, SecretRef,
    SecretStore, StoreKind, duration,
};
use crate::providers::ProviderError;
use crate::providers::build::ConfigError;

/// Why a store cannot be used. Carries the objects it concerns, never values.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The referenced store does not exist.
    #[error("{kind} {name:?} not found{}", namespace.as_ref().map(|n| format!(" in namespace {n:?}")).unwrap_or_default())]
    NotFound {
        /// Store kind.
        kind: &'static str,
        /// Store name.
        name: String,
        /// Namespace searched (namespaced stores).
        namespace: Option<String>,
    },
    /// The ClusterSecretStore's conditions do not admit the namespace.
    #[error("ClusterSecretStore {store:?} does not admit namespace {namespace:?}{hint}")]
    NamespaceNotAllowed {
        /// Store name.
        store: String,
        /// The SecretRef's namespace.
        namespace: String,
        /// More to say (offline: the namespace's labels were unknown), or empty.
        hint: String,
    },
    /// A remote key outside the store's `allowedKeyPrefixes`.
    #[error(
        "ClusterSecretStore {store:?} does not allow namespace {namespace:?} to read remote key {key:?}"
    )]
    KeyNotAllowed {
        /// Store name.
        store: String,
        /// The SecretRef's namespace.
        namespace: String,
        /// The refused key.
        key: String,
    },
    /// Inline values while the controller runs without `--allow-inline-secrets`.
    #[error(
        "store {store:?} uses the fake provider, which this controller refuses (start it with --allow-inline-secrets)"
    )]
    InlineSecretsDisabled {
        /// Store name.
        store: String,
    },
    /// The provider is not available in this build.
    #[error("store {store:?}: provider {provider} is not supported by this version of secretsync")]
    ProviderUnsupported {
        /// Store name.
        store: String,
        /// Provider name.
        provider: &'static str,
    },
    /// The store spec or its credentials are unusable.
    #[error("store {store:?}: {message}")]
    InvalidConfig {
        /// Store name.
        store: String,
        /// What is wrong.
        message: String,
    },
    /// Reading the store's credentials failed transiently.
    #[error("store {store:?}: reading its configuration failed: {message}")]
    Unavailable {
        /// Store name.
        store: String,
        /// What failed.
        message: String,
    },
    /// The provider refused what the store gave it (e.g. a file store's master key does not open
    /// its document).
    #[error("store {store:?}: {source}")]
    Provider {
        /// Store name.
        store: String,
        /// The provider's answer.
        source: ProviderError,
    },
}

impl StoreError {
    /// Stable reason for conditions, events and metrics.
    pub fn reason(&self) -> Reason {
        match self {
            Self::NotFound { .. } => Reason::StoreNotFound,
            Self::NamespaceNotAllowed { .. } => Reason::NamespaceNotAllowed,
            Self::KeyNotAllowed { .. } => Reason::KeyNotAllowed,
            Self::InlineSecretsDisabled { .. } => Reason::InlineSecretsDisabled,
            Self::ProviderUnsupported { .. } => Reason::ProviderUnsupported,
            Self::InvalidConfig { .. } => Reason::InvalidStoreConfig,
            Self::Unavailable { .. } => Reason::StoreUnavailable,
            Self::Provider { source, .. } => source.reason(),
        }
    }

    /// The error of building `store`'s provider.
    pub fn from_config(store: &str, e: ConfigError) -> Self {
        let store = store.to_string();
        match e {
            ConfigError::Invalid(message) => Self::InvalidConfig { store, message },
            ConfigError::NoProvider => Self::InvalidConfig {
                store,
                message: e.to_string(),
            },
            ConfigError::Unavailable(message) => Self::Unavailable { store, message },
            ConfigError::InlineDisabled => Self::InlineSecretsDisabled { store },
            ConfigError::Provider(source) => Self::Provider { store, source },
        }
    }

    /// A tenancy denial (audited and reported as such).
    pub fn is_denial(&self) -> bool {
        matches!(
            self,
            Self::NamespaceNotAllowed { .. } | Self::KeyNotAllowed { .. }
        )
    }
}

/// The `allowedKeyPrefixes` rule of a cluster store (`admitting`: the conditions that admitted the
/// namespace; `None` for namespaced stores, which have no key rule). Shared by the controller and `check`.
pub fn check_key(
    store: &str,
    admitting: Option<&[ClusterStoreCondition]>,
    namespace: &str,
    key: &str,
) -> Result<(), StoreError> {
    match admitting {
        Some(conds) if !tenancy::key_allowed(&conds.iter().collect::<Vec<_>>(), namespace, key) => {
            Err(StoreError::KeyNotAllowed {
                store: store.to_string(),
                namespace: namespace.to_string(),
                key: key.to_string(),
            })
        }
        _ => Ok(()),
    }
}

/// A store admitted for one SecretRef: which one, and what building its provider needs.
#[derive(Clone, Debug)]
pub struct Admitted {
    /// `SecretStore` or `ClusterSecretStore`.
    pub kind: StoreKind,
    /// The store's name.
    pub name: String,
    /// The store's uid (cache identity).
    pub uid: String,
    /// What identifies the store's configuration (generation and force-sync value).
    pub config_version: String,
    /// Where its credentials are read: its own namespace, the controller's for cluster stores.
    pub credential_namespace: String,
    /// Whether it may use the controller's own identity (cluster stores, stores in the controller's
    /// namespace).
    pub ambient_ok: bool,
    /// The provider spec.
    pub provider: ProviderSpec,
    /// The store's `rateLimit`.
    pub rate_limit: Option<RateLimit>,
    /// The store's default refresh interval.
    pub refresh_interval: Option<Duration>,
    /// For cluster stores: the conditions admitting the SecretRef's namespace.
    pub admitting: Option<Vec<ClusterStoreCondition>>,
}

impl Admitted {
    /// A SecretStore, for SecretRefs of its own namespace (or its own check).
    pub fn secret_store(store: &SecretStore, controller_namespace: &str) -> Admitted {
        let ns = store.namespace().unwrap_or_default();
        Admitted {
            kind: StoreKind::SecretStore,
            name: store.name_any(),
            uid: store.uid().unwrap_or_default(),
            config_version: config_version(&store.metadata),
            // The controller's own (ambient) identity is the controller namespace's credential: a
            // namespaced store elsewhere may not borrow it.
            ambient_ok: ns == controller_namespace,
            credential_namespace: ns,
            provider: store.spec.provider.clone(),
            rate_limit: store.spec.rate_limit.clone(),
            refresh_interval: parse_interval(store.spec.refresh_interval.as_deref()),
            admitting: None,
        }
    }

    /// A ClusterSecretStore (credentials from the controller's namespace). `admitting` is set by
    /// [`admit`] for a SecretRef's namespace.
    pub fn cluster_store(store: &ClusterSecretStore, controller_namespace: &str) -> Admitted {
        Admitted {
            kind: StoreKind::ClusterSecretStore,
            name: store.name_any(),
            uid: store.uid().unwrap_or_default(),
            config_version: config_version(&store.metadata),
            ambient_ok: true,
            credential_namespace: controller_namespace.to_string(),
            provider: store.spec.provider.clone(),
            rate_limit: store.spec.rate_limit.clone(),
            refresh_interval: parse_interval(store.spec.refresh_interval.as_deref()),
            admitting: None,
        }
    }

    /// `SecretStore/<namespace>/<name>` or `ClusterSecretStore/<name>`: the store's identity in
    /// caches, audit records and wake-ups.
    pub fn key(&self) -> String {
        match self.kind {
            StoreKind::SecretStore => {
                format!("SecretStore/{}/{}", self.credential_namespace, self.name)
            }
            StoreKind::ClusterSecretStore => format!("ClusterSecretStore/{}", self.name),
        }
    }

    /// Whether a remote key may be read by a SecretRef in `namespace`.
    pub fn check_key(&self, namespace: &str, key: &str) -> Result<(), StoreError> {
        check_key(&self.name, self.admitting.as_deref(), namespace, key)
    }
}

/// Where stores are found: the controller's reflectors, or the manifests the offline commands read.
#[async_trait]
pub trait StoreLookup: Send + Sync {
    /// The SecretStore `name` of namespace `ns` (an error when it exists but cannot be read).
    fn secret_store(&self, ns: &str, name: &str) -> Result<Option<Arc<SecretStore>>, StoreError>;
    /// The ClusterSecretStore `name`.
    fn cluster_store(&self, name: &str) -> Result<Option<Arc<ClusterSecretStore>>, StoreError>;
    /// The controller's own namespace (where cluster stores' credentials are, and whose stores may
    /// use the controller's identity).
    fn controller_namespace(&self) -> &str;
    /// The labels of namespace `ns` (for `namespaceSelector`): `Ok(None)` when they are unknown
    /// (offline), an error when they could not be read.
    async fn namespace_labels(&self, ns: &str) -> Result<Option<BTreeMap<String, String>>, String>;
}

fn parse_interval(s: Option<&str>) -> Option<Duration> {
    s.and_then(|s| duration::parse(s).ok())
}

/// What identifies a store's configuration for caching: its generation (status writes do not change
/// it) and its force-sync annotation (a new value drops cached answers and rebuilds the provider).
fn config_version(meta: &kube::api::ObjectMeta) -> String {
    let force = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::api::FORCE_SYNC_ANNOTATION))
        .map(String::as_str)
        .unwrap_or("");
    format!("g{}:{force}", meta.generation.unwrap_or_default())
}

/// Finds the store of `sref` and checks that its namespace may use it (DESIGN §2.11): a SecretStore
/// only from its own namespace; a ClusterSecretStore only if one of its `conditions` admits the
/// namespace (the key rule is applied to every read, see [`read`]).
pub async fn admit(lookup: &dyn StoreLookup, sref: &SecretRef) -> Result<Admitted, StoreError> {
    let ns = sref.namespace().unwrap_or_default();
    let name = sref.spec.store_ref.name.clone();
    let controller_ns = lookup.controller_namespace().to_string();
    match sref.spec.store_ref.kind.unwrap_or_default() {
        StoreKind::SecretStore => {
            let store = lookup
                .secret_store(&ns, &name)?
                .ok_or_else(|| StoreError::NotFound {
                    kind: "SecretStore",
                    name: name.clone(),
                    namespace: Some(ns.clone()),
                })?;
            Ok(Admitted::secret_store(&store, &controller_ns))
        }
        StoreKind::ClusterSecretStore => {
            let store = lookup
                .cluster_store(&name)?
                .ok_or_else(|| StoreError::NotFound {
                    kind: "ClusterSecretStore",
                    name: name.clone(),
                    namespace: None,
                })?;
            let labels =
                lookup
                    .namespace_labels(&ns)
                    .await
                    .map_err(|message| StoreError::Unavailable {
                        store: name.clone(),
                        message,
                    })?;
            let admitting: Vec<ClusterStoreCondition> = tenancy::admitting(
                &store.spec.conditions,
                &ns,
                labels.as_ref().unwrap_or(&BTreeMap::new()),
            )
            .into_iter()
            .cloned()
            .collect();
            if admitting.is_empty() {
                let selectors = store
                    .spec
                    .conditions
                    .iter()
                    .any(|c| c.namespace_selector.is_some());
                return Err(StoreError::NamespaceNotAllowed {
                    store: name,
                    hint: if labels.is_none() && selectors {
                        format!(
                            " (the labels of namespace {ns:?} are unknown offline: add its Namespace manifest or pass --namespace-labels {ns}=KEY=VALUE)"
                        )
                    } else {
                        String::new()
                    },
                    namespace: ns,
                });
            }
            let mut admitted = Admitted::cluster_store(&store, &controller_ns);
            admitted.admitting = Some(admitting);
            Ok(admitted)
        }
    }
}
