//! End-to-end tests of the operator core: the real binary against a Kubernetes API (the emulator,
//! or the cluster in `SECRETSYNC_E2E_KUBECONFIG`).

mod common;

use std::time::Duration;

use common::{Env, SENTINEL, decoded, eventually, leak_scan};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use secretsync::api::{ClusterSecretStore, SecretRef, SecretStore};
use serde_json::json;
use testkit::net::free_port;

// The payloads also carry the leak-check sentinel (an unused property): the whole value is read from
// the provider, so a debug print of a fetched value anywhere would show up in the cleanup scan.
const DB: &str =
    r#"{"username":"app","password":"s3cr3t/pw","unused":"SENTINEL-3f9c2a71-do-not-log"}"#;
const DB2: &str =
    r#"{"username":"app","password":"n3w-pw","unused":"SENTINEL-3f9c2a71-do-not-log"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_rotation_failure_and_recovery() {
    let env = Env::start("core").await;
    let _op = env.operator(&[]).await;
    env.fake_store("store", &[("/prod/db", DB, "1")]).await;
    env.secretref(
        "db",
        json!({
            "storeRef": {"name": "store"},
            "target": {"name": "db-credentials", "type": "kubernetes.io/basic-auth", "labels": {"team": "payments"},
                       "template": {"mergePolicy": "Merge", "data": {"url": "postgres://{{ username }}:{{ password | urlencode }}@db/app"}}},
            "data": [
                {"secretKey": "username", "remoteRef": {"key": "/prod/db", "property": "username"}},
                {"secretKey": "password", "remoteRef": {"key": "/prod/db", "property": "password"}}
            ]
        }),
    )
    .await;
    env.wait_ready("db", "True", "Synced").await;
    // The store reports Ready once its provider answered.
    let stores: Api<SecretStore> = env.api();
    eventually(Duration::from_secs(15), "store Ready", || async {
        let st = stores.get("store").await.ok()?.status?;
        st.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    })
    .await;
    let s = env.secret("db-credentials").await.expect("secret");
    let data = decoded(&s);
    assert_eq!(data["username"], "app");
    assert_eq!(data["password"], "s3cr3t/pw");
    assert_eq!(data["url"], "postgres://app:s3cr3t%2Fpw@db/app");
    assert_eq!(s.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    let labels = s.labels();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "secretsync");
    assert_eq!(labels["secretsync.io/secretref"], "db");
    assert_eq!(labels["team"], "payments");
    assert!(s.annotations().contains_key("secretsync.io/data-hmac"));
    let st = env.sref("db").await.unwrap().status.unwrap();
    assert_eq!(st.synced_keys.len(), 3);
    assert!(st.synced_keys.iter().any(|k| k.secret_key == "password"
        && k.version.as_deref() == Some("1")
        && k.remote_key.as_deref() == Some("/prod/db")));
    assert!(
        st.last_rotation_time.is_none(),
        "first sync is not a rotation"
    );
    eventually(Duration::from_secs(10), "Synced event", || async {
        (env.count_events("db", "Synced").await == 1).then_some(())
    })
    .await;

    // The source changes: one write, one Rotated event naming keys and versions, never values.
    env.fake_store("store", &[("/prod/db", DB2, "2")]).await;
    env.wait_secret("db-credentials", |d| {
        d.get("password").map(String::as_str) == Some("n3w-pw")
    })
    .await;
    env.wait_ready("db", "True", "Synced").await;
    let rotated = eventually(Duration::from_secs(10), "Rotated event", || async {
        let evs: Vec<_> = env
            .events_for("db")
            .await
            .into_iter()
            .filter(|e| e.0 == "Rotated")
            .collect();
        (!evs.is_empty()).then_some(evs)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.count_events("db", "Rotated").await,
        1,
        "exactly one Rotated event"
    );
    assert!(
        rotated[0].2.contains("password (version 2)"),
        "{:?}",
        rotated[0]
    );
    assert!(!rotated[0].2.contains("n3w-pw"));
    let st = env.sref("db").await.unwrap().status.unwrap();
    assert!(st.last_rotation_time.is_some());

    // The provider loses the key: the Secret keeps its data, Ready=False names the cause.
    let before = env.secret("db-credentials").await.unwrap();
    env.fake_store("store", &[("/prod/other", "x", "1")]).await;
    let (_, _, msg) = env.wait_ready("db", "False", "RemoteKeyNotFound").await;
    assert!(msg.contains("/prod/db"), "{msg}");
    let after = env.secret("db-credentials").await.unwrap();
    assert_eq!(
        before.data, after.data,
        "a provider failure never changes the Secret"
    );
    assert_eq!(before.resource_version(), after.resource_version());

    // The provider recovers.
    env.fake_store("store", &[("/prod/db", DB2, "2")]).await;
    env.wait_ready("db", "True", "Synced").await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creation_and_deletion_policies() {
    let env = Env::start("policy").await;
    let _op = env.operator(&[]).await;
    env.fake_store("store", &[("k", "v1", "1")]).await;
    let secrets: Api<Secret> = env.api();

    // A foreign Secret is never overwritten by an Owner SecretRef.
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "foreign"}, "stringData": {"mine": "keep"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    env.secretref("owner", json!({"storeRef": {"name": "store"}, "target": {"name": "foreign"}, "data": [{"secretKey": "k", "remoteRef": {"key": "k"}}]})).await;
    env.wait_ready("owner", "False", "TargetConflict").await;
    assert_eq!(
        decoded(&env.secret("foreign").await.unwrap()),
        [("mine".to_string(), "keep".to_string())].into()
    );
    eventually(Duration::from_secs(10), "TargetConflict event", || async {
        (env.count_events("owner", "TargetConflict").await >= 1).then_some(())
    })
    .await;

    // Merge adds our keys and keeps theirs.
    env.secretref("merger", json!({"storeRef": {"name": "store"}, "target": {"name": "foreign", "creationPolicy": "Merge"}, "data": [{"secretKey": "k", "remoteRef": {"key": "k"}}]})).await;
    env.wait_ready("merger", "True", "Synced").await;
    let d = decoded(&env.secret("foreign").await.unwrap());
    assert_eq!(d["mine"], "keep");
    assert_eq!(d["k"], "v1");

    // Retain (default): deleting the SecretRef leaves the Secret.
    env.secretref("kept", json!({"storeRef": {"name": "store"}, "data": [{"secretKey": "k", "remoteRef": {"key": "k"}}]})).await;
    env.wait_ready("kept", "True", "Synced").await;
    let srefs: Api<SecretRef> = env.api();
    srefs
        .delete("kept", &DeleteParams::default())
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "SecretRef gone", || async {
        env.sref("kept").await.is_none().then_some(())
    })
    .await;
    assert_eq!(
        decoded(&env.secret("kept").await.expect("Retain keeps the Secret"))["k"],
        "v1"
    );

    // Delete: the Secret goes with the SecretRef.
    env.secretref("gone", json!({"storeRef": {"name": "store"}, "target": {"deletionPolicy": "Delete"}, "data": [{"secretKey": "k", "remoteRef": {"key": "k"}}]})).await;
    env.wait_ready("gone", "True", "Synced").await;
    srefs
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "Secret deleted", || async {
        env.secret("gone").await.is_none().then_some(())
    })
    .await;

    // Orphan creates the Secret like Owner; deleting the SecretRef leaves it.
    env.secretref("orphan", json!({"storeRef": {"name": "store"}, "target": {"creationPolicy": "Orphan"}, "data": [{"secretKey": "k", "remoteRef": {"key": "k"}}]})).await;
    env.wait_ready("orphan", "True", "Synced").await;
    srefs
        .delete("orphan", &DeleteParams::default())
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "SecretRef gone", || async {
        env.sref("orphan").await.is_none().then_some(())
    })
    .await;
    assert!(env.secret("orphan").await.is_some());
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_policies() {
    let env = Env::start("drift").await;
    let _op = env.operator(&[]).await;
    env.fake_store("store", &[("k", "good", "1")]).await;
    for (name, policy) in [
        ("revert", "Revert"),
        ("alert", "Alert"),
        ("ignore", "Ignore"),
    ] {
        env.secretref(name, json!({"storeRef": {"name": "store"}, "target": {"driftPolicy": policy}, "data": [{"secretKey": "k", "remoteRef": {"key": "k"}}]})).await;
    }
    for name in ["revert", "alert", "ignore"] {
        env.wait_ready(name, "True", "Synced").await;
    }
    let secrets: Api<Secret> = env.api();
    for name in ["revert", "alert", "ignore"] {
        secrets
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"stringData": {"k": "hand-edit"}})),
            )
            .await
            .unwrap();
    }
    env.wait_secret("revert", |d| d["k"] == "good").await;
    eventually(Duration::from_secs(10), "Drifted condition", || async {
        let s = env.sref("alert").await?;
        s.status?
            .conditions
            .iter()
            .any(|c| c.type_ == "Drifted" && c.status == "True")
            .then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "Drifted event", || async {
        (env.count_events("alert", "Drifted").await == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        decoded(&env.secret("alert").await.unwrap())["k"],
        "hand-edit"
    );
    assert_eq!(
        decoded(&env.secret("ignore").await.unwrap())["k"],
        "hand-edit"
    );
    // A real change at the source still reaches Alert and Ignore targets.
    env.fake_store("store", &[("k", "rotated", "2")]).await;
    env.wait_secret("alert", |d| d["k"] == "rotated").await;
    env.wait_secret("ignore", |d| d["k"] == "rotated").await;
    // A hand edit that removes a synced key is kept too, but the SecretRef is not Ready while the
    // key is missing (DESIGN §2.2), under Alert and Ignore alike.
    for name in ["alert", "ignore"] {
        env.wait_ready(name, "True", "Synced").await;
        secrets
            .patch(
                name,
                &PatchParams::default(),
                &Patch::<()>::Json(
                    serde_json::from_value(json!([{"op": "remove", "path": "/data/k"}])).unwrap(),
                ),
            )
            .await
            .unwrap();
    }
    for name in ["alert", "ignore"] {
        env.wait_ready(name, "False", "Drifted").await;
        let s = env.sref(name).await.unwrap();
        let ready = s
            .status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert!(
            ready.message.contains("lacks key(s) k"),
            "{}",
            ready.message
        );
        assert!(!decoded(&env.secret(name).await.unwrap()).contains_key("k"));
    }
    // The next real change at the source restores the key, and Ready.
    env.fake_store("store", &[("k", "rotated-again", "3")])
        .await;
    for name in ["alert", "ignore"] {
        env.wait_secret(name, |d| d.get("k").is_some_and(|v| v == "rotated-again"))
            .await;
        env.wait_ready(name, "True", "Synced").await;
    }
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenancy_denials() {
    // Creates a ClusterSecretStore: alone on a shared API.
    let env = Env::start_exclusive("tenant").await;
    let other = Env::start_in(&env, "other").await;
    let _op = env.operator(&[]).await;
    // A store in another namespace is invisible.
    other
        .fake_store("theirs", &[("k", "their-secret", "1")])
        .await;
    env.secretref("steal", json!({"storeRef": {"name": "theirs"}, "data": [{"secretKey": "k", "remoteRef": {"key": "k"}}]})).await;
    env.wait_ready("steal", "False", "StoreNotFound").await;
    assert!(env.secret("steal").await.is_none());

    // A ClusterSecretStore admits only its namespaces and key prefixes.
    let css: Api<ClusterSecretStore> = Api::all(env.client.clone());
    let name = format!("css-{}", env.ns);
    let store = |namespaces: Vec<String>| {
        json!({"apiVersion": "secretsync.io/v1alpha1", "kind": "ClusterSecretStore", "metadata": {"name": name},
               "spec": {"provider": {"fake": {"data": [{"key": "/t/ok/a", "value": "1"}, {"key": "/t/secret/b", "value": "2"}]}},
                        "conditions": [{"namespaces": namespaces, "allowedKeyPrefixes": ["/t/ok/"]}]}})
    };
    css.patch(
        &name,
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(store(vec![other.ns.clone()])),
    )
    .await
    .unwrap();
    env.secretref("cluster", json!({"storeRef": {"name": name, "kind": "ClusterSecretStore"}, "data": [{"secretKey": "a", "remoteRef": {"key": "/t/ok/a"}}]})).await;
    env.wait_ready("cluster", "False", "NamespaceNotAllowed")
        .await;
    eventually(Duration::from_secs(10), "AccessDenied event", || async {
        (env.count_events("cluster", "AccessDenied").await >= 1).then_some(())
    })
    .await;
    css.patch(
        &name,
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(store(vec![env.ns.clone()])),
    )
    .await
    .unwrap();
    env.wait_ready("cluster", "True", "Synced").await;
    env.secretref("prefix", json!({"storeRef": {"name": name, "kind": "ClusterSecretStore"}, "data": [{"secretKey": "b", "remoteRef": {"key": "/t/secret/b"}}]})).await;
    env.wait_ready("prefix", "False", "KeyNotAllowed").await;
    assert!(env.secret("prefix").await.is_none());
    let _ = css.delete(&name, &DeleteParams::default()).await;
    other.cleanup().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_causes_no_writes() {
    let env = Env::start("restart").await;
    let op = env.operator(&[]).await;
    env.fake_store("store", &[("k", "v", "1")]).await;
    for i in 0..20 {
        env.secretref(&format!("r{i}"), json!({"storeRef": {"name": "store"}, "data": [{"secretKey": "k", "remoteRef": {"key": "k"}}]})).await;
    }
    for i in 0..20 {
        env.wait_ready(&format!("r{i}"), "True", "Synced").await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    op.kill();
    let versions = |env: &Env| {
        let (srefs, secrets): (Api<SecretRef>, Api<Secret>) = (env.api(), env.api());
        async move {
            let mut v: Vec<String> = srefs
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .iter()
                .map(|o| format!("{}={}", o.name_any(), o.resource_version().unwrap()))
                .collect();
            v.extend(
                secrets
                    .list(&Default::default())
                    .await
                    .unwrap()
                    .items
                    .iter()
                    .map(|o| format!("{}={}", o.name_any(), o.resource_version().unwrap())),
            );
            v.sort();
            v
        }
    };
    let before = versions(&env).await;
    let events_before = env.events_for("r0").await.len();
    let writes = common::WriteCounter::start(&env);
    let op2 = env.operator(&[]).await;
    // Wait until the new operator has started and looked at everything.
    for _ in 0..200 {
        if op2.logs().contains("watches synced") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !op2.logs().contains("watches synced") {
        env.dump_logs();
        panic!("the restarted operator never became ready");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        before,
        versions(&env).await,
        "a restart must not write SecretRefs or Secrets"
    );
    assert_eq!(
        events_before,
        env.events_for("r0").await.len(),
        "a restart must not emit events"
    );
    if let Some(w) = writes {
        let (n, what) = w.writes().await;
        assert_eq!(
            n, 0,
            "no Kubernetes writes at all after a restart: {what:#?}"
        );
    }
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_reported_and_nothing_is_lost_or_leaked() {
    let env = Env::start("badinput").await;
    let metrics = free_port();
    let metrics_s = format!("127.0.0.1:{metrics}");
    let audit = env.dir.path().join("audit.jsonl");
    let op = env
        .operator(&[
            "--metrics-addr",
            &metrics_s,
            "--audit-file",
            audit.to_str().unwrap(),
        ])
        .await;
    let big = "x".repeat(1100 * 1024);
    env.fake_store(
        "store",
        &[
            (
                "/json",
                &format!(r#"{{"password":"{SENTINEL}","bad key":"{SENTINEL}"}}"#),
                "1",
            ),
            ("/plain", SENTINEL, "1"),
            ("/big", &big, "1"),
        ],
    )
    .await;
    // A good sync first, then broken specs: the Secret stays as it was.
    env.secretref("app", json!({"storeRef": {"name": "store"}, "data": [{"secretKey": "pw", "remoteRef": {"key": "/json", "property": "password"}}]})).await;
    env.wait_ready("app", "True", "Synced").await;
    let good = env.secret("app").await.unwrap();
    let cases = [
        (
            json!({"storeRef": {"name": "store"}, "data": [{"secretKey": "pw", "remoteRef": {"key": "/json", "property": "missing"}}]}),
            "InvalidRemoteValue",
            "spec.data[0].remoteRef.property",
        ),
        (
            json!({"storeRef": {"name": "nope"}, "data": [{"secretKey": "pw", "remoteRef": {"key": "/json"}}]}),
            "StoreNotFound",
            "\"nope\"",
        ),
        (
            json!({"storeRef": {"name": "store"}, "data": [{"secretKey": "pw", "remoteRef": {"key": "/plain"}}], "target": {"template": {"data": {"pw": "{{ nothere }}"}}}}),
            "TemplateFailed",
            "spec.target.template",
        ),
        (
            json!({"storeRef": {"name": "store"}, "data": [{"secretKey": "pw", "remoteRef": {"key": "/big"}}]}),
            "SecretTooLarge",
            "1 MiB",
        ),
        (
            json!({"storeRef": {"name": "store"}, "dataFrom": [{"extract": {"key": "/json"}}]}),
            "InvalidSecretKey",
            "spec.dataFrom[0].extract",
        ),
        (
            json!({"storeRef": {"name": "store"}, "data": [{"secretKey": "pw", "remoteRef": {"key": "/plain", "property": "a..b"}}]}),
            "InvalidSpec",
            "spec.data[0].remoteRef.property",
        ),
    ];
    for (spec, reason, needle) in cases {
        env.secretref("app", spec).await;
        let (_, _, msg) = env.wait_ready("app", "False", reason).await;
        assert!(
            msg.contains(needle),
            "{reason}: message {msg:?} should name {needle:?}"
        );
        let now = env.secret("app").await.unwrap();
        assert_eq!(
            good.data, now.data,
            "{reason}: the Secret must stay untouched"
        );
    }
    // Leak scan: logs (debug level), events, status of every object, /metrics, the audit trail.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let logs = op.logs();
    assert!(logs.contains("reconcile"), "debug logs were produced");
    let report = leak_scan(
        &env,
        &[&env.ns],
        &[logs],
        Some(metrics),
        Some(&audit),
        &[SENTINEL],
    )
    .await;
    assert!(report.hits.is_empty(), "a value leaked: {:#?}", report.hits);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_in_cluster() {
    use secretsync::providers::file::{Keyring, MasterKey, Store};
    use secretsync::value::SecretBytes;
    let env = Env::start("file").await;
    let _op = env.operator(&[]).await;
    let key = MasterKey::generate();
    let ring = Keyring::single(key.clone());
    let mut store = Store::init(&ring).unwrap();
    store
        .put("/app/api-key", &SecretBytes::from("k-123"), None, None)
        .unwrap();
    let doc = String::from_utf8(store.to_bytes().unwrap()).unwrap();
    let cms: Api<ConfigMap> = env.api();
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "team-secrets"}, "data": {"store.json": doc}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let secrets: Api<Secret> = env.api();
    secrets
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "master-key"}, "stringData": {key.id(): key.to_text().as_str()}})).unwrap())
        .await
        .unwrap();
    let stores: Api<SecretStore> = env.api();
    stores
        .patch(
            "files",
            &PatchParams::apply("e2e"),
            &Patch::Apply(json!({"apiVersion": "secretsync.io/v1alpha1", "kind": "SecretStore", "metadata": {"name": "files"},
                "spec": {"provider": {"file": {"configMapRef": {"name": "team-secrets", "key": "store.json"}, "masterKeySecretRef": {"name": "master-key"}}}}})),
        )
        .await
        .unwrap();
    env.secretref("api", json!({"storeRef": {"name": "files"}, "data": [{"secretKey": "key", "remoteRef": {"key": "/app/api-key"}}]})).await;
    env.wait_ready("api", "True", "Synced").await;
    assert_eq!(decoded(&env.secret("api").await.unwrap())["key"], "k-123");
    // A tampered store document is refused; the Secret keeps its data.
    let tampered = doc.replacen("\"version\": \"1\"", "\"version\": \"9\"", 1);
    assert_ne!(tampered, doc);
    cms.patch(
        "team-secrets",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"store.json": tampered}})),
    )
    .await
    .unwrap();
    // Force a re-read by changing the SecretRef's spec.
    env.secretref("api", json!({"storeRef": {"name": "files"}, "refreshInterval": "30m", "data": [{"secretKey": "key", "remoteRef": {"key": "/app/api-key"}}]})).await;
    env.wait_ready("api", "False", "InvalidStoreConfig").await;
    assert_eq!(decoded(&env.secret("api").await.unwrap())["key"], "k-123");
    env.cleanup().await;
}

/// A rotation whose status write loses an optimistic-concurrency race (409): the status catches up
/// within a second (not after the 5 s failure backoff) and the rotation is announced exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_conflict_after_a_rotation() {
    // Emulator only: injects a 409 Conflict into one status write.
    let env = Env::start_emulated("conflict").await;
    let emu = env.emulator.clone().expect("emulator");
    let _op = env.operator(&[]).await;
    env.fake_store("store", &[("k", "v1", "1")]).await;
    env.secretref(
        "app",
        json!({"storeRef": {"name": "store"}, "data": [{"secretKey": "k", "remoteRef": {"key": "k"}}]}),
    )
    .await;
    env.wait_ready("app", "True", "Synced").await;
    let rule = emu.faults().add(
        testkit::FaultRule::new(testkit::FaultAction::Conflict)
            .resource("secretrefs/status")
            .namespace(&env.ns)
            .times(1),
    );
    env.fake_store("store", &[("k", "v2", "2")]).await;
    env.wait_secret("app", |d| d["k"] == "v2").await;
    let written = std::time::Instant::now();
    eventually(Duration::from_secs(10), "status of version 2", || async {
        let st = env.sref("app").await?.status?;
        (st.synced_keys.first()?.version.as_deref() == Some("2")).then_some(())
    })
    .await;
    let caught_up = written.elapsed();
    assert!(
        emu.faults().rules().iter().all(|(id, _)| *id != rule),
        "the conflict was never injected"
    );
    assert!(
        caught_up < Duration::from_secs(3),
        "status took {caught_up:?} to catch up after a lost race"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.count_events("app", "Rotated").await,
        1,
        "a rotation is announced once, lost race or not"
    );
    env.cleanup().await;
}

/// A wrong `--watch-label-selector` stops the controller at once with an error naming the flag and
/// the requirement (before it connects to anything).
#[test]
fn a_bad_watch_label_selector_is_refused_at_start() {
    for bad in [
        "secretsync.io/shard in (a",
        "secretsync.io/shard=a,",
        "tier > 3",
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_secretsync"))
            .args(["controller", "--log-format", "text"])
            .args([
                "--metrics-addr",
                "127.0.0.1:0",
                "--health-addr",
                "127.0.0.1:0",
            ])
            .args(["--watch-label-selector", bad])
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env_remove("SECRETSYNC_WATCH_LABEL_SELECTOR")
            .output()
            .expect("run secretsync");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad:?}: {err}");
        assert!(
            err.contains("--watch-label-selector") && err.contains(bad),
            "{bad:?}: the error must name the flag and the selector: {err}"
        );
        assert!(!err.contains("connecting to Kubernetes"), "{err}");
    }
}

/// Static shards (`--watch-label-selector`, docs/scaling.md): each controller serves only the
/// SecretRefs its selector matches, and one without a shard label is served by neither. A SecretRef
/// relabelled from shard a to shard b moves without its Secret being deleted or released — shard a's
/// watch reports it gone, which is not a deletion: no finalizer cleanup runs, even with
/// `deletionPolicy: Delete` — and one relabelled out of every shard is left alone, Secret in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_serve_only_their_secretrefs_and_a_relabel_deletes_nothing() {
    let env = Env::start("shards").await;
    let dir = env.dir.path().to_path_buf();
    let flags = |shard: &str| -> Vec<String> {
        vec![
            "--watch-label-selector".into(),
            format!("secretsync.io/shard={shard}"),
            "--pod-name".into(),
            format!("shard-{shard}"),
            "--audit-file".into(),
            dir.join(format!("shard-{shard}.jsonl"))
                .to_string_lossy()
                .into_owned(),
        ]
    };
    let (fa, fb) = (flags("a"), flags("b"));
    let a = env
        .operator(&fa.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let b = env
        .operator(&fb.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let written = |shard: &str| -> Vec<String> {
        common::audit_records(&dir.join(format!("shard-{shard}.jsonl")))
            .into_iter()
            .filter(|r| r["action"] == "write")
            .filter_map(|r| r["target"].as_str().map(str::to_string))
            .collect()
    };
    let sref = |name: &str, shard: Option<&str>, force: Option<&str>| {
        let mut o = json!({
            "apiVersion": "secretsync.io/v1alpha1", "kind": "SecretRef",
            "metadata": {"name": name},
            "spec": {"storeRef": {"name": "store"}, "target": {"deletionPolicy": "Delete"},
                     "data": [{"secretKey": "k", "remoteRef": {"key": "k"}}]}
        });
        if let Some(s) = shard {
            o["metadata"]["labels"] = json!({"secretsync.io/shard": s});
        }
        if let Some(f) = force {
            o["metadata"]["annotations"] = json!({"secretsync.io/force-sync": f});
        }
        o
    };
    env.fake_store("store", &[("k", "v1", "1")]).await;
    env.apply::<SecretRef>("in-a", sref("in-a", Some("a"), None))
        .await;
    env.apply::<SecretRef>("in-b", sref("in-b", Some("b"), None))
        .await;
    env.apply::<SecretRef>("nowhere", sref("nowhere", None, None))
        .await;
    env.wait_ready("in-a", "True", "Synced").await;
    env.wait_ready("in-b", "True", "Synced").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ns = env.ns.clone();
    assert_eq!(written("a"), vec![format!("{ns}/in-a")]);
    assert_eq!(written("b"), vec![format!("{ns}/in-b")]);
    let nowhere = env.sref("nowhere").await.unwrap();
    assert!(
        nowhere.status.is_none() && nowhere.finalizers().is_empty(),
        "a SecretRef no shard selects is not touched: {nowhere:?}"
    );
    assert!(env.secret("nowhere").await.is_none());

    // Relabel in-a to shard b: shard a lets go of it without cleanup; shard b serves it.
    let before = env.secret("in-a").await.unwrap();
    env.apply::<SecretRef>("in-a", sref("in-a", Some("b"), None))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.fake_store("store", &[("k", "v2", "2")]).await;
    env.apply::<SecretRef>("in-a", sref("in-a", Some("b"), Some("1")))
        .await;
    let moved = env.wait_secret("in-a", |d| d["k"] == "v2").await;
    env.wait_secret("in-b", |d| d["k"] == "v2").await;
    assert_eq!(moved.uid(), before.uid(), "the Secret was never deleted");
    assert_eq!(
        moved
            .labels()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("secretsync"),
        "the Secret was never released"
    );
    assert_eq!(
        written("a"),
        vec![format!("{ns}/in-a")],
        "shard a wrote again"
    );
    assert!(written("b").contains(&format!("{ns}/in-a")));

    // Relabel it out of every shard: nobody serves it, its Secret stays as it is.
    env.apply::<SecretRef>("in-a", sref("in-a", None, Some("1")))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.fake_store("store", &[("k", "v3", "3")]).await;
    env.apply::<SecretRef>("in-a", sref("in-a", None, Some("2")))
        .await;
    env.wait_secret("in-b", |d| d["k"] == "v3").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let left = env.secret("in-a").await.expect("the Secret stays");
    assert_eq!(left.uid(), before.uid());
    assert_eq!(decoded(&left)["k"], "v2", "no shard serves it any more");
    for op in [&a, &b] {
        let logs = op.logs();
        assert!(
            !logs.contains("deleted Secret") && !logs.contains("released Secret"),
            "no cleanup on a relabel"
        );
    }

    // Back into shard b, then deleted: the shard that serves it runs the cleanup (deletionPolicy
    // Delete), for it and for in-b.
    env.apply::<SecretRef>("in-a", sref("in-a", Some("b"), Some("2")))
        .await;
    env.wait_secret("in-a", |d| d["k"] == "v3").await;
    let srefs: Api<SecretRef> = env.api();
    for name in ["in-a", "in-b"] {
        srefs.delete(name, &DeleteParams::default()).await.unwrap();
    }
    eventually(Duration::from_secs(20), "Secrets deleted", || async {
        (env.secret("in-a").await.is_none() && env.secret("in-b").await.is_none()).then_some(())
    })
    .await;
    drop((a, b));
    env.cleanup().await;
}
