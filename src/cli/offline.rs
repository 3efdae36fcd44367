//! Stores offline, for `check` and `render`: the stores of the loaded manifests as a
//! [`StoreLookup`], so the controller's tenancy rules ([`crate::stores::admit`]) decide which store a
//! SecretRef may use, and providers built by the controller's constructors
//! ([`crate::providers::build::from_spec`]) from local [`Credentials`]:
//!
//! - `file`: the document from `--file-store NAME=PATH`, else the store's `configMapRef` among the
//!   loaded `ConfigMap` manifests, else the file at `path` (relative to the current directory);
//!   master keys from `--master-key-file`, `SECRETSYNC_MASTER_KEY` or `SECRETSYNC_MASTER_KEY_FILE`
//!   (not from `masterKeySecretRef`: Secrets are not read offline).
//! - `fake`: its values are in the manifest.
//! - `--store-override NAME=env`: store `NAME` (which must exist in the manifests; tenancy and
//!   ambient-credential rules still apply) is served from `SECRETSYNC_*` variables by
//!   [`crate::providers::env`], whatever its provider.
//! - `aws`, `azureKeyVault`, `vault`: not read offline (`ProviderUnsupported`), after the same
//!   ambient-credential rule as in the cluster: with `--controller-namespace` (default
//!   `secretsync-system`), a SecretStore elsewhere that would use the controller's own identity or
//!   files is refused, as the controller would refuse it.
//!
//! Namespace labels (for `namespaceSelector`) come from `Namespace` manifests and
//! `--namespace-labels NS=KEY=VALUE`; without either they are unknown and a selector admits nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::manifests::{CliError, Manifest, Manifests, OfflineArgs, Problem, parse_pairs};
use crate::api::{
    self, ClusterSecretStore, Reason, SecretKeySelector, SecretRef, SecretStore, ServiceAccountRef,
};
use crate::cli::store::load_keyring_from_cli;
use crate::providers::build::{self, BuildContext, CredentialError, Credentials};
use crate::providers::env::EnvProvider;
use crate::providers::file::Keyring;
use crate::providers::{JwtSource, Provider, ProviderError};
use crate::stores::{self, Admitted, StoreError, StoreLookup};
use crate::value::SecretBytes;

/// A store resolved offline for one SecretRef.
#[derive(Clone)]
pub struct OfflineStore {
    /// Which store, and what the tenancy rules admitted.
    pub store: Admitted,
    /// Its provider.
    pub provider: Arc<dyn Provider>,
}

/// A provider built for a store, or why it could not be.
type BuiltProvider = Result<Arc<dyn Provider>, Problem>;

/// Resolves stores and builds providers offline (see the module docs). Providers are built once per store.
pub struct Offline<'a> {
    manifests: &'a Manifests,
    file_stores: BTreeMap<String, PathBuf>,
    env_stores: BTreeSet<String>,
    namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    controller_namespace: String,
    master_key_file: Option<PathBuf>,
    keyring: Mutex<Option<Result<Keyring, String>>>,
    providers: Mutex<HashMap<String, BuiltProvider>>,
}

impl<'a> Offline<'a> {
    /// Parses the store options. Options naming no store in the manifests are warned about on stderr.
    pub fn new(manifests: &'a Manifests, args: &OfflineArgs) -> Result<Self, CliError> {
        let file_stores: BTreeMap<String, PathBuf> =
            parse_pairs("--file-store", &args.stores.file_stores)?
                .into_iter()
                .map(|(k, v)| (k, PathBuf::from(v)))
                .collect();
        let overrides = parse_pairs("--store-override", &args.stores.store_overrides)?;
        let mut env_stores = BTreeSet::new();
        for (name, provider) in overrides {
            if provider != "env" {
                return Err(CliError::Usage(format!(
                    "--store-override {name}={provider}: the only override is `env`"
                )));
            }
            env_stores.insert(name);
        }
        let mut namespace_labels = manifests.namespace_labels.clone();
        for item in &args.stores.namespace_labels {
            let parsed = item
                .split_once('=')
                .and_then(|(ns, kv)| Some((ns, kv.split_once('=')?)))
                .filter(|(ns, (k, _))| !ns.is_empty() && !k.is_empty());
            let Some((ns, (k, v))) = parsed else {
                return Err(CliError::Usage(format!(
                    "--namespace-labels {item:?}: expected NS=KEY=VALUE"
                )));
            };
            namespace_labels
                .entry(ns.to_string())
                .or_default()
                .insert(k.to_string(), v.to_string());
        }
        if args.stores.controller_namespace.is_empty() {
            return Err(CliError::Usage(
                "--controller-namespace must not be empty".into(),
            ));
        }
        let known: BTreeSet<&str> = manifests
            .stores
            .iter()
            .map(|s| s.name.as_str())
            .chain(manifests.cluster_stores.iter().map(|s| s.name.as_str()))
            .collect();
        for name in file_stores
            .keys()
            .map(|n| ("--file-store", n))
            .chain(env_stores.iter().map(|n| ("--store-override", n)))
        {
            if !known.contains(name.1.as_str()) {
                eprintln!(
                    "warning: {} {:?}: no store of that name in the manifests",
                    name.0, name.1
                );
            }
        }
        Ok(Self {
            manifests,
            file_stores,
            env_stores,
            namespace_labels,
            controller_namespace: args.stores.controller_namespace.clone(),
            master_key_file: args.stores.master_key.master_key_file.clone(),
            keyring: Mutex::new(None),
            providers: Mutex::new(HashMap::new()),
        })
    }

    /// Resolves the store of a SecretRef under the tenancy rules and builds its provider.
    pub async fn resolve(&self, sref: &SecretRef) -> Result<OfflineStore, Problem> {
        let store = stores::admit(self, sref)
            .await
            .map_err(|e| Problem::from_store(&e))?;
        let provider = self.provider(&store).await?;
        Ok(OfflineStore { store, provider })
    }

    async fn provider(&self, store: &Admitted) -> Result<Arc<dyn Provider>, Problem> {
        let key = store.key();
        let cached = self.lock_providers().get(&key).cloned();
        if let Some(p) = cached {
            return p;
        }
        let built = self.build_provider(store).await;
        self.lock_providers().insert(key, built.clone());
        built
    }

    fn lock_providers(&self) -> std::sync::MutexGuard<'_, HashMap<String, BuiltProvider>> {
        self.providers.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn build_provider(&self, store: &Admitted) -> Result<Arc<dyn Provider>, Problem> {
        let name = store.name.as_str();
        let config = |e| Problem::from_store(&StoreError::from_config(name, e));
        let selected = store
            .provider
            .selected()
            .ok_or(build::ConfigError::NoProvider)
            .map_err(config)?;
        // The store must be one the controller would build, wherever its values come from here.
        build::check_ambient(selected, store.ambient_ok).map_err(config)?;
        if self.env_stores.contains(name) {
            return Ok(Arc::new(EnvProvider::from_process_env()));
        }
        match selected {
            api::Provider::File(_) | api::Provider::Fake(_) => {
                let credentials = LocalCredentials {
                    offline: self,
                    store,
                };
                let cx = BuildContext {
                    store: name,
                    credentials: &credentials,
                    ambient_ok: store.ambient_ok,
                    allow_inline: true,
                    allow_insecure_endpoints: false,
                };
                build::from_spec(&store.provider, &cx)
                    .await
                    .map(|b| b.provider)
                    .map_err(config)
            }
            // One arm each once they can be read offline.
            api::Provider::Aws(_) | api::Provider::AzureKeyVault(_) | api::Provider::Vault(_) => {
                Err(Problem::new(
                    Reason::ProviderUnsupported,
                    "spec.storeRef",
                    format!(
                        "store {name:?}: provider {} is not supported offline by this version of secretsync (pass --store-override {name}=env to serve it from SECRETSYNC_* variables)",
                        selected.name()
                    ),
                ))
            }
        }
    }

    fn keyring(&self) -> Result<Keyring, String> {
        self.keyring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| {
                load_keyring_from_cli(self.master_key_file.as_deref()).map_err(|e| format!("{e:#}"))
            })
            .clone()
    }
}

/// The first problem of an invalid store manifest, as the store's error.
fn invalid<T>(m: &Manifest<T>, kind: &str) -> StoreError {
    let first = m
        .problems
        .first()
        .map(|p| format!("{}: {}", p.field, p.message))
        .unwrap_or_else(|| "it could not be read".into());
    StoreError::InvalidConfig {
        store: m.name.clone(),
        message: format!("{} is invalid: {first}", m.id(kind)),
    }
}

fn usable<T: Clone>(m: &Manifest<T>, kind: &str) -> Result<Arc<T>, StoreError> {
    match &m.object {
        Some(o) if m.problems.is_empty() => Ok(Arc::new(o.clone())),
        _ => Err(invalid(m, kind)),
    }
}

#[async_trait]
impl StoreLookup for Offline<'_> {
    fn secret_store(&self, ns: &str, name: &str) -> Result<Option<Arc<SecretStore>>, StoreError> {
        self.manifests
            .stores
            .iter()
            .find(|s| s.name == name && s.namespace.as_deref() == Some(ns))
            .map(|m| usable(m, "SecretStore"))
            .transpose()
    }

    fn cluster_store(&self, name: &str) -> Result<Option<Arc<ClusterSecretStore>>, StoreError> {
        self.manifests
            .cluster_stores
            .iter()
            .find(|s| s.name == name)
            .map(|m| usable(m, "ClusterSecretStore"))
            .transpose()
    }

    fn controller_namespace(&self) -> &str {
        &self.controller_namespace
    }

    async fn namespace_labels(&self, ns: &str) -> Result<Option<BTreeMap<String, String>>, String> {
        Ok(self.namespace_labels.get(ns).cloned())
    }
}

/// Credentials of one store offline (see the module docs).
struct LocalCredentials<'a, 'b> {
    offline: &'a Offline<'b>,
    store: &'a Admitted,
}

impl LocalCredentials<'_, '_> {
    fn unavailable(&self, what: &str) -> CredentialError {
        CredentialError::Invalid(format!(
            "{what} is not available offline (Secrets are not read by check and render)"
        ))
    }
}

#[async_trait]
impl Credentials for LocalCredentials<'_, '_> {
    async fn secret_key(
        &self,
        sel: &SecretKeySelector,
    ) -> Result<(SecretBytes, String), CredentialError> {
        Err(self.unavailable(&format!("Secret {:?}", sel.name)))
    }

    async fn file_keyring(
        &self,
        _secret: Option<&api::SecretName>,
    ) -> Result<(Keyring, String), CredentialError> {
        self.offline
            .keyring()
            .map(|k| (k, String::new()))
            .map_err(CredentialError::Invalid)
    }

    async fn file_document(
        &self,
        spec: &api::FileProvider,
    ) -> Result<(Vec<u8>, String), CredentialError> {
        let name = &self.store.name;
        let read = |path: &std::path::Path| {
            crate::providers::file::storage::read_store_bytes(path)
                .map(|b| (b, String::new()))
                .map_err(|e| CredentialError::Invalid(format!("{}: {e}", path.display())))
        };
        if let Some(path) = self.offline.file_stores.get(name) {
            return read(path);
        }
        if let Some(cm) = &spec.config_map_ref {
            let ns = &self.store.credential_namespace;
            return match self
                .offline
                .manifests
                .config_maps
                .get(&(ns.clone(), cm.name.clone()))
            {
                Some(data) => data
                    .get(&cm.key)
                    .map(|d| (d.clone(), String::new()))
                    .ok_or_else(|| {
                        CredentialError::Invalid(format!(
                            "ConfigMap {:?} in namespace {ns:?} has no key {:?}",
                            cm.name, cm.key
                        ))
                    }),
                None => Err(CredentialError::Invalid(format!(
                    "it reads ConfigMap {:?} (key {:?}) of namespace {ns:?}, which is not in the manifests; add its manifest or pass --file-store {name}=PATH",
                    cm.name, cm.key
                ))),
            };
        }
        match &spec.path {
            Some(p) => read(std::path::Path::new(p)),
            None => Err(CredentialError::Invalid(
                "file: neither path nor configMapRef is set".into(),
            )),
        }
    }

    fn service_account_token(
        &self,
        _sa: Option<&ServiceAccountRef>,
        _default_audiences: &[&str],
        _own_token: PathBuf,
        what: &'static str,
        _hint: &'static str,
    ) -> JwtSource {
        let message = format!("{what}: service account tokens are not available offline");
        Arc::new(move || {
            let message = message.clone();
            Box::pin(async move { Err(ProviderError::InvalidConfig { message }) })
        })
    }
}
