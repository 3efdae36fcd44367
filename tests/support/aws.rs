//! Test support for the AWS provider: a `moto` server (the AWS Secrets Manager emulator from PyPI
//! `moto[server]`, installed in `.venv-test` by `make test-deps`) and a fault-injecting proxy in front
//! of it.
//!
//! Where moto differs from AWS, the proxy supplies what AWS does:
//! - moto has no 20-id cap on `BatchGetSecretValue`: the proxy rejects more than 20 ids with a
//!   `ValidationException`, like AWS.
//! - moto never throttles, never fails with 5xx, never hangs and never checks signatures: the proxy
//!   injects `ThrottlingException` (400), 429 with `Retry-After`, 500/503, hangs, truncated bodies,
//!   `AccessDeniedException`, `ExpiredTokenException`, per operation and per region.
//! - moto keeps one backend per region (taken from the SigV4 credential scope), but an endpoint
//!   override sends every region to the same URL: the proxy reads the region from the
//!   `Authorization` header's credential scope, so a rule can fail one region while another serves.
//!
//! The proxy also counts calls per `X-Amz-Target` operation and region, records the size of every
//! `BatchGetSecretValue` and the access key ids that signed requests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_secretsmanager::types::Tag;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running `moto_server` on 127.0.0.1, killed on drop.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Moto {
    /// Starts moto on a free port and waits until it answers.
    pub async fn start() -> Moto {
        let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-test/bin/moto_server");
        assert!(
            bin.exists(),
            "{} is missing: run `make test-deps` (installs moto[server] into .venv-test)",
            bin.display()
        );
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn moto_server");
            let moto = Moto {
                child,
                url: format!("http://127.0.0.1:{port}"),
            };
            let http = reqwest::Client::new();
            for _ in 0..300 {
                if let Ok(r) = http.get(format!("{}/moto-api/", moto.url)).send().await
                    && r.status().is_success()
                {
                    return moto;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // Port raced away or a slow start: try again on another port.
        }
        panic!("moto_server did not become ready");
    }

    /// Clears all state.
    pub async fn reset(&self) {
        reqwest::Client::new()
            .post(format!("{}/moto-api/reset", self.url))
            .send()
            .await
            .expect("reset moto");
    }

    /// Stops the server (an outage); `restart` brings a fresh one up on the same port.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts moto again on the same port (state is lost).
    pub async fn restart(&mut self) {
        let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-test/bin/moto_server");
        let port = self.url.rsplit(':').next().unwrap().to_string();
        self.child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn moto_server");
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = http.get(format!("{}/moto-api/", self.url)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("moto_server did not restart");
    }

    /// An admin client for `region` (creates and changes secrets directly in moto).
    pub fn client(&self, region: &str) -> Client {
        admin_client(&self.url, region)
    }
}

/// A Secrets Manager client for `url` and `region` with dummy static credentials.
pub fn admin_client(url: &str, region: &str) -> Client {
    let conf = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(url)
        .http_client(secretsync::providers::aws::https_client())
        .credentials_provider(Credentials::new("admin", "admin", None, None, "test"))
        .build();
    Client::from_conf(conf)
}

/// Creates a string secret (with tags); returns its ARN.
pub async fn create_string(c: &Client, name: &str, value: &str, tags: &[(&str, &str)]) -> String {
    let tags: Vec<Tag> = tags
        .iter()
        .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
        .collect();
    c.create_secret()
        .name(name)
        .secret_string(value)
        .set_tags((!tags.is_empty()).then_some(tags))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"))
        .arn
        .expect("arn")
}

/// Creates a binary secret.
pub async fn create_binary(c: &Client, name: &str, value: &[u8]) {
    c.create_secret()
        .name(name)
        .secret_binary(Blob::new(value.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"));
}

/// Puts a new current version; returns its VersionId.
pub async fn put_string(c: &Client, name: &str, value: &str) -> String {
    c.put_secret_value()
        .secret_id(name)
        .secret_string(value)
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {name}: {e:?}"))
        .version_id
        .expect("version id")
}

/// A fault the proxy can inject.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// 400 `{"__type":"ThrottlingException"}`.
    Throttle,
    /// 429 `TooManyRequestsException`, with `Retry-After` seconds if given.
    Throttle429 { retry_after: Option<u32> },
    /// This HTTP status with an `InternalServiceError`/`ServiceUnavailable` body.
    Status(u16),
    /// Accept the request and never answer.
    Hang,
    /// Forward, then send only half of the body (Content-Length announces all of it) and close.
    Truncate,
    /// 400 `AccessDeniedException`.
    AccessDenied,
    /// 400 `ExpiredTokenException`.
    ExpiredToken,
}

/// When a fault applies.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Operation (`X-Amz-Target` suffix, e.g. `BatchGetSecretValue`), any if `None`.
    pub op: Option<String>,
    /// SigV4 region, any if `None`.
    pub region: Option<String>,
    /// What to do.
    pub fault: Fault,
    /// How many matching requests it hits (`None`: until cleared).
    pub times: Option<usize>,
}

impl Rule {
    /// Every request gets `fault`.
    pub fn always(fault: Fault) -> Rule {
        Rule {
            op: None,
            region: None,
            fault,
            times: None,
        }
    }
    /// Only operation `op`.
    pub fn op(mut self, op: &str) -> Rule {
        self.op = Some(op.to_string());
        self
    }
    /// Only requests signed for `region`.
    pub fn region(mut self, region: &str) -> Rule {
        self.region = Some(region.to_string());
        self
    }
    /// Only the next `n` matching requests.
    pub fn times(mut self, n: usize) -> Rule {
        self.times = Some(n);
        self
    }
}

#[derive(Default)]
struct ProxyState {
    rules: Vec<Rule>,
    calls: HashMap<(String, String), usize>,
    batch_sizes: Vec<usize>,
    access_keys: Vec<String>,
    /// `WebIdentityToken` of every STS `AssumeRoleWithWebIdentity`.
    web_identity_tokens: Vec<String>,
    faults_injected: usize,
}

/// The fault-injecting, counting proxy.
pub struct Proxy {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    state: Arc<Mutex<ProxyState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Starts a proxy forwarding to `upstream` (moto).
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let upstream = upstream.to_string();
        let st = state.clone();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let (st, upstream, http) = (st.clone(), upstream.clone(), http.clone());
                tokio::spawn(async move {
                    let _ = serve(sock, st, &upstream, &http).await;
                });
            }
        });
        Proxy { url, state, task }
    }

    /// Adds a fault rule (rules are checked in order).
    pub fn fail(&self, rule: Rule) {
        self.state.lock().unwrap().rules.push(rule);
    }

    /// Removes all fault rules.
    pub fn clear(&self) {
        self.state.lock().unwrap().rules.clear();
    }

    /// Requests seen for operation `op` (all regions, faulted ones included).
    pub fn count(&self, op: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|((o, _), _)| o == op)
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests seen for operation `op` signed for `region`.
    pub fn count_in(&self, op: &str, region: &str) -> usize {
        *self
            .state
            .lock()
            .unwrap()
            .calls
            .get(&(op.to_string(), region.to_string()))
            .unwrap_or(&0)
    }

    /// All requests seen.
    pub fn total(&self) -> usize {
        self.state.lock().unwrap().calls.values().sum()
    }

    /// Number of ids of every `BatchGetSecretValue` seen.
    pub fn batch_sizes(&self) -> Vec<usize> {
        self.state.lock().unwrap().batch_sizes.clone()
    }

    /// Access key ids that signed requests, in order.
    pub fn access_keys(&self) -> Vec<String> {
        self.state.lock().unwrap().access_keys.clone()
    }

    /// The `WebIdentityToken` of every STS `AssumeRoleWithWebIdentity` seen, in order.
    pub fn web_identity_tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().web_identity_tokens.clone()
    }

    /// Faults injected so far.
    pub fn faults_injected(&self) -> usize {
        self.state.lock().unwrap().faults_injected
    }

    /// Forgets the counters.
    pub fn reset_counts(&self) {
        let mut s = self.state.lock().unwrap();
        s.calls.clear();
        s.batch_sizes.clear();
        s.access_keys.clear();
        s.faults_injected = 0;
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn read_request(sock: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

async fn respond(
    sock: &mut TcpStream,
    status: u16,
    extra: &[(&str, String)],
    body: &[u8],
    announce: usize,
) {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {announce}\r\nConnection: close\r\n"
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = sock.write_all(head.as_bytes()).await;
    let _ = sock.write_all(body).await;
    let _ = sock.flush().await;
    let _ = sock.shutdown().await;
}

fn error_body(code: &str, message: &str) -> Vec<u8> {
    serde_json::json!({"__type": code, "message": message})
        .to_string()
        .into_bytes()
}

/// The region of a SigV4 `Authorization` header: `Credential=AKID/DATE/REGION/SERVICE/aws4_request`.
fn sigv4(auth: &str) -> (String, String) {
    let cred = auth
        .split("Credential=")
        .nth(1)
        .and_then(|s| s.split([',', ' ']).next())
        .unwrap_or("");
    let parts: Vec<&str> = cred.split('/').collect();
    (
        parts.first().unwrap_or(&"").to_string(),
        parts.get(2).unwrap_or(&"").to_string(),
    )
}

async fn serve(
    mut sock: TcpStream,
    st: Arc<Mutex<ProxyState>>,
    upstream: &str,
    http: &reqwest::Client,
) -> Option<()> {
    let req = read_request(&mut sock).await?;
    // JSON protocol: `X-Amz-Target: secretsmanager.GetSecretValue`; query protocol (STS): `Action=`.
    let op = req
        .header("x-amz-target")
        .and_then(|t| t.rsplit('.').next())
        .map(str::to_string)
        .or_else(|| {
            String::from_utf8_lossy(&req.body)
                .split('&')
                .find_map(|kv| kv.strip_prefix("Action=").map(str::to_string))
        })
        .unwrap_or_default();
    let (akid, region) = sigv4(req.header("authorization").unwrap_or(""));
    let fault = {
        let mut s = st.lock().unwrap();
        *s.calls.entry((op.clone(), region.clone())).or_default() += 1;
        s.access_keys.push(akid);
        if op == "AssumeRoleWithWebIdentity" {
            let body = String::from_utf8_lossy(&req.body).to_string();
            if let Some(t) = body
                .split('&')
                .find_map(|kv| kv.strip_prefix("WebIdentityToken="))
            {
                let t = percent_encoding::percent_decode_str(t)
                    .decode_utf8_lossy()
                    .to_string();
                s.web_identity_tokens.push(t);
            }
        }
        if op == "BatchGetSecretValue" {
            let n = serde_json::from_slice::<serde_json::Value>(&req.body)
                .ok()
                .and_then(|v| v["SecretIdList"].as_array().map(Vec::len))
                .unwrap_or(0);
            s.batch_sizes.push(n);
        }
        let mut hit = None;
        for r in s.rules.iter_mut() {
            if r.op.as_ref().is_some_and(|o| *o != op)
                || r.region.as_ref().is_some_and(|g| *g != region)
                || r.times == Some(0)
            {
                continue;
            }
            if let Some(t) = &mut r.times {
                *t -= 1;
            }
            hit = Some(r.fault.clone());
            break;
        }
        if hit.is_some() {
            s.faults_injected += 1;
        }
        hit
    };
    // AWS caps BatchGetSecretValue at 20 ids; moto does not.
    if op == "BatchGetSecretValue" {
        let n = serde_json::from_slice::<serde_json::Value>(&req.body)
            .ok()
            .and_then(|v| v["SecretIdList"].as_array().map(Vec::len))
            .unwrap_or(0);
        if n > 20 {
            let b = error_body(
                "ValidationException",
                "1 validation error detected: Value at 'secretIdList' failed to satisfy constraint: Member must have length less than or equal to 20",
            );
            respond(&mut sock, 400, &[], &b, b.len()).await;
            return Some(());
        }
    }
    match fault {
        Some(Fault::Throttle) => {
            let b = error_body("ThrottlingException", "Rate exceeded");
            respond(&mut sock, 400, &[], &b, b.len()).await;
            return Some(());
        }
        Some(Fault::Throttle429 { retry_after }) => {
            let b = error_body("TooManyRequestsException", "Too many requests");
            let extra: Vec<(&str, String)> = retry_after
                .map(|s| vec![("Retry-After", s.to_string())])
                .unwrap_or_default();
            respond(&mut sock, 429, &extra, &b, b.len()).await;
            return Some(());
        }
        Some(Fault::Status(code)) => {
            let b = error_body(
                if code == 503 {
                    "ServiceUnavailable"
                } else {
                    "InternalServiceError"
                },
                "injected failure",
            );
            respond(&mut sock, code, &[], &b, b.len()).await;
            return Some(());
        }
        Some(Fault::AccessDenied) => {
            let b = error_body(
                "AccessDeniedException",
                "User is not authorized to perform this operation",
            );
            respond(&mut sock, 400, &[], &b, b.len()).await;
            return Some(());
        }
        Some(Fault::ExpiredToken) => {
            let b = error_body(
                "ExpiredTokenException",
                "The security token included in the request is expired",
            );
            respond(&mut sock, 400, &[], &b, b.len()).await;
            return Some(());
        }
        Some(Fault::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Some(());
        }
        Some(Fault::Truncate) | None => {}
    }
    let mut fwd = http.request(req.method.parse().ok()?, format!("{upstream}{}", req.path));
    for (k, v) in &req.headers {
        if !["host", "content-length", "connection", "transfer-encoding"]
            .iter()
            .any(|h| k.eq_ignore_ascii_case(h))
        {
            fwd = fwd.header(k, v);
        }
    }
    let resp = match fwd.body(req.body).send().await {
        Ok(r) => r,
        Err(_) => {
            // Upstream down (moto stopped): the connection is refused like a dead endpoint.
            return Some(());
        }
    };
    let status = resp.status().as_u16();
    let body = resp.bytes().await.ok()?.to_vec();
    if fault == Some(Fault::Truncate) {
        respond(&mut sock, status, &[], &body[..body.len() / 2], body.len()).await;
    } else {
        respond(&mut sock, status, &[], &body, body.len()).await;
    }
    Some(())
}
