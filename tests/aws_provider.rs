//! The AWS Secrets Manager provider against moto (PyPI `moto[server]`), through a fault-injecting
//! proxy that supplies what moto lacks (throttling, 5xx, hangs, truncated bodies, denials, the
//! 20-id cap, per-region outages). See `testkit/src/doubles/aws.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use secretsync::audit::HmacKey;
use secretsync::controller::desired;
use secretsync::providers::aws::{AwsSecretsManager, AwsSettings, AwsTimeouts, StaticCredentials};
use secretsync::providers::fetch::{Fetcher, StoreHandle, TokenBucket};
use secretsync::providers::{FindQuery, Provider, ProviderError, RemoteRef};
use secretsync::value::SecretBytes;
use testkit::doubles::aws::{self, Fault, Moto, Proxy, Rule};

const PRIMARY: &str = "us-east-1";
const REPLICA: &str = "eu-west-1";

fn settings(endpoint: &str) -> AwsSettings {
    let mut s = AwsSettings::new("test-store", PRIMARY);
    s.endpoint = Some(endpoint.to_string());
    s.credentials = Some(StaticCredentials {
        access_key_id: SecretBytes::from("AKIATESTKEY\n"),
        secret_access_key: SecretBytes::from("test-secret"),
        session_token: None,
    });
    s.timeouts = AwsTimeouts {
        connect: Duration::from_secs(2),
        operation: Duration::from_secs(2),
    };
    s
}

async fn provider(endpoint: &str) -> Arc<AwsSecretsManager> {
    Arc::new(
        AwsSecretsManager::new(settings(endpoint))
            .await
            .expect("provider"),
    )
}

fn handle(p: Arc<AwsSecretsManager>) -> StoreHandle {
    StoreHandle {
        id: Arc::from("aws-test"),
        provider: p,
        limiter: Arc::new(TokenBucket::new(50.0, 100)),
    }
}

async fn setup() -> (Moto, Proxy) {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    (moto, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_strings_json_binary_and_versions() {
    let (moto, proxy) = setup().await;
    let admin = moto.client(PRIMARY);
    aws::create_string(&admin, "/app/plain", "plain-value", &[]).await;
    aws::create_string(
        &admin,
        "/app/db",
        r#"{"username":"app","password":"pw/1"}"#,
        &[],
    )
    .await;
    aws::create_binary(&admin, "/app/bin", &[0, 159, 146, 150, 255]).await;
    let p = provider(&proxy.url).await;

    // Latest values of several keys: one BatchGetSecretValue; the missing id fails alone.
    let refs = [
        RemoteRef::latest("/app/plain"),
        RemoteRef::latest("/app/db"),
        RemoteRef::latest("/app/bin"),
        RemoteRef::latest("/app/missing"),
    ];
    let out = p.get_many(&refs).await;
    assert_eq!(proxy.count("BatchGetSecretValue"), 1);
    assert_eq!(proxy.total(), 1);
    let plain = out[0].as_ref().expect("plain");
    assert_eq!(plain.value.expose(), b"plain-value");
    assert!(plain.meta.version.is_some() && plain.meta.created.is_some());
    assert_eq!(plain.meta.served_by.as_deref(), Some(PRIMARY));
    assert_eq!(
        out[2].as_ref().unwrap().value.expose(),
        &[0, 159, 146, 150, 255]
    );
    assert!(
        matches!(&out[3], Err(ProviderError::NotFound { key }) if key == "/app/missing"),
        "{:?}",
        out[3]
    );

    // A JSON property, through the same code that builds the Secret.
    let spec: secretsync::api::SecretRefSpec = serde_json::from_value(serde_json::json!({
        "storeRef": {"name": "aws"},
        "data": [{"secretKey": "password", "remoteRef": {"key": "/app/db", "property": "password"}}],
        "dataFrom": [{"extract": {"key": "/app/db"}}]
    }))
    .unwrap();
    let mut answers = desired::Answers::default();
    answers
        .values
        .insert(refs[1].clone(), out[1].clone().expect("db"));
    let d = desired::build("db", &spec, &answers, &HmacKey::new(vec![7; 32])).expect("build");
    assert_eq!(d.data["password"].expose(), b"pw/1");
    assert_eq!(d.data["username"].expose(), b"app");

    // Versions: by id and by stage after a PutSecretValue.
    let v1 = plain.meta.version.clone().unwrap();
    let v2 = aws::put_string(&admin, "/app/plain", "plain-value-2").await;
    proxy.reset_counts();
    let latest = p.get(&RemoteRef::latest("/app/plain")).await.unwrap();
    assert_eq!(latest.value.expose(), b"plain-value-2");
    assert_eq!(latest.meta.version.as_deref(), Some(v2.as_str()));
    let by_id = p
        .get(&RemoteRef {
            key: "/app/plain".into(),
            version: Some(v1.clone()),
        })
        .await
        .unwrap();
    assert_eq!(by_id.value.expose(), b"plain-value");
    let previous = p
        .get(&RemoteRef {
            key: "/app/plain".into(),
            version: Some("AWSPREVIOUS".into()),
        })
        .await
        .unwrap();
    assert_eq!(previous.value.expose(), b"plain-value");
    assert_eq!(previous.meta.version.as_deref(), Some(v1.as_str()));
    let current = p
        .get(&RemoteRef {
            key: "/app/plain".into(),
            version: Some("AWSCURRENT".into()),
        })
        .await
        .unwrap();
    assert_eq!(current.value.expose(), b"plain-value-2");
    assert_eq!(
        proxy.count("GetSecretValue"),
        4,
        "single reads use GetSecretValue"
    );
    let unknown = p
        .get(&RemoteRef {
            key: "/app/plain".into(),
            version: Some("00000000-0000-0000-0000-000000000000".into()),
        })
        .await;
    assert!(
        matches!(unknown, Err(ProviderError::NotFound { .. })),
        "{unknown:?}"
    );

    // Reads by ARN work too.
    let arn = aws::create_string(&admin, "by-arn", "arn-value", &[]).await;
    let out = p
        .get_many(&[RemoteRef::latest(arn.clone()), RemoteRef::latest("/app/db")])
        .await;
    assert_eq!(out[0].as_ref().unwrap().value.expose(), b"arn-value");
    assert!(out[1].is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_classified_and_never_carry_values() {
    let (moto, proxy) = setup().await;
    let sentinel = "sentinel-value-0xC0FFEE";
    aws::create_string(&moto.client(PRIMARY), "k", sentinel, &[]).await;
    let p = provider(&proxy.url).await;
    let k = RemoteRef::latest("k");
    let get = || p.get(&k);
    assert_eq!(get().await.unwrap().value.expose(), sentinel.as_bytes());

    let cases: Vec<(Fault, &str)> = vec![
        (Fault::Throttle, "ProviderThrottled"),
        (
            Fault::Throttle429 {
                retry_after: Some(3),
            },
            "ProviderThrottled",
        ),
        (Fault::Status(500), "ProviderUnavailable"),
        (Fault::Status(503), "ProviderUnavailable"),
        (Fault::Truncate, "ProviderUnavailable"),
        (Fault::Hang, "ProviderUnavailable"),
        (Fault::AccessDenied, "AccessDenied"),
        (Fault::ExpiredToken, "AccessDenied"),
    ];
    for (fault, reason) in cases {
        proxy.clear();
        proxy.fail(Rule::always(fault.clone()));
        let started = Instant::now();
        let e = get().await.expect_err("fault");
        assert_eq!(e.reason().as_str(), reason, "{fault:?}: {e}");
        let msg = e.to_string();
        assert!(!msg.contains(sentinel), "{fault:?} leaked the value: {msg}");
        match fault {
            Fault::Throttle429 { .. } => {
                assert_eq!(e.retry_after(), Some(Duration::from_secs(3)))
            }
            Fault::AccessDenied => assert!(
                msg.contains("AccessDeniedException") && msg.contains("\"k\""),
                "{msg}"
            ),
            Fault::ExpiredToken => assert!(msg.contains("ExpiredTokenException"), "{msg}"),
            Fault::Hang => assert!(
                started.elapsed() < Duration::from_secs(6),
                "operation timeout"
            ),
            _ => {}
        }
    }
    // Not-found is authoritative and distinct from access denied.
    proxy.clear();
    let e = p
        .get(&RemoteRef::latest("nope"))
        .await
        .expect_err("missing");
    assert!(matches!(e, ProviderError::NotFound { .. }), "{e}");
    // An answer that is not from Secrets Manager is never taken as not-found.
    proxy.fail(Rule::always(Fault::Status(404)));
    let e = p.get(&RemoteRef::latest("nope")).await.expect_err("404");
    assert_eq!(
        e.reason(),
        secretsync::api::Reason::ProviderUnavailable,
        "{e}"
    );
    // The same faults inside a batch call fail every id of it, classified the same way.
    proxy.clear();
    proxy.fail(Rule::always(Fault::Throttle).op("BatchGetSecretValue"));
    let out = p
        .get_many(&[RemoteRef::latest("k"), RemoteRef::latest("nope")])
        .await;
    assert!(
        out.iter()
            .all(|r| matches!(r, Err(ProviderError::Throttled { .. })))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_layer_retries_only_transient_errors_and_honours_retry_after() {
    let (moto, proxy) = setup().await;
    let admin = moto.client(PRIMARY);
    aws::create_string(&admin, "a", "va", &[]).await;
    aws::create_string(&admin, "b", "vb", &[]).await;
    let h = handle(provider(&proxy.url).await);
    let refs = [RemoteRef::latest("a"), RemoteRef::latest("b")];

    // One 503: retried once, then fine.
    let f = Fetcher::default();
    proxy.fail(Rule::always(Fault::Status(503)).times(1));
    let out = f.get_many(&h, &refs, Duration::ZERO).await;
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    assert_eq!(proxy.count("BatchGetSecretValue"), 2);

    // A persistent outage: exactly two calls per read, then ProviderUnavailable.
    proxy.clear();
    proxy.reset_counts();
    proxy.fail(Rule::always(Fault::Status(500)));
    let out = f.get_many(&h, &refs, Duration::ZERO).await;
    assert!(
        out.iter()
            .all(|r| matches!(r, Err(ProviderError::Transient { .. })))
    );
    assert_eq!(
        proxy.count("BatchGetSecretValue"),
        2,
        "at most twice the normal calls"
    );

    // Denials: final at once. (A fresh provider each: a whole-call AccessDeniedException on
    // BatchGetSecretValue makes the provider fall back to GetSecretValue per key, once.)
    for (fault, calls) in [
        (Fault::ExpiredToken, 1),
        (Fault::AccessDenied, 1 + refs.len()),
    ] {
        let h = handle(provider(&proxy.url).await);
        proxy.clear();
        proxy.reset_counts();
        proxy.fail(Rule::always(fault));
        let out = f.get_many(&h, &refs, Duration::ZERO).await;
        assert!(
            out.iter()
                .all(|r| matches!(r, Err(ProviderError::AccessDenied { .. })))
        );
        assert_eq!(proxy.total(), calls, "denials are not retried");
    }
    proxy.clear();
    proxy.reset_counts();
    let out = f
        .get_many(&h, &[RemoteRef::latest("nope")], Duration::ZERO)
        .await;
    assert!(matches!(out[0], Err(ProviderError::NotFound { .. })));
    assert_eq!(proxy.total(), 1, "not-found is not retried");

    // 429 with Retry-After: the store's bucket waits that long, then the retry succeeds.
    proxy.reset_counts();
    proxy.fail(
        Rule::always(Fault::Throttle429 {
            retry_after: Some(1),
        })
        .times(1),
    );
    let started = Instant::now();
    let out = f.get_many(&h, &refs, Duration::ZERO).await;
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(proxy.count("BatchGetSecretValue"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_a_replica_region_on_transient_errors_only() {
    let (moto, proxy) = setup().await;
    // The replica region holds the secret (moto keeps one backend per region).
    aws::create_string(&moto.client(PRIMARY), "db", "from-primary", &[]).await;
    aws::create_string(&moto.client(REPLICA), "db", "from-replica", &[]).await;
    aws::create_string(&moto.client(REPLICA), "only-in-replica", "x", &[]).await;
    let mut s = settings(&proxy.url);
    s.failover_regions = vec![REPLICA.into()];
    let p = AwsSecretsManager::new(s).await.unwrap();
    assert_eq!(p.regions(), vec![PRIMARY, REPLICA]);

    // Healthy primary: served there; its not-found is an answer, not an outage (no failover).
    let v = p.get(&RemoteRef::latest("db")).await.unwrap();
    assert_eq!(v.meta.served_by.as_deref(), Some(PRIMARY));
    let e = p
        .get(&RemoteRef::latest("only-in-replica"))
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::NotFound { .. }));
    assert_eq!(proxy.count_in("GetSecretValue", REPLICA), 0);

    // Primary down (503 for requests signed for us-east-1): the replica answers.
    proxy.fail(Rule::always(Fault::Status(503)).region(PRIMARY));
    proxy.reset_counts();
    let v = p.get(&RemoteRef::latest("db")).await.unwrap();
    assert_eq!(v.value.expose(), b"from-replica");
    assert_eq!(v.meta.served_by.as_deref(), Some(REPLICA));
    assert_eq!(proxy.count_in("GetSecretValue", PRIMARY), 1);
    assert_eq!(proxy.count_in("GetSecretValue", REPLICA), 1);
    // While the primary is out, the replica is asked first: no failed primary call per read.
    let out = p
        .get_many(&[
            RemoteRef::latest("db"),
            RemoteRef::latest("only-in-replica"),
        ])
        .await;
    assert!(out.iter().all(|r| {
        r.as_ref()
            .is_ok_and(|v| v.meta.served_by.as_deref() == Some(REPLICA))
    }));
    assert_eq!(proxy.count_in("GetSecretValue", PRIMARY), 1);
    assert_eq!(proxy.count_in("BatchGetSecretValue", PRIMARY), 0);
    assert_eq!(proxy.count_in("BatchGetSecretValue", REPLICA), 1);
    // find fails over too.
    let names = p.find(&FindQuery::default()).await.unwrap();
    assert!(names.contains(&"only-in-replica".to_string()));

    // Throttling and denials do not fail over.
    let mut s = settings(&proxy.url);
    s.failover_regions = vec![REPLICA.into()];
    let p = AwsSecretsManager::new(s).await.unwrap();
    proxy.clear();
    proxy.reset_counts();
    proxy.fail(Rule::always(Fault::Throttle).region(PRIMARY));
    assert!(matches!(
        p.get(&RemoteRef::latest("db")).await,
        Err(ProviderError::Throttled { .. })
    ));
    proxy.clear();
    proxy.fail(Rule::always(Fault::AccessDenied).region(PRIMARY));
    assert!(matches!(
        p.get(&RemoteRef::latest("db")).await,
        Err(ProviderError::AccessDenied { .. })
    ));
    assert_eq!(proxy.count_in("GetSecretValue", REPLICA), 0);

    // Every region down: transient, one call per region.
    proxy.clear();
    proxy.reset_counts();
    proxy.fail(Rule::always(Fault::Status(500)));
    let e = p.get(&RemoteRef::latest("db")).await.unwrap_err();
    assert_eq!(e.reason(), secretsync::api::Reason::ProviderUnavailable);
    assert_eq!(proxy.total(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_respect_the_20_id_cap_and_fall_back_when_batch_is_denied() {
    let (moto, proxy) = setup().await;
    let admin = moto.client(PRIMARY);
    for i in 0..45 {
        aws::create_string(&admin, &format!("/bulk/k{i:02}"), &format!("v{i}"), &[]).await;
    }
    let p = provider(&proxy.url).await;
    let refs: Vec<RemoteRef> = (0..45)
        .map(|i| RemoteRef::latest(format!("/bulk/k{i:02}")))
        .chain([RemoteRef::latest("/bulk/missing")])
        .collect();
    let out = p.get_many(&refs).await;
    for (i, r) in out.iter().take(45).enumerate() {
        assert_eq!(
            r.as_ref().unwrap().value.expose(),
            format!("v{i}").as_bytes()
        );
    }
    assert!(matches!(out[45], Err(ProviderError::NotFound { .. })));
    let mut sizes = proxy.batch_sizes();
    sizes.sort();
    assert_eq!(
        sizes,
        vec![6, 20, 20],
        "46 ids in three calls of at most 20"
    );

    // The proxy enforces AWS's cap (moto has none): a 21-id call would be refused.
    let admin_proxy = aws::admin_client(&proxy.url, PRIMARY);
    let e = admin_proxy
        .batch_get_secret_value()
        .set_secret_id_list(Some((0..21).map(|i| format!("/bulk/k{i:02}")).collect()))
        .send()
        .await;
    assert!(e.is_err());

    // A policy without secretsmanager:BatchGetSecretValue: one denied batch call, then key by key.
    proxy.reset_counts();
    proxy.fail(Rule::always(Fault::AccessDenied).op("BatchGetSecretValue"));
    let out = p.get_many(&refs[..3]).await;
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    assert_eq!(proxy.count("BatchGetSecretValue"), 1);
    assert_eq!(proxy.count("GetSecretValue"), 3);
    let out = p.get_many(&refs[3..6]).await;
    assert!(out.iter().all(Result::is_ok));
    assert_eq!(proxy.count("BatchGetSecretValue"), 1, "not tried again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_by_prefix_tags_and_regexp() {
    let (moto, proxy) = setup().await;
    let admin = moto.client(PRIMARY);
    aws::create_string(
        &admin,
        "/team/a/api-key",
        "1",
        &[("team", "a"), ("env", "prod")],
    )
    .await;
    aws::create_string(&admin, "/team/a/db", "2", &[("team", "b")]).await;
    aws::create_string(&admin, "/team/b/api-key", "3", &[("team", "a")]).await;
    aws::create_string(&admin, "/other", "4", &[]).await;
    for i in 0..120 {
        aws::create_string(&admin, &format!("/many/s{i:03}"), "x", &[]).await;
    }
    let p = provider(&proxy.url).await;
    let q = |path: Option<&str>, re: Option<&str>, tags: &[(&str, &str)]| FindQuery {
        path: path.map(str::to_string),
        name_regexp: re.map(str::to_string),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    assert_eq!(
        p.find(&q(Some("/team/a/"), None, &[])).await.unwrap(),
        vec!["/team/a/api-key", "/team/a/db"]
    );
    assert_eq!(
        p.find(&q(None, None, &[("team", "a")])).await.unwrap(),
        vec!["/team/a/api-key", "/team/b/api-key"]
    );
    assert_eq!(
        p.find(&q(
            Some("/team/"),
            Some("api-key$"),
            &[("team", "a"), ("env", "prod")]
        ))
        .await
        .unwrap(),
        vec!["/team/a/api-key"]
    );
    // Paginated: 120 names over two ListSecrets pages.
    proxy.reset_counts();
    let many = p.find(&q(Some("/many/"), None, &[])).await.unwrap();
    assert_eq!(many.len(), 120);
    assert_eq!(proxy.count("ListSecrets"), 2);
    assert!(
        p.find(&q(None, Some("("), &[])).await.is_err(),
        "bad regexp"
    );
    p.validate().await.expect("validate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assume_role_credentials_are_used_and_cached() {
    let (moto, proxy) = setup().await;
    aws::create_string(&moto.client(PRIMARY), "k", "v", &[]).await;
    let mut s = settings(&proxy.url);
    s.role = Some("arn:aws:iam::123456789012:role/reader".into());
    s.external_id = Some("ext-123".into());
    s.sts_endpoint = Some(proxy.url.clone());
    let p = AwsSecretsManager::new(s).await.unwrap();
    for _ in 0..3 {
        assert_eq!(
            p.get(&RemoteRef::latest("k")).await.unwrap().value.expose(),
            b"v"
        );
    }
    assert_eq!(proxy.count("AssumeRole"), 1, "assumed once, then cached");
    let keys = proxy.access_keys();
    // The AssumeRole call is signed with the static key; the reads with the role's.
    assert_eq!(keys[0], "AKIATESTKEY");
    assert!(
        keys[1..]
            .iter()
            .all(|k| k != "AKIATESTKEY" && !k.is_empty()),
        "{keys:?}"
    );
}

#[tokio::test]
async fn plain_http_endpoints_must_be_loopback() {
    let s = settings("http://secretsmanager.internal:4566");
    assert!(matches!(
        AwsSecretsManager::new(s).await,
        Err(ProviderError::InvalidConfig { .. })
    ));
    let mut s = settings("http://secretsmanager.internal:4566");
    s.allow_insecure_endpoints = true;
    assert!(AwsSecretsManager::new(s).await.is_ok());
    let mut s = settings("https://vpce-1.secretsmanager.eu-central-1.vpce.amazonaws.com");
    s.region = "EU central".into();
    assert!(AwsSecretsManager::new(s).await.is_err(), "bad region name");
}
