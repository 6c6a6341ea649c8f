//! Logging set-up, systemd's service notification, and the `/metrics` answer of both programs.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls do nothing.
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// A `/metrics` answer: the OpenMetrics text, or 500 with the encoding error (the box's and the
/// centre ingester's endpoints).
pub fn metrics_response(encoded: Result<String, String>) -> impl IntoResponse {
    match encoded {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            body,
        ),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/plain")], e),
    }
}

/// systemd's service notification (`sd_notify`), spoken directly on `$NOTIFY_SOCKET`: `READY=1` once
/// the cameras are open, `WATCHDOG=1` from the analysis loop at half the unit's `WatchdogSec`, so a
/// loop that hangs is restarted by systemd. Without `$NOTIFY_SOCKET` (not under systemd) it does
/// nothing.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<(std::os::unix::net::UnixDatagram, std::os::unix::net::SocketAddr)>,
    /// Half of `$WATCHDOG_USEC`, when the unit has a watchdog.
    every: Option<Duration>,
    last: Option<Instant>,
}

impl Notifier {
    pub fn from_env() -> Self {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::net::{SocketAddr, UnixDatagram};
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
            let addr = match bytes.strip_prefix(b"@") {
                Some(name) => SocketAddr::from_abstract_name(name).ok()?,
                None => SocketAddr::from_pathname(std::path::Path::new(&path)).ok()?,
            };
            Some((UnixDatagram::unbound().ok()?, addr))
        });
        let every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(|us| Duration::from_micros(us / 2));
        Self { socket, every, last: None }
    }

    fn send(&self, state: &str) {
        if let Some((sock, addr)) = &self.socket
            && let Err(e) = sock.send_to_addr(state.as_bytes(), addr)
        {
            tracing::warn!(error = %e, state, "sd_notify failed");
        }
    }

    pub fn ready(&self) {
        self.send("READY=1");
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// Pets the watchdog when it is due.
    pub fn alive(&mut self) {
        let Some(every) = self.every else { return };
        if self.last.is_none_or(|t| t.elapsed() >= every) {
            self.send("WATCHDOG=1");
            self.last = Some(Instant::now());
        }
    }
}
