//! The turning-movement table of a scripted four-approach junction, checked by hand.

use super::*;
use crate::analytics::traffic_tests::junction_reports;
use crate::detect::VehicleClass::{Bus, Car, Motorcycle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn at(h: u64, m: u64) -> SystemTime {
    // 2026-11-26T00:00:00Z + h:m.
    UNIX_EPOCH + Duration::from_secs(1_795_651_200 + h * 3600 + m * 60)
}

#[test]
fn fifteen_minute_tmc_of_a_scripted_junction() {
    // 10 fps: frame 9000 is 15 min. In the first 15 minutes: 3 cars south→north, 2 motorcycles
    // south→east (right), 1 bus west→south (right), 1 car north→east (left), 1 car east→east
    // (U-turn). In the second: 2 cars west→east, 1 motorcycle east→north (right).
    let v = [
        (1, Car, "south", "north", 10),
        (2, Car, "south", "north", 200),
        (3, Car, "south", "north", 400),
        (4, Motorcycle, "south", "east", 600),
        (5, Motorcycle, "south", "east", 800),
        (6, Bus, "west", "south", 1000),
        (7, Car, "north", "east", 1200),
        (8, Car, "east", "east", 1400),
        (9, Car, "west", "east", 9100),
        (10, Car, "west", "east", 9300),
        (11, Motorcycle, "east", "north", 9500),
    ];
    let (reports, quality) = junction_reports(&v, at(7, 0));
    assert_eq!(quality.unmatched_movements, 0);
    let rows = tmc(&reports);
    let got: Vec<(String, &str, &str, &str, &str, u64, f64)> = rows
        .iter()
        .map(|r| (r.start.clone(), &*r.approach, &*r.exit, r.movement.as_str(), r.class.as_str(), r.vehicles, r.pcu))
        .collect();
    let s = |x: &str| x.to_string();
    assert_eq!(
        got,
        vec![
            (s("2026-11-26T07:00:00Z"), "east", "east", "u_turn", "car", 1, 1.0),
            (s("2026-11-26T07:00:00Z"), "north", "east", "left", "car", 1, 1.0),
            (s("2026-11-26T07:00:00Z"), "south", "north", "through", "car", 3, 3.0),
            (s("2026-11-26T07:00:00Z"), "south", "east", "right", "motorcycle", 2, 0.6),
            (s("2026-11-26T07:00:00Z"), "west", "south", "right", "bus", 1, 2.0),
            (s("2026-11-26T07:15:00Z"), "east", "north", "right", "motorcycle", 1, 0.3),
            (s("2026-11-26T07:15:00Z"), "west", "east", "through", "car", 2, 2.0),
        ]
    );
    let csv = tmc_csv(&rows);
    assert!(csv.starts_with(TMC_HEADER));
    assert!(csv.contains("2026-11-26T07:00:00Z,900,c,south,east,right,motorcycle,2,0.6,"), "{csv}");
    // PCU by hand: 8 vehicles in the first interval = 1 + 1 + 3 + 2 × 0.3 + 2.0 = 7.6 PCU.
    let totals = interval_totals(&reports);
    assert_eq!(totals[0].1, 8);
    assert!((totals[0].2 - 7.6).abs() < 1e-9, "{totals:?}");
}

#[test]
fn peak_hour_factor_by_hand() {
    let t = |m: u64, v: u64| (humantime::format_rfc3339_seconds(at(7, m)).to_string(), v, v as f64);
    // 07:00–08:15 in 15 minutes: 100, 150, 200, 120, 60. Peak hour 07:00–08:00 (570 vehicles) against
    // 07:15–08:15 (530): PHF = 570 / (4 × 200) = 0.7125.
    let totals = vec![t(0, 100), t(15, 150), t(30, 200), t(45, 120), t(60, 60)];
    let p = peak_hour(&totals).unwrap();
    assert_eq!(p.start, "2026-11-26T07:00:00Z");
    assert_eq!(p.vehicles, 570);
    assert!((p.phf - 0.7125).abs() < 1e-12, "{p:?}");
    // A gap (no 07:45 interval) leaves no four consecutive ones.
    let gappy = vec![t(0, 100), t(15, 150), t(30, 200), t(60, 60)];
    assert_eq!(peak_hour(&gappy), None);
}

#[test]
fn charts_are_pngs() {
    let dir = tempfile::tempdir().unwrap();
    let intervals = vec!["2026-11-26T07:00:00Z".to_string(), "2026-11-26T07:15:00Z".to_string()];
    let mut series = BTreeMap::new();
    series.insert("south through".to_string(), vec![3, 0]);
    series.insert("west through".to_string(), vec![0, 2]);
    let v = dir.path().join("v.png");
    volume_chart(&v, "Vehicles per 15 min by movement", &intervals, &Default::default(), &series).unwrap();
    // A single interval draws too.
    let one = dir.path().join("one.png");
    volume_chart(
        &one,
        "one",
        &intervals[..1],
        &Default::default(),
        &series.iter().map(|(k, v)| (k.clone(), v[..1].to_vec())).collect(),
    )
    .unwrap();
    let s = dir.path().join("s.png");
    speed_chart(&s, &[31.0, 42.5, 38.0, 55.0]).unwrap();
    for p in [v, one, s] {
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", p.display());
        assert!(bytes.len() > 5_000, "a drawn chart, not an empty image: {} bytes", bytes.len());
    }
}

#[test]
fn incomplete_intervals_are_named_and_their_coverage_listed() {
    let v = [(1, Car, "south", "north", 10), (2, Car, "west", "east", 9100)];
    let (mut reports, _) = junction_reports(&v, at(7, 0));
    assert!(incomplete_intervals(&reports).iter().all(|s| reports.iter().any(|r| r.bin_start == *s && r.partial)));
    reports[0].partial = true;
    reports[0].covered_seconds = 600.0;
    reports[0].gaps = vec![crate::aggregate::Gap {
        from: "2026-11-26T07:10:00.000Z".into(),
        to: "2026-11-26T07:15:00.000Z".into(),
        seconds: 300.0,
        reason: crate::aggregate::GapReason::CameraDown,
    }];
    let incomplete = incomplete_intervals(&reports);
    assert!(incomplete.contains("2026-11-26T07:00:00Z"), "{incomplete:?}");
    let csv = coverage_csv(&reports);
    assert!(csv.starts_with(COVERAGE_HEADER));
    assert!(csv.contains("2026-11-26T07:00:00Z,900,c,600.0,false,"), "{csv}");
    assert!(csv.contains("camera_down:300.0"), "{csv}");
    // A camera missing from an interval makes it incomplete too (the box was not running).
    let mut other = reports[1].clone();
    other.camera = "d".into();
    reports.push(other);
    assert!(incomplete_intervals(&reports).len() >= 2);
    let row = &tmc(&reports)[0];
    assert_eq!((row.covered_seconds, row.complete), (600.0, false));
}
