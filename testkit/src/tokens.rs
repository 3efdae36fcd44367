//! ServiceAccount TokenRequest (`serviceaccounts/token`) and TokenReview.
//!
//! Tokens are JWT-shaped (header.payload.signature, base64url) but the
//! signature is random bytes: only this emulator can validate them.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

const DEFAULT_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

struct TokenInfo {
    namespace: String,
    sa: String,
    sa_uid: String,
    audiences: Vec<String>,
    expires: chrono::DateTime<chrono::Utc>,
}

#[derive(Default)]
pub(crate) struct Tokens {
    map: HashMap<String, TokenInfo>,
}

fn strs(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl Tokens {
    /// Issue a token for `namespace/sa`; returns the TokenRequest response.
    pub fn issue(&mut self, namespace: &str, sa: &str, sa_uid: &str, body: &Value) -> Value {
        let mut audiences = strs(body.pointer("/spec/audiences"));
        if audiences.is_empty() {
            audiences.push(DEFAULT_AUDIENCE.into());
        }
        let secs = body
            .pointer("/spec/expirationSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(3600)
            .max(600);
        let now = chrono::Utc::now();
        let expires = now + chrono::Duration::seconds(secs);
        let header = json!({"alg": "RS256", "kid": "kube-emulator"});
        let payload = json!({
            "iss": "https://kubernetes.default.svc.cluster.local",
            "sub": format!("system:serviceaccount:{namespace}:{sa}"),
            "aud": audiences,
            "iat": now.timestamp(),
            "nbf": now.timestamp(),
            "exp": expires.timestamp(),
            "jti": uuid::Uuid::new_v4().to_string(),
            "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": sa, "uid": sa_uid}},
        });
        let sig: [u8; 32] = rand::random();
        let token = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            URL_SAFE_NO_PAD.encode(sig)
        );
        self.map.insert(
            token.clone(),
            TokenInfo {
                namespace: namespace.into(),
                sa: sa.into(),
                sa_uid: sa_uid.into(),
                audiences: audiences.clone(),
                expires,
            },
        );
        let mut spec = body.get("spec").cloned().unwrap_or(json!({}));
        spec["audiences"] = json!(audiences);
        spec["expirationSeconds"] = json!(secs);
        json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": sa, "namespace": namespace, "creationTimestamp": crate::fields::now()},
            "spec": spec,
            "status": {
                "token": token,
                "expirationTimestamp": expires.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            },
        })
    }

    /// Answer a TokenReview. `sa_uid_now` looks up the current uid of a
    /// ServiceAccount (tokens of deleted/recreated accounts are rejected).
    pub fn review(&self, body: &Value, sa_uid_now: impl Fn(&str, &str) -> Option<String>) -> Value {
        let token = body
            .pointer("/spec/token")
            .and_then(Value::as_str)
            .unwrap_or("");
        let wanted = strs(body.pointer("/spec/audiences"));
        let mut out = json!({
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": body.get("spec").cloned().unwrap_or(json!({})),
        });
        let fail = |out: &mut Value, msg: &str| {
            out["status"] = json!({"authenticated": false, "user": {}, "error": msg});
        };
        let Some(info) = self.map.get(token) else {
            fail(&mut out, "invalid bearer token");
            return out;
        };
        if info.expires < chrono::Utc::now() {
            fail(&mut out, "invalid bearer token, token has expired");
            return out;
        }
        if sa_uid_now(&info.namespace, &info.sa).as_deref() != Some(info.sa_uid.as_str()) {
            fail(
                &mut out,
                "invalid bearer token, service account has been deleted",
            );
            return out;
        }
        let audiences: Vec<String> = if wanted.is_empty() {
            info.audiences.clone()
        } else {
            wanted
                .iter()
                .filter(|a| info.audiences.contains(a))
                .cloned()
                .collect()
        };
        if audiences.is_empty() {
            fail(
                &mut out,
                "invalid bearer token, token audiences is invalid for the target audiences",
            );
            return out;
        }
        out["status"] = json!({
            "authenticated": true,
            "user": {
                "username": format!("system:serviceaccount:{}:{}", info.namespace, info.sa),
                "uid": info.sa_uid,
                "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{}", info.namespace), "system:authenticated"],
            },
            "audiences": audiences,
        });
        out
    }
}
