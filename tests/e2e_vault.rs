//! End to end through the operator with a real OpenBao dev server: the real binary against the
//! Kubernetes API emulator (which also answers OpenBao's TokenReview for Kubernetes auth).

mod common;

use std::time::Duration;

use common::{Env, decoded};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::ResourceExt;
use kube::api::PostParams;
use secretsync::api::SecretStore;
use serde_json::json;
use testkit::doubles::bao::Bao;

const READER: &str = r#"
path "secret/data/app/*" { capabilities = ["read"] }
path "secret/metadata/app/*" { capabilities = ["read", "list"] }
"#;

fn sref_spec() -> serde_json::Value {
    json!({
        "storeRef": {"name": "vault"},
        "refreshInterval": "2s",
        "target": {"name": "db-credentials"},
        "data": [
            {"secretKey": "username", "remoteRef": {"key": "app/db", "property": "username"}},
            {"secretKey": "password", "remoteRef": {"key": "app/db", "property": "password"}}
        ]
    })
}

async fn vault_store(env: &Env, server: &str, auth: serde_json::Value) {
    env.apply::<SecretStore>(
        "vault",
        json!({
            "apiVersion": "secretsync.io/v1alpha1", "kind": "SecretStore",
            "metadata": {"name": "vault"},
            "spec": {"provider": {"vault": {"server": server, "path": "secret", "version": "v2", "auth": auth}}}
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_token_sync_rotation_seal_and_recovery() {
    let env = Env::start("vault").await;
    let bao = Bao::start().await;
    bao.put("app/db", json!({"username": "app", "password": "first-pw"}))
        .await;
    bao.policy("reader", READER).await;
    let token = bao.token(&["reader"], json!({})).await;
    env.api::<Secret>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "vault-token"}, "stringData": {"token": token}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let op = env.operator(&[]).await;
    vault_store(
        &env,
        &bao.addr,
        json!({"token": {"secretRef": {"name": "vault-token", "key": "token"}}}),
    )
    .await;
    env.secretref("db", sref_spec()).await;
    env.wait_ready("db", "True", "Synced").await;
    let d = decoded(&env.secret("db-credentials").await.expect("secret"));
    assert_eq!(d["username"], "app");
    assert_eq!(d["password"], "first-pw");
    let st = env.sref("db").await.unwrap().status.unwrap();
    assert!(
        st.synced_keys
            .iter()
            .any(|k| k.secret_key == "password" && k.version.as_deref() == Some("1"))
    );

    // A new version in Vault: the Secret follows, with exactly one Rotated event.
    bao.put(
        "app/db",
        json!({"username": "app", "password": "second-pw"}),
    )
    .await;
    env.wait_secret("db-credentials", |d| {
        d.get("password").map(String::as_str) == Some("second-pw")
    })
    .await;
    common::eventually(Duration::from_secs(10), "Rotated event", || async {
        (env.count_events("db", "Rotated").await >= 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        env.count_events("db", "Rotated").await,
        1,
        "exactly one Rotated event"
    );
    let rotated: Vec<_> = env
        .events_for("db")
        .await
        .into_iter()
        .filter(|e| e.0 == "Rotated")
        .collect();
    assert!(!rotated[0].2.contains("second-pw"), "{rotated:?}");

    // Sealed: the Secret stays as it was, Ready=False says the provider is unavailable.
    let before = env.secret("db-credentials").await.unwrap();
    bao.seal().await;
    let (_, _, msg) = env.wait_ready("db", "False", "ProviderUnavailable").await;
    assert!(msg.contains("sealed"), "{msg}");
    let after = env.secret("db-credentials").await.unwrap();
    assert_eq!(before.data, after.data);
    assert_eq!(before.resource_version(), after.resource_version());

    // Unsealed: recovery without restarting the operator.
    bao.unseal().await;
    env.wait_ready("db", "True", "Synced").await;
    assert_eq!(
        decoded(&env.secret("db-credentials").await.unwrap())["password"],
        "second-pw"
    );
    let logs = op.logs();
    assert!(!logs.contains("second-pw") && !logs.contains(&token));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_kubernetes_auth_role_rename_denies_then_recovers() {
    let env = Env::start("vaultk8s").await;
    // OpenBao asks the API server's TokenReview: the emulator's, or the real one's (TLS, with the
    // admin token as the reviewer).
    let (api_url, tls) = match (&env.emulator, env.control_plane) {
        (Some(emu), _) => (emu.url(), None),
        (None, Some(cp)) => (
            cp.url().to_string(),
            Some((cp.ca_pem().to_string(), cp.admin_token().to_string())),
        ),
        (None, None) => {
            eprintln!(
                "skipped on SECRETSYNC_E2E_KUBECONFIG: OpenBao would need that cluster's TokenReview"
            );
            return env.cleanup().await;
        }
    };
    env.api::<ServiceAccount>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "vault-reader"}})).unwrap(),
        )
        .await
        .unwrap();
    let bao = Bao::start().await;
    bao.put("app/db", json!({"username": "app", "password": "k8s-pw"}))
        .await;
    bao.policy("reader", READER).await;
    bao.kubernetes_auth(
        &api_url,
        tls.as_ref().map(|(c, t)| (c.as_str(), t.as_str())),
    )
    .await;
    bao.kubernetes_role("payments", "vault-reader", &env.ns, &["reader"])
        .await;
    let _op = env.operator(&[]).await;
    let auth = |role: &str| json!({"kubernetes": {"role": role, "serviceAccountRef": {"name": "vault-reader"}}});
    vault_store(&env, &bao.addr, auth("payments")).await;
    env.secretref("db", sref_spec()).await;
    env.wait_ready("db", "True", "Synced").await;
    assert_eq!(
        decoded(&env.secret("db-credentials").await.unwrap())["password"],
        "k8s-pw"
    );

    // The role is renamed in Vault and the old tokens revoked: access denied, Secret kept.
    let before = env.secret("db-credentials").await.unwrap();
    bao.kubernetes_role("payments-v2", "vault-reader", &env.ns, &["reader"])
        .await;
    bao.ok("DELETE", "auth/kubernetes/role/payments", None)
        .await;
    bao.ok("PUT", "sys/leases/revoke-prefix/auth/kubernetes", None)
        .await;
    let (_, _, msg) = env.wait_ready("db", "False", "AccessDenied").await;
    assert!(msg.contains("payments"), "{msg}");
    assert_eq!(
        env.secret("db-credentials").await.unwrap().data,
        before.data
    );

    // The store is fixed: recovery without an operator restart.
    vault_store(&env, &bao.addr, auth("payments-v2")).await;
    env.wait_ready("db", "True", "Synced").await;
    env.cleanup().await;
}

/// DESIGN §2.3: only Vault's own not-found shape counts toward `deletionPolicy: Delete`. With the KV
/// mount disabled, Vault answers 404 `no handler for route`: that says nothing about the secret, so
/// it is a transient failure — no `RemoteKeyNotFound`, no not-found streak, the Secret untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_mount_is_not_a_missing_secret() {
    let env = Env::start("vaultmount").await;
    let bao = Bao::start().await;
    bao.put("app/db", json!({"username": "app", "password": "mount-pw"}))
        .await;
    env.api::<Secret>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "vault-token"}, "stringData": {"token": "root"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let _op = env.operator(&[]).await;
    vault_store(
        &env,
        &bao.addr,
        json!({"token": {"secretRef": {"name": "vault-token", "key": "token"}}}),
    )
    .await;
    let mut spec = sref_spec();
    spec["target"]["deletionPolicy"] = json!("Delete");
    env.secretref("db", spec).await;
    env.wait_ready("db", "True", "Synced").await;
    let before = env.secret("db-credentials").await.unwrap();

    bao.ok("DELETE", "sys/mounts/secret", None).await;
    let (_, _, msg) = env.wait_ready("db", "False", "ProviderUnavailable").await;
    assert!(msg.contains("app/db"), "{msg}");
    // Several refreshes later: still transient, never a not-found streak.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let s = env.sref("db").await.unwrap().status.unwrap();
        assert!(
            s.not_found.is_none(),
            "a missing mount started a not-found streak: {s:?}"
        );
        assert_eq!(
            env.ready("db").await.unwrap().1,
            "ProviderUnavailable",
            "a missing mount was taken for a missing secret"
        );
    }
    let after = env.secret("db-credentials").await.unwrap();
    assert_eq!(before.data, after.data);
    assert_eq!(before.resource_version(), after.resource_version());
    env.cleanup().await;
}
