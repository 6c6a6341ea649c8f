//! Speed, turning movements and loop detectors over scripted traffic.

use super::*;
use crate::detect::Detection;
use crate::track::{Tracker, TrackerConfig, TrackerOutput};

/// A known pinhole camera over a road (x along it, y across, metres): 10 m up at (0, −25), looking
/// at (3, 4) on the road, focal length 800 px, 1920 × 1080 frame. Returns ground → frame pixels,
/// K · [r1 r2 −R·C].
fn camera() -> [[f64; 3]; 3] {
    let c = [0.0, -25.0, 10.0];
    let target = [3.0, 4.0, 0.0];
    let norm = |v: [f64; 3]| {
        let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        [v[0] / n, v[1] / n, v[2] / n]
    };
    let cross =
        |a: [f64; 3], b: [f64; 3]| [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
    let z = norm([target[0] - c[0], target[1] - c[1], target[2] - c[2]]);
    let x = norm(cross(z, [0.0, 0.0, 1.0]));
    let y = cross(z, x);
    let r = [x, y, z];
    let t: Vec<f64> = r.iter().map(|row| -(row[0] * c[0] + row[1] * c[1] + row[2] * c[2])).collect();
    let rt = [[r[0][0], r[0][1], t[0]], [r[1][0], r[1][1], t[1]], [r[2][0], r[2][1], t[2]]];
    let k = [[800.0, 0.0, 960.0], [0.0, 800.0, 540.0], [0.0, 0.0, 1.0]];
    let mut h = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            h[i][j] = (0..3).map(|m| k[i][m] * rt[m][j]).sum();
        }
    }
    h
}

fn project(g: GroundPoint) -> FramePoint {
    let m = camera();
    let w = m[2][0] * g.x + m[2][1] * g.y + m[2][2];
    FramePoint {
        x: ((m[0][0] * g.x + m[0][1] * g.y + m[0][2]) / w) as f32,
        y: ((m[1][0] * g.x + m[1][1] * g.y + m[1][2]) / w) as f32,
    }
}

fn ground() -> Homography {
    // Calibrated as a user would: from surveyed correspondences.
    let pairs: Vec<crate::geometry::PointPair> = [(-30.0, 0.0), (30.0, 0.0), (-30.0, 12.0), (30.0, 12.0), (0.0, 6.0)]
        .iter()
        .map(|&(x, y)| {
            let g = GroundPoint { x, y };
            crate::geometry::PointPair { image: project(g), ground: g }
        })
        .collect();
    Homography::solve(&pairs, None).unwrap().homography
}

/// Deterministic noise in [-1, 1].
fn noise(i: usize) -> f32 {
    // splitmix64 of the index, top 24 bits to [-1, 1].
    let mut z = (i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// A car driving along the road at `kmh` in lane `y` (metres), seen at `fps`: its detections, with
/// ±2 px of jitter on every box edge. The box's bottom centre is the projected ground point.
fn drive(kmh: f64, fps: f64, y: f64, x0: f64, x1: f64) -> Vec<(f64, Vec<Detection>)> {
    let v = kmh / 3.6;
    let mut frames = Vec::new();
    let mut i = 0;
    loop {
        let t = i as f64 / fps;
        let x = x0 + v * t;
        if x > x1 {
            break;
        }
        let p = project(GroundPoint { x, y });
        let (w, h) = (110.0, 60.0);
        let j = |k: usize| 2.0 * noise(8 * i + k);
        let bbox = FrameBox { x1: p.x - w / 2.0 + j(0), y1: p.y - h + j(1), x2: p.x + w / 2.0 + j(2), y2: p.y + j(3) };
        frames.push((t, vec![Detection { bbox, class: VehicleClass::Car, score: 0.9, riders: 0 }]));
        i += 1;
    }
    frames
}

/// A count line across the road at ground x = `x` (metres), in frame pixels.
fn line_at(x: f64) -> LineSpec {
    LineSpec {
        id: "x".into(),
        a: project(GroundPoint { x, y: -1.0 }),
        b: project(GroundPoint { x, y: 13.0 }),
        in_side: Side::Left,
        anchor: Anchor::BottomCentre,
        lane: None,
        classes: None,
    }
}

#[test]
fn speed_within_three_percent_at_10_25_30_fps() {
    for kmh in [20.0, 50.0, 80.0] {
        for fps in [10.0, 25.0, 30.0] {
            let mut tracker = Tracker::new(TrackerConfig::default());
            let mut rules = Rules::new(vec![line_at(15.0)], vec![], RuleParams::default()).with_ground(ground());
            let mut out = TrackerOutput::default();
            let mut events = Vec::new();
            for (t, dets) in drive(kmh, fps, 4.0, -30.0, 30.0) {
                let pts = Duration::from_secs_f64(t);
                tracker.update(pts, &dets, &mut out);
                rules.update(pts, SystemTime::UNIX_EPOCH + pts, &out.tracks, &out.ended, &mut events);
            }
            let speeds: Vec<Speed> = events.iter().filter_map(|e| e.speed).collect();
            assert_eq!(speeds.len(), 1, "{kmh} km/h at {fps} fps: {events:?}");
            let got = f64::from(speeds[0].kmh);
            assert!(speeds[0].plausible);
            assert!((got - kmh).abs() / kmh < 0.03, "{kmh} km/h at {fps} fps measured {got:.2}");
        }
    }
}

#[test]
fn implausible_speed_is_flagged_not_trusted() {
    let params = RuleParams { max_speed_kmh: 60.0, ..RuleParams::default() };
    let mut tracker = Tracker::new(TrackerConfig::default());
    let mut rules = Rules::new(vec![line_at(15.0)], vec![], params).with_ground(ground());
    let (mut out, mut events) = (TrackerOutput::default(), Vec::new());
    for (t, dets) in drive(80.0, 25.0, 4.0, -30.0, 30.0) {
        let pts = Duration::from_secs_f64(t);
        tracker.update(pts, &dets, &mut out);
        rules.update(pts, SystemTime::UNIX_EPOCH + pts, &out.tracks, &out.ended, &mut events);
    }
    assert_eq!(events.iter().filter(|e| e.speed.is_some_and(|s| !s.plausible)).count(), 1);
    assert_eq!(rules.quality.implausible_speeds, 1);
}

// ------------------------------------------------------------------------------------------------
// A four-approach junction in a 1000 × 1000 frame seen from above: north leg at the top, east right,
// south bottom, west left; the box is 400..600 both ways. Traffic drives on the right: a vehicle from
// the south comes up the right-hand lane (x ≈ 550) heading north (up the image).

fn approaches() -> Vec<ApproachSpec> {
    let rect = |x1: f32, y1: f32, x2: f32, y2: f32| {
        Region::Polygon(vec![
            FramePoint { x: x1, y: y1 },
            FramePoint { x: x2, y: y1 },
            FramePoint { x: x2, y: y2 },
            FramePoint { x: x1, y: y2 },
        ])
    };
    [
        ("north", rect(400.0, 0.0, 600.0, 300.0)),
        ("east", rect(700.0, 400.0, 1000.0, 600.0)),
        ("south", rect(400.0, 700.0, 600.0, 1000.0)),
        ("west", rect(0.0, 400.0, 300.0, 600.0)),
    ]
    .into_iter()
    .map(|(id, region)| ApproachSpec { id: id.into(), region, anchor: Anchor::Centre })
    .collect()
}

#[test]
fn movements_follow_the_geometry() {
    let a = approaches();
    let idx = |id: &str| a.iter().position(|x| &*x.id == id).unwrap();
    // From the south (heading north): east is a right turn, west a left, north straight on.
    assert_eq!(turn_between(&a, idx("south"), idx("east")), Turn::Right);
    assert_eq!(turn_between(&a, idx("south"), idx("west")), Turn::Left);
    assert_eq!(turn_between(&a, idx("south"), idx("north")), Turn::Through);
    assert_eq!(turn_between(&a, idx("west"), idx("south")), Turn::Right);
    assert_eq!(turn_between(&a, idx("north"), idx("east")), Turn::Left);
    assert_eq!(turn_between(&a, idx("east"), idx("east")), Turn::UTurn);
}

/// Waypoints (frame pixels) of a path from one approach through the box to another.
fn route(from: &str, to: &str) -> Vec<FramePoint> {
    let p = |x, y| FramePoint { x, y };
    // Inbound lane of each leg (driving on the right) and the outbound one.
    let inbound = |leg: &str| match leg {
        "north" => [p(450.0, 50.0), p(450.0, 350.0)],
        "east" => [p(950.0, 450.0), p(650.0, 450.0)],
        "south" => [p(550.0, 950.0), p(550.0, 650.0)],
        _ => [p(50.0, 550.0), p(350.0, 550.0)],
    };
    let outbound = |leg: &str| match leg {
        "north" => [p(550.0, 350.0), p(550.0, 50.0)],
        "east" => [p(650.0, 550.0), p(950.0, 550.0)],
        "south" => [p(450.0, 650.0), p(450.0, 950.0)],
        _ => [p(350.0, 450.0), p(50.0, 450.0)],
    };
    let mut w = inbound(from).to_vec();
    w.push(p(500.0, 500.0));
    w.extend(outbound(to));
    w
}

/// Tracked objects along `waypoints` at 20 px per frame, 10 fps, starting at frame `start`.
fn along(id: u64, class: VehicleClass, waypoints: &[FramePoint], start: usize) -> Vec<(usize, TrackedObject)> {
    let mut out = Vec::new();
    let mut frame = start;
    for seg in waypoints.windows(2) {
        let (a, b) = (seg[0], seg[1]);
        let steps = ((b.x - a.x).hypot(b.y - a.y) / 20.0).ceil().max(1.0) as usize;
        for s in 0..steps {
            let f = s as f32 / steps as f32;
            let (x, y) = (a.x + (b.x - a.x) * f, a.y + (b.y - a.y) * f);
            let bbox = FrameBox { x1: x - 15.0, y1: y - 15.0, x2: x + 15.0, y2: y + 15.0 };
            // Pixels per second at 10 fps.
            let len = (b.x - a.x).hypot(b.y - a.y).max(1e-3);
            let velocity = (10.0 * 20.0 * (b.x - a.x) / len, 10.0 * 20.0 * (b.y - a.y) / len);
            out.push((
                frame,
                TrackedObject {
                    id,
                    bbox,
                    detection: bbox,
                    class,
                    class_share: 1.0,
                    person_share: 0.0,
                    score: 0.9,
                    velocity,
                },
            ));
            frame += 1;
        }
    }
    out
}

/// Runs scripted vehicles (id, class, from, to, first frame) through the rules at 10 fps from
/// `start`, and bins the events in 15-minute bins.
pub(crate) fn junction_reports(
    vehicles: &[(u64, VehicleClass, &str, &str, usize)],
    start: SystemTime,
) -> (Vec<crate::aggregate::FlowReport>, RuleQuality) {
    use crate::aggregate::{Aggregator, PcuFactors};
    let mut per_frame: std::collections::BTreeMap<usize, Vec<TrackedObject>> = Default::default();
    let mut last: HashMap<u64, usize> = HashMap::new();
    for &(id, class, from, to, first) in vehicles {
        for (f, t) in along(id, class, &route(from, to), first) {
            last.insert(id, f);
            per_frame.entry(f).or_default().push(t);
        }
    }
    let end = last.values().max().copied().unwrap_or(0) + 2;
    let mut rules = Rules::new(vec![], vec![], RuleParams::default()).with_approaches(approaches());
    let mut agg =
        Aggregator::new("s", "c", vec![], vec![], &[Duration::from_secs(900)]).with_pcu(PcuFactors::default());
    let (mut events, mut reports) = (Vec::new(), Vec::new());
    for f in 0..=end {
        let pts = Duration::from_millis(100 * f as u64);
        let tracks = per_frame.remove(&f).unwrap_or_default();
        let ended: Vec<u64> = last.iter().filter(|(_, l)| **l + 1 == f).map(|(id, _)| *id).collect();
        events.clear();
        rules.update(pts, start + pts, &tracks, &ended, &mut events);
        agg.frame(start + pts, 0, rules.zone_now(), rules.quality, &mut reports);
        for e in &events {
            agg.event(e);
        }
    }
    agg.finish(crate::aggregate::GapReason::NoFrames, &mut reports);
    (reports, rules.quality)
}

#[test]
fn loops_turn_on_and_off_in_order() {
    let p = |x, y| FramePoint { x, y };
    // A stop-bar loop across the south inbound lane, channel 3.
    let stop_bar = LoopSpec {
        id: "sb-stop".into(),
        polygon: vec![p(500.0, 680.0), p(600.0, 680.0), p(600.0, 760.0), p(500.0, 760.0)],
        channel: 3,
        anchor: Anchor::Centre,
    };
    let mut rules = Rules::new(vec![], vec![], RuleParams::default()).with_loops(vec![stop_bar]);
    // Two cars up the south lane, the second one arriving while the first is still on the loop,
    // a gap, then a third; car 2 also drops out of detection for a frame on the loop (no flicker).
    let path = [p(550.0, 950.0), p(550.0, 500.0)];
    let mut frames: std::collections::BTreeMap<usize, Vec<TrackedObject>> = Default::default();
    let mut ends: HashMap<usize, Vec<u64>> = HashMap::new();
    for (id, start) in [(1u64, 0usize), (2, 3), (3, 40)] {
        let steps = along(id, VehicleClass::Car, &path, start);
        let last = steps.last().unwrap().0;
        for (f, t) in steps {
            if id == 2 && f == 15 {
                continue;
            }
            frames.entry(f).or_default().push(t);
        }
        ends.entry(last + 1).or_default().push(id);
    }
    let mut events = Vec::new();
    for f in 0..80usize {
        let pts = Duration::from_millis(100 * f as u64);
        let tracks = frames.remove(&f).unwrap_or_default();
        let ended = ends.remove(&f).unwrap_or_default();
        rules.update(pts, SystemTime::UNIX_EPOCH + pts, &tracks, &ended, &mut events);
    }
    let seq: Vec<(u64, &str)> = events.iter().map(|e| (e.pts.as_millis() as u64, e.kind.name())).collect();
    // Car 1 is on the loop (760 > y ≥ 680) from frame 10 (y = 950 − 20·10 = 750) to 13 and off it at
    // frame 14 (y = 670); car 2, 3 frames behind, is on from frame 13 to 16: the detector stays on
    // until frame 17. Car 3 is on from frame 50 to 53.
    assert_eq!(seq, vec![(1000, "loop_on"), (1700, "loop_off"), (5000, "loop_on"), (5400, "loop_off")], "{events:?}");
    assert!(
        events.iter().all(|e| matches!(e.kind, EventKind::LoopOn { channel: 3 } | EventKind::LoopOff { channel: 3 }))
    );
}

#[test]
fn queue_counts_stopped_vehicles_and_measures_from_the_stop_line() {
    let g = |x, y| project(GroundPoint { x, y });
    // Queue zone over the lane y 2–6 m from the stop line at x = 0 back to x = 30 m; its first edge
    // (vertex 0 → 1) is the stop line.
    let zone = ZoneSpec {
        id: "q".into(),
        polygon: vec![g(0.0, 2.0), g(0.0, 6.0), g(30.0, 6.0), g(30.0, 2.0)],
        kind: ZoneKind::Queue,
        anchor: Anchor::BottomCentre,
    };
    let mut rules = Rules::new(vec![], vec![zone], RuleParams::default()).with_ground(ground());
    let boxed = |id: u64, x: f64| {
        let p = g(x, 4.0);
        let b = FrameBox { x1: p.x - 40.0, y1: p.y - 30.0, x2: p.x + 40.0, y2: p.y };
        TrackedObject {
            id,
            bbox: b,
            detection: b,
            class: VehicleClass::Car,
            class_share: 1.0,
            person_share: 0.0,
            score: 0.9,
            velocity: (0.0, 0.0),
        }
    };
    let mut events = Vec::new();
    // 3 s at 10 fps: three cars stand at 4, 10 and 17 m; a fourth drives up the lane at 18 km/h.
    for f in 0..30 {
        let t = f as f64 / 10.0;
        let mut tracks = vec![boxed(1, 4.0), boxed(2, 10.0), boxed(3, 17.0)];
        tracks.push(boxed(4, 28.0 - 5.0 * t));
        let pts = Duration::from_secs_f64(t);
        rules.update(pts, SystemTime::UNIX_EPOCH + pts, &tracks, &[], &mut events);
    }
    let z = rules.zone_now()[0];
    assert_eq!((z.vehicles, z.queued), (4, 3), "{z:?}");
    let m = f64::from(z.queue_m.unwrap());
    assert!((m - 17.0).abs() < 0.2, "queue {m} m");
}
