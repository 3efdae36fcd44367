//! `SecretRef`: one target Secret and where each of its keys comes from.
// `printcolumn(type_ = ...)` repeats an attribute name inside the kube derive; not a real duplicate.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// One target Secret and where each of its keys comes from.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "secretsync.io",
    version = "v1alpha1",
    kind = "SecretRef",
    doc = "A SecretRef: one Kubernetes Secret kept in sync with values from a SecretStore or ClusterSecretStore.",
    namespaced,
    status = "SecretRefStatus",
    shortname = "sref",
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
    printcolumn(name = "Store", type_ = "string", json_path = ".spec.storeRef.name"),
    printcolumn(name = "Target", type_ = "string", json_path = ".status.targetName"),
    printcolumn(
        name = "Last Changed",
        type_ = "date",
        json_path = ".status.lastChangedTime"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.data) && size(self.data) > 0) || (has(self.dataFrom) && size(self.dataFrom) > 0) || (has(self.target) && has(self.target.template))").message("at least one of data, dataFrom or target.template must be set"))]
pub struct SecretRefSpec {
    /// The store to read from.
    pub store_ref: StoreRef,
    /// How often to re-read the values, as a duration (`1h`, `15m`, `30s`); `0` = fetch once.
    /// Default: the store's `refreshInterval`, else the controller's `--default-refresh-interval` (1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+)$"))]
    pub refresh_interval: Option<String>,
    /// The Secret to write. Default: a Secret named like the SecretRef, `Opaque`, `creationPolicy: Owner`,
    /// `deletionPolicy: Retain`, `driftPolicy: Revert`.
    // Boxed, like `rotation` and `expiry`: most SecretRefs leave them out, and the controller caches
    // every SecretRef (168 bytes less per cached object; the schema is the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Box<Target>>,
    /// Secret keys filled from one remote value each.
    #[serde(default)]
    #[schemars(length(max = 500))]
    pub data: Vec<DataItem>,
    /// Secret keys filled from many remote values at once (`extract` a JSON object, or `find` keys).
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub data_from: Vec<DataFrom>,
    /// What to do when the synced data really changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Box<Rotation>>,
    /// Warn before a provider-reported expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<Box<Expiry>>,
}

impl SecretRefSpec {
    /// `target.creationPolicy` with its default (`Owner`).
    pub fn creation_policy(&self) -> CreationPolicy {
        self.target
            .as_ref()
            .and_then(|t| t.creation_policy)
            .unwrap_or_default()
    }

    /// `target.deletionPolicy` with its default (`Retain`).
    pub fn deletion_policy(&self) -> DeletionPolicy {
        self.target
            .as_ref()
            .and_then(|t| t.deletion_policy)
            .unwrap_or_default()
    }

    /// `target.driftPolicy` with its default (`Revert`).
    pub fn drift_policy(&self) -> DriftPolicy {
        self.target
            .as_ref()
            .and_then(|t| t.drift_policy)
            .unwrap_or_default()
    }
}

/// Which store a SecretRef reads from.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StoreRef {
    /// The store's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `SecretStore` (same namespace, the default) or `ClusterSecretStore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<StoreKind>,
}

/// The kind of store referenced.
#[derive(
    schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum StoreKind {
    /// A store in the SecretRef's own namespace.
    #[default]
    SecretStore,
    /// A cluster-wide store whose conditions admit the SecretRef's namespace.
    ClusterSecretStore,
}

/// The Secret secretsync writes.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.deletionPolicy) || self.deletionPolicy != 'Delete' || !has(self.creationPolicy) || self.creationPolicy == 'Owner'").message("deletionPolicy Delete requires creationPolicy Owner"))]
pub struct Target {
    /// The Secret's name (default: the SecretRef's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: Option<String>,
    /// The Secret's type (default `Opaque`): e.g. `kubernetes.io/tls`, `kubernetes.io/dockerconfigjson`.
    /// Never `kubernetes.io/service-account-token`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self != 'kubernetes.io/service-account-token'").message("secretsync never writes service-account-token Secrets"))]
    pub type_: Option<String>,
    /// `Owner` (default): create the Secret and own it; never touch a Secret secretsync does not own.
    /// `Merge`: add our keys to an existing Secret we do not own. `Orphan`: create, never own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_policy: Option<CreationPolicy>,
    /// `Retain` (default): deleting the SecretRef leaves the Secret. `Delete`: the Secret goes with it
    /// (and data is removed only after the provider said not-found three times over ten minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
    /// `Revert` (default): restore hand edits at once. `Alert`: event and condition only. `Ignore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_policy: Option<DriftPolicy>,
    /// Write the Secret as immutable (default false). Changes then need a new Secret name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
    /// Extra labels on the Secret. Keys under `secretsync.io/` and `app.kubernetes.io/managed-by`
    /// are reserved: they mark what secretsync owns.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('secretsync.io/') && k != 'app.kubernetes.io/managed-by')").message("labels under secretsync.io/ and app.kubernetes.io/managed-by are reserved for secretsync"))]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations on the Secret. Keys under `secretsync.io/` are reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('secretsync.io/') && k != 'app.kubernetes.io/managed-by')").message("annotations under secretsync.io/ are reserved for secretsync"))]
    pub annotations: BTreeMap<String, String>,
    /// Build Secret keys from templates over the fetched values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Template>,
}

/// How the Secret is created and owned.
#[derive(
    schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum CreationPolicy {
    /// Create and own the Secret; refuse Secrets secretsync does not own.
    #[default]
    Owner,
    /// Add our keys to an existing Secret (created if missing) without owning it.
    Merge,
    /// Create the Secret but never own it.
    Orphan,
}

/// What happens to the Secret when the SecretRef is deleted.
#[derive(
    schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum DeletionPolicy {
    /// Leave the Secret in place.
    #[default]
    Retain,
    /// Delete the Secret with the SecretRef (Owner only).
    Delete,
}

/// What happens when someone edits the Secret by hand.
#[derive(
    schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum DriftPolicy {
    /// Restore our data at once.
    #[default]
    Revert,
    /// Emit a Warning event and set a condition, leave the edit.
    Alert,
    /// Do nothing until the next real change.
    Ignore,
}

/// Templates rendered over the fetched values.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.validate) || self.validate.all(k, has(self.data) && k in self.data)").message("every key of validate must be a key of data"))]
pub struct Template {
    /// Secret key → minijinja (Jinja2) template. Variables are the fetched Secret keys (e.g.
    /// `{{ password }}`) and `data` (all of them as a map); filters are pure (`urlencode`, `b64encode`,
    /// `b64decode`, `tojson`, `fromjson`, `upper`, ...). No file, network or API access.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// `Replace` (default): the Secret holds only the templated keys. `Merge`: templated keys are added
    /// to the fetched keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_policy: Option<TemplateMergePolicy>,
    /// Templated Secret key (a key of `data`) → checks its rendered value must pass before the Secret
    /// is written. A value that fails is never written: the Secret keeps its last good data and
    /// `Ready` turns `False` with reason `InvalidValue`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub validate: BTreeMap<String, ValueValidation>,
}

/// Checks a value must pass before it is written (all that are set must pass). A value that fails
/// is never written: the Secret keeps its last good data and `Ready` turns `False` with reason
/// `InvalidValue`, naming the key and the rule, never the value.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.minLength) || !has(self.maxLength) || self.minLength <= self.maxLength").message("minLength must not exceed maxLength"))]
pub struct ValueValidation {
    /// What the value must be: `string` (valid UTF-8), `json` (a JSON document), `base64` (standard
    /// alphabet with padding; ASCII whitespace is ignored), `pem-certificate` (one or more PEM
    /// `CERTIFICATE` blocks forming a chain, leaf first, each certificate issued by the next),
    /// `pem-private-key` (one PEM private key: PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or
    /// SEC1 `EC PRIVATE KEY`), `pem-bundle` (one or more PEM certificates in any order, e.g. CA
    /// bundles).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<ValueType>,
    /// The fewest bytes the value may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1048576))]
    pub min_length: Option<u32>,
    /// The most bytes the value may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1048576))]
    pub max_length: Option<u32>,
    /// A regular expression (RE2 syntax, Rust `regex` crate) the whole value must match: it is
    /// anchored at both ends (`abc` means `^(?:abc)$`), over the value's bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub pattern: Option<String>,
    /// Top-level property names the value must have: the value must be a JSON object (implies
    /// `type: json`; another `type` is refused as `InvalidSpec`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub required_properties: Vec<String>,
}

/// What a value must be (`validate.type`).
#[derive(
    schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "kebab-case")]
pub enum ValueType {
    /// Valid UTF-8 text.
    #[default]
    String,
    /// A JSON document.
    Json,
    /// Base64 (standard alphabet, padded; ASCII whitespace ignored).
    Base64,
    /// One or more PEM certificates forming a chain, leaf first.
    PemCertificate,
    /// One PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    PemPrivateKey,
    /// One or more PEM certificates in any order.
    PemBundle,
}

impl ValueType {
    /// The type as written in the spec.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Json => "json",
            Self::Base64 => "base64",
            Self::PemCertificate => "pem-certificate",
            Self::PemPrivateKey => "pem-private-key",
            Self::PemBundle => "pem-bundle",
        }
    }
}

/// How templated keys combine with fetched keys.
#[derive(
    schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum TemplateMergePolicy {
    /// Only templated keys.
    #[default]
    Replace,
    /// Fetched keys plus templated keys (templated win).
    Merge,
}

/// One Secret key from one remote value.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DataItem {
    /// The key in the Secret (letters, digits, `-`, `_`, `.`).
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub secret_key: String,
    /// Where the value comes from.
    pub remote_ref: RemoteRefSpec,
    /// Checks the value must pass before it is written (see `ValueValidation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate: Option<ValueValidation>,
}

/// A remote value.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RemoteRefSpec {
    /// The provider's name, path or ARN of the secret.
    #[schemars(length(min = 1, max = 2048))]
    pub key: String,
    /// A key inside a JSON value (dotted path, e.g. `db.password`; `\.` escapes a dot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
    /// A provider version id, or an AWS version stage such as `AWSPREVIOUS`. Default: the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Many Secret keys at once: exactly one of `extract` or `find`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.extract) != has(self.find)").message("exactly one of extract or find must be set"))]
pub struct DataFrom {
    /// A JSON object value whose top-level keys become Secret keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<RemoteRefSpec>,
    /// Every remote secret matching the query becomes a Secret key (named after the remote name, with
    /// characters Kubernetes rejects replaced by `_`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub find: Option<FindSpec>,
}

/// A search for remote secrets.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FindSpec {
    /// Only names under this path / prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Only secrets carrying all of these tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Only names matching a regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<NameMatcher>,
}

/// A name filter.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NameMatcher {
    /// A regular expression (RE2 syntax) the name must match.
    #[schemars(length(max = 1024))]
    pub regexp: String,
}

/// Rotation behaviour.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    /// Restart workloads when the synced data really changes (never on first sync or operator restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartSpec>,
}

/// Which workloads to restart.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RestartSpec {
    /// Workloads named explicitly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<WorkloadRef>,
    /// Also every Deployment, StatefulSet and DaemonSet of the namespace whose pod template uses the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<bool>,
}

/// A workload in the SecretRef's namespace.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    /// `Deployment`, `StatefulSet` or `DaemonSet`.
    pub kind: WorkloadKind,
    /// The workload's name.
    pub name: String,
}

/// Restartable workload kinds.
#[derive(
    schemars::JsonSchema,
    Deserialize,
    Serialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Default,
    Hash,
    PartialOrd,
    Ord,
)]
pub enum WorkloadKind {
    /// apps/v1 Deployment.
    #[default]
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
}

/// Expiry warnings.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Expiry {
    /// Warn (event + condition) when a provider-reported expiry is this close, e.g. `720h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+)$"))]
    pub warn_before: Option<String>,
}

/// The observed state of a SecretRef.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretRefStatus {
    /// The generation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (reason `Synced` when the Secret holds the current data) and, when relevant, `Drifted`,
    /// `Expiring`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The Secret written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_name: Option<String>,
    /// Per Secret key: where it came from, which version, and a keyed HMAC of its value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synced_keys: Vec<SyncedKey>,
    /// Keyed HMAC of the whole synced data (also the Secret's `secretsync.io/data-hmac` annotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_hmac: Option<String>,
    /// When the data last really changed (not when it was last checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_changed_time: Option<Time>,
    /// When the data last changed after the first sync (a rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<Time>,
    /// The nearest provider-reported expiry of the synced values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// Authoritative not-found answers seen in a row (for `deletionPolicy: Delete`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_found: Option<NotFoundRecord>,
    /// The last `secretsync.io/force-sync` annotation value acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_force_sync: Option<String>,
}

/// Consecutive authoritative not-found answers.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NotFoundRecord {
    /// How many refreshes in a row said not-found.
    pub count: u32,
    /// When the first of them happened.
    pub since: Time,
}

/// Provenance of one Secret key.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SyncedKey {
    /// The key in the Secret.
    pub secret_key: String,
    /// The remote key it came from (absent for templated keys built from several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_key: Option<String>,
    /// The provider version of the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Keyed HMAC-SHA256 of the value (hex); never the value.
    pub hmac: String,
    /// Public facts of the certificate(s) the key holds, for keys validated as `pem-certificate` or
    /// `pem-bundle` and the `tls.crt` of `kubernetes.io/tls` Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateFacts>,
}

/// Public facts of the certificates in one Secret key (never key material).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateFacts {
    /// The first certificate's subject (the leaf of a chain), as an RFC 4514 string (cut at 256
    /// characters).
    pub subject: String,
    /// The first certificate's subject alternative names (DNS names, IP addresses, e-mail
    /// addresses, URIs; at most the first 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sans: Vec<String>,
    /// The earliest `notAfter` of the certificates in the key (also feeds `status.expiresAt`).
    pub not_after: Time,
    /// How many certificates the key holds.
    pub count: u32,
}
