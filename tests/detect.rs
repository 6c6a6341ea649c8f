//! `junction detect` on real video through the real model.

use std::time::Duration;

use serde_json::Value;

use crate::common::{clip, junction, repo};

/// Matches a reference detection to the closest unused one of the same class (by largest coordinate
/// difference) and checks the tolerances: boxes within 1 px, scores within 0.01.
fn assert_same(frame: u64, reference: &[Value], ours: &[Value]) {
    assert_eq!(reference.len(), ours.len(), "frame {frame}: detection count\nreference {reference:?}\nours {ours:?}");
    let coords = |d: &Value| -> Vec<f64> { d["box"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect() };
    let mut used = vec![false; ours.len()];
    for r in reference {
        let rb = coords(r);
        let best = ours
            .iter()
            .enumerate()
            .filter(|(i, o)| !used[*i] && o["class"] == r["class"])
            .map(|(i, o)| (i, coords(o).iter().zip(&rb).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let Some((i, diff)) = best else { panic!("frame {frame}: no {} of ours for reference {r}", r["class"]) };
        used[i] = true;
        assert!(diff <= 1.0, "frame {frame}: box differs by {diff} px: reference {r}, ours {}", ours[i]);
        let ds = (r["score"].as_f64().unwrap() - ours[i]["score"].as_f64().unwrap()).abs();
        assert!(ds <= 0.01, "frame {frame}: score differs by {ds}: reference {r}, ours {}", ours[i]);
    }
}

#[test]
fn parity() {
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("tests/data/reference_detections.json")).unwrap())
            .unwrap();
    let frames = golden["frames"].as_array().unwrap();
    assert!(frames.len() >= 5);
    let last = frames.iter().map(|f| f["frame"].as_u64().unwrap()).max().unwrap();
    let limit = (last + 1).to_string();
    let out =
        junction(&["detect", clip().to_str().unwrap(), "--frames", &limit, "--threads", "2"], Duration::from_secs(300));
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let ours = out.lines("frame");
    assert_eq!(ours.len() as u64, last + 1, "one line per frame");
    let mut compared = 0;
    for f in frames {
        let idx = f["frame"].as_u64().unwrap();
        let line = &ours[idx as usize];
        assert_eq!(line["frame"].as_u64(), Some(idx));
        assert_eq!((line["width"].as_u64(), line["height"].as_u64()), (Some(640), Some(360)));
        let reference = f["detections"].as_array().unwrap();
        assert!(!reference.is_empty(), "golden frame {idx} has no detections: pick another frame");
        assert_same(idx, reference, line["detections"].as_array().unwrap());
        compared += reference.len();
    }
    assert!(compared >= 20, "only {compared} detections compared");
    // PTS comes from the buffers: the clip has a variable frame rate (about 10 fps), so it must grow
    // and must not be a frame counter.
    let pts: Vec<f64> = ours.iter().map(|l| l["pts"].as_f64().unwrap()).collect();
    assert!(pts.windows(2).all(|w| w[1] > w[0]), "PTS not increasing");
    let span = pts[pts.len() - 1] - pts[0];
    assert!((60.0..80.0).contains(&(span * 753.0 / last as f64)), "PTS span {span} s over {last} frames");

    let summary = &out.lines("summary")[0];
    assert_eq!(summary["frames_analysed"].as_u64(), Some(last + 1));
}

#[test]
fn every_nth_frame_and_start_time() {
    let out = junction(
        &["detect", clip().to_str().unwrap(), "--frames", "30", "--every", "10", "--start", "2026-11-26T08:00:00Z"],
        Duration::from_secs(120),
    );
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let lines = out.lines("frame");
    let idx: Vec<u64> = lines.iter().map(|l| l["frame"].as_u64().unwrap()).collect();
    assert_eq!(idx, vec![0, 10, 20]);
    assert_eq!(lines[0]["wall"], "2026-11-26T08:00:00.000Z");
    // Wall clock follows PTS from the given start.
    let pts = lines[2]["pts"].as_f64().unwrap();
    let wall = lines[2]["wall"].as_str().unwrap();
    assert_eq!(wall, format!("2026-11-26T08:00:0{:.3}Z", pts), "wall {wall} for pts {pts}");
    let summary = &out.lines("summary")[0];
    assert_eq!(summary["frames_decoded"].as_u64(), Some(30));
    assert_eq!(summary["frames_analysed"].as_u64(), Some(3));
}

#[test]
fn test_source() {
    let out =
        junction(&["detect", "test://ball?width=320&height=240&fps=30", "--frames", "6"], Duration::from_secs(60));
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let lines = out.lines("frame");
    assert_eq!(lines.len(), 6);
    assert!(lines.iter().all(|l| l["width"] == 320 && l["height"] == 240));
}
