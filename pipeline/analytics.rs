//! Counting rules over tracks: directional count lines and zones (occupancy, dwell).
//!
//! [`Rules`] owns the per-track state of every rule; `update` is called once per analysed frame with the
//! confirmed tracks and the ids the tracker ended, and pushes [`TrafficEvent`]s into a caller-owned
//! `Vec`. State of an ended track is dropped at once, so memory stays flat however long the box runs.
//!
//! All coordinates are source-frame pixels; times are PTS (seconds of stream) plus the wall clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::detect::VehicleClass;
use crate::geometry::{FrameBox, FramePoint};
use crate::track::TrackedObject;

/// Which point of a box stands for the vehicle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    /// Where the vehicle touches the road (side and oblique views).
    #[default]
    BottomCentre,
    /// The box centre (views from straight above).
    Centre,
}

impl Anchor {
    pub fn point(self, b: &FrameBox) -> FramePoint {
        match self {
            Anchor::BottomCentre => b.bottom_centre(),
            Anchor::Centre => FramePoint { x: 0.5 * (b.x1 + b.x2), y: 0.5 * (b.y1 + b.y2) },
        }
    }
}

/// Direction of a line crossing: `In` is towards the line's "in" side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// Which side of a line, walking from its first point to its second, is "in".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    #[default]
    Left,
    Right,
}

/// A directional count line (a segment: crossings of its extension do not count).
#[derive(Debug, Clone)]
pub struct LineSpec {
    pub id: Arc<str>,
    pub a: FramePoint,
    pub b: FramePoint,
    pub in_side: Side,
    pub anchor: Anchor,
    /// Lane label, for per-lane measures.
    pub lane: Option<Arc<str>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ZoneKind {
    /// Vehicles present and time occupied.
    #[default]
    Occupancy,
    /// A queue area: the same measures, read as queue presence and length in vehicles.
    Queue,
}

#[derive(Debug, Clone)]
pub struct ZoneSpec {
    pub id: Arc<str>,
    pub polygon: Vec<FramePoint>,
    pub kind: ZoneKind,
    pub anchor: Anchor,
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
}

impl Default for RuleParams {
    fn default() -> Self {
        Self { band_share: 0.1, band_min_px: 3.0, min_speed_px_s: 8.0 }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    Crossing { direction: Direction },
    ZoneEnter,
    ZoneExit { dwell: Duration },
}

/// Something a vehicle did, with both clocks.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficEvent {
    /// Line or zone id.
    pub rule: Arc<str>,
    pub kind: EventKind,
    pub track: u64,
    pub class: VehicleClass,
    pub pts: Duration,
    pub wall: SystemTime,
}

/// Quality counters: what the rules refused to count, for an engineer to judge a bin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleQuality {
    /// A track crossed a line again after it had been counted there (a U-turn, or jitter across a
    /// line the band did not absorb): not counted.
    pub recrossings_suppressed: u64,
    /// A side change too slow to be a passing vehicle (below `min_speed_px_s`): not counted.
    pub slow_crossings_ignored: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct LineState {
    /// Last side seen outside the dead band: −1 "in", +1 "out", 0 not yet seen.
    side: i8,
    /// Anchor when last seen on that side.
    at: FramePoint,
    counted: bool,
}

#[derive(Debug, Clone, Default)]
struct TrackState {
    lines: Vec<LineState>,
    /// PTS of entry for each zone the track is in.
    zones: Vec<Option<Duration>>,
    class: Option<VehicleClass>,
}

/// The rules of one camera and their per-track state.
#[derive(Debug)]
pub struct Rules {
    lines: Vec<LineSpec>,
    zones: Vec<ZoneSpec>,
    params: RuleParams,
    tracks: HashMap<u64, TrackState>,
    occupancy: Vec<u32>,
    pub quality: RuleQuality,
}

impl Rules {
    pub fn new(lines: Vec<LineSpec>, zones: Vec<ZoneSpec>, params: RuleParams) -> Self {
        let occupancy = vec![0; zones.len()];
        Self { lines, zones, params, tracks: HashMap::new(), occupancy, quality: RuleQuality::default() }
    }

    pub fn lines(&self) -> &[LineSpec] {
        &self.lines
    }

    pub fn zones(&self) -> &[ZoneSpec] {
        &self.zones
    }

    /// Vehicles in each zone after the last update, in `zones()` order.
    pub fn occupancy(&self) -> &[u32] {
        &self.occupancy
    }

    /// Tracks with rule state: bounded by the tracks alive.
    pub fn tracked(&self) -> usize {
        self.tracks.len()
    }

    /// Applies the rules to this frame's tracks, then drops the state of `ended` tracks (closing their
    /// zone visits). Events go to `out`.
    pub fn update(
        &mut self,
        pts: Duration,
        wall: SystemTime,
        tracks: &[TrackedObject],
        ended: &[u64],
        out: &mut Vec<TrafficEvent>,
    ) {
        let (n_lines, n_zones) = (self.lines.len(), self.zones.len());
        for t in tracks {
            let state = self.tracks.entry(t.id).or_insert_with(|| TrackState {
                lines: vec![LineState::default(); n_lines],
                zones: vec![None; n_zones],
                class: None,
            });
            state.class = Some(t.class);
            let speed = t.velocity.0.hypot(t.velocity.1);
            let size = 0.5 * ((t.bbox.x2 - t.bbox.x1) + (t.bbox.y2 - t.bbox.y1));
            let band = (self.params.band_share * size).max(self.params.band_min_px);
            for (line, ls) in self.lines.iter().zip(&mut state.lines) {
                let p = line.anchor.point(&t.bbox);
                let d = signed_distance(line, p);
                if d.abs() < band {
                    continue;
                }
                let side: i8 = if d < 0.0 { -1 } else { 1 };
                if ls.side != 0 && side != ls.side && crosses_segment(line, ls.at, p) {
                    if ls.counted {
                        self.quality.recrossings_suppressed += 1;
                    } else if speed < self.params.min_speed_px_s {
                        self.quality.slow_crossings_ignored += 1;
                    } else {
                        ls.counted = true;
                        // Towards side −1 is towards the "in" side.
                        let direction = if side < 0 { Direction::In } else { Direction::Out };
                        out.push(TrafficEvent {
                            rule: line.id.clone(),
                            kind: EventKind::Crossing { direction },
                            track: t.id,
                            class: t.class,
                            pts,
                            wall,
                        });
                    }
                }
                ls.side = side;
                ls.at = p;
            }
            for (zone, entered) in self.zones.iter().zip(&mut state.zones) {
                let inside = point_in_polygon(zone.anchor.point(&t.bbox), &zone.polygon);
                match (inside, *entered) {
                    (true, None) => {
                        *entered = Some(pts);
                        out.push(TrafficEvent {
                            rule: zone.id.clone(),
                            kind: EventKind::ZoneEnter,
                            track: t.id,
                            class: t.class,
                            pts,
                            wall,
                        });
                    }
                    (false, Some(since)) => {
                        *entered = None;
                        out.push(TrafficEvent {
                            rule: zone.id.clone(),
                            kind: EventKind::ZoneExit { dwell: pts.saturating_sub(since) },
                            track: t.id,
                            class: t.class,
                            pts,
                            wall,
                        });
                    }
                    _ => {}
                }
            }
        }
        for id in ended {
            let Some(state) = self.tracks.remove(id) else { continue };
            let class = state.class.unwrap_or(VehicleClass::Car);
            for (zone, entered) in self.zones.iter().zip(state.zones) {
                if let Some(since) = entered {
                    out.push(TrafficEvent {
                        rule: zone.id.clone(),
                        kind: EventKind::ZoneExit { dwell: pts.saturating_sub(since) },
                        track: *id,
                        class,
                        pts,
                        wall,
                    });
                }
            }
        }
        for (z, count) in self.occupancy.iter_mut().enumerate() {
            *count = self.tracks.values().filter(|s| s.zones[z].is_some()).count() as u32;
        }
    }
}

/// Signed distance of `p` from the line through the segment, frame pixels: negative on the "in" side.
fn signed_distance(line: &LineSpec, p: FramePoint) -> f32 {
    let (dx, dy) = (line.b.x - line.a.x, line.b.y - line.a.y);
    let len = dx.hypot(dy).max(1e-6);
    // With y pointing down the image, a negative cross product is on the left walking from a to b.
    let cross = (dx * (p.y - line.a.y) - dy * (p.x - line.a.x)) / len;
    match line.in_side {
        Side::Left => cross,
        Side::Right => -cross,
    }
}

/// Whether the move `from → to` crosses the segment itself, not its extension.
fn crosses_segment(line: &LineSpec, from: FramePoint, to: FramePoint) -> bool {
    segments_intersect(from, to, line.a, line.b)
}

fn orient(a: FramePoint, b: FramePoint, c: FramePoint) -> f32 {
    (b.x - a.x) * (c.y - a.y) - (b.y - a.y) * (c.x - a.x)
}

/// Proper or touching intersection of segments p1–p2 and q1–q2.
pub fn segments_intersect(p1: FramePoint, p2: FramePoint, q1: FramePoint, q2: FramePoint) -> bool {
    let (d1, d2) = (orient(q1, q2, p1), orient(q1, q2, p2));
    let (d3, d4) = (orient(p1, p2, q1), orient(p1, p2, q2));
    (d1 * d2 <= 0.0) && (d3 * d4 <= 0.0) && !(d1 == 0.0 && d2 == 0.0 && d3 == 0.0 && d4 == 0.0)
}

/// Even–odd rule.
pub fn point_in_polygon(p: FramePoint, poly: &[FramePoint]) -> bool {
    let mut inside = false;
    let n = poly.len();
    for i in 0..n {
        let (a, b) = (poly[i], poly[(i + n - 1) % n]);
        if (a.y > p.y) != (b.y > p.y) && p.x < (b.x - a.x) * (p.y - a.y) / (b.y - a.y) + a.x {
            inside = !inside;
        }
    }
    inside
}

#[cfg(test)]
mod tests;
