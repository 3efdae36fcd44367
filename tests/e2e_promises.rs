//! The promises of DESIGN §2 under attack (issue "Keep the promises under attack"): each test here
//! reproduces a way a promise was broken on a real kube-apiserver — HMACs comparable across
//! namespaces, forged ownership, a self-triggered hot loop, unbounded memory, events the API server
//! refuses, one slow store delaying every store check — and checks the rule that prevents it. They run
//! on the real control plane when the envtest assets are present (`make test`), else on the emulator.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Env, decoded, eventually, scrape_metrics};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use secretsync::api::{SecretRef, SecretStore};
use secretsync::audit::HmacKey;
use secretsync::value::SecretBytes;
use serde_json::json;
use testkit::doubles::vaultkv::{KeyFault, VaultKv};
use testkit::net::free_port;

/// A token-auth Vault store `name` on the KV double.
async fn vault_store(env: &Env, name: &str, kv: &VaultKv) {
    if env.secret("vault-token").await.is_none() {
        env.create::<Secret>(
            json!({"metadata": {"name": "vault-token"}, "stringData": {"token": "t"}}),
        )
        .await;
    }
    env.apply::<SecretStore>(
        name,
        json!({"apiVersion": "secretsync.io/v1alpha1", "kind": "SecretStore", "metadata": {"name": name},
               "spec": {"provider": {"vault": {"server": kv.url, "path": "secret", "version": "v2",
                        "auth": {"token": {"secretRef": {"name": "vault-token", "key": "token"}}}}}}}),
    )
    .await;
}

/// The HMAC key the controller created in its namespace.
async fn controller_hmac_key(env: &Env) -> HmacKey {
    let s = env
        .secret("secretsync-hmac-key")
        .await
        .expect("the controller's HMAC key Secret");
    HmacKey::new(s.data.unwrap()["hmac-key"].0.clone())
}

/// DESIGN §2.10: every HMAC that leaves the controller (status, the Secret's annotation, restart
/// annotations) is keyed per namespace, so equal values in two namespaces — or a guess rendered by a
/// template in the attacker's namespace — are not recognisable as equal. An upgrade from the
/// cluster-wide key rewrites the HMACs once, with no Rotated event and no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_hmacs_are_keyed_per_namespace() {
    let env = Env::start("hmac").await;
    let other = Env::start_in(&env, "hmac-b").await;
    // One operator for both namespaces would need cluster scope; two namespaced ones share the HMAC
    // key Secret of the first's namespace (the controller namespace is `env.ns` for both).
    let _op_a = env.operator(&["--default-refresh-interval", "3s"]).await;
    let _op_b = other
        .operator(&[
            "--pod-namespace",
            &env.ns,
            "--default-refresh-interval",
            "3s",
        ])
        .await;
    for e in [&env, &other] {
        e.fake_store("store", &[("/db", "hunter2", "1")]).await;
        e.secretref(
            "db",
            json!({"storeRef": {"name": "store"}, "data": [{"secretKey": "password", "remoteRef": {"key": "/db"}}]}),
        )
        .await;
    }
    // The attacker's guess, rendered by a template in their own namespace.
    env.secretref(
        "guess",
        json!({"storeRef": {"name": "store"}, "target": {"template": {"data": {"password": "hunter2"}}}}),
    )
    .await;
    for (e, n) in [(&env, "db"), (&other, "db"), (&env, "guess")] {
        e.wait_ready(n, "True", "Synced").await;
    }
    let status = |e: &Env, n: &'static str| {
        let (api, n) = (e.api::<SecretRef>(), n.to_string());
        async move { api.get(&n).await.unwrap().status.unwrap() }
    };
    let (a, b, guess) = (
        status(&env, "db").await,
        status(&other, "db").await,
        status(&env, "guess").await,
    );
    assert_eq!(
        decoded(&env.secret("db").await.unwrap())["password"],
        "hunter2"
    );
    assert_eq!(
        decoded(&other.secret("db").await.unwrap())["password"],
        "hunter2"
    );
    assert_ne!(
        a.synced_keys[0].hmac, b.synced_keys[0].hmac,
        "the same value has the same HMAC in two namespaces"
    );
    assert_ne!(a.data_hmac, b.data_hmac);
    let guess_hmac = &guess
        .synced_keys
        .iter()
        .find(|k| k.secret_key == "password")
        .expect("the template key in status")
        .hmac;
    assert_ne!(
        guess_hmac, &b.synced_keys[0].hmac,
        "a guess rendered in namespace A matches namespace B's HMAC"
    );
    let annotation = |s: &Secret| s.annotations()["secretsync.io/data-hmac"].clone();
    assert_ne!(
        annotation(&env.secret("db").await.unwrap()),
        annotation(&other.secret("db").await.unwrap())
    );
    // The HMACs are the per-namespace key's, derived from the controller's key.
    let key = controller_hmac_key(&env).await;
    let value = SecretBytes::from("hunter2");
    assert_eq!(
        b.synced_keys[0].hmac,
        key.for_namespace(&other.ns).key_hmac("password", &value)
    );
    assert_ne!(b.synced_keys[0].hmac, key.key_hmac("password", &value));

    // An upgrade: status and annotation as a version with one cluster-wide key wrote them.
    let deploy: Api<Deployment> = other.api();
    deploy
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "app"}, "spec": {"selector": {"matchLabels": {"app": "a"}},
                "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "x",
                    "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]}]}}}}))
            .unwrap(),
        )
        .await
        .unwrap();
    other
        .secretref(
            "db",
            json!({"storeRef": {"name": "store"}, "refreshInterval": "3s", "rotation": {"restart": {"auto": true}},
                   "data": [{"secretKey": "password", "remoteRef": {"key": "/db"}}]}),
        )
        .await;
    other.wait_ready("db", "True", "Synced").await;
    drop(_op_b);
    let legacy_key = key.key_hmac("password", &value);
    let legacy_data = key.data_hmac_from_keys([("password", legacy_key.as_str())]);
    let mut st = status(&other, "db").await;
    st.synced_keys[0].hmac = legacy_key.clone();
    st.data_hmac = Some(legacy_data.clone());
    other
        .api::<SecretRef>()
        .patch_status(
            "db",
            &PatchParams::apply("secretsync").force(),
            &Patch::Apply(
                json!({"apiVersion": "secretsync.io/v1alpha1", "kind": "SecretRef", "status": st}),
            ),
        )
        .await
        .unwrap();
    other
        .api::<Secret>()
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"secretsync.io/data-hmac": legacy_data}}}),
            ),
        )
        .await
        .unwrap();
    let rotated_before = other.count_events("db", "Rotated").await;
    let _op_b = other
        .operator(&["--pod-namespace", &env.ns, "--restart-debounce", "1s"])
        .await;
    let want = key.for_namespace(&other.ns).data_hmac_from_keys([(
        "password",
        key.for_namespace(&other.ns)
            .key_hmac("password", &value)
            .as_str(),
    )]);
    let mut rewritten = false;
    for _ in 0..300 {
        let st = status(&other, "db").await;
        let s = other.secret("db").await.unwrap();
        if st.data_hmac.as_deref() == Some(want.as_str()) && annotation(&s) == want {
            rewritten = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !rewritten {
        other.dump_logs();
        panic!("the HMACs were not re-keyed after the upgrade");
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        other.count_events("db", "Rotated").await,
        rotated_before,
        "re-keying is not a rotation"
    );
    let tpl = deploy.get("app").await.unwrap().spec.unwrap().template;
    assert!(
        tpl.metadata
            .and_then(|m| m.annotations)
            .is_none_or(|a| !a.contains_key("secretsync.io/restarted-at")),
        "re-keying restarted a workload"
    );
    assert_eq!(
        decoded(&other.secret("db").await.unwrap())["password"],
        "hunter2"
    );
    other.cleanup().await;
    env.cleanup().await;
}

/// DESIGN §2.4: ownership cannot be forged. Users cannot set labels or annotations under
/// `secretsync.io/` or `app.kubernetes.io/managed-by` (refused by the CRD's rules on a real API
/// server, by the controller everywhere); `Merge` never marks a Secret as owned and never makes it
/// immutable; a forged label on a foreign Secret does not make it deletable; `Retain` lets go of the
/// marks, and a new SecretRef of the same name does not silently adopt what was left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_cannot_be_forged() {
    let env = Env::start("owner").await;
    let _op = env.operator(&[]).await;
    env.fake_store("store", &[("k", "v", "1")]).await;
    env.create::<Secret>(
        json!({"metadata": {"name": "shared-config", "labels": {"team": "infra"}}, "stringData": {"theirs": "keep-me"}}),
    )
    .await;
    let data = json!([{"secretKey": "ours", "remoteRef": {"key": "k"}}]);
    // 1. Forged ownership labels through target.labels (and annotations).
    for (name, meta) in [
        (
            "forge-labels",
            json!({"labels": {"app.kubernetes.io/managed-by": "secretsync", "secretsync.io/secretref": "deleter"}}),
        ),
        (
            "forge-annotations",
            json!({"annotations": {"secretsync.io/owner": "x", "secretsync.io/data-hmac": "y"}}),
        ),
    ] {
        let mut target = json!({"name": "shared-config", "creationPolicy": "Merge"});
        for (k, v) in meta.as_object().unwrap() {
            target[k] = v.clone();
        }
        match env
            .try_secretref(
                name,
                json!({"storeRef": {"name": "store"}, "target": target, "data": data}),
            )
            .await
        {
            Err(e) => {
                assert!(env.is_real(), "the emulator refused {name}: {e}");
                assert!(
                    e.to_string().contains("secretsync.io/"),
                    "{name}: refused, but not for the reserved prefix: {e}"
                );
            }
            Ok(()) => {
                let (_, _, msg) = env.wait_ready(name, "False", "InvalidSpec").await;
                assert!(msg.contains("reserved"), "{msg}");
            }
        }
    }
    // 2. A plain Merge adds its key and nothing that claims the Secret; `immutable` is ignored.
    env.secretref(
        "merger",
        json!({"storeRef": {"name": "store"}, "target": {"name": "shared-config", "creationPolicy": "Merge", "immutable": true}, "data": data}),
    )
    .await;
    let s = env
        .wait_secret("shared-config", |d| {
            d.get("ours").map(String::as_str) == Some("v")
        })
        .await;
    assert_eq!(decoded(&s)["theirs"], "keep-me");
    let labels = s.labels();
    assert!(
        !labels.contains_key("app.kubernetes.io/managed-by")
            && !labels.contains_key("secretsync.io/secretref"),
        "Merge marked a foreign Secret as owned: {labels:?}"
    );
    assert!(
        !s.annotations().contains_key("secretsync.io/owner"),
        "Merge put an ownership proof on a foreign Secret"
    );
    assert_ne!(
        s.immutable,
        Some(true),
        "Merge made a foreign Secret immutable"
    );
    // 3. Forged labels written straight onto a foreign Secret (by someone who may edit it) do not
    // let a Delete SecretRef of that name take it over or delete it.
    env.create::<Secret>(
        json!({"metadata": {"name": "victim", "labels": {"app.kubernetes.io/managed-by": "secretsync", "secretsync.io/secretref": "victim"}},
               "stringData": {"payload": "foreign"}}),
    )
    .await;
    env.secretref(
        "victim",
        json!({"storeRef": {"name": "store"}, "target": {"deletionPolicy": "Delete"}, "data": data}),
    )
    .await;
    env.wait_ready("victim", "False", "TargetConflict").await;
    env.api::<SecretRef>()
        .delete("victim", &DeleteParams::default())
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "SecretRef victim gone", || async {
        env.sref("victim").await.is_none().then_some(())
    })
    .await;
    let v = env
        .secret("victim")
        .await
        .expect("the foreign Secret survives");
    assert_eq!(decoded(&v)["payload"], "foreign");
    // 4. Retain lets go: the marks are removed and a new SecretRef of the same name does not adopt
    // the Secret silently.
    env.secretref("kept", json!({"storeRef": {"name": "store"}, "data": data}))
        .await;
    env.wait_ready("kept", "True", "Synced").await;
    env.api::<SecretRef>()
        .delete("kept", &DeleteParams::default())
        .await
        .unwrap();
    let left = eventually(Duration::from_secs(20), "marks removed", || async {
        let s = env.secret("kept").await?;
        (env.sref("kept").await.is_none()
            && !s.labels().contains_key("secretsync.io/secretref")
            && !s.annotations().contains_key("secretsync.io/owner"))
        .then_some(s)
    })
    .await;
    assert_eq!(decoded(&left)["ours"], "v");
    env.secretref("kept", json!({"storeRef": {"name": "store"}, "data": data}))
        .await;
    env.wait_ready("kept", "False", "TargetConflict").await;
    env.cleanup().await;
}

/// DESIGN §2.8b: a SecretRef reads its provider at most once per scheduled refresh or backoff step,
/// whatever happens to its status. For every error reason, one SecretRef fails for a minute against
/// the Vault double, and its reads are counted (before: a not-found with `deletionPolicy: Delete`
/// re-read the provider on every one of its own status writes, about 40 times a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_reads_per_minute_are_bounded_for_every_error() {
    let env = Env::start("hotloop").await;
    let kv = VaultKv::start().await;
    vault_store(&env, "vault", &kv).await;
    let cases: Vec<(&str, Option<KeyFault>, &str)> = vec![
        ("absent", None, "RemoteKeyNotFound"),
        ("denied", Some(KeyFault::Denied), "AccessDenied"),
        ("throttled", Some(KeyFault::Throttled), "ProviderThrottled"),
        ("broken", Some(KeyFault::ServerError), "ProviderUnavailable"),
        ("malformed", Some(KeyFault::Malformed), "InvalidRemoteValue"),
        (
            "bad-request",
            Some(KeyFault::BadRequest),
            "InvalidStoreConfig",
        ),
        (
            "proxy-404",
            Some(KeyFault::ProxyNotFound),
            "ProviderUnavailable",
        ),
        (
            "no-handler",
            Some(KeyFault::NoHandler),
            "ProviderUnavailable",
        ),
        ("no-property", None, "InvalidRemoteValue"),
    ];
    kv.put("app/no-property", "x");
    for (key, fault, _) in &cases {
        if *key != "no-property" {
            kv.set_key_fault(&format!("app/{key}"), fault.clone());
        }
    }
    let _op = env.operator(&[]).await;
    for (key, _, _) in &cases {
        let property = if *key == "no-property" {
            "missing"
        } else {
            "v"
        };
        env.secretref(
            key,
            json!({"storeRef": {"name": "vault"}, "refreshInterval": "10s", "target": {"deletionPolicy": "Delete"},
                   "data": [{"secretKey": "v", "remoteRef": {"key": format!("app/{key}"), "property": property}}]}),
        )
        .await;
    }
    for (key, _, reason) in &cases {
        env.wait_ready(key, "False", reason).await;
    }
    let start: BTreeMap<&str, u64> = cases
        .iter()
        .map(|(k, _, _)| (*k, kv.reads(&format!("app/{k}"))))
        .collect();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let mut report = Vec::new();
    let mut over = Vec::new();
    for (key, _, reason) in &cases {
        let n = kv.reads(&format!("app/{key}")) - start[key];
        report.push(format!("{key} ({reason}): {n}"));
        // Backoff from 5 s doubling (±20%): at most 4 steps in a minute, each at most 2 calls (the
        // fetch layer retries a transient failure once); 10 leaves room for one refresh-slot read.
        if n > 10 {
            over.push(format!("{key} ({reason}): {n}"));
        }
    }
    eprintln!(
        "provider reads per SecretRef in 60 s: {}",
        report.join(", ")
    );
    if !over.is_empty() {
        env.dump_logs();
        panic!("more provider reads in a minute than the backoff allows: {over:?}");
    }
    // The not-found streak moved only on scheduled refreshes: never past what a minute allows.
    let nf = env.sref("absent").await.unwrap().status.unwrap().not_found;
    assert!(
        nf.as_ref().is_none_or(|r| r.count <= 7),
        "the not-found streak counted {nf:?} in about a minute"
    );
    env.cleanup().await;
}

/// DESIGN §2.8: a tenant cannot make the controller's memory unbounded. Twelve Vault values of
/// 6 MB each behind one SecretRef: every answer is cut off while it is read, the reconcile stops
/// at the 1 MiB Secret limit, nothing is cached, and the operator's peak memory grows little.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_answers_are_cut_off_and_memory_stays_bounded() {
    let env = Env::start("bigvalue").await;
    let kv = VaultKv::start().await;
    vault_store(&env, "vault", &kv).await;
    let big = "x".repeat(6 << 20);
    for i in 0..12 {
        kv.put(&format!("big/{i}"), &big);
    }
    kv.put("small", "fine");
    let op = env.operator(&[]).await;
    env.secretref(
        "small",
        json!({"storeRef": {"name": "vault"}, "data": [{"secretKey": "v", "remoteRef": {"key": "small", "property": "v"}}]}),
    )
    .await;
    env.wait_ready("small", "True", "Synced").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = op.peak_rss_kib().expect("operator VmHWM");
    let data: Vec<_> = (0..12)
        .map(|i| json!({"secretKey": format!("k{i}"), "remoteRef": {"key": format!("big/{i}"), "property": "v"}}))
        .collect();
    env.secretref(
        "huge",
        json!({"storeRef": {"name": "vault"}, "refreshInterval": "5s", "data": data}),
    )
    .await;
    let (_, _, msg) = env.wait_ready("huge", "False", "SecretTooLarge").await;
    assert!(!msg.contains("xxxx"), "{msg}");
    // A few more rounds of the attack (refreshes and backoff steps).
    tokio::time::sleep(Duration::from_secs(15)).await;
    let after = op.peak_rss_kib().expect("operator VmHWM");
    let grew = after.saturating_sub(before) / 1024;
    eprintln!(
        "operator peak RSS: {} MiB before, {} MiB after the 12 x 6 MB attack",
        before / 1024,
        after / 1024
    );
    assert!(
        grew <= 32,
        "peak RSS grew by {grew} MiB under the oversized-answer attack"
    );
    assert!(env.secret("huge").await.is_none());
    env.wait_ready("small", "True", "Synced").await;
    env.cleanup().await;
}

/// DESIGN §2.10: events fit the API server's limits (an `events.k8s.io/v1` note is at most 1,024
/// bytes, which a rotation of 80 keys used to exceed: the real API server refused the Rotated event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_of_many_keys_is_announced_within_the_note_limit() {
    let env = Env::start("bignote").await;
    let _op = env.operator(&[]).await;
    let keys: Vec<String> = (0..80)
        .map(|i| format!("a-rather-long-key-name-{i:03}"))
        .collect();
    let apply_store = |version: &'static str| {
        let entries: Vec<(String, String)> = keys
            .iter()
            .map(|k| (k.clone(), format!("value-{version}-{k}")))
            .collect();
        let env = &env;
        async move {
            let e: Vec<(&str, &str, &str)> = entries
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str(), version))
                .collect();
            env.fake_store("store", &e).await;
        }
    };
    apply_store("1").await;
    let data: Vec<_> = keys
        .iter()
        .map(|k| json!({"secretKey": k, "remoteRef": {"key": k}}))
        .collect();
    env.secretref("many", json!({"storeRef": {"name": "store"}, "data": data}))
        .await;
    env.wait_ready("many", "True", "Synced").await;
    apply_store("2").await;
    let notes = eventually(Duration::from_secs(20), "Rotated event", || async {
        let n: Vec<String> = env
            .events_for("many")
            .await
            .into_iter()
            .filter(|e| e.0 == "Rotated")
            .map(|e| e.2)
            .collect();
        (!n.is_empty()).then_some(n)
    })
    .await;
    let note = &notes[0];
    assert!(note.len() <= 1024, "{} bytes", note.len());
    assert!(
        note.contains("80"),
        "the note names how many keys changed: {note}"
    );
    assert!(note.contains("a-rather-long-key-name-000"), "{note}");
    env.cleanup().await;
}

/// A refused event write is a warning and a metric, never silent. Emulator only: it injects a
/// failure into event writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_event_writes_are_logged_and_counted() {
    let env = Env::start_emulated("eventfail").await;
    let emu = env.emulator.clone().expect("emulator");
    emu.faults().add(
        testkit::FaultRule::new(testkit::FaultAction::InternalError)
            .resource("events")
            .verb("create")
            .times(1 << 20),
    );
    let metrics = free_port();
    let metrics_s = format!("127.0.0.1:{metrics}");
    let op = env.operator(&["--metrics-addr", &metrics_s]).await;
    env.fake_store("store", &[("k", "v", "1")]).await;
    env.secretref(
        "s",
        json!({"storeRef": {"name": "store"}, "data": [{"secretKey": "k", "remoteRef": {"key": "k"}}]}),
    )
    .await;
    env.wait_ready("s", "True", "Synced").await;
    let text = eventually(Duration::from_secs(10), "event failure metric", || async {
        let t = scrape_metrics(metrics).await;
        t.lines()
            .any(|l| l.starts_with("secretsync_event_write_failures_total") && !l.ends_with(" 0"))
            .then_some(t)
    })
    .await;
    assert!(text.contains("reason=\"Synced\""), "{text}");
    assert!(
        op.logs().contains("publishing event failed") && op.logs().contains("\"level\":\"WARN\""),
        "no warning logged"
    );
    env.cleanup().await;
}

/// One tenant's slow store endpoint does not delay every other store's check: stores are checked
/// concurrently, each with a deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_store_does_not_delay_other_store_checks() {
    let env = Env::start("slowstore").await;
    // An endpoint that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow_url = format!("http://{}", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let kv = VaultKv::start().await;
    env.create::<Secret>(
        json!({"metadata": {"name": "vault-token"}, "stringData": {"token": "t"}}),
    )
    .await;
    let store = |name: &str, url: &str| {
        json!({"apiVersion": "secretsync.io/v1alpha1", "kind": "SecretStore", "metadata": {"name": name},
               "spec": {"provider": {"vault": {"server": url, "path": "secret", "version": "v2",
                        "auth": {"token": {"secretRef": {"name": "vault-token", "key": "token"}}}}}}})
    };
    for i in 0..3 {
        let name = format!("slow-{i}");
        env.apply::<SecretStore>(&name, store(&name, &slow_url))
            .await;
    }
    let _op = env.operator(&[]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t = Instant::now();
    env.apply::<SecretStore>("fast", store("fast", &kv.url))
        .await;
    let stores: Api<SecretStore> = env.api();
    eventually(Duration::from_secs(30), "fast store Ready", || async {
        let st = stores.get("fast").await.ok()?.status?;
        st.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    })
    .await;
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "the healthy store's check waited {took:?} behind slow stores"
    );
    hold.abort();
    env.cleanup().await;
}
