//! End to end through the operator with `azureKeyVault` stores: the real binary, the Kubernetes API
//! emulator (or `SECRETSYNC_E2E_KUBECONFIG`), and the HTTPS Key Vault + Entra ID test double.

mod common;

use std::time::Duration;

use base64::Engine;
use common::{Env, decoded, eventually};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Patch, PatchParams};
use secretsync::api::{ClusterSecretStore, SecretStore};
use serde_json::json;
use testkit::doubles::azure::{Fault, KeyVaultDouble, Rule, SetOptions, TENANT};

const CLIENT: &str = "22222222-2222-2222-2222-222222222222";
const WI_CLIENT: &str = "33333333-3333-3333-3333-333333333333";
const MI_CLIENT: &str = "44444444-4444-4444-4444-444444444444";
const SP_SECRET: &str = "sp-secret-sentinel-a41c";

/// An `azureKeyVault` store on the double. `ca`: trust the double's CA through `caBundle` and name
/// the authority in `authorityHost`; otherwise both come from the controller's environment
/// (`SSL_CERT_FILE`, `AZURE_AUTHORITY_HOST`).
async fn store(env: &Env, name: &str, kv: &KeyVaultDouble, auth: serde_json::Value, ca: bool) {
    let mut p = json!({
        "vaultUrl": kv.url,
        "tenantId": TENANT,
        "auth": auth,
    });
    if ca {
        p["authorityHost"] = json!(kv.authority_host());
        p["caBundle"] =
            json!(base64::engine::general_purpose::STANDARD.encode(kv.ca_pem.as_bytes()));
    }
    env.apply::<SecretStore>(
        name,
        json!({"apiVersion": "secretsync.io/v1alpha1", "kind": "SecretStore",
               "metadata": {"name": name}, "spec": {"provider": {"azureKeyVault": p}}}),
    )
    .await;
}

fn sp_auth() -> serde_json::Value {
    json!({"clientSecret": {"clientId": CLIENT, "secretRef": {"name": "azure-sp", "key": "client-secret"}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_sync_find_rotation_expiry_outage_and_workload_identity() {
    let kv = KeyVaultDouble::start().await;
    kv.register_client_secret(CLIENT, SP_SECRET);
    kv.set("plain", "plain-1");
    kv.set("db", r#"{"username":"app","password":"pw-1"}"#);
    let team = |t: &str| SetOptions {
        tags: vec![("team".into(), t.into())],
        ..Default::default()
    };
    kv.set_with("api-a", "a-1", team("x"));
    kv.set_with("api-b", "b-1", team("x"));
    kv.set_with("api-c", "c-1", team("y"));
    kv.set_with(
        "api-off",
        "off",
        SetOptions {
            enabled: false,
            ..team("x")
        },
    );
    let exp = chrono::Utc::now().timestamp() + 48 * 3600;
    kv.set_with(
        "cert-pass",
        "c-pass",
        SetOptions {
            expires: Some(exp),
            ..Default::default()
        },
    );

    // Creates a ClusterSecretStore: alone on a shared API.
    let env = Env::start_exclusive("azure").await;
    let ca_file = kv.ca_file.to_string_lossy().to_string();
    // Managed identity through the App Service protocol (IDENTITY_ENDPOINT / IDENTITY_HEADER), served
    // by the double on loopback.
    kv.register_managed_identity("msi-header-sentinel", MI_CLIENT);
    let msi = format!("{}/msi/token", kv.url);
    let op = env
        .operator_env(
            &[],
            &[
                ("SSL_CERT_FILE", &ca_file),
                ("AZURE_AUTHORITY_HOST", &kv.authority_host()),
                ("IDENTITY_ENDPOINT", &msi),
                ("IDENTITY_HEADER", "msi-header-sentinel"),
            ],
        )
        .await;
    env.create::<Secret>(
        json!({"metadata": {"name": "azure-sp"}, "stringData": {"client-secret": SP_SECRET}}),
    )
    .await;
    store(&env, "kv", &kv, sp_auth(), true).await;
    // No caBundle and no authorityHost: the private CA is trusted through SSL_CERT_FILE and the
    // authority is AZURE_AUTHORITY_HOST (without it the public cloud's, unreachable here).
    store(&env, "kv-env-ca", &kv, sp_auth(), false).await;

    let data = |k: &str, key: &str| json!([{"secretKey": k, "remoteRef": {"key": key}}]);
    env.secretref(
        "plain",
        json!({"storeRef": {"name": "kv"}, "refreshInterval": "2s", "data": data("value", "plain")}),
    )
    .await;
    env.secretref(
        "db",
        json!({"storeRef": {"name": "kv"}, "refreshInterval": "2s",
               "data": [{"secretKey": "pw", "remoteRef": {"key": "db", "property": "password"}}],
               "dataFrom": [{"extract": {"key": "db"}}]}),
    )
    .await;
    env.secretref(
        "found",
        json!({"storeRef": {"name": "kv"}, "refreshInterval": "2s",
               "dataFrom": [{"find": {"tags": {"team": "x"}, "name": {"regexp": "^api-"}}}]}),
    )
    .await;
    env.secretref(
        "expiring",
        json!({"storeRef": {"name": "kv"}, "expiry": {"warnBefore": "720h"},
               "data": data("password", "cert-pass")}),
    )
    .await;
    env.secretref(
        "via-env-ca",
        json!({"storeRef": {"name": "kv-env-ca"}, "data": data("value", "plain")}),
    )
    .await;
    for name in ["plain", "db", "found", "expiring", "via-env-ca"] {
        env.wait_ready(name, "True", "Synced").await;
    }
    assert_eq!(
        decoded(&env.secret("plain").await.unwrap())["value"],
        "plain-1"
    );
    assert_eq!(
        decoded(&env.secret("via-env-ca").await.unwrap())["value"],
        "plain-1"
    );
    let db = decoded(&env.secret("db").await.unwrap());
    assert_eq!(db["pw"], "pw-1");
    assert_eq!(db["username"], "app");
    assert_eq!(db["password"], "pw-1");
    let found = decoded(&env.secret("found").await.unwrap());
    assert_eq!(found.keys().collect::<Vec<_>>(), vec!["api-a", "api-b"]);
    assert_eq!(found["api-b"], "b-1");
    // The Key Vault version id and the provider's expiry reach the status.
    let st = env.sref("plain").await.unwrap().status.unwrap();
    let v1 = st.synced_keys[0].version.clone().expect("version");
    assert_eq!(v1.len(), 32, "{v1}");
    let st = env.sref("expiring").await.unwrap().status.unwrap();
    assert_eq!(
        st.expires_at.as_ref().map(|t| t.0.as_second()),
        Some(exp),
        "{st:?}"
    );
    assert!(
        st.conditions
            .iter()
            .any(|c| c.type_ == "Expiring" && c.status == "True"),
        "{:?}",
        st.conditions
    );
    assert_eq!(env.count_events("expiring", "Expiring").await, 1);

    // A new version in Key Vault: the Secret follows, with exactly one Rotated event.
    let v2 = kv.set("plain", "plain-2");
    env.wait_secret("plain", |d| {
        d.get("value").map(String::as_str) == Some("plain-2")
    })
    .await;
    eventually(Duration::from_secs(10), "Rotated event", || async {
        (env.count_events("plain", "Rotated").await == 1).then_some(())
    })
    .await;
    // (The event goes out just before the status write.)
    eventually(
        Duration::from_secs(10),
        "status records version 2",
        || async {
            let st = env.sref("plain").await?.status?;
            (st.synced_keys.first()?.version.as_deref() == Some(v2.as_str())).then_some(())
        },
    )
    .await;

    // Outage: the vault answers 503; the Secret keeps its data and Ready names the cause.
    kv.fault(Rule {
        path_contains: "/secrets/plain".into(),
        fault: Fault::Status(503),
        times: None,
    });
    env.wait_ready("plain", "False", "ProviderUnavailable")
        .await;
    assert_eq!(
        decoded(&env.secret("plain").await.unwrap())["value"],
        "plain-2"
    );
    kv.clear_faults();
    env.wait_ready("plain", "True", "Synced").await;

    // Throttling with Retry-After is reported as such; data kept.
    kv.fault(Rule {
        path_contains: "/secrets/plain".into(),
        fault: Fault::Throttle {
            retry_after_secs: 1,
        },
        times: None,
    });
    env.wait_ready("plain", "False", "ProviderThrottled").await;
    assert_eq!(
        decoded(&env.secret("plain").await.unwrap())["value"],
        "plain-2"
    );
    kv.clear_faults();
    env.wait_ready("plain", "True", "Synced").await;

    // Deleted at the source: not found, the Secret is retained (deletionPolicy Retain).
    kv.delete("plain");
    env.wait_ready("plain", "False", "RemoteKeyNotFound").await;
    assert_eq!(
        decoded(&env.secret("plain").await.unwrap())["value"],
        "plain-2"
    );

    // Workload identity through a TokenRequest for a service account of the store's namespace.
    env.create::<ServiceAccount>(json!({"metadata": {"name": "kv-reader"}}))
        .await;
    kv.register_federated_subject(
        WI_CLIENT,
        &format!("system:serviceaccount:{}:kv-reader", env.ns),
    );
    kv.set("wi-key", "wi-1");
    store(
        &env,
        "kv-wi",
        &kv,
        json!({"workloadIdentity": {"clientId": WI_CLIENT, "serviceAccountRef": {"name": "kv-reader"}}}),
        true,
    )
    .await;
    env.secretref(
        "wi",
        json!({"storeRef": {"name": "kv-wi"}, "data": data("value", "wi-key")}),
    )
    .await;
    env.wait_ready("wi", "True", "Synced").await;
    assert_eq!(decoded(&env.secret("wi").await.unwrap())["value"], "wi-1");

    // A ClusterSecretStore on the controller's managed identity, admitting this namespace.
    let css_name = format!("kv-mi-{}", env.ns);
    let css: kube::Api<ClusterSecretStore> = kube::Api::all(env.client.clone());
    css.patch(
        &css_name,
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(json!({
            "apiVersion": "secretsync.io/v1alpha1", "kind": "ClusterSecretStore",
            "metadata": {"name": css_name},
            "spec": {"provider": {"azureKeyVault": {
                        "vaultUrl": kv.url, "authorityHost": kv.authority_host(),
                        "caBundle": base64::engine::general_purpose::STANDARD.encode(kv.ca_pem.as_bytes()),
                        "auth": {"managedIdentity": {"clientId": MI_CLIENT}}}},
                     "conditions": [{"namespaces": [env.ns]}]}})),
    )
    .await
    .expect("cluster store");
    env.secretref(
        "mi",
        json!({"storeRef": {"name": css_name, "kind": "ClusterSecretStore"}, "data": data("value", "wi-key")}),
    )
    .await;
    env.wait_ready("mi", "True", "Synced").await;
    assert_eq!(decoded(&env.secret("mi").await.unwrap())["value"], "wi-1");

    // A store whose credential Entra refuses: Ready False with the reason and the AADSTS code.
    env.create::<Secret>(json!({"metadata": {"name": "azure-sp-bad"}, "stringData": {"client-secret": "not-the-secret"}}),
    )
    .await;
    store(
        &env,
        "kv-bad",
        &kv,
        json!({"clientSecret": {"clientId": CLIENT, "secretRef": {"name": "azure-sp-bad", "key": "client-secret"}}}),
        true,
    )
    .await;
    env.secretref(
        "bad",
        json!({"storeRef": {"name": "kv-bad"}, "data": data("value", "wi-key")}),
    )
    .await;
    let (_, _, msg) = env.wait_ready("bad", "False", "AccessDenied").await;
    assert!(msg.contains("AADSTS7000215"), "{msg}");
    assert!(
        env.secret("bad").await.is_none(),
        "nothing written without data"
    );

    // No value or credential anywhere in the operator's debug logs or events.
    let logs = op.logs();
    for sentinel in [
        SP_SECRET,
        "not-the-secret",
        "pw-1",
        "plain-2",
        "c-pass",
        "wi-1",
    ] {
        assert!(!logs.contains(sentinel), "{sentinel} leaked into the logs");
        for name in ["plain", "db", "bad", "wi", "mi", "expiring"] {
            for (_, _, note) in env.events_for(name).await {
                assert!(
                    !note.contains(sentinel),
                    "{sentinel} leaked into an event: {note}"
                );
            }
        }
    }
    let _ = css.delete(&css_name, &Default::default()).await;
    env.cleanup().await;
}

/// The controller's own identity (Azure managed identity, Azure workload identity without a
/// serviceAccountRef, Vault Kubernetes auth without a serviceAccountRef) is refused for a namespaced
/// store outside the controller's namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambient_identity_is_refused_for_tenant_stores() {
    let kv = KeyVaultDouble::start().await;
    let env = Env::start("azure-ambient").await;
    // The controller runs in another namespace than the tenant's store.
    let controller_ns = Env::start_in(&env, "ctl").await;
    // Should the rule ever break, the SDK's managed identity must reach only loopback (the double,
    // which refuses it), never the real IMDS address.
    let msi = format!("{}/msi/token", kv.url);
    let _op = env
        .operator_env(
            &["--pod-namespace", &controller_ns.ns],
            &[("IDENTITY_ENDPOINT", &msi), ("IDENTITY_HEADER", "x")],
        )
        .await;
    for (name, auth) in [
        ("kv-mi", json!({"managedIdentity": {}})),
        (
            "kv-wi",
            json!({"workloadIdentity": {"clientId": WI_CLIENT}}),
        ),
    ] {
        store(&env, name, &kv, auth, true).await;
        env.secretref(
            name,
            json!({"storeRef": {"name": name}, "data": [{"secretKey": "v", "remoteRef": {"key": "k"}}]}),
        )
        .await;
        let (_, _, msg) = env.wait_ready(name, "False", "InvalidStoreConfig").await;
        assert!(msg.contains("controller's own Azure identity"), "{msg}");
    }
    // The same rule for Vault's Kubernetes auth with the controller's own service account token.
    env.apply::<SecretStore>(
        "vault-own-token",
        json!({"apiVersion": "secretsync.io/v1alpha1", "kind": "SecretStore",
               "metadata": {"name": "vault-own-token"},
               "spec": {"provider": {"vault": {"server": "https://127.0.0.1:1", "path": "secret",
                                              "auth": {"kubernetes": {"role": "any"}}}}}}),
    )
    .await;
    env.secretref(
        "vault-own-token",
        json!({"storeRef": {"name": "vault-own-token"}, "data": [{"secretKey": "v", "remoteRef": {"key": "k"}}]}),
    )
    .await;
    let (_, _, msg) = env
        .wait_ready("vault-own-token", "False", "InvalidStoreConfig")
        .await;
    assert!(
        msg.contains("controller's own service account token"),
        "{msg}"
    );
    assert_eq!(kv.counts().token_requests, 0);
    assert!(kv.requests().is_empty(), "no call reached the vault");
    controller_ns.cleanup().await;
    env.cleanup().await;
}
