//! Operations endpoint (axum): `/metrics` (Prometheus / OpenMetrics text), `/healthz` (the process
//! answers), `/readyz` (every camera delivered a frame within the readiness window). Binds where
//! configured (`[http] listen`, `--http`), 127.0.0.1 in the example: only aggregates and health leave
//! the box.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;

use crate::telemetry::Metrics;

/// `[http]` in the site configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on, e.g. `127.0.0.1:9464`.
    pub listen: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
#[error("http.listen {addr}: {message}")]
pub struct HttpError {
    pub addr: SocketAddr,
    pub message: String,
}

/// Handle on the server thread; the server stops with the process.
pub struct HttpServer {
    pub addr: SocketAddr,
}

impl HttpServer {
    /// Binds now (so that a taken port is an error before start) and serves on its own thread.
    pub fn start(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<Self, HttpError> {
        let err = |message: String| HttpError { addr, message };
        let std_listener = std::net::TcpListener::bind(addr).map_err(|e| err(e.to_string()))?;
        std_listener.set_nonblocking(true).map_err(|e| err(e.to_string()))?;
        let bound = std_listener.local_addr().map_err(|e| err(e.to_string()))?;
        std::thread::Builder::new()
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
                        .with_state(metrics);
                    if let Err(e) = axum::serve(listener, app).await {
                        tracing::error!(error = %e, "http server stopped");
                    }
                });
            })
            .map_err(|e| err(e.to_string()))?;
        tracing::info!(addr = %bound, "http: /metrics /healthz /readyz");
        Ok(Self { addr: bound })
    }
}

async fn metrics_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    match m.encode() {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            body,
        ),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/plain")], e),
    }
}

async fn ready_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    match m.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
    }
}
