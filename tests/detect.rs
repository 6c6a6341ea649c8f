//! `junction detect` on real video through the real model.

use std::time::Duration;

use serde_json::Value;

use crate::common::{clip, junction, repo, square_card};

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

/// The Python reference feeds the fixed-size export square (416 × 416): so does this card.
#[test]
fn parity() {
    let dir = tempfile::tempdir().unwrap();
    let card = square_card(dir.path(), |t| t);
    parity_with("tests/data/reference_detections.json", card.to_str().unwrap());
}

/// The second detector family (NMS-free, DETR style): DEIMv2-Femto through `junction detect` equals
/// the Python reference's plain resize, query filter and label merge.
#[test]
fn deimv2_parity() {
    parity_with("tests/data/reference_detections_deimv2.json", "models/deimv2_femto.toml");
}

/// `junction detect` with `card` against the golden file made by scripts/reference_detect.py.
fn parity_with(golden: &str, card: &str) {
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(repo().join(golden)).unwrap()).unwrap();
    let frames = golden["frames"].as_array().unwrap();
    assert!(frames.len() >= 5);
    let last = frames.iter().map(|f| f["frame"].as_u64().unwrap()).max().unwrap();
    let limit = (last + 1).to_string();
    let out = junction(
        &["detect", clip().to_str().unwrap(), "--frames", &limit, "--threads", "2", "--model", card],
        Duration::from_secs(300),
    );
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

/// `--decoder software` (libav's avdec_h264 only) decodes the clip to the same detections as GStreamer's
/// own choice.
#[test]
fn software_decoder_gives_the_same_frames() {
    let run = |extra: &[&str]| {
        let mut args = vec!["detect", "tests/data/street_topdown_640x360.mp4", "--frames", "40", "--every", "10"];
        args.extend(extra);
        let out = junction(&args, Duration::from_secs(120));
        assert_eq!(out.code, Some(0), "{extra:?}: stderr:\n{}", out.stderr);
        out.lines("frame")
    };
    let auto = run(&[]);
    let software = run(&["--decoder", "software"]);
    assert_eq!(auto.len(), 4);
    assert_eq!(auto, software);
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

/// The YOLOv8 output layout through a real ONNX Runtime session: the YOLOX model with the grid decode,
/// score product and transpose appended (scripts/make_yolov8_fixture.py) must give the YOLOX path's
/// detections through junction's YOLOv8 decoding.
#[test]
fn yolov8_layout_matches_yolox() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("yolox_as_v8.onnx");
    let python = repo().join(".venv/bin/python");
    let status = std::process::Command::new(&python)
        .arg(repo().join("scripts/make_yolov8_fixture.py"))
        .arg(repo().join("models/yolox_nano.onnx"))
        .arg(&model)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/setup.sh", python.display()));
    assert!(status.success(), "make_yolov8_fixture.py failed");
    let sha: String = sha2::Sha256::digest(std::fs::read(&model).unwrap()).iter().map(|b| format!("{b:02x}")).collect();
    let card_text = std::fs::read_to_string(repo().join("models/yolox_nano.toml")).unwrap();
    let mut edited = Vec::new();
    for line in card_text.lines() {
        let key = line.split_whitespace().next();
        if key == Some("rectangular") {
            continue;
        }
        let line = match key {
            Some("file") => format!("file = {:?}", model.to_str().unwrap()),
            Some("sha256") => format!("sha256 = {sha:?}"),
            Some("format") => "format = \"yolov8\"".to_owned(),
            Some("grid_decoded") | Some("strides") => continue,
            _ if line.starts_with("name = \"output\"") => "name = \"output0\"".to_owned(),
            _ => line.to_owned(),
        };
        edited.push(line);
    }
    let card = dir.path().join("yolox_as_v8.toml");
    std::fs::write(&card, edited.join("\n")).unwrap();
    // Both fed the square 416 × 416 input of the fixed-size export the fixture is made from.
    let square_card = square_card(dir.path(), |t| t);

    let run = |card: &str| {
        let out = junction(
            &["detect", clip().to_str().unwrap(), "--frames", "120", "--every", "4", "--model", card],
            Duration::from_secs(180),
        );
        assert_eq!(out.code, Some(0), "card {card}: stderr:\n{}", out.stderr);
        out.lines("frame")
    };
    let yolox = run(square_card.to_str().unwrap());
    let yolov8 = run(card.to_str().unwrap());
    assert_eq!(yolox.len(), 30);
    assert_eq!(yolox.len(), yolov8.len());
    let mut compared = 0;
    for (a, b) in yolox.iter().zip(&yolov8) {
        let (da, db) = (a["detections"].as_array().unwrap(), b["detections"].as_array().unwrap());
        assert_eq!(da.len(), db.len(), "frame {}: {da:?} vs {db:?}", a["frame"]);
        for (x, y) in da.iter().zip(db) {
            assert_eq!(x["class"], y["class"]);
            for (p, q) in x["box"].as_array().unwrap().iter().zip(y["box"].as_array().unwrap()) {
                assert!((p.as_f64().unwrap() - q.as_f64().unwrap()).abs() < 1e-2, "frame {}: {x} vs {y}", a["frame"]);
            }
            assert!((x["score"].as_f64().unwrap() - y["score"].as_f64().unwrap()).abs() < 1e-4);
            compared += 1;
        }
    }
    assert!(compared >= 50, "only {compared} detections compared");
}

/// The supported ONNX Runtime range, at both ends: the oldest supported release (1.20.1, from its PyPI
/// wheel by scripts/setup.sh) gives the same detections as the newest (1.32.0, the default), with both
/// model families.
#[test]
fn onnxruntime_oldest_supported_matches_newest() {
    let oldest = repo().join(".onnxruntime/range/libonnxruntime.so.1.20.1");
    assert!(oldest.is_file(), "{} missing: run scripts/setup.sh", oldest.display());
    let clip = clip();
    for (card, at_least) in [("models/yolox_nano.toml", 50), ("models/deimv2_femto.toml", 40)] {
        let run = |lib: Option<&std::path::Path>| {
            let mut args = vec!["detect", clip.to_str().unwrap(), "--frames", "150", "--every", "5", "--model", card];
            if let Some(l) = lib {
                args.extend(["--onnxruntime", l.to_str().unwrap()]);
            }
            let out = junction(&args, Duration::from_secs(180));
            assert_eq!(out.code, Some(0), "{card} {lib:?}: stderr:\n{}", out.stderr);
            out.lines("frame")
        };
        let newest = run(None);
        let old = run(Some(&oldest));
        assert_eq!(newest.len(), 30);
        assert_eq!(newest.len(), old.len());
        let mut compared = 0;
        for (a, b) in newest.iter().zip(&old) {
            let reference = a["detections"].as_array().unwrap();
            assert_same(a["frame"].as_u64().unwrap(), reference, b["detections"].as_array().unwrap());
            compared += reference.len();
        }
        assert!(compared >= at_least, "{card}: only {compared} detections compared");
    }
}

/// A frame's tiles run side by side on single-threaded sessions (`--parallel 2`) give the
/// detections one session gives running them in turn (`--parallel 1`): same vehicles, classes and
/// boxes within 0.5 frame px (the two sessions' thread counts sum floating point in another order).
#[test]
fn parallel_runs_give_the_same_detections() {
    let run = |parallel: &str| {
        let out = junction(
            &[
                "detect",
                clip().to_str().unwrap(),
                "--frames",
                "300",
                "--every",
                "25",
                "--tiles",
                "2x1",
                "--threads",
                "2",
                "--parallel",
                parallel,
            ],
            Duration::from_secs(180),
        );
        assert_eq!(out.code, Some(0), "--parallel {parallel}: stderr:\n{}", out.stderr);
        out.lines("frame")
    };
    let (one, two) = (run("1"), run("2"));
    assert_eq!(one.len(), 12);
    assert_eq!(one.len(), two.len());
    let mut boxes = 0;
    for (a, b) in one.iter().zip(&two) {
        let (da, db) = (a["detections"].as_array().unwrap(), b["detections"].as_array().unwrap());
        assert_eq!(da.len(), db.len(), "frame {}: {da:?} against {db:?}", a["frame"]);
        for (x, y) in da.iter().zip(db) {
            assert_eq!(x["class"], y["class"], "frame {}", a["frame"]);
            for k in 0..4 {
                let (p, q) = (x["box"][k].as_f64().unwrap(), y["box"][k].as_f64().unwrap());
                assert!((p - q).abs() <= 0.5, "frame {}: {x} against {y}", a["frame"]);
            }
            boxes += 1;
        }
    }
    assert!(boxes >= 20, "only {boxes} detections compared");
}

/// Tiles on a real frame: 2 × 1 tiles over the 640 × 360 clip (windows x 0–416 and 224–640 of the
/// frame, kept at its own pixels) give one box per vehicle, the vehicles in the tiles' overlap, which
/// both tiles see, included.
#[test]
fn tiles_give_one_box_per_vehicle() {
    let run = |tiles: &str| {
        let out = junction(
            &["detect", clip().to_str().unwrap(), "--frames", "300", "--every", "50", "--tiles", tiles],
            Duration::from_secs(180),
        );
        assert_eq!(out.code, Some(0), "--tiles {tiles}: stderr:\n{}", out.stderr);
        out.lines("frame")
    };
    let boxes = |d: &Value| -> [f64; 4] {
        let v: Vec<f64> = d["box"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        [v[0], v[1], v[2], v[3]]
    };
    let inter = |a: [f64; 4], b: [f64; 4]| {
        (a[2].min(b[2]) - a[0].max(b[0])).max(0.0) * (a[3].min(b[3]) - a[1].max(b[1])).max(0.0)
    };
    let area = |a: [f64; 4]| (a[2] - a[0]) * (a[3] - a[1]);
    let tiled = run("2x1");
    assert_eq!(tiled.len(), 6);
    let mut in_overlap = 0;
    for f in &tiled {
        let t = f["detections"].as_array().unwrap();
        // No vehicle twice: no two boxes of a class covering half of the smaller one.
        for (i, a) in t.iter().enumerate() {
            for b in &t[i + 1..] {
                let (ba, bb) = (boxes(a), boxes(b));
                let ios = inter(ba, bb) / area(ba).min(area(bb));
                assert!(a["class"] != b["class"] || ios < 0.5, "frame {}: {a} and {b} are one vehicle", f["frame"]);
            }
        }
        in_overlap += t.iter().filter(|d| (224.0..=416.0).contains(&(0.5 * (boxes(d)[0] + boxes(d)[2])))).count();
    }
    // Vehicles both tiles saw, so the merge had work to do.
    assert!(in_overlap >= 5, "only {in_overlap} detections in the tiles' overlap");
}
