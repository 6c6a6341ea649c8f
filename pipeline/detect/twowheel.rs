//! Two-wheelers as one vehicle: a detector trained on COCO sees a motorcycle and its rider as two
//! objects (`person` over `motorcycle`, or over a narrow `car` when the bike is seen from behind).
//! Counted as they come, a Da Nang street gives two tracks per motorcycle, or a `person` where a
//! motorcycle passed, and volumes and PCU are wrong both ways.
//!
//! [`fuse`] runs on each frame's detections before the tracker, in frame pixels:
//!
//! - A `person` box is a **rider** of a `motorcycle` or `bicycle` box when they overlap horizontally by
//!   at least `min_overlap` of the narrower box, the person's top is above the bike's top, and the
//!   person's bottom (legs, feet) lies in the bike box's lower part: at or below `leg_reach` of its
//!   height from its top, and no more than a quarter of the person's height below its bottom. Each
//!   person rides at most one bike (the one it overlaps most); a bike may carry several (two or three
//!   on one motorcycle are common). The rider and the bike become one detection: the union of the
//!   boxes (its bottom is the wheels'), the bike's class, the higher score, `riders` counted.
//! - A `car` box under a rider, no wider than `car_width_ratio` × the rider's width, is a motorcycle
//!   seen from the front or behind (a car is about three people wide): fused the same way, as a
//!   motorcycle.
//! - Seen from the front or behind, a rider covers the bike: the detector gives a `person` box and a
//!   `motorcycle` (or narrow `car`) box of nearly the same extent, and each class's NMS keeps its own.
//!   A person overlapping such a box by IoU ≥ `coincident_iou` is its rider too (measured on the
//!   Bangkok clip, where the riders of a waiting group came out as three boxes each: person, motorcycle
//!   and car).
//! - Two bikes side by side stay two; a person beside a bike (not over it) stays a person.
//!
//! The tracker then weighs the evidence over a track's frames ([`crate::track`]): a fused detection's
//! class vote counts double, and a lone `person` moving faster than a pedestrian (`rider_speed_kmh`
//! on the ground of a calibrated camera, else `rider_heights_per_s` of its own box height per second)
//! votes motorcycle: a rider whose bike the detector missed. A walking person stays a person, and
//! lines meant for pedestrians (`classes = ["person"]`) count them.

pub use junction_schema::site::TwoWheelerParams;

use super::{Detection, VehicleClass};
use crate::geometry::FrameBox;

fn width(b: &FrameBox) -> f32 {
    (b.x2 - b.x1).max(0.0)
}

fn height(b: &FrameBox) -> f32 {
    (b.y2 - b.y1).max(0.0)
}

/// Whether a box of `class` can carry a rider: how well `person` sits on it (horizontal overlap, share
/// of the narrower box), or `None` when it does not.
fn rides(p: &TwoWheelerParams, person: &FrameBox, base: &Detection) -> Option<f32> {
    let b = &base.bbox;
    match base.class {
        VehicleClass::Motorcycle | VehicleClass::Bicycle => {}
        VehicleClass::Car if width(b) <= p.car_width_ratio * width(person) => {}
        _ => return None,
    }
    let overlap = (person.x2.min(b.x2) - person.x1.max(b.x1)).max(0.0);
    let share = overlap / width(person).min(width(b)).max(1e-3);
    if person.iou(b) >= p.coincident_iou {
        return Some(share);
    }
    let above = person.y1 < b.y1;
    let legs_in = person.y2 >= b.y1 + p.leg_reach * height(b);
    let feet_near = person.y2 <= b.y2 + 0.25 * height(person);
    (share >= p.min_overlap && above && legs_in && feet_near).then_some(share)
}

/// Fuses riders into their two-wheelers, in place (see the module documentation). `scratch` is reused
/// between frames.
pub fn fuse(dets: &mut Vec<Detection>, p: &TwoWheelerParams, scratch: &mut Vec<Option<usize>>) {
    if !p.enabled {
        return;
    }
    // For each person: the bike (index) it rides, the one it overlaps most.
    scratch.clear();
    scratch.extend(dets.iter().map(|d| {
        if d.class != VehicleClass::Person {
            return None;
        }
        dets.iter()
            .enumerate()
            .filter_map(|(j, base)| rides(p, &d.bbox, base).map(|s| (j, s)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(j, _)| j)
    }));
    if scratch.iter().all(Option::is_none) {
        return;
    }
    for i in 0..dets.len() {
        let Some(j) = scratch[i] else { continue };
        let rider = dets[i];
        let base = &mut dets[j];
        base.bbox = FrameBox {
            x1: base.bbox.x1.min(rider.bbox.x1),
            y1: base.bbox.y1.min(rider.bbox.y1),
            x2: base.bbox.x2.max(rider.bbox.x2),
            y2: base.bbox.y2.max(rider.bbox.y2),
        };
        if base.class == VehicleClass::Car {
            base.class = VehicleClass::Motorcycle;
        }
        base.score = base.score.max(rider.score);
        base.riders = base.riders.saturating_add(1);
    }
    let mut k = 0;
    dets.retain(|_| {
        let keep = scratch[k].is_none();
        k += 1;
        keep
    });
}

/// Whether a lone person's track moves like a rider: ground speed (km/h) when calibrated, else its
/// box heights per second.
pub fn is_riding(p: &TwoWheelerParams, ground_kmh: Option<f32>, px_per_s: f32, box_height: f32) -> bool {
    match ground_kmh {
        Some(kmh) => kmh > p.rider_speed_kmh,
        None => box_height > 0.0 && px_per_s / box_height > p.rider_heights_per_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class: VehicleClass, x1: f32, y1: f32, x2: f32, y2: f32, score: f32) -> Detection {
        Detection { bbox: FrameBox { x1, y1, x2, y2 }, class, score, riders: 0 }
    }

    fn run(mut dets: Vec<Detection>) -> Vec<Detection> {
        fuse(&mut dets, &TwoWheelerParams::default(), &mut Vec::new());
        dets
    }

    #[test]
    fn rider_over_bike_is_one_motorcycle() {
        // Side view: bike 100..180 × 140..200, rider 120..160 × 90..170 (legs over the seat).
        let out = run(vec![
            det(VehicleClass::Person, 120.0, 90.0, 160.0, 170.0, 0.8),
            det(VehicleClass::Motorcycle, 100.0, 140.0, 180.0, 200.0, 0.5),
        ]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].class, VehicleClass::Motorcycle);
        assert_eq!(out[0].bbox, FrameBox { x1: 100.0, y1: 90.0, x2: 180.0, y2: 200.0 });
        assert_eq!((out[0].score, out[0].riders), (0.8, 1));
    }

    #[test]
    fn two_riders_on_one_bike_and_a_narrow_car_under_a_rider() {
        let out = run(vec![
            det(VehicleClass::Person, 110.0, 90.0, 145.0, 170.0, 0.7),
            det(VehicleClass::Person, 140.0, 85.0, 175.0, 168.0, 0.6),
            det(VehicleClass::Motorcycle, 100.0, 140.0, 180.0, 200.0, 0.5),
            // Seen from behind: a rider 300..340 over a "car" 295..350 (55 px < 1.6 × 40).
            det(VehicleClass::Person, 300.0, 80.0, 340.0, 160.0, 0.7),
            det(VehicleClass::Car, 295.0, 130.0, 350.0, 190.0, 0.4),
        ]);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out.iter().all(|d| d.class == VehicleClass::Motorcycle));
        assert_eq!(out[0].riders, 2);
        assert_eq!(out[1].riders, 1);
    }

    #[test]
    fn pedestrian_stays_a_person() {
        // Beside a parked bike, not over it; and a person in front of a real car (too wide).
        let out = run(vec![
            det(VehicleClass::Person, 200.0, 90.0, 230.0, 200.0, 0.8),
            det(VehicleClass::Motorcycle, 100.0, 140.0, 180.0, 200.0, 0.5),
            det(VehicleClass::Person, 420.0, 60.0, 450.0, 170.0, 0.8),
            det(VehicleClass::Car, 380.0, 100.0, 520.0, 180.0, 0.7),
        ]);
        assert_eq!(out.len(), 4);
        assert_eq!(out.iter().filter(|d| d.class == VehicleClass::Person).count(), 2);
        assert!(out.iter().all(|d| d.riders == 0));
    }

    #[test]
    fn two_bikes_side_by_side_stay_two() {
        // Two motorcycles 10 px apart, each with its rider; each rider fuses with its own bike.
        let out = run(vec![
            det(VehicleClass::Motorcycle, 100.0, 140.0, 160.0, 200.0, 0.5),
            det(VehicleClass::Motorcycle, 170.0, 140.0, 230.0, 200.0, 0.6),
            det(VehicleClass::Person, 112.0, 90.0, 150.0, 170.0, 0.8),
            det(VehicleClass::Person, 180.0, 92.0, 218.0, 172.0, 0.7),
        ]);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!((out[0].bbox.x1, out[0].bbox.x2), (100.0, 160.0));
        assert_eq!((out[1].bbox.x1, out[1].bbox.x2), (170.0, 230.0));
        assert!(out.iter().all(|d| d.riders == 1 && d.class == VehicleClass::Motorcycle));
    }

    #[test]
    fn a_rider_seen_from_the_front_covers_the_bike_and_is_one_motorcycle() {
        // Bangkok clip, frame 290: one rider as person 0.51 [690, 221, 718, 276], motorcycle 0.75
        // [689, 251, 717, 291]... and the next one as car 0.41 [615, 219, 640, 266] with person
        // [616, 219, 640, 268] (same top: the "above" rule cannot see it).
        let out = run(vec![
            det(VehicleClass::Car, 615.0, 219.0, 640.0, 266.0, 0.41),
            det(VehicleClass::Person, 616.0, 219.0, 640.0, 268.0, 0.34),
            det(VehicleClass::Person, 690.0, 221.0, 718.0, 276.0, 0.51),
            det(VehicleClass::Motorcycle, 689.0, 251.0, 717.0, 291.0, 0.75),
        ]);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out.iter().all(|d| d.class == VehicleClass::Motorcycle && d.riders == 1), "{out:?}");
        assert_eq!(out[0].bbox, FrameBox { x1: 615.0, y1: 219.0, x2: 640.0, y2: 268.0 });
        // A pedestrian beside a parked motorcycle, a third over it (IoU 0.18), stays a person.
        let out = run(vec![
            det(VehicleClass::Person, 100.0, 100.0, 130.0, 160.0, 0.6),
            det(VehicleClass::Motorcycle, 120.0, 110.0, 150.0, 160.0, 0.6),
        ]);
        assert_eq!(out.len(), 2, "{out:?}");
    }

    #[test]
    fn off_leaves_detections_alone() {
        let mut dets = vec![
            det(VehicleClass::Person, 120.0, 90.0, 160.0, 170.0, 0.8),
            det(VehicleClass::Motorcycle, 100.0, 140.0, 180.0, 200.0, 0.5),
        ];
        let p = TwoWheelerParams { enabled: false, ..TwoWheelerParams::default() };
        fuse(&mut dets, &p, &mut Vec::new());
        assert_eq!(dets.len(), 2);
    }

    #[test]
    fn a_lone_fast_person_is_riding() {
        let p = TwoWheelerParams::default();
        // Calibrated: 25 km/h rides, 5 km/h walks.
        assert!(is_riding(&p, Some(25.0), 0.0, 80.0));
        assert!(!is_riding(&p, Some(5.0), 1000.0, 80.0));
        // Uncalibrated: a 80 px tall box moving 400 px/s (5 heights/s) rides; 60 px/s walks.
        assert!(is_riding(&p, None, 400.0, 80.0));
        assert!(!is_riding(&p, None, 60.0, 80.0));
    }
}
