//! The container image, run. Containers cannot run in this sandbox, but a chroot of the image's root
//! filesystem can: `make test` builds the image with `make image` when podman or buildah is present
//! and passes it as `SECRETSYNC_IMAGE`; this test exports its root filesystem
//! (`scripts/image-smoke.sh`, which also checks the layout) and runs the image's own `/secretsync
//! controller` in it as the image's user 65532, with the chart's RBAC, against the real
//! kube-apiserver (the emulator without envtest assets). It syncs a SecretRef from OpenBao behind TLS
//! under a host name: the name resolves through the image's `/etc/hosts` and `nsswitch.conf` (static
//! glibc, no NSS modules), and the certificate verifies against the image's CA bundle, to which the
//! test adds its CA as a mounted private CA would. A second name, served with a certificate of a CA the
//! bundle does not hold, must be refused.
//!
//! Without `SECRETSYNC_IMAGE` (no podman or buildah: `make test` says so) the test prints why and
//! checks nothing.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Env, decoded};
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use secretsync::api::SecretStore;
use serde_json::json;
use testkit::doubles::bao::Bao;
use testkit::tls::TestCa;
use testkit::tls_forward::TlsForwarder;

const TRUSTED: &str = "vault.secretsync.test";
const UNTRUSTED: &str = "rogue.secretsync.test";

fn export_rootfs(image: &str, dir: &Path) {
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/image-smoke.sh"
    ))
    .env("IMAGE", image)
    .env("SMOKE_DIR", dir)
    .output()
    .expect("run scripts/image-smoke.sh");
    assert!(
        out.status.success(),
        "image-smoke.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn store(env: &Env, name: &str, server: &str) {
    env.apply::<SecretStore>(
        name,
        json!({
            "apiVersion": "secretsync.io/v1alpha1", "kind": "SecretStore",
            "metadata": {"name": name},
            "spec": {"provider": {"vault": {
                "server": server, "path": "secret", "version": "v2",
                "auth": {"token": {"secretRef": {"name": "vault-token", "key": "token"}}}
            }}}
        }),
    )
    .await;
}

fn sref(store: &str, target: &str) -> serde_json::Value {
    json!({
        "storeRef": {"name": store},
        "refreshInterval": "5s",
        "target": {"name": target},
        "data": [
            {"secretKey": "username", "remoteRef": {"key": "app/db", "property": "username"}},
            {"secretKey": "password", "remoteRef": {"key": "app/db", "property": "password"}}
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_syncs_through_hosts_and_its_ca_bundle() {
    let Some(image) = std::env::var("SECRETSYNC_IMAGE")
        .ok()
        .filter(|i| !i.is_empty())
    else {
        eprintln!(
            "image_chroot: SECRETSYNC_IMAGE is not set (make test sets it after `make image` when \
             podman or buildah is present); nothing checked"
        );
        return;
    };
    let rootfs = tempfile::tempdir().expect("tempdir");
    let root = rootfs.path().join("rootfs");
    export_rootfs(&image, &root);

    // The binary runs in the image's filesystem, as its user.
    let version = Command::new("chroot")
        .args(["--userspec=65532:65532"])
        .arg(&root)
        .args(["/secretsync", "--version"])
        .output()
        .expect("chroot");
    assert!(
        version.status.success() && String::from_utf8_lossy(&version.stdout).contains("secretsync"),
        "/secretsync --version in the image: {version:?}"
    );

    // What a pod would get from its runtime and a mounted private CA: host names, and a CA appended
    // to the image's bundle (the file the binary trusts, /etc/ssl/certs/ca-certificates.crt).
    let ca = TestCa::new("secretsync image test CA").expect("CA");
    let rogue_ca = TestCa::new("a CA the image does not trust").expect("CA");
    let bundle = root.join("etc/ssl/certs/ca-certificates.crt");
    let mut pem = std::fs::read_to_string(&bundle).expect("the image's CA bundle");
    pem.push('\n');
    pem.push_str(&ca.cert_pem);
    std::fs::write(&bundle, pem).expect("CA bundle");
    std::fs::write(
        root.join("etc/hosts"),
        format!("127.0.0.1 localhost\n127.0.0.1 {TRUSTED}\n127.0.0.1 {UNTRUSTED}\n"),
    )
    .expect("/etc/hosts");

    let bao = Bao::start().await;
    bao.put("app/db", json!({"username": "app", "password": "image-pw"}))
        .await;
    bao.policy(
        "reader",
        r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
    )
    .await;
    let token = bao.token(&["reader"], json!({})).await;
    let upstream = bao.addr.trim_start_matches("http://").to_string();
    let trusted = TlsForwarder::start(&ca.server_cert(&[TRUSTED]).expect("leaf"), &upstream)
        .await
        .expect("TLS forwarder");
    let rogue = TlsForwarder::start(
        &rogue_ca.server_cert(&[UNTRUSTED]).expect("leaf"),
        &upstream,
    )
    .await
    .expect("TLS forwarder");

    let env = Env::start("image").await;
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
    store(
        &env,
        "vault",
        &format!("https://{TRUSTED}:{}", trusted.port),
    )
    .await;
    store(
        &env,
        "rogue",
        &format!("https://{UNTRUSTED}:{}", rogue.port),
    )
    .await;
    env.secretref("db", sref("vault", "db-credentials")).await;
    env.secretref("rogue", sref("rogue", "rogue-credentials"))
        .await;

    let operator = env.operator_in_image(&root, &[]).await;
    let synced = env
        .wait_secret("db-credentials", |d| {
            d.get("password").map(String::as_str) == Some("image-pw")
        })
        .await;
    assert_eq!(
        decoded(&synced).get("username").map(String::as_str),
        Some("app")
    );
    env.wait_ready("db", "True", "Synced").await;

    // The certificate of a CA outside the bundle is refused: nothing is written.
    let (_, _, message) = env
        .wait_ready("rogue", "False", "ProviderUnavailable")
        .await;
    assert!(
        message.to_lowercase().contains("certificate") || message.to_lowercase().contains("tls"),
        "rogue: {message}"
    );
    assert!(env.secret("rogue-credentials").await.is_none());
    assert!(
        decoded(&env.secret("db-credentials").await.expect("synced Secret")).len() == 2,
        "two keys"
    );
    drop(operator);
    env.cleanup().await;
}
