//! The one integration-test binary. Everything here runs the real `junction` binary (or the library)
//! against real GStreamer, the real model through ONNX Runtime, and servers on 127.0.0.1 only.
//!
//! Index:
//! - `detect::parity`: `junction detect` on the test clip equals the independent Python reference
//!   (tests/data/reference_detections.json, made by scripts/reference_detect.py).
//! - `detect::every_nth_frame_and_start_time`: `--every`, `--frames`, and the wall clock from `--start`.
//! - `detect::deimv2_parity`: the same for DEIMv2-Femto (tests/data/reference_detections_deimv2.json).
//! - `detect::onnxruntime_oldest_supported_matches_newest`: ONNX Runtime 1.20.1 detects what 1.32.0
//!   does, both model families; `bad_input::onnxruntime_outside_supported_range`: 1.19.2 is refused.
//! - `detect::software_decoder_gives_the_same_frames`, `bad_input::chosen_decoder_missing_is_named`.
//! - `detect::tiles_give_one_box_per_vehicle`: 2 × 1 tiles on the clip, one box per vehicle.
//! - `detect::yolov8_layout_matches_yolox`: the YOLOv8 output layout through a real session equals the
//!   YOLOX path (fixture model made by scripts/make_yolov8_fixture.py).
//! - `detect::test_source`: the `test://` source (videotestsrc) end to end.
//! - `bad_input`: each bad input gives one clear error line, a non-zero exit, no panic, no hang.
//! - `rtsp`: the test clip served by an RTSP server on 127.0.0.1 is read by `junction detect`.
//! - `run::counts_the_example_site`: the example site counts the clip's 8 crossings (±1), both
//!   directions, no parked car; every closed bin is in the store. `run::the_second_detector_family_…`:
//!   the same with DEIMv2-Femto.
//! - `run::sigkill_loses_at_most_the_open_bin`, `run::sigterm_closes_partial_bins_and_exits_cleanly`.
//! - `mqtt`: a real Mosquitto on 127.0.0.1 and mosquitto_sub: every report arrives in order; a broker
//!   outage and a crash while the broker is down lose nothing.
//! - `http`: /metrics, /healthz, /readyz scraped over HTTP from a running `junction run`; a taken port
//!   is refused.
//! - `traffic`: the calibrated example site: speeds, movements, loop detectors (store, MQTT detector
//!   topic, ATSPM CSV), then `junction calibrate` (overlay) and `junction report` (TMC CSV, charts);
//!   degenerate ground points refused.
//! - `deploy`: systemd unit (systemd-analyze verify, security), Prometheus config and alert unit tests
//!   (promtool), Kubernetes manifests (kubernetes-validate --strict), Grafana queries vs exported
//!   metric names, the Jetson Dockerfile's form.
//! - `eval`: `junction eval` on the bundled clip counts what `junction run` counts on the same line;
//!   every truth file in tests/data loads and runs; a bad truth file is refused naming the field.
//! - `faults`: a restart inside a bin (SIGTERM: revision 2 of both runs, at the store and at an MQTT
//!   subscriber; SIGKILL: at most the checkpoint interval lost), an RTSP camera down for 3 minutes
//!   (coverage and gaps, bins without frames reported), a camera whose frame size changes mid-stream
//!   beside a healthy one (the healthy one counts what it counts alone).
//! - `console`: the operator console in Debian's chromium (Selenium): login, tile, counters, a line
//!   drawn and saved, its crossings; hot reload by SIGHUP against fixed-rule runs; a bad reload refused;
//!   login, cookie, CSRF, Origin and rate limit over HTTP; no console off loopback without a password.
//! - `centre`: the ingester with a real Mosquitto and PostgreSQL 15: box → PostgreSQL on the clip,
//!   duplicates and revisions, dead letters, SIGKILL mid-batch, two ingesters sharing a subscription.
//! - `golden`: the example site's MQTT payloads (flow, events, detector) byte for byte against
//!   tests/data/golden/mqtt_example.txt (`JUNCTION_BLESS=1` rewrites it).
//! - `config`: the shipped example is valid; each kind of bad configuration is refused with its file
//!   and field, all problems at once.

mod common;

mod bad_input;
mod centre;
mod config;
mod console;
mod deploy;
mod detect;
mod eval;
mod faults;
mod fuzz;
mod golden;
mod http;
mod labels;
mod layers;
mod mqtt;
mod rtsp;
mod run;
mod traffic;
mod wire;
