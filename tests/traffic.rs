//! The traffic engineer's outputs on the example site: `junction run` with the calibrated example
//! (speeds, movements, loop detectors published to a real Mosquitto and written as ATSPM CSV), then
//! `junction calibrate` and `junction report` on what it stored.

use std::time::{Duration, SystemTime};

use crate::common::{assert_refused, assert_schema, junction, repo};
use crate::mqtt::{Broker, Subscriber};

fn png_size(path: &std::path::Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{} is not a PNG", path.display());
    // IHDR: width and height, big-endian, at bytes 16..24.
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (be(16), be(20))
}

#[test]
fn example_site_run_calibrate_report() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let sub = Subscriber::start(broker.port);
    let db = dir.path().join("j.db");
    let db_s = db.to_str().unwrap();
    let url = broker.url();
    let run = junction(
        &["run", "--start", "2026-11-26T08:00:00Z", "--store", db_s, "--mqtt", &url, "--format", "json"],
        Duration::from_secs(300),
    );
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);
    let events = run.lines("event");

    // Speeds: measured on most crossings, plausible for a residential street.
    let speeds: Vec<f64> =
        events.iter().filter(|e| e["kind"] == "crossing").filter_map(|e| e["speed_kmh"].as_f64()).collect();
    assert!(speeds.len() >= 3, "{speeds:?}");
    assert!(speeds.iter().all(|s| (8.0..60.0).contains(s)), "{speeds:?}");
    // Movements: through in both directions, nothing else on a straight street.
    let movements: Vec<(&str, &str, &str)> = events
        .iter()
        .filter(|e| e["kind"] == "movement")
        .map(|e| (e["rule"].as_str().unwrap(), e["to"].as_str().unwrap(), e["direction"].as_str().unwrap()))
        .collect();
    assert!(
        movements.contains(&("west", "east", "through")) && movements.contains(&("east", "west", "through")),
        "{movements:?}"
    );
    assert!(movements.iter().all(|m| m.2 == "through"), "{movements:?}");

    // Loop detectors: the store, the detector topic and the daily ATSPM CSV agree.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let stored: Vec<(i64, i64, String)> = conn
        .prepare("SELECT code, channel, wall FROM detector_events ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(stored.len() >= 4, "{stored:?}");
    for ch in [1, 2] {
        let codes: Vec<i64> = stored.iter().filter(|s| s.1 == ch).map(|s| s.0).collect();
        assert!(codes.chunks(2).all(|p| p == [82, 81]), "channel {ch} alternates on/off: {codes:?}");
    }
    let t = std::time::Instant::now();
    while sub.messages("/detector").len() < stored.len() && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let published = sub.messages("/detector");
    assert_eq!(published.len(), stored.len());
    for (m, s) in published.iter().zip(&stored) {
        assert_schema("detector.v1.json", m);
        assert_eq!(
            (m["event_code"].as_i64(), m["channel"].as_i64(), m["at"].as_str()),
            (Some(s.0), Some(s.1), Some(&*s.2))
        );
    }
    for r in sub.messages("/flow") {
        assert_schema("flow.v1.json", &r);
    }
    let csv = std::fs::read_to_string(dir.path().join("atspm/example-street_street_2026-11-26.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("timestamp,event_code,parameter"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), stored.len());
    let mut last = SystemTime::UNIX_EPOCH;
    for (row, s) in rows.iter().zip(&stored) {
        // Indiana hi-res: timestamp (tenths of a second), event code, parameter.
        let [ts, code, param] = row.split(',').collect::<Vec<_>>()[..] else { panic!("{row}") };
        let (_, tenths) = ts.rsplit_once('.').unwrap();
        assert_eq!(tenths.len(), 1, "{row}");
        let when = humantime::parse_rfc3339(&format!("{}Z", ts.replacen(' ', "T", 1))).unwrap();
        assert!(when >= last, "in time order: {row}");
        last = when;
        assert_eq!((code.parse::<i64>().unwrap(), param.parse::<i64>().unwrap()), (s.0, s.1));
    }

    // calibrate: the table and the overlay.
    let overlay = dir.path().join("overlay.png");
    let cal = junction(
        &[
            "calibrate",
            "calibration/example-street/street.toml",
            "--frame",
            "calibration/example-street/street_frame.png",
            "--out",
            overlay.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(cal.code, Some(0), "stderr:\n{}", cal.stderr);
    assert_eq!(cal.stdout.lines().filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit())).count(), 8);
    assert!(cal.stdout.contains("RMS "), "{}", cal.stdout);
    assert_eq!(png_size(&overlay), (640, 360));
    // Drawn over the frame, in the frame's colours: most pixels untouched (a red/blue swap would change
    // nearly all of them), and some drawn on.
    let frame = image::open(repo().join("calibration/example-street/street_frame.png")).unwrap().into_rgb8();
    let drawn = image::open(&overlay).unwrap().into_rgb8();
    let same = frame.pixels().zip(drawn.pixels()).filter(|(a, b)| a == b).count();
    let all = frame.pixels().len();
    assert!(same > all / 2 && same < all * 99 / 100, "{same} of {all} pixels as in the frame");

    // report: TMC CSV of the through movements, charts.
    let out = dir.path().join("report");
    let rep = junction(
        &[
            "report",
            "--from",
            "2026-11-26T08:00:00Z",
            "--to",
            "2026-11-26T09:00:00Z",
            "--store",
            db_s,
            "--interval",
            "1m",
            "--out",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(rep.code, Some(0), "stderr:\n{}", rep.stderr);
    let tmc = std::fs::read_to_string(out.join("tmc.csv")).unwrap();
    let through: u64 = tmc
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|c| c[5] == "through")
        .map(|c| c[7].parse::<u64>().unwrap())
        .sum();
    assert_eq!(through as usize, movements.len(), "{tmc}");
    assert!(rep.stdout.contains("speeds: ") && rep.stdout.contains("km/h"), "{}", rep.stdout);
    assert_eq!(png_size(&out.join("volumes.png")), (1000, 560));
    assert_eq!(png_size(&out.join("speeds.png")), (1000, 560));

    // An empty period is an error naming the store, not empty files.
    let none = junction(
        &["report", "--from", "2025-01-01T00:00:00Z", "--to", "2025-01-02T00:00:00Z", "--store", db_s],
        Duration::from_secs(60),
    );
    assert_refused(&none, &["no reports", "j.db"]);
}

#[test]
fn degenerate_calibration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cal = dir.path().join("cam.toml");
    let write = |points: &str| {
        std::fs::write(&cal, format!("frame_size = [640, 360]\n{points}")).unwrap();
    };
    let frame = "calibration/example-street/street_frame.png";
    let run = || {
        junction(&["calibrate", cal.to_str().unwrap(), "--frame", frame, "--out", "/dev/null"], Duration::from_secs(60))
    };
    let pt = |ix: f64, iy: f64, gx: f64, gy: f64| {
        format!("[[ground_points]]\nimage = [{ix}, {iy}]\nground = [{gx}, {gy}]\n")
    };
    write(&[pt(10.0, 10.0, 0.0, 0.0), pt(600.0, 10.0, 10.0, 0.0), pt(600.0, 300.0, 10.0, 5.0)].concat());
    assert_refused(&run(), &["cam.toml", "ground_points", "at least 4"]);
    write(
        &[
            pt(10.0, 10.0, 0.0, 0.0),
            pt(100.0, 10.0, 10.0, 0.0),
            pt(200.0, 10.0, 20.0, 0.0),
            pt(600.0, 300.0, 10.0, 5.0),
        ]
        .concat(),
    );
    assert_refused(&run(), &["cam.toml", "ground_points", "general position"]);
    // And the same file in a site is refused before anything runs.
    let site = dir.path().join("site.toml");
    std::fs::write(
        &site,
        format!(
            "site = \"s\"\n[detector]\nmodel = {:?}\n[[camera]]\nid = \"c\"\nuri = \"test://\"\ncalibration = \"cam.toml\"\n",
            repo().join("models/yolox_nano.toml")
        ),
    )
    .unwrap();
    let check = junction(&["check-config", "--config", site.to_str().unwrap()], Duration::from_secs(60));
    assert_refused(&check, &["cam.toml", "ground_points"]);
}
