//! AWS Secrets Manager for tests and the benchmark: a `moto` server (the AWS Secrets Manager
//! emulator from PyPI `moto[server]`, installed in `.venv-test` by `make test-deps`) in its own
//! process and a fault-injecting, counting proxy in front of it.
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
//!
//! With the `aws-sdk` feature, [`Moto::client`] and [`admin_client`] give AWS SDK clients to set
//! up secrets (the benchmark creates them with plain HTTP: [`Moto::create_secrets`]).

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::StreamExt;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

use crate::http::{Request, read_request, respond};

/// How [`Moto::launch`] starts moto.
#[derive(Clone, Debug)]
pub struct MotoOptions {
    /// The `moto_server` executable (default: the workspace's `.venv-test/bin/moto_server`).
    pub bin: PathBuf,
    /// Where moto's output goes (default: discarded).
    pub log: Option<PathBuf>,
    /// Ports tried, each a fresh free one (a port can be taken between picking and binding).
    pub attempts: usize,
    /// How long each attempt waits for moto to answer.
    pub ready_timeout: Duration,
}

impl Default for MotoOptions {
    fn default() -> Self {
        MotoOptions {
            bin: super::venv_bin("moto_server"),
            log: None,
            attempts: 3,
            ready_timeout: Duration::from_secs(15),
        }
    }
}

/// A running `moto_server` on 127.0.0.1, killed on drop.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    opts: MotoOptions,
    http: reqwest::Client,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The 50 ms polls of `timeout`.
fn polls(timeout: Duration) -> u128 {
    timeout.as_millis() / 50
}

impl Moto {
    /// Starts moto from `.venv-test` on a free port and waits until it answers; panics if it does
    /// not.
    pub async fn start() -> Moto {
        Self::launch(MotoOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Starts moto as `opts` say and waits until it answers.
    pub async fn launch(opts: MotoOptions) -> anyhow::Result<Moto> {
        if !opts.bin.exists() {
            bail!(
                "{} is missing: run `make test-deps` (installs moto[server] into .venv-test)",
                opts.bin.display()
            );
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        for _ in 0..opts.attempts {
            let port = crate::net::try_free_port()?;
            let moto = Moto {
                child: spawn(&opts, &port.to_string(), false)?,
                url: format!("http://127.0.0.1:{port}"),
                opts: opts.clone(),
                http: http.clone(),
            };
            if moto.ready().await {
                return Ok(moto);
            }
            // Port raced away or a slow start: try again on another port.
        }
        bail!("moto_server did not become ready")
    }

    async fn ready(&self) -> bool {
        for _ in 0..polls(self.opts.ready_timeout) {
            if let Ok(r) = self
                .http
                .get(format!("{}/moto-api/", self.url))
                .send()
                .await
                && r.status().is_success()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Clears all state.
    pub async fn reset(&self) {
        self.http
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
        let port = self.url.rsplit(':').next().unwrap().to_string();
        self.child = spawn(&self.opts, &port, true).expect("spawn moto_server");
        if !self.ready().await {
            panic!("moto_server did not restart");
        }
    }

    /// Creates string secrets `name(i)` = `value(i)` for `i in 0..n` directly in moto (8 at a time;
    /// not through any proxy, so not counted).
    pub async fn create_secrets(
        &self,
        n: usize,
        name: impl Fn(usize) -> String,
        value: impl Fn(usize) -> String,
    ) -> anyhow::Result<()> {
        let (name, value) = (&name, &value);
        let mut s = futures::stream::iter((0..n).map(|i| async move {
            let body = json!({"Name": name(i), "SecretString": value(i)});
            let r = self
                .http
                .post(&self.url)
                .header("x-amz-target", "secretsmanager.CreateSecret")
                .header("content-type", "application/x-amz-json-1.1")
                .header(
                    "authorization",
                    "AWS4-HMAC-SHA256 Credential=AKIABENCH/20250101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
                )
                .body(body.to_string())
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("CreateSecret {}: HTTP {}", name(i), r.status());
            }
            Ok(())
        }))
        .buffer_unordered(8);
        while let Some(r) = s.next().await {
            r?;
        }
        Ok(())
    }

    /// An admin client for `region` (creates and changes secrets directly in moto).
    #[cfg(feature = "aws-sdk")]
    pub fn client(&self, region: &str) -> aws_sdk_secretsmanager::Client {
        admin_client(&self.url, region)
    }
}

/// `moto_server` on `port`, its output into the log file (appended to on a restart) or discarded.
fn spawn(opts: &MotoOptions, port: &str, restart: bool) -> anyhow::Result<Child> {
    let (stdout, stderr) = match &opts.log {
        Some(log) => {
            let file = if restart {
                File::options().create(true).append(true).open(log)?
            } else {
                File::create(log)?
            };
            (Stdio::from(file.try_clone()?), Stdio::from(file))
        }
        None => (Stdio::null(), Stdio::null()),
    };
    Command::new(&opts.bin)
        .args(["-H", "127.0.0.1", "-p", port])
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .context("spawn moto_server")
}

/// A Secrets Manager client for `url` and `region` with dummy static credentials.
#[cfg(feature = "aws-sdk")]
pub fn admin_client(url: &str, region: &str) -> aws_sdk_secretsmanager::Client {
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Region};
    // The SDK is built without its default TLS stack: a rustls + ring client, as secretsync's.
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let conf = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(url)
        .http_client(http)
        .credentials_provider(aws_credential_types::Credentials::new(
            "admin", "admin", None, None, "test",
        ))
        .build();
    aws_sdk_secretsmanager::Client::from_conf(conf)
}

/// Creates a string secret (with tags); returns its ARN.
#[cfg(feature = "aws-sdk")]
pub async fn create_string(
    c: &aws_sdk_secretsmanager::Client,
    name: &str,
    value: &str,
    tags: &[(&str, &str)],
) -> String {
    use aws_sdk_secretsmanager::types::Tag;
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
#[cfg(feature = "aws-sdk")]
pub async fn create_binary(c: &aws_sdk_secretsmanager::Client, name: &str, value: &[u8]) {
    c.create_secret()
        .name(name)
        .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(
            value.to_vec(),
        ))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"));
}

/// Puts a new current version; returns its VersionId.
#[cfg(feature = "aws-sdk")]
pub async fn put_string(c: &aws_sdk_secretsmanager::Client, name: &str, value: &str) -> String {
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
    Throttle429 {
        /// Seconds in `Retry-After`, if any.
        retry_after: Option<u32>,
    },
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

/// Calls counted by the proxy, summed over regions (the benchmark's figures).
#[derive(Clone, Debug, Default)]
pub struct Calls {
    /// Calls by `X-Amz-Target` operation (STS: `Action`; `""` when neither names one).
    pub by_op: HashMap<String, u64>,
    /// Secret ids requested in `BatchGetSecretValue` calls.
    pub batch_ids: u64,
}

impl Calls {
    /// Secrets Manager read calls (batch + single + list).
    pub fn reads(&self) -> u64 {
        [
            "BatchGetSecretValue",
            "GetSecretValue",
            "ListSecrets",
            "DescribeSecret",
        ]
        .iter()
        .map(|op| self.by_op.get(*op).copied().unwrap_or(0))
        .sum()
    }
    /// All calls.
    pub fn total(&self) -> u64 {
        self.by_op.values().sum()
    }
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
    /// Starts a proxy forwarding to `upstream` (moto), waiting at most 30 s for each answer.
    pub async fn start(upstream: &str) -> Proxy {
        Self::with_upstream_timeout(upstream, Duration::from_secs(30)).await
    }

    /// Like [`Proxy::start`], waiting at most `timeout` for each answer of `upstream`.
    pub async fn with_upstream_timeout(upstream: &str, timeout: Duration) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let upstream = upstream.to_string();
        let st = state.clone();
        let http = reqwest::Client::builder().timeout(timeout).build().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
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

    fn state(&self) -> std::sync::MutexGuard<'_, ProxyState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a fault rule (rules are checked in order).
    pub fn fail(&self, rule: Rule) {
        self.state().rules.push(rule);
    }

    /// Removes all fault rules.
    pub fn clear(&self) {
        self.state().rules.clear();
    }

    /// Requests seen for operation `op` (all regions, faulted ones included).
    pub fn count(&self, op: &str) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|((o, _), _)| o == op)
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests seen for operation `op` signed for `region`.
    pub fn count_in(&self, op: &str, region: &str) -> usize {
        *self
            .state()
            .calls
            .get(&(op.to_string(), region.to_string()))
            .unwrap_or(&0)
    }

    /// All requests seen.
    pub fn total(&self) -> usize {
        self.state().calls.values().sum()
    }

    /// Number of ids of every `BatchGetSecretValue` seen.
    pub fn batch_sizes(&self) -> Vec<usize> {
        self.state().batch_sizes.clone()
    }

    /// Access key ids that signed requests, in order.
    pub fn access_keys(&self) -> Vec<String> {
        self.state().access_keys.clone()
    }

    /// The `WebIdentityToken` of every STS `AssumeRoleWithWebIdentity` seen, in order.
    pub fn web_identity_tokens(&self) -> Vec<String> {
        self.state().web_identity_tokens.clone()
    }

    /// Faults injected so far.
    pub fn faults_injected(&self) -> usize {
        self.state().faults_injected
    }

    /// Calls so far by operation, and the ids of all batches.
    pub fn calls(&self) -> Calls {
        let s = self.state();
        let mut by_op: HashMap<String, u64> = HashMap::new();
        for ((op, _), n) in &s.calls {
            *by_op.entry(op.clone()).or_default() += *n as u64;
        }
        Calls {
            by_op,
            batch_ids: s.batch_sizes.iter().sum::<usize>() as u64,
        }
    }

    /// Forgets the counters.
    pub fn reset_counts(&self) {
        let mut s = self.state();
        s.calls.clear();
        s.batch_sizes.clear();
        s.access_keys.clear();
        s.faults_injected = 0;
    }
}

const AMZ_JSON: &str = "application/x-amz-json-1.1";

fn error_body(code: &str, message: &str) -> Vec<u8> {
    serde_json::json!({"__type": code, "message": message})
        .to_string()
        .into_bytes()
}

async fn respond_error(sock: &mut TcpStream, status: u16, extra: &[(&str, String)], body: &[u8]) {
    respond(sock, status, AMZ_JSON, extra, body, body.len()).await;
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

/// The ids of a `BatchGetSecretValue` body.
fn batch_size(req: &Request) -> usize {
    serde_json::from_slice::<serde_json::Value>(&req.body)
        .ok()
        .and_then(|v| v["SecretIdList"].as_array().map(Vec::len))
        .unwrap_or(0)
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
        let mut s = st.lock().unwrap_or_else(|p| p.into_inner());
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
            s.batch_sizes.push(batch_size(&req));
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
    if op == "BatchGetSecretValue" && batch_size(&req) > 20 {
        let b = error_body(
            "ValidationException",
            "1 validation error detected: Value at 'secretIdList' failed to satisfy constraint: Member must have length less than or equal to 20",
        );
        respond_error(&mut sock, 400, &[], &b).await;
        return Some(());
    }
    match fault {
        Some(Fault::Throttle) => {
            let b = error_body("ThrottlingException", "Rate exceeded");
            respond_error(&mut sock, 400, &[], &b).await;
            return Some(());
        }
        Some(Fault::Throttle429 { retry_after }) => {
            let b = error_body("TooManyRequestsException", "Too many requests");
            let extra: Vec<(&str, String)> = retry_after
                .map(|s| vec![("Retry-After", s.to_string())])
                .unwrap_or_default();
            respond_error(&mut sock, 429, &extra, &b).await;
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
            respond_error(&mut sock, code, &[], &b).await;
            return Some(());
        }
        Some(Fault::AccessDenied) => {
            let b = error_body(
                "AccessDeniedException",
                "User is not authorized to perform this operation",
            );
            respond_error(&mut sock, 400, &[], &b).await;
            return Some(());
        }
        Some(Fault::ExpiredToken) => {
            let b = error_body(
                "ExpiredTokenException",
                "The security token included in the request is expired",
            );
            respond_error(&mut sock, 400, &[], &b).await;
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
    let sent = if fault == Some(Fault::Truncate) {
        &body[..body.len() / 2]
    } else {
        &body[..]
    };
    respond(&mut sock, status, AMZ_JSON, &[], sent, body.len()).await;
    Some(())
}
