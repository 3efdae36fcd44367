//! Minimal decoding of Kubernetes protobuf request bodies
//! (`application/vnd.kubernetes.protobuf`), which kubectl's typed commands
//! (`kubectl create namespace|secret|configmap|serviceaccount|token`) send.
//! Only the kinds below are understood; others get 415 UnsupportedMediaType.
//! Responses are always JSON (clients send `Accept: ...protobuf,application/json`).

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::error::ApiError;

#[derive(Clone, Copy)]
enum F {
    Str,
    Int,
    Bool,
    Time,
    Msg(&'static [(u32, &'static str, F)]),
    RepStr,
    RepMsg(&'static [(u32, &'static str, F)]),
    MapStr,
    MapBytes,
}

type Schema = &'static [(u32, &'static str, F)];

const OWNER_REF: Schema = &[
    (1, "kind", F::Str),
    (3, "name", F::Str),
    (4, "uid", F::Str),
    (5, "apiVersion", F::Str),
    (6, "controller", F::Bool),
    (7, "blockOwnerDeletion", F::Bool),
];
const OBJECT_META: Schema = &[
    (1, "name", F::Str),
    (2, "generateName", F::Str),
    (3, "namespace", F::Str),
    (5, "uid", F::Str),
    (6, "resourceVersion", F::Str),
    (7, "generation", F::Int),
    (8, "creationTimestamp", F::Time),
    (11, "labels", F::MapStr),
    (12, "annotations", F::MapStr),
    (13, "ownerReferences", F::RepMsg(OWNER_REF)),
    (14, "finalizers", F::RepStr),
];
const NAMESPACE: Schema = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (2, "spec", F::Msg(&[(1, "finalizers", F::RepStr)])),
];
const SECRET: Schema = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (2, "data", F::MapBytes),
    (3, "type", F::Str),
    (4, "stringData", F::MapStr),
    (5, "immutable", F::Bool),
];
const CONFIG_MAP: Schema = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (2, "data", F::MapStr),
    (3, "binaryData", F::MapBytes),
    (4, "immutable", F::Bool),
];
const LOCAL_REF: Schema = &[(1, "name", F::Str)];
const SERVICE_ACCOUNT: Schema = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (3, "imagePullSecrets", F::RepMsg(LOCAL_REF)),
    (4, "automountServiceAccountToken", F::Bool),
];
const TOKEN_REQUEST: Schema = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (
        2,
        "spec",
        F::Msg(&[
            (1, "audiences", F::RepStr),
            (
                3,
                "boundObjectRef",
                F::Msg(&[
                    (1, "kind", F::Str),
                    (2, "apiVersion", F::Str),
                    (3, "name", F::Str),
                    (4, "uid", F::Str),
                ]),
            ),
            (4, "expirationSeconds", F::Int),
        ]),
    ),
];
const DELETE_OPTIONS: Schema = &[
    (1, "gracePeriodSeconds", F::Int),
    (
        2,
        "preconditions",
        F::Msg(&[(1, "uid", F::Str), (2, "resourceVersion", F::Str)]),
    ),
    (3, "orphanDependents", F::Bool),
    (4, "propagationPolicy", F::Str),
    (5, "dryRun", F::RepStr),
];

fn err(msg: &str) -> ApiError {
    ApiError::bad_request(format!("invalid protobuf body: {msg}"))
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.i).ok_or_else(|| err("truncated varint"))?;
            self.i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(err("varint too long"))
    }
    fn bytes(&mut self) -> Result<&'a [u8], ApiError> {
        let n = usize::try_from(self.varint()?).map_err(|_| err("length"))?;
        let end = self
            .i
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| err("truncated field"))?;
        let s = &self.b[self.i..end];
        self.i = end;
        Ok(s)
    }
    /// Next (field number, wire type, payload) — payload is the varint or the bytes.
    fn field(&mut self) -> Result<Option<(u32, Payload<'a>)>, ApiError> {
        if self.i >= self.b.len() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let num = u32::try_from(tag >> 3).map_err(|_| err("field number"))?;
        let p = match tag & 7 {
            0 => Payload::Varint(self.varint()?),
            2 => Payload::Bytes(self.bytes()?),
            1 => {
                self.i += 8;
                Payload::Skip
            }
            5 => {
                self.i += 4;
                Payload::Skip
            }
            _ => return Err(err("unsupported wire type")),
        };
        Ok(Some((num, p)))
    }
}

enum Payload<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Skip,
}

fn utf8(b: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(b.to_vec()).map_err(|_| err("invalid UTF-8"))
}

fn map_entry(b: &[u8], bytes_value: bool) -> Result<(String, Value), ApiError> {
    let mut r = Reader { b, i: 0 };
    let (mut k, mut v) = (String::new(), json!(""));
    while let Some((n, p)) = r.field()? {
        if let Payload::Bytes(x) = p {
            match n {
                1 => k = utf8(x)?,
                2 if bytes_value => v = json!(base64::engine::general_purpose::STANDARD.encode(x)),
                2 => v = json!(utf8(x)?),
                _ => {}
            }
        }
    }
    Ok((k, v))
}

fn time(b: &[u8]) -> Result<Value, ApiError> {
    let mut r = Reader { b, i: 0 };
    let mut secs = 0i64;
    while let Some((n, p)) = r.field()? {
        if let (1, Payload::Varint(v)) = (n, p) {
            secs = v as i64;
        }
    }
    Ok(chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
        .unwrap_or(Value::Null))
}

fn message(b: &[u8], schema: Schema) -> Result<Value, ApiError> {
    let mut out = Map::new();
    let mut r = Reader { b, i: 0 };
    while let Some((n, p)) = r.field()? {
        let Some((_, name, ty)) = schema.iter().find(|(num, _, _)| *num == n) else {
            continue;
        };
        let name = name.to_string();
        match (ty, p) {
            (F::Str, Payload::Bytes(x)) => {
                out.insert(name, json!(utf8(x)?));
            }
            (F::Int, Payload::Varint(v)) => {
                out.insert(name, json!(v as i64));
            }
            (F::Bool, Payload::Varint(v)) => {
                out.insert(name, json!(v != 0));
            }
            (F::Time, Payload::Bytes(x)) => {
                out.insert(name, time(x)?);
            }
            (F::Msg(s), Payload::Bytes(x)) => {
                out.insert(name, message(x, s)?);
            }
            (F::RepStr, Payload::Bytes(x)) => {
                let e = out.entry(name).or_insert_with(|| json!([]));
                if let Some(a) = e.as_array_mut() {
                    a.push(json!(utf8(x)?));
                }
            }
            (F::RepMsg(s), Payload::Bytes(x)) => {
                let v = message(x, s)?;
                let e = out.entry(name).or_insert_with(|| json!([]));
                if let Some(a) = e.as_array_mut() {
                    a.push(v);
                }
            }
            (F::MapStr | F::MapBytes, Payload::Bytes(x)) => {
                let (k, v) = map_entry(x, matches!(ty, F::MapBytes))?;
                let e = out.entry(name).or_insert_with(|| json!({}));
                if let Some(m) = e.as_object_mut() {
                    m.insert(k, v);
                }
            }
            _ => {}
        }
    }
    Ok(Value::Object(out))
}

/// Decode a `k8s\0`-prefixed protobuf envelope into JSON.
pub(crate) fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let rest = body
        .strip_prefix(b"k8s\x00")
        .ok_or_else(|| err("missing k8s envelope"))?;
    let mut r = Reader { b: rest, i: 0 };
    let (mut api_version, mut kind, mut raw): (String, String, &[u8]) =
        (String::new(), String::new(), &[]);
    while let Some((n, p)) = r.field()? {
        match (n, p) {
            (1, Payload::Bytes(tm)) => {
                let t = message(tm, &[(1, "apiVersion", F::Str), (2, "kind", F::Str)])?;
                api_version = t
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .into();
                kind = t.get("kind").and_then(Value::as_str).unwrap_or("").into();
            }
            (2, Payload::Bytes(x)) => raw = x,
            _ => {}
        }
    }
    let schema = match kind.as_str() {
        "Namespace" => NAMESPACE,
        "Secret" => SECRET,
        "ConfigMap" => CONFIG_MAP,
        "ServiceAccount" => SERVICE_ACCOUNT,
        "TokenRequest" => TOKEN_REQUEST,
        "DeleteOptions" => DELETE_OPTIONS,
        _ => {
            return Err(ApiError::unsupported_media(&format!(
                "application/vnd.kubernetes.protobuf ({kind} is not supported by the emulator; use JSON)"
            )));
        }
    };
    let mut v = message(raw, schema)?;
    v["apiVersion"] = json!(api_version);
    v["kind"] = json!(kind);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(n << 3 | 2) as u8, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn secret_envelope() {
        let meta = [
            field(1, b"s1"),
            field(11, &[field(1, b"app"), field(2, b"x")].concat()),
        ]
        .concat();
        let secret = [
            field(1, &meta),
            field(2, &[field(1, b"k"), field(2, b"hi")].concat()),
            field(3, b"Opaque"),
        ]
        .concat();
        let tm = [field(1, b"v1"), field(2, b"Secret")].concat();
        let body = [b"k8s\x00".to_vec(), field(1, &tm), field(2, &secret)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(v["metadata"]["name"], "s1");
        assert_eq!(v["metadata"]["labels"]["app"], "x");
        assert_eq!(v["data"]["k"], "aGk=");
        assert_eq!(v["kind"], "Secret");
    }
}
