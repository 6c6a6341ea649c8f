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

use crate::console::Console;
use crate::snapshot::{Snapshots, encode_jpeg, render};
use crate::telemetry::Metrics;
use junction_common::telemetry::metrics_response;

pub use junction_schema::site::HttpConfig;

/// Whether a request's `Host` names this box: an address, `localhost`, or one of `allowed` (any port).
/// No `Host` (HTTP/1.0) passes: browsers always send one, and only a browser can be rebound.
pub fn host_allowed(headers: &axum::http::HeaderMap, allowed: &[String]) -> bool {
    let Some(host) = headers.get(header::HOST) else { return true };
    let Ok(host) = host.to_str() else { return false };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            _ => host,
        },
    };
    name.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

async fn check_host(
    State(allowed): State<Arc<Vec<String>>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if host_allowed(req.headers(), &allowed) {
        next.run(req).await
    } else {
        (StatusCode::FORBIDDEN, "this box does not answer to that host name (http.allowed_hosts)\n").into_response()
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    snapshots: Option<Snapshots>,
    /// Snapshot renders and JPEG encodes at once, on blocking threads: a burst of snapshot requests
    /// queues here instead of stalling the task that answers /healthz.
    encoders: Arc<tokio::sync::Semaphore>,
    /// The console's sessions gate the snapshots when it runs.
    console: Option<Arc<Console>>,
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
    pub fn start(
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        snapshots: Option<Snapshots>,
        console: Option<Arc<Console>>,
        allowed_hosts: Vec<String>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Self, HttpError> {
        let with_console = console.is_some();
        let err = |message: String| HttpError { addr, message };
        let std_listener = std::net::TcpListener::bind(addr).map_err(|e| err(e.to_string()))?;
        std_listener.set_nonblocking(true).map_err(|e| err(e.to_string()))?;
        let bound = std_listener.local_addr().map_err(|e| err(e.to_string()))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("junction-http".into())
            .spawn(move || {
                // Its blocking pool (snapshot encodes, logins, exports) carries the same thread name.
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .thread_name("junction-http")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => return tracing::error!(error = %e, "http: cannot start the runtime"),
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => return tracing::error!(error = %e, "http: listener"),
                    };
                    let state = AppState {
                        metrics,
                        snapshots,
                        encoders: Arc::new(tokio::sync::Semaphore::new(ENCODERS)),
                        console: console.clone(),
                    };
                    // Images and the console answer only to this box's names (DNS rebinding);
                    // monitoring answers to any.
                    let mut guarded =
                        Router::new().route("/snapshot/{file}", get(snapshot_handler)).with_state(state.clone());
                    if let Some(c) = console {
                        guarded = guarded.merge(crate::console::router(c));
                    }
                    let guarded =
                        guarded.layer(axum::middleware::from_fn_with_state(Arc::new(allowed_hosts), check_host));
                    let app = Router::new()
                        .route("/metrics", get(metrics_handler))
                        .route("/healthz", get(|| async { "ok\n" }))
                        .route("/readyz", get(ready_handler))
                        .with_state(state)
                        .merge(guarded);
                    if let Some(tls) = tls {
                        return serve_tls(listener, app, tls, rx).await;
                    }
                    let stopped = async {
                        let _ = rx.await;
                    };
                    let app = app.into_make_service_with_connect_info::<SocketAddr>();
                    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
                        tracing::error!(error = %e, "http server stopped");
                    }
                });
            })
            .map_err(|e| err(e.to_string()))?;
        if with_console {
            tracing::info!(addr = %bound, "http: console at http://{bound}/ ; /metrics /healthz /readyz /snapshot/<camera>.jpg");
        } else {
            tracing::info!(addr = %bound, "http: /metrics /healthz /readyz /snapshot/<camera>.jpg");
        }
        Ok(Self { addr: bound, shutdown: Some(tx), thread: Some(thread) })
    }
}

/// HTTPS: each connection's TLS handshake (10 s at most: a client that never finishes it holds
/// nothing), then HTTP/1.1 to the same router, with the peer's address for the login limit. At `stop`
/// no new connection is taken; those open get 5 s to finish (a live stream would hold on for ever).
async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Arc<rustls::ServerConfig>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                conns.spawn(async move {
                    let Ok(Ok(stream)) = tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                        let mut app = app.clone();
                        async move { tower_service::Service::call(&mut app, req).await }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
                });
            }
        }
        while conns.try_join_next().is_some() {}
    }
    let _ =
        tokio::time::timeout(std::time::Duration::from_secs(5), async { while conns.join_next().await.is_some() {} })
            .await;
    conns.abort_all();
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    metrics_response(s.metrics.encode())
}

async fn ready_handler(State(s): State<AppState>) -> impl IntoResponse {
    match s.metrics.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
    }
}

async fn snapshot_handler(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    Path(file): Path<String>,
) -> axum::response::Response {
    let text = |code: StatusCode, msg: String| (code, [(header::CONTENT_TYPE, "text/plain")], msg).into_response();
    if let Some(c) = &s.console {
        if let Err(refused) = c.authorize(&headers, false) {
            return refused.into_response();
        }
        c.snapshots_served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let Some(snapshots) = s.snapshots else {
        return text(
            StatusCode::NOT_FOUND,
            "snapshots are off: set [http] snapshots = true (or console = true)\n".into(),
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_host(h: &str) -> axum::http::HeaderMap {
        let mut m = axum::http::HeaderMap::new();
        m.insert(header::HOST, h.parse().expect("header"));
        m
    }

    #[test]
    fn hosts_are_addresses_localhost_or_named() {
        let named = vec!["box-7.city.example".to_owned()];
        for ok in ["127.0.0.1:9464", "10.1.2.3", "[::1]:9464", "LOCALHOST:80", "box-7.city.example:9464"] {
            assert!(host_allowed(&with_host(ok), &named), "{ok}");
        }
        for bad in ["evil.example", "evil.example:9464", "localhost.evil.example", "box-7.city.example.evil:1"] {
            assert!(!host_allowed(&with_host(bad), &named), "{bad}");
        }
        assert!(host_allowed(&axum::http::HeaderMap::new(), &named), "no Host: not a browser");
    }
}
