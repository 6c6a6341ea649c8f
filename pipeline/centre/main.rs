//! The `junction-centre` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use junction_schema::site::MqttConfig;

/// The traffic centre's ingester: every box's MQTT (shared subscription) landed in PostgreSQL,
/// revision-aware, invalid payloads kept as dead letters. Runs until SIGINT/SIGTERM.
#[derive(Debug, Parser)]
#[command(name = "junction-centre", version, about)]
struct CentreArgs {
    /// The centre's broker, mqtt://host:port or mqtts://host:port (TLS).
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    mqtt: String,
    /// TLS: PEM file of the CA(s) that signed the broker's certificate (default: the system's).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// TLS client certificate and key (PEM), for a broker that authenticates clients by certificate.
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Broker username; the password is read from --password-file (its first line), never the command line.
    #[arg(long, requires = "password_file")]
    username: Option<String>,
    #[arg(long, requires = "username")]
    password_file: Option<PathBuf>,
    /// Shared-subscription group: ingesters in one group split the messages.
    #[arg(long, default_value = "junction-centre")]
    group: String,
    /// MQTT client id, fixed per ingester (the broker keeps its session, and what it has not
    /// acknowledged, across restarts); each ingester of a group needs its own.
    #[arg(long, default_value = "junction-centre-1")]
    client_id: String,
    /// PostgreSQL connection string, e.g. "host=127.0.0.1 port=5432 user=junction dbname=centre".
    #[arg(long)]
    postgres: String,
    /// CA (PEM) that signed the PostgreSQL server's certificate, for `sslmode=prefer|require` in
    /// --postgres (default: the system's CAs). The certificate and its name are always verified.
    #[arg(long)]
    postgres_ca_file: Option<PathBuf>,
    /// Messages per transaction at most.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=65535))]
    batch: u32,
    /// Longest a message waits for its batch, milliseconds.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    batch_wait_ms: u64,
    /// Days of flow reports kept (whole day partitions are dropped, hourly); 0 keeps them for ever.
    #[arg(long, default_value_t = 0)]
    retain_reports_days: u32,
    /// Days of per-vehicle and loop detector events kept; 0 keeps them for ever.
    #[arg(long, default_value_t = 90)]
    retain_events_days: u32,
    /// Days of dead letters kept (each keeps at most 64 KiB of its payload); 0 keeps them for ever.
    #[arg(long, default_value_t = 30)]
    retain_dead_letters_days: u32,
    /// Serve /metrics (Prometheus) and /healthz here, e.g. 127.0.0.1:9465 (nothing else is served).
    #[arg(long)]
    metrics: Option<std::net::SocketAddr>,
}

fn run(args: &CentreArgs) -> Result<()> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let cfg = junction_centre::CentreConfig {
        mqtt: MqttConfig {
            ca_file: args.ca_file.clone(),
            client_cert: args.client_cert.clone(),
            client_key: args.client_key.clone(),
            username: args.username.clone(),
            password_file: args.password_file.clone(),
            client_id: Some(args.client_id.clone()),
            drain_timeout_s: 0.0,
            ..MqttConfig::new(args.mqtt.clone())
        },
        group: args.group.clone(),
        client_id: args.client_id.clone(),
        postgres: args.postgres.clone(),
        postgres_ca_file: args.postgres_ca_file.clone(),
        batch: args.batch as usize,
        batch_wait: Duration::from_millis(args.batch_wait_ms),
        retention: junction_centre::Retention {
            reports_days: args.retain_reports_days,
            events_days: args.retain_events_days,
            dead_letters_days: args.retain_dead_letters_days,
        },
        metrics: args.metrics,
    };
    junction_centre::run(&cfg, &stop)?;
    Ok(())
}

fn main() -> ExitCode {
    junction_common::telemetry::init_logging();
    let args = CentreArgs::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, every cause: the operator reads this first.
            eprintln!("junction-centre: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
