//! Built-in kinds: the structural schemas used to prune (and type-check for server-side apply)
//! their request bodies, and the per-kind validation the emulator reproduces from kube-apiserver
//! (events.k8s.io Events, Leases, TokenRequests, MicroTime fields, DNS and qualified names).
//! Messages, reasons and field paths are the real server's (kube-apiserver 1.36).

use serde_json::{Value, json};

use crate::error::{ApiError, Cause, quote};

// ---------------------------------------------------------------------------------------------
// Schemas of built-in kinds (top-level fields besides apiVersion/kind/metadata)

fn s() -> Value {
    json!({"type": "string"})
}
fn i() -> Value {
    json!({"type": "integer"})
}
fn b() -> Value {
    json!({"type": "boolean"})
}
fn string_map() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string"}})
}
fn object(props: Value) -> Value {
    json!({"type": "object", "properties": props})
}
fn object_reference() -> Value {
    object(json!({
        "kind": s(), "namespace": s(), "name": s(), "uid": s(), "apiVersion": s(),
        "resourceVersion": s(), "fieldPath": s(),
    }))
}

/// The schema of a built-in kind the emulator prunes (`None`: bodies are stored as sent).
pub(crate) fn builtin_schema(group: &str, plural: &str) -> Option<Value> {
    let series = object(json!({"count": i(), "lastObservedTime": s()}));
    let source = object(json!({"component": s(), "host": s()}));
    Some(match (group, plural) {
        ("", "secrets") => object(json!({
            "data": string_map(), "stringData": string_map(), "type": s(), "immutable": b(),
        })),
        ("", "configmaps") => object(json!({
            "data": string_map(), "binaryData": string_map(), "immutable": b(),
        })),
        ("", "serviceaccounts") => object(json!({
            "secrets": {"type": "array", "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"], "items": object_reference()},
            "imagePullSecrets": {"type": "array", "items": object(json!({"name": s()}))},
            "automountServiceAccountToken": b(),
        })),
        ("", "namespaces") => object(json!({
            "spec": object(json!({"finalizers": {"type": "array", "items": s()}})),
            "status": object(json!({
                "phase": s(),
                "conditions": {"type": "array", "items": object(json!({
                    "type": s(), "status": s(), "lastTransitionTime": s(), "reason": s(),
                    "message": s(),
                }))},
            })),
        })),
        ("coordination.k8s.io", "leases") => object(json!({
            "spec": object(json!({
                "holderIdentity": s(), "leaseDurationSeconds": i(), "acquireTime": s(),
                "renewTime": s(), "leaseTransitions": i(), "strategy": s(),
                "preferredHolder": s(),
            })),
        })),
        ("events.k8s.io", "events") => object(json!({
            "eventTime": s(), "series": series, "reportingController": s(),
            "reportingInstance": s(), "action": s(), "reason": s(),
            "regarding": object_reference(), "related": object_reference(), "note": s(),
            "type": s(), "deprecatedSource": source, "deprecatedFirstTimestamp": s(),
            "deprecatedLastTimestamp": s(), "deprecatedCount": i(),
        })),
        ("", "events") => object(json!({
            "involvedObject": object_reference(), "reason": s(), "message": s(),
            "source": source, "firstTimestamp": s(), "lastTimestamp": s(), "count": i(),
            "type": s(), "eventTime": s(), "series": series, "action": s(),
            "related": object_reference(), "reportingComponent": s(),
            "reportingInstance": s(),
        })),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// MicroTime

/// The JSON pointers of a kind's `metav1.MicroTime` fields.
pub(crate) fn micro_time_fields(group: &str, plural: &str) -> &'static [&'static str] {
    match (group, plural) {
        ("coordination.k8s.io", "leases") => &["/spec/acquireTime", "/spec/renewTime"],
        ("events.k8s.io" | "", "events") => &["/eventTime", "/series/lastObservedTime"],
        _ => &[],
    }
}

const MICRO_LAYOUT: &str = "2006-01-02T15:04:05.000000Z07:00";

/// Go's `time.Parse(RFC3339Micro, v)` as MicroTime decoding does it: `Err` carries Go's message.
pub(crate) fn parse_micro_time(v: &str) -> Result<(), String> {
    let fail = |rest: &str, elem: &str| {
        Err(format!(
            "parsing time {} as {}: cannot parse {} as {}",
            quote(v),
            quote(MICRO_LAYOUT),
            quote(rest),
            quote(elem)
        ))
    };
    let digits =
        |r: &str, n: usize| r.len() >= n && r.as_bytes()[..n].iter().all(u8::is_ascii_digit);
    let mut rest = v;
    // (element, fixed digits, literal after it)
    for (elem, n, lit) in [
        ("2006", 4, "-"),
        ("01", 2, "-"),
        ("02", 2, "T"),
        ("15", 0, ":"),
        ("04", 2, ":"),
        ("05", 2, ""),
    ] {
        let len = if n > 0 {
            n
        } else if digits(rest, 2) {
            2
        } else {
            1
        };
        if !digits(rest, len) {
            return fail(rest, elem);
        }
        rest = &rest[len..];
        if !lit.is_empty() {
            match rest.strip_prefix(lit) {
                Some(r) => rest = r,
                None => return fail(rest, lit),
            }
        }
    }
    if !(rest.starts_with('.') && digits(&rest[1..], 6)) {
        return fail(rest, ".000000");
    }
    rest = &rest[7..];
    if let Some(r) = rest.strip_prefix('Z') {
        rest = r;
    } else {
        let b = rest.as_bytes();
        let ok = b.len() >= 6
            && (b[0] == b'+' || b[0] == b'-')
            && digits(&rest[1..], 2)
            && b[3] == b':'
            && digits(&rest[4..], 2);
        if !ok {
            return fail(rest, "Z07:00");
        }
        rest = &rest[6..];
    }
    if !rest.is_empty() {
        return Err(format!(
            "parsing time {}: extra text: {}",
            quote(v),
            quote(rest)
        ));
    }
    Ok(())
}

/// The first malformed MicroTime field of `obj`, as a decoding error message.
pub(crate) fn check_micro_times(group: &str, plural: &str, obj: &Value) -> Result<(), String> {
    for p in micro_time_fields(group, plural) {
        if let Some(t) = obj.pointer(p).and_then(Value::as_str) {
            parse_micro_time(t)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Names

const DNS1123_SUBDOMAIN: &str = r"a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const QUALIFIED_NAME: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// apimachinery's `IsDNS1123Subdomain`: the problems, empty when valid.
pub(crate) fn dns1123_subdomain(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 253 {
        errs.push("must be no more than 253 characters".to_string());
    }
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    if !v.split('.').all(label_ok) {
        errs.push(DNS1123_SUBDOMAIN.to_string());
    }
    errs
}

/// apimachinery's `IsQualifiedName` (`[prefix/]name`): the problems, empty when valid.
pub(crate) fn qualified_name(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = v.split('/').collect();
    let name = match parts.as_slice() {
        [n] => *n,
        [prefix, n] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                for m in dns1123_subdomain(prefix) {
                    errs.push(format!("prefix part {m}"));
                }
            }
            *n
        }
        _ => {
            return vec![format!(
                "a valid label key {QUALIFIED_NAME} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 bytes".to_string());
    }
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if !ok {
        errs.push(format!("name part {QUALIFIED_NAME}"));
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// events.k8s.io/v1 Event

fn text<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// An `ObjectReference` as a field error prints it (Go's JSON of the internal type).
fn reference(v: Option<&Value>) -> String {
    let Some(r) = v.filter(|r| r.is_object()) else {
        return "null".into();
    };
    let fields: Vec<String> = [
        ("Kind", "kind"),
        ("Namespace", "namespace"),
        ("Name", "name"),
        ("UID", "uid"),
        ("APIVersion", "apiVersion"),
        ("ResourceVersion", "resourceVersion"),
        ("FieldPath", "fieldPath"),
    ]
    .iter()
    .map(|(go, js)| format!("{}:{}", quote(go), quote(text(r, js))))
    .collect();
    format!("{{{}}}", fields.join(","))
}

fn source(v: Option<&Value>) -> String {
    let r = v.cloned().unwrap_or(json!({}));
    format!(
        "{{\"Component\":{},\"Host\":{}}}",
        quote(text(&r, "component")),
        quote(text(&r, "host"))
    )
}

/// Rules of the real server for an events.k8s.io/v1 Event (`ValidateEventCreate`/
/// `ValidateEventUpdate`): paths name the core/v1 fields (`message` for `note`,
/// `involvedObject` for `regarding`, ...) because the real server validates the internal type.
pub(crate) fn validate_event(ev: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    let ns = ev
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let regarding_ns = ev
        .pointer("/regarding/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let event_time = text(ev, "eventTime");
    // legacy rules, every version
    if event_time.is_empty() {
        let bad = if regarding_ns.is_empty() {
            !ns.is_empty() && ns != "default"
        } else {
            ns != regarding_ns
        };
        if bad {
            errs.push(Cause::invalid(
                "involvedObject.namespace",
                &quote(regarding_ns),
                "does not match event.namespace",
            ));
        }
    } else {
        if regarding_ns.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(Cause::invalid(
                "involvedObject.namespace",
                "\"\"",
                "does not match event.namespace",
            ));
        }
        let controller = text(ev, "reportingController");
        if controller.is_empty() {
            errs.push(Cause::required("reportingController"));
        }
        for m in qualified_name(controller) {
            errs.push(Cause::invalid(
                "reportingController",
                &quote(controller),
                &m,
            ));
        }
        for (field, limit) in [("reportingInstance", 128), ("action", 128), ("reason", 128)] {
            let v = text(ev, field);
            if v.is_empty() {
                errs.push(Cause::required(field));
            }
            if v.len() > limit {
                errs.push(Cause::invalid(
                    field,
                    "\"\"",
                    &format!("can have at most {limit} characters"),
                ));
            }
        }
        if text(ev, "note").len() > 1024 {
            errs.push(Cause::invalid(
                "message",
                "\"\"",
                "can have at most 1024 characters",
            ));
        }
    }
    // strict rules of events.k8s.io/v1
    if old.is_none() {
        let name = ev
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        for m in dns1123_subdomain(name) {
            errs.push(Cause::invalid("metadata.name", &quote(name), &m));
        }
    }
    let series = ev.get("series").filter(|s| s.is_object());
    if let Some(series) = series
        && old.is_none_or(|o| o.get("series") != ev.get("series"))
    {
        if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
            errs.push(Cause::invalid(
                "series.count",
                "\"\"",
                "should be at least 2",
            ));
        }
        if text(series, "lastObservedTime").is_empty() {
            errs.push(Cause::required("series.lastObservedTime"));
        }
    }
    let Some(old) = old else {
        if event_time.is_empty() {
            errs.push(Cause::required("eventTime"));
        }
        let ty = text(ev, "type");
        if ty != "Normal" && ty != "Warning" {
            errs.push(Cause::invalid(
                "type",
                "\"\"",
                &format!("has invalid value: {ty}"),
            ));
        }
        for (field, js) in [
            ("firstTimestamp", "deprecatedFirstTimestamp"),
            ("lastTimestamp", "deprecatedLastTimestamp"),
        ] {
            if !text(ev, js).is_empty() {
                errs.push(Cause::invalid(field, "\"\"", "needs to be unset"));
            }
        }
        if ev
            .get("deprecatedCount")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            != 0
        {
            errs.push(Cause::invalid("count", "\"\"", "needs to be unset"));
        }
        if let Some(src) = ev.get("deprecatedSource")
            && (!text(src, "component").is_empty() || !text(src, "host").is_empty())
        {
            errs.push(Cause::invalid("source", "\"\"", "needs to be unset"));
        }
        return errs;
    };
    // immutable fields, in the real server's order (it checks `reason` twice)
    let immutable = |errs: &mut Vec<Cause>, field: &str, changed: bool, shown: String| {
        if changed {
            errs.push(Cause::invalid(field, &shown, "field is immutable"));
        }
    };
    let str_changed = |k: &str| text(ev, k) != text(old, k);
    let ref_changed = |k: &str| {
        reference(ev.get(k).filter(|r| r.is_object()))
            != reference(old.get(k).filter(|r| r.is_object()))
    };
    let time_shown = |k: &str| match text(ev, k) {
        "" => "null".to_string(),
        t => quote(t),
    };
    let count = |v: &Value| {
        v.get("deprecatedCount")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let src_changed = source(ev.get("deprecatedSource")) != source(old.get("deprecatedSource"));
    immutable(
        &mut errs,
        "involvedObject",
        ref_changed("regarding"),
        reference(ev.get("regarding")),
    );
    immutable(
        &mut errs,
        "reason",
        str_changed("reason"),
        quote(text(ev, "reason")),
    );
    immutable(
        &mut errs,
        "message",
        str_changed("note"),
        quote(text(ev, "note")),
    );
    immutable(
        &mut errs,
        "source",
        src_changed,
        source(ev.get("deprecatedSource")),
    );
    immutable(
        &mut errs,
        "firstTimestamp",
        str_changed("deprecatedFirstTimestamp"),
        time_shown("deprecatedFirstTimestamp"),
    );
    immutable(
        &mut errs,
        "lastTimestamp",
        str_changed("deprecatedLastTimestamp"),
        time_shown("deprecatedLastTimestamp"),
    );
    immutable(
        &mut errs,
        "count",
        count(ev) != count(old),
        count(ev).to_string(),
    );
    immutable(
        &mut errs,
        "reason",
        str_changed("reason"),
        quote(text(ev, "reason")),
    );
    immutable(
        &mut errs,
        "type",
        str_changed("type"),
        quote(text(ev, "type")),
    );
    immutable(
        &mut errs,
        "eventTime",
        str_changed("eventTime"),
        time_shown("eventTime"),
    );
    immutable(
        &mut errs,
        "action",
        str_changed("action"),
        quote(text(ev, "action")),
    );
    immutable(
        &mut errs,
        "related",
        ref_changed("related"),
        reference(ev.get("related")),
    );
    for k in ["reportingController", "reportingInstance"] {
        immutable(&mut errs, k, str_changed(k), quote(text(ev, k)));
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// Lease, TokenRequest

/// `ValidateLeaseSpec`: the duration must be positive and the transitions not negative.
pub(crate) fn validate_lease(lease: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    if let Some(d) = lease
        .pointer("/spec/leaseDurationSeconds")
        .and_then(Value::as_i64)
        && d <= 0
    {
        errs.push(Cause::invalid(
            "spec.leaseDurationSeconds",
            &d.to_string(),
            "must be greater than 0",
        ));
    }
    if let Some(t) = lease
        .pointer("/spec/leaseTransitions")
        .and_then(Value::as_i64)
        && t < 0
    {
        errs.push(Cause::invalid(
            "spec.leaseTransitions",
            &t.to_string(),
            "must be greater than or equal to 0",
        ));
    }
    errs
}

/// `ValidateTokenRequest`: the requested lifetime is at least 10 minutes and at most 2^32 s.
pub(crate) fn validate_token_request(body: &Value) -> Result<(), ApiError> {
    let Some(secs) = body
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
    else {
        return Ok(());
    };
    let why = if secs < 600 {
        "may not specify a duration less than 10 minutes"
    } else if secs > 1 << 32 {
        "may not specify a duration larger than 2^32 seconds"
    } else {
        return Ok(());
    };
    Err(ApiError::invalid_causes(
        "authentication.k8s.io",
        "TokenRequest",
        "",
        &[Cause::invalid(
            "spec.expirationSeconds",
            &secs.to_string(),
            why,
        )],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_time_like_go() {
        assert!(parse_micro_time("2024-01-01T00:00:00.000000Z").is_ok());
        assert!(parse_micro_time("2024-01-01T00:00:00.123456+02:00").is_ok());
        let e = |v: &str| parse_micro_time(v).unwrap_err();
        assert_eq!(
            e("2024-01-01T00:00:00Z"),
            r#"parsing time "2024-01-01T00:00:00Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse "Z" as ".000000""#
        );
        assert!(e("2024-01-01T00:00:00.123Z").ends_with(r#"cannot parse ".123Z" as ".000000""#));
        assert!(e("2024-01-01T00:00:00.1234567Z").ends_with(r#"cannot parse "7Z" as "Z07:00""#));
        assert!(e("").ends_with(r#"cannot parse "" as "2006""#));
        assert!(e("garbage").ends_with(r#"cannot parse "garbage" as "2006""#));
        assert!(e("2024-01-01T00:00:00.000000Zx").ends_with(r#": extra text: "x""#));
    }

    #[test]
    fn names() {
        assert!(qualified_name("secretsync").is_empty());
        assert!(qualified_name("secretsync.io/controller").is_empty());
        assert_eq!(qualified_name("").len(), 2);
        assert_eq!(
            qualified_name(&"c".repeat(64)),
            vec!["name part must be no more than 63 bytes"]
        );
        assert!(qualified_name("a/b/c")[0].starts_with("a valid label key must consist"));
        assert!(
            qualified_name("Bad_Prefix.io/x")[0].starts_with("prefix part a lowercase RFC 1123")
        );
        assert!(dns1123_subdomain("a.b-c.d").is_empty());
        assert_eq!(dns1123_subdomain("Bad_Name").len(), 1);
        assert_eq!(dns1123_subdomain("a..b").len(), 1);
    }

    fn event() -> Value {
        json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e1", "namespace": "ns"},
            "eventTime": "2024-01-01T00:00:00.000000Z",
            "reportingController": "secretsync", "reportingInstance": "secretsync-abc",
            "action": "Sync", "reason": "Synced", "type": "Normal", "note": "hello",
            "regarding": {"apiVersion": "v1", "kind": "Secret", "name": "s", "namespace": "ns"},
        })
    }

    fn errors(ev: &Value, old: Option<&Value>) -> Vec<String> {
        validate_event(ev, old)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn event_rules() {
        assert!(errors(&event(), None).is_empty());
        let mut e = event();
        e["note"] = json!("é".repeat(513));
        e["reason"] = json!(null);
        e["action"] = json!("a".repeat(129));
        assert_eq!(
            errors(&e, None),
            vec![
                "action: Invalid value: \"\": can have at most 128 characters",
                "reason: Required value",
                "message: Invalid value: \"\": can have at most 1024 characters",
            ]
        );
        let mut e = event();
        e.as_object_mut().unwrap().remove("regarding");
        e.as_object_mut().unwrap().remove("eventTime");
        e["series"] = json!({"count": 1});
        e["deprecatedCount"] = json!(2);
        assert_eq!(
            errors(&e, None),
            vec![
                "involvedObject.namespace: Invalid value: \"\": does not match event.namespace",
                "series.count: Invalid value: \"\": should be at least 2",
                "series.lastObservedTime: Required value",
                "eventTime: Required value",
                "count: Invalid value: \"\": needs to be unset",
            ]
        );
        // updates: only the series may change
        let old = event();
        let mut e = event();
        e["series"] = json!({"count": 2, "lastObservedTime": "2024-01-01T00:00:01.000000Z"});
        assert!(errors(&e, Some(&old)).is_empty());
        e["reason"] = json!("Other");
        e["regarding"]["name"] = json!("t");
        assert_eq!(
            errors(&e, Some(&old)),
            vec![
                "involvedObject: Invalid value: {\"Kind\":\"Secret\",\"Namespace\":\"ns\",\"Name\":\"t\",\"UID\":\"\",\"APIVersion\":\"v1\",\"ResourceVersion\":\"\",\"FieldPath\":\"\"}: field is immutable",
                "reason: Invalid value: \"Other\": field is immutable",
                "reason: Invalid value: \"Other\": field is immutable",
            ]
        );
    }

    #[test]
    fn lease_and_token_rules() {
        let l = json!({"spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}});
        assert_eq!(validate_lease(&l).len(), 2);
        assert!(validate_lease(&json!({"spec": {"leaseDurationSeconds": 15}})).is_empty());
        let e = validate_token_request(&json!({"spec": {"expirationSeconds": 60}})).unwrap_err();
        assert_eq!(
            e.message,
            "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
        );
        assert!(validate_token_request(&json!({"spec": {"expirationSeconds": 600}})).is_ok());
    }
}
