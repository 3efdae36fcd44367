//! Conformance: each rule runs the same test code against the emulator and, when
//! `KUBEBUILDER_ASSETS` names envtest assets, against a real control plane (etcd, kube-apiserver
//! and kube-controller-manager, one per test binary), and asserts the same observable outcome on
//! both: status code, reason, message, causes, warnings and stored objects.
//!
//! The real control plane is shared by the tests of this binary, which run in parallel: every test
//! uses its own namespace, and its own CustomResourceDefinition when it needs one.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Namespace, ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent};
use kube::client::Body;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::{Value, json};
use testkit::{Emulator, EmulatorOptions};

// ---------------------------------------------------------------------------------------------
// Backends

/// One API server under test.
struct Backend {
    name: &'static str,
    client: Client,
    /// Keeps the emulator serving.
    _emulator: Option<Emulator>,
}

/// What a rule gets: a client of one backend and the test's namespace (already created there).
#[derive(Clone)]
struct Target {
    client: Client,
    ns: String,
    backend: &'static str,
}

/// The emulator (always) and the real control plane (feature `envtest`, when `KUBEBUILDER_ASSETS`
/// is set).
async fn backends() -> Vec<Backend> {
    let emu = Emulator::start(EmulatorOptions::default())
        .await
        .expect("start the emulator");
    let kc = Kubeconfig::from_yaml(&emu.kubeconfig_yaml(None)).expect("emulator kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("emulator config");
    #[cfg_attr(not(feature = "envtest"), allow(unused_mut))]
    let mut out = vec![Backend {
        name: "emulator",
        client: Client::try_from(cfg).expect("emulator client"),
        _emulator: Some(emu),
    }];
    #[cfg(feature = "envtest")]
    match testkit::envtest::shared().await {
        Ok(Some(cp)) => out.push(Backend {
            name: "real",
            client: cp.client().await.expect("control plane client"),
            _emulator: None,
        }),
        Ok(None) => {}
        Err(e) => panic!("the envtest control plane did not start: {e:#}"),
    }
    out
}

/// Runs `rule` on every backend, in namespace `ns`, and fails naming each backend that failed.
async fn conform<F, Fut>(ns: &str, rule: F)
where
    F: Fn(Target) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut failures = Vec::new();
    for b in backends().await {
        let t = Target {
            client: b.client.clone(),
            ns: ns.to_string(),
            backend: b.name,
        };
        let res = async {
            let r = req(
                &t.client,
                "POST",
                "/api/v1/namespaces",
                JSON,
                Some(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})),
            )
            .await?;
            ensure!(
                r.code == 201 || r.code == 409,
                "creating namespace {ns}: {}",
                r.body
            );
            rule(t.clone()).await
        }
        .await;
        if let Err(e) = res {
            failures.push(format!("[{}] {e:#}", b.name));
        }
    }
    assert!(
        failures.is_empty(),
        "rule failed on {} backend(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Raw requests

const JSON: &str = "application/json";
const MERGE: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
const APPLY: &str = "application/apply-patch+yaml";

/// A raw answer: status code, `Warning` header texts, JSON body.
struct Resp {
    code: u16,
    warnings: Vec<String>,
    body: Value,
}

async fn req(
    c: &Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Option<Value>,
) -> anyhow::Result<Resp> {
    let mut b = http::Request::builder()
        .method(method)
        .uri(path)
        .header("accept", JSON);
    if !content_type.is_empty() {
        b = b.header("content-type", content_type);
    }
    let bytes = body.map(|v| v.to_string().into_bytes()).unwrap_or_default();
    let resp = c.send(b.body(Body::from(bytes))?).await?;
    let code = resp.status().as_u16();
    let warnings = resp
        .headers()
        .get_all("warning")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.strip_prefix("299 - "))
        .filter_map(|q| serde_json::from_str::<String>(q).ok())
        .collect();
    let raw = resp.into_body().collect_bytes().await?;
    let body = serde_json::from_slice(&raw)
        .unwrap_or_else(|_| json!(String::from_utf8_lossy(&raw).to_string()));
    Ok(Resp {
        code,
        warnings,
        body,
    })
}

impl Resp {
    /// A success with `code`; the object.
    fn ok(&self, code: u16) -> anyhow::Result<&Value> {
        ensure!(
            self.code == code,
            "expected {code}, got {}: {}",
            self.code,
            self.body
        );
        Ok(&self.body)
    }

    /// A `Status` failure with this code, reason (`""`: none) and message.
    fn failure(&self, code: u16, reason: &str, message: &str) -> anyhow::Result<()> {
        self.failure_with(code, reason, |m| m == message)
            .with_context(|| format!("expected message {message:?}"))
    }

    fn failure_with(
        &self,
        code: u16,
        reason: &str,
        message: impl Fn(&str) -> bool,
    ) -> anyhow::Result<()> {
        let b = &self.body;
        ensure!(
            self.code == code && b["kind"] == "Status" && b["code"] == code,
            "expected a {code} Status, got {}: {b}",
            self.code
        );
        ensure!(
            b["reason"].as_str().unwrap_or("") == reason,
            "expected reason {reason:?}: {b}"
        );
        let m = b["message"].as_str().unwrap_or("");
        ensure!(message(m), "unexpected message {m:?}");
        Ok(())
    }

    /// The causes as `(reason, field, message)`, sorted (the real order of several causes can
    /// depend on Go map order).
    fn causes(&self) -> Vec<(String, String, String)> {
        let mut v: Vec<(String, String, String)> = self.body["details"]["causes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| {
                        let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
                        (s("reason"), s("field"), s("message"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// 422 Invalid for `Kind "name"` with exactly these causes `(reason, field, message)`.
    fn invalid(
        &self,
        qualified_kind: &str,
        name: &str,
        causes: &[(&str, &str, &str)],
    ) -> anyhow::Result<()> {
        let prefix = format!("{qualified_kind} \"{name}\" is invalid: ");
        self.failure_with(422, "Invalid", |m| m.starts_with(&prefix))?;
        let mut want: Vec<(String, String, String)> = causes
            .iter()
            .map(|(r, f, m)| (r.to_string(), f.to_string(), m.to_string()))
            .collect();
        want.sort();
        ensure!(
            self.causes() == want,
            "causes {:?}, expected {want:?}",
            self.causes()
        );
        if let [(_, f, m)] = causes {
            let full = format!("{prefix}{f}: {m}");
            ensure!(
                self.body["message"] == full.as_str(),
                "message {}, expected {full:?}",
                self.body["message"]
            );
        }
        Ok(())
    }

    /// The warnings, sorted.
    fn sorted_warnings(&self) -> Vec<String> {
        let mut w = self.warnings.clone();
        w.sort();
        w
    }
}

fn unknown_field_warnings(paths: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = paths
        .iter()
        .map(|p| format!("unknown field \"{p}\""))
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// Custom resources

const GROUP: &str = "conformance.testkit.io";

/// A namespaced CRD `{plural}.conformance.testkit.io` (version v1, status subresource).
fn crd(plural: &str, kind: &str) -> Value {
    let schema: Value = serde_yaml_ng::from_str(
        r#"
type: object
properties:
  spec:
    type: object
    properties:
      size: {type: integer, minimum: 1}
      name: {type: string, maxLength: 8, pattern: '^[a-z]+$'}
      nname: {type: string, nullable: true}
      color: {type: string, enum: [red, blue]}
      interval: {type: string, pattern: '^(0|([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+)$'}
      storeRef:
        type: object
        required: [name]
        properties: {name: {type: string}, kind: {type: string}}
      labels: {type: object, additionalProperties: {type: string}}
      free: {type: object, x-kubernetes-preserve-unknown-fields: true}
      list: {type: array, maxItems: 2, items: {type: object, properties: {a: {type: string}}}}
      port: {x-kubernetes-int-or-string: true}
      template:
        type: object
        x-kubernetes-embedded-resource: true
        properties:
          spec: {type: object, properties: {x: {type: string}}}
  status:
    type: object
    properties:
      phase: {type: string, maxLength: 8}
      observed: {type: integer}
"#,
    )
    .expect("schema");
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{GROUP}")},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind,
                      "listKind": format!("{kind}List")},
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "subresources": {"status": {}},
                          "schema": {"openAPIV3Schema": schema}}],
        },
    })
}

/// Creates the CRD and waits until its resource is served; returns the collection path in `ns`.
async fn install_crd(t: &Target, plural: &str, kind: &str) -> anyhow::Result<String> {
    let r = req(
        &t.client,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        JSON,
        Some(crd(plural, kind)),
    )
    .await?;
    ensure!(
        r.code == 201 || r.code == 409,
        "creating the CRD: {}",
        r.body
    );
    let path = format!("/apis/{GROUP}/v1/namespaces/{}/{plural}", t.ns);
    let start = Instant::now();
    loop {
        let r = req(&t.client, "GET", &path, "", None).await?;
        if r.code == 200 {
            return Ok(path);
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("{plural} not served after 60 s: {}", r.body);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn cr(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": format!("{GROUP}/v1"), "kind": kind, "metadata": {"name": name},
           "spec": spec})
}

// ---------------------------------------------------------------------------------------------
// Rule 1: events.k8s.io/v1 Event validation

fn event(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "eventTime": "2024-01-01T00:00:00.000000Z",
        "reportingController": "secretsync", "reportingInstance": "secretsync-abc",
        "action": "Sync", "reason": "Synced", "type": "Normal", "note": "hello",
        "regarding": {"apiVersion": "v1", "kind": "Secret", "name": "s", "namespace": ns},
    })
}

/// `event` with `changes` applied (a `null` removes the field).
fn event_with(ns: &str, name: &str, changes: Value) -> Value {
    let mut e = event(ns, name);
    for (k, v) in changes.as_object().expect("object") {
        match v {
            Value::Null => {
                e.as_object_mut().expect("object").remove(k);
            }
            v => e[k] = v.clone(),
        }
    }
    e
}

/// Expected causes: `(reason, field, message)`.
type Causes = Vec<(&'static str, &'static str, String)>;

const QUALIFIED: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

#[tokio::test]
async fn event_note_longer_than_1024_bytes_is_invalid() {
    conform("conf-event-note", |t| async move {
        let path = format!("/apis/events.k8s.io/v1/namespaces/{}/events", t.ns);
        let ok = event_with(&t.ns, "at-limit", json!({"note": "x".repeat(1024)}));
        req(&t.client, "POST", &path, JSON, Some(ok))
            .await?
            .ok(201)?;
        let cause = (
            "FieldValueInvalid",
            "message",
            "Invalid value: \"\": can have at most 1024 characters",
        );
        for (name, note) in [
            ("over-limit", "x".repeat(1025)),
            // bytes, not characters: 600 × 'é' is 1200 bytes
            ("multibyte", "é".repeat(600)),
        ] {
            let e = event_with(&t.ns, name, json!({ "note": note }));
            req(&t.client, "POST", &path, JSON, Some(e))
                .await?
                .invalid("Event", name, &[cause])
                .with_context(|| name.to_string())?;
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn event_fields_a_recorder_could_get_wrong_are_validated() {
    conform("conf-event-fields", |t| async move {
        let path = format!("/apis/events.k8s.io/v1/namespaces/{}/events", t.ns);
        let long = "x".repeat(129);
        let cases: Vec<(&str, Value, Causes)> = vec![
            (
                "reason-long",
                json!({"reason": long}),
                vec![(
                    "FieldValueInvalid",
                    "reason",
                    "Invalid value: \"\": can have at most 128 characters".into(),
                )],
            ),
            (
                "action-long",
                json!({"action": long}),
                vec![(
                    "FieldValueInvalid",
                    "action",
                    "Invalid value: \"\": can have at most 128 characters".into(),
                )],
            ),
            (
                "instance-long",
                json!({"reportingInstance": long}),
                vec![(
                    "FieldValueInvalid",
                    "reportingInstance",
                    "Invalid value: \"\": can have at most 128 characters".into(),
                )],
            ),
            (
                "no-reason",
                json!({"reason": null}),
                vec![("FieldValueRequired", "reason", "Required value".into())],
            ),
            (
                "no-action",
                json!({"action": null}),
                vec![("FieldValueRequired", "action", "Required value".into())],
            ),
            (
                "no-instance",
                json!({"reportingInstance": null}),
                vec![(
                    "FieldValueRequired",
                    "reportingInstance",
                    "Required value".into(),
                )],
            ),
            (
                "no-controller",
                json!({"reportingController": null}),
                vec![
                    (
                        "FieldValueRequired",
                        "reportingController",
                        "Required value".into(),
                    ),
                    (
                        "FieldValueInvalid",
                        "reportingController",
                        "Invalid value: \"\": name part must be non-empty".into(),
                    ),
                    (
                        "FieldValueInvalid",
                        "reportingController",
                        format!("Invalid value: \"\": {QUALIFIED}"),
                    ),
                ],
            ),
            (
                "bad-controller",
                json!({"reportingController": "-bad"}),
                vec![(
                    "FieldValueInvalid",
                    "reportingController",
                    format!("Invalid value: \"-bad\": {QUALIFIED}"),
                )],
            ),
            (
                "no-event-time",
                json!({"eventTime": null}),
                vec![("FieldValueRequired", "eventTime", "Required value".into())],
            ),
            (
                "no-regarding",
                json!({"regarding": null}),
                vec![(
                    "FieldValueInvalid",
                    "involvedObject.namespace",
                    "Invalid value: \"\": does not match event.namespace".into(),
                )],
            ),
            (
                "bad-type",
                json!({"type": "Bad"}),
                vec![(
                    "FieldValueInvalid",
                    "type",
                    "Invalid value: \"\": has invalid value: Bad".into(),
                )],
            ),
            (
                "series-of-one",
                json!({"series": {"count": 1, "lastObservedTime": "2024-01-01T00:00:00.000000Z"}}),
                vec![(
                    "FieldValueInvalid",
                    "series.count",
                    "Invalid value: \"\": should be at least 2".into(),
                )],
            ),
            (
                "deprecated-fields",
                json!({"deprecatedCount": 2, "deprecatedSource": {"component": "x"}}),
                vec![
                    (
                        "FieldValueInvalid",
                        "count",
                        "Invalid value: \"\": needs to be unset".into(),
                    ),
                    (
                        "FieldValueInvalid",
                        "source",
                        "Invalid value: \"\": needs to be unset".into(),
                    ),
                ],
            ),
        ];
        for (name, changes, causes) in cases {
            let e = event_with(&t.ns, name, changes);
            let causes: Vec<(&str, &str, &str)> =
                causes.iter().map(|(r, f, m)| (*r, *f, m.as_str())).collect();
            req(&t.client, "POST", &path, JSON, Some(e))
                .await?
                .invalid("Event", name, &causes)
                .with_context(|| name.to_string())?;
        }
        // several errors: one message listing them in the real server's order
        let e = event_with(
            &t.ns,
            "many",
            json!({"note": "x".repeat(1025), "reason": null, "action": long}),
        );
        req(&t.client, "POST", &path, JSON, Some(e)).await?.failure(
            422,
            "Invalid",
            "Event \"many\" is invalid: [action: Invalid value: \"\": can have at most 128 characters, \
             reason: Required value, message: Invalid value: \"\": can have at most 1024 characters]",
        )?;
        // what is accepted: a prefixed controller name, a regarding object in another namespace,
        // no regarding object at all in `default`
        let ok = event_with(
            &t.ns,
            "prefixed",
            json!({"reportingController": "secretsync.io/controller"}),
        );
        req(&t.client, "POST", &path, JSON, Some(ok)).await?.ok(201)?;
        let mut other_ns = event(&t.ns, "elsewhere");
        other_ns["regarding"]["namespace"] = json!("other");
        req(&t.client, "POST", &path, JSON, Some(other_ns))
            .await?
            .ok(201)?;
        let mut cluster = event("default", &format!("{}-cluster", t.ns));
        cluster["regarding"] = json!({"apiVersion": "v1", "kind": "Namespace", "name": t.ns});
        req(
            &t.client,
            "POST",
            "/apis/events.k8s.io/v1/namespaces/default/events",
            JSON,
            Some(cluster),
        )
        .await?
        .ok(201)?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn event_updates_may_only_change_the_series() {
    conform("conf-event-update", |t| async move {
        let path = format!("/apis/events.k8s.io/v1/namespaces/{}/events", t.ns);
        req(&t.client, "POST", &path, JSON, Some(event(&t.ns, "e1")))
            .await?
            .ok(201)?;
        let one = format!("{path}/e1");
        let series =
            json!({"series": {"count": 2, "lastObservedTime": "2024-01-01T00:00:01.000000Z"}});
        let o = req(&t.client, "PATCH", &one, MERGE, Some(series)).await?;
        ensure!(o.ok(200)?["series"]["count"] == 2);
        let cases = [
            (json!({"note": "other"}), "message", "\"other\""),
            (json!({"reason": "Other"}), "reason", "\"Other\""),
            (json!({"action": "Other"}), "action", "\"Other\""),
            (json!({"type": "Warning"}), "type", "\"Warning\""),
            (
                json!({"eventTime": "2024-01-01T00:00:05.000000Z"}),
                "eventTime",
                "\"2024-01-01T00:00:05.000000Z\"",
            ),
            (
                json!({"reportingController": "other"}),
                "reportingController",
                "\"other\"",
            ),
            (
                json!({"regarding": {"name": "t"}}),
                "involvedObject",
                "{\"Kind\":\"Secret\",\"Namespace\":\"NS\",\"Name\":\"t\",\"UID\":\"\",\"APIVersion\":\"v1\",\"ResourceVersion\":\"\",\"FieldPath\":\"\"}",
            ),
        ];
        for (patch, field, value) in cases {
            let value = value.replace("NS", &t.ns);
            let msg = format!("Invalid value: {value}: field is immutable");
            let r = req(&t.client, "PATCH", &one, MERGE, Some(patch)).await?;
            let want = [("FieldValueInvalid", field, msg.as_str())];
            // the real server checks `reason` twice, so it reports it twice
            let twice = [want[0], want[0]];
            r.invalid("Event", "e1", if field == "reason" { &twice } else { &want })
                .with_context(|| field.to_string())?;
            if field == "reason" {
                ensure!(
                    r.body["message"] == format!("Event \"e1\" is invalid: reason: {msg}"),
                    "duplicates listed once in the message: {}",
                    r.body["message"]
                );
            }
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn micro_time_fields_need_six_fraction_digits() {
    conform("conf-micro-time", |t| async move {
        let path = format!("/apis/events.k8s.io/v1/namespaces/{}/events", t.ns);
        let layout = "\"2006-01-02T15:04:05.000000Z07:00\"";
        for (name, time, rest, elem) in [
            ("no-fraction", "2024-01-01T00:00:00Z", "Z", ".000000"),
            ("millis", "2024-01-01T00:00:00.123Z", ".123Z", ".000000"),
            ("nanos", "2024-01-01T00:00:00.1234567Z", "7Z", "Z07:00"),
            ("garbage", "garbage", "garbage", "2006"),
        ] {
            let e = event_with(&t.ns, name, json!({ "eventTime": time }));
            let msg = format!(
                "Event in version \"v1\" cannot be handled as a Event: parsing time \"{time}\" as {layout}: cannot parse \"{rest}\" as \"{elem}\""
            );
            req(&t.client, "POST", &path, JSON, Some(e))
                .await?
                .failure(400, "BadRequest", &msg)
                .with_context(|| name.to_string())?;
        }
        let e = event_with(
            &t.ns,
            "offset",
            json!({"eventTime": "2024-01-01T00:00:00.123456+02:00"}),
        );
        req(&t.client, "POST", &path, JSON, Some(e)).await?.ok(201)?;
        // Leases: on create 400, in a patch 422 on the field `patch`
        let leases = format!("/apis/coordination.k8s.io/v1/namespaces/{}/leases", t.ns);
        let lease = |name: &str, renew: &str| {
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                   "metadata": {"name": name}, "spec": {"holderIdentity": "a", "renewTime": renew}})
        };
        req(
            &t.client,
            "POST",
            &leases,
            JSON,
            Some(lease("l1", "2024-01-01T00:00:00Z")),
        )
        .await?
        .failure(
            400,
            "BadRequest",
            &format!(
                "Lease in version \"v1\" cannot be handled as a Lease: parsing time \"2024-01-01T00:00:00Z\" as {layout}: cannot parse \"Z\" as \".000000\""
            ),
        )?;
        req(
            &t.client,
            "POST",
            &leases,
            JSON,
            Some(lease("l1", "2024-01-01T00:00:00.000000Z")),
        )
        .await?
        .ok(201)?;
        let r = req(
            &t.client,
            "PATCH",
            &format!("{leases}/l1"),
            MERGE,
            Some(json!({"spec": {"renewTime": "2024-01-01T00:00:10Z"}})),
        )
        .await?;
        r.failure_with(422, "Invalid", |m| {
            m.starts_with(" \"\" is invalid: patch: Invalid value: \"{")
                && m.ends_with(&format!(
                    "}}\": parsing time \"2024-01-01T00:00:10Z\" as {layout}: cannot parse \"Z\" as \".000000\""
                ))
        })?;
        ensure!(r.causes().len() == 1 && r.causes()[0].1 == "patch");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn kube_event_recorder_is_accepted_and_refused_alike() {
    conform("conf-recorder", |t| async move {
        let secrets: Api<Secret> = Api::namespaced(t.client.clone(), &t.ns);
        let s = secrets
            .create(
                &PostParams::default(),
                &Secret {
                    metadata: ObjectMeta {
                        name: Some("evt".into()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await?;
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Secret".into()),
            name: s.metadata.name.clone(),
            namespace: s.metadata.namespace.clone(),
            uid: s.metadata.uid.clone(),
            ..Default::default()
        };
        let recorder = Recorder::new(
            t.client.clone(),
            Reporter {
                controller: "secretsync".into(),
                instance: Some("secretsync-0".into()),
            },
        );
        let ev = |reason: &str, note: String| Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(note),
            action: "Sync".into(),
            secondary: None,
        };
        recorder
            .publish(&ev("Synced", "synced".into()), &reference)
            .await?;
        recorder
            .publish(&ev("Synced", "synced".into()), &reference)
            .await?;
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(t.client.clone(), &t.ns);
        let list = events.list(&ListParams::default()).await?;
        ensure!(list.items.len() == 1, "one event: {:?}", list.items);
        ensure!(list.items[0].series.as_ref().map(|s| s.count) == Some(2));
        // a new event (the recorder's cache key has no note): created, refused
        match recorder
            .publish(&ev("Failed", "x".repeat(1025)), &reference)
            .await
        {
            Err(kube::Error::Api(e)) => {
                ensure!(
                    e.code == 422 && e.reason == "Invalid",
                    "expected 422 Invalid: {e:?}"
                );
                ensure!(e.message.ends_with(
                    "is invalid: message: Invalid value: \"\": can have at most 1024 characters"
                ));
            }
            other => bail!("a note of 1025 bytes must be refused: {other:?}"),
        }
        Ok(())
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Rule 2: custom resources against their schema

#[tokio::test]
async fn apply_with_a_field_the_schema_does_not_declare_fails() {
    conform("conf-apply-undeclared", |t| async move {
        let kind = "ApplyWidget";
        let path = install_crd(&t, "applywidgets", kind).await?;
        let apply = |name: &str| format!("{path}/{name}?fieldManager=conformance&force=true");
        let typed = |name: &str, detail: &str| {
            format!(
                "failed to create typed patch object (/{name}; {GROUP}/v1, Kind={kind}): {detail}"
            )
        };
        let cases = [
            (
                json!({"size": 1, "storeRef": {"name": "x", "namespace": "y"}}),
                ".spec.storeRef.namespace: field not declared in schema",
            ),
            (
                json!({"size": "big"}),
                ".spec.size: expected numeric (int or float), got string",
            ),
            (
                json!({"list": [{"a": "1"}, {"b": 1}]}),
                ".spec.list[1].b: field not declared in schema",
            ),
            (
                json!({"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t", "foo": 1}}}),
                ".spec.template.metadata.foo: field not declared in schema",
            ),
        ];
        for (spec, detail) in cases {
            req(&t.client, "PATCH", &apply("w1"), APPLY, Some(cr(kind, "w1", spec)))
                .await?
                .failure(500, "", &typed("w1", detail))
                .with_context(|| detail.to_string())?;
        }
        let mut top = cr(kind, "w1", json!({"size": 1}));
        top["metadata"]["foo"] = json!(1);
        req(&t.client, "PATCH", &apply("w1"), APPLY, Some(top))
            .await?
            .failure(
                500,
                "",
                &typed("w1", ".metadata.foo: field not declared in schema"),
            )?;
        // `fieldValidation` changes nothing for apply
        req(
            &t.client,
            "PATCH",
            &format!("{}&fieldValidation=Ignore", apply("w1")),
            APPLY,
            Some(cr(kind, "w1", json!({"zzz": 1}))),
        )
        .await?
        .failure(
            500,
            "",
            &typed("w1", ".spec.zzz: field not declared in schema"),
        )?;
        // nothing was created
        req(&t.client, "GET", &format!("{path}/w1"), "", None)
            .await?
            .failure(
                404,
                "NotFound",
                &format!("applywidgets.{GROUP} \"w1\" not found"),
            )?;
        // undeclared fields in free-form places are fine
        let ok = cr(
            kind,
            "w1",
            json!({"size": 1, "free": {"any": {"thing": 1}}, "labels": {"a": "b"}, "port": "http",
                   "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t"},
                                "spec": {"x": "1"}}}),
        );
        let o = req(&t.client, "PATCH", &apply("w1"), APPLY, Some(ok)).await?;
        ensure!(o.ok(201)?["spec"]["free"]["any"]["thing"] == 1);
        // on the status subresource too, for status and for everything else
        let status = |status: Value, spec: Value| {
            json!({"apiVersion": format!("{GROUP}/v1"), "kind": kind, "metadata": {"name": "w1"},
                   "spec": spec, "status": status})
        };
        let status_path = format!("{path}/w1/status?fieldManager=conformance&force=true");
        req(
            &t.client,
            "PATCH",
            &status_path,
            APPLY,
            Some(status(json!({"phase": "x", "extra": 1}), json!({}))),
        )
        .await?
        .failure(
            500,
            "",
            &typed("w1", ".status.extra: field not declared in schema"),
        )?;
        req(
            &t.client,
            "PATCH",
            &status_path,
            APPLY,
            Some(status(json!({"phase": "x"}), json!({"zz": 1}))),
        )
        .await?
        .failure(
            500,
            "",
            &typed("w1", ".spec.zz: field not declared in schema"),
        )?;
        // the configuration's type must be the endpoint's
        let mut other = cr(kind, "w1", json!({}));
        other["apiVersion"] = json!(format!("{GROUP}/v2"));
        req(&t.client, "PATCH", &apply("w1"), APPLY, Some(other))
            .await?
            .failure(
                400,
                "BadRequest",
                &format!("invalid object type: {GROUP}/v2, Kind={kind}"),
            )?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn writes_prune_fields_the_schema_does_not_declare() {
    conform("conf-prune", |t| async move {
        let kind = "PruneWidget";
        let path = install_crd(&t, "prunewidgets", kind).await?;
        let body = json!({
            "apiVersion": format!("{GROUP}/v1"), "kind": kind, "top": 1,
            "metadata": {"name": "p1", "foo": 1, "labels": {"a": "b"}},
            "spec": {
                "size": 1, "x": 2, "name": null, "nname": null,
                "storeRef": {"name": "n", "namespace": "y"},
                "free": {"z": {"deep": 1}}, "labels": {"k": "v"},
                "list": [{"a": "1", "b": 2}], "port": 80,
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t", "foo": 1},
                             "spec": {"x": "1", "y": 2}, "other": 1},
            },
            "status": {"phase": "p", "q": 1},
        });
        let r = req(&t.client, "POST", &path, JSON, Some(body)).await?;
        let want_spec = json!({
            "size": 1, "nname": null, "storeRef": {"name": "n"}, "free": {"z": {"deep": 1}},
            "labels": {"k": "v"}, "list": [{"a": "1"}], "port": 80,
            "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t"},
                         "spec": {"x": "1"}},
        });
        let created = r.ok(201)?;
        ensure!(
            created["spec"] == want_spec,
            "pruned spec: {}",
            created["spec"]
        );
        ensure!(created.get("top").is_none() && created.get("status").is_none());
        ensure!(created["metadata"].get("foo").is_none());
        ensure!(created["metadata"]["labels"] == json!({"a": "b"}));
        ensure!(
            r.sorted_warnings()
                == unknown_field_warnings(&[
                    "metadata.foo",
                    "spec.list[0].b",
                    "spec.storeRef.namespace",
                    "spec.template.metadata.foo",
                    "spec.template.other",
                    "spec.template.spec.y",
                    "spec.x",
                    "status.q",
                    "top",
                ]),
            "warnings {:?}",
            r.warnings
        );
        let one = format!("{path}/p1");
        let stored = req(&t.client, "GET", &one, "", None).await?;
        ensure!(stored.ok(200)?["spec"] == want_spec);

        // update (PUT)
        let mut put = stored.body.clone();
        put["spec"]["putx"] = json!(1);
        let r = req(&t.client, "PUT", &one, JSON, Some(put)).await?;
        ensure!(r.ok(200)?["spec"].get("putx").is_none());
        ensure!(r.warnings == unknown_field_warnings(&["spec.putx"]));
        // merge patch
        let r = req(
            &t.client,
            "PATCH",
            &one,
            MERGE,
            Some(json!({"spec": {"y": 1, "size": 2}})),
        )
        .await?;
        ensure!(r.ok(200)?["spec"]["size"] == 2 && r.body["spec"].get("y").is_none());
        ensure!(r.warnings == unknown_field_warnings(&["spec.y"]));
        // JSON patch
        let r = req(
            &t.client,
            "PATCH",
            &one,
            JSON_PATCH,
            Some(json!([{"op": "add", "path": "/spec/j", "value": 1}])),
        )
        .await?;
        ensure!(r.ok(200)?["spec"].get("j").is_none());
        ensure!(r.warnings == unknown_field_warnings(&["spec.j"]));
        // the status subresource, pruned by the status schema
        let r = req(
            &t.client,
            "PATCH",
            &format!("{one}/status"),
            MERGE,
            Some(json!({"status": {"phase": "s", "q": 1}})),
        )
        .await?;
        ensure!(r.ok(200)?["status"] == json!({"phase": "s"}));
        ensure!(r.warnings == unknown_field_warnings(&["status.q"]));
        let stored = req(&t.client, "GET", &one, "", None).await?;
        ensure!(stored.ok(200)?["status"] == json!({"phase": "s"}));
        ensure!(stored.body["spec"].get("j").is_none() && stored.body["spec"]["size"] == 2);
        // fieldValidation=Ignore: pruned without warnings
        let r = req(
            &t.client,
            "POST",
            &format!("{path}?fieldValidation=Ignore"),
            JSON,
            Some(cr(kind, "p2", json!({"size": 1, "x": 2}))),
        )
        .await?;
        ensure!(r.ok(201)?["spec"] == json!({"size": 1}) && r.warnings.is_empty());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn strict_field_validation_refuses_undeclared_fields() {
    conform("conf-strict", |t| async move {
        let kind = "StrictWidget";
        let path = install_crd(&t, "strictwidgets", kind).await?;
        let mut body = cr(
            kind,
            "s1",
            json!({"size": 1, "x": 2, "storeRef": {"name": "n", "namespace": "y"}}),
        );
        body["metadata"]["foo"] = json!(1);
        body["top"] = json!(1);
        req(
            &t.client,
            "POST",
            &format!("{path}?fieldValidation=Strict"),
            JSON,
            Some(body),
        )
        .await?
        .failure(
            400,
            "BadRequest",
            &format!(
                "{kind} in version \"v1\" cannot be handled as a {kind}: strict decoding error: \
                 unknown field \"metadata.foo\", unknown field \"spec.storeRef.namespace\", \
                 unknown field \"spec.x\", unknown field \"top\""
            ),
        )?;
        let created = req(
            &t.client,
            "POST",
            &path,
            JSON,
            Some(cr(kind, "s1", json!({"size": 1}))),
        )
        .await?;
        let one = format!("{path}/s1");
        let mut put = created.ok(201)?.clone();
        put["spec"]["putx"] = json!(1);
        req(
            &t.client,
            "PUT",
            &format!("{one}?fieldValidation=Strict"),
            JSON,
            Some(put),
        )
        .await?
        .failure(
            400,
            "BadRequest",
            &format!(
                "{kind} in version \"v1\" cannot be handled as a {kind}: strict decoding error: unknown field \"spec.putx\""
            ),
        )?;
        let r = req(
            &t.client,
            "PATCH",
            &format!("{one}?fieldValidation=Strict"),
            MERGE,
            Some(json!({"spec": {"y": 1}})),
        )
        .await?;
        r.failure_with(422, "Invalid", |m| {
            m.starts_with(" \"\" is invalid: patch: Invalid value: \"{")
                && m.ends_with("}\": strict decoding error: unknown field \"spec.y\"")
        })?;
        ensure!(r.causes().len() == 1 && r.causes()[0].1 == "patch");
        // nothing changed
        let stored = req(&t.client, "GET", &one, "", None).await?;
        ensure!(stored.ok(200)?["spec"] == json!({"size": 1}));
        // an unknown option value
        req(
            &t.client,
            "POST",
            &format!("{path}?fieldValidation=Bogus"),
            JSON,
            Some(cr(kind, "s2", json!({}))),
        )
        .await?
        .invalid(
            "CreateOptions.meta.k8s.io",
            "",
            &[(
                "FieldValueNotSupported",
                "fieldValidation",
                "Unsupported value: \"Bogus\": supported values: \"\", \"Ignore\", \"Strict\", \"Warn\"",
            )],
        )?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn custom_resources_are_validated_against_their_schema() {
    conform("conf-openapi", |t| async move {
        let kind = "CheckedWidget";
        let path = install_crd(&t, "checkedwidgets", kind).await?;
        let qk = format!("{kind}.{GROUP}");
        let cases: Vec<(&str, Value, (&str, &str, String))> = vec![
            (
                "too-long",
                json!({"name": "abcdefghi"}),
                (
                    "FieldValueTooLong",
                    "spec.name",
                    "Too long: may not be more than 8 bytes".into(),
                ),
            ),
            (
                "pattern",
                json!({"name": "ABC"}),
                (
                    "FieldValueInvalid",
                    "spec.name",
                    "Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'".into(),
                ),
            ),
            (
                "duration",
                json!({"interval": "1x"}),
                (
                    "FieldValueInvalid",
                    "spec.interval",
                    "Invalid value: \"1x\": spec.interval in body should match '^(0|([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+)$'".into(),
                ),
            ),
            (
                "enum",
                json!({"color": "green"}),
                (
                    "FieldValueNotSupported",
                    "spec.color",
                    "Unsupported value: \"green\": supported values: \"red\", \"blue\"".into(),
                ),
            ),
            (
                "minimum",
                json!({"size": 0}),
                (
                    "FieldValueInvalid",
                    "spec.size",
                    "Invalid value: 0: spec.size in body should be greater than or equal to 1"
                        .into(),
                ),
            ),
            (
                "type",
                json!({"name": 3}),
                (
                    "FieldValueTypeInvalid",
                    "spec.name",
                    "Invalid value: \"integer\": spec.name in body must be of type string: \"integer\"".into(),
                ),
            ),
            (
                "int-or-string",
                json!({"port": true}),
                (
                    "FieldValueTypeInvalid",
                    "spec.port",
                    "Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\"".into(),
                ),
            ),
            (
                "required",
                json!({"storeRef": {"kind": "SecretStore"}}),
                (
                    "FieldValueRequired",
                    "spec.storeRef.name",
                    "Required value".into(),
                ),
            ),
            (
                "max-items",
                json!({"list": [{}, {}, {}]}),
                (
                    "FieldValueTooMany",
                    "spec.list",
                    "Too many: 3: must have at most 2 items".into(),
                ),
            ),
            (
                "additional",
                json!({"labels": {"a": 1}}),
                (
                    "FieldValueTypeInvalid",
                    "spec.labels.a",
                    "Invalid value: \"integer\": spec.labels.a in body must be of type string: \"integer\"".into(),
                ),
            ),
        ];
        for (name, spec, (reason, field, msg)) in cases {
            req(&t.client, "POST", &path, JSON, Some(cr(kind, name, spec)))
                .await?
                .invalid(&qk, name, &[(reason, field, &msg)])
                .with_context(|| name.to_string())?;
        }
        // an embedded resource needs apiVersion and kind
        req(
            &t.client,
            "POST",
            &path,
            JSON,
            Some(cr(kind, "embedded", json!({"template": {"spec": {"x": "1"}}}))),
        )
        .await?
        .invalid(
            &qk,
            "embedded",
            &[
                (
                    "FieldValueRequired",
                    "spec.template.apiVersion",
                    "Required value",
                ),
                ("FieldValueRequired", "spec.template.kind", "Required value"),
            ],
        )?;
        // valid values pass, status is validated through its subresource
        req(
            &t.client,
            "POST",
            &path,
            JSON,
            Some(cr(
                kind,
                "ok",
                json!({"size": 1, "name": "abc", "interval": "1h30m", "port": "http"}),
            )),
        )
        .await?
        .ok(201)?;
        req(
            &t.client,
            "PATCH",
            &format!("{path}/ok/status"),
            MERGE,
            Some(json!({"status": {"phase": "much-too-long"}})),
        )
        .await?
        .invalid(
            &qk,
            "ok",
            &[(
                "FieldValueTooLong",
                "status.phase",
                "Too long: may not be more than 8 bytes",
            )],
        )?;
        // apply keeps nulls (no pruning): a null where the schema does not allow one is invalid
        req(
            &t.client,
            "PATCH",
            &format!("{path}/ok?fieldManager=conformance&force=true"),
            APPLY,
            Some(cr(kind, "ok", json!({"size": 1, "name": null}))),
        )
        .await?
        .invalid(
            &qk,
            "ok",
            &[(
                "FieldValueTypeInvalid",
                "spec.name",
                "Invalid value: \"null\": spec.name in body must be of type string: \"null\"",
            )],
        )?;
        // ... a nullable one is kept
        let r = req(
            &t.client,
            "PATCH",
            &format!("{path}/ok?fieldManager=conformance&force=true"),
            APPLY,
            Some(cr(kind, "ok", json!({"size": 1, "nname": null}))),
        )
        .await?;
        ensure!(r.ok(200)?["spec"]["nname"].is_null() && r.body["spec"].get("nname").is_some());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn strategic_merge_patch_is_refused_for_custom_resources() {
    conform("conf-smp", |t| async move {
        let kind = "SmpWidget";
        let path = install_crd(&t, "smpwidgets", kind).await?;
        req(
            &t.client,
            "POST",
            &path,
            JSON,
            Some(cr(kind, "m1", json!({"size": 1}))),
        )
        .await?
        .ok(201)?;
        req(
            &t.client,
            "PATCH",
            &format!("{path}/m1"),
            "application/strategic-merge-patch+json",
            Some(json!({"spec": {"size": 2}})),
        )
        .await?
        .failure(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: \
             application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        )?;
        Ok(())
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Rule 3: the other requests secretsync's controller makes

#[tokio::test]
async fn server_side_apply_of_a_secret() {
    conform("conf-ssa-secret", |t| async move {
        let path = format!("/api/v1/namespaces/{}/secrets", t.ns);
        let apply = |mgr: &str, force: bool| {
            format!(
                "{path}/s1?fieldManager={mgr}{}",
                if force { "&force=true" } else { "" }
            )
        };
        let secret = |labels: Value, data: Value| {
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "s1", "labels": labels}, "type": "Opaque", "data": data})
        };
        let r = req(
            &t.client,
            "PATCH",
            &apply("secretsync", true),
            APPLY,
            Some(secret(json!({"app": "x"}), json!({"k": "dg=="}))),
        )
        .await?;
        let o = r.ok(201)?;
        ensure!(o["data"] == json!({"k": "dg=="}) && o["type"] == "Opaque");
        let mf = &o["metadata"]["managedFields"][0];
        ensure!(mf["manager"] == "secretsync" && mf["operation"] == "Apply");
        ensure!(
            mf["fieldsV1"]
                == json!({"f:data": {"f:k": {}}, "f:metadata": {"f:labels": {"f:app": {}}}, "f:type": {}})
        );
        // another manager: conflicts, worded like the real server
        req(
            &t.client,
            "PATCH",
            &apply("other", false),
            APPLY,
            Some(secret(json!({"app": "y"}), json!({"k": "eA=="}))),
        )
        .await?
        .failure(
            409,
            "Conflict",
            "Apply failed with 2 conflicts: conflicts with \"secretsync\":\n- .data.k\n- .metadata.labels.app",
        )?;
        req(
            &t.client,
            "PATCH",
            &apply("other", false),
            APPLY,
            Some(secret(json!({}), json!({"k": "eA=="}))),
        )
        .await?
        .failure(
            409,
            "Conflict",
            "Apply failed with 1 conflict: conflict with \"secretsync\": .data.k",
        )?;
        // a non-apply manager is named with its API version
        req(
            &t.client,
            "PATCH",
            &format!("{path}/s1?fieldManager=editor"),
            MERGE,
            Some(json!({"metadata": {"annotations": {"note": "n"}}})),
        )
        .await?
        .ok(200)?;
        let mut with_note = secret(json!({}), json!({}));
        with_note["metadata"]["annotations"] = json!({"note": "m"});
        req(
            &t.client,
            "PATCH",
            &apply("other", false),
            APPLY,
            Some(with_note),
        )
        .await?
        .failure(
            409,
            "Conflict",
            "Apply failed with 1 conflict: conflict with \"editor\" using v1: .metadata.annotations.note",
        )?;
        // forced: taken over
        let r = req(
            &t.client,
            "PATCH",
            &apply("other", true),
            APPLY,
            Some(secret(json!({"app": "y"}), json!({"k": "eA=="}))),
        )
        .await?;
        ensure!(r.ok(200)?["metadata"]["labels"]["app"] == "y");
        // undeclared fields and wrong kinds of value are refused before merging
        let mut bad = secret(json!({}), json!({"k": "eA=="}));
        bad["foo"] = json!(1);
        req(&t.client, "PATCH", &apply("secretsync", true), APPLY, Some(bad))
            .await?
            .failure(
                500,
                "",
                "failed to create typed patch object (/s1; /v1, Kind=Secret): .foo: field not declared in schema",
            )?;
        req(
            &t.client,
            "PATCH",
            &apply("secretsync", true),
            APPLY,
            Some(secret(json!({}), json!({"k": 1}))),
        )
        .await?
        .failure(
            500,
            "",
            "failed to create typed patch object (/s1; /v1, Kind=Secret): .data.k: expected string, got &value.valueUnstructured{Value:1}",
        )?;
        let mut cm = secret(json!({}), json!({}));
        cm["kind"] = json!("ConfigMap");
        req(&t.client, "PATCH", &apply("secretsync", true), APPLY, Some(cm))
            .await?
            .failure(400, "BadRequest", "invalid object type: /v1, Kind=ConfigMap")?;
        // kube-rs typed apply, as the controller does it
        let secrets: Api<Secret> = Api::namespaced(t.client.clone(), &t.ns);
        let s = secrets
            .patch(
                "s2",
                &PatchParams::apply("secretsync").force(),
                &Patch::Apply(json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "s2", "labels": {"app": "x"}},
                    "data": {"k": "dg=="}})),
            )
            .await?;
        ensure!(s.data.is_some_and(|d| d["k"].0 == b"v"));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn server_side_apply_of_a_custom_resource_status() {
    conform("conf-ssa-status", |t| async move {
        let kind = "StatusWidget";
        let path = install_crd(&t, "statuswidgets", kind).await?;
        req(
            &t.client,
            "POST",
            &path,
            JSON,
            Some(cr(kind, "w1", json!({"size": 1}))),
        )
        .await?
        .ok(201)?;
        let status_apply = |mgr: &str, force: bool| {
            format!(
                "{path}/w1/status?fieldManager={mgr}{}",
                if force { "&force=true" } else { "" }
            )
        };
        let status = |phase: &str| {
            json!({"apiVersion": format!("{GROUP}/v1"), "kind": kind, "metadata": {"name": "w1"},
                   "status": {"phase": phase, "observed": 1}})
        };
        let r = req(
            &t.client,
            "PATCH",
            &status_apply("secretsync", true),
            APPLY,
            Some(status("Ready")),
        )
        .await?;
        let o = r.ok(200)?;
        ensure!(o["status"] == json!({"phase": "Ready", "observed": 1}));
        ensure!(o["spec"] == json!({"size": 1}) && o["metadata"]["generation"] == 1);
        let entries = o["metadata"]["managedFields"]
            .as_array()
            .context("managedFields")?;
        ensure!(
            entries.iter().any(|e| e["manager"] == "secretsync"
                && e["operation"] == "Apply"
                && e["subresource"] == "status"
                && e["fieldsV1"] == json!({"f:status": {"f:observed": {}, "f:phase": {}}})),
            "managedFields {entries:?}"
        );
        // a status writer without apply is named with its subresource and version
        req(
            &t.client,
            "PATCH",
            &format!("{path}/w1/status?fieldManager=st"),
            MERGE,
            Some(json!({"status": {"phase": "Other"}})),
        )
        .await?
        .ok(200)?;
        req(
            &t.client,
            "PATCH",
            &status_apply("secretsync", false),
            APPLY,
            Some(status("Ready")),
        )
        .await?
        .failure(
            409,
            "Conflict",
            &format!(
                "Apply failed with 1 conflict: conflict with \"st\" with subresource \"status\" using {GROUP}/v1: .status.phase"
            ),
        )?;
        let r = req(
            &t.client,
            "PATCH",
            &status_apply("secretsync", true),
            APPLY,
            Some(status("Ready")),
        )
        .await?;
        ensure!(r.ok(200)?["status"]["phase"] == "Ready");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn built_in_kinds_prune_unknown_fields() {
    conform("conf-builtin-prune", |t| async move {
        let ns = &t.ns;
        let cases = [
            (
                format!("/api/v1/namespaces/{ns}/secrets"),
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1", "foo": 1},
                       "foo": 1, "data": {"k": "dg=="}}),
                vec!["foo", "metadata.foo"],
            ),
            (
                format!("/api/v1/namespaces/{ns}/configmaps"),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"},
                       "spec": {"a": 1}, "data": {"a": "b"}}),
                vec!["spec"],
            ),
            (
                format!("/api/v1/namespaces/{ns}/serviceaccounts"),
                json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa1"},
                       "secrets": [{"name": "x", "foo": 1}], "automountServiceAccountToken": true}),
                vec!["secrets[0].foo"],
            ),
            (
                format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"),
                json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                       "metadata": {"name": "l1"},
                       "spec": {"holderIdentity": "a", "foo": 1, "leaseDurationSeconds": 15}}),
                vec!["spec.foo"],
            ),
        ];
        for (path, body, unknown) in cases {
            let r = req(&t.client, "POST", &path, JSON, Some(body)).await?;
            let o = r.ok(201)?;
            ensure!(
                r.sorted_warnings() == unknown_field_warnings(&unknown),
                "{path}: warnings {:?}",
                r.warnings
            );
            for p in &unknown {
                let ptr = format!("/{}", p.replace('.', "/").replace("[0]", "/0"));
                ensure!(o.pointer(&ptr).is_none(), "{path}: {p} kept: {o}");
            }
        }
        req(
            &t.client,
            "POST",
            &format!("/api/v1/namespaces/{ns}/secrets?fieldValidation=Strict"),
            JSON,
            Some(json!({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "s2", "foo": 1}, "foo": 1})),
        )
        .await?
        .failure(
            400,
            "BadRequest",
            "Secret in version \"v1\" cannot be handled as a Secret: strict decoding error: unknown field \"foo\", unknown field \"metadata.foo\"",
        )?;
        req(
            &t.client,
            "PATCH",
            &format!("/api/v1/namespaces/{ns}/secrets/s1?fieldValidation=x"),
            MERGE,
            Some(json!({})),
        )
        .await?
        .invalid(
            "PatchOptions.meta.k8s.io",
            "",
            &[(
                "FieldValueNotSupported",
                "fieldValidation",
                "Unsupported value: \"x\": supported values: \"\", \"Ignore\", \"Strict\", \"Warn\"",
            )],
        )?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn metadata_only_list_and_watch_of_secrets() {
    conform("conf-meta-watch", |t| async move {
        let secrets: Api<Secret> = Api::namespaced(t.client.clone(), &t.ns);
        let mk = |name: &str, managed: bool| Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    [(
                        "app.kubernetes.io/managed-by".to_string(),
                        if managed { "secretsync" } else { "other" }.to_string(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            string_data: Some([("k".to_string(), "v".to_string())].into()),
            ..Default::default()
        };
        secrets
            .create(&PostParams::default(), &mk("a", true))
            .await?;
        secrets
            .create(&PostParams::default(), &mk("b", false))
            .await?;
        let lp = ListParams::default().labels("app.kubernetes.io/managed-by=secretsync");
        let list = secrets.list_metadata(&lp).await?;
        let names: Vec<_> = list.items.iter().map(|o| o.metadata.name.clone()).collect();
        ensure!(names == vec![Some("a".to_string())], "{names:?}");
        ensure!(list.types.kind == "PartialObjectMetadataList");
        ensure!(list.types.api_version == "meta.k8s.io/v1");
        // the raw list: items are PartialObjectMetadata without data
        let raw = req(
            &t.client,
            "GET",
            &format!(
                "/api/v1/namespaces/{}/secrets?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dsecretsync",
                t.ns
            ),
            "",
            None,
        )
        .await?;
        ensure!(raw.ok(200)?["items"][0]["data"]["k"] == "dg==");
        let rv = list
            .metadata
            .resource_version
            .clone()
            .context("list resourceVersion")?;
        let wp = kube::api::WatchParams::default()
            .labels("app.kubernetes.io/managed-by=secretsync")
            .timeout(20);
        let mut stream = secrets.watch_metadata(&wp, &rv).await?.boxed();
        secrets
            .create(&PostParams::default(), &mk("c", false))
            .await?;
        secrets
            .create(&PostParams::default(), &mk("d", true))
            .await?;
        let first = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match stream.try_next().await? {
                    Some(WatchEvent::Bookmark(_)) => continue,
                    other => return Ok::<_, kube::Error>(other),
                }
            }
        })
        .await
        .context("no watch event within 20 s")??;
        match first {
            Some(WatchEvent::Added(o)) => {
                ensure!(o.metadata.name.as_deref() == Some("d"), "{o:?}");
                ensure!(o.types.as_ref().is_some_and(|t| t.kind == "PartialObjectMetadata"));
            }
            other => bail!("expected ADDED d, got {other:?}"),
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn lease_create_update_and_validation() {
    conform("conf-lease", |t| async move {
        let leases: Api<Lease> = Api::namespaced(t.client.clone(), &t.ns);
        let now = MicroTime(Timestamp::now());
        let l = leases
            .create(
                &PostParams::default(),
                &Lease {
                    metadata: ObjectMeta {
                        name: Some("leader".into()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some("a".into()),
                        lease_duration_seconds: Some(15),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now.clone()),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                },
            )
            .await?;
        let mut next = l.clone();
        if let Some(spec) = next.spec.as_mut() {
            spec.holder_identity = Some("b".into());
            spec.lease_transitions = Some(1);
        }
        let updated = leases
            .replace("leader", &PostParams::default(), &next)
            .await?;
        ensure!(updated.spec.and_then(|s| s.holder_identity) == Some("b".into()));
        // a stale write (the old resourceVersion) conflicts
        match leases.replace("leader", &PostParams::default(), &l).await {
            Err(kube::Error::Api(e)) => ensure!(
                e.code == 409
                    && e.message
                        == "Operation cannot be fulfilled on leases.coordination.k8s.io \"leader\": the object has been modified; please apply your changes to the latest version and try again",
                "{e:?}"
            ),
            other => bail!("expected a conflict, got {other:?}"),
        }
        // strategic merge patch (kube-lease-manager renews this way)
        let renewed = leases
            .patch(
                "leader",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"renewTime": MicroTime(Timestamp::now())}})),
            )
            .await?;
        ensure!(renewed.spec.and_then(|s| s.renew_time).is_some());
        let path = format!("/apis/coordination.k8s.io/v1/namespaces/{}/leases", t.ns);
        let lease = |name: &str, spec: Value| {
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                   "metadata": {"name": name}, "spec": spec})
        };
        req(
            &t.client,
            "POST",
            &path,
            JSON,
            Some(lease("zero", json!({"leaseDurationSeconds": 0}))),
        )
        .await?
        .invalid(
            "Lease.coordination.k8s.io",
            "zero",
            &[(
                "FieldValueInvalid",
                "spec.leaseDurationSeconds",
                "Invalid value: 0: must be greater than 0",
            )],
        )?;
        req(
            &t.client,
            "POST",
            &path,
            JSON,
            Some(lease("negative", json!({"leaseTransitions": -1}))),
        )
        .await?
        .invalid(
            "Lease.coordination.k8s.io",
            "negative",
            &[(
                "FieldValueInvalid",
                "spec.leaseTransitions",
                "Invalid value: -1: must be greater than or equal to 0",
            )],
        )?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn service_account_token_request() {
    conform("conf-token", |t| async move {
        let ns = &t.ns;
        req(
            &t.client,
            "POST",
            &format!("/api/v1/namespaces/{ns}/serviceaccounts"),
            JSON,
            Some(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}})),
        )
        .await?
        .ok(201)?;
        let bound = req(
            &t.client,
            "POST",
            &format!("/api/v1/namespaces/{ns}/secrets"),
            JSON,
            Some(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bound"}})),
        )
        .await?;
        let bound_uid = bound.ok(201)?["metadata"]["uid"].clone();
        let path = format!("/api/v1/namespaces/{ns}/serviceaccounts/sa/token");
        let token = |spec: Value| {
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
        };
        let r = req(&t.client, "POST", &path, JSON, Some(token(json!({})))).await?;
        let o = r.ok(201)?;
        ensure!(o["spec"]["expirationSeconds"] == 3600);
        ensure!(
            o["spec"]["audiences"] == json!(["https://kubernetes.default.svc.cluster.local"]),
            "{o}"
        );
        ensure!(o["status"]["token"].as_str().is_some_and(|t| t.split('.').count() == 3));
        for (secs, why) in [
            (599_i64, "may not specify a duration less than 10 minutes"),
            (5_000_000_000, "may not specify a duration larger than 2^32 seconds"),
        ] {
            let msg = format!("Invalid value: {secs}: {why}");
            req(
                &t.client,
                "POST",
                &path,
                JSON,
                Some(token(json!({ "expirationSeconds": secs }))),
            )
            .await?
            .invalid(
                "TokenRequest.authentication.k8s.io",
                "",
                &[("FieldValueInvalid", "spec.expirationSeconds", &msg)],
            )?;
        }
        let bind = |kind: &str, name: &str, uid: Option<&Value>| {
            let mut r = json!({"apiVersion": "v1", "kind": kind, "name": name});
            if let Some(u) = uid {
                r["uid"] = u.clone();
            }
            token(json!({ "boundObjectRef": r }))
        };
        let r = req(
            &t.client,
            "POST",
            &path,
            JSON,
            Some(bind("Secret", "bound", Some(&bound_uid))),
        )
        .await?;
        ensure!(r.ok(201)?["spec"]["boundObjectRef"]["name"] == "bound");
        req(
            &t.client,
            "POST",
            &path,
            JSON,
            Some(bind("Secret", "nope", None)),
        )
        .await?
        .failure(404, "NotFound", "secrets \"nope\" not found")?;
        req(
            &t.client,
            "POST",
            &path,
            JSON,
            Some(bind("Secret", "bound", Some(&json!("abc")))),
        )
        .await?
        .failure(
            409,
            "Conflict",
            "Operation cannot be fulfilled on Secret \"bound\": the UID in the bound object reference (abc) does not match the UID in record. The object might have been deleted and then recreated",
        )?;
        req(
            &t.client,
            "POST",
            &path,
            JSON,
            Some(bind("ConfigMap", "c", None)),
        )
        .await?
        .failure(
            400,
            "BadRequest",
            "cannot bind token to object of type /v1, Kind=ConfigMap",
        )?;
        req(
            &t.client,
            "POST",
            &format!("/api/v1/namespaces/{ns}/serviceaccounts/nope/token"),
            JSON,
            Some(token(json!({}))),
        )
        .await?
        .failure(404, "NotFound", "serviceaccounts \"nope\" not found")?;
        Ok(())
    })
    .await;
}

/// Sanity check of the harness itself: namespaces created by `conform` exist on every backend.
#[tokio::test]
async fn harness_creates_the_namespace() {
    conform("conf-harness", |t| async move {
        let ns: Api<Namespace> = Api::all(t.client.clone());
        let got = ns.get("conf-harness").await?;
        ensure!(
            got.metadata.name.as_deref() == Some("conf-harness"),
            "{}",
            t.backend
        );
        Ok(())
    })
    .await;
}

/// A server-side apply carrying `metadata.resourceVersion` is conditional: on a stored object with
/// another version it is refused with 409 Conflict (secretsync's writes rely on it: a create never
/// overwrites a Secret that appeared after the read, an update never lands on a replaced one); on
/// a missing object the version is ignored and the object is created. Deletes take uid and
/// resourceVersion preconditions.
#[tokio::test]
async fn apply_and_delete_preconditions() {
    conform("conf-preconditions", |t| async move {
        let path = format!("/api/v1/namespaces/{}/secrets", t.ns);
        let apply = |name: &str, rv: &str| {
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": name, "resourceVersion": rv}, "data": {"k": "dg=="}})
        };
        // Missing object: created, whatever the version says.
        let r = req(
            &t.client,
            "PATCH",
            &format!("{path}/p1?fieldManager=secretsync&force=true"),
            APPLY,
            Some(apply("p1", "1")),
        )
        .await?;
        let created = r.ok(201)?;
        let rv = created["metadata"]["resourceVersion"]
            .as_str()
            .context("resourceVersion")?
            .to_string();
        let uid = created["metadata"]["uid"].as_str().context("uid")?.to_string();
        ensure!(rv != "1", "a stored object has resourceVersion {rv}");
        // Existing object, another version: 409, nothing written.
        req(
            &t.client,
            "PATCH",
            &format!("{path}/p1?fieldManager=secretsync&force=true"),
            APPLY,
            Some(apply("p1", "1")),
        )
        .await?
        .failure(
            409,
            "Conflict",
            "Operation cannot be fulfilled on secrets \"p1\": the object has been modified; please apply your changes to the latest version and try again",
        )?;
        // The current version: applied.
        req(
            &t.client,
            "PATCH",
            &format!("{path}/p1?fieldManager=secretsync&force=true"),
            APPLY,
            Some(apply("p1", &rv)),
        )
        .await?
        .ok(200)?;
        // Delete with a stale uid or resourceVersion: 409, the object stays.
        let stale = json!({"apiVersion": "v1", "kind": "DeleteOptions",
                           "preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}});
        req(&t.client, "DELETE", &format!("{path}/p1"), JSON, Some(stale))
            .await?
            .failure(
                409,
                "Conflict",
                &format!("Operation cannot be fulfilled on Secret \"p1\": the UID in the precondition (00000000-0000-0000-0000-000000000000) does not match the UID in record ({uid}). The object might have been deleted and then recreated"),
            )?;
        let now_rv = req(&t.client, "GET", &format!("{path}/p1"), JSON, None)
            .await?
            .ok(200)?["metadata"]["resourceVersion"]
            .as_str()
            .context("resourceVersion")?
            .to_string();
        let stale = json!({"apiVersion": "v1", "kind": "DeleteOptions",
                           "preconditions": {"uid": uid, "resourceVersion": "1"}});
        req(&t.client, "DELETE", &format!("{path}/p1"), JSON, Some(stale))
            .await?
            .failure(
                409,
                "Conflict",
                &format!("Operation cannot be fulfilled on Secret \"p1\": the ResourceVersion in the precondition (1) does not match the ResourceVersion in record ({now_rv}). The object might have been modified"),
            )?;
        let exact = json!({"apiVersion": "v1", "kind": "DeleteOptions",
                           "preconditions": {"uid": uid}});
        let r = req(&t.client, "DELETE", &format!("{path}/p1"), JSON, Some(exact)).await?;
        ensure!(r.code == 200, "delete with the right uid: {} {}", r.code, r.body);
        Ok(())
    })
    .await;
}
