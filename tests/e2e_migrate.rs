//! End-to-end switch-over from External Secrets Operator (issue 22): a Secret as ESO writes it
//! (controller ownerReference to an ExternalSecret, ESO's managed label and data-hash annotation),
//! a Deployment using it, then the SecretRef `secretsync convert --adopt` writes for that
//! ExternalSecret. The Secret is watched throughout: at every event it exists and holds its data;
//! the adoption replaces ESO's marks with secretsync's in the same write, without a `Rotated`
//! event or a workload restart (the data did not change); a SecretRef without the opt-in stays
//! refused on the same Secret, before and after.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Env, decoded, eventually};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use secretsync::api::SecretRef;
use secretsync::cli::convert::convert_documents;
use secretsync::cli::manifests;
use secretsync::convert::Options;
use serde_json::json;

/// A minimal ExternalSecret CRD: enough for an object to exist and own the Secret.
async fn install_external_secret_crd(env: &Env) -> ApiResource {
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "externalsecrets.external-secrets.io"},
        "spec": {
            "group": "external-secrets.io",
            "scope": "Namespaced",
            "names": {"plural": "externalsecrets", "singular": "externalsecret", "kind": "ExternalSecret", "listKind": "ExternalSecretList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    });
    crds.patch(
        "externalsecrets.external-secrets.io",
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply ExternalSecret CRD");
    let gvk = GroupVersionKind::gvk("external-secrets.io", "v1", "ExternalSecret");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "externalsecrets");
    let api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), &env.ns, &ar);
    eventually(Duration::from_secs(30), "ExternalSecret CRD served", || {
        let api = api.clone();
        async move { api.list(&Default::default()).await.ok().map(|_| ()) }
    })
    .await;
    ar
}

/// The ExternalSecret the user had, as ESO's docs write one.
fn external_secret(ns: &str) -> String {
    format!(
        r#"apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: db
  namespace: {ns}
spec:
  refreshInterval: 1h
  secretStoreRef:
    name: source
    kind: SecretStore
  target:
    name: db
    creationPolicy: Owner
  data:
  - secretKey: pw
    remoteRef:
      key: /db
      property: password
  - secretKey: user
    remoteRef:
      key: /db
      property: username
"#
    )
}

fn restart_annotations(d: &Deployment) -> Option<std::collections::BTreeMap<String, String>> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_an_eso_secret_without_a_gap_or_a_restart() {
    let env = Env::start("migrate").await;
    let ar = install_external_secret_crd(&env).await;
    let es_api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), &env.ns, &ar);
    let mut es = DynamicObject::new("db", &ar).within(&env.ns);
    es.data = json!({"spec": {"secretStoreRef": {"name": "source"}}});
    let es = es_api
        .create(&PostParams::default(), &es)
        .await
        .expect("create ExternalSecret");
    let es_uid = es.uid().expect("uid");

    // The Secret as ESO wrote it.
    env.create::<Secret>(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {
            "name": "db",
            "labels": {"reconcile.external-secrets.io/managed": "true", "app": "payments"},
            "annotations": {"reconcile.external-secrets.io/data-hash": "0123abcd"},
            "ownerReferences": [{"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                                  "name": "db", "uid": es_uid, "controller": true, "blockOwnerDeletion": true}]
        },
        "type": "Opaque",
        "stringData": {"pw": "s3cret-pw", "user": "app"}
    }))
    .await;
    let deps: Api<Deployment> = env.api();
    deps.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"},
           "spec": {"selector": {"matchLabels": {"app": "api"}},
                    "template": {"metadata": {"labels": {"app": "api"}},
                                 "spec": {"containers": [{"name": "c", "image": "busybox",
                                     "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}]}]}}}}))
        .expect("deployment"),
    )
    .await
    .expect("create deployment");
    let before = restart_annotations(&deps.get("api").await.expect("get deployment"));

    // Watch the Secret from now on: every event must show it present with both keys non-empty.
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();
    let events_seen: Arc<Mutex<usize>> = Arc::default();
    let secrets: Api<Secret> = env.api();
    let watch = {
        let violations = violations.clone();
        let events_seen = events_seen.clone();
        let stream = watcher(
            secrets.clone(),
            watcher::Config::default().fields("metadata.name=db"),
        );
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                let check = |s: &Secret| {
                    let d = decoded(s);
                    if d.get("pw").is_none_or(|v| v.is_empty())
                        || d.get("user").is_none_or(|v| v.is_empty())
                    {
                        Some(format!(
                            "Secret data blanked at rv {:?}",
                            s.resource_version()
                        ))
                    } else {
                        None
                    }
                };
                let problem = match &ev {
                    Ok(watcher::Event::Apply(s)) | Ok(watcher::Event::InitApply(s)) => check(s),
                    Ok(watcher::Event::Delete(_)) => Some("Secret deleted".to_string()),
                    _ => None,
                };
                *events_seen.lock().expect("lock") += 1;
                if let Some(p) = problem {
                    violations.lock().expect("lock").push(p);
                }
            }
        })
    };

    let _op = env.operator(&[]).await;
    env.fake_store(
        "source",
        &[("/db", r#"{"password":"s3cret-pw","username":"app"}"#, "7")],
    )
    .await;

    // A SecretRef without the opt-in is refused on ESO's Secret.
    env.secretref(
        "intruder",
        json!({"storeRef": {"name": "source"}, "target": {"name": "db"},
               "data": [{"secretKey": "pw", "remoteRef": {"key": "/db", "property": "password"}}]}),
    )
    .await;
    env.wait_ready("intruder", "False", "TargetConflict").await;

    // The converted SecretRef, with the adoption opt-in.
    let docs = {
        let mut out = Vec::new();
        manifests::documents_of(
            std::path::Path::new("es.yaml"),
            &external_secret(&env.ns),
            &mut out,
        )
        .expect("parse");
        out
    };
    let report = convert_documents(
        &docs,
        &Options {
            default_namespace: env.ns.clone(),
            adopt: true,
        },
    );
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    let sref = report.objects[0].0.object.clone();
    assert_eq!(
        sref["metadata"]["annotations"]["secretsync.io/adopt-from"],
        "external-secrets.io/ExternalSecret/db"
    );
    env.apply::<SecretRef>("db", sref).await;
    env.wait_ready("db", "True", "Synced").await;

    let s = env.secret("db").await.expect("secret");
    let labels = s.labels();
    assert!(
        !labels.contains_key("reconcile.external-secrets.io/managed"),
        "{labels:?}"
    );
    assert_eq!(
        labels.get("secretsync.io/secretref").map(String::as_str),
        Some("db")
    );
    assert!(
        s.owner_references()
            .iter()
            .all(|r| r.kind != "ExternalSecret"),
        "{:?}",
        s.owner_references()
    );
    assert!(
        !s.annotations()
            .contains_key("reconcile.external-secrets.io/data-hash")
    );
    assert!(s.annotations().contains_key("secretsync.io/owner"));
    let d = decoded(&s);
    assert_eq!(d.get("pw").map(String::as_str), Some("s3cret-pw"));
    assert_eq!(d.get("user").map(String::as_str), Some("app"));
    // ESO's Secret carried the ExternalSecret's own labels; the keys we do not manage stay.
    assert_eq!(labels.get("app").map(String::as_str), Some("payments"));

    // Same data: no rotation, no restart (give a debounced restart time to show up).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.count_events("db", "Rotated").await, 0);
    let after = restart_annotations(&deps.get("api").await.expect("get deployment"));
    assert_eq!(before, after, "the workload was restarted");

    // The SecretRef without the opt-in is still refused, now by secretsync's ownership.
    env.wait_ready("intruder", "False", "TargetConflict").await;

    // Deleting the ExternalSecret (as the runbook does, --cascade=orphan or not) leaves the Secret:
    // it no longer names the ExternalSecret as its owner.
    es_api
        .delete("db", &Default::default())
        .await
        .expect("delete ExternalSecret");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = env
        .secret("db")
        .await
        .expect("the Secret survives the ExternalSecret");
    assert_eq!(decoded(&s).get("pw").map(String::as_str), Some("s3cret-pw"));

    watch.abort();
    assert!(
        *events_seen.lock().expect("lock") > 0,
        "the watch saw nothing"
    );
    let v = violations.lock().expect("lock").clone();
    assert!(v.is_empty(), "{v:?}");
    env.cleanup().await;
}
