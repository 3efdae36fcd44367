//! Fidelity tests: the real kube-rs client (and kubectl) against the emulator.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::authentication::v1::{
    TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config};
use serde_json::json;
use testkit::{Emulator, EmulatorOptions, FaultAction, FaultRule};

async fn start_with(opts: EmulatorOptions) -> (Emulator, Client) {
    let emu = Emulator::start(opts).await.expect("start emulator");
    let dir = std::env::temp_dir().join(format!("kube-emu-{}", uuid_like()));
    let path = dir.join("kubeconfig");
    emu.write_kubeconfig(&path, Some("default"))
        .expect("kubeconfig");
    let kc = Kubeconfig::read_from(&path).expect("read kubeconfig");
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    let client = Client::try_from(cfg).expect("client");
    let _ = std::fs::remove_dir_all(dir);
    (emu, client)
}

/// A client with kube's default retry of 429/503/504 switched off, to observe faults directly.
async fn no_retry_client(emu: &Emulator) -> Client {
    let kc = Kubeconfig::from_yaml(&emu.kubeconfig_yaml(Some("default"))).expect("kubeconfig");
    let mut cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    cfg.default_retry = false;
    Client::try_from(cfg).expect("client")
}

async fn start() -> (Emulator, Client) {
    start_with(EmulatorOptions::default()).await
}

fn uuid_like() -> String {
    format!("{}-{}", std::process::id(), rand::random::<u64>())
}

fn secret(name: &str, labels: &[(&str, &str)], data: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        string_data: Some([("k".to_string(), data.to_string())].into()),
        ..Default::default()
    }
}

fn cm(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some([("a".to_string(), "1".to_string())].into()),
        ..Default::default()
    }
}

fn rv<K: kube::Resource>(o: &K) -> u64 {
    o.meta()
        .resource_version
        .as_deref()
        .unwrap_or("0")
        .parse()
        .expect("numeric rv")
}

fn code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected API error, got {other:?}"),
    }
}

#[tokio::test]
async fn resource_versions_are_global_and_ordered() {
    let (emu, client) = start().await;
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let leases: Api<Lease> = Api::default_namespaced(client.clone());
    let pp = PostParams::default();
    let a = secrets.create(&pp, &secret("a", &[], "x")).await.unwrap();
    let b = cms.create(&pp, &cm("b")).await.unwrap();
    let c = leases
        .create(
            &pp,
            &Lease {
                metadata: ObjectMeta {
                    name: Some("c".into()),
                    ..Default::default()
                },
                spec: None,
            },
        )
        .await
        .unwrap();
    assert!(rv(&a) < rv(&b) && rv(&b) < rv(&c));
    assert!(a.metadata.uid.is_some() && a.metadata.creation_timestamp.is_some());
    // stringData folded into data
    let got = secrets.get("a").await.unwrap();
    assert_eq!(got.data.unwrap()["k"].0, b"x");
    assert!(got.string_data.is_none());
    // lists carry the current global rv
    let l = secrets.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        l.metadata.resource_version.as_deref(),
        Some(rv(&c).to_string().as_str())
    );
    // missing namespace -> 404
    let missing: Api<Secret> = Api::namespaced(client.clone(), "nope");
    assert_eq!(
        code(
            &missing
                .create(&pp, &secret("z", &[], "x"))
                .await
                .unwrap_err()
        ),
        404
    );
    // generateName
    let mut g = secret("", &[], "x");
    g.metadata.name = None;
    g.metadata.generate_name = Some("gen-".into());
    let g = secrets.create(&pp, &g).await.unwrap();
    assert!(g.metadata.name.unwrap().starts_with("gen-"));
    assert!(emu.counters().get("create", "secrets") >= 2);
}

#[tokio::test]
async fn create_conflict_and_stale_update() {
    let (_emu, client) = start().await;
    let secrets: Api<Secret> = Api::default_namespaced(client);
    let pp = PostParams::default();
    let s = secrets.create(&pp, &secret("dup", &[], "1")).await.unwrap();
    let err = secrets
        .create(&pp, &secret("dup", &[], "1"))
        .await
        .unwrap_err();
    assert_eq!(code(&err), 409);
    if let kube::Error::Api(st) = &err {
        assert_eq!(st.reason, "AlreadyExists");
    }
    let mut fresh = s.clone();
    fresh.string_data = Some([("k".to_string(), "2".to_string())].into());
    let updated = secrets.replace("dup", &pp, &fresh).await.unwrap();
    assert!(rv(&updated) > rv(&s));
    // s still carries the old resourceVersion
    let err = secrets.replace("dup", &pp, &s).await.unwrap_err();
    assert_eq!(code(&err), 409);
    if let kube::Error::Api(st) = &err {
        assert_eq!(st.reason, "Conflict");
    }
    let mut missing = s.clone();
    missing.metadata.name = Some("missing".into());
    missing.metadata.resource_version = None;
    assert_eq!(
        code(&secrets.replace("missing", &pp, &missing).await.unwrap_err()),
        404
    );
    // no-op update does not bump the resourceVersion
    let same = secrets.replace("dup", &pp, &updated).await.unwrap();
    assert_eq!(rv(&same), rv(&updated));
}

#[tokio::test]
async fn server_side_apply() {
    let (_emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let apply = |data: serde_json::Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa", "labels": {"x": "y"}}, "data": data});
    let a = PatchParams::apply("mgr-a").force();
    let o = cms
        .patch(
            "ssa",
            &a,
            &Patch::Apply(apply(json!({"one": "1", "two": "2"}))),
        )
        .await
        .unwrap();
    assert_eq!(o.data.as_ref().unwrap().len(), 2);
    let mf = o.metadata.managed_fields.as_ref().unwrap();
    assert_eq!(mf[0].manager.as_deref(), Some("mgr-a"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));
    let fields = serde_json::to_value(mf[0].fields_v1.as_ref().unwrap()).unwrap();
    assert!(fields["f:data"]["f:one"].is_object(), "{fields}");
    // dropping a field removes it
    let o = cms
        .patch("ssa", &a, &Patch::Apply(apply(json!({"one": "1"}))))
        .await
        .unwrap();
    assert_eq!(
        o.data.unwrap(),
        BTreeMap::from([("one".to_string(), "1".to_string())])
    );
    // another manager, conflicting value, no force -> 409 with causes
    let b = PatchParams::apply("mgr-b");
    let err = cms
        .patch("ssa", &b, &Patch::Apply(apply(json!({"one": "changed"}))))
        .await
        .unwrap_err();
    match &err {
        kube::Error::Api(st) => {
            assert_eq!(st.code, 409);
            assert!(st.message.contains("mgr-a"), "{}", st.message);
            let causes = &st.details.as_ref().unwrap().causes;
            assert_eq!(causes[0].field, ".data.one");
        }
        e => panic!("{e:?}"),
    }
    // with force mgr-b wins
    let o = cms
        .patch(
            "ssa",
            &b.force(),
            &Patch::Apply(apply(json!({"one": "changed"}))),
        )
        .await
        .unwrap();
    assert_eq!(o.data.as_ref().unwrap()["one"], "changed");
    // mgr-a re-applies without "one": it no longer owns it, so it stays
    let o = cms
        .patch("ssa", &a, &Patch::Apply(apply(json!({"three": "3"}))))
        .await
        .unwrap();
    assert_eq!(o.data.as_ref().unwrap()["one"], "changed");
    assert_eq!(o.data.as_ref().unwrap()["three"], "3");
    // a merge patch records an Update entry
    let o = cms
        .patch(
            "ssa",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"four": "4"}})),
        )
        .await
        .unwrap();
    let mf = o.metadata.managed_fields.unwrap();
    assert!(
        mf.iter().any(|e| e.operation.as_deref() == Some("Update")),
        "{mf:?}"
    );
}

#[tokio::test]
async fn merge_and_json_patch() {
    let (_emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    cms.create(&PostParams::default(), &cm("p")).await.unwrap();
    let o = cms
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": null, "b": "2"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        o.data.unwrap(),
        BTreeMap::from([("b".to_string(), "2".to_string())])
    );
    let jp: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/b", "value": "2"},
        {"op": "add", "path": "/data/c", "value": "3"}
    ]))
    .unwrap();
    let o = cms
        .patch("p", &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .unwrap();
    assert_eq!(o.data.unwrap()["c"], "3");
    let bad: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/data/b", "value": "nope"}]))
            .unwrap();
    assert_eq!(
        code(
            &cms.patch("p", &PatchParams::default(), &Patch::<()>::Json(bad))
                .await
                .unwrap_err()
        ),
        422
    );
    let o = cms
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"labels": {"l": "v"}}})),
        )
        .await
        .unwrap();
    assert_eq!(o.metadata.labels.unwrap()["l"], "v");
}

const CRD_YAML: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget, shortNames: [gd], categories: [all]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: not-a-crd}
"#;

#[tokio::test]
async fn crd_status_subresource() {
    let (emu, client) = start().await;
    let dir = std::env::temp_dir().join(format!("crds-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("gadgets.yaml"), CRD_YAML).unwrap();
    assert_eq!(emu.load_crds_from_dir(&dir).unwrap(), 1);
    let _ = std::fs::remove_dir_all(&dir);

    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let crd = crds.get("gadgets.example.com").await.unwrap();
    let conds = crd.status.unwrap().conditions.unwrap();
    assert!(
        conds
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );

    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Gadget"),
        "gadgets",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let mut obj =
        DynamicObject::new("g1", &ar).data(json!({"spec": {"size": 1}, "status": {"ready": true}}));
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert!(
        created.data.get("status").is_none(),
        "status dropped on create"
    );
    assert_eq!(created.metadata.generation, Some(1));

    // status through the subresource: status changes, generation does not
    let s = api
        .patch_status(
            "g1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": true}, "spec": {"size": 99}})),
        )
        .await
        .unwrap();
    assert_eq!(s.data["status"]["ready"], true);
    assert_eq!(s.data["spec"]["size"], 1);
    assert_eq!(s.metadata.generation, Some(1));

    // main resource ignores status changes; spec change bumps generation
    obj = s.clone();
    obj.data["status"] = json!({"ready": false});
    obj.data["spec"] = json!({"size": 2});
    let u = api
        .replace("g1", &PostParams::default(), &obj)
        .await
        .unwrap();
    assert_eq!(u.data["status"]["ready"], true);
    assert_eq!(u.data["spec"]["size"], 2);
    assert_eq!(u.metadata.generation, Some(2));

    // SSA on status only touches status
    let st = api
        .patch_status(
            "g1",
            &PatchParams::apply("ctrl").force(),
            &Patch::Apply(json!({"apiVersion": "example.com/v1", "kind": "Gadget", "status": {"phase": "Done"}})),
        )
        .await
        .unwrap();
    assert_eq!(st.data["status"]["phase"], "Done");
    assert_eq!(st.metadata.generation, Some(2));

    // a Conflict rule on the status subresource faults status writes only, naming the resource
    emu.faults().add(
        FaultRule::new(FaultAction::Conflict)
            .resource("gadgets/status")
            .times(2),
    );
    let kube::Error::Api(e) = api
        .patch_status(
            "g1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Lost"}})),
        )
        .await
        .unwrap_err()
    else {
        panic!("expected an API error")
    };
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(
        e.message
            .starts_with("Operation cannot be fulfilled on gadgets.example.com \"g1\": "),
        "{}",
        e.message
    );
    api.patch(
        "g1",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": 3}})),
    )
    .await
    .unwrap();
    assert_eq!(
        api.get_status("g1").await.unwrap().data["status"]["phase"],
        "Done"
    );
    assert_eq!(
        emu.faults().rules()[0].1.count,
        Some(1),
        "reads and main-resource writes spared"
    );
    emu.faults().clear();

    // deleting the CRD stops serving the resource
    crds.delete("gadgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(code(&api.get("g1").await.unwrap_err()), 404);
}

#[tokio::test]
async fn finalizers_delay_deletion() {
    let (_emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let mut c = cm("fin");
    c.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    let created = cms.create(&PostParams::default(), &c).await.unwrap();
    let mut events = cms
        .watch(
            &WatchParams::default().fields("metadata.name=fin"),
            &created.metadata.resource_version.clone().unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    let r = cms.delete("fin", &DeleteParams::default()).await.unwrap();
    assert!(r.is_left(), "deletion pending");
    let still = cms.get("fin").await.unwrap();
    assert!(still.metadata.deletion_timestamp.is_some());
    let jp: json_patch::Patch =
        serde_json::from_value(json!([{"op": "remove", "path": "/metadata/finalizers"}])).unwrap();
    cms.patch("fin", &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .unwrap();
    assert_eq!(code(&cms.get("fin").await.unwrap_err()), 404);
    let mut seen = vec![];
    while seen.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(5), events.try_next())
            .await
            .unwrap()
            .unwrap()
        {
            Some(WatchEvent::Modified(o)) => {
                seen.push(("MODIFIED", o.metadata.deletion_timestamp.is_some()))
            }
            Some(WatchEvent::Deleted(_)) => seen.push(("DELETED", true)),
            Some(WatchEvent::Bookmark(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, vec![("MODIFIED", true), ("DELETED", true)]);
}

#[tokio::test]
async fn owner_reference_gc() {
    let (_emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let secrets: Api<Secret> = Api::default_namespaced(client);
    let pp = PostParams::default();
    for (owner_name, dep_name) in [("owner", "dep"), ("owner2", "dep2")] {
        let owner = cms.create(&pp, &cm(owner_name)).await.unwrap();
        let mut s = secret(dep_name, &[], "x");
        s.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: owner_name.into(),
            uid: owner.metadata.uid.clone().unwrap(),
            controller: Some(true),
            ..Default::default()
        }]);
        secrets.create(&pp, &s).await.unwrap();
    }
    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    assert_eq!(code(&secrets.get("dep").await.unwrap_err()), 404);
    cms.delete("owner2", &DeleteParams::orphan()).await.unwrap();
    let orphan = secrets.get("dep2").await.unwrap();
    assert!(
        orphan
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test]
async fn raw_watch_order_and_selector_transitions() {
    let (_emu, client) = start().await;
    let secrets: Api<Secret> = Api::default_namespaced(client);
    let pp = PostParams::default();
    let base = secrets
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut w = secrets
        .watch(&WatchParams::default().labels("app=w"), &base)
        .await
        .unwrap()
        .boxed();
    secrets
        .create(&pp, &secret("w1", &[("app", "w")], "1"))
        .await
        .unwrap();
    secrets
        .create(&pp, &secret("other", &[("app", "x")], "1"))
        .await
        .unwrap();
    secrets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "Mg=="}})),
        )
        .await
        .unwrap();
    secrets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "gone"}}})),
        )
        .await
        .unwrap();
    secrets
        .patch(
            "other",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "w"}}})),
        )
        .await
        .unwrap();
    secrets
        .delete("other", &DeleteParams::default())
        .await
        .unwrap();
    let mut got = vec![];
    let mut last_rv = 0;
    while got.len() < 5 {
        let ev = tokio::time::timeout(Duration::from_secs(5), w.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let (t, o) = match ev {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => panic!("{e:?}"),
        };
        assert!(rv(&o) > last_rv, "events in rv order");
        last_rv = rv(&o);
        got.push((t, o.metadata.name.unwrap()));
    }
    let names: Vec<(&str, &str)> = got.iter().map(|(t, n)| (*t, n.as_str())).collect();
    assert_eq!(
        names,
        vec![
            ("ADDED", "w1"),
            ("MODIFIED", "w1"),
            ("DELETED", "w1"),
            ("ADDED", "other"),
            ("DELETED", "other")
        ]
    );
}

async fn converge(
    state: &std::sync::Arc<std::sync::Mutex<BTreeMap<String, String>>>,
    want: &BTreeMap<String, String>,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if *state.lock().unwrap() == *want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "did not converge: {:?} vs {want:?}",
            state.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn watcher_survives_cuts_and_expiry() {
    let (emu, client) = start_with(EmulatorOptions {
        bookmark_interval: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let pp = PostParams::default();
    secrets
        .create(&pp, &secret("pre", &[("app", "r")], "0"))
        .await
        .unwrap();
    let state = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::<String, String>::new()));
    let st = state.clone();
    let stream =
        watcher(secrets.clone(), watcher::Config::default().labels("app=r")).default_backoff();
    let task = tokio::spawn(async move {
        let mut buf = BTreeMap::new();
        let mut stream = stream.boxed();
        while let Some(ev) = stream.next().await {
            let Ok(ev) = ev else { continue };
            let key = |s: &Secret| s.metadata.name.clone().unwrap();
            let val = |s: &Secret| s.metadata.resource_version.clone().unwrap();
            match ev {
                watcher::Event::Init => buf.clear(),
                watcher::Event::InitApply(s) => {
                    buf.insert(key(&s), val(&s));
                }
                watcher::Event::InitDone => *st.lock().unwrap() = std::mem::take(&mut buf),
                watcher::Event::Apply(s) => {
                    st.lock().unwrap().insert(key(&s), val(&s));
                }
                watcher::Event::Delete(s) => {
                    st.lock().unwrap().remove(&key(&s));
                }
            }
        }
    });
    let expected = |list: &[Secret]| -> BTreeMap<String, String> {
        list.iter()
            .map(|s| {
                (
                    s.metadata.name.clone().unwrap(),
                    s.metadata.resource_version.clone().unwrap(),
                )
            })
            .collect()
    };
    let lp = ListParams::default().labels("app=r");
    converge(&state, &expected(&secrets.list(&lp).await.unwrap().items)).await;

    for i in 0..20 {
        secrets
            .create(&pp, &secret(&format!("s{i}"), &[("app", "r")], "1"))
            .await
            .unwrap();
    }
    emu.faults().cut_watches();
    for i in 0..10 {
        secrets
            .delete(&format!("s{i}"), &DeleteParams::default())
            .await
            .unwrap();
    }
    converge(&state, &expected(&secrets.list(&lp).await.unwrap().items)).await;

    // forced 410 on the next watch: the watcher relists
    let lists_before = emu.counters().get("list", "secrets");
    emu.faults().expire_next_watches(1);
    emu.faults().cut_watches();
    for i in 10..15 {
        secrets
            .patch(
                &format!("s{i}"),
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"k": "Mw=="}})),
            )
            .await
            .unwrap();
    }
    secrets
        .create(&pp, &secret("late", &[("app", "r")], "1"))
        .await
        .unwrap();
    converge(&state, &expected(&secrets.list(&lp).await.unwrap().items)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while emu.counters().get("list", "secrets") <= lists_before + 1 {
        assert!(
            Instant::now() < deadline,
            "watcher did not relist after 410"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
}

#[tokio::test]
async fn watch_history_expiry_gives_410() {
    let (_emu, client) = start_with(EmulatorOptions {
        watch_history: 5,
        ..Default::default()
    })
    .await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let first = cms.create(&PostParams::default(), &cm("h0")).await.unwrap();
    for i in 1..10 {
        cms.create(&PostParams::default(), &cm(&format!("h{i}")))
            .await
            .unwrap();
    }
    let mut w = cms
        .watch(
            &WatchParams::default(),
            first.metadata.resource_version.as_deref().unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap()
    {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!(e.code, 410),
        Some(Err(kube::Error::Api(e))) => assert_eq!(e.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test]
async fn metadata_only_requests() {
    let (_emu, client) = start().await;
    let secrets: Api<Secret> = Api::default_namespaced(client);
    secrets
        .create(
            &PostParams::default(),
            &secret("m1", &[("app", "m")], "secret!"),
        )
        .await
        .unwrap();
    let list = secrets.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(
        list.items[0].types.as_ref().unwrap().kind,
        "PartialObjectMetadata"
    );
    let one = secrets.get_metadata("m1").await.unwrap();
    assert_eq!(one.metadata.labels.unwrap()["app"], "m");
    // kube 5: Api<PartialObjectMeta<K>> uses metadata-only requests (what metadata_watcher did)
    let meta_api: Api<kube::core::PartialObjectMeta<Secret>> =
        Api::default_namespaced(secrets.clone().into_client());
    let mut stream = watcher(meta_api, watcher::Config::default()).boxed();
    let mut names = vec![];
    let deadline = Instant::now() + Duration::from_secs(10);
    secrets
        .create(&PostParams::default(), &secret("m2", &[], "x"))
        .await
        .unwrap();
    while names.len() < 2 {
        assert!(Instant::now() < deadline);
        match tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap()
        {
            Some(Ok(watcher::Event::InitApply(o) | watcher::Event::Apply(o))) => {
                assert_eq!(o.types.as_ref().unwrap().kind, "PartialObjectMetadata");
                names.push(o.metadata.name.unwrap());
            }
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    names.sort();
    assert_eq!(names, vec!["m1", "m2"]);
}

#[tokio::test]
async fn list_paging() {
    let (_emu, client) = start().await;
    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &Namespace {
            metadata: ObjectMeta {
                name: Some("paging".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "paging");
    let futs = (0..1200).map(|i| {
        let cms = cms.clone();
        async move {
            cms.create(&PostParams::default(), &cm(&format!("c{i:04}")))
                .await
                .map(|_| ())
        }
    });
    futures::stream::iter(futs)
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let mut seen = vec![];
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut lp = ListParams::default().limit(500);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = cms.list(&lp).await.unwrap();
        pages += 1;
        seen.extend(page.items.into_iter().map(|c| c.metadata.name.unwrap()));
        token = page.metadata.continue_.filter(|c| !c.is_empty());
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 1200);
    let mut sorted = seen.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), 1200);
    // all-namespaces list includes them too
    let all: Api<ConfigMap> = Api::all(client);
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        1200
    );
}

#[tokio::test]
async fn token_request_and_review() {
    let (_emu, client) = start().await;
    let sas: Api<ServiceAccount> = Api::default_namespaced(client.clone());
    sas.create(
        &PostParams::default(),
        &ServiceAccount {
            metadata: ObjectMeta {
                name: Some("bot".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let tr = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec!["vault".into()],
            expiration_seconds: Some(600),
            ..Default::default()
        },
        ..Default::default()
    };
    let resp = sas
        .create_token_request("bot", &PostParams::default(), &tr)
        .await
        .unwrap();
    let token = resp.status.unwrap().token;
    assert_eq!(token.split('.').count(), 3);
    let reviews: Api<TokenReview> = Api::all(client.clone());
    let review = |tok: &str, aud: Vec<String>| TokenReview {
        spec: TokenReviewSpec {
            token: Some(tok.into()),
            audiences: Some(aud),
        },
        ..Default::default()
    };
    let r = reviews
        .create(
            &PostParams::default(),
            &review(&token, vec!["vault".into()]),
        )
        .await
        .unwrap();
    let st = r.status.unwrap();
    assert_eq!(st.authenticated, Some(true));
    assert_eq!(
        st.user.unwrap().username.as_deref(),
        Some("system:serviceaccount:default:bot")
    );
    let r = reviews
        .create(
            &PostParams::default(),
            &review(&token, vec!["other".into()]),
        )
        .await
        .unwrap();
    assert_eq!(r.status.unwrap().authenticated, Some(false));
    let r = reviews
        .create(&PostParams::default(), &review("garbage", vec![]))
        .await
        .unwrap();
    assert_eq!(r.status.unwrap().authenticated, Some(false));
    assert_eq!(
        code(
            &sas.create_token_request("nobody", &PostParams::default(), &tr)
                .await
                .unwrap_err()
        ),
        404
    );
}

#[tokio::test]
async fn lease_update_conflict() {
    let (_emu, client) = start().await;
    let leases: Api<Lease> = Api::default_namespaced(client);
    let l = Lease {
        metadata: ObjectMeta {
            name: Some("leader".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }),
    };
    let created = leases.create(&PostParams::default(), &l).await.unwrap();
    assert_eq!(
        code(&leases.create(&PostParams::default(), &l).await.unwrap_err()),
        409
    );
    let mut a = created.clone();
    a.spec.as_mut().unwrap().holder_identity = Some("b".into());
    leases
        .replace("leader", &PostParams::default(), &a)
        .await
        .unwrap();
    let mut c = created;
    c.spec.as_mut().unwrap().holder_identity = Some("c".into());
    assert_eq!(
        code(
            &leases
                .replace("leader", &PostParams::default(), &c)
                .await
                .unwrap_err()
        ),
        409
    );
    assert_eq!(
        leases
            .get("leader")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("b")
    );
}

#[tokio::test]
async fn faults_429_then_success_and_outage() {
    let (emu, client) = start().await;
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    secrets
        .create(&PostParams::default(), &secret("f", &[], "x"))
        .await
        .unwrap();
    let too_many = || {
        FaultRule::new(FaultAction::TooManyRequests {
            retry_after_seconds: 1,
        })
        .verb("get")
        .resource("secrets")
        .times(1)
    };

    // kube's default client retries a 429 honouring Retry-After: the caller sees success
    emu.faults().add(too_many());
    let t0 = Instant::now();
    secrets.get("f").await.unwrap();
    assert_eq!(emu.counters().get("get", "secrets"), 2);
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "Retry-After honoured"
    );

    // without client retries the 429 is visible, then the next call succeeds
    let raw: Api<Secret> = Api::default_namespaced(no_retry_client(&emu).await);
    emu.faults().add(too_many());
    let err = raw.get("f").await.unwrap_err();
    assert_eq!(code(&err), 429);
    raw.get("f").await.unwrap();

    emu.faults().add(
        FaultRule::new(FaultAction::InternalError)
            .verb("list")
            .times(1),
    );
    assert_eq!(
        code(&raw.list(&ListParams::default()).await.unwrap_err()),
        500
    );
    raw.list(&ListParams::default()).await.unwrap();

    // hyper's pooled client retries once when a reused connection closes, so drop several
    emu.faults().add(
        FaultRule::new(FaultAction::DropConnection)
            .verb("get")
            .times(10),
    );
    assert!(raw.get("f").await.is_err());
    emu.faults().clear();
    raw.get("f").await.unwrap();

    emu.faults().outage_start(testkit::OutageMode::Refuse);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(raw.get("f").await.is_err());
    emu.faults().outage_end();
    let deadline = Instant::now() + Duration::from_secs(5);
    while raw.get("f").await.is_err() {
        assert!(Instant::now() < deadline, "server did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    emu.faults().outage_start(testkit::OutageMode::Unavailable);
    assert_eq!(code(&raw.get("f").await.unwrap_err()), 503);
    emu.faults().outage_end();
    raw.get("f").await.unwrap();
}

#[tokio::test]
async fn conflict_fault_rejects_writes_and_spares_reads() {
    let (emu, client) = start().await;
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let before = secrets
        .create(&PostParams::default(), &secret("c", &[], "orig"))
        .await
        .unwrap();
    // No verb filter: a Conflict rule only ever fires on writes.
    emu.faults().add(
        FaultRule::new(FaultAction::Conflict)
            .resource("secrets")
            .namespace("default")
            .times(3),
    );
    let expect_conflict = |e: kube::Error| {
        let kube::Error::Api(st) = e else {
            panic!("expected an API error, got {e:?}")
        };
        assert_eq!(st.code, 409);
        assert_eq!(st.reason, "Conflict");
        assert!(st.is_conflict());
        assert_eq!(
            st.message,
            "Operation cannot be fulfilled on secrets \"c\": the object has been modified; please apply your changes to the latest version and try again"
        );
        let d = st.details.expect("details");
        assert_eq!(
            (d.name.as_str(), d.kind.as_str(), d.group.as_str()),
            ("c", "secrets", "")
        );
    };

    // Reads are not affected and do not use up the rule's budget.
    for _ in 0..5 {
        assert_eq!(secrets.get("c").await.unwrap().data, before.data);
    }
    secrets.list(&ListParams::default()).await.unwrap();

    // PATCH (merge) and PUT are refused and leave the stored object as it was.
    let patch = json!({"stringData": {"k": "changed"}});
    let err = secrets
        .patch("c", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_err();
    expect_conflict(err);
    let mut changed = secrets.get("c").await.unwrap();
    changed.string_data = Some([("k".to_string(), "changed".to_string())].into());
    expect_conflict(
        secrets
            .replace("c", &PostParams::default(), &changed)
            .await
            .unwrap_err(),
    );

    // The whole body, as kube-apiserver sends it (server-side apply gets the same answer).
    let req = http::Request::patch("/api/v1/namespaces/default/secrets/c?fieldManager=t&force=true")
    .header("content-type", "application/apply-patch+yaml")
    .body(kube::client::Body::from(
        br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"c"},"stringData":{"k":"changed"}}"#
            .to_vec(),
    ))
    .unwrap();
    let res = client.send(req).await.unwrap();
    assert_eq!(res.status().as_u16(), 409);
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "Operation cannot be fulfilled on secrets \"c\": the object has been modified; please apply your changes to the latest version and try again",
               "reason": "Conflict", "details": {"name": "c", "kind": "secrets"}, "code": 409})
    );

    let after = secrets.get("c").await.unwrap();
    assert_eq!(after.data, before.data);
    assert_eq!(rv(&after), rv(&before), "nothing was written");
    assert_eq!(after.data.unwrap()["k"].0, b"orig");

    // Three conflicts used up the rule; the next write goes through.
    assert!(emu.faults().rules().is_empty());
    secrets
        .patch("c", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(
        secrets.get("c").await.unwrap().data.unwrap()["k"].0,
        b"changed"
    );

    // Grouped resources are named qualified; a create can conflict too.
    emu.faults().add(
        FaultRule::new(FaultAction::Conflict)
            .resource("leases")
            .times(1),
    );
    let leases: Api<Lease> = Api::default_namespaced(client.clone());
    let l = Lease {
        metadata: ObjectMeta {
            name: Some("l".into()),
            ..Default::default()
        },
        spec: None,
    };
    let kube::Error::Api(st) = leases.create(&PostParams::default(), &l).await.unwrap_err() else {
        panic!("expected an API error")
    };
    assert_eq!((st.code, st.reason.as_str()), (409, "Conflict"));
    assert!(
        st.message
            .starts_with("Operation cannot be fulfilled on leases.coordination.k8s.io \"l\":")
    );
    assert_eq!(st.details.unwrap().group, "coordination.k8s.io");
    assert!(
        leases.get_opt("l").await.unwrap().is_none(),
        "the create did not happen"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_http_endpoints() {
    let (emu, client) = start().await;
    let http = |method: &str, path: &str, body: &str| {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-X",
                method,
                "-d",
                body,
                &format!("{}/_emulator/{path}", emu.url()),
            ])
            .output();
        out.ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
    };
    let Some(h) = http("GET", "healthz", "") else {
        eprintln!("curl not available; skipping admin_http_endpoints");
        return;
    };
    assert!(h.contains("true"));
    let _ = client;
    let secrets: Api<Secret> = Api::default_namespaced(no_retry_client(&emu).await);
    let _ = secrets.list(&ListParams::default()).await.unwrap();
    let c: serde_json::Value = serde_json::from_str(&http("GET", "counters", "").unwrap()).unwrap();
    assert_eq!(c["requests"]["list secrets"], 1);
    http("POST", "faults", r#"{"verb":"list","resource":"secrets","count":1,"action":{"type":"too_many_requests","retry_after_seconds":2}}"#).unwrap();
    assert_eq!(
        code(&secrets.list(&ListParams::default()).await.unwrap_err()),
        429
    );
    http("POST", "reset-counters", "").unwrap();
    assert_eq!(emu.counters().total, 0);
}

#[tokio::test]
async fn namespace_deletion_removes_content() {
    let (_emu, client) = start().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &Namespace {
            metadata: ObjectMeta {
                name: Some("tmp".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "tmp");
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    nss.delete("tmp", &DeleteParams::default()).await.unwrap();
    assert_eq!(code(&cms.get("a").await.unwrap_err()), 404);
    assert_eq!(code(&nss.get("tmp").await.unwrap_err()), 404);
}

// multi_thread: the test blocks on kubectl while the emulator serves on another worker
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_smoke() {
    let kubectl = std::path::Path::new("/usr/bin/kubectl");
    if !kubectl.exists() {
        eprintln!("skipping kubectl_smoke: /usr/bin/kubectl not found");
        return;
    }
    let (emu, _client) = start().await;
    let dir = std::env::temp_dir().join(format!("kubectl-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let kc = dir.join("config");
    emu.write_kubeconfig(&kc, None).unwrap();
    let manifest = dir.join("secret.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: x\n  labels: {app: smoke}\nstringData:\n  password: hunter2\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(&kc)
            .args(args)
            .env("HOME", &dir)
            .output()
            .expect("run kubectl");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    assert!(run(&["get", "ns"]).contains("default"));
    let m = manifest.to_str().unwrap();
    assert!(
        run(&["apply", "--server-side", "--validate=false", "-f", m])
            .contains("serverside-applied")
    );
    let js: serde_json::Value =
        serde_json::from_str(&run(&["get", "secret", "x", "-o", "json"])).unwrap();
    assert_eq!(js["data"]["password"], "aHVudGVyMg==");
    assert!(run(&["get", "secrets", "-l", "app=smoke"]).contains('x'));
    assert!(run(&["delete", "secret", "x"]).contains("deleted"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_10k_creates() {
    let (emu, client) = start().await;
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    // a couple of watchers, like a benchmark would have
    let mut watches = vec![];
    for _ in 0..4 {
        let s = watcher(secrets.clone(), watcher::Config::default()).default_backoff();
        watches.push(tokio::spawn(async move {
            s.boxed().for_each(|_| async {}).await
        }));
    }
    let payload = "x".repeat(700);
    let t0 = Instant::now();
    let futs = (0..10_000).map(|i| {
        let secrets = secrets.clone();
        let s = secret(&format!("t{i:05}"), &[("bench", "yes")], &payload);
        async move { secrets.create(&PostParams::default(), &s).await.map(|_| ()) }
    });
    futures::stream::iter(futs)
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let dt = t0.elapsed();
    println!(
        "10k creates in {dt:?}: {:.0} writes/s",
        10_000.0 / dt.as_secs_f64()
    );
    let t1 = Instant::now();
    let mut token: Option<String> = None;
    let mut n = 0;
    loop {
        let mut lp = ListParams::default().limit(500);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = secrets.list(&lp).await.unwrap();
        n += page.items.len();
        token = page.metadata.continue_.filter(|c| !c.is_empty());
        if token.is_none() {
            break;
        }
    }
    println!("paged LIST of {n} secrets in {:?}", t1.elapsed());
    assert_eq!(n, 10_000);
    assert!(emu.counters().writes >= 10_000);
    for w in watches {
        w.abort();
    }
}

#[tokio::test]
async fn streaming_list_watcher() {
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    for i in 0..3 {
        cms.create(&PostParams::default(), &cm(&format!("s{i}")))
            .await
            .unwrap();
    }
    let mut stream = watcher(cms.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut initial = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap()
        {
            Some(Ok(watcher::Event::InitApply(_))) => initial += 1,
            Some(Ok(watcher::Event::InitDone)) => break,
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(initial, 3);
    assert_eq!(
        emu.counters().get("list", "configmaps"),
        0,
        "no LIST in streaming mode"
    );
    cms.create(&PostParams::default(), &cm("after"))
        .await
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
    {
        Some(Ok(watcher::Event::Apply(o))) => assert_eq!(o.metadata.name.as_deref(), Some("after")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn event_recorder_publishes_and_updates_series() {
    use kube::runtime::events::{Event, EventType, Recorder};
    let (_emu, client) = start().await;
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let s = secrets
        .create(&PostParams::default(), &secret("evt", &[], "x"))
        .await
        .unwrap();
    let recorder = Recorder::new(client.clone(), "secretsync".into());
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Secret".into()),
        name: s.metadata.name.clone(),
        namespace: s.metadata.namespace.clone(),
        uid: s.metadata.uid.clone(),
        ..Default::default()
    };
    let ev = Event {
        type_: EventType::Normal,
        reason: "Synced".into(),
        note: Some("synced".into()),
        action: "Sync".into(),
        secondary: None,
    };
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap();
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::default_namespaced(client);
    let list = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].series.as_ref().map(|s| s.count), Some(2));
}
