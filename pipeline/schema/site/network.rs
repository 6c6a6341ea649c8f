//! `[mqtt]` and `[http]`: the sections the box and the centre both read. Pure types and checks; the
//! files they name (TLS, passwords) are read at start-up by the programs.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// Seconds between MQTT keep-alive pings.
pub const DEFAULT_KEEP_ALIVE_S: u64 = 30;
/// Seconds the box keeps publishing its outbox at shutdown.
pub const DEFAULT_DRAIN_TIMEOUT_S: f64 = 10.0;

/// `[mqtt]` in the site configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host[:port]` (1883) or `mqtts://host[:port]` (TLS, 8883).
    pub url: String,
    /// TLS: PEM file of the CA(s) that signed the broker's certificate (default: the system's,
    /// /etc/ssl/certs/ca-certificates.crt).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// TLS client certificate and key (PEM), for brokers that authenticate clients by certificate.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    #[serde(default)]
    pub username: Option<String>,
    /// The password, read from this file (first line) ...
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// ... or from this environment variable. Never from the configuration itself, never logged.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Default: `junction-<site>`. Must be unique per broker: it names the persistent session.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Seconds between keep-alive pings.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u64,
    /// At shutdown, how long to keep publishing the outbox before leaving it for the next start.
    #[serde(default = "default_drain")]
    pub drain_timeout_s: f64,
    /// MQTT protocol version: "3.1.1" (default) or "5".
    #[serde(default)]
    pub protocol: Protocol,
    /// Also publish every per-vehicle event (crossings, zone enter/exit, movements) to
    /// `junction/v1/<site>/<camera>/events`, through the same outbox, after the reports.
    #[serde(default)]
    pub events: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Protocol {
    #[default]
    #[serde(rename = "3.1.1")]
    #[cfg_attr(feature = "clap", value(name = "3.1.1"))]
    V311,
    #[serde(rename = "5")]
    #[cfg_attr(feature = "clap", value(name = "5"))]
    V5,
}

fn default_keep_alive() -> u64 {
    DEFAULT_KEEP_ALIVE_S
}
fn default_drain() -> f64 {
    DEFAULT_DRAIN_TIMEOUT_S
}

impl MqttConfig {
    /// A connection to `url` with every other field at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ca_file: None,
            client_cert: None,
            client_key: None,
            username: None,
            password_file: None,
            password_env: None,
            client_id: None,
            keep_alive_s: DEFAULT_KEEP_ALIVE_S,
            drain_timeout_s: DEFAULT_DRAIN_TIMEOUT_S,
            protocol: Protocol::V311,
            events: false,
        }
    }

    /// What is wrong with this section without reading a file, as (field, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        match parse_broker_url(&self.url) {
            Err(e) => out.push(("mqtt.url".to_owned(), e.to_string())),
            Ok(b) if !b.tls && (self.ca_file.is_some() || self.client_cert.is_some()) => out.push((
                "mqtt.url".to_owned(),
                BrokerUrlError { url: self.url.clone(), reason: "ca_file/client_cert need mqtts://".into() }
                    .to_string(),
            )),
            Ok(_) => {}
        }
        if !(self.drain_timeout_s.is_finite() && (0.0..=3600.0).contains(&self.drain_timeout_s)) {
            out.push(("mqtt.drain_timeout_s".into(), "must be 0 to 3600 seconds".into()));
        }
        // MQTT carries it in 16 bits; rumqttc refuses (panics on) less than 5 s with MQTT 5, and 0
        // would turn off the broker's check that the box is alive (its last will).
        if !(5..=65_535).contains(&self.keep_alive_s) {
            out.push((
                "mqtt.keep_alive_s".into(),
                format!("{} is out of range: 5 to 65535 seconds", self.keep_alive_s),
            ));
        }
        out
    }
}

/// A broker address, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

/// A broker URL that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrlError {
    pub url: String,
    pub reason: String,
}

impl std::fmt::Display for BrokerUrlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mqtt.url {:?}: {}", self.url, self.reason)
    }
}

impl std::error::Error for BrokerUrlError {}

/// Parses `mqtt://host[:port]` or `tcp://…` (port 1883), `mqtts://…` or `ssl://…` (TLS, port 8883).
pub fn parse_broker_url(url: &str) -> Result<Broker, BrokerUrlError> {
    let bad = |reason: &str| BrokerUrlError { url: url.to_owned(), reason: reason.to_owned() };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("expected mqtt://host[:port]"))?;
    let tls = match scheme {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" => true,
        other => return Err(bad(&format!("unsupported scheme {other:?} (mqtt, mqtts)"))),
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(bad("credentials in the URL are not supported (they would be logged)"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad(&format!("port {p:?} is not a number 1-65535")))?),
        None => (authority, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if port == 0 {
        return Err(bad("port 0"));
    }
    Ok(Broker { host: host.to_owned(), port, tls })
}

/// `[http]` in the site configuration.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on, e.g. `127.0.0.1:9464`.
    pub listen: SocketAddr,
    /// Serve `/snapshot/<camera>.jpg` without the console. Off by default: images leave the box only
    /// when asked for.
    #[serde(default)]
    pub snapshots: bool,
    /// The operator console at `/` (live tiles, counts, the rules editor). On by default; on a
    /// non-loopback address only with a password.
    #[serde(default = "console_default")]
    pub console: bool,
    /// Argon2 hash (PHC string from `junction hash-password`) of the console's password.
    pub password_hash: Option<String>,
    /// A file holding that hash on its first line (a mounted secret), instead of `password_hash`.
    pub password_file: Option<PathBuf>,
    /// Host names the console and snapshots answer to, besides addresses and `localhost` (a request
    /// naming any other host is refused: DNS rebinding). E.g. `["box-7.city.example"]`.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// A console password sent over plain HTTP off loopback crosses the network readable: refused
    /// unless TLS is put in front (a reverse proxy, an SSH tunnel) and this says so.
    #[serde(default)]
    pub plain_http_login: bool,
    /// Serve HTTPS: the certificate chain (PEM) and its private key (PEM). The session cookie is then
    /// `Secure`, and a console password off loopback needs nothing more.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

fn console_default() -> bool {
    true
}

impl std::fmt::Debug for HttpConfig {
    // The hash stays out of logs and error messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("listen", &self.listen)
            .field("snapshots", &self.snapshots)
            .field("console", &self.console)
            .field("password_hash", &self.password_hash.as_ref().map(|_| "(set)"))
            .field("password_file", &self.password_file)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("plain_http_login", &self.plain_http_login)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .finish()
    }
}

impl HttpConfig {
    /// Metrics and health only on `listen`, everything else at its default.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            snapshots: false,
            console: console_default(),
            password_hash: None,
            password_file: None,
            allowed_hosts: Vec::new(),
            plain_http_login: false,
            tls_cert: None,
            tls_key: None,
        }
    }

    /// What is wrong with this section without reading a file, as (field, message). The console off
    /// loopback needs a login, and a login there needs TLS (here or in front): judged from which
    /// fields are set; their files are read and checked at start-up.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let login = self.password_hash.is_some() || self.password_file.is_some();
        if self.password_hash.is_some() && self.password_file.is_some() {
            out.push(("http.password_hash".into(), "give one of password_hash or password_file".into()));
        }
        let tls = self.tls_cert.is_some() || self.tls_key.is_some();
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            out.push(("http.tls_cert".into(), "tls_cert and tls_key go together".into()));
        }
        let open = self.console && !self.listen.ip().is_loopback();
        if open && !login {
            out.push((
                "http.listen".into(),
                format!(
                    "{}: the console is refused on a non-loopback address without a login: set \
                     http.password_hash or http.password_file (junction hash-password), or console = false",
                    self.listen
                ),
            ));
        } else if open && !self.plain_http_login && !tls {
            out.push((
                "http.listen".into(),
                format!(
                    "{}: the console's password would cross the network in plain HTTP: put TLS in front (a \
                     reverse proxy, or an SSH tunnel to a loopback address) and set http.plain_http_login = true, \
                     or serve it here with http.tls_cert and http.tls_key",
                    self.listen
                ),
            ));
        }
        for h in &self.allowed_hosts {
            let ok =
                !h.is_empty() && h.len() <= 253 && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !ok {
                out.push(("http.allowed_hosts".into(), format!("{h:?} is not a host name")));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_stated_once_and_hold_for_an_empty_section() {
        let m: MqttConfig = toml_like(r#"{"url": "mqtt://h"}"#);
        assert_eq!((m.keep_alive_s, m.drain_timeout_s, m.protocol), (30, 10.0, Protocol::V311));
        let n = MqttConfig::new("mqtt://h");
        assert_eq!((n.keep_alive_s, n.drain_timeout_s, n.protocol), (m.keep_alive_s, m.drain_timeout_s, m.protocol));
        let h: HttpConfig = toml_like(r#"{"listen": "127.0.0.1:9464"}"#);
        assert!(h.console && !h.snapshots && h.problems().is_empty());
    }

    #[test]
    fn pure_checks_name_their_field() {
        let mut m = MqttConfig::new("http://h");
        m.keep_alive_s = 1;
        let fields: Vec<String> = m.problems().into_iter().map(|p| p.0).collect();
        assert_eq!(fields, ["mqtt.url", "mqtt.keep_alive_s"]);
        let mut h = HttpConfig::new("0.0.0.0:80".parse().unwrap());
        assert_eq!(h.problems()[0].0, "http.listen");
        h.password_hash = Some("x".into());
        assert!(h.problems()[0].1.contains("plain HTTP"), "{:?}", h.problems());
        h.plain_http_login = true;
        assert!(h.problems().is_empty());
    }

    #[test]
    fn broker_urls() {
        assert_eq!(
            parse_broker_url("mqtt://127.0.0.1:1884").unwrap(),
            Broker { host: "127.0.0.1".into(), port: 1884, tls: false }
        );
        assert_eq!(parse_broker_url("tcp://broker").unwrap().port, 1883);
        assert_eq!(
            parse_broker_url("mqtts://broker").unwrap(),
            Broker { host: "broker".into(), port: 8883, tls: true }
        );
        for bad in ["127.0.0.1:1883", "http://x", "mqtt://", "mqtt://h:99999", "mqtt://u:p@h"] {
            let e = parse_broker_url(bad).unwrap_err().to_string();
            assert!(e.starts_with("mqtt.url"), "{bad}: {e}");
        }
    }

    fn toml_like<T: serde::de::DeserializeOwned>(json: &str) -> T {
        serde_json::from_str(json).unwrap()
    }
}
