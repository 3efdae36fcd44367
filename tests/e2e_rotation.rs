//! End-to-end tests of rotation: workload restarts, expiry warnings, the audit trail, force-sync,
//! pause, and leader election.

mod common;

use std::time::Duration;

use common::{Env, decoded, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use secretsync::providers::file::{MasterKey, Store};
use serde_json::json;

/// `Expiring` is `True` in `st` and exactly one `Expiring` event about SecretRef `name` follows.
async fn assert_expiring(env: &Env, name: &str, st: &secretsync::api::SecretRefStatus) {
    assert!(
        st.conditions
            .iter()
            .any(|c| c.type_ == "Expiring" && c.status == "True"),
        "{:?}",
        st.conditions
    );
    eventually(Duration::from_secs(10), "Expiring event", || async {
        (env.count_events(name, "Expiring").await == 1).then_some(())
    })
    .await;
}

/// The file store's document as kept in its ConfigMap.
fn store_document(s: &Store) -> String {
    String::from_utf8(s.to_bytes().unwrap()).unwrap()
}

/// Publishes `store` as SecretStore `files`: its document in ConfigMap `files` (key `store.json`) and
/// its master key in Secret `mk`.
async fn publish_file_store(env: &Env, store: &Store, key: &MasterKey) {
    env.api::<ConfigMap>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "files"}, "data": {"store.json": store_document(store)}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    env.apply::<k8s_openapi::api::core::v1::Secret>("mk", json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mk"}, "stringData": {key.id(): key.to_text().as_str()}})).await;
    env.apply::<secretsync::api::SecretStore>(
        "files",
        json!({"apiVersion": "secretsync.io/v1alpha1", "kind": "SecretStore", "metadata": {"name": "files"},
               "spec": {"provider": {"file": {"configMapRef": {"name": "files", "key": "store.json"}, "masterKeySecretRef": {"name": "mk"}}}}}),
    )
    .await;
}

fn deployment(name: &str, uses: Option<&str>) -> serde_json::Value {
    let env = match uses {
        Some(secret) => {
            json!([{"name": "PW", "valueFrom": {"secretKeyRef": {"name": secret, "key": "pw"}}}])
        }
        None => json!([{"name": "X", "value": "1"}]),
    };
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
           "spec": {"selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [{"name": "c", "image": "busybox", "env": env}]}}}})
}

fn restarted_at(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get("secretsync.io/restarted-at")
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_restarts_each_workload_once_and_is_audited() {
    const SENTINEL: &str = "SENTINEL-rotation-5a1e";
    let env = Env::start("rotate").await;
    let audit = env.dir.path().join("audit.jsonl");
    let audit_s = audit.to_string_lossy().to_string();
    let op = env
        .operator(&["--restart-debounce", "2s", "--audit-file", &audit_s])
        .await;
    let deps: Api<Deployment> = env.api();
    for (name, uses) in [
        ("api", None),
        ("worker", Some("app-secret")),
        ("unrelated", None),
    ] {
        deps.create(
            &PostParams::default(),
            &serde_json::from_value(deployment(name, uses)).unwrap(),
        )
        .await
        .unwrap();
    }
    env.fake_store("store", &[("pw", &format!("{SENTINEL}-1"), "1")])
        .await;
    env.secretref(
        "app",
        json!({"storeRef": {"name": "store"}, "target": {"name": "app-secret"},
               "rotation": {"restart": {"targets": [{"kind": "Deployment", "name": "api"}], "auto": true}},
               "data": [{"secretKey": "pw", "remoteRef": {"key": "pw"}}]}),
    )
    .await;
    env.wait_ready("app", "True", "Synced").await;
    // The first sync restarts nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for name in ["api", "worker", "unrelated"] {
        assert_eq!(
            restarted_at(&deps.get(name).await.unwrap()),
            None,
            "{name} restarted on first sync"
        );
    }
    // Three quick rotations: one restart per affected workload, after the burst.
    for v in 2..=4 {
        env.fake_store(
            "store",
            &[("pw", &format!("{SENTINEL}-{v}"), &v.to_string())],
        )
        .await;
        env.wait_secret("app-secret", |d| d["pw"] == format!("{SENTINEL}-{v}"))
            .await;
    }
    for name in ["api", "worker"] {
        eventually(Duration::from_secs(15), "restart", || async {
            restarted_at(&deps.get(name).await.ok()?)
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        restarted_at(&deps.get("unrelated").await.unwrap()),
        None,
        "unrelated workload restarted"
    );
    for name in ["api", "worker"] {
        assert_eq!(
            env.count_events(name, "RestartTriggered").await,
            1,
            "{name} must be restarted exactly once"
        );
    }
    assert_eq!(env.count_events("app", "Rotated").await, 3);
    let st = env.sref("app").await.unwrap().status.unwrap();
    assert!(st.last_rotation_time.is_some());

    // The audit trail verifies, holds no value, and any edit or deletion breaks it at that line.
    drop(op);
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(!text.contains(SENTINEL), "a value reached the audit trail");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines
            .iter()
            .filter(|l| l.contains(r#""action":"read""#))
            .count()
            >= 4,
        "reads are audited"
    );
    assert!(
        lines
            .iter()
            .filter(|l| l.contains(r#""action":"write""#))
            .count()
            >= 4,
        "writes are audited"
    );
    assert!(
        lines
            .iter()
            .all(|l| l.contains(r#""hmac":""#) || !l.contains(r#""outcome":"success""#))
    );
    let verify = |path: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_secretsync"))
            .args(["audit", "verify"])
            .arg(path)
            .output()
            .unwrap()
    };
    let out = verify(&audit);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let tampered = env.dir.path().join("tampered.jsonl");
    let mut edited: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    edited[2] = edited[2].replace("success", "failure");
    std::fs::write(&tampered, edited.join("\n") + "\n").unwrap();
    let out = verify(&tampered);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("line 3"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut removed: Vec<&str> = lines.clone();
    removed.remove(1);
    std::fs::write(&tampered, removed.join("\n") + "\n").unwrap();
    let out = verify(&tampered);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("line 2"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // An operator restart restarts nothing and emits nothing.
    let before: Vec<Option<String>> = futures::future::join_all(["api", "worker"].map(|n| {
        let deps = deps.clone();
        async move { restarted_at(&deps.get(n).await.unwrap()) }
    }))
    .await;
    let _op2 = env
        .operator(&["--restart-debounce", "1s", "--audit-file", &audit_s])
        .await;
    eventually(Duration::from_secs(20), "operator ready", || async {
        _op2.logs().contains("watches synced").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (i, n) in ["api", "worker"].iter().enumerate() {
        assert_eq!(
            restarted_at(&deps.get(n).await.unwrap()),
            before[i],
            "{n} restarted by an operator restart"
        );
        assert_eq!(env.count_events(n, "RestartTriggered").await, 1);
    }
    assert!(
        verify(&audit).status.success(),
        "the chain continues across restarts"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_warning_force_sync_and_pause() {
    use secretsync::providers::file::Keyring;
    use secretsync::value::SecretBytes;
    let env = Env::start("expiry").await;
    let _op = env.operator(&[]).await;
    let key = MasterKey::generate();
    let ring = Keyring::single(key.clone());
    let mut store = Store::init(&ring).unwrap();
    let expires = chrono::Utc::now() + chrono::Duration::hours(1);
    store
        .put("cert", &SecretBytes::from("v1"), Some(expires), None)
        .unwrap();
    let cms: Api<ConfigMap> = env.api();
    let doc = store_document;
    publish_file_store(&env, &store, &key).await;
    env.secretref("tls", json!({"storeRef": {"name": "files"}, "refreshInterval": "1h", "expiry": {"warnBefore": "2h"}, "data": [{"secretKey": "crt", "remoteRef": {"key": "cert"}}]})).await;
    env.wait_ready("tls", "True", "Synced").await;
    let st = env.sref("tls").await.unwrap().status.unwrap();
    assert!(st.expires_at.is_some());
    assert_expiring(&env, "tls", &st).await;

    let stores: Api<secretsync::api::SecretStore> = env.api();
    eventually(Duration::from_secs(15), "store Ready", || async {
        let st = stores.get("files").await.ok()?.status?;
        st.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A new value at the source is not picked up before the refresh slot (1h) ...
    store
        .put("cert", &SecretBytes::from("v2"), None, None)
        .unwrap();
    cms.patch(
        "files",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"store.json": doc(&store)}})),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(decoded(&env.secret("tls").await.unwrap())["crt"], "v1");
    // ... but a force-sync refreshes at once, bypassing every cache.
    let srefs: Api<secretsync::api::SecretRef> = env.api();
    let started = std::time::Instant::now();
    srefs
        .patch(
            "tls",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"secretsync.io/force-sync": "1"}}})),
        )
        .await
        .unwrap();
    env.wait_secret("tls", |d| d["crt"] == "v2").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "force-sync took {:?}",
        started.elapsed()
    );
    // The new version has no expiry: the warning clears.
    eventually(Duration::from_secs(10), "Expiring cleared", || async {
        let st = env.sref("tls").await?.status?;
        (!st.conditions.iter().any(|c| c.type_ == "Expiring")
            && st.last_force_sync.as_deref() == Some("1"))
        .then_some(())
    })
    .await;

    // Paused: nothing is written while the source changes; resuming writes again.
    srefs
        .patch(
            "tls",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"secretsync.io/paused": "true"}}})),
        )
        .await
        .unwrap();
    env.wait_ready("tls", "False", "Paused").await;
    store
        .put("cert", &SecretBytes::from("v3"), None, None)
        .unwrap();
    cms.patch(
        "files",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"store.json": doc(&store)}})),
    )
    .await
    .unwrap();
    srefs
        .patch(
            "tls",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"secretsync.io/force-sync": "2"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        decoded(&env.secret("tls").await.unwrap())["crt"],
        "v2",
        "a paused SecretRef must not write"
    );
    srefs
        .patch(
            "tls",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"secretsync.io/paused": null}}})),
        )
        .await
        .unwrap();
    env.wait_secret("tls", |d| d["crt"] == "v3").await;
    env.wait_ready("tls", "True", "Synced").await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_only_the_holder_writes_and_failover_is_fast() {
    let env = Env::start("leader").await;
    let dir = env.dir.path().to_path_buf();
    let flags = |n: &str| {
        vec![
            "--leader-elect".to_string(),
            "--pod-name".to_string(),
            n.to_string(),
            "--audit-file".to_string(),
            dir.join(format!("{n}.jsonl")).to_string_lossy().to_string(),
        ]
    };
    let a_flags = flags("replica-a");
    let b_flags = flags("replica-b");
    let a = env
        .operator(&a_flags.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let leases: Api<Lease> = env.api();
    let holder = eventually(Duration::from_secs(20), "a lease holder", || async {
        leases
            .get_opt("secretsync-leader")
            .await
            .ok()
            .flatten()?
            .spec?
            .holder_identity
    })
    .await;
    assert_eq!(holder, "replica-a");
    let b = env
        .operator(&b_flags.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    eventually(Duration::from_secs(20), "standby ready", || async {
        b.logs().contains("watches synced").then_some(())
    })
    .await;
    env.fake_store("store", &[("k", "v1", "1")]).await;
    for i in 0..5 {
        env.secretref(&format!("s{i}"), json!({"storeRef": {"name": "store"}, "data": [{"secretKey": "k", "remoteRef": {"key": "k"}}]})).await;
    }
    for i in 0..5 {
        env.wait_ready(&format!("s{i}"), "True", "Synced").await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let writes = |n: &str| {
        std::fs::read_to_string(dir.join(format!("{n}.jsonl")))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(r#""action":"write""#))
            .count()
    };
    assert_eq!(writes("replica-a"), 5);
    assert_eq!(writes("replica-b"), 0, "the standby must not write");

    // Kill the leader: the standby takes over within the lease time and syncs new objects.
    a.kill();
    let killed = std::time::Instant::now();
    env.secretref("after", json!({"storeRef": {"name": "store"}, "data": [{"secretKey": "k", "remoteRef": {"key": "k"}}]})).await;
    env.wait_ready("after", "True", "Synced").await;
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(15), "failover took {took:?}");
    let holder = leases
        .get("secretsync-leader")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert_eq!(holder.as_deref(), Some("replica-b"));
    assert!(writes("replica-b") >= 1);
    assert!(
        env.sref("after")
            .await
            .unwrap()
            .finalizers()
            .iter()
            .any(|f| f == "secretsync.io/finalizer")
    );
    drop(b);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_releases_the_lease() {
    let env = Env::start("shutdown").await;
    let op = env
        .operator(&["--leader-elect", "--pod-name", "only"])
        .await;
    let leases: Api<Lease> = env.api();
    eventually(Duration::from_secs(20), "lease held", || async {
        (leases
            .get_opt("secretsync-leader")
            .await
            .ok()
            .flatten()?
            .spec?
            .holder_identity?
            == "only")
            .then_some(())
    })
    .await;
    env.fake_store("store", &[("k", "v", "1")]).await;
    env.secretref("s", json!({"storeRef": {"name": "store"}, "data": [{"secretKey": "k", "remoteRef": {"key": "k"}}]})).await;
    env.wait_ready("s", "True", "Synced").await;
    let status = tokio::task::spawn_blocking(move || op.terminate(Duration::from_secs(10)))
        .await
        .unwrap();
    let status = status.expect("the operator must exit within 10 s of SIGTERM");
    assert!(status.success(), "clean exit, got {status:?}");
    let lease = leases.get("secretsync-leader").await.unwrap();
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity),
        None,
        "the lease is released on shutdown"
    );
    // Nothing half-written: the Secret and status are complete.
    assert_eq!(decoded(&env.secret("s").await.unwrap())["k"], "v");
    env.wait_ready("s", "True", "Synced").await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_cli_forces_a_sync_through_the_kubeconfig() {
    let env = Env::start("refresh").await;
    let _op = env.operator(&[]).await;
    env.fake_store("store", &[("k", "v", "1")]).await;
    for n in ["a", "b"] {
        env.secretref(n, json!({"storeRef": {"name": "store"}, "data": [{"secretKey": "k", "remoteRef": {"key": "k"}}]})).await;
        env.wait_ready(n, "True", "Synced").await;
    }
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_secretsync"))
            .arg("refresh")
            .args(args)
            .env("KUBECONFIG", &env.kubeconfig)
            .output()
            .unwrap()
    };
    let out = run(&["-n", &env.ns, "a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    let value = env
        .sref("a")
        .await
        .unwrap()
        .annotations()
        .get("secretsync.io/force-sync")
        .cloned()
        .expect("annotation set");
    eventually(Duration::from_secs(10), "force-sync acted on", || async {
        (env.sref("a").await?.status?.last_force_sync.as_deref() == Some(value.as_str()))
            .then_some(())
    })
    .await;
    assert!(
        env.sref("b")
            .await
            .unwrap()
            .annotations()
            .get("secretsync.io/force-sync")
            .is_none()
    );
    // Every SecretRef of a store.
    let out = run(&["-n", &env.ns, "--store", "store"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    // Nothing matches: exit code 1 with a message.
    let out = run(&["-n", &env.ns, "--store", "nope"]);
    assert!(!out.status.success());
    env.cleanup().await;
}

/// A self-signed CA and a leaf it signs (ECDSA P-256), the leaf valid for `days` more days.
struct TestTls {
    chain: String,
    key: String,
}

fn tls_pair(days: i64) -> TestTls {
    use chrono::Datelike;
    use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Test CA");
    ca.distinguished_name = dn;
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["app.test.invalid".to_string()]).unwrap();
    let t = chrono::Utc::now() + chrono::Duration::days(days);
    leaf.not_after = rcgen::date_time_ymd(t.year(), t.month() as u8, t.day() as u8);
    let issuer = rcgen::Issuer::new(ca, &ca_key);
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    TestTls {
        chain: format!("{}{}", cert.pem(), ca_pem),
        key: key.serialize_pem(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_values_are_never_written_and_certificates_expire() {
    use secretsync::providers::file::Keyring;
    use secretsync::value::SecretBytes;
    let env = Env::start("validate").await;
    let audit = env.dir.path().join("audit.jsonl");
    let audit_s = audit.to_string_lossy().to_string();
    let op = env.operator(&["--audit-file", &audit_s]).await;
    let key = MasterKey::generate();
    let ring = Keyring::single(key.clone());
    let mut store = Store::init(&ring).unwrap();
    let good = tls_pair(3650);
    let other = tls_pair(3650);
    let soon = tls_pair(10);
    let config = format!(r#"{{"user":"u","password":"{}"}}"#, common::SENTINEL);
    for (name, value) in [
        ("cfg", config.as_str()),
        ("crt", good.chain.as_str()),
        ("wrong-key", other.key.as_str()),
        ("soon-crt", soon.chain.as_str()),
        ("soon-key", soon.key.as_str()),
    ] {
        store
            .put(name, &SecretBytes::from(value), None, None)
            .unwrap();
    }
    let cms: Api<ConfigMap> = env.api();
    let doc = store_document;
    publish_file_store(&env, &store, &key).await;

    // (a) Valid JSON, then a rotation to truncated JSON: refused, the old data stays.
    env.secretref(
        "cfg",
        json!({"storeRef": {"name": "files"}, "refreshInterval": "1h", "data": [
        {"secretKey": "config.json", "remoteRef": {"key": "cfg"},
         "validate": {"type": "json", "requiredProperties": ["password"], "maxLength": 4096}}]}),
    )
    .await;
    env.wait_ready("cfg", "True", "Synced").await;
    let truncated = &config[..config.len() - 5];
    store
        .put("cfg", &SecretBytes::from(truncated), None, None)
        .unwrap();
    cms.patch(
        "files",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"store.json": doc(&store)}})),
    )
    .await
    .unwrap();
    let srefs: Api<secretsync::api::SecretRef> = env.api();
    srefs
        .patch(
            "cfg",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"secretsync.io/force-sync": "1"}}})),
        )
        .await
        .unwrap();
    let (_, _, message) = env.wait_ready("cfg", "False", "InvalidValue").await;
    assert!(
        message.contains("config.json") && message.contains("validate.type json"),
        "{message}"
    );
    assert!(
        !message.contains("password") && !message.contains("SENTINEL"),
        "{message}"
    );
    assert_eq!(
        decoded(&env.secret("cfg").await.unwrap())["config.json"],
        config,
        "the last good data stays"
    );
    eventually(Duration::from_secs(10), "a Warning event", || async {
        (env.count_events("cfg", "SyncFailed").await >= 1).then_some(())
    })
    .await;

    // (b) A TLS Secret whose key is not the certificate's: never written.
    env.secretref(
        "tls",
        json!({"storeRef": {"name": "files"}, "target": {"type": "kubernetes.io/tls"}, "data": [
        {"secretKey": "tls.crt", "remoteRef": {"key": "crt"}},
        {"secretKey": "tls.key", "remoteRef": {"key": "wrong-key"}}]}),
    )
    .await;
    let (_, _, message) = env.wait_ready("tls", "False", "InvalidValue").await;
    assert!(
        message.contains("tls.key") && message.contains("kubernetes.io/tls"),
        "{message}"
    );
    assert!(
        env.secret("tls").await.is_none(),
        "an invalid Secret was written"
    );

    // (c) A certificate that expires within warnBefore: Expiring, and its facts in status.
    env.secretref(
        "soon",
        json!({"storeRef": {"name": "files"}, "target": {"type": "kubernetes.io/tls"},
        "expiry": {"warnBefore": "720h"}, "data": [
        {"secretKey": "tls.crt", "remoteRef": {"key": "soon-crt"}},
        {"secretKey": "tls.key", "remoteRef": {"key": "soon-key"}}]}),
    )
    .await;
    env.wait_ready("soon", "True", "Synced").await;
    let st = env.sref("soon").await.unwrap().status.unwrap();
    let facts = st
        .synced_keys
        .iter()
        .find(|k| k.secret_key == "tls.crt")
        .and_then(|k| k.certificate.clone())
        .expect("certificate facts");
    assert_eq!(facts.sans, ["DNS:app.test.invalid"]);
    assert_eq!(facts.count, 2);
    assert_eq!(st.expires_at, Some(facts.not_after));
    assert_expiring(&env, "soon", &st).await;

    // The schema's CEL rules refuse what cannot work: minLength over maxLength, validate on a key
    // the template does not produce. A real API server only: the emulator evaluates no CEL (the
    // controller and `check` refuse both as InvalidSpec anyway).
    let cel = [
        json!({"storeRef": {"name": "files"}, "data": [{"secretKey": "a", "remoteRef": {"key": "cfg"}, "validate": {"minLength": 5, "maxLength": 1}}]}),
        json!({"storeRef": {"name": "files"}, "target": {"template": {"data": {"a": "x"}, "validate": {"b": {"type": "json"}}}}}),
    ];
    for (i, spec) in cel.into_iter().enumerate().filter(|_| env.is_real()) {
        let obj: secretsync::api::SecretRef = serde_json::from_value(json!({"apiVersion": "secretsync.io/v1alpha1", "kind": "SecretRef", "metadata": {"name": format!("cel-{i}")}, "spec": spec})).unwrap();
        let e = srefs
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, kube::Error::Api(s) if s.code == 422),
            "cel-{i}: {e}"
        );
    }

    // Refusals are audited as denials, without values.
    drop(op);
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(
        !text.contains(common::SENTINEL),
        "a value reached the audit trail"
    );
    assert!(
        text.lines()
            .filter(|l| l.contains(r#""action":"deny""#) && l.contains("InvalidValue"))
            .count()
            >= 2,
        "{text}"
    );
    env.cleanup().await;
}
