//! The objects the benchmark creates, and the data the operator must write for each (pure).
//!
//! SecretRef `<prefix>-<n>` reads remote key `k<n % keys>` of its namespace's store; the synced
//! Secret (same name) must hold `value = "value-<n % keys>"`. The watcher checks exactly that.

use base64::Engine;
use serde_json::{Value, json};

/// Label every Secret written by secretsync carries (the operator's watch selects on it).
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=secretsync";
/// Label of the Secrets the baseline client writes directly.
pub const BASELINE_SELECTOR: &str = "bench.secretsync.io/baseline=true";
/// The namespace of the unrelated 128 KiB Secrets.
pub const NOISE_NS: &str = "bench-unrelated";
/// The controller's own namespace (HMAC key Secret).
pub const CONTROLLER_NS: &str = "secretsync-system";
/// The store every SecretRef uses (one per namespace).
pub const STORE: &str = "bench";

/// Namespace `i` of the benchmark's SecretRefs.
pub fn ns_name(i: usize) -> String {
    format!("bench-{i}")
}

/// The trailing number of an object name (`sr-00042` → 42).
pub fn name_number(name: &str) -> Option<usize> {
    name.rsplit('-').next()?.parse().ok()
}

/// The value the Secret of SecretRef `name` must hold, given `keys` remote keys per store.
pub fn expected_value(name: &str, keys: usize) -> Option<String> {
    Some(format!("value-{}", name_number(name)? % keys.max(1)))
}

/// A Namespace.
pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// A `fake` SecretStore holding `keys` entries (`k<j>` = `value-<j>`), refreshing every `interval`.
pub fn fake_store(ns: &str, keys: usize, interval: &str) -> Value {
    let data: Vec<Value> = (0..keys)
        .map(|j| json!({"key": format!("k{j}"), "value": format!("value-{j}"), "version": "1"}))
        .collect();
    json!({
        "apiVersion": "secretsync.io/v1alpha1", "kind": "SecretStore",
        "metadata": {"name": STORE, "namespace": ns},
        "spec": {"refreshInterval": interval, "provider": {"fake": {"data": data}}}
    })
}

/// An `aws` SecretStore against `endpoint` (credentials from Secret `aws-creds`).
pub fn aws_store(ns: &str, endpoint: &str, interval: &str) -> Value {
    json!({
        "apiVersion": "secretsync.io/v1alpha1", "kind": "SecretStore",
        "metadata": {"name": STORE, "namespace": ns},
        "spec": {"refreshInterval": interval, "provider": {"aws": {
            "region": "us-east-1",
            "endpoint": endpoint,
            "auth": {"secretRef": {
                "accessKeyId": {"name": "aws-creds", "key": "access-key-id"},
                "secretAccessKey": {"name": "aws-creds", "key": "secret-access-key"}
            }}
        }}}
    })
}

/// The credentials Secret of the AWS store.
pub fn aws_creds(ns: &str) -> Value {
    let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "aws-creds", "namespace": ns},
        "data": {"access-key-id": b("AKIABENCH"), "secret-access-key": b("bench-secret")}
    })
}

/// SecretRef `name` reading remote key `remote_key` of the namespace's store into Secret key `value`.
pub fn secretref(ns: &str, name: &str, remote_key: &str) -> Value {
    json!({
        "apiVersion": "secretsync.io/v1alpha1", "kind": "SecretRef",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "storeRef": {"name": STORE},
            "data": [{"secretKey": "value", "remoteRef": {"key": remote_key}}]
        }
    })
}

/// SecretRef `name` on the fake store (key `k<n % keys>`).
pub fn fake_secretref(ns: &str, name: &str, keys: usize) -> Value {
    let n = name_number(name).unwrap_or(0);
    secretref(ns, name, &format!("k{}", n % keys.max(1)))
}

/// The Secret the baseline client writes directly: the same shape and data as a synced one.
pub fn baseline_secret(ns: &str, name: &str, keys: usize) -> Value {
    let v = expected_value(name, keys).unwrap_or_default();
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": ns,
            "labels": {"bench.secretsync.io/baseline": "true", "secretsync.io/secretref": name},
            "annotations": {"secretsync.io/data-hmac": "0".repeat(64)}},
        "data": {"value": base64::engine::general_purpose::STANDARD.encode(v)}
    })
}

/// An unrelated Secret of `size` bytes of (incompressible-looking) data.
pub fn unrelated_secret(name: &str, size: usize, seed: u64) -> Value {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let bytes: Vec<u8> = (0..size)
        .map(|_| {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": NOISE_NS, "labels": {"app": "unrelated"}},
        "data": {"blob": base64::engine::general_purpose::STANDARD.encode(bytes)}
    })
}

/// Whether a Secret (watch event object) holds the value its SecretRef must have synced.
pub fn holds_expected(secret: &Value, keys: usize) -> bool {
    let Some(name) = secret.pointer("/metadata/name").and_then(Value::as_str) else {
        return false;
    };
    let Some(want) = expected_value(name, keys) else {
        return false;
    };
    secret
        .pointer("/data/value")
        .and_then(Value::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .is_some_and(|got| got == want.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_values_follow_the_name() {
        assert_eq!(expected_value("sr-00042", 10).as_deref(), Some("value-2"));
        assert_eq!(expected_value("g3a-0007", 100).as_deref(), Some("value-7"));
        assert_eq!(expected_value("nonumber", 10), None);
        let s = baseline_secret("ns", "sr-00042", 10);
        assert!(holds_expected(&s, 10));
        assert!(!holds_expected(&s, 7));
        assert_eq!(
            fake_secretref("ns", "sr-00042", 10)["spec"]["data"][0]["remoteRef"]["key"],
            "k2"
        );
    }
}
