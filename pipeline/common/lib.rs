//! Run-time helpers shared by the box (`junction`) and the centre (`junction-centre`), one layer
//! above the contracts ([`junction_schema`]): [`mqtt`] (a connection's settings from `[mqtt]`,
//! reading its files, and what a connection error means), [`telemetry`] (logging, systemd
//! notification, the /metrics answer) and [`retry`] (backoff).

pub mod mqtt;
pub mod retry;
pub mod telemetry;
