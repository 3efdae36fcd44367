//! `SecretStore` and `ClusterSecretStore`: where values come from and how to authenticate.
// `printcolumn(type_ = ...)` repeats an attribute name inside the kube derive; not a real duplicate.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::SecretKeySelector;

/// Where a store's values come from and how secretsync authenticates to it.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "secretsync.io",
    version = "v1alpha1",
    kind = "SecretStore",
    doc = "A SecretStore: a secret backend usable by SecretRefs of its own namespace.",
    namespaced,
    status = "SecretStoreStatus",
    shortname = "sstore",
    category = "secretsync",
    cel,
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SecretStoreSpec {
    /// The backend to read from. Exactly one provider must be set.
    pub provider: ProviderSpec,
    /// Default refresh interval of the SecretRefs that use this store, as a duration such as `1h` or
    /// `15m`. `0` means fetch once. Default when unset: the controller's `--default-refresh-interval` (1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+)$"))]
    pub refresh_interval: Option<String>,
    /// Provider-call budget for this store (token bucket). Default: a safe fraction of the provider's
    /// documented quota (AWS 50 qps, Azure 100 qps, Vault 50 qps, file and fake unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// A cluster-wide store. Its `conditions` say which namespaces may use it and for which keys.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "secretsync.io",
    version = "v1alpha1",
    kind = "ClusterSecretStore",
    doc = "A ClusterSecretStore: a secret backend usable by SecretRefs of the namespaces its conditions admit.",
    status = "SecretStoreStatus",
    shortname = "csstore",
    category = "secretsync",
    cel,
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSecretStoreSpec {
    /// The backend to read from. Exactly one provider must be set.
    pub provider: ProviderSpec,
    /// Default refresh interval of the SecretRefs that use this store (`1h`, `15m`; `0` = fetch once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+)$"))]
    pub refresh_interval: Option<String>,
    /// Provider-call budget for this store (token bucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Which namespaces may use this store. A SecretRef's namespace must be admitted by at least one
    /// condition (and its remote keys must match that condition's `allowedKeyPrefixes`, if any).
    /// An empty list admits no namespace: a cluster store must say who may use it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ClusterStoreCondition>,
}

impl ClusterSecretStoreSpec {
    /// The part shared with namespaced stores.
    pub fn store_spec(&self) -> SecretStoreSpec {
        SecretStoreSpec {
            provider: self.provider.clone(),
            refresh_interval: self.refresh_interval.clone(),
            rate_limit: self.rate_limit.clone(),
        }
    }
}

/// One admission rule of a ClusterSecretStore.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStoreCondition {
    /// Namespaces whose labels match this selector are admitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Namespaces admitted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// If set, remote keys read through this condition must start with one of these prefixes.
    /// `{namespace}` is replaced by the SecretRef's namespace, e.g. `/clarivum/{namespace}/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_key_prefixes: Vec<String>,
}

/// Provider-call budget: a token bucket refilled at `qps` with room for `burst` calls.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Sustained calls per second.
    #[schemars(range(min = 0.001))]
    pub qps: f64,
    /// Calls allowed in a burst.
    #[schemars(range(min = 1))]
    pub burst: u32,
}

/// The backend of a store: exactly one of the fields is set.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.aws), has(self.azureKeyVault), has(self.vault), has(self.file), has(self.fake)].filter(x, x).size() == 1").message("exactly one provider must be set: aws, azureKeyVault, vault, file or fake"))]
pub struct ProviderSpec {
    /// AWS Secrets Manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsProvider>,
    /// Azure Key Vault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_key_vault: Option<AzureKeyVaultProvider>,
    /// HashiCorp Vault or OpenBao (KV v1/v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<VaultProvider>,
    /// The local encrypted file store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileProvider>,
    /// Inline values, for demos and tests only. Refused unless the controller runs with
    /// `--allow-inline-secrets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fake: Option<FakeProvider>,
}

/// The provider a store uses: [`ProviderSpec`] seen as the one-of it is (the CRD's CEL rule and
/// validation guarantee exactly one field; the struct of options keeps the schema and lets an invalid
/// object still be read and reported instead of breaking the watch).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Provider<'a> {
    /// AWS Secrets Manager.
    Aws(&'a AwsProvider),
    /// Azure Key Vault.
    AzureKeyVault(&'a AzureKeyVaultProvider),
    /// HashiCorp Vault or OpenBao.
    Vault(&'a VaultProvider),
    /// The local encrypted file store.
    File(&'a FileProvider),
    /// Inline values.
    Fake(&'a FakeProvider),
}

impl Provider<'_> {
    /// The provider's field name, for messages and labels.
    pub fn name(&self) -> &'static str {
        match self {
            Provider::Aws(_) => "aws",
            Provider::AzureKeyVault(_) => "azureKeyVault",
            Provider::Vault(_) => "vault",
            Provider::File(_) => "file",
            Provider::Fake(_) => "fake",
        }
    }
}

impl ProviderSpec {
    /// The configured provider; `None` unless exactly one is set.
    pub fn selected(&self) -> Option<Provider<'_>> {
        if self.count() != 1 {
            return None;
        }
        let ProviderSpec {
            aws,
            azure_key_vault,
            vault,
            file,
            fake,
        } = self;
        aws.as_ref()
            .map(Provider::Aws)
            .or(azure_key_vault.as_ref().map(Provider::AzureKeyVault))
            .or(vault.as_ref().map(Provider::Vault))
            .or(file.as_ref().map(Provider::File))
            .or(fake.as_ref().map(Provider::Fake))
    }

    /// The name of the configured provider (first set), for messages and labels.
    pub fn kind_name(&self) -> &'static str {
        match self.selected() {
            Some(p) => p.name(),
            None if self.count() > 1 => "several",
            None => "none",
        }
    }

    /// How many providers are set (valid specs have exactly one).
    pub fn count(&self) -> usize {
        [
            self.aws.is_some(),
            self.azure_key_vault.is_some(),
            self.vault.is_some(),
            self.file.is_some(),
            self.fake.is_some(),
        ]
        .into_iter()
        .filter(|x| *x)
        .count()
    }
}

/// AWS Secrets Manager.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.auth) || !has(self.auth.jwt) || has(self.role)").message("auth.jwt exchanges the service account's token for a role: set role"))]
pub struct AwsProvider {
    /// Primary region, e.g. `eu-central-1`.
    pub region: String,
    /// Replica regions, tried in order when the primary region fails with a transient error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover_regions: Vec<String>,
    /// Endpoint override (a VPC endpoint, or an emulator in tests). Must be HTTPS unless loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// IAM role ARN: assumed with `sts:AssumeRole` on top of the base credentials, or — with
    /// `auth.jwt` — the role the service account's token is exchanged for
    /// (`sts:AssumeRoleWithWebIdentity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// External id passed to AssumeRole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// How to authenticate: `secretRef` (static keys) or `jwt` (a service account's token exchanged
    /// for `role`). Omitted: the controller's own identity (the SDK default chain: IRSA, EKS Pod
    /// Identity, instance profile, environment), which only a ClusterSecretStore or a SecretStore
    /// in the controller's namespace may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AwsAuth>,
}

/// AWS credentials of a store: exactly one of `secretRef` or `jwt`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.secretRef) != has(self.jwt)").message("exactly one of secretRef or jwt must be set"))]
pub struct AwsAuth {
    /// Access keys read from a Secret in the store's namespace (the controller's for a ClusterSecretStore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<AwsSecretRef>,
    /// Web identity, the per-store form of IRSA: a token of a service account in the store's
    /// namespace (TokenRequest, audience `sts.amazonaws.com` unless `audiences` says otherwise),
    /// exchanged with `sts:AssumeRoleWithWebIdentity` for `role` (required). The role's trust policy
    /// names the cluster's OIDC issuer and the service account
    /// (`system:serviceaccount:<namespace>:<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<AwsJwtAuth>,
}

/// AWS web identity from a Kubernetes service account.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AwsJwtAuth {
    /// The service account, in the store's namespace (the controller's for a ClusterSecretStore).
    pub service_account_ref: ServiceAccountRef,
}

/// Where the AWS access keys are.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AwsSecretRef {
    /// The access key id.
    pub access_key_id: SecretKeySelector,
    /// The secret access key.
    pub secret_access_key: SecretKeySelector,
    /// An optional session token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<SecretKeySelector>,
}

/// Azure Key Vault.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AzureKeyVaultProvider {
    /// The vault URL, e.g. `https://myvault.vault.azure.net`.
    pub vault_url: String,
    /// The Entra ID (Azure AD) tenant id. Default: the controller's `AZURE_TENANT_ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Entra ID authority host, e.g. `https://login.microsoftonline.us`. Default: the controller's
    /// `AZURE_AUTHORITY_HOST`, else the vault URL's cloud (`*.vault.azure.cn` → China,
    /// `*.vault.usgovcloudapi.net` → US Government, otherwise the public cloud). Must be https.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_host: Option<String>,
    /// Base64-encoded PEM CA bundle trusted in addition to the system roots (and `SSL_CERT_FILE`),
    /// for private endpoints behind a TLS-inspecting proxy or Azure Stack Hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    /// How to authenticate: exactly one of workloadIdentity, managedIdentity, clientSecret.
    pub auth: AzureAuth,
}

/// Azure authentication: exactly one field is set.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.workloadIdentity), has(self.managedIdentity), has(self.clientSecret)].filter(x, x).size() == 1").message("exactly one of workloadIdentity, managedIdentity, clientSecret must be set"))]
pub struct AzureAuth {
    /// Workload identity: a federated service-account token (the injected one, or one requested for
    /// `serviceAccountRef` with the audience `api://AzureADTokenExchange`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity: Option<AzureWorkloadIdentity>,
    /// Managed identity of the node or pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_identity: Option<AzureManagedIdentity>,
    /// A service principal's client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<AzureClientSecret>,
}

/// Azure workload identity.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AzureWorkloadIdentity {
    /// The application (client) id; default `AZURE_CLIENT_ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// A service account in the store's namespace whose token is exchanged (TokenRequest, audience
    /// `api://AzureADTokenExchange` unless `audiences` says otherwise). Omitted: the controller's own
    /// projected token (`AZURE_FEDERATED_TOKEN_FILE`), which only a ClusterSecretStore or a store in
    /// the controller's namespace may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_ref: Option<ServiceAccountRef>,
}

/// Azure managed identity: the controller's own identity, so only for a ClusterSecretStore or a
/// store in the controller's namespace.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AzureManagedIdentity {
    /// A user-assigned identity's client id; omitted: the system-assigned identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// Azure service principal with a client secret.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AzureClientSecret {
    /// The application (client) id.
    pub client_id: String,
    /// The client secret, from a Secret in the store's namespace.
    pub secret_ref: SecretKeySelector,
}

/// A service account in the store's namespace.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountRef {
    /// The service account's name.
    pub name: String,
    /// Audiences to request the token for (provider default when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
}

/// HashiCorp Vault or OpenBao.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VaultProvider {
    /// The server address, e.g. `https://vault.vault.svc:8200`.
    pub server: String,
    /// The KV mount path, e.g. `secret`.
    pub path: String,
    /// The KV engine version: `v1` or `v2` (default `v2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<VaultKvVersion>,
    /// Vault Enterprise / OpenBao namespace (`X-Vault-Namespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Base64-encoded PEM CA bundle to trust for the server's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    /// A CA bundle from a Secret in the store's namespace (alternative to `caBundle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeySelector>,
    /// Client certificate for mTLS: a `kubernetes.io/tls` Secret in the store's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_secret_ref: Option<SecretName>,
    /// How to authenticate: exactly one of token, kubernetes, appRole.
    pub auth: VaultAuth,
}

/// The KV secrets engine version.
#[derive(
    schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum VaultKvVersion {
    /// KV version 1 (no versions).
    #[serde(rename = "v1")]
    V1,
    /// KV version 2 (versioned).
    #[default]
    #[serde(rename = "v2")]
    V2,
}

/// Vault authentication: exactly one field is set.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.token), has(self.kubernetes), has(self.appRole)].filter(x, x).size() == 1").message("exactly one of token, kubernetes, appRole must be set"))]
pub struct VaultAuth {
    /// A Vault token from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<VaultTokenAuth>,
    /// Kubernetes auth method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<VaultKubernetesAuth>,
    /// AppRole auth method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_role: Option<VaultAppRoleAuth>,
}

/// Vault token auth.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VaultTokenAuth {
    /// The token, from a Secret in the store's namespace.
    pub secret_ref: SecretKeySelector,
}

/// Vault Kubernetes auth.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VaultKubernetesAuth {
    /// The Vault role to log in as.
    pub role: String,
    /// The auth mount path (default `kubernetes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
    /// A service account in the store's namespace whose token is used (TokenRequest). Omitted: the
    /// controller's own token, which only a ClusterSecretStore or a store in the controller's
    /// namespace may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_ref: Option<ServiceAccountRef>,
}

/// Vault AppRole auth.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VaultAppRoleAuth {
    /// The role id.
    pub role_id: String,
    /// The secret id, from a Secret in the store's namespace.
    pub secret_ref: SecretKeySelector,
    /// The auth mount path (default `approle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
}

/// The local encrypted file store: exactly one of `configMapRef` or `path`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.configMapRef) != has(self.path)").message("exactly one of configMapRef or path must be set"))]
pub struct FileProvider {
    /// The store document (ciphertext, safe to commit to Git) in a ConfigMap of the store's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeySelector>,
    /// The store document as a file: for the CLI, or a volume mounted into the controller pod. In the
    /// cluster only a ClusterSecretStore or a store in the controller's namespace may use it (it reads
    /// the controller's filesystem); tenant stores use `configMapRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The Secret holding the master keys (data keys are key ids). The CLI uses
    /// `SECRETSYNC_MASTER_KEY` / `--master-key-file` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_key_secret_ref: Option<SecretName>,
}

/// Inline values for demos and tests.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FakeProvider {
    /// The values this store serves.
    #[serde(default)]
    pub data: Vec<FakeEntry>,
}

/// One inline value.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FakeEntry {
    /// The remote key.
    pub key: String,
    /// The value (plain text or JSON).
    pub value: String,
    /// The version id reported for it (default `1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Tags, for `dataFrom.find`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// A ConfigMap key in the store's namespace.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeySelector {
    /// The ConfigMap's name.
    pub name: String,
    /// The key inside it.
    pub key: String,
}

/// A Secret (by name) in the store's namespace.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretName {
    /// The Secret's name.
    pub name: String,
}

/// The observed state of a store.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretStoreStatus {
    /// `Ready`: credentials valid and provider reachable (checked on change and periodically).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
