//! Resolving a SecretRef's store under the tenancy rules, and building (and caching) its provider.
//!
//! Credentials are read only from the store's own namespace (the controller's namespace for a
//! ClusterSecretStore): no field anywhere reads across namespaces.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use super::tenancy;
use crate::api::{
    ClusterSecretStore, ClusterStoreCondition, ProviderSpec, Reason, SecretRef, SecretStore,
    StoreKind, duration, validation,
};
use crate::providers::fetch::{StoreHandle, TokenBucket};
use crate::providers::{Provider, ProviderError, fake::FakeProvider, file};

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
    #[error("ClusterSecretStore {store:?} does not admit namespace {namespace:?}")]
    NamespaceNotAllowed {
        /// Store name.
        store: String,
        /// The SecretRef's namespace.
        namespace: String,
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

/// A store resolved for one SecretRef.
#[derive(Clone)]
pub struct Resolved {
    /// The provider, with its cache identity and budget.
    pub handle: StoreHandle,
    /// `SecretStore` or `ClusterSecretStore`.
    pub kind: StoreKind,
    /// The store's name.
    pub name: String,
    /// The store's default refresh interval.
    pub refresh_interval: Option<Duration>,
    /// For cluster stores: the conditions admitting the SecretRef's namespace.
    pub admitting: Option<Vec<ClusterStoreCondition>>,
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

impl Resolved {
    /// Whether a remote key may be read by a SecretRef in `namespace`.
    pub fn check_key(&self, namespace: &str, key: &str) -> Result<(), StoreError> {
        check_key(&self.name, self.admitting.as_deref(), namespace, key)
    }
}

struct CachedProvider {
    fingerprint: String,
    checked: Instant,
    handle: StoreHandle,
}

/// Builds providers from stores and caches them per store, so credentials and clients are reused
/// across reconciles. Inputs that live outside the store (credential Secrets, the file store's
/// ConfigMap) are re-read at most every [`StoreResolver::RECHECK`].
pub struct StoreResolver {
    client: Client,
    controller_namespace: String,
    allow_inline: bool,
    /// Accept plain-HTTP endpoints that are not loopback (`--allow-insecure-endpoints`).
    pub allow_insecure_endpoints: bool,
    stores: Store<SecretStore>,
    cluster_stores: Store<ClusterSecretStore>,
    cache: Mutex<HashMap<String, CachedProvider>>,
    /// Handles replaced or dropped since the last [`StoreResolver::sweep`] (their cached answers
    /// are to be dropped too).
    retired: Mutex<Vec<Arc<str>>>,
}

impl StoreResolver {
    /// How often external inputs of a cached provider are re-read.
    pub const RECHECK: Duration = Duration::from_secs(30);

    /// A resolver over the store reflectors.
    pub fn new(
        client: Client,
        controller_namespace: String,
        allow_inline: bool,
        stores: Store<SecretStore>,
        cluster_stores: Store<ClusterSecretStore>,
    ) -> Self {
        Self {
            client,
            controller_namespace,
            allow_inline,
            allow_insecure_endpoints: false,
            stores,
            cluster_stores,
            cache: Mutex::new(HashMap::new()),
            retired: Mutex::new(Vec::new()),
        }
    }

    /// Forgets the providers of stores that no longer exist, and returns the identities of every
    /// provider dropped or replaced since the last call, so the fetch layer can drop their cached
    /// answers: memory follows the stores that exist, not every store that ever did.
    pub fn sweep(&self) -> Vec<Arc<str>> {
        let exists = |key: &str| match key.split('/').collect::<Vec<_>>()[..] {
            ["SecretStore", ns, name] => {
                self.stores.get(&ObjectRef::new(name).within(ns)).is_some()
            }
            ["ClusterSecretStore", name] => {
                self.cluster_stores.get(&ObjectRef::new(name)).is_some()
            }
            _ => false,
        };
        let mut retired =
            std::mem::take(&mut *self.retired.lock().unwrap_or_else(|p| p.into_inner()));
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, c| {
                let keep = exists(key);
                if !keep {
                    retired.push(c.handle.id.clone());
                }
                keep
            });
        retired
    }

    fn retire(&self, id: Arc<str>) {
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(id);
    }

    /// Resolves the store of `sref` and checks that its namespace may use it.
    pub async fn resolve(
        &self,
        sref: &SecretRef,
        bypass_cache: bool,
    ) -> Result<Resolved, StoreError> {
        let ns = sref.namespace().unwrap_or_default();
        let name = sref.spec.store_ref.name.clone();
        match sref.spec.store_ref.kind.unwrap_or_default() {
            StoreKind::SecretStore => {
                let store = self
                    .stores
                    .get(&ObjectRef::new(&name).within(&ns))
                    .ok_or_else(|| StoreError::NotFound {
                        kind: "SecretStore",
                        name: name.clone(),
                        namespace: Some(ns.clone()),
                    })?;
                let spec = &store.spec;
                let handle = self.store_handle(&store, bypass_cache).await?;
                Ok(Resolved {
                    handle,
                    kind: StoreKind::SecretStore,
                    name,
                    refresh_interval: parse_interval(spec.refresh_interval.as_deref()),
                    admitting: None,
                })
            }
            StoreKind::ClusterSecretStore => {
                let store = self
                    .cluster_stores
                    .get(&ObjectRef::new(&name))
                    .ok_or_else(|| StoreError::NotFound {
                        kind: "ClusterSecretStore",
                        name: name.clone(),
                        namespace: None,
                    })?;
                let ns_labels = self.namespace_labels(&ns).await.map_err(|message| {
                    StoreError::Unavailable {
                        store: name.clone(),
                        message,
                    }
                })?;
                let admitting: Vec<ClusterStoreCondition> =
                    tenancy::admitting(&store.spec.conditions, &ns, &ns_labels)
                        .into_iter()
                        .cloned()
                        .collect();
                if admitting.is_empty() {
                    return Err(StoreError::NamespaceNotAllowed {
                        store: name,
                        namespace: ns,
                    });
                }
                let spec = &store.spec;
                let handle = self.cluster_store_handle(&store, bypass_cache).await?;
                Ok(Resolved {
                    handle,
                    kind: StoreKind::ClusterSecretStore,
                    name,
                    refresh_interval: parse_interval(spec.refresh_interval.as_deref()),
                    admitting: Some(admitting),
                })
            }
        }
    }

    async fn namespace_labels(&self, ns: &str) -> Result<BTreeMap<String, String>, String> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api.get_metadata_opt(ns).await {
            Ok(Some(n)) => Ok(n.metadata.labels.unwrap_or_default()),
            Ok(None) => Ok(BTreeMap::new()),
            Err(e) => Err(format!(
                "reading namespace {ns:?}: {}",
                kube_error_summary(&e)
            )),
        }
    }

    /// Checks that a namespaced store's provider can be built and answers (`validate`), re-reading its
    /// credentials: the store's `Ready` condition.
    pub async fn check_store(&self, store: &SecretStore) -> Result<(), StoreError> {
        let h = self.store_handle(store, true).await?;
        validated(&store.name_any(), h).await
    }

    /// Like [`StoreResolver::check_store`] for a ClusterSecretStore (credentials from the controller's namespace).
    pub async fn check_cluster_store(&self, store: &ClusterSecretStore) -> Result<(), StoreError> {
        let h = self.cluster_store_handle(store, true).await?;
        validated(&store.name_any(), h).await
    }

    /// The provider of a namespaced store (credentials from the store's namespace).
    async fn store_handle(
        &self,
        store: &SecretStore,
        bypass_cache: bool,
    ) -> Result<StoreHandle, StoreError> {
        let (ns, name) = (store.namespace().unwrap_or_default(), store.name_any());
        let key = format!("SecretStore/{ns}/{name}");
        let uid = store.uid().unwrap_or_default();
        // The controller's own (ambient) cloud identity is the controller namespace's credential:
        // a namespaced store elsewhere may not borrow it.
        let ambient_ok = ns == self.controller_namespace;
        self.provider_for(
            &key,
            &uid,
            config_version(&store.metadata),
            &name,
            &ns,
            ambient_ok,
            &store.spec.provider,
            store.spec.rate_limit.as_ref(),
            bypass_cache,
        )
        .await
    }

    /// The provider of a cluster store (credentials from the controller's namespace).
    async fn cluster_store_handle(
        &self,
        store: &ClusterSecretStore,
        bypass_cache: bool,
    ) -> Result<StoreHandle, StoreError> {
        let name = store.name_any();
        let key = format!("ClusterSecretStore/{name}");
        let uid = store.uid().unwrap_or_default();
        let cns = self.controller_namespace.clone();
        self.provider_for(
            &key,
            &uid,
            config_version(&store.metadata),
            &name,
            &cns,
            true,
            &store.spec.provider,
            store.spec.rate_limit.as_ref(),
            bypass_cache,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn provider_for(
        &self,
        cache_key: &str,
        uid: &str,
        rv: Option<String>,
        store_name: &str,
        cred_ns: &str,
        ambient_ok: bool,
        spec: &ProviderSpec,
        rate: Option<&crate::api::RateLimit>,
        bypass_cache: bool,
    ) -> Result<StoreHandle, StoreError> {
        let invalid = |message: String| StoreError::InvalidConfig {
            store: store_name.to_string(),
            message,
        };
        if let Some(first) = validation::validate_provider(spec, None).into_iter().next() {
            return Err(invalid(first.to_string()));
        }
        let store_fp = format!("{uid}@{}", rv.unwrap_or_default());
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = cache.get(cache_key)
                && c.fingerprint.starts_with(&format!("{store_fp}/"))
                && (c.checked.elapsed() < Self::RECHECK && !bypass_cache)
            {
                return Ok(c.handle.clone());
            }
        }
        let built: Result<(Arc<dyn Provider>, String), StoreError> = if let Some(fake) = &spec.fake
        {
            if self.allow_inline {
                Ok((Arc::new(FakeProvider::new(fake.clone())), String::new()))
            } else {
                Err(StoreError::InlineSecretsDisabled {
                    store: store_name.to_string(),
                })
            }
        } else if let Some(f) = &spec.file {
            self.file_provider(store_name, cred_ns, ambient_ok, f).await
        } else if let Some(v) = &spec.vault {
            self.vault_provider(store_name, cred_ns, ambient_ok, v)
                .await
        } else if let Some(aws) = &spec.aws {
            self.aws_provider(store_name, cred_ns, ambient_ok, aws)
                .await
        } else if let Some(az) = &spec.azure_key_vault {
            self.azure_provider(store_name, cred_ns, ambient_ok, az)
                .await
        } else {
            Err(StoreError::ProviderUnsupported {
                store: store_name.to_string(),
                provider: spec.kind_name(),
            })
        };
        // A store whose inputs went bad must not keep serving from the provider built before.
        let (provider, extra_fp) = match built {
            Ok(b) => b,
            Err(e) => {
                if !matches!(e, StoreError::Unavailable { .. })
                    && let Some(old) = self
                        .cache
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(cache_key)
                {
                    self.retire(old.handle.id);
                }
                return Err(e);
            }
        };
        let fingerprint = format!("{store_fp}/{extra_fp}");
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get_mut(cache_key)
            && c.fingerprint == fingerprint
        {
            c.checked = Instant::now();
            return Ok(c.handle.clone());
        }
        let limiter = Arc::new(match rate {
            Some(r) => TokenBucket::new(r.qps, r.burst),
            None if spec.vault.is_some() => TokenBucket::new(50.0, 100),
            // AWS: BatchGetSecretValue and ListSecrets allow 100/s per account and region.
            None if spec.aws.is_some() => TokenBucket::new(50.0, 100),
            // Key Vault: 4,000 GET transactions per 10 s per vault; a quarter of it.
            None if spec.azure_key_vault.is_some() => TokenBucket::new(100.0, 200),
            None => TokenBucket::unlimited(),
        });
        let handle = StoreHandle {
            id: Arc::from(format!("{cache_key}#{fingerprint}")),
            provider,
            limiter,
        };
        if let Some(old) = cache.insert(
            cache_key.to_string(),
            CachedProvider {
                fingerprint,
                checked: Instant::now(),
                handle: handle.clone(),
            },
        ) {
            drop(cache);
            self.retire(old.handle.id);
        }
        Ok(handle)
    }

    /// Reads one key of a Secret in `ns` (store credentials). Missing Secret or key → `InvalidConfig`
    /// naming both; API failures → `Unavailable`. The value is returned redacted.
    pub async fn read_secret_key(
        &self,
        store: &str,
        ns: &str,
        sel: &crate::api::SecretKeySelector,
    ) -> Result<(crate::value::SecretBytes, String), StoreError> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let s = match secrets.get_opt(&sel.name).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err(StoreError::InvalidConfig {
                    store: store.to_string(),
                    message: format!(
                        "credentials Secret {:?} not found in namespace {ns:?}",
                        sel.name
                    ),
                });
            }
            Err(e) => {
                return Err(StoreError::Unavailable {
                    store: store.to_string(),
                    message: format!("reading Secret {:?}: {}", sel.name, kube_error_summary(&e)),
                });
            }
        };
        let rv = s.resource_version().unwrap_or_default();
        let value = s.data.and_then(|mut d| d.remove(&sel.key)).ok_or_else(|| {
            StoreError::InvalidConfig {
                store: store.to_string(),
                message: format!("Secret {:?} has no key {:?}", sel.name, sel.key),
            }
        })?;
        Ok((
            crate::value::SecretBytes::new(value.0),
            format!("{}@{rv}", sel.name),
        ))
    }

    /// The Kubernetes client (for providers that request service-account tokens).
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn file_provider(
        &self,
        store: &str,
        ns: &str,
        ambient_ok: bool,
        f: &crate::api::FileProvider,
    ) -> Result<(Arc<dyn Provider>, String), StoreError> {
        let invalid = |message: String| StoreError::InvalidConfig {
            store: store.to_string(),
            message,
        };
        // `path` reads the controller's own filesystem, which belongs to the controller's namespace
        // like its ambient identity: a tenant's store must not make the controller read its files.
        if f.path.is_some() && !ambient_ok {
            return Err(invalid(
                "file.path reads the controller's filesystem; only a ClusterSecretStore or a SecretStore in the controller's namespace may use it (use configMapRef)".into(),
            ));
        }
        let unavailable = |message: String| StoreError::Unavailable {
            store: store.to_string(),
            message,
        };
        let key_ref = f
            .master_key_secret_ref
            .as_ref()
            .ok_or_else(|| invalid("file.masterKeySecretRef is required in the cluster".into()))?;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let key_secret = match secrets.get_opt(&key_ref.name).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err(invalid(format!(
                    "master key Secret {:?} not found in namespace {ns:?}",
                    key_ref.name
                )));
            }
            Err(e) => {
                return Err(unavailable(format!(
                    "reading master key Secret {:?}: {}",
                    key_ref.name,
                    kube_error_summary(&e)
                )));
            }
        };
        let key_data: BTreeMap<String, Vec<u8>> = key_secret
            .data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        let keyring = file::Keyring::from_secret_data(&key_data)
            .map_err(|e| invalid(format!("master key Secret {:?}: {e}", key_ref.name)))?;
        let (doc, doc_fp) = if let Some(cm_ref) = &f.config_map_ref {
            let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
            let cm = match cms.get_opt(&cm_ref.name).await {
                Ok(Some(c)) => c,
                Ok(None) => {
                    return Err(invalid(format!(
                        "ConfigMap {:?} not found in namespace {ns:?}",
                        cm_ref.name
                    )));
                }
                Err(e) => {
                    return Err(unavailable(format!(
                        "reading ConfigMap {:?}: {}",
                        cm_ref.name,
                        kube_error_summary(&e)
                    )));
                }
            };
            let doc = cm
                .data
                .as_ref()
                .and_then(|d| d.get(&cm_ref.key))
                .map(|s| s.as_bytes().to_vec())
                .or_else(|| {
                    cm.binary_data
                        .as_ref()
                        .and_then(|d| d.get(&cm_ref.key))
                        .map(|b| b.0.clone())
                })
                .ok_or_else(|| {
                    invalid(format!(
                        "ConfigMap {:?} has no key {:?}",
                        cm_ref.name, cm_ref.key
                    ))
                })?;
            (
                doc,
                format!("cm@{}", cm.resource_version().unwrap_or_default()),
            )
        } else if let Some(path) = &f.path {
            let doc = std::fs::read(path).map_err(|e| invalid(format!("reading {path}: {e}")))?;
            let digest = {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(&doc))
            };
            (doc, format!("path@{digest}"))
        } else {
            return Err(invalid("file needs configMapRef or path".into()));
        };
        let fp = format!(
            "{doc_fp}/key@{}",
            key_secret.resource_version().unwrap_or_default()
        );
        let provider = file::FileProvider::from_bytes(&doc, keyring)
            .map_err(|e: ProviderError| invalid(e.to_string()))?;
        Ok((Arc::new(provider), fp))
    }
}

/// Runs a provider's own check (`validate`) for a store's `Ready` condition.
async fn validated(store: &str, h: StoreHandle) -> Result<(), StoreError> {
    h.provider
        .validate()
        .await
        .map_err(|e| StoreError::InvalidConfig {
            store: store.to_string(),
            message: e.to_string(),
        })
}

/// What identifies a store's configuration for caching: its generation (status writes do not change
/// it) and its force-sync annotation (a new value drops cached answers and rebuilds the provider).
fn config_version(meta: &kube::api::ObjectMeta) -> Option<String> {
    let force = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::api::FORCE_SYNC_ANNOTATION))
        .map(String::as_str)
        .unwrap_or("");
    Some(format!("g{}:{force}", meta.generation.unwrap_or_default()))
}

fn parse_interval(s: Option<&str>) -> Option<Duration> {
    s.and_then(|s| duration::parse(s).ok())
}

/// A one-line summary of a Kubernetes client error (status code and reason, no bodies).
pub fn kube_error_summary(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("API error {} {}", s.code, s.reason),
        other => other.to_string(),
    }
}

/// The `vault` provider: credentials, CA bundle and client certificate are read from `ns` (the
/// store's namespace, the controller's for cluster stores); Kubernetes auth with the controller's own
/// token only when `ambient_ok`. The fingerprint names every Secret read
/// (`name@resourceVersion`), so a changed credential rebuilds the provider and its Vault token.
impl StoreResolver {
    async fn vault_provider(
        &self,
        store: &str,
        ns: &str,
        ambient_ok: bool,
        v: &crate::api::VaultProvider,
    ) -> Result<(Arc<dyn Provider>, String), StoreError> {
        use crate::providers::vault::{VaultAuthConfig, VaultConfig, VaultProvider};
        use base64::Engine;
        let invalid = |message: String| StoreError::InvalidConfig {
            store: store.to_string(),
            message,
        };
        let mut fp = Vec::new();
        let mount_of = |m: &Option<String>, default: &str| {
            m.as_deref()
                .map(|m| m.trim_matches('/'))
                .filter(|m| !m.is_empty())
                .unwrap_or(default)
                .to_string()
        };
        let auth = if let Some(t) = &v.auth.token {
            let (token, f) = self.read_secret_key(store, ns, &t.secret_ref).await?;
            fp.push(f);
            VaultAuthConfig::Token(token)
        } else if let Some(a) = &v.auth.app_role {
            let (secret_id, f) = self.read_secret_key(store, ns, &a.secret_ref).await?;
            fp.push(f);
            VaultAuthConfig::AppRole {
                mount: mount_of(&a.mount_path, "approle"),
                role_id: a.role_id.clone(),
                secret_id,
            }
        } else if let Some(k) = &v.auth.kubernetes {
            // The controller's own service account token is the controller namespace's credential.
            if k.service_account_ref.is_none() && !ambient_ok {
                return Err(invalid(
                    "vault.auth.kubernetes without serviceAccountRef logs in with the controller's own service account token, which only a ClusterSecretStore (or a SecretStore in the controller's namespace) may use; set serviceAccountRef".into(),
                ));
            }
            VaultAuthConfig::Kubernetes {
                mount: mount_of(&k.mount_path, "kubernetes"),
                role: k.role.clone(),
                jwt: service_account_token_source(
                    "vault",
                    "auth.kubernetes.serviceAccountRef",
                    store,
                    self.client.clone(),
                    ns,
                    k.service_account_ref.as_ref(),
                    &[],
                    "/var/run/secrets/kubernetes.io/serviceaccount/token".into(),
                ),
            }
        } else {
            return Err(invalid(
                "vault.auth needs one of token, kubernetes, appRole".into(),
            ));
        };
        let mut cfg = VaultConfig::new(store, &v.server, &v.path, auth);
        cfg.kv_v2 = v.version.unwrap_or_default() == crate::api::VaultKvVersion::V2;
        cfg.namespace = v.namespace.clone();
        cfg.allow_insecure = self.allow_insecure_endpoints;
        let mut ca = Vec::new();
        if let Some(b) = &v.ca_bundle {
            let pem = base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|_| invalid("vault.caBundle is not valid base64".into()))?;
            ca.extend_from_slice(&pem);
            ca.push(b'\n');
        }
        if let Some(sel) = &v.ca_secret_ref {
            let (pem, f) = self.read_secret_key(store, ns, sel).await?;
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
            let (crt, f) = self.read_secret_key(store, ns, &key_of("tls.crt")).await?;
            let (key, _) = self.read_secret_key(store, ns, &key_of("tls.key")).await?;
            fp.push(f);
            let mut both = Vec::with_capacity(crt.len() + key.len() + 1);
            both.extend_from_slice(crt.expose());
            both.push(b'\n');
            both.extend_from_slice(key.expose());
            cfg.client_identity = Some(crate::value::SecretBytes::new(both));
        }
        let provider = VaultProvider::new(cfg).map_err(|e| invalid(e.to_string()))?;
        Ok((Arc::new(provider), fp.join(",")))
    }
}

/// Where a provider's Kubernetes service-account JWT comes from: a TokenRequest for `sa` in `ns`
/// (its audiences, else `default_audiences`; none = the API server's default), or — when `sa` is
/// unset — the token file `own_token` of the controller itself. `what` names the provider and `hint`
/// the field to set, for messages.
#[allow(clippy::too_many_arguments)]
fn service_account_token_source(
    what: &'static str,
    hint: &'static str,
    store: &str,
    client: Client,
    ns: &str,
    sa: Option<&crate::api::ServiceAccountRef>,
    default_audiences: &[&str],
    own_token: std::path::PathBuf,
) -> crate::providers::JwtSource {
    use crate::providers::ProviderError;
    use crate::value::SecretBytes;
    let store = store.to_string();
    let ns = ns.to_string();
    let sa = sa.cloned();
    let default_audiences: Vec<String> = default_audiences.iter().map(|a| a.to_string()).collect();
    Arc::new(move || {
        let (store, ns, sa, client) = (store.clone(), ns.clone(), sa.clone(), client.clone());
        let (default_audiences, own_token) = (default_audiences.clone(), own_token.clone());
        Box::pin(async move {
            let Some(sa) = sa else {
                return std::fs::read(&own_token)
                    .map(|mut b| {
                        while b.last().is_some_and(u8::is_ascii_whitespace) {
                            b.pop();
                        }
                        SecretBytes::new(b)
                    })
                    .map_err(|e| ProviderError::InvalidConfig {
                        message: format!(
                            "{what} store {store:?}: reading the controller's service account token {}: {e} (set {hint})",
                            own_token.display()
                        ),
                    });
            };
            use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
            use k8s_openapi::api::core::v1::ServiceAccount;
            let api: Api<ServiceAccount> = Api::namespaced(client, &ns);
            let audiences = if sa.audiences.is_empty() {
                default_audiences
            } else {
                sa.audiences.clone()
            };
            let req = TokenRequest {
                spec: TokenRequestSpec {
                    audiences,
                    expiration_seconds: Some(600),
                    bound_object_ref: None,
                },
                ..Default::default()
            };
            match api
                .create_token_request(&sa.name, &kube::api::PostParams::default(), &req)
                .await
            {
                Ok(tr) => tr
                    .status
                    .map(|s| SecretBytes::from_string(s.token))
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| ProviderError::Transient {
                        message: format!(
                            "{what} store {store:?}: the TokenRequest for service account {:?} returned no token",
                            sa.name
                        ),
                    }),
                Err(kube::Error::Api(s)) if s.code == 404 => Err(ProviderError::InvalidConfig {
                    message: format!(
                        "{what} store {store:?}: service account {:?} not found in namespace {ns:?}",
                        sa.name
                    ),
                }),
                Err(kube::Error::Api(s)) if s.code == 403 => Err(ProviderError::AccessDenied {
                    key: None,
                    message: format!(
                        "{what} store {store:?}: the controller may not request tokens for service account {:?} in namespace {ns:?} (RBAC: serviceaccounts/token create)",
                        sa.name
                    ),
                }),
                Err(e) => Err(ProviderError::Transient {
                    message: format!(
                        "{what} store {store:?}: requesting a token for service account {:?}: {}",
                        sa.name,
                        kube_error_summary(&e)
                    ),
                }),
            }
        })
    })
}

/// The `aws` provider: static keys (if `auth.secretRef` is set) are read from `ns` (the store's
/// namespace, the controller's for cluster stores); the fingerprint names each Secret read
/// (`name@resourceVersion`), so rotated keys rebuild the provider and its SDK clients.
impl StoreResolver {
    async fn aws_provider(
        &self,
        store: &str,
        ns: &str,
        ambient_ok: bool,
        aws: &crate::api::AwsProvider,
    ) -> Result<(Arc<dyn Provider>, String), StoreError> {
        use crate::providers::aws::{
            AwsSecretsManager, AwsSettings, STS_AUDIENCE, StaticCredentials,
        };
        let mut settings = AwsSettings::new(store, &aws.region);
        settings.failover_regions = aws.failover_regions.clone();
        settings.endpoint = aws.endpoint.clone();
        settings.role = aws.role.clone();
        settings.external_id = aws.external_id.clone();
        settings.allow_insecure_endpoints = self.allow_insecure_endpoints;
        let mut fp = Vec::new();
        let auth = aws.auth.as_ref();
        if auth.is_none() && !ambient_ok {
            return Err(StoreError::InvalidConfig {
                store: store.to_string(),
                message: format!(
                    "aws without auth uses the controller's own AWS identity (the SDK default chain{}), which only a ClusterSecretStore (or a SecretStore in the controller's namespace) may use; set auth.jwt.serviceAccountRef (a service account of this namespace exchanged for a role) or auth.secretRef",
                    if aws.role.is_some() {
                        ", as the base credentials of role"
                    } else {
                        ""
                    }
                ),
            });
        }
        if let Some(jwt) = auth.and_then(|a| a.jwt.as_ref()) {
            settings.web_identity = Some(service_account_token_source(
                "aws",
                "auth.jwt.serviceAccountRef",
                store,
                self.client.clone(),
                ns,
                Some(&jwt.service_account_ref),
                &[STS_AUDIENCE],
                std::path::PathBuf::new(),
            ));
            fp.push(format!("jwt:{}", jwt.service_account_ref.name));
        }
        if let Some(r) = auth.and_then(|a| a.secret_ref.as_ref()) {
            let (access_key_id, f1) = self.read_secret_key(store, ns, &r.access_key_id).await?;
            let (secret_access_key, f2) = self
                .read_secret_key(store, ns, &r.secret_access_key)
                .await?;
            fp.extend([f1, f2]);
            let session_token = match &r.session_token {
                Some(sel) => {
                    let (t, f) = self.read_secret_key(store, ns, sel).await?;
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
        let provider =
            AwsSecretsManager::new(settings)
                .await
                .map_err(|e| StoreError::InvalidConfig {
                    store: store.to_string(),
                    message: e.to_string(),
                })?;
        Ok((Arc::new(provider), fp.join(",")))
    }
}

/// The `azureKeyVault` provider. A client secret is read from `ns` (the store's namespace, the
/// controller's for cluster stores) and named in the fingerprint (`name@resourceVersion`), so a
/// rotated secret rebuilds the credential. The controller's own identity (workload identity without
/// `serviceAccountRef`, managed identity) is used only when `ambient_ok` (cluster stores and stores
/// in the controller's namespace). `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_AUTHORITY_HOST` and
/// `AZURE_FEDERATED_TOKEN_FILE` fill what the spec leaves out.
impl StoreResolver {
    async fn azure_provider(
        &self,
        store: &str,
        ns: &str,
        ambient_ok: bool,
        az: &crate::api::AzureKeyVaultProvider,
    ) -> Result<(Arc<dyn Provider>, String), StoreError> {
        use crate::providers::azure::{
            AzureAuthConfig, AzureKeyVault, AzureSettings, TOKEN_EXCHANGE_AUDIENCE,
        };
        use base64::Engine;
        let invalid = |message: String| StoreError::InvalidConfig {
            store: store.to_string(),
            message,
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let ambient_refused = |what: &str| {
            invalid(format!(
                "azureKeyVault.auth.{what} uses the controller's own Azure identity, which only a ClusterSecretStore (or a SecretStore in the controller's namespace) may use; set workloadIdentity.serviceAccountRef or clientSecret"
            ))
        };
        let mut fp = Vec::new();
        let auth = if let Some(cs) = &az.auth.client_secret {
            let (secret, f) = self.read_secret_key(store, ns, &cs.secret_ref).await?;
            fp.push(f);
            AzureAuthConfig::ClientSecret {
                client_id: cs.client_id.clone(),
                secret,
            }
        } else if let Some(wi) = &az.auth.workload_identity {
            if wi.service_account_ref.is_none() && !ambient_ok {
                return Err(ambient_refused("workloadIdentity"));
            }
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
                assertion: service_account_token_source(
                    "azure",
                    "auth.workloadIdentity.serviceAccountRef",
                    store,
                    self.client.clone(),
                    ns,
                    wi.service_account_ref.as_ref(),
                    &[TOKEN_EXCHANGE_AUDIENCE],
                    own_token,
                ),
            }
        } else if let Some(mi) = &az.auth.managed_identity {
            if !ambient_ok {
                return Err(ambient_refused("managedIdentity"));
            }
            AzureAuthConfig::ManagedIdentity {
                client_id: mi.client_id.clone(),
            }
        } else {
            return Err(invalid(
                "azureKeyVault.auth needs one of workloadIdentity, managedIdentity, clientSecret"
                    .into(),
            ));
        };
        let mut settings = AzureSettings::new(store, &az.vault_url, auth);
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
        Ok((Arc::new(provider), fp.join(",")))
    }
}
