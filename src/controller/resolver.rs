//! The controller's side of stores: finding them in its reflectors ([`StoreLookup`]), their
//! credentials from the Kubernetes API ([`KubeCredentials`]), and one provider per store, cached, so
//! credentials and clients are reused across reconciles. Store resolution and the tenancy rules are
//! [`crate::stores`]'; building a provider is [`crate::providers::build`].

use std::collections::{BTreeMap, HashMap};
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use super::error::kube_error_summary;
use crate::api::{
    ClusterSecretStore, SecretKeySelector, SecretRef, SecretStore, ServiceAccountRef,
};
use crate::providers::build::{BuildContext, CredentialError, Credentials};
use crate::providers::fetch::{StoreHandle, TokenBucket};
use crate::providers::{JwtSource, file};
pub use crate::stores::StoreError;
use crate::stores::{Admitted, StoreLookup};
use crate::value::SecretBytes;

/// A store resolved for one SecretRef: its provider, with its cache identity and budget.
#[derive(Clone)]
pub struct Resolved {
    /// The provider, with its cache identity and budget.
    pub handle: StoreHandle,
    /// Which store, and what the tenancy rules admitted.
    pub store: Admitted,
}

impl Deref for Resolved {
    type Target = Admitted;
    fn deref(&self) -> &Admitted {
        &self.store
    }
}

struct CachedProvider {
    fingerprint: String,
    checked: Instant,
    handle: StoreHandle,
}

/// Finds stores in the reflectors, builds their providers and caches them per store. Inputs that
/// live outside the store (credential Secrets, the file store's ConfigMap) are re-read at most every
/// [`StoreResolver::RECHECK`].
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

#[async_trait]
impl StoreLookup for StoreResolver {
    fn secret_store(&self, ns: &str, name: &str) -> Result<Option<Arc<SecretStore>>, StoreError> {
        Ok(self.stores.get(&ObjectRef::new(name).within(ns)))
    }

    fn cluster_store(&self, name: &str) -> Result<Option<Arc<ClusterSecretStore>>, StoreError> {
        Ok(self.cluster_stores.get(&ObjectRef::new(name)))
    }

    fn controller_namespace(&self) -> &str {
        &self.controller_namespace
    }

    async fn namespace_labels(&self, ns: &str) -> Result<Option<BTreeMap<String, String>>, String> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api.get_metadata_opt(ns).await {
            Ok(Some(n)) => Ok(Some(n.metadata.labels.unwrap_or_default())),
            Ok(None) => Ok(Some(BTreeMap::new())),
            Err(e) => Err(format!(
                "reading namespace {ns:?}: {}",
                kube_error_summary(&e)
            )),
        }
    }
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

    /// Resolves the store of `sref` under the tenancy rules ([`crate::stores::admit`]) and builds
    /// (or reuses) its provider.
    pub async fn resolve(
        &self,
        sref: &SecretRef,
        bypass_cache: bool,
    ) -> Result<Resolved, StoreError> {
        let store = crate::stores::admit(self, sref).await?;
        let handle = self.handle(&store, bypass_cache).await?;
        Ok(Resolved { handle, store })
    }

    /// Checks that a namespaced store's provider can be built and answers (`validate`), re-reading its
    /// credentials: the store's `Ready` condition.
    pub async fn check_store(&self, store: &SecretStore) -> Result<(), StoreError> {
        let a = Admitted::secret_store(store, &self.controller_namespace);
        let h = self.handle(&a, true).await?;
        validated(&a.name, h).await
    }

    /// Like [`StoreResolver::check_store`] for a ClusterSecretStore (credentials from the controller's namespace).
    pub async fn check_cluster_store(&self, store: &ClusterSecretStore) -> Result<(), StoreError> {
        let a = Admitted::cluster_store(store, &self.controller_namespace);
        let h = self.handle(&a, true).await?;
        validated(&a.name, h).await
    }

    /// The provider of an admitted store: from the cache while its configuration and external
    /// inputs are unchanged, else built anew ([`crate::providers::build::from_spec`]).
    async fn handle(
        &self,
        store: &Admitted,
        bypass_cache: bool,
    ) -> Result<StoreHandle, StoreError> {
        let cache_key = store.key();
        let store_fp = format!("{}@{}", store.uid, store.config_version);
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = cache.get(&cache_key)
                && c.fingerprint.starts_with(&format!("{store_fp}/"))
                && (c.checked.elapsed() < Self::RECHECK && !bypass_cache)
            {
                return Ok(c.handle.clone());
            }
        }
        if let Some(first) = crate::api::validation::validate_provider(&store.provider, None)
            .into_iter()
            .next()
        {
            return Err(StoreError::InvalidConfig {
                store: store.name.clone(),
                message: first.to_string(),
            });
        }
        let credentials = KubeCredentials {
            client: self.client.clone(),
            namespace: store.credential_namespace.clone(),
            store: store.name.clone(),
        };
        let cx = BuildContext {
            store: &store.name,
            credentials: &credentials,
            ambient_ok: store.ambient_ok,
            allow_inline: self.allow_inline,
            allow_insecure_endpoints: self.allow_insecure_endpoints,
        };
        let built = match crate::providers::build::from_spec(&store.provider, &cx).await {
            Ok(b) => b,
            Err(e) => {
                let e = StoreError::from_config(&store.name, e);
                // A store whose inputs went bad must not keep serving from the provider built before.
                if !matches!(e, StoreError::Unavailable { .. })
                    && let Some(old) = self
                        .cache
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&cache_key)
                {
                    self.retire(old.handle.id);
                }
                return Err(e);
            }
        };
        let fingerprint = format!("{store_fp}/{}", built.fingerprint);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get_mut(&cache_key)
            && c.fingerprint == fingerprint
        {
            c.checked = Instant::now();
            return Ok(c.handle.clone());
        }
        let limiter = Arc::new(match (&store.rate_limit, built.default_rate) {
            (Some(r), _) => TokenBucket::new(r.qps, r.burst),
            (None, Some((qps, burst))) => TokenBucket::new(qps, burst),
            (None, None) => TokenBucket::unlimited(),
        });
        let handle = StoreHandle {
            id: Arc::from(format!("{cache_key}#{fingerprint}")),
            provider: built.provider,
            limiter,
        };
        if let Some(old) = cache.insert(
            cache_key,
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

    /// The Kubernetes client (for providers that request service-account tokens).
    pub fn client(&self) -> &Client {
        &self.client
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

/// A store's credentials from the Kubernetes API: Secrets and ConfigMaps of its credential
/// namespace, and TokenRequests for its ServiceAccounts. Missing objects are invalid configuration
/// (naming the object); API failures are transient.
pub struct KubeCredentials {
    client: Client,
    namespace: String,
    store: String,
}

impl KubeCredentials {
    async fn secret(&self, name: &str, what: &str) -> Result<Secret, CredentialError> {
        let ns = &self.namespace;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        match secrets.get_opt(name).await {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err(CredentialError::Invalid(format!(
                "{what} Secret {name:?} not found in namespace {ns:?}"
            ))),
            Err(e) => Err(CredentialError::Unavailable(format!(
                "reading {what} Secret {name:?}: {}",
                kube_error_summary(&e)
            ))),
        }
    }
}

#[async_trait]
impl Credentials for KubeCredentials {
    async fn secret_key(
        &self,
        sel: &SecretKeySelector,
    ) -> Result<(SecretBytes, String), CredentialError> {
        let s = self.secret(&sel.name, "credentials").await?;
        let rv = s.resource_version().unwrap_or_default();
        let value = s.data.and_then(|mut d| d.remove(&sel.key)).ok_or_else(|| {
            CredentialError::Invalid(format!("Secret {:?} has no key {:?}", sel.name, sel.key))
        })?;
        Ok((SecretBytes::new(value.0), format!("{}@{rv}", sel.name)))
    }

    async fn file_keyring(
        &self,
        secret: Option<&crate::api::SecretName>,
    ) -> Result<(file::Keyring, String), CredentialError> {
        let key_ref = secret.ok_or_else(|| {
            CredentialError::Invalid("file.masterKeySecretRef is required in the cluster".into())
        })?;
        let s = self.secret(&key_ref.name, "master key").await?;
        let data: BTreeMap<String, Vec<u8>> = s
            .data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        let keyring = file::Keyring::from_secret_data(&data).map_err(|e| {
            CredentialError::Invalid(format!("master key Secret {:?}: {e}", key_ref.name))
        })?;
        Ok((
            keyring,
            format!("key@{}", s.resource_version().unwrap_or_default()),
        ))
    }

    async fn file_document(
        &self,
        spec: &crate::api::FileProvider,
    ) -> Result<(Vec<u8>, String), CredentialError> {
        let ns = &self.namespace;
        if let Some(cm_ref) = &spec.config_map_ref {
            let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
            let cm = match cms.get_opt(&cm_ref.name).await {
                Ok(Some(c)) => c,
                Ok(None) => {
                    return Err(CredentialError::Invalid(format!(
                        "ConfigMap {:?} not found in namespace {ns:?}",
                        cm_ref.name
                    )));
                }
                Err(e) => {
                    return Err(CredentialError::Unavailable(format!(
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
                    CredentialError::Invalid(format!(
                        "ConfigMap {:?} has no key {:?}",
                        cm_ref.name, cm_ref.key
                    ))
                })?;
            Ok((
                doc,
                format!("cm@{}", cm.resource_version().unwrap_or_default()),
            ))
        } else if let Some(path) = &spec.path {
            // The controller's own filesystem (a mounted volume); only stores that may use the
            // controller's identity get here.
            let doc = std::fs::read(path)
                .map_err(|e| CredentialError::Invalid(format!("reading {path}: {e}")))?;
            let digest = {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(&doc))
            };
            Ok((doc, format!("path@{digest}")))
        } else {
            Err(CredentialError::Invalid(
                "file needs configMapRef or path".into(),
            ))
        }
    }

    fn service_account_token(
        &self,
        sa: Option<&ServiceAccountRef>,
        default_audiences: &[&str],
        own_token: PathBuf,
        what: &'static str,
        hint: &'static str,
    ) -> JwtSource {
        service_account_token_source(
            what,
            hint,
            &self.store,
            self.client.clone(),
            &self.namespace,
            sa,
            default_audiences,
            own_token,
        )
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
