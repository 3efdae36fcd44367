//! AWS Secrets Manager for G4: `moto_server` (from `.venv-test`, installed by `make test-deps`) in its
//! own process, behind a counting proxy in the benchmark process that also enforces AWS's 20-id cap on
//! `BatchGetSecretValue` (moto has none).

use std::collections::HashMap;
use std::net::TcpListener as StdListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running moto server, killed on drop.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    http: reqwest::Client,
}

impl Moto {
    /// Starts `moto_server` from `repo/.venv-test` and waits (at most 30 s) until it answers.
    pub async fn start(repo: &Path, log: &Path) -> anyhow::Result<Self> {
        let bin = repo.join(".venv-test/bin/moto_server");
        if !bin.exists() {
            bail!(
                "{} is missing: run `make test-deps` (installs moto[server] into .venv-test)",
                bin.display()
            );
        }
        let port = StdListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let file = std::fs::File::create(log)?;
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .spawn()
            .context("starting moto_server")?;
        let moto = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        };
        for _ in 0..600 {
            if let Ok(r) = moto
                .http
                .get(format!("{}/moto-api/", moto.url))
                .send()
                .await
                && r.status().is_success()
            {
                return Ok(moto);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("moto_server did not become ready")
    }

    /// Creates string secrets `name(i)` = `value(i)` for `i in 0..n` (directly in moto, not counted).
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
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default)]
struct Tally {
    calls: HashMap<String, u64>,
    batch_ids: u64,
}

/// Counting proxy in front of moto.
pub struct Proxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    tally: Arc<Mutex<Tally>>,
    task: tokio::task::JoinHandle<()>,
}

/// Calls counted by the proxy.
#[derive(Clone, Debug, Default)]
pub struct Calls {
    /// Calls by `X-Amz-Target` operation.
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

impl Proxy {
    /// Starts the proxy forwarding to `upstream`.
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let tally: Arc<Mutex<Tally>> = Arc::default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let (t, up) = (tally.clone(), upstream.to_string());
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let (t, up, http) = (t.clone(), up.clone(), http.clone());
                tokio::spawn(async move {
                    let _ = serve(sock, t, &up, &http).await;
                });
            }
        });
        Ok(Self { url, tally, task })
    }

    /// Calls so far.
    pub fn calls(&self) -> Calls {
        let t = self.tally.lock().unwrap_or_else(|p| p.into_inner());
        Calls {
            by_op: t.calls.clone(),
            batch_ids: t.batch_ids,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut sock: TcpStream,
    tally: Arc<Mutex<Tally>>,
    upstream: &str,
    http: &reqwest::Client,
) -> anyhow::Result<()> {
    // One request per connection (we answer `Connection: close`).
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = sock.read(&mut chunk).await?;
        if n == 0 || buf.len() > 1 << 20 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or("POST").to_string();
    let path = first.next().unwrap_or("/").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let len: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let op = header("x-amz-target")
        .and_then(|t| t.rsplit('.').next().map(str::to_string))
        .or_else(|| {
            String::from_utf8_lossy(&body)
                .split('&')
                .find_map(|kv| kv.strip_prefix("Action=").map(str::to_string))
        })
        .unwrap_or_else(|| "other".into());
    let ids = if op == "BatchGetSecretValue" {
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["SecretIdList"].as_array().map(Vec::len))
            .unwrap_or(0)
    } else {
        0
    };
    {
        let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
        *t.calls.entry(op.clone()).or_default() += 1;
        t.batch_ids += ids as u64;
    }
    let (status, resp_body) = if ids > 20 {
        (
            400,
            json!({"__type": "ValidationException", "message": "Member must have length less than or equal to 20"})
                .to_string()
                .into_bytes(),
        )
    } else {
        let mut fwd = http.request(method.parse()?, format!("{upstream}{path}"));
        for (k, v) in &headers {
            if !["host", "content-length", "connection", "transfer-encoding"]
                .iter()
                .any(|h| k.eq_ignore_ascii_case(h))
            {
                fwd = fwd.header(k, v);
            }
        }
        let r = fwd.body(body).send().await?;
        (r.status().as_u16(), r.bytes().await?.to_vec())
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        resp_body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(&resp_body).await?;
    sock.flush().await?;
    let _ = sock.shutdown().await;
    Ok(())
}
