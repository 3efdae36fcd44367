//! Deciding what to do with the target Secret (pure), and the object we apply.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;

use super::desired::DesiredSecret;
use crate::api::{self, CreationPolicy, DriftPolicy, Reason};
use crate::audit::HmacKey;
use crate::value::SecretBytes;

/// What to do with the target Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It does not exist: create it.
    Create,
    /// Write it. `rotation`: the synced data really changed since the last sync. `drift`: a hand edit
    /// is being reverted.
    Update {
        /// Data changed at the source since the last sync.
        rotation: bool,
        /// A hand edit is reverted.
        drift: bool,
    },
    /// It already holds exactly what we would write.
    NoChange,
    /// It was edited by hand and the policy says to leave it (`Alert` or `Ignore`).
    DriftKept {
        /// The drift policy in force.
        policy: DriftPolicy,
        /// Synced keys the edit removed or emptied (names only, sorted): while any is missing the
        /// SecretRef is not Ready, whatever the policy (DESIGN §2.2).
        missing: Vec<String>,
    },
    /// We must not or cannot write it.
    Refused {
        /// Stable reason (condition/event).
        reason: Reason,
        /// Why, naming the Secret.
        message: String,
    },
}

/// How the Secrets of one SecretRef are recognised (DESIGN §2.4: ownership cannot be forged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// The SecretRef's name (the `secretsync.io/secretref` label).
    pub sref_name: String,
    /// The `secretsync.io/owner` proof an owned Secret carries
    /// ([`HmacKey::ownership_proof`]); `None` offline (`render`, where no uid exists).
    pub proof: Option<String>,
    /// This SecretRef's status records a sync of the Secret. Secrets written before ownership
    /// proofs existed are recognised by their labels only together with that record (a tenant can
    /// write labels on a Secret, not the status of a SecretRef); their next write adds the proof.
    pub claimed_in_status: bool,
    /// The ExternalSecret (same namespace) whose Secret this SecretRef may take over, from its
    /// `secretsync.io/adopt-from` annotation ([`adopt_from`]); `None`: no adoption.
    pub adopt_from: Option<String>,
}

impl Ownership {
    /// Whether `secret` belongs to this SecretRef.
    pub fn owns(&self, secret: &Secret) -> bool {
        let proof = secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(api::OWNER_ANNOTATION));
        match (proof, &self.proof) {
            (Some(have), Some(want)) => have == want,
            (Some(_), None) => false,
            (None, _) => self.claimed_in_status && labelled_for(secret, &self.sref_name),
        }
    }
}

impl Ownership {
    /// Whether this SecretRef may adopt `secret`: it opted in for ExternalSecret `n` and the
    /// Secret carries External Secrets Operator's marks for exactly that ExternalSecret
    /// ([`eso_owned_by`]) and no secretsync ownership proof.
    pub fn adopts(&self, secret: &Secret) -> bool {
        let proof = secret
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(api::OWNER_ANNOTATION));
        !proof
            && self
                .adopt_from
                .as_deref()
                .is_some_and(|n| eso_owned_by(secret, n))
    }
}

/// ESO's label on every Secret it manages (`"true"`).
pub const ESO_MANAGED_LABEL: &str = "reconcile.external-secrets.io/managed";
/// ESO's label naming the ExternalSecret that created a Secret.
pub const ESO_CREATED_BY_LABEL: &str = "reconcile.external-secrets.io/created-by";
/// ESO's annotation with the hash of the data it wrote.
pub const ESO_DATA_HASH_ANNOTATION: &str = "reconcile.external-secrets.io/data-hash";
/// The prefix of the `secretsync.io/adopt-from` value.
pub const ADOPT_PREFIX: &str = "external-secrets.io/ExternalSecret/";

/// The ExternalSecret name of a `secretsync.io/adopt-from` value
/// (`external-secrets.io/ExternalSecret/<name>`); `None` when malformed.
pub fn adopt_from(value: &str) -> Option<String> {
    value
        .strip_prefix(ADOPT_PREFIX)
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .map(str::to_string)
}

/// Whether `secret` was written by External Secrets Operator for ExternalSecret `name` of its
/// namespace: ESO's managed label, and a controller ownerReference to that ExternalSecret
/// (`external-secrets.io/*`, kind `ExternalSecret`). Owner references are namespace-local, so the
/// ExternalSecret is in the Secret's namespace.
pub fn eso_owned_by(secret: &Secret, name: &str) -> bool {
    let managed = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(ESO_MANAGED_LABEL))
        .map(String::as_str)
        == Some("true");
    managed
        && secret
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| is_eso_ref(r) && r.name == name && r.controller == Some(true))
}

fn is_eso_ref(r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference) -> bool {
    r.api_version.split('/').next() == Some(crate::convert::ESO_GROUP) && r.kind == "ExternalSecret"
}

/// The JSON merge patch that adopts an ESO Secret in one write: `object`'s data, labels and
/// annotations (the [`apply_object`] of the SecretRef), ESO's ownerReference, labels and data-hash
/// annotation removed, keys we do not write removed, and `existing`'s `resourceVersion` as the
/// precondition. The Secret is never deleted or emptied on the way.
pub fn adoption_patch(existing: &Secret, object: &Secret) -> serde_json::Value {
    use serde_json::{Map, Value, json};
    let mut labels: Map<String, Value> = Map::new();
    for k in [ESO_MANAGED_LABEL, ESO_CREATED_BY_LABEL] {
        if existing
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(k))
        {
            labels.insert(k.into(), Value::Null);
        }
    }
    for (k, v) in object.metadata.labels.iter().flatten() {
        labels.insert(k.clone(), json!(v));
    }
    let mut annotations: Map<String, Value> = Map::new();
    if existing
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ESO_DATA_HASH_ANNOTATION))
    {
        annotations.insert(ESO_DATA_HASH_ANNOTATION.into(), Value::Null);
    }
    for (k, v) in object.metadata.annotations.iter().flatten() {
        annotations.insert(k.clone(), json!(v));
    }
    let want = object.data.clone().unwrap_or_default();
    let mut data: Map<String, Value> = Map::new();
    for k in existing.data.iter().flatten().map(|(k, _)| k) {
        if !want.contains_key(k) {
            data.insert(k.clone(), Value::Null);
        }
    }
    for (k, v) in &want {
        data.insert(k.clone(), serde_json::to_value(v).unwrap_or(Value::Null));
    }
    let refs: Vec<Value> = existing
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|r| !is_eso_ref(r))
        .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
        .collect();
    let metadata = json!({
        "resourceVersion": existing.metadata.resource_version,
        "labels": labels,
        "annotations": annotations,
        "ownerReferences": if refs.is_empty() { Value::Null } else { Value::Array(refs) },
    });
    let mut patch = json!({"metadata": metadata, "data": data});
    if object.immutable == Some(true) {
        patch["immutable"] = json!(true);
    }
    patch
}

/// Whether `secret` carries the ownership labels of SecretRef `sref_name` (not a proof of anything:
/// labels can be written by anyone who may edit the Secret).
pub fn labelled_for(secret: &Secret, sref_name: &str) -> bool {
    let labels = secret.metadata.labels.as_ref();
    labels
        .and_then(|l| l.get(api::MANAGED_BY_LABEL))
        .map(String::as_str)
        == Some(api::MANAGED_BY_VALUE)
        && labels
            .and_then(|l| l.get(api::SECRETREF_LABEL))
            .map(String::as_str)
            == Some(sref_name)
}

/// The `resourceVersion` of a server-side apply that must create the Secret, never overwrite one
/// that appeared after the read: an apply whose `metadata.resourceVersion` does not match the
/// stored object's is refused with 409 Conflict, and on a missing object it is ignored. Revision 1
/// is the storage's initial state, before any object exists, so no Secret ever has it.
pub const CREATE_ONLY: &str = "1";

/// The keyed HMAC of the values `secret` holds for the keys we want to write (missing keys make it differ).
pub fn actual_hmac(secret: &Secret, desired: &DesiredSecret, key: &HmacKey) -> Option<String> {
    let data = secret.data.as_ref()?;
    let mut per_key = Vec::with_capacity(desired.data.len());
    for k in desired.data.keys() {
        let v = data.get(k)?;
        per_key.push((k.clone(), key.key_hmac(k, &SecretBytes::new(v.0.clone()))));
    }
    Some(key.data_hmac_from_keys(per_key.iter().map(|(k, h)| (k.as_str(), h.as_str()))))
}

/// Decides what to do. `last_synced` is the data HMAC recorded in status at the last successful sync.
pub fn decide(
    existing: Option<&Secret>,
    desired: &DesiredSecret,
    owner: &Ownership,
    creation: CreationPolicy,
    drift_policy: DriftPolicy,
    last_synced: Option<&str>,
    key: &HmacKey,
) -> Decision {
    let Some(secret) = existing else {
        return Decision::Create;
    };
    let name = &desired.name;
    if creation != CreationPolicy::Merge && !owner.owns(secret) && !owner.adopts(secret) {
        let owner = secret
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(api::SECRETREF_LABEL));
        let message = match owner {
            Some(other) => {
                format!("Secret {name:?} belongs to SecretRef {other:?}; refusing to overwrite it")
            }
            None => format!(
                "Secret {name:?} exists and is not managed by secretsync; refusing to overwrite it (use creationPolicy: Merge to add keys to it)"
            ),
        };
        return Decision::Refused {
            reason: Reason::TargetConflict,
            message,
        };
    }
    let existing_type = secret.type_.as_deref().unwrap_or("Opaque");
    if existing_type != desired.type_ {
        return Decision::Refused {
            reason: Reason::TargetTypeMismatch,
            message: format!(
                "Secret {name:?} has type {existing_type:?} but {:?} is wanted; Kubernetes cannot change a Secret's type, delete it to let secretsync recreate it",
                desired.type_
            ),
        };
    }
    let actual = actual_hmac(secret, desired, key);
    let data_matches = actual.as_deref() == Some(desired.data_hmac.as_str());
    if secret.immutable == Some(true) && !data_matches {
        return Decision::Refused {
            reason: Reason::TargetImmutable,
            message: format!(
                "Secret {name:?} is immutable and holds other data; change target.name to roll out new data"
            ),
        };
    }
    let metadata_matches =
        creation == CreationPolicy::Merge || metadata_up_to_date(secret, desired, owner);
    if data_matches {
        return if metadata_matches {
            Decision::NoChange
        } else {
            Decision::Update {
                rotation: false,
                drift: false,
            }
        };
    }
    let source_changed = last_synced != Some(desired.data_hmac.as_str());
    if source_changed {
        return Decision::Update {
            rotation: last_synced.is_some(),
            drift: false,
        };
    }
    match drift_policy {
        DriftPolicy::Revert => Decision::Update {
            rotation: false,
            drift: true,
        },
        policy => Decision::DriftKept {
            policy,
            missing: missing_keys(secret, desired),
        },
    }
}

/// Keys of `desired` that `secret` lacks or holds empty.
fn missing_keys(secret: &Secret, desired: &DesiredSecret) -> Vec<String> {
    let live = secret.data.as_ref();
    desired
        .data
        .keys()
        .filter(|k| live.and_then(|d| d.get(*k)).is_none_or(|v| v.0.is_empty()))
        .cloned()
        .collect()
}

fn metadata_up_to_date(secret: &Secret, desired: &DesiredSecret, owner: &Ownership) -> bool {
    let labels = secret.metadata.labels.clone().unwrap_or_default();
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    labelled_for(secret, &owner.sref_name)
        && annotations.get(api::OWNER_ANNOTATION) == owner.proof.as_ref()
        && annotations.get(api::DATA_HMAC_ANNOTATION) == Some(&desired.data_hmac)
        && desired.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
        && desired
            .annotations
            .iter()
            .all(|(k, v)| annotations.get(k) == Some(v))
        && secret.immutable.unwrap_or(false) == desired.immutable
}

/// The field manager for a write: `secretsync`, or a per-SecretRef manager for `Merge` so several
/// SecretRefs can merge keys into one Secret without removing each other's.
pub fn field_manager(creation: CreationPolicy, sref_name: &str) -> String {
    match creation {
        CreationPolicy::Merge => {
            let mut m = format!("secretsync-merge-{sref_name}");
            m.truncate(128);
            m
        }
        _ => api::FIELD_MANAGER.to_string(),
    }
}

/// The object applied with server-side apply: only the fields secretsync owns. Owned Secrets
/// (`Owner`, `Orphan`) carry the ownership labels, the data HMAC and `owner`'s proof; a `Merge`
/// target gets our keys and nothing that claims it (no label, no annotation, never `immutable`).
/// `precondition`: the `resourceVersion` the Secret must still have ([`CREATE_ONLY`] for a new
/// one), so that a write never lands on a Secret other than the one decided on.
pub fn apply_object(
    desired: &DesiredSecret,
    namespace: &str,
    owner: &Ownership,
    creation: CreationPolicy,
    precondition: Option<&str>,
) -> Secret {
    let merge = creation == CreationPolicy::Merge;
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    let mut annotations: BTreeMap<String, String> = BTreeMap::new();
    if !merge {
        labels.extend(desired.labels.clone());
        annotations.extend(desired.annotations.clone());
        labels.insert(api::MANAGED_BY_LABEL.into(), api::MANAGED_BY_VALUE.into());
        labels.insert(api::SECRETREF_LABEL.into(), owner.sref_name.clone());
        annotations.insert(api::DATA_HMAC_ANNOTATION.into(), desired.data_hmac.clone());
        if let Some(p) = &owner.proof {
            annotations.insert(api::OWNER_ANNOTATION.into(), p.clone());
        }
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(desired.name.clone()),
            namespace: Some(namespace.to_string()),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            resource_version: precondition.map(str::to_string),
            ..Default::default()
        },
        type_: if merge {
            None
        } else {
            Some(desired.type_.clone())
        },
        immutable: (desired.immutable && !merge).then_some(true),
        data: Some(
            desired
                .data
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.expose().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SyncedKey;

    fn key() -> HmacKey {
        HmacKey::new(vec![3; 32])
    }

    fn desired(v: &str) -> DesiredSecret {
        let k = key();
        let data: BTreeMap<String, SecretBytes> = [("pw".to_string(), SecretBytes::from(v))].into();
        let hm = k.key_hmac("pw", &data["pw"]);
        DesiredSecret {
            name: "t".into(),
            type_: "Opaque".into(),
            data_hmac: k.data_hmac_from_keys([("pw", hm.as_str())]),
            synced_keys: vec![SyncedKey {
                secret_key: "pw".into(),
                hmac: hm,
                ..Default::default()
            }],
            data,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            immutable: false,
            expires_at: None,
        }
    }

    fn own(sref: &str) -> Ownership {
        Ownership {
            sref_name: sref.into(),
            proof: Some(format!("proof-of-{sref}")),
            claimed_in_status: false,
            adopt_from: None,
        }
    }

    fn secret_from(d: &DesiredSecret, sref: &str) -> Secret {
        apply_object(d, "ns", &own(sref), CreationPolicy::Owner, None)
    }

    /// A Secret that is not secretsync's: no ownership proof.
    fn unowned(mut s: Secret) -> Secret {
        if let Some(a) = s.metadata.annotations.as_mut() {
            a.remove(api::OWNER_ANNOTATION);
        }
        s
    }

    #[test]
    fn ownership_needs_the_proof_not_the_labels() {
        let d = desired("a");
        let s = secret_from(&d, "s");
        assert!(own("s").owns(&s));
        // Labels copied onto another Secret prove nothing.
        let forged = unowned(s.clone());
        assert!(labelled_for(&forged, "s"));
        assert!(!own("s").owns(&forged));
        // ... unless this SecretRef's status records the sync (Secrets of earlier versions).
        let legacy = Ownership {
            claimed_in_status: true,
            ..own("s")
        };
        assert!(legacy.owns(&forged));
        // A proof for another SecretRef (or uid) never matches, status or not.
        assert!(!own("t").owns(&s));
        assert!(
            !Ownership {
                claimed_in_status: true,
                ..own("t")
            }
            .owns(&s)
        );
        // A real proof from the key binds namespace, Secret, SecretRef and uid.
        let k = key();
        let p = k.ownership_proof("ns", "t", "s", "uid-1");
        assert_ne!(p, k.ownership_proof("ns", "t", "s", "uid-2"));
        assert_ne!(p, k.ownership_proof("ns2", "t", "s", "uid-1"));
        assert_ne!(p, key_b().ownership_proof("ns", "t", "s", "uid-1"));
    }

    /// A Secret as ESO writes it for ExternalSecret `es`.
    fn eso_secret(d: &DesiredSecret, es: &str) -> Secret {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        let mut s = unowned(secret_from(d, "s"));
        s.metadata.labels = Some([(ESO_MANAGED_LABEL.to_string(), "true".to_string())].into());
        s.metadata.annotations =
            Some([(ESO_DATA_HASH_ANNOTATION.to_string(), "h".to_string())].into());
        s.metadata.resource_version = Some("42".into());
        s.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "external-secrets.io/v1".into(),
            kind: "ExternalSecret".into(),
            name: es.into(),
            uid: "uid-es".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        s
    }

    #[test]
    fn adoption_needs_the_opt_in_and_esos_marks_for_that_externalsecret() {
        let d = desired("a");
        let es = eso_secret(&d, "db");
        let adopting = Ownership {
            adopt_from: adopt_from("external-secrets.io/ExternalSecret/db"),
            ..own("s")
        };
        assert!(adopting.adopts(&es));
        let decide_with = |o: &Ownership, s: &Secret| {
            decide(
                Some(s),
                &d,
                o,
                CreationPolicy::Owner,
                DriftPolicy::Revert,
                None,
                &key(),
            )
        };
        // Same data: written once (marks), never a rotation.
        assert_eq!(
            decide_with(&adopting, &es),
            Decision::Update {
                rotation: false,
                drift: false
            }
        );
        // Without the opt-in, or for another ExternalSecret, or without ESO's marks: refused.
        for (o, s) in [
            (own("s"), es.clone()),
            (
                Ownership {
                    adopt_from: adopt_from("external-secrets.io/ExternalSecret/other"),
                    ..own("s")
                },
                es.clone(),
            ),
            (adopting.clone(), unowned(secret_from(&d, "s"))),
            (adopting.clone(), {
                let mut x = es.clone();
                x.metadata.labels = None;
                x
            }),
            (adopting.clone(), {
                let mut x = es.clone();
                if let Some(r) = x.metadata.owner_references.as_mut() {
                    r[0].kind = "Deployment".into();
                }
                x
            }),
            (adopting.clone(), {
                let mut x = es.clone();
                if let Some(r) = x.metadata.owner_references.as_mut() {
                    r[0].api_version = "example.com/v1".into();
                }
                x
            }),
            // Another SecretRef's Secret (a secretsync proof) is never adopted.
            (adopting.clone(), {
                let mut x = es.clone();
                x.metadata
                    .annotations
                    .get_or_insert_with(BTreeMap::new)
                    .insert(api::OWNER_ANNOTATION.into(), "proof-of-t".into());
                x
            }),
        ] {
            assert!(
                matches!(
                    decide_with(&o, &s),
                    Decision::Refused {
                        reason: Reason::TargetConflict,
                        ..
                    }
                ),
                "{o:?}"
            );
        }
        assert_eq!(adopt_from("external-secrets.io/ExternalSecret/"), None);
        assert_eq!(adopt_from("ExternalSecret/db"), None);
    }

    #[test]
    fn the_adoption_patch_swaps_marks_and_data_in_one_write() {
        let d = desired("a");
        let mut es = eso_secret(&d, "db");
        if let Some(data) = es.data.as_mut() {
            data.insert("extra".into(), ByteString(b"x".to_vec()));
        }
        let object = apply_object(&d, "ns", &own("s"), CreationPolicy::Owner, Some("42"));
        let p = adoption_patch(&es, &object);
        assert_eq!(p["metadata"]["resourceVersion"], "42");
        assert!(p["metadata"]["ownerReferences"].is_null());
        assert!(p["metadata"]["labels"][ESO_MANAGED_LABEL].is_null());
        assert_eq!(p["metadata"]["labels"][api::SECRETREF_LABEL], "s");
        assert!(p["metadata"]["annotations"][ESO_DATA_HASH_ANNOTATION].is_null());
        assert_eq!(
            p["metadata"]["annotations"][api::OWNER_ANNOTATION],
            "proof-of-s"
        );
        assert_eq!(p["data"]["pw"], "YQ==");
        assert!(p["data"]["extra"].is_null());
    }

    fn key_b() -> HmacKey {
        HmacKey::new(vec![4; 32])
    }

    #[test]
    fn merge_writes_keys_and_no_marks() {
        let mut d = desired("a");
        d.immutable = true;
        d.labels.insert("team".into(), "x".into());
        let m = apply_object(&d, "ns", &own("s"), CreationPolicy::Merge, Some("7"));
        assert!(m.metadata.labels.is_none(), "{:?}", m.metadata.labels);
        assert!(m.metadata.annotations.is_none());
        assert_eq!(m.immutable, None);
        assert_eq!(m.type_, None);
        assert_eq!(m.metadata.resource_version.as_deref(), Some("7"));
        assert!(m.data.unwrap().contains_key("pw"));
        let o = apply_object(
            &d,
            "ns",
            &own("s"),
            CreationPolicy::Owner,
            Some(CREATE_ONLY),
        );
        assert_eq!(o.immutable, Some(true));
        assert_eq!(o.metadata.resource_version.as_deref(), Some(CREATE_ONLY));
        assert_eq!(
            o.metadata.annotations.unwrap()[api::OWNER_ANNOTATION],
            "proof-of-s"
        );
    }

    #[test]
    fn creates_when_absent_and_noops_when_equal() {
        let d = desired("a");
        assert_eq!(
            decide(
                None,
                &d,
                &own("s"),
                CreationPolicy::Owner,
                DriftPolicy::Revert,
                None,
                &key()
            ),
            Decision::Create
        );
        let s = secret_from(&d, "s");
        assert_eq!(
            decide(
                Some(&s),
                &d,
                &own("s"),
                CreationPolicy::Owner,
                DriftPolicy::Revert,
                Some(&d.data_hmac),
                &key()
            ),
            Decision::NoChange
        );
    }

    #[test]
    fn refuses_foreign_secrets_unless_merging() {
        let d = desired("a");
        let foreign = unowned(secret_from(&d, "s"));
        assert!(matches!(
            decide(
                Some(&foreign),
                &d,
                &own("s"),
                CreationPolicy::Owner,
                DriftPolicy::Revert,
                None,
                &key()
            ),
            Decision::Refused {
                reason: Reason::TargetConflict,
                ..
            }
        ));
        assert!(matches!(
            decide(
                Some(&foreign),
                &d,
                &own("s"),
                CreationPolicy::Orphan,
                DriftPolicy::Revert,
                None,
                &key()
            ),
            Decision::Refused {
                reason: Reason::TargetConflict,
                ..
            }
        ));
        let other = secret_from(&d, "other");
        assert!(matches!(
            decide(
                Some(&other),
                &d,
                &own("s"),
                CreationPolicy::Owner,
                DriftPolicy::Revert,
                None,
                &key()
            ),
            Decision::Refused {
                reason: Reason::TargetConflict,
                ..
            }
        ));
        assert_eq!(
            decide(
                Some(&foreign),
                &d,
                &own("s"),
                CreationPolicy::Merge,
                DriftPolicy::Revert,
                None,
                &key()
            ),
            Decision::NoChange
        );
    }

    #[test]
    fn rotation_versus_drift() {
        let old = desired("a");
        let new = desired("b");
        let s = secret_from(&old, "s");
        // The source changed: a rotation.
        assert_eq!(
            decide(
                Some(&s),
                &new,
                &own("s"),
                CreationPolicy::Owner,
                DriftPolicy::Alert,
                Some(&old.data_hmac),
                &key()
            ),
            Decision::Update {
                rotation: true,
                drift: false
            }
        );
        // Someone edited the Secret; the source did not change.
        let edited = secret_from(&new, "s");
        assert_eq!(
            decide(
                Some(&edited),
                &old,
                &own("s"),
                CreationPolicy::Owner,
                DriftPolicy::Revert,
                Some(&old.data_hmac),
                &key()
            ),
            Decision::Update {
                rotation: false,
                drift: true
            }
        );
        assert_eq!(
            decide(
                Some(&edited),
                &old,
                &own("s"),
                CreationPolicy::Owner,
                DriftPolicy::Alert,
                Some(&old.data_hmac),
                &key()
            ),
            Decision::DriftKept {
                policy: DriftPolicy::Alert,
                missing: vec![]
            }
        );
        assert_eq!(
            decide(
                Some(&edited),
                &old,
                &own("s"),
                CreationPolicy::Owner,
                DriftPolicy::Ignore,
                Some(&old.data_hmac),
                &key()
            ),
            Decision::DriftKept {
                policy: DriftPolicy::Ignore,
                missing: vec![]
            }
        );
        // An edit that blanks or removes a synced key is kept too, but reported by name.
        for data in [
            None,
            Some(BTreeMap::new()),
            Some([("pw".to_string(), ByteString(vec![]))].into()),
        ] {
            let mut blanked = secret_from(&old, "s");
            blanked.data = data;
            for policy in [DriftPolicy::Alert, DriftPolicy::Ignore] {
                assert_eq!(
                    decide(
                        Some(&blanked),
                        &old,
                        &own("s"),
                        CreationPolicy::Owner,
                        policy,
                        Some(&old.data_hmac),
                        &key()
                    ),
                    Decision::DriftKept {
                        policy,
                        missing: vec!["pw".into()]
                    }
                );
            }
        }
        // First sync over an existing owned Secret with other data is not a rotation.
        assert_eq!(
            decide(
                Some(&s),
                &new,
                &own("s"),
                CreationPolicy::Owner,
                DriftPolicy::Revert,
                None,
                &key()
            ),
            Decision::Update {
                rotation: false,
                drift: false
            }
        );
    }

    #[test]
    fn immutable_and_type_changes_are_refused() {
        let old = desired("a");
        let mut s = secret_from(&old, "s");
        s.immutable = Some(true);
        assert!(matches!(
            decide(
                Some(&s),
                &desired("b"),
                &own("s"),
                CreationPolicy::Owner,
                DriftPolicy::Revert,
                Some(&old.data_hmac),
                &key()
            ),
            Decision::Refused {
                reason: Reason::TargetImmutable,
                ..
            }
        ));
        let mut s = secret_from(&old, "s");
        s.type_ = Some("kubernetes.io/tls".into());
        assert!(matches!(
            decide(
                Some(&s),
                &old,
                &own("s"),
                CreationPolicy::Owner,
                DriftPolicy::Revert,
                None,
                &key()
            ),
            Decision::Refused {
                reason: Reason::TargetTypeMismatch,
                ..
            }
        ));
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        fn policy() -> impl Strategy<Value = (CreationPolicy, DriftPolicy)> {
            (
                prop_oneof![
                    Just(CreationPolicy::Owner),
                    Just(CreationPolicy::Merge),
                    Just(CreationPolicy::Orphan)
                ],
                prop_oneof![
                    Just(DriftPolicy::Revert),
                    Just(DriftPolicy::Alert),
                    Just(DriftPolicy::Ignore)
                ],
            )
        }

        proptest! {
            /// The decision invariants: foreign Secrets are never written without Merge; a first sync
            /// is never a rotation; an up-to-date Secret is never rewritten; a real change at the source
            /// is always written; hand edits are kept only under Alert/Ignore and only while the source
            /// is unchanged.
            #[test]
            fn decision_invariants(
                actual in prop::option::of("[ab]"),
                want in "[ab]",
                last in prop::option::of("[ab]"),
                owned in any::<bool>(),
                (creation, drift) in policy(),
            ) {
                let k = key();
                let d = desired(&want);
                let last_hmac = last.as_ref().map(|l| desired(l).data_hmac);
                let existing = actual.as_ref().map(|a| {
                    let s = secret_from(&desired(a), "s");
                    if owned { s } else { unowned(s) }
                });
                let dec = decide(existing.as_ref(), &d, &own("s"), creation, drift, last_hmac.as_deref(), &k);
                match &existing {
                    None => prop_assert_eq!(&dec, &Decision::Create),
                    Some(_) if !owned && creation != CreationPolicy::Merge => {
                        let refused = matches!(dec, Decision::Refused { reason: Reason::TargetConflict, .. });
                        prop_assert!(refused, "{:?}", dec);
                    }
                    Some(_) => {
                        let up_to_date = actual.as_deref() == Some(want.as_str());
                        if up_to_date {
                            let noop = matches!(dec, Decision::NoChange | Decision::Update { rotation: false, drift: false });
                            prop_assert!(noop, "{:?}", dec);
                        }
                        if last.is_none() {
                            let rotation = matches!(dec, Decision::Update { rotation: true, .. });
                            prop_assert!(!rotation, "first sync is never a rotation");
                        }
                        if !up_to_date && last.as_deref() != Some(want.as_str()) {
                            let written = matches!(dec, Decision::Update { .. });
                            prop_assert!(written, "a real change must be written: {:?}", dec);
                        }
                        if let Decision::DriftKept { policy, .. } = dec {
                            prop_assert!(policy != DriftPolicy::Revert);
                            prop_assert_eq!(last.as_deref(), Some(want.as_str()));
                        }
                    }
                }
            }
        }
    }
}
