//! Building a provider from a store's spec: one constructor per provider (`from_spec` in its own
//! module), one exhaustive match over the provider a store uses ([`from_spec`]), and credentials from
//! a [`Credentials`] source — the controller reads Kubernetes Secrets and ConfigMaps of the store's
//! namespace and requests ServiceAccount tokens; `check` and `render` read manifests, local files
//! and environment variables. The provider itself never talks to Kubernetes.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use super::file::Keyring;
use super::{JwtSource, Provider};
use crate::api::{self, SecretKeySelector, ServiceAccountRef};
use crate::value::SecretBytes;

/// Why a credential could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// It does not exist or cannot work as configured (a missing Secret or key; a source the
    /// offline commands do not have).
    #[error("{0}")]
    Invalid(String),
    /// Reading it failed for now (the API server did not answer).
    #[error("{0}")]
    Unavailable(String),
}

/// Where a store's credentials come from (see the module docs). Every method reads from the store's
/// credential namespace: the store's own, the controller's for a ClusterSecretStore.
#[async_trait]
pub trait Credentials: Send + Sync {
    /// One key of a Secret, and a fingerprint that changes with the Secret (`name@resourceVersion`),
    /// so a rotated credential rebuilds the provider.
    async fn secret_key(
        &self,
        sel: &SecretKeySelector,
    ) -> Result<(SecretBytes, String), CredentialError>;

    /// The master keys of a file store (`masterKeySecretRef`) and a fingerprint.
    async fn file_keyring(
        &self,
        secret: Option<&api::SecretName>,
    ) -> Result<(Keyring, String), CredentialError>;

    /// A file store's document (its `configMapRef` key, or the file at `path`) and a fingerprint.
    async fn file_document(
        &self,
        spec: &api::FileProvider,
    ) -> Result<(Vec<u8>, String), CredentialError>;

    /// Tokens of the ServiceAccount `sa` of the namespace (audiences: its own, else
    /// `default_audiences`; none means the API server's default), or — with `sa` unset — the
    /// controller's own token read from `own_token`. `what` names the provider and `hint` the field
    /// to set, for messages.
    fn service_account_token(
        &self,
        sa: Option<&ServiceAccountRef>,
        default_audiences: &[&str],
        own_token: PathBuf,
        what: &'static str,
        hint: &'static str,
    ) -> JwtSource;
}

/// What building a provider may use besides its spec.
pub struct BuildContext<'a> {
    /// The store's name (for messages).
    pub store: &'a str,
    /// Its credentials.
    pub credentials: &'a dyn Credentials,
    /// Whether the store may use the controller's own identity (the AWS SDK default chain, Azure
    /// managed or workload identity from the environment, Vault Kubernetes auth with the
    /// controller's token, `file.path`): only ClusterSecretStores and stores in the controller's
    /// namespace may (DESIGN §2.11).
    pub ambient_ok: bool,
    /// `--allow-inline-secrets`: `fake` stores are served.
    pub allow_inline: bool,
    /// `--allow-insecure-endpoints`: plain HTTP is accepted beyond loopback.
    pub allow_insecure_endpoints: bool,
}

/// A provider built from a spec.
pub struct Built {
    /// The provider.
    pub provider: Arc<dyn Provider>,
    /// What identifies the credentials it was built with (a change rebuilds it).
    pub fingerprint: String,
    /// The provider's default call budget (qps, burst), unless the store sets `rateLimit`.
    pub default_rate: Option<(f64, u32)>,
}

/// Why a provider cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The spec or its credentials are unusable.
    #[error("{0}")]
    Invalid(String),
    /// Reading its credentials failed for now.
    #[error("{0}")]
    Unavailable(String),
    /// A `fake` store while inline values are not allowed.
    #[error("inline values are not allowed")]
    InlineDisabled,
    /// Not exactly one provider is set.
    #[error("exactly one provider must be set: aws, azureKeyVault, vault, file or fake")]
    NoProvider,
    /// The provider refused what it was given (e.g. a file store's master key does not open it).
    #[error(transparent)]
    Provider(#[from] super::ProviderError),
}

impl From<CredentialError> for ConfigError {
    fn from(e: CredentialError) -> Self {
        match e {
            CredentialError::Invalid(m) => ConfigError::Invalid(m),
            CredentialError::Unavailable(m) => ConfigError::Unavailable(m),
        }
    }
}

/// How a provider spec would use the controller's own identity, if it does: what it uses and what to
/// set instead. The one statement of the ambient-credential rule (DESIGN §2.11), applied by
/// [`from_spec`] for the controller and by `check`/`render` offline.
pub fn ambient_use(p: api::Provider<'_>) -> Option<(String, &'static str)> {
    match p {
        api::Provider::Aws(aws) if aws.auth.is_none() => Some((
            format!(
                "aws without auth uses the controller's own AWS identity (the SDK default chain{})",
                if aws.role.is_some() {
                    ", as the base credentials of role"
                } else {
                    ""
                }
            ),
            "set auth.jwt.serviceAccountRef (a service account of this namespace exchanged for a role) or auth.secretRef",
        )),
        api::Provider::AzureKeyVault(az) if az.auth.client_secret.is_none() => {
            let what = match &az.auth.workload_identity {
                Some(wi) if wi.service_account_ref.is_some() => return None,
                Some(_) => "workloadIdentity",
                None if az.auth.managed_identity.is_some() => "managedIdentity",
                None => return None,
            };
            Some((
                format!("azureKeyVault.auth.{what} uses the controller's own Azure identity"),
                "set workloadIdentity.serviceAccountRef or clientSecret",
            ))
        }
        api::Provider::Vault(v)
            if v.auth.token.is_none()
                && v.auth.app_role.is_none()
                && v.auth
                    .kubernetes
                    .as_ref()
                    .is_some_and(|k| k.service_account_ref.is_none()) =>
        {
            Some((
                "vault.auth.kubernetes without serviceAccountRef logs in with the controller's own service account token".into(),
                "set serviceAccountRef",
            ))
        }
        api::Provider::File(f) if f.path.is_some() => Some((
            "file.path reads the controller's filesystem".into(),
            "use configMapRef",
        )),
        _ => None,
    }
}

/// The refusal of a spec that would use the controller's own identity in a store that may not.
pub fn check_ambient(p: api::Provider<'_>, ambient_ok: bool) -> Result<(), ConfigError> {
    match ambient_use(p) {
        Some((uses, instead)) if !ambient_ok => Err(ConfigError::Invalid(format!(
            "{uses}, which only a ClusterSecretStore (or a SecretStore in the controller's namespace) may use; {instead}"
        ))),
        _ => Ok(()),
    }
}

/// Builds the provider of `spec` (one constructor per provider), after the ambient-credential rule.
pub async fn from_spec(
    spec: &api::ProviderSpec,
    cx: &BuildContext<'_>,
) -> Result<Built, ConfigError> {
    let selected = spec.selected().ok_or(ConfigError::NoProvider)?;
    check_ambient(selected, cx.ambient_ok)?;
    match selected {
        api::Provider::Aws(s) => super::aws::from_spec(s, cx).await,
        api::Provider::AzureKeyVault(s) => super::azure::from_spec(s, cx).await,
        api::Provider::Vault(s) => super::vault::from_spec(s, cx).await,
        api::Provider::File(s) => super::file::from_spec(s, cx).await,
        api::Provider::Fake(s) => super::fake::from_spec(s, cx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(yaml: &str) -> api::ProviderSpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn the_ambient_rule_names_every_way_to_the_controllers_identity() {
        let ambient = [
            ("aws: {region: eu-west-1}", "own AWS identity"),
            (
                "aws: {region: eu-west-1, role: 'arn:aws:iam::1:role/r'}",
                "base credentials of role",
            ),
            (
                "azureKeyVault: {vaultUrl: 'https://v.vault.azure.net', auth: {managedIdentity: {}}}",
                "managedIdentity",
            ),
            (
                "azureKeyVault: {vaultUrl: 'https://v.vault.azure.net', auth: {workloadIdentity: {clientId: c}}}",
                "workloadIdentity",
            ),
            (
                "vault: {server: 'https://v', path: kv, auth: {kubernetes: {role: r}}}",
                "own service account token",
            ),
            ("file: {path: /etc/store.json}", "controller's filesystem"),
        ];
        for (yaml, says) in ambient {
            let spec = provider(yaml);
            let p = spec.selected().unwrap();
            let (uses, _) = ambient_use(p).unwrap_or_else(|| panic!("{yaml}: not ambient"));
            assert!(uses.contains(says), "{yaml}: {uses}");
            assert!(check_ambient(p, true).is_ok());
            let err = check_ambient(p, false).unwrap_err().to_string();
            assert!(err.contains("only a ClusterSecretStore"), "{err}");
        }
        let own = [
            "aws: {region: eu-west-1, role: 'arn:aws:iam::1:role/r', auth: {jwt: {serviceAccountRef: {name: sa}}}}",
            "aws: {region: eu-west-1, auth: {secretRef: {accessKeyId: {name: s, key: a}, secretAccessKey: {name: s, key: b}}}}",
            "azureKeyVault: {vaultUrl: 'https://v.vault.azure.net', auth: {workloadIdentity: {clientId: c, serviceAccountRef: {name: sa}}}}",
            "azureKeyVault: {vaultUrl: 'https://v.vault.azure.net', auth: {clientSecret: {clientId: c, secretRef: {name: s, key: k}}}}",
            "vault: {server: 'https://v', path: kv, auth: {kubernetes: {role: r, serviceAccountRef: {name: sa}}}}",
            "vault: {server: 'https://v', path: kv, auth: {token: {secretRef: {name: s, key: k}}}}",
            "file: {configMapRef: {name: c, key: k}, masterKeySecretRef: {name: m}}",
            "fake: {data: []}",
        ];
        for yaml in own {
            let spec = provider(yaml);
            let p = spec.selected().unwrap();
            assert_eq!(ambient_use(p), None, "{yaml}");
            assert!(check_ambient(p, false).is_ok());
        }
    }
}
