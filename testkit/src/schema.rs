//! Structural schemas: a CRD version's `openAPIV3Schema` (or a built-in kind's equivalent from
//! `kinds.rs`), walked the way kube-apiserver does for the three things the emulator emulates:
//!
//! - [`prune`]: what decoding a request body does (create, update, merge/JSON patch): fields the
//!   schema does not declare are dropped and reported (`unknown field "spec.x"`), as are `null`s
//!   of non-nullable fields (silently);
//! - [`typed_errors`]: what server-side apply does before merging (structured-merge-diff's typed
//!   conversion): undeclared fields and wrong kinds of value are errors;
//! - [`validate`]: the OpenAPI value validation of custom resources (type, nullable, required,
//!   enum, lengths, pattern, item and property counts, bounds, list-type uniqueness).
//!
//! Understood: `properties`, `items`, `additionalProperties`, `x-kubernetes-preserve-unknown-fields`,
//! `x-kubernetes-embedded-resource`, `x-kubernetes-int-or-string`, `x-kubernetes-list-type`/
//! `x-kubernetes-list-map-keys`, `nullable`, and the validations above plus `pattern` (the subset
//! `pattern.rs` knows). Not evaluated: `format`, `allOf`/`anyOf`/`oneOf`/`not`,
//! `x-kubernetes-validations` (CEL), `default`s (not applied either).
//! At the root and in embedded resources `apiVersion`, `kind` and `metadata` are always allowed;
//! `metadata` follows the ObjectMeta schema ([`object_meta`]) whatever the CRD says about it.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::error::{Cause, quote};
use crate::pattern::Pattern;

fn flag(s: &Value, k: &str) -> bool {
    s.get(k).and_then(Value::as_bool) == Some(true)
}

fn props(s: &Value) -> Option<&Map<String, Value>> {
    s.get("properties").and_then(Value::as_object)
}

/// `additionalProperties`: a schema for every other key, `true` for anything, `None` for nothing.
enum Additional<'a> {
    Schema(&'a Value),
    Any,
    None,
}

fn additional(s: &Value) -> Additional<'_> {
    match s.get("additionalProperties") {
        Some(a @ Value::Object(_)) => Additional::Schema(a),
        Some(Value::Bool(true)) => Additional::Any,
        _ => Additional::None,
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The schema of `metadata` (ObjectMeta), for pruning and typed checks.
pub(crate) fn object_meta() -> &'static Value {
    static META: OnceLock<Value> = OnceLock::new();
    META.get_or_init(|| {
        let s = json!({"type": "string"});
        let i = json!({"type": "integer"});
        let b = json!({"type": "boolean"});
        let map = json!({"type": "object", "additionalProperties": {"type": "string"}});
        json!({"type": "object", "properties": {
            "name": s, "generateName": s, "namespace": s, "selfLink": s, "uid": s,
            "resourceVersion": s, "generation": i, "creationTimestamp": s,
            "deletionTimestamp": s, "deletionGracePeriodSeconds": i,
            "labels": map, "annotations": map,
            "finalizers": {"type": "array", "x-kubernetes-list-type": "set", "items": s},
            "ownerReferences": {"type": "array", "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["uid"],
                "items": {"type": "object", "properties": {
                    "apiVersion": s, "kind": s, "name": s, "uid": s,
                    "controller": b, "blockOwnerDeletion": b}}},
            "managedFields": {"type": "array", "items": {"type": "object", "properties": {
                "manager": s, "operation": s, "apiVersion": s, "time": s, "fieldsType": s,
                "subresource": s,
                "fieldsV1": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}},
        }})
    })
}

// ---------------------------------------------------------------------------------------------
// Pruning

struct Pruner {
    unknown: Vec<String>,
    /// Unknown fields of embedded resources' metadata: the real server reports them last.
    later: Vec<String>,
}

/// Drop from the object `obj` every field `schema` does not declare (and `null`s of non-nullable
/// fields); returns the paths of the dropped fields (not the `null`s), in the order the real
/// server warns about them. `meta_first`: custom resources have their `metadata` decoded (and
/// reported) before the rest, built-in kinds in document order.
pub(crate) fn prune(obj: &mut Value, schema: &Value, meta_first: bool) -> Vec<String> {
    let mut p = Pruner {
        unknown: Vec::new(),
        later: Vec::new(),
    };
    if meta_first && let Some(md) = obj.get_mut("metadata") {
        p.walk(md, object_meta(), "metadata");
    }
    p.object(obj, schema, "", true, meta_first);
    let mut out = p.unknown;
    out.extend(p.later);
    out
}

impl Pruner {
    fn walk(&mut self, v: &mut Value, s: &Value, path: &str) {
        match v {
            Value::Object(_) => self.object(v, s, path, false, false),
            Value::Array(items) => {
                if let Some(is) = s.get("items") {
                    for (i, it) in items.iter_mut().enumerate() {
                        self.walk(it, is, &format!("{path}[{i}]"));
                    }
                }
            }
            _ => {}
        }
    }

    fn object(&mut self, v: &mut Value, s: &Value, path: &str, root: bool, meta_done: bool) {
        let Some(m) = v.as_object_mut() else {
            return;
        };
        let embedded = root || flag(s, "x-kubernetes-embedded-resource");
        let preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
        let keys: Vec<String> = m.keys().cloned().collect();
        for k in keys {
            let p = child(path, &k);
            if embedded && (k == "apiVersion" || k == "kind") {
                continue;
            }
            if embedded && k == "metadata" {
                if meta_done {
                    continue;
                }
                if let Some(md) = m.get_mut(&k) {
                    if root {
                        self.walk(md, object_meta(), &p);
                    } else {
                        let mut sub = Pruner {
                            unknown: Vec::new(),
                            later: Vec::new(),
                        };
                        sub.walk(md, object_meta(), &p);
                        self.later.extend(sub.unknown);
                        self.later.extend(sub.later);
                    }
                }
                continue;
            }
            let cs = match props(s).and_then(|ps| ps.get(&k)) {
                Some(cs) => Some(cs),
                None => match additional(s) {
                    Additional::Schema(a) => Some(a),
                    Additional::Any => continue,
                    Additional::None if preserve => continue,
                    Additional::None => None,
                },
            };
            match cs {
                None => {
                    m.remove(&k);
                    self.unknown.push(p);
                }
                Some(cs) => {
                    if m.get(&k).is_some_and(Value::is_null) {
                        if !flag(cs, "nullable") {
                            m.remove(&k);
                        }
                        continue;
                    }
                    if let Some(cv) = m.get_mut(&k) {
                        self.walk(cv, cs, &p);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server-side apply: structured-merge-diff's typed conversion

/// Errors converting an apply configuration to the schema's type, as structured-merge-diff words
/// them (`.spec.x: field not declared in schema`), in key order, an object's undeclared fields
/// after the errors inside its declared ones. The real server stops at the first undeclared field
/// of each object, in Go map order: with several errors its list varies; with one it is the same.
pub(crate) fn typed_errors(config: &Value, schema: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    typed(config, schema, "", true, &mut errs);
    errs
}

enum Atom {
    Map,
    List,
    String,
    Numeric,
    Boolean,
    /// Any value (preserve-unknown-fields without a type, int-or-string).
    Any,
}

fn atom(s: &Value) -> Atom {
    if flag(s, "x-kubernetes-int-or-string") {
        return Atom::Any;
    }
    match s.get("type").and_then(Value::as_str) {
        Some("object") => Atom::Map,
        Some("array") => Atom::List,
        Some("string") => Atom::String,
        Some("integer" | "number") => Atom::Numeric,
        Some("boolean") => Atom::Boolean,
        _ if props(s).is_some() || s.get("additionalProperties").is_some() => Atom::Map,
        _ if s.get("items").is_some() => Atom::List,
        _ => Atom::Any,
    }
}

/// Go's `%v` of a decoded JSON value.
fn go_v(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_v).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", go_v(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => other.to_string(),
    }
}

/// Go's `%#v` of a decoded JSON value.
fn go_sharp_v(v: &Value) -> String {
    match v {
        Value::Null => "interface {}(nil)".into(),
        Value::String(s) => quote(s),
        Value::Array(a) => format!(
            "[]interface {{}}{{{}}}",
            a.iter().map(go_sharp_v).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => format!(
            "map[string]interface {{}}{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}:{}", quote(k), go_sharp_v(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// Go's `%T` of a decoded JSON value.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// A list item's path element as structured-merge-diff prints it.
fn item_element(s: &Value, item: &Value, i: usize) -> String {
    match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("map") => {
            let keys: Vec<String> = s
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .filter_map(|k| item.get(k).map(|v| format!("{k}={v}")))
                        .collect()
                })
                .unwrap_or_default();
            format!("[{}]", keys.join(","))
        }
        Some("set") if !item.is_object() && !item.is_array() => format!("[={item}]"),
        _ => format!("[{i}]"),
    }
}

fn typed(v: &Value, s: &Value, path: &str, root: bool, errs: &mut Vec<String>) {
    if v.is_null() {
        return;
    }
    match atom(s) {
        Atom::Any => {}
        Atom::String if !v.is_string() => errs.push(format!(
            "{path}: expected string, got &value.valueUnstructured{{Value:{}}}",
            go_sharp_v(v)
        )),
        Atom::Numeric if !v.is_number() => errs.push(format!(
            "{path}: expected numeric (int or float), got {}",
            go_type(v)
        )),
        Atom::Boolean if !v.is_boolean() => {
            errs.push(format!("{path}: expected boolean, got &{{{}}}", go_v(v)))
        }
        Atom::String | Atom::Numeric | Atom::Boolean => {}
        Atom::List => match v.as_array() {
            None => errs.push(format!("{path}: expected list, got &{{{}}}", go_v(v))),
            Some(items) => {
                if let Some(is) = s.get("items") {
                    for (i, it) in items.iter().enumerate() {
                        let p = format!("{path}{}", item_element(s, it, i));
                        typed(it, is, &p, false, errs);
                    }
                }
            }
        },
        Atom::Map => match v.as_object() {
            None => errs.push(format!("{path}: expected map, got &{{{}}}", go_v(v))),
            Some(m) => {
                let embedded = root || flag(s, "x-kubernetes-embedded-resource");
                let preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
                let mut unknown = Vec::new();
                for (k, cv) in m {
                    let p = format!("{path}.{k}");
                    if embedded && (k == "apiVersion" || k == "kind") {
                        typed(cv, &json!({"type": "string"}), &p, false, errs);
                        continue;
                    }
                    if embedded && k == "metadata" {
                        typed(cv, object_meta(), &p, false, errs);
                        continue;
                    }
                    match props(s).and_then(|ps| ps.get(k)) {
                        Some(cs) => typed(cv, cs, &p, false, errs),
                        None => match additional(s) {
                            Additional::Schema(a) => typed(cv, a, &p, false, errs),
                            Additional::Any => {}
                            Additional::None if preserve => {}
                            Additional::None => {
                                unknown.push(format!("{p}: field not declared in schema"))
                            }
                        },
                    }
                }
                errs.extend(unknown);
            }
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Value validation (custom resources)

/// The OpenAPI type name of a JSON value, as the validation messages use it.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A number as Go's `%v` prints it (`1` for 1.0).
fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if v.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => v.to_string(),
    }
}

/// A value as a field error prints it (`"x"`, `3`, `{"name":"a"}`).
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => quote(s),
        Value::Number(_) => num(v),
        other => other.to_string(),
    }
}

/// The OpenAPI validation errors of the object `obj` (apiVersion, kind and metadata excluded) in
/// a deterministic order (the real server's order for several errors depends on Go map order).
pub(crate) fn validate(obj: &Value, schema: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    check(obj, schema, "", true, &mut out);
    out
}

fn check(v: &Value, s: &Value, path: &str, root: bool, out: &mut Vec<Cause>) {
    let int_or_string = flag(s, "x-kubernetes-int-or-string");
    let ty = s.get("type").and_then(Value::as_str);
    if v.is_null() {
        if flag(s, "nullable") {
            return;
        }
        let want = if int_or_string {
            Some("integer,string")
        } else {
            ty
        };
        if let Some(want) = want {
            out.push(type_error(path, want, "null"));
        }
        return;
    }
    let actual = type_name(v);
    if int_or_string {
        if !matches!(actual, "integer" | "string") {
            out.push(type_error(path, "integer,string", actual));
            return;
        }
    } else if let Some(t) = ty {
        let ok = t == actual || (t == "number" && actual == "integer");
        if !ok {
            out.push(type_error(path, t, actual));
            if t == "integer" && actual == "number" {
                out.push(Cause::invalid(
                    "<nil>",
                    "\"\"",
                    &format!("Checked value must be of type integer (default format) in {path}"),
                ));
            }
            return;
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        let allowed: Vec<String> = e.iter().map(shown).collect();
        out.push(Cause::new(
            "FieldValueNotSupported",
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                shown(v),
                allowed.join(", ")
            ),
        ));
    }
    match v {
        Value::String(st) => {
            let n = st.chars().count() as u64;
            if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
                && n > max
            {
                out.push(Cause::new(
                    "FieldValueTooLong",
                    path,
                    format!("Too long: may not be more than {max} bytes"),
                ));
            }
            if let Some(min) = s.get("minLength").and_then(Value::as_u64)
                && n < min
            {
                out.push(Cause::invalid(
                    path,
                    &quote(st),
                    &format!("{path} in body should be at least {min} chars long"),
                ));
            }
            if let Some(p) = s.get("pattern").and_then(Value::as_str)
                && Pattern::compile(p).and_then(|re| re.is_match(st)) == Some(false)
            {
                out.push(Cause::invalid(
                    path,
                    &quote(st),
                    &format!("{path} in body should match '{p}'"),
                ));
            }
        }
        Value::Number(_) => bounds(v, s, path, out),
        Value::Array(items) => array(items, s, path, out),
        Value::Object(m) => object(m, s, path, root, out),
        _ => {}
    }
}

fn type_error(path: &str, want: &str, actual: &str) -> Cause {
    Cause::new(
        "FieldValueTypeInvalid",
        path,
        format!(
            "Invalid value: {}: {path} in body must be of type {want}: {}",
            quote(actual),
            quote(actual)
        ),
    )
}

fn bounds(v: &Value, s: &Value, path: &str, out: &mut Vec<Cause>) {
    let Some(x) = v.as_f64() else { return };
    if let Some(min) = s.get("minimum").filter(|m| m.is_number()) {
        let m = min.as_f64().unwrap_or(f64::MIN);
        let (bad, word) = if flag(s, "exclusiveMinimum") {
            (x <= m, "greater than")
        } else {
            (x < m, "greater than or equal to")
        };
        if bad {
            out.push(Cause::invalid(
                path,
                &num(v),
                &format!("{path} in body should be {word} {}", num(min)),
            ));
        }
    }
    if let Some(max) = s.get("maximum").filter(|m| m.is_number()) {
        let m = max.as_f64().unwrap_or(f64::MAX);
        let (bad, word) = if flag(s, "exclusiveMaximum") {
            (x >= m, "less than")
        } else {
            (x > m, "less than or equal to")
        };
        if bad {
            out.push(Cause::invalid(
                path,
                &num(v),
                &format!("{path} in body should be {word} {}", num(max)),
            ));
        }
    }
    if let Some(mo) = s.get("multipleOf").and_then(Value::as_f64)
        && mo > 0.0
        && (x / mo).fract() != 0.0
    {
        out.push(Cause::invalid(
            path,
            &num(v),
            &format!(
                "{path} in body should be a multiple of {}",
                num(&s["multipleOf"])
            ),
        ));
    }
}

fn too_many(path: &str, n: usize, max: u64) -> Cause {
    Cause::new(
        "FieldValueTooMany",
        path,
        format!(
            "Too many: {n}: must have at most {max} item{}",
            if max == 1 { "" } else { "s" }
        ),
    )
}

fn array(items: &[Value], s: &Value, path: &str, out: &mut Vec<Cause>) {
    if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
        && items.len() as u64 > max
    {
        out.push(too_many(path, items.len(), max));
    }
    if let Some(min) = s.get("minItems").and_then(Value::as_u64)
        && (items.len() as u64) < min
    {
        out.push(Cause::invalid(
            path,
            &items.len().to_string(),
            &format!("{path} in body should have at least {min} items"),
        ));
    }
    match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            for (i, it) in items.iter().enumerate() {
                if items[..i].contains(it) {
                    out.push(Cause::new(
                        "FieldValueDuplicate",
                        format!("{path}[{i}]"),
                        format!("Duplicate value: {}", shown(it)),
                    ));
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = s
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let key_of = |it: &Value| -> Map<String, Value> {
                keys.iter()
                    .filter_map(|k| it.get(*k).map(|v| (k.to_string(), v.clone())))
                    .collect()
            };
            for (i, it) in items.iter().enumerate() {
                let k = key_of(it);
                if !k.is_empty() && items[..i].iter().any(|o| key_of(o) == k) {
                    out.push(Cause::new(
                        "FieldValueDuplicate",
                        format!("{path}[{i}]"),
                        format!("Duplicate value: {}", Value::Object(k)),
                    ));
                }
            }
        }
        _ => {}
    }
    if let Some(is) = s.get("items") {
        for (i, it) in items.iter().enumerate() {
            check(it, is, &format!("{path}[{i}]"), false, out);
        }
    }
}

fn object(m: &Map<String, Value>, s: &Value, path: &str, root: bool, out: &mut Vec<Cause>) {
    let embedded = !root && flag(s, "x-kubernetes-embedded-resource");
    if embedded {
        for k in ["apiVersion", "kind"] {
            if m.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
                out.push(Cause::required(child(path, k)));
            }
        }
    }
    if let Some(req) = s.get("required").and_then(Value::as_array) {
        for k in req.iter().filter_map(Value::as_str) {
            if m.get(k).is_none_or(Value::is_null) {
                out.push(Cause::required(child(path, k)));
            }
        }
    }
    if let Some(max) = s.get("maxProperties").and_then(Value::as_u64)
        && m.len() as u64 > max
    {
        out.push(too_many(path, m.len(), max));
    }
    if let Some(min) = s.get("minProperties").and_then(Value::as_u64)
        && (m.len() as u64) < min
    {
        out.push(Cause::invalid(
            path,
            &m.len().to_string(),
            &format!("{path} in body should have at least {min} properties"),
        ));
    }
    for (k, cv) in m {
        if (root || embedded) && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        let cs = match props(s).and_then(|ps| ps.get(k)) {
            Some(cs) => cs,
            None => match additional(s) {
                Additional::Schema(a) => a,
                _ => continue,
            },
        };
        check(cv, cs, &child(path, k), false, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        serde_yaml_ng::from_str(
            r#"
type: object
properties:
  spec:
    type: object
    required: [size]
    properties:
      size: {type: integer, minimum: 1}
      name: {type: string, maxLength: 3, pattern: '^[a-z]+$'}
      nname: {type: string, nullable: true}
      color: {type: string, enum: [red, blue]}
      ref: {type: object, properties: {name: {type: string}}}
      labels: {type: object, additionalProperties: {type: string}}
      free: {type: object, x-kubernetes-preserve-unknown-fields: true, properties: {known: {type: object, properties: {a: {type: string}}}}}
      list: {type: array, items: {type: object, properties: {a: {type: string}}}}
      keyed:
        type: array
        x-kubernetes-list-type: map
        x-kubernetes-list-map-keys: [name]
        items: {type: object, properties: {name: {type: string}, v: {type: string}}}
      port: {x-kubernetes-int-or-string: true}
      template:
        type: object
        x-kubernetes-embedded-resource: true
        properties: {spec: {type: object, properties: {x: {type: string}}}}
  status:
    type: object
    properties: {phase: {type: string}}
"#,
        )
        .unwrap()
    }

    #[test]
    fn prune_drops_undeclared_fields_and_reports_them() {
        let mut o = json!({
            "apiVersion": "g/v1", "kind": "W", "top": 1,
            "metadata": {"name": "n", "foo": 1, "labels": {"a": "b"}},
            "spec": {
                "size": 1, "x": 2, "name": null, "nname": null,
                "ref": {"name": "r", "namespace": "y"},
                "labels": {"k": "v"},
                "free": {"anything": {"goes": 1}, "known": {"a": "1", "b": 2}},
                "list": [{"a": "1", "b": 2}],
                "port": 80,
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t", "foo": 1},
                             "spec": {"x": "1", "y": 2}, "other": 1},
            },
            "status": {"phase": "p", "q": 1},
        });
        let unknown = prune(&mut o, &schema(), true);
        assert_eq!(
            unknown,
            vec![
                "metadata.foo",
                "spec.free.known.b",
                "spec.list[0].b",
                "spec.ref.namespace",
                "spec.template.other",
                "spec.template.spec.y",
                "spec.x",
                "status.q",
                "top",
                "spec.template.metadata.foo",
            ]
        );
        assert_eq!(
            o,
            json!({
                "apiVersion": "g/v1", "kind": "W",
                "metadata": {"name": "n", "labels": {"a": "b"}},
                "spec": {
                    "size": 1, "nname": null, "ref": {"name": "r"}, "labels": {"k": "v"},
                    "free": {"anything": {"goes": 1}, "known": {"a": "1"}},
                    "list": [{"a": "1"}], "port": 80,
                    "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t"},
                                 "spec": {"x": "1"}},
                },
                "status": {"phase": "p"},
            })
        );
        // built-in kinds report in document order
        let mut o = json!({"metadata": {"foo": 1}, "a": 1});
        assert_eq!(
            prune(&mut o, &json!({"type": "object"}), false),
            vec!["a", "metadata.foo"]
        );
    }

    #[test]
    fn typed_errors_name_undeclared_fields_and_wrong_kinds() {
        let cfg = json!({
            "apiVersion": "g/v1", "kind": "W",
            "metadata": {"name": "n", "foo": 1, "labels": {"a": 1}},
            "spec": {"size": "big", "zzz": 1, "ref": {"namespace": "y"}, "free": {"x": 1},
                     "list": [{"a": "1"}, {"b": 1}], "keyed": [{"name": "k", "u": 1}],
                     "color": true, "nname": null, "port": "http"},
        });
        assert_eq!(
            typed_errors(&cfg, &schema()),
            vec![
                ".metadata.labels.a: expected string, got &value.valueUnstructured{Value:1}",
                ".metadata.foo: field not declared in schema",
                ".spec.color: expected string, got &value.valueUnstructured{Value:true}",
                ".spec.keyed[name=\"k\"].u: field not declared in schema",
                ".spec.list[1].b: field not declared in schema",
                ".spec.ref.namespace: field not declared in schema",
                ".spec.size: expected numeric (int or float), got string",
                ".spec.zzz: field not declared in schema",
            ]
        );
        let ok = json!({"apiVersion": "g/v1", "kind": "W", "metadata": {"name": "n"},
                        "spec": {"size": 1, "free": {"any": {"thing": 1}}}});
        assert!(typed_errors(&ok, &schema()).is_empty());
        let bad = json!({"spec": {"ref": "s", "list": "s"}});
        assert_eq!(
            typed_errors(&bad, &schema()),
            vec![
                ".spec.list: expected list, got &{s}",
                ".spec.ref: expected map, got &{s}"
            ]
        );
    }

    #[test]
    fn validate_reports_openapi_errors() {
        let msgs = |o: Value| -> Vec<String> {
            validate(&o, &schema())
                .into_iter()
                .map(|c| format!("{}: {} ({})", c.field, c.message, c.reason))
                .collect()
        };
        assert!(msgs(json!({"metadata": {"x": 1}, "spec": {"size": 1}})).is_empty());
        assert_eq!(
            msgs(json!({"spec": {"name": "long", "size": 0}})),
            vec![
                "spec.name: Too long: may not be more than 3 bytes (FieldValueTooLong)",
                "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1 (FieldValueInvalid)",
            ]
        );
        assert_eq!(
            msgs(json!({"spec": {"size": 1, "name": "AB"}})),
            vec![
                "spec.name: Invalid value: \"AB\": spec.name in body should match '^[a-z]+$' (FieldValueInvalid)"
            ]
        );
        assert_eq!(
            msgs(json!({"spec": {"size": "big"}})),
            vec![
                "spec.size: Invalid value: \"string\": spec.size in body must be of type integer: \"string\" (FieldValueTypeInvalid)"
            ]
        );
        assert_eq!(
            msgs(json!({"spec": {}})),
            vec!["spec.size: Required value (FieldValueRequired)"]
        );
        assert_eq!(
            msgs(json!({"spec": {"size": 1, "color": "green", "port": true, "nname": null}})),
            vec![
                "spec.color: Unsupported value: \"green\": supported values: \"red\", \"blue\" (FieldValueNotSupported)",
                "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\" (FieldValueTypeInvalid)",
            ]
        );
        assert_eq!(
            msgs(json!({"spec": {"size": 1, "template": {"spec": {}},
                                  "keyed": [{"name": "a"}, {"name": "a"}]}})),
            vec![
                "spec.keyed[1]: Duplicate value: {\"name\":\"a\"} (FieldValueDuplicate)",
                "spec.template.apiVersion: Required value (FieldValueRequired)",
                "spec.template.kind: Required value (FieldValueRequired)",
            ]
        );
        assert_eq!(
            msgs(json!({"spec": {"size": 1, "name": null}})),
            vec![
                "spec.name: Invalid value: \"null\": spec.name in body must be of type string: \"null\" (FieldValueTypeInvalid)"
            ]
        );
    }
}
