//! Server-side apply (`application/apply-patch+yaml`).
//!
//! A simplified structured-merge-diff: ownership is tracked per leaf path
//! (see [`crate::fields`]); maps merge per key, lists are atomic except
//! `metadata.finalizers` (set), `metadata.ownerReferences` (keyed by uid) and
//! pod-template lists (`containers`, `env`, `volumes`, ...; keyed by name).
//! Merging uses no schema: every JSON object is treated as a granular map (a kind's schema only
//! refuses a configuration beforehand, see `schema::typed_errors` in `api.rs`).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::error::{ApiError, quote};
use crate::fields::{
    self, Entry, FieldSet, ListKind, Path, SYSTEM_METADATA, Scope, display_path, get_at, list_kind,
    remove_at,
};

/// Restrict an applied configuration to the part `scope` may change.
fn scoped_config(config: &Value, scope: Scope) -> Value {
    let mut out = Map::new();
    if let Some(m) = config.as_object() {
        for (k, v) in m {
            match (scope, k.as_str()) {
                (_, "apiVersion" | "kind") => {}
                (Scope::Status, "status") => {
                    out.insert(k.clone(), v.clone());
                }
                (Scope::Status, _) => {}
                (Scope::Main, "status") => {}
                (_, "metadata") => {
                    let mut md = v.as_object().cloned().unwrap_or_default();
                    md.retain(|k, _| !SYSTEM_METADATA.contains(&k.as_str()));
                    out.insert(k.clone(), Value::Object(md));
                }
                _ => {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
    }
    Value::Object(out)
}

/// Merge an applied configuration into `base` following the list semantics above.
fn merge(base: &mut Value, cfg: &Value, path: &mut Path) {
    match (&mut *base, cfg) {
        (Value::Object(b), Value::Object(c)) => {
            for (k, cv) in c {
                // like structured-merge-diff, a null is a value (validation may refuse it)
                path.push(format!("f:{k}"));
                match b.get_mut(k) {
                    Some(bv) => merge(bv, cv, path),
                    None => {
                        b.insert(k.clone(), cv.clone());
                    }
                }
                path.pop();
            }
        }
        (Value::Array(b), Value::Array(c)) => {
            let kind = list_kind(path, c);
            if kind != list_kind(path, b) {
                *base = cfg.clone();
                return;
            }
            match kind {
                ListKind::Atomic => *base = cfg.clone(),
                ListKind::Set => {
                    for it in c {
                        if !b.contains(it) {
                            b.push(it.clone());
                        }
                    }
                }
                ListKind::Map(key) => {
                    for it in c {
                        let pos = b.iter().position(|x| x.get(key) == it.get(key));
                        match pos {
                            Some(i) => {
                                path.push(fields::item_key(key, it));
                                merge(&mut b[i], it, path);
                                path.pop();
                            }
                            None => b.push(it.clone()),
                        }
                    }
                }
            }
        }
        _ => *base = cfg.clone(),
    }
}

/// Compute the object resulting from `manager` applying `config` on top of
/// `live` (None = create). Returns the new object with updated managedFields.
pub(crate) fn apply(
    live: Option<&Value>,
    skeleton: Value,
    config: &Value,
    manager: &str,
    force: bool,
    scope: Scope,
    api_version: &str,
) -> Result<Value, ApiError> {
    let cfg = scoped_config(config, scope);
    let new_set = fields::field_set(&cfg, scope);
    let mut entries: Vec<Entry> = live.map(fields::read_entries).unwrap_or_default();
    let mut base = live.cloned().unwrap_or(skeleton);
    let sub = scope.subresource().map(str::to_string);
    let is_mine =
        |e: &Entry| e.manager == manager && e.operation == "Apply" && e.subresource == sub;

    // Conflicts: fields another manager owns whose value would change.
    let mut conflicts: Vec<(&Entry, Path)> = Vec::new();
    for e in entries.iter().filter(|e| !is_mine(e)) {
        for p in new_set.intersection(&e.fields) {
            if p.last().is_some_and(|l| l == ".") {
                continue;
            }
            if get_at(&cfg, p) != get_at(&base, p) {
                conflicts.push((e, p.clone()));
            }
        }
    }
    let conflicts: Vec<(String, Path)> = conflicts
        .into_iter()
        .map(|(e, p)| (print_manager(e), p))
        .collect();
    if !conflicts.is_empty() {
        if !force {
            return Err(conflict_error(&conflicts));
        }
        for e in entries.iter_mut().filter(|e| !is_mine(e)) {
            for (_, p) in &conflicts {
                e.fields.remove(p);
            }
        }
    }

    // Fields this manager applied before but no longer specifies.
    let old_set: FieldSet = entries
        .iter()
        .find(|e| is_mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let others: FieldSet = entries
        .iter()
        .filter(|e| !is_mine(e))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    for p in old_set.difference(&new_set) {
        if others.contains(p) {
            continue;
        }
        if p.last().is_some_and(|l| l == ".") {
            let item = &p[..p.len() - 1];
            if others
                .iter()
                .chain(new_set.iter())
                .any(|o| o.starts_with(item))
            {
                continue;
            }
        }
        remove_at(&mut base, p);
    }

    merge(&mut base, &cfg, &mut Vec::new());

    let entry = Entry {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version: api_version.to_string(),
        time: fields::now(),
        subresource: sub.clone(),
        fields: new_set,
    };
    match entries.iter().position(is_mine) {
        Some(i) => entries[i] = entry,
        None => entries.push(entry),
    }
    fields::write_entries(&mut base, &entries);
    Ok(base)
}

/// A manager as the real server names it in conflicts: `"m"`, `"m" with subresource "status"`,
/// and ` using <apiVersion>` for Update (non-apply) managers.
fn print_manager(e: &Entry) -> String {
    let mut s = quote(&e.manager);
    if let Some(sub) = &e.subresource {
        s.push_str(&format!(" with subresource {}", quote(sub)));
    }
    if e.operation == "Update" {
        s.push_str(&format!(" using {}", e.api_version));
    }
    s
}

/// 409 as the real server words it: `Apply failed with 1 conflict: conflict with "m": .path`, or
/// for several `Apply failed with N conflicts: conflicts with "m":\n- .a\n- .b` grouped by manager.
fn conflict_error(conflicts: &[(String, Path)]) -> ApiError {
    let n = conflicts.len();
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(m, p)| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {m}"),
                "field": display_path(p),
            })
        })
        .collect();
    let message = match conflicts {
        [(m, p)] => format!(
            "Apply failed with 1 conflict: conflict with {m}: {}",
            display_path(p)
        ),
        _ => {
            let mut by_manager: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for (m, p) in conflicts {
                by_manager.entry(m).or_default().push(display_path(p));
            }
            let mut lines = Vec::new();
            for (m, mut paths) in by_manager {
                paths.sort();
                lines.push(format!("conflicts with {m}:"));
                lines.extend(paths.into_iter().map(|p| format!("- {p}")));
            }
            format!("Apply failed with {n} conflicts: {}", lines.join("\n"))
        }
    };
    ApiError::new(409, "Conflict", message).with_details(json!({ "causes": causes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skel() -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "d"}})
    }

    #[test]
    fn apply_remove_and_conflict() {
        let c1 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1", "b": "2"}});
        let o1 = apply(None, skel(), &c1, "m1", false, Scope::All, "v1").unwrap();
        assert_eq!(o1["data"], json!({"a": "1", "b": "2"}));
        let c2 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1"}});
        let o2 = apply(Some(&o1), skel(), &c2, "m1", false, Scope::All, "v1").unwrap();
        assert_eq!(o2["data"], json!({"a": "1"}));
        let c3 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "9"}});
        let e = apply(Some(&o2), skel(), &c3, "m2", false, Scope::All, "v1").unwrap_err();
        assert_eq!(e.code, 409);
        assert!(e.message.contains("m1"), "{}", e.message);
        let o3 = apply(Some(&o2), skel(), &c3, "m2", true, Scope::All, "v1").unwrap();
        assert_eq!(o3["data"]["a"], "9");
        // m1 no longer owns .data.a; re-applying without it must not remove it
        let c4 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"z": "1"}});
        let o4 = apply(Some(&o3), skel(), &c4, "m1", false, Scope::All, "v1").unwrap();
        assert_eq!(o4["data"], json!({"a": "9", "z": "1"}));
        // same value shared: no conflict
        let c5 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "9"}});
        assert!(apply(Some(&o4), skel(), &c5, "m3", false, Scope::All, "v1").is_ok());
    }
}
