//! The Kubernetes API emulator as a separate process (`kube-emulator`), and a minimal raw-HTTP client
//! for it: the benchmark's own writes, the emulator's request counters.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::StreamExt;
use serde_json::Value;

/// A running `kube-emulator`, stopped on drop.
pub struct EmulatorProc {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// A kubeconfig pointing at it.
    pub kubeconfig: PathBuf,
}

impl EmulatorProc {
    /// Starts `bin` with the CRDs of `crds`, writing its kubeconfig into `dir`.
    pub fn start(bin: &Path, crds: &Path, dir: &Path) -> anyhow::Result<Self> {
        let kubeconfig = dir.join("kubeconfig");
        let log = std::fs::File::create(dir.join("emulator.log"))?;
        let mut child = Command::new(bin)
            .args(["--port", "0", "--watch-history", "50000"])
            // Like kube-apiserver (about one bookmark a minute), not the test default of 3 s.
            .args(["--bookmark-interval", "60"])
            .arg("--crds")
            .arg(crds)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("emulator stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let url = line.trim().to_string();
        if !url.starts_with("http://127.0.0.1:") {
            let _ = child.kill();
            bail!("kube-emulator printed {url:?} instead of its URL");
        }
        Ok(Self {
            child,
            url,
            kubeconfig,
        })
    }
}

impl EmulatorProc {
    /// The emulator's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for EmulatorProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Request counters of the emulator (`/_emulator/counters`).
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// create + update + patch + delete requests.
    pub writes: u64,
    /// `"verb resource"` → count.
    pub requests: serde_json::Map<String, Value>,
}

impl Counters {
    /// Requests of one `"verb resource"`.
    pub fn get(&self, key: &str) -> u64 {
        self.requests.get(key).and_then(Value::as_u64).unwrap_or(0)
    }
}

/// A minimal client of the emulator's REST API.
#[derive(Clone)]
pub struct Kapi {
    base: String,
    http: reqwest::Client,
}

/// Collection path of a kind in a namespace.
pub fn collection(kind: &str, ns: &str) -> String {
    match kind {
        "Secret" => format!("/api/v1/namespaces/{ns}/secrets"),
        "SecretRef" => format!("/apis/secretsync.io/v1alpha1/namespaces/{ns}/secretrefs"),
        "SecretStore" => format!("/apis/secretsync.io/v1alpha1/namespaces/{ns}/secretstores"),
        "Namespace" => "/api/v1/namespaces".to_string(),
        other => format!("/unknown/{other}"),
    }
}

impl Kapi {
    /// A client for `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> anyhow::Result<Self> {
        Ok(Self {
            base: base.to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(64)
                .build()?,
        })
    }

    async fn check(resp: reqwest::Response, what: &str) -> anyhow::Result<Value> {
        let status = resp.status();
        let body = resp.bytes().await?;
        if !status.is_success() {
            bail!(
                "{what}: HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
        Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// GET a path.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self.http.get(format!("{}{path}", self.base)).send().await?;
        Self::check(r, path).await
    }

    /// POST an object to its collection (the object names its kind and namespace).
    pub async fn create(&self, obj: &Value) -> anyhow::Result<Value> {
        let kind = obj["kind"].as_str().unwrap_or_default();
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default();
        let path = collection(kind, ns);
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(obj)
            .send()
            .await?;
        Self::check(r, &path).await
    }

    /// JSON merge patch of one object.
    pub async fn merge_patch(
        &self,
        kind: &str,
        ns: &str,
        name: &str,
        patch: &Value,
    ) -> anyhow::Result<Value> {
        let path = format!("{}/{name}", collection(kind, ns));
        let r = self
            .http
            .patch(format!("{}{path}", self.base))
            .header("content-type", "application/merge-patch+json")
            .body(serde_json::to_vec(patch)?)
            .send()
            .await?;
        Self::check(r, &path).await
    }

    /// Creates all objects with `concurrency` requests in flight; fails on the first error.
    pub async fn create_all(&self, objs: Vec<Value>, concurrency: usize) -> anyhow::Result<()> {
        let mut s = futures::stream::iter(objs.into_iter().map(|o| {
            let k = self.clone();
            async move { k.create(&o).await }
        }))
        .buffer_unordered(concurrency.max(1));
        while let Some(r) = s.next().await {
            r?;
        }
        Ok(())
    }

    /// Creates objects produced by `make(i)` for `i in range`, streaming (large objects are built
    /// just before they are sent).
    pub async fn create_range(
        &self,
        range: std::ops::Range<usize>,
        concurrency: usize,
        make: impl Fn(usize) -> Value,
    ) -> anyhow::Result<()> {
        let make = &make;
        let mut s = futures::stream::iter(range.map(|i| {
            let k = self.clone();
            async move { k.create(&make(i)).await }
        }))
        .buffer_unordered(concurrency.max(1));
        while let Some(r) = s.next().await {
            r?;
        }
        Ok(())
    }

    /// The emulator's request counters.
    pub async fn counters(&self) -> anyhow::Result<Counters> {
        let v = self.get("/_emulator/counters").await?;
        Ok(Counters {
            writes: v["writes"].as_u64().unwrap_or(0),
            requests: v["requests"].as_object().cloned().unwrap_or_default(),
        })
    }
}
