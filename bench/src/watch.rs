//! The separate watching process of G3: it watches Secrets (label-selected) on the emulator and
//! prints when each first holds the value its SecretRef must sync. The parent joins those times with
//! the creation times it recorded (both wall-clock, same machine).
//!
//! Child protocol on stdout: `READY` once the watch is established, then `SEEN <ns>/<name> <unix_ns>`.
//! The child exits when its stdin closes or after `--max-seconds`.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::objects;

/// Wall-clock nanoseconds since the Unix epoch.
pub fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn key_of(obj: &Value) -> Option<String> {
    Some(format!(
        "{}/{}",
        obj.pointer("/metadata/namespace")?.as_str()?,
        obj.pointer("/metadata/name")?.as_str()?
    ))
}

/// Lists every matching Secret (paged); returns them and the list's resourceVersion.
async fn list_all(
    http: &reqwest::Client,
    url: &str,
    selector: &str,
) -> anyhow::Result<(Vec<Value>, String)> {
    let mut items = Vec::new();
    let mut cont: Option<String> = None;
    for _ in 0..100_000 {
        let mut q = vec![
            ("labelSelector", selector.to_string()),
            ("limit", "500".into()),
        ];
        if let Some(c) = &cont {
            q.push(("continue", c.clone()));
        }
        let v: Value = http
            .get(format!("{url}/api/v1/secrets"))
            .query(&q)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if let Some(a) = v["items"].as_array() {
            items.extend(a.iter().cloned());
        }
        let rv = v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("0")
            .to_string();
        match v["metadata"]["continue"].as_str().filter(|c| !c.is_empty()) {
            Some(c) => cont = Some(c.to_string()),
            None => return Ok((items, rv)),
        }
    }
    bail!("listing never ended")
}

/// The child: watch and report until stdin closes or the deadline passes.
pub async fn run_child(
    url: &str,
    selector: &str,
    keys: usize,
    max: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + max;
    tokio::spawn(async {
        // Exit with the parent: stdin closes when it drops its end.
        let _ = tokio::task::spawn_blocking(|| {
            let mut buf = String::new();
            while std::io::stdin()
                .read_line(&mut buf)
                .map(|n| n > 0)
                .unwrap_or(false)
            {
                buf.clear();
            }
        })
        .await;
        std::process::exit(0);
    });
    let http = reqwest::Client::builder().build()?;
    let mut seen: HashSet<String> = HashSet::new();
    let mut first = true;
    while Instant::now() < deadline {
        let (items, mut rv) = list_all(&http, url, selector).await?;
        for o in &items {
            if objects::holds_expected(o, keys)
                && let Some(k) = key_of(o)
                && seen.insert(k.clone())
                && !first
            {
                // Missed while the watch was down: reported now (an upper bound).
                say(&format!("SEEN {k} {}", unix_ns()));
            }
        }
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_secs()
            .max(1);
        let mut resp = http
            .get(format!("{url}/api/v1/secrets"))
            .query(&[
                ("labelSelector", selector.to_string()),
                ("watch", "true".into()),
                ("allowWatchBookmarks", "true".into()),
                ("resourceVersion", rv.clone()),
                ("timeoutSeconds", left.min(3600).to_string()),
            ])
            .send()
            .await?
            .error_for_status()?;
        if first {
            say("READY");
            first = false;
        }
        let mut buf: Vec<u8> = Vec::new();
        'stream: while let Some(chunk) = resp.chunk().await? {
            buf.extend_from_slice(&chunk);
            while let Some(p) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=p).collect();
                let Ok(ev) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                let obj = &ev["object"];
                match ev["type"].as_str() {
                    Some("ADDED") | Some("MODIFIED") => {
                        if let Some(r) = obj
                            .pointer("/metadata/resourceVersion")
                            .and_then(Value::as_str)
                        {
                            rv = r.to_string();
                        }
                        if objects::holds_expected(obj, keys)
                            && let Some(k) = key_of(obj)
                            && seen.insert(k.clone())
                        {
                            say(&format!("SEEN {k} {}", unix_ns()));
                        }
                    }
                    Some("BOOKMARK") => {
                        if let Some(r) = obj
                            .pointer("/metadata/resourceVersion")
                            .and_then(Value::as_str)
                        {
                            rv = r.to_string();
                        }
                    }
                    Some("ERROR") => break 'stream,
                    _ => {}
                }
            }
        }
        let _ = rv;
    }
    Ok(())
}

/// The parent's handle on a watcher process.
pub struct Watcher {
    child: Child,
    seen: Arc<Mutex<HashMap<String, u128>>>,
}

impl Watcher {
    /// Starts `exe watch ...` and waits (at most 30 s) until its watch is established.
    pub fn start(exe: &Path, url: &str, selector: &str, keys: usize) -> anyhow::Result<Self> {
        let mut child = Command::new(exe)
            .args(["watch", "--url", url, "--selector", selector])
            .args(["--keys", &keys.to_string(), "--max-seconds", "1800"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the watcher process")?;
        let stdout = child.stdout.take().context("watcher stdout")?;
        let seen: Arc<Mutex<HashMap<String, u128>>> = Arc::default();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let s = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line == "READY" {
                    let _ = ready_tx.send(());
                } else if let Some(rest) = line.strip_prefix("SEEN ")
                    && let Some((k, t)) = rest.split_once(' ')
                    && let Ok(t) = t.parse::<u128>()
                {
                    s.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(k.to_string())
                        .or_insert(t);
                }
            }
        });
        if ready_rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = child.kill();
            bail!("the watcher did not become ready");
        }
        Ok(Self { child, seen })
    }

    /// When `key` (`ns/name`) was first seen holding its value.
    pub fn seen(&self, key: &str) -> Option<u128> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied()
    }

    /// How many of `keys` were seen.
    pub fn count_seen(&self, keys: &[String]) -> usize {
        let s = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter().filter(|k| s.contains_key(*k)).count()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
