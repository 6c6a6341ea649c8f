//! Multi-object tracking: ByteTrack (Zhang et al., 2022) on frame-pixel boxes.
//!
//! Each update: predict every track to the frame's PTS (Kalman, constant velocity, variable time step);
//! match confident detections to tracked and lost tracks (Hungarian, IoU × score); match the remaining
//! tracked tracks to the weak detections (IoU), which keeps vehicles through partial occlusion without
//! letting weak detections start tracks; match new, unconfirmed tracks; start tentative tracks from the
//! confident leftovers. A track is confirmed after `min_hits` consecutive matches and ends after
//! `lost_buffer_s` seconds unseen: its id is then reported in [`TrackerOutput::ended`] so that rules
//! drop their state for it.
//!
//! The tracker must be called on every analysed frame, empty ones too: lost tracks age by PTS, so on an
//! empty night road they still end.

pub mod assign;
pub mod kalman;

use std::time::Duration;

pub use junction_schema::site::TrackerConfig;

use crate::detect::twowheel::{self, TwoWheelerParams};
use crate::detect::{Detection, VehicleClass};
use crate::geometry::{FrameBox, FramePoint, Homography};
use assign::Assigner;
use kalman::{Kalman, measurement};

/// What a track's class vote needs beyond the detections: the two-wheeler rules and, on a calibrated
/// camera, the ground plane for a lone person's speed.
#[derive(Debug, Clone, Default)]
pub struct ClassEvidence {
    pub two_wheelers: TwoWheelerParams,
    pub ground: Option<Homography>,
}

/// A confirmed track as seen on this frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackedObject {
    pub id: u64,
    /// Kalman-filtered box, frame pixels.
    pub bbox: FrameBox,
    /// The detection matched on this frame, frame pixels: unfiltered, so it does not lag when the
    /// image motion accelerates under perspective (speed regresses over these).
    pub detection: FrameBox,
    /// The class with the most votes over the track's life: each detection votes with its score ×
    /// the square root of its box's area (frame pixels: a vehicle seen large and sharp is classed
    /// more reliably), two-wheeler evidence counting more ([`vote`]). A few frames as another class do
    /// not flip a track seen for long.
    pub class: VehicleClass,
    /// The share of all votes that `class` won, 0–1.
    pub class_share: f32,
    /// The share of the votes cast by lone `person` detections (whatever they voted): a track seen
    /// mostly as a person, e.g. a rider without a detected bike, or a jogger.
    pub person_share: f32,
    /// Score of the detection matched on this frame.
    pub score: f32,
    /// Centre velocity, frame pixels per second.
    pub velocity: (f32, f32),
}

/// What one update produced; the caller owns it and reuses it.
#[derive(Debug, Default, Clone)]
pub struct TrackerOutput {
    /// Confirmed tracks matched on this frame.
    pub tracks: Vec<TrackedObject>,
    /// Ids of confirmed tracks that ended on this update (lost too long, or `finish`).
    pub ended: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Tentative,
    Tracked,
    Lost,
}

#[derive(Debug, Clone)]
struct Track {
    id: u64,
    kf: Kalman,
    state: State,
    hits: u32,
    last_seen: Duration,
    votes: [f32; VehicleClass::ALL.len()],
    /// Of the votes, those cast by lone person detections.
    person_votes: f32,
    score: f32,
    matched: bool,
    /// Box of the last matched detection.
    detection: FrameBox,
    /// A newer track has already been counted as this one's continuation (a fragment).
    succeeded: bool,
}

impl Track {
    /// The winning class and its share of the votes; the share of lone person votes.
    fn class(&self) -> (VehicleClass, f32, f32) {
        let mut best = 0;
        for (i, v) in self.votes.iter().enumerate() {
            if *v > self.votes[best] {
                best = i;
            }
        }
        let total: f32 = self.votes.iter().sum();
        if total <= 0.0 {
            return (VehicleClass::ALL[best], 1.0, 0.0);
        }
        (VehicleClass::ALL[best], self.votes[best] / total, self.person_votes / total)
    }

    /// As seen on this frame: the Kalman box and velocity, the last matched detection.
    fn output(&self) -> TrackedObject {
        let [x1, y1, x2, y2] = self.kf.bbox();
        let (vx, vy) = self.kf.velocity();
        let (class, class_share, person_share) = self.class();
        TrackedObject {
            id: self.id,
            bbox: FrameBox { x1: x1 as f32, y1: y1 as f32, x2: x2 as f32, y2: y2 as f32 },
            detection: self.detection,
            class,
            class_share,
            person_share,
            score: self.score,
            velocity: (vx as f32, vy as f32),
        }
    }

    /// The Kalman state's box, frame pixels.
    fn frame_box(&self) -> FrameBox {
        let [x1, y1, x2, y2] = self.kf.bbox();
        FrameBox { x1: x1 as f32, y1: y1 as f32, x2: x2 as f32, y2: y2 as f32 }
    }

    fn observe(&mut self, det: &Detection, pts: Duration, evidence: &ClassEvidence) {
        self.kf.update(measurement(det.bbox.x1, det.bbox.y1, det.bbox.x2, det.bbox.y2));
        self.hits += 1;
        self.last_seen = pts;
        self.score = det.score;
        self.detection = det.bbox;
        let v = vote(det, self.kf.velocity(), evidence);
        self.votes[class_index(v.class)] += v.weight;
        if v.lone_person {
            self.person_votes += v.weight;
        }
        self.matched = true;
    }
}

/// One detection's vote on its track's class.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Vote {
    class: VehicleClass,
    weight: f32,
    /// Cast by a lone person detection (not fused with a bike).
    lone_person: bool,
}

/// How much more a fused rider and bike's vote counts: two detections agree it is a two-wheeler.
const FUSED_WEIGHT: f32 = 2.0;
/// How much more a motorcycle's or bicycle's own vote counts: a small model often calls a two-wheeler
/// seen from the front a narrow car or a person for a frame or two, rarely the other way round.
const TWO_WHEELER_WEIGHT: f32 = 1.5;

/// The class a detection votes for on its track, and the vote's weight: its score × the square root
/// of its box's area (frame pixels), × [`FUSED_WEIGHT`] for a fused rider and bike, ×
/// [`TWO_WHEELER_WEIGHT`] for a motorcycle or bicycle; a lone person moving like a rider votes
/// motorcycle ([`twowheel::is_riding`]).
fn vote(det: &Detection, velocity: (f64, f64), evidence: &ClassEvidence) -> Vote {
    let p = &evidence.two_wheelers;
    let b = &det.bbox;
    let size = ((b.x2 - b.x1).max(0.0) * (b.y2 - b.y1).max(0.0)).sqrt().max(1.0);
    let base = det.score * size;
    if det.riders > 0 && p.enabled {
        return Vote { class: det.class, weight: base * FUSED_WEIGHT, lone_person: false };
    }
    if det.class.is_two_wheeler() && p.enabled {
        return Vote { class: det.class, weight: base * TWO_WHEELER_WEIGHT, lone_person: false };
    }
    let lone_person = det.class == VehicleClass::Person;
    if lone_person && p.enabled {
        let b = &det.bbox;
        let (vx, vy) = (velocity.0 as f32, velocity.1 as f32);
        let feet = b.bottom_centre();
        // Ground speed over the next half second at the Kalman velocity, km/h.
        let kmh = evidence.ground.as_ref().map(|h| {
            let ahead = FramePoint { x: feet.x + 0.5 * vx, y: feet.y + 0.5 * vy };
            (h.to_ground(ahead).distance(&h.to_ground(feet)) / 0.5 * 3.6) as f32
        });
        if twowheel::is_riding(p, kmh, vx.hypot(vy), b.y2 - b.y1) {
            return Vote { class: VehicleClass::Motorcycle, weight: base, lone_person };
        }
    }
    Vote { class: det.class, weight: base, lone_person }
}

fn class_index(c: VehicleClass) -> usize {
    VehicleClass::ALL.iter().position(|x| *x == c).unwrap_or(0)
}

/// ByteTrack. Owns its tracks; `update` pushes into a caller-owned output.
#[derive(Debug)]
pub struct Tracker {
    cfg: TrackerConfig,
    tracks: Vec<Track>,
    next_id: u64,
    last_pts: Option<Duration>,
    assigner: Assigner,
    evidence: ClassEvidence,
    // Scratch, reused across updates.
    dets: Vec<Detection>,
    det_used: Vec<bool>,
    rows: Vec<usize>,
    cols: Vec<usize>,
    cost: Vec<f64>,
    pairs: Vec<(usize, usize)>,
    /// Where and when confirmed tracks ended, for `lost_buffer_s`: a track confirmed there soon after
    /// is a fragment of it.
    recent_ends: Vec<(Duration, FrameBox)>,
    /// Boxes of the tracks confirmed on this update (scratch).
    confirmed: Vec<FrameBox>,
    /// Tracks confirmed where a confirmed track had just been lost or ended: the same vehicle under a
    /// new id (an ID switch), which can count it twice. Cumulative.
    pub fragments: u64,
}

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Self {
        Self {
            cfg,
            tracks: Vec::new(),
            next_id: 1,
            last_pts: None,
            assigner: Assigner::default(),
            evidence: ClassEvidence::default(),
            dets: Vec::new(),
            det_used: Vec::new(),
            rows: Vec::new(),
            cols: Vec::new(),
            cost: Vec::new(),
            pairs: Vec::new(),
            recent_ends: Vec::new(),
            confirmed: Vec::new(),
            fragments: 0,
        }
    }

    /// With the two-wheeler rules and ground plane the class votes use (default: the rules' defaults,
    /// no ground plane).
    pub fn with_evidence(mut self, evidence: ClassEvidence) -> Self {
        self.evidence = evidence;
        self
    }

    /// A new tracker with this one's configuration and class evidence, and no tracks (a camera's stream
    /// restarted: the new pipeline's timestamps start afresh).
    pub fn fresh(&self) -> Self {
        Self::new(self.cfg.clone()).with_evidence(self.evidence.clone())
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.cfg
    }

    /// Tracks held (tentative, tracked and lost): stays bounded however long the tracker runs.
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// Counts each track confirmed on this update whose box centre lies within 1.5 × its own size of a
    /// confirmed track that is lost now or ended within `window`: the same vehicle under a new id.
    fn count_fragments(&mut self, pts: Duration, window: Duration) {
        self.recent_ends.retain(|(at, _)| pts.saturating_sub(*at) <= window);
        let near = |a: &FrameBox, b: &FrameBox| {
            let reach = 1.5 * (a.x2 - a.x1).max(a.y2 - a.y1);
            let (ax, ay, bx, by) = (0.5 * (a.x1 + a.x2), 0.5 * (a.y1 + a.y2), 0.5 * (b.x1 + b.x2), 0.5 * (b.y1 + b.y2));
            (ax - bx).hypot(ay - by) <= reach
        };
        for b in &self.confirmed {
            // A lost track is looked for where its Kalman filter predicts it now.
            let predicted = |t: &Track| {
                let [x1, y1, x2, y2] = t.kf.bbox();
                FrameBox { x1: x1 as f32, y1: y1 as f32, x2: x2 as f32, y2: y2 as f32 }
            };
            if let Some(t) =
                self.tracks.iter_mut().find(|t| t.state == State::Lost && !t.succeeded && near(b, &predicted(t)))
            {
                t.succeeded = true;
                self.fragments += 1;
            } else if let Some(k) = self.recent_ends.iter().position(|(_, e)| near(b, e)) {
                self.recent_ends.swap_remove(k);
                self.fragments += 1;
            }
        }
    }

    /// Seconds since the last frame (0 for the first, or a PTS going back), and remembers `pts`.
    fn advance(&mut self, pts: Duration) -> f64 {
        let dt = match self.last_pts {
            Some(last) if pts > last => (pts - last).as_secs_f64(),
            _ => 0.0,
        };
        self.last_pts = Some(self.last_pts.map_or(pts, |l| l.max(pts)));
        dt
    }

    /// Whether a track is waiting for confirmation (a vehicle just appeared).
    pub fn has_tentative(&self) -> bool {
        self.tracks.iter().any(|t| t.state == State::Tentative)
    }

    /// Advances to `pts` with this frame's detections (possibly none). Clears and fills `out`.
    pub fn update(&mut self, pts: Duration, detections: &[Detection], out: &mut TrackerOutput) {
        out.tracks.clear();
        out.ended.clear();
        let dt = self.advance(pts);
        for t in &mut self.tracks {
            t.kf.predict(dt);
            t.matched = false;
        }

        self.prepare_detections(detections);
        let cfg = self.cfg.clone();

        // 1. Confident detections ↔ tracked and lost tracks.
        self.associate(|t| t.state != State::Tentative, |d| d.score >= cfg.high(d.class), true, cfg.match_cost, pts);
        // 2. Weak detections ↔ tracks still unmatched that were tracked on the previous frame.
        self.associate(
            |t| t.state == State::Tracked,
            // Below the higher of the two thresholds: a class whose own threshold is lower (weak
            // motorcycles) keeps its detections that the score-weighted first round did not match.
            |d| d.score >= cfg.low_score && d.score < cfg.high(d.class).max(cfg.high_score),
            false,
            cfg.low_match_cost,
            pts,
        );
        // 3. Confident leftovers ↔ tentative tracks.
        self.associate(
            |t| t.state == State::Tentative,
            |d| d.score >= cfg.high(d.class),
            false,
            cfg.tentative_match_cost,
            pts,
        );

        // States: confirm, lose, drop.
        let lost_buffer = Duration::from_secs_f64(cfg.lost_buffer_s.max(0.0));
        self.confirmed.clear();
        let mut i = 0;
        while i < self.tracks.len() {
            let t = &mut self.tracks[i];
            let keep = match (t.state, t.matched) {
                (State::Tentative, true) => {
                    if t.hits >= cfg.min_hits {
                        t.state = State::Tracked;
                        self.confirmed.push(t.detection);
                    }
                    true
                }
                // A tentative track missed once is a false start: dropped without an end event.
                (State::Tentative, false) => false,
                (_, true) => {
                    t.state = State::Tracked;
                    true
                }
                (_, false) => {
                    t.state = State::Lost;
                    let gone = pts.saturating_sub(t.last_seen) > lost_buffer;
                    if gone {
                        out.ended.push(t.id);
                        if !t.succeeded {
                            self.recent_ends.push((pts, t.detection));
                        }
                    }
                    !gone
                }
            };
            if keep {
                i += 1;
            } else {
                self.tracks.swap_remove(i);
            }
        }

        // New tentative tracks from confident, unmatched detections.
        for (d, used) in self.dets.iter().zip(&self.det_used) {
            if *used || d.score < cfg.new_track(d.class) {
                continue;
            }
            let mut votes = [0.0; VehicleClass::ALL.len()];
            let v = vote(d, (0.0, 0.0), &self.evidence);
            votes[class_index(v.class)] = v.weight;
            let state = if cfg.min_hits <= 1 { State::Tracked } else { State::Tentative };
            self.tracks.push(Track {
                id: self.next_id,
                kf: Kalman::new(measurement(d.bbox.x1, d.bbox.y1, d.bbox.x2, d.bbox.y2)),
                state,
                hits: 1,
                last_seen: pts,
                votes,
                person_votes: if v.lone_person { v.weight } else { 0.0 },
                score: d.score,
                matched: true,
                detection: d.bbox,
                succeeded: false,
            });
            if state == State::Tracked {
                self.confirmed.push(d.bbox);
            }
            self.next_id += 1;
        }
        self.count_fragments(pts, lost_buffer);

        for t in &self.tracks {
            if t.state == State::Tracked && t.matched {
                out.tracks.push(t.output());
            }
        }
        out.tracks.sort_unstable_by_key(|t| t.id);
    }

    /// Advances to `pts` without detections (a frame the detector skipped, `detector.every`): every
    /// track moves by its Kalman prediction, no track is confirmed, lost or ended, and the tracks
    /// matched on the last detected frame are output at their predicted boxes.
    pub fn predict(&mut self, pts: Duration, out: &mut TrackerOutput) {
        out.tracks.clear();
        out.ended.clear();
        let dt = self.advance(pts);
        for t in &mut self.tracks {
            t.kf.predict(dt);
            if t.state == State::Tracked && t.matched {
                let mut seen = t.output();
                // No detection on this frame: the prediction stands in for it.
                seen.detection = seen.bbox;
                out.tracks.push(seen);
            }
        }
        out.tracks.sort_unstable_by_key(|t| t.id);
    }

    /// Ends every confirmed track (end of stream, shutdown): their ids go to `out.ended`.
    pub fn finish(&mut self, out: &mut TrackerOutput) {
        out.tracks.clear();
        out.ended.clear();
        out.ended.extend(self.tracks.iter().filter(|t| t.state != State::Tentative).map(|t| t.id));
        self.tracks.clear();
    }

    /// Copies detections above `low_score`, dropping cross-class duplicates of a stronger detection.
    fn prepare_detections(&mut self, detections: &[Detection]) {
        self.dets.clear();
        self.dets.extend(detections.iter().filter(|d| d.score >= self.cfg.low_score).copied());
        self.dets.sort_unstable_by(|a, b| b.score.total_cmp(&a.score));
        let mut kept = 0;
        for i in 0..self.dets.len() {
            let d = self.dets[i];
            if self.dets[..kept].iter().any(|k| d.bbox.iou(&k.bbox) > self.cfg.duplicate_iou) {
                continue;
            }
            self.dets[kept] = d;
            kept += 1;
        }
        self.dets.truncate(kept);
        self.det_used.clear();
        self.det_used.resize(self.dets.len(), false);
    }

    /// One association round between unmatched tracks passing `track_ok` and unused detections passing
    /// `det_ok`; cost 1 − IoU (× score when `fuse_score`), gated at `max_cost`.
    fn associate(
        &mut self,
        track_ok: impl Fn(&Track) -> bool,
        det_ok: impl Fn(&Detection) -> bool,
        fuse_score: bool,
        max_cost: f32,
        pts: Duration,
    ) {
        self.rows.clear();
        self.rows.extend((0..self.tracks.len()).filter(|&i| !self.tracks[i].matched && track_ok(&self.tracks[i])));
        self.cols.clear();
        self.cols.extend((0..self.dets.len()).filter(|&j| !self.det_used[j] && det_ok(&self.dets[j])));
        if self.rows.is_empty() || self.cols.is_empty() {
            return;
        }
        self.cost.clear();
        for &i in &self.rows {
            let tb = self.tracks[i].frame_box();
            for &j in &self.cols {
                let d = &self.dets[j];
                let sim = tb.iou(&d.bbox) * if fuse_score { d.score } else { 1.0 };
                self.cost.push(f64::from(1.0 - sim));
            }
        }
        self.pairs.clear();
        self.assigner.solve(&self.cost, self.rows.len(), self.cols.len(), f64::from(max_cost), &mut self.pairs);
        for &(r, c) in &self.pairs {
            let (i, j) = (self.rows[r], self.cols[c]);
            let det = self.dets[j];
            self.tracks[i].observe(&det, pts, &self.evidence);
            self.det_used[j] = true;
        }
    }
}

#[cfg(test)]
mod tests;
