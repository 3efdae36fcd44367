//! Keyed HMACs of secret values (drift detection, rotation detection, status and audit records).
//!
//! A keyed HMAC lets us compare values and prove which value was synced without storing or revealing
//! it: without the key, a low-entropy password cannot be brute-forced from the HMAC.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::value::SecretBytes;

type HmacSha256 = Hmac<Sha256>;

/// The key of every HMAC secretsync computes. Held in a zeroizing buffer; `Debug` prints nothing.
#[derive(Clone)]
pub struct HmacKey(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(<redacted>)")
    }
}

impl HmacKey {
    /// Wraps key bytes (at least 32 bytes recommended).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A fresh random 32-byte key.
    pub fn random() -> Self {
        use rand::RngCore;
        let mut k = vec![0u8; 32];
        rand::rng().fill_bytes(&mut k);
        Self::new(k)
    }

    /// The raw key (to store it in its Secret).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The key of the HMACs that leave the controller for objects in `namespace` (status, the
    /// Secret's annotation, workload restart annotations): HKDF-SHA256 of this key with the
    /// namespace as context, so equal values in two namespaces have unrelated HMACs and nobody who
    /// can read one namespace's status can test guesses against another's. The audit trail keeps
    /// using this (cluster) key.
    pub fn for_namespace(&self, namespace: &str) -> HmacKey {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"secretsync/v2/namespace-hmac"), &self.0);
        let mut okm = Zeroizing::new(vec![0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's output limit (255 × 32).
        hk.expand(namespace.as_bytes(), &mut okm)
            .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 output length"));
        HmacKey(okm)
    }

    fn mac(&self, parts: &[&[u8]]) -> String {
        // new_from_slice only fails for invalid key lengths, which HMAC does not have.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// The proof that a Secret belongs to a SecretRef (annotation `secretsync.io/owner`), made with a
    /// namespace's key: a MAC over the Secret's namespace and name and the owning SecretRef's name
    /// and uid. Labels can be copied; this cannot be forged without the key, and a new SecretRef of
    /// the same name (a new uid) does not match what an earlier one left behind.
    pub fn ownership_proof(&self, namespace: &str, secret: &str, sref: &str, uid: &str) -> String {
        self.mac(&[
            b"secretsync/v2/owner",
            namespace.as_bytes(),
            secret.as_bytes(),
            sref.as_bytes(),
            uid.as_bytes(),
        ])
    }

    /// HMAC of one Secret key's value, bound to the key name.
    pub fn key_hmac(&self, secret_key: &str, value: &SecretBytes) -> String {
        self.mac(&[b"secretsync/v1/key", secret_key.as_bytes(), value.expose()])
    }

    /// HMAC of a whole data map, computed from the per-key HMACs (so status can reproduce it).
    pub fn data_hmac_from_keys<'a>(
        &self,
        key_hmacs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> String {
        let mut sorted: Vec<_> = key_hmacs.into_iter().collect();
        sorted.sort();
        let mut parts: Vec<&[u8]> = vec![b"secretsync/v1/data"];
        for (k, h) in &sorted {
            parts.push(k.as_bytes());
            parts.push(h.as_bytes());
        }
        self.mac(&parts)
    }

    /// HMAC of a whole data map.
    pub fn data_hmac(&self, data: &BTreeMap<String, SecretBytes>) -> String {
        let per_key: Vec<(String, String)> = data
            .iter()
            .map(|(k, v)| (k.clone(), self.key_hmac(k, v)))
            .collect();
        self.data_hmac_from_keys(per_key.iter().map(|(k, h)| (k.as_str(), h.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmacs_are_keyed_and_bound_to_names() {
        let k1 = HmacKey::new(vec![1; 32]);
        let k2 = HmacKey::new(vec![2; 32]);
        let v = SecretBytes::from("value");
        assert_ne!(k1.key_hmac("a", &v), k2.key_hmac("a", &v));
        assert_ne!(k1.key_hmac("a", &v), k1.key_hmac("b", &v));
        assert_eq!(
            k1.key_hmac("a", &v),
            k1.key_hmac("a", &SecretBytes::from("value"))
        );
        // Length prefixes: ("ab","c") and ("a","bc") differ.
        assert_ne!(
            k1.key_hmac("ab", &SecretBytes::from("c")),
            k1.key_hmac("a", &SecretBytes::from("bc"))
        );
        assert!(!format!("{k1:?}").contains('1'));
    }

    #[test]
    fn data_hmac_is_order_independent_and_change_sensitive() {
        let k = HmacKey::new(vec![7; 32]);
        let mut d: BTreeMap<String, SecretBytes> = BTreeMap::new();
        d.insert("a".into(), "1".into());
        d.insert("b".into(), "2".into());
        let h1 = k.data_hmac(&d);
        d.insert("b".into(), "3".into());
        assert_ne!(h1, k.data_hmac(&d));
    }
}

/// The audit trail: one JSON line per access to a secret value (reads, writes, deletions, denials),
/// hash-chained so that editing, reordering or deleting a line is detectable with
/// `secretsync audit verify FILE`.
///
/// Each line carries `prev` (the previous line's `hash`) and `hash` = SHA-256 over `prev` and the
/// record's canonical JSON (without `hash`). The first line of a chain has `prev` = 64 zeros.
/// Records hold a keyed HMAC of the value (`hmac`), never the value and never an unkeyed hash.
pub mod trail {
    use std::io::{BufRead, Write};
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use serde::{Deserialize, Serialize};
    use sha2::{Digest, Sha256};

    /// The `prev` of the first record of a chain.
    pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    /// One audit record (what happened; the chain fields are added when it is written).
    #[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(rename_all = "camelCase")]
    pub struct Record {
        /// RFC 3339 time.
        pub ts: String,
        /// Who: `controller/<namespace>/<pod>` or `cli/<user>`.
        pub actor: String,
        /// `read`, `write`, `delete` or `deny`.
        pub action: String,
        /// `success` or a stable failure reason.
        pub outcome: String,
        /// `namespace/name` of the SecretRef.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub secret_ref: Option<String>,
        /// `namespace/name` of the target Secret.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub target: Option<String>,
        /// `Kind/[namespace/]name` of the store.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub store: Option<String>,
        /// Provider kind.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub provider: Option<String>,
        /// Remote key read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub remote_key: Option<String>,
        /// Provider version read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub version: Option<String>,
        /// Keyed HMAC of the value (reads) or of the Secret's data (writes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub hmac: Option<String>,
    }

    #[derive(Serialize, Deserialize)]
    struct Line {
        log: String,
        prev: String,
        #[serde(flatten)]
        record: Record,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hash: Option<String>,
    }

    fn chain_hash(prev: &str, record: &Record) -> String {
        let line = Line {
            log: "audit".into(),
            prev: prev.to_string(),
            record: record.clone(),
            hash: None,
        };
        let canonical = serde_json::to_vec(&line).unwrap_or_default();
        let mut h = Sha256::new();
        h.update(prev.as_bytes());
        h.update(b"\n");
        h.update(&canonical);
        hex::encode(h.finalize())
    }

    /// Renders a record as its chained JSON line (without newline) and returns `(line, hash)`.
    pub fn render(prev: &str, record: &Record) -> (String, String) {
        let hash = chain_hash(prev, record);
        let line = Line {
            log: "audit".into(),
            prev: prev.to_string(),
            record: record.clone(),
            hash: Some(hash.clone()),
        };
        (serde_json::to_string(&line).unwrap_or_default(), hash)
    }

    /// Where records go.
    enum Sink {
        Stdout,
        File(std::fs::File),
    }

    /// A hash-chained audit writer. Write failures are counted, never fatal, and never lose the chain.
    pub struct AuditLog {
        state: Mutex<(Sink, String)>,
        errors: std::sync::atomic::AtomicU64,
        path: Option<PathBuf>,
    }

    impl AuditLog {
        /// Records to stdout (each line has `"log":"audit"`, so they can be split from other output).
        pub fn stdout() -> Self {
            Self {
                state: Mutex::new((Sink::Stdout, GENESIS.to_string())),
                errors: Default::default(),
                path: None,
            }
        }

        /// Records appended to `path`, continuing the chain of the lines already there.
        pub fn file(path: &Path) -> std::io::Result<Self> {
            let prev = last_hash(path)?.unwrap_or_else(|| GENESIS.to_string());
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            Ok(Self {
                state: Mutex::new((Sink::File(f), prev)),
                errors: Default::default(),
                path: Some(path.to_path_buf()),
            })
        }

        /// Writes one record.
        pub fn record(&self, record: Record) {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let (line, hash) = render(&st.1, &record);
            let ok = match &mut st.0 {
                Sink::Stdout => {
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{line}").and_then(|_| out.flush()).is_ok()
                }
                Sink::File(f) => writeln!(f, "{line}").is_ok(),
            };
            if ok {
                st.1 = hash;
            } else {
                self.errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }

        /// Records that could not be written.
        pub fn errors(&self) -> u64 {
            self.errors.load(std::sync::atomic::Ordering::Relaxed)
        }

        /// The file, if any.
        pub fn path(&self) -> Option<&Path> {
            self.path.as_deref()
        }
    }

    fn last_hash(path: &Path) -> std::io::Result<Option<String>> {
        let f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut last = None;
        for line in std::io::BufReader::new(f).lines() {
            let line = line?;
            if let Ok(l) = serde_json::from_str::<Line>(&line) {
                last = l.hash;
            }
        }
        Ok(last)
    }

    /// The outcome of verifying a trail.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Verdict {
        /// Every link holds: the number of records.
        Intact(usize),
        /// The first broken link: 1-based line number and why.
        Broken {
            /// Line number.
            line: usize,
            /// What is wrong.
            why: String,
        },
    }

    /// Verifies a trail read from `input`.
    pub fn verify(input: impl BufRead) -> std::io::Result<Verdict> {
        let mut prev = GENESIS.to_string();
        let mut n = 0;
        for (i, line) in input.lines().enumerate() {
            let line = line?;
            let no = i + 1;
            if line.trim().is_empty() {
                return Ok(Verdict::Broken {
                    line: no,
                    why: "empty line".into(),
                });
            }
            let parsed: Line = match serde_json::from_str(&line) {
                Ok(l) => l,
                Err(_) => {
                    return Ok(Verdict::Broken {
                        line: no,
                        why: "not an audit record".into(),
                    });
                }
            };
            if parsed.prev != prev {
                return Ok(Verdict::Broken { line: no, why: "does not link to the previous record (a record was removed, reordered or inserted)".into() });
            }
            let want = chain_hash(&parsed.prev, &parsed.record);
            if parsed.hash.as_deref() != Some(want.as_str()) {
                return Ok(Verdict::Broken {
                    line: no,
                    why: "hash mismatch (the record was edited)".into(),
                });
            }
            prev = want;
            n += 1;
        }
        Ok(Verdict::Intact(n))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn rec(i: usize) -> Record {
            Record {
                ts: format!("2026-01-01T00:00:0{i}Z"),
                actor: "controller/ns/pod".into(),
                action: "read".into(),
                outcome: "success".into(),
                remote_key: Some(format!("/k/{i}")),
                hmac: Some("ab".repeat(32)),
                ..Default::default()
            }
        }

        fn trail(n: usize) -> Vec<String> {
            let mut prev = GENESIS.to_string();
            (0..n)
                .map(|i| {
                    let (line, h) = render(&prev, &rec(i));
                    prev = h;
                    line
                })
                .collect()
        }

        fn check(lines: &[String]) -> Verdict {
            verify(std::io::Cursor::new(lines.join("\n"))).unwrap()
        }

        #[test]
        fn intact_trails_verify() {
            assert_eq!(check(&trail(5)), Verdict::Intact(5));
        }

        #[test]
        fn edits_deletions_and_reorders_are_caught_at_their_line() {
            let t = trail(6);
            let mut edited = t.clone();
            edited[3] = edited[3].replace("/k/3", "/k/X");
            assert!(matches!(check(&edited), Verdict::Broken { line: 4, .. }));
            let mut deleted = t.clone();
            deleted.remove(2);
            assert!(matches!(check(&deleted), Verdict::Broken { line: 3, .. }));
            let mut swapped = t.clone();
            swapped.swap(1, 2);
            assert!(matches!(check(&swapped), Verdict::Broken { line: 2, .. }));
            let mut truncated_first = t.clone();
            truncated_first.remove(0);
            assert!(matches!(
                check(&truncated_first),
                Verdict::Broken { line: 1, .. }
            ));
        }

        #[test]
        fn file_log_continues_the_chain_across_restarts() {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("audit.jsonl");
            {
                let log = AuditLog::file(&p).unwrap();
                log.record(rec(1));
                log.record(rec(2));
            }
            {
                let log = AuditLog::file(&p).unwrap();
                log.record(rec(3));
            }
            let f = std::fs::File::open(&p).unwrap();
            assert_eq!(
                verify(std::io::BufReader::new(f)).unwrap(),
                Verdict::Intact(3)
            );
        }
    }
}
