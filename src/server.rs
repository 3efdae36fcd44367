//! `/metrics`, `/livez` and `/readyz` (read-only; no mutating endpoints).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::telemetry::Metrics;

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

/// The router (separate from serving, for tests).
pub fn router(metrics: Arc<Metrics>, ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, ready })
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "watches not synced yet")
    }
}

/// A client must send its request headers within this time (slow-loris protection).
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves until `shutdown` resolves. HTTP/1.1 only, with a header-read timeout; in-flight requests
/// finish on shutdown.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding {addr}: {e}"))?;
    serve_on(listener, router(metrics, ready), shutdown).await
}

async fn serve_on(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;
    tokio::pin!(shutdown);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
        };
        let app = app.clone();
        conns.spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    app.clone().oneshot(req.map(axum::body::Body::new))
                });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(60), conn).await;
        });
    }
    // Let in-flight requests finish briefly, then stop.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}
#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readyz_flips_and_metrics_are_openmetrics() {
        let metrics = Metrics::new();
        metrics.reconciled("success");
        metrics.set_secretref_state(
            "ns/a",
            None,
            Some(true),
            Some(chrono::Utc::now().timestamp() + 3600),
        );
        let ready = Arc::new(AtomicBool::new(false));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(metrics.clone(), ready.clone());
        tokio::spawn(serve_on(listener, app, std::future::pending()));
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let get = |path: &str| client.get(format!("http://{addr}{path}")).send();
        assert_eq!(get("/livez").await.unwrap().status(), 200);
        assert_eq!(get("/readyz").await.unwrap().status(), 503);
        ready.store(true, Ordering::Relaxed);
        assert_eq!(get("/readyz").await.unwrap().status(), 200);
        let resp = get("/metrics").await.unwrap();
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text")
        );
        let body = resp.text().await.unwrap();
        assert!(
            body.trim_end().ends_with("# EOF"),
            "OpenMetrics ends with # EOF"
        );
        let sample =
            regex::Regex::new(r#"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eEInfa]+$"#).unwrap();
        for line in body.lines() {
            assert!(
                line.starts_with('#') || sample.is_match(line),
                "not an OpenMetrics line: {line}"
            );
        }
        for name in [
            "secretsync_reconciles_total",
            "secretsync_secretrefs{ready=\"true\"} 1",
            "secretsync_nearest_expiry_seconds",
            "secretsync_reconcile_duration_seconds_bucket",
        ] {
            assert!(body.contains(name), "missing {name}");
        }
        assert_eq!(get("/metrics").await.unwrap().status(), 200);
        assert_eq!(
            client
                .post(format!("http://{addr}/metrics"))
                .send()
                .await
                .unwrap()
                .status(),
            405,
            "no mutating endpoints"
        );
        // A client that never finishes its headers is cut off.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(
            HEADER_READ_TIMEOUT + std::time::Duration::from_secs(3),
            slow.read_to_end(&mut buf),
        )
        .await;
        assert!(
            closed.is_ok(),
            "a slow client must be disconnected after the header-read timeout"
        );
    }
}
