//! An MQTT connection's settings from `[mqtt]` (the site file's section, or the centre's flags): the
//! broker's address, TLS from the CA and client files, credentials from a file or the environment;
//! and what a connection error means to an operator, naming the setting to look at.

use std::path::{Path, PathBuf};

use junction_schema::site::{Broker, BrokerUrlError, MqttConfig, parse_broker_url};
use rumqttc::TlsConfiguration;

/// A setting of `[mqtt]` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Url(#[from] BrokerUrlError),
    #[error("{field} {path}: {message}")]
    File { field: &'static str, path: PathBuf, message: String },
    #[error("mqtt.password_env {name}: {message}")]
    Env { name: String, message: String },
}

/// Debian's bundle of the system's trusted CAs.
pub const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

fn read_file(field: &'static str, path: &Path) -> Result<Vec<u8>, SettingsError> {
    std::fs::read(path).map_err(|e| SettingsError::File { field, path: path.to_owned(), message: e.to_string() })
}

/// What a connection uses, read and checked from `[mqtt]`.
#[derive(Clone)]
pub struct Connection {
    pub broker: Broker,
    pub tls: Option<TlsConfiguration>,
    /// Username and password.
    pub credentials: Option<(String, String)>,
}

/// Reads and checks the TLS and credential files of `cfg`.
pub fn connection_settings(cfg: &MqttConfig) -> Result<Connection, SettingsError> {
    let broker = parse_broker_url(&cfg.url)?;
    let tls = if broker.tls {
        let ca_path = cfg.ca_file.clone().unwrap_or_else(|| PathBuf::from(SYSTEM_CA));
        let ca = read_file("mqtt.ca_file", &ca_path)?;
        let certs = rustls_pemfile::certs(&mut &ca[..]).filter(Result::is_ok).count();
        if certs == 0 {
            return Err(SettingsError::File {
                field: "mqtt.ca_file",
                path: ca_path,
                message: "holds no PEM certificate".into(),
            });
        }
        let client_auth = match (&cfg.client_cert, &cfg.client_key) {
            (Some(c), Some(k)) => Some((read_file("mqtt.client_cert", c)?, read_file("mqtt.client_key", k)?)),
            (None, None) => None,
            (Some(c), None) | (None, Some(c)) => {
                return Err(SettingsError::File {
                    field: "mqtt.client_cert",
                    path: c.clone(),
                    message: "client_cert and client_key go together".into(),
                });
            }
        };
        // rustls needs a process-wide crypto provider: ring (no C toolchain beyond cc).
        let _ = rustls::crypto::ring::default_provider().install_default();
        Some(TlsConfiguration::Simple { ca, alpn: None, client_auth })
    } else {
        if cfg.ca_file.is_some() || cfg.client_cert.is_some() {
            return Err(SettingsError::Url(BrokerUrlError {
                url: cfg.url.clone(),
                reason: "ca_file/client_cert need mqtts://".into(),
            }));
        }
        None
    };
    let credentials = match &cfg.username {
        None => None,
        Some(user) => {
            let password = match (&cfg.password_file, &cfg.password_env) {
                (Some(p), _) => {
                    let text =
                        String::from_utf8(read_file("mqtt.password_file", p)?).map_err(|_| SettingsError::File {
                            field: "mqtt.password_file",
                            path: p.clone(),
                            message: "not UTF-8 text".into(),
                        })?;
                    text.lines().next().unwrap_or("").to_owned()
                }
                (None, Some(name)) => std::env::var(name)
                    .map_err(|e| SettingsError::Env { name: name.clone(), message: e.to_string() })?,
                (None, None) => String::new(),
            };
            Some((user.clone(), password))
        }
    };
    Ok(Connection { broker, tls, credentials })
}

const CREDENTIALS_REFUSED: &str =
    "the broker refused the credentials (mqtt.username, mqtt.password_file / password_env)";

/// What a connection error means for the operator, naming the setting to look at.
pub fn explain(e: &rumqttc::ConnectionError, cfg_hint: &str) -> String {
    use rumqttc::{ConnectReturnCode, ConnectionError};
    match e {
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
        ) => format!("{CREDENTIALS_REFUSED}: {e}"),
        ConnectionError::Tls(t) => format!("TLS handshake failed (mqtt.ca_file {cfg_hint}): {t}"),
        ConnectionError::Io(io) => explain_io(io, cfg_hint),
        other => other.to_string(),
    }
}

/// The same for an MQTT 5 connection.
pub fn explain_v5(e: &rumqttc::v5::ConnectionError, cfg_hint: &str) -> String {
    use rumqttc::v5::ConnectionError;
    use rumqttc::v5::mqttbytes::v5::ConnectReturnCode;
    match e {
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
        ) => format!("{CREDENTIALS_REFUSED}: {e}"),
        ConnectionError::ConnectionRefused(ConnectReturnCode::UnsupportedProtocolVersion) => {
            format!("the broker does not speak MQTT 5 (mqtt.protocol): {e}")
        }
        ConnectionError::Tls(t) => format!("TLS handshake failed (mqtt.ca_file {cfg_hint}): {t}"),
        ConnectionError::Io(io) => explain_io(io, cfg_hint),
        other => other.to_string(),
    }
}

fn explain_io(io: &std::io::Error, cfg_hint: &str) -> String {
    if io.to_string().contains("certificate") {
        format!("TLS handshake failed (mqtt.ca_file {cfg_hint}): {io}")
    } else {
        format!("I/O: {io}")
    }
}
