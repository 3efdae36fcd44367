//! WATCH streams: newline-delimited JSON events in resourceVersion order,
//! bookmarks, timeouts, 410 Gone for expired resourceVersions, selector
//! transitions (an object that stops matching is sent as DELETED).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use http::Response;
use serde_json::json;
use tokio::sync::mpsc;

use crate::api::{App, json_headers};
use crate::error::ApiError;
use crate::resources::ResId;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{Event, EventType, Obj, WatchGap};

pub(crate) struct WatchParams {
    pub rid: ResId,
    pub api_version: String,
    pub kind: String,
    pub ns: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// None: start with ADDED events for the current state.
    pub rv: Option<u64>,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
    pub meta_only: bool,
}

impl WatchParams {
    fn visible(&self, o: &Obj) -> bool {
        if let Some(ns) = &self.ns
            && o.namespace() != Some(ns.as_str())
        {
            return false;
        }
        self.labels.matches(&o.v) && self.fields.matches(&o.v)
    }

    fn event_type(&self, ev: &Event) -> Option<EventType> {
        let now = self.visible(&ev.obj);
        let was = ev.old.as_ref().is_some_and(|o| self.visible(o));
        match ev.etype {
            EventType::Added => now.then_some(EventType::Added),
            EventType::Deleted => (was || now).then_some(EventType::Deleted),
            EventType::Modified => match (was, now) {
                (true, true) => Some(EventType::Modified),
                (false, true) => Some(EventType::Added),
                (true, false) => Some(EventType::Deleted),
                (false, false) => None,
            },
        }
    }

    fn push(&self, buf: &mut BytesMut, etype: &str, obj: &Obj) {
        let body = obj.render(self.meta_only, &self.api_version);
        push_line(buf, etype, &body);
    }

    fn push_bookmark(&self, buf: &mut BytesMut, rv: u64, initial_end: bool) {
        let (kind, av) = if self.meta_only {
            ("PartialObjectMetadata", "meta.k8s.io/v1")
        } else {
            (self.kind.as_str(), self.api_version.as_str())
        };
        let mut md = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            md["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let o = json!({"kind": kind, "apiVersion": av, "metadata": md});
        push_line(buf, "BOOKMARK", o.to_string().as_bytes());
    }
}

fn push_line(buf: &mut BytesMut, etype: &str, obj: &[u8]) {
    buf.reserve(obj.len() + 32);
    buf.put_slice(b"{\"type\":\"");
    buf.put_slice(etype.as_bytes());
    buf.put_slice(b"\",\"object\":");
    buf.put_slice(obj);
    buf.put_slice(b"}\n");
}

fn expired_line(msg: &str) -> Bytes {
    let mut buf = BytesMut::new();
    let st = ApiError::gone(msg).to_status();
    push_line(&mut buf, "ERROR", st.to_string().as_bytes());
    buf.freeze()
}

fn stream_response(rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    json_headers(&mut r);
    r
}

/// A watch stream that only carries a 410 Gone ERROR event.
pub(crate) fn expired_response(rv: u64) -> Response<Body> {
    let (tx, rx) = mpsc::channel(1);
    let _ = tx.try_send(expired_line(&format!("too old resource version: {rv}")));
    stream_response(rx)
}

/// Start a watch; the stream is fed by a background task.
pub(crate) fn start(app: Arc<App>, p: WatchParams) -> Result<Response<Body>, ApiError> {
    let (initial, start_rv, notify) = {
        let s = app.store();
        let notify = s.subscribe(&p.rid).ok_or_else(ApiError::path_not_found)?;
        if p.rv.is_none() || p.send_initial_events {
            let (items, _) = s.list(&p.rid, p.ns.as_deref(), None, 0, &|o| p.visible(o));
            (items, s.rv, notify)
        } else {
            (vec![], p.rv.unwrap_or(0), notify)
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(32);
    tokio::spawn(run(app, p, tx, initial, start_rv, notify));
    Ok(stream_response(rx))
}

async fn run(
    app: Arc<App>,
    p: WatchParams,
    tx: mpsc::Sender<Bytes>,
    initial: Vec<Arc<Obj>>,
    start_rv: u64,
    mut notify: tokio::sync::watch::Receiver<u64>,
) {
    let mut cut = app.faults.cut_rx();
    cut.borrow_and_update();
    let mut limit = p.timeout;
    if let Some(every) = app.faults.cut_every() {
        limit = Some(limit.map_or(every, |l| l.min(every)));
    }
    let deadline = tokio::time::Instant::now() + limit.unwrap_or(Duration::from_secs(3600));
    let mut buf = BytesMut::new();
    for o in &initial {
        p.push(&mut buf, "ADDED", o);
        if buf.len() > 256 * 1024 && tx.send(buf.split().freeze()).await.is_err() {
            return;
        }
    }
    if p.send_initial_events && p.bookmarks {
        p.push_bookmark(&mut buf, start_rv, true);
    }
    drop(initial);
    let mut cursor = start_rv;
    let mut caught = start_rv;
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + app.bookmark_interval,
        app.bookmark_interval,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        notify.borrow_and_update();
        let res = app.store().events_since(&p.rid, cursor);
        match res {
            Ok((events, c)) => {
                for ev in &events {
                    cursor = ev.rv;
                    if let Some(t) = p.event_type(ev) {
                        p.push(&mut buf, t.as_str(), &ev.obj);
                    }
                }
                caught = caught.max(c);
            }
            Err(WatchGap::Gone) => {
                if !buf.is_empty() {
                    let _ = tx.send(buf.split().freeze()).await;
                }
                return;
            }
            Err(WatchGap::TooOld { oldest }) => {
                buf.put_slice(&expired_line(&format!(
                    "too old resource version: {cursor} ({oldest})"
                )));
                let _ = tx.send(buf.split().freeze()).await;
                return;
            }
        }
        if !buf.is_empty() && tx.send(buf.split().freeze()).await.is_err() {
            return;
        }
        tokio::select! {
            r = notify.changed() => {
                if r.is_err() {
                    // resource type removed (CRD deleted): end the stream
                    return;
                }
            }
            _ = tick.tick(), if p.bookmarks => {
                p.push_bookmark(&mut buf, caught, false);
            }
            _ = tokio::time::sleep_until(deadline) => return,
            _ = cut.changed() => return,
            _ = tx.closed() => return,
        }
    }
}
