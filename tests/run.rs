//! `junction run`: counting on the real clip through the real model, the store, signals.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{assert_schema, clip, junction, signal, spawn, wait_at_most};

fn store_reports(db: &std::path::Path) -> Vec<(String, bool)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut st = conn.prepare("SELECT id, partial FROM reports ORDER BY rowid").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

/// The second detector family counts the example site too: DEIMv2-Femto (NMS-free, DETR style) finds
/// fewer of these top-down cars than YOLOX-Nano (6 of 8 measured, benches/README.md) and no parked one.
#[test]
fn the_second_detector_family_counts_the_example_site() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let out = junction(
        &[
            "run",
            "--model",
            "models/deimv2_femto.toml",
            "--threads",
            "2",
            "--store",
            dir.path().join("j.db").to_str().unwrap(),
            "--line",
            "388,232,388,330",
            "--summary",
            summary.to_str().unwrap(),
        ],
        Duration::from_secs(300),
    );
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let lines = s["lines"].as_array().unwrap();
    let x320 = lines.iter().find(|l| l["id"] == "x320").expect("x320");
    let (inn, outn) = (x320["in"].as_u64().unwrap(), x320["out"].as_u64().unwrap());
    assert!((5..=9).contains(&(inn + outn)) && inn >= 2 && outn >= 2, "x320: {inn} in, {outn} out; truth 3 in, 5 out");
    let parked = lines.iter().find(|l| l["id"] == "line-1").expect("line-1");
    assert_eq!((parked["in"].as_u64(), parked["out"].as_u64()), (Some(0), Some(0)), "a parked car counted: {parked}");
}

/// The example site on the bundled clip: x = 320 is crossed by 8 moving vehicles (ground truth from
/// tests/data/street_topdown_scan_x320.png). Two extra lines lie across parked cars only.
#[test]
fn counts_the_example_site() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("j.db");
    let summary = dir.path().join("summary.json");
    let out = junction(
        &[
            "run",
            "--config",
            "deploy/junction.example.toml",
            "--store",
            db.to_str().unwrap(),
            "--start",
            "2026-11-26T08:00:00Z",
            "--format",
            "json",
            // Through the parked cars on the lower kerb (centres about (388, 268) and (232, 255)),
            // below the traffic lanes.
            "--line",
            "388,232,388,330",
            "--line",
            "232,232,232,330",
            "--summary",
            summary.to_str().unwrap(),
        ],
        Duration::from_secs(300),
    );
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["frames"].as_u64(), Some(753));
    let lines = s["lines"].as_array().unwrap();
    let line = |id: &str| lines.iter().find(|l| l["id"] == id).unwrap_or_else(|| panic!("no line {id}: {s}"));
    let x320 = line("x320");
    let (inn, outn) = (x320["in"].as_u64().unwrap(), x320["out"].as_u64().unwrap());
    assert!((7..=9).contains(&(inn + outn)), "x320 counted {inn} in + {outn} out; ground truth 8");
    assert!(inn >= 2 && outn >= 2, "both directions: {inn} in, {outn} out");
    for parked in ["line-1", "line-2"] {
        let l = line(parked);
        assert_eq!((l["in"].as_u64(), l["out"].as_u64()), (Some(0), Some(0)), "parked car counted on {parked}: {l}");
    }

    // Every bin printed is in the store, with its events.
    let printed: Vec<Value> = out.lines("report");
    for r in &printed {
        // The printed line adds "type"; the payload is the rest.
        let mut payload = r.clone();
        payload.as_object_mut().unwrap().remove("type");
        assert_schema("flow.v1.json", &payload);
    }
    let ids: Vec<String> = printed.iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    // 1-min bins 08:00 and 08:01 (cut short at 75 s), and the 15-min bin 08:00 (cut short).
    assert_eq!(
        ids,
        vec![
            "example-street/street/2026-11-26T08:00:00Z/60",
            "example-street/street/2026-11-26T08:01:00Z/60",
            "example-street/street/2026-11-26T08:00:00Z/900",
        ]
    );
    assert_eq!(printed.iter().map(|r| r["partial"].as_bool().unwrap()).collect::<Vec<_>>(), vec![false, true, true]);
    let stored = store_reports(&db);
    assert_eq!(stored.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(), ids);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let crossings: i64 = conn
        .query_row("SELECT COUNT(*) FROM events WHERE kind = 'crossing' AND rule = 'x320'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(crossings as u64, inn + outn);
    // The 15-minute bin holds every count of the run.
    let v: u64 = printed[2]["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["counter"] == "x320")
        .map(|f| f["vehicles"].as_u64().unwrap())
        .sum();
    assert_eq!(v, inn + outn);
}

/// SIGKILL mid-run loses at most the open bins: every bin printed before the kill is in the store.
#[test]
fn sigkill_loses_at_most_the_open_bin() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("j.db");
    let mut child = spawn(
        &[
            "run",
            clip().to_str().unwrap(),
            "--line",
            "320,60,320,220",
            "--bins",
            "10s",
            "--start",
            "2026-11-26T08:00:00Z",
            "--store",
            db.to_str().unwrap(),
            "--format",
            "json",
        ],
        "warn",
    );
    let stdout = child.stdout.take().unwrap();
    let mut printed = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["type"] == "report" {
            printed.push(v["id"].as_str().unwrap().to_owned());
            if printed.len() == 3 {
                signal(&child, "KILL");
                break;
            }
        }
    }
    let status = wait_at_most(&mut child, Instant::now(), Duration::from_secs(30));
    assert!(!status.success(), "killed, not finished");
    assert_eq!(printed.len(), 3, "the run ended before three 10 s bins closed");
    let stored: Vec<String> = store_reports(&db).into_iter().map(|(id, _)| id).collect();
    for id in &printed {
        assert!(stored.contains(id), "bin {id} was printed (closed) but is not in the store: {stored:?}");
    }
    // The store is consistent and reopens for the next run.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}

/// SIGTERM on a live source: sources stop, open bins close as partial, the store is flushed, exit 0.
#[test]
fn sigterm_closes_partial_bins_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("j.db");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let http = format!("127.0.0.1:{port}");
    let mut child = spawn(
        &[
            "run",
            "test://ball?fps=20",
            "--line",
            "320,0,320,360",
            "--bins",
            "1m,15m",
            "--store",
            db.to_str().unwrap(),
            "--format",
            "json",
            "--http",
            &http,
        ],
        "info",
    );
    // Stderr is read on its own thread so that a full pipe never stalls the run.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let log = std::thread::spawn(move || lines.by_ref().map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    // Ready once 20 frames are analysed (1 s of stream), however loaded the machine.
    let t = Instant::now();
    loop {
        let m = crate::common::http_get(port, "/metrics").map(|(_, b)| String::from_utf8_lossy(&b).into_owned());
        let n = m.and_then(|m| crate::common::metric_sample(&m, "junction_frames_analysed_total{camera=\"camera\"}"));
        if n.is_some_and(|n| n >= 20.0) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "no frames analysed");
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&child, "TERM");
    let status = wait_at_most(&mut child, Instant::now(), Duration::from_secs(30));
    let stderr = log.join().unwrap();
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    let stored = store_reports(&db);
    // A run of a few seconds may cross a minute's end (or a quarter's): the bins the clock closed
    // are stored too. Whatever the wall clock, each length has the bin open at the signal, closed
    // as partial (the run started inside it and stopped inside it).
    for len in ["/60", "/900"] {
        let of: Vec<&(String, bool)> = stored.iter().filter(|(id, _)| id.ends_with(len)).collect();
        assert!(!of.is_empty() && of.len() <= 2, "bins of {len}: {stored:?}");
        assert!(of.iter().all(|(_, partial)| *partial), "{stored:?}");
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    let frames: i64 = conn
        .query_row("SELECT json_extract(payload, '$.frames_analysed') FROM reports LIMIT 1", [], |r| r.get(0))
        .unwrap();
    assert!(frames > 0, "no frame analysed before the signal");
}

/// A live camera's drop count is exact: every frame of the clip replayed at its own rate is either
/// analysed or counted dropped, never both (the appsink waits for each frame's time after the frame
/// was counted as arrived; a frame on its way was once counted dropped). Against the same clip read
/// as a file, which delivers every frame.
#[test]
fn a_live_camera_counts_each_frame_once_analysed_or_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let motorway = crate::common::repo().join("tests/data/nl_motorway_degirum.mp4");
    let run = |name: &str, live: bool| -> Value {
        let site = dir.path().join(format!("{name}.toml"));
        let mode = if live { "on_inference_busy = \"keep_latest\"\nrealtime = true\n" } else { "" };
        std::fs::write(
            &site,
            format!(
                "site = \"s\"\n[detector]\nmodel = \"{}\"\nthreads = 2\n[[camera]]\nid = \"c\"\nuri = \"{}\"\n\
                 tiles = [1, 1]\n{mode}[store]\npath = \"{}\"\n",
                crate::common::repo().join("models/yolox_nano.toml").display(),
                motorway.display(),
                dir.path().join(format!("{name}.db")).display()
            ),
        )
        .unwrap();
        let summary = dir.path().join(format!("{name}.json"));
        let out = junction(
            &["run", "--config", site.to_str().unwrap(), "--summary", summary.to_str().unwrap()],
            Duration::from_secs(300),
        );
        assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
        let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
        s["cameras"][0].clone()
    };
    let file = run("file", false);
    let frames = file["frames"].as_u64().unwrap();
    assert!(frames > 300, "{file}");
    assert_eq!(file["dropped"], 0, "{file}");
    let live = run("live", true);
    let (analysed, dropped) = (live["frames"].as_u64().unwrap(), live["dropped"].as_u64().unwrap());
    assert!(analysed > 0, "{live}");
    assert_eq!(analysed + dropped, frames, "analysed {analysed} + dropped {dropped} of the clip's {frames}: {live}");
}
