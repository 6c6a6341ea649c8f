//! Scale chosen from the vehicles' size: how many model pixels the smallest vehicle that matters gets
//! where it crosses the camera's rules, and the tiles that give it enough.
//!
//! A motorcycle with its rider (about 1.9 m × 0.7 m, 1.1–1.6 m tall) must be at least `target_px`
//! model-input pixels tall where it crosses a rule. Its height there, in frame pixels, comes
//! - from the ground plane on a calibrated camera ([`motorcycle_px_from_ground`]): [`MOTORCYCLE_HEIGHT_M`]
//!   times the frame's pixels per metre across the image at each line's points, the farthest point
//!   governing;
//! - else from the camera's own tracks over a warm-up ([`SizeMeter`]): the box heights of moving
//!   tracks near the rules (a lamp post the detector calls a person, or a parked car, never moves), of
//!   the smallest class seen often enough (motorcycles, bicycles, then persons —
//!   a rider whose bike a small model misses is a person to it —, then cars: a camera without
//!   two-wheelers is sized for the cars it does see). The warm-up detects with the frame-size rule's
//!   tiles (at most half the frame's pixels lost), so a camera whose vehicles are large enough never
//!   changes scale (a change costs the frames in flight and shifts every box a little); it is
//!   measured again every `recheck_s`.
//!
//! [`choose`] then takes the fewest tiles whose scale gives `target_px`, never more than native
//! pixels (an enlarged frame holds nothing new) and never more than `max_tiles`; one model input where
//! that already does. [`choose_region`] crops to the rules' surroundings instead where the whole frame
//! would need several tiles and the crop gives the same vehicles enough pixels in at most half the
//! model pixels.

use std::sync::Arc;

use crate::analytics::LineSpec;
use crate::detect::VehicleClass;
use crate::geometry::{FramePoint, Homography, LetterboxAlign, Plan, RegionSpec, Size, TileGrid, TileSpec};
use crate::track::TrackedObject;
pub use junction_schema::site::ScaleParams;

/// A motorcycle with its rider, seen from the side or at an angle: metres tall (1.1–1.6 m).
pub const MOTORCYCLE_HEIGHT_M: f64 = 1.4;

/// Where a size came from.
#[derive(Debug, Clone, PartialEq)]
pub enum SizeSource {
    /// The ground plane, at the point of this line farthest from the camera.
    Ground { line: Arc<str> },
    /// Boxes of this class near the rules: their lower quartile, of `samples` boxes.
    Measured { class: VehicleClass, samples: usize },
}

/// The height of the smallest vehicle that matters where it crosses the rules, frame pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeEstimate {
    pub px: f32,
    pub source: SizeSource,
}

impl std::fmt::Display for SizeEstimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            SizeSource::Ground { line } => {
                write!(
                    f,
                    "a motorcycle is {:.0} px tall at line {line} (ground plane, {MOTORCYCLE_HEIGHT_M} m)",
                    self.px
                )
            }
            SizeSource::Measured { class, samples } => {
                let plural = if *class == VehicleClass::Bus { "buses" } else { &format!("{}s", class.as_str()) };
                write!(f, "{plural} are {:.0} px tall near the rules (lower quartile of {samples} boxes)", self.px)
            }
        }
    }
}

/// A motorcycle's height in frame pixels where it crosses the lines, from the ground plane: at five
/// points along each line, [`MOTORCYCLE_HEIGHT_M`] times the frame pixels per ground metre across the
/// image there (an upright object at that depth scales like the ground across the view); the
/// smallest over all points and lines. `None` without lines or where the plane gives no scale.
pub fn motorcycle_px_from_ground(h: &Homography, lines: &[LineSpec]) -> Option<SizeEstimate> {
    let mut best: Option<SizeEstimate> = None;
    for l in lines {
        for k in 0..=4 {
            let t = k as f32 / 4.0;
            let p = FramePoint { x: l.a.x + t * (l.b.x - l.a.x), y: l.a.y + t * (l.b.y - l.a.y) };
            let q = FramePoint { x: p.x + 1.0, y: p.y };
            let metres_per_px = h.to_ground(p).distance(&h.to_ground(q));
            if !(metres_per_px.is_finite() && metres_per_px > 1e-6) {
                continue;
            }
            let px = (MOTORCYCLE_HEIGHT_M / metres_per_px) as f32;
            if best.as_ref().is_none_or(|b| px < b.px) {
                best = Some(SizeEstimate { px, source: SizeSource::Ground { line: l.id.clone() } });
            }
        }
    }
    best
}

/// Classes in the order the scale serves them: the smallest vehicles first. A person is about as
/// tall as a motorcycle with its rider, and is how a small model often sees a rider whose bike it
/// misses: it sizes the scale before cars do.
const SIZE_ORDER: [VehicleClass; 6] = [
    VehicleClass::Motorcycle,
    VehicleClass::Bicycle,
    VehicleClass::Person,
    VehicleClass::Car,
    VehicleClass::Truck,
    VehicleClass::Bus,
];

/// Box heights of detections near the rules, per class, over a warm-up.
#[derive(Debug, Clone, Default)]
pub struct SizeMeter {
    heights: [Vec<f32>; SIZE_ORDER.len()],
}

impl SizeMeter {
    /// Boxes measured so far.
    pub fn samples(&self) -> usize {
        self.heights.iter().map(Vec::len).sum()
    }

    /// Adds the tracks matched on one frame that move (at least a fifth of their box's height a
    /// second, and 8 px/s) and whose detection's anchor (bottom centre) is near a line: within twice
    /// the box's height of the segment, or `near_px` frame pixels, whichever is more. Each track
    /// counts under its voted class.
    pub fn observe(&mut self, tracks: &[TrackedObject], lines: &[LineSpec], near_px: f32) {
        for t in tracks {
            let Some(k) = SIZE_ORDER.iter().position(|c| *c == t.class) else { continue };
            let b = &t.detection;
            let h = b.y2 - b.y1;
            if !(h.is_finite() && h > 0.0) || t.velocity.0.hypot(t.velocity.1) < (0.2 * h).max(8.0) {
                continue;
            }
            let p = b.bottom_centre();
            let reach = (2.0 * h).max(near_px);
            if lines.iter().any(|l| distance_to_segment(p, l.a, l.b) <= reach) {
                self.heights[k].push(h);
            }
        }
    }

    /// The smallest class measured at least `min_class` times, and its lower quartile height.
    pub fn estimate(&self, min_class: usize) -> Option<SizeEstimate> {
        SIZE_ORDER.iter().zip(&self.heights).find(|(_, h)| h.len() >= min_class.max(1)).map(|(class, h)| {
            let mut v = h.clone();
            v.sort_by(f32::total_cmp);
            SizeEstimate { px: v[(v.len() - 1) / 4], source: SizeSource::Measured { class: *class, samples: v.len() } }
        })
    }
}

fn distance_to_segment(p: FramePoint, a: FramePoint, b: FramePoint) -> f32 {
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 { (((p.x - a.x) * dx + (p.y - a.y) * dy) / len2).clamp(0.0, 1.0) } else { 0.0 };
    (p.x - (a.x + t * dx)).hypot(p.y - (a.y + t * dy))
}

/// What [`choose`] decided, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleChoice {
    pub grid: TileGrid,
    /// Model pixels per frame pixel with that grid.
    pub scale: f64,
    /// What the smallest vehicle then measures, model pixels (`None` without a size).
    pub model_px: Option<f32>,
    pub reason: String,
}

impl std::fmt::Display for ScaleChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{} tiles, ×{:.2}: {}", self.grid.cols, self.grid.rows, self.scale, self.reason)
    }
}

/// The fewest tiles (of at most `max_tiles`) over `region` (frame pixels) in inputs of `input` whose
/// scale makes a vehicle of `size` frame pixels `target_px` model pixels tall, capped at native
/// pixels; the finest grid within `max_tiles` where none does.
pub fn choose(
    region: Size,
    input: Size,
    overlap: f32,
    max_tiles: u32,
    size: &SizeEstimate,
    target_px: f32,
) -> ScaleChoice {
    let want = (f64::from(target_px) / f64::from(size.px.max(0.5))).min(1.0);
    let one = TileGrid::ONE.scale(region, input);
    let mut best = (TileGrid::ONE, one);
    if one < want {
        'search: for tiles in 2..=max_tiles.max(1) {
            for cols in 1..=tiles {
                if !tiles.is_multiple_of(cols) {
                    continue;
                }
                let grid = TileGrid { cols, rows: tiles / cols, overlap };
                // Tiles never enlarge the region (crate::geometry::Plan::new).
                let s = grid.scale(region, input).min(1.0);
                if s > best.1 + 1e-9 {
                    best = (grid, s);
                }
                if s >= want {
                    break 'search;
                }
            }
        }
    }
    let (grid, scale) = best;
    let model_px = (f64::from(size.px) * scale) as f32;
    let enough = if f64::from(model_px) + 1e-3 >= f64::from(target_px) {
        format!("{model_px:.0} model px ≥ {target_px:.0}")
    } else if scale >= 1.0 - 1e-9 {
        format!("{model_px:.0} model px at native pixels (target {target_px:.0})")
    } else {
        format!("{model_px:.0} model px, the most {max_tiles} tiles give (target {target_px:.0})")
    };
    ScaleChoice { grid, scale, model_px: Some(model_px), reason: format!("{size}: {enough}") }
}

/// How many times fewer model-input pixels a crop to the rules' surroundings must cost than the
/// whole frame's tiles before [`choose_region`] takes it: a crop loses the scene around the rules,
/// so it is taken only where it saves at least half the inference.
pub const CROP_COST_GAIN: f64 = 2.0;

/// The most a crop's scale may exceed the one `target_px` needs (its region fits the input with room
/// to spare): 10 %.
pub const CROP_MAX_OVERSCALE: f64 = 1.1;

/// The model's input as [`choose_region`] needs it: its largest size, the stride its sides may be cut
/// to (a rectangular card) and where the image sits in it.
#[derive(Debug, Clone, Copy)]
pub struct InputShape {
    pub input: Size,
    pub stride: Option<u32>,
    pub align: LetterboxAlign,
}

impl InputShape {
    /// The input a model card declares.
    pub fn of(card: &crate::detect::ModelCard) -> Self {
        Self { input: card.input_size(), stride: card.input_stride(), align: card.letterbox.align }
    }

    /// Model-input pixels of all tiles of `region` in a frame of `frame` pixels with `grid`.
    fn cost(&self, frame: Size, region: &RegionSpec, grid: TileGrid) -> (u64, Plan) {
        let plan = Plan::for_frame(frame, region, &TileSpec::Grid(grid), self.input, self.align, self.stride);
        (plan.input_pixels(), plan)
    }
}

/// The region and tiles of an `auto`-tiled camera whose frames are `frame` pixels: [`choose`] over
/// the region `spec` resolves to; or, where that takes several tiles and `spec` is the rules' box
/// (`roi = "auto"`) not already cropped to, that box grown by its margin, in one input or fewer tiles,
/// when it gives the smallest vehicle at least `target_px` model pixels (or what the whole frame's
/// tiles give, if less) at no larger a scale than the tiles' and at most [`CROP_MAX_OVERSCALE`] times
/// the one it needs, in at most 1 / [`CROP_COST_GAIN`] of the model pixels. On the motorway clip
/// (960 × 540, one line at y = 200, cars 50 px tall) the whole frame takes 2 × 1 tiles of 416 × 416
/// at ×0.77; the line's surroundings (x 88–912, y 92–308) one 416 × 128 input at ×0.50: 6.5× fewer
/// model pixels, the same 11 of 11 crossings counted (benches/README.md).
pub fn choose_region(
    frame: Size,
    spec: &RegionSpec,
    shape: InputShape,
    overlap: f32,
    max_tiles: u32,
    size: &SizeEstimate,
    target_px: f32,
) -> (RegionSpec, ScaleChoice) {
    let resolved = spec.resolve(frame, shape.input);
    let whole = choose(resolved.map_or(frame, |r| r.size()), shape.input, overlap, max_tiles, size, target_px);
    let keep = (*spec, whole.clone());
    if whole.grid.cols * whole.grid.rows <= 1 || resolved.is_some() || !matches!(spec, RegionSpec::Rules { .. }) {
        return keep;
    }
    let Some(crop) = spec.candidate(frame) else { return keep };
    let cropped = choose(crop.size(), shape.input, overlap, max_tiles, size, target_px);
    let rect = RegionSpec::Rect(crop);
    let (crop_cost, plan) = shape.cost(frame, &rect, cropped.grid);
    let (whole_cost, _) = shape.cost(frame, spec, whole.grid);
    // The scale the plan really gives: a part of the frame is never enlarged, whatever `choose` says.
    let scale = f64::from(plan.scaled.width) / f64::from(crop.width.max(1));
    let model_px = (f64::from(size.px) * scale) as f32;
    let need = whole.model_px.map_or(target_px, |w| w.min(target_px));
    // Nor much more than the target needs (a small region fits the input at native pixels): on the
    // street clip crops at native pixels (×1.0 and ×1.08 against ×0.65) counted 6 and 5 of 8 against 7
    // (benches/README.md); a crop is for fewer pixels at the needed scale, not for magnifying.
    let want = f64::from(target_px) / f64::from(size.px.max(0.5));
    let magnified = scale > whole.scale + 1e-6 || scale > CROP_MAX_OVERSCALE * want;
    if model_px + 0.5 < need || magnified || (crop_cost as f64) * CROP_COST_GAIN > whole_cost as f64 {
        return keep;
    }
    let reason = format!(
        "{}; cropped to the rules' surroundings {crop} ({:.1}× fewer model pixels than {}x{} tiles of the \
         whole frame)",
        cropped.reason,
        whole_cost as f64 / crop_cost.max(1) as f64,
        whole.grid.cols,
        whole.grid.rows
    );
    (rect, ScaleChoice { scale, model_px: Some(model_px), reason, ..cropped })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::{Anchor, Side};
    use crate::geometry::{FrameBox, GroundPoint};

    fn line(id: &str, a: (f32, f32), b: (f32, f32)) -> LineSpec {
        LineSpec {
            id: id.into(),
            a: FramePoint { x: a.0, y: a.1 },
            b: FramePoint { x: b.0, y: b.1 },
            in_side: Side::Left,
            anchor: Anchor::Centre,
            lane: None,
            classes: None,
        }
    }

    /// A track of `class` whose box is `h` px tall with its bottom at `y2`, moving 50 px/s.
    fn det(class: VehicleClass, x: f32, y2: f32, h: f32) -> TrackedObject {
        let bbox = FrameBox { x1: x, y1: y2 - h, x2: x + h, y2 };
        TrackedObject {
            id: 1,
            bbox,
            detection: bbox,
            class,
            class_share: 1.0,
            person_share: 0.0,
            score: 0.6,
            velocity: (50.0, 0.0),
        }
    }

    #[test]
    fn calibrated_size_is_the_farthest_point_of_the_lines() {
        // A perspective view: 20 px per metre across the image at the bottom (y = 360), 10 at y = 180.
        // Ground x = (u - 320) / s(v) with s = 20 * v / 360 = 18 (u - 320) / v, ground y = 3600 / v.
        let m = [[18.0, 0.0, -5760.0], [0.0, 0.0, 3600.0], [0.0, 1.0, 0.0]];
        let h = Homography::from_matrix(m, None, GroundPoint { x: 0.0, y: 15.0 }).expect("an invertible matrix");
        let near = line("near", (100.0, 340.0), (540.0, 340.0));
        let far = line("far", (100.0, 200.0), (540.0, 200.0));
        let only_near = motorcycle_px_from_ground(&h, std::slice::from_ref(&near)).unwrap();
        // 20 * 340 / 360 = 18.9 px per metre × 1.4 m.
        assert!((only_near.px - 26.4).abs() < 0.5, "{only_near:?}");
        let both = motorcycle_px_from_ground(&h, &[near, far]).unwrap();
        // The far line governs: 20 * 200 / 360 = 11.1 px per metre × 1.4 = 15.6 px.
        assert!((both.px - 15.6).abs() < 0.5, "{both:?}");
        assert_eq!(both.source, SizeSource::Ground { line: "far".into() });
        // 640 × 360 in one 416 input is ×0.65: 10 model px; 2 × 1 tiles reach native pixels: 15.6.
        let c = choose(Size::new(640, 360), Size::new(416, 416), 0.2, 6, &both, 20.0);
        assert_eq!((c.grid.cols, c.grid.rows), (2, 1), "{c}");
        assert!((c.scale - 1.0).abs() < 1e-9);
        // The near line alone: 26.4 × 0.65 = 17 < 20, so two tiles as well; at 16 px one input does.
        let c = choose(Size::new(640, 360), Size::new(416, 416), 0.2, 6, &only_near, 16.0);
        assert_eq!(c.grid, TileGrid::ONE, "{c}");
    }

    #[test]
    fn measured_size_is_the_smallest_class_seen_near_the_rules() {
        let lines = [line("l", (0.0, 200.0), (600.0, 200.0))];
        let mut m = SizeMeter::default();
        // Cars 60 px tall at the line, motorcycles 16-24 px, a motorcycle far from the line (y2 = 40),
        // 5 persons (fewer than 8: not enough to size for), and a still "person" (a lamp post).
        for k in 0..10 {
            let x = 50.0 * k as f32;
            let mut d = vec![
                det(VehicleClass::Car, x, 210.0, 60.0),
                det(VehicleClass::Motorcycle, x, 205.0, 16.0 + (k % 5) as f32 * 2.0),
                det(VehicleClass::Motorcycle, x, 40.0, 6.0),
            ];
            if k < 5 {
                d.push(det(VehicleClass::Person, x, 200.0, 30.0));
            }
            d.push(TrackedObject { velocity: (0.0, 0.0), ..det(VehicleClass::Person, 300.0, 200.0, 10.0) });
            m.observe(&d, &lines, 10.0);
        }
        assert_eq!(m.samples(), 25);
        let e = m.estimate(8).unwrap();
        assert_eq!(e.source, SizeSource::Measured { class: VehicleClass::Motorcycle, samples: 10 });
        assert_eq!(e.px, 18.0);
        // Where motorcycles are too few to count, persons are next, then cars.
        assert_eq!(m.estimate(11), None);
        let e = m.estimate(5).unwrap();
        assert_eq!(e.source, SizeSource::Measured { class: VehicleClass::Motorcycle, samples: 10 });
        let mut cars = SizeMeter::default();
        cars.observe(&[det(VehicleClass::Car, 0.0, 200.0, 50.0); 8], &lines, 10.0);
        let e = cars.estimate(8).unwrap();
        assert_eq!(e.source, SizeSource::Measured { class: VehicleClass::Car, samples: 8 });
        // Cars 50 px tall: one input of a 640 × 360 frame (×0.65) gives them 32 model px.
        let c = choose(Size::new(640, 360), Size::new(416, 416), 0.2, 6, &e, 20.0);
        assert_eq!(c.grid, TileGrid::ONE, "{c}");
        // Motorcycles 18 px tall on a 1568 × 778 frame: one input is ×0.27 (5 px); native pixels
        // need 4 × 2 tiles at 416 with 0.2 overlap, more than 6: the finest of 6 (3 × 2, ×0.81).
        let moto = m.estimate(8).unwrap();
        let c = choose(Size::new(1568, 778), Size::new(416, 416), 0.2, 6, &moto, 20.0);
        assert_eq!((c.grid.cols, c.grid.rows), (3, 2), "{c}");
        assert!(c.model_px.unwrap() < 20.0 && c.reason.contains("the most 6 tiles give"), "{c}");
    }

    #[test]
    fn a_crop_to_the_rules_replaces_tiles_only_where_it_halves_the_work() {
        let shape = InputShape { input: Size::new(416, 416), stride: Some(32), align: LetterboxAlign::TopLeft };
        let car = |px| SizeEstimate { px, source: SizeSource::Measured { class: VehicleClass::Car, samples: 100 } };
        // The motorway clip: 960 × 540, one line at y = 200 from x 280 to 720, margin 0.2 of the frame.
        let motorway = RegionSpec::Rules { bbox: [280.0, 200.0, 720.0, 200.0], margin: 0.2 };
        let frame = Size::new(960, 540);
        let (region, c) = choose_region(frame, &motorway, shape, 0.2, 4, &car(50.0), 24.0);
        let RegionSpec::Rect(r) = region else { panic!("not cropped: {c}") };
        assert_eq!((r.x, r.y, r.width, r.height), (88, 92, 824, 216));
        assert_eq!(c.grid, TileGrid::ONE);
        assert!(c.model_px.is_some_and(|px| px >= 24.0), "{c}");
        let plan = Plan::for_frame(frame, &region, &TileSpec::Grid(c.grid), shape.input, shape.align, shape.stride);
        assert_eq!(plan.tiles[0].input, Size::new(416, 128));
        // Cars of 46 px need ×0.52: the crop in one input gives 23 px, in 2 × 1 tiles it saves too
        // little (about 1.9×): the whole frame's tiles stay.
        let (region, c) = choose_region(frame, &motorway, shape, 0.2, 4, &car(46.0), 24.0);
        assert_eq!((region, c.grid.cols * c.grid.rows), (motorway, 2), "{c}");
        // Where one input of the whole frame already gives the target (the street clip), nothing is cropped.
        let street = RegionSpec::Rules { bbox: [320.0, 60.0, 320.0, 220.0], margin: 0.2 };
        let (region, c) = choose_region(Size::new(640, 360), &street, shape, 0.2, 4, &car(53.0), 24.0);
        assert_eq!((region, c.grid), (street, TileGrid::ONE));
        // Asked for 40 model px (×0.89), the street's whole frame takes 2 × 1 tiles at native pixels;
        // its crop would be one input at native pixels, 12 % more than needed: not taken.
        let (region, c) = choose_region(Size::new(640, 360), &street, shape, 0.2, 4, &car(45.0), 40.0);
        assert_eq!((region, c.grid.cols * c.grid.rows), (street, 2), "{c}");
        // A fixed region is never changed.
        let (region, _) = choose_region(frame, &RegionSpec::Full, shape, 0.2, 4, &car(50.0), 24.0);
        assert_eq!(region, RegionSpec::Full);
    }
}
