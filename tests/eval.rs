//! `junction eval`: truth files, and agreement with `junction run`.

use std::time::Duration;

use serde_json::Value;

use crate::common::{assert_refused, junction, junction_env, repo};

/// Counts per (line, direction, class) of an eval JSON run.
fn eval_counts(run: &Value) -> Vec<(String, String, String, u64)> {
    let mut v: Vec<_> = run["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["counted"].as_u64().unwrap() > 0)
        .map(|c| {
            (
                c["line"].as_str().unwrap().to_owned(),
                c["direction"].as_str().unwrap().to_owned(),
                c["class"].as_str().unwrap().to_owned(),
                c["counted"].as_u64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn eval_agrees_with_run_on_the_bundled_clip() {
    let truth = repo().join("tests/data/street_topdown_640x360.truth.toml");
    let out = junction(&["eval", truth.to_str().unwrap(), "--json", "--threads", "2"], Duration::from_secs(300));
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let runs: Vec<Value> = out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(runs.len(), 1);
    let e = &runs[0];
    assert_eq!(e["expected"], 8, "the truth file's 8 crossings");
    assert_eq!(e["frames"], 753);

    // The same line through `junction run`, as a newcomer would type it.
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let clip = repo().join("tests/data/street_topdown_640x360.mp4");
    let out = junction(
        &[
            "run",
            clip.to_str().unwrap(),
            "--line",
            "320,60,320,220",
            "--anchor",
            "centre",
            "--threads",
            "2",
            "--store",
            dir.path().join("j.db").to_str().unwrap(),
            "--summary",
            summary.to_str().unwrap(),
        ],
        Duration::from_secs(300),
    );
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let mut ran = Vec::new();
    for (class, dirs) in s["lines"][0]["by_class"].as_object().unwrap() {
        for d in ["in", "out"] {
            if let Some(n) = dirs[d].as_u64().filter(|n| *n > 0) {
                ran.push(("x320".to_owned(), d.to_owned(), class.clone(), n));
            }
        }
    }
    ran.sort();
    assert!(!ran.is_empty(), "run counted nothing");
    assert_eq!(eval_counts(e), ran, "eval and run disagree");
    // The totals follow: per direction, at least the difference of the totals is an error.
    let counted: u64 = ran.iter().map(|r| r.3).sum();
    assert_eq!(e["counted"].as_u64(), Some(counted));
    assert!(e["volume_errors"].as_u64().unwrap() >= 8u64.abs_diff(counted), "{e}");
}

#[test]
fn every_truth_file_in_tests_data_loads_and_runs() {
    let mut seen = 0;
    for entry in std::fs::read_dir(repo().join("tests/data")).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with(".truth.toml") {
            continue;
        }
        seen += 1;
        let out =
            junction(&["eval", path.to_str().unwrap(), "--json", "--detect-every", "3"], Duration::from_secs(300));
        assert_eq!(out.code, Some(0), "{}: stderr:\n{}", path.display(), out.stderr);
        let run: Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
        assert!(run["expected"].as_u64().unwrap() > 0, "{}: no crossings expected", path.display());
        assert!(run["frames"].as_u64().unwrap() > 100, "{}: {run}", path.display());
    }
    assert!(seen >= 2, "only {seen} truth files");
}

/// The bundled truth file of `tests/data/{stem}.mp4`, to be written in another directory: its clip
/// named by absolute path, its evidence picture (relative, and not copied) left out.
fn truth_for_elsewhere(stem: &str) -> String {
    let text = std::fs::read_to_string(repo().join(format!("tests/data/{stem}.truth.toml"))).unwrap();
    let clip = repo().join(format!("tests/data/{stem}.mp4"));
    let text = text.replace(&format!("clip = \"{stem}.mp4\""), &format!("clip = {:?}", clip.to_str().unwrap()));
    assert!(text.contains(&format!("clip = {:?}", clip.to_str().unwrap())), "{stem}: no clip line");
    text.lines().filter(|l| !l.starts_with("evidence = ")).map(|l| format!("{l}\n")).collect()
}

#[test]
fn a_bad_truth_file_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let text = truth_for_elsewhere("street_topdown_640x360");
    let path = dir.path().join("t.truth.toml");
    std::fs::write(&path, text.replace("points = [[320, 60], [320, 220]]", "points = [[320, 60], [320, 400]]"))
        .unwrap();
    let out = junction(&["eval", path.to_str().unwrap()], Duration::from_secs(60));
    assert_refused(&out, &[path.to_str().unwrap(), "line[0] (x320).points", "outside the 640x360 frame"]);
    std::fs::write(&path, text.replace("{ t = 14.3, direction = \"in\", class = \"car\" },\n", "")).unwrap();
    let out = junction(&["eval", path.to_str().unwrap()], Duration::from_secs(60));
    assert_refused(&out, &[path.to_str().unwrap(), "disagree with expected"]);
}

#[test]
fn the_scale_is_chosen_from_the_vehicles_and_applied_mid_stream() {
    // The street clip (640 × 360) starts in one input (×0.65). Its moving cars near the line are about
    // 45 px tall: asked for 40 model px (`scale_px=40`), the warm-up calls for ×0.89, which 2 × 1 tiles
    // give (native pixels), applied to the running GStreamer pipeline once measured.
    let truth = repo().join("tests/data/street_topdown_640x360.truth.toml");
    let out = junction_env(
        &["eval", truth.to_str().unwrap(), "--json", "--threads", "2", "--sweep", "scale_px=40"],
        &[("RUST_LOG", "info")],
        Duration::from_secs(600),
    );
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let chosen: Vec<&str> = out.stderr.lines().filter(|l| l.contains("scale chosen from the vehicles")).collect();
    assert_eq!(chosen.len(), 1, "one choice in a 75 s clip:\n{}", out.stderr);
    assert!(chosen[0].contains("choice=2x1 tiles") && chosen[0].contains("cars are"), "{}", chosen[0]);
    let run: Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
    // Only the frames already scaled at the old size when the caps changed are skipped (5 here: the
    // file's queue and the appsink's buffer).
    let frames = run["frames"].as_u64().unwrap();
    assert!((743..=752).contains(&frames), "{run}");
    assert!(run["counted"].as_u64().unwrap() > 0, "{run}");
}

/// Where the whole frame needs tiles but the rules' surroundings do not, the warm-up crops to them
/// (`scale::choose_region`): the motorway clip with only its y = 200 line (the peer comparison's) goes
/// from 2 × 1 tiles of 416 × 416 to one 416 × 128 input, and still counts every crossing of that line.
#[test]
fn a_crop_to_the_rules_replaces_tiles_and_counts_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let text = truth_for_elsewhere("nl_motorway_degirum");
    // The first line only: the second [[line]] table and everything after it go.
    let second = text.match_indices("[[line]]").nth(1).map(|(i, _)| i).unwrap();
    let path = dir.path().join("y200.truth.toml");
    std::fs::write(&path, &text[..second]).unwrap();
    let out = junction_env(
        &["eval", path.to_str().unwrap(), "--json", "--threads", "2"],
        &[("RUST_LOG", "info")],
        Duration::from_secs(600),
    );
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let chosen: Vec<&str> = out.stderr.lines().filter(|l| l.contains("scale chosen from the vehicles")).collect();
    assert_eq!(chosen.len(), 1, "{}", out.stderr);
    assert!(
        chosen[0].contains("choice=1x1 tiles") && chosen[0].contains("cropped to the rules' surroundings"),
        "{}",
        chosen[0]
    );
    let run: Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(eval_counts(&run), vec![("y200".into(), "out".into(), "car".into(), 11)], "{run}");
}

/// Motion gating ([motion], on by default) skips inference on still frames: on the quiet street clip
/// it must detect on far fewer frames and count exactly what detecting on the whole cadence counts.
#[test]
fn motion_gating_detects_less_and_counts_the_same() {
    let truth = repo().join("tests/data/street_topdown_640x360.truth.toml");
    let out = junction(
        &["eval", truth.to_str().unwrap(), "--json", "--threads", "2", "--sweep", "motion=on|off"],
        Duration::from_secs(600),
    );
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let runs: Vec<Value> = out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(runs.len(), 2);
    let (on, off) = (&runs[0], &runs[1]);
    assert_eq!((on["settings"]["motion"].as_str(), off["settings"]["motion"].as_str()), (Some("on"), Some("off")));
    assert_eq!(on["frames"], off["frames"]);
    let (d_on, d_off) = (on["detected"].as_u64().unwrap(), off["detected"].as_u64().unwrap());
    // Measured: 204 against 408 of 753.
    assert!(d_on * 10 < d_off * 7, "motion gating detected on {d_on} frames, without it {d_off}");
    assert!(on["counted"].as_u64().unwrap() >= 7, "{on}");
    assert_eq!(eval_counts(on), eval_counts(off), "gating changed the counts");
}
