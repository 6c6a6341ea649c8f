//! Bad site configurations are refused before start, each with its file and field named.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{assert_refused, junction, repo};

const GOOD_CALIBRATION: &str = r#"
frame_size = [640, 360]
[[line]]
id = "x320"
points = [[320, 60], [320, 220]]
anchor = "centre"
[[zone]]
id = "bays"
polygon = [[0, 60], [300, 60], [300, 135], [0, 135]]
"#;

/// Writes site.toml and cal.toml into `dir` (absolute paths to the repo's model and clip).
fn site(dir: &Path, site_extra: &str, camera: &str, calibration: &str) -> PathBuf {
    let model = repo().join("models/yolox_nano.toml");
    let clip = repo().join("tests/data/street_topdown_640x360.mp4");
    std::fs::write(dir.join("cal.toml"), calibration).unwrap();
    let camera = camera.replace("CLIP", clip.to_str().unwrap());
    let text = format!(
        "site = \"test-site\"\n{site_extra}\n[detector]\nmodel = {model:?}\n\n[[camera]]\n{camera}\ncalibration = \"cal.toml\"\n\n[store]\npath = \"j.db\"\nretention_days = 30\n"
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const CAMERA: &str = "id = \"street\"\nuri = \"CLIP\"";

fn check(path: &Path) -> crate::common::Output {
    junction(&["check-config", "--config", path.to_str().unwrap()], Duration::from_secs(60))
}

#[test]
fn shipped_example_is_valid() {
    let out = check(&repo().join("deploy/junction.example.toml"));
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    assert!(out.stdout.contains("camera street: 1 lines [x320]"), "{}", out.stdout);
    assert!(out.stdout.contains("scale: 1x1 tiles, as configured"), "{}", out.stdout);
}

#[test]
fn check_config_shows_the_scale_a_calibrated_camera_gets_from_its_ground_plane() {
    // The example street without its `tiles = [1, 1]`: a motorcycle (1.4 m) is 26 px tall at the line
    // by the ground plane, 17 model px in one 416 input, so 2 x 1 tiles (native pixels, 26 px).
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("deploy/junction.example.toml")).unwrap();
    let auto = text.replace("\ntiles = [1, 1]\n", "\n").replace("\"../", &format!("\"{}/", repo().display()));
    assert_ne!(auto, text);
    let path = dir.path().join("auto.toml");
    std::fs::write(&path, auto).unwrap();
    let out = check(&path);
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let line = out.stdout.lines().find(|l| l.trim_start().starts_with("scale:")).unwrap_or_default();
    assert!(
        line.contains("2x1 tiles") && line.contains("a motorcycle is 26 px tall at line x320 (ground plane"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_good_site_passes() {
    let dir = tempfile::tempdir().unwrap();
    let out = check(&site(dir.path(), "", CAMERA, GOOD_CALIBRATION));
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
}

#[test]
fn unknown_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = site(dir.path(), "", &format!("{CAMERA}\nfps = 10"), GOOD_CALIBRATION);
    let out = check(&path);
    assert_refused(&out, &["site.toml", "fps", "unknown field"]);
}

#[test]
fn missing_camera_uri() {
    let dir = tempfile::tempdir().unwrap();
    let path = site(dir.path(), "", "id = \"street\"", GOOD_CALIBRATION);
    let out = check(&path);
    assert_refused(&out, &["site.toml", "camera[0] (street).uri", "missing"]);
}

#[test]
fn degenerate_line() {
    let dir = tempfile::tempdir().unwrap();
    let cal = GOOD_CALIBRATION.replace("[[320, 60], [320, 220]]", "[[320, 60], [320, 60]]");
    let out = check(&site(dir.path(), "", CAMERA, &cal));
    assert_refused(&out, &["cal.toml", "line[0] (x320).points", "the same"]);
}

#[test]
fn self_intersecting_zone() {
    let dir = tempfile::tempdir().unwrap();
    let cal = GOOD_CALIBRATION
        .replace("[[0, 60], [300, 60], [300, 135], [0, 135]]", "[[0, 60], [300, 135], [300, 60], [0, 135]]");
    let out = check(&site(dir.path(), "", CAMERA, &cal));
    assert_refused(&out, &["cal.toml", "zone[0] (bays).polygon", "intersects itself"]);
}

#[test]
fn line_outside_the_frame() {
    let dir = tempfile::tempdir().unwrap();
    let cal = GOOD_CALIBRATION.replace("[[320, 60], [320, 220]]", "[[320, 60], [700, 220]]");
    let out = check(&site(dir.path(), "", CAMERA, &cal));
    assert_refused(&out, &["cal.toml", "line[0] (x320).points", "outside the 640x360 frame"]);
}

#[test]
fn every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cal = GOOD_CALIBRATION
        .replace("[[320, 60], [320, 220]]", "[[320, 60], [320, 60]]")
        .replace("[[0, 60], [300, 60], [300, 135], [0, 135]]", "[[0, 60], [300, 135], [300, 60], [0, 135]]");
    let out = check(&site(dir.path(), "", "id = \"street\"", &cal));
    assert_eq!(out.code, Some(1));
    for needle in ["3 problems", "uri", "line[0]", "zone[0]"] {
        assert!(out.stderr.contains(needle), "{needle:?} missing from:\n{}", out.stderr);
    }
}

/// A calibration made for 1280×720 on a 640×360 stream: refused when the stream negotiates, before
/// anything is counted or stored.
#[test]
fn calibration_for_another_frame_size() {
    let dir = tempfile::tempdir().unwrap();
    let cal = GOOD_CALIBRATION.replace("frame_size = [640, 360]", "frame_size = [1280, 720]");
    let path = site(dir.path(), "", CAMERA, &cal);
    let out = junction(&["run", "--config", path.to_str().unwrap()], Duration::from_secs(60));
    assert_refused(&out, &["cal.toml", "frame_size", "1280x720", "640x360"]);
    let conn = rusqlite::Connection::open(dir.path().join("j.db")).unwrap();
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM reports", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 0);
}

/// An ad-hoc line is checked against the frame size once the stream negotiates it.
#[test]
fn adhoc_line_outside_the_frame() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("j.db");
    let clip = repo().join("tests/data/street_topdown_640x360.mp4");
    let out = junction(
        &["run", clip.to_str().unwrap(), "--line", "700,0,700,100", "--store", db.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert_refused(&out, &["line-1", "outside the 640x360 frame"]);
}

#[test]
fn malformed_broker_url_in_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = site(dir.path(), "", CAMERA, GOOD_CALIBRATION);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[mqtt]\nurl = \"mqtt://broker.example:99999\"\n");
    std::fs::write(&path, text).unwrap();
    let out = check(&path);
    assert_refused(&out, &["site.toml", "mqtt.url", "99999"]);
}

#[test]
fn malformed_broker_url_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("j.db");
    let out = junction(
        &["run", "test://ball", "--line", "1,1,100,100", "--store", db.to_str().unwrap(), "--mqtt", "broker:1883"],
        Duration::from_secs(60),
    );
    assert_refused(&out, &["--mqtt", "broker:1883", "mqtt://host[:port]"]);
}

/// A flag is held to the file's rules: `detector.every` is 1 to 30 in a site file, and so is
/// `--detect-every` (it once took any number).
#[test]
fn command_line_values_are_validated_like_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("j.db");
    let out = junction(&["run", "--store", db.to_str().unwrap(), "--detect-every", "31"], Duration::from_secs(60));
    assert_refused(&out, &["junction.example.toml", "detector.every (from --detect-every)", "1 to 30"]);
    let out = junction(
        &["run", "test://ball", "--line", "1,1,100,100", "--store", db.to_str().unwrap(), "--bins", "7m"],
        Duration::from_secs(60),
    );
    assert_refused(&out, &["(command line)", "aggregate.bins[0] (from --bins)", "\"7m\" must be positive"]);
    assert!(!db.exists(), "refused before anything started");
}

#[test]
fn unreadable_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = site(dir.path(), "", CAMERA, GOOD_CALIBRATION);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[mqtt]\nurl = \"mqtts://broker.example\"\nca_file = \"missing-ca.pem\"\n");
    std::fs::write(&path, text).unwrap();
    let out = check(&path);
    assert_refused(&out, &["site.toml", "mqtt.ca_file", "missing-ca.pem", "No such file"]);
}

/// Every number of the site file is range-checked before start, none can panic: each out-of-range
/// value is refused naming its field.
#[test]
fn numbers_out_of_range_are_refused() {
    let cases: &[(&str, &str, &str)] = &[
        ("store", "retention_days = 36500", "store.retention_days"),
        ("store", "retention_days = 0", "store.retention_days"),
        ("store", "max_size_mb = 1", "store.max_size_mb"),
        ("store", "checkpoint_s = 0.0", "store.checkpoint_s"),
        ("store", "checkpoint_s = nan", "store.checkpoint_s"),
        ("detector", "every = 0", "detector.every"),
        ("detector", "every = 1000", "detector.every"),
        ("rules", "band_share = 5.0", "rules.band_share"),
        ("rules", "max_speed_kmh = -3.0", "rules.max_speed_kmh"),
        ("rules", "speed_window_s = 0.0", "rules.speed_window_s"),
        ("rules", "uturn_min_s = 1e300", "rules.uturn_min_s"),
        ("rules", "min_speed_px_s = inf", "rules.min_speed_px_s"),
        ("pcu", "motorcycle = -0.3", "pcu.motorcycle"),
        ("pcu", "car = 1e30", "pcu.car"),
        ("tracker", "lost_buffer_s = 1e12", "tracker.lost_buffer_s"),
        ("tracker", "min_hits = 0", "tracker.min_hits"),
        ("tracker", "high_score = 1.5", "tracker.high_score"),
        ("mqtt", "url = \"mqtt://127.0.0.1:1\"\ndrain_timeout_s = 1e300", "mqtt.drain_timeout_s"),
        // rumqttc panics in the publisher's thread below 5 s with MQTT 5 (issue 21): refused up front.
        ("mqtt", "url = \"mqtt://127.0.0.1:1\"\nprotocol = \"5\"\nkeep_alive_s = 2", "mqtt.keep_alive_s"),
        ("mqtt", "url = \"mqtt://127.0.0.1:1\"\nkeep_alive_s = 0", "mqtt.keep_alive_s"),
        ("mqtt", "url = \"mqtt://127.0.0.1:1\"\nkeep_alive_s = 70000", "mqtt.keep_alive_s"),
    ];
    for (section, line, field) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = site(dir.path(), "", CAMERA, GOOD_CALIBRATION);
        let text = std::fs::read_to_string(&path).unwrap();
        let header = format!("[{section}]\n");
        let text = if text.contains(&header) {
            text.replacen(&header, &format!("{header}{line}\n"), 1)
        } else {
            format!("{text}\n{header}{line}\n")
        };
        // A key the template sets already is replaced, not doubled.
        let key = line.split('=').next().unwrap().trim();
        let text = text.replacen(&format!("{key} = 30\n"), "", usize::from(key == "retention_days"));
        std::fs::write(&path, text).unwrap();
        let out = check(&path);
        assert!(!out.stderr.contains("panicked"), "{line}: {}", out.stderr);
        assert_refused(&out, &["site.toml", field]);
    }
    let dir = tempfile::tempdir().unwrap();
    let out = check(&site(dir.path(), "", &format!("{CAMERA}\nstall_timeout_s = 1e300"), GOOD_CALIBRATION));
    assert_refused(&out, &["site.toml", "stall_timeout_s"]);
}

/// A console password over plain HTTP on a non-loopback address is refused unless the site says TLS is
/// in front (`plain_http_login = true`); host names in `allowed_hosts` are checked.
#[test]
fn a_console_password_off_loopback_needs_tls_in_front() {
    // The hash of a throwaway password ("correct horse"), made by `junction hash-password`.
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$Jx0UG8byLppm9XCYO2YzZg$Psj9ISwExL4R2hpZzSFkEyRkjQXrwWwK3jpCINr1KCA";
    let dir = tempfile::tempdir().unwrap();
    let http = |extra: &str| format!("[http]\nlisten = \"0.0.0.0:9464\"\npassword_hash = \"{hash}\"\n{extra}\n");
    let out = check(&site(dir.path(), &http(""), CAMERA, GOOD_CALIBRATION));
    assert_refused(&out, &["site.toml", "http.listen", "plain HTTP", "plain_http_login"]);
    let out = check(&site(dir.path(), &http("plain_http_login = true"), CAMERA, GOOD_CALIBRATION));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let out = check(&site(
        dir.path(),
        &http("plain_http_login = true\nallowed_hosts = [\"evil.example/x\"]"),
        CAMERA,
        GOOD_CALIBRATION,
    ));
    assert_refused(&out, &["site.toml", "http.allowed_hosts", "evil.example/x"]);
}
