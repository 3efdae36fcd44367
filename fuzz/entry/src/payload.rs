//! Provider payload decoding, through the real provider clients: a one-thread HTTP/1.1 responder on
//! 127.0.0.1 answers every request with the fuzz input (first byte: the status code, the rest: the
//! body), and the Vault (KV v2) and AWS Secrets Manager providers read from it. Shared by the fuzz
//! targets `payload_vault` and `payload_aws` (`fuzz/`) and the corpus test (`tests/fuzz_corpus.rs`).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::MARK;
use secretsync::providers::aws::{AwsSecretsManager, AwsSettings, AwsTimeouts, StaticCredentials};
use secretsync::providers::vault::{VaultAuthConfig, VaultConfig, VaultProvider};
use secretsync::providers::{Provider, ProviderError, RemoteRef};
use secretsync::value::SecretBytes;

const STATUSES: [u16; 8] = [200, 200, 200, 200, 403, 404, 429, 500];

/// Providers wired to a local HTTP server that answers with the bytes under test.
pub struct Harness {
    rt: tokio::runtime::Runtime,
    answer: Arc<Mutex<(u16, Vec<u8>)>>,
    vault: VaultProvider,
    aws: AwsSecretsManager,
}

fn serve(listener: TcpListener, answer: Arc<Mutex<(u16, Vec<u8>)>>) {
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // Headers, then the request body by Content-Length.
        let (head_end, len) = loop {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break (None, 0),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                break (Some(i + 4), len);
            }
            if buf.len() > 1 << 20 {
                break (None, 0);
            }
        };
        let Some(head_end) = head_end else { continue };
        while buf.len() < head_end + len {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let (status, body) = answer.lock().unwrap().clone();
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(head.as_bytes());
        let _ = s.write_all(&body);
    }
}

/// The one harness of this process (started on first use).
pub fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let answer = Arc::new(Mutex::new((200u16, Vec::new())));
        let a = answer.clone();
        std::thread::spawn(move || serve(listener, a));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let vault = VaultProvider::new(VaultConfig::new(
            "fuzz",
            &addr,
            "secret",
            VaultAuthConfig::Token(SecretBytes::from("t")),
        ))
        .expect("vault provider");
        let mut s = AwsSettings::new("fuzz", "us-east-1");
        s.endpoint = Some(addr.clone());
        s.credentials = Some(StaticCredentials {
            access_key_id: SecretBytes::from("AKIAFUZZ"),
            secret_access_key: SecretBytes::from("fuzz"),
            session_token: None,
        });
        s.timeouts = AwsTimeouts {
            connect: Duration::from_secs(2),
            operation: Duration::from_secs(5),
        };
        let aws = rt
            .block_on(AwsSecretsManager::new(s))
            .expect("aws provider");
        Harness {
            rt,
            answer,
            vault,
            aws,
        }
    })
}

fn check(
    what: &str,
    status: u16,
    res: Result<secretsync::providers::FetchedSecret, ProviderError>,
) {
    if let Err(e) = res {
        let msg = e.to_string();
        assert!(msg.len() < 4096, "{what}: unbounded error text");
        // A 200 answer is where values live: its body must never be quoted back.
        if status == 200 {
            assert!(
                !msg.contains(MARK),
                "{what}: error quotes the payload: {msg}"
            );
        }
    }
}

fn set(data: &[u8]) -> u16 {
    let h = harness();
    let (status, body) = match data.split_first() {
        Some((s, rest)) => (STATUSES[(*s as usize) % STATUSES.len()], rest.to_vec()),
        None => (200, Vec::new()),
    };
    *h.answer.lock().unwrap() = (status, body);
    status
}

/// Vault KV v2 read of one key.
pub fn vault_kv(data: &[u8]) {
    let status = set(data);
    let h = harness();
    let res = h.rt.block_on(h.vault.get(&RemoteRef::latest("app/db")));
    check("vault", status, res);
}

/// AWS Secrets Manager read of one key.
pub fn aws_get(data: &[u8]) {
    let status = set(data);
    let h = harness();
    let res = h.rt.block_on(h.aws.get(&RemoteRef::latest("app/db")));
    check("aws", status, res);
}
