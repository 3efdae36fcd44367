//! The Vault provider against a real OpenBao dev server (`make test-deps` installs it), with a
//! fault-injecting proxy for what the dev server cannot do (5xx, 429, slow answers).

use std::sync::Arc;
use std::time::Duration;

use secretsync::providers::vault::{JwtSource, VaultAuthConfig, VaultConfig, VaultProvider};
use secretsync::providers::{FindQuery, Provider, ProviderError, RemoteRef};
use secretsync::value::SecretBytes;
use serde_json::json;
use testkit::doubles::bao::{Bao, Fault, FaultProxy, ROOT};

fn token_cfg(addr: &str, token: &str) -> VaultConfig {
    VaultConfig::new(
        "test-store",
        addr,
        "secret",
        VaultAuthConfig::Token(SecretBytes::from(token)),
    )
}

fn provider(cfg: VaultConfig) -> VaultProvider {
    VaultProvider::new(cfg).expect("provider")
}

fn approle_cfg(addr: &str, rid: &str, sid: &str) -> VaultConfig {
    VaultConfig::new(
        "test-store",
        addr,
        "secret",
        VaultAuthConfig::AppRole {
            mount: "approle".into(),
            role_id: rid.into(),
            secret_id: SecretBytes::from(sid),
        },
    )
}

fn at(key: &str, version: &str) -> RemoteRef {
    RemoteRef {
        key: key.into(),
        version: Some(version.into()),
    }
}

fn text(v: &SecretBytes) -> String {
    v.expose_str().expect("utf-8").to_string()
}

const READER: &str = r#"
path "secret/data/app/*" { capabilities = ["read"] }
path "secret/metadata/app/*" { capabilities = ["read", "list"] }
"#;

#[tokio::test]
async fn kv2_versions_metadata_property_and_deleted_versions() {
    let bao = Bao::start().await;
    bao.put("app/db", json!({"username": "app", "password": "one"}))
        .await;
    bao.put(
        "app/db",
        json!({"username": "app", "password": "two", "nested": {"port": 5432}}),
    )
    .await;
    let p = provider(token_cfg(&bao.addr, ROOT));

    let latest = p.get(&RemoteRef::latest("app/db")).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(latest.value.expose()).unwrap();
    assert_eq!(v["password"], "two");
    assert_eq!(v["nested"]["port"], 5432);
    assert_eq!(latest.meta.version.as_deref(), Some("2"));
    assert!(latest.meta.created.is_some());
    // A leading slash is the same key.
    let slash = p.get(&RemoteRef::latest("/app/db")).await.unwrap();
    assert_eq!(slash.meta.version.as_deref(), Some("2"));

    let one = p.get(&at("app/db", "1")).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(one.value.expose()).unwrap();
    assert_eq!(v["password"], "one");
    assert_eq!(one.meta.version.as_deref(), Some("1"));

    // property and extract, through the controller's pure builder.
    let spec: secretsync::api::SecretRefSpec = serde_json::from_value(json!({
        "storeRef": {"name": "vault"},
        "data": [
            {"secretKey": "password", "remoteRef": {"key": "app/db", "property": "password"}},
            {"secretKey": "port", "remoteRef": {"key": "app/db", "property": "nested.port"}},
            {"secretKey": "old", "remoteRef": {"key": "app/db", "property": "password", "version": "1"}}
        ],
        "dataFrom": [{"extract": {"key": "app/db"}}]
    }))
    .unwrap();
    let plan = secretsync::controller::desired::plan(&spec);
    let mut answers = secretsync::controller::desired::Answers::default();
    for r in plan.reads {
        let f = p.get(&r).await.unwrap();
        answers.values.insert(r, f);
    }
    let d = secretsync::controller::desired::build(
        "db",
        &spec,
        &answers,
        &secretsync::audit::HmacKey::new(vec![7; 32]),
    )
    .unwrap();
    assert_eq!(text(&d.data["password"]), "two");
    assert_eq!(text(&d.data["port"]), "5432");
    assert_eq!(text(&d.data["old"]), "one");
    assert_eq!(text(&d.data["username"]), "app");

    // Missing path, bad version, missing version.
    assert!(matches!(
        p.get(&RemoteRef::latest("app/nope")).await,
        Err(ProviderError::NotFound { .. })
    ));
    assert!(matches!(
        p.get(&at("app/db", "latest")).await,
        Err(ProviderError::InvalidConfig { .. })
    ));
    assert!(matches!(
        p.get(&at("app/db", "9")).await,
        Err(ProviderError::NotFound { .. })
    ));
    // A key escaping the mount is refused before any request.
    assert!(matches!(
        p.get(&RemoteRef::latest("app/../../sys/seal")).await,
        Err(ProviderError::InvalidConfig { .. })
    ));

    // Soft-deleted latest version: an error, never empty data, never not-found.
    bao.ok("DELETE", "secret/data/app/db", None).await;
    let e = p.get(&RemoteRef::latest("app/db")).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::InvalidResponse { message, .. } if message.contains("deleted")),
        "{e:?}"
    );
    assert_eq!(e.reason(), secretsync::api::Reason::InvalidRemoteValue);
    // The older version is still readable by number.
    assert!(p.get(&at("app/db", "1")).await.is_ok());
    // Undelete: readable again.
    bao.ok(
        "POST",
        "secret/undelete/app/db",
        Some(json!({"versions": [2]})),
    )
    .await;
    assert!(p.get(&RemoteRef::latest("app/db")).await.is_ok());
    // Destroyed.
    bao.ok(
        "POST",
        "secret/destroy/app/db",
        Some(json!({"versions": [2]})),
    )
    .await;
    let e = p.get(&RemoteRef::latest("app/db")).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::InvalidResponse { message, .. } if message.contains("destroyed")),
        "{e:?}"
    );
    // Metadata deleted: now authoritatively not found.
    bao.ok("DELETE", "secret/metadata/app/db", None).await;
    assert!(matches!(
        p.get(&RemoteRef::latest("app/db")).await,
        Err(ProviderError::NotFound { .. })
    ));
}

#[tokio::test]
async fn kv1_reads_find_and_refuses_versions_and_tags() {
    let bao = Bao::start().await;
    bao.ok(
        "POST",
        "sys/mounts/kv1",
        Some(json!({"type": "kv", "options": {"version": "1"}})),
    )
    .await;
    bao.ok("POST", "kv1/team/db", Some(json!({"password": "v1pw"})))
        .await;
    bao.ok("POST", "kv1/team/sub/api", Some(json!({"token": "t"})))
        .await;
    let mut cfg = token_cfg(&bao.addr, ROOT);
    cfg.mount = "kv1".into();
    cfg.kv_v2 = false;
    let p = provider(cfg);
    let f = p.get(&RemoteRef::latest("/team/db")).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(f.value.expose()).unwrap();
    assert_eq!(v["password"], "v1pw");
    assert_eq!(f.meta.version, None);
    assert!(matches!(
        p.get(&at("team/db", "1")).await,
        Err(ProviderError::InvalidConfig { .. })
    ));
    assert!(matches!(
        p.get(&RemoteRef::latest("team/none")).await,
        Err(ProviderError::NotFound { .. })
    ));
    let found = p
        .find(&FindQuery {
            path: Some("/team/".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found, vec!["/team/db", "/team/sub/api"]);
    assert!(matches!(
        p.find(&FindQuery {
            path: Some("team/".into()),
            tags: [("a".to_string(), "b".to_string())].into(),
            ..Default::default()
        })
        .await,
        Err(ProviderError::InvalidConfig { .. })
    ));
}

#[tokio::test]
async fn find_by_prefix_regexp_and_custom_metadata_tags() {
    let bao = Bao::start().await;
    for k in [
        "app/api-key",
        "app/db",
        "app/deep/api-other",
        "app/deep/deeper/x",
        "application/y",
        "other/z",
    ] {
        bao.put(k, json!({"v": k})).await;
    }
    for (k, team) in [
        ("app/api-key", "payments"),
        ("app/deep/deeper/x", "payments"),
        ("app/db", "search"),
    ] {
        bao.ok(
            "POST",
            &format!("secret/metadata/{k}"),
            Some(json!({"custom_metadata": {"team": team}})),
        )
        .await;
    }
    let p = provider(token_cfg(&bao.addr, ROOT));
    let q = |path: &str| FindQuery {
        path: Some(path.into()),
        ..Default::default()
    };
    assert_eq!(
        p.find(&q("app/")).await.unwrap(),
        vec![
            "app/api-key",
            "app/db",
            "app/deep/api-other",
            "app/deep/deeper/x"
        ]
    );
    // A prefix that is not a folder matches names and folders starting with it.
    assert_eq!(
        p.find(&q("app")).await.unwrap(),
        vec![
            "app/api-key",
            "app/db",
            "app/deep/api-other",
            "app/deep/deeper/x",
            "application/y"
        ]
    );
    assert_eq!(
        p.find(&q("/app/deep/")).await.unwrap(),
        vec!["/app/deep/api-other", "/app/deep/deeper/x"]
    );
    assert!(p.find(&q("missing/")).await.unwrap().is_empty());
    assert_eq!(
        p.find(&FindQuery {
            path: Some("app/".into()),
            name_regexp: Some("api-".into()),
            ..Default::default()
        })
        .await
        .unwrap(),
        vec!["app/api-key", "app/deep/api-other"]
    );
    assert_eq!(
        p.find(&FindQuery {
            path: Some("app/".into()),
            tags: [("team".to_string(), "payments".to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap(),
        vec!["app/api-key", "app/deep/deeper/x"]
    );
    // No path: the whole mount.
    assert_eq!(p.find(&FindQuery::default()).await.unwrap().len(), 6);

    // Depth bound.
    let deep = (0..12)
        .map(|i| format!("d{i}"))
        .collect::<Vec<_>>()
        .join("/");
    bao.put(&format!("deep/{deep}/leaf"), json!({"x": 1})).await;
    let e = p.find(&q("deep/")).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::InvalidConfig { message } if message.contains("10 folders")),
        "{e:?}"
    );
}

#[tokio::test]
async fn token_auth_and_a_denying_policy() {
    let bao = Bao::start().await;
    bao.put("app/db", json!({"password": "x"})).await;
    bao.put("admin/root", json!({"password": "y"})).await;
    bao.policy("reader", READER).await;
    let token = bao.token(&["reader"], json!({})).await;
    let p = provider(token_cfg(&bao.addr, &token));
    p.validate().await.unwrap();
    for _ in 0..10 {
        p.get(&RemoteRef::latest("app/db")).await.unwrap();
    }
    let e = p.get(&RemoteRef::latest("admin/root")).await.unwrap_err();
    assert!(matches!(e, ProviderError::AccessDenied { .. }), "{e:?}");
    assert_eq!(e.reason(), secretsync::api::Reason::AccessDenied);
    assert!(!e.to_string().contains(&token));
    assert_eq!(
        p.auth_stats().logins,
        1,
        "one token lookup, not one per read"
    );

    // A bad token: access denied at the first call, naming the store.
    let bad = provider(token_cfg(&bao.addr, "hvs.not-a-token"));
    let e = bad.get(&RemoteRef::latest("app/db")).await.unwrap_err();
    assert!(matches!(e, ProviderError::AccessDenied { .. }), "{e:?}");
    assert!(e.to_string().contains("test-store"), "{e}");
    assert!(!e.to_string().contains("hvs.not-a-token"));
}

#[tokio::test]
async fn approle_logs_in_once_over_many_reads_and_relogs_on_403() {
    let bao = Bao::start().await;
    bao.put("app/db", json!({"password": "x"})).await;
    bao.put("admin/root", json!({"password": "y"})).await;
    bao.policy("reader", READER).await;
    let (rid, sid) = bao
        .approle(
            "app",
            json!({"token_policies": ["reader"], "token_ttl": "1h"}),
        )
        .await;
    let proxy = FaultProxy::start(&bao.addr).await;
    let p = Arc::new(provider(approle_cfg(&proxy.addr, &rid, &sid)));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                p.get(&RemoteRef::latest("app/db")).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(p.auth_stats().logins, 1);
    assert_eq!(
        proxy.count("/v1/auth/approle/login"),
        1,
        "100 reads, one login"
    );

    // The token is revoked behind our back: the next read gets 403, logs in again, succeeds.
    bao.ok("PUT", "sys/leases/revoke-prefix/auth/approle", None)
        .await;
    p.get(&RemoteRef::latest("app/db")).await.unwrap();
    assert_eq!(proxy.count("/v1/auth/approle/login"), 2);

    // A policy denial does not turn into a login per read.
    for _ in 0..10 {
        let e = p.get(&RemoteRef::latest("admin/root")).await.unwrap_err();
        assert!(matches!(e, ProviderError::AccessDenied { .. }), "{e:?}");
    }
    assert_eq!(proxy.count("/v1/auth/approle/login"), 2);

    // A wrong secret id: access denied at login.
    let bad = provider(approle_cfg(
        &bao.addr,
        &rid,
        "00000000-0000-0000-0000-000000000000",
    ));
    let e = bad.get(&RemoteRef::latest("app/db")).await.unwrap_err();
    assert!(matches!(e, ProviderError::AccessDenied { .. }), "{e:?}");
    assert!(e.to_string().contains("approle"), "{e}");
    // The failure is remembered briefly: a burst of reads costs one login attempt.
    for _ in 0..5 {
        assert!(bad.get(&RemoteRef::latest("app/db")).await.is_err());
    }
    assert_eq!(bad.auth_stats().logins, 1);
}

#[tokio::test]
async fn short_ttl_tokens_are_renewed_then_replaced() {
    let bao = Bao::start().await;
    bao.put("app/db", json!({"password": "x"})).await;
    bao.policy("reader", READER).await;

    // Renewable, TTL 3 s, max TTL 1 min: renewed, never a second login.
    let (rid, sid) = bao
        .approle(
            "renew",
            json!({"token_policies": ["reader"], "token_ttl": "3s", "token_max_ttl": "60s"}),
        )
        .await;
    let p = provider(approle_cfg(&bao.addr, &rid, &sid));
    for _ in 0..14 {
        p.get(&RemoteRef::latest("app/db")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let s = p.auth_stats();
    assert_eq!(s.logins, 1, "{s:?}");
    assert!(s.renewals >= 2, "{s:?}");

    // Max TTL 3 s: renewal cannot extend it, so the provider logs in again before it ends.
    let (rid, sid) = bao
        .approle(
            "capped",
            json!({"token_policies": ["reader"], "token_ttl": "2s", "token_max_ttl": "3s"}),
        )
        .await;
    let p = provider(approle_cfg(&bao.addr, &rid, &sid));
    for _ in 0..16 {
        p.get(&RemoteRef::latest("app/db")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let s = p.auth_stats();
    assert!((2..=6).contains(&s.logins), "{s:?}");

    // Not renewable (batch token): a fresh login when it nears its end.
    let (rid, sid) = bao
        .approle(
            "batch",
            json!({"token_policies": ["reader"], "token_ttl": "3s", "token_type": "batch"}),
        )
        .await;
    let p = provider(approle_cfg(&bao.addr, &rid, &sid));
    for _ in 0..12 {
        p.get(&RemoteRef::latest("app/db")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let s = p.auth_stats();
    assert!((2..=4).contains(&s.logins), "{s:?}");
    assert_eq!(s.renewals, 0);
}

#[tokio::test]
async fn kubernetes_auth_against_the_emulator_token_review() {
    let emu = testkit::Emulator::start(testkit::EmulatorOptions::default())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let ns = "vault-k8s";
    let r = http
        .post(format!("{}/api/v1/namespaces", emu.url()))
        .json(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = http
        .post(format!(
            "{}/api/v1/namespaces/{ns}/serviceaccounts",
            emu.url()
        ))
        .json(
            &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}}),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    let bao = Bao::start().await;
    bao.put("app/db", json!({"password": "k8s"})).await;
    bao.policy("reader", READER).await;
    bao.kubernetes_auth(&emu.url(), None).await;
    bao.kubernetes_role("payments", "reader", ns, &["reader"])
        .await;

    let requested = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let jwt: JwtSource = {
        let (url, http, requested) = (emu.url(), http.clone(), requested.clone());
        Arc::new(move || {
            let (url, http, requested) = (url.clone(), http.clone(), requested.clone());
            Box::pin(async move {
                requested.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let v: serde_json::Value = http
                    .post(format!("{url}/api/v1/namespaces/{ns}/serviceaccounts/reader/token"))
                    .json(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}))
                    .send()
                    .await
                    .map_err(|e| ProviderError::Transient { message: e.to_string() })?
                    .json()
                    .await
                    .map_err(|e| ProviderError::Transient { message: e.to_string() })?;
                Ok(SecretBytes::from(
                    v["status"]["token"].as_str().unwrap_or(""),
                ))
            })
        })
    };
    let cfg = |role: &str| {
        VaultConfig::new(
            "k8s-store",
            &bao.addr,
            "secret",
            VaultAuthConfig::Kubernetes {
                mount: "kubernetes".into(),
                role: role.into(),
                jwt: jwt.clone(),
            },
        )
    };
    let p = provider(cfg("payments"));
    for _ in 0..20 {
        let f = p.get(&RemoteRef::latest("app/db")).await.unwrap();
        assert!(text(&f.value).contains("k8s"));
    }
    assert_eq!(p.auth_stats().logins, 1);
    assert_eq!(requested.load(std::sync::atomic::Ordering::SeqCst), 1);

    // An unknown role: access denied, naming the role.
    let wrong = provider(cfg("renamed"));
    let e = wrong.get(&RemoteRef::latest("app/db")).await.unwrap_err();
    assert!(matches!(e, ProviderError::AccessDenied { .. }), "{e:?}");
    assert!(e.to_string().contains("renamed"), "{e}");
    // A role bound to another service account: access denied.
    bao.kubernetes_role("other", "someone-else", ns, &["reader"])
        .await;
    let e = provider(cfg("other"))
        .get(&RemoteRef::latest("app/db"))
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::AccessDenied { .. }), "{e:?}");
}

#[tokio::test]
async fn seal_is_transient_and_unseal_recovers_without_a_rebuild() {
    let bao = Bao::start().await;
    bao.put("app/db", json!({"password": "x"})).await;
    bao.policy("reader", READER).await;
    let (rid, sid) = bao
        .approle(
            "app",
            json!({"token_policies": ["reader"], "token_ttl": "1h"}),
        )
        .await;
    let p = provider(approle_cfg(&bao.addr, &rid, &sid));
    p.get(&RemoteRef::latest("app/db")).await.unwrap();
    bao.seal().await;
    let e = p.get(&RemoteRef::latest("app/db")).await.unwrap_err();
    assert!(matches!(e, ProviderError::Transient { .. }), "{e:?}");
    assert_eq!(e.reason(), secretsync::api::Reason::ProviderUnavailable);
    assert!(e.to_string().contains("sealed"), "{e}");
    assert!(matches!(
        p.validate().await,
        Err(ProviderError::Transient { .. })
    ));
    bao.unseal().await;
    p.get(&RemoteRef::latest("app/db")).await.unwrap();
    p.validate().await.unwrap();
    assert_eq!(p.auth_stats().logins, 1, "the token survives the seal");
}

#[tokio::test]
async fn injected_faults_map_to_transient_and_throttled() {
    let bao = Bao::start().await;
    bao.put("app/db", json!({"password": "x"})).await;
    let proxy = FaultProxy::start(&bao.addr).await;
    let mut cfg = token_cfg(&proxy.addr, ROOT);
    cfg.request_timeout = Duration::from_millis(800);
    let p = provider(cfg);
    p.get(&RemoteRef::latest("app/db")).await.unwrap();

    for code in [500, 502, 503, 504] {
        proxy.set(Fault::Status(code, None));
        let e = p.get(&RemoteRef::latest("app/db")).await.unwrap_err();
        assert!(
            matches!(e, ProviderError::Transient { .. }),
            "{code}: {e:?}"
        );
        assert!(e.is_retryable());
    }
    proxy.set(Fault::Status(429, Some(7)));
    let e = p.get(&RemoteRef::latest("app/db")).await.unwrap_err();
    assert_eq!(
        e,
        ProviderError::Throttled {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    proxy.set(Fault::Status(403, None));
    assert!(matches!(
        p.get(&RemoteRef::latest("app/db")).await,
        Err(ProviderError::AccessDenied { .. })
    ));
    proxy.set(Fault::Status(400, None));
    assert!(matches!(
        p.get(&RemoteRef::latest("app/db")).await,
        Err(ProviderError::InvalidConfig { .. })
    ));
    proxy.set(Fault::Status(200, None));
    assert!(matches!(
        p.get(&RemoteRef::latest("app/db")).await,
        Err(ProviderError::InvalidResponse { .. })
    ));
    proxy.set(Fault::Delay(Duration::from_secs(3)));
    let start = std::time::Instant::now();
    let e = p.get(&RemoteRef::latest("app/db")).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::Transient { message } if message.contains("timed out")),
        "{e:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    proxy.set(Fault::Pass);
    p.get(&RemoteRef::latest("app/db")).await.unwrap();

    // Nothing listening: transient, quickly.
    let dead = provider(token_cfg("http://127.0.0.1:9", ROOT));
    assert!(matches!(
        dead.get(&RemoteRef::latest("app/db")).await,
        Err(ProviderError::Transient { .. })
    ));
}

#[tokio::test]
async fn vault_namespaces_use_the_namespace_header() {
    let bao = Bao::start().await;
    bao.ok("POST", "sys/namespaces/team-a", Some(json!({})))
        .await;
    let r = reqwest::Client::new()
        .post(format!("{}/v1/sys/mounts/secret", bao.addr))
        .header("X-Vault-Token", ROOT)
        .header("X-Vault-Namespace", "team-a")
        .json(&json!({"type": "kv", "options": {"version": "2"}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = reqwest::Client::new()
        .post(format!("{}/v1/secret/data/app/db", bao.addr))
        .header("X-Vault-Token", ROOT)
        .header("X-Vault-Namespace", "team-a")
        .json(&json!({"data": {"password": "in-namespace"}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let mut cfg = token_cfg(&bao.addr, ROOT);
    cfg.namespace = Some("team-a".into());
    let p = provider(cfg);
    let f = p.get(&RemoteRef::latest("app/db")).await.unwrap();
    assert!(text(&f.value).contains("in-namespace"));
    // The root namespace has no such secret.
    let root = provider(token_cfg(&bao.addr, ROOT));
    assert!(matches!(
        root.get(&RemoteRef::latest("app/db")).await,
        Err(ProviderError::NotFound { .. })
    ));
}

#[tokio::test]
async fn tls_with_a_per_store_ca_bundle() {
    let bao = Bao::start_tls().await;
    bao.put("app/db", json!({"password": "tls"})).await;
    let ca = std::fs::read(bao.ca_file.as_ref().unwrap()).unwrap();
    let mut cfg = token_cfg(&bao.addr, ROOT);
    cfg.ca_pem = Some(ca);
    let p = provider(cfg);
    let f = p.get(&RemoteRef::latest("app/db")).await.unwrap();
    assert!(text(&f.value).contains("tls"));
    // Without the CA the server is not trusted.
    let untrusted = provider(token_cfg(&bao.addr, ROOT));
    assert!(matches!(
        untrusted.get(&RemoteRef::latest("app/db")).await,
        Err(ProviderError::Transient { .. })
    ));
    // A CA bundle that is not PEM is a configuration error.
    let mut cfg = token_cfg(&bao.addr, ROOT);
    cfg.ca_pem = Some(b"not a certificate".to_vec());
    assert!(matches!(
        VaultProvider::new(cfg),
        Err(ProviderError::InvalidConfig { .. })
    ));
}
