//! Detection only where something moves: a cheap change measure on the image the model would see,
//! and the policy that skips inference on a still scene (the tracker predicts those frames).
//!
//! The measure: the scaled region ([`crate::source::Frame::image`]) in blocks of [`BLOCK`] × [`BLOCK`]
//! scaled pixels, each block's mean grey level (0–255) compared with the same block of the frame the
//! model last saw. A block has changed when its mean moved by more than `threshold` levels; blocks
//! outside the rules' surroundings (the box around the camera's rules grown by [`MASK_MARGIN`] of the
//! frame on each side) are not looked at: a tree waving at the edge of the picture wakes nothing.
//! Comparing with the last detected frame, not the previous one, makes slow change add up: a queue
//! creeping a pixel a frame is seen once it has moved a block.
//!
//! The policy ([`Gate::wants`]), for a frame on the camera's `every` cadence: detect when the picture
//! near the rules changed since the model last looked, when a confirmed track moves, when a new track
//! awaits confirmation, or when `max_skip_s` of stream time passed since the last detection; else skip.
//! Off the cadence, a scene that was still and just changed is detected at once (a vehicle entering
//! gets its first detection a frame earlier), and a tentative track as always.

use std::time::Duration;

pub use junction_schema::site::MotionParams;

use crate::detect::ImageView;
use crate::geometry::{Plan, Size};
use crate::track::TrackedObject;

/// Side of a block, scaled pixels (the image the model sees): a motorcycle 16 model px tall spans
/// several.
pub const BLOCK: usize = 4;

/// The motion mask: the rules' box grown by this share of the frame's width (left, right) and height
/// (above, below), frame pixels. Vehicles are seen moving before they reach a rule.
pub const MASK_MARGIN: f32 = 0.15;

/// Block means of one image and the mask of blocks looked at.
#[derive(Debug, Clone, Default)]
pub struct MotionMeter {
    /// Blocks across and down.
    cols: usize,
    rows: usize,
    /// Mean grey per block of the last measured image, row-major.
    current: Vec<u8>,
    /// The same for the image last detected on (empty: none yet, or another size).
    reference: Vec<u8>,
    /// 1 where a block is inside the mask.
    mask: Vec<bool>,
    /// The plan the mask was made for (scaled size and region), to notice a new one.
    planned: Option<(Size, crate::geometry::Rect)>,
}

impl MotionMeter {
    /// Block means of `img` into `current`; a new plan (size or region), or rules changed since
    /// ([`MotionMeter::rules_changed`]), makes a new mask from the rules' box `rules()` (`[x1, y1, x2,
    /// y2]` frame pixels, `None`: the whole image), asked for only then.
    pub fn measure(&mut self, img: &ImageView<'_>, plan: &Plan, rules: impl FnOnce() -> Option<[f32; 4]>) {
        if self.planned != Some((plan.scaled, plan.region)) {
            self.cols = img.width as usize / BLOCK;
            self.rows = img.height as usize / BLOCK;
            self.reference.clear();
            self.mask = mask(plan, rules(), self.cols, self.rows);
            self.planned = Some((plan.scaled, plan.region));
        }
        block_means(img, self.cols, self.rows, &mut self.current);
    }

    /// The camera's rules changed (a reload): the next measure makes the mask anew.
    pub fn rules_changed(&mut self) {
        self.planned = None;
    }

    /// Blocks inside the mask whose mean moved by more than `threshold` since the reference; every
    /// masked block when there is no reference yet.
    pub fn changed(&self, threshold: u8) -> u32 {
        if self.reference.len() != self.current.len() {
            return self.mask.iter().filter(|m| **m).count() as u32;
        }
        changed_blocks(&self.current, &self.reference, &self.mask, threshold)
    }

    /// The image just measured was detected on: it is the new reference.
    pub fn detected(&mut self) {
        self.reference.clone_from(&self.current);
    }
}

/// Mean of the three channels over each `BLOCK` × `BLOCK` block (the right and bottom remainders
/// left out), row-major, one byte each.
pub fn block_means(img: &ImageView<'_>, cols: usize, rows: usize, out: &mut Vec<u8>) {
    out.clear();
    out.resize(cols * rows, 0);
    let mut sums = vec![0u32; cols];
    for by in 0..rows {
        sums.iter_mut().for_each(|s| *s = 0);
        for y in by * BLOCK..(by + 1) * BLOCK {
            let Some(row) = img.data.get(y * img.stride..y * img.stride + cols * BLOCK * 3) else { return };
            for (s, block) in sums.iter_mut().zip(row.chunks_exact(BLOCK * 3)) {
                *s += block.iter().map(|v| u32::from(*v)).sum::<u32>();
            }
        }
        for (o, s) in out[by * cols..(by + 1) * cols].iter_mut().zip(&sums) {
            *o = (s / (BLOCK * BLOCK * 3) as u32) as u8;
        }
    }
}

/// Masked blocks whose means differ by more than `threshold`.
pub fn changed_blocks(a: &[u8], b: &[u8], mask: &[bool], threshold: u8) -> u32 {
    a.iter().zip(b).zip(mask).filter(|((x, y), m)| **m && x.abs_diff(**y) > threshold).count() as u32
}

/// Blocks (of the scaled image) inside the rules' box grown by [`MASK_MARGIN`]; all without rules.
fn mask(plan: &Plan, rules: Option<[f32; 4]>, cols: usize, rows: usize) -> Vec<bool> {
    let Some([x1, y1, x2, y2]) = rules else { return vec![true; cols * rows] };
    let (mx, my) = (MASK_MARGIN * plan.frame.width as f32, MASK_MARGIN * plan.frame.height as f32);
    // Frame pixels → scaled pixels of the region.
    let sx = plan.scaled.width as f32 / plan.region.width.max(1) as f32;
    let sy = plan.scaled.height as f32 / plan.region.height.max(1) as f32;
    let to_x = |x: f32| (x - plan.region.x as f32) * sx;
    let to_y = |y: f32| (y - plan.region.y as f32) * sy;
    let (ax, bx) = (to_x(x1 - mx), to_x(x2 + mx));
    let (ay, by) = (to_y(y1 - my), to_y(y2 + my));
    let b = BLOCK as f32;
    let mut m = vec![false; cols * rows];
    for r in 0..rows {
        for c in 0..cols {
            let (cx0, cy0) = (c as f32 * b, r as f32 * b);
            m[r * cols + c] = cx0 + b > ax && cx0 < bx && cy0 + b > ay && cy0 < by;
        }
    }
    m
}

/// What the policy knows of one frame.
#[derive(Debug, Clone, Copy)]
pub struct Signals {
    /// The frame is on the camera's `every` cadence.
    pub cadence: bool,
    /// A new track awaits confirmation.
    pub tentative: bool,
    /// A confirmed track moves ([`moving`]).
    pub track_moving: bool,
    /// Masked blocks changed since the last detected frame.
    pub changed: u32,
    /// Stream time since the last detection (`None`: none yet).
    pub since_detection: Option<Duration>,
}

/// Why a frame is detected on or skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Off the cadence, nothing urgent.
    OffCadence,
    /// On the cadence, but nothing changed near the rules and nothing moves.
    Still,
    /// A tentative track, or change after a still spell: detect now.
    Urgent,
    /// On the cadence with change, a moving track, or the longest skip reached.
    Due,
}

impl Decision {
    pub fn detect(self) -> bool {
        matches!(self, Decision::Urgent | Decision::Due)
    }
}

/// The per-camera policy: its meter and whether the scene was still at the last cadence frame.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    pub meter: MotionMeter,
    /// The last cadence frame was skipped as still.
    still: bool,
    /// Stream time of the last detection.
    last_detection: Option<Duration>,
    /// A due frame was deferred for lack of time ([`crate::schedule`]): the next frame is on the
    /// cadence in its place.
    owed: bool,
}

impl Gate {
    /// The decision for a frame at stream time `pts` given the signals (see the module's policy).
    pub fn decide(&mut self, p: &MotionParams, mut s: Signals) -> Decision {
        s.cadence |= self.owed;
        let motion = s.changed >= p.min_blocks;
        let d = if s.tentative || (!p.enabled && s.cadence) {
            if s.cadence { Decision::Due } else { Decision::Urgent }
        } else if !p.enabled {
            Decision::OffCadence
        } else if !s.cadence {
            if self.still && motion { Decision::Urgent } else { Decision::OffCadence }
        } else if motion || s.track_moving || s.since_detection.is_none_or(|d| d.as_secs_f64() >= p.max_skip_s) {
            Decision::Due
        } else {
            Decision::Still
        };
        match d {
            Decision::Still => {
                self.still = true;
                self.owed = false;
            }
            Decision::Due | Decision::Urgent => self.still = false,
            Decision::OffCadence => {}
        }
        d
    }

    /// Stream time since the last detection.
    pub fn since_detection(&self, pts: Duration) -> Option<Duration> {
        self.last_detection.map(|t| pts.saturating_sub(t))
    }

    /// The frame at `pts` just measured was detected on.
    pub fn detected(&mut self, pts: Duration) {
        self.last_detection = Some(pts);
        self.owed = false;
        self.meter.detected();
    }

    /// The frame just decided as due was deferred ([`crate::schedule`]): the next one is due.
    pub fn deferred(&mut self) {
        self.owed = true;
    }
}

/// A confirmed track that moves: at least a tenth of its box's height a second, and 4 frame px/s
/// (a parked car's filtered velocity wanders by less).
pub fn moving(t: &TrackedObject) -> bool {
    let h = t.bbox.y2 - t.bbox.y1;
    t.velocity.0.hypot(t.velocity.1) >= (0.1 * h).max(4.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{LetterboxAlign, Rect, TileGrid};

    fn image(w: usize, h: usize, f: impl Fn(usize, usize) -> u8) -> Vec<u8> {
        let mut v = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                v.extend([f(x, y); 3]);
            }
        }
        v
    }

    fn view(d: &[u8]) -> ImageView<'_> {
        ImageView { data: d, width: 64, height: 64, stride: 192 }
    }

    fn plan(frame: Size) -> Plan {
        Plan::new(frame, None, frame, LetterboxAlign::TopLeft, TileGrid::ONE)
    }

    #[test]
    fn block_means_average_each_block() {
        // 8 × 4 image: left half 10, right half 200, one pixel of the left block 10 + 16 * 3 = 58.
        let mut data = image(8, 4, |x, _| if x < 4 { 10 } else { 200 });
        data[(3 * 8 + 1) * 3..(3 * 8 + 2) * 3].fill(10 + 16 * 3);
        let img = ImageView { data: &data, width: 8, height: 4, stride: 24 };
        let mut out = Vec::new();
        block_means(&img, 2, 1, &mut out);
        assert_eq!(out, vec![13, 200]);
    }

    #[test]
    fn a_moving_square_is_seen_inside_the_mask_only() {
        let frame = Size::new(64, 64);
        let p = plan(frame);
        let still = image(64, 64, |_, _| 100);
        // A dark 8 × 8 square in the top-left corner, then one at the bottom right.
        let top_left = image(64, 64, |x, y| if x < 8 && y < 8 { 20 } else { 100 });
        let bottom_right = image(64, 64, |x, y| if x >= 56 && y >= 56 { 20 } else { 100 });
        // Rules around the bottom-right quarter: (48, 48)-(64, 64), grown by 0.15 × 64 = 9.6 px.
        let mut m = MotionMeter::default();
        m.measure(&view(&still), &p, || Some([48.0, 48.0, 64.0, 64.0]));
        // The mask: x and y from 48 − 9.6 = 38.4, blocks 9 to 15.
        assert_eq!(m.changed(12), 7 * 7, "no reference: every masked block counts");
        m.detected();
        m.measure(&view(&still), &p, || Some([48.0, 48.0, 64.0, 64.0]));
        assert_eq!(m.changed(12), 0);
        m.measure(&view(&top_left), &p, || Some([48.0, 48.0, 64.0, 64.0]));
        assert_eq!(m.changed(12), 0, "outside the mask");
        m.measure(&view(&bottom_right), &p, || Some([48.0, 48.0, 64.0, 64.0]));
        assert_eq!(m.changed(12), 4, "2 × 2 blocks of 4 px");
        // Without rules the whole image is looked at.
        let mut all = MotionMeter::default();
        all.measure(&view(&still), &p, || None);
        all.detected();
        all.measure(&view(&top_left), &p, || None);
        assert_eq!(all.changed(12), 4);
        // A faint change (noise of 10 levels) is not motion.
        let noisy = image(64, 64, |x, y| if (x + y) % 2 == 0 { 110 } else { 100 });
        all.measure(&view(&noisy), &p, || None);
        assert_eq!(all.changed(12), 0);
    }

    #[test]
    fn a_rules_reload_moves_the_mask() {
        let p = plan(Size::new(64, 64));
        let still = image(64, 64, |_, _| 100);
        let top_left = image(64, 64, |x, y| if x < 8 && y < 8 { 20 } else { 100 });
        let bottom_right = Some([48.0, 48.0, 64.0, 64.0]);
        let top_left_rules = Some([0.0, 0.0, 16.0, 16.0]);
        let mut m = MotionMeter::default();
        m.measure(&view(&still), &p, || bottom_right);
        m.detected();
        // Same plan, new rules, no reload noted: the old mask stays (what a reload used to leave).
        m.measure(&view(&top_left), &p, || top_left_rules);
        assert_eq!(m.changed(12), 0);
        // Noted: the mask is made from the new rules, and the reference of the old mask is gone.
        m.rules_changed();
        m.measure(&view(&still), &p, || top_left_rules);
        m.detected();
        m.measure(&view(&top_left), &p, || top_left_rules);
        assert_eq!(m.changed(12), 4, "2 × 2 blocks of 4 px at the new rules");
    }

    #[test]
    fn the_mask_follows_the_region_and_scale() {
        // A 200 × 100 frame cropped to (100, 0, 100, 100), scaled to 50 × 50: the rules at frame
        // x 180-200 map to scaled x 40-50; with the 0.15 margin (30 frame px = 15 scaled px) from 25.
        let frame = Size::new(200, 100);
        let p = Plan::new(
            frame,
            Some(Rect::new(100, 0, 100, 100)),
            Size::new(50, 50),
            LetterboxAlign::TopLeft,
            TileGrid::ONE,
        );
        assert_eq!(p.scaled, Size::new(50, 50));
        let m = mask(&p, Some([180.0, 40.0, 200.0, 60.0]), 12, 12);
        let row: Vec<bool> = (0..12).map(|c| m[6 * 12 + c]).collect();
        assert_eq!(row, [false, false, false, false, false, false, true, true, true, true, true, true]);
    }

    fn signals(cadence: bool, changed: u32, since: f64) -> Signals {
        Signals {
            cadence,
            tentative: false,
            track_moving: false,
            changed,
            since_detection: Some(Duration::from_secs_f64(since)),
        }
    }

    #[test]
    fn the_policy_skips_still_frames_and_wakes_at_once() {
        let p = MotionParams::default();
        let mut g = Gate::default();
        // Nothing ever detected: detect.
        let first = Signals { since_detection: None, ..signals(true, 0, 0.0) };
        assert_eq!(g.decide(&p, first), Decision::Due);
        // Still and recently detected: skip; off the cadence: skip.
        assert_eq!(g.decide(&p, signals(true, 0, 0.2)), Decision::Still);
        assert_eq!(g.decide(&p, signals(false, 1, 0.3)), Decision::OffCadence, "1 block is below min_blocks");
        // Change after a still spell, off the cadence: at once.
        assert_eq!(g.decide(&p, signals(false, 5, 0.4)), Decision::Urgent);
        // While things move the cadence rules: the frame between is skipped.
        assert_eq!(g.decide(&p, signals(false, 5, 0.1)), Decision::OffCadence);
        assert_eq!(g.decide(&p, signals(true, 5, 0.2)), Decision::Due);
        // A moving track keeps detection going on a still picture; a tentative one forces it.
        assert_eq!(g.decide(&p, Signals { track_moving: true, ..signals(true, 0, 0.2) }), Decision::Due);
        assert_eq!(g.decide(&p, Signals { tentative: true, ..signals(false, 0, 0.1) }), Decision::Urgent);
        // The longest skip.
        assert_eq!(g.decide(&p, signals(true, 0, 1.9)), Decision::Still);
        assert_eq!(g.decide(&p, signals(true, 0, 2.0)), Decision::Due);
        // Off: the cadence alone.
        let off = MotionParams { enabled: false, ..p };
        assert_eq!(g.decide(&off, signals(true, 0, 0.1)), Decision::Due);
        assert_eq!(g.decide(&off, signals(false, 50, 0.1)), Decision::OffCadence);
    }
}
