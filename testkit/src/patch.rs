//! JSON patch, JSON merge patch and (approximated) strategic merge patch.
//!
//! Strategic merge patch is approximated as a JSON merge patch, except that
//! lists of objects under `containers`, `initContainers`, `ephemeralContainers`,
//! `env`, `volumes`, `volumeMounts`, `imagePullSecrets` and `ports` merge by
//! their `name` (`containerPort` for ports), `metadata.ownerReferences` merges
//! by `uid` and `metadata.finalizers` is a union. Supported directives:
//! `$patch: delete` inside keyed list items, `$patch: replace` on maps and
//! `$deleteFromPrimitiveList/<field>`; other `$` keys are dropped.

use serde_json::{Map, Value};

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Result<Self, ApiError> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
            _ => Err(ApiError::unsupported_media(ct)),
        }
    }
}

/// Apply a non-apply patch to `target`.
pub(crate) fn patch(target: &Value, kind: PatchKind, body: &[u8]) -> Result<Value, ApiError> {
    let mut out = target.clone();
    match kind {
        PatchKind::Json => {
            // Like the real server (evanphx/json-patch), a `test` for `null` passes on a missing path:
            // kube-rs's finalizer helper relies on it when an object has no finalizers yet.
            let mut ops: Vec<Value> = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            ops.retain(|op| {
                let is_null_test = op.get("op").and_then(Value::as_str) == Some("test")
                    && op.get("value").is_some_and(Value::is_null);
                let missing = op
                    .get("path")
                    .and_then(Value::as_str)
                    .is_some_and(|p| out.pointer(p).is_none());
                !(is_null_test && missing)
            });
            let p: json_patch::Patch = serde_json::from_value(Value::Array(ops))
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(&mut out, &p).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })?;
        }
        PatchKind::Merge => {
            let p: Value = parse_json(body)?;
            json_patch::merge(&mut out, &p);
        }
        PatchKind::Strategic => {
            let p: Value = parse_json(body)?;
            strategic(&mut out, &p, &mut Vec::new());
        }
        PatchKind::Apply => return Err(ApiError::internal("apply is not a plain patch")),
    }
    Ok(out)
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON in patch body: {e}")))
}

fn merge_key(path: &[String], field: &str) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "volumeMounts"
        | "imagePullSecrets" => Some("name"),
        "ports" => Some("containerPort"),
        "ownerReferences" if path.len() == 1 && path[0] == "metadata" => Some("uid"),
        _ => None,
    }
}

fn strategic(target: &mut Value, patch: &Value, path: &mut Vec<String>) {
    let Some(pm) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if pm.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut p = pm.clone();
        p.remove("$patch");
        *target = Value::Object(p);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(tm) = target.as_object_mut() else {
        return;
    };
    for (k, pv) in pm {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(arr)), Some(del)) = (tm.get_mut(field), pv.as_array()) {
                arr.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() {
            tm.remove(k);
            continue;
        }
        let is_finalizers = k == "finalizers" && path.len() == 1 && path[0] == "metadata";
        match (tm.get_mut(k), pv) {
            (Some(Value::Array(tarr)), Value::Array(parr)) if is_finalizers => {
                for it in parr {
                    if !tarr.contains(it) {
                        tarr.push(it.clone());
                    }
                }
            }
            (Some(Value::Array(tarr)), Value::Array(parr)) => match merge_key(path, k) {
                Some(key) if parr.iter().all(|i| i.get(key).is_some()) => {
                    for it in parr {
                        let del = it.get("$patch").and_then(Value::as_str) == Some("delete");
                        let pos = tarr.iter().position(|x| x.get(key) == it.get(key));
                        match (pos, del) {
                            (Some(i), true) => {
                                tarr.remove(i);
                            }
                            (None, true) => {}
                            (Some(i), false) => {
                                path.push(k.clone());
                                strategic(&mut tarr[i], it, path);
                                path.pop();
                            }
                            (None, false) => {
                                let mut v = Value::Null;
                                strategic(&mut v, it, path);
                                tarr.push(v);
                            }
                        }
                    }
                }
                _ => *tarr = parr.clone(),
            },
            (Some(tv), Value::Object(_)) if tv.is_object() => {
                path.push(k.clone());
                strategic(tv, pv, path);
                path.pop();
            }
            (_, Value::Object(_)) => {
                let mut v = Value::Object(Map::new());
                path.push(k.clone());
                strategic(&mut v, pv, path);
                path.pop();
                tm.insert(k.clone(), v);
            }
            _ => {
                tm.insert(k.clone(), pv.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn smp_keyed() {
        let t = json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}});
        let p = json!({"metadata": {"finalizers": ["b"]}, "spec": {"containers": [{"name": "b", "image": "2"}, {"name": "a", "$patch": "delete"}]}});
        let out = patch(&t, PatchKind::Strategic, p.to_string().as_bytes()).unwrap();
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "b", "image": "2"}])
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        let p = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}});
        let out = patch(&out, PatchKind::Strategic, p.to_string().as_bytes()).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn json_and_merge() {
        let t = json!({"a": {"b": 1, "c": 2}});
        let out = patch(&t, PatchKind::Merge, br#"{"a":{"b":null,"d":3}}"#).unwrap();
        assert_eq!(out, json!({"a": {"c": 2, "d": 3}}));
        let out = patch(
            &t,
            PatchKind::Json,
            br#"[{"op":"replace","path":"/a/b","value":5}]"#,
        )
        .unwrap();
        assert_eq!(out["a"]["b"], 5);
        assert!(
            patch(
                &t,
                PatchKind::Json,
                br#"[{"op":"test","path":"/a/b","value":9}]"#
            )
            .is_err()
        );
    }
}
