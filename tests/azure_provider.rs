//! The Azure Key Vault provider against the in-repo HTTPS test double of the Key Vault REST API and
//! the Entra ID token endpoint (`testkit/src/doubles/azure.rs`), through the real Azure SDK crates.

use std::sync::Arc;
use std::time::Duration;

use secretsync::providers::azure::{AzureAuthConfig, AzureKeyVault, AzureSettings};
use secretsync::providers::{FindQuery, JwtSource, Provider, ProviderError, RemoteRef};
use secretsync::value::SecretBytes;
use testkit::doubles::azure::{Fault, KeyVaultDouble, Rule, SetOptions, TENANT};

const CLIENT: &str = "11111111-1111-1111-1111-111111111111";
const SECRET: &str = "client-secret-sentinel-5d1f";

fn settings(kv: &KeyVaultDouble, auth: AzureAuthConfig) -> AzureSettings {
    let mut s = AzureSettings::new("azure-test", &kv.url, auth);
    s.tenant_id = Some(TENANT.into());
    s.authority_host = Some(kv.authority_host());
    s.ca_pem = Some(kv.ca_pem.as_bytes().to_vec());
    s.request_timeout = Duration::from_secs(2);
    s
}

fn client_secret(secret: &str) -> AzureAuthConfig {
    AzureAuthConfig::ClientSecret {
        client_id: CLIENT.into(),
        secret: SecretBytes::from_string(secret.into()),
    }
}

async fn setup() -> (KeyVaultDouble, AzureKeyVault) {
    let kv = KeyVaultDouble::start().await;
    kv.register_client_secret(CLIENT, SECRET);
    let p = AzureKeyVault::new(settings(&kv, client_secret(SECRET))).expect("provider");
    (kv, p)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn value(r: &Result<secretsync::providers::FetchedSecret, ProviderError>) -> String {
    let f = r.as_ref().expect("read ok");
    f.value.expose_str().expect("utf8").to_string()
}

#[tokio::test]
async fn reads_latest_and_versions_with_metadata_and_one_token() {
    let (kv, p) = setup().await;
    let v1 = kv.set("db-password", "pw-1");
    let exp = now() + 3 * 24 * 3600;
    let v2 = kv.set_with(
        "db-password",
        "pw-2",
        SetOptions {
            expires: Some(exp),
            ..Default::default()
        },
    );
    assert_ne!(v1, v2);
    let latest = p.get(&RemoteRef::latest("db-password")).await;
    assert_eq!(value(&latest), "pw-2");
    let meta = &latest.as_ref().unwrap().meta;
    assert_eq!(meta.version.as_deref(), Some(v2.as_str()));
    assert_eq!(meta.expires.map(|e| e.timestamp()), Some(exp));
    assert!(meta.created.is_some() && meta.updated.is_some());

    let old = p
        .get(&RemoteRef {
            key: "db-password".into(),
            version: Some(v1.clone()),
        })
        .await;
    assert_eq!(value(&old), "pw-1");
    assert_eq!(old.unwrap().meta.version.as_deref(), Some(v1.as_str()));

    // Names are case-insensitive in Key Vault.
    assert_eq!(
        value(&p.get(&RemoteRef::latest("DB-Password")).await),
        "pw-2"
    );

    // Many reads: one challenge and one token request for the client's lifetime.
    let many: Vec<RemoteRef> = (0..10).map(|_| RemoteRef::latest("db-password")).collect();
    for r in p.get_many(&many).await {
        assert_eq!(value(&r), "pw-2");
    }
    let c = kv.counts();
    assert_eq!(c.challenges, 1, "{c:?}");
    assert_eq!(c.token_requests, 1, "{c:?}");
    assert_eq!(
        c.gets, 13,
        "3 + 10 authorized reads (the challenge is counted apart): {c:?}"
    );
    // Every vault request after the challenge carried the bearer token.
    assert!(
        kv.requests()
            .iter()
            .filter(|r| !r.path.contains("/oauth2/"))
            .skip(1)
            .all(|r| r.authorized)
    );
}

#[tokio::test]
async fn not_found_disabled_not_yet_valid_and_expired() {
    let (kv, p) = setup().await;
    let e = p.get(&RemoteRef::latest("missing")).await.unwrap_err();
    assert_eq!(
        e,
        ProviderError::NotFound {
            key: "missing".into()
        }
    );
    let e = p
        .get(&RemoteRef {
            key: "missing".into(),
            version: Some("0123456789abcdef0123456789abcdef".into()),
        })
        .await
        .unwrap_err();
    assert_eq!(e.reason(), secretsync::api::Reason::RemoteKeyNotFound);

    kv.set_with(
        "off",
        "v",
        SetOptions {
            enabled: false,
            ..Default::default()
        },
    );
    let e = p.get(&RemoteRef::latest("off")).await.unwrap_err();
    assert_eq!(e.reason(), secretsync::api::Reason::AccessDenied, "{e}");

    kv.set_with(
        "future",
        "pre-staged-value",
        SetOptions {
            not_before: Some(now() + 3600),
            ..Default::default()
        },
    );
    let e = p.get(&RemoteRef::latest("future")).await.unwrap_err();
    assert_eq!(
        e.reason(),
        secretsync::api::Reason::InvalidRemoteValue,
        "{e}"
    );
    assert!(e.to_string().contains("nbf"), "{e}");
    assert!(
        !e.to_string().contains("pre-staged"),
        "no value in errors: {e}"
    );

    // Key Vault serves expired secrets; the expiry is reported, not hidden.
    kv.set_with(
        "old",
        "stale",
        SetOptions {
            expires: Some(now() - 60),
            ..Default::default()
        },
    );
    let r = p.get(&RemoteRef::latest("old")).await;
    assert_eq!(value(&r), "stale");
    assert!(r.unwrap().meta.expires.unwrap() < chrono::Utc::now());

    // Names outside Key Vault's rules never reach the vault.
    let before = kv.counts().gets;
    let e = p.get(&RemoteRef::latest("/team/db")).await.unwrap_err();
    assert_eq!(e.reason(), secretsync::api::Reason::InvalidStoreConfig);
    assert!(e.to_string().contains("/team/db"), "{e}");
    assert_eq!(kv.counts().gets, before);
}

#[tokio::test]
async fn find_pages_and_filters_on_tags_name_and_validity() {
    let (kv, p) = setup().await;
    kv.set_page_size(2);
    let tags = |t: &str| SetOptions {
        tags: vec![("team".into(), t.into())],
        ..Default::default()
    };
    kv.set_with("api-a", "a", tags("payments"));
    kv.set_with("api-b", "b", tags("payments"));
    kv.set_with("api-c", "c", tags("search"));
    kv.set_with("db-a", "d", tags("payments"));
    kv.set_with(
        "api-disabled",
        "x",
        SetOptions {
            enabled: false,
            ..tags("payments")
        },
    );
    kv.set_with(
        "api-expired",
        "x",
        SetOptions {
            expires: Some(now() - 10),
            ..tags("payments")
        },
    );
    kv.set_with(
        "api-later",
        "x",
        SetOptions {
            not_before: Some(now() + 600),
            ..tags("payments")
        },
    );
    let q = FindQuery {
        path: None,
        name_regexp: Some("^api-".into()),
        tags: [("team".to_string(), "payments".to_string())].into(),
    };
    let found = p.find(&q).await.expect("find");
    assert_eq!(found, vec!["api-a", "api-b"]);
    assert!(
        kv.counts().lists >= 4,
        "7 secrets at 2 a page: {:?}",
        kv.counts()
    );

    let prefix = FindQuery {
        path: Some("db-".into()),
        ..Default::default()
    };
    assert_eq!(p.find(&prefix).await.unwrap(), vec!["db-a"]);

    let bad = FindQuery {
        name_regexp: Some("(".into()),
        ..Default::default()
    };
    assert_eq!(
        p.find(&bad).await.unwrap_err().reason(),
        secretsync::api::Reason::InvalidStoreConfig
    );
}

#[tokio::test]
async fn faults_are_classified_and_never_carry_values() {
    let (kv, p) = setup().await;
    kv.set("k", "value-sentinel-9c2e");
    assert_eq!(
        value(&p.get(&RemoteRef::latest("k")).await),
        "value-sentinel-9c2e"
    );

    let cases: Vec<(Fault, &str)> = vec![
        (
            Fault::Throttle {
                retry_after_secs: 7,
            },
            "ProviderThrottled",
        ),
        (Fault::Status(503), "ProviderUnavailable"),
        (Fault::Status(500), "ProviderUnavailable"),
        (Fault::Forbidden, "AccessDenied"),
        (Fault::Truncate, "ProviderUnavailable"),
        (Fault::Delay(Duration::from_secs(4)), "ProviderUnavailable"),
    ];
    for (fault, reason) in cases {
        let label = format!("{fault:?}");
        kv.fault(Rule {
            path_contains: "/secrets/k".into(),
            fault,
            times: Some(1),
        });
        let e = p.get(&RemoteRef::latest("k")).await.unwrap_err();
        assert_eq!(e.reason().as_str(), reason, "{label}: {e}");
        let text = e.to_string();
        assert!(!text.contains("value-sentinel"), "{label}: {text}");
        assert!(!text.contains(SECRET), "{label}: {text}");
        assert!(
            !text.contains('\r') && !text.contains('\n'),
            "{label}: {text}"
        );
        if reason == "ProviderThrottled" {
            assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        }
        // The fault was one answer: the next read succeeds.
        assert_eq!(
            value(&p.get(&RemoteRef::latest("k")).await),
            "value-sentinel-9c2e",
            "{label}"
        );
    }
    assert!(kv.counts().faults >= 6);

    // A listing fails as a whole, classified the same way.
    kv.fault(Rule {
        path_contains: "/secrets".into(),
        fault: Fault::Status(502),
        times: Some(1),
    });
    let e = p.find(&FindQuery::default()).await.unwrap_err();
    assert_eq!(
        e.reason(),
        secretsync::api::Reason::ProviderUnavailable,
        "{e}"
    );
}

#[tokio::test]
async fn bad_credentials_and_token_endpoint_outages() {
    let kv = KeyVaultDouble::start().await;
    kv.register_client_secret(CLIENT, SECRET);
    kv.set("k", "v");
    let wrong = AzureKeyVault::new(settings(&kv, client_secret("wrong-secret"))).unwrap();
    let e = wrong.get(&RemoteRef::latest("k")).await.unwrap_err();
    assert_eq!(e.reason(), secretsync::api::Reason::AccessDenied, "{e}");
    assert!(
        e.to_string().contains("AADSTS7000215"),
        "the Entra code is kept: {e}"
    );
    assert!(!e.to_string().contains("wrong-secret"), "{e}");
    assert_eq!(
        wrong.validate().await.unwrap_err().reason(),
        secretsync::api::Reason::AccessDenied
    );

    // The token endpoint failing with 503 is an outage, not a denial.
    let p = AzureKeyVault::new(settings(&kv, client_secret(SECRET))).unwrap();
    kv.fault(Rule {
        path_contains: "/oauth2/".into(),
        fault: Fault::Status(503),
        times: Some(1),
    });
    let e = p.get(&RemoteRef::latest("k")).await.unwrap_err();
    assert_eq!(
        e.reason(),
        secretsync::api::Reason::ProviderUnavailable,
        "{e}"
    );
    assert_eq!(value(&p.get(&RemoteRef::latest("k")).await), "v");
    assert!(p.validate().await.is_ok());
}

#[tokio::test]
async fn a_rejected_token_rebuilds_the_credential_once() {
    let (kv, p) = setup().await;
    kv.set("k", "v1");
    assert_eq!(value(&p.get(&RemoteRef::latest("k")).await), "v1");
    assert_eq!(kv.counts().token_requests, 1);
    // The vault stops accepting the cached token (e.g. the identity was re-created).
    kv.revoke_tokens();
    assert_eq!(value(&p.get(&RemoteRef::latest("k")).await), "v1");
    assert_eq!(p.rebuilds(), 1);
    assert_eq!(kv.counts().token_requests, 2);
    // A vault that keeps refusing does not cause a rebuild (and a token request) per read.
    kv.fault(Rule {
        path_contains: "/secrets/k".into(),
        fault: Fault::Unauthorized,
        times: None,
    });
    for _ in 0..3 {
        let e = p.get(&RemoteRef::latest("k")).await.unwrap_err();
        assert_eq!(e.reason(), secretsync::api::Reason::AccessDenied, "{e}");
    }
    assert_eq!(p.rebuilds(), 1);
    assert_eq!(kv.counts().token_requests, 2);
}

fn file_token(path: std::path::PathBuf) -> JwtSource {
    Arc::new(move || {
        let path = path.clone();
        Box::pin(async move {
            std::fs::read(&path)
                .map(SecretBytes::new)
                .map_err(|e| ProviderError::InvalidConfig {
                    message: format!("token file: {e}"),
                })
        })
    })
}

#[tokio::test]
async fn workload_identity_exchanges_the_federated_token() {
    let kv = KeyVaultDouble::start().await;
    kv.register_federated(CLIENT, "federated-sa-token");
    kv.set("k", "wi-value");
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "federated-sa-token").unwrap();
    let auth = AzureAuthConfig::WorkloadIdentity {
        client_id: CLIENT.into(),
        assertion: file_token(token.clone()),
    };
    let p = AzureKeyVault::new(settings(&kv, auth)).unwrap();
    assert_eq!(value(&p.get(&RemoteRef::latest("k")).await), "wi-value");
    assert!(p.validate().await.is_ok());

    // A token that matches no federated credential is refused with Entra's code.
    std::fs::write(&token, "someone-else").unwrap();
    let auth = AzureAuthConfig::WorkloadIdentity {
        client_id: CLIENT.into(),
        assertion: file_token(token.clone()),
    };
    let p = AzureKeyVault::new(settings(&kv, auth)).unwrap();
    let e = p.get(&RemoteRef::latest("k")).await.unwrap_err();
    assert_eq!(e.reason(), secretsync::api::Reason::AccessDenied, "{e}");
    assert!(e.to_string().contains("AADSTS700213"), "{e}");

    // A missing token file keeps its own class (configuration), not a generic credential error.
    let auth = AzureAuthConfig::WorkloadIdentity {
        client_id: CLIENT.into(),
        assertion: file_token(dir.path().join("absent")),
    };
    let p = AzureKeyVault::new(settings(&kv, auth)).unwrap();
    let e = p.get(&RemoteRef::latest("k")).await.unwrap_err();
    assert_eq!(
        e.reason(),
        secretsync::api::Reason::InvalidStoreConfig,
        "{e}"
    );
}

#[tokio::test]
async fn an_untrusted_certificate_fails_fast() {
    let kv = KeyVaultDouble::start().await;
    kv.register_client_secret(CLIENT, SECRET);
    let mut s = settings(&kv, client_secret(SECRET));
    s.ca_pem = None;
    let p = AzureKeyVault::new(s).unwrap();
    let t = std::time::Instant::now();
    let e = p.get(&RemoteRef::latest("k")).await.unwrap_err();
    assert_eq!(
        e.reason(),
        secretsync::api::Reason::ProviderUnavailable,
        "{e}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "no SDK retry loop: {:?}",
        t.elapsed()
    );
    assert_eq!(
        kv.counts().gets,
        0,
        "the TLS handshake failed before any request"
    );
}

#[tokio::test]
async fn tokens_are_refreshed_before_they_expire() {
    let (kv, p) = setup().await;
    kv.set("k", "v");
    // A token with 10 minutes left is reused; one with less than 5 minutes left is replaced before
    // the vault could reject it (the SDK's refresh window), so no read ever fails for an old token.
    kv.set_token_lifetime(600);
    for _ in 0..3 {
        assert_eq!(value(&p.get(&RemoteRef::latest("k")).await), "v");
    }
    assert_eq!(kv.counts().token_requests, 1);
    kv.set_token_lifetime(240);
    let p = AzureKeyVault::new(settings(&kv, client_secret(SECRET))).unwrap();
    kv.reset_counts();
    for _ in 0..3 {
        assert_eq!(value(&p.get(&RemoteRef::latest("k")).await), "v");
    }
    assert_eq!(kv.counts().token_requests, 3, "{:?}", kv.counts());
    assert_eq!(p.rebuilds(), 0);
}
