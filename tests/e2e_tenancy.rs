//! Tenancy exploit suite (DESIGN §2.11): reproductions of every class of cross-namespace advisory the
//! External Secrets Operator has had, against the real binary running cluster-wide (the chart's
//! cluster scope) with its own controller namespace.
//!
//! Three namespaces: the attacker's (`env`), a victim's holding a store, credentials and a Secret
//! with a sentinel value, and the controller's. A tripwire on the emulator counts every request into
//! the victim's namespace after setup: it must stay at zero (no cross-namespace read or write), the
//! victim's objects must be unchanged, every exploit must end with `Ready=False` and its denial reason,
//! a Warning event and an audit `deny` record, and the sentinel must appear nowhere (logs at debug,
//! events, status, metrics, audit). Tests in `e2e_core.rs` (`tenancy_denials`,
//! `creation_and_deletion_policies`) cover the basic forms; this file covers the exploit variants.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Env, SENTINEL, Tripwire, audit_records, decoded, leak_scan};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use secretsync::api::{ClusterSecretStore, SecretStore};
use serde_json::json;
use testkit::net::free_port;

/// One exploit: the SecretRef that tries it, and the reason it must be denied with.
struct Exploit {
    sref: &'static str,
    reason: &'static str,
    /// Whether the refusal is audited as a `deny` record (provider-side failures are not refusals).
    audited: bool,
}

const fn x(sref: &'static str, reason: &'static str) -> Exploit {
    Exploit {
        sref,
        reason,
        audited: true,
    }
}

async fn create_secret(env: &Env, ns: &str, obj: serde_json::Value) {
    let api: Api<Secret> = Api::namespaced(env.client.clone(), ns);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(obj).unwrap(),
    )
    .await
    .expect("create secret");
}

async fn victim_snapshot(env: &Env, ns: &str) -> Vec<String> {
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), ns);
    let mut v: Vec<String> = secrets
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| {
            format!(
                "{}:{:?}:{:?}",
                s.metadata.name.clone().unwrap_or_default(),
                s.metadata.resource_version,
                decoded(s)
            )
        })
        .collect();
    v.sort();
    v
}

/// Whether the API server admitted an exploit object. The API server refuses fields the CRD's schema
/// lacks (server-side apply prunes nothing; the emulator does the same) and, on a real API server,
/// values its CEL rules forbid, before the controller ever sees them: then the refusal must name
/// `field`. What is admitted, the controller must refuse itself.
fn admitted(env: &Env, what: &str, res: Result<(), kube::Error>, field: &str) -> bool {
    let _ = env;
    match res {
        Ok(()) => true,
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(field),
                "{what}: refused by the API server, but not for {field}: {msg}"
            );
            eprintln!("{what}: refused by the API server ({field})");
            false
        }
    }
}

/// Checks the denial trail of every exploit: condition, Warning event, audit record, no target Secret.
async fn assert_denied(env: &Env, audit: &std::path::Path, exploits: &[Exploit]) {
    for e in exploits {
        let (_, _, msg) = env.wait_ready(e.sref, "False", e.reason).await;
        assert!(!msg.contains(SENTINEL), "{}: {msg}", e.sref);
        common::eventually(
            Duration::from_secs(10),
            &format!("{}: Warning event", e.sref),
            || async {
                env.events_for(e.sref)
                    .await
                    .iter()
                    .any(|ev| ev.1 == "Warning")
                    .then_some(())
            },
        )
        .await;
        if e.audited {
            let who = format!("{}/{}", env.ns, e.sref);
            common::eventually(
                Duration::from_secs(10),
                &format!("{}: audit deny record", e.sref),
                || async {
                    audit_records(audit)
                        .iter()
                        .any(|r| {
                            r["action"] == "deny"
                                && r["secretRef"].as_str() == Some(who.as_str())
                                && r["outcome"] == e.reason
                        })
                        .then_some(())
                },
            )
            .await;
        }
    }
}

struct Setup {
    env: Env,
    victim: Env,
    ctl: Env,
    audit: PathBuf,
    metrics: u16,
    op: common::Operator,
    wire: Option<Tripwire>,
    before: Vec<String>,
}

async fn setup(prefix: &str) -> Setup {
    // Cluster-wide operator and ClusterSecretStores: alone on a shared API.
    let env = Env::start_exclusive(prefix).await;
    let victim = Env::start_in(&env, "victim").await;
    let ctl = Env::start_in(&env, "ctl").await;
    // The victim: a store, credentials and a synced-looking Secret, all holding the sentinel.
    victim
        .fake_store("victim-store", &[("/db", SENTINEL, "1")])
        .await;
    for name in ["victim-token", "victim-aws"] {
        create_secret(
            &env,
            &victim.ns,
            json!({"metadata": {"name": name}, "stringData": {"token": SENTINEL, "access-key-id": SENTINEL, "secret-access-key": SENTINEL}}),
        )
        .await;
    }
    create_secret(
        &env,
        &victim.ns,
        json!({"metadata": {"name": "victim-db", "labels": {"app.kubernetes.io/managed-by": "secretsync", "secretsync.io/secretref": "db"}}, "stringData": {"password": SENTINEL}}),
    )
    .await;
    let audit = env.dir.path().join("audit.jsonl");
    let metrics = free_port();
    let metrics_s = format!("127.0.0.1:{metrics}");
    let op = env
        .operator_cluster_wide(&[
            "--pod-namespace",
            &ctl.ns,
            "--audit-file",
            audit.to_str().unwrap(),
            "--metrics-addr",
            &metrics_s,
        ])
        .await;
    let before = victim_snapshot(&env, &victim.ns).await;
    let wire = Tripwire::arm(&env, &victim.ns);
    Setup {
        env,
        victim,
        ctl,
        audit,
        metrics,
        op,
        wire,
        before,
    }
}

/// Zero requests into the victim's namespace, its objects unchanged, no sentinel anywhere.
async fn assert_isolated(s: &Setup) -> u64 {
    let hits = match &s.wire {
        Some(w) => w.hits().await,
        None => 0,
    };
    assert_eq!(
        hits, 0,
        "requests reached the victim's namespace {}",
        s.victim.ns
    );
    // (Read after the tripwire check: the snapshot itself is a request into the namespace.)
    assert_eq!(
        s.before,
        victim_snapshot(&s.env, &s.victim.ns).await,
        "the victim's Secrets changed"
    );
    if let Some(w) = &s.wire {
        assert!(w.hits().await >= 1, "the tripwire does not count requests");
    }
    let report = leak_scan(
        &s.env,
        &[&s.env.ns, &s.victim.ns, &s.ctl.ns],
        &[s.op.logs()],
        Some(s.metrics),
        Some(&s.audit),
        &[SENTINEL],
    )
    .await;
    assert!(report.scanned > 0);
    assert!(
        report.hits.is_empty(),
        "sentinel leaked: {:#?}",
        report.hits
    );
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_stores_and_credentials_never_cross_namespaces() {
    let s = setup("tnstore").await;
    let (env, victim) = (&s.env, &s.victim);
    let data = |store: &str| json!({"storeRef": {"name": store}, "data": [{"secretKey": "k", "remoteRef": {"key": "/db"}}]});
    // 1. A SecretStore that exists only in the victim's namespace.
    env.secretref("xns-store", data("victim-store")).await;
    // 2. The same with a `namespace` field smuggled into storeRef (no such field: ignored, or refused
    // by a real API server's schema).
    let xns_field = admitted(
        env,
        "xns-store-field",
        env.try_secretref(
            "xns-store-field",
            json!({"storeRef": {"name": "victim-store", "namespace": victim.ns}, "data": [{"secretKey": "k", "remoteRef": {"key": "/db"}}]}),
        )
        .await,
        "spec.storeRef.namespace",
    );
    // 3.–5. Stores in the attacker's namespace whose credentials point into the victim's namespace.
    let store = |name: &str, provider: serde_json::Value| json!({"apiVersion": "secretsync.io/v1alpha1", "kind": "SecretStore", "metadata": {"name": name}, "spec": {"provider": provider}});
    let mut stores = Vec::new();
    for (name, provider, field) in [
        (
            "vault-xns",
            json!({"vault": {"server": "http://127.0.0.1:1", "path": "secret", "version": "v2",
                "auth": {"token": {"secretRef": {"name": "victim-token", "key": "token", "namespace": victim.ns}}}}}),
            "secretRef.namespace",
        ),
        (
            "aws-xns",
            json!({"aws": {"region": "eu-central-1", "endpoint": "http://127.0.0.1:1",
                "auth": {"secretRef": {"accessKeyId": {"name": "victim-aws", "key": "access-key-id", "namespace": victim.ns},
                                       "secretAccessKey": {"name": "victim-aws", "key": "secret-access-key", "namespace": victim.ns}}}}}),
            ".namespace",
        ),
        (
            "sa-xns",
            json!({"vault": {"server": "http://127.0.0.1:1", "path": "secret", "version": "v2",
                "auth": {"kubernetes": {"role": "r", "serviceAccountRef": {"name": "default", "namespace": victim.ns}}}}}),
            "serviceAccountRef.namespace",
        ),
    ] {
        let res = env
            .try_apply::<SecretStore>(name, store(name, provider))
            .await;
        if admitted(env, name, res, field) {
            stores.push(name);
        }
    }
    // 6. A tenant store borrowing the controller's own identity (no serviceAccountRef).
    env.apply::<SecretStore>(
        "ambient",
        store(
            "ambient",
            json!({"vault": {"server": "http://127.0.0.1:1", "path": "secret", "version": "v2",
                "auth": {"kubernetes": {"role": "controller"}}}}),
        ),
    )
    .await;
    // 7. A tenant file store reading a file of the controller's filesystem (here a JSON file whose
    // parse error would quote the sentinel).
    let file = env.dir.path().join("controller-file.json");
    std::fs::write(
        &file,
        format!(r#"{{"format": "secretsync-file-store", "version": "{SENTINEL}"}}"#),
    )
    .unwrap();
    create_secret(
        env,
        &env.ns,
        json!({"metadata": {"name": "mk"}, "stringData": {"k1": "x"}}),
    )
    .await;
    env.apply::<SecretStore>(
        "file-path",
        store(
            "file-path",
            json!({"file": {"path": file.to_str().unwrap(), "masterKeySecretRef": {"name": "mk"}}}),
        ),
    )
    .await;
    // 6b. A tenant AWS store without credentials: the controller's own AWS identity (the SDK
    // default chain), which only cluster stores and stores in the controller's namespace may use.
    env.apply::<SecretStore>(
        "aws-ambient",
        store(
            "aws-ambient",
            json!({"aws": {"region": "eu-central-1", "endpoint": "http://127.0.0.1:1"}}),
        ),
    )
    .await;
    stores.extend(["ambient", "aws-ambient", "file-path"]);
    for st in &stores {
        env.secretref(&format!("use-{st}"), data(st)).await;
    }
    // 8. A target in another namespace (no such field: the Secret lands in the SecretRef's namespace,
    // or a real API server refuses the field).
    env.fake_store("own", &[("/db", "own-value", "1")]).await;
    let target_xns = admitted(
        env,
        "target-xns",
        env.try_secretref(
            "target-xns",
            json!({"storeRef": {"name": "own"}, "target": {"name": "stolen", "namespace": victim.ns}, "data": [{"secretKey": "k", "remoteRef": {"key": "/db"}}]}),
        )
        .await,
        "spec.target.namespace",
    );
    // 9. A target name aiming at another namespace.
    let target_slash = admitted(
        env,
        "target-slash",
        env.try_secretref(
            "target-slash",
            json!({"storeRef": {"name": "own"}, "target": {"name": format!("{}/victim-db", victim.ns)}, "data": [{"secretKey": "k", "remoteRef": {"key": "/db"}}]}),
        )
        .await,
        "spec.target.name",
    );

    let mut exploits = vec![x("xns-store", "StoreNotFound")];
    if xns_field {
        exploits.push(x("xns-store-field", "StoreNotFound"));
    }
    for (st, sref) in [("vault-xns", "use-vault-xns"), ("aws-xns", "use-aws-xns")] {
        if stores.contains(&st) {
            exploits.push(x(sref, "InvalidStoreConfig"));
        }
    }
    exploits.push(x("use-ambient", "InvalidStoreConfig"));
    exploits.push(x("use-aws-ambient", "InvalidStoreConfig"));
    exploits.push(x("use-file-path", "InvalidStoreConfig"));
    if target_slash {
        exploits.push(x("target-slash", "InvalidSpec"));
    }
    assert_denied(env, &s.audit, &exploits).await;
    // The service-account exploit fails at the provider (its token is requested in the store's own
    // namespace, then the login fails): not a refusal, but no request reaches the victim either.
    if stores.contains(&"sa-xns") {
        let (st, _, _) =
            common::eventually(Duration::from_secs(30), "use-sa-xns fails", || async {
                env.ready("use-sa-xns").await.filter(|r| r.0 == "False")
            })
            .await;
        assert_eq!(st, "False");
    }
    let (_, _, msg) = env
        .wait_ready("use-file-path", "False", "InvalidStoreConfig")
        .await;
    assert!(msg.contains("file.path"), "{msg}");
    if target_xns {
        env.wait_ready("target-xns", "True", "Synced").await;
        assert_eq!(
            decoded(
                &env.secret("stolen")
                    .await
                    .expect("written in its own namespace")
            )["k"],
            "own-value"
        );
    }
    for e in &exploits {
        assert!(env.secret(e.sref).await.is_none());
    }
    let hits = assert_isolated(&s).await;
    eprintln!(
        "tenancy: {} exploits tried (+ use-sa-xns, target-xns), {hits} requests into the victim namespace",
        exploits.len()
    );
    s.victim.cleanup().await;
    s.ctl.cleanup().await;
    s.env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_store_conditions_and_prefixes_hold() {
    let s = setup("tncss").await;
    let (env, victim) = (&s.env, &s.victim);
    let css: Api<ClusterSecretStore> = Api::all(env.client.clone());
    let (t, v) = (env.ns.clone(), victim.ns.clone());
    let try_css = |name: String, spec: serde_json::Value| {
        let css = css.clone();
        async move {
            css.patch(
                &name,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(json!({"apiVersion": "secretsync.io/v1alpha1", "kind": "ClusterSecretStore", "metadata": {"name": name}, "spec": spec})),
            )
            .await
            .map(|_| ())
        }
    };
    let apply_css = |name: String, spec: serde_json::Value| {
        let f = try_css(name, spec);
        async move { f.await.unwrap() }
    };
    let fake = json!({"fake": {"data": [
        {"key": format!("/t/{t}/a"), "value": "tenant-a"},
        {"key": format!("/t/{v}/db"), "value": SENTINEL},
    ]}});
    // 10. A cluster store whose conditions select the victim (by label and by name) only.
    let excl = format!("excl-{t}");
    apply_css(
        excl.clone(),
        json!({"provider": fake, "conditions": [{"namespaceSelector": {"matchLabels": {"team": "victim"}}, "namespaces": [v]}]}),
    )
    .await;
    env.secretref(
        "css-excluded",
        json!({"storeRef": {"name": excl, "kind": "ClusterSecretStore"}, "data": [{"secretKey": "k", "remoteRef": {"key": format!("/t/{v}/db")}}]}),
    )
    .await;
    // 11.–16. A cluster store admitting the tenant for its own prefix only.
    let pfx = format!("pfx-{t}");
    apply_css(
        pfx.clone(),
        json!({"provider": fake, "conditions": [{"namespaces": [t], "allowedKeyPrefixes": ["/t/{namespace}/"]}]}),
    )
    .await;
    let via = |body: serde_json::Value| {
        let mut b = body;
        b["storeRef"] = json!({"name": pfx, "kind": "ClusterSecretStore"});
        b
    };
    let item = |key: String| via(json!({"data": [{"secretKey": "k", "remoteRef": {"key": key}}]}));
    env.secretref("pfx-foreign-key", item(format!("/t/{v}/db")))
        .await;
    env.secretref("pfx-traversal", item(format!("/t/{t}/../{v}/db")))
        .await;
    env.secretref(
        "pfx-encoded-traversal",
        item(format!("/t/{t}/%2e%2e/{v}/db")),
    )
    .await;
    env.secretref(
        "pfx-extract",
        via(json!({"dataFrom": [{"extract": {"key": format!("/t/{v}/db")}}]})),
    )
    .await;
    env.secretref(
        "pfx-find-path",
        via(json!({"dataFrom": [{"find": {"path": format!("/t/{v}/")}}]})),
    )
    .await;
    env.secretref(
        "pfx-find-all",
        via(json!({"dataFrom": [{"find": {"name": {"regexp": ".*"}}}]})),
    )
    .await;
    env.secretref(
        "pfx-find-sibling",
        via(json!({"dataFrom": [{"find": {"path": format!("/t/{t}")}}]})),
    )
    .await;
    // The legitimate use still works.
    env.secretref("pfx-own", item(format!("/t/{t}/a"))).await;
    // 17. A cluster store whose credentials name the victim's namespace: read from the controller's.
    let cred = format!("cred-{t}");
    let cred_admitted = admitted(
        env,
        "css-cred-xns",
        try_css(
            cred.clone(),
            json!({"provider": {"vault": {"server": "http://127.0.0.1:1", "path": "secret", "version": "v2",
                "auth": {"token": {"secretRef": {"name": "victim-token", "key": "token", "namespace": v}}}}},
                "conditions": [{"namespaces": [t]}]}),
        )
        .await,
        "secretRef.namespace",
    );
    if cred_admitted {
        env.secretref(
            "css-cred-xns",
            json!({"storeRef": {"name": cred, "kind": "ClusterSecretStore"}, "data": [{"secretKey": "k", "remoteRef": {"key": "/db"}}]}),
        )
        .await;
    }

    let mut exploits = vec![
        x("css-excluded", "NamespaceNotAllowed"),
        x("pfx-foreign-key", "KeyNotAllowed"),
        x("pfx-traversal", "KeyNotAllowed"),
        x("pfx-extract", "KeyNotAllowed"),
        x("pfx-find-path", "KeyNotAllowed"),
        x("pfx-find-all", "KeyNotAllowed"),
        x("pfx-find-sibling", "KeyNotAllowed"),
    ];
    if cred_admitted {
        exploits.push(x("css-cred-xns", "InvalidStoreConfig"));
    }
    assert_denied(env, &s.audit, &exploits).await;
    // A percent-encoded traversal is a literal key name (no provider decodes it into a path here):
    // it is inside the prefix and simply does not exist.
    env.wait_ready("pfx-encoded-traversal", "False", "RemoteKeyNotFound")
        .await;
    env.wait_ready("pfx-own", "True", "Synced").await;
    assert_eq!(
        decoded(&env.secret("pfx-own").await.unwrap())["k"],
        "tenant-a"
    );
    // The refused key is named in the audit record.
    let recs = audit_records(&s.audit);
    assert!(recs.iter().any(|r| r["action"] == "deny"
        && r["outcome"] == "KeyNotAllowed"
        && r["remoteKey"].as_str() == Some(format!("/t/{v}/db").as_str())));
    for e in &exploits {
        assert!(env.secret(e.sref).await.is_none());
    }
    let hits = assert_isolated(&s).await;
    eprintln!(
        "tenancy: {} cluster-store exploits tried (+ encoded traversal), {hits} requests into the victim namespace",
        exploits.len()
    );
    for n in [excl, pfx, cred] {
        let _ = css.delete(&n, &DeleteParams::default()).await;
    }
    s.victim.cleanup().await;
    s.ctl.cleanup().await;
    s.env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_and_templates_cannot_escape() {
    let s = setup("tntarget").await;
    let env = &s.env;
    env.fake_store("own", &[("/db", SENTINEL, "1")]).await;
    let with = |target: serde_json::Value| json!({"storeRef": {"name": "own"}, "target": target, "data": [{"secretKey": "k", "remoteRef": {"key": "/db"}}]});
    // 18. A service-account-token target (a real API server's CEL rule refuses it at once).
    let sa_type = admitted(
        env,
        "sa-token-type",
        env.try_secretref(
            "sa-token-type",
            with(json!({"name": "sa-token", "type": "kubernetes.io/service-account-token"})),
        )
        .await,
        "spec.target.type",
    );
    // 19. Merging keys into an existing service-account token Secret (of an existing account: a
    // real cluster's token controller deletes token Secrets of accounts that do not exist).
    env.api::<k8s_openapi::api::core::v1::ServiceAccount>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "builder"}})).unwrap(),
        )
        .await
        .unwrap();
    create_secret(
        env,
        &env.ns,
        json!({"metadata": {"name": "builder-token", "annotations": {"kubernetes.io/service-account.name": "builder"}},
               "type": "kubernetes.io/service-account-token", "stringData": {"token": "issued-by-kubernetes"}}),
    )
    .await;
    env.secretref(
        "sa-token-merge",
        with(json!({"name": "builder-token", "creationPolicy": "Merge"})),
    )
    .await;
    // 20. Taking over a Secret that another SecretRef owns (and one with forged ownership labels).
    create_secret(
        env,
        &env.ns,
        json!({"metadata": {"name": "team-b-db", "labels": {"app.kubernetes.io/managed-by": "secretsync", "secretsync.io/secretref": "team-b"}},
               "stringData": {"password": "team-b-value"}}),
    )
    .await;
    env.secretref("hijack", with(json!({"name": "team-b-db"})))
        .await;
    // 20b. Forging ownership through a Merge's labels (a real API server's CEL rule refuses it at
    // once), then a Delete SecretRef claiming the Secret: neither may mark, take or delete it.
    let forge = admitted(
        env,
        "forge-merge",
        env.try_secretref(
            "forge-merge",
            with(json!({"name": "team-b-db", "creationPolicy": "Merge",
                        "labels": {"app.kubernetes.io/managed-by": "secretsync", "secretsync.io/secretref": "deleter"}})),
        )
        .await,
        "spec.target.labels",
    );
    env.secretref(
        "deleter",
        with(json!({"name": "team-b-db", "deletionPolicy": "Delete"})),
    )
    .await;
    // 21.–27. Templates that try to read files, the API, the network, or run away.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let api = env
        .emulator
        .as_ref()
        .map(|e| e.url())
        .unwrap_or_else(|| "https://kubernetes.default.svc".into());
    let templates: Vec<(&str, String)> =
        vec![
        ("tpl-include", r#"{% include "/etc/passwd" %}"#.into()),
        ("tpl-import", r#"{% import "/etc/hostname" as h %}{{ h }}"#.into()),
        ("tpl-extends", r#"{% extends "/etc/passwd" %}"#.into()),
        (
            "tpl-network",
            format!(r#"{{{{ http_get("http://127.0.0.1:{port}/") }}}}"#),
        ),
        (
            "tpl-api",
            format!(
                r#"{{{{ fetch("{api}/api/v1/namespaces/{}/secrets/victim-db") }}}}"#,
                s.victim.ns
            ),
        ),
        ("tpl-lookup", r#"{{ lookup("file", "/etc/passwd") }}"#.into()),
        ("tpl-env", r#"{{ env("HOME") }}{{ environ }}"#.into()),
        ("tpl-python", r#"{{ k.__class__.__mro__ }}"#.into()),
        (
            "tpl-runaway",
            "{% for i in range(10000) %}{% for j in range(10000) %}{{ k }}{% endfor %}{% endfor %}"
                .into(),
        ),
    ];
    for (name, tpl) in &templates {
        env.secretref(name, with(json!({"template": {"data": {"out": tpl}}})))
            .await;
    }
    let mut exploits = vec![
        x("sa-token-merge", "TargetTypeMismatch"),
        x("hijack", "TargetConflict"),
        x("deleter", "TargetConflict"),
    ];
    if forge {
        exploits.push(x("forge-merge", "InvalidSpec"));
    }
    if sa_type {
        exploits.push(x("sa-token-type", "InvalidSpec"));
    }
    for (name, tpl) in &templates {
        // Syntax-level refusals (include/import/extends of a loader that does not exist) are caught by
        // validation before any value is read; the rest when rendering.
        let _ = tpl;
        exploits.push(Exploit {
            sref: name,
            reason: "TemplateFailed",
            audited: true,
        });
    }
    // Validation may already refuse some templates as InvalidSpec: accept either, but nothing rendered.
    for e in exploits.iter_mut() {
        if e.reason == "TemplateFailed" {
            let r = common::eventually(Duration::from_secs(30), e.sref, || async {
                env.ready(e.sref).await.filter(|r| r.0 == "False")
            })
            .await;
            assert!(
                r.1 == "TemplateFailed" || r.1 == "InvalidSpec",
                "{}: {r:?}",
                e.sref
            );
            e.reason = if r.1 == "InvalidSpec" {
                "InvalidSpec"
            } else {
                "TemplateFailed"
            };
        }
    }
    assert_denied(env, &s.audit, &exploits).await;
    assert!(
        listener.accept().is_err(),
        "a template opened a network connection"
    );
    let tok = env.secret("builder-token").await.unwrap();
    assert_eq!(
        tok.type_.as_deref(),
        Some("kubernetes.io/service-account-token")
    );
    assert!(
        !decoded(&tok).contains_key("k"),
        "a key was merged into a token Secret"
    );
    if !env.is_real() {
        // (A real cluster's token controller fills in its own token.)
        assert_eq!(
            decoded(&tok),
            [("token".to_string(), "issued-by-kubernetes".to_string())].into()
        );
    }
    assert_eq!(
        decoded(&env.secret("team-b-db").await.unwrap())["password"],
        "team-b-value"
    );
    // The Delete SecretRef goes: the Secret it claimed stays, its labels untouched.
    env.api::<secretsync::api::SecretRef>()
        .delete("deleter", &DeleteParams::default())
        .await
        .unwrap();
    common::eventually(Duration::from_secs(20), "deleter gone", || async {
        env.sref("deleter").await.is_none().then_some(())
    })
    .await;
    let tb = env.secret("team-b-db").await.expect("team-b-db survives");
    assert_eq!(decoded(&tb)["password"], "team-b-value");
    assert_eq!(
        tb.metadata.labels.unwrap_or_default()["secretsync.io/secretref"],
        "team-b"
    );
    assert!(env.secret("sa-token").await.is_none());
    for (name, _) in &templates {
        assert!(env.secret(name).await.is_none(), "{name} was written");
    }
    let hits = assert_isolated(&s).await;
    eprintln!(
        "tenancy: {} target/template exploits tried, {hits} requests into the victim namespace",
        exploits.len()
    );
    s.victim.cleanup().await;
    s.ctl.cleanup().await;
    s.env.cleanup().await;
}
