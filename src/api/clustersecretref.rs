//! `ClusterSecretRef`: one SecretRef kept in each selected namespace (fan-out).
// `printcolumn(type_ = ...)` repeats an attribute name inside the kube derive; not a real duplicate.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::SecretRefSpec;

/// Label on every SecretRef a ClusterSecretRef generates: the ClusterSecretRef's name.
pub const CLUSTER_SECRETREF_LABEL: &str = "secretsync.io/cluster-secretref";
/// Most entries kept in `status.failed`.
pub const MAX_FAILED_ENTRIES: usize = 20;

/// A SecretRef spec over a ClusterSecretStore, kept in every selected namespace.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "secretsync.io",
    version = "v1alpha1",
    kind = "ClusterSecretRef",
    doc = "A ClusterSecretRef: one SecretRef, named like it, kept in each namespace it selects (the ClusterSecretStore's conditions still apply to each).",
    status = "ClusterSecretRefStatus",
    shortname = "csref",
    category = "secretsync",
    cel,
    printcolumn(
        name = "Store",
        type_ = "string",
        json_path = ".spec.template.storeRef.name"
    ),
    printcolumn(
        name = "Selected",
        type_ = "integer",
        json_path = ".status.selectedNamespaces"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyNamespaces"
    ),
    printcolumn(
        name = "Failed",
        type_ = "integer",
        json_path = ".status.failedNamespaces"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.namespaceSelector) || (has(self.namespaces) && size(self.namespaces) > 0)").message("at least one of namespaceSelector or namespaces must be set"))]
#[x_kube(validation = Rule::new("has(self.template.storeRef.kind) && self.template.storeRef.kind == 'ClusterSecretStore'").message("template.storeRef.kind must be ClusterSecretStore"))]
pub struct ClusterSecretRefSpec {
    /// The spec of the SecretRef created in each selected namespace. Its `storeRef` must name a
    /// ClusterSecretStore (`kind: ClusterSecretStore`), whose `conditions` must admit each namespace.
    pub template: SecretRefSpec,
    /// Namespaces whose labels match this selector are selected (`{}` selects every namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Namespaces selected by name (in addition to those the selector matches).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), inner(length(min = 1, max = 63)))]
    pub namespaces: Vec<String>,
}

/// The observed state of a ClusterSecretRef.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSecretRefStatus {
    /// The generation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: `True` (reason `Synced`) when every selected namespace has its SecretRef and each
    /// of them is `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// How many existing namespaces the spec selects.
    #[serde(default)]
    pub selected_namespaces: u32,
    /// How many selected namespaces have a generated SecretRef that is `Ready`.
    #[serde(default)]
    pub ready_namespaces: u32,
    /// How many selected namespaces got no SecretRef (see `failed`).
    #[serde(default)]
    pub failed_namespaces: u32,
    /// The first 20 failed namespaces (by name) and why; never values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub failed: Vec<FailedNamespace>,
}

/// A selected namespace that got no SecretRef.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct FailedNamespace {
    /// The namespace.
    pub namespace: String,
    /// Why: `NamespaceNotAllowed` (the ClusterSecretStore's conditions do not admit it),
    /// `TargetConflict` (a SecretRef of the same name exists that this ClusterSecretRef does not
    /// own) or `StoreNotFound`.
    pub reason: String,
}
