use super::*;

fn det(x: f32, y: f32, w: f32, h: f32, score: f32, class: VehicleClass) -> Detection {
    Detection { bbox: FrameBox { x1: x, y1: y, x2: x + w, y2: y + h }, class, score, riders: 0 }
}

fn car(x: f32, y: f32) -> Detection {
    det(x, y, 60.0, 30.0, 0.8, VehicleClass::Car)
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Runs frames `(time s, detections)`; returns the outputs per frame.
fn run(tracker: &mut Tracker, frames: &[(f64, Vec<Detection>)]) -> Vec<TrackerOutput> {
    frames
        .iter()
        .map(|(t, d)| {
            let mut out = TrackerOutput::default();
            tracker.update(secs(*t), d, &mut out);
            out
        })
        .collect()
}

#[test]
fn confirms_after_min_hits_and_keeps_one_id() {
    let mut tr = Tracker::new(TrackerConfig::default());
    let frames: Vec<_> = (0..10).map(|i| (i as f64 * 0.1, vec![car(10.0 * i as f32, 50.0)])).collect();
    let outs = run(&mut tr, &frames);
    assert!(outs[0].tracks.is_empty(), "tentative on the first hit");
    for o in &outs[1..] {
        assert_eq!(o.tracks.len(), 1);
        assert_eq!(o.tracks[0].id, outs[1].tracks[0].id);
    }
    // 10 px per 0.1 s = 100 px/s.
    let vx = outs[9].tracks[0].velocity.0;
    assert!((vx - 100.0).abs() < 15.0, "vx {vx}");
}

#[test]
fn empty_frames_age_tracks_until_they_end() {
    let cfg = TrackerConfig { lost_buffer_s: 1.0, ..TrackerConfig::default() };
    let mut tr = Tracker::new(cfg);
    let mut frames: Vec<_> = (0..3).map(|i| (i as f64 * 0.1, vec![car(100.0, 50.0)])).collect();
    // An empty road: nothing detected for 2 s, frames at 10 fps.
    frames.extend((3..23).map(|i| (i as f64 * 0.1, vec![])));
    let outs = run(&mut tr, &frames);
    let id = outs[2].tracks[0].id;
    let ended_at: Vec<usize> = outs.iter().enumerate().filter(|(_, o)| !o.ended.is_empty()).map(|(i, _)| i).collect();
    // Last seen at 0.2 s; ends on the first frame more than 1.0 s later (1.3 s, frame 13).
    assert_eq!(ended_at, vec![13]);
    assert_eq!(outs[13].ended, vec![id]);
    assert!(tr.is_empty());
}

#[test]
fn lost_track_is_recovered_with_the_same_id() {
    let mut tr = Tracker::new(TrackerConfig::default());
    let mut frames: Vec<_> = (0..5).map(|i| (i as f64 * 0.1, vec![car(10.0 * i as f32, 50.0)])).collect();
    // Occluded for 0.5 s, reappears where constant velocity puts it.
    frames.extend((5..10).map(|i| (i as f64 * 0.1, vec![])));
    frames.extend((10..13).map(|i| (i as f64 * 0.1, vec![car(10.0 * i as f32, 50.0)])));
    let outs = run(&mut tr, &frames);
    assert_eq!(outs[12].tracks.len(), 1);
    assert_eq!(outs[12].tracks[0].id, outs[4].tracks[0].id);
    assert!(outs.iter().all(|o| o.ended.is_empty()));
}

#[test]
fn tentative_tracks_never_report_an_end() {
    let mut tr = Tracker::new(TrackerConfig::default());
    let outs = run(&mut tr, &[(0.0, vec![car(0.0, 0.0)]), (0.1, vec![]), (5.0, vec![])]);
    assert!(outs.iter().all(|o| o.tracks.is_empty() && o.ended.is_empty()));
    assert!(tr.is_empty());
}

#[test]
fn weak_detections_extend_but_never_start_tracks() {
    let mut tr = Tracker::new(TrackerConfig::default());
    let weak = |x: f32| det(x, 50.0, 60.0, 30.0, 0.2, VehicleClass::Car);
    let mut frames: Vec<_> = (0..3).map(|i| (i as f64 * 0.1, vec![car(10.0 * i as f32, 50.0)])).collect();
    frames.extend((3..8).map(|i| (i as f64 * 0.1, vec![weak(10.0 * i as f32), weak(400.0)])));
    let outs = run(&mut tr, &frames);
    for o in &outs[3..] {
        assert_eq!(o.tracks.len(), 1, "weak detection of the tracked car keeps it; the other starts nothing");
    }
}

#[test]
fn class_is_the_majority_vote_and_duplicates_merge() {
    let mut tr = Tracker::new(TrackerConfig::default());
    let frames: Vec<_> = (0..6)
        .map(|i| {
            let x = 5.0 * i as f32;
            // The detector sees the same vehicle as car and truck (its NMS is per class).
            let truck_score = if i == 0 { 0.9 } else { 0.5 };
            (i as f64 * 0.1, vec![car(x, 50.0), det(x + 1.0, 50.0, 60.0, 31.0, truck_score, VehicleClass::Truck)])
        })
        .collect();
    let outs = run(&mut tr, &frames);
    for o in &outs[1..] {
        assert_eq!(o.tracks.len(), 1, "one vehicle, one track: {o:?}");
    }
    assert_eq!(outs[5].tracks[0].class, VehicleClass::Car);
}

#[test]
fn fast_vehicle_at_low_frame_rate_keeps_its_id() {
    // 5 fps, 25 px per frame on a 60 px box: consecutive boxes overlap little without prediction.
    let mut tr = Tracker::new(TrackerConfig::default());
    let frames: Vec<_> = (0..12).map(|i| (i as f64 * 0.2, vec![car(25.0 * i as f32, 50.0)])).collect();
    let outs = run(&mut tr, &frames);
    let ids: std::collections::BTreeSet<u64> = outs.iter().flat_map(|o| o.tracks.iter().map(|t| t.id)).collect();
    assert_eq!(ids.len(), 1, "ids {ids:?}");
}

#[test]
fn finish_ends_confirmed_tracks() {
    let mut tr = Tracker::new(TrackerConfig::default());
    run(&mut tr, &[(0.0, vec![car(0.0, 0.0), car(300.0, 0.0)]), (0.1, vec![car(2.0, 0.0)])]);
    let mut out = TrackerOutput::default();
    tr.finish(&mut out);
    assert_eq!(out.ended.len(), 1, "only the confirmed track: {out:?}");
}

#[test]
fn a_new_id_where_a_track_was_just_lost_is_a_fragment() {
    let mut tr = Tracker::new(TrackerConfig::default());
    // A car (60 × 30 px) moves right 10 px a frame for 1 s, vanishes for 0.5 s, and reappears 60 px
    // ahead of (and 20 px below) where its filter expects it: no overlap, so a new id, counted once.
    let mut frames: Vec<(f64, Vec<Detection>)> =
        (0..10).map(|i| (i as f64 * 0.1, vec![car(10.0 * i as f32, 50.0)])).collect();
    frames.extend((10..15).map(|i| (i as f64 * 0.1, vec![])));
    frames.extend((15..25).map(|i| (i as f64 * 0.1, vec![car(10.0 * i as f32 + 60.0, 70.0)])));
    let out = run(&mut tr, &frames);
    let ids: std::collections::BTreeSet<u64> = out.iter().flat_map(|o| o.tracks.iter().map(|t| t.id)).collect();
    assert_eq!(ids.len(), 2, "the reappearance is a new track: {ids:?}");
    assert_eq!(tr.fragments, 1);
    // A second vehicle far away, and a track that ends with no successor, count nothing.
    let mut tr = Tracker::new(TrackerConfig::default());
    let mut frames: Vec<(f64, Vec<Detection>)> =
        (0..10).map(|i| (i as f64 * 0.1, vec![car(10.0 * i as f32, 50.0)])).collect();
    frames.extend((10..40).map(|i| (i as f64 * 0.1, vec![car(900.0, 600.0)])));
    run(&mut tr, &frames);
    assert_eq!(tr.fragments, 0);
}

/// A person box 60 × 80 px moving `speed` px/s for 2 s at 10 fps.
fn person_track(speed: f32) -> Vec<(f64, Vec<Detection>)> {
    (0..20)
        .map(|i| (i as f64 * 0.1, vec![det(speed * 0.1 * i as f32, 100.0, 60.0, 80.0, 0.7, VehicleClass::Person)]))
        .collect()
}

#[test]
fn a_lone_person_moving_like_a_rider_is_a_motorcycle() {
    // 240 px/s is 3 of its heights a second: a rider whose bike the detector missed.
    let mut tr = Tracker::new(TrackerConfig::default());
    let outs = run(&mut tr, &person_track(240.0));
    assert_eq!(outs[19].tracks[0].class, VehicleClass::Motorcycle);
    // 60 px/s (0.75 heights a second) walks: a pedestrian stays a person.
    let mut tr = Tracker::new(TrackerConfig::default());
    let outs = run(&mut tr, &person_track(60.0));
    assert_eq!(outs[19].tracks[0].class, VehicleClass::Person);
    // With the rules off, the fast one stays a person too.
    let evidence = ClassEvidence {
        two_wheelers: TwoWheelerParams { enabled: false, ..TwoWheelerParams::default() },
        ground: None,
    };
    let mut tr = Tracker::new(TrackerConfig::default()).with_evidence(evidence);
    let outs = run(&mut tr, &person_track(240.0));
    assert_eq!(outs[19].tracks[0].class, VehicleClass::Person);
}

#[test]
fn fused_rider_detections_outvote_car_detections() {
    // A motorcycle seen 10 frames: 6 times as a plain "car" (0.6), 4 times fused with its rider (0.5):
    // 4 × 0.5 × 2 = 4.0 against 6 × 0.6 = 3.6.
    let mut tr = Tracker::new(TrackerConfig::default());
    let frames: Vec<_> = (0..10)
        .map(|i| {
            let x = 10.0 * i as f32;
            let d = if i % 5 < 3 {
                det(x, 50.0, 40.0, 80.0, 0.6, VehicleClass::Car)
            } else {
                Detection { riders: 1, ..det(x, 50.0, 40.0, 80.0, 0.5, VehicleClass::Motorcycle) }
            };
            (i as f64 * 0.1, vec![d])
        })
        .collect();
    let outs = run(&mut tr, &frames);
    assert_eq!(outs[9].tracks[0].class, VehicleClass::Motorcycle);
}

#[test]
fn class_high_score_lets_weak_motorcycles_start_tracks() {
    // Motorcycles the detector scores 0.25: below high_score (0.3), no track; with a class override
    // of 0.2, tracked.
    let bike = |i: i32| vec![det(5.0 * i as f32, 50.0, 30.0, 40.0, 0.25, VehicleClass::Motorcycle)];
    let frames: Vec<_> = (0..5).map(|i| (i as f64 * 0.1, bike(i))).collect();
    let mut tr = Tracker::new(TrackerConfig::default());
    assert!(run(&mut tr, &frames).iter().all(|o| o.tracks.is_empty()));
    let cfg = TrackerConfig {
        class_high_score: [(VehicleClass::Motorcycle, 0.2)].into_iter().collect(),
        ..TrackerConfig::default()
    };
    let mut tr = Tracker::new(cfg);
    let outs = run(&mut tr, &frames);
    assert!(outs[1..].iter().all(|o| o.tracks.len() == 1 && o.tracks[0].id == outs[1].tracks[0].id), "{outs:?}");
}

#[test]
fn a_track_class_does_not_flip_on_a_few_frames() {
    // A motorcycle (30 × 50 px) seen 12 frames as one at 0.5, then 4 frames as a "car" at 0.8 with a
    // looser, larger box (40 × 60): it stays a motorcycle, and its share of the vote says how sure.
    let mut tr = Tracker::new(TrackerConfig::default());
    let frames: Vec<_> = (0..16)
        .map(|i| {
            let x = 8.0 * i as f32;
            let d = if i < 12 {
                det(x, 50.0, 30.0, 50.0, 0.5, VehicleClass::Motorcycle)
            } else {
                det(x - 5.0, 45.0, 40.0, 60.0, 0.8, VehicleClass::Car)
            };
            (i as f64 * 0.1, vec![d])
        })
        .collect();
    let outs = run(&mut tr, &frames);
    let last = &outs[15].tracks[0];
    assert_eq!(last.class, VehicleClass::Motorcycle);
    assert!(last.class_share > 0.5 && last.class_share < 0.9, "share {}", last.class_share);
    assert_eq!(last.person_share, 0.0);
    // And a car seen long as a car is not flipped by three frames as a motorcycle (which count 1.5×).
    let mut tr = Tracker::new(TrackerConfig::default());
    let frames: Vec<_> = (0..15)
        .map(|i| {
            let x = 8.0 * i as f32;
            let class = if i < 12 { VehicleClass::Car } else { VehicleClass::Motorcycle };
            (i as f64 * 0.1, vec![det(x, 50.0, 60.0, 40.0, 0.6, class)])
        })
        .collect();
    let outs = run(&mut tr, &frames);
    assert_eq!(outs[14].tracks[0].class, VehicleClass::Car);
}

#[test]
fn a_larger_sharper_view_outweighs_small_far_frames() {
    // Small (20 × 25 px) the detector calls it a person for 6 frames at 0.6; larger (40 × 50 px, same
    // centre) a car for 4 frames at 0.85. By score alone the person wins (3.6 against 3.4); by score ×
    // √area the car does (4 × 0.85 × 44.7 = 152 against 6 × 0.6 × 22.4 = 80).
    let mut tr = Tracker::new(TrackerConfig::default());
    let frames: Vec<_> = (0..10)
        .map(|i| {
            let d = if i < 6 {
                det(100.0, 50.0, 20.0, 25.0, 0.6, VehicleClass::Person)
            } else {
                det(90.0, 37.5, 40.0, 50.0, 0.85, VehicleClass::Car)
            };
            (i as f64 * 0.1, vec![d])
        })
        .collect();
    let outs = run(&mut tr, &frames);
    let ids: std::collections::BTreeSet<u64> = outs.iter().flat_map(|o| o.tracks.iter().map(|t| t.id)).collect();
    assert_eq!(ids.len(), 1, "one vehicle, one track: {outs:?}");
    assert_eq!(outs[9].tracks[0].class, VehicleClass::Car);
    assert!(outs[5].tracks[0].class == VehicleClass::Person && outs[5].tracks[0].person_share == 1.0);
}

#[test]
fn two_motorcycles_side_by_side_stay_two_tracks() {
    // Dense traffic: two motorcycles 30 × 50 px, 12 px apart (IoU 0.43), riding together at 100 px/s,
    // and a third just behind the first (15 px lower, IoU 0.54 with it) for the last frames.
    let mut tr = Tracker::new(TrackerConfig::default());
    let frames: Vec<_> = (0..20)
        .map(|i| {
            let x = 10.0 * i as f32;
            let mut d = vec![
                det(x, 100.0, 30.0, 50.0, 0.6, VehicleClass::Motorcycle),
                det(x + 12.0, 100.0, 30.0, 50.0, 0.55, VehicleClass::Motorcycle),
            ];
            if i >= 10 {
                d.push(det(x, 115.0, 30.0, 50.0, 0.5, VehicleClass::Motorcycle));
            }
            (i as f64 * 0.1, d)
        })
        .collect();
    let outs = run(&mut tr, &frames);
    for o in &outs[1..10] {
        assert_eq!(o.tracks.len(), 2, "{o:?}");
    }
    for o in &outs[11..] {
        assert_eq!(o.tracks.len(), 3, "{o:?}");
    }
    let ids: std::collections::BTreeSet<u64> = outs.iter().flat_map(|o| o.tracks.iter().map(|t| t.id)).collect();
    assert_eq!(ids.len(), 3, "no id swapped or lost: {ids:?}");
    assert!(outs[19].tracks.iter().all(|t| t.class == VehicleClass::Motorcycle));
}
