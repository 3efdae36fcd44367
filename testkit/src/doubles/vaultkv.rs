//! A small Vault KV v2 HTTP double with fault injection, for the fault campaign (`tests/soak.rs`).
//!
//! Written from Vault's public HTTP API reference: `GET /v1/auth/token/lookup-self` (token auth) and
//! `GET /v1/<mount>/data/<key>` (KV v2 read, `{"data":{"data":{..},"metadata":{"version":N,..}}}`);
//! anything else is 404 `{"errors":[]}`. While faults are on, each answer is faulted with probability
//! `p`, cycling through: 500, 503, 429 with `Retry-After`, 403 permission denied, a truncated body, a
//! malformed JSON body, a slow answer (then 503), a 404 for a key that exists, and the two 404s that
//! are not Vault's answer about the key: a proxy's HTML 404 and Vault's own 404 for a path no secrets
//! engine is mounted at (`{"errors":["no handler for route ..."]}`). Every fault is counted.
//!
//! Per key, a fixed answer can be set instead ([`KeyFault`]), and reads are counted per key; the
//! whole mount can be made to vanish ([`VaultKv::set_mount_missing`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::http::{JSON, read_request};

#[derive(Default)]
struct State {
    /// key → (version, value of the `v` field).
    values: HashMap<String, (u64, String)>,
    /// Fault probability (0 = off).
    p: f64,
    /// Fixed answers per key.
    key_faults: HashMap<String, KeyFault>,
    /// Reads per key.
    reads: HashMap<String, u64>,
    /// Every read answers as if no secrets engine were mounted at `secret/`.
    mount_missing: bool,
}

/// A fixed answer for one key.
#[derive(Clone, Debug)]
pub enum KeyFault {
    /// 403 `permission denied`.
    Denied,
    /// 429 with `Retry-After: 1`.
    Throttled,
    /// 500.
    ServerError,
    /// 200 with a body that is not JSON.
    Malformed,
    /// 400 (Vault's answer to a request it cannot serve, e.g. a bad parameter).
    BadRequest,
    /// 404 with an HTML body, as a proxy or ingress in front of Vault answers.
    ProxyNotFound,
    /// 404 `{"errors":["no handler for route ..."]}`: nothing mounted at the path.
    NoHandler,
}

/// The running double.
pub struct VaultKv {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    state: Arc<Mutex<State>>,
    /// Faults injected so far.
    pub faults: Arc<AtomicU64>,
    /// Requests served so far.
    pub requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for VaultKv {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl VaultKv {
    /// Starts the double on 127.0.0.1 (a free port), empty and without faults.
    pub async fn start() -> VaultKv {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let faults = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let (st, f, r) = (state.clone(), faults.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let (st, f, r) = (st.clone(), f.clone(), r.clone());
                tokio::spawn(async move {
                    let _ = serve(sock, st, f, r).await;
                });
            }
        });
        VaultKv {
            url,
            state,
            faults,
            requests,
            task,
        }
    }

    /// Writes a new version of `key`.
    pub fn put(&self, key: &str, value: &str) -> u64 {
        let mut s = self.state.lock().unwrap();
        let e = s
            .values
            .entry(key.to_string())
            .or_insert((0, String::new()));
        e.0 += 1;
        e.1 = value.to_string();
        e.0
    }

    /// The current value of `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        self.state
            .lock()
            .unwrap()
            .values
            .get(key)
            .map(|v| v.1.clone())
    }

    /// Sets the fault probability (0 turns faults off).
    pub fn set_faults(&self, p: f64) {
        self.state.lock().unwrap().p = p;
    }

    /// Sets (or with `None` clears) a fixed answer for `key`.
    pub fn set_key_fault(&self, key: &str, fault: Option<KeyFault>) {
        let mut s = self.state.lock().unwrap();
        match fault {
            Some(f) => s.key_faults.insert(key.to_string(), f),
            None => s.key_faults.remove(key),
        };
    }

    /// Makes the KV mount vanish (or come back): every read then gets Vault's 404 for an unmounted path.
    pub fn set_mount_missing(&self, missing: bool) {
        self.state.lock().unwrap().mount_missing = missing;
    }

    /// Reads of `key` so far.
    pub fn reads(&self, key: &str) -> u64 {
        self.state
            .lock()
            .unwrap()
            .reads
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

const NO_HANDLER: &[u8] =
    br#"{"errors":["no handler for route \"secret/data/x\". route entry not found."]}"#;
const PROXY_404: &[u8] =
    b"<html><head><title>404 Not Found</title></head><body>not found</body></html>";

async fn answer_fault(sock: &mut TcpStream, f: &KeyFault) {
    match f {
        KeyFault::Denied => {
            let b = br#"{"errors":["permission denied"]}"#;
            respond(sock, 403, false, b, b.len()).await
        }
        KeyFault::Throttled => {
            let b = br#"{"errors":["rate limited"]}"#;
            respond(sock, 429, true, b, b.len()).await
        }
        KeyFault::ServerError => {
            let b = br#"{"errors":["internal error"]}"#;
            respond(sock, 500, false, b, b.len()).await
        }
        KeyFault::Malformed => respond(sock, 200, false, b"{\"data\":", 8).await,
        KeyFault::BadRequest => {
            let b = br#"{"errors":["invalid parameter"]}"#;
            respond(sock, 400, false, b, b.len()).await
        }
        KeyFault::ProxyNotFound => respond(sock, 404, false, PROXY_404, PROXY_404.len()).await,
        KeyFault::NoHandler => respond(sock, 404, false, NO_HANDLER, NO_HANDLER.len()).await,
    }
}

/// An answer with `content-length: announced` (more than `body.len()`: a truncated body) and
/// `retry-after: 1` when `retry_after`.
async fn respond(
    sock: &mut TcpStream,
    status: u16,
    retry_after: bool,
    body: &[u8],
    announced: usize,
) {
    let extra = [("retry-after", "1".to_string())];
    let extra: &[(&str, String)] = if retry_after { &extra } else { &[] };
    crate::http::respond(sock, status, JSON, extra, body, announced).await
}

async fn serve(
    mut sock: TcpStream,
    st: Arc<Mutex<State>>,
    faults: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
) -> Option<()> {
    let path = read_request(&mut sock).await?.path;
    let n = requests.fetch_add(1, Ordering::Relaxed);
    let path = path.split('?').next().unwrap_or_default().to_string();
    if path == "/v1/auth/token/lookup-self" {
        let body = br#"{"data":{"ttl":0,"renewable":false,"policies":["default"]}}"#;
        respond(&mut sock, 200, false, body, body.len()).await;
        return Some(());
    }
    let Some(key) = path.strip_prefix("/v1/secret/data/") else {
        respond(&mut sock, 404, false, br#"{"errors":[]}"#, 13).await;
        return Some(());
    };
    let key = key.to_string();
    let (entry, p, fixed, mount_missing) = {
        let mut s = st.lock().unwrap();
        *s.reads.entry(key.clone()).or_default() += 1;
        (
            s.values.get(&key).cloned(),
            s.p,
            s.key_faults.get(&key).cloned(),
            s.mount_missing,
        )
    };
    if mount_missing {
        answer_fault(&mut sock, &KeyFault::NoHandler).await;
        return Some(());
    }
    if let Some(f) = fixed {
        answer_fault(&mut sock, &f).await;
        return Some(());
    }
    if p > 0.0 && rand::random::<f64>() < p {
        faults.fetch_add(1, Ordering::Relaxed);
        match n % 10 {
            0 => {
                respond(
                    &mut sock,
                    500,
                    false,
                    br#"{"errors":["internal error"]}"#,
                    29,
                )
                .await
            }
            1 => respond(&mut sock, 503, false, br#"{"errors":["sealed"]}"#, 21).await,
            2 => respond(&mut sock, 429, true, br#"{"errors":["rate limited"]}"#, 27).await,
            // (This answer announced 33 bytes for its 32 until the promises campaign: a truncated
            // body, not the denial it meant to be.)
            3 => answer_fault(&mut sock, &KeyFault::Denied).await,
            4 => {
                // Truncated: the header announces more than is sent.
                let body = br#"{"data":{"data":{"v":"#;
                respond(&mut sock, 200, false, body, body.len() + 40).await
            }
            5 => {
                let body = br#"{"data":{"data":"#;
                respond(&mut sock, 200, false, body, body.len()).await
            }
            6 => {
                tokio::time::sleep(Duration::from_secs(2)).await;
                respond(&mut sock, 503, false, br#"{"errors":["slow"]}"#, 19).await
            }
            7 => answer_fault(&mut sock, &KeyFault::ProxyNotFound).await,
            8 => answer_fault(&mut sock, &KeyFault::NoHandler).await,
            _ => respond(&mut sock, 404, false, br#"{"errors":[]}"#, 13).await,
        }
        return Some(());
    }
    match entry {
        Some((version, value)) => {
            let body = serde_json::json!({"data": {"data": {"v": value},
                "metadata": {"version": version, "created_time": "2026-01-01T00:00:00Z", "deletion_time": "", "destroyed": false}}})
            .to_string();
            respond(&mut sock, 200, false, body.as_bytes(), body.len()).await;
        }
        None => respond(&mut sock, 404, false, br#"{"errors":[]}"#, 13).await,
    }
    Some(())
}
