//! Field sets and `metadata.managedFields` bookkeeping (FieldsV1 format).
//!
//! A field set is a set of paths; each path element is a FieldsV1 key:
//! `f:<field>`, `k:{"name":"x"}` (item of a keyed list), `v:"x"` (item of a
//! set) or `.` (the list item itself).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

pub(crate) type Path = Vec<String>;
pub(crate) type FieldSet = BTreeSet<Path>;

/// Which part of an object a write touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Everything (kinds without a status subresource).
    All,
    /// Everything but `.status` (main resource of kinds with a status subresource).
    Main,
    /// Only `.status`.
    Status,
}

impl Scope {
    pub fn new(has_status: bool, subresource: Option<&str>) -> Self {
        match (has_status, subresource) {
            (_, Some("status")) => Scope::Status,
            (true, _) => Scope::Main,
            (false, _) => Scope::All,
        }
    }
    pub fn subresource(self) -> Option<&'static str> {
        (self == Scope::Status).then_some("status")
    }
}

/// Server-managed metadata that no field manager owns.
pub(crate) const SYSTEM_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
];

/// Lists whose items are objects keyed by `name` (pod-template style).
const KEYED_BY_NAME: &[&str] = &[
    "f:containers",
    "f:initContainers",
    "f:ephemeralContainers",
    "f:env",
    "f:volumes",
    "f:volumeMounts",
    "f:imagePullSecrets",
];

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ListKind {
    Atomic,
    Set,
    Map(&'static str),
}

/// How the list at `path` merges.
pub(crate) fn list_kind(path: &[String], items: &[Value]) -> ListKind {
    let is = |p: &[&str]| path.len() == p.len() && path.iter().zip(p).all(|(a, b)| a == b);
    let all_keyed = |k: &str| {
        items
            .iter()
            .all(|i| i.get(k).is_some_and(|v| v.is_string()))
    };
    if is(&["f:metadata", "f:finalizers"]) && items.iter().all(Value::is_string) {
        ListKind::Set
    } else if is(&["f:metadata", "f:ownerReferences"]) && all_keyed("uid") {
        ListKind::Map("uid")
    } else if path
        .last()
        .is_some_and(|l| KEYED_BY_NAME.contains(&l.as_str()))
        && all_keyed("name")
    {
        ListKind::Map("name")
    } else {
        ListKind::Atomic
    }
}

pub(crate) fn item_key(key: &str, item: &Value) -> String {
    let mut m = Map::new();
    m.insert(
        key.to_string(),
        item.get(key).cloned().unwrap_or(Value::Null),
    );
    format!("k:{}", Value::Object(m))
}

/// The leaf field paths present in `obj`, restricted to `scope`.
pub(crate) fn field_set(obj: &Value, scope: Scope) -> FieldSet {
    let mut set = FieldSet::new();
    let Some(m) = obj.as_object() else {
        return set;
    };
    let mut path = Vec::new();
    for (k, v) in m {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                if scope == Scope::Status {
                    continue;
                }
                if let Some(md) = v.as_object() {
                    path.push("f:metadata".to_string());
                    for (mk, mv) in md {
                        if SYSTEM_METADATA.contains(&mk.as_str()) {
                            continue;
                        }
                        path.push(format!("f:{mk}"));
                        walk(mv, &mut path, &mut set);
                        path.pop();
                    }
                    path.pop();
                }
            }
            "status" if scope == Scope::Main => {}
            _ if scope == Scope::Status && k != "status" => {}
            _ => {
                path.push(format!("f:{k}"));
                walk(v, &mut path, &mut set);
                path.pop();
            }
        }
    }
    set
}

fn walk(v: &Value, path: &mut Path, set: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                path.push(format!("f:{k}"));
                walk(c, path, set);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match list_kind(path, items) {
            ListKind::Atomic => {
                set.insert(path.clone());
            }
            ListKind::Set => {
                for it in items {
                    path.push(format!("v:{it}"));
                    set.insert(path.clone());
                    path.pop();
                }
            }
            ListKind::Map(key) => {
                for it in items {
                    path.push(item_key(key, it));
                    path.push(".".into());
                    set.insert(path.clone());
                    path.pop();
                    if let Some(m) = it.as_object() {
                        for (k, c) in m {
                            path.push(format!("f:{k}"));
                            walk(c, path, set);
                            path.pop();
                        }
                    }
                    path.pop();
                }
            }
        },
        _ => {
            set.insert(path.clone());
        }
    }
}

fn find_item(arr: &[Value], seg: &str) -> Option<usize> {
    if let Some(k) = seg.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(k).ok()?;
        arr.iter()
            .position(|it| key.iter().all(|(kk, kv)| it.get(kk) == Some(kv)))
    } else if let Some(v) = seg.strip_prefix("v:") {
        let val: Value = serde_json::from_str(v).ok()?;
        arr.iter().position(|it| *it == val)
    } else {
        None
    }
}

/// The value at `path` (a `.` element refers to the list item itself).
pub(crate) fn get_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for seg in path {
        if seg == "." {
            continue;
        }
        cur = if let Some(f) = seg.strip_prefix("f:") {
            cur.get(f)?
        } else {
            let arr = cur.as_array()?;
            &arr[find_item(arr, seg)?]
        };
    }
    Some(cur)
}

/// Remove the field at `path`, pruning objects that become empty on the way up.
/// A trailing `.` removes the list item itself.
pub(crate) fn remove_at(v: &mut Value, path: &[String]) {
    let path: &[String] = match path.last() {
        Some(l) if l == "." => &path[..path.len() - 1],
        _ => path,
    };
    remove_rec(v, path);
}

fn remove_rec(v: &mut Value, path: &[String]) -> bool {
    let Some((seg, rest)) = path.split_first() else {
        return false;
    };
    if let Some(f) = seg.strip_prefix("f:") {
        let Some(m) = v.as_object_mut() else {
            return false;
        };
        if rest.is_empty() {
            return m.remove(f).is_some();
        }
        let Some(child) = m.get_mut(f) else {
            return false;
        };
        let removed = remove_rec(child, rest);
        if removed && child.as_object().is_some_and(Map::is_empty) {
            m.remove(f);
        }
        removed
    } else {
        let Some(arr) = v.as_array_mut() else {
            return false;
        };
        let Some(i) = find_item(arr, seg) else {
            return false;
        };
        if rest.is_empty() {
            arr.remove(i);
            true
        } else {
            remove_rec(&mut arr[i], rest)
        }
    }
}

/// Human-readable path, e.g. `.spec.containers[name="app"].image`.
pub(crate) fn display_path(path: &[String]) -> String {
    let mut s = String::new();
    for seg in path {
        if let Some(f) = seg.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = seg.strip_prefix("k:") {
            let inner: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = inner.iter().map(|(a, b)| format!("{a}={b}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = seg.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

pub(crate) fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for p in set {
        let mut cur = &mut root;
        for seg in p {
            let e = cur
                .entry(seg.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !e.is_object() {
                *e = Value::Object(Map::new());
            }
            cur = match e.as_object_mut() {
                Some(m) => m,
                None => break,
            };
        }
    }
    Value::Object(root)
}

pub(crate) fn from_fields_v1(v: &Value) -> FieldSet {
    fn rec(v: &Value, path: &mut Path, set: &mut FieldSet) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, c) in m {
                    path.push(k.clone());
                    rec(c, path, set);
                    path.pop();
                }
            }
            _ => {
                if !path.is_empty() {
                    set.insert(path.clone());
                }
            }
        }
    }
    let mut set = FieldSet::new();
    rec(v, &mut Vec::new(), &mut set);
    set
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

pub(crate) fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub(crate) fn read_entries(obj: &Value) -> Vec<Entry> {
    let Some(arr) = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return vec![];
    };
    arr.iter()
        .filter_map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
            Some(Entry {
                manager: s("manager").unwrap_or_default(),
                operation: s("operation")?,
                api_version: s("apiVersion").unwrap_or_default(),
                time: s("time").unwrap_or_default(),
                subresource: s("subresource").filter(|s| !s.is_empty()),
                fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
            })
        })
        .collect()
}

pub(crate) fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let arr: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if let Some(s) = &e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    if let Some(md) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if arr.is_empty() {
            md.remove("managedFields");
        } else {
            md.insert("managedFields".into(), Value::Array(arr));
        }
    }
}

/// Drop ownership of paths the stored object does not have (e.g. a Secret's
/// `stringData`, which is folded into `data`).
pub(crate) fn prune_entries(obj: &mut Value) {
    let mut entries = read_entries(obj);
    let mut changed = false;
    for e in entries.iter_mut() {
        let n = e.fields.len();
        e.fields.retain(|p| get_at(obj, p).is_some());
        changed |= n != e.fields.len();
    }
    if changed {
        write_entries(obj, &entries);
    }
}

/// Record a non-apply write (create/update/patch) by `manager`: fields it
/// changed or added become its own (operation `Update`) and are taken from
/// every other manager; removed fields are dropped from all managers.
pub(crate) fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    scope: Scope,
    api_version: &str,
) {
    let mut entries = old.map(read_entries).unwrap_or_default();
    let old_set = old.map(|o| field_set(o, scope)).unwrap_or_default();
    let new_set = field_set(new, scope);
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| !old_set.contains(*p) || old.and_then(|o| get_at(o, p)) != get_at(new, p))
        .cloned()
        .collect();
    let removed: FieldSet = old_set.difference(&new_set).cloned().collect();
    if !changed.is_empty() || !removed.is_empty() {
        for e in entries.iter_mut() {
            e.fields
                .retain(|p| !changed.contains(p) && !removed.contains(p));
        }
        let sub = scope.subresource().map(str::to_string);
        let idx = entries
            .iter()
            .position(|e| e.manager == manager && e.operation == "Update" && e.subresource == sub);
        let idx = match idx {
            Some(i) => i,
            None => {
                entries.push(Entry {
                    manager: manager.to_string(),
                    operation: "Update".into(),
                    api_version: api_version.to_string(),
                    time: String::new(),
                    subresource: sub,
                    fields: FieldSet::new(),
                });
                entries.len() - 1
            }
        };
        let e = &mut entries[idx];
        e.fields.extend(changed);
        e.time = now();
        e.api_version = api_version.to_string();
    }
    write_entries(new, &entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_lists() {
        let o = json!({
            "apiVersion": "v1", "kind": "X",
            "metadata": {"name": "n", "labels": {"a": "1"}, "finalizers": ["f1"],
                         "ownerReferences": [{"uid": "u1", "name": "o"}]},
            "spec": {"containers": [{"name": "c", "image": "i"}], "args": ["x"]},
            "status": {"s": 1}
        });
        let set = field_set(&o, Scope::Main);
        let fv1 = to_fields_v1(&set);
        assert_eq!(from_fields_v1(&fv1), set);
        assert!(set.contains(&vec![
            "f:metadata".into(),
            "f:finalizers".into(),
            "v:\"f1\"".into()
        ]));
        assert!(set.contains(&vec![
            "f:spec".into(),
            "f:containers".into(),
            "k:{\"name\":\"c\"}".into(),
            "f:image".into()
        ]));
        assert!(set.contains(&vec!["f:spec".into(), "f:args".into()]));
        assert!(!set.iter().any(|p| p[0] == "f:status"));
        let p = vec![
            "f:spec".to_string(),
            "f:containers".into(),
            "k:{\"name\":\"c\"}".into(),
            "f:image".into(),
        ];
        assert_eq!(get_at(&o, &p), Some(&json!("i")));
        let mut o2 = o.clone();
        remove_at(
            &mut o2,
            &[p[0].clone(), p[1].clone(), p[2].clone(), ".".into()],
        );
        assert_eq!(o2["spec"]["containers"], json!([]));
        remove_at(
            &mut o2,
            &["f:metadata".into(), "f:labels".into(), "f:a".into()],
        );
        assert!(o2["metadata"].get("labels").is_none());
    }
}
