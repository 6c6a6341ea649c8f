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
        let w = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let h = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        let inter = w * h;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }
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
}

/// The letterbox: a frame scaled by one factor to fit the model input, then padded.
///
/// `scaled` is the size GStreamer scales the frame to (model-input pixels), `offset` where its top-left
/// corner lands in the model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub frame: Size,
    pub input: Size,
    pub scaled: Size,
    pub offset_x: u32,
    pub offset_y: u32,
}

impl Letterbox {
    /// Scale by `r = min(input.w / frame.w, input.h / frame.h)` (up or down), rounding each side to whole
    /// pixels. Degenerate (zero) sizes give a 1-pixel image so that the maths stays finite.
    pub fn new(frame: Size, input: Size, align: LetterboxAlign) -> Self {
        let fw = f64::from(frame.width.max(1));
        let fh = f64::from(frame.height.max(1));
        let r = (f64::from(input.width) / fw).min(f64::from(input.height) / fh);
        let sw = ((fw * r).round() as u32).clamp(1, input.width.max(1));
        let sh = ((fh * r).round() as u32).clamp(1, input.height.max(1));
        let (offset_x, offset_y) = match align {
            LetterboxAlign::TopLeft => (0, 0),
            LetterboxAlign::Center => ((input.width - sw) / 2, (input.height - sh) / 2),
        };
        Self { frame, input, scaled: Size::new(sw, sh), offset_x, offset_y }
    }

    /// Model-input pixels → source-frame pixels, clipped to the frame. Each axis uses its own factor
    /// (scaled size / frame size), exact for the image GStreamer actually produced.
    #[inline]
    pub fn to_frame(&self, b: &ModelBox) -> FrameBox {
        let sx = self.frame.width as f32 / self.scaled.width as f32;
        let sy = self.frame.height as f32 / self.scaled.height as f32;
        let ox = self.offset_x as f32;
        let oy = self.offset_y as f32;
        let fw = self.frame.width as f32;
        let fh = self.frame.height as f32;
        FrameBox {
            x1: ((b.x1 - ox) * sx).clamp(0.0, fw),
            y1: ((b.y1 - oy) * sy).clamp(0.0, fh),
            x2: ((b.x2 - ox) * sx).clamp(0.0, fw),
            y2: ((b.y2 - oy) * sy).clamp(0.0, fh),
        }
    }

    /// Source-frame point → model-input pixels (the inverse of [`Letterbox::to_frame`], unclipped).
    #[inline]
    pub fn to_model(&self, p: FramePoint) -> ModelPoint {
        ModelPoint {
            x: p.x * self.scaled.width as f32 / self.frame.width as f32 + self.offset_x as f32,
            y: p.y * self.scaled.height as f32 / self.frame.height as f32 + self.offset_y as f32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn iou_basic() {
        let a = ModelBox { x1: 0.0, y1: 0.0, x2: 10.0, y2: 10.0 };
        let b = ModelBox { x1: 5.0, y1: 0.0, x2: 15.0, y2: 10.0 };
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(a.iou(&ModelBox { x1: 20.0, y1: 20.0, x2: 30.0, y2: 30.0 }), 0.0);
    }
}
