//! The committed CRDs match the Rust types, stay small, carry no schema defaults, and their CEL rules
//! reject what they should (evaluated client-side with the same rules the API server runs).

use kube::CustomResourceExt;
use secretsync::api::{ClusterSecretStore, SecretRef, SecretStore};
use serde_json::json;

#[test]
fn committed_crds_match_the_types() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    for (name, yaml) in secretsync::api::crd_files() {
        let path = dir.join(&name);
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{} is missing; run `make crds`", path.display()));
        assert!(
            committed == yaml,
            "{} differs from the Rust types; run `make crds` and commit the result",
            path.display()
        );
        assert!(
            yaml.len() < 256 * 1024,
            "{name} is {} bytes; must stay under 256 KiB for client-side apply",
            yaml.len()
        );
        assert!(
            !yaml.lines().any(|l| l.trim_start().starts_with("default:")),
            "{name} has a schema default (GitOps diffs)"
        );
    }
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/secretsync/crds");
    if chart.exists() {
        for (name, yaml) in secretsync::api::crd_files() {
            let c = std::fs::read_to_string(chart.join(&name)).unwrap_or_default();
            // The chart copy is the generated CRD plus the keep annotation under `metadata:`.
            let keep = "metadata:\n  annotations:\n    helm.sh/resource-policy: keep\n";
            assert!(
                c.contains(keep),
                "chart CRD {name} lacks helm.sh/resource-policy: keep; run `make crds`"
            );
            assert!(
                c.replacen(keep, "metadata:\n", 1) == yaml,
                "chart CRD {name} differs; run `make crds`"
            );
        }
    }
}

#[test]
fn crds_have_names_columns_and_status() {
    let sr = SecretRef::crd();
    assert_eq!(
        sr.spec.names.short_names.as_deref(),
        Some(&["sref".to_string()][..])
    );
    let cols: Vec<String> = sr.spec.versions[0]
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(
        cols,
        ["Ready", "Reason", "Store", "Target", "Last Changed", "Age"]
    );
    assert!(
        sr.spec.versions[0]
            .subresources
            .as_ref()
            .unwrap()
            .status
            .is_some()
    );
    assert_eq!(
        SecretStore::crd().spec.names.short_names.as_deref(),
        Some(&["sstore".to_string()][..])
    );
    assert_eq!(ClusterSecretStore::crd().spec.scope, "Cluster");
}

fn sref(spec: serde_json::Value) -> SecretRef {
    serde_json::from_value(json!({"apiVersion": "secretsync.io/v1alpha1", "kind": "SecretRef", "metadata": {"name": "x", "namespace": "n"}, "spec": spec})).unwrap()
}

#[test]
fn cel_rules_reject_invalid_secretrefs() {
    let ok = sref(
        json!({"storeRef": {"name": "s"}, "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}]}),
    );
    assert!(ok.validate_cel().is_ok(), "{:?}", ok.validate_cel());
    let bad = [
        json!({"storeRef": {"name": "s"}}),
        json!({"storeRef": {"name": "s"}, "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}], "target": {"type": "kubernetes.io/service-account-token"}}),
        json!({"storeRef": {"name": "s"}, "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}], "target": {"deletionPolicy": "Delete", "creationPolicy": "Merge"}}),
        json!({"storeRef": {"name": "s"}, "dataFrom": [{"extract": {"key": "k"}, "find": {"path": "/"}}]}),
        json!({"storeRef": {"name": "s"}, "dataFrom": [{}]}),
    ];
    for b in bad {
        assert!(
            sref(b.clone()).validate_cel().is_err(),
            "should be rejected: {b}"
        );
    }
}

#[test]
fn cel_rules_require_exactly_one_provider() {
    let store = |provider: serde_json::Value| -> SecretStore {
        serde_json::from_value(json!({"apiVersion": "secretsync.io/v1alpha1", "kind": "SecretStore", "metadata": {"name": "s", "namespace": "n"}, "spec": {"provider": provider}})).unwrap()
    };
    assert!(store(json!({"fake": {"data": []}})).validate_cel().is_ok());
    assert!(store(json!({})).validate_cel().is_err());
    assert!(
        store(json!({"fake": {"data": []}, "file": {"path": "/x"}}))
            .validate_cel()
            .is_err()
    );
    assert!(
        store(json!({"file": {"path": "/x", "configMapRef": {"name": "a", "key": "b"}}}))
            .validate_cel()
            .is_err()
    );
}
