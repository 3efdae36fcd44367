//! The chart's RBAC is least privilege (tenancy exploit class "over-broad RBAC in the chart").
//!
//! Renders the chart with `helm template` for every `charts/secretsync/ci/*-values.yaml` when helm is
//! available (`.tools/bin/helm`, installed by `make chart-lint`, or on PATH), and always checks
//! `deploy/install.yaml` (the chart rendered with default values, kept up to date by CI). Every rule
//! granted to the controller's ServiceAccount must be in the README's RBAC table; no wildcards, no
//! escalation verbs, no `update`/`deletecollection` on Secrets, Lease writes only by name, cluster-wide
//! Secret access only in cluster scope, and the people-facing aggregated roles never touch Secrets or
//! ClusterSecretStores.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .filter_map(|d| Value::deserialize(d).ok())
        .filter(|v| v.is_object())
        .collect()
}

fn helm() -> Option<PathBuf> {
    let local = root().join(".tools/bin/helm");
    if local.exists() {
        return Some(local);
    }
    Command::new("helm")
        .arg("version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| PathBuf::from("helm"))
}

/// (group, resource) → verbs the controller may have (README "RBAC").
fn allowed() -> BTreeMap<(&'static str, &'static str), BTreeSet<&'static str>> {
    let mut m = BTreeMap::new();
    let mut add = |g: &'static str, r: &'static str, verbs: &[&'static str]| {
        m.entry((g, r))
            .or_insert_with(BTreeSet::new)
            .extend(verbs.iter().copied());
    };
    add(
        "secretsync.io",
        "secretrefs",
        &["get", "list", "watch", "patch", "update"],
    );
    // The ClusterSecretRef fan-out (scope cluster, `clusterSecretRefs.enabled`): it creates and
    // deletes the generated SecretRefs, and lists/watches Namespaces for their labels.
    add("secretsync.io", "secretrefs", &["create", "delete"]);
    add(
        "secretsync.io",
        "clustersecretrefs",
        &["get", "list", "watch"],
    );
    add(
        "secretsync.io",
        "clustersecretrefs/status",
        &["patch", "update"],
    );
    add("", "namespaces", &["list", "watch"]);
    add("secretsync.io", "secretstores", &["get", "list", "watch"]);
    add("secretsync.io", "secretrefs/status", &["patch", "update"]);
    add("secretsync.io", "secretstores/status", &["patch", "update"]);
    add("secretsync.io", "secretrefs/finalizers", &["update"]);
    add(
        "",
        "secrets",
        &["get", "list", "watch", "create", "patch", "delete"],
    );
    add("", "configmaps", &["get"]);
    add("events.k8s.io", "events", &["create", "patch"]);
    add("", "events", &["create", "patch"]);
    for r in ["deployments", "statefulsets", "daemonsets"] {
        add("apps", r, &["get", "list", "patch"]);
    }
    add("", "serviceaccounts/token", &["create"]);
    add(
        "secretsync.io",
        "clustersecretstores",
        &["get", "list", "watch"],
    );
    add(
        "secretsync.io",
        "clustersecretstores/status",
        &["patch", "update"],
    );
    add("", "namespaces", &["get"]);
    add(
        "coordination.k8s.io",
        "leases",
        &["create", "get", "update", "patch"],
    );
    m
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks one rendering; returns the number of rules checked.
fn check(label: &str, objs: &[Value]) -> usize {
    let kind = |o: &Value| o["kind"].as_str().unwrap_or_default().to_string();
    let name = |o: &Value| {
        o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    // Roles bound to a ServiceAccount are the controller's.
    let mut controller_roles = BTreeSet::new();
    for b in objs
        .iter()
        .filter(|o| matches!(kind(o).as_str(), "RoleBinding" | "ClusterRoleBinding"))
    {
        let to_sa = b["subjects"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["kind"] == "ServiceAccount"));
        if to_sa {
            controller_roles.insert((
                b["roleRef"]["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                b["roleRef"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ));
        }
    }
    let allowed = allowed();
    let cluster_scope = objs.iter().any(|o| {
        kind(o) == "ClusterRole"
            && o["rules"].as_array().is_some_and(|rs| {
                rs.iter()
                    .any(|r| strs(&r["resources"]).contains(&"secretrefs".to_string()))
            })
            && controller_roles.contains(&("ClusterRole".into(), name(o)))
    });
    let mut checked = 0;
    for role in objs
        .iter()
        .filter(|o| matches!(kind(o).as_str(), "Role" | "ClusterRole"))
    {
        let (k, n) = (kind(role), name(role));
        let is_controller = controller_roles.contains(&(k.clone(), n.clone()));
        let aggregated = role["metadata"]["labels"].as_object().is_some_and(|l| {
            l.keys()
                .any(|k| k.starts_with("rbac.authorization.k8s.io/aggregate-to-"))
        });
        assert!(
            is_controller || aggregated,
            "{label}: {k} {n} is neither bound to the controller nor an aggregated user role"
        );
        for rule in role["rules"].as_array().cloned().unwrap_or_default() {
            checked += 1;
            let groups = strs(&rule["apiGroups"]);
            let resources = strs(&rule["resources"]);
            let verbs = strs(&rule["verbs"]);
            let names = strs(&rule["resourceNames"]);
            let all = groups.iter().chain(&resources).chain(&verbs).chain(&names);
            for s in all {
                assert!(
                    !s.contains('*'),
                    "{label}: wildcard {s:?} in {k} {n}: {rule}"
                );
            }
            assert!(
                rule.get("nonResourceURLs").is_none(),
                "{label}: nonResourceURLs in {k} {n}"
            );
            for v in &verbs {
                assert!(
                    !(["escalate", "bind", "impersonate"].contains(&v.as_str())
                        || (is_controller && v == "deletecollection")),
                    "{label}: verb {v} in {k} {n}"
                );
            }
            if aggregated && !is_controller {
                for r in &resources {
                    assert!(
                        !["secrets", "clustersecretstores", "serviceaccounts/token"]
                            .contains(&r.as_str()),
                        "{label}: user role {n} grants {r}"
                    );
                }
                continue;
            }
            for g in &groups {
                for r in &resources {
                    let ok = allowed.get(&(g.as_str(), r.as_str())).unwrap_or_else(|| {
                        panic!("{label}: {k} {n} grants {g:?}/{r} which the README does not list")
                    });
                    for v in &verbs {
                        assert!(
                            ok.contains(v.as_str()),
                            "{label}: {k} {n} grants {v} on {g:?}/{r}, beyond the README table"
                        );
                    }
                    if r == "secrets" && k == "ClusterRole" {
                        assert!(
                            cluster_scope,
                            "{label}: cluster-wide Secret access outside cluster scope ({n})"
                        );
                    }
                    if r == "leases" {
                        let by_name = verbs.iter().all(|v| v == "create") || !names.is_empty();
                        assert!(
                            by_name,
                            "{label}: Lease writes not limited to its own Lease"
                        );
                        assert_eq!(
                            k, "Role",
                            "{label}: Leases only in the controller's namespace"
                        );
                    }
                }
            }
        }
    }
    checked
}

fn helm_render(helm: &Path, values: &Path) -> String {
    let out = Command::new(helm)
        .args(["template", "secretsync"])
        .arg(root().join("charts/secretsync"))
        .args(["--namespace", "secretsync-system", "-f"])
        .arg(values)
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm template {}: {}",
        values.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn chart_rbac_is_least_privilege() {
    let install =
        std::fs::read_to_string(root().join("deploy/install.yaml")).expect("install.yaml");
    let objs = docs(&install);
    let n = check("deploy/install.yaml", &objs);
    assert!(n >= 10, "too few rules found in deploy/install.yaml ({n})");
    // Default values: no TokenRequest permission unless asked for.
    assert!(
        !install.contains("serviceaccounts/token"),
        "serviceaccounts/token is granted by default"
    );
    let Some(helm) = helm() else {
        eprintln!(
            "helm not found: checked deploy/install.yaml only (make chart-lint installs helm)"
        );
        return;
    };
    let mut total = n;
    for entry in std::fs::read_dir(root().join("charts/secretsync/ci")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let rendered = helm_render(&helm, &path);
        let label = path.file_name().unwrap().to_string_lossy().to_string();
        let objs = docs(&rendered);
        total += check(&label, &objs);
        if label.starts_with("namespace-scope") {
            for o in objs.iter().filter(|o| o["kind"] == "ClusterRole") {
                let secrets = o["rules"].as_array().is_some_and(|rs| {
                    rs.iter()
                        .any(|r| strs(&r["resources"]).contains(&"secrets".to_string()))
                });
                assert!(
                    !secrets,
                    "{label}: a ClusterRole grants Secrets in namespace scope"
                );
            }
        }
    }
    eprintln!("chart RBAC: {total} rules checked");
}
