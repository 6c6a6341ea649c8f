//! `/snapshot/<camera>.jpg`: the latest analysed frame with the count lines, zones, tracked boxes,
//! track ids and counts drawn on it. Off unless enabled (`[http] snapshots = true`): images leave the
//! box only when an operator asks.
//!
//! The picture is the frame at the scale the detector saw it (e.g. 416 × 234 for a 640 × 360 camera
//! and YOLOX-Nano): the region of interest as analysed, the rest of the frame (never decoded past the
//! crop) dark grey, the region's border and its tiles' borders drawn; geometry in frame pixels is
//! scaled onto it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::analytics::{LineSpec, ZoneSpec};
use crate::detect::card::ChannelOrder;
use crate::detect::{ImageView, VehicleClass};
use crate::geometry::{FramePoint, Plan};
use crate::track::TrackedObject;

/// What one camera looked like on its last analysed frame.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Packed BGR, `width × height × 3`: the whole frame at the region's scale.
    pub bgr: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub plan: Option<Arc<Plan>>,
    pub tracks: Vec<TrackedObject>,
    pub lines: Vec<LineSpec>,
    pub zones: Vec<ZoneSpec>,
    /// Per line: id, vehicles in, vehicles out, since start.
    pub counts: Vec<(String, u64, u64)>,
}

/// Latest snapshot per camera, shared between the analysis loop and the HTTP server.
pub type Snapshots = Arc<Mutex<HashMap<String, Snapshot>>>;

/// Grey of the frame outside the region of interest.
const OUTSIDE: u8 = 40;

impl Snapshot {
    /// Copies a frame's scaled region (dropping GStreamer's row padding, in BGR) into a picture of the
    /// whole frame at the region's scale.
    pub fn set_image(&mut self, img: &ImageView<'_>, plan: Arc<Plan>, order: ChannelOrder) {
        let s = plan.scaled.width as f32 / plan.region.width.max(1) as f32;
        let t = plan.scaled.height as f32 / plan.region.height.max(1) as f32;
        let (w, h) = ((plan.frame.width as f32 * s).round() as usize, (plan.frame.height as f32 * t).round() as usize);
        let (ox, oy) = ((plan.region.x as f32 * s).round() as usize, (plan.region.y as f32 * t).round() as usize);
        self.bgr.clear();
        self.bgr.resize(w * h * 3, OUTSIDE);
        let row = img.width as usize * 3;
        for y in 0..img.height as usize {
            let (Some(src), true) = (img.data.get(y * img.stride..y * img.stride + row), oy + y < h) else { continue };
            let at = ((oy + y) * w + ox) * 3;
            let Some(dst) = self.bgr.get_mut(at..at + row.min((w - ox.min(w)) * 3)) else { continue };
            let n = dst.len();
            dst.copy_from_slice(&src[..n]);
            if order == ChannelOrder::Rgb {
                dst.chunks_exact_mut(3).for_each(|p| p.swap(0, 2));
            }
        }
        self.width = w as u32;
        self.height = h as u32;
        self.plan = Some(plan);
    }
}

const YELLOW: [u8; 3] = [0, 220, 255];
const CYAN: [u8; 3] = [255, 220, 0];

fn class_colour(c: VehicleClass) -> [u8; 3] {
    match c {
        VehicleClass::Car => [0, 200, 255],
        VehicleClass::Motorcycle => [0, 255, 0],
        VehicleClass::Bus => [255, 0, 200],
        VehicleClass::Truck => [255, 120, 0],
        VehicleClass::Bicycle => [255, 255, 0],
        VehicleClass::Person => [0, 0, 255],
    }
}

/// 3 × 5 digits, one row per 3 bits, top row first.
const DIGITS: [[u8; 5]; 10] = [
    [7, 5, 5, 5, 7],
    [2, 6, 2, 2, 7],
    [7, 1, 7, 4, 7],
    [7, 1, 7, 1, 7],
    [5, 5, 7, 1, 1],
    [7, 4, 7, 1, 7],
    [7, 4, 7, 5, 7],
    [7, 1, 1, 1, 1],
    [7, 5, 7, 5, 7],
    [7, 5, 7, 1, 7],
];

struct Canvas<'a> {
    px: &'a mut [u8],
    w: i32,
    h: i32,
}

impl Canvas<'_> {
    fn dot(&mut self, x: i32, y: i32, c: [u8; 3]) {
        if x >= 0 && y >= 0 && x < self.w && y < self.h {
            let i = (y * self.w + x) as usize * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    fn line(&mut self, a: (i32, i32), b: (i32, i32), c: [u8; 3]) {
        // Bresenham, 2 px thick.
        let (mut x, mut y) = a;
        let (dx, dy) = ((b.0 - x).abs(), -(b.1 - y).abs());
        let (sx, sy) = (if x < b.0 { 1 } else { -1 }, if y < b.1 { 1 } else { -1 });
        let mut err = dx + dy;
        loop {
            self.dot(x, y, c);
            self.dot(x + 1, y, c);
            self.dot(x, y + 1, c);
            if (x, y) == b {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    fn number(&mut self, n: u64, x: i32, y: i32, c: [u8; 3]) {
        for (k, ch) in n.to_string().bytes().enumerate() {
            let glyph = DIGITS[(ch - b'0') as usize];
            for (r, bits) in glyph.iter().enumerate() {
                for col in 0..3 {
                    if bits & (4 >> col) != 0 {
                        // Each font pixel is 2 × 2.
                        for (ox, oy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                            self.dot(x + k as i32 * 8 + col * 2 + ox, y + r as i32 * 2 + oy, c);
                        }
                    }
                }
            }
        }
    }
}

/// Draws the overlay on a copy of the image: zones, lines with their in/out counts, boxes with ids.
pub fn render(s: &Snapshot) -> Vec<u8> {
    let mut px = s.bgr.clone();
    let Some(plan) = &s.plan else { return px };
    let mut canvas = Canvas { px: &mut px, w: s.width as i32, h: s.height as i32 };
    let sx = s.width as f32 / plan.frame.width.max(1) as f32;
    let sy = s.height as f32 / plan.frame.height.max(1) as f32;
    let p = |q: FramePoint| ((q.x * sx).round() as i32, (q.y * sy).round() as i32);
    let rect = |canvas: &mut Canvas, x1: f32, y1: f32, x2: f32, y2: f32, c: [u8; 3]| {
        let (a, b) = (p(FramePoint { x: x1, y: y1 }), p(FramePoint { x: x2, y: y2 }));
        let (a, b) = ((a.0, a.1), (b.0 - 1, b.1 - 1));
        canvas.line(a, (b.0, a.1), c);
        canvas.line((b.0, a.1), b, c);
        canvas.line(b, (a.0, b.1), c);
        canvas.line((a.0, b.1), a, c);
    };
    // Tiles (grey) and the region of interest (white), where they are not the whole frame.
    if plan.tiles.len() > 1 {
        for lb in &plan.tiles {
            let b = lb.to_frame(&crate::geometry::ModelBox {
                x1: lb.offset_x as f32,
                y1: lb.offset_y as f32,
                x2: (lb.offset_x + lb.window.width) as f32,
                y2: (lb.offset_y + lb.window.height) as f32,
            });
            rect(&mut canvas, b.x1, b.y1, b.x2, b.y2, [128, 128, 128]);
        }
    }
    if plan.region.size() != plan.frame {
        let r = plan.region;
        rect(&mut canvas, r.x as f32, r.y as f32, (r.x + r.width) as f32, (r.y + r.height) as f32, [255, 255, 255]);
    }
    for z in &s.zones {
        for (i, a) in z.polygon.iter().enumerate() {
            canvas.line(p(*a), p(z.polygon[(i + 1) % z.polygon.len()]), CYAN);
        }
    }
    for l in &s.lines {
        let (a, b) = (p(l.a), p(l.b));
        canvas.line(a, b, YELLOW);
        if let Some((_, i, o)) = s.counts.iter().find(|(id, _, _)| *id == *l.id) {
            canvas.number(*i, a.0 + 4, a.1 + 4, YELLOW);
            canvas.number(*o, a.0 + 4, a.1 + 16, [255, 255, 255]);
        }
    }
    for t in &s.tracks {
        let c = class_colour(t.class);
        let (x1, y1) = p(FramePoint { x: t.bbox.x1, y: t.bbox.y1 });
        let (x2, y2) = p(FramePoint { x: t.bbox.x2, y: t.bbox.y2 });
        canvas.line((x1, y1), (x2, y1), c);
        canvas.line((x2, y1), (x2, y2), c);
        canvas.line((x2, y2), (x1, y2), c);
        canvas.line((x1, y2), (x1, y1), c);
        canvas.number(t.id, x1 + 3, y1 + 3, c);
    }
    px
}

/// Encodes packed BGR as JPEG with GStreamer (videoconvert ! jpegenc), quality 85.
pub fn encode_jpeg(bgr: &[u8], width: u32, height: u32) -> Result<Vec<u8>, String> {
    encode_jpeg_rows(bgr, width, height, width as usize * 3, 85)
}

/// Encodes BGR rows `stride` bytes apart as JPEG at `quality` (0–100).
pub fn encode_jpeg_rows(bgr: &[u8], width: u32, height: u32, stride: usize, quality: u8) -> Result<Vec<u8>, String> {
    gst::init().map_err(|e| e.to_string())?;
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time ! videoconvert ! jpegenc quality={} ! appsink name=sink sync=false",
        quality.min(100)
    ))
    .map_err(|e| e.to_string())?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline".to_owned())?;
    let src = pipeline.by_name("src").and_then(|e| e.downcast::<gst_app::AppSrc>().ok()).ok_or("no appsrc")?;
    let sink = pipeline.by_name("sink").and_then(|e| e.downcast::<gst_app::AppSink>().ok()).ok_or("no appsink")?;
    // Rows of GStreamer's BGR are padded to 4 bytes.
    let row = width as usize * 3;
    let padded_stride = row.div_ceil(4) * 4;
    let mut padded = vec![0u8; padded_stride * height as usize];
    for y in 0..height as usize {
        let src = bgr.get(y * stride..y * stride + row).ok_or("the image is shorter than its size says")?;
        padded[y * padded_stride..y * padded_stride + row].copy_from_slice(src);
    }
    let caps = gstreamer_video::VideoCapsBuilder::new()
        .format(gstreamer_video::VideoFormat::Bgr)
        .width(width as i32)
        .height(height as i32)
        .framerate(gst::Fraction::new(1, 1))
        .build();
    src.set_caps(Some(&caps));
    pipeline.set_state(gst::State::Playing).map_err(|e| e.to_string())?;
    let result = (|| {
        src.push_buffer(gst::Buffer::from_mut_slice(padded)).map_err(|e| e.to_string())?;
        src.end_of_stream().map_err(|e| e.to_string())?;
        let sample = sink.try_pull_sample(gst::ClockTime::from_seconds(5)).ok_or("the encoder gave no image")?;
        let buffer = sample.buffer().ok_or("empty sample")?;
        let map = buffer.map_readable().map_err(|e| e.to_string())?;
        Ok(map.as_slice().to_vec())
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{LetterboxAlign, Rect, Size, TileGrid};

    #[test]
    fn outside_the_region_is_grey_and_rgb_becomes_bgr() {
        // A 100 × 50 frame, region 50 × 50 at x = 50, kept 1:1 (input 64 × 64): a 50 × 50 RGB image.
        let plan = Plan::new(
            Size::new(100, 50),
            Some(Rect::new(50, 0, 50, 50)),
            Size::new(64, 64),
            LetterboxAlign::TopLeft,
            TileGrid::ONE,
        );
        assert_eq!(plan.scaled, Size::new(50, 50));
        let data: Vec<u8> = [10u8, 20, 30].repeat(50 * 50);
        let img = ImageView { data: &data, width: 50, height: 50, stride: 50 * 3 };
        let mut snap = Snapshot::default();
        snap.set_image(&img, Arc::new(plan), ChannelOrder::Rgb);
        assert_eq!((snap.width, snap.height), (100, 50));
        assert_eq!(&snap.bgr[..3], &[OUTSIDE; 3]);
        let i = (10 * 100 + 70) * 3;
        assert_eq!(&snap.bgr[i..i + 3], &[30, 20, 10]);
    }

    #[test]
    fn renders_and_encodes_a_jpeg() {
        let plan = Plan::new(Size::new(640, 360), None, Size::new(416, 416), LetterboxAlign::TopLeft, TileGrid::ONE);
        let snap = Snapshot {
            bgr: vec![60; 416 * 234 * 3],
            width: 416,
            height: 234,
            plan: Some(Arc::new(plan)),
            tracks: vec![TrackedObject {
                id: 17,
                bbox: crate::geometry::FrameBox { x1: 100.0, y1: 100.0, x2: 200.0, y2: 150.0 },
                detection: crate::geometry::FrameBox { x1: 100.0, y1: 100.0, x2: 200.0, y2: 150.0 },
                class: VehicleClass::Car,
                class_share: 1.0,
                person_share: 0.0,
                score: 0.9,
                velocity: (0.0, 0.0),
            }],
            lines: vec![],
            zones: vec![],
            counts: vec![],
        };
        let px = render(&snap);
        // The box's top-left corner (100, 100) frame px = (65, 65) in the 416 × 234 image is drawn.
        let i = (65 * 416 + 65) * 3;
        assert_eq!(&px[i..i + 3], &class_colour(VehicleClass::Car));
        let jpeg = encode_jpeg(&px, 416, 234).unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        assert_eq!(&jpeg[jpeg.len() - 2..], &[0xFF, 0xD9]);
    }
}
