//! Operations endpoint (axum): `/metrics` (Prometheus / OpenMetrics text), `/healthz` (the process
//! answers), `/readyz` (every camera delivered a frame within the readiness window). Binds where
//! configured (`[http] listen`, `--http`), 127.0.0.1 in the example: only aggregates and health leave
//! the box.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;

use crate::snapshot::{Snapshots, encode_jpeg, render};
use crate::telemetry::Metrics;

/// `[http]` in the site configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on, e.g. `127.0.0.1:9464`.
    pub listen: SocketAddr,
    /// Serve `/snapshot/<camera>.jpg`. Off by default: images leave the box only when asked for.
    #[serde(default)]
    pub snapshots: bool,
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    snapshots: Option<Snapshots>,
    /// Snapshot renders and JPEG encodes at once, on blocking threads: a burst of snapshot requests
    /// queues here instead of stalling the task that answers /healthz.
    encoders: Arc<tokio::sync::Semaphore>,
}

/// Snapshot encodes running at once: one, so that a core stays free for the analysis and the answers.
const ENCODERS: usize = 1;

#[derive(Debug, thiserror::Error)]
#[error("http.listen {addr}: {message}")]
pub struct HttpError {
    pub addr: SocketAddr,
    pub message: String,
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("probe {url}: not an http://HOST:PORT/PATH address on this box")]
    Url { url: String },
    #[error("probe {url}: {message}")]
    Io { url: String, message: String },
    #[error("probe {url}: HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
}

/// `junction probe http://127.0.0.1:9464/healthz`: one plain HTTP/1.1 GET, success on status 200. For
/// container health checks where no curl is installed (the Jetson image).
pub fn probe(url: &str, timeout: std::time::Duration) -> Result<String, ProbeError> {
    use std::io::{Read, Write};
    let bad_url = || ProbeError::Url { url: url.to_owned() };
    let rest = url.strip_prefix("http://").ok_or_else(bad_url)?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let addr: SocketAddr = authority.parse().map_err(|_| bad_url())?;
    let io = |e: std::io::Error| ProbeError::Io { url: url.to_owned(), message: e.to_string() };
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n").map_err(io)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(io)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| ProbeError::Io { url: url.to_owned(), message: "no HTTP status line in the answer".into() })?;
    let body = body.trim().to_owned();
    if status == 200 { Ok(body) } else { Err(ProbeError::Status { url: url.to_owned(), status, body }) }
}

/// Handle on the server thread. Dropping it is the server's part of the shutdown: it stops taking
/// connections, finishes the requests in flight, and its thread ends.
pub struct HttpServer {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl HttpServer {
    /// Binds now (so that a taken port is an error before start) and serves on its own thread.
    pub fn start(addr: SocketAddr, metrics: Arc<Metrics>, snapshots: Option<Snapshots>) -> Result<Self, HttpError> {
        let err = |message: String| HttpError { addr, message };
        let std_listener = std::net::TcpListener::bind(addr).map_err(|e| err(e.to_string()))?;
        std_listener.set_nonblocking(true).map_err(|e| err(e.to_string()))?;
        let bound = std_listener.local_addr().map_err(|e| err(e.to_string()))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("junction-http".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => return tracing::error!(error = %e, "http: cannot start the runtime"),
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => return tracing::error!(error = %e, "http: listener"),
                    };
                    let app = Router::new()
                        .route("/metrics", get(metrics_handler))
                        .route("/healthz", get(|| async { "ok\n" }))
                        .route("/readyz", get(ready_handler))
                        .route("/snapshot/{file}", get(snapshot_handler))
                        .with_state(AppState {
                            metrics,
                            snapshots,
                            encoders: Arc::new(tokio::sync::Semaphore::new(ENCODERS)),
                        });
                    let stopped = async {
                        let _ = rx.await;
                    };
                    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
                        tracing::error!(error = %e, "http server stopped");
                    }
                });
            })
            .map_err(|e| err(e.to_string()))?;
        tracing::info!(addr = %bound, "http: /metrics /healthz /readyz /snapshot/<camera>.jpg");
        Ok(Self { addr: bound, shutdown: Some(tx), thread: Some(thread) })
    }
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    match s.metrics.encode() {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            body,
        ),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/plain")], e),
    }
}

async fn ready_handler(State(s): State<AppState>) -> impl IntoResponse {
    match s.metrics.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
    }
}

async fn snapshot_handler(State(s): State<AppState>, Path(file): Path<String>) -> axum::response::Response {
    let text = |code: StatusCode, msg: String| (code, [(header::CONTENT_TYPE, "text/plain")], msg).into_response();
    let Some(snapshots) = s.snapshots else {
        return text(StatusCode::NOT_FOUND, "snapshots are off: set [http] snapshots = true\n".into());
    };
    let Some(camera) = file.strip_suffix(".jpg") else {
        return text(StatusCode::NOT_FOUND, "ask for /snapshot/<camera>.jpg\n".into());
    };
    let Ok(_permit) = s.encoders.acquire().await else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into());
    };
    // Copying the frame out (megabytes at 1080p), drawing and encoding all run on a blocking thread.
    let camera = camera.to_owned();
    let encoded = tokio::task::spawn_blocking(move || {
        let snap = snapshots.lock().ok().and_then(|m| m.get(&camera).cloned()).filter(|s| s.width > 0);
        snap.map(|snap| encode_jpeg(&render(&snap), snap.width, snap.height)).ok_or(camera)
    })
    .await;
    match encoded {
        Ok(Ok(Ok(jpeg))) => (StatusCode::OK, [(header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response(),
        Ok(Err(camera)) => text(StatusCode::NOT_FOUND, format!("no frame from camera {camera:?} yet\n")),
        Ok(Ok(Err(e))) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding failed: {e}\n")),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding failed: {e}\n")),
    }
}
