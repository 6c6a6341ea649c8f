//! The local-model loop: `junction collect` (frames and pre-labels), `junction eval --labels`
//! (detection accuracy, checked against pycocotools) and `junction check-card`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use junction::coco::{Annotation, Category, Dataset, Image, Scored, evaluate};

use crate::common::{assert_refused, junction, repo, square_card};

fn python() -> PathBuf {
    let python = repo().join(".venv/bin/python");
    assert!(python.exists(), "run scripts/setup.sh first (.venv)");
    python
}

/// pycocotools' numbers for a labelled set and a result file (scripts/coco_reference.py).
fn reference(labels: &Path, results: &Path) -> Value {
    let out =
        Command::new(python()).arg(repo().join("scripts/coco_reference.py")).args([labels, results]).output().unwrap();
    assert!(out.status.success(), "coco_reference.py: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn close(a: &Value, b: &Value, what: &str) {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => assert!((x - y).abs() < 1e-4, "{what}: junction {x} pycocotools {y}"),
        _ => assert!(a.is_null() && b.is_null(), "{what}: junction {a} pycocotools {b}"),
    }
}

/// `junction eval --labels` on the bundled labelled set, three cards side by side: each card's AP@0.5
/// and AP@0.5:0.95, overall and per class, equal pycocotools' on the detections junction wrote.
#[test]
fn eval_labels_ap_equals_pycocotools_for_three_cards() {
    let dir = tempfile::tempdir().unwrap();
    let labels = repo().join("tests/data/labels");
    let cards = ["models/yolox_nano.toml", "models/yolox_nano_640.toml", "models/deimv2_femto.toml"];
    let mut args = vec!["eval", "--labels", labels.to_str().unwrap(), "--json", "--threads", "2"];
    for c in &cards {
        args.extend(["--model", c]);
    }
    let out_dir = dir.path().to_str().unwrap().to_owned();
    args.extend(["--detections-out", &out_dir]);
    let out = junction(&args, Duration::from_secs(600));
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let runs: Vec<Value> = out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(runs.len(), 3);
    for run in &runs {
        let model = run["model"].as_str().unwrap();
        let results = dir.path().join(format!("{model}.json"));
        let dets: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&results).unwrap()).unwrap();
        assert!(dets.len() > 50, "{model}: {} detections", dets.len());
        let theirs = reference(&labels.join("annotations.json"), &results);
        let ours = &run["accuracy"];
        close(&ours["ap"], &theirs["ap"], &format!("{model} AP"));
        close(&ours["ap50"], &theirs["ap50"], &format!("{model} AP50"));
        for c in ours["classes"].as_array().unwrap() {
            let name = c["name"].as_str().unwrap();
            close(&c["ap"], &theirs["classes"][name]["ap"], &format!("{model} {name} AP"));
            close(&c["ap50"], &theirs["classes"][name]["ap50"], &format!("{model} {name} AP50"));
        }
        // Not an empty agreement: cars are found.
        let car = ours["classes"].as_array().unwrap().iter().find(|c| c["name"] == "car").unwrap();
        assert!(car["ap50"].as_f64().unwrap() > 0.2, "{model}: {car}");
        assert!(car["true_positives"].as_u64().unwrap() > 10, "{model}: {car}");
    }
    // The table names every card.
    let out = junction(
        &["eval", "--labels", labels.to_str().unwrap(), "--threads", "2", "--model", cards[0], "--model", cards[2]],
        Duration::from_secs(600),
    );
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    for needle in ["| yolox_nano | 416x416 |", "| deimv2_femto | 416x416 |", "labelled (rows) found as (columns)"] {
        assert!(out.stdout.contains(needle), "{needle:?} missing:\n{}", out.stdout);
    }
}

/// A small deterministic generator (no crate for randomness in the tests).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The metric on its own against pycocotools, on the cases a real set rarely shows: crowd boxes,
/// tied scores across images, more than 100 detections on an image, a category nothing labels, boxes
/// far off and near the IoU thresholds.
#[test]
fn coco_metrics_equal_pycocotools_on_crowds_ties_and_caps() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Lcg(23);
    let mut set = Dataset {
        info: None,
        images: (1..=12).map(|id| Image { id, file_name: format!("{id}.jpg"), width: 640, height: 360 }).collect(),
        annotations: Vec::new(),
        categories: vec![
            Category { id: 1, name: "person".into(), supercategory: None },
            Category { id: 3, name: "car".into(), supercategory: None },
            Category { id: 4, name: "motorcycle".into(), supercategory: None },
            Category { id: 8, name: "truck".into(), supercategory: None },
        ],
    };
    let mut dets = Vec::new();
    for img in 1..=12u64 {
        let boxes = if img == 12 { 0 } else { 3 + (rng.next() * 10.0) as usize };
        for _ in 0..boxes {
            let cat = [1, 3, 4][(rng.next() * 3.0) as usize];
            let (w, h) = (10.0 + rng.next() * 80.0, 10.0 + rng.next() * 60.0);
            let (x, y) = (rng.next() * (640.0 - w), rng.next() * (360.0 - h));
            let crowd = rng.next() < 0.08;
            let id = set.annotations.len() as u64 + 1;
            let bbox = [x, y, w, h];
            set.annotations.push(Annotation {
                id,
                image_id: img,
                category_id: cat,
                bbox,
                area: Some(w * h),
                iscrowd: u8::from(crowd),
                score: None,
                segmentation: None,
            });
            // Zero to three detections of it, jittered by up to an eighth of its size, scores on a
            // coarse grid so that many tie; sometimes the wrong class.
            for _ in 0..(rng.next() * 4.0) as usize {
                let j = |s: f64, r: &mut Lcg| (r.next() - 0.5) * s * 0.25;
                let dc = if rng.next() < 0.15 { 4 } else { cat };
                let b = [x + j(w, &mut rng), y + j(h, &mut rng), w + j(w, &mut rng), h + j(h, &mut rng)];
                dets.push(Scored {
                    image_id: img,
                    category_id: dc,
                    bbox: b,
                    score: (rng.next() * 10.0).floor() / 10.0,
                });
            }
        }
        // False alarms, and on image 3 more than 100 detections.
        let extra = if img == 3 { 130 } else { (rng.next() * 5.0) as usize };
        for _ in 0..extra {
            let b = [rng.next() * 600.0, rng.next() * 330.0, 5.0 + rng.next() * 40.0, 5.0 + rng.next() * 30.0];
            let cat = [1, 3, 4, 8][(rng.next() * 4.0) as usize];
            dets.push(Scored { image_id: img, category_id: cat, bbox: b, score: (rng.next() * 20.0).floor() / 20.0 });
        }
    }
    assert!(set.check().is_empty(), "{:?}", set.check());
    let ours = evaluate(&set, &dets, 0.5);
    let labels = dir.path().join("labels.json");
    std::fs::write(&labels, serde_json::to_string(&set).unwrap()).unwrap();
    let results = dir.path().join("results.json");
    junction::labels::write_results(&results, &dets).unwrap();
    let theirs = reference(&labels, &results);
    let ours = serde_json::to_value(&ours).unwrap();
    close(&ours["ap"], &theirs["ap"], "AP");
    close(&ours["ap50"], &theirs["ap50"], "AP50");
    for c in ours["classes"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        close(&c["ap"], &theirs["classes"][name]["ap"], &format!("{name} AP"));
        close(&c["ap50"], &theirs["classes"][name]["ap50"], &format!("{name} AP50"));
    }
    assert!(ours["classes"][3]["ap"].is_null(), "trucks are never labelled: {}", ours["classes"][3]);
    let ap = ours["ap"].as_f64().unwrap();
    assert!(ap > 0.05 && ap < 0.95, "a set that tests something: AP {ap}");
}

/// A labelled set that would make the numbers wrong is refused, naming the annotation.
#[test]
fn eval_labels_refuses_a_broken_set_naming_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let src = repo().join("tests/data/labels");
    let mut set: Value = serde_json::from_str(&std::fs::read_to_string(src.join("annotations.json")).unwrap()).unwrap();
    let first = set["annotations"][0]["id"].clone();
    set["annotations"][1]["id"] = first.clone();
    set["annotations"][2]["bbox"] = serde_json::json!([600.0, 10.0, 500.0, 20.0]);
    let path = dir.path().join("broken.json");
    std::fs::write(&path, set.to_string()).unwrap();
    let out = junction(&["eval", "--labels", path.to_str().unwrap()], Duration::from_secs(60));
    assert_refused(&out, &[&format!("annotation {first}: id appears twice"), "lies outside image"]);
    // Two cards of one name would overwrite each other's row and result file.
    let card = "models/yolox_nano.toml";
    let out = junction(
        &["eval", "--labels", src.to_str().unwrap(), "--model", card, "--model", card],
        Duration::from_secs(60),
    );
    assert_refused(&out, &["are both named \"yolox_nano\"", "another `name`"]);
}

/// check-card passes the bundled cards (and runs them on a frame), and refuses a card whose class list
/// does not fit the model's output, naming the output and both shapes.
#[test]
fn check_card_passes_the_bundled_cards_and_names_a_mismatch() {
    for card in ["models/yolox_nano.toml", "models/deimv2_femto.toml"] {
        let out = junction(&["check-card", card, "--threads", "2"], Duration::from_secs(120));
        assert_eq!(out.code, Some(0), "{card}: stderr:\n{}", out.stderr);
        assert!(out.stdout.contains("one frame (") && out.stdout.trim_end().ends_with("ok"), "{}", out.stdout);
        assert!(out.stdout.contains(" car"), "cars on the street frame: {}", out.stdout);
    }
    let dir = tempfile::tempdir().unwrap();
    // 79 class names for an 80-class head.
    let card = square_card(dir.path(), |t| t.replace(", \"toothbrush\",", ","));
    let out = junction(&["check-card", card.to_str().unwrap()], Duration::from_secs(120));
    assert_refused(&out, &["output \"output\" has shape [1, 3549, 85]", "says [1, 3549, 84]", "79 classes"]);
    // A model file that is not the card's.
    let card = square_card(dir.path(), |t| t.replacen("sha256 = \"6", "sha256 = \"0", 1));
    let out = junction(&["check-card", card.to_str().unwrap()], Duration::from_secs(120));
    assert_refused(&out, &["sha256", "differs from"]);
}

/// `junction collect` of the bundled clip into `out` with `extra` options; its stdout.
fn collect_street(out: &Path, extra: &[&str]) -> String {
    let clip = repo().join("tests/data/street_topdown_640x360.mp4");
    let mut args = vec!["collect", clip.to_str().unwrap(), "--out", out.to_str().unwrap(), "--threads", "2"];
    args.extend_from_slice(extra);
    let out = junction(&args, Duration::from_secs(300));
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    out.stdout
}

/// `junction collect` on the bundled clip writes one folder that pycocotools, Datumaro (CVAT's import
/// engine: COCO and "YOLO 1.1") and Label Studio's converter (YOLO and COCO) all read whole: every
/// image and box, the same classes, and YOLO boxes that are the COCO boxes. The pre-labels are in
/// frame pixels: `eval --labels` on the folder finds the model's own boxes again.
#[test]
fn collect_writes_a_set_every_labelling_tool_imports() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("set");
    collect_street(&out_dir, &["--sample-s", "20", "--min-gap-s", "10"]);
    let set: Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("annotations.json")).unwrap()).unwrap();
    let images = set["images"].as_array().unwrap();
    let boxes = set["annotations"].as_array().unwrap();
    // A 75 s clip, frames at least 10 s apart: 5 to 8 frames, with the parked and passing cars.
    assert!((5..=8).contains(&images.len()), "{} frames", images.len());
    assert!(boxes.len() >= 4 * images.len(), "{} boxes", boxes.len());
    let manifest = std::fs::read_to_string(out_dir.join("manifest.jsonl")).unwrap();
    let lines: Vec<Value> = manifest.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), images.len());
    assert!(lines.iter().all(|l| l["reasons"].as_array().is_some_and(|r| !r.is_empty())
        && l["model_sha256"].as_str().is_some_and(|s| s.len() == 64)
        && l["card_sha256"].as_str().is_some_and(|s| s.len() == 64)));
    assert_eq!(lines[0]["reasons"][0], "sample", "the first frame is a sample");

    let check =
        Command::new(python()).arg(repo().join("scripts/check_label_formats.py")).arg(&out_dir).output().unwrap();
    assert!(check.status.success(), "check_label_formats.py: {}", String::from_utf8_lossy(&check.stderr));
    let read: Value = serde_json::from_slice(&check.stdout).unwrap();
    let names: std::collections::HashMap<u64, &str> = set["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_u64().unwrap(), c["name"].as_str().unwrap()))
        .collect();
    let mut labels: Vec<&str> = boxes.iter().map(|b| names[&b["category_id"].as_u64().unwrap()]).collect();
    labels.sort_unstable();
    for tool in ["pycocotools", "datumaro_coco", "datumaro_yolo", "label_studio_yolo", "label_studio_coco"] {
        let r = &read[tool];
        assert_eq!(r["images"].as_u64(), Some(images.len() as u64), "{tool}: {r}");
        assert_eq!(r["boxes"].as_u64(), Some(boxes.len() as u64), "{tool}: {r}");
        let theirs: Vec<&str> = r["labels"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(theirs, labels, "{tool}");
    }
    // CVAT's YOLO reading of each image (its name) gives the COCO boxes back within a pixel.
    for im in images {
        let name = im["file_name"].as_str().unwrap().trim_end_matches(".jpg");
        let yolo = read["datumaro_yolo"]["by_item"][name].as_array().unwrap_or_else(|| panic!("{name} not read"));
        let mut coco: Vec<&Value> = boxes.iter().filter(|b| b["image_id"] == im["id"]).collect();
        assert_eq!(yolo.len(), coco.len(), "{name}");
        for y in yolo {
            let (label, b) = (y[0].as_str().unwrap(), [1, 2, 3, 4].map(|k| y[k].as_f64().unwrap()));
            let k = coco
                .iter()
                .position(|c| {
                    names[&c["category_id"].as_u64().unwrap()] == label
                        && (0..4).all(|i| (c["bbox"][i].as_f64().unwrap() - b[i]).abs() < 1.0)
                })
                .unwrap_or_else(|| panic!("{name}: YOLO box {y} is no COCO box"));
            coco.remove(k);
        }
    }
    // The model against its own pre-labels: the boxes are where the model sees the cars.
    let out = junction(
        &["eval", "--labels", out_dir.to_str().unwrap(), "--json", "--threads", "2"],
        Duration::from_secs(300),
    );
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let run: Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
    let car = run["accuracy"]["classes"].as_array().unwrap().iter().find(|c| c["name"] == "car").unwrap().clone();
    assert!(car["precision"].as_f64().unwrap() > 0.8 && car["recall"].as_f64().unwrap() > 0.8, "{car}");
}

/// A collection stays within its bounds across runs, goes on from what is there, and collects from
/// a camera only where its site file switched collection on.
#[test]
fn collect_is_bounded_continued_and_only_where_switched_on() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("set");
    let clip = repo().join("tests/data/street_topdown_640x360.mp4");
    let run = |max: &str| collect_street(&out_dir, &["--sample-s", "5", "--min-gap-s", "5", "--max-frames", max]);
    let images = || -> Vec<u64> {
        let set: Value =
            serde_json::from_str(&std::fs::read_to_string(out_dir.join("annotations.json")).unwrap()).unwrap();
        set["images"].as_array().unwrap().iter().map(|i| i["id"].as_u64().unwrap()).collect()
    };
    run("3");
    assert_eq!(images(), [1, 2, 3]);
    assert_eq!(std::fs::read_dir(out_dir.join("labels")).unwrap().count(), 3);
    run("5");
    assert_eq!(images(), [1, 2, 3, 4, 5], "continued, new ids");
    assert_eq!(
        std::fs::read_dir(out_dir.join("images"))
            .unwrap()
            .filter(|e| { e.as_ref().unwrap().path().extension().is_some_and(|x| x == "jpg") })
            .count(),
        5
    );
    assert!(run("5").contains("already full"));

    // A site camera with collection off is refused, naming the camera and the switch.
    let site = dir.path().join("site.toml");
    let body = |collect: &str| {
        format!(
            "site = \"s\"\n[detector]\nmodel = \"{}\"\n[[camera]]\nid = \"north\"\nuri = \"{}\"\n{collect}[store]\npath = \"{}\"\n",
            repo().join("models/yolox_nano.toml").display(),
            clip.display(),
            dir.path().join("s.db").display()
        )
    };
    std::fs::write(&site, body("")).unwrap();
    let args = ["collect", "--config", site.to_str().unwrap(), "--camera", "north", "--out", out_dir.to_str().unwrap()];
    assert_refused(&junction(&args, Duration::from_secs(60)), &["camera \"north\" has collect off", "collect = true"]);
    // Switched on, it collects (into another folder, one frame).
    std::fs::write(&site, body("collect = true\n")).unwrap();
    let other = dir.path().join("north");
    let args = [
        "collect",
        "--config",
        site.to_str().unwrap(),
        "--camera",
        "north",
        "--out",
        other.to_str().unwrap(),
        "--max-frames",
        "1",
        "--threads",
        "2",
    ];
    let out = junction(&args, Duration::from_secs(120));
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    assert!(std::fs::read_to_string(other.join("manifest.jsonl")).unwrap().contains("\"camera\":\"north\""));
    // A network camera given directly is refused: it must come through a site file.
    let args = ["collect", "rtsp://127.0.0.1:9/stream", "--out", out_dir.to_str().unwrap()];
    assert_refused(&junction(&args, Duration::from_secs(60)), &["only through a site file", "collect = true"]);
}
