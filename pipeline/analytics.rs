//! Counting rules over tracks: directional count lines, zones (occupancy, dwell, queues), turning
//! movements between approaches, virtual loop detectors, and ground speed when the camera is
//! calibrated.
//!
//! [`Rules`] owns the per-track state of every rule; `update` is called once per analysed frame with the
//! confirmed tracks and the ids the tracker ended, and pushes [`TrafficEvent`]s into a caller-owned
//! `Vec`. State of an ended track is dropped at once, so memory stays flat however long the box runs.
//!
//! All coordinates are source-frame pixels unless named ground (metres, through the camera's
//! homography); times are PTS (seconds of stream) plus the wall clock.

pub mod speed;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::detect::VehicleClass;
use crate::geometry::{FrameBox, FramePoint, GroundPoint, Homography};
use crate::track::TrackedObject;
pub use speed::Speed;
use speed::SpeedTrack;

pub use junction_schema::rules::{Anchor, Side, ZoneKind};
pub use junction_schema::site::RuleParams;

/// The point of a frame box an [`Anchor`] names.
pub trait AnchorPoint {
    fn point(self, b: &FrameBox) -> FramePoint;
}

impl AnchorPoint for Anchor {
    fn point(self, b: &FrameBox) -> FramePoint {
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

/// A directional count line (a segment: crossings of its extension do not count).
#[derive(Debug, Clone, PartialEq)]
pub struct LineSpec {
    pub id: Arc<str>,
    pub a: FramePoint,
    pub b: FramePoint,
    pub in_side: Side,
    pub anchor: Anchor,
    /// Lane label, for per-lane measures.
    pub lane: Option<Arc<str>>,
    /// Only tracks of these classes count on this line (a crosswalk's `["person"]`); `None`: all.
    pub classes: Option<Vec<VehicleClass>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ZoneSpec {
    pub id: Arc<str>,
    pub polygon: Vec<FramePoint>,
    pub kind: ZoneKind,
    pub anchor: Anchor,
}

/// A turning movement through the junction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Turn {
    Left,
    Through,
    Right,
    UTurn,
}

impl Turn {
    pub fn as_str(self) -> &'static str {
        match self {
            Turn::Left => "left",
            Turn::Through => "through",
            Turn::Right => "right",
            Turn::UTurn => "u_turn",
        }
    }
}

/// Where an approach is: a polygon over the leg's lanes, or a line across them.
#[derive(Debug, Clone, PartialEq)]
pub enum Region {
    Polygon(Vec<FramePoint>),
    Line(FramePoint, FramePoint),
}

impl Region {
    /// A representative point (polygon vertex mean, line midpoint), frame pixels.
    pub fn reference(&self) -> FramePoint {
        match self {
            Region::Polygon(p) => centroid(p),
            Region::Line(a, b) => FramePoint { x: 0.5 * (a.x + b.x), y: 0.5 * (a.y + b.y) },
        }
    }

    /// Whether a track at `now` (coming from `prev`) is at this region: inside the polygon, or
    /// crossing the line this frame.
    fn touches(&self, prev: Option<FramePoint>, now: FramePoint) -> bool {
        match self {
            Region::Polygon(p) => point_in_polygon(now, p),
            Region::Line(a, b) => prev.is_some_and(|q| segments_intersect(q, now, *a, *b)),
        }
    }
}

/// One leg of the junction, for turning movements.
#[derive(Debug, Clone, PartialEq)]
pub struct ApproachSpec {
    pub id: Arc<str>,
    pub region: Region,
    pub anchor: Anchor,
}

/// A virtual loop detector: "on" while a vehicle's anchor is in the polygon.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopSpec {
    pub id: Arc<str>,
    pub polygon: Vec<FramePoint>,
    /// Detector channel: the parameter of the ATSPM events 81/82.
    pub channel: u16,
    pub anchor: Anchor,
}

/// A zone's state after a frame.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ZoneNow {
    pub vehicles: u32,
    /// Queue zones: vehicles slower than `queue_speed_kmh`.
    pub queued: u32,
    /// Queue zones on a calibrated camera: metres from the zone's front edge (its first polygon edge,
    /// the stop line) to the farthest queued vehicle's anchor.
    pub queue_m: Option<f32>,
}

/// Mean of the points (the junction centre of approach references, a polygon's reference).
fn centroid(points: &[FramePoint]) -> FramePoint {
    let n = points.len().max(1) as f32;
    FramePoint { x: points.iter().map(|p| p.x).sum::<f32>() / n, y: points.iter().map(|p| p.y).sum::<f32>() / n }
}

/// Movement of every turn between approaches, from their geometry in the image (seen from above the
/// road, so clockwise on screen is a right turn): the angle between the heading in (approach →
/// junction centre) and the heading out (centre → exit approach); within 45° is through.
pub fn turn_between(approaches: &[ApproachSpec], from: usize, to: usize) -> Turn {
    if from == to {
        return Turn::UTurn;
    }
    let refs: Vec<FramePoint> = approaches.iter().map(|a| a.region.reference()).collect();
    let c = centroid(&refs);
    let (ix, iy) = (c.x - refs[from].x, c.y - refs[from].y);
    let (ox, oy) = (refs[to].x - c.x, refs[to].y - c.y);
    // Image y points down: a positive cross product turns clockwise on screen.
    let angle = (ix * oy - iy * ox).atan2(ix * ox + iy * oy).to_degrees();
    match angle {
        a if a.abs() <= 45.0 => Turn::Through,
        a if a.abs() >= 150.0 => Turn::UTurn,
        a if a > 0.0 => Turn::Right,
        _ => Turn::Left,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    Crossing {
        direction: Direction,
    },
    ZoneEnter,
    ZoneExit {
        dwell: Duration,
    },
    /// `rule` is the approach the vehicle came from.
    Movement {
        to: Arc<str>,
        turn: Turn,
    },
    /// Loop detector on (ATSPM event 82) / off (81); `rule` is the loop id.
    LoopOn {
        channel: u16,
    },
    LoopOff {
        channel: u16,
    },
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Crossing { .. } => "crossing",
            EventKind::ZoneEnter => "zone_enter",
            EventKind::ZoneExit { .. } => "zone_exit",
            EventKind::Movement { .. } => "movement",
            EventKind::LoopOn { .. } => "loop_on",
            EventKind::LoopOff { .. } => "loop_off",
        }
    }
}

/// Something a vehicle did, with both clocks.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficEvent {
    /// Line or zone id.
    pub rule: Arc<str>,
    pub kind: EventKind,
    pub track: u64,
    pub class: VehicleClass,
    /// The share of the track's class vote that `class` won, 0–1 (1 for events without a track).
    pub class_share: f32,
    pub pts: Duration,
    pub wall: SystemTime,
    /// Ground speed at the event (crossings, movements) on a calibrated camera.
    pub speed: Option<Speed>,
}

/// Quality counters: what the rules refused to count, for an engineer to judge a bin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleQuality {
    /// A track crossed a line again after it had been counted there (a U-turn, or jitter across a
    /// line the band did not absorb): not counted.
    pub recrossings_suppressed: u64,
    /// A side change too slow to be a passing vehicle (below `min_speed_px_s`): not counted.
    pub slow_crossings_ignored: u64,
    /// Speeds above `max_speed_kmh`: not averaged in.
    pub implausible_speeds: u64,
    /// Tracks that entered by an approach and ended without leaving by one.
    pub unmatched_movements: u64,
    /// From the tracker (set by the runtime): tracks confirmed where one had just been lost, the same
    /// vehicle under a new id.
    pub track_fragments: u64,
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
    speed: SpeedTrack,
    /// Ground anchor now, on a calibrated camera.
    ground: Option<GroundPoint>,
    /// Ground speed now (this frame's regression), on a calibrated camera.
    speed_now: Option<Speed>,
    /// Approach anchor last frame (for line approaches).
    approach_anchor: Option<FramePoint>,
    /// The approach it entered by.
    entry: Option<usize>,
    /// When (PTS seconds) it left its entry approach, while outside it.
    left_entry: Option<f64>,
    /// Its movement has been counted.
    moved: bool,
    /// Farthest it has been from its entry approach's reference point, frame pixels.
    max_away: f32,
}

impl TrackState {
    fn new(n_lines: usize, n_zones: usize) -> Self {
        Self {
            lines: vec![LineState::default(); n_lines],
            zones: vec![None; n_zones],
            class: None,
            speed: SpeedTrack::default(),
            ground: None,
            speed_now: None,
            approach_anchor: None,
            entry: None,
            left_entry: None,
            moved: false,
            max_away: 0.0,
        }
    }
}

/// The rules of one camera and their per-track state.
#[derive(Debug)]
pub struct Rules {
    lines: Vec<LineSpec>,
    zones: Vec<ZoneSpec>,
    approaches: Vec<ApproachSpec>,
    /// Per approach: distance from its reference point to the junction centre, frame pixels.
    approach_reach: Vec<f32>,
    loops: Vec<LoopSpec>,
    ground: Option<Homography>,
    params: RuleParams,
    tracks: HashMap<u64, TrackState>,
    occupancy: Vec<u32>,
    zone_now: Vec<ZoneNow>,
    /// Per loop: the tracks on it (a track stays on until seen off it or ended, so a detection
    /// missing for a frame does not flicker the detector).
    loop_members: Vec<Vec<u64>>,
    /// Per zone: its front edge (first polygon edge) on the ground, for queue length.
    fronts: Vec<Option<(GroundPoint, GroundPoint)>>,
    pub quality: RuleQuality,
}

impl Rules {
    pub fn new(lines: Vec<LineSpec>, zones: Vec<ZoneSpec>, params: RuleParams) -> Self {
        let occupancy = vec![0; zones.len()];
        let zone_now = vec![ZoneNow::default(); zones.len()];
        let fronts = vec![None; zones.len()];
        Self {
            lines,
            zones,
            approaches: Vec::new(),
            approach_reach: Vec::new(),
            loops: Vec::new(),
            ground: None,
            params,
            tracks: HashMap::new(),
            occupancy,
            zone_now,
            loop_members: Vec::new(),
            fronts,
            quality: RuleQuality::default(),
        }
    }

    /// Turning movements between these approaches.
    pub fn with_approaches(mut self, approaches: Vec<ApproachSpec>) -> Self {
        let refs: Vec<FramePoint> = approaches.iter().map(|a| a.region.reference()).collect();
        let c = centroid(&refs);
        self.approach_reach = refs.iter().map(|r| (r.x - c.x).hypot(r.y - c.y)).collect();
        self.approaches = approaches;
        self
    }

    /// Virtual loop detectors.
    pub fn with_loops(mut self, loops: Vec<LoopSpec>) -> Self {
        self.loop_members = vec![Vec::new(); loops.len()];
        self.loops = loops;
        self
    }

    /// The camera's ground plane: speeds and queue lengths in metres.
    pub fn with_ground(mut self, h: Homography) -> Self {
        self.fronts = self
            .zones
            .iter()
            .map(|z| match z.polygon.as_slice() {
                [a, b, ..] => Some((h.to_ground(*a), h.to_ground(*b))),
                _ => None,
            })
            .collect();
        self.ground = Some(h);
        self
    }

    pub fn approaches(&self) -> &[ApproachSpec] {
        &self.approaches
    }

    /// Moves the per-track state of `self` into `new` (the same camera's rules after a reload), so
    /// that a rule that did not change goes on as if nothing happened: a vehicle half-way over an
    /// unchanged line is counted once, a zone visit keeps its entry time, a loop stays on. Changed and
    /// added rules start from nothing (a track's side of a new line is learnt on its next frame);
    /// movements carry on only if no approach changed. Quality counters carry on.
    pub fn carry_into(self, mut new: Rules) -> Rules {
        let lines: Vec<Option<usize>> = new.lines.iter().map(|l| self.lines.iter().position(|o| o == l)).collect();
        let zones: Vec<Option<usize>> = new.zones.iter().map(|z| self.zones.iter().position(|o| o == z)).collect();
        let loops: Vec<Option<usize>> = new.loops.iter().map(|l| self.loops.iter().position(|o| o == l)).collect();
        let same_approaches = self.approaches == new.approaches;
        for (id, old) in self.tracks {
            let mut st = TrackState::new(new.lines.len(), new.zones.len());
            for (j, from) in lines.iter().enumerate() {
                if let Some(s) = from.and_then(|i| old.lines.get(i)) {
                    st.lines[j] = *s;
                }
            }
            for (j, from) in zones.iter().enumerate() {
                if let Some(z) = from.and_then(|i| old.zones.get(i)) {
                    st.zones[j] = *z;
                }
            }
            st.class = old.class;
            st.speed = old.speed;
            st.ground = old.ground;
            st.speed_now = old.speed_now;
            if same_approaches {
                st.approach_anchor = old.approach_anchor;
                st.entry = old.entry;
                st.left_entry = old.left_entry;
                st.moved = old.moved;
                st.max_away = old.max_away;
            }
            new.tracks.insert(id, st);
        }
        for (j, from) in zones.iter().enumerate() {
            if let Some(i) = *from {
                new.occupancy[j] = self.occupancy.get(i).copied().unwrap_or(0);
                new.zone_now[j] = self.zone_now.get(i).copied().unwrap_or_default();
            }
        }
        for (j, from) in loops.iter().enumerate() {
            if let (Some(i), Some(slot)) = (*from, new.loop_members.get_mut(j)) {
                *slot = self.loop_members.get(i).cloned().unwrap_or_default();
            }
        }
        new.quality = self.quality;
        new
    }

    pub fn loops(&self) -> &[LoopSpec] {
        &self.loops
    }

    /// Each zone after the last update, in `zones()` order.
    pub fn zone_now(&self) -> &[ZoneNow] {
        &self.zone_now
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
        let secs = pts.as_secs_f64();
        for t in tracks {
            let state = self.tracks.entry(t.id).or_insert_with(|| TrackState::new(n_lines, n_zones));
            state.class = Some(t.class);
            let ground_speed = match &self.ground {
                Some(h) => {
                    let g = h.to_ground(self.params.speed_anchor.point(&t.detection));
                    state.ground = Some(g);
                    state.speed.push(secs, g, self.params.speed_window_s);
                    state.speed.speed(self.params.speed_window_s, self.params.max_speed_kmh)
                }
                None => None,
            };
            state.speed_now = ground_speed;
            let speed = t.velocity.0.hypot(t.velocity.1);
            let size = 0.5 * ((t.bbox.x2 - t.bbox.x1) + (t.bbox.y2 - t.bbox.y1));
            let band = (self.params.band_share * size).max(self.params.band_min_px);
            for (line, ls) in self.lines.iter().zip(&mut state.lines) {
                let class = line_class(line, t);
                if line.classes.as_ref().is_some_and(|c| !c.contains(&class)) {
                    continue;
                }
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
                        if ground_speed.is_some_and(|s| !s.plausible) {
                            self.quality.implausible_speeds += 1;
                        }
                        out.push(TrafficEvent {
                            rule: line.id.clone(),
                            kind: EventKind::Crossing { direction },
                            track: t.id,
                            class,
                            class_share: if class == t.class { t.class_share } else { t.person_share },
                            pts,
                            wall,
                            speed: ground_speed,
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
                            class_share: t.class_share,
                            pts,
                            wall,
                            speed: None,
                        });
                    }
                    (false, Some(since)) => {
                        *entered = None;
                        out.push(TrafficEvent {
                            rule: zone.id.clone(),
                            kind: EventKind::ZoneExit { dwell: pts.saturating_sub(since) },
                            track: t.id,
                            class: t.class,
                            class_share: t.class_share,
                            pts,
                            wall,
                            speed: None,
                        });
                    }
                    _ => {}
                }
            }
            // Turning movements: the first approach touched is the entry; the next different one the
            // exit; back in the entry after `uturn_min_s` outside it, a U-turn.
            // A parked vehicle inside an approach is not entering the junction: only moving tracks
            // touch approaches.
            if !self.approaches.is_empty() && !state.moved {
                let anchor = self.approaches[0].anchor.point(&t.bbox);
                let prev = state.approach_anchor.replace(anchor);
                // Moving: faster than the queue speed on the ground when calibrated, else than
                // min_speed_px_s in the image.
                let moving = match ground_speed {
                    Some(g) => g.kmh >= self.params.queue_speed_kmh,
                    None => speed >= self.params.min_speed_px_s,
                };
                let at: Option<usize> =
                    if !moving { None } else { self.approaches.iter().position(|a| a.region.touches(prev, anchor)) };
                let mut movement = None;
                if let Some(e) = state.entry {
                    let r = self.approaches[e].region.reference();
                    state.max_away = state.max_away.max((anchor.x - r.x).hypot(anchor.y - r.y));
                }
                match (state.entry, at) {
                    (None, Some(j)) => state.entry = Some(j),
                    (Some(e), Some(j)) if j != e => movement = Some((e, j)),
                    (Some(e), Some(_)) => {
                        // A U-turn went at least halfway to the junction's centre and came back.
                        let halfway = 0.5 * self.approach_reach[e];
                        if state.left_entry.is_some_and(|t0| secs - t0 >= self.params.uturn_min_s)
                            && state.max_away >= halfway
                        {
                            movement = Some((e, e));
                        }
                        state.left_entry = None;
                    }
                    (Some(_), None) => {
                        state.left_entry.get_or_insert(secs);
                    }
                    (None, None) => {}
                }
                if let Some((from, to)) = movement {
                    state.moved = true;
                    if ground_speed.is_some_and(|s| !s.plausible) {
                        self.quality.implausible_speeds += 1;
                    }
                    out.push(TrafficEvent {
                        rule: self.approaches[from].id.clone(),
                        kind: EventKind::Movement {
                            to: self.approaches[to].id.clone(),
                            turn: turn_between(&self.approaches, from, to),
                        },
                        track: t.id,
                        class: t.class,
                        class_share: t.class_share,
                        pts,
                        wall,
                        speed: ground_speed,
                    });
                }
            }
        }
        self.update_loops(pts, wall, tracks, ended, out);
        for id in ended {
            let Some(state) = self.tracks.remove(id) else { continue };
            if state.entry.is_some() && !state.moved {
                self.quality.unmatched_movements += 1;
            }
            let class = state.class.unwrap_or(VehicleClass::Car);
            for (zone, entered) in self.zones.iter().zip(state.zones) {
                if let Some(since) = entered {
                    out.push(TrafficEvent {
                        rule: zone.id.clone(),
                        kind: EventKind::ZoneExit { dwell: pts.saturating_sub(since) },
                        track: *id,
                        class,
                        class_share: 1.0,
                        pts,
                        wall,
                        speed: None,
                    });
                }
            }
        }
        for (z, count) in self.occupancy.iter_mut().enumerate() {
            *count = self.tracks.values().filter(|s| s.zones[z].is_some()).count() as u32;
        }
        self.update_queues(tracks);
    }

    /// Queue zones: vehicles slower than the queue speed, and the queue's length on the ground.
    fn update_queues(&mut self, tracks: &[TrackedObject]) {
        for (z, zone) in self.zones.iter().enumerate() {
            let mut now = ZoneNow { vehicles: self.occupancy[z], ..ZoneNow::default() };
            if zone.kind == ZoneKind::Queue {
                let mut far: Option<f32> = None;
                for t in tracks {
                    let Some(state) = self.tracks.get(&t.id) else { continue };
                    if state.zones[z].is_none() {
                        continue;
                    }
                    let slow = match &self.ground {
                        Some(_) => state.speed_now.is_some_and(|s| s.kmh < self.params.queue_speed_kmh),
                        None => t.velocity.0.hypot(t.velocity.1) < self.params.min_speed_px_s,
                    };
                    if !slow {
                        continue;
                    }
                    now.queued += 1;
                    if let (Some(g), Some((a, b))) = (state.ground, self.fronts[z]) {
                        let d = distance_to_segment(g, a, b) as f32;
                        far = Some(far.map_or(d, |f: f32| f.max(d)));
                    }
                }
                now.queue_m = if self.ground.is_some() { Some(far.unwrap_or(0.0)) } else { None };
            }
            self.zone_now[z] = now;
        }
    }

    /// Loop detectors: on when the first vehicle arrives, off when the last leaves (or ends).
    fn update_loops(
        &mut self,
        pts: Duration,
        wall: SystemTime,
        tracks: &[TrackedObject],
        ended: &[u64],
        out: &mut Vec<TrafficEvent>,
    ) {
        for (l, spec) in self.loops.iter().enumerate() {
            let members = &mut self.loop_members[l];
            let was_on = !members.is_empty();
            let mut first: Option<&TrackedObject> = None;
            for t in tracks {
                let inside = point_in_polygon(spec.anchor.point(&t.bbox), &spec.polygon);
                let member = members.iter().position(|id| *id == t.id);
                match (inside, member) {
                    (true, None) => {
                        members.push(t.id);
                        first.get_or_insert(t);
                    }
                    (false, Some(i)) => {
                        members.swap_remove(i);
                    }
                    _ => {}
                }
            }
            members.retain(|id| !ended.contains(id));
            let is_on = !members.is_empty();
            let channel = spec.channel;
            let event = |kind, track, class| TrafficEvent {
                rule: spec.id.clone(),
                kind,
                track,
                class,
                class_share: 1.0,
                pts,
                wall,
                speed: None,
            };
            if !was_on && is_on {
                let (track, class) = first.map_or((0, VehicleClass::Car), |t| (t.id, t.class));
                out.push(event(EventKind::LoopOn { channel }, track, class));
            } else if was_on && !is_on {
                out.push(event(EventKind::LoopOff { channel }, 0, VehicleClass::Car));
            }
        }
    }
}

/// The class a track counts as on `line`: its voted class, except on a line for people (its
/// classes admit `person` but not `motorcycle`), where a track seen mostly as a lone person (a fast
/// one votes motorcycle: a rider whose bike was missed, see crate::detect::twowheel) counts as a
/// person: a jogger on a crosswalk is a pedestrian there.
fn line_class(line: &LineSpec, t: &TrackedObject) -> VehicleClass {
    match &line.classes {
        Some(c)
            if t.class == VehicleClass::Motorcycle
                && t.person_share >= 0.5
                && c.contains(&VehicleClass::Person)
                && !c.contains(&VehicleClass::Motorcycle) =>
        {
            VehicleClass::Person
        }
        _ => t.class,
    }
}

/// Distance from `p` to the segment a–b, metres.
fn distance_to_segment(p: GroundPoint, a: GroundPoint, b: GroundPoint) -> f64 {
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 { (((p.x - a.x) * dx + (p.y - a.y) * dy) / len2).clamp(0.0, 1.0) } else { 0.0 };
    p.distance(&GroundPoint { x: a.x + t * dx, y: a.y + t * dy })
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

#[cfg(test)]
pub(crate) mod traffic_tests;
