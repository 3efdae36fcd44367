//! Request routing and the Kubernetes REST verbs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::apply;
use crate::discovery;
use crate::error::{ApiError, Cause, quote};
use crate::faults::{CounterStore, FaultAction, Faults, OutageMode};
use crate::fields::Scope;
use crate::kinds;
use crate::patch::{self, PatchKind};
use crate::resources::ResourceType;
use crate::schema;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{self, DeleteOpts, Req, Store};
use crate::tokens::Tokens;
use crate::watch::{self, WatchParams};

/// Shared server state.
pub(crate) struct App {
    pub store: Mutex<Store>,
    pub faults: Faults,
    pub counters: CounterStore,
    pub tokens: Mutex<Tokens>,
    pub bookmark_interval: Duration,
    pub addr: SocketAddr,
}

impl App {
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) fn json_headers(r: &mut Response<Body>) {
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
}

pub(crate) fn bytes_response(code: u16, b: Bytes) -> Response<Body> {
    let mut r = Response::new(Body::from(b));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    json_headers(&mut r);
    r
}

pub(crate) fn value_response(code: u16, v: &Value) -> Response<Body> {
    bytes_response(code, Bytes::from(v.to_string()))
}

pub(crate) fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = value_response(e.code, &e.to_status());
    if let Some(s) = e.retry_after
        && let Ok(h) = HeaderValue::from_str(&s.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, h);
    }
    r
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (pct_decode(k), pct_decode(v)),
            None => (pct_decode(p), String::new()),
        })
        .collect()
}

struct ResPath {
    group: String,
    version: String,
    ns: Option<String>,
    plural: String,
    name: Option<String>,
    sub: Option<String>,
}

enum Route {
    Version,
    Api,
    ApiVersion(String),
    Apis,
    ApisGroup(String),
    ApisGroupVersion(String, String),
    Resource(ResPath),
    NotFound,
}

fn res_path(group: &str, version: &str, rest: &[String]) -> Route {
    let mk = |ns: Option<&String>, tail: &[String]| -> Route {
        let (plural, name, sub) = match tail {
            [p] => (p, None, None),
            [p, n] => (p, Some(n.clone()), None),
            [p, n, s] => (p, Some(n.clone()), Some(s.clone())),
            _ => return Route::NotFound,
        };
        Route::Resource(ResPath {
            group: group.into(),
            version: version.into(),
            ns: ns.cloned(),
            plural: plural.clone(),
            name,
            sub,
        })
    };
    if rest.len() >= 3
        && rest[0] == "namespaces"
        && !matches!(rest[2].as_str(), "status" | "finalize")
    {
        mk(Some(&rest[1]), &rest[2..])
    } else {
        mk(None, rest)
    }
}

fn route(path: &str) -> Route {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(pct_decode)
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match s.as_slice() {
        ["version"] => Route::Version,
        ["api"] => Route::Api,
        ["api", v] => Route::ApiVersion(v.to_string()),
        ["api", v, ..] => res_path("", v, &segs[2..]),
        ["apis"] => Route::Apis,
        ["apis", g] => Route::ApisGroup(g.to_string()),
        ["apis", g, v] => Route::ApisGroupVersion(g.to_string(), v.to_string()),
        ["apis", g, v, ..] => res_path(g, v, &segs[3..]),
        _ => Route::NotFound,
    }
}

/// Field manager for non-apply writes: `fieldManager` or the User-Agent's program name.
fn manager_of(q: &HashMap<String, String>, headers: &HeaderMap) -> String {
    if let Some(m) = q.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.clone();
    }
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

fn parse_body(b: &[u8], content_type: &str) -> Result<Value, ApiError> {
    if content_type.contains("protobuf") {
        return crate::protobuf::decode(b);
    }
    if content_type.contains("cbor") {
        return Err(ApiError::unsupported_media(content_type));
    }
    if b.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    match serde_json::from_slice(b) {
        Ok(v) => Ok(v),
        Err(je) => {
            if content_type.contains("yaml") {
                serde_yaml_ng::from_slice(b)
                    .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
            } else {
                Err(ApiError::bad_request(format!(
                    "couldn't get version/kind; json parse error: {je}"
                )))
            }
        }
    }
}

/// The `fieldValidation` option of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

/// `fieldValidation` (default `Warn`); `options` names the options kind in the error
/// (`CreateOptions`, `UpdateOptions`, `PatchOptions`).
fn field_validation(ctx: &Ctx, options: &str) -> Result<FieldValidation, ApiError> {
    match ctx.q.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some(other) => Err(ApiError::invalid_causes(
            "meta.k8s.io",
            options,
            "",
            &[Cause::new(
                "FieldValueNotSupported",
                "fieldValidation",
                format!(
                    "Unsupported value: {}: supported values: \"\", \"Ignore\", \"Strict\", \"Warn\"",
                    quote(other)
                ),
            )],
        )),
    }
}

/// What decoding a request body into the kind's type does on the real server: MicroTime fields
/// must be well-formed, and fields the kind's schema does not declare are dropped (reported as
/// warnings, or refused with `Strict`). `Err` is the decoding error's message.
fn decode(
    rt: &ResourceType,
    version: &str,
    obj: &mut Value,
    fv: FieldValidation,
) -> Result<Vec<String>, String> {
    kinds::check_micro_times(&rt.group, &rt.plural, obj)?;
    let Some(schema) = rt.schema(version) else {
        return Ok(Vec::new());
    };
    let mut unknown = schema::prune(obj, schema, rt.custom);
    match fv {
        FieldValidation::Ignore => Ok(Vec::new()),
        FieldValidation::Warn => Ok(unknown
            .iter()
            .map(|p| format!("unknown field {}", quote(p)))
            .collect()),
        FieldValidation::Strict if unknown.is_empty() => Ok(Vec::new()),
        FieldValidation::Strict => {
            unknown.sort();
            let list: Vec<String> = unknown
                .iter()
                .map(|p| format!("unknown field {}", quote(p)))
                .collect();
            Err(format!("strict decoding error: {}", list.join(", ")))
        }
    }
}

/// A create or update body the real server cannot decode: 400.
fn body_decode_error(rt: &ResourceType, version: &str, msg: &str) -> ApiError {
    ApiError::bad_request(format!(
        "{k} in version {} cannot be handled as a {k}: {msg}",
        quote(version),
        k = rt.kind
    ))
}

/// A patched object the real server cannot decode: 422 on the field `patch`.
fn patch_decode_error(patched: &Value, msg: &str) -> ApiError {
    ApiError::invalid_causes(
        "",
        "",
        "",
        &[Cause::invalid("patch", &quote(&patched.to_string()), msg)],
    )
}

/// Adds a `Warning: 299 - "..."` header per warning.
fn with_warnings(mut r: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        if let Ok(h) = HeaderValue::from_str(&format!("299 - {}", quote(w))) {
            r.headers_mut().append(header::WARNING, h);
        }
    }
    r
}

/// Entry point for every HTTP request.
pub(crate) async fn handle(
    app: Arc<App>,
    req: http::Request<hyper::body::Incoming>,
    drop_conn: Arc<Notify>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let q = parse_query(parts.uri.query());
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error_response(&ApiError::bad_request(format!("reading body: {e}"))),
    };
    if let Some(rest) = path.strip_prefix("/_emulator/") {
        return crate::server::admin(&app, &parts.method, rest, &body);
    }
    match app.faults.outage() {
        None => {}
        Some(OutageMode::Unavailable) => return error_response(&ApiError::unavailable()),
        Some(OutageMode::Drop) | Some(OutageMode::Refuse) => {
            drop_conn.notify_one();
            return std::future::pending().await;
        }
    }
    let ctx = Ctx {
        path,
        method: parts.method,
        headers: parts.headers,
        q,
        body,
    };
    match dispatch(&app, ctx, &drop_conn).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

struct Ctx {
    path: String,
    method: Method,
    headers: HeaderMap,
    q: HashMap<String, String>,
    body: Bytes,
}

impl Ctx {
    fn header(&self, h: header::HeaderName) -> &str {
        self.headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    fn meta_only(&self) -> bool {
        self.header(header::ACCEPT)
            .contains("as=PartialObjectMetadata")
    }
    fn flag(&self, k: &str) -> bool {
        self.q.get(k).is_some_and(|v| v == "true" || v == "1")
    }
}

/// The object a request names, for fault answers that cite it: the name in the path, or for a
/// create the body's `metadata.name` (best effort; empty when it has none).
fn target_name(r: &ResPath, ctx: &Ctx) -> String {
    if let Some(n) = &r.name {
        return n.clone();
    }
    parse_body(&ctx.body, ctx.header(header::CONTENT_TYPE))
        .ok()
        .and_then(|v| store::md_str(&v, "name").map(str::to_string))
        .unwrap_or_default()
}

async fn apply_faults(
    app: &App,
    verb: &str,
    resource: &str,
    ns: Option<&str>,
    conflict_on: impl Fn() -> (String, String, String),
    drop_conn: &Notify,
) -> Result<(), ApiError> {
    for a in app.faults.evaluate(verb, resource, ns) {
        match a {
            FaultAction::Latency { ms } => tokio::time::sleep(Duration::from_millis(ms)).await,
            FaultAction::TooManyRequests {
                retry_after_seconds,
            } => {
                return Err(ApiError::too_many_requests(retry_after_seconds));
            }
            FaultAction::InternalError => {
                return Err(ApiError::internal("injected fault: internal error"));
            }
            FaultAction::ServiceUnavailable => return Err(ApiError::unavailable()),
            FaultAction::DropConnection => {
                drop_conn.notify_one();
                std::future::pending::<()>().await;
            }
            FaultAction::Conflict => {
                let (group, plural, name) = conflict_on();
                return Err(ApiError::stale(&group, &plural, &name));
            }
        }
    }
    Ok(())
}

async fn dispatch(
    app: &Arc<App>,
    ctx: Ctx,
    drop_conn: &Notify,
) -> Result<Response<Body>, ApiError> {
    let r = match route(&ctx.path) {
        Route::Resource(r) => r,
        other => {
            if ctx.method != Method::GET {
                return Err(ApiError::method_not_allowed());
            }
            app.counters.inc("get", "discovery");
            let types = app.store().all_types();
            let v = match other {
                Route::Version => Some(discovery::version()),
                Route::Api => Some(discovery::core_versions(&app.addr.to_string())),
                Route::ApiVersion(v) => discovery::resource_list(&types, "", &v),
                Route::Apis => Some(discovery::group_list(&types)),
                Route::ApisGroup(g) => discovery::group(&types, &g),
                Route::ApisGroupVersion(g, v) => discovery::resource_list(&types, &g, &v),
                _ => None,
            };
            return v
                .map(|v| value_response(200, &v))
                .ok_or_else(ApiError::path_not_found);
        }
    };
    let rt = app
        .store()
        .lookup(&r.group, &r.plural)
        .filter(|t| t.serves(&r.version))
        .ok_or_else(ApiError::path_not_found)?;
    if r.ns.is_some() && !rt.namespaced {
        return Err(ApiError::path_not_found());
    }
    if rt.namespaced && r.ns.is_none() && r.name.is_some() {
        return Err(ApiError::path_not_found());
    }
    match r.sub.as_deref() {
        None => {}
        Some("status") if rt.has_status => {}
        Some("token") if rt.group.is_empty() && rt.plural == "serviceaccounts" => {}
        Some(_) => return Err(ApiError::path_not_found()),
    }
    let verb: &'static str = match (&ctx.method, r.name.is_some()) {
        (&Method::GET, true) => "get",
        (&Method::GET, false) if ctx.flag("watch") => "watch",
        (&Method::GET, false) => "list",
        (&Method::POST, false) => "create",
        (&Method::POST, true) if r.sub.as_deref() == Some("token") => "create",
        (&Method::PUT, true) => "update",
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => return Err(ApiError::method_not_allowed()),
    };
    if rt.create_only && verb != "create" {
        return Err(ApiError::method_not_allowed());
    }
    if r.sub.as_deref() == Some("token") && verb != "create" {
        return Err(ApiError::method_not_allowed());
    }
    if r.sub.as_deref() == Some("status") && !matches!(verb, "get" | "update" | "patch") {
        return Err(ApiError::method_not_allowed());
    }
    let resource = match &r.sub {
        Some(s) => format!("{}/{s}", rt.plural),
        None => rt.plural.clone(),
    };
    app.counters.inc(verb, &resource);
    apply_faults(
        app,
        verb,
        &resource,
        r.ns.as_deref(),
        || (rt.group.clone(), rt.plural.clone(), target_name(&r, &ctx)),
        drop_conn,
    )
    .await?;

    let api_version = rt.api_version(&r.version);
    let ns = r.ns.as_deref();
    let name = r.name.as_deref().unwrap_or("");
    let sub = r.sub.as_deref();
    let meta = ctx.meta_only();
    match verb {
        "get" => {
            let o = app
                .store()
                .get(&rt.id(), &store::key(ns, name))
                .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
            Ok(bytes_response(200, o.render(meta, &api_version)))
        }
        "list" => list(app, &rt, &r, &ctx, &api_version),
        "watch" => start_watch(app, &rt, &r, &ctx, api_version),
        "create" if sub == Some("token") => {
            let body = parse_body(&ctx.body, ctx.header(header::CONTENT_TYPE))?;
            let sa = app
                .store()
                .get(&rt.id(), &store::key(ns, name))
                .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
            kinds::validate_token_request(&body)?;
            check_bound_object(app, ns.unwrap_or(""), &body)?;
            let resp = app.tokens.lock().unwrap_or_else(|e| e.into_inner()).issue(
                ns.unwrap_or(""),
                name,
                sa.uid(),
                &body,
            );
            Ok(value_response(201, &resp))
        }
        "create" if rt.plural == "tokenreviews" => {
            let body = parse_body(&ctx.body, "")?;
            let sa_rid = crate::resources::ResId::new("", "serviceaccounts");
            let lookup = |ns: &str, sa: &str| {
                app.store()
                    .get(&sa_rid, &store::key(Some(ns), sa))
                    .map(|o| o.uid().to_string())
            };
            let resp = app
                .tokens
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .review(&body, lookup);
            Ok(value_response(201, &resp))
        }
        "create" => {
            let fv = field_validation(&ctx, "CreateOptions")?;
            let mut body = parse_body(&ctx.body, ctx.header(header::CONTENT_TYPE))?;
            let warnings = decode(&rt, &r.version, &mut body, fv)
                .map_err(|m| body_decode_error(&rt, &r.version, &m))?;
            let manager = manager_of(&ctx.q, &ctx.headers);
            let req = Req {
                version: &r.version,
                manager: Some(&manager),
            };
            let o = app.store().create(&rt, ns, body, &req)?;
            Ok(with_warnings(
                bytes_response(201, o.render(false, &api_version)),
                &warnings,
            ))
        }
        "update" => {
            let fv = field_validation(&ctx, "UpdateOptions")?;
            let mut body = parse_body(&ctx.body, ctx.header(header::CONTENT_TYPE))?;
            let warnings = decode(&rt, &r.version, &mut body, fv)
                .map_err(|m| body_decode_error(&rt, &r.version, &m))?;
            let manager = manager_of(&ctx.q, &ctx.headers);
            let req = Req {
                version: &r.version,
                manager: Some(&manager),
            };
            let o = app.store().update(&rt, ns, name, body, sub, &req)?;
            Ok(with_warnings(
                bytes_response(200, o.render(false, &api_version)),
                &warnings,
            ))
        }
        "patch" => patch_verb(app, &rt, &r, &ctx, &api_version),
        "delete" => {
            let opts = delete_opts(&ctx)?;
            let o = app.store().delete(&rt, ns, name, &opts)?;
            Ok(bytes_response(200, o.render(false, &api_version)))
        }
        "deletecollection" => {
            let opts = delete_opts(&ctx)?;
            let (ls, fs) = selectors(&ctx)?;
            let mut s = app.store();
            let (items, _) = s.list(&rt.id(), ns, None, 0, &|o| {
                ls.matches(&o.v) && fs.matches(&o.v)
            });
            for o in items {
                let _ = s.delete(&rt, o.namespace(), o.name(), &opts);
            }
            Ok(value_response(
                200,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
            ))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn selectors(ctx: &Ctx) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let ls = LabelSelector::parse(ctx.q.get("labelSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    let fs = FieldSelector::parse(ctx.q.get("fieldSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    Ok((ls, fs))
}

fn delete_opts(ctx: &Ctx) -> Result<DeleteOpts, ApiError> {
    let mut o = DeleteOpts::default();
    if !ctx.body.is_empty() {
        let v = parse_body(&ctx.body, ctx.header(header::CONTENT_TYPE))?;
        o.propagation = v
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_string);
        if v.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
            o.propagation = Some("Orphan".into());
        }
        o.uid = v
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        o.resource_version = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    if let Some(p) = ctx.q.get("propagationPolicy") {
        o.propagation = Some(p.clone());
    }
    Ok(o)
}

fn list(
    app: &Arc<App>,
    rt: &ResourceType,
    r: &ResPath,
    ctx: &Ctx,
    api_version: &str,
) -> Result<Response<Body>, ApiError> {
    let (ls, fs) = selectors(ctx)?;
    let limit: usize = match ctx.q.get("limit") {
        Some(l) if !l.is_empty() => l
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        _ => 0,
    };
    let after = match ctx.q.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => {
            let raw = URL_SAFE_NO_PAD
                .decode(c)
                .map_err(|_| ApiError::bad_request("invalid continue token"))?;
            let v: Value = serde_json::from_slice(&raw)
                .map_err(|_| ApiError::bad_request("invalid continue token"))?;
            Some(
                v.get("start")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            )
        }
        None => None,
    };
    let (items, more, rv) = {
        let s = app.store();
        let (items, more) = s.list(&rt.id(), r.ns.as_deref(), after.as_deref(), limit, &|o| {
            ls.matches(&o.v) && fs.matches(&o.v)
        });
        (items, more, s.rv)
    };
    let meta = ctx.meta_only();
    let (kind, av) = if meta {
        ("PartialObjectMetadataList", "meta.k8s.io/v1")
    } else {
        (rt.list_kind.as_str(), api_version)
    };
    let mut md = json!({"resourceVersion": rv.to_string()});
    if let Some(k) = more {
        let tok = json!({"start": k, "rv": rv}).to_string();
        md["continue"] = json!(URL_SAFE_NO_PAD.encode(tok));
    }
    let rendered: Vec<Bytes> = items.iter().map(|o| o.render(meta, api_version)).collect();
    let mut buf = BytesMut::with_capacity(rendered.iter().map(Bytes::len).sum::<usize>() + 256);
    buf.put_slice(
        format!("{{\"kind\":\"{kind}\",\"apiVersion\":\"{av}\",\"metadata\":{md},\"items\":[")
            .as_bytes(),
    );
    for (i, b) in rendered.iter().enumerate() {
        if i > 0 {
            buf.put_u8(b',');
        }
        buf.put_slice(b);
    }
    buf.put_slice(b"]}");
    Ok(bytes_response(200, buf.freeze()))
}

fn start_watch(
    app: &Arc<App>,
    rt: &ResourceType,
    r: &ResPath,
    ctx: &Ctx,
    api_version: String,
) -> Result<Response<Body>, ApiError> {
    let (ls, fs) = selectors(ctx)?;
    let rv = match ctx.q.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(s) => Some(
            s.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {s:?}")))?,
        ),
    };
    if app.faults.take_expire() {
        return Ok(watch::expired_response(rv.unwrap_or(0)));
    }
    let timeout = ctx
        .q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let p = WatchParams {
        rid: rt.id(),
        api_version,
        kind: rt.kind.clone(),
        ns: r.ns.clone(),
        labels: ls,
        fields: fs,
        rv,
        send_initial_events: ctx.flag("sendInitialEvents"),
        bookmarks: ctx.flag("allowWatchBookmarks"),
        timeout,
        meta_only: ctx.meta_only(),
    };
    watch::start(app.clone(), p)
}

fn patch_verb(
    app: &Arc<App>,
    rt: &ResourceType,
    r: &ResPath,
    ctx: &Ctx,
    api_version: &str,
) -> Result<Response<Body>, ApiError> {
    let ct = ctx.header(header::CONTENT_TYPE);
    let kind = PatchKind::from_content_type(ct)?;
    if kind == PatchKind::Strategic && rt.custom {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        ));
    }
    let fv = field_validation(ctx, "PatchOptions")?;
    let ns = r.ns.as_deref();
    let name = r.name.as_deref().unwrap_or("");
    let sub = r.sub.as_deref();
    let k = store::key(ns, name);
    if kind != PatchKind::Apply {
        let manager = manager_of(&ctx.q, &ctx.headers);
        let mut s = app.store();
        let old = s
            .get(&rt.id(), &k)
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        let mut new = patch::patch(&old.v, kind, &ctx.body)?;
        let patched = new.clone();
        let warnings =
            decode(rt, &r.version, &mut new, fv).map_err(|m| patch_decode_error(&patched, &m))?;
        let req = Req {
            version: &r.version,
            manager: Some(&manager),
        };
        let o = s.update(rt, ns, name, new, sub, &req)?;
        return Ok(with_warnings(
            bytes_response(200, o.render(false, api_version)),
            &warnings,
        ));
    }
    let manager = ctx
        .q
        .get("fieldManager")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                "PATCH with apply-patch content type requires the fieldManager query parameter",
            )
        })?;
    let force = ctx.flag("force");
    let config = parse_body(&ctx.body, "yaml")?;
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "apply configuration must be an object",
        ));
    }
    if config
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
        || config
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
    {
        return Err(ApiError::bad_request(
            "invalid object type: apiVersion and kind must be set",
        ));
    }
    let (cav, ckind) = (
        config
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or(""),
        config.get("kind").and_then(Value::as_str).unwrap_or(""),
    );
    if cav != api_version || ckind != rt.kind {
        let gv = if cav.contains('/') {
            cav.to_string()
        } else {
            format!("/{cav}")
        };
        return Err(ApiError::bad_request(format!(
            "invalid object type: {gv}, Kind={ckind}"
        )));
    }
    if let Some(schema) = rt.schema(&r.version) {
        let errs = schema::typed_errors(&config, schema);
        if !errs.is_empty() {
            let gv = if rt.group.is_empty() {
                format!("/{}", r.version)
            } else {
                api_version.to_string()
            };
            let detail = match errs.as_slice() {
                [one] => one.clone(),
                _ => format!("errors:\n  {}", errs.join("\n  ")),
            };
            return Err(ApiError::new(
                500,
                "",
                format!(
                    "failed to create typed patch object (/{name}; {gv}, Kind={}): {detail}",
                    rt.kind
                ),
            ));
        }
    }
    if let Some(n) = store::md_str(&config, "name")
        && n != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    let scope = Scope::new(rt.has_status, sub);
    let mut s = app.store();
    match s.get(&rt.id(), &k) {
        None => {
            if sub.is_some() {
                return Err(ApiError::not_found(&rt.group, &rt.plural, name));
            }
            let mut skel =
                json!({"apiVersion": api_version, "kind": rt.kind, "metadata": {"name": name}});
            if let Some(ns) = ns.filter(|_| rt.namespaced) {
                skel["metadata"]["namespace"] = json!(ns);
            }
            let new = apply::apply(None, skel, &config, manager, force, scope, api_version)?;
            let req = Req {
                version: &r.version,
                manager: None,
            };
            let o = s.create(rt, ns, new, &req)?;
            Ok(bytes_response(201, o.render(false, api_version)))
        }
        Some(old) => {
            if let Some(rv) = store::md_str(&config, "resourceVersion")
                && !rv.is_empty()
                && rv != old.rv()
            {
                return Err(ApiError::stale(&rt.group, &rt.plural, name));
            }
            let new = apply::apply(
                Some(&old.v),
                json!({}),
                &config,
                manager,
                force,
                scope,
                api_version,
            )?;
            let req = Req {
                version: &r.version,
                manager: None,
            };
            let o = s.update(rt, ns, name, new, sub, &req)?;
            Ok(bytes_response(200, o.render(false, api_version)))
        }
    }
}

/// A TokenRequest's `boundObjectRef` must name an existing Secret, Pod or Node (the emulator has
/// no pods or nodes) with the given uid, if any.
fn check_bound_object(app: &App, ns: &str, body: &Value) -> Result<(), ApiError> {
    let Some(b) = body
        .pointer("/spec/boundObjectRef")
        .filter(|b| b.is_object())
    else {
        return Ok(());
    };
    let t = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("");
    let (av, kind, name, uid) = (t("apiVersion"), t("kind"), t("name"), t("uid"));
    let (group, version) = match av.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", av),
    };
    let found_uid = match (group, kind) {
        ("", "Secret") => app
            .store()
            .get(
                &crate::resources::ResId::new("", "secrets"),
                &store::key(Some(ns), name),
            )
            .map(|o| o.uid().to_string())
            .ok_or_else(|| ApiError::not_found("", "secrets", name))?,
        ("", "Pod") => return Err(ApiError::not_found("", "pods", name)),
        ("", "Node") => return Err(ApiError::not_found("", "nodes", name)),
        _ => {
            return Err(ApiError::bad_request(format!(
                "cannot bind token to object of type {group}/{version}, Kind={kind}"
            )));
        }
    };
    if !uid.is_empty() && uid != found_uid {
        return Err(ApiError::conflict(
            "",
            kind,
            name,
            &format!(
                "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
            ),
        ));
    }
    Ok(())
}
