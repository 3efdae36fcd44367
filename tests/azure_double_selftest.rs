//! Checks the Azure Key Vault / Entra ID test double (`testkit/src/doubles/azure.rs`) with plain
//! reqwest, so that the provider's tests can rely on it behaving like the REST reference.

use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::doubles::azure::{Fault, KeyVaultDouble, Rule, SetOptions, TENANT};

const API: &str = "api-version=2025-07-01";
const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
const SECRET: &str = "s3cr3t";

fn http(kv: &KeyVaultDouble) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(kv.ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn token_response(
    c: &reqwest::Client,
    kv: &KeyVaultDouble,
    tenant: &str,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let r = c
        .post(format!(
            "{}/{tenant}/oauth2/v2.0/token",
            kv.authority_host()
        ))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn token(c: &reqwest::Client, kv: &KeyVaultDouble) -> String {
    kv.register_client_secret(CLIENT, SECRET);
    let (status, body) = token_response(
        c,
        kv,
        TENANT,
        &[
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("grant_type", "client_credentials"),
            ("scope", "https://vault.azure.net/.default"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

async fn get(
    c: &reqwest::Client,
    tok: &str,
    url: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = c.get(url).bearer_auth(tok).send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, headers, body)
}

#[tokio::test]
async fn challenge_without_authorization() {
    let kv = KeyVaultDouble::start().await;
    assert_eq!(kv.url, kv.authority_host());
    assert!(kv.url.starts_with("https://127.0.0.1:"));
    assert!(
        std::fs::read_to_string(&kv.ca_file)
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    kv.set("db-password", "hunter2");
    let c = http(&kv);
    let r = c
        .get(format!("{}/secrets/db-password/?{API}", kv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.headers()["www-authenticate"].to_str().unwrap(),
        format!(
            r#"Bearer authorization="https://login.microsoftonline.com/{TENANT}", resource="https://vault.azure.net""#
        )
    );
    assert!(r.bytes().await.unwrap().is_empty());
    // A challenged PUT (the SDK sends it without its body) is not stored.
    let r = c
        .put(format!("{}/secrets/other?{API}", kv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let n = kv.counts();
    assert_eq!(
        (n.challenges, n.gets, n.sets, n.faults),
        (2, 0, 0, 0),
        "{n:?}"
    );
    // Faults do not pre-empt the challenge.
    kv.fault(Rule::always(Fault::Status(503)));
    let r = c
        .get(format!("{}/secrets/db-password?{API}", kv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(kv.counts().faults, 0);
    let log = kv.requests();
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|l| l.status == 401 && !l.authorized));
    assert_eq!(log[0].method, "GET");
    assert_eq!(log[0].path, "/secrets/db-password/");
    assert_eq!(log[0].query, API);
}

#[tokio::test]
async fn token_endpoint_success_and_failures() {
    let kv = KeyVaultDouble::start().await;
    let c = http(&kv);
    kv.register_client_secret(CLIENT, SECRET);
    kv.register_federated("fed-app", "projected-sa-token");
    kv.set_token_lifetime(1234);
    let scope = "https://vault.azure.net/.default";
    let ok = [
        ("client_id", CLIENT),
        ("client_secret", SECRET),
        ("grant_type", "client_credentials"),
        ("scope", scope),
    ];
    let (status, body) = token_response(&c, &kv, TENANT, &ok).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 1234);
    assert_eq!(body["ext_expires_in"], 1234);
    assert!(body["access_token"].as_str().unwrap().len() > 20);

    let assertion_type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    let (status, body) = token_response(
        &c,
        &kv,
        TENANT,
        &[
            ("client_assertion", "projected-sa-token"),
            ("client_assertion_type", assertion_type),
            ("client_id", "fed-app"),
            ("grant_type", "client_credentials"),
            ("scope", scope),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let check = |status: u16, body: &Value, want: u16, error: &str, code: u64| {
        assert_eq!(status, want, "{body}");
        assert_eq!(body["error"], error, "{body}");
        assert_eq!(body["error_codes"], serde_json::json!([code]), "{body}");
        let d = body["error_description"].as_str().unwrap();
        assert!(d.starts_with(&format!("AADSTS{code}: ")), "{d}");
        assert!(d.contains("\r\nTrace ID: "), "{d}");
        assert!(d.contains("\r\nCorrelation ID: "), "{d}");
        assert!(body["trace_id"].is_string() && body["correlation_id"].is_string());
        assert!(body["timestamp"].is_string());
    };
    let mut bad = ok;
    bad[1].1 = "wrong";
    let (s, b) = token_response(&c, &kv, TENANT, &bad).await;
    check(s, &b, 401, "invalid_client", 7000215);
    let mut bad = ok;
    bad[0].1 = "no-such-app";
    let (s, b) = token_response(&c, &kv, TENANT, &bad).await;
    check(s, &b, 400, "unauthorized_client", 700016);
    let mut bad = ok;
    bad[3].1 = "https://management.azure.com/.default";
    let (s, b) = token_response(&c, &kv, TENANT, &bad).await;
    check(s, &b, 400, "invalid_scope", 70011);
    let (s, b) = token_response(&c, &kv, "00000000-1111-2222-3333-444444444444", &ok).await;
    check(s, &b, 400, "invalid_request", 90002);
    let (s, b) = token_response(
        &c,
        &kv,
        TENANT,
        &[
            ("client_assertion", "some-other-token"),
            ("client_assertion_type", assertion_type),
            ("client_id", "fed-app"),
            ("grant_type", "client_credentials"),
            ("scope", scope),
        ],
    )
    .await;
    check(s, &b, 400, "invalid_client", 700213);
    assert!(
        b["error_description"].as_str().unwrap().contains(
            "No matching federated identity record found for presented assertion subject"
        )
    );
    assert_eq!(kv.counts().token_requests, 7);

    // A throttled token endpoint answers in Entra's shape, with Retry-After.
    kv.fault(
        Rule::always(Fault::Throttle {
            retry_after_secs: 7,
        })
        .path("/oauth2/")
        .times(1),
    );
    let r = c
        .post(format!("{}/{TENANT}/oauth2/v2.0/token", kv.url))
        .form(&ok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    let b: Value = r.json().await.unwrap();
    assert!(b["error"].is_string() && b["error_codes"].is_array(), "{b}");
    let (s, _) = token_response(&c, &kv, TENANT, &ok).await;
    assert_eq!(s, 200);
    let n = kv.counts();
    assert_eq!((n.token_requests, n.faults), (9, 1), "{n:?}");
}

#[tokio::test]
async fn get_latest_version_not_found_and_disabled() {
    let kv = KeyVaultDouble::start().await;
    let c = http(&kv);
    let tok = token(&c, &kv).await;
    let v1 = kv.set_with(
        "Db-Password",
        "one",
        SetOptions {
            tags: vec![("team".into(), "payments".into())],
            content_type: Some("text/plain".into()),
            ..Default::default()
        },
    );
    let v2 = kv.set("db-password", "two");
    assert_eq!(v1.len(), 32);
    assert!(
        v1.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_ne!(v1, v2);

    // Latest, with and without the trailing slash, case-insensitively; the name as first set.
    for path in ["db-password/", "db-password", "DB-PASSWORD/"] {
        let (s, _, b) = get(&c, &tok, &format!("{}/secrets/{path}?{API}", kv.url)).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["value"], "two");
        assert_eq!(b["id"], format!("{}/secrets/Db-Password/{v2}", kv.url));
        let a = &b["attributes"];
        assert_eq!(a["enabled"], true);
        assert!(a["created"].as_i64().unwrap() > 1_600_000_000);
        assert_eq!(a["created"], a["updated"]);
        assert_eq!(a["recoveryLevel"], "Recoverable+Purgeable");
        assert_eq!(a["recoverableDays"], 90);
        assert!(b.get("tags").is_none());
    }
    // A version.
    let (s, _, b) = get(
        &c,
        &tok,
        &format!("{}/secrets/db-password/{v1}?{API}", kv.url),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["value"], "one");
    assert_eq!(b["contentType"], "text/plain");
    assert_eq!(b["tags"]["team"], "payments");

    // Not found: secret and version.
    let (s, _, b) = get(&c, &tok, &format!("{}/secrets/nope/?{API}", kv.url)).await;
    assert_eq!(s, 404);
    assert_eq!(b["error"]["code"], "SecretNotFound");
    assert!(b["error"]["message"].as_str().unwrap().contains("nope"));
    let (s, _, b) = get(
        &c,
        &tok,
        &format!("{}/secrets/db-password/{}?{API}", kv.url, "0".repeat(32)),
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(b["error"]["code"], "SecretNotFound");

    // Bad name, missing api-version.
    let (s, _, b) = get(&c, &tok, &format!("{}/secrets/db_password?{API}", kv.url)).await;
    assert_eq!(s, 400);
    assert_eq!(b["error"]["code"], "BadParameter");
    let (s, _, b) = get(&c, &tok, &format!("{}/secrets/db-password", kv.url)).await;
    assert_eq!(s, 400);
    assert_eq!(b["error"]["code"], "BadParameter");

    // Disabled latest: 403; the older enabled version still reads.
    kv.update("db-password", None, |o| o.enabled = false);
    let (s, _, b) = get(&c, &tok, &format!("{}/secrets/db-password/?{API}", kv.url)).await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["error"]["code"], "Forbidden");
    assert_eq!(
        b["error"]["message"],
        "Operation get is not allowed on a disabled secret."
    );
    assert_eq!(b["error"]["innererror"]["code"], "SecretDisabled");
    let (s, _, _) = get(
        &c,
        &tok,
        &format!("{}/secrets/db-password/{v1}?{API}", kv.url),
    )
    .await;
    assert_eq!(s, 200);

    // Expired and not-yet-valid values are returned.
    kv.set_with(
        "expired",
        "old",
        SetOptions {
            expires: Some(1_000_000_000),
            not_before: Some(4_000_000_000),
            ..Default::default()
        },
    );
    let (s, _, b) = get(&c, &tok, &format!("{}/secrets/expired/?{API}", kv.url)).await;
    assert_eq!(s, 200);
    assert_eq!(b["value"], "old");
    assert_eq!(b["attributes"]["exp"], 1_000_000_000);
    assert_eq!(b["attributes"]["nbf"], 4_000_000_000i64);

    // Deleted: gone.
    kv.delete("expired");
    let (s, _, _) = get(&c, &tok, &format!("{}/secrets/expired/?{API}", kv.url)).await;
    assert_eq!(s, 404);
    let n = kv.counts();
    assert_eq!((n.gets, n.challenges), (12, 0), "{n:?}");
}

#[tokio::test]
async fn set_secret_over_rest() {
    let kv = KeyVaultDouble::start().await;
    let c = http(&kv);
    let tok = token(&c, &kv).await;
    let r = c
        .put(format!("{}/secrets/api-key?{API}", kv.url))
        .bearer_auth(&tok)
        .json(&serde_json::json!({
            "value": "abc",
            "contentType": "text/plain",
            "tags": {"env": "prod"},
            "attributes": {"enabled": true, "exp": 4_000_000_000i64},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["value"], "abc");
    assert_eq!(b["tags"]["env"], "prod");
    assert_eq!(b["attributes"]["exp"], 4_000_000_000i64);
    let id = b["id"].as_str().unwrap();
    let version = id.rsplit('/').next().unwrap();
    assert_eq!(id, format!("{}/secrets/api-key/{version}", kv.url));
    let (s, _, b) = get(&c, &tok, &format!("{}/secrets/api-key/?{API}", kv.url)).await;
    assert_eq!(s, 200);
    assert_eq!(b["value"], "abc");
    assert_eq!(kv.counts().sets, 1);
}

#[tokio::test]
async fn list_pages_and_versions() {
    let kv = KeyVaultDouble::start().await;
    let c = http(&kv);
    let tok = token(&c, &kv).await;
    for i in 0..7 {
        kv.set(&format!("s{i}"), "v");
    }
    kv.update("s3", None, |o| o.enabled = false);
    kv.set_page_size(3);
    let mut url = format!("{}/secrets?{API}", kv.url);
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let (s, _, b) = get(&c, &tok, &url).await;
        assert_eq!(s, 200, "{b}");
        pages += 1;
        for it in b["value"].as_array().unwrap() {
            assert!(it.get("value").is_none(), "{it}");
            assert!(it["attributes"]["enabled"].is_boolean());
            ids.push(it["id"].as_str().unwrap().to_string());
        }
        match b["nextLink"].as_str() {
            Some(next) => {
                assert!(
                    next.starts_with(&format!("{}/secrets?api-version=", kv.url)),
                    "{next}"
                );
                assert!(next.contains("$skiptoken="), "{next}");
                // Like the SDK: re-set api-version (percent-encoding the `$`).
                url = next
                    .replace("api-version=7.6", "api-version=2025-07-01")
                    .replace('$', "%24");
            }
            None => {
                assert!(b["nextLink"].is_null());
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    let want: Vec<String> = (0..7).map(|i| format!("{}/secrets/s{i}", kv.url)).collect();
    assert_eq!(ids, want, "unversioned ids, disabled ones included");

    // maxresults smaller than the page size wins and is carried in nextLink.
    let (_, _, b) = get(&c, &tok, &format!("{}/secrets?{API}&maxresults=2", kv.url)).await;
    assert_eq!(b["value"].as_array().unwrap().len(), 2);
    assert!(b["nextLink"].as_str().unwrap().ends_with("&maxresults=2"));

    // Versions: versioned ids, sorted by version id.
    let mut vs: Vec<String> = (0..4).map(|i| kv.set("multi", &format!("v{i}"))).collect();
    kv.set_page_size(25);
    let (s, _, b) = get(
        &c,
        &tok,
        &format!("{}/secrets/multi/versions?{API}", kv.url),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let got: Vec<String> = b["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|it| it["id"].as_str().unwrap().to_string())
        .collect();
    vs.sort();
    let want: Vec<String> = vs
        .iter()
        .map(|v| format!("{}/secrets/multi/{v}", kv.url))
        .collect();
    assert_eq!(got, want);
    assert!(b["nextLink"].is_null());
    let (s, _, b) = get(&c, &tok, &format!("{}/secrets/none/versions?{API}", kv.url)).await;
    assert_eq!(s, 404);
    assert_eq!(b["error"]["code"], "SecretNotFound");
    assert_eq!(kv.counts().lists, 6);
}

#[tokio::test]
async fn throttle_and_status_faults() {
    let kv = KeyVaultDouble::start().await;
    let c = http(&kv);
    let tok = token(&c, &kv).await;
    kv.set("a", "1");
    kv.set("b", "2");
    kv.fault(
        Rule::always(Fault::Throttle {
            retry_after_secs: 3,
        })
        .path("/secrets/a")
        .times(2),
    );
    for _ in 0..2 {
        let (s, h, b) = get(&c, &tok, &format!("{}/secrets/a/?{API}", kv.url)).await;
        assert_eq!(s, 429);
        assert_eq!(h["retry-after"], "3");
        assert_eq!(b["error"]["code"], "Throttled");
    }
    // Other paths are untouched, and the rule is spent after two hits.
    let (s, _, _) = get(&c, &tok, &format!("{}/secrets/b/?{API}", kv.url)).await;
    assert_eq!(s, 200);
    let (s, _, b) = get(&c, &tok, &format!("{}/secrets/a/?{API}", kv.url)).await;
    assert_eq!(s, 200);
    assert_eq!(b["value"], "1");

    kv.fault(Rule::always(Fault::Status(503)));
    let (s, _, b) = get(&c, &tok, &format!("{}/secrets/a/?{API}", kv.url)).await;
    assert_eq!(s, 503);
    assert_eq!(b["error"]["code"], "ServiceUnavailable");
    kv.clear_faults();

    kv.fault(Rule::always(Fault::Forbidden).times(1));
    let r = c
        .get(format!("{}/secrets/a/?{API}", kv.url))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let raw = r.text().await.unwrap();
    assert!(raw.contains(r"\r\n"), "JSON escapes in the message: {raw}");
    let b: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(b["error"]["code"], "Forbidden");
    assert_eq!(b["error"]["innererror"]["code"], "AccessDenied");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("appid={CLIENT}"))
    );

    kv.fault(Rule::always(Fault::Delay(Duration::from_millis(300))).times(1));
    let t = Instant::now();
    let (s, _, _) = get(&c, &tok, &format!("{}/secrets/a/?{API}", kv.url)).await;
    assert_eq!(s, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    kv.fault(Rule::always(Fault::Unauthorized).times(1));
    let (s, h, b) = get(&c, &tok, &format!("{}/secrets/a/?{API}", kv.url)).await;
    assert_eq!(s, 401);
    assert!(h.contains_key("www-authenticate"));
    assert_eq!(b["error"]["code"], "Unauthorized");

    let n = kv.counts();
    assert_eq!((n.faults, n.gets, n.challenges), (6, 8, 0), "{n:?}");
    kv.reset_counts();
    assert_eq!(kv.counts().gets, 0);
}

#[tokio::test]
async fn truncate_breaks_the_body_read() {
    let kv = KeyVaultDouble::start().await;
    let c = http(&kv);
    let tok = token(&c, &kv).await;
    kv.set("a", &"x".repeat(1000));
    kv.fault(Rule::always(Fault::Truncate).times(1));
    let r = c
        .get(format!("{}/secrets/a/?{API}", kv.url))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let announced = r.content_length().unwrap();
    assert!(announced > 1000);
    assert!(
        r.bytes().await.is_err(),
        "a truncated body must fail to read"
    );
    // The next request (a fresh connection) is fine.
    let (s, _, b) = get(&c, &tok, &format!("{}/secrets/a/?{API}", kv.url)).await;
    assert_eq!(s, 200);
    assert_eq!(b["value"].as_str().unwrap().len(), 1000);
}

#[tokio::test]
async fn revoked_unknown_and_expired_tokens() {
    let kv = KeyVaultDouble::start().await;
    let c = http(&kv);
    let tok = token(&c, &kv).await;
    kv.set("a", "1");
    let url = format!("{}/secrets/a/?{API}", kv.url);
    assert_eq!(get(&c, &tok, &url).await.0, 200);

    kv.revoke_tokens();
    let (s, h, b) = get(&c, &tok, &url).await;
    assert_eq!(s, 401);
    assert!(
        h["www-authenticate"]
            .to_str()
            .unwrap()
            .contains(r#"resource="https://vault.azure.net""#)
    );
    assert_eq!(b["error"]["code"], "Unauthorized");
    // A new token works.
    let tok2 = token(&c, &kv).await;
    assert_eq!(get(&c, &tok2, &url).await.0, 200);

    let (s, _, b) = get(&c, "made-up", &url).await;
    assert_eq!(s, 401);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("AKV10032")
    );

    kv.set_token_lifetime(1);
    let short = token(&c, &kv).await;
    assert_eq!(get(&c, &short, &url).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&c, &short, &url).await.0, 401);
    assert_eq!(kv.counts().challenges, 0);
    let log = kv.requests();
    assert!(
        log.iter()
            .filter(|l| l.path.contains("/secrets/"))
            .all(|l| l.authorized)
    );
}

#[tokio::test]
async fn concurrent_requests_on_kept_alive_connections() {
    let kv = KeyVaultDouble::start().await;
    let c = http(&kv);
    let tok = token(&c, &kv).await;
    for i in 0..20 {
        kv.set(&format!("k{i}"), &i.to_string());
    }
    kv.fault(Rule::always(Fault::Delay(Duration::from_millis(100))).times(20));
    let t = Instant::now();
    let futs = (0..20).map(|i| {
        let (c, tok, url) = (
            c.clone(),
            tok.clone(),
            format!("{}/secrets/k{i}/?{API}", kv.url),
        );
        async move { get(&c, &tok, &url).await }
    });
    let res = futures::future::join_all(futs).await;
    for (i, (s, _, b)) in res.into_iter().enumerate() {
        assert_eq!(s, 200);
        assert_eq!(b["value"], i.to_string());
    }
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "served concurrently"
    );
    // Later requests go over the kept-alive, pooled connections.
    for i in 0..5 {
        assert_eq!(
            get(&c, &tok, &format!("{}/secrets/k{i}/?{API}", kv.url))
                .await
                .0,
            200
        );
    }
}
