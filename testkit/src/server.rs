//! HTTP/1.1 serving: accept loop (with outage emulation), per-connection
//! drop support, and the `/_emulator/*` admin endpoints.
//!
//! Admin endpoints (JSON in and out; never counted, never faulted; reachable
//! during `unavailable`/`drop` outages, not during a `refuse` outage):
//!
//! | method + path | body | effect |
//! |---|---|---|
//! | `GET /_emulator/healthz` | | `{"ok":true}` |
//! | `GET /_emulator/counters` | | `{"requests":{"list secrets":3,...},"writes":n,"total":n}` |
//! | `POST /_emulator/reset-counters` (or `DELETE /_emulator/counters`) | | zero the counters |
//! | `GET /_emulator/stats` | | `{"resourceVersion":"N","objects":{"secrets":n,...}}` |
//! | `GET /_emulator/faults` | | rules with ids, current outage |
//! | `POST /_emulator/faults` | a [`FaultRule`] or an array of them | `{"ids":[..]}` |
//! | `DELETE /_emulator/faults` (or `POST /_emulator/faults/clear`) | | remove all rules, pending expiries, periodic cuts |
//! | `DELETE /_emulator/faults/{id}` | | remove one rule |
//! | `POST /_emulator/watches/cut` | `{}` = now, `{"every_seconds":N}` = every watch ends N s after it starts, `{"every_seconds":null}` = stop | end watch streams |
//! | `POST /_emulator/watches/expire` | `{"count":N}` (default 1) | next N watch requests get a 410 Expired ERROR event |
//! | `POST /_emulator/outage` | `{"seconds":S?,"mode":"refuse"\|"unavailable"\|"drop"}` | start an outage (mode `refuse`, the default, requires `seconds`) |
//! | `POST /_emulator/outage/end` (or `DELETE /_emulator/outage`) | | end the outage |
//!
//! A [`FaultRule`] in JSON: `{"verb":"list","resource":"secrets","namespace":null,
//! "probability":0.5,"count":3,"action":{"type":"too_many_requests","retry_after_seconds":2}}`;
//! action types: `latency` (`ms`), `too_many_requests` (`retry_after_seconds`),
//! `internal_error`, `service_unavailable`, `drop_connection`, `conflict` (409
//! reason `Conflict`, "the object has been modified"; fires on create, update,
//! patch and delete only). Verbs: get, list, watch, create, update, patch,
//! delete, deletecollection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Method, Response};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::api::{self, App, error_response, value_response};
use crate::error::ApiError;
use crate::faults::{FaultRule, OutageMode};

fn refusing(m: &Option<OutageMode>) -> bool {
    *m == Some(OutageMode::Refuse)
}

async fn bind_retry(addr: SocketAddr, shutdown: &mut watch::Receiver<bool>) -> Option<TcpListener> {
    loop {
        if *shutdown.borrow() {
            return None;
        }
        match TcpListener::bind(addr).await {
            Ok(l) => return Some(l),
            Err(e) => {
                tracing::debug!("rebinding {addr}: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serve until `shutdown` becomes true.
pub(crate) async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let addr = app.addr;
    let mut outage = app.faults.outage_rx();
    let mut listener = Some(listener);
    loop {
        if *shutdown.borrow() {
            return;
        }
        if refusing(&outage.borrow_and_update()) {
            listener = None;
            tokio::select! {
                _ = outage.wait_for(|m| !refusing(m)) => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        let l = match listener.take() {
            Some(l) => l,
            None => match bind_retry(addr, &mut shutdown).await {
                Some(l) => l,
                None => return,
            },
        };
        tokio::select! {
            res = l.accept() => {
                listener = Some(l);
                match res {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(connection(app.clone(), stream, shutdown.clone()));
                    }
                    Err(e) => {
                        tracing::debug!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            _ = outage.changed() => {
                listener = if refusing(&outage.borrow()) { None } else { Some(l) };
            }
            _ = shutdown.changed() => return,
        }
    }
}

async fn connection(
    app: Arc<App>,
    stream: tokio::net::TcpStream,
    mut shutdown: watch::Receiver<bool>,
) {
    let drop_conn = Arc::new(Notify::new());
    let mut outage = app.faults.outage_rx();
    let d = drop_conn.clone();
    let svc = service_fn(move |req| {
        let app = app.clone();
        let d = d.clone();
        async move { Ok::<Response<Body>, std::convert::Infallible>(api::handle(app, req, d).await) }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::select! {
        r = conn => {
            if let Err(e) = r {
                tracing::trace!("connection: {e}");
            }
        }
        _ = drop_conn.notified() => {}
        _ = outage.wait_for(refusing) => {}
        _ = shutdown.changed() => {}
    }
}

#[derive(serde::Deserialize, Default)]
struct OutageReq {
    seconds: Option<f64>,
    #[serde(default)]
    mode: OutageMode,
}

/// `/_emulator/...` endpoints (never counted, never faulted).
pub(crate) fn admin(app: &App, method: &Method, path: &str, body: &[u8]) -> Response<Body> {
    match admin_inner(app, method, path.trim_end_matches('/'), body) {
        Ok(v) => value_response(200, &v),
        Err(e) => error_response(&e),
    }
}

fn body_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

fn admin_inner(app: &App, method: &Method, path: &str, body: &[u8]) -> Result<Value, ApiError> {
    let f = &app.faults;
    let ok = json!({"ok": true});
    match (method.as_str(), path) {
        ("GET", "healthz") => Ok(ok),
        ("GET", "counters") => Ok(app.counters.snapshot().to_json()),
        ("POST", "reset-counters") | ("DELETE", "counters") => {
            app.counters.reset();
            Ok(ok)
        }
        ("GET", "stats") => {
            let s = app.store();
            let mut objects = serde_json::Map::new();
            for t in s.all_types() {
                let n = s.count(&t.id());
                if n > 0 {
                    objects.insert(crate::error::qualified(&t.group, &t.plural), json!(n));
                }
            }
            Ok(json!({"resourceVersion": s.rv.to_string(), "objects": objects}))
        }
        ("GET", "faults") => {
            let rules: Vec<Value> = f
                .rules()
                .into_iter()
                .map(|(id, r)| json!({"id": id, "rule": r}))
                .collect();
            Ok(json!({"rules": rules, "outage": f.outage()}))
        }
        ("POST", "faults") => {
            let v = body_json(body)?;
            let rules: Vec<FaultRule> = if v.is_array() {
                serde_json::from_value(v)
            } else {
                serde_json::from_value(v).map(|r| vec![r])
            }
            .map_err(|e| ApiError::bad_request(format!("invalid fault rule: {e}")))?;
            let ids: Vec<u64> = rules.into_iter().map(|r| f.add(r)).collect();
            Ok(json!({"ids": ids}))
        }
        ("DELETE", "faults") | ("POST", "faults/clear") => {
            f.clear();
            Ok(ok)
        }
        ("DELETE", p) if p.starts_with("faults/") => {
            let id: u64 = p["faults/".len()..]
                .parse()
                .map_err(|_| ApiError::bad_request("invalid rule id"))?;
            Ok(json!({"removed": f.remove(id)}))
        }
        ("POST", "watches/cut") => {
            let v = body_json(body)?;
            match v.get("every_seconds") {
                Some(Value::Null) => f.cut_watches_every(None),
                Some(s) => {
                    let secs = s
                        .as_f64()
                        .ok_or_else(|| ApiError::bad_request("every_seconds must be a number"))?;
                    f.cut_watches_every((secs > 0.0).then(|| Duration::from_secs_f64(secs)));
                }
                None => f.cut_watches(),
            }
            Ok(ok)
        }
        ("POST", "watches/expire") => {
            let v = body_json(body)?;
            f.expire_next_watches(v.get("count").and_then(Value::as_u64).unwrap_or(1));
            Ok(ok)
        }
        ("POST", "outage") => {
            let req: OutageReq = serde_json::from_value(body_json(body)?)
                .map_err(|e| ApiError::bad_request(format!("invalid outage request: {e}")))?;
            match req.seconds {
                Some(s) if s > 0.0 => f.outage_for(Duration::from_secs_f64(s), req.mode),
                _ if req.mode == OutageMode::Refuse => {
                    return Err(ApiError::bad_request(
                        "an outage in mode \"refuse\" closes this endpoint too: give \"seconds\"",
                    ));
                }
                _ => f.outage_start(req.mode),
            }
            Ok(ok)
        }
        ("POST", "outage/end") | ("DELETE", "outage") => {
            f.outage_end();
            Ok(ok)
        }
        _ => Err(ApiError::new(
            404,
            "NotFound",
            format!("no admin endpoint {method} /_emulator/{path}"),
        )),
    }
}
