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
