//! The tuning sections of the site file: `[tracker]`, `[rules]`, `[two_wheelers]`, `[scale]`,
//! `[motion]` and `[pcu]`. Each type's `Default` is the one statement of its defaults, and
//! `problems()` its pure range checks, as (field within the section, message).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::in_range;
use crate::rules::{Anchor, VehicleClass};

/// Tracker parameters. The defaults suit YOLOX-Nano at 416 on street cameras at 5–30 fps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// Detections at or above this score lead the first association and may start tracks. Higher:
    /// fewer false tracks, more vehicles missed when the detector is unsure (small, distant, occluded).
    pub high_score: f32,
    /// Detections from here up to `high_score` only extend tracks that already exist. Lower: tracks
    /// survive weak frames; too low and clutter extends a track that has left.
    pub low_score: f32,
    /// A new track needs a detection at least this confident.
    pub new_track_score: f32,
    /// First association gate on 1 − IoU × score. Higher: fast vehicles at low frame rates (little
    /// overlap between frames) still match; too high and neighbours swap ids.
    pub match_cost: f32,
    /// Second association (weak detections) gate on 1 − IoU.
    pub low_match_cost: f32,
    /// Gate for matching tentative tracks, on 1 − IoU (no score weighting: a vehicle the detector is
    /// unsure of still gets its second hit when its boxes overlap).
    pub tentative_match_cost: f32,
    /// Consecutive matches before a track is confirmed and reported. Higher: fewer ghost tracks from
    /// one-frame false detections, at the cost of reporting a vehicle later.
    pub min_hits: u32,
    /// Seconds a lost track is kept for re-association before it ends. Longer bridges occlusions
    /// (a bus passing in front) but risks giving a new vehicle an old id.
    pub lost_buffer_s: f64,
    /// Two detections of different classes overlapping by more than this IoU are one vehicle seen as
    /// two classes (the detector's NMS is per class): the weaker is dropped before association.
    pub duplicate_iou: f32,
    /// Per class, `high_score` and `new_track_score` for detections of that class (e.g. a lower one
    /// for motorcycles, which a small model scores lower than cars). Classes not listed use the two
    /// above.
    pub class_high_score: BTreeMap<VehicleClass, f32>,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            // Tuned on the bundled clip (YOLOX-Nano at 416, 10 fps, small vehicles seen from above):
            // ByteTrack's 0.5/0.6 left half the moving cars without a track.
            high_score: 0.3,
            low_score: 0.1,
            new_track_score: 0.3,
            // 0.9 (was 0.8): a motorcycle in a dense group or a car far off moves by much of its own
            // box between detections (every 2nd frame); at 0.8 its track broke and the crossing was
            // lost (six truth clips, benches/README.md: errors 34 → 24 with nms_iou 0.6).
            match_cost: 0.9,
            low_match_cost: 0.5,
            tentative_match_cost: 0.8,
            min_hits: 2,
            lost_buffer_s: 1.5,
            duplicate_iou: 0.7,
            class_high_score: BTreeMap::new(),
        }
    }
}

impl TrackerConfig {
    /// `high_score` for a detection of `class`.
    pub fn high(&self, class: VehicleClass) -> f32 {
        self.class_high_score.get(&class).copied().unwrap_or(self.high_score)
    }

    /// `new_track_score` for a detection of `class`.
    pub fn new_track(&self, class: VehicleClass) -> f32 {
        self.class_high_score.get(&class).copied().unwrap_or(self.new_track_score)
    }

    /// Every problem with the values, as (field, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, v) in [
            ("high_score", self.high_score),
            ("low_score", self.low_score),
            ("new_track_score", self.new_track_score),
            ("match_cost", self.match_cost),
            ("low_match_cost", self.low_match_cost),
            ("tentative_match_cost", self.tentative_match_cost),
            ("duplicate_iou", self.duplicate_iou),
        ] {
            if !(0.0..=1.0).contains(&v) {
                out.push((name.to_owned(), "must be within 0..=1".to_owned()));
            }
        }
        for (class, v) in &self.class_high_score {
            if !(self.low_score..=1.0).contains(v) {
                out.push((format!("class_high_score.{class}"), "must be within tracker.low_score..=1".to_owned()));
            }
        }
        if self.low_score > self.high_score {
            out.push(("low_score".into(), "must not exceed tracker.high_score".into()));
        }
        if !(1..=100).contains(&self.min_hits) {
            out.push(("min_hits".into(), "must be 1 to 100 frames".into()));
        }
        if !(self.lost_buffer_s.is_finite() && (0.0..=60.0).contains(&self.lost_buffer_s)) {
            out.push(("lost_buffer_s".into(), "must be 0 to 60 seconds".into()));
        }
        out
    }
}

/// Tuning shared by all rules of a camera.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleParams {
    /// Half-width of the dead band around a line, as a share of the box's mean side (pixels). An anchor
    /// inside the band changes nothing, so a box jittering on the line counts at most once.
    pub band_share: f32,
    /// Lower bound of the dead band, frame pixels.
    pub band_min_px: f32,
    /// A track slower than this (frame pixels per second, Kalman estimate) never counts: parked and
    /// queued vehicles whose boxes breathe across a line stay uncounted.
    pub min_speed_px_s: f32,
    /// Ground speed is the regression slope over this many seconds of the track (see `speed`).
    pub speed_window_s: f64,
    /// Faster than this (km/h) is implausible: flagged and counted, never averaged in.
    pub max_speed_kmh: f32,
    /// Which point of a box is the vehicle on the ground, for speed and queue length.
    pub speed_anchor: Anchor,
    /// A vehicle in a queue zone slower than this (km/h; uncalibrated: `min_speed_px_s`) is queued.
    pub queue_speed_kmh: f32,
    /// A track back in the approach it came from after this long outside it made a U-turn (seconds).
    pub uturn_min_s: f64,
}

impl Default for RuleParams {
    fn default() -> Self {
        Self {
            band_share: 0.1,
            band_min_px: 3.0,
            min_speed_px_s: 8.0,
            speed_window_s: 2.0,
            max_speed_kmh: 160.0,
            speed_anchor: Anchor::BottomCentre,
            queue_speed_kmh: 5.0,
            uturn_min_s: 2.0,
        }
    }
}

impl RuleParams {
    /// Every problem with the values, as (field, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        in_range(&mut out, "band_share", self.band_share, 0.0..=1.0, "");
        in_range(&mut out, "band_min_px", self.band_min_px, 0.0..=200.0, " pixels");
        in_range(&mut out, "min_speed_px_s", self.min_speed_px_s, 0.0..=1000.0, " pixels/s");
        in_range(&mut out, "speed_window_s", self.speed_window_s, 0.1..=10.0, " s");
        in_range(&mut out, "max_speed_kmh", self.max_speed_kmh, 10.0..=400.0, " km/h");
        in_range(&mut out, "queue_speed_kmh", self.queue_speed_kmh, 0.0..=50.0, " km/h");
        in_range(&mut out, "uturn_min_s", self.uturn_min_s, 0.0..=600.0, " s");
        out
    }
}

/// The rules above, each with its trade-off. Defaults measured on the bundled clips; see
/// benches/README.md.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TwoWheelerParams {
    /// Off: riders and bikes are tracked and counted as the detector sees them.
    pub enabled: bool,
    /// Horizontal overlap of rider and bike, share of the narrower box. Lower: a rider leaning or a
    /// box drawn loosely still fuses; too low and a pedestrian beside a parked bike becomes its rider.
    pub min_overlap: f32,
    /// The rider's bottom must reach this far down the bike box (share of its height from its top).
    pub leg_reach: f32,
    /// A `car` under a rider no wider than this many rider widths is a motorcycle.
    pub car_width_ratio: f32,
    /// A lone person faster than this on the ground (km/h, calibrated cameras) is a rider.
    /// Pedestrians walk at 4–6 km/h and run at up to about 12.
    pub rider_speed_kmh: f32,
    /// Uncalibrated: a lone person whose box moves more than this many of its own heights per second
    /// is a rider (walking is about 0.8: 1.4 m/s for a 1.7 m person).
    pub rider_heights_per_s: f32,
    /// A person box overlapping a two-wheeler's (or narrow car's) box by at least this IoU is its
    /// rider seen from the front or behind. Lower: riders in looser boxes fuse; too low and a
    /// pedestrian walking past a parked motorcycle becomes its rider.
    pub coincident_iou: f32,
}

impl Default for TwoWheelerParams {
    fn default() -> Self {
        Self {
            enabled: true,
            min_overlap: 0.5,
            leg_reach: 0.25,
            car_width_ratio: 1.6,
            rider_speed_kmh: 15.0,
            rider_heights_per_s: 2.0,
            coincident_iou: 0.6,
        }
    }
}

impl TwoWheelerParams {
    /// Every problem with the values, as (field, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (field, v, lo, hi) in [
            ("min_overlap", self.min_overlap, 0.0, 1.0),
            ("leg_reach", self.leg_reach, 0.0, 1.0),
            ("car_width_ratio", self.car_width_ratio, 0.5, 5.0),
            ("rider_speed_kmh", self.rider_speed_kmh, 1.0, 100.0),
            ("rider_heights_per_s", self.rider_heights_per_s, 0.1, 50.0),
            ("coincident_iou", self.coincident_iou, 0.3, 1.0),
        ] {
            if !(lo..=hi).contains(&v) {
                out.push((field, format!("must be within {lo}..={hi}")));
            }
        }
        out
    }
}

/// How the scale is chosen (`[scale]` in the site file).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScaleParams {
    /// Model-input pixels a motorcycle (with rider) must be tall where it crosses the rules. Higher:
    /// small vehicles are found more often, at the cost of more tiles (each one a model run).
    pub target_px: f32,
    /// Uncalibrated cameras: the longest warm-up, seconds of stream time, before the scale is chosen
    /// from what was seen.
    pub warmup_s: f64,
    /// The shortest warm-up: it ends once `min_samples` boxes near the rules were measured over at
    /// least this many seconds (a busy road is measured in seconds).
    pub min_warmup_s: f64,
    /// Boxes near the rules that end a warm-up early (see `min_warmup_s`).
    pub min_samples: usize,
    /// Boxes of a class needed before its size counts.
    pub min_class_samples: usize,
    /// Seconds of stream time between two warm-ups (the view, the traffic or the light change).
    pub recheck_s: f64,
}

impl Default for ScaleParams {
    fn default() -> Self {
        Self {
            target_px: 24.0,
            warmup_s: 30.0,
            min_warmup_s: 5.0,
            min_samples: 40,
            min_class_samples: 8,
            recheck_s: 900.0,
        }
    }
}

impl ScaleParams {
    /// Every problem with the values, as (field, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(4.0..=200.0).contains(&self.target_px) {
            out.push(("target_px", "must be within 4..=200 model pixels".into()));
        }
        if !(1.0..=600.0).contains(&self.warmup_s) {
            out.push(("warmup_s", "must be within 1..=600 seconds".into()));
        }
        if !(0.0..=self.warmup_s.max(0.0)).contains(&self.min_warmup_s) {
            out.push(("min_warmup_s", "must be within 0..=warmup_s seconds".into()));
        }
        if !(1..=10_000).contains(&self.min_samples) {
            out.push(("min_samples", "must be within 1..=10000".into()));
        }
        if !(1..=10_000).contains(&self.min_class_samples) {
            out.push(("min_class_samples", "must be within 1..=10000".into()));
        }
        if !(60.0..=86_400.0).contains(&self.recheck_s) {
            out.push(("recheck_s", "must be within 60..=86400 seconds".into()));
        }
        out
    }
}

/// How detection follows motion (`[motion]` in the site file).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MotionParams {
    /// Skip inference on a still scene. Off: detect on every `every`-th frame whatever happens.
    pub enabled: bool,
    /// Grey levels (0–255) a block's mean must move by to count as changed. Compression noise on a
    /// still street moves a 4 × 4 block's mean by 1–3 levels; a vehicle by tens.
    pub threshold: u8,
    /// Changed blocks that make motion: 2 blocks of 4 scaled px, a motorcycle far off.
    pub min_blocks: u32,
    /// Longest run of skipped frames, seconds of stream time: a parked car that drives off slowly, or
    /// a change too faint to pass the threshold, is seen within this.
    pub max_skip_s: f64,
}

impl Default for MotionParams {
    fn default() -> Self {
        Self { enabled: true, threshold: 12, min_blocks: 2, max_skip_s: 2.0 }
    }
}

impl MotionParams {
    /// Every problem with the values, as (field, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(1..=128).contains(&self.threshold) {
            out.push(("threshold", "must be within 1..=128 grey levels".into()));
        }
        if !(1..=10_000).contains(&self.min_blocks) {
            out.push(("min_blocks", "must be within 1..=10000".into()));
        }
        if !(self.max_skip_s.is_finite() && (0.1..=60.0).contains(&self.max_skip_s)) {
            out.push(("max_skip_s", "must be within 0.1..=60 seconds".into()));
        }
        out
    }
}

/// Passenger-car units per class: what one vehicle of the class weighs in capacity terms.
///
/// Defaults: TCVN 4054:2005 (Vietnam's road design standard), table 2, flat terrain: bicycle 0.2,
/// motorcycle 0.3, car 1.0, truck 2.0 (2 axles; 3+ axles 2.5), bus 2.0 (under 25 seats; larger
/// 2.5). The motorcycle factor dominates the PCU total where motorcycles are most of the traffic
/// (Da Nang): the UK's 0.4 (DfT TA 79/99) would raise a 1 000-motorcycle hour by 100 PCU.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PcuFactors {
    pub car: f64,
    pub motorcycle: f64,
    pub bus: f64,
    pub truck: f64,
    pub bicycle: f64,
    /// Pedestrians are counted, not weighed: 0.
    pub person: f64,
}

impl Default for PcuFactors {
    fn default() -> Self {
        Self { car: 1.0, motorcycle: 0.3, bus: 2.0, truck: 2.0, bicycle: 0.2, person: 0.0 }
    }
}

impl PcuFactors {
    pub fn of(&self, class: VehicleClass) -> f64 {
        match class {
            VehicleClass::Car => self.car,
            VehicleClass::Motorcycle => self.motorcycle,
            VehicleClass::Bus => self.bus,
            VehicleClass::Truck => self.truck,
            VehicleClass::Bicycle => self.bicycle,
            VehicleClass::Person => self.person,
        }
    }

    /// Every problem with the values, as (field, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for class in VehicleClass::ALL {
            in_range(&mut out, class.as_str(), self.of(class), 0.0..=10.0, " passenger-car units");
        }
        out
    }
}
