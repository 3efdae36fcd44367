//! The custom resources of `secretsync.io/v1alpha1`, shared names, and validation.

pub mod clustersecretref;
pub mod duration;
pub mod reason;
pub mod secretref;
pub mod store;
pub mod syntax;
pub mod validation;

pub use clustersecretref::*;
pub use reason::Reason;
pub use secretref::*;
pub use store::*;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// API group of every secretsync resource.
pub const GROUP: &str = "secretsync.io";
/// Label on every Secret secretsync writes (the controller's Secret watch selects on it).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "secretsync";
/// Label naming the SecretRef that owns a Secret.
pub const SECRETREF_LABEL: &str = "secretsync.io/secretref";
/// Annotation with the keyed HMAC of the Secret's data (drift detection and restarts).
pub const DATA_HMAC_ANNOTATION: &str = "secretsync.io/data-hmac";
/// Annotation proving which SecretRef owns a Secret (see [`crate::audit::HmacKey::ownership_proof`]).
pub const OWNER_ANNOTATION: &str = "secretsync.io/owner";
/// Label and annotation keys only secretsync may set on a Secret: everything under this prefix,
/// and [`MANAGED_BY_LABEL`].
pub const RESERVED_PREFIX: &str = "secretsync.io/";
/// Annotation whose new value forces an immediate refresh.
pub const FORCE_SYNC_ANNOTATION: &str = "secretsync.io/force-sync";
/// Annotation that pauses writes while `"true"`.
pub const PAUSED_ANNOTATION: &str = "secretsync.io/paused";
/// SecretRef annotation: the opt-in to adopt a Secret that External Secrets Operator wrote, as
/// `external-secrets.io/ExternalSecret/<name>` (the ExternalSecret of the SecretRef's namespace
/// whose Secret may be taken over; see docs/migrate-from-eso.md).
pub const ADOPT_ANNOTATION: &str = "secretsync.io/adopt-from";
/// Finalizer on SecretRefs.
pub const FINALIZER: &str = "secretsync.io/finalizer";
/// Whether users may not set the label or annotation `key` (`target.labels`/`target.annotations`):
/// the `secretsync.io/` prefix and [`MANAGED_BY_LABEL`] mark what secretsync owns.
pub fn is_reserved_key(key: &str) -> bool {
    key.starts_with(RESERVED_PREFIX) || key == MANAGED_BY_LABEL
}

/// Field manager of every write.
pub const FIELD_MANAGER: &str = "secretsync";
/// Largest total size of a Secret's data Kubernetes accepts.
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;

/// Converts a timestamp for status fields.
pub fn time(
    dt: chrono::DateTime<chrono::Utc>,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    let ts = k8s_openapi::jiff::Timestamp::from_millisecond(dt.timestamp_millis())
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts)
}

/// Converts a status timestamp back.
pub fn from_time(
    t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(t.0.as_millisecond()).unwrap_or_default()
}

/// A key of a Secret in the referencing object's namespace.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key inside the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// The CRDs of all four kinds, in a stable order. Schema `default:`s are removed: defaults are
/// applied by the controller, so GitOps tools never see a permanent diff.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    [
        SecretRef::crd(),
        SecretStore::crd(),
        ClusterSecretStore::crd(),
        ClusterSecretRef::crd(),
    ]
    .into_iter()
    .map(|crd| {
        let mut v = serde_json::to_value(&crd).unwrap_or_default();
        if let Some(versions) = v
            .pointer_mut("/spec/versions")
            .and_then(|x| x.as_array_mut())
        {
            for ver in versions {
                if let Some(schema) = ver.pointer_mut("/schema/openAPIV3Schema") {
                    strip_defaults(schema);
                }
            }
        }
        serde_json::from_value(v).unwrap_or(crd)
    })
    .collect()
}

/// Removes `default` keywords from a JSON schema (not properties that happen to be named `default`).
fn strip_defaults(schema: &mut serde_json::Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    obj.remove("default");
    if let Some(props) = obj.get_mut("properties").and_then(|p| p.as_object_mut()) {
        for sub in props.values_mut() {
            strip_defaults(sub);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = obj.get_mut(key) {
            strip_defaults(sub);
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(arr) = obj.get_mut(key).and_then(|a| a.as_array_mut()) {
            for sub in arr {
                strip_defaults(sub);
            }
        }
    }
}

/// The CRDs as YAML documents keyed by file name (`secretrefs.yaml`, ...), as committed in `crds/`.
pub fn crd_files() -> Vec<(String, String)> {
    crds()
        .into_iter()
        .map(|crd| {
            let plural = crd.spec.names.plural.clone();
            let yaml = serde_yaml_ng::to_string(&crd).unwrap_or_default();
            (
                format!("{plural}.yaml"),
                format!("# Generated by `secretsync crds`; do not edit.\n{yaml}"),
            )
        })
        .collect()
}
