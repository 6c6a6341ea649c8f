//! Coordinate spaces and the maps between them.
//!
//! - [`ModelPoint`] / [`ModelBox`]: pixels of the model's input tensor, after the letterbox
//!   (for YOLOX-Nano, 416 × 416).
//! - [`FramePoint`] / [`FrameBox`]: pixels of the source frame as the camera delivers it (the negotiated
//!   caps of the decoded stream, before any scaling).
//!
//! Each space has its own type so that a letterboxed box can never reach a counter; the only way from one
//! to the other is [`Letterbox::to_frame`].
//! - [`GroundPoint`]: metres on the road plane, from frame pixels through a camera's [`Homography`]
//!   (`ground`).

mod ground;

pub use ground::{GeometryError, GroundPoint, Homography, Lens, PointPair, RANSAC_THRESHOLD_M, Solution};

use serde::{Deserialize, Serialize};

/// Width and height in pixels (of whichever image the field names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl Size {
    pub const fn new(width: u32, height: u32) -> Self {
        Self { width, height }
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// A point in model-input pixels (after letterbox).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPoint {
    pub x: f32,
    pub y: f32,
}

/// A point in source-frame pixels.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct FramePoint {
    pub x: f32,
    pub y: f32,
}

/// An axis-aligned box in model-input pixels: corners (x1, y1) top-left, (x2, y2) bottom-right.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl ModelBox {
    /// From centre and size, as YOLO heads emit them.
    #[inline]
    pub fn from_cxcywh(cx: f32, cy: f32, w: f32, h: f32) -> Self {
        Self { x1: cx - 0.5 * w, y1: cy - 0.5 * h, x2: cx + 0.5 * w, y2: cy + 0.5 * h }
    }

    #[inline]
    pub fn area(&self) -> f32 {
        (self.x2 - self.x1).max(0.0) * (self.y2 - self.y1).max(0.0)
    }

    /// Intersection over union; 0 when either box is empty.
    #[inline]
    pub fn iou(&self, other: &Self) -> f32 {
        iou([self.x1, self.y1, self.x2, self.y2], [other.x1, other.y1, other.x2, other.y2])
    }
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes in the same pixels; 0 when either is empty.
#[inline]
fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let area = |b: [f32; 4]| (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0);
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// An axis-aligned box in source-frame pixels, clipped to the frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FrameBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl FrameBox {
    /// Bottom-centre: where a vehicle touches the road; the default anchor of counting rules.
    #[inline]
    pub fn bottom_centre(&self) -> FramePoint {
        FramePoint { x: 0.5 * (self.x1 + self.x2), y: self.y2 }
    }

    /// Intersection over union; 0 when either box is empty.
    #[inline]
    pub fn iou(&self, other: &Self) -> f32 {
        iou([self.x1, self.y1, self.x2, self.y2], [other.x1, other.y1, other.x2, other.y2])
    }
}

/// An axis-aligned rectangle of whole pixels; each use says whose pixels (source frame, scaled image).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rect {
    /// Left and top edge.
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    pub const fn new(x: u32, y: u32, width: u32, height: u32) -> Self {
        Self { x, y, width, height }
    }

    /// The whole of an image of `size`.
    pub const fn whole(size: Size) -> Self {
        Self { x: 0, y: 0, width: size.width, height: size.height }
    }

    pub fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }

    /// The smallest whole-pixel rectangle holding the box `[x1, y1, x2, y2]` (pixels), grown by
    /// `margin` (pixels, each side) and cut to an image of `size`; at least 1 × 1.
    pub fn around(x1: f32, y1: f32, x2: f32, y2: f32, margin: (f32, f32), size: Size) -> Self {
        let (w, h) = (size.width.max(1) as f32, size.height.max(1) as f32);
        let left = (x1.min(x2) - margin.0).floor().clamp(0.0, w - 1.0);
        let top = (y1.min(y2) - margin.1).floor().clamp(0.0, h - 1.0);
        let right = (x1.max(x2) + margin.0).ceil().clamp(left + 1.0, w);
        let bottom = (y1.max(y2) + margin.1).ceil().clamp(top + 1.0, h);
        Self::new(left as u32, top as u32, (right - left) as u32, (bottom - top) as u32)
    }

    /// This rectangle cut to an image of `size`; `None` when nothing of it is inside.
    pub fn clamped(&self, size: Size) -> Option<Self> {
        let x2 = (self.x.saturating_add(self.width)).min(size.width);
        let y2 = (self.y.saturating_add(self.height)).min(size.height);
        (x2 > self.x && y2 > self.y).then(|| Self::new(self.x, self.y, x2 - self.x, y2 - self.y))
    }
}

impl std::fmt::Display for Rect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}+{}+{}", self.width, self.height, self.x, self.y)
    }
}

/// Where the scaled image sits inside the model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LetterboxAlign {
    /// Image at the top-left corner, padding right and below (YOLOX).
    #[default]
    TopLeft,
    /// Image centred, padding split on both sides (Ultralytics YOLOv5/v8).
    Center,
    /// No letterbox: the image is resized to the whole input, each axis by its own factor (the DETR
    /// family's preprocessing, DEIMv2).
    Stretch,
}

/// The map between one model input and the source frame: a region of the frame (the camera's region
/// of interest, or all of it) scaled by one factor (two with [`LetterboxAlign::Stretch`]) to `scaled`
/// pixels, of which the `window` (the whole scaled image, or one tile of it) is placed at `offset` in
/// the model input and the rest of the input padded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Source frame, pixels.
    pub frame: Size,
    /// The part of the frame the model sees, frame pixels.
    pub region: Rect,
    /// Model input, pixels.
    pub input: Size,
    /// The size GStreamer scales the region to (scaled pixels).
    pub scaled: Size,
    /// The part of the scaled image in this input (all of it, or one tile), scaled pixels.
    pub window: Rect,
    /// Where the window's top-left corner lands in the model input, model-input pixels.
    pub offset_x: u32,
    pub offset_y: u32,
}

impl Letterbox {
    /// The whole frame in one input (no region of interest, no tiles): scale by
    /// `r = min(input.w / frame.w, input.h / frame.h)` (up or down), rounding each side to whole
    /// pixels; `Stretch` scales each axis to the input. Degenerate (zero) sizes give a 1-pixel image
    /// so that the maths stays finite.
    pub fn new(frame: Size, input: Size, align: LetterboxAlign) -> Self {
        Self::of_region(frame, Rect::whole(frame), input, align)
    }

    /// One region of the frame in one input. A region smaller than the input is not enlarged when it
    /// is only part of the frame: magnifying adds no detail, and YOLOX-Nano found fewer vehicles in
    /// enlarged crops of the test clip (`Stretch` fills the input whatever the size).
    pub fn of_region(frame: Size, region: Rect, input: Size, align: LetterboxAlign) -> Self {
        let scaled = match align {
            LetterboxAlign::Stretch => Size::new(input.width.max(1), input.height.max(1)),
            _ if region.size() != frame => fit(region.size(), fit_within(region.size(), input)),
            _ => fit(region.size(), input),
        };
        Self::place(frame, region, input, scaled, Rect::whole(scaled), align)
    }

    /// The window of the scaled region placed in the input by `align` (centred, or at the top-left).
    fn place(frame: Size, region: Rect, input: Size, scaled: Size, window: Rect, align: LetterboxAlign) -> Self {
        let (offset_x, offset_y) = match align {
            LetterboxAlign::Center => {
                (input.width.saturating_sub(window.width) / 2, input.height.saturating_sub(window.height) / 2)
            }
            LetterboxAlign::TopLeft | LetterboxAlign::Stretch => (0, 0),
        };
        Self { frame, region, input, scaled, window, offset_x, offset_y }
    }

    /// Frame pixels per scaled pixel, each axis its own (region size / scaled size): exact for the image
    /// GStreamer actually produced.
    #[inline]
    pub fn frame_per_scaled(&self) -> (f32, f32) {
        (
            self.region.width as f32 / self.scaled.width.max(1) as f32,
            self.region.height as f32 / self.scaled.height.max(1) as f32,
        )
    }

    /// Model-input pixels → source-frame pixels, clipped to the region ([`Letterbox::frame_per_scaled`]).
    #[inline]
    pub fn to_frame(&self, b: &ModelBox) -> FrameBox {
        let (sx, sy) = self.frame_per_scaled();
        let dx = self.window.x as f32 - self.offset_x as f32;
        let dy = self.window.y as f32 - self.offset_y as f32;
        let (rx, ry) = (self.region.x as f32, self.region.y as f32);
        let (rx2, ry2) = (rx + self.region.width as f32, ry + self.region.height as f32);
        FrameBox {
            x1: (rx + (b.x1 + dx) * sx).clamp(rx, rx2),
            y1: (ry + (b.y1 + dy) * sy).clamp(ry, ry2),
            x2: (rx + (b.x2 + dx) * sx).clamp(rx, rx2),
            y2: (ry + (b.y2 + dy) * sy).clamp(ry, ry2),
        }
    }

    /// Source-frame point → model-input pixels (the inverse of [`Letterbox::to_frame`], unclipped).
    #[inline]
    pub fn to_model(&self, p: FramePoint) -> ModelPoint {
        let (sx, sy) = self.frame_per_scaled();
        ModelPoint {
            x: (p.x - self.region.x as f32) / sx - self.window.x as f32 + self.offset_x as f32,
            y: (p.y - self.region.y as f32) / sy - self.window.y as f32 + self.offset_y as f32,
        }
    }

    /// The window's edges that lie inside the scaled image (a tile's borders with its neighbours), in
    /// frame pixels: `[left, top, right, bottom]`, `None` for an edge of the region itself. A box cut at
    /// such an edge continues in the next tile.
    pub fn inner_edges(&self) -> [Option<f32>; 4] {
        let (sx, sy) = self.frame_per_scaled();
        let (rx, ry) = (self.region.x as f32, self.region.y as f32);
        let w = self.window;
        [
            (w.x > 0).then_some(rx + w.x as f32 * sx),
            (w.y > 0).then_some(ry + w.y as f32 * sy),
            (w.x + w.width < self.scaled.width).then(|| rx + (w.x + w.width) as f32 * sx),
            (w.y + w.height < self.scaled.height).then(|| ry + (w.y + w.height) as f32 * sy),
        ]
    }
}

/// `size` scaled by one factor to fit in `bound`, rounded to whole pixels, at least 1 × 1.
fn fit(size: Size, bound: Size) -> Size {
    let fw = f64::from(size.width.max(1));
    let fh = f64::from(size.height.max(1));
    let r = (f64::from(bound.width) / fw).min(f64::from(bound.height) / fh);
    Size::new(
        ((fw * r).round() as u32).clamp(1, bound.width.max(1)),
        ((fh * r).round() as u32).clamp(1, bound.height.max(1)),
    )
}

/// `bound` cut to `size`: the largest box a region of `size` may be scaled into without enlarging it.
fn fit_within(size: Size, bound: Size) -> Size {
    Size::new(bound.width.min(size.width.max(1)), bound.height.min(size.height.max(1)))
}

/// How a region is split into tiles: `cols × rows` model inputs overlapping by `overlap` (a share of a
/// tile's side) where they meet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TileGrid {
    pub cols: u32,
    pub rows: u32,
    pub overlap: f32,
}

impl TileGrid {
    /// One input for the whole region (no tiling).
    pub const ONE: TileGrid = TileGrid { cols: 1, rows: 1, overlap: 0.0 };

    /// The smallest grid (of at most `max_tiles` tiles) that scales `region` down by no more than
    /// `max_downscale` (2: a vehicle keeps at least half its pixels); [`TileGrid::ONE`] when one input
    /// already does.
    pub fn auto(region: Size, input: Size, overlap: f32, max_downscale: f32, max_tiles: u32) -> Self {
        let mut best = Self::ONE;
        let mut best_scale = 0.0;
        for tiles in 1..=max_tiles.max(1) {
            for cols in 1..=tiles {
                if !tiles.is_multiple_of(cols) {
                    continue;
                }
                let grid = TileGrid { cols, rows: tiles / cols, overlap };
                let s = grid.scale(region, input);
                if s * f64::from(max_downscale) >= 1.0 {
                    return grid;
                }
                if s > best_scale {
                    best = grid;
                    best_scale = s;
                }
            }
        }
        best
    }

    /// The factor a region is scaled by so that it fits this grid of inputs.
    pub fn scale(&self, region: Size, input: Size) -> f64 {
        let o = f64::from(self.overlap.clamp(0.0, 0.9));
        let span = |n: u32, side: u32| f64::from(side) * (f64::from(n) - f64::from(n.saturating_sub(1)) * o);
        let w = span(self.cols.max(1), input.width) / f64::from(region.width.max(1));
        let h = span(self.rows.max(1), input.height) / f64::from(region.height.max(1));
        w.min(h)
    }
}

/// Which part of a camera's frames the detector sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RegionSpec {
    /// The whole frame.
    Full,
    /// A rectangle, frame pixels (cut to the frame).
    Rect(Rect),
    /// The box around the camera's rules, `[x1, y1, x2, y2]` frame pixels, grown on each side by
    /// `margin` × the frame's width (left and right) and height (above and below): vehicles are
    /// detected and tracked for a while before they reach a line. Cropped to only where that gives
    /// the model at least [`AUTO_CROP_GAIN`] times the pixels per vehicle that the whole frame in one
    /// input would; elsewhere the whole frame is kept.
    Rules { bbox: [f32; 4], margin: f32 },
}

/// A crop costs the detector the scene around the region: with the test clip cropped to a line's
/// surroundings at the same scale, YOLOX-Nano's car scores fell from 0.6–0.8 to 0.3–0.5 (many became
/// trucks) and the line's count from 7 to 2 (benches/README.md). The automatic region is cropped only
/// where it at least doubles the pixels per vehicle, as on a wide frame whose rules cover a part of it.
pub const AUTO_CROP_GAIN: f64 = 2.0;

impl RegionSpec {
    /// The rectangle this specification names in a frame of `frame` pixels (for `Rules`, the rules' box
    /// grown by the margin, whether or not it is worth cropping to); `None` for the whole frame.
    pub fn candidate(&self, frame: Size) -> Option<Rect> {
        match *self {
            RegionSpec::Full => None,
            RegionSpec::Rect(r) => r.clamped(frame),
            RegionSpec::Rules { bbox: [x1, y1, x2, y2], margin } => {
                let m = (margin * frame.width as f32, margin * frame.height as f32);
                Some(Rect::around(x1, y1, x2, y2, m, frame))
            }
        }
    }

    /// The region in a frame of `frame` pixels for a model input of `input` pixels; `None`: all of it.
    pub fn resolve(&self, frame: Size, input: Size) -> Option<Rect> {
        match *self {
            RegionSpec::Full | RegionSpec::Rect(_) => self.candidate(frame),
            RegionSpec::Rules { .. } => {
                let region = self.candidate(frame)?;
                let whole = Letterbox::new(frame, input, LetterboxAlign::TopLeft);
                let cropped = Letterbox::of_region(frame, region, input, LetterboxAlign::TopLeft);
                let gain = f64::from(cropped.scaled.width)
                    / f64::from(region.width.max(1))
                    / (f64::from(whole.scaled.width) / f64::from(frame.width.max(1)));
                (gain >= AUTO_CROP_GAIN).then_some(region)
            }
        }
    }
}

/// How a region is tiled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TileSpec {
    Grid(TileGrid),
    /// [`TileGrid::auto`]: tiles only where one input would shrink the region by more than
    /// `max_downscale`.
    Auto {
        overlap: f32,
        max_downscale: f32,
        max_tiles: u32,
    },
}

impl TileSpec {
    pub fn resolve(&self, region: Size, input: Size) -> TileGrid {
        match *self {
            TileSpec::Grid(g) => g,
            TileSpec::Auto { overlap, max_downscale, max_tiles } => {
                TileGrid::auto(region, input, overlap, max_downscale, max_tiles)
            }
        }
    }
}

/// How one frame reaches the model: the region of interest, the size GStreamer scales it to, and one
/// [`Letterbox`] per model input (tile).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub frame: Size,
    /// Frame pixels.
    pub region: Rect,
    /// The region scaled (scaled pixels): the image a frame carries.
    pub scaled: Size,
    pub tiles: Vec<Letterbox>,
}

impl Plan {
    /// Model input pixels of all its tiles: what one detection on the frame costs.
    pub fn input_pixels(&self) -> u64 {
        self.tiles.iter().map(|t| u64::from(t.input.width) * u64::from(t.input.height)).sum()
    }

    /// The plan of a frame of `frame` pixels for these specifications. `stride`: the model takes any
    /// input whose sides are multiples of it (its card's `rectangular`): each input is cut to its
    /// image padded up to the stride ([`Plan::fit_to_stride`]). The scale is the one the square input
    /// and its tiles give: one input of a 960 × 540 frame's 2 × 1 tiles' scale (768 × 416) missed a
    /// far car on the motorway clip that the tiles found (22 of 26 against 23), at the same speed.
    pub fn for_frame(
        frame: Size,
        region: &RegionSpec,
        tiles: &TileSpec,
        input: Size,
        align: LetterboxAlign,
        stride: Option<u32>,
    ) -> Self {
        let r = region.resolve(frame, input);
        let grid = tiles.resolve(r.unwrap_or(Rect::whole(frame)).size(), input);
        let plan = Self::new(frame, r, input, align, grid);
        match stride {
            Some(s) => plan.fit_to_stride(s, align),
            None => plan,
        }
    }

    /// Each input cut to its window (the part of the scaled image it holds), rounded up to a multiple
    /// of `stride` model pixels: a 640 × 360 frame in a 416-pixel model is 416 × 234 scaled pixels in
    /// a 416 × 256 input instead of 416 × 416, 39 % less inference. A stretched input stays as it is.
    pub fn fit_to_stride(mut self, stride: u32, align: LetterboxAlign) -> Self {
        if align == LetterboxAlign::Stretch && self.tiles.len() == 1 || stride == 0 {
            return self;
        }
        let align = if align == LetterboxAlign::Stretch { LetterboxAlign::TopLeft } else { align };
        for lb in &mut self.tiles {
            let input =
                Size::new(lb.window.width.div_ceil(stride) * stride, lb.window.height.div_ceil(stride) * stride);
            *lb = Letterbox::place(lb.frame, lb.region, input, lb.scaled, lb.window, align);
        }
        self
    }

    /// `region` (cut to the frame; the whole frame when `None` or outside it) in `grid` inputs of `input`.
    /// Tiles are input-sized windows of the scaled region (smaller where the region is), spread evenly
    /// from edge to edge, so neighbours overlap by at least `grid.overlap`; a grid with more columns or
    /// rows than the scaled region needs is reduced.
    pub fn new(frame: Size, region: Option<Rect>, input: Size, align: LetterboxAlign, grid: TileGrid) -> Self {
        let region = region.and_then(|r| r.clamped(frame)).unwrap_or(Rect::whole(frame));
        if grid.cols <= 1 && grid.rows <= 1 {
            let lb = Letterbox::of_region(frame, region, input, align);
            return Self { frame, region, scaled: lb.scaled, tiles: vec![lb] };
        }
        // As for one input: a region is not enlarged to fill the tiles.
        let s = grid.scale(region.size(), input).min(1.0);
        let scaled = Size::new(
            ((f64::from(region.width) * s).round() as u32).max(1),
            ((f64::from(region.height) * s).round() as u32).max(1),
        );
        let (ww, wh) = (input.width.min(scaled.width), input.height.min(scaled.height));
        let starts = |n: u32, total: u32, side: u32| -> Vec<u32> {
            // A grid finer than needed (the scaled side fits fewer inputs) keeps only distinct tiles.
            let n = if total <= side { 1 } else { n.max(1) };
            let mut v: Vec<u32> = (0..n)
                .map(|k| if n == 1 { 0 } else { ((u64::from(k) * u64::from(total - side)) / u64::from(n - 1)) as u32 })
                .collect();
            v.dedup();
            v
        };
        let align = if align == LetterboxAlign::Stretch { LetterboxAlign::TopLeft } else { align };
        let mut tiles = Vec::new();
        for &y in &starts(grid.rows, scaled.height, wh) {
            for &x in &starts(grid.cols, scaled.width, ww) {
                tiles.push(Letterbox::place(frame, region, input, scaled, Rect::new(x, y, ww, wh), align));
            }
        }
        Self { frame, region, scaled, tiles }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_fit_to_the_stride() {
        // 640 × 360 in a 416 square: 416 × 234 scaled, a 416 × 256 input (32 | 256), nothing moved.
        let square = Plan::for_frame(
            Size::new(640, 360),
            &RegionSpec::Full,
            &TileSpec::Grid(TileGrid::ONE),
            Size::new(416, 416),
            LetterboxAlign::TopLeft,
            None,
        );
        let rect = Plan::for_frame(
            Size::new(640, 360),
            &RegionSpec::Full,
            &TileSpec::Grid(TileGrid::ONE),
            Size::new(416, 416),
            LetterboxAlign::TopLeft,
            Some(32),
        );
        assert_eq!(square.tiles[0].input, Size::new(416, 416));
        assert_eq!(rect.tiles[0].input, Size::new(416, 256));
        assert_eq!((rect.scaled, rect.tiles[0].window), (square.scaled, square.tiles[0].window));
        let b = ModelBox { x1: 10.0, y1: 20.0, x2: 100.0, y2: 230.0 };
        assert_eq!(rect.tiles[0].to_frame(&b), square.tiles[0].to_frame(&b));
        // Centred: the offset is recomputed inside the smaller input (11 rows above 234 of 256).
        let c = square.clone().fit_to_stride(32, LetterboxAlign::Center);
        assert_eq!((c.tiles[0].input, c.tiles[0].offset_y), (Size::new(416, 256), 11));
        // Full tiles stay as they are.
        let tiled = Plan::new(
            Size::new(1280, 720),
            None,
            Size::new(416, 416),
            LetterboxAlign::TopLeft,
            TileGrid { cols: 2, rows: 1, overlap: 0.2 },
        );
        let fitted = tiled.clone().fit_to_stride(32, LetterboxAlign::TopLeft);
        assert_eq!(fitted, tiled);
    }

    #[test]
    fn letterbox_landscape_top_left() {
        let lb = Letterbox::new(Size::new(640, 360), Size::new(416, 416), LetterboxAlign::TopLeft);
        assert_eq!(lb.scaled, Size::new(416, 234));
        assert_eq!((lb.offset_x, lb.offset_y), (0, 0));
        let b = lb.to_frame(&ModelBox { x1: 0.0, y1: 0.0, x2: 416.0, y2: 234.0 });
        assert_eq!(b, FrameBox { x1: 0.0, y1: 0.0, x2: 640.0, y2: 360.0 });
    }

    #[test]
    fn letterbox_portrait_centred_upscales() {
        let lb = Letterbox::new(Size::new(100, 200), Size::new(640, 640), LetterboxAlign::Center);
        assert_eq!(lb.scaled, Size::new(320, 640));
        assert_eq!((lb.offset_x, lb.offset_y), (160, 0));
        let m = lb.to_model(FramePoint { x: 50.0, y: 100.0 });
        assert_eq!((m.x, m.y), (320.0, 320.0));
        let b = lb.to_frame(&ModelBox { x1: 160.0, y1: 0.0, x2: 480.0, y2: 640.0 });
        assert_eq!(b, FrameBox { x1: 0.0, y1: 0.0, x2: 100.0, y2: 200.0 });
    }

    #[test]
    fn to_frame_clips_to_frame() {
        let lb = Letterbox::new(Size::new(640, 360), Size::new(416, 416), LetterboxAlign::TopLeft);
        // A box reaching into the padding below the image is clipped at the frame's bottom edge.
        let b = lb.to_frame(&ModelBox { x1: -10.0, y1: 200.0, x2: 100.0, y2: 300.0 });
        assert_eq!(b.x1, 0.0);
        assert_eq!(b.y2, 360.0);
    }

    #[test]
    fn region_maps_back_to_the_frame() {
        // A 1568 × 778 frame, region 800 × 400 at (700, 300): scaled by 416 / 800 = 0.52.
        let lb = Letterbox::of_region(
            Size::new(1568, 778),
            Rect::new(700, 300, 800, 400),
            Size::new(416, 416),
            LetterboxAlign::TopLeft,
        );
        assert_eq!(lb.scaled, Size::new(416, 208));
        let b = lb.to_frame(&ModelBox { x1: 0.0, y1: 0.0, x2: 416.0, y2: 208.0 });
        assert_eq!(b, FrameBox { x1: 700.0, y1: 300.0, x2: 1500.0, y2: 700.0 });
        let m = lb.to_model(FramePoint { x: 1100.0, y: 500.0 });
        assert_eq!((m.x, m.y), (208.0, 104.0));
        // Boxes reaching past the region are cut to it.
        assert_eq!(lb.to_frame(&ModelBox { x1: -10.0, y1: 0.0, x2: 500.0, y2: 300.0 }).x2, 1500.0);
        // A region smaller than the input is not enlarged.
        let small = Letterbox::of_region(
            Size::new(640, 360),
            Rect::new(100, 100, 200, 100),
            Size::new(416, 416),
            LetterboxAlign::TopLeft,
        );
        assert_eq!(small.scaled, Size::new(200, 100));
    }

    #[test]
    fn stretch_fills_the_input_per_axis() {
        let lb = Letterbox::new(Size::new(640, 360), Size::new(416, 416), LetterboxAlign::Stretch);
        assert_eq!((lb.scaled, lb.offset_x, lb.offset_y), (Size::new(416, 416), 0, 0));
        let b = lb.to_frame(&ModelBox { x1: 208.0, y1: 208.0, x2: 416.0, y2: 416.0 });
        assert_eq!(b, FrameBox { x1: 320.0, y1: 180.0, x2: 640.0, y2: 360.0 });
    }

    #[test]
    fn tiles_cover_the_region_and_overlap() {
        let frame = Size::new(1568, 778);
        let grid = TileGrid { cols: 2, rows: 1, overlap: 0.2 };
        let plan = Plan::new(frame, None, Size::new(416, 416), LetterboxAlign::TopLeft, grid);
        // Two inputs side by side, overlapping by a fifth: 416 × (2 − 0.2) = 748.8 px wide at most.
        assert_eq!(plan.scaled, Size::new(749, 372));
        assert_eq!(plan.tiles.len(), 2);
        let (a, b) = (plan.tiles[0], plan.tiles[1]);
        assert_eq!((a.window.x, b.window.x), (0, 333));
        assert_eq!((a.window.width, a.window.height), (416, 372));
        // Together they span the frame, and their overlap (333..416 scaled) is about 174 frame px.
        let left = a.to_frame(&ModelBox { x1: 0.0, y1: 0.0, x2: 416.0, y2: 372.0 });
        let right = b.to_frame(&ModelBox { x1: 0.0, y1: 0.0, x2: 416.0, y2: 372.0 });
        assert_eq!((left.x1, right.x2), (0.0, 1568.0));
        assert!((left.y2 - 778.0).abs() < 1e-3);
        assert!((left.x2 - right.x1 - 174.0).abs() < 1.0, "{left:?} {right:?}");
        // A point maps into each tile at its own place.
        let p = FramePoint { x: 1000.0, y: 400.0 };
        let (pa, pb) = (a.to_model(p), b.to_model(p));
        assert!((pa.x - pb.x - 333.0).abs() < 1e-3 && pa.y == pb.y);
        // Inner edges: tile 0's right side and tile 1's left side, in frame pixels.
        assert_eq!(a.inner_edges()[0], None);
        assert!((a.inner_edges()[2].unwrap() - left.x2).abs() < 1e-3);
        assert!((b.inner_edges()[0].unwrap() - right.x1).abs() < 1e-3);
    }

    #[test]
    fn auto_tiles_only_where_one_input_shrinks_the_region_more_than_twice() {
        let input = Size::new(416, 416);
        let one = |g: TileGrid| (g.cols, g.rows) == (1, 1);
        assert!(one(TileGrid::auto(Size::new(640, 360), input, 0.2, 2.0, 4)));
        assert!(one(TileGrid::auto(Size::new(596, 336), input, 0.2, 2.0, 4)));
        let wide = TileGrid::auto(Size::new(1568, 778), input, 0.2, 2.0, 4);
        assert!(wide.scale(Size::new(1568, 778), input) >= 0.5, "{wide:?}");
        assert!(wide.cols * wide.rows <= 4);
        // 4K needs more than 4 tiles for 2×: the best of at most 4.
        let uhd = TileGrid::auto(Size::new(3840, 2160), input, 0.2, 2.0, 4);
        assert_eq!((uhd.cols, uhd.rows), (2, 2));
    }

    #[test]
    fn automatic_region_crops_only_where_it_gains() {
        let input = Size::new(416, 416);
        // A line in the middle of a 640 × 360 frame: cropping would gain 1.5×, not enough.
        let spec = RegionSpec::Rules { bbox: [320.0, 60.0, 320.0, 220.0], margin: 0.2 };
        assert_eq!(spec.resolve(Size::new(640, 360), input), None);
        // The same layout on a 1568 × 778 frame: the region is cropped.
        let spec = RegionSpec::Rules { bbox: [700.0, 400.0, 900.0, 700.0], margin: 0.1 };
        let r = spec.resolve(Size::new(1568, 778), input).expect("cropped");
        assert_eq!(r, Rect::new(543, 322, 514, 456));
        // An explicit rectangle is always used, cut to the frame.
        assert_eq!(
            RegionSpec::Rect(Rect::new(600, 0, 100, 100)).resolve(Size::new(640, 360), input),
            Some(Rect::new(600, 0, 40, 100))
        );
    }

    #[test]
    fn iou_basic() {
        let a = ModelBox { x1: 0.0, y1: 0.0, x2: 10.0, y2: 10.0 };
        let b = ModelBox { x1: 5.0, y1: 0.0, x2: 15.0, y2: 10.0 };
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(a.iou(&ModelBox { x1: 20.0, y1: 20.0, x2: 30.0, y2: 30.0 }), 0.0);
    }
}
