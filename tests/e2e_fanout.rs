//! ClusterSecretRef fan-out (issue 21): one SecretRef per selected namespace, against the real binary
//! running cluster-wide with the chart's RBAC (on a real API server when KUBEBUILDER_ASSETS is set).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Env, decoded, eventually};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use secretsync::api::{ClusterSecretRef, ClusterSecretStore, SecretRef};
use serde_json::json;
use testkit::doubles::vaultkv::VaultKv;

const WAIT: Duration = Duration::from_secs(90);

async fn apply_cluster<K>(env: &Env, name: &str, obj: serde_json::Value)
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    Api::<K>::all(env.client.clone())
        .patch(
            name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {name}: {e}"));
}

async fn create_ns(env: &Env, name: &str, labels: &BTreeMap<&str, &str>) {
    Api::<Namespace>::all(env.client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap(),
        )
        .await
        .expect("create namespace");
}

async fn label_ns(env: &Env, name: &str, key: &str, value: Option<&str>) {
    Api::<Namespace>::all(env.client.clone())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {key: value}}})),
        )
        .await
        .expect("label namespace");
}

async fn sref_in(env: &Env, ns: &str, name: &str) -> Option<SecretRef> {
    Api::<SecretRef>::namespaced(env.client.clone(), ns)
        .get_opt(name)
        .await
        .expect("get SecretRef")
}

async fn secret_in(env: &Env, ns: &str, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(env.client.clone(), ns)
        .get_opt(name)
        .await
        .expect("get Secret")
}

async fn csref_status(env: &Env, name: &str) -> serde_json::Value {
    let c = Api::<ClusterSecretRef>::all(env.client.clone())
        .get(name)
        .await
        .expect("get ClusterSecretRef");
    serde_json::to_value(c.status).unwrap_or_default()
}

/// A token-auth Vault ClusterSecretStore on the KV double, admitting namespaces labelled `tenant`.
async fn vault_cluster_store(env: &Env, name: &str, kv: &VaultKv, tenant: &str) {
    env.create::<Secret>(
        json!({"metadata": {"name": "vault-token"}, "stringData": {"token": "t"}}),
    )
    .await;
    apply_cluster::<ClusterSecretStore>(
        env,
        name,
        json!({"apiVersion": "secretsync.io/v1alpha1", "kind": "ClusterSecretStore", "metadata": {"name": name},
               "spec": {"provider": {"vault": {"server": kv.url, "path": "secret", "version": "v2",
                        "auth": {"token": {"secretRef": {"name": "vault-token", "key": "token"}}}}},
                        "conditions": [{"namespaceSelector": {"matchLabels": {"tenant": tenant}}}]}}),
    )
    .await;
}

fn csref_obj(name: &str, store: &str, selector: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "secretsync.io/v1alpha1", "kind": "ClusterSecretRef", "metadata": {"name": name},
           "spec": {"namespaceSelector": selector,
                    "template": {"storeRef": {"name": store, "kind": "ClusterSecretStore"},
                                 "refreshInterval": "1h",
                                 "data": [{"secretKey": "token", "remoteRef": {"key": "registry", "property": "v"}}]}}})
}

/// 50 labelled namespaces get one SecretRef each, whose Secrets sync with one provider read of the
/// shared key; a namespace that stops matching loses its SecretRef and gets it back when it matches
/// again; deleting the ClusterSecretRef removes the generated SecretRefs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fans_out_to_fifty_namespaces_with_one_read_per_key() {
    let env = Env::start_exclusive("fanout").await;
    let tag = env.ns.trim_start_matches("ss-fanout-").to_string();
    let kv = VaultKv::start().await;
    kv.put("registry", "dockercfg-v1");
    let store = format!("fan-{tag}");
    vault_cluster_store(&env, &store, &kv, &tag).await;
    let sel_key = format!("fanout-{tag}");
    let namespaces: Vec<String> = (0..50).map(|i| format!("fan-{tag}-{i:02}")).collect();
    for n in &namespaces {
        create_ns(
            &env,
            n,
            &BTreeMap::from([(sel_key.as_str(), "yes"), ("tenant", tag.as_str())]),
        )
        .await;
    }
    let op = env.operator_cluster_wide(&[]).await;
    let name = format!("registry-{tag}");
    let started = std::time::Instant::now();
    apply_cluster::<ClusterSecretRef>(
        &env,
        &name,
        csref_obj(
            &name,
            &store,
            json!({"matchLabels": {sel_key.as_str(): "yes"}}),
        ),
    )
    .await;
    for n in &namespaces {
        let s = eventually(WAIT, &format!("Secret in {n}"), || async {
            secret_in(&env, n, &name)
                .await
                .filter(|s| decoded(s).get("token").map(String::as_str) == Some("dockercfg-v1"))
        })
        .await;
        assert_eq!(decoded(&s).len(), 1);
        let sref = sref_in(&env, n, &name).await.expect("generated SecretRef");
        assert_eq!(
            sref.metadata.labels.as_ref().unwrap()["secretsync.io/cluster-secretref"],
            name
        );
        let owner = &sref.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("ClusterSecretRef", name.as_str())
        );
    }
    let synced_after = started.elapsed();
    let st = eventually(WAIT, "status counts 50/50", || async {
        let st = csref_status(&env, &name).await;
        (st["selectedNamespaces"] == 50 && st["readyNamespaces"] == 50).then_some(st)
    })
    .await;
    assert_eq!(st["failedNamespaces"], 0);
    let ready = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("True"), Some("Synced"))
    );
    let reads = kv.reads("registry");
    eprintln!(
        "fan-out: 50 namespaces synced in {synced_after:?}; provider reads of the shared key: {reads} (requests in all: {})",
        kv.requests.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert_eq!(
        reads, 1,
        "one provider read per key per refresh cycle, got {reads} for 50 SecretRefs"
    );

    // Steady state: no rewrites of the generated SecretRefs (their resourceVersions hold).
    let versions = |env: &Env| {
        let (env, name, namespaces) = (env.client.clone(), name.clone(), namespaces.clone());
        async move {
            let mut v = Vec::new();
            for n in namespaces.iter().take(10) {
                let s = Api::<SecretRef>::namespaced(env.clone(), n)
                    .get(&name)
                    .await
                    .expect("generated SecretRef");
                v.push(s.metadata.resource_version);
            }
            v
        }
    };
    let before = versions(&env).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        before,
        versions(&env).await,
        "generated SecretRefs rewritten in steady state"
    );

    // A template change reaches every generated SecretRef.
    let mut changed = csref_obj(
        &name,
        &store,
        json!({"matchLabels": {sel_key.as_str(): "yes"}}),
    );
    changed["spec"]["template"]["refreshInterval"] = json!("2h");
    apply_cluster::<ClusterSecretRef>(&env, &name, changed).await;
    for n in &namespaces {
        eventually(WAIT, &format!("template change in {n}"), || async {
            sref_in(&env, n, &name)
                .await
                .filter(|s| s.spec.refresh_interval.as_deref() == Some("2h"))
                .map(|_| ())
        })
        .await;
    }

    // Stops matching: the SecretRef goes (deletionPolicy Retain: the Secret stays).
    let moved = &namespaces[7];
    label_ns(&env, moved, &sel_key, None).await;
    eventually(
        WAIT,
        "SecretRef removed when the namespace stops matching",
        || async { sref_in(&env, moved, &name).await.is_none().then_some(()) },
    )
    .await;
    eventually(WAIT, "status counts 49", || async {
        (csref_status(&env, &name).await["selectedNamespaces"] == 49).then_some(())
    })
    .await;
    // Matches again: recreated.
    label_ns(&env, moved, &sel_key, Some("yes")).await;
    eventually(
        WAIT,
        "SecretRef recreated when the namespace matches again",
        || async { sref_in(&env, moved, &name).await.map(|_| ()) },
    )
    .await;
    // A namespace created later is picked up.
    let late = format!("fan-{tag}-late");
    create_ns(
        &env,
        &late,
        &BTreeMap::from([(sel_key.as_str(), "yes"), ("tenant", tag.as_str())]),
    )
    .await;
    eventually(WAIT, "Secret in a namespace created later", || async {
        secret_in(&env, &late, &name).await.map(|_| ())
    })
    .await;

    // Deleting the ClusterSecretRef removes the generated SecretRefs.
    Api::<ClusterSecretRef>::all(env.client.clone())
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete ClusterSecretRef");
    for n in namespaces.iter().take(5) {
        eventually(WAIT, &format!("SecretRef in {n} removed"), || async {
            sref_in(&env, n, &name).await.is_none().then_some(())
        })
        .await;
    }
    drop(op);
    let _ = Api::<ClusterSecretStore>::all(env.client.clone())
        .delete(&store, &DeleteParams::default())
        .await;
    for n in namespaces.iter().chain([&late]) {
        let _ = Api::<Namespace>::all(env.client.clone())
            .delete(n, &DeleteParams::default())
            .await;
    }
    env.cleanup().await;
}

/// A namespace the ClusterSecretStore's conditions do not admit never gets a SecretRef or Secret and
/// is listed in `failed`; a foreign SecretRef of the same name is never overwritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_and_foreign_namespaces_fail_without_writes() {
    let env = Env::start_exclusive("fanx").await;
    let tag = env.ns.trim_start_matches("ss-fanx-").to_string();
    let kv = VaultKv::start().await;
    kv.put("registry", "dockercfg-v1");
    let store = format!("fanx-{tag}");
    vault_cluster_store(&env, &store, &kv, &tag).await;
    let sel_key = format!("fanx-{tag}");
    let (ok, excluded, foreign) = (
        format!("fanx-{tag}-ok"),
        format!("fanx-{tag}-excluded"),
        format!("fanx-{tag}-foreign"),
    );
    for (n, admitted) in [(&ok, true), (&excluded, false), (&foreign, true)] {
        let mut labels = BTreeMap::from([(sel_key.as_str(), "yes")]);
        if admitted {
            labels.insert("tenant", tag.as_str());
        }
        create_ns(&env, n, &labels).await;
    }
    let name = format!("shared-{tag}");
    // Someone else's SecretRef of the same name, over the same store (admitted namespace).
    let foreign_spec = json!({"storeRef": {"name": store, "kind": "ClusterSecretStore"},
        "target": {"name": "someone-elses"},
        "data": [{"secretKey": "mine", "remoteRef": {"key": "registry", "property": "v"}}]});
    Api::<SecretRef>::namespaced(env.client.clone(), &foreign)
        .patch(
            &name,
            &PatchParams::apply("someone").force(),
            &Patch::Apply(
                json!({"apiVersion": "secretsync.io/v1alpha1", "kind": "SecretRef",
                "metadata": {"name": name}, "spec": foreign_spec}),
            ),
        )
        .await
        .expect("foreign SecretRef");
    // With leader election: the fan-out writes once this (only) replica holds the lease.
    let _op = env.operator_cluster_wide(&["--leader-elect"]).await;
    apply_cluster::<ClusterSecretRef>(
        &env,
        &name,
        csref_obj(
            &name,
            &store,
            json!({"matchLabels": {sel_key.as_str(): "yes"}}),
        ),
    )
    .await;
    eventually(WAIT, "Secret in the admitted namespace", || async {
        secret_in(&env, &ok, &name).await.map(|_| ())
    })
    .await;
    let st = eventually(WAIT, "status: 3 selected, 1 ready, 2 failed", || async {
        let st = csref_status(&env, &name).await;
        (st["selectedNamespaces"] == 3 && st["readyNamespaces"] == 1 && st["failedNamespaces"] == 2)
            .then_some(st)
    })
    .await;
    let failed: BTreeMap<String, String> = st["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["namespace"].as_str().unwrap().to_string(),
                f["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        failed.get(&excluded).map(String::as_str),
        Some("NamespaceNotAllowed")
    );
    assert_eq!(
        failed.get(&foreign).map(String::as_str),
        Some("TargetConflict")
    );
    let ready = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["status"], "False");
    // A few more resyncs' time: still nothing in the excluded namespace, the foreign one untouched.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(sref_in(&env, &excluded, &name).await.is_none());
    assert!(secret_in(&env, &excluded, &name).await.is_none());
    let f = sref_in(&env, &foreign, &name)
        .await
        .expect("foreign SecretRef");
    assert!(
        f.metadata
            .labels
            .as_ref()
            .is_none_or(|l| !l.contains_key("secretsync.io/cluster-secretref"))
    );
    assert!(
        f.metadata
            .owner_references
            .as_ref()
            .is_none_or(|o| o.is_empty())
    );
    assert_eq!(
        f.spec.target.as_ref().unwrap().name.as_deref(),
        Some("someone-elses")
    );
    assert_eq!(f.spec.data[0].secret_key, "mine");
    assert!(secret_in(&env, &foreign, &name).await.is_none());

    // Deleted and created again under the same name: the new one owns the SecretRef (the old one's
    // goes, by the garbage collector or the fan-out), and the foreign one is still untouched.
    let csrefs = Api::<ClusterSecretRef>::all(env.client.clone());
    csrefs
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete ClusterSecretRef");
    apply_cluster::<ClusterSecretRef>(
        &env,
        &name,
        csref_obj(
            &name,
            &store,
            json!({"matchLabels": {sel_key.as_str(): "yes"}}),
        ),
    )
    .await;
    let uid = csrefs.get(&name).await.expect("recreated").metadata.uid;
    eventually(
        WAIT,
        "the recreated ClusterSecretRef owns the SecretRef",
        || async {
            sref_in(&env, &ok, &name).await.filter(|s| {
                s.metadata
                    .owner_references
                    .as_ref()
                    .is_some_and(|o| o.iter().any(|o| Some(&o.uid) == uid.as_ref()))
            })
        },
    )
    .await;
    let f = sref_in(&env, &foreign, &name)
        .await
        .expect("foreign SecretRef");
    assert!(
        f.metadata
            .owner_references
            .as_ref()
            .is_none_or(|o| o.is_empty())
    );

    let _ = csrefs.delete(&name, &DeleteParams::default()).await;
    let _ = Api::<ClusterSecretStore>::all(env.client.clone())
        .delete(&store, &DeleteParams::default())
        .await;
    for n in [&ok, &excluded, &foreign] {
        let _ = Api::<Namespace>::all(env.client.clone())
            .delete(n, &DeleteParams::default())
            .await;
    }
    env.cleanup().await;
}
